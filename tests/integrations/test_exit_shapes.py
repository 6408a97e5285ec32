"""Every way of calling a guarded client is checked, not only the usual one.

The same request can be written several ways (urllib3's ``urlopen`` with the
URL by keyword, ``http.client`` by keyword, an httpx transport without a
client), and data can leave outside a request body (messages on an aiohttp
WebSocket, a call made from inside a requests response hook). Each case
sends labelled content under a purpose that may not hold it, to a real
loopback server, and must be refused before anything reaches it; allowed
purposes and unlabelled content still go through.
"""

from __future__ import annotations

import asyncio
import http.client
import http.server
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import httpx
import pytest
import requests
import urllib3
from aiohttp import web
from purposeguard.integrations import _unguarded
from purposeguard.integrations import aiohttp as pg_aiohttp
from purposeguard.integrations import http_client as pg_http_client
from purposeguard.integrations import httpx as pg_httpx
from purposeguard.integrations import requests as pg_requests
from purposeguard.integrations import urllib3 as pg_urllib3

import purposeguard as pg

from .test_exit_arguments import CONTENT, SECRET, refused, secret

MODULES = (pg_urllib3, pg_http_client, pg_aiohttp, pg_requests, pg_httpx)


@pytest.fixture(autouse=True)
def guards() -> Iterator[None]:
    pg.configure("trust-center", mode="enforce")
    for module in MODULES:
        module.instrument()
    yield
    for module in MODULES:
        module.uninstrument()
    _unguarded.reset()


# -- urllib3: urlopen however its arguments are given -------------------------------------------

URLOPEN_SHAPES: dict[str, Callable[[Any, Any], Any]] = {
    "method, url=, body=": lambda pool, body: pool.urlopen("POST", url="/x", body=body),
    "method=, url=, body=": lambda pool, body: pool.urlopen(method="POST", url="/x", body=body),
    "url=, method=, body= (any order)": lambda pool, body: pool.urlopen(body=body, url="/x", method="POST"),
    "method, url, body": lambda pool, body: pool.urlopen("POST", "/x", body),
    "method, url, body=": lambda pool, body: pool.urlopen("POST", "/x", body=body),
    "method, url=, body=, extra response keyword": lambda pool, body: pool.urlopen(
        "POST", url="/x", body=body, enforce_content_length=True
    ),
    "method, url=, headers= labelled": lambda pool, body: pool.urlopen(
        "POST", url="/x", headers={"x-preview": body}
    ),
}


@pytest.mark.parametrize("shape", list(URLOPEN_SHAPES))
def test_urllib3_urlopen_is_checked_in_every_argument_shape(recorder: Any, shape: str) -> None:
    pool = urllib3.HTTPConnectionPool("127.0.0.1", recorder.port)
    body = secret()
    refused(lambda: URLOPEN_SHAPES[shape](pool, body))
    assert recorder.received == []


@pytest.mark.parametrize("shape", list(URLOPEN_SHAPES))
def test_urllib3_urlopen_shapes_send_what_is_allowed(recorder: Any, shape: str) -> None:
    pool = urllib3.HTTPConnectionPool("127.0.0.1", recorder.port)
    body = secret()
    with pg.testing.assert_no_violations(), pg.purpose("service.operations"):
        assert URLOPEN_SHAPES[shape](pool, body).status == 200
    (received,) = recorder.received
    assert received.path == "/x"


def test_urllib3_unlabelled_body_by_keyword_is_sent_under_any_purpose(recorder: Any) -> None:
    pool = urllib3.HTTPConnectionPool("127.0.0.1", recorder.port)
    with pg.testing.assert_no_violations(), pg.purpose("advertising"):
        pool.urlopen("POST", url="/x", body=b"spring offers")
    assert [r.body for r in recorder.received] == [b"spring offers"]


def test_urllib3_a_call_urllib3_refuses_sends_nothing(recorder: Any) -> None:
    # Two methods, or no URL: urllib3 refuses these calls, and so does the guard, before sending.
    pool = urllib3.HTTPConnectionPool("127.0.0.1", recorder.port)
    with pg.purpose("service.operations"), pytest.raises(TypeError):
        pool.urlopen("POST", "/x", method="GET", body=secret())  # type: ignore[misc]
    with pg.purpose("service.operations"), pytest.raises(TypeError):
        pool.urlopen("POST", body=secret())  # type: ignore[call-arg]
    assert recorder.received == []


