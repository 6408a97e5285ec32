"""Guard outgoing ``httpx`` requests (sync and async): ``instrument()`` once.

>>> from purposeguard.integrations import httpx as pg_httpx
>>> pg_httpx.instrument()
>>> pg_httpx.uninstrument()

Before a request leaves, the labels of what it carries (content, data,
files, JSON, params, headers, cookies) are checked against the purpose of its
destination (the policy's ``[[destinations]]``), else against the current
purpose; the zone's categories are checked too, and content the policy
requires TLS for may not go over plain ``http://`` off-host. The current
purpose, tenant and zone categories travel in the W3C ``baggage`` header,
except to a policy destination (another party). Patching happens when
``httpx`` is imported (at once if it already is); ``uninstrument()`` undoes it.
Needs ``pip install 'purposeguard[httpx]'``.

Where the checks hook in, and why:

* ``httpx.Request.__init__`` (and ``Client.build_request``) remember the
  labels of the arguments a request is built from, keyed by the request
  object: httpx encodes bodies to plain bytes, which carry no label. The
  labels stay with the request, so sending it twice is checked twice.
* ``Client._send_single_request`` runs once per hop, after auth flows and
  ``request`` event hooks, for every transport (mounts, custom transports)
  and for every redirect hop, which ``Client.send`` does not see again. Each
  hop is checked against its own host, and the baggage header is rewritten
  per hop (purposeguard's members are removed on a hop to a destination).
  ``_build_redirect_request`` hands a request's labels to its redirect.
* What each hop finally sends is read there too: the labels of its URL,
  of its header values (``Authorization``, ``Cookie``, headers an event
  hook or auth flow set) and of a whole body that replaced the built one.
  ``httpx.URL`` parses its text into plain pieces, so ``URL.__init__``
  (``copy_with``, ``copy_add_param``, ``base_url``) and ``URL.join`` keep the
  labels of what a URL was made from on the URL object. Base64 drops a
  password's labels, so ``BasicAuth`` and ``DigestAuth`` label the
  ``Authorization`` value they build with those of the credentials.
* A streamed body (an iterator, an async generator) is wrapped per hop: each
  chunk's labels are checked before the chunk is written. Content whose
  labels cannot be known (a file object's bytes) falls to the zone check.
* ``HTTPTransport.handle_request`` (and the async one) checks a request that
  no client hop checked: a transport driven without a client. Under a
  client, the hop's request is not checked twice.

Why private methods: no public seam sees every hop of every client. Event
hooks run per hop, but any code can replace a client's ``event_hooks`` and
with them the check; a wrapped transport misses the transports an
application brings (mounts, custom ``BaseTransport`` subclasses). So the
integration is pinned to the httpx releases it was tried with
(:data:`TESTED_HTTPX`, also the bounds of the ``[httpx]`` extra), and
``instrument()`` refuses any other release with an error naming it, rather
than guarding some requests and silently missing others.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from typing import Any, cast

from purposeguard._labels import EMPTY, labels_of, register_foreign, unregister_foreign

from . import _unguarded, baggage
from ._egress import carry_labels, check_chunk, check_egress, deep_labels, header_labels, input_labels
from ._patch import Patcher

__all__ = ["TESTED_HTTPX", "check_version", "instrument", "is_instrumented", "uninstrument"]

# Labels of the arguments each request was built from, by request object.
_LABELS: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()
# The request a client hop checked and is handing to its transport.
_HOP: ContextVar[Any] = ContextVar("purposeguard.httpx.hop", default=None)

#: The httpx releases (major, minor) this integration was tried with, both
#: included: 0.27.x and 0.28.x.
TESTED_HTTPX = ((0, 27), (0, 28))
_SYNC = "httpx.Client.send"
_ASYNC = "httpx.AsyncClient.send"
_TRANSPORT = "httpx.HTTPTransport.handle_request"
_ASYNC_TRANSPORT = "httpx.AsyncHTTPTransport.handle_async_request"


def _remember(request: Any, labels: frozenset[str]) -> None:
    if labels:
        try:
            _LABELS[request] = _LABELS.get(request, EMPTY) | labels
        except TypeError:  # not weak-referenceable: the zone check still applies
            pass


def _init_request(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    wrapped(*args, **kwargs)
    _remember(instance, deep_labels((args, tuple(kwargs.values()))))


def _build_request(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    request = wrapped(*args, **kwargs)
    # Client defaults are merged into new objects here; the caller's own
    # arguments are read again in case merging dropped their labels (a
    # relative httpx.URL merged with base_url keeps none of its own).
    url = args[1] if len(args) > 1 else kwargs.get("url")
    _remember(request, deep_labels((args, tuple(kwargs.values()))) | _url_labels(url))
    return request


def _build_redirect(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    new = wrapped(*args, **kwargs)
    previous = args[0] if args else kwargs["request"]
    _remember(new, _LABELS.get(previous, EMPTY))
    return new


# Where an ``httpx.URL`` keeps the labels of what it was made from: it parses
# its text into plain pieces, so a labelled URL string (or base_url, path,
# params given to ``copy_with``) would otherwise leave unseen.
_URL_LABELS = "_pg_url_labels"


def _url_labels(url: Any) -> frozenset[str]:
    if type(url) is str:
        return EMPTY
    if isinstance(url, str):
        return labels_of(url)
    return getattr(url, _URL_LABELS, EMPTY)


class _URLLabels:
    """Every reader of labels (a checkpoint, the logging redaction, a walk)
    reads an ``httpx.URL``'s labels where it keeps them: httpx logs each
    request's URL ("HTTP Request: GET ..."), and a URL made from labelled
    text must be seen there as it is at the egress check."""

    def labels(self, value: Any, purpose: str | None) -> frozenset[str]:
        return _url_labels(value)

    def tenant(self, value: Any) -> str | None:
        return None

    def label(self, value: Any, categories: frozenset[str], tenant: str | None) -> Any:
        raise TypeError("label the text an httpx.URL is made from, not the URL")

    def strip(self, value: Any) -> Any:
        import httpx

        return httpx.URL(str(value))


_URL_READER = _URLLabels()


def _init_url(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    wrapped(*args, **kwargs)
    labels = _url_labels(args[0] if args else kwargs.get("url", ""))
    if kwargs:
        labels = labels | input_labels(tuple(v for k, v in kwargs.items() if k != "url"))
    if labels:
        setattr(instance, _URL_LABELS, labels)


def _join_url(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    joined = wrapped(*args, **kwargs)
    # join goes through str(), which drops both URLs' labels.
    labels = _url_labels(instance) | _url_labels(args[0] if args else kwargs.get("url", ""))
    if labels:
        setattr(joined, _URL_LABELS, _url_labels(joined) | labels)
    return joined


def _basic_auth_header(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # Base64 drops the password's labels: the header carries them instead,
    # so every hop it is sent on is checked (client auth, per-request auth).
    return carry_labels(wrapped(*args, **kwargs), (*args, *kwargs.values()))


def _digest_auth_header(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # The username goes out as it is, the password hashed into the response.
    return carry_labels(
        wrapped(*args, **kwargs), (getattr(instance, "_username", None), getattr(instance, "_password", None))
    )


def _hop(request: Any, function: str, asynchronous: bool) -> None:
    # The final request, after auth flows and event hooks: its URL, headers
    # (Authorization, Cookie) and a body that replaced the built one are read
    # here, not only the arguments it was built from.
    labels = _LABELS.get(request, EMPTY) | header_labels(request.headers.raw) | _url_labels(request.url)
    stream: Any = request.stream
    inner: Any = cast(Any, stream).inner if isinstance(stream, _checked_type()) else stream
    whole = isinstance(inner, _byte_stream_type())
    if whole:
        content = getattr(inner, "_stream", None)
        if isinstance(content, (str, bytes)) and type(content) not in (str, bytes):
            labels = labels | labels_of(content)
    url = str(request.url)
    egress = check_egress(url, labels, function=function)
    baggage.inject(request.headers, extra_categories=labels, include=not egress.external)
    if whole:
        return
    import httpx

    # A stream the client cannot send (a sync iterator on an AsyncClient) is
    # left for httpx to refuse with its own error.
    if isinstance(inner, httpx.AsyncByteStream if asynchronous else httpx.SyncByteStream):
        request.stream = _checked_type()(inner, url, function)


def _send_single(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    request = args[0] if args else kwargs["request"]
    _hop(request, _SYNC, False)
    token = _HOP.set(request)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _HOP.reset(token)


async def _send_single_async(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    request = args[0] if args else kwargs["request"]
    _hop(request, _ASYNC, True)
    token = _HOP.set(request)
    try:
        return await wrapped(*args, **kwargs)
    finally:
        _HOP.reset(token)


def _transport(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    request = args[0] if args else kwargs.get("request")
    # A transport driven without a client (``HTTPTransport().handle_request``)
    # sends what no hop saw; under a client, the hop checked this very request.
    if request is not None and _HOP.get() is not request:
        _hop(request, _TRANSPORT, False)
    return wrapped(*args, **kwargs)


async def _transport_async(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    request = args[0] if args else kwargs.get("request")
    if request is not None and _HOP.get() is not request:
        _hop(request, _ASYNC_TRANSPORT, True)
    return await wrapped(*args, **kwargs)


_TYPES: dict[str, type] = {}


def _byte_stream_type() -> type:
    found = _TYPES.get("bytes")
    if found is None:
        import httpx

        found = _TYPES["bytes"] = httpx.ByteStream
    return found


def _checked_type() -> type:
    """A request stream that checks each chunk before httpx writes it
    (defined on first use: httpx is imported lazily)."""
    found = _TYPES.get("checked")
    if found is not None:
        return found
    import httpx

    class CheckedStream(httpx.SyncByteStream, httpx.AsyncByteStream):
        def __init__(self, inner: Any, url: str, function: str) -> None:
            self.inner = inner
            self.url = url
            self.function = function

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self.inner:
                check_chunk(self.url, chunk, function=self.function)
                yield chunk

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in self.inner:
                check_chunk(self.url, chunk, function=self.function)
                yield chunk

        def close(self) -> None:
            close = getattr(self.inner, "close", None)
            if close is not None:
                close()

        async def aclose(self) -> None:
            aclose = getattr(self.inner, "aclose", None)
            if aclose is not None:
                await aclose()

    _TYPES["checked"] = CheckedStream
    return CheckedStream


_PATCHER = Patcher(
    "httpx",
    [
        ("URL", "__init__", _init_url),
        ("URL", "join", _join_url),
        ("BasicAuth", "_build_auth_header", _basic_auth_header),
        ("DigestAuth", "_build_auth_header", _digest_auth_header),
        ("Request", "__init__", _init_request),
        ("Client", "build_request", _build_request),
        ("AsyncClient", "build_request", _build_request),
        ("Client", "_build_redirect_request", _build_redirect),
        ("AsyncClient", "_build_redirect_request", _build_redirect),
        ("Client", "_send_single_request", _send_single),
        ("AsyncClient", "_send_single_request", _send_single_async),
        ("HTTPTransport", "handle_request", _transport),
        ("AsyncHTTPTransport", "handle_async_request", _transport_async),
    ],
)


def instrument() -> None:
    """Guard every ``httpx.Client`` and ``httpx.AsyncClient`` request from now on."""
    from . import require

    check_version(getattr(require("httpx", "httpx"), "__version__", ""))
    import httpx

    _PATCHER.install()
    register_foreign(httpx.URL, _URL_READER)
    _unguarded.activate("httpx")


def check_version(version: str) -> None:
    """Refuse an httpx release outside :data:`TESTED_HTTPX` (its per-hop internals may differ)."""
    low, high = TESTED_HTTPX
    parts = version.split(".")
    try:
        found = (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        found = None
    if found is None or not low <= found <= high:
        raise RuntimeError(
            f"purposeguard.integrations.httpx was tried with httpx {low[0]}.{low[1]} to {high[0]}.{high[1]} "
            f"and hooks into its per-request internals; httpx {version or '(unknown version)'} is not "
            f"supported: pip install 'purposeguard[httpx]' for a tried release"
        )


def uninstrument() -> None:
    """Restore httpx as it was."""
    _PATCHER.remove()
    httpx = sys.modules.get("httpx")
    if httpx is not None:
        unregister_foreign(httpx.URL)
    _unguarded.deactivate("httpx")


def is_instrumented() -> bool:
    return _PATCHER.applied
