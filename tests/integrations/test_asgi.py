"""The ASGI middleware with Starlette and FastAPI, served by uvicorn on loopback
and through each framework's test client."""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI
from purposeguard.integrations.asgi import PurposeGuardMiddleware, route_purpose
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.background import BackgroundTasks as StarletteTasks
from starlette.exceptions import StarletteDeprecationWarning
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

import purposeguard as pg
from purposeguard._walk import MAX_DEPTH, MAX_ITEMS

from .conftest import Signer, sign_baggage

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its test client and warns when it
    # falls back to httpx; either drives the app the same way.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

CONTENT = "customer_data.content.email"


def starlette_app(
    state_of: Callable[[], dict[str, Any]], marker: str, seen: list[dict[str, Any]]
) -> Starlette:
    @route_purpose("service.operations")
    async def ops(request: Request) -> JSONResponse:
        return JSONResponse(state_of())

    async def mapped(request: Request) -> JSONResponse:
        return JSONResponse(state_of())

    async def unmarked(request: Request) -> JSONResponse:
        return JSONResponse(state_of())

    async def leak(request: Request) -> JSONResponse:
        body = pg.label(marker, CONTENT)
        pg.check(body)  # mapped to service.communications: content is denied there
        return JSONResponse({"sent": str(body)})

    async def boom(request: Request) -> JSONResponse:
        raise ValueError("an ordinary bug")

    @route_purpose("service.operations")
    async def stream(request: Request) -> StreamingResponse:
        async def chunks() -> Any:
            for _ in range(3):
                yield json.dumps(state_of()) + "\n"

        return StreamingResponse(chunks(), media_type="application/x-ndjson")

    @route_purpose("service.operations")
    async def later(request: Request) -> JSONResponse:
        def sync_job() -> None:
            seen.append({"job": "sync", **state_of()})

        async def async_job() -> None:
            seen.append({"job": "async", **state_of()})

        tasks = StarletteTasks()
        tasks.add_task(async_job)
        tasks.add_task(sync_job)
        return JSONResponse({"queued": 2}, background=tasks)

    @route_purpose("service.operations")
    async def once(request: Request) -> JSONResponse:
        async def job() -> None:
            seen.append({"job": "single", **state_of()})

        return JSONResponse({"queued": 1}, background=BackgroundTask(job))

    app = Starlette(
        routes=[
            Route("/ops", ops),
            Route("/comms/{item}", mapped),
            Route("/leak", leak),
            Route("/plain", unmarked),
            Route("/boom", boom),
            Route("/stream", stream),
            Route("/later", later),
            Route("/once", once),
        ]
    )
    app.add_middleware(
        PurposeGuardMiddleware,
        tenant_header="x-tenant",
        purposes={"/comms/{item}": "service.communications", "/leak": "service.communications"},
    )
    return app


SEEN: list[dict[str, Any]] = []


@pytest.fixture
def seen() -> list[dict[str, Any]]:
    SEEN.clear()
    return SEEN


@pytest.fixture(scope="module")
def starlette_server(serve_asgi_module: Callable[[Any], Any], state_of: Any, marker: str) -> Any:
    return serve_asgi_module(starlette_app(state_of, marker, SEEN))


@pytest.fixture(params=["testclient", "uvicorn"])
def client(
    request: pytest.FixtureRequest,
    state_of: Callable[[], dict[str, Any]],
    marker: str,
    seen: list[dict[str, Any]],
) -> Iterator[httpx.Client]:
    if request.param == "testclient":
        with TestClient(starlette_app(state_of, marker, seen), raise_server_exceptions=False) as test_client:
            yield test_client
    else:
        server = request.getfixturevalue("starlette_server")
        with httpx.Client(base_url=server.url, timeout=10) as http:
            yield http


def wait_for(items: list[Any], count: int) -> None:
    deadline = time.monotonic() + 10
    while len(items) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_route_purpose_and_tenant_header_reach_the_handler(client: httpx.Client) -> None:
    response = client.get("/ops", headers={"x-tenant": "contoso"})
    assert response.status_code == 200
    assert response.json() == {"purpose": "service.operations", "tenant": "contoso", "zone": []}


