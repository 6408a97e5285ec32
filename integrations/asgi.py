"""ASGI middleware: a zone and a purpose per request (Starlette, FastAPI, any ASGI app).

>>> from starlette.applications import Starlette
>>> from purposeguard.integrations.asgi import PurposeGuardMiddleware, route_purpose
>>> app = Starlette(routes=[...])
>>> app.add_middleware(PurposeGuardMiddleware, purposes={"/admin/**": "service.operations"})

Per HTTP or WebSocket connection the middleware opens a zone with the tenant
(a header, ``x-tenant`` by default, or ``tenant_from(scope)``) and the
categories arriving in W3C baggage, and makes the route's purpose current for
the whole request, streaming bodies and background tasks included. The
route's purpose comes from ``@route_purpose``/``@pg.purpose`` on its
endpoint (Starlette routing), else from the ``purposes`` path patterns, else
from the caller's baggage. A :class:`~purposeguard.PurposeViolation` that
escapes the app before the response started (also inside an exception
group, as task groups raise it) becomes a 403 with a JSON body naming rule,
purpose and category (``"rule": null, "decided_by": "policy default"`` when
no rule matched and the policy's default denied; see
``_server.violation_body``); every other exception passes through.

Pure ASGI: the middleware itself needs no framework; finding routes needs
Starlette (``pip install 'purposeguard[asgi]'``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from purposeguard._context import PURPOSE
from purposeguard._errors import PurposeViolation

from . import baggage
from ._server import (
    MARK,
    PathPurposes,
    PurposeCache,
    enter_purpose,
    resolve_tenant_header,
    route_purpose,
    violation_body,
    violation_in,
)

__all__ = ["PurposeGuardMiddleware", "route_purpose"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BAGGAGE = b"baggage"
_FUNCTION = "purposeguard.integrations.asgi.PurposeGuardMiddleware"
_NOT_FOUND = object()


class PurposeGuardMiddleware:
    """Open a zone per request, set the route's purpose, turn violations into 403s.

    ``tenant_header``: the header naming the tenant (``x-tenant``).
    ``tenant_from``: ``callable(scope) -> str | None``, used instead of the header.
    ``purposes``: ``{path pattern: purpose}``; ``{name}`` matches one path
    segment, ``*`` part of one, ``**`` anything. Route marks win over patterns.
    ``read_baggage``: read purpose, tenant and zone from incoming baggage.
    ``status_code``: the status of the response to a violation (403).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tenant_header: str = "x-tenant",
        tenant_from: Callable[[Scope], str | None] | None = None,
        purposes: Mapping[str, str] | None = None,
        read_baggage: bool = True,
        status_code: int = 403,
    ) -> None:
        self.app = app
        self.tenant_header = resolve_tenant_header(tenant_header).encode("latin-1")
        self.tenant_from = tenant_from
        self.paths = PathPurposes(purposes)
        self.read_baggage = read_baggage
        self.status_code = status_code
        self._cache = PurposeCache()
        self._router: Any = _NOT_FOUND

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        raw_tenant: bytes | None = None
        raw_baggage: list[bytes] | None = None
        raw_host: bytes | None = None
        tenant_header = self.tenant_header
        for name, value in scope.get("headers", ()):
            if name == tenant_header:
                raw_tenant = value
            elif name == b"host":
                raw_host = value
            elif name == _BAGGAGE and self.read_baggage:
                if raw_baggage is None:
                    raw_baggage = [value]
                else:
                    raw_baggage.append(value)
        incoming = baggage.parse(raw_baggage) if raw_baggage is not None else baggage.NOTHING
        if self.tenant_from is not None:
            tenant = baggage.clean_tenant(self.tenant_from(scope), "tenant_from")
        else:
            tenant = self._cache.tenant(raw_tenant, "the tenant header") if raw_tenant else None
        if tenant is None:
            tenant = incoming.tenant
        key = self._route_purpose(scope, raw_host) or incoming.purpose

        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with self._cache.zone(tenant, incoming.categories) as state:
            try:
                if key is None:
                    await self.app(scope, receive, watch)
                else:
                    token = enter_purpose(key, state, _FUNCTION)
                    try:
                        await self.app(scope, receive, watch)
                    finally:
                        PURPOSE.reset(token)
            except BaseException as error:
                # A violation, or a task group's ExceptionGroup holding one.
                violation = violation_in(error)
                if violation is None or started or kind != "http":
                    raise
                await self._forbid(send, violation)

    async def _forbid(self, send: Send, error: PurposeViolation) -> None:
        body = violation_body(error)
        await send(
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode("ascii")),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    # -- route purposes --------------------------------------------------------------

    def _route_purpose(self, scope: Scope, host: bytes | None) -> str | None:
        # The Host is part of the route: Starlette's Host routing (and any
        # router matching on it) sends one path to different endpoints.
        route = (scope["type"], scope.get("method"), scope.get("root_path", ""), scope["path"], host)
        cached = self._cache.routes.get(route, _NOT_FOUND)
        if cached is not _NOT_FOUND:
            return cached  # type: ignore[return-value]
        key = self._endpoint_purpose(scope) or (self.paths.match(scope["path"]) if self.paths else None)
        return self._cache.remember(route, key)

    def _endpoint_purpose(self, scope: Scope) -> str | None:
        router = self._router
        if router is _NOT_FOUND:
            router = self._router = _find_router(self.app)
        if router is None:
            router = _find_router(scope.get("app"))
            if router is None:
                return None
        return _match(router.routes, scope, depth=0)


def _find_router(app: Any) -> Any:
    """The Starlette router below ``app`` (through middleware), or None."""
    for _ in range(64):
        if app is None:
            return None
        routes = getattr(app, "routes", None)
        if isinstance(routes, list) and hasattr(app, "url_path_for"):
            return app
        router = getattr(app, "router", None)
        if router is not None and isinstance(getattr(router, "routes", None), list):
            return router
        app = getattr(app, "app", None)
    return None


def _match(routes: list[Any], scope: Scope, depth: int) -> str | None:
    if depth > 8:
        return None
    try:
        from starlette.routing import Match
    except ImportError:  # a router-like object without Starlette: no route marks
        return None
    for route in routes:
        try:
            match, child = route.matches(scope)
        except Exception:  # noqa: BLE001 - a route that cannot match this scope
            continue
        if match is not Match.FULL:
            continue
        endpoint = getattr(route, "endpoint", None)
        if endpoint is not None:
            return getattr(endpoint, MARK, None)
        inner = getattr(route, "routes", None)
        if isinstance(inner, list):
            return _match(inner, {**scope, **child}, depth + 1)
        return None
    return None
