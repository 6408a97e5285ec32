"""Replicas of examples/replica_service.py on one PostgreSQL, under load, with
one consent flip in the middle: shared by the load test and the benchmark.

Bounded: a fixed number of requests, and a deadline that stops the load
whatever it reached.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from services import free_port, wait_for_port

SERVICE = Path(__file__).resolve().parents[2] / "examples" / "replica_service.py"


class Replicas:
    """``count`` replica processes of the example service on ``url``."""

    def __init__(self, url: str, count: int, log_dir: Path) -> None:
        self.ports = [free_port() for _ in range(count)]
        self.logs = [(log_dir / f"replica{i}.log").open("w") for i in range(count)]
        self.processes = [
            subprocess.Popen(
                [sys.executable, str(SERVICE), url, str(port)], stdout=log, stderr=subprocess.STDOUT
            )
            for port, log in zip(self.ports, self.logs, strict=True)
        ]
        try:
            for port in self.ports:
                wait_for_port(port, timeout=60)
        except BaseException:
            self.stop()
            raise

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def flush(self) -> int:
        written = 0
        with httpx.Client(timeout=30) as client:
            for url in self.urls():
                response = client.post(url + "/audit/flush")
                response.raise_for_status()
                written += int(response.json()["written"])
        return written

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for log in self.logs:
            log.close()


@dataclass
class Outcome:
    sent: float
    received: float
    replica: int
    allowed: bool


@dataclass
class LoadResult:
    outcomes: list[Outcome] = field(default_factory=list)
    flip_started: float = 0.0
    flip_done: float = 0.0
    errors: int = 0

    def wrong(self, bound: float) -> list[Outcome]:
        """Decisions that contradict the consent: allowed before the grant was
        asked for, or refused once the bound had passed after it was committed."""
        return [
            o
            for o in self.outcomes
            if (o.received < self.flip_started and o.allowed)
            or (o.sent > self.flip_done + bound and not o.allowed)
        ]

    def refused(self) -> int:
        return sum(1 for o in self.outcomes if not o.allowed)

    def propagation(self) -> dict[int, float]:
        """Per replica: from the grant's commit to the first allowed answer sent after it."""
        first: dict[int, float] = {}
        for o in sorted(self.outcomes, key=lambda o: o.sent):
            if o.allowed and o.replica not in first:
                first[o.replica] = max(0.0, o.received - self.flip_done)
        return first

    def rate(self) -> float:
        if not self.outcomes:
            return 0.0
        span = max(o.received for o in self.outcomes) - min(o.sent for o in self.outcomes)
        return len(self.outcomes) / span if span > 0 else 0.0

    def latency_ms(self) -> float:
        return statistics.median((o.received - o.sent) * 1000 for o in self.outcomes)


async def _load(urls: list[str], tenant: str, total: int, concurrency: int, deadline: float) -> LoadResult:
    result = LoadResult()
    counter = iter(range(total))
    flip_at = total // 2
    flip_event = asyncio.Event()

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency * 2)) as client:

        async def worker() -> None:
            for n in counter:
                if time.monotonic() > deadline:
                    return
                if n == flip_at:
                    result.flip_started = time.monotonic()
                    response = await client.post(f"{urls[0]}/consent/{tenant}", params={"action": "grant"})
                    response.raise_for_status()
                    result.flip_done = time.monotonic()
                    flip_event.set()
                replica = n % len(urls)
                sent = time.monotonic()
                try:
                    response = await client.get(f"{urls[replica]}/improve/{tenant}")
                except httpx.HTTPError:
                    result.errors += 1
                    continue
                received = time.monotonic()
                if response.status_code not in (200, 403):
                    result.errors += 1
                    continue
                result.outcomes.append(Outcome(sent, received, replica, response.status_code == 200))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    if not flip_event.is_set():
        raise AssertionError("the load stopped at its deadline before the consent flip")
    return result


def run_load(
    urls: list[str], *, tenant: str = "contoso", total: int = 2000, concurrency: int = 16, seconds: float = 60
) -> LoadResult:
    return asyncio.run(_load(urls, tenant, total, concurrency, time.monotonic() + seconds))