def test_path_pattern_sets_the_purpose(client: httpx.Client) -> None:
    assert client.get("/comms/42").json()["purpose"] == "service.communications"


def test_request_without_tenant_header_runs_under_defaults(client: httpx.Client) -> None:
    response = client.get("/plain")
    assert response.status_code == 200
    assert response.json() == {"purpose": None, "tenant": None, "zone": []}


def test_violation_becomes_403_json_naming_rule_purpose_category_not_data(
    client: httpx.Client, marker: str
) -> None:
    with pg.testing.capture() as violations:
        response = client.get("/leak", headers={"x-tenant": "contoso"})
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == "purpose_violation"
    assert body["rule"] == "no-content-in-service-communications"
    assert body["purpose"] == "service.communications"
    assert body["category"] == CONTENT
    assert marker not in response.text
    assert [v.tenant for v in violations] == ["contoso"]


def test_other_exceptions_pass_through_untouched(state_of: Any, marker: str, seen: list[Any]) -> None:
    app = starlette_app(state_of, marker, seen)
    with TestClient(app) as test_client, pytest.raises(ValueError, match="an ordinary bug"):
        test_client.get("/boom")


def test_other_exceptions_are_a_500_from_the_framework_over_uvicorn(client: httpx.Client) -> None:
    response = client.get("/boom")
    assert response.status_code == 500
    assert "purpose_violation" not in response.text


def test_streaming_response_keeps_purpose_tenant_and_zone(client: httpx.Client, signed: Signer) -> None:
    headers = {"x-tenant": "fabrikam", "baggage": signed(zone=CONTENT)}
    with client.stream("GET", "/stream", headers=headers) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert len(lines) == 3
    assert all(
        line == {"purpose": "service.operations", "tenant": "fabrikam", "zone": [CONTENT]} for line in lines
    )


def test_background_tasks_keep_purpose_tenant_and_zone(
    client: httpx.Client, seen: list[dict[str, Any]], signed: Signer
) -> None:
    headers = {"x-tenant": "fabrikam", "baggage": signed(zone=CONTENT)}
    assert client.get("/later", headers=headers).status_code == 200
    assert client.get("/once", headers=headers).status_code == 200
    wait_for(seen, 3)
    expected = {"purpose": "service.operations", "tenant": "fabrikam", "zone": [CONTENT]}
    assert sorted(s.pop("job") for s in seen) == ["async", "single", "sync"]
    assert seen == [expected] * 3


def test_consecutive_requests_do_not_share_zones(client: httpx.Client, signed: Signer) -> None:
    # Requests truly in flight together: test_server_review.py (many at once, mixed routes).
    first = client.get("/ops", headers={"x-tenant": "a", "baggage": signed(zone=CONTENT)}).json()
    second = client.get("/ops", headers={"x-tenant": "b"}).json()
    assert first["zone"] == [CONTENT] and first["tenant"] == "a"
    assert second == {"purpose": "service.operations", "tenant": "b", "zone": []}


def test_baggage_seeds_purpose_tenant_and_zone(client: httpx.Client, signed: Signer) -> None:
    baggage = signed(purpose="service.security", tenant="contoso", zone=CONTENT)
    assert client.get("/plain", headers={"baggage": baggage}).json() == {
        "purpose": "service.security",
        "tenant": "contoso",
        "zone": [CONTENT],
    }


def test_tenant_header_wins_over_baggage_tenant(client: httpx.Client, signed: Signer) -> None:
    response = client.get("/plain", headers={"x-tenant": "contoso", "baggage": signed(tenant="other")})
    assert response.json()["tenant"] == "contoso"


def test_route_purpose_wins_over_baggage_purpose(client: httpx.Client, signed: Signer) -> None:
    response = client.get("/ops", headers={"baggage": signed(purpose="advertising")})
    assert response.json()["purpose"] == "service.operations"


def test_zone_from_baggage_is_checked_against_the_route_purpose_in_trace(
    client: httpx.Client, signed: Signer
) -> None:
    with pg.testing.capture() as violations:
        response = client.get("/comms/1", headers={"baggage": signed(zone=CONTENT)})
    assert response.status_code == 200  # context_mode is trace in the built-in pack
    assert [(v.category, v.purpose, v.via) for v in violations] == [
        (CONTENT, "service.communications", "context")
    ]


