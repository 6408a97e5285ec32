"""WSGI middleware: a zone and a purpose per request (Flask, any WSGI app).

>>> from flask import Flask
>>> from purposeguard.integrations.wsgi import init_app, route_purpose
>>> app = Flask(__name__)
>>> middleware = init_app(app, purposes={"/admin/**": "service.operations"})

The same behaviour as the ASGI middleware: a zone per request with the
tenant (``tenant_from(environ)``, a header only where named with ``tenant_header``, or signed baggage) and the categories
of incoming W3C baggage, the route's purpose current for the whole request
(streamed bodies included: the response iterable runs in the request's
context), and a violation that escapes the app becomes a 403 with a JSON
body naming rule, purpose and category. Flask turns unhandled exceptions
into 500s itself, so :func:`init_app` also registers an error handler.

The middleware needs no framework; :func:`init_app` needs Flask
(``pip install 'purposeguard[flask]'``).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MethodType
from typing import Any

from purposeguard._context import PURPOSE, ZONE, ZoneState
from purposeguard._errors import PurposeViolation
from purposeguard._state import remember
from purposeguard._zones import drop_zone, enter_zone, leave_zone

from . import baggage
from ._server import (
    EXCEPTION_GROUP,
    PathPurposes,
    PurposeCache,
    check_purpose,
    resolve_tenant_header,
    route_purpose,
    say_cut_off,
    view_mark,
    violation_body,
    violation_in,
    wire_bytes,
)

__all__ = ["PurposeGuardMiddleware", "init_app", "route_purpose"]

logger = logging.getLogger("purposeguard")

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
Resolver = Callable[[Environ], "str | None"]

_NOT_FOUND = object()
_END: Any = object()
_FUNCTION = "purposeguard.integrations.wsgi.PurposeGuardMiddleware"


class PurposeGuardMiddleware:
    """Open a zone per request, set the route's purpose, turn violations into 403s.

    Options as for the ASGI middleware, plus ``resolver``: a callable
    ``(environ) -> purpose | None`` that finds the route's purpose
    (remembered per method, path and host). On Flask, :func:`init_app`
    needs none: it reads the route from Flask's own URL match.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        tenant_header: str | None = None,
        tenant_from: Callable[[Environ], str | None] | None = None,
        purposes: Mapping[str, str] | None = None,
        resolver: Resolver | None = None,
        read_baggage: bool = True,
        status_code: int = 403,
    ) -> None:
        self.app = app
        self.environ_key = (
            "HTTP_" + resolve_tenant_header(tenant_header).upper().replace("-", "_")
            if tenant_header is not None
            else None
        )
        self.tenant_from = tenant_from
        self.paths = PathPurposes(purposes)
        self._has_paths = bool(self.paths)
        self.resolver = resolver
        self.read_baggage = read_baggage
        self.status = f"{status_code} Forbidden" if status_code == 403 else f"{status_code} Purpose Violation"
        self._cache = PurposeCache()
        # The cache's own dict, read inline: a request from a tenant seen
        # before costs one lookup.
        self._tenants = self._cache.tenants
        # Run before each request until one has reached the app: init_app
        # checks Flask views registered after it here (Flask refuses new
        # views only once a request reached it, not when this middleware
        # answered the first ones itself).
        self._before_first_request: Callable[[], None] | None = None
        # init_app's route marks: on Flask they set the route's purpose, and
        # check the request's purpose, once Flask has matched the URL.
        self._flask_marks: FlaskRouteMarks | None = None

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        check = self._before_first_request
        if check is not None:
            check()
        raw_baggage = environ.get("HTTP_BAGGAGE") if self.read_baggage else None
        incoming = (
            baggage.parse(wire_bytes(raw_baggage), traceparent=environ.get("HTTP_TRACEPARENT"))
            if raw_baggage
            else baggage.NOTHING
        )
        if self.tenant_from is not None:
            tenant = baggage.clean_tenant(self.tenant_from(environ), "tenant_from")
        else:
            raw_tenant = environ.get(self.environ_key) if self.environ_key is not None else None
            tenant = (
                # The inline lookup for the str a server hands over only: a
                # labelled str equal to a known tenant is validated (refused).
                (
                    (type(raw_tenant) is str and self._tenants.get(raw_tenant))
                    or self._cache.tenant(raw_tenant, "the tenant header")
                )
                if raw_tenant
                else None
            )
        if tenant is None:
            tenant = incoming.tenant
        resolving = self.resolver is not None or self._has_paths
        key = (self._route_purpose(environ) if resolving else None) or incoming.purpose

        # The request runs in a context of its own: the server iterates the
        # body after __call__ returned, and each step re-enters this context.
        context = contextvars.copy_context()
        response = _Response(start_response, context)
        try:
            return context.run(self._start, tenant, incoming, key, environ, response)
        except BaseException as error:
            violation = violation_in(error)
            if violation is None:
                raise
            refusal = violation_body(violation)
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(refusal)))]
            if response.write is None:
                start_response(self.status, headers)
            else:
                # The app wrote part of its body already (write()): the
                # server says whether it can still replace the response.
                start_response(self.status, headers, sys.exc_info())
            if response.result is None:
                # The app itself raised: nothing of it to close, its zone left.
                return [refusal]
            # The refusal in place of the app's body, which the server's
            # close() still closes (in the zone, which ends then); a
            # response dropped unclosed does so when collected.
            response.steps = iter((refusal,))
            response.__class__ = _RefusedResponse
            return response

    def _start(
        self,
        tenant: str | None,
        incoming: baggage.Incoming,
        key: str | None,
        environ: Environ,
        response: _Response,
    ) -> _Response:
        state = response.state = enter_zone(tenant, incoming.categories)
        if incoming.several_tenants:
            baggage.mark_zone(state, incoming)
        try:
            marks = self._flask_marks
            if marks is not None:
                # The request's purpose is checked by the route marks once
                # Flask has matched the URL, and only where no mark replaces
                # it: they find the request's zone by its opener.
                state.opener = marks if key is None else (marks, key)
                try:
                    # The app's own attributes, kept by the marks: a lookup
                    # of __dict__ and a method call fewer per request.
                    installed = marks.app_attributes["preprocess_request"] is marks.head
                except KeyError:
                    installed = False
                if not installed:
                    marks.install()
            if key is not None:
                # Never reset: the context belongs to this request alone.
                PURPOSE.set(key)
                if marks is None:
                    check_purpose(key, state, _FUNCTION)
            result = self.app(environ, response.start_response)
        except BaseException:
            _leave(state)
            raise
        self._before_first_request = None
        response.result = result
        first: Any = None
        try:
            iterator = iter(result)
            if response.write is None:
                # The body's first non-empty chunk, in this same entry into
                # the request's context (the server asks for it next anyway):
                # a refusal up to here is the 403 in place of the response,
                # the app's status and headers still held.
                first = next(iterator, _END)
                while not first:
                    first = next(iterator, _END)
                if response.status is not None:
                    # send(), inline: a call fewer on every request.
                    response.write = response.server(response.status, response.headers)
        except BaseException as error:
            if violation_in(error) is None:
                # The server gets the error, not this response: the app's
                # close() and the zone's end are here. The app's error is the
                # one the server sees.
                response.done[0] = True
                try:
                    _finish(result, state)
                except Exception:  # noqa: BLE001 - the app's error comes first
                    logger.debug("purposeguard: the app's close() failed after its body did", exc_info=True)
            raise
        steps = response.steps = _body(
            response.context, iterator, first, result, state, environ, response.done
        )
        # Started, so that a body dropped before its end (a test client's
        # response never read to the end nor closed) still runs the end: a
        # generator not started yet closes without running anything.
        next(steps)
        return response

    def _route_purpose(self, environ: Environ) -> str | None:
        path = environ.get("PATH_INFO", "") or "/"
        # The Host is part of the route (Flask's host_matching, subdomains).
        route = (
            environ.get("REQUEST_METHOD"),
            environ.get("SCRIPT_NAME", ""),
            path,
            environ.get("HTTP_HOST") or environ.get("SERVER_NAME"),
        )
        cached = self._cache.routes.get(route, _NOT_FOUND)
        if cached is not _NOT_FOUND:
            return cached  # type: ignore[return-value]
        key = self.resolver(environ) if self.resolver is not None else None
        if key is None and self._has_paths:
            key = self.paths.match(path)
        return self._cache.remember(route, key)