def test_urllib3_arguments_that_cannot_be_read_are_refused_in_enforce_mode(
    recorder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreadable(*args: Any) -> dict[str, Any]:
        raise ValueError("no signature")

    monkeypatch.setattr(pg_urllib3, "bound_arguments", unreadable)
    pool = urllib3.HTTPConnectionPool("127.0.0.1", recorder.port)
    with pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation) as caught:
        pool.urlopen("POST", url="/x", body=b"x")
    assert caught.value.violations[0].via == "egress"
    assert recorder.received == []
    pg.configure("trust-center", mode="trace")
    with pg.testing.capture() as seen, pg.purpose("service.operations"):
        pool.urlopen("POST", url="/x", body=b"x")
    assert [v.mode for v in seen] == ["trace"]
    assert len(recorder.received) == 1


# -- http.client: request() by keyword -----------------------------------------------------------

REQUEST_SHAPES: dict[str, Callable[[http.client.HTTPConnection, Any], None]] = {
    "method=, url=, body=": lambda c, body: c.request(method="POST", url="/x", body=body),
    "method, url=, body=": lambda c, body: c.request("POST", url="/x", body=body),
    "method, url, body=, headers=": lambda c, body: c.request("POST", "/x", body=body, headers={}),
    "method, url, body, headers": lambda c, body: c.request("POST", "/x", body, {}),
    "method, url=, headers= labelled": lambda c, body: c.request("POST", url="/x", headers={"x-a": body}),
    "method, url=, body=, encode_chunked=": lambda c, body: c.request(
        "POST",
        url="/x",
        body=iter([body.encode()]),
        headers={"Transfer-Encoding": "chunked"},
        encode_chunked=True,
    ),
}


