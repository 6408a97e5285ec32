"""Guard outgoing ``aiohttp`` client requests: ``instrument()`` once.

>>> from purposeguard.integrations import aiohttp as pg_aiohttp
>>> pg_aiohttp.instrument()

The same checks as the other HTTP clients: labels of the body, JSON, form
data, params and headers against the destination's purpose (else the
current purpose), the zone's categories, TLS for content off-host, and
purpose, tenant and zone in the W3C ``baggage`` header (not to a policy
destination). Needs ``pip install 'purposeguard[aiohttp]'``.

Where the checks hook in, and why:

* ``ClientSession._request`` (behind ``get``, ``post``, ``request``...)
  remembers the labels of its arguments, because ``json=`` is encoded into
  a payload object that carries no label, and wraps a streamed body (an
  async generator) so each chunk is checked before it is written. It is
  aiohttp's private entry point: the ``aiohttp`` extra pins the range tested.
* ``ClientRequest.__init__`` runs once per hop, including each redirect
  aiohttp follows itself, so each hop is checked against its own host and
  gets its own baggage header before anything is sent. It also reads what
  aiohttp encodes into headers itself, dropping labels: ``auth`` and
  ``proxy_auth`` (Base64), the cookies of the hop (the session's jar and the
  call's own) and ``proxy_headers``, session defaults included.
* ``ClientRequest.send`` checks a hop again if it changed after it was
  made: a client middleware (aiohttp 3.12) may send it to another host,
  add a labelled header or replace the body (``update_body``, whose
  argument's labels are remembered). A violation raised while sending,
  which aiohttp would turn into its ``ClientOSError``, reaches the caller
  as the violation.
* A payload (``JsonPayload``, ``StringPayload``, ``BytesPayload``, and so
  the parts ``MultipartWriter.append_json``/``append_form`` make) carries
  the labels of the value it encoded when it was made; ``BasicAuth.encode``
  and ``encode_basic_auth`` (which aiohttp recommends for an
  ``Authorization`` header, patched in place: a reference taken before
  ``instrument()`` too) return text carrying the password's labels.
* yarl quotes the parts a URL is built from into new, plain text
  (``URL.build``, ``with_query``, ``update_query``, ``extend_query``, ``%``,
  ``/``, ``joinpath``, ``join``, ``with_path``, ``with_user``,
  ``with_password`` and the other ``with_*``), so a URL made from labelled
  parts keeps their labels, as does every URL derived from it (even where
  the labelled part was replaced: refused rather than missed), ``origin()``
  and ``parent`` included, and every text read from it: ``str()``,
  ``repr()``, ``human_repr()``, the cached properties (``query`` and its
  values, ``query_string``, ``path``, ``path_qs``, ``parts``, ``name``,
  ``host``...). ``URL(text)`` of a labelled text is labelled, and pickling
  or copying a labelled URL keeps its labels. yarl hands equal inputs the
  same URL object, so a labelled one is a copy of its own; a plain URL pays
  only on the first read of each cached property.
* ``ClientSession.__init__`` remembers the labels of ``base_url`` (yarl
  parses it into plain strings); a relative URL sent from that session
  carries them.
* Each message sent on a client WebSocket (``ws_connect``) is checked like a
  request body to the WebSocket's host: ``send_str``, ``send_bytes``,
  ``send_json`` (its data before encoding), and, where the installed aiohttp
  has them, ``send_json_bytes`` and ``send_frame``; the payloads of
  ``ping``, ``pong`` and ``close`` too. The handshake itself is a request
  like any other.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from typing import Any

from purposeguard._errors import PurposeViolation
from purposeguard._labels import EMPTY, labels_of, relabel, tenant_of

from . import _unguarded, baggage
from ._egress import (
    HelperPatch,
    carry_labels,
    check_chunk,
    check_egress,
    deep_labels,
    header_labels,
    input_labels,
    sent_labels,
    surely_plain,
)
from ._patch import Patcher, Wrapper

__all__ = ["instrument", "is_instrumented", "uninstrument"]

_FUNCTION = "aiohttp.ClientSession.request"
_PENDING: ContextVar[frozenset[str]] = ContextVar("purposeguard.aiohttp.pending", default=EMPTY)
# Labels of a session's ``base_url``, which yarl parses into plain strings.
_BASE_URLS: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()
# A session's own proxy (URL with credentials, proxy_auth): its labels, for every hop.
_SESSION_PROXY: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()


class _CheckedBody:
    """A streamed body whose chunks are checked before they are written; the
    violation is kept, since aiohttp turns errors raised while writing the
    body into its own connection errors."""

    def __init__(self, inner: Any, url: str) -> None:
        self.inner = inner
        self.url = url
        self.violation: PurposeViolation | None = None

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for chunk in self.inner:
            try:
                check_chunk(self.url, chunk, function=_FUNCTION)
            except PurposeViolation as error:
                self.violation = error
                raise
            yield chunk


def _init_session(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    result = wrapped(*args, **kwargs)
    base_url = args[0] if args else kwargs.get("base_url")
    if base_url is not None and type(base_url) is not str:
        labels = deep_labels(base_url)
        if labels:
            _BASE_URLS[instance] = labels
    # A session-wide proxy (credentials in its URL become a Proxy-Authorization
    # header aiohttp builds without labels) and proxy_auth: read for every hop.
    proxy = input_labels((kwargs.get("proxy"), kwargs.get("proxy_auth")))
    if proxy:
        _SESSION_PROXY[instance] = proxy
    return result


def _relative(url: Any) -> bool:
    import yarl

    try:
        return not yarl.URL(url).absolute
    except (TypeError, ValueError):
        return False


def _request(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    data = kwargs.get("data")
    streamed = None
    if data is not None and hasattr(data, "__aiter__"):
        url = str(args[1] if len(args) > 1 else kwargs.get("str_or_url", ""))
        streamed = _CheckedBody(data, url)
        kwargs = {**kwargs, "data": streamed.__aiter__()}
        data = None
    labels = deep_labels((args, tuple(v for k, v in kwargs.items() if k != "data"), data))
    if _BASE_URLS:
        base = _BASE_URLS.get(instance)
        if base and _relative(args[1] if len(args) > 1 else kwargs.get("str_or_url", "")):
            labels = labels | base
    if _SESSION_PROXY and kwargs.get("proxy") is None:
        labels = labels | _SESSION_PROXY.get(instance, EMPTY)

    async def remembering() -> Any:
        # The coroutine runs later, in the caller's task: set the labels
        # there. This call's own: a request a middleware or trace hook sends
        # while this one is in flight is judged by what it carries.
        token = _PENDING.set(labels)
        try:
            return await wrapped(*args, **kwargs)
        except PurposeViolation:
            raise
        except Exception as error:
            if streamed is not None and streamed.violation is not None:
                raise streamed.violation from error
            # aiohttp turns an OSError raised while sending (a violation is a
            # PermissionError) into its ClientOSError: the refusal is the violation.
            violation = _violation_behind(error)
            if violation is not None:
                raise violation from error
            raise
        finally:
            _PENDING.reset(token)

    return remembering()


def _violation_behind(error: BaseException) -> PurposeViolation | None:
    seen = 0
    cause = error.__cause__
    while cause is not None and seen < 8:
        if isinstance(cause, PurposeViolation):
            return cause
        cause = cause.__cause__
        seen += 1
    return None


def _init_request(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    result = wrapped(*args, **kwargs)
    labels = _PENDING.get() | header_labels(instance.headers.items())
    # aiohttp encodes these into headers itself (Base64 for BasicAuth, the
    # Cookie line from the session's jar), dropping their labels: read them
    # as they were handed to this hop, session defaults included.
    cookies = kwargs.get("cookies")
    if cookies:
        labels = labels | _cookie_labels(cookies)
    extra = (kwargs.get("auth"), kwargs.get("proxy_auth"), kwargs.get("proxy_headers"))
    if extra != (None, None, None):
        labels = labels | input_labels(extra)
    url = str(instance.url)
    egress = check_egress(url, labels, function=_FUNCTION)
    baggage.inject(instance.headers, extra_categories=labels, include=not egress.external)
    _CHECKED[instance] = (url, labels)
    return result


# The URL and labels each hop was checked with when it was made; the labels
# of a body set later with ``update_body``.
_CHECKED: weakref.WeakKeyDictionary[Any, tuple[str, frozenset[str]]] = weakref.WeakKeyDictionary()
_BODIES: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()


def _update_body(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    labels = deep_labels(args[0] if args else kwargs.get("body"))
    if labels:
        _BODIES[instance] = _BODIES.get(instance, EMPTY) | labels
    return wrapped(*args, **kwargs)


def _send(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # A client middleware (aiohttp 3.12) runs between the hop's making and
    # its sending, and may send it elsewhere (``request.url``), add a
    # header or replace the body: what leaves is checked again if it
    # changed since the hop was checked.
    checked = _CHECKED.get(instance)
    url = str(instance.url)
    labels = header_labels(instance.headers.items()) | _BODIES.get(instance, EMPTY)
    if checked is None or url != checked[0] or not labels <= checked[1]:
        labels = labels | (checked[1] if checked is not None else _PENDING.get())
        egress = check_egress(url, labels, function=_FUNCTION)
        baggage.inject(instance.headers, extra_categories=labels, include=not egress.external)
        _CHECKED[instance] = (url, labels)
    return wrapped(*args, **kwargs)


def _cookie_labels(cookies: Any) -> frozenset[str]:
    from http.cookies import Morsel

    found = EMPTY
    pairs = cookies.items() if isinstance(cookies, Mapping) else cookies
    for _, value in pairs:
        if isinstance(value, Morsel):
            # A Morsel is a dict of cookie attributes: its value is an attribute.
            found = found | input_labels((value.value, value.coded_value))
        else:
            found = found | input_labels((value,))
    return found


def _init_payload(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # A payload encodes its value when it is made (JsonPayload dumps the
    # dict, StringPayload encodes the text): the payload carries the labels
    # of what it was made from, for the check of the request it is sent
    # with, alone or as a part of a MultipartWriter.
    result = wrapped(*args, **kwargs)
    labels, tenant = sent_labels(args[0] if args else kwargs.get("value"))
    if labels:
        relabel(instance, *sorted(labels), tenant=tenant)
    return result


def _append_encoded(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # append_form url-encodes its fields into plain text first: the part it
    # returns carries the fields' labels.
    part = wrapped(*args, **kwargs)
    labels, tenant = sent_labels(args[0] if args else kwargs.get("obj"))
    if labels and part is not None:
        relabel(part, *sorted(labels), tenant=tenant)
    return part


def _basic_auth_encode(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # Base64 drops a labelled password's labels: the header value carries them.
    return carry_labels(wrapped(*args, **kwargs), (instance.login, instance.password))


def _carrying_encode_basic_auth(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def encode_basic_auth(*args: Any, **kwargs: Any) -> Any:
        return carry_labels(original(*args, **kwargs), (*args, *kwargs.values()))

    return encode_basic_auth


# aiohttp's deprecation warnings for auth= recommend encode_basic_auth for an
# Authorization header; bound in its defining module and re-exported.
_ENCODE_BASIC_AUTH = HelperPatch(
    "encode_basic_auth", ("aiohttp.helpers", "aiohttp"), _carrying_encode_basic_auth
)


# Where a yarl URL keeps the labels of the parts it was made from: in the
# dict yarl caches a URL's parsed pieces in (a slot every walk reads), as a
# labelled empty text. yarl URLs take no attributes and no weak references.
_URL_LABELS = "_pg_labels"
# The arguments of a URL method that carry no label: nothing to look into.
_PLAIN_ARGUMENTS = frozenset({str, int, float, bool, type(None)})
# The yarl methods that make a URL from the one they are called on and their
# arguments; the ones the installed yarl has are patched.
_URL_METHODS = (
    "build",
    "join",
    "joinpath",
    "relative",
    "update_query",
    "extend_query",
    "with_query",
    "without_query_params",
    "with_scheme",
    "with_user",
    "with_password",
    "with_host",
    "with_port",
    "with_path",
    "with_fragment",
    "with_name",
    "with_suffix",
    "__truediv__",
    "__mod__",
)


# The yarl methods that give a URL's text.
_URL_TEXTS = ("__str__", "human_repr", "__repr__")
# yarl's cached properties that hold no text of the URL (a port, a flag) or
# only yarl's own bookkeeping: left as yarl computes them.
_URL_FACTS = frozenset({"_val", "absolute", "port", "explicit_port"})
# What yarl's ``_cache_netloc`` writes into the cache besides the property
# that asked for it: labelled with it, else read later as plain text.
_NETLOC_TEXTS = ("raw_user", "raw_password", "raw_host")


def _url_labels(url: Any) -> Any:
    cache = getattr(url, "_cache", None) if not isinstance(url, type) else None
    return cache.get(_URL_LABELS) if isinstance(cache, dict) else None


def _plain_argument(value: Any) -> bool:
    """Whether a URL method's argument surely carries no label, told without
    the labels layer's walk (which costs a plain request tens of
    microseconds per call): plain scalars, a URL without a mark, and a
    query given as a dict or a sequence of pairs of plain scalars."""
    if surely_plain(value):
        return True
    t = type(value)
    if _YARL_URL.get("class") is not t or not _YARL_PARTS:
        return False
    # A yarl URL without a mark, whose parts are plain text: a URL made from
    # a labelled str keeps the labelled pieces in its slots, not a mark.
    if _URL_LABELS in value._cache:
        return False
    for name in _YARL_PARTS:
        if type(getattr(value, name, None)) not in _PLAIN_ARGUMENTS:
            return False
    return True


def _derived_url(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    made = wrapped(*args, **kwargs)
    mark = _url_labels(instance)
    if mark is None:
        for value in args:
            if not _plain_argument(value):
                break
        else:
            for value in kwargs.values():
                if not _plain_argument(value):
                    break
            else:
                return made
    values = (*args, *kwargs.values())
    # A URL argument (join) is read through its own cache, like any value.
    labels, tenant = sent_labels((mark, values))
    if not labels or not isinstance(getattr(made, "_cache", None), dict):
        return made
    return _labelled_url(made, labels, tenant)


def _url_text(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # str(url) and human_repr(): the text a labelled URL is sent or logged
    # as (requests.get(str(url))) carries the labels of the parts it holds.
    text = wrapped(*args, **kwargs)
    cache = getattr(instance, "_cache", None)
    mark = cache.get(_URL_LABELS) if type(cache) is dict else None
    if mark is None:
        return text
    return relabel(text, *sorted(labels_of(mark)), tenant=tenant_of(mark))


def _labelled_url(url: Any, labels: frozenset[str], tenant: str | None) -> Any:
    # A copy: yarl returns one URL object for equal inputs (its lru_caches),
    # and the labels of this call must not reach another's equal URL.
    cls = type(url)
    copy = object.__new__(cls)
    for name in cls.__slots__:
        try:
            object.__setattr__(copy, name, object.__getattribute__(url, name))
        except AttributeError:
            continue
    # Only the mark: what yarl computed and cached on the plain URL (its
    # query, path, origin) is plain, and is computed again, labelled.
    copy._cache = {_URL_LABELS: relabel("", *sorted(labels), tenant=tenant)}
    return copy


def _marked(value: Any, mark: Any) -> Any:
    """``value``, read from a URL carrying ``mark``, with the mark's labels:
    text, a URL (``origin()``, ``parent``), the path's parts and the query
    (a ``MultiDictProxy`` whose keys and values are labelled text)."""
    t = type(value)
    if t is str:
        return relabel(value, *sorted(labels_of(mark)), tenant=tenant_of(mark)) if value else value
    if t is tuple:
        return tuple(_marked(item, mark) for item in value)
    if t is list:
        return [_marked(item, mark) for item in value]
    if t is _YARL_URL.get("class"):
        if _URL_LABELS in value._cache:
            return value
        return _labelled_url(value, labels_of(mark), tenant_of(mark))
    if t is _YARL_URL.get("query"):
        from multidict import MultiDict, MultiDictProxy

        return MultiDictProxy(MultiDict([(_marked(k, mark), _marked(v, mark)) for k, v in value.items()]))
    return value


def _labelling_property(name: str, compute: Callable[[Any], Any]) -> Callable[[Any], Any]:
    # yarl computes a cached property once per URL object and keeps it in
    # the URL's cache; a plain URL pays this only on that first read.
    def get(url: Any) -> Any:
        value = compute(url)
        cache = url._cache
        mark = cache.get(_URL_LABELS)
        if mark is None:
            return value
        for key in _NETLOC_TEXTS:
            if type(cache.get(key)) is str:
                cache[key] = _marked(cache[key], mark)
        return _marked(value, mark)

    get.__name__ = name
    get.__qualname__ = f"URL.{name}"
    get.__doc__ = compute.__doc__
    return get


def _get_state(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # Pickling and copy.copy/deepcopy send the URL's parts and make a new URL
    # from them with an empty cache: the mark goes along (labels survive
    # pickling), after the parts, where yarl's own __setstate__ ignores it.
    state = wrapped(*args, **kwargs)
    mark = instance._cache.get(_URL_LABELS)
    if mark is None or type(state) is not tuple:
        return state
    return (*state, mark)


def _set_state(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    result = wrapped(*args, **kwargs)
    state = args[0] if args else kwargs.get("state")
    if type(state) is tuple and len(state) == 2 and state[0] is not None:
        labels = labels_of(state[1])
        if labels:
            instance._cache[_URL_LABELS] = relabel("", *sorted(labels), tenant=tenant_of(state[1]))
    return result


# URL() called with no value (unpickling): yarl's own default is used.
_NO_VALUE: Any = object()


def _url_new(original: Callable[..., Any]) -> Callable[..., Any]:
    # URL(text) parses through lru_caches keyed by the text: a labelled text
    # would get (or leave behind) the URL object of an equal plain one. It is
    # parsed as plain text and the URL made carries its labels as a mark.
    def __new__(cls: type, val: Any = _NO_VALUE, **kwargs: Any) -> Any:
        t = type(val)
        if t is str and not kwargs:
            return original(cls, val)
        if val is _NO_VALUE:
            return original(cls, **kwargs)
        if t is not str and isinstance(val, str):
            labels, tenant = sent_labels(val)
            made = original(cls, str.__str__(val), **kwargs)
            if labels and type(made) is _YARL_URL.get("class"):
                return _labelled_url(made, labels, tenant)
            return made
        return original(cls, val, **kwargs)

    __new__.__doc__ = original.__doc__
    return __new__


class _ClassAttributes:
    """Replaces attributes of yarl's URL class that wrapt cannot wrap (its
    cached-property descriptors, ``__new__``) and puts them back."""

    def __init__(self) -> None:
        self.replaced: list[tuple[type, str, Any, Any]] = []
        self.lock = threading.Lock()

    def install(self, cls: type) -> None:
        with self.lock:
            if self.replaced:
                return
            descriptor_type = type(vars(cls).get("host"))
            for name, attribute in list(vars(cls).items()):
                if type(attribute) is descriptor_type and name not in _URL_FACTS:
                    compute = getattr(attribute, "wrapped", None)
                    if callable(compute):
                        self._replace(
                            cls, name, attribute, descriptor_type(_labelling_property(name, compute))
                        )
            original = vars(cls).get("__new__")
            if isinstance(original, staticmethod):
                self._replace(cls, "__new__", original, staticmethod(_url_new(original.__func__)))

    def _replace(self, cls: type, name: str, original: Any, replacement: Any) -> None:
        setattr(cls, name, replacement)
        self.replaced.append((cls, name, original, replacement))

    def remove(self) -> None:
        with self.lock:
            for cls, name, original, replacement in reversed(self.replaced):
                if vars(cls).get(name) is replacement:
                    setattr(cls, name, original)
            self.replaced.clear()


_URL_ATTRIBUTES = _ClassAttributes()


# Built on first ``instrument()``, once yarl is imported: which methods it has.
_YARL: dict[str, Patcher] = {}
# yarl's URL class, for telling a URL argument from another object with a
# _cache attribute.
_YARL_URL: dict[str, type] = {}
# Its slots that hold the URL's parts (all but its cache), read where a URL
# argument is told plain.
_YARL_PARTS: list[str] = []
_YARL_LOCK = threading.Lock()


def _yarl() -> Patcher:
    with _YARL_LOCK:
        patcher = _YARL.get("patcher")
        if patcher is None:
            import yarl

            _YARL_PARTS[:] = [name for name in getattr(yarl.URL, "__slots__", ()) if name != "_cache"]
            _YARL_URL["class"] = yarl.URL
            _YARL_URL["query"] = type(yarl.URL("?q=").query)
            present = [name for name in _URL_METHODS if callable(getattr(yarl.URL, name, None))]
            targets: list[tuple[str, str, Wrapper]] = [("URL", name, _derived_url) for name in present]
            targets.extend(
                ("URL", name, _url_text) for name in _URL_TEXTS if callable(getattr(yarl.URL, name, None))
            )
            if callable(getattr(yarl.URL, "__getstate__", None)) and callable(
                getattr(yarl.URL, "__setstate__", None)
            ):
                targets.extend((("URL", "__getstate__", _get_state), ("URL", "__setstate__", _set_state)))
            patcher = _YARL["patcher"] = Patcher("yarl", targets)
        return patcher


_PAYLOADS = Patcher(
    "aiohttp.payload",
    [
        (name, "__init__", _init_payload)
        for name in ("Payload", "BytesPayload", "StringPayload", "JsonPayload")
    ],
)
_BASIC_AUTH = Patcher("aiohttp.helpers", [("BasicAuth", "encode", _basic_auth_encode)])
_MULTIPART = Patcher("aiohttp.multipart", [("MultipartWriter", "append_form", _append_encoded)])

_SESSION = Patcher(
    "aiohttp", [("ClientSession", "__init__", _init_session), ("ClientSession", "_request", _request)]
)
_REQUEST = Patcher(
    "aiohttp",
    [
        ("ClientRequest", "__init__", _init_request),
        ("ClientRequest", "send", _send),
    ],
)
# update_body is newer (3.12) than the oldest aiohttp the extra allows: patched where present.
_UPDATE_BODY = Patcher("aiohttp.client_reqrep", [("ClientRequest", "update_body", _update_body)])

# What puts a message on a client WebSocket, and the argument that holds it.
# ``send_frame`` (3.11) and ``send_json_bytes`` are newer than the oldest
# aiohttp the extra allows: patched where present.
_WS_METHODS = {
    "send_str": "data",
    "send_bytes": "data",
    "send_json": "data",
    "send_json_bytes": "data",
    "send_frame": "message",
    "ping": "message",
    "pong": "message",
    "close": "message",
}
# The WebSocket whose message is being checked: ``send_json`` goes on through
# ``send_str`` with the encoded text, one message checked once.
_WS_SENDING: ContextVar[Any] = ContextVar("purposeguard.aiohttp.ws_sending", default=None)
# Built on first ``instrument()``, once aiohttp is imported: which methods it has.
_WEBSOCKET: dict[str, Patcher] = {}
_WEBSOCKET_LOCK = threading.Lock()


def _ws_send(method: str, argument: str) -> Callable[..., Any]:
    function = f"aiohttp.ClientWebSocketResponse.{method}"

    async def send(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if _WS_SENDING.get() is instance:
            return await wrapped(*args, **kwargs)
        # The message is the first argument of each (``close`` takes it by keyword only).
        message = args[0] if args else kwargs.get(argument)
        if message is not None and not (type(message) in (str, bytes) and not message):
            response = getattr(instance, "_response", None)
            url = str(response.url) if response is not None else ""
            check_egress(url, input_labels((message,)), function=function)
        token = _WS_SENDING.set(instance)
        try:
            return await wrapped(*args, **kwargs)
        finally:
            _WS_SENDING.reset(token)

    return send


def _websocket() -> Patcher:
    with _WEBSOCKET_LOCK:
        patcher = _WEBSOCKET.get("patcher")
        if patcher is None:
            import aiohttp

            have = aiohttp.ClientWebSocketResponse
            present = [name for name in _WS_METHODS if callable(getattr(have, name, None))]
            patcher = _WEBSOCKET["patcher"] = Patcher(
                "aiohttp",
                [("ClientWebSocketResponse", name, _ws_send(name, _WS_METHODS[name])) for name in present],
            )
        return patcher


def instrument() -> None:
    """Guard every request made with an ``aiohttp.ClientSession`` from now on."""
    from . import require

    require("aiohttp", "aiohttp")
    _SESSION.install()
    _REQUEST.install()
    _PAYLOADS.install()
    _MULTIPART.install()
    _BASIC_AUTH.install()
    _ENCODE_BASIC_AUTH.install()
    import aiohttp

    if callable(getattr(aiohttp.ClientRequest, "update_body", None)):
        _UPDATE_BODY.install()
    _websocket().install()
    _yarl().install()
    import yarl

    _URL_ATTRIBUTES.install(yarl.URL)
    _unguarded.activate("aiohttp")


def uninstrument() -> None:
    """Restore aiohttp as it was."""
    _URL_ATTRIBUTES.remove()
    for built in (_YARL.get("patcher"), _WEBSOCKET.get("patcher")):
        if built is not None:
            built.remove()
    _UPDATE_BODY.remove()
    _ENCODE_BASIC_AUTH.remove()
    _BASIC_AUTH.remove()
    _MULTIPART.remove()
    _PAYLOADS.remove()
    _REQUEST.remove()
    _SESSION.remove()
    _unguarded.deactivate("aiohttp")


def is_instrumented() -> bool:
    return _SESSION.applied
