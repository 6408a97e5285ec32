"""ASGI middleware: a zone and a purpose per request (Starlette, FastAPI, any ASGI app).

>>> from starlette.applications import Starlette
>>> from purposeguard.integrations.asgi import PurposeGuardMiddleware, route_purpose
>>> app = Starlette()
>>> app.add_middleware(PurposeGuardMiddleware, purposes={"/admin/**": "service.operations"})

Per HTTP or WebSocket connection the middleware opens a zone with the tenant
(``tenant_from(scope)``, the application's authenticated identity, or
``pg.set_tenant``; a header only where the app names one with
``tenant_header``, behind a gateway that sets it; else signed baggage) and the categories
arriving in W3C baggage, and makes the route's purpose current for the whole
request, streaming bodies and background tasks included. The route's purpose
comes from ``@route_purpose``/``@pg.purpose`` on the endpoint the
framework's router picks (it writes it into the scope before calling it:
routes of included FastAPI routers, mounted apps and hosts alike; a mounted
app or a class-based endpoint, or one of its methods, can be marked too),
else from the ``purposes`` path patterns, else from the caller's baggage.
When the server starts the app (or on the first request without lifespan),
every purpose marked on a route reachable from the app is checked against
the policy: an unknown key is a :class:`~purposeguard.PolicyError` then. A :class:`~purposeguard.PurposeViolation` that
escapes the app before the response started (also inside an exception
group, as task groups raise it; also past the 500 that a Starlette or
FastAPI app wrapped from outside, ``PurposeGuardMiddleware(app)``, sends
for it before re-raising: wrapped so, a complete 500 waits until the app
returns, a background task of its included, and an app's handler that
answers every exception with another status answers violations too, as
does one for ``OSError`` or ``PermissionError``: a violation is a
``PermissionError``; the function it stopped did not run either way)
becomes a 403 with a JSON body naming rule,
purpose and category (``"rule": null, "decided_by": "policy default"`` when
no rule matched and the policy's default denied; see
``_server.violation_body``); every other exception passes through. On a
WebSocket, a violation before the connection is accepted is refused the same
way (the 403 through the server's ``websocket.http.response`` extension, else
a close, which servers answer with a 403); after it was accepted, the
connection is closed with code 1008 (policy violation), and said.

Pure ASGI: the middleware itself needs no framework; finding routes needs
Starlette (``pip install 'purposeguard[asgi]'``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Generator, Mapping, MutableMapping
from typing import Any

from purposeguard._context import PURPOSE
from purposeguard._errors import PolicyError, PurposeViolation
from purposeguard._labels import foreign_reader, register_foreign
from purposeguard._runtime import require_purpose_key
from purposeguard._state import remember
from purposeguard._walk import _walk
from purposeguard._zones import enter_zone, leave_zone

from . import baggage
from ._server import (
    ASGI_FRAMEWORK_KEYS,
    MARK,
    PathPurposes,
    PurposeCache,
    check_purpose,
    mark_through_partials,
    method_handler,
    resolve_tenant_header,
    route_purpose,
    say_cut_off,
    violation_body,
    violation_in,
)

__all__ = ["PurposeGuardMiddleware", "route_purpose"]

logger = logging.getLogger("purposeguard")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BAGGAGE = b"baggage"
_TRACEPARENT = b"traceparent"
_FUNCTION = "purposeguard.integrations.asgi.PurposeGuardMiddleware"
# The close code for a WebSocket a violation ends after it was accepted (RFC 6455).
WEBSOCKET_POLICY_VIOLATION = 1008
# Requests with no endpoint seen before an app with marked routes is reported.
UNROUTED_BEFORE_WARNING = 20


class PurposeGuardMiddleware:
    """Open a zone per request, set the route's purpose, turn violations into 403s.

    ``tenant_from``: ``callable(scope) -> str | None``, the tenant of the caller the app authenticated.
    ``tenant_header``: a header naming the tenant (none by default: a client can send any header;
    name one only behind a gateway that authenticates callers and sets it). ``tenant_from`` wins.
    ``purposes``: ``{path pattern: purpose}``; ``{name}`` matches one path
    segment, ``*`` part of one, ``**`` anything. Route marks win over patterns.
    ``read_baggage``: read purpose, tenant and zone from incoming baggage (only
    members signed with a baggage key this service holds are read).
    ``status_code``: the status of the response to a violation (403).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tenant_header: str | None = None,
        tenant_from: Callable[[Scope], str | None] | None = None,
        purposes: Mapping[str, str] | None = None,
        read_baggage: bool = True,
        status_code: int = 403,
    ) -> None:
        self.app = app
        self.tenant_header = (
            resolve_tenant_header(tenant_header).encode("latin-1") if tenant_header is not None else None
        )
        self.tenant_from = tenant_from
        self.paths = PathPurposes(purposes)
        self._has_paths = bool(self.paths)
        self._marks = RouteMarks()
        self.read_baggage = read_baggage
        self.status_code = status_code
        self._holds_500 = _wraps_starlette(app)
        _read_connections_as_requests()
        self._cache = PurposeCache()
        # The cache's own dict, read inline: a request from a tenant seen
        # before costs one lookup.
        self._tenants = self._cache.tenants
        self._checked = False
        self._warned_unseen = False
        # Whether the app has marked routes, and whether a router was ever
        # seen picking an endpoint (see _count_unrouted).
        self._marked = False
        self._endpoints_seen = False
        self._unrouted = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            if kind == "lifespan":
                receive = self._on_startup(scope, receive)
            await self.app(scope, receive, send)
            return
        if not self._checked:
            self._check_routes(scope.get("app") or self.app)
        raw_tenant: bytes | None = None
        raw_baggage: list[bytes] | None = None
        traceparent: bytes | None = None
        tenant_header = self.tenant_header
        for name, value in scope.get("headers", ()):
            if name == tenant_header:
                # Twice: refused as a WSGI server's joined value is (PurposeCache.tenant).
                raw_tenant = value if raw_tenant is None else b","
            elif name == _BAGGAGE and self.read_baggage:
                if raw_baggage is None:
                    raw_baggage = [value]
                else:
                    raw_baggage.append(value)
            elif name == _TRACEPARENT:
                # Two traceparents name no one trace: a signature bound to a
                # trace holds in neither.
                traceparent = value if traceparent is None else b""
        incoming = (
            baggage.parse(raw_baggage, traceparent=traceparent)
            if raw_baggage is not None
            else baggage.NOTHING
        )
        if self.tenant_from is not None:
            tenant = baggage.clean_tenant(self.tenant_from(scope), "tenant_from")
        elif raw_tenant:
            # Inline for the bytes a server hands over only (see PurposeCache.tenant).
            tenant = (type(raw_tenant) is bytes and self._tenants.get(raw_tenant)) or self._cache.tenant(
                raw_tenant, "the tenant header"
            )
        else:
            tenant = None
        if tenant is None:
            tenant = incoming.tenant
        key = (self.paths.match(_route_path(scope)) if self._has_paths else None) or incoming.purpose

        started = False
        # A complete 500 from the error middleware of the Starlette or
        # FastAPI app this middleware wraps from outside, which sends it for
        # what it caught and re-raises: held back until the app is done, and
        # replaced by the 403 if what it caught was a violation.
        holds_500 = self._holds_500
        held: list[Message] | None = None

        # Whether a WebSocket connection was closed (by the app or by us).
        closed = False
        if kind == "http" and not holds_500:

            def watch(message: Message) -> Awaitable[None]:
                # Hands back the server's own awaitable: no coroutine of ours
                # per message sent.
                nonlocal started
                if not started and message["type"] == "http.response.start":
                    started = True
                return send(message)

        elif kind == "http":

            def watch(message: Message) -> Awaitable[None]:
                nonlocal started, held
                if held:
                    if (
                        len(held) == 1
                        and message["type"] == "http.response.body"
                        and not message.get("more_body")
                    ):
                        held.append(message)
                        return _HELD
                    # A streamed 500 is the app's own: it goes on as it comes.
                    return _release(held, send, message)
                if message["type"] == "http.response.start":
                    started = True
                    if holds_500 and message.get("status") == 500:
                        held = [message]
                        return _HELD
                return send(message)

        else:

            def watch(message: Message) -> Awaitable[None]:
                # A WebSocket is answered once: accepted, refused with an
                # HTTP response, or closed; a violation after that can only
                # close it (see _refuse_websocket).
                nonlocal started, closed
                sent = message["type"]
                if sent == "websocket.accept":
                    started = True
                elif sent == "websocket.close" or sent == "websocket.http.response.start":
                    closed = True
                return send(message)

        state = enter_zone(tenant, incoming.categories)
        if incoming.several_tenants:
            baggage.mark_zone(state, incoming)
        try:
            # The framework's router writes the endpoint it picked into the
            # scope before calling it: that is where a route's own purpose
            # is read, whatever nesting (included routers, mounted apps,
            # hosts) led there.
            routed = _RoutedScope(scope)
            routed.pg_state = state
            routed.pg_marks = self._marks
            routed.pg_found = self._marks.found
            routed.pg_seen = None
            # Set for the request when there is a purpose to set or one to
            # hide from it; either way the request leaves it as it found it
            # (see below), with whatever purpose the route made current.
            token = PURPOSE.set(key) if key is not None or PURPOSE.get() is not None else None
            try:
                if key is not None and state.categories:
                    check_purpose(key, state, _FUNCTION)
                await self.app(routed, receive, watch)
            except BaseException as error:
                # A violation, or a task group's ExceptionGroup holding one.
                violation = violation_in(error)
                if violation is not None and kind == "websocket" and not closed:
                    await self._refuse_websocket(routed, send, violation, accepted=started)
                    return
                if violation is None or kind != "http" or (started and not held):
                    if held:
                        await _release(held, send)
                    if violation is not None and started:
                        say_cut_off(routed.get("method"), _route_template(routed), violation)
                    raise
                await self._forbid(send, violation)
            else:
                if held:
                    await _release(held, send)
            finally:
                if token is not None:
                    PURPOSE.reset(token)
                elif PURPOSE.get() is not None:
                    # No purpose before the request: none after it either.
                    PURPOSE.set(None)
                seen = routed.pg_seen
                endpoint = dict.get(routed, "endpoint")
                if endpoint is not None and endpoint is not seen:
                    self._unseen_endpoint(endpoint, routed)
                elif not self._endpoints_seen:
                    self._count_unrouted(seen)
        finally:
            leave_zone(state)

    def _count_unrouted(self, seen: Any) -> None:
        """Until a router is first seen picking an endpoint: an app with
        marked routes whose router never tells this middleware (a middleware
        in between hands the router a copy of the scope) would run every
        route without its purpose. Said once, after a few requests."""
        if seen is not None:
            self._endpoints_seen = True
            return
        if not self._marked or self._warned_unseen:
            return
        self._unrouted += 1
        if self._unrouted >= UNROUTED_BEFORE_WARNING:
            self._warned_unseen = True
            logger.warning(
                "purposeguard: %d requests and the router never told the middleware which "
                "endpoint it picked, though the app has routes marked with purposes: their "
                "purposes were not made current. A middleware between PurposeGuardMiddleware "
                "and the router may hand on a copy of the scope: add PurposeGuardMiddleware "
                "after it (innermost), or use the middleware's purposes= path patterns",
                self._unrouted,
            )

    def _unseen_endpoint(self, endpoint: Any, scope: Scope) -> None:
        """A router wrote the endpoint it picked without ``scope.update``:
        a purpose marked on it was not made current. Said once, loudly,
        rather than a route running without its purpose unnoticed."""
        if self._warned_unseen or self._marks.of(endpoint, scope) is None:
            return
        self._warned_unseen = True
        logger.warning(
            "purposeguard: the router wrote the endpoint for %s without scope.update, so the "
            "purpose marked on it was not made current; route marks need a router that "
            "writes its match with scope.update (Starlette's and FastAPI's do); use the "
            "middleware's purposes= path patterns for this router",
            # The template, never the path: a path can quote what a client typed.
            _route_template(scope) or "a request",
        )

    async def _forbid(self, send: Send, error: PurposeViolation, kind: str = "http") -> None:
        """The refusal's response: ``http`` for a request, ``websocket.http``
        for a WebSocket handshake refused through the server's extension."""
        body = violation_body(error)
        await send(
            {
                "type": f"{kind}.response.start",
                "status": self.status_code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode("ascii")),
                ],
            }
        )
        await send({"type": f"{kind}.response.body", "body": body})

    async def _refuse_websocket(
        self, scope: Scope, send: Send, error: PurposeViolation, *, accepted: bool
    ) -> None:
        """A violation in a WebSocket route. Before the connection was
        accepted it is refused as an HTTP request is: the 403 with its JSON
        body where the server offers the ``websocket.http.response``
        extension, else a close, which servers answer with a 403. Once
        accepted, the connection is closed with 1008 (policy violation),
        and said, since the client sees only the close code."""
        if not accepted:
            extensions = scope.get("extensions")
            if isinstance(extensions, Mapping) and "websocket.http.response" in extensions:
                await self._forbid(send, error, "websocket.http")
            else:
                await send({"type": "websocket.close", "code": WEBSOCKET_POLICY_VIOLATION})
            return
        route = _route_template(scope)
        logger.warning(
            "purposeguard: a purpose violation was raised after the WebSocket connection to %s "
            "was accepted (rule %s, purpose %s, category %s): the connection is closed with "
            "code %d (policy violation)",
            route if route is not None else "a route",
            error.rule,
            error.purpose,
            error.category,
            WEBSOCKET_POLICY_VIOLATION,
        )
        await send(
            {"type": "websocket.close", "code": WEBSOCKET_POLICY_VIOLATION, "reason": "purpose violation"}
        )

    # -- route purposes --------------------------------------------------------------

    def _on_startup(self, scope: Scope, receive: Receive) -> Receive:
        """Check the route table when the server starts the app (lifespan)."""

        async def receiving() -> Message:
            message = await receive()
            if message.get("type") == "lifespan.startup" and not self._checked:
                self._check_routes(scope.get("app") or self.app)
            return message

        return receiving

    def _check_routes(self, app: Any) -> None:
        """Every purpose marked on a route of the app the framework exposes
        (``scope["app"]``) must be one the policy defines: a typo or a key a
        later ``configure()`` dropped fails here, loudly, not as a request
        that silently runs without its purpose."""
        self._checked = True
        found = marked_routes(app)
        self._marked = bool(found)
        for where, key in found:
            try:
                require_purpose_key(key)
            except PolicyError as error:
                self._checked = False
                raise PolicyError(
                    f"route {where} is marked with a purpose the policy does not define: {error}"
                ) from None


