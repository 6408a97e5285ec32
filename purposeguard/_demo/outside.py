"""The outside world, kept on this machine: an ad network and a newsletter service.

The policy names them by host (``ads.example.net``, ``newsletter.example.net``
in the ``trust-center`` pack's ``[[destinations]]``). The mail service calls
them by those names; :class:`LoopbackTransport` delivers such calls to a local
fake (:class:`OutsideServer`) on 127.0.0.1, after purposeguard has checked
them against the destination's purpose, so no traffic leaves the machine.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

AD_NETWORK = "ads.example.net"
NEWSLETTER = "newsletter.example.net"


@dataclass(frozen=True)
class Delivery:
    """One request that reached the outside world."""

    host: str
    path: str
    body: bytes


class OutsideServer:
    """A local stand-in for every outside party: answers and remembers what arrived."""

    def __init__(self) -> None:
        self.received: list[Delivery] = []
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                host = (self.headers.get("host") or "").split(":")[0]
                received.append(Delivery(host, self.path, body))
                if host == AD_NETWORK:
                    answer: dict[str, Any] = {
                        "ads": ["Premium spreadsheet templates", "Quarterly-report coaching"]
                    }
                else:
                    answer = {"queued": True}
                payload = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="mailservice-outside",
            daemon=True,
        )

    def start(self) -> OutsideServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self._thread.join(timeout=10)
        self.server.server_close()

    def __enter__(self) -> OutsideServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def routes(self) -> dict[str, tuple[str, int]]:
        """The outside hosts this server stands in for, for :class:`LoopbackTransport`."""
        return {AD_NETWORK: ("127.0.0.1", self.port), NEWSLETTER: ("127.0.0.1", self.port)}


class LoopbackTransport(httpx.AsyncBaseTransport):
    """Send requests for the mapped hosts to local addresses instead.

    The request keeps its URL and ``Host`` until it reaches this transport:
    purposeguard's check (in ``AsyncClient.send``) sees the real destination.
    Hosts not in ``routes`` are refused, so nothing leaves by mistake.
    """

    def __init__(self, routes: Mapping[str, tuple[str, int]]) -> None:
        self.routes = dict(routes)
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = self.routes.get(request.url.host)
        if target is None:
            raise httpx.ConnectError(f"{request.url.host} is not reachable from this demo", request=request)
        host, port = target
        request.url = request.url.copy_with(scheme="http", host=host, port=port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
