"""``PurposeGuardMiddleware``: a zone per request, the tenant after authentication, 403 on violations.

Incoming W3C baggage is read as the ASGI and WSGI middlewares read it
(``integrations.baggage``: only members signed with a key this service
holds; one warning per request for the rest): the caller's zone categories
seed the request's zone, the caller's purpose is current until a view
declared for a purpose of its own runs, and the caller's tenant is the
request's unless ``tenant_from`` names one."""

from __future__ import annotations

import html
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import Token
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from purposeguard._context import PURPOSE, ZONE, ZoneState
from purposeguard._errors import PurposeViolation
from purposeguard._zones import current_zone, enter_zone, leave_zone, set_tenant

from .. import _server, baggage
from . import _settings

__all__ = ["PurposeGuardMiddleware"]

_REQUEST_ZONE = "_purposeguard_zone"
# What the request's signed baggage said (baggage.NOTHING when it said nothing).
_INCOMING = "_purposeguard_incoming"
_FUNCTION = "purposeguard.integrations.django.PurposeGuardMiddleware"

logger = logging.getLogger("purposeguard")


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
        except BaseException:
            _close(state, token)
            raise
        if getattr(response, "streaming", False):
            return _streamed_within(request, response, state, token)
        _close(state, token)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponse]] = self.get_response
        state, token = _open(request)
        try:
            response = await get_response(request)
        except BaseException:
            _close(state, token)
            raise
        if getattr(response, "streaming", False):
            return _streamed_within(request, response, state, token)
        _close(state, token)
        return response

    def process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: Any) -> HttpResponse | None:
        # A streamed response runs its content after the view returned: it is
        # produced under the view's purpose too (see _streamed_within).
        key = _view_mark(view, request.method)
        if key is not None:
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


def _view_mark(view: Any, method: str | None) -> str | None:
    """The purpose marked on the view Django resolved (see
    :func:`_server.view_mark`); ``@method_decorator(pg.purpose(...))``
    copies the mark onto the method it makes."""
    return _server.view_mark(view, method, "dispatch")


def _streamed_within(
    request: HttpRequest, response: Any, state: ZoneState, token: Token[str | None] | None
) -> Any:
    """A streamed response's body, run in the request's zone and under the
    request's purpose (the view's declared one, else the caller's, else
    none), as the ASGI and WSGI middlewares run one: each chunk, and the
    body's close (a client gone mid-stream runs the generator's ``finally``
    there). A chunk that reads declared fields for a purpose that may not
    have them is refused (the stream stops) instead of being sent unseen.
    The zone stays open, out of this context, until the body ends or is
    closed: a zone counted closed is one a reconfiguration may switch zone
    checks off under while the body still reads."""
    # This context goes back to the server (a WSGI thread serves the next
    # request in it): the caller's purpose and the zone leave it now.
    if token is not None:
        PURPOSE.reset(token)
    if not isinstance(response, StreamingHttpResponse):
        # Streaming by its own account but not Django's class: nothing to step through.
        leave_zone(state)
        return response
    zone_token = state.token
    state.token = None
    if zone_token is not None:
        ZONE.reset(zone_token)
    # Said if a chunk is refused (see say_cut_off): the pattern, not the path.
    route = getattr(getattr(request, "resolver_match", None), "route", None)
    body = _Body(
        state,
        getattr(request, _VIEW_PURPOSE, None),
        (request.method, route if isinstance(route, str) else None),
        response,
    )
    if response.is_async:
        response.streaming_content = _AsyncSteps(body)
    else:
        response.streaming_content = _Steps(body)
    return response


# Bodies whose zone is still open. Django's ASGI handler leaves a response a
# client abandoned in a reference cycle; the collector may finalise the
# view's generator in it before the steps wrapping it, outside the zone.
# Held here, the view's generator is closed by its steps' close, in the zone.
_BODIES: set[_Body] = set()


