"""Two purposeguard-enabled services calling each other over loopback: service A
in this process (uvicorn thread), service B in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from purposeguard.integrations import httpx as pg_httpx
from purposeguard.integrations.asgi import PurposeGuardMiddleware, route_purpose
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import purposeguard as pg

from .conftest import BAGGAGE_KEY, Signer

CONTENT = "customer_data.content.email"
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def ads() -> Iterator[Any]:
    """The advertising destination (``localhost``), recording what reaches it."""
    import http.server
    import threading

    received: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            received.append(self.rfile.read(int(self.headers.get("content-length") or 0)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    server.received = received  # type: ignore[attr-defined]
    yield server
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


@pytest.fixture(scope="module")
def service_b(ads: Any) -> Iterator[str]:
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ad_url = f"http://localhost:{ads.server_address[1]}/ads"
    process = subprocess.Popen(
        [sys.executable, str(HERE / "service_b.py"), str(port), ad_url],
        # B shares A's baggage key: A's zone reaches B only signed.
        env={**os.environ, "PURPOSEGUARD_BAGGAGE_KEYS": BAGGAGE_KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                httpx.get(url + "/inspect", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read().decode() if process.stdout else ""
                    raise RuntimeError(f"service B did not start:\n{output}") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()


@pytest.fixture
def service_a(service_b: str, serve_asgi: Callable[[Any], Any], marker: str, signed: Signer) -> Iterator[str]:
    @route_purpose("service.operations")
    async def relay(request: Request) -> JSONResponse:
        pg.label(marker, CONTENT)  # content read in A: the zone now holds it
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(service_b + "/" + request.path_params["what"])
        return JSONResponse({"status": response.status_code, "body": response.json()})

    app = Starlette(routes=[Route("/relay/{what}", relay)])
    app.add_middleware(PurposeGuardMiddleware, tenant_header="x-tenant")
    pg_httpx.instrument()
    try:
        yield serve_asgi(app).url
    finally:
        pg_httpx.uninstrument()


def test_zone_opened_in_a_is_seen_in_b(service_a: str) -> None:
    response = httpx.get(service_a + "/relay/inspect", headers={"x-tenant": "contoso"}, timeout=20)
    assert response.json() == {
        "status": 200,
        "body": {"purpose": "service.operations", "tenant": "contoso", "zone": [CONTENT]},
    }


def test_b_calling_an_advertising_destination_with_a_zone_from_a_is_caught(
    service_a: str, ads: Any, marker: str
) -> None:
    before = len(ads.received)
    response = httpx.get(service_a + "/relay/advertise", headers={"x-tenant": "contoso"}, timeout=20)
    relayed = response.json()
    assert relayed["status"] == 403
    body = relayed["body"]
    assert (body["rule"], body["purpose"], body["category"], body["via"]) == (
        "no-advertising",
        "advertising",
        CONTENT,
        "context",
    )
    assert len(ads.received) == before
    assert marker not in response.text


def test_b_without_a_zone_from_a_may_call_the_destination(service_b: str, ads: Any) -> None:
    before = len(ads.received)
    response = httpx.get(service_b + "/advertise", timeout=20)
    assert response.json() == {"ads": 204}
    assert len(ads.received) == before + 1
