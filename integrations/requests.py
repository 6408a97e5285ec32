"""Guard outgoing ``requests`` calls: ``instrument()`` once.

>>> from purposeguard.integrations import requests as pg_requests
>>> pg_requests.instrument()
>>> pg_requests.uninstrument()

The same checks as the httpx integration: labels of params, data, JSON,
files, headers and cookies against the destination's purpose (else the
current one), the zone's categories, TLS for content off-host, and the
purpose, tenant and zone in the W3C ``baggage`` header. Every hop of a
redirect is checked against its own host. Needs
``pip install 'purposeguard[requests]'``.

requests encodes JSON and forms to plain bytes, which carry no label, so the
labels are read before encoding: ``PreparedRequest.prepare`` remembers the
labels of its arguments by prepared request (``Session().send(prepared)``
and sending one prepared request twice are checked every time), ``copy``
hands them to each redirect hop, and ``Session.request`` adds those of its
own arguments (cookies and auth merged into jars lose theirs).
``prepare_url`` and ``prepare_body`` remember theirs too: an auth callable,
run at the end of ``prepare``, may rewrite the URL or body with labelled
values. A streamed
body (a generator) is wrapped so each chunk is checked before it is written;
content whose labels cannot be known (a file object) falls to the zone check.

Base64 drops the labels of a labelled password: requests' one encoder of
Basic credentials (``requests.auth._basic_auth_str``, behind
``HTTPBasicAuth``, ``HTTPProxyAuth``, ``PreparedRequest.prepare_auth`` and a
proxy's credentials) returns a header value carrying them, so the header is
checked with the request however it was set. The function is patched in
place, so a reference taken before ``instrument()`` (``from requests.auth
import _basic_auth_str``) encodes with the labels too; a header encoded
before ``instrument()`` carries none.

urllib3 and http.client do not check again what requests checked: only the
adapter's send (``HTTPAdapter.send``) of the request ``Session.send`` just
checked is marked as checked for them. What a response hook or an auth
handler sends meanwhile is checked on its own, and an adapter driven without
a session (or handed another request, as ``HTTPDigestAuth`` does for its
retry) checks the request itself.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

from purposeguard._errors import PurposeViolation
from purposeguard._labels import EMPTY

from . import _unguarded, baggage
from ._egress import (
    CheckedBody,
    HelperPatch,
    carry_labels,
    check_egress,
    checked_by,
    deep_labels,
    header_labels,
    input_labels,
    surely_plain,
    url_labels,
)
from ._patch import Patcher
from .http_client import unmarked_chunks

__all__ = ["instrument", "uninstrument", "is_instrumented"]

_PENDING: ContextVar[frozenset[str]] = ContextVar("purposeguard.requests.pending", default=EMPTY)
# The arguments Session.request walked: prepare() is handed the same body
# objects again (with the session's headers, cookies and auth merged in new
# ones) and walks only what is new.
_WALKED: ContextVar[tuple[Any, ...]] = ContextVar("purposeguard.requests.walked", default=())
_LABELS: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()
# The labels of each prepared request's URL alone.
_URLS: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()
_FUNCTION = "requests.Session.send"
_ADAPTER = "requests.adapters.HTTPAdapter.send"
# The prepared request Session.send checked and is handing to its adapter.
_CHECKED: ContextVar[Any] = ContextVar("purposeguard.requests.checked", default=None)


def _remember(prepared: Any, labels: frozenset[str]) -> None:
    if labels:
        _LABELS[prepared] = _LABELS.get(prepared, EMPTY) | labels


def _request(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    values = (*args, *kwargs.values())
    labels = deep_labels(values)
    token = _PENDING.set(labels)
    walked = _WALKED.set(values)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _WALKED.reset(walked)
        _PENDING.reset(token)


def _prepare(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    result = wrapped(*args, **kwargs)
    # What Session.request saw stays with the request, for a later
    # session.send(response.request). Handed to the first request prepared
    # only: one a hook prepares while this call is in flight carries its own.
    pending = _PENDING.get()
    if pending:
        _remember(instance, pending)
        _PENDING.set(EMPTY)
    _remember(instance, deep_labels(_not_walked((*args, *kwargs.values()))))
    return result


def _prepare_part(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # prepare_url / prepare_body encode to plain text; an auth callable (run
    # at the end of prepare) may call them again with new, labelled values.
    result = wrapped(*args, **kwargs)
    _remember(instance, input_labels(_not_walked((*args, *kwargs.values()))))
    return result


def _prepare_url(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    result = _prepare_part(wrapped, instance, args, kwargs)
    # The URL's own labels (url and params), read even where Session.request
    # walked them: urllib3 below writes the path and query in its log lines.
    values = (*args, *kwargs.values())
    for value in values:
        if not surely_plain(value):
            labels = input_labels(values)
            if labels:
                _URLS[instance] = _URLS.get(instance, EMPTY) | labels
            break
    return result


def _not_walked(values: tuple[Any, ...]) -> tuple[Any, ...]:
    walked = _WALKED.get()
    if not walked:
        return values
    return tuple(value for value in values if not any(value is seen for seen in walked))


def _copy(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    new = wrapped(*args, **kwargs)
    _remember(new, _LABELS.get(instance, EMPTY))
    url = _URLS.get(instance)
    if url:
        _URLS[new] = url
    return new


def _streamed(body: Any) -> bool:
    if body is None or isinstance(body, (bytes, str, bytearray, memoryview)):
        return False
    # A file object is read in blocks of plain bytes: nothing to check per chunk.
    return hasattr(body, "__iter__") and not hasattr(body, "read")


def _proxy_labels(proxies: Any) -> frozenset[str]:
    if not proxies or not isinstance(proxies, Mapping):
        return EMPTY
    return input_labels(tuple(proxies.values()))


def _check(request: Any, proxies: Any, function: str) -> CheckedBody | None:
    """Check ``request`` before it leaves; a streamed body comes back wrapped
    so each chunk is checked as it is written."""
    body = request.body
    if isinstance(body, CheckedBody):
        body = body.inner
    labels = (
        _PENDING.get()
        | _LABELS.get(request, EMPTY)
        | (deep_labels(body) if not _streamed(body) else EMPTY)
        | header_labels(request.headers.items())
        # An auth callable or hook may have set the URL itself.
        | (deep_labels(request.url) if type(request.url) is not str else EMPTY)
        # Credentials in a proxy's URL (Session.proxies, the environment's)
        # become a Proxy-Authorization header built without labels.
        | _proxy_labels(proxies)
    )
    egress = check_egress(request.url, labels, function=function)
    baggage.inject(request.headers, extra_categories=labels, include=not egress.external)
    if _streamed(body):
        checked = request.body = CheckedBody(unmarked_chunks(body), request.url, function)
        return checked
    return None


def _sending(wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], checked: Any) -> Any:
    try:
        return wrapped(*args, **kwargs)
    except PurposeViolation:
        raise
    except Exception as error:
        if checked is not None and checked.violation is not None:
            raise checked.violation from error
        raise


def _send(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    request = args[0] if args else kwargs["request"]
    # Session.send passes ``proxies`` on to the adapter by keyword.
    checked = _check(request, kwargs.get("proxies"), _FUNCTION)
    # Only the adapter's send of this very request is covered by the check
    # (``_adapter_send``): response hooks, auth handlers and the rest of
    # Session.send run unmarked, so what they send is checked on its own.
    token = _CHECKED.set(request)
    try:
        return _sending(wrapped, args, kwargs, checked)
    finally:
        _CHECKED.reset(token)


def _adapter_send(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    request = args[0] if args else kwargs.get("request")
    if request is None:
        return wrapped(*args, **kwargs)  # requests refuses the call itself
    checked = None
    if _CHECKED.get() is not request:
        # Not the request Session.send just checked: an auth handler's retry
        # (HTTPDigestAuth sends a copy from its response hook), or an
        # adapter driven by hand.
        checked = _check(request, args[5] if len(args) > 5 else kwargs.get("proxies"), _ADAPTER)
    # One check, one send: sending the same request again from a hook is checked again.
    _CHECKED.set(None)
    url = _URLS.get(request, EMPTY) | (deep_labels(request.url) if type(request.url) is not str else EMPTY)
    with checked_by("requests"):
        # urllib3 and http.client below send what was just checked; urllib3
        # logs the URL's path and query, from plain text: it is told their
        # labels (a plain URL enters nothing more).
        if url:
            with url_labels(url):
                return _sending(wrapped, args, kwargs, checked)
        return _sending(wrapped, args, kwargs, checked)


def _carrying_basic_auth_str(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _basic_auth_str(*args: Any, **kwargs: Any) -> Any:
        # Base64 drops a labelled password's labels: the header value carries
        # them to the check of the request it is sent with.
        return carry_labels(original(*args, **kwargs), (*args, *kwargs.values()))

    return _basic_auth_str


# Every Basic header requests builds (HTTPBasicAuth and HTTPProxyAuth, called
# by hand or from an auth callable, PreparedRequest.prepare_auth, a proxy's
# credentials) goes through this function, bound under these names.
_BASIC_AUTH_STR = HelperPatch(
    "_basic_auth_str", ("requests.auth", "requests.adapters", "requests.sessions"), _carrying_basic_auth_str
)


_PATCHER = Patcher(
    "requests",
    [
        ("Session", "request", _request),
        ("Session", "send", _send),
        ("PreparedRequest", "prepare", _prepare),
        ("PreparedRequest", "prepare_url", _prepare_url),
        ("PreparedRequest", "prepare_body", _prepare_part),
        ("PreparedRequest", "copy", _copy),
    ],
)
_ADAPTERS = Patcher("requests.adapters", [("HTTPAdapter", "send", _adapter_send)])


def instrument() -> None:
    """Guard every ``requests`` call (``requests.get``, sessions) from now on."""
    from . import require

    require("requests", "requests")
    _PATCHER.install()
    _ADAPTERS.install()
    _BASIC_AUTH_STR.install()
    _unguarded.activate("requests")


def uninstrument() -> None:
    """Restore requests as it was."""
    _BASIC_AUTH_STR.remove()
    _ADAPTERS.remove()
    _PATCHER.remove()
    _unguarded.deactivate("requests")


def is_instrumented() -> bool:
    return _PATCHER.applied
