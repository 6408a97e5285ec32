"""Guard outgoing requests made with ``http.client`` and ``urllib.request``:
``instrument()`` once.

>>> from purposeguard.integrations import http_client as pg_http_client
>>> pg_http_client.instrument()

``urllib.request.urlopen`` and code that drives ``http.client`` by hand
(``request()``, or ``putrequest``/``putheader``/``send``) all go through the
three ``HTTPConnection`` methods patched here: ``putrequest`` checks the
destination and the zone once per request, ``putheader`` and ``send`` check
the labels of header values and of each piece of the body that is labelled
(a labelled ``str`` body stays labelled when ``http.client`` encodes it);
``request()`` checks the whole request before it connects. ``urllib.request``
sends only the path and host it parsed from the URL, as plain strings: its
``do_open`` hands the labels of the full URL (a labelled URL string, or a
``Request`` whose ``full_url`` is labelled) to that check.
The same rules as the other HTTP clients apply: the destination's purpose
(else the current purpose), the zone's categories, and TLS for content
off-host. No ``baggage`` header is added here: ``putrequest`` callers set
their own headers, and a second header would be a protocol error.

Calls from clients that have their own guard (requests, urllib3) were
checked there, before encoding, and are not checked twice.
"""

from __future__ import annotations

import http.client
import urllib.error
import weakref
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from purposeguard._context import PURPOSE
from purposeguard._errors import PurposeViolation
from purposeguard._labels import EMPTY, labels_of
from purposeguard._runtime import get_guard

from . import _unguarded
from ._egress import _LAYER as _CHECKING
from ._egress import (
    bound_arguments,
    check_chunk,
    check_egress,
    checked_by,
    deep_labels,
    header_labels,
    input_labels,
    outer_layer,
)
from ._patch import Patcher

__all__ = ["instrument", "is_instrumented", "uninstrument"]

_FUNCTION = "http.client.HTTPConnection.request"
_LAYER = "http.client"
# The URL of the request each connection is sending, for its header and body checks.
_URLS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
# Labels of the URL urllib.request is opening: it sends only the path
# (``selector``) and host, parsed from the URL into plain strings.
_PENDING: ContextVar[frozenset[str]] = ContextVar("purposeguard.http_client.pending", default=EMPTY)


def _encrypted(connection: Any) -> bool:
    # urllib3's HTTPS connection derives from http.client.HTTPConnection, not HTTPSConnection.
    return (
        isinstance(connection, http.client.HTTPSConnection) or getattr(connection, "default_port", 80) == 443
    )


def connection_url(connection: Any, path: str) -> str:
    """The full URL ``connection`` sends ``path`` to (the tunnelled host
    through a proxy), as the egress check reads destinations."""
    if "://" in path:  # an absolute URL, as sent to a proxy
        return path
    host = getattr(connection, "_tunnel_host", None) or connection.host
    port = getattr(connection, "_tunnel_port", None) or connection.port
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    scheme = "https" if _encrypted(connection) else "http"
    return f"{scheme}://{host}:{port}{path}"


def _streamed(body: Any) -> bool:
    if body is None or isinstance(body, (str, bytes, bytearray, memoryview)):
        return False
    return hasattr(body, "__iter__") and not hasattr(body, "read")


# ``request``'s parameters before the keyword-only ones: urllib.request passes
# them positionally, other callers by keyword too.
_REQUEST_PARAMETERS = ("method", "url", "body", "headers")
_TAKEN = tuple(frozenset(_REQUEST_PARAMETERS[:n]) for n in range(len(_REQUEST_PARAMETERS) + 1))


