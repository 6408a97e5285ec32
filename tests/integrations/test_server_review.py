"""Middleware behaviour under real servers: Host-aware route purposes, bad
baggage members dropped one by one, violations inside task groups, the 403
body of a default denial, and many requests in flight at once."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import httpx
import pytest
from flask import Flask, jsonify
from purposeguard.integrations import baggage
from purposeguard.integrations.asgi import PurposeGuardMiddleware, route_purpose
from purposeguard.integrations.wsgi import PurposeGuardMiddleware as WSGIMiddleware
from purposeguard.integrations.wsgi import init_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Host, Route, Router

import purposeguard as pg

from .conftest import Signer, sign_baggage

CONTENT = "customer_data.content.email"
PAYMENT = "payment_data"  # no rule names it for service.operations: the default denies


# -- 6. the Host is part of the route ----------------------------------------------------------


def test_starlette_host_routing_gives_each_host_its_own_purpose(serve_asgi: Callable[[Any], Any]) -> None:
    @route_purpose("service.operations")
    async def ops(request: Request) -> JSONResponse:
        return JSONResponse({"purpose": pg.current_purpose()})

    @route_purpose("service.communications")
    async def comms(request: Request) -> JSONResponse:
        return JSONResponse({"purpose": pg.current_purpose()})

    app = Starlette(
        routes=[
            Host("ops.test", app=Router(routes=[Route("/h", ops)])),
            Host("comms.test", app=Router(routes=[Route("/h", comms)])),
        ]
    )
    app.add_middleware(PurposeGuardMiddleware, tenant_header="x-tenant")
    server = serve_asgi(app)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(2):  # the second round is answered from the cache
            assert client.get("/h", headers={"host": "comms.test"}).json() == {
                "purpose": "service.communications"
            }
            assert client.get("/h", headers={"host": "ops.test"}).json() == {"purpose": "service.operations"}


def test_flask_host_matching_gives_each_host_its_own_purpose(serve_wsgi: Callable[[Any], Any]) -> None:
    from purposeguard.integrations.wsgi import route_purpose as wsgi_route_purpose

    app = Flask("hosts", host_matching=True, static_host="static.test")

    @app.get("/h", host="comms.test", endpoint="comms")
    @wsgi_route_purpose("service.communications")
    def comms() -> Any:
        return jsonify({"purpose": pg.current_purpose()})

    @app.get("/h", host="ops.test", endpoint="ops")
    @wsgi_route_purpose("service.operations")
    def ops() -> Any:
        return jsonify({"purpose": pg.current_purpose()})

    init_app(app, tenant_header="x-tenant")
    server = serve_wsgi(app)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(2):
            assert client.get("/h", headers={"host": "comms.test"}).json() == {
                "purpose": "service.communications"
            }
            assert client.get("/h", headers={"host": "ops.test"}).json() == {"purpose": "service.operations"}


# -- 7. one bad baggage member drops itself, not the zone ----------------------------------------


def test_a_non_ascii_member_does_not_drop_the_zone(signed: Signer) -> None:
    first, *rest = signed(zone=CONTENT, tenant="t").split(",")
    incoming = baggage.parse([f"{first},vendor=caf\u00e9".encode(), ",".join(rest).encode()])
    assert incoming.categories == frozenset({CONTENT}) and incoming.tenant == "t"
    assert incoming.warnings == ()  # another vendor's member is not ours to judge
    # A signed tenant this service cannot use drops itself, not the zone.
    bad = baggage.parse(signed(zone=CONTENT, tenant="bad\ttenant"))
    assert bad.categories == frozenset({CONTENT}) and bad.tenant is None and bad.warnings


def test_a_tampered_member_gives_nothing_at_all(signed: Signer) -> None:
    """A member changed on the way (here: made non-ASCII) voids the signature
    over all three: nothing is read, and a warning says so."""
    header = signed(zone=CONTENT, tenant="t").replace(
        "purposeguard.tenant=t", "purposeguard.tenant=caf\u00e9"
    )
    bad = baggage.parse(header.encode())
    assert (bad.purpose, bad.tenant, bad.categories) == (None, None, frozenset()) and bad.warnings


def test_an_oversized_header_keeps_purposeguard_members(signed: Signer) -> None:
    incoming = baggage.parse(signed(zone=CONTENT) + ",vendor=" + "x" * 9000)
    assert incoming.categories == frozenset({CONTENT})
    assert any("longer than" in w for w in incoming.warnings)


def _raw_get(port: int, path: str, header: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"GET "
            + path.encode()
            + b" HTTP/1.1\r\nhost: x\r\nbaggage: "
            + header
            + b"\r\nconnection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.split(b"\r\n", 1)[0]


@pytest.mark.parametrize(
    "bad_member",
    ["vendor=caf".encode() + "\u00e9".encode(), b"vendor=" + b"x" * 9000],
    ids=["non-ascii member", "oversized header"],
)
def test_the_zone_survives_a_bad_member_over_a_real_server(
    bad_member: bytes, serve_asgi: Callable[[Any], Any], serve_wsgi: Callable[[Any], Any], signed: Signer
) -> None:
    pg.configure("trust-center", context_mode="enforce")

    async def asgi_comms(request: Request) -> JSONResponse:
        return JSONResponse({})

    asgi_app = Starlette(routes=[Route("/comms", route_purpose("service.communications")(asgi_comms))])
    asgi_app.add_middleware(PurposeGuardMiddleware, tenant_header="x-tenant")
    flask_app = Flask("bad-member")

    @flask_app.get("/comms")
    @route_purpose("service.communications")
    def flask_comms() -> Any:
        return jsonify({})

    init_app(flask_app, tenant_header="x-tenant")
    for server in (serve_asgi(asgi_app), serve_wsgi(flask_app)):
        # Content in the caller's zone may not reach communications.
        header = signed(zone=CONTENT).encode() + b"," + bad_member
        assert b" 403 " in _raw_get(server.port, "/comms", header)


# -- 8. violations inside task groups ---------------------------------------------------------------


def _group_app(marker: str) -> Starlette:
    def leak() -> None:
        pg.check(pg.label(marker, CONTENT))

    async def with_anyio(request: Request) -> JSONResponse:
        async with anyio.create_task_group() as group:
            group.start_soon(asyncio.to_thread, leak)
        return JSONResponse({})

    async def with_taskgroup(request: Request) -> JSONResponse:
        async def child() -> None:
            leak()

        async with asyncio.TaskGroup() as group:
            group.create_task(child())
        return JSONResponse({})

    async def mixed(request: Request) -> JSONResponse:
        async def bug() -> None:
            raise ValueError("an ordinary bug")

        async def child() -> None:
            await asyncio.sleep(0)
            leak()

        async with asyncio.TaskGroup() as group:
            group.create_task(child())
            group.create_task(bug())
        return JSONResponse({})

    async def only_bugs(request: Request) -> JSONResponse:
        async def bug() -> None:
            raise ValueError("an ordinary bug")

        async with asyncio.TaskGroup() as group:
            group.create_task(bug())
        return JSONResponse({})

    comms = route_purpose("service.communications")
    app = Starlette(
        routes=[
            Route("/anyio", comms(with_anyio)),
            Route("/taskgroup", comms(with_taskgroup)),
            Route("/mixed", comms(mixed)),
            Route("/bugs", comms(only_bugs)),
        ]
    )
    app.add_middleware(PurposeGuardMiddleware, tenant_header="x-tenant")
    return app


def test_a_violation_in_a_task_group_becomes_a_403(serve_asgi: Callable[[Any], Any], marker: str) -> None:
    server = serve_asgi(_group_app(marker))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for path in ("/anyio", "/taskgroup", "/mixed"):
            response = client.get(path)
            assert response.status_code == 403, path
            assert response.json()["rule"] == "no-content-in-service-communications"
            assert marker not in response.text
        assert client.get("/bugs").status_code == 500  # a group without a violation passes through


def test_a_violation_in_an_exception_group_becomes_a_403_under_wsgi(
    serve_wsgi: Callable[[Any], Any], marker: str
) -> None:
    def leak() -> None:
        pg.check(pg.label(marker, CONTENT))

    def grouped() -> None:
        try:
            leak()
        except pg.PurposeViolation as error:
            raise ExceptionGroup("tasks", [error, ValueError("cut short")]) from None  # noqa: F821

    app = Flask("groups")

    @app.get("/group")
    @route_purpose("service.communications")
    def group() -> Any:
        grouped()
        return jsonify({})

    @app.get("/bugs")
    def bugs() -> Any:
        raise ExceptionGroup("tasks", [ValueError("an ordinary bug")])  # noqa: F821

    init_app(app, tenant_header="x-tenant")

    def bare(environ: dict[str, Any], start_response: Any) -> Any:
        grouped()
        return []

    plain = WSGIMiddleware(bare, purposes={"/**": "service.communications"})
    flask_server, bare_server = serve_wsgi(app), serve_wsgi(plain)
    with httpx.Client(timeout=10) as client:
        for url in (flask_server.url + "/group", bare_server.url + "/x"):
            response = client.get(url)
            assert response.status_code == 403, url
            assert response.json()["category"] == CONTENT and marker not in response.text
        assert client.get(flask_server.url + "/bugs").status_code == 500


# -- 9. a default denial says so ------------------------------------------------------------------


def test_a_default_denial_names_the_policy_default(serve_asgi: Callable[[Any], Any], marker: str) -> None:
    async def pay(request: Request) -> JSONResponse:
        pg.check(pg.label(marker, PAYMENT))
        return JSONResponse({})

    async def comms(request: Request) -> JSONResponse:
        pg.check(pg.label(marker, CONTENT))
        return JSONResponse({})

    app = Starlette(
        routes=[
            Route("/pay", route_purpose("service.operations")(pay)),
            Route("/comms", route_purpose("service.communications")(comms)),
        ]
    )
    app.add_middleware(PurposeGuardMiddleware, tenant_header="x-tenant")
    server = serve_asgi(app)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        default = client.get("/pay").json()
        by_rule = client.get("/comms").json()
    assert (default["rule"], default["decided_by"], default["category"]) == (None, "policy default", PAYMENT)
    assert default["violations"][0]["decided_by"] == "policy default"
    assert (by_rule["rule"], by_rule["decided_by"]) == ("no-content-in-service-communications", "rule")


# -- concurrency --------------------------------------------------------------------------------------


N = 24


def _expected(i: int) -> dict[str, Any]:
    zone = sorted({CONTENT} if i % 3 == 0 else set()) if i % 2 else []
    return {
        "i": i,
        "purpose": "service.operations" if i % 2 else "service.security",
        "tenant": f"t{i}",
        "zone": sorted({*zone, *(["usage_data"] if i % 4 == 1 else [])}),
    }


def _headers(i: int) -> dict[str, str]:
    headers = {"x-tenant": f"t{i}"}
    if i % 4 == 1:
        headers["baggage"] = sign_baggage(zone="usage_data")
    return headers


def test_many_requests_in_flight_at_once_keep_their_own_zones_asgi(
    serve_asgi: Callable[[Any], Any], state_of: Callable[[], dict[str, Any]], signed: Signer
) -> None:
    """N requests, all in the handler at the same time (an event every one waits for)."""
    arrived = 0
    everyone: asyncio.Event | None = None

    async def handle(request: Request) -> JSONResponse:
        nonlocal arrived, everyone
        if everyone is None:
            everyone = asyncio.Event()
        i = int(request.query_params["i"])
        if i % 2 and i % 3 == 0:
            pg.label("x", CONTENT)  # lands in this request's zone only
        arrived += 1
        if arrived == N:
            everyone.set()
        await asyncio.wait_for(everyone.wait(), timeout=10)
        return JSONResponse({"i": i, **state_of()})

    @route_purpose("service.operations")
    async def ops(request: Request) -> JSONResponse:
        return await handle(request)

    @route_purpose("service.security")
    async def sec(request: Request) -> JSONResponse:
        return await handle(request)

    app = Starlette(routes=[Route("/ops", ops), Route("/sec", sec)])
    app.add_middleware(PurposeGuardMiddleware, tenant_header="x-tenant")
    server = serve_asgi(app)

    async def go() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            responses = await asyncio.gather(
                *[
                    client.get(("/ops" if i % 2 else "/sec") + f"?i={i}", headers=_headers(i))
                    for i in range(N)
                ]
            )
        assert all(r.status_code == 200 for r in responses)
        return [r.json() for r in responses]

    assert asyncio.run(go()) == [_expected(i) for i in range(N)]


def test_many_requests_in_flight_at_once_keep_their_own_zones_flask(
    serve_wsgi: Callable[[Any], Any], state_of: Callable[[], dict[str, Any]], signed: Signer
) -> None:
    """werkzeug's threaded server: N threads, all in the view at once (a barrier)."""
    barrier = threading.Barrier(N, timeout=10)
    app = Flask("concurrent")

    def handle(i: int) -> Any:
        if i % 2 and i % 3 == 0:
            pg.label("x", CONTENT)
        barrier.wait()
        return jsonify({"i": i, **state_of()})

    @app.get("/ops/<int:i>")
    @route_purpose("service.operations")
    def ops(i: int) -> Any:
        return handle(i)

    @app.get("/sec/<int:i>")
    @route_purpose("service.security")
    def sec(i: int) -> Any:
        return handle(i)

    init_app(app, tenant_header="x-tenant")
    server = serve_wsgi(app)

    def get(i: int) -> dict[str, Any]:
        with httpx.Client(base_url=server.url, timeout=20) as client:
            response = client.get(("/ops/" if i % 2 else "/sec/") + str(i), headers=_headers(i))
            assert response.status_code == 200
            return dict(response.json())

    with ThreadPoolExecutor(N) as pool:
        assert list(pool.map(get, range(N))) == [_expected(i) for i in range(N)]
