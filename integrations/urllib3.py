"""Guard outgoing ``urllib3`` requests: ``instrument()`` once.

>>> from purposeguard.integrations import urllib3 as pg_urllib3
>>> pg_urllib3.instrument()

urllib3 is the HTTP client under requests, botocore (boto3) and
elasticsearch-py, and many SDKs call it directly. The same checks as the
httpx and requests integrations: labels of the body, JSON, form fields and
headers against the destination's purpose (else the current purpose), the
zone's categories, TLS for content off-host, and purpose, tenant and zone in
the W3C ``baggage`` header (not to a policy destination).

Where the checks hook in, and why:

* ``RequestMethods.request`` (``PoolManager.request``, ``pool.request``,
  ``urllib3.request``), ``request_encode_url``, ``request_encode_body`` and
  ``PoolManager.urlopen`` remember the labels of their arguments: they
  encode ``json=`` and ``fields=`` to plain bytes, and parse the URL into
  plain text, which carry no label.
* ``HTTPConnectionPool.urlopen`` runs once per hop, including the retries
  and redirects urllib3 follows itself, each checked against its own host.
* ``make_headers`` (``urllib3.make_headers``, ``urllib3.util.make_headers``)
  labels the ``authorization`` and ``proxy-authorization`` values it builds
  with the labels of ``basic_auth`` / ``proxy_basic_auth``, which Base64
  drops; ``urlopen`` then checks them with the request. The function is
  patched in place, so a reference taken before ``instrument()`` (``from
  urllib3 import make_headers``) labels them too; headers made before
  ``instrument()`` carry none.
* ``HTTPConnection.request`` (and ``request_chunked``), for a connection
  driven without a pool: urllib3 frames each chunk of a chunked body into
  new bytes before http.client's ``send`` sees it, dropping its labels, so
  the request is checked whole here and each chunk of a streamed body
  before it is written.
* A call made by the requests integration was checked there already, with
  the labels requests saw before encoding: urllib3 does not check it again.

urllib3's own DEBUG lines of each request (``"GET /path?q=... HTTP/1.1"
200``, retries, redirects) are written from the path and query it encodes
anew (``_encode_target``): that text carries the labels of the URL and
fields given to urllib3 (or to requests above it), so the logging
integration judges those lines as any labelled value. Through an HTTP proxy
urllib3 logs the absolute URL it parsed anew, without them: keep urllib3's
logger above DEBUG there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from purposeguard._context import PURPOSE
from purposeguard._errors import PurposeViolation
from purposeguard._labels import EMPTY
from purposeguard._runtime import get_guard

from . import _unguarded, baggage
from ._egress import (
    CheckedBody,
    HelperPatch,
    bound_arguments,
    carry_labels,
    check_egress,
    checked_by,
    deep_labels,
    header_labels,
    labelled_url,
    outer_layer,
    url_labels,
)
from ._patch import Patcher
from .http_client import connection_url, unmarked_chunks

__all__ = ["instrument", "is_instrumented", "uninstrument"]

_LAYER = "urllib3"
_FUNCTION = "urllib3.HTTPConnectionPool.urlopen"
_PENDING: ContextVar[frozenset[str]] = ContextVar("purposeguard.urllib3.pending", default=EMPTY)


def _request(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    labels = deep_labels((args, tuple(kwargs.values())))
    token = _PENDING.set(_PENDING.get() | labels)
    try:
        if labels:
            with url_labels(_url_part_labels(args, kwargs, wrapped.__name__)):
                return wrapped(*args, **kwargs)
        # Nothing labelled: no context to enter on the plain call's path.
        return wrapped(*args, **kwargs)
    finally:
        _PENDING.reset(token)


def _url_part_labels(args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> frozenset[str]:
    # What ends up in the path and query urllib3 sends (and logs): the URL,
    # and the fields request_encode_url encodes into the query (request()
    # hands a GET's fields to it by keyword).
    parts = [args[1] if len(args) > 1 else kwargs.get("url")]
    if name == "request_encode_url":
        parts.append(args[2] if len(args) > 2 else kwargs.get("fields"))
    return deep_labels(tuple(parts))


def _streamed(body: Any) -> bool:
    if body is None or isinstance(body, (bytes, str, bytearray, memoryview, dict, list, tuple)):
        return False
    return hasattr(body, "__iter__") and not hasattr(body, "read")


def _url(pool: Any, url: str) -> str:
    if "://" in url:  # through a proxy, urllib3 sends the absolute URL
        return url
    host = pool.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{pool.scheme}://{host}:{pool.port}{url}"


# ``urlopen``'s parameters, in order: urllib3 calls itself positionally for
# retries and redirects, requests by keyword. The calls that name no argument
# twice are read from these directly; any other shape is bound by the real
# signature (``bound_arguments``).
_URLOPEN_PARAMETERS = (
    "method",
    "url",
    "body",
    "headers",
    "retries",
    "redirect",
    "assert_same_host",
    "timeout",
    "pool_timeout",
    "release_conn",
    "chunked",
    "body_pos",
    "preload_content",
    "decode_content",
)
# By number of positional arguments: the parameters they fill, which a keyword may not name again.
_TAKEN = tuple(frozenset(_URLOPEN_PARAMETERS[:n]) for n in range(len(_URLOPEN_PARAMETERS) + 1))


def _unreadable(error: Exception) -> None:
    # The arguments could not be read (no signature, or one with ``*args``):
    # what the call sends is unknown, so enforce mode refuses it and trace
    # mode records that and lets it go.
    purpose = PURPOSE.get() or "service"
    get_guard()._internal_error(error, EMPTY, purpose, "egress", _FUNCTION, None, False)


def _urlopen(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if outer_layer() not in (None, _LAYER):
        # Checked by the client above (requests); the URL it hands down
        # carries the labels it knew, for urllib3's own log lines.
        if "url" in kwargs:
            kwargs = {**kwargs, "url": labelled_url(kwargs["url"])}
        elif len(args) > 1:
            args = (args[0], labelled_url(args[1]), *args[2:])
        return wrapped(*args, **kwargs)
    count = len(args)
    if 2 <= count <= len(_URLOPEN_PARAMETERS) and _TAKEN[count].isdisjoint(kwargs):
        kwargs = {**dict(zip(_URLOPEN_PARAMETERS[2:], args[2:], strict=False)), **kwargs}
        method, url = args[0], args[1]
    elif count == 0 and "method" in kwargs and "url" in kwargs:
        kwargs = dict(kwargs)
        method = kwargs.pop("method")
        url = kwargs.pop("url")
    else:
        # Mixed shapes (``urlopen("POST", url=..., body=...)``): read them the
        # way Python binds them to urlopen, never by guessing positions.
        bound = _bound(wrapped, args, kwargs, "urlopen")
        if bound is None:
            return wrapped(*args, **kwargs)
        kwargs = bound
        method = kwargs.pop("method")
        url = kwargs.pop("url")
    body = kwargs.get("body")
    headers = kwargs.get("headers")
    streamed = _streamed(body)
    full_url = _url(instance, url)
    labels = _PENDING.get() | (EMPTY if streamed else deep_labels(body))
    if headers is not None:
        labels = labels | header_labels(headers.items())
    proxy_headers = getattr(instance, "proxy_headers", None)
    if proxy_headers:
        # Merged into the request by the pool after this hook (a ProxyManager's
        # Proxy-Authorization, built by make_headers with its password's labels).
        labels = labels | header_labels(proxy_headers.items())
    egress = check_egress(full_url, labels, function=_FUNCTION)
    headers = dict(headers if headers is not None else instance.headers)
    baggage.inject(headers, extra_categories=labels, include=not egress.external)
    kwargs["headers"] = headers
    if streamed:
        kwargs["body"] = body = CheckedBody(unmarked_chunks(body), full_url, _FUNCTION)
    try:
        with checked_by(_LAYER):
            # urllib3 logs the path and query it sends (DEBUG): the text it
            # encodes them into carries the labels (``_encode_target``).
            return wrapped(method, labelled_url(url), **kwargs)
    except PurposeViolation:
        raise
    except Exception as error:
        if isinstance(body, CheckedBody) and body.violation is not None:
            raise body.violation from error
        raise


_CONNECTION = "urllib3.HTTPConnection.request"


def _bound(
    wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], name: str
) -> dict[str, Any] | None:
    """The call's arguments by name, as Python binds them to ``wrapped``;
    None (said once) where they cannot be read and the call goes on as is."""
    try:
        return bound_arguments(wrapped, args, kwargs, name)
    except TypeError:
        raise  # urllib3 would refuse the call the same way: nothing is sent
    except Exception as error:
        _unreadable(error)
        return None


def _connection_request(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # urllib3's connection frames each chunk of a chunked body itself
    # (``b"%x\r\n%b\r\n" % ...``), dropping its labels before http.client's
    # ``send`` sees it: a connection driven by hand (``request(...,
    # chunked=True)``, ``request_chunked``) is checked here, chunk by chunk.
    if outer_layer() is not None:
        return wrapped(*args, **kwargs)  # a pool's (or requests') request, checked there
    if len(args) == 2 and "method" not in kwargs and "url" not in kwargs:
        named = {"method": args[0], "url": args[1], **kwargs}  # the usual shape
    else:
        bound = _bound(wrapped, args, kwargs, "request")
        if bound is None:
            return wrapped(*args, **kwargs)
        named = bound
    url = named.get("url", "/")
    body = named.get("body")
    headers = named.get("headers")
    full_url = connection_url(instance, str(url))
    streamed = _streamed(body)
    labels = deep_labels(url) | (EMPTY if streamed else deep_labels(body))
    if headers is not None:
        labels = labels | header_labels(headers.items())
    check_egress(full_url, labels, function=_CONNECTION)
    if streamed:
        named["body"] = body = CheckedBody(unmarked_chunks(body), full_url, _CONNECTION)
    try:
        with checked_by(_LAYER):
            return wrapped(**named)
    except PurposeViolation:
        raise
    except Exception as error:
        if isinstance(body, CheckedBody) and body.violation is not None:
            raise body.violation from error
        raise


def _carrying_make_headers(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def make_headers(*args: Any, **kwargs: Any) -> Any:
        headers = original(*args, **kwargs)
        # Base64 drops the labels of a labelled ``basic_auth`` or
        # ``proxy_basic_auth``: the header values carry them instead, for
        # the check of the request they are sent with.
        for name in ("authorization", "proxy-authorization"):
            if name in headers:
                headers[name] = carry_labels(headers[name], (*args, *kwargs.values()))
        return headers

    return make_headers


def _carrying_encode_target(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _encode_target(*args: Any, **kwargs: Any) -> Any:
        # The path and query urllib3 sends and writes in its log lines,
        # percent-encoded into new text: it carries the labels of the text given.
        return carry_labels(original(*args, **kwargs), (*args, *kwargs.values()))

    return _encode_target


_ENCODE_TARGET = HelperPatch(
    "_encode_target", ("urllib3.util.url", "urllib3.connectionpool"), _carrying_encode_target
)


# ``make_headers`` is a function, bound under these names by urllib3 itself.
_MAKE_HEADERS = HelperPatch(
    "make_headers", ("urllib3.util.request", "urllib3.util", "urllib3"), _carrying_make_headers
)


_PATCHER = Patcher(
    "urllib3",
    [
        ("HTTPConnectionPool", "urlopen", _urlopen),
    ],
)
# request_encode_url and request_encode_body are public too, and encode
# fields into plain text before any pool sees them; PoolManager.urlopen
# parses the URL into plain text before the pool's urlopen: each remembers
# the labels of what it was given for the pool's check.
_METHODS = Patcher(
    "urllib3._request_methods",
    [
        ("RequestMethods", "request", _request),
        ("RequestMethods", "request_encode_url", _request),
        ("RequestMethods", "request_encode_body", _request),
    ],
)
_POOL_MANAGER = Patcher("urllib3.poolmanager", [("PoolManager", "urlopen", _request)])
# ``request_chunked`` (deprecated) goes through ``request`` too.
_CONNECTIONS = Patcher("urllib3.connection", [("HTTPConnection", "request", _connection_request)])


def instrument() -> None:
    """Guard every ``urllib3`` request (pools, ``PoolManager``, ``urllib3.request``) from now on."""
    from . import require

    require("urllib3", "urllib3")
    _METHODS.install()
    _POOL_MANAGER.install()
    _PATCHER.install()
    _CONNECTIONS.install()
    _MAKE_HEADERS.install()
    _ENCODE_TARGET.install()
    _unguarded.activate("urllib3")


def uninstrument() -> None:
    """Restore urllib3 as it was."""
    _ENCODE_TARGET.remove()
    _MAKE_HEADERS.remove()
    _CONNECTIONS.remove()
    _PATCHER.remove()
    _POOL_MANAGER.remove()
    _METHODS.remove()
    _unguarded.deactivate("urllib3")


def is_instrumented() -> bool:
    return _PATCHER.applied