def _request(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # The whole request is known here: check it before connecting, then let
    # putrequest/putheader/send (called by request) through unchecked.
    if outer_layer() is not None:
        return wrapped(*args, **kwargs)
    count = len(args)
    if 2 <= count <= len(_REQUEST_PARAMETERS) and _TAKEN[count].isdisjoint(kwargs):
        method, url = args[0], args[1]
        body = args[2] if count > 2 else kwargs.get("body")
        headers = args[3] if count > 3 else kwargs.get("headers")
        if kwargs:  # passed on below by position
            kwargs = {key: value for key, value in kwargs.items() if key != "body" and key != "headers"}
    else:
        # Keyword shapes (``request(method=..., url=...)``, ``request("GET", url=...)``):
        # read as Python binds them to request, never by guessing positions.
        try:
            kwargs = bound_arguments(wrapped, args, kwargs, "request")
        except TypeError:
            raise  # http.client would refuse the call the same way: nothing is sent
        except Exception as error:
            # Unreadable: enforce mode refuses, trace mode records and lets it go.
            get_guard()._internal_error(
                error, EMPTY, PURPOSE.get() or "service", "egress", _FUNCTION, None, False
            )
            return wrapped(*args, **kwargs)
        method = kwargs.pop("method")
        url = kwargs.pop("url")
        body = kwargs.pop("body", None)
        headers = kwargs.pop("headers", None)
    headers = headers or {}
    full_url = connection_url(instance, str(url))
    labels = deep_labels(url) | header_labels(headers.items()) | _PENDING.get()
    if _streamed(body):
        body = _checked(body, full_url)
    else:
        labels = labels | deep_labels(body)
    check_egress(full_url, labels, function=_FUNCTION)
    with checked_by(_LAYER):
        return wrapped(method, url, body, headers, **kwargs)


def _putrequest(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if outer_layer() is None:
        path = args[1] if len(args) > 1 else kwargs.get("url", "/")
        url = connection_url(instance, str(path))
        check_egress(url, deep_labels(path) | _PENDING.get(), function=_FUNCTION)
        _URLS[instance] = url
    return wrapped(*args, **kwargs)


def _putheader(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if outer_layer() is None:
        # The name too (a keyword ``header=`` as well): all of it goes on the wire.
        labels = input_labels((*args, *kwargs.values()))
        if labels:
            check_egress(
                _URLS.get(instance) or connection_url(instance, "/"), labels, function=_FUNCTION, zone=False
            )
    return wrapped(*args, **kwargs)


def _checked(chunks: Any, url: str) -> Iterator[Any]:
    for chunk in unmarked_chunks(chunks):
        check_chunk(url, chunk, function=_FUNCTION)
        yield chunk


def unmarked_chunks(chunks: Any) -> Iterator[Any]:
    """The chunks of a streamed body, each produced with no client marked as
    checking. The code that makes them (a generator) runs while its request
    is being sent, inside that request's ``checked_by``: a call it makes
    itself is not part of that request and is checked on its own (requests
    and urllib3 wrap their streamed bodies with this too)."""
    iterator: Iterator[Any] | None = None
    while True:
        token = _CHECKING.set(None)
        try:
            if iterator is None:
                iterator = iter(chunks)
            chunk = next(iterator)
        except StopIteration:
            return
        finally:
            _CHECKING.reset(token)
        yield chunk


def _send(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if outer_layer() is not None or (not args and "data" not in kwargs):
        return wrapped(*args, **kwargs)  # checked above, or a call http.client refuses itself
    data = args[0] if args else kwargs["data"]
    url = _URLS.get(instance) or connection_url(instance, "/")
    if isinstance(data, (str, bytes, bytearray, memoryview)):
        labels = deep_labels(data)
        if labels:
            check_egress(url, labels, function=_FUNCTION, zone=False)
    elif hasattr(data, "__iter__") and not hasattr(data, "read"):
        # ``send`` writes an iterable piece by piece: check each before it goes.
        return wrapped(_checked(data, url))
    return wrapped(*args, **kwargs)


def _do_open(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    request = args[1] if len(args) > 1 else kwargs.get("req")
    full_url = getattr(request, "full_url", None)
    labels = labels_of(full_url) if isinstance(full_url, str) and type(full_url) is not str else EMPTY
    token = _PENDING.set(labels) if labels else None
    try:
        return wrapped(*args, **kwargs)
    except urllib.error.URLError as error:
        # urllib wraps every OSError (a PurposeViolation is a PermissionError) in URLError.
        if isinstance(error.reason, PurposeViolation):
            raise error.reason from None
        raise
    finally:
        if token is not None:
            _PENDING.reset(token)


_PATCHER = Patcher(
    "http.client",
    [
        ("HTTPConnection", "request", _request),
        ("HTTPConnection", "putrequest", _putrequest),
        ("HTTPConnection", "putheader", _putheader),
        ("HTTPConnection", "send", _send),
    ],
)


_URLLIB = Patcher("urllib.request", [("AbstractHTTPHandler", "do_open", _do_open)])


def instrument() -> None:
    """Guard every request made with ``http.client`` or ``urllib.request`` from now on."""
    _PATCHER.install()
    _URLLIB.install()
    _unguarded.activate("http_client")


def uninstrument() -> None:
    """Restore http.client and urllib.request as they were."""
    _URLLIB.remove()
    _PATCHER.remove()
    _unguarded.deactivate("http_client")


def is_instrumented() -> bool:
    return _PATCHER.applied