def test_zone_from_baggage_is_refused_with_403_when_context_mode_enforces(
    client: httpx.Client, signed: Signer
) -> None:
    pg.configure("trust-center", context_mode="enforce")
    response = client.get("/comms/1", headers={"baggage": signed(zone=CONTENT)})
    assert response.status_code == 403
    assert response.json()["rule"] == "no-content-in-service-communications"
    assert response.json()["via"] == "context"


# -- bad input --------------------------------------------------------------------------


# Malformed members are ignored whether or not a signature comes with them;
# signed values the policy does not define are dropped after the signature holds.
def _signature() -> bytes:
    return b"," + sign_baggage(tenant="someone").split(",")[-1].encode()


BAD_BAGGAGE: dict[str, Callable[[], bytes]] = {
    "wrong percent-encoding": lambda: b"purposeguard.purpose=%FF%FE" + _signature(),
    "not ascii": lambda: "purposeguard.tenant=caf\u00e9".encode("latin-1") + _signature(),
    "unknown key": lambda: b"purposeguard.purpose_override=service.operations",
    "oversized value": lambda: b"purposeguard.zone=" + b"customer_data.content.email%2C" * 150 + _signature(),
    "too many categories": lambda: sign_baggage(zone=[f"customer_data.k{i}" for i in range(70)]).encode(),
    "unknown purpose": lambda: sign_baggage(purpose="service.everything").encode(),
    "unknown category": lambda: sign_baggage(zone="customer_data.content.secret_sauce").encode(),
    "no value": lambda: b"purposeguard.zone" + _signature(),
}


@pytest.mark.parametrize("make", BAD_BAGGAGE.values(), ids=BAD_BAGGAGE.keys())
def test_bad_baggage_is_ignored_with_a_warning(
    client: httpx.Client, make: Callable[[], bytes], caplog: pytest.LogCaptureFixture, signed: Signer
) -> None:
    raw = make()
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        response = client.get("/plain", headers=[(b"baggage", raw)])
    assert response.status_code == 200
    assert response.json() == {"purpose": None, "tenant": None, "zone": []}
    assert any(r.name == "purposeguard" and r.levelno == logging.WARNING for r in caplog.records)


def test_an_oversized_header_of_other_services_is_not_purposeguards_to_judge(
    client: httpx.Client, caplog: pytest.LogCaptureFixture, signed: Signer
) -> None:
    """Past W3C's 8192 bytes with no member of purposeguard's: nothing to
    read and nothing ignored, so nothing said (see test_baggage_limits for
    a signed one, which is read)."""
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        response = client.get("/plain", headers=[(b"baggage", b"x=" + b"a" * 9000)])
    assert response.status_code == 200
    assert response.json() == {"purpose": None, "tenant": None, "zone": []}
    assert not [r for r in caplog.records if r.name == "purposeguard"]


def test_unknown_category_cannot_carry_a_known_one_out_of_the_check(
    client: httpx.Client, signed: Signer
) -> None:
    pg.configure("trust-center", context_mode="enforce")
    baggage = signed(zone=["made_up.thing", CONTENT, "NOT-A-KEY"])
    response = client.get("/comms/1", headers={"baggage": baggage})
    assert response.status_code == 403
    assert response.json()["category"] == CONTENT


def test_bad_baggage_purpose_never_widens_what_the_route_allows(client: httpx.Client, signed: Signer) -> None:
    pg.configure("trust-center", context_mode="enforce")
    baggage = signed(purpose="service.everything", zone=CONTENT)
    response = client.get("/comms/1", headers={"baggage": baggage})
    assert response.status_code == 403