def _leave(state: ZoneState) -> None:
    try:
        leave_zone(state)
    except Exception:  # noqa: BLE001 - never fail a response over bookkeeping
        logger.debug("purposeguard could not close a request zone", exc_info=True)


class _Response:
    """What the server gets for a request, and the ``start_response`` the app
    is given.

    The status and headers the app gives are held, and handed to the
    server's own ``start_response`` once the body's first non-empty chunk is
    known (or at the app's first ``write()``): until then PEP 3333 lets them
    be replaced, and a refusal is the server's first call. (Servers differ
    in what a second call with ``exc_info`` does: gunicorn adds the new
    headers to the app's, two Content-Lengths a proxy rejects.)

    Iterating it steps the app's body (a generator: the server steps it with
    no call from C into Python per chunk); its ``close()`` runs the app's in
    the request's context, after the server wrote the end of the response,
    as PEP 3333 has it."""

    __slots__ = ("server", "context", "status", "headers", "write", "result", "state", "steps", "done")

    def __init__(self, server: StartResponse, context: contextvars.Context) -> None:
        self.server = server
        self.context = context
        self.status: str | None = None
        self.headers: Any = None
        # The server's write(), once the held status and headers went to it.
        self.write: Callable[[bytes], Any] | None = None
        self.result: Iterable[bytes] | None = None
        self.state: ZoneState | None = None
        self.steps: Iterator[bytes] = _NO_STEPS
        # Whether the app's close() ran: shared with the body's steps (a
        # list, not this object, so that the two make no reference cycle).
        self.done = [False]

    def start_response(self, status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], Any]:
        if exc_info is not None and self.write is not None:
            # Sent already: PEP 3333 has the error raised again.
            raise exc_info[1].with_traceback(exc_info[2])
        self.status = status
        self.headers = headers
        return self._written

    def send(self) -> None:
        if self.write is None and self.status is not None:
            self.write = self.server(self.status, self.headers)

    def _written(self, data: bytes) -> Any:
        self.send()
        if self.write is None:
            raise AssertionError("write() before start_response()")
        return self.write(data)

    def __iter__(self) -> Iterator[bytes]:
        return self.steps

    def __next__(self) -> bytes:
        # For a server or client that steps the result without iter().
        return next(self.steps)

    def close(self) -> None:
        done = self.done
        if done[0]:
            return
        done[0] = True
        self.context.run(_finish, self.result, self.state)


