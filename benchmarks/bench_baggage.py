"""Signing and verifying baggage, per request, against the request without baggage.

The ASGI and WSGI middleware are driven in this process on a minimal app (no
server, no socket: the request's own cost without the network, so the
ratios here are upper bounds of what a request over loopback sees). Each
group's baseline is a request without a ``baggage`` header; the cases are
the same request carrying purpose, tenant and zone signed by a peer (the
middleware verifies the HMAC and reads them), a request carrying the same
members unsigned (ignored: no key configured on the receiver... here, a key
is configured and the members are refused, one warning per request, which
the benchmark silences), and what a caller pays to sign the header of one
outgoing call (``baggage.header_value()`` in a zone).

    python benchmarks/run.py baggage
"""

from __future__ import annotations

import contextvars
import http.client
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import purposeguard as pg
from purposeguard._signing import current_keys, sign
from purposeguard._state import STATE

KEY = "benchmark-baggage-key-0123456789abcdef0123"
CONTENT = "customer_data.content.email"


def _namespace() -> dict[str, Any]:
    from purposeguard.integrations import baggage
    from purposeguard.integrations.asgi import PurposeGuardMiddleware as ASGIMiddleware
    from purposeguard.integrations.wsgi import PurposeGuardMiddleware as WSGIMiddleware

    pg.configure("trust-center", baggage_keys=[KEY])
    # Refused members warn once per request; the benchmark measures the work, not the log.
    logging.getLogger("purposeguard").setLevel(logging.CRITICAL)

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    asgi = ASGIMiddleware(asgi_app, tenant_from=lambda scope: None, purposes={"/ops": "service.operations"})
    wsgi = WSGIMiddleware(wsgi_app, tenant_from=lambda environ: None, purposes={"/ops": "service.operations"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    def asgi_request(headers: list[tuple[bytes, bytes]]) -> None:
        scope = {"type": "http", "path": "/ops", "method": "GET", "headers": headers}
        coroutine = asgi(scope, receive, send)
        try:
            coroutine.send(None)
        except StopIteration:
            return
        raise RuntimeError("the benchmark app should not wait")

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        pass

    def wsgi_request(environ: dict[str, Any]) -> None:
        body = wsgi(dict(environ), start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()

    members: dict[str, Any] = {"purpose": "service.operations", "tenant": "contoso", "categories": [CONTENT]}
    signed = baggage.signed_header(**members)
    unsigned = signed.split(",purposeguard.sig=")[0]
    assert baggage.parse(signed).tenant == "contoso"
    # The outgoing call runs in a context of its own, with a zone and a purpose
    # current, so the other groups' requests start from an empty context.
    outgoing = contextvars.copy_context()
    outgoing.run(_enter, pg.zone(tenant="contoso", categories=[CONTENT]), pg.purpose("service.operations"))
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/ops", "SCRIPT_NAME": "", "SERVER_NAME": "bench"}
    return {
        "asgi_request": asgi_request,
        "wsgi_request": wsgi_request,
        "plain_headers": [(b"host", b"bench")],
        "signed_headers": [(b"host", b"bench"), (b"baggage", signed.encode())],
        "unsigned_headers": [(b"host", b"bench"), (b"baggage", unsigned.encode())],
        "plain_environ": environ,
        "signed_environ": {**environ, "HTTP_BAGGAGE": signed},
        "unsigned_environ": {**environ, "HTTP_BAGGAGE": unsigned},
        "baggage": baggage,
        "signed": signed,
        "outgoing": outgoing,
        "seen": STATE.baggage_seen,
        "sign": sign,
        "key": current_keys()[0],
        "members": {
            "channel": baggage.HTTP,
            "trace": None,
            "purpose": "service.operations",
            "tenant": "contoso",
            "zone": CONTENT,
        },
    }


def _enter(*scopes: Any) -> None:
    for scope in scopes:
        scope.__enter__()


def groups() -> list[Any]:
    # Imported here: the load generator runs this file as a script, where
    # the benchmarks folder need not be on the path.
    from harness import Case, Group

    namespace = _namespace()
    asgi = Group(
        "signed baggage per request: ASGI middleware, in process",
        Case("request without baggage", "asgi_request(plain_headers)"),
        [
            Case(
                "request with signed purpose, tenant and zone, a header not seen before (verified, read)",
                "seen.clear(); asgi_request(signed_headers)",
            ),
            Case(
                "request with signed purpose, tenant and zone, header seen before",
                "asgi_request(signed_headers)",
            ),
            Case("request with the same members unsigned (refused)", "asgi_request(unsigned_headers)"),
        ],
        globals=namespace,
        number=5000,
        rounds=15,
        baseline_label="request without baggage",
    )
    wsgi = Group(
        "signed baggage per request: WSGI middleware, in process",
        Case("request without baggage", "wsgi_request(plain_environ)"),
        [
            Case(
                "request with signed purpose, tenant and zone, a header not seen before (verified, read)",
                "seen.clear(); wsgi_request(signed_environ)",
            ),
            Case(
                "request with signed purpose, tenant and zone, header seen before",
                "wsgi_request(signed_environ)",
            ),
            Case("request with the same members unsigned (refused)", "wsgi_request(unsigned_environ)"),
        ],
        globals=namespace,
        number=5000,
        rounds=15,
        baseline_label="request without baggage",
    )
    signing = Group(
        "signed baggage per request: the two sides alone, to the ASGI request without baggage",
        Case("request without baggage", "asgi_request(plain_headers)"),
        [
            Case(
                "verify and read a signed header not seen before (baggage.parse)",
                "seen.clear(); baggage.parse(signed)",
            ),
            Case("the HMAC of one outgoing call alone (sign)", "sign(key, **members)"),
            Case(
                "sign the header of one outgoing call in a zone (baggage.header_value)",
                "outgoing.run(baggage.header_value)",
            ),
        ],
        globals=namespace,
        number=5000,
        rounds=15,
        baseline_label="request without baggage",
    )
    return [asgi, wsgi, signing]


# -- over loopback: the middleware bench's servers, with and without signed baggage ------------------

HERE = Path(__file__).resolve()
MIDDLEWARE = HERE.parent / "bench_middleware.py"


def load(port: int, requests: int, seconds: float) -> list[dict[str, float]]:
    """Three keep-alive connections to one guarded server, requests alternated
    between them: no baggage; signed baggage never seen before (a tenant of
    its own per request, so the server verifies every one); and the same
    signed header every time (as a peer's calls within one second)."""
    from purposeguard.integrations import baggage

    sys.path.insert(0, str(MIDDLEWARE.parent))
    from bench_middleware import HEADERS, _summary

    pg.configure("trust-center", baggage_keys=[KEY])
    members: dict[str, Any] = {"purpose": "service.operations", "categories": [CONTENT]}
    repeated = baggage.signed_header(tenant="contoso", **members)
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(3)]
    latencies: list[list[float]] = [[], [], []]
    clock = time.perf_counter
    deadline = clock() + seconds
    for index in range(requests):
        fresh = baggage.signed_header(tenant=f"tenant-{index}", **members)
        headers = [HEADERS, {**HEADERS, "baggage": fresh}, {**HEADERS, "baggage": repeated}]
        for offset in range(3):
            which = (index + offset) % 3
            before = clock()
            connections[which].request("GET", "/", headers=headers[which])
            response = connections[which].getresponse()
            response.read()
            latencies[which].append(clock() - before)
            if response.status != 200:
                raise RuntimeError(f"status {response.status}")
        if clock() > deadline:
            break
    for connection in connections:
        connection.close()
    return [_summary(times) for times in latencies]


def rows(quick: bool = False, smoke: bool = False) -> list[Any]:
    from harness import Row, start_server, stop_servers

    sys.path.insert(0, str(MIDDLEWARE.parent))
    from bench_middleware import _wait

    rounds, requests, seconds = (1, 20, 5.0) if smoke else (3, 300, 5.0) if quick else (9, 1000, 10.0)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PURPOSEGUARD_BAGGAGE_KEYS=KEY)
    servers: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    samples: dict[str, list[list[dict[str, float]]]] = {"asgi": [], "wsgi": []}
    try:
        for kind in samples:
            servers[kind] = start_server(str(MIDDLEWARE), kind, "guarded", env=env)
        for port, _ in servers.values():
            _wait(port)
        for kind, (port, _) in servers.items():
            drive = [sys.executable, str(HERE), "load", str(port)]
            subprocess.run(
                [*drive, str(requests // 4), str(seconds)],
                capture_output=True,
                check=True,
                timeout=seconds + 60,
                env=env,
            )
            for _ in range(rounds):
                done = subprocess.run(
                    [*drive, str(requests), str(seconds)],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=seconds + 60,
                    env=env,
                )
                samples[kind].append(json.loads(done.stdout))
    finally:
        stop_servers(process for _, process in servers.values())
    out = []
    group = "signed baggage per request (loopback, keep-alive, guarded server)"
    names = {"asgi": "ASGI, uvicorn", "wsgi": "WSGI, werkzeug threaded"}
    for kind, measured in samples.items():
        base = statistics.median(r[0]["median_s"] for r in measured) * 1e9
        out.append(Row(group, f"{names[kind]}: request without baggage (baseline)", base, 1.0, "", None))
        for index, what in (
            (1, "signed baggage not seen before (verified)"),
            (2, "the same signed baggage again"),
        ):
            ratio = statistics.median(r[index]["median_s"] / r[0]["median_s"] for r in measured)
            latency = statistics.median(r[index]["median_s"] for r in measured) * 1e9
            out.append(Row(group, f"{names[kind]}: {what}", latency, ratio, "", None))
    return out


if __name__ == "__main__" and sys.argv[1] == "load":
    print(json.dumps(load(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))))
