"""The ASGI middleware on WebSocket connections: Starlette and FastAPI apps
served by uvicorn on loopback, driven by a real WebSocket client."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from fastapi import FastAPI, WebSocket
from purposeguard.integrations.asgi import PurposeGuardMiddleware, route_purpose
from starlette.applications import Starlette
from starlette.endpoints import WebSocketEndpoint
from starlette.routing import Mount, WebSocketRoute
from starlette.websockets import WebSocket as StarletteWebSocket
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

import purposeguard as pg

from .conftest import UvicornThread

CONTENT = "customer_data.content.email"


def state() -> dict[str, Any]:
    zone = pg.current_zone()
    return {
        "purpose": pg.current_purpose(),
        "tenant": pg.current_tenant(),
        "closed": None if zone is None else zone.closed,
    }


def read_ticket(marker: str) -> Any:
    return pg.label(marker, CONTENT)


def starlette_app(marker: str) -> Starlette:
    @route_purpose("service.operations")
    async def echo(websocket: StarletteWebSocket) -> None:
        await websocket.accept()
        while True:
            text = await websocket.receive_text()
            if text == "bye":
                await websocket.close()
                return
            await websocket.send_text(json.dumps({"got": text, **state()}))

    @route_purpose("marketing.direct")
    async def before_accept(websocket: StarletteWebSocket) -> None:
        body = read_ticket(marker)  # refused here: nothing was sent yet
        await websocket.accept()
        await websocket.send_text(str(body))

    @route_purpose("marketing.direct")
    async def after_accept(websocket: StarletteWebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.receive_text()
        await websocket.send_text(str(read_ticket(marker)))

    async def unmarked(websocket: StarletteWebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(json.dumps(state()))
        await websocket.close()

    class Feed(WebSocketEndpoint):
        encoding = "text"

        @route_purpose("service.operations")
        async def on_connect(self, websocket: StarletteWebSocket) -> None:
            await websocket.accept()
            await websocket.send_text(json.dumps({"on": "connect", **state()}))

        async def on_receive(self, websocket: StarletteWebSocket, data: Any) -> None:
            await websocket.send_text(json.dumps({"on": "receive", **state()}))

    app = Starlette(
        routes=[
            WebSocketRoute("/echo", echo),
            WebSocketRoute("/before", before_accept),
            WebSocketRoute("/after", after_accept),
            WebSocketRoute("/plain", unmarked),
            Mount("/feeds", routes=[WebSocketRoute("/news", Feed)]),
        ]
    )
    app.add_middleware(PurposeGuardMiddleware, tenant_header="x-tenant")
    return app


def fastapi_app(marker: str) -> FastAPI:
    app = FastAPI()

    @app.websocket("/before")
    @route_purpose("marketing.direct")
    async def before_accept(websocket: WebSocket) -> None:
        body = read_ticket(marker)
        await websocket.accept()
        await websocket.send_text(str(body))

    @app.websocket("/echo")
    @route_purpose("service.operations")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(json.dumps({"got": text, **state()}))

    app.add_middleware(PurposeGuardMiddleware, tenant_header="x-tenant")
    return app


@pytest.fixture(scope="module")
def servers(marker: str) -> Iterator[dict[str, UvicornThread]]:
    # uvicorn's implementation on the websockets package, which offers the
    # websocket.http.response extension a refusal before accept answers with.
    running = {
        "starlette": UvicornThread(starlette_app(marker), ws="websockets-sansio").__enter__(),
        "fastapi": UvicornThread(fastapi_app(marker), ws="websockets-sansio").__enter__(),
    }
    yield running
    for server in running.values():
        server.__exit__()


def url(server: UvicornThread, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


@pytest.fixture
def enforce() -> None:
    pg.configure("trust-center", mode="enforce")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _connections_done(server: UvicornThread) -> None:
    """Wait (bounded) until the server's connection tasks have returned:
    uvicorn says what it thinks of a handshake once the app has returned."""
    deadline = time.monotonic() + 10
    while server.server.server_state.tasks:
        assert time.monotonic() < deadline, "uvicorn's connection tasks did not finish"
        time.sleep(0.01)


@pytest.mark.parametrize("kind", ["starlette", "fastapi"])
def test_violation_before_accept_is_a_clean_403_on_uvicorns_default(
    servers: dict[str, UvicornThread],
    enforce: None,
    kind: str,
    marker: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """uvicorn's websockets-sansio implementation logged "ASGI callable
    returned without completing handshake" as an error after every denial
    response: there the refusal is a close, which it answers with a 403,
    and purposeguard says what was refused."""
    # uvicorn's own logger does not propagate: listen on it directly.
    heard = _Records()
    uvicorn_logger = logging.getLogger("uvicorn.error")
    uvicorn_logger.addHandler(heard)
    try:
        with caplog.at_level(logging.WARNING, logger="purposeguard"):
            with pytest.raises(InvalidStatus) as refused:
                with connect(url(servers[kind], "/before"), open_timeout=10):
                    pass
            _connections_done(servers[kind])
    finally:
        uvicorn_logger.removeHandler(heard)
    assert refused.value.response.status_code == 403
    assert [r.getMessage() for r in heard.records if r.levelno >= logging.ERROR] == []
    said = [r.getMessage() for r in caplog.records if "before it was accepted" in r.getMessage()]
    assert len(said) == 1 and "no-direct-marketing" in said[0] and CONTENT in said[0]
    assert marker not in said[0] and marker not in bytes(refused.value.response.body).decode()


def test_violation_after_accept_closes_with_1008_and_says_so(
    servers: dict[str, UvicornThread], enforce: None, marker: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        with connect(url(servers["starlette"], "/after"), open_timeout=10) as socket:
            assert socket.recv(timeout=10) == "hello"
            socket.send("go")
            with pytest.raises(ConnectionClosed) as closed:
                socket.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert marker not in closed.value.rcvd.reason
    said = [r.getMessage() for r in caplog.records if "WebSocket connection" in r.getMessage()]
    assert len(said) == 1
    assert "/after" in said[0] and "no-direct-marketing" in said[0] and "1008" in said[0]
    assert marker not in said[0]


def test_violation_after_accept_in_trace_mode_is_recorded_and_sent(
    servers: dict[str, UvicornThread], marker: str
) -> None:
    pg.configure("trust-center", mode="trace")
    with pg.testing.capture() as violations:
        with connect(url(servers["starlette"], "/after"), open_timeout=10) as socket:
            assert socket.recv(timeout=10) == "hello"
            socket.send("go")
            assert socket.recv(timeout=10) == marker
    assert [(v.purpose, v.category, v.mode) for v in violations] == [("marketing.direct", CONTENT, "trace")]


@pytest.mark.parametrize("kind", ["starlette", "fastapi"])
def test_route_purpose_and_tenant_hold_for_every_message(
    servers: dict[str, UvicornThread], kind: str
) -> None:
    with connect(
        url(servers[kind], "/echo"), additional_headers={"x-tenant": "contoso"}, open_timeout=10
    ) as socket:
        for count in range(1 if kind == "fastapi" else 20):
            socket.send(f"m{count}")
            seen = json.loads(socket.recv(timeout=10))
            assert seen == {
                "got": f"m{count}",
                "purpose": "service.operations",
                "tenant": "contoso",
                "closed": False,
            }


def test_unmarked_route_runs_without_a_purpose(servers: dict[str, UvicornThread]) -> None:
    with connect(url(servers["starlette"], "/plain"), open_timeout=10) as socket:
        assert json.loads(socket.recv(timeout=10)) == {"purpose": None, "tenant": None, "closed": False}


def test_a_mark_on_on_connect_holds_for_the_whole_connection(servers: dict[str, UvicornThread]) -> None:
    with connect(url(servers["starlette"], "/feeds/news"), open_timeout=10) as socket:
        assert json.loads(socket.recv(timeout=10))["purpose"] == "service.operations"
        socket.send("x")
        assert json.loads(socket.recv(timeout=10)) == {
            "on": "receive",
            "purpose": "service.operations",
            "tenant": None,
            "closed": False,
        }


def test_a_mark_on_on_connect_is_checked_at_startup() -> None:
    class Feed(WebSocketEndpoint):
        @route_purpose("service.operations")
        async def on_connect(self, websocket: StarletteWebSocket) -> None:
            await websocket.accept()

    from purposeguard.integrations.asgi import marked_routes

    app = Starlette(routes=[WebSocketRoute("/feed", Feed)])
    assert marked_routes(app) == [("/feed", "service.operations")]


def test_concurrent_connections_keep_their_own_tenants(servers: dict[str, UvicornThread]) -> None:
    errors: list[str] = []

    def talk(tenant: str) -> None:
        with connect(
            url(servers["starlette"], "/echo"), additional_headers={"x-tenant": tenant}, open_timeout=10
        ) as socket:
            for count in range(30):
                socket.send(f"{tenant}-{count}")
                seen = json.loads(socket.recv(timeout=10))
                if seen["tenant"] != tenant or seen["got"] != f"{tenant}-{count}":
                    errors.append(f"{tenant} saw {seen}")
            socket.send("bye")

    threads = [
        threading.Thread(target=talk, args=(tenant,)) for tenant in ("contoso", "fabrikam", "tailspin")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []


async def _served_in_process(
    app: Any, sent: list[MutableMapping[str, Any]], *, extensions: dict[str, Any] | None = None
) -> list[MutableMapping[str, Any]]:
    """Run ``app`` for one connection as a server without the
    ``websocket.http.response`` extension would (or with the ``extensions``
    given); what it sent, in ``sent``."""
    messages = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "websocket",
        "path": "/ws",
        "root_path": "",
        "headers": [],
        "query_string": b"",
        "subprotocols": [],
    }
    if extensions is not None:
        scope["extensions"] = extensions
    await app(scope, receive, send)
    return sent


async def test_violation_before_accept_without_the_extension_is_a_close() -> None:
    # A server without websocket.http.response: a close before accept, which
    # the server answers with a 403.
    pg.configure("trust-center", mode="enforce")

    @route_purpose("marketing.direct")
    async def refused(websocket: StarletteWebSocket) -> None:
        read_ticket("the body of a ticket")
        await websocket.accept()

    app = Starlette(routes=[WebSocketRoute("/ws", refused)])
    app.add_middleware(PurposeGuardMiddleware)
    assert await _served_in_process(app, []) == [{"type": "websocket.close", "code": 1008}]


async def test_violation_before_accept_with_the_extension_is_the_403_body(marker: str) -> None:
    # A server offering websocket.http.response (other than uvicorn's
    # websockets-sansio): the refusal carries the same JSON body as HTTP's.
    pg.configure("trust-center", mode="enforce")

    @route_purpose("marketing.direct")
    async def refused(websocket: StarletteWebSocket) -> None:
        read_ticket(marker)
        await websocket.accept()

    app = Starlette(routes=[WebSocketRoute("/ws", refused)])
    app.add_middleware(PurposeGuardMiddleware)
    sent = await _served_in_process(app, [], extensions={"websocket.http.response": {}})
    assert [m["type"] for m in sent] == ["websocket.http.response.start", "websocket.http.response.body"]
    assert sent[0]["status"] == 403
    body = json.loads(sent[1]["body"])
    assert (body["error"], body["rule"], body["purpose"], body["category"]) == (
        "purpose_violation",
        "no-direct-marketing",
        "marketing.direct",
        CONTENT,
    )
    assert marker not in sent[1]["body"].decode()


async def test_an_app_that_closed_the_socket_itself_keeps_its_violation(enforce: None, marker: str) -> None:
    # Nothing is left to answer with: the violation goes on to the server.
    @route_purpose("marketing.direct")
    async def closes_first(websocket: StarletteWebSocket) -> None:
        await websocket.accept()
        await websocket.close()
        read_ticket(marker)

    app = Starlette(routes=[WebSocketRoute("/ws", closes_first)])
    app.add_middleware(PurposeGuardMiddleware)
    sent: list[MutableMapping[str, Any]] = []
    with pytest.raises(pg.PurposeViolation):
        await _served_in_process(app, sent)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.close"]