class _Connection:
    """Label reading for Starlette's and FastAPI's ``Request`` and
    ``WebSocket`` (and the app behind them), handed to a guarded handler or
    service: what the request carries (its scope's own values, what the app
    put in ``request.state`` or ``app.state``, bodies already read), read best
    effort, without the app and its routes, which go far past the walk's
    bounds (a FastAPI route reaches pydantic's schema objects) and hold no
    request data."""

    def labels(self, value: Any, purpose: str | None) -> frozenset[str]:
        return self._read(value, purpose)[0]

    def tenant(self, value: Any) -> str | None:
        return self._read(value, None)[1]

    @staticmethod
    def _read(value: Any, purpose: str | None) -> tuple[frozenset[str], str | None]:
        own = vars(value) if hasattr(value, "__dict__") else {}
        scope = own.get("scope")
        held = [item for key, item in own.items() if key not in ("scope", "app", "_receive", "_send")]
        if isinstance(scope, Mapping):
            held.extend(item for key, item in scope.items() if key not in ASGI_FRAMEWORK_KEYS)
        return _walk(held, purpose, strict=False)

    def label(self, value: Any, categories: frozenset[str], tenant: str | None) -> Any:
        raise TypeError("a request is not data: label the values read from it")

    def strip(self, value: Any) -> Any:
        return value