@pytest.mark.parametrize("tenant", ["x" * 300, "bad\ttenant"], ids=["oversized", "unprintable"])
def test_bad_tenant_header_runs_under_defaults_with_a_warning(
    client: httpx.Client, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        response = client.get("/plain", headers={"x-tenant": tenant})
    assert response.status_code == 200
    assert response.json()["tenant"] is None
    assert any(r.name == "purposeguard" for r in caplog.records)


def test_tenant_from_callback_replaces_the_header(state_of: Any) -> None:
    async def show(request: Request) -> JSONResponse:
        return JSONResponse(state_of())

    app = Starlette(routes=[Route("/", show)])
    app.add_middleware(
        PurposeGuardMiddleware, tenant_from=lambda scope: dict(scope["headers"]).get(b"x-org", b"").decode()
    )
    with TestClient(app) as test_client:
        assert test_client.get("/", headers={"x-org": "northwind", "x-tenant": "ignored"}).json()[
            "tenant"
        ] == ("northwind")


def test_unknown_purpose_in_the_path_mapping_fails_at_startup() -> None:
    with pytest.raises(pg.UnknownKeyError):
        PurposeGuardMiddleware(Starlette(), purposes={"/x": "service.everything"})


def test_route_purpose_rejects_unknown_keys() -> None:
    with pytest.raises(pg.UnknownKeyError):
        route_purpose("service.everything")


# -- FastAPI ------------------------------------------------------------------------------


def fastapi_app(state_of: Callable[[], dict[str, Any]], marker: str, seen: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    @pg.purpose("service.operations")
    async def read_item(item_id: int) -> dict[str, Any]:
        return {"item": item_id, **state_of()}

    @app.get("/notify")
    @route_purpose("service.communications")
    async def notify(background_tasks: BackgroundTasks) -> dict[str, Any]:
        background_tasks.add_task(lambda: seen.append(state_of()))
        return state_of()

    @app.get("/mail")
    @route_purpose("service.communications")
    def mail() -> dict[str, str]:  # a sync endpoint: FastAPI runs it in a thread
        body = pg.label(marker, CONTENT)
        pg.check(body)
        return {"sent": str(body)}

    app.add_middleware(PurposeGuardMiddleware, tenant_header="x-tenant")
    return app


@pytest.fixture(scope="module")
def fastapi_server(serve_asgi_module: Callable[[Any], Any], state_of: Any, marker: str) -> Any:
    return serve_asgi_module(fastapi_app(state_of, marker, SEEN))


@pytest.fixture(params=["testclient", "uvicorn"])
def fastapi_client(
    request: pytest.FixtureRequest,
    state_of: Callable[[], dict[str, Any]],
    marker: str,
    seen: list[dict[str, Any]],
) -> Iterator[httpx.Client]:
    if request.param == "testclient":
        with TestClient(fastapi_app(state_of, marker, seen), raise_server_exceptions=False) as test_client:
            yield test_client
    else:
        server = request.getfixturevalue("fastapi_server")
        with httpx.Client(base_url=server.url, timeout=10) as http:
            yield http


def test_fastapi_pg_purpose_endpoint_keeps_its_signature_and_purpose(fastapi_client: httpx.Client) -> None:
    response = fastapi_client.get("/items/7", headers={"x-tenant": "contoso"})
    assert response.json() == {"item": 7, "purpose": "service.operations", "tenant": "contoso", "zone": []}
    assert fastapi_client.get("/items/not-a-number").status_code == 422


def test_fastapi_background_task_keeps_purpose_and_zone(
    fastapi_client: httpx.Client, seen: list[dict[str, Any]], signed: Signer
) -> None:
    response = fastapi_client.get(
        "/notify", headers={"x-tenant": "contoso", "baggage": signed(zone="customer_data")}
    )
    assert response.json()["purpose"] == "service.communications"
    wait_for(seen, 1)
    assert seen == [{"purpose": "service.communications", "tenant": "contoso", "zone": ["customer_data"]}]


def test_fastapi_violation_in_a_sync_endpoint_is_a_403_without_data(
    fastapi_client: httpx.Client, marker: str
) -> None:
    response = fastapi_client.get("/mail")
    assert response.status_code == 403
    assert response.json()["rule"] == "no-content-in-service-communications"
    assert marker not in response.text


def test_violation_in_a_started_stream_is_cut_off_and_said_without_data(
    marker: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Once a streamed body's status is sent it cannot become a 403: the
    response is cut off, and purposeguard says why, naming the route's
    template and the rule, never the path or the value."""

    @route_purpose("service.communications")
    async def digest(request: Request) -> StreamingResponse:
        async def chunks() -> Any:
            yield "first line\n"
            pg.check(pg.label(marker, CONTENT))
            yield "never sent\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    app = Starlette(routes=[Route("/digest/{who}", digest)])
    app.add_middleware(PurposeGuardMiddleware)
    caplog.set_level(logging.WARNING, logger="purposeguard")
    with TestClient(app, raise_server_exceptions=False) as test_client:
        response = test_client.get("/digest/someone-secret")
    assert response.status_code == 200
    assert "never sent" not in response.text
    said = [r.getMessage() for r in caplog.records if "cut off" in r.getMessage()]
    assert len(said) == 1
    assert "GET /digest/{who}" in said[0]
    assert "no-content-in-service-communications" in said[0]
    assert "someone-secret" not in said[0] and marker not in said[0]


@pytest.mark.parametrize("root_path", ["", "/api"])
def test_path_patterns_match_the_path_the_app_routes_on_under_a_root_path(
    state_of: Callable[[], dict[str, Any]], root_path: str
) -> None:
    app = FastAPI()

    @app.get("/comms/{item}")
    async def comms(item: int) -> dict[str, Any]:
        return state_of()

    wrapped = PurposeGuardMiddleware(app, purposes={"/comms/*": "service.communications"})
    # A proxy mounts the app under /api: the ASGI path includes the root path.
    with TestClient(wrapped, root_path=root_path) as test_client:
        response = test_client.get(f"{root_path}/comms/1")
        assert response.status_code == 200
        assert response.json()["purpose"] == "service.communications"


# -- what the app put in request.state, read when the request is handed to guarded code ----------


@pg.purpose("service.communications")
def notify(request: Request) -> str:
    return "sent"


def _state_app(note: object) -> Starlette:
    async def rows_then_note(request: Request) -> JSONResponse:
        # Many rows first, a labelled note after them: one budget for both
        # ran out on the rows, and the note went unread.
        request.state.rows = [{"row": index} for index in range(MAX_ITEMS + 10)]
        request.state.note = note
        return JSONResponse({"sent": notify(request)})

    async def shared_only(request: Request) -> JSONResponse:
        return JSONResponse({"sent": notify(request)})

    app = Starlette(routes=[Route("/rows", rows_then_note), Route("/shared", shared_only)])
    app.add_middleware(PurposeGuardMiddleware)
    return app


def test_a_note_after_many_rows_in_request_state_is_still_checked(
    serve_asgi: Callable[[Any], Any], marker: str, caplog: pytest.LogCaptureFixture
) -> None:
    pg.configure("trust-center", mode="enforce")
    # Read before any request's zone opened (a cache): only the request's state tells of it.
    note = pg.label(marker, CONTENT)
    server = serve_asgi(_state_app(note))
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        for _ in range(2):
            response = httpx.get(server.url + "/rows", timeout=30)
            assert response.status_code == 403, response.text
            assert response.json()["category"] == CONTENT and marker not in response.text
    # What the rows nest past the bounds is said, once for their type.
    said = [r.getMessage() for r in caplog.records if "request.state" in r.getMessage()]
    assert len(said) == 1 and "builtins.list" in said[0], said


def test_what_the_lifespan_put_in_the_state_is_read_as_before(caplog: pytest.LogCaptureFixture) -> None:
    """The lifespan's values (clients, engines) are the app's, shared by
    every request, read best effort as before: not said to be past the
    bounds, and a guarded call given the request runs."""
    pg.configure("trust-center", mode="enforce")
    deep: Any = "bottom"
    for _ in range(MAX_DEPTH + 4):
        deep = {"inner": deep}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        yield {"client": deep}

    app = _state_app("plain")
    app.router.lifespan_context = lifespan
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        with TestClient(app) as test_client:
            response = test_client.get("/shared")
    assert response.status_code == 200 and response.json() == {"sent": "sent"}
    assert not [r for r in caplog.records if "request.state" in r.getMessage()]