class _RefusedResponse(_Response):
    """A refusal in place of the app's body: rare, so it may pay for a
    finaliser (a test client's response never closed still closes the
    app's body and ends the zone)."""

    __slots__ = ()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - nothing to tell a finaliser
            logger.debug("purposeguard could not close a dropped response body", exc_info=True)


_NO_STEPS: Iterator[bytes] = iter(())


def _body(
    context: contextvars.Context,
    iterator: Iterator[bytes],
    first: Any,
    result: Iterable[bytes],
    state: ZoneState,
    environ: Environ,
    done: list[bool],
) -> Iterator[bytes]:
    """The app's response body, each step in the request's context. The
    zone ends with the body (the app's ``close()`` is the server's
    ``close()``, after the end of the response went out); a body closed or
    dropped before its end closes the app's body too."""
    try:
        # Where _start leaves it: from here a close or the finaliser runs
        # the ends below.
        yield b""
        if first is not _END:
            if first is not None:
                # The first non-empty chunk, stepped with the app's call.
                yield first
            while True:
                try:
                    # The end as a value, not a StopIteration through the
                    # context switch.
                    chunk = context.run(next, iterator, _END)
                except PurposeViolation as violation:
                    # The status went out with the first chunk: the server
                    # cuts the response off.
                    rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
                    say_cut_off(environ.get("REQUEST_METHOD"), getattr(rule, "rule", None), violation)
                    raise
                if chunk is _END:
                    break
                yield chunk
    except GeneratorExit:
        # Closed or dropped before its end, and the app's close() not run
        # yet (a test client's response never closed): run it here.
        if not done[0]:
            done[0] = True
            try:
                context.run(_finish, result, state)
            except Exception:  # noqa: BLE001 - nothing to tell a finaliser
                logger.debug("purposeguard could not close a dropped response body", exc_info=True)
        raise
    finally:
        if state.token is not None:
            # The body's end (or its error) ends the zone. In the request's
            # context where the zone has repeats to report (they are the
            # request's); else nothing in drop_zone reads the context, and
            # an entry into it costs about as much as drop_zone itself.
            try:
                if state.flows:
                    context.run(drop_zone, state)
                else:
                    drop_zone(state)
            except Exception:  # noqa: BLE001 - never fail a response over bookkeeping
                logger.debug("purposeguard could not close a request zone", exc_info=True)


