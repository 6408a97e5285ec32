"""``PurposeGuardMiddleware``: a zone per request, the tenant after authentication, 403 on violations.

Incoming W3C baggage is read as the ASGI and WSGI middlewares read it
(``integrations.baggage``: only members signed with a key this service
holds; one warning per request for the rest): the caller's zone categories
seed the request's zone, the caller's purpose is current until a view
declared for a purpose of its own runs, and the caller's tenant is the
request's unless ``tenant_from`` names one."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from contextvars import Token
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from purposeguard._context import PURPOSE, ZONE, ZoneState
from purposeguard._errors import PurposeViolation
from purposeguard._guarded import PURPOSE_MARK
from purposeguard._zones import current_zone, enter_zone, leave_zone, set_tenant

from .. import _server, baggage
from . import _settings

__all__ = ["PurposeGuardMiddleware"]

_REQUEST_ZONE = "_purposeguard_zone"
# What the request's signed baggage said (baggage.NOTHING when it said nothing).
_INCOMING = "_purposeguard_incoming"
_FUNCTION = "purposeguard.integrations.django.PurposeGuardMiddleware"


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    sent = request.headers.get("Content-Type", "")
    return "json" in accept.lower() or "json" in sent.lower()


def _html_page(error: PurposeViolation) -> str:
    rows = "".join(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
            html.escape(v.category or ""),
            html.escape(v.purpose or ""),
            html.escape(v.rule or "policy default"),
            html.escape(v.via or ""),
        )
        for v in error.violations
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>403 Forbidden</title></head>'
        "<body><h1>403 Forbidden</h1><p>This use of data is not allowed by the data-use policy.</p>"
        "<table><thead><tr><th>category</th><th>purpose</th><th>decided by</th><th>via</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></body></html>"
    )


def forbidden(request: HttpRequest, error: PurposeViolation) -> HttpResponse:
    """The 403 for a violation: JSON for JSON requests, an HTML page otherwise; never the data."""
    if _wants_json(request):
        return HttpResponse(_server.violation_body(error), status=403, content_type="application/json")
    return HttpResponse(_html_page(error), status=403, content_type="text/html; charset=utf-8")


class PurposeGuardMiddleware:
    """A zone per request (sync and async) seeded from the caller's signed
    baggage, its tenant from ``PURPOSEGUARD["tenant_from"]`` once the request
    is authenticated (else the baggage's), and a 403 for a
    :class:`~purposeguard.PurposeViolation`."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        state, token = _open(request)
        try:
            response = self.get_response(request)
        finally:
            _close(state, token)
        return _streamed_within(request, response, state)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponse]] = self.get_response
        state, token = _open(request)
        try:
            response = await get_response(request)
        finally:
            _close(state, token)
        return _streamed_within(request, response, state)

    def process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: Any) -> HttpResponse | None:
        # A streamed response runs its content after the view returned: it is
        # produced under the view's purpose too (see _streamed_within).
        key = getattr(view, PURPOSE_MARK, None)
        if isinstance(key, str):
            setattr(request, _VIEW_PURPOSE, key)
        state: ZoneState | None = getattr(request, _REQUEST_ZONE, None)
        incoming: baggage.Incoming = getattr(request, _INCOMING, baggage.NOTHING)
        # Views run after every middleware's request phase: authentication is done.
        resolver = _settings.LOADED.tenant_from
        if resolver is not None and (state is not None or current_zone() is not None):
            # As the ASGI and WSGI middlewares: the application's tenant
            # first, else the one the calling service signed.
            named = resolver(request)
            if isinstance(named, int) and not isinstance(named, bool):
                named = str(named)  # an organisation's primary key, as Django models have them
            # As ASGI and WSGI: an empty, padded or unprintable tenant (an
            # anonymous user's "") is no tenant, said once, never a 500.
            tenant = baggage.clean_tenant(named, "tenant_from")
            if tenant is None:
                tenant = incoming.tenant
            if tenant is not None:
                # One request, one tenant: naming another raises PolicyError.
                set_tenant(tenant)
        if state is not None and incoming.purpose is not None:
            # The caller's purpose against what the caller's zone held, as the
            # ASGI and WSGI middlewares check it before the route runs (a
            # view's own purpose is checked again when it is called); here,
            # once the tenant whose consent applies is known.
            try:
                _server.check_purpose(incoming.purpose, state, _FUNCTION)
            except PurposeViolation as violation:
                return forbidden(request, violation)
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        error = _server.violation_in(exception)
        if error is None:
            return None
        return forbidden(request, error)


