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
framework's router picks (routes of included FastAPI routers, mounted apps
and hosts alike; a mounted app or a class-based endpoint, or one of its
methods, can be marked too), else from the ``purposes`` path patterns, else
from the caller's baggage.
When the server starts the app (or on the first request without lifespan),
every purpose marked on a route reachable from the app is checked against
the policy (an unknown key is a :class:`~purposeguard.PolicyError` then),
and each marked route's ``handle`` is given the making current of its
purpose: the app reads a plain copy of the server's scope (what it writes
there never reaches the server's access log line). Where a route may
run without its ``handle`` (a Starlette route in a FastAPI included router,
which FastAPI runs through a copy), the scope passed down watches the
router's match instead. A marked endpoint that a request ended on without
its purpose (a route added after the routes were read, a router whose route
tables purposeguard cannot read) is said once, and its routes are read
again. A :class:`~purposeguard.PurposeViolation` that
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
a close, which servers answer with a 403; a close on uvicorn's
websockets-sansio implementation too, which logs an error after a denial
response, and said there, since the client sees only the 403); after it was
accepted, the connection is closed with code 1008 (policy violation), and said.

Pure ASGI: the middleware itself needs no framework; finding routes needs
Starlette (``pip install 'purposeguard[asgi]'``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Generator, Mapping, MutableMapping
from typing import Any

from purposeguard._context import FLAGS, PURPOSE, ZONE
from purposeguard._errors import PolicyError, PurposeViolation
from purposeguard._labels import foreign_reader, merge_tenants, register_foreign
from purposeguard._runtime import require_purpose_key
from purposeguard._state import remember
from purposeguard._walk import NO_LABELS, WalkLimit, _walk
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

# Endpoints a middleware remembers as carrying no mark; past it, the oldest are forgotten.
UNMARKED_LIMIT = 1024
# The scope key a marked route's handle writes when it runs: the purpose it
# made current (None for a class-based endpoint's unmarked method).
ROUTE_PURPOSE_KEY = "purposeguard.route_purpose"
_BAGGAGE = b"baggage"
_TRACEPARENT = b"traceparent"
_FUNCTION = "purposeguard.integrations.asgi.PurposeGuardMiddleware"
# The close code for a WebSocket a violation ends after it was accepted (RFC 6455).
WEBSOCKET_POLICY_VIOLATION = 1008
# The scope key holding the server's lifespan state as the request found it
# (see _Connection): those values are the app's, shared by every request.
SHARED_STATE_KEY = "purposeguard.shared_state"


def _header_names(tenant_header: bytes | None) -> frozenset[bytes]:
    """The request headers the middleware reads."""
    names = {_BAGGAGE, _TRACEPARENT}
    if tenant_header is not None:
        names.add(tenant_header)
    return frozenset(names)


class PurposeGuardMiddleware:
    """Open a zone per request, set the route's purpose, turn violations into 403s.

    ``tenant_from``: ``callable(scope) -> str | None``, the tenant of the caller the app authenticated.
    ``tenant_header``: a header naming the tenant (none by default: a client can send any header;
    name one only behind a gateway that authenticates callers and sets it). ``tenant_from`` wins.
    ``purposes``: ``{path pattern: purpose}``; ``{name}`` matches one path
    segment, ``*`` part of one, ``**`` anything (``/admin/**`` covers ``/admin``
    too); a path with a trailing slash matches as the one without. Route
    marks win over patterns.
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
        self.read_baggage = read_baggage
        # The header names a request's scan stops at: one set lookup per
        # header, most of which are none of them.
        self._read_headers = _header_names(self.tenant_header)
        self.status_code = status_code
        self._holds_500 = _wraps_starlette(app)
        _read_connections_as_requests()
        self._cache = PurposeCache()
        # The cache's own dict, read inline: a request from a tenant seen
        # before costs one lookup.
        self._tenants = self._cache.tenants
        self._checked = False
        self._warned_unhooked = False
        # The app the route tables were read from (see _check_routes), and
        # the endpoints requests ended on that carry no mark (by id, with
        # the endpoint: a mounted Router is not hashable; bounded).
        self._routes_of: Any = None
        self._unmarked: dict[int, Any] = {}
        # Whether some marked route may run without its hooked handle (a
        # Starlette route in a FastAPI included router runs through a copy):
        # then each request's scope is a _RoutedScope, which sees the match.
        self._fallback = False
        self._marks = RouteMarks()

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
        read_headers = self._read_headers
        if tenant_header is not None and tenant_header not in read_headers:
            # tenant_header set after __init__.
            read_headers = self._read_headers = _header_names(tenant_header)
        for name, value in scope.get("headers", ()):
            if name not in read_headers:
                continue
            if name == tenant_header:
                # Twice: refused as a WSGI server's joined value is (PurposeCache.tenant).
                raw_tenant = value if raw_tenant is None else b","
            elif name == _BAGGAGE:
                if not self.read_baggage:
                    continue
                if raw_baggage is None:
                    raw_baggage = [value]
                else:
                    raw_baggage.append(value)
            else:
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
            # Set for the request when there is a purpose to set or one to
            # hide from it; either way the request leaves it as it found it
            # (see below), with whatever purpose the route made current
            # (each marked route's handle makes its own current: see
            # _hook_routes).
            token = PURPOSE.set(key) if key is not None or PURPOSE.get() is not None else None
            # A copy: what the app writes into its scope never reaches the
            # server's, from which its access log line is written (a trusted
            # logger's line skips the zone check: see integrations.logging).
            routed: Scope
            if self._fallback:
                watching = _RoutedScope(scope)
                watching.pg_state = state
                watching.pg_marks = self._marks
                routed = watching
            else:
                routed = dict(scope)
            shared = scope.get("state")
            if shared:
                # What the lifespan put there, before the request adds its own (see _Connection).
                routed[SHARED_STATE_KEY] = dict(shared)
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
                # The router writes the endpoint it picked into the scope, and
                # a marked route's handle writes that it ran.
                endpoint = routed.get("endpoint")
                if (
                    endpoint is not None
                    and ROUTE_PURPOSE_KEY not in routed
                    and self._unmarked.get(id(endpoint)) is not endpoint
                ):
                    self._after_endpoint(endpoint, routed)
        finally:
            leave_zone(state)

    def _after_endpoint(self, endpoint: Any, scope: Scope) -> None:
        """The request ended on ``endpoint`` and no marked route's handle ran:
        if it is marked with a purpose, it ran without it (a route added to
        the app after its routes were read, one a router ran without its
        ``handle``, or one picked by a router whose route tables are not
        Starlette's). The routes are read again so a late route has it from
        the next request, and that is said once, loudly, rather than routes
        running without their purpose unnoticed."""
        if (_route_mark(endpoint, {}) or _method_marks(endpoint)) is None:
            remember(self._unmarked, id(endpoint), endpoint, UNMARKED_LIMIT)
            return
        hooked_before = _HOOKED.get(id(endpoint)) is endpoint
        _hook_routes(scope.get("app") or self._routes_of or self.app)
        if hooked_before:
            why = "its route was run without its handle"
        elif _HOOKED.get(id(endpoint)) is endpoint:
            why = "it was added to the app after its routes were read (at startup or the first request)"
        else:
            why = "it was picked by a router whose route tables purposeguard cannot read"
        if hooked_before or _HOOKED.get(id(endpoint)) is not endpoint:
            # From the next request on, the scope itself watches for the match.
            self._fallback = True
        if self._warned_unhooked:
            return
        self._warned_unhooked = True
        logger.warning(
            "purposeguard: the endpoint for %s is marked with a purpose, but %s, so its purpose "
            "was not made current for that request; route marks need the app's Starlette or "
            "FastAPI route tables; use the middleware's purposes= path patterns for routes "
            "they cannot reach",
            # The template, never the path: a path can quote what a client typed.
            _route_template(scope) or "a request",
            why,
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
        extension, else a close, which servers answer with a 403 (also on
        uvicorn's websockets-sansio, see ``_denial_said_as_error``). Once
        accepted, the connection is closed with 1008 (policy violation),
        and said, since the client sees only the close code."""
        if not accepted:
            extensions = scope.get("extensions")
            bare = _denial_said_as_error(send)
            if isinstance(extensions, Mapping) and "websocket.http.response" in extensions and not bare:
                await self._forbid(send, error, "websocket.http")
                return
            if bare:
                # The client sees a bare 403: the refusal is said here instead.
                logger.warning(
                    "purposeguard refused the WebSocket connection to %s before it was accepted "
                    "(rule %s, purpose %s, category %s): closed, which the server answers with a 403",
                    _route_template(scope) or "a route",
                    error.rule,
                    error.purpose,
                    error.category,
                )
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
        app = _routes_owner(app)
        self._routes_of = app
        found = marked_routes(app)
        for where, key in found:
            try:
                require_purpose_key(key)
            except PolicyError as error:
                self._checked = False
                raise PolicyError(
                    f"route {where} is marked with a purpose the policy does not define: {error}"
                ) from None
        if _hook_routes(app):
            self._fallback = True


class _Connection:
    """Label reading for Starlette's and FastAPI's ``Request`` and
    ``WebSocket`` (and the app behind them), handed to a guarded handler or
    service: what the request carries (its scope's own values, bodies
    already read, what the app put in ``request.state``), without the app
    and its routes, which go far past the walk's bounds (a FastAPI route
    reaches pydantic's schema objects) and hold no request data.

    What the server and the framework parsed (headers, bodies, path
    parameters) and what the lifespan put in the state for every request
    (clients, engines: as the middleware found it, ``SHARED_STATE_KEY``) are
    read best effort, as the app's own ``app.state`` is not read at all.
    What the request's code put in ``request.state`` (or set on the
    request itself) is the app's data beside the request: each value is
    walked on a budget of its own, so no value, however large, uses up the
    look at the others (a labelled note after a list of many rows went
    unread); what one value nests past the walk's bounds is said once per
    type, never silent. It is not refused: a request commonly carries
    objects past the bounds (a client a dependency put there) that hold no
    request data, and failing closed on them would refuse every guarded
    call given the request."""

    def labels(self, value: Any, purpose: str | None) -> frozenset[str]:
        return self._read(value, purpose)[0]

    def tenant(self, value: Any) -> str | None:
        return self._read(value, None)[1]

    @staticmethod
    def _read(value: Any, purpose: str | None) -> tuple[frozenset[str], str | None]:
        own = vars(value) if hasattr(value, "__dict__") else {}
        scope = own.get("scope")
        held: list[Any] = []
        own_values: list[Any] = []
        for key, item in own.items():
            if key in _NOT_READ or type(item) in NO_LABELS:
                continue
            # Starlette's own attributes are private; a public one is the app's.
            (held if key.startswith("_") else own_values).append(item)
        state: Any = None
        shared: Any = None
        if isinstance(scope, Mapping):
            state = scope.get("state")
            shared = scope.get(SHARED_STATE_KEY)
            held.extend(
                item
                for key, item in scope.items()
                if key not in ASGI_FRAMEWORK_KEYS and key != "state" and key != SHARED_STATE_KEY
            )
        if not isinstance(shared, dict):
            shared = {}
        if isinstance(state, dict):
            for key, item in list(state.items()):
                if type(item) in NO_LABELS:
                    continue
                if shared.get(key, _ABSENT) is item:
                    held.append(item)
                else:
                    own_values.append(item)
        labels, tenant = _walk(held, purpose, strict=False)
        for item in own_values:
            try:
                found, owner = _walk((item,), purpose)
            except WalkLimit:
                # Read again best effort, which goes on past what it cannot
                # look into: a strict walk stops there.
                found, owner = _walk((item,), purpose, strict=False)
                _say_past_bounds(type(item))
            labels = labels | found
            if owner is not None:
                tenant = merge_tenants(tenant, owner)
        return labels, tenant

    def label(self, value: Any, categories: frozenset[str], tenant: str | None) -> Any:
        raise TypeError("a request is not data: label the values read from it")

    def strip(self, value: Any) -> Any:
        return value


_CONNECTION = _Connection()
_ABSENT = object()
# A connection's attributes that are not request data (``_state`` wraps the
# scope's ``state``, read on its own).
_NOT_READ = frozenset({"scope", "app", "_receive", "_send", "_state"})
# Types of request.state values already said to nest past the walk's bounds (bounded).
_SAID_PAST_BOUNDS: set[str] = set()


def _say_past_bounds(t: type) -> None:
    name = f"{t.__module__}.{t.__qualname__}"
    if name in _SAID_PAST_BOUNDS or len(_SAID_PAST_BOUNDS) >= 256:
        return
    _SAID_PAST_BOUNDS.add(name)
    logger.warning(
        "purposeguard: a %s the app put on a request (request.state) nests past the label walk's "
        "bounds; checks of the request did not look at all of it (a labelled value deep inside "
        "it is not seen there): pass guarded code the values it uses, not the request",
        name,
    )


def _read_connections_as_requests() -> None:
    """Starlette's connection and application classes read through :class:`_Connection`."""
    requests = sys.modules.get("starlette.requests")
    applications = sys.modules.get("starlette.applications")
    for found in (getattr(requests, "HTTPConnection", None), getattr(applications, "Starlette", None)):
        if isinstance(found, type) and foreign_reader(found) is None:
            register_foreign(found, _CONNECTION)


# uvicorn's websockets-sansio implementation (its default for WebSockets)
# sends a denial response but does not count it as the end of the handshake:
# once the app returns it logs "ASGI callable returned without completing
# handshake" as an error, on every refusal (Kludex/uvicorn pull request 3138).
_SANSIO_MODULE = "uvicorn.protocols.websockets.websockets_sansio_impl"


def _denial_said_as_error(send: Send) -> bool:
    """Whether ``send`` is that implementation's own (passed down unwrapped,
    as uvicorn and Starlette's middlewares pass it): a close refuses there
    as cleanly, with the 403 and without the body."""
    return type(getattr(send, "__self__", None)).__module__ == _SANSIO_MODULE


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


# The endpoints and mounted apps whose routes carry a purpose hook (see
# _hook_routes), by id with the object (a mounted Router is not hashable):
# one per marked route of the apps served, which live as long as their app.
_HOOKED: dict[int, Any] = {}
# The attribute a hooked route's handle keeps the endpoint or app it reads its mark from in.
_SOURCE = "_purposeguard_mark_source"


def _hook_routes(app: Any) -> bool:
    """Give every route of ``app`` whose endpoint (or mounted app) is marked
    with a purpose a ``handle`` that makes that purpose current (and checks
    the zone against it) before the route runs: its dependencies, its
    endpoint, its streamed body and background tasks all run inside
    ``handle``. Starlette's and FastAPI's routers call ``route.handle`` for
    the route they picked, whatever nesting (included routers, mounted
    apps, hosts) led there, and however a middleware in between passed the
    scope on. The request's scope stays the server's own dict: a subclass of
    it would cost every read of it (CPython reads a dict subclass's items
    through its methods). Returns whether some marked route may run
    without its handle: a Starlette route (not FastAPI's own) in a FastAPI
    included router, which FastAPI runs through a copy of the route."""
    _, hooks, uncovered = _route_table(app)
    for route, source in hooks:
        _hook_route(route, source)
    return uncovered


def _hook_route(route: Any, source: Any) -> None:
    current = vars(route).get("handle")
    if current is not None and getattr(current, _SOURCE, None) is source:
        return
    unwrapped = getattr(current, "__wrapped__", None) if current is not None else None
    original: Callable[[Scope, Receive, Send], Awaitable[None]] = (
        unwrapped if unwrapped is not None else route.handle
    )
    # A function's or app's mark is read once; a class-based endpoint's
    # depends on the request's method, read per request.
    mark: Any = source if isinstance(source, type) else _route_mark(source, {})

    def handle(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Hands back the route's own awaitable: no coroutine of ours per request.
        key = mark if type(mark) is str else _route_mark(mark, scope)
        scope[ROUTE_PURPOSE_KEY] = key
        if key is not None:
            # Reset with the rest of the request's context by the middleware.
            PURPOSE.set(key)
            state = ZONE.get() if FLAGS.zones else None
            if state is not None and state.categories:
                check_purpose(key, state, _FUNCTION)
        return original(scope, receive, send)

    handle.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(handle, _SOURCE, source)
    route.handle = handle
    _HOOKED[id(source)] = source


def _routes_owner(app: Any) -> Any:
    """The app whose route tables are read: ``app``, or the Starlette or
    FastAPI app behind plain ASGI middlewares that keep it as ``.app``."""
    found = app
    for _ in range(8):
        if isinstance(getattr(found, "routes", None), list) or getattr(found, "router", None) is not None:
            return found
        found = getattr(found, "app", None)
        if found is None or not callable(found):
            return app
    return app


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
_dict_set = dict.__setitem__


class _RoutedScope(dict):  # type: ignore[type-arg]
    """The request's scope, passed down in place of the server's where route
    hooks do not reach every route (see ``PurposeGuardMiddleware._fallback``):
    it sees the router write ``endpoint`` (Starlette's and FastAPI's routers
    write a match into the scope with ``scope.update``, whatever path then
    runs it) and makes the endpoint's purpose current before the endpoint
    runs. It costs every read of the scope (CPython reads a dict subclass's
    items through its methods), so it is the fallback, not the rule.

    Only ``update`` is watched: every other write stays the dict's own,
    which a request makes several of (a FastAPI request about ten).
    """

    __slots__ = ("pg_state", "pg_marks")
    pg_state: Any
    pg_marks: RouteMarks

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        if kwargs:
            _dict_update(self, other, **kwargs)
        else:
            _dict_update(self, other)
        endpoint = _dict_get(self, "endpoint")
        if endpoint is not None:
            key = self.pg_marks.of(endpoint, self)
            if key is not None:
                _dict_set(self, ROUTE_PURPOSE_KEY, key)
                # Reset with the rest of the request's context by the middleware.
                PURPOSE.set(key)
                if self.pg_state.categories:
                    check_purpose(key, self.pg_state, _FUNCTION)


def marked_routes(app: Any) -> list[tuple[str, str]]:
    """``(route, purpose)`` for each marked route reachable from ``app``
    through the route tables Starlette and FastAPI expose (``routes`` of an
    app, router, ``Mount`` or ``Host``; FastAPI's included routers)."""
    return _route_table(app)[0]


def _route_table(app: Any) -> tuple[list[tuple[str, str]], list[tuple[Any, Any]], bool]:
    """The marked routes reachable from ``app`` (``marked_routes``),
    ``(route, source)`` for each route object to hook (``source`` is the
    endpoint or mounted app its purpose is read from), and whether one of
    them may run without its handle (see :func:`_hook_routes`)."""
    found: list[tuple[str, str]] = []
    hooks: list[tuple[Any, Any]] = []
    seen: set[int] = set()
    uncovered = False
    fastapi_routing = sys.modules.get("fastapi.routing")
    fastapi_route = getattr(fastapi_routing, "APIRoute", None)

    def walk(node: Any, prefix: str, depth: int, included: bool = False) -> None:
        nonlocal uncovered
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
            included_prefix = getattr(getattr(route, "include_context", None), "prefix", "")
            path = prefix + str(getattr(route, "path", "") or included_prefix or "")
            endpoint = getattr(route, "endpoint", None)
            handles = callable(getattr(route, "handle", None))
            if endpoint is not None:
                key = _route_mark(endpoint, {}) or _method_marks(endpoint)
                if key is not None:
                    found.append((path or "/", key))
                    if handles:
                        hooks.append((route, endpoint))
                    if included and not (
                        isinstance(fastapi_route, type) and isinstance(route, fastapi_route)
                    ):
                        uncovered = True
            mounted = getattr(route, "app", None)
            if (
                handles
                and mounted is not None
                and mounted is not endpoint
                and endpoint is None
                and _route_mark(mounted, {}) is not None
            ):
                # A Mount or Host of a marked app: the router writes the app as the endpoint.
                hooks.append((route, mounted))
                uncovered = uncovered or included
            # Mount and Host hold an app; FastAPI's include_router keeps the
            # included router itself (and runs its routes its own way).
            if mounted is not None and mounted is not endpoint:
                walk(mounted, path, depth + 1, included)
            original_router = getattr(route, "original_router", None)
            if original_router is not None:
                walk(original_router, path, depth + 1, True)
            walk_routes = getattr(route, "routes", None)
            if isinstance(walk_routes, list) and mounted is None:
                walk(route, path, depth + 1, included)

    walk(app, "", 0)
    return found, hooks, uncovered


def _method_marks(endpoint: Any) -> str | None:
    if not isinstance(endpoint, type):
        return None
    for name in ("get", "post", "put", "patch", "delete", "head", "options", *_WEBSOCKET_METHODS):
        key = getattr(getattr(endpoint, name, None), MARK, None)
        if isinstance(key, str):
            return key
    return None