def _finish(result: Iterable[bytes] | None, state: ZoneState | None) -> None:
    try:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    finally:
        if state is not None and state.token is not None:
            try:
                # The context is this request's own and ends here.
                drop_zone(state)
            except Exception:  # noqa: BLE001 - never fail a response over bookkeeping
                logger.debug("purposeguard could not close a request zone", exc_info=True)


# -- Flask ----------------------------------------------------------------------------


def _view_mark(view: Any, method: str | None) -> str | None:
    """The purpose marked on a Flask view (see :func:`_server.view_mark`)."""
    return view_mark(view, method, "dispatch_request")


def flask_resolver(app: Any) -> Resolver:
    """The purpose marked on the Flask view a request is routed to, found
    with a URL match of its own (blueprints' views included: Flask keeps them
    all in ``view_functions``). For a middleware in front of a Flask app that
    :func:`init_app` did not install; :func:`init_app` reads Flask's own match
    instead, which costs no second match per distinct path."""

    def resolve(environ: Environ) -> str | None:
        try:
            endpoint, _ = app.url_map.bind_to_environ(environ).match()
        except Exception:  # noqa: BLE001 - 404/405/redirects: no route, no purpose
            return None
        view = app.view_functions.get(endpoint)
        return _view_mark(view, environ.get("REQUEST_METHOD")) if view is not None else None

    return resolve


# A class-based view whose mark depends on the request's method.
_BY_METHOD = "(by method)"


class FlaskRouteMarks:
    """Makes the purpose marked on the view Flask routed a request to current.

    Installed as the app's ``preprocess_request``, in front of Flask's own:
    after Flask matched the URL (its one match per request: a route with
    path parameters is not matched again per distinct path), before the
    app's URL value preprocessors and ``before_request`` hooks and before the
    view. Not one of the URL value preprocessors: Flask hands those the
    endpoint and view arguments through its request proxy, which cost a
    minimal route about 3% of its requests per second. Acts once, in the
    zone of a request its middleware opened: a ``test_request_context``, or
    a request a view dispatches inside its own, gets nothing set. A marked
    route's purpose replaces the one the middleware set from a ``purposes``
    pattern or baggage, which is then never checked; an unmarked route's is
    checked here. A violation is the 403 at once (Flask's error handlers, a
    blueprint's catch-all among them, are not asked). The mark is looked up
    once per endpoint and view (a view replaced in ``view_functions`` is
    looked up again); bounded like the other caches.
    """

    LIMIT = 4096

    def __init__(self, app: Any, middleware: PurposeGuardMiddleware) -> None:
        from flask import request

        self.app = app
        # The same dict as long as the app lives (CPython keeps an
        # instance's __dict__ once made): where the app's
        # preprocess_request is looked for before each request.
        self.app_attributes: dict[str, Any] = app.__dict__
        self.request: Any = request
        self.found: dict[str, tuple[Any, str | None]] = {}
        self.status = int(middleware.status.split()[0])
        # The link these marks put in front last: the app's
        # preprocess_request while no one replaced it.
        self.head: Callable[[], Any] | None = None

    def install(self) -> None:
        """In front of the app's ``preprocess_request`` (behind the route
        marks of other middlewares on the same app, if any), put back if the
        app or an extension replaced it: a route must not run without its
        purpose unnoticed."""
        head = self.app_attributes.get("preprocess_request")
        current = head
        # Bounded: each install adds one link, and a chain this long is an
        # app re-installing in a loop, not marks to look for.
        for _ in range(64):
            # A bound method's own type, not anything that passes
            # __self__ through (a wrapt proxy an extension put in front
            # must not read as these marks' link).
            if type(current) is not MethodType:
                break
            link = current.__self__
            if type(link) is not _MarksFirst:
                break
            if link.marks is self:
                return
            current = link.inner
        # A new link in front of whatever is there now, never a change to a
        # link installed before: an extension that saved the old head and
        # calls it from its replacement reaches these marks again further
        # down, where they find nothing left to do (one mark per request).
        # The link's bound method, not the link: Flask calls it without the
        # slot call an instance's __call__ costs.
        self.head = self.app.preprocess_request = _MarksFirst(self, head).run

    def _key(self, endpoint: str) -> str | None:
        view = self.app.view_functions.get(endpoint)
        found = self.found.get(endpoint)
        if found is not None and found[0] is view:
            key = found[1]
        else:
            key = self._mark(view)
            remember(self.found, endpoint, (view, key), self.LIMIT)
        if key is _BY_METHOD:
            return _view_mark(view, self.request.method)
        return key

    def _refuse(self, violation: PurposeViolation) -> None:
        from flask import abort

        # An HTTPException carrying its response: Flask sends it as it is.
        abort(_flask_refusal(violation, self.status))

    @staticmethod
    def _mark(view: Any) -> str | None:
        """The view's mark where the method does not decide it, else _BY_METHOD."""
        if view is None:
            return None
        key = _view_mark(view, None)
        if key is None and getattr(view, "view_class", None) is not None:
            return _BY_METHOD
        return key


