"""Web frameworks under concurrent load, with and without purposeguard.

Eight servers run as processes of their own on 127.0.0.1: Starlette on
uvicorn, FastAPI with an included router on uvicorn, Flask on gunicorn
(gthread worker) and Flask on waitress, each once plain and once with
``PurposeGuardMiddleware``. The apps are alike on both sides: a few routes,
one with a path parameter answering JSON, the endpoint marked with its
purpose. ``wrk`` (the Debian package) loads one server at a time for a
bounded time over keep-alive connections; a round loads the plain and the
guarded server of a kind back to back, the order alternating between rounds.
Each variant runs as ``PROCESSES`` server processes, one per round in turn:
two processes of the very same app differ by up to 2-3% in requests per
second (where the allocator and hash seed put things), which one process
per side would count as purposeguard's (with three a side, the same app
measured against itself still came out at 0.96x and 1.02x). Where the machine has two CPUs or
more, the servers run on the last and ``wrk`` on the first, so neither
moves the other between cores.
Beside requests per second, each row reports the server's own CPU time per
request (its processes' user + system time over the requests wrk counted),
which the shared machine's other load moves much less. A row's ratio is the median
over rounds of plain / guarded requests per second; its note gives the
middle half of the rounds' ratios, the benchmark's own spread. Rounds are
short and many (48 of one second a side): this machine's speed drifts by
10-40% over seconds, so two loads close in time compare better, and the
median of many moves less than that of a few long ones (in runs of the same
code minutes apart, medians of 30 one-second rounds moved by about 4
points, of 9 three-second rounds by 10-19). Target: at most 5% fewer
requests per second with purposeguard (a ratio of at most 1/0.95).

    python benchmarks/run.py load
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
# At most 5% fewer requests per second: plain / guarded <= 1 / 0.95.
TARGET = 1 / 0.95
PATH = "/api/tickets/4711"
TENANT_HEADER = "x-tenant"
PURPOSE = "service.operations"
KINDS = {
    "starlette": "Starlette, uvicorn",
    "fastapi": "FastAPI with routers, uvicorn",
    "flask-gunicorn": "Flask, gunicorn gthread",
    "flask-waitress": "Flask, waitress",
}
THREADS = 4
# Server processes per variant, taken in turn by the rounds.
PROCESSES = 6
# The ticket ids wrk cycles through: more than any per-path cache holds.
DISTINCT_TICKETS = 100_000


# -- the apps --------------------------------------------------------------------------------------


def _guard() -> None:
    import purposeguard as pg

    pg.configure("trust-center")


def starlette_app(variant: str) -> Any:
    from purposeguard.integrations.asgi import PurposeGuardMiddleware, route_purpose
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Mount, Route

    @route_purpose(PURPOSE)
    async def ticket(request: Request) -> JSONResponse:
        return JSONResponse({"id": request.path_params["ticket"], "status": "open"})

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    routes = [
        Route("/health", health),
        Mount("/api", routes=[Route("/tickets/{ticket}", ticket), Route("/status", health)]),
    ]
    middleware = []
    if variant == "guarded":
        _guard()
        middleware = [Middleware(PurposeGuardMiddleware, tenant_header=TENANT_HEADER)]
    return Starlette(routes=routes, middleware=middleware)


def fastapi_app(variant: str) -> Any:
    from fastapi import APIRouter, FastAPI
    from purposeguard.integrations.asgi import PurposeGuardMiddleware, route_purpose

    tickets = APIRouter(prefix="/tickets")

    @tickets.get("/{ticket}")
    @route_purpose(PURPOSE)
    async def ticket(ticket: int) -> dict[str, Any]:
        return {"id": ticket, "status": "open"}

    @tickets.get("/")
    async def tickets_list() -> list[int]:
        return [1, 2, 3]

    api = APIRouter(prefix="/api")
    api.include_router(tickets)
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(api)

    @app.get("/health")
    async def health() -> str:
        return "ok"

    if variant == "guarded":
        _guard()
        app.add_middleware(PurposeGuardMiddleware, tenant_header=TENANT_HEADER)
    return app


def flask_app(variant: str) -> Any:
    from flask import Blueprint, Flask, jsonify
    from purposeguard.integrations.wsgi import init_app, route_purpose

    app = Flask("bench")
    api = Blueprint("api", "bench", url_prefix="/api")

    @api.get("/tickets/<int:ticket>")
    @route_purpose(PURPOSE)
    def ticket(ticket: int) -> Any:
        return jsonify(id=ticket, status="open")

    @api.get("/status")
    def status() -> str:
        return "ok"

    app.register_blueprint(api)

    @app.get("/health")
    def health() -> str:
        return "ok"

    if variant == "guarded":
        _guard()
        init_app(app, tenant_header=TENANT_HEADER)
    return app


def serve(kind: str, variant: str, port: int) -> None:
    if kind in ("starlette", "fastapi"):
        import uvicorn

        app = starlette_app(variant) if kind == "starlette" else fastapi_app(variant)
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False, ws="none")
    elif kind == "flask-waitress":
        import logging

        import waitress  # type: ignore[import-untyped,unused-ignore]

        # Its queue-depth warnings are the load we make, not a fault.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        waitress.serve(flask_app(variant), host="127.0.0.1", port=port, threads=THREADS, _quiet=True)
    elif kind == "flask-gunicorn":
        from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped,unused-ignore]

        app = flask_app(variant)

        class Server(BaseApplication):  # type: ignore[misc]
            def load_config(self) -> None:
                for name, value in {
                    "bind": f"127.0.0.1:{port}",
                    "workers": 1,
                    "worker_class": "gthread",
                    "threads": THREADS,
                    "loglevel": "error",
                    "accesslog": None,
                }.items():
                    self.cfg.set(name, value)

            def load(self) -> Any:
                return app

        Server().run()
    else:
        raise SystemExit(f"unknown server kind {kind!r}")


# -- the load ----------------------------------------------------------------------------------------


# Each request asks for another ticket, as real traffic does: a cache keyed
# by the path would hit every time on one fixed URL and hide what a route
# with path parameters costs.
WRK_SCRIPT = f"""
local ticket = 0
request = function()
  ticket = (ticket + 1) % {DISTINCT_TICKETS}
  return wrk.format("GET", "{PATH.rsplit("/", 1)[0]}/" .. ticket)
