"""The ASGI and WSGI middleware on a minimal endpoint served over loopback.

Four servers run as processes of their own: uvicorn (ASGI) and werkzeug's
threaded server (WSGI), each with and without ``PurposeGuardMiddleware``.
A load generator, another process, holds one keep-alive connection to the
plain and one to the guarded server of a kind and alternates requests
between them (a bounded number, within a bounded time), so both see the same
moment of the shared machine. A row's ratio is the median over rounds of
guarded / plain: the median latency, and the throughput (requests per second
of time spent waiting on that server, leaving out the slowest tenth of the
requests, which on a shared machine measures other processes). Target: at most 5% added.

    python benchmarks/run.py middleware
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
TARGET = 1.05
HEADERS = {"x-tenant": "contoso"}


# -- the servers (run as: bench_middleware.py serve asgi|wsgi plain|guarded PORT) --------------


def _asgi_app(guarded: bool):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})

    if not guarded:
        return app
    from purposeguard.integrations.asgi import PurposeGuardMiddleware

    import purposeguard as pg

    pg.configure("trust-center")
    return PurposeGuardMiddleware(app, tenant_header="x-tenant", purposes={"/": "service.operations"})


def _wsgi_app(guarded: bool):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    if not guarded:
        return app
    from purposeguard.integrations.wsgi import PurposeGuardMiddleware

    import purposeguard as pg

    pg.configure("trust-center")
    return PurposeGuardMiddleware(app, tenant_header="x-tenant", purposes={"/": "service.operations"})


def serve(kind: str, variant: str, port: int) -> None:
    guarded = variant == "guarded"
    if kind == "asgi":
        import uvicorn

        uvicorn.run(
            _asgi_app(guarded),
            host="127.0.0.1",
            port=port,
            log_level="error",
            access_log=False,
            lifespan="off",
            ws="none",
        )
    else:
        from werkzeug.serving import WSGIRequestHandler, make_server

        class Quiet(WSGIRequestHandler):
            def log_request(self, *args, **kwargs) -> None:
                pass

        make_server(
            "127.0.0.1", port, _wsgi_app(guarded), threaded=True, request_handler=Quiet
        ).serve_forever()


# -- the load generator (run as: bench_middleware.py load PLAIN_PORT GUARDED_PORT REQUESTS SECONDS) --


def load(ports: list[int], requests: int, seconds: float) -> list[dict[str, float]]:
    """Alternate requests between the servers, one keep-alive connection each,
    so both see the same moment of the shared machine."""
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for port in ports]
    latencies: list[list[float]] = [[] for _ in ports]
    clock = time.perf_counter
    deadline = clock() + seconds
    for index in range(requests):
        for offset in range(len(ports)):
            which = (index + offset) % len(ports)  # alternate who goes first
            connection = connections[which]
            before = clock()
            connection.request("GET", "/", headers=HEADERS)
            response = connection.getresponse()
            response.read()
            latencies[which].append(clock() - before)
            if response.status != 200:
                raise RuntimeError(f"status {response.status}")
        if clock() > deadline:
            break
    for connection in connections:
        connection.close()
    return [_summary(times) for times in latencies]


def _summary(times: list[float]) -> dict[str, float]:
    # The slowest tenth is the shared machine's noise (other processes take
    # the core for milliseconds); it would decide a plain mean on its own.
    kept = sorted(times)[: max(1, int(len(times) * 0.9))]
    return {"requests": len(times), "rps": len(kept) / sum(kept), "median_s": statistics.median(times)}


# -- the benchmark ------------------------------------------------------------------------------------


def _wait(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/")
            connection.getresponse().read()
            connection.close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start")


def _drive(ports: list[int], requests: int, seconds: float) -> list[dict[str, float]]:
    out = subprocess.run(
        [sys.executable, str(HERE), "load", ",".join(map(str, ports)), str(requests), str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    )
    return json.loads(out.stdout)


def rows(quick: bool = False, smoke: bool = False) -> list:
    sys.path.insert(0, str(HERE.parent))
    from harness import Row, start_server, stop_servers

    rounds, requests, seconds = (1, 20, 5.0) if smoke else (3, 300, 5.0) if quick else (9, 1500, 10.0)
    servers: dict[tuple[str, str], tuple[int, subprocess.Popen[bytes]]] = {}
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    try:
        for kind in ("asgi", "wsgi"):
            for variant in ("plain", "guarded"):
                servers[kind, variant] = start_server(str(HERE), kind, variant, env=env)
        for port, _ in servers.values():
            _wait(port)
        samples: dict[tuple[str, str], list[dict[str, float]]] = {key: [] for key in servers}
        for kind in ("asgi", "wsgi"):
            ports = [servers[kind, "plain"][0], servers[kind, "guarded"][0]]
            _drive(ports, requests // 4, seconds)  # warm up
            for _ in range(rounds):
                plain, guarded = _drive(ports, requests, seconds)
                samples[kind, "plain"].append(plain)
                samples[kind, "guarded"].append(guarded)
    finally:
        stop_servers(process for _, process in servers.values())

    out = []
    group = "integration middleware (loopback, keep-alive)"
    names = {"asgi": "ASGI, uvicorn", "wsgi": "WSGI, werkzeug threaded"}
    for kind in ("asgi", "wsgi"):
        plain_rounds, guarded_rounds = samples[kind, "plain"], samples[kind, "guarded"]
        latency = statistics.median(
            g["median_s"] / p["median_s"] for g, p in zip(guarded_rounds, plain_rounds, strict=True)
        )
        loss = statistics.median(
            p["rps"] / g["rps"] for g, p in zip(guarded_rounds, plain_rounds, strict=True)
        )
        plain_latency = statistics.median(p["median_s"] for p in plain_rounds) * 1e9
        guarded_latency = statistics.median(g["median_s"] for g in guarded_rounds) * 1e9
        rps = statistics.median(g["rps"] for g in guarded_rounds)
        out.append(
            Row(
                group, f"{names[kind]}: request without purposeguard (baseline)", plain_latency, 1.0, "", None
            )
        )
        out.append(
            Row(
                group,
                f"{names[kind]}: latency with purposeguard",
                guarded_latency,
                latency,
                f"<= {TARGET:.2f}x",
                latency <= TARGET,
            )
        )
        out.append(
            Row(
                group,
                f"{names[kind]}: throughput loss (plain/guarded rps)",
                guarded_latency,
                loss,
                f"<= {TARGET:.2f}x",
                loss <= TARGET,
                note=f"{rps:.0f} req/s guarded",
            )
        )
    return out


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "load":
        print(
            json.dumps(load([int(p) for p in sys.argv[2].split(",")], int(sys.argv[3]), float(sys.argv[4])))
        )
    else:
        for row in rows(quick="--quick" in sys.argv):
            print(row)