class _MarksFirst:
    """The app's ``preprocess_request`` (its :meth:`run`): the route marks,
    then what was there before them. Never changed once installed (see
    :meth:`FlaskRouteMarks.install`)."""

    __slots__ = ("marks", "inner")

    def __init__(self, marks: FlaskRouteMarks, inner: Callable[[], Any] | None) -> None:
        self.marks = marks
        # None: the app's class's own, looked up per request, so a patch of
        # the class made after init_app (an APM's) still runs.
        self.inner = inner

    def run(self) -> Any:
        marks = self.marks
        # The request's zone (its opener is these marks, with the purpose of
        # a path pattern or the caller's baggage if there is one), current or
        # under a zone the app opened inside it. Once per request: a request
        # a view dispatches inside its own, or Flask's hooks run again on a
        # request kept after it ended, find nothing to do. Inline, not a
        # method of the marks: a call fewer on every request.
        state = current = ZONE.get()
        fallback = None
        while current is not None:
            opener = current.opener
            if opener is marks:
                break
            if type(opener) is tuple and opener[0] is marks:
                fallback = opener[1]
                break
            current = current.parent
        if current is not None:
            current.opener = None
            # The request itself, once (Flask documents the proxy's
            # _get_current_object): each attribute read through the proxy
            # costs a lookup of its own.
            rule = marks.request._get_current_object().url_rule
            key = None
            if rule is not None:
                # The marks' _key, its cache hit inline.
                endpoint = rule.endpoint
                view = marks.app.view_functions.get(endpoint)
                found = marks.found.get(endpoint)
                if found is not None and found[0] is view and found[1] is not _BY_METHOD:
                    key = found[1]
                else:
                    key = marks._key(endpoint)
            token = None
            if key is not None:
                # In the request's own context (the middleware runs the app
                # in one): current until the response's body is done.
                token = PURPOSE.set(key)
            else:
                key = fallback
            # state is the zone the walk started from, so it is set whenever
            # current is (mypy cannot follow the walk).
            if key is not None and state.categories:  # type: ignore[union-attr]
                try:
                    check_purpose(key, state, _FUNCTION)
                except PurposeViolation as violation:
                    if token is not None:
                        PURPOSE.reset(token)
                    marks._refuse(violation)
        inner = self.inner
        if inner is None:
            app = marks.app
            return type(app).preprocess_request(app)
        return inner()


def _flask_refusal(violation: PurposeViolation, status: int) -> Any:
    """The Flask response to a violation: the JSON body of the 403."""
    from flask import Response

    return Response(violation_body(violation), status=status, mimetype="application/json")