end
"""


def _wrk_command(port: int, seconds: float, connections: int, script: str) -> list[str]:
    return [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-H",
        f"{TENANT_HEADER}: contoso",
        "-s",
        script,
        f"http://127.0.0.1:{port}{PATH}",
    ]


def _cpus() -> tuple[set[int] | None, set[int] | None]:
    """The CPUs for wrk and for the servers: the first and the last this
    process may use, or no pinning on a single CPU."""
    try:
        usable = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None
    if len(usable) < 2:
        return None, None
    return {usable[0]}, {usable[-1]}


def _wrk(port: int, pid: int, seconds: float, connections: int, script: str) -> tuple[float, float]:
    """Load one server for a bounded time: wrk's requests per second, and
    the server's own CPU time (its processes' user + system) per request.
    An error or a non-2xx answer fails the benchmark."""
    cpu_before = _cpu_seconds(pid)
    wrk_cpus, _ = _cpus()
    done = subprocess.run(
        _wrk_command(port, seconds, connections, script),
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
        preexec_fn=None if wrk_cpus is None else lambda: os.sched_setaffinity(0, wrk_cpus),
    )
    cpu = _cpu_seconds(pid) - cpu_before
    out = done.stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors on port {port}:\n{out}")
    rate = re.search(r"Requests/sec:\s*([0-9.]+)", out)
    count = re.search(r"([0-9]+) requests in", out)
    if rate is None or count is None or float(rate.group(1)) <= 0 or int(count.group(1)) <= 0:
        raise RuntimeError(f"no requests answered on port {port}, wrk says:\n{out}")
    return float(rate.group(1)), cpu / int(count.group(1))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (gunicorn's
    worker is a child of its arbiter), read from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/stat", encoding="ascii") as file:
                fields = file.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            with open(f"/proc/{current}/task/{current}/children", encoding="ascii") as file:
                pending.extend(int(child) for child in file.read().split())
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile: its time went with it
    return total


def _wait(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited ({process.returncode})")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", PATH, headers={TENANT_HEADER: "contoso"})
            response = connection.getresponse()
            response.read()
            connection.close()
            if response.status != 200:
                raise RuntimeError(f"server on port {port} answered {response.status}")
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start")


def rows(quick: bool = False, smoke: bool = False) -> list[Any]:
    sys.path.insert(0, str(HERE.parent))
    from harness import Row, start_server, stop_servers

    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (the Debian package wrk; scripts/test installs it)")
    rounds, seconds = (1, 1.0) if smoke else (12, 1.0) if quick else (48, 1.0)
    connections = 8
    out: list[Any] = []
    group = f"web under load (wrk, {connections} keep-alive connections, loopback)"
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    _, server_cpus = _cpus()
    scripts = tempfile.TemporaryDirectory(prefix="purposeguard-wrk-")
    script = os.path.join(scripts.name, "tickets.lua")
    with open(script, "w", encoding="utf-8") as file:
        file.write(WRK_SCRIPT)
    try:
        for kind, title in KINDS.items():
            servers: dict[str, list[tuple[int, subprocess.Popen[bytes]]]] = {"plain": [], "guarded": []}
            try:
                # One kind at a time: the other kinds' servers would hold memory
                # and threads on the shared cores while this one is measured.
                for _ in range(1 if smoke else PROCESSES):
                    for variant in ("plain", "guarded"):
                        port, process = start_server(str(HERE), kind, variant, env=env, cpus=server_cpus)
                        servers[variant].append((port, process))
                for port, process in servers["plain"] + servers["guarded"]:
                    _wait(port, process)
                    _wrk(port, process.pid, 1, connections, script)  # warm up
                samples: dict[str, list[float]] = {"plain": [], "guarded": []}
                cpu: dict[str, list[float]] = {"plain": [], "guarded": []}
                for index in range(rounds):
                    # Back to back, the order alternating between rounds.
                    order = ("plain", "guarded") if index % 2 == 0 else ("guarded", "plain")
                    for variant in order:
                        pool = servers[variant]
                        port, process = pool[index % len(pool)]
                        rps, per_request = _wrk(port, process.pid, seconds, connections, script)
                        samples[variant].append(rps)
                        cpu[variant].append(per_request)
            finally:
                stop_servers(process for pool in servers.values() for _, process in pool)
            ratios = sorted(p / g for p, g in zip(samples["plain"], samples["guarded"], strict=True))
            loss = statistics.median(ratios)
            spread = (
                f"; rounds' middle half {ratios[len(ratios) // 4]:.2f}-{ratios[(3 * len(ratios)) // 4]:.2f}x"
                if len(ratios) >= 4
                else ""
            )
            work = statistics.median(g / p for p, g in zip(cpu["plain"], cpu["guarded"], strict=True))
            plain_rps = statistics.median(samples["plain"])
            guarded_rps = statistics.median(samples["guarded"])
            out.append(
                Row(group, f"{title}: without purposeguard (baseline)", 1e9 / plain_rps, 1.0, "", None)
            )
            out.append(
                Row(
                    group,
                    f"{title}: with purposeguard (plain / guarded req/s)",
                    1e9 / guarded_rps,
                    loss,
                    "<= 1.05x (>= 95% of the req/s)",
                    loss <= TARGET,
                    note=f"{guarded_rps:.0f} vs {plain_rps:.0f} req/s{spread}",
                )
            )
            # Informative: what the server itself spent per request, which the
            # shared machine's other load moves much less than requests/s.
            out.append(
                Row(
                    group,
                    f"{title}: server CPU per request (guarded / plain)",
                    statistics.median(cpu["guarded"]) * 1e9,
                    work,
                    "informative",
                    None,
                    f"plain {statistics.median(cpu['plain']) * 1e6:.0f} µs",
                )
            )
    finally:
        scripts.cleanup()
    return out


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        from harness import format_rows

        print(format_rows(rows(quick="--quick" in sys.argv, smoke="--smoke" in sys.argv), markdown=False))