class _Body:
    """What a streamed body runs within: the request's zone and purpose, the
    closers the response had when the view returned (its content's own
    close first among them), and the zone's one close."""

    __slots__ = ("state", "key", "where", "inner", "response", "closers", "pending")

    def __init__(
        self, state: ZoneState, key: str | None, where: tuple[Any, str | None], response: Any
    ) -> None:
        self.state = state
        self.key = key
        self.where = where
        # The view's own iterator, not Django's map over it: closing it is
        # what runs its ``finally``.
        self.inner: Any = response._iterator
        # Weakly: the response holds this body, and a cycle would keep an
        # abandoned async body from being finalised (its close, see
        # _AsyncSteps) until the cycle collector runs.
        self.response = weakref.ref(response)
        # Django closes a response by calling these in order, the content's
        # (registered when the view built the response) first: taken over so
        # they run here, in the zone, before anything else sees the close.
        closers: list[Callable[[], Any]] = response._resource_closers
        self.closers = list(closers)
        closers.clear()
        # The zone, until it is closed: popped once, by whichever end comes first.
        self.pending = [state]
        _BODIES.add(self)

    def run_closers(self) -> None:
        """The closers the response had, in the zone under the purpose."""
        closers, self.closers = self.closers, []
        zone_token, purpose_token = ZONE.set(self.state), PURPOSE.set(self.key)
        try:
            for closer in closers:
                # As HttpResponseBase.close: one closer's error stops none of the others.
                try:
                    closer()
                except Exception as error:  # noqa: BLE001 - Django drops them too
                    # Its type only: its message may quote what the closer held,
                    # and purposeguard's own records are not checked against the zone.
                    logger.debug(
                        "purposeguard: a streamed response's closer failed (%s)", type(error).__name__
                    )
        finally:
            PURPOSE.reset(purpose_token)
            ZONE.reset(zone_token)

    def close_within(self) -> None:
        """The closers, then the zone's close."""
        try:
            self.run_closers()
        finally:
            self.finish()

    def finish(self) -> None:
        """Close the request's zone, once (the body ended, or was closed)."""
        try:
            state = self.pending.pop()
        except IndexError:
            return
        _BODIES.discard(self)
        # Entered again here: the context the middleware opened it in has
        # moved on, and leave_zone closes a zone in the context at hand.
        state.token = ZONE.set(state)
        try:
            leave_zone(state)
        except Exception:  # noqa: BLE001 - never fail a response over bookkeeping
            logger.debug("purposeguard could not close a request zone", exc_info=True)

    def bytes_of(self, chunk: Any) -> bytes:
        """A chunk as the response encodes it, inside the step (encoding a
        labelled text is a use of it too)."""
        response = self.response()
        if response is None:
            return chunk if isinstance(chunk, bytes) else str(chunk).encode()
        made: bytes = response.make_bytes(chunk)
        return made

    def refused(self, violation: PurposeViolation) -> None:
        _server.say_cut_off(*self.where, violation)


class _Steps:
    """A sync body: each step in the zone under the purpose; its close
    (Django's ``response.close()``, the server's) closes the view's iterator
    there too."""

    __slots__ = ("body",)

    def __init__(self, body: _Body) -> None:
        self.body = body

    def __iter__(self) -> _Steps:
        return self

    def __next__(self) -> bytes:
        body = self.body
        zone_token, purpose_token = ZONE.set(body.state), PURPOSE.set(body.key)
        try:
            return body.bytes_of(next(body.inner))
        except StopIteration:
            body.finish()
            raise
        except PurposeViolation as violation:
            body.refused(violation)
            raise
        finally:
            PURPOSE.reset(purpose_token)
            ZONE.reset(zone_token)

    def close(self) -> None:
        self.body.close_within()

    def __del__(self) -> None:
        # A response dropped unclosed (a middleware answering 304 in its
        # place): the view's iterator is closed in the zone, which closes.
        if self.body.pending:
            self.close()


class _AsyncSteps:
    """An async body: Django steps the generator ``__aiter__`` gives; its
    sync ``close`` is among the response's closers."""

    __slots__ = ("body", "started")

    def __init__(self, body: _Body) -> None:
        self.body = body
        self.started = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._steps()

    async def _steps(self) -> AsyncIterator[bytes]:
        body = self.body
        self.started = True
        inner = body.inner
        try:
            while True:
                zone_token, purpose_token = ZONE.set(body.state), PURPOSE.set(body.key)
                try:
                    chunk = body.bytes_of(await inner.__anext__())
                except StopAsyncIteration:
                    return
                except PurposeViolation as violation:
                    body.refused(violation)
                    raise
                finally:
                    PURPOSE.reset(purpose_token)
                    ZONE.reset(zone_token)
                yield chunk
        finally:
            # Ended, refused, or closed mid-stream (Django's ASGI handler
            # leaves a body a client abandoned to be finalised by the event
            # loop): the view's iterator closes in the zone too.
            zone_token, purpose_token = ZONE.set(body.state), PURPOSE.set(body.key)
            try:
                aclose = getattr(inner, "aclose", None)
                if aclose is not None:
                    await aclose()
            finally:
                PURPOSE.reset(purpose_token)
                ZONE.reset(zone_token)
                body.finish()

    def close(self) -> None:
        if self.started:
            # Its generator closes the zone when it ends or is finalised.
            self.body.run_closers()
        else:
            # Never stepped: nothing of the view's body ran; the zone closes now.
            self.body.close_within()

    def __del__(self) -> None:
        # Dropped unclosed and never stepped (a started one is finalised by
        # the event loop, see _steps).
        if not self.started and self.body.pending:
            self.body.close_within()