_VIEW_PURPOSE = "_purposeguard_view_purpose"


def _incoming(request: HttpRequest) -> baggage.Incoming:
    """The purpose, tenant and zone a calling service signed into the
    request's W3C baggage, read as the WSGI middleware reads them (Django
    hands a header over as the WSGI environ does, latin-1 decoded, several
    joined with commas); one warning per request for what is not read."""
    if not _settings.LOADED.read_baggage:
        return baggage.NOTHING
    meta = request.META
    raw = meta.get("HTTP_BAGGAGE")
    if not raw or not isinstance(raw, str):
        return baggage.NOTHING
    return baggage.parse(_server.wire_bytes(raw), traceparent=meta.get("HTTP_TRACEPARENT"))


def _open(request: HttpRequest) -> tuple[ZoneState, Token[str | None] | None]:
    """The request's zone, opened with what its baggage carried, and the
    caller's purpose made current: (the zone, the purpose's token to reset)."""
    incoming = _incoming(request)
    # tenant_from is asked in process_view, once the request is
    # authenticated; its tenant, if it names one, wins over the baggage's.
    tenant = incoming.tenant if _settings.LOADED.tenant_from is None else None
    state = enter_zone(tenant, incoming.categories)
    baggage.mark_zone(state, incoming)
    setattr(request, _REQUEST_ZONE, state)
    setattr(request, _INCOMING, incoming)
    key = incoming.purpose
    if key is None:
        return state, None
    # The caller's purpose until a view declared for one of its own runs
    # (its @pg.purpose makes its own current): the middlewares after this
    # one, an undeclared view and its streamed body run under it.
    setattr(request, _VIEW_PURPOSE, key)
    return state, PURPOSE.set(key)


def _close(state: ZoneState, token: Token[str | None] | None) -> None:
    # A thread of a WSGI server serves request after request in one context:
    # the caller's purpose must not outlive its request.
    if token is not None:
        PURPOSE.reset(token)
    leave_zone(state)


def _streamed_within(request: HttpRequest, response: Any, state: ZoneState) -> Any:
    """A ``StreamingHttpResponse`` whose view declared a purpose (or whose
    caller's baggage named one): each chunk is produced in the request's
    zone and under that purpose, as the view's own code was, so a chunk that reads declared fields for a purpose
    that may not have them is refused (the stream stops) instead of being
    sent unseen after the view returned."""
    key = getattr(request, _VIEW_PURPOSE, None)
    if key is None or not getattr(response, "streaming", False):
        return response
    # Said if a chunk is refused (see say_cut_off): the pattern, not the path.
    route = getattr(getattr(request, "resolver_match", None), "route", None)
    where = (request.method, route if isinstance(route, str) else None)
    if getattr(response, "is_async", False):
        response.streaming_content = _async_steps(response.streaming_content, state, key, where)
    else:
        response.streaming_content = _steps(response.streaming_content, state, key, where)
    return response


def _steps(chunks: Any, state: ZoneState, key: str, where: tuple[Any, str | None]) -> Any:
    iterator = iter(chunks)
    while True:
        zone_token, purpose_token = ZONE.set(state), PURPOSE.set(key)
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        except PurposeViolation as violation:
            _server.say_cut_off(*where, violation)
            raise
        finally:
            PURPOSE.reset(purpose_token)
            ZONE.reset(zone_token)
        yield chunk


async def _async_steps(chunks: Any, state: ZoneState, key: str, where: tuple[Any, str | None]) -> Any:
    iterator = chunks.__aiter__()
    while True:
        zone_token, purpose_token = ZONE.set(state), PURPOSE.set(key)
        try:
            chunk = await iterator.__anext__()
        except StopAsyncIteration:
            return
        except PurposeViolation as violation:
            _server.say_cut_off(*where, violation)
            raise
        finally:
            PURPOSE.reset(purpose_token)
            ZONE.reset(zone_token)
        yield chunk
