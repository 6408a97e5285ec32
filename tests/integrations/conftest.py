"""Real servers on loopback for the integration tests: uvicorn and werkzeug in
threads, a recording HTTP server, and a policy whose ad destination is local."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

import pytest

import purposeguard as pg

MARKER = "zq-marker-7c1f3b9e"  # the data under test: it must never show up where it does not belong


@pytest.fixture(scope="session")
def marker() -> str:
    return MARKER


def loopback_policy_text() -> str:
    """The trust-center pack, with ``localhost`` as an advertising destination
    (127.0.0.1 stays the services' own address)."""
    text = resources.files("purposeguard.packs").joinpath("trust-center.toml").read_text(encoding="utf-8")
    return text + '\n[[destinations]]\nid = "loopback-ads"\nhosts = ["localhost"]\npurpose = "advertising"\n'


@pytest.fixture
def loopback_policy() -> pg.Policy:
    return pg.Policy.from_toml(loopback_policy_text(), source="loopback-test")


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- uvicorn in a thread ------------------------------------------------------------------


class UvicornThread:
    def __init__(self, app: Any, ws: str = "none") -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        config = uvicorn.Config(app, log_level="warning", lifespan="off", ws=ws, access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> UvicornThread:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def _serving(kind: Any) -> Iterator[Callable[[Any], Any]]:
    running: list[Any] = []

    def start(app: Any) -> Any:
        server = kind(app).__enter__()
        running.append(server)
        return server

    yield start
    for server in running:
        server.__exit__()


@pytest.fixture
def serve_asgi() -> Iterator[Callable[[Any], UvicornThread]]:
    """Serve an ASGI app with uvicorn on a free loopback port until the test ends."""
    yield from _serving(UvicornThread)


@pytest.fixture(scope="module")
def serve_asgi_module() -> Iterator[Callable[[Any], UvicornThread]]:
    """The same, until the module's tests end (the guard is read per request)."""
    yield from _serving(UvicornThread)


# -- werkzeug in a thread -------------------------------------------------------------------


class WerkzeugThread:
    def __init__(self, app: Any) -> None:
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = int(self.server.server_port)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> WerkzeugThread:
        self.thread.start()
        wait_for_port(self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)
        self.server.server_close()


@pytest.fixture
def serve_wsgi() -> Iterator[Callable[[Any], WerkzeugThread]]:
    """Serve a WSGI app with werkzeug's threaded server on loopback until the test ends."""
    yield from _serving(WerkzeugThread)


@pytest.fixture(scope="module")
def serve_wsgi_module() -> Iterator[Callable[[Any], WerkzeugThread]]:
    yield from _serving(WerkzeugThread)


# -- a server that records what reaches it -----------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingServer:
    server: http.server.ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}"


@pytest.fixture
def recorder() -> Iterator[RecordingServer]:
    received: list[Received] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            try:
                body = self._body()
            except ValueError:  # a chunked body the client abandoned half-way
                self.close_connection = True
                return
            received.append(
                Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            if self.path.startswith("/redirect"):
                # /redirect?to=<url>: a 307 keeps method and body for the next hop.
                from urllib.parse import parse_qs, urlsplit

                self.send_response(307)
                self.send_header("location", parse_qs(urlsplit(self.path).query)["to"][0])
                self.send_header("content-length", "0")
                self.end_headers()
                return
            payload = json.dumps({"ok": True}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _body(self) -> bytes:
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                body = b""
                while True:
                    size = int(self.rfile.readline().strip() or b"x", 16)
                    if size == 0:
                        self.rfile.readline()
                        return body
                    body += self.rfile.read(size)
                    self.rfile.readline()
            length = int(self.headers.get("content-length") or 0)
            return self.rfile.read(length) if length else b""

        do_GET = do_POST = do_PUT = _answer  # noqa: N815 - http.server's naming

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    recording = RecordingServer(server, received)
    yield recording
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


def zone_state() -> dict[str, Any]:
    state = pg.current_zone()
    return {
        "purpose": pg.current_purpose(),
        "tenant": pg.current_tenant(),
        "zone": sorted(state.categories) if state is not None else None,
    }


@pytest.fixture(scope="session")
def state_of() -> Callable[[], dict[str, Any]]:
    """What the running code sees: purpose, tenant, zone categories."""
    return zone_state


# -- signed baggage --------------------------------------------------------------------

#: The baggage key the services of these tests share, as peers that trust each other do.
BAGGAGE_KEY = "integration-tests-baggage-key-5f0c2a9d81e4b7"


class Signer(Protocol):
    def __call__(
        self,
        *,
        purpose: str | None = None,
        tenant: str | None = None,
        zone: str | Iterable[str] = (),
        **options: Any,
    ) -> str: ...


def sign_baggage(
    *, purpose: str | None = None, tenant: str | None = None, zone: str | Iterable[str] = (), **options: Any
) -> str:
    """A ``baggage`` header signed as a peer holding :data:`BAGGAGE_KEY` signs it."""
    from purposeguard.integrations import baggage

    categories = [zone] if isinstance(zone, str) else list(zone)
    options.setdefault("key", BAGGAGE_KEY)
    return baggage.signed_header(purpose=purpose, tenant=tenant, categories=categories, **options)


@pytest.fixture
def signed(monkeypatch: pytest.MonkeyPatch) -> Signer:
    """This process holds :data:`BAGGAGE_KEY` (``PURPOSEGUARD_BAGGAGE_KEYS``) for
    the test; the fixture signs baggage as a peer sharing that key would."""
    monkeypatch.setenv("PURPOSEGUARD_BAGGAGE_KEYS", BAGGAGE_KEY)
    return sign_baggage
