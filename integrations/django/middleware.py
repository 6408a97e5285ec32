"""``PurposeGuardMiddleware``: a zone per request, the tenant after authentication, 403 on violations."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from purposeguard._context import PURPOSE, ZONE, ZoneState
from purposeguard._errors import PurposeViolation
from purposeguard._guarded import PURPOSE_MARK
from purposeguard._zones import current_zone, set_tenant, zone

from .. import _server
from . import _settings

__all__ = ["PurposeGuardMiddleware"]

_REQUEST_ZONE = "_purposeguard_zone"


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
    """A zone per request (sync and async), its tenant from ``PURPOSEGUARD["tenant_from"]``
    once the request is authenticated, and a 403 for a :class:`~purposeguard.PurposeViolation`."""

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
        with zone() as state:
            setattr(request, _REQUEST_ZONE, state)
            response = self.get_response(request)
        return _streamed_within(request, response, state)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponse]] = self.get_response
        with zone() as state:
            setattr(request, _REQUEST_ZONE, state)
            response = await get_response(request)
        return _streamed_within(request, response, state)

    def process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: Any) -> HttpResponse | None:
        # A streamed response runs its content after the view returned: it is
        # produced under the view's purpose too (see _streamed_within).
        key = getattr(view, PURPOSE_MARK, None)
        if isinstance(key, str):
            setattr(request, _VIEW_PURPOSE, key)
        # Views run after every middleware's request phase: authentication is done.
        resolver = _settings.LOADED.tenant_from
        if resolver is None:
            return None
        if getattr(request, _REQUEST_ZONE, None) is None and current_zone() is None:
            return None
        tenant = resolver(request)
        if tenant is None:
            return None
        # One request, one tenant: naming another raises PolicyError.
        set_tenant(tenant if isinstance(tenant, str) else str(tenant))
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        error = _server.violation_in(exception)
        if error is None:
            return None
        return forbidden(request, error)


_VIEW_PURPOSE = "_purposeguard_view_purpose"


def _streamed_within(request: HttpRequest, response: Any, state: ZoneState) -> Any:
    """A ``StreamingHttpResponse`` whose view declared a purpose: each chunk
    is produced in the request's zone and under the view's purpose, as the
    view's own code was, so a chunk that reads declared fields for a purpose
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