_CONNECTION = _Connection()


def _read_connections_as_requests() -> None:
    """Starlette's connection and application classes read through :class:`_Connection`."""
    requests = sys.modules.get("starlette.requests")
    applications = sys.modules.get("starlette.applications")
    for found in (getattr(requests, "HTTPConnection", None), getattr(applications, "Starlette", None)):
        if isinstance(found, type) and foreign_reader(found) is None:
            register_foreign(found, _CONNECTION)


def _route_path(scope: Scope) -> str:
    """The path the app routes on: without the ``root_path`` a server or
    proxy mounts the app under (the ASGI path includes it), as the WSGI
    middleware matches ``PATH_INFO`` without ``SCRIPT_NAME`` and as
    Starlette's router strips it."""
    path: str = scope["path"]
    root = scope.get("root_path")
    if not root or not path.startswith(root):
        return path
    if len(path) == len(root):
        return "/"
    return path[len(root) :] if path[len(root)] == "/" else path


def _route_template(scope: Scope) -> str | None:
    """The matched route's template (``/notes/{note}``), never the path
    itself: a path can quote what a client typed (an address, a name)."""
    template = getattr(scope.get("route"), "path", None)
    return template if isinstance(template, str) else None


class _Done:
    """An awaitable that is done at once: what ``send`` returns for a message held back."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # a generator: done at the first step


_HELD = _Done()


async def _release(held: list[Message], send: Send, then: Message | None = None) -> None:
    """Send what was held, in order, once (and ``then``); later messages pass straight on."""
    messages = held[:]
    # Emptied: watch() passes later messages straight on.
    held.clear()
    for message in messages:
        await send(message)
    if then is not None:
        await send(then)


def _wraps_starlette(app: Any) -> bool:
    """Whether ``app`` is a Starlette (or FastAPI) app, or one behind plain
    ASGI middlewares that keep it as ``.app``: its ServerErrorMiddleware is
    then inside this middleware and answers a violation with a 500 first."""
    applications = sys.modules.get("starlette.applications")
    if applications is None:
        return False
    for _ in range(8):
        if isinstance(app, applications.Starlette):
            return True
        app = getattr(app, "app", None)
        if app is None or not callable(app):
            return False
    return False


# Starlette's WebSocketEndpoint methods, in the order a mark on them is read.
_WEBSOCKET_METHODS = ("on_receive", "on_connect", "on_disconnect")


def _route_mark(endpoint: Any, scope: Scope) -> str | None:
    """The purpose marked on what the router picked: a function (also
    behind ``functools.partial``, which Starlette routes to), a class-based
    endpoint (on the class or on the method for this request), or a
    mounted app."""
    key, endpoint = mark_through_partials(endpoint)
    if key is None and isinstance(endpoint, type):
        method = scope.get("method")
        handler = method_handler(endpoint, method) if isinstance(method, str) else None
        if handler is None and scope.get("type") == "websocket":
            # A WebSocketEndpoint: one purpose for the connection, from the
            # first of its methods that is marked.
            for name in _WEBSOCKET_METHODS:
                key = getattr(getattr(endpoint, name, None), MARK, None)
                if isinstance(key, str):
                    return key
        key = getattr(handler, MARK, None) if handler is not None else None
    return key if isinstance(key, str) else None


class RouteMarks:
    """The purpose marked on each endpoint a router picked, looked up once.

    Keyed by the endpoint's id (a mounted ``Router`` is not hashable), with
    the endpoint kept beside its mark so a reused id is never mistaken for
    it. Bounded: past ``LIMIT`` endpoints the oldest eighth is forgotten
    (looked up again when next picked). A class-based endpoint's mark may
    depend on the request's method, so classes are looked up every time.
    """

    LIMIT = 1024

    def __init__(self) -> None:
        self.found: dict[int, tuple[Any, str | None]] = {}

    def of(self, endpoint: Any, scope: Scope) -> str | None:
        found = self.found.get(id(endpoint))
        if found is not None and found[0] is endpoint:
            return found[1]
        key = _route_mark(endpoint, scope)
        if not isinstance(endpoint, type):
            remember(self.found, id(endpoint), (endpoint, key), self.LIMIT)
        return key


_dict_update = dict.update
_dict_get = dict.get


class _RoutedScope(dict):  # type: ignore[type-arg]
    """The request's scope, passed down in place of the server's: it sees
    the router write ``endpoint`` (Starlette's and FastAPI's routers write
    a match into the scope with ``scope.update``) and makes the endpoint's
    purpose current before the endpoint runs (and for its streamed body and
    background tasks, which run in the same context).

    Only ``update`` is watched: every other write stays the dict's own,
    which a request makes several of (a FastAPI request about ten).
    """

    __slots__ = ("pg_state", "pg_marks", "pg_found", "pg_seen")
    pg_state: Any
    pg_marks: RouteMarks
    pg_found: dict[int, tuple[Any, str | None]]
    # The last endpoint seen written with update: one written some other way
    # is found when the request ends and reported (see _unseen_endpoint).
    pg_seen: Any

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        if kwargs:
            _dict_update(self, other, **kwargs)
        else:
            _dict_update(self, other)
        endpoint = _dict_get(self, "endpoint")
        if endpoint is not None:
            self.pg_seen = endpoint
            found = self.pg_found.get(id(endpoint))
            key = found[1] if found is not None and found[0] is endpoint else self.pg_marks.of(endpoint, self)
            if key is not None:
                # Reset with the rest of the request's context by the middleware.
                PURPOSE.set(key)
                if self.pg_state.categories:
                    check_purpose(key, self.pg_state, _FUNCTION)


def marked_routes(app: Any) -> list[tuple[str, str]]:
    """``(route, purpose)`` for each marked route reachable from ``app``
    through the route tables Starlette and FastAPI expose (``routes`` of an
    app, router, ``Mount`` or ``Host``; FastAPI's included routers)."""
    found: list[tuple[str, str]] = []
    seen: set[int] = set()

    def walk(node: Any, prefix: str, depth: int) -> None:
        if node is None or depth > 32 or id(node) in seen:
            return
        seen.add(id(node))
        key = getattr(node, MARK, None)
        if isinstance(key, str):
            found.append((prefix or "/", key))
        routes = getattr(node, "routes", None)
        if not isinstance(routes, list):
            router = getattr(node, "router", None)
            routes = getattr(router, "routes", None) if router is not None else None
        if not isinstance(routes, list):
            return
        for route in routes:
            # FastAPI keeps an included router's prefix on its include context.
            included = getattr(getattr(route, "include_context", None), "prefix", "")
            path = prefix + str(getattr(route, "path", "") or included or "")
            endpoint = getattr(route, "endpoint", None)
            if endpoint is not None:
                key = _route_mark(endpoint, {}) or _method_marks(endpoint)
                if key is not None:
                    found.append((path or "/", key))
            # Mount and Host hold an app; FastAPI's include_router keeps the
            # included router itself.
            for inner in (getattr(route, "app", None), getattr(route, "original_router", None)):
                if inner is not None and inner is not endpoint:
                    walk(inner, path, depth + 1)
            walk_routes = getattr(route, "routes", None)
            if isinstance(walk_routes, list) and getattr(route, "app", None) is None:
                walk(route, path, depth + 1)

    walk(app, "", 0)
    return found


def _method_marks(endpoint: Any) -> str | None:
    if not isinstance(endpoint, type):
        return None
    for name in ("get", "post", "put", "patch", "delete", "head", "options", *_WEBSOCKET_METHODS):
        key = getattr(getattr(endpoint, name, None), MARK, None)
        if isinstance(key, str):
            return key
    return None