@pytest.mark.parametrize("shape", list(REQUEST_SHAPES))
def test_http_client_request_is_checked_in_every_argument_shape(recorder: Any, shape: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", recorder.port, timeout=10)
    body = secret()
    refused(lambda: REQUEST_SHAPES[shape](connection, body))
    connection.close()
    assert recorder.received == []


@pytest.mark.parametrize("shape", list(REQUEST_SHAPES))
def test_http_client_request_by_keyword_works_when_allowed(recorder: Any, shape: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", recorder.port, timeout=10)
    body = secret()
    with pg.testing.assert_no_violations(), pg.purpose("service.operations"):
        REQUEST_SHAPES[shape](connection, body)
        assert connection.getresponse().status == 200
    connection.close()
    assert [r.path for r in recorder.received] == ["/x"]


def test_http_client_get_by_keyword_without_a_body(recorder: Any) -> None:
    for call in (
        lambda c: c.request(method="GET", url="/a"),
        lambda c: c.request("GET", url="/b"),
    ):
        connection = http.client.HTTPConnection("127.0.0.1", recorder.port, timeout=10)
        with pg.testing.assert_no_violations(), pg.purpose("advertising"):
            call(connection)
            assert connection.getresponse().status == 200
        connection.close()
    assert [r.path for r in recorder.received] == ["/a", "/b"]


def test_http_client_putrequest_and_send_by_keyword_are_checked(recorder: Any) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", recorder.port, timeout=10)
    body = secret()

    def by_hand() -> None:
        connection.putrequest(method="POST", url="/x")
        connection.putheader("Content-Length", str(len(SECRET)))
        connection.endheaders()
        connection.send(data=body.encode())

    refused(by_hand)
    connection.close()
    # The headers went out with endheaders(); the body never did.
    assert all(SECRET.encode() not in r.body for r in recorder.received)


# -- aiohttp: messages on a client WebSocket ---------------------------------------------------


class WebSocketServer:
    """An aiohttp web server with one WebSocket route that records each message."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            self.messages.append(message.data)
        return ws

    async def __aenter__(self) -> WebSocketServer:
        app = web.Application()
        app.router.add_get("/ws", self.handler)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"ws://{host}:{self.port}/ws"


Send = Callable[[aiohttp.ClientWebSocketResponse, Any], Awaitable[Any]]

WS_SENDS: dict[str, Send] = {
    "send_str": lambda ws, value: ws.send_str(value),
    "send_str by keyword": lambda ws, value: ws.send_str(data=value),
    "send_bytes": lambda ws, value: ws.send_bytes(value.encode()),
    "send_json": lambda ws, value: ws.send_json({"body": [value]}),
    "send_json with dumps": lambda ws, value: ws.send_json({"body": value}, dumps=json.dumps),
}
if hasattr(aiohttp.ClientWebSocketResponse, "send_frame"):
    WS_SENDS["send_frame"] = lambda ws, value: ws.send_frame(value.encode(), aiohttp.WSMsgType.TEXT)
if hasattr(aiohttp.ClientWebSocketResponse, "send_json_bytes"):
    WS_SENDS["send_json_bytes"] = lambda ws, value: ws.send_json_bytes(
        {"body": value}, dumps=lambda data: json.dumps(data).encode()
    )


async def over_websocket(
    server: WebSocketServer, purpose: str, value: Any, send: Send, host: str = "127.0.0.1"
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(server.url(host)) as ws:
            try:
                with pg.purpose(purpose):
                    await send(ws, value)
            finally:
                await ws.close()
    await asyncio.sleep(0.05)  # the server's handler has read all there was


def websocket_run(purpose: str, value: Any, send: Send, host: str = "127.0.0.1") -> list[Any]:
    async def go() -> list[Any]:
        async with WebSocketServer() as server:
            await over_websocket(server, purpose, value, send, host)
            return server.messages

    return asyncio.run(go())


@pytest.mark.parametrize("how", list(WS_SENDS))
def test_aiohttp_websocket_message_is_checked(how: str) -> None:
    value = secret()
    got: list[Any] = []

    async def go() -> None:
        async with WebSocketServer() as server:
            try:
                await over_websocket(server, "advertising", value, WS_SENDS[how])
            finally:
                got.extend(server.messages)

    caught = refused(lambda: asyncio.run(go()), purpose="service.operations")
    assert caught.violations[0].function.startswith("aiohttp.ClientWebSocketResponse.")
    assert got == []


@pytest.mark.parametrize("how", list(WS_SENDS))
def test_aiohttp_websocket_message_allowed_for_its_purpose_is_delivered(how: str) -> None:
    with pg.testing.assert_no_violations():
        got = websocket_run("service.operations", secret(), WS_SENDS[how])
    assert len(got) == 1 and SECRET in (got[0] if isinstance(got[0], str) else got[0].decode())


def test_aiohttp_websocket_unlabelled_message_is_delivered_under_any_purpose() -> None:
    with pg.testing.assert_no_violations():
        got = websocket_run("advertising", "spring offers", WS_SENDS["send_str"])
    assert got == ["spring offers"]


def test_aiohttp_websocket_message_to_an_ad_destination_is_refused(loopback_policy: pg.Policy) -> None:
    # The WebSocket's host decides the purpose, as for a request body.
    pg.configure(loopback_policy)
    with pytest.raises(pg.PurposeViolation) as caught:
        websocket_run("service.operations", secret(), WS_SENDS["send_str"], host="localhost")
    assert caught.value.violations[0].purpose == "advertising"


@pytest.mark.parametrize("control", ["ping", "pong", "close"])
def test_aiohttp_websocket_control_payloads_are_checked(control: str) -> None:
    payload = pg.label("board", CONTENT).encode()
    sends: dict[str, Send] = {
        "ping": lambda ws, value: ws.ping(value),
        "pong": lambda ws, value: ws.pong(value),
        "close": lambda ws, value: ws.close(message=value),
    }
    refused(lambda: websocket_run("advertising", payload, sends[control]), purpose="service.operations")


def test_aiohttp_send_json_in_trace_mode_is_one_record() -> None:
    pg.configure("trust-center", mode="trace")
    value = secret()
    with pg.testing.capture() as seen:
        got = websocket_run("advertising", value, WS_SENDS["send_json"])
    assert [(v.via, v.function) for v in seen] == [("egress", "aiohttp.ClientWebSocketResponse.send_json")]
    assert len(got) == 1


def test_aiohttp_uninstrument_restores_the_websocket() -> None:
    patched = {name: getattr(aiohttp.ClientWebSocketResponse, name) for name in ("send_str", "send_bytes")}
    assert all(hasattr(method, "__wrapped__") for method in patched.values())
    pg_aiohttp.uninstrument()
    assert not any(hasattr(getattr(aiohttp.ClientWebSocketResponse, name), "__wrapped__") for name in patched)
    with pg.testing.assert_no_violations():
        got = websocket_run("advertising", secret(), WS_SENDS["send_str"])
    assert got == [SECRET]


# -- requests: what a response hook sends is its own call ---------------------------------------


def _in_a_hook(recorder: Any, side: Callable[[], Any]) -> list[BaseException]:
    failures: list[BaseException] = []

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if response.request.path_url != "/page":
            return
        try:
            with pg.purpose("advertising"):
                side()
        except pg.PurposeViolation as error:
            failures.append(error)

    with pg.purpose("service.operations"):
        requests.get(recorder.url() + "/page", hooks={"response": hook}, timeout=10)
    return failures


SIDE_CALLS: dict[str, Callable[[Any, str], Any]] = {
    "urllib3": lambda recorder, body: urllib3.PoolManager().request(
        "POST", recorder.url() + "/side", body=body
    ),
    "http.client": lambda recorder, body: http.client.HTTPConnection(
        "127.0.0.1", recorder.port, timeout=10
    ).request("POST", "/side", body=body),
    "the response's adapter": lambda recorder, body: (
        requests.Session()
        .get_adapter(recorder.url())
        .send(requests.Request("POST", recorder.url() + "/side", data=body).prepare(), timeout=10)
    ),
}


@pytest.mark.parametrize("client", list(SIDE_CALLS))
def test_requests_a_call_made_from_a_response_hook_is_checked(recorder: Any, client: str) -> None:
    body = secret()
    failures = _in_a_hook(recorder, lambda: SIDE_CALLS[client](recorder, body))
    assert len(failures) == 1 and isinstance(failures[0], pg.PurposeViolation)
    assert [r.path for r in recorder.received] == ["/page"]


def test_requests_a_hook_call_that_is_allowed_goes_through(recorder: Any) -> None:
    failures = _in_a_hook(recorder, lambda: SIDE_CALLS["urllib3"](recorder, "spring offers"))
    assert failures == []
    assert [r.path for r in recorder.received] == ["/page", "/side"]


STREAMING: dict[str, Callable[[Any, Iterator[bytes]], Any]] = {
    "requests": lambda recorder, chunks: requests.post(recorder.url() + "/main", data=chunks, timeout=10),
    "urllib3": lambda recorder, chunks: urllib3.PoolManager().request(
        "POST", recorder.url() + "/main", body=chunks, chunked=True
    ),
    "http.client": lambda recorder, chunks: _http_client_post(recorder, chunks),
}


def _http_client_post(recorder: Any, chunks: Iterator[bytes]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", recorder.port, timeout=10)
    connection.request("POST", "/main", body=chunks)
    status = connection.getresponse().status
    connection.close()
    return status


@pytest.mark.parametrize("side", ["urllib3", "http.client"])
@pytest.mark.parametrize("client", list(STREAMING))
def test_a_call_made_while_a_streamed_body_is_produced_is_checked(
    recorder: Any, client: str, side: str
) -> None:
    # The body's generator runs while its request is being sent: what it
    # sends itself is a call of its own, not part of the checked request.
    body = secret()
    failures: list[pg.PurposeViolation] = []

    def chunks() -> Iterator[bytes]:
        yield b"plain "
        try:
            with pg.purpose("advertising"):
                SIDE_CALLS[side](recorder, body)
        except pg.PurposeViolation as error:
            failures.append(error)
        yield b"end"

    with pg.purpose("service.operations"):
        STREAMING[client](recorder, chunks())
    assert len(failures) == 1
    assert [(r.path, r.body) for r in recorder.received] == [("/main", b"plain end")]


class DigestServer:
    """Answers a request without credentials with a Digest challenge, as a
    server behind HTTP digest authentication does; records each body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        bodies = self.bodies

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                bodies.append(self.rfile.read(int(self.headers.get("content-length") or 0)))
                if self.headers.get("authorization"):
                    self.send_response(200)
                else:
                    self.send_response(401)
                    self.send_header("www-authenticate", 'Digest realm="mail", nonce="n0", qop="auth"')
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_requests_a_digest_auth_retry_is_checked_too() -> None:
    # HTTPDigestAuth sends the body again from a response hook, through the
    # adapter: a second flow, checked (and recorded) as such.
    from requests.auth import HTTPDigestAuth

    server = DigestServer()
    pg.configure("trust-center", mode="trace")
    body = secret()
    try:
        with pg.testing.capture() as seen, pg.purpose("service.communications"):
            response = requests.post(server.url, data=body, auth=HTTPDigestAuth("u", "p"), timeout=10)
    finally:
        server.close()
    assert response.status_code == 200
    assert server.bodies == [SECRET.encode(), SECRET.encode()]
    assert [v.function for v in seen] == ["requests.Session.send", "requests.adapters.HTTPAdapter.send"]


def test_requests_one_call_is_still_one_record(recorder: Any) -> None:
    pg.configure("trust-center", mode="trace")
    body = secret()
    with pg.testing.capture() as seen, pg.purpose("service.communications"):
        requests.post(recorder.url() + "/notice", data=body, timeout=10)
    assert [(v.via, v.function) for v in seen] == [("egress", "requests.Session.send")]


# -- httpx: a transport driven without a client ----------------------------------------------------


def test_httpx_transport_without_a_client_is_checked(recorder: Any) -> None:
    body = secret()

    def send() -> None:
        with httpx.HTTPTransport() as transport:
            transport.handle_request(httpx.Request("POST", recorder.url() + "/x", content=body)).read()

    refused(send)
    assert recorder.received == []


def test_httpx_async_transport_without_a_client_is_checked(recorder: Any) -> None:
    body = secret()

    async def send() -> None:
        async with httpx.AsyncHTTPTransport() as transport:
            response = await transport.handle_async_request(
                httpx.Request("POST", recorder.url() + "/x", json={"b": body})
            )
            await response.aread()

    refused(lambda: asyncio.run(send()))
    assert recorder.received == []


def test_httpx_transport_streamed_body_is_checked_chunk_by_chunk(recorder: Any) -> None:
    piece = secret().encode()

    def chunks() -> Iterator[bytes]:
        yield b"plain "
        yield piece

    def send() -> None:
        with httpx.HTTPTransport() as transport:
            transport.handle_request(httpx.Request("POST", recorder.url() + "/x", content=chunks())).read()

    refused(send)
    assert SECRET.encode() not in b"".join(r.body for r in recorder.received)


def test_httpx_a_client_call_is_checked_once(recorder: Any) -> None:
    # The client's hop checked the request: its transport does not check it again.
    pg.configure("trust-center", mode="trace")
    body = secret()

    async def send_async() -> None:
        async with httpx.AsyncClient() as client:
            await client.post(recorder.url() + "/y", json={"b": body})

    with pg.testing.capture() as seen, pg.purpose("advertising"):
        with httpx.Client() as client:
            client.post(recorder.url() + "/x", content=body)
        asyncio.run(send_async())
    assert [v.function for v in seen] == ["httpx.Client.send", "httpx.AsyncClient.send"]
    assert len(recorder.received) == 2


def test_httpx_transport_unlabelled_or_allowed_is_sent(recorder: Any) -> None:
    with pg.testing.assert_no_violations(), httpx.HTTPTransport() as transport:
        with pg.purpose("advertising"):
            transport.handle_request(httpx.Request("POST", recorder.url() + "/a", content=b"plain")).read()
        with pg.purpose("service.operations"):
            transport.handle_request(httpx.Request("POST", recorder.url() + "/b", content=secret())).read()
    assert [r.path for r in recorder.received] == ["/a", "/b"]
