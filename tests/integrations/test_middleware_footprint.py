"""What a request leaves behind and what the middlewares make per request:
the purpose of the caller's context is as it was after a request (whatever
the route made current), a zone makes its lock and memo only when used, and
Flask gets no hook that runs on every request."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import flask
import pytest
import werkzeug.test
from purposeguard.integrations import wsgi
from purposeguard.integrations.asgi import PurposeGuardMiddleware, route_purpose
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import purposeguard as pg
from purposeguard._context import NO_MEMO, ZoneState

OPERATIONS = "service.operations"


def _starlette() -> Any:
    @route_purpose(OPERATIONS)
    async def marked(request: Request) -> JSONResponse:
        return JSONResponse({"purpose": pg.current_purpose()})

    async def unmarked(request: Request) -> JSONResponse:
        return JSONResponse({"purpose": pg.current_purpose()})

    app = Starlette(routes=[Route("/marked", marked), Route("/unmarked", unmarked)])
    app.add_middleware(PurposeGuardMiddleware)
    return app


async def _get(app: Any, path: str) -> dict[str, Any]:
    """One request through the ASGI app, called in the caller's own context
    (as a test client or an embedding server may)."""
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return {"status": sent[0]["status"], **json.loads(sent[1]["body"])}


def test_a_request_leaves_the_callers_purpose_as_it_found_it() -> None:
    pg.configure("trust-center")
    app = _starlette()

    async def scenario() -> list[Any]:
        seen: list[Any] = []
        # No purpose before: the route's purpose does not stay behind.
        seen.append(await _get(app, "/marked"))
        seen.append(pg.current_purpose())
        # A purpose before: hidden from an unmarked route, back afterwards.
        with pg.purpose("service.communications"):
            seen.append(await _get(app, "/unmarked"))
            seen.append(pg.current_purpose())
            seen.append(await _get(app, "/marked"))
            seen.append(pg.current_purpose())
        return seen

    assert asyncio.run(scenario()) == [
        {"status": 200, "purpose": OPERATIONS},
        None,
        {"status": 200, "purpose": None},
        "service.communications",
        {"status": 200, "purpose": OPERATIONS},
        "service.communications",
    ]


def test_a_zone_makes_its_lock_and_memo_only_when_used() -> None:
    pg.configure("trust-center")
    with pg.zone("contoso") as state:
        pass
    assert state._own_lock is None and state.allowed is NO_MEMO and state.flows is None
    # Made on first use, and then the zone's own: reads see the same object.
    assert state._lock is state._lock
    assert state.memo() is state.memo() is state.allowed
    assert state.allowed is not NO_MEMO and not NO_MEMO
    # The shared memo of unused zones cannot be written to by mistake.
    with pytest.raises(TypeError):
        NO_MEMO["service.operations"] = (frozenset(), 0)  # type: ignore[index]
    # A __getattr__ (one way to make them lazily) would cost every attribute
    # read of every zone CPython's fast path.
    assert "__getattr__" not in vars(ZoneState)


def test_threads_sharing_a_zone_share_its_lock_and_memo() -> None:
    pg.configure("trust-center")
    for _ in range(20):
        state = ZoneState("contoso", None)
        start = threading.Barrier(8)
        made: list[tuple[int, int]] = []

        def first_use(
            state: ZoneState = state, start: threading.Barrier = start, made: list[tuple[int, int]] = made
        ) -> None:
            start.wait()
            made.append((id(state._lock), id(state.memo())))

        threads = [threading.Thread(target=first_use) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(made)) == 1, "threads got different locks or memos for one zone"


def test_a_guarded_call_in_a_zone_memoises_in_the_zone_it_ran_in() -> None:
    pg.configure("trust-center")

    @pg.purpose(OPERATIONS)
    def handle(value: str) -> int:
        return len(value)

    with pg.zone("contoso") as state:
        handle(pg.label("someone@example.com", "customer_data.content.email"))
        handle("plain")
    assert OPERATIONS in state.allowed and state.allowed is not NO_MEMO


def test_labels_seen_in_a_used_zone_still_reach_it() -> None:
    pg.configure("trust-center")
    with pg.zone("contoso") as state:
        pg.label("someone@example.com", "customer_data.content.email")
        assert "customer_data.content.email" in state.categories


def test_flask_gets_no_hook_that_runs_on_every_request() -> None:
    pg.configure("trust-center")
    app = flask.Flask("footprint")
    wsgi.init_app(app)

    @app.get("/ops")
    @wsgi.route_purpose(OPERATIONS)
    def ops() -> Any:
        return {"purpose": pg.current_purpose()}

    assert not any(app.before_request_funcs.values())
    client = app.test_client()
    with client.get("/ops") as response:  # closed: its zone closes with it
        assert response.json == {"purpose": OPERATIONS}
    assert not any(app.before_request_funcs.values())


def test_a_wsgi_body_stepped_without_iter_still_runs_in_the_request() -> None:
    pg.configure("trust-center")

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])

        def chunks() -> Any:
            yield (pg.current_purpose() or "none").encode()
            yield (pg.current_tenant() or "nobody").encode()

        return chunks()

    guarded = wsgi.PurposeGuardMiddleware(app, purposes={"/ops": OPERATIONS}, tenant_header="x-tenant")
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/ops", "HTTP_X_TENANT": "contoso"}
    body: Any = guarded(environ, lambda status, headers, exc_info=None: None)
    try:
        assert next(body) == OPERATIONS.encode()
        assert next(body) == b"contoso"
        try:
            next(body)
        except StopIteration:
            pass
        else:
            raise AssertionError("the body must end")
    finally:
        body.close()
        body.close()  # a second close changes nothing
    assert pg.current_zone() is None and pg.current_purpose() is None


def test_a_wsgi_body_iterated_again_does_not_start_over() -> None:
    pg.configure("trust-center")

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello ", b"world"]

    guarded = wsgi.PurposeGuardMiddleware(app)
    body: Any = guarded(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, lambda status, headers, exc_info=None: None
    )
    try:
        first = next(iter(body))
        rest = list(iter(body))  # as a client that peeks at the first chunk does
    finally:
        body.close()
    assert first + b"".join(rest) == b"hello world"
    # Werkzeug's test client iterates a body that way.
    with werkzeug.test.Client(guarded).get("/") as response:
        assert response.get_data() == b"hello world"