def check_flask_routes(app: Any) -> None:
    """Every purpose marked on a view of ``app`` must be one the policy
    defines; raises :class:`~purposeguard.PolicyError` naming the route."""
    from purposeguard._errors import PolicyError
    from purposeguard._runtime import require_purpose_key

    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        if view is None:
            continue
        for method in sorted(rule.methods or ()) or [None]:
            key = _view_mark(view, method)
            if key is None:
                continue
            try:
                require_purpose_key(key)
            except PolicyError as error:
                raise PolicyError(
                    f"route {method or ''} {rule.rule} is marked with a purpose the policy does not define: {error}"
                ) from None


def _prepare_flask(app: Any, forbid: Callable[[Exception], Any]) -> None:
    """Before the first request, when every blueprint is registered (Flask
    refuses one later): the routes' purposes are checked, and a violation
    is the 403 wherever Flask would otherwise answer it with something else.

    Flask asks a blueprint's own error handlers before the app's, so a
    blueprint's ``errorhandler(Exception)`` would take a violation raised in
    its views: the 403 handler is added to each blueprint with handlers.
    A violation raised where Flask's own 500 answers it (an ``after_request``
    hook, an error handler of the app, pydantic's wrapped refusal in
    production, where exceptions do not propagate) is the 403 too, unless
    the app answers server errors itself (a 500 handler, or one for
    ``HTTPException`` or ``Exception``): then that is the app's answer.
    """
    check_flask_routes(app)
    from werkzeug.exceptions import InternalServerError

    spec = app.error_handler_spec
    answers_500 = False
    for name, by_code in list(spec.items()):
        handlers = by_code.get(None)
        if name is None:
            # The app's own; a blueprint's apply to its requests, and Flask asks them first.
            answers_500 = bool(by_code.get(500)) or any(
                issubclass(InternalServerError, caught) for caught in handlers or ()
            )
            continue
        if handlers:
            handlers.setdefault(PurposeViolation, forbid)
            if EXCEPTION_GROUP is not None:
                handlers.setdefault(EXCEPTION_GROUP, forbid)
    if not answers_500:

        def forbid_server_error(error: Any) -> Any:
            original = getattr(error, "original_exception", None)
            violation = violation_in(original) if isinstance(original, BaseException) else None
            return error if violation is None else forbid(violation)

        app.register_error_handler(InternalServerError, forbid_server_error)


def init_app(app: Any, **options: Any) -> PurposeGuardMiddleware:
    """Install the middleware on a Flask app and answer violations with a 403.

    Options are those of :class:`PurposeGuardMiddleware`; routes marked with
    ``@route_purpose``/``@pg.purpose`` get their purpose once Flask has
    matched the URL: before the app's URL value preprocessors,
    ``before_request`` hooks and the view (Flask opens the session and sends
    ``request_started`` before that, under the purpose of a ``purposes``
    pattern or of the caller's baggage, if any). A route's mark replaces
    that purpose, which is then never checked; a violation at that point is
    the 403 at once, whatever error handlers the app has.
    """
    from . import require

    # Without Flask, an ImportError that names the extra to install.
    require("flask", "flask")
    middleware = PurposeGuardMiddleware(app.wsgi_app, **options)
    app.wsgi_app = middleware
    status = int(middleware.status.split()[0])

    def forbid(error: Exception) -> Any:
        violation = violation_in(error)
        if violation is None:
            raise error  # an exception group without a violation: Flask's own 500
        return _flask_refusal(violation, status)

    # Views registered later (blueprints after init_app) are checked before
    # the first request is served (by the middleware: a before_request hook
    # would cost every request a call); those registered already, now.
    check_flask_routes(app)
    if middleware.resolver is None:
        # From Flask's own URL match, in front of the app's
        # preprocess_request: a resolver in the middleware would match every
        # distinct path (each id of a route with parameters) a second time.
        marks = FlaskRouteMarks(app, middleware)
        marks.install()
        middleware._flask_marks = marks
    middleware._before_first_request = functools.partial(_prepare_flask, app, forbid)
    app.register_error_handler(PurposeViolation, forbid)
    if EXCEPTION_GROUP is not None:
        # Flask looks handlers up by the exception's class: a violation raised
        # in a task group arrives as an ExceptionGroup.
        app.register_error_handler(EXCEPTION_GROUP, forbid)
    return middleware
