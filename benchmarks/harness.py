"""Interleaved micro-benchmarks reported as ratios to a bare call.

Absolute times on a shared machine move by 2x between runs; ratios measured
in the same round move much less. Each round times every statement of a
group once, in turn, and a row's figure is the median over rounds of its
per-round ratio to the group's baseline.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import timeit
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Case:
    name: str
    stmt: str | Callable[[], Any]
    target: str = ""  # e.g. "<= 10x" or "<= 20 us"; empty: informative row
    setup: str | Callable[[], Any] = "pass"
    ratio_limit: float | None = None
    absolute_limit_us: float | None = None
    # The name of another case of the group: the row's ratio is to that case
    # (timed in the same rounds), and a second, informative row gives the
    # ratio to the group's baseline.
    relative_to: str = ""


@dataclass
class Row:
    group: str
    name: str
    per_call_ns: float
    ratio: float
    target: str
    met: bool | None
    note: str = ""


@dataclass
class Group:
    title: str
    baseline: Case
    cases: list[Case]
    globals: dict[str, Any] = field(default_factory=dict)
    number: int = 20000
    rounds: int = 15
    baseline_label: str = "bare call"


def run_group(group: Group) -> list[Row]:
    cases = [group.baseline] + group.cases
    timers = [timeit.Timer(c.stmt, c.setup, globals=group.globals) for c in cases]
    for timer in timers:  # warm caches, memoised decisions and generated classes
        timer.timeit(max(1, group.number // 10))
    samples: list[list[float]] = [[] for _ in cases]
    for _ in range(group.rounds):
        for index, timer in enumerate(timers):
            samples[index].append(timer.timeit(group.number) / group.number)
    named = {case.name: index for index, case in enumerate(cases)}
    rows = []
    for index, case in enumerate(cases):
        base = samples[named[case.relative_to]] if case.relative_to else samples[0]
        ratio = _median_ratio(samples[index], base)
        per_call = statistics.median(samples[index]) * 1e9
        met: bool | None = None
        if case.ratio_limit is not None:
            met = ratio <= case.ratio_limit
        note = ""
        if case.absolute_limit_us is not None:
            # An absolute time is the cost of the code when nothing else
            # interferes: best of the rounds, as the design measures its own
            # absolute figures ("best of 7"); the median is shown beside it.
            best = min(samples[index]) * 1e9
            met = best / 1000 <= case.absolute_limit_us
            note = f"(best of {group.rounds}: {_ns(best)}; median shown)"
        name = f"{case.name} (to {case.relative_to})" if case.relative_to else case.name
        rows.append(
            Row(group.title, name if index else f"{name} (baseline)", per_call, ratio, case.target, met, note)
        )
        if case.relative_to:
            to_baseline = _median_ratio(samples[index], samples[0])
            name = f"{case.name} (to {group.baseline.name})"
            rows.append(Row(group.title, name, per_call, to_baseline, "informative", None))
    return rows


def _median_ratio(samples: list[float], base: list[float]) -> float:
    return statistics.median(s / b for s, b in zip(samples, base, strict=True))


def format_rows(rows: list[Row], markdown: bool = True) -> str:
    head = ["group", "case", "per call", "ratio to baseline", "target", "met"]
    body = []
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "**no**" if markdown else "NO")
        body.append(
            [
                row.group,
                row.name,
                _ns(row.per_call_ns),
                f"{row.ratio:.2f}x",
                row.target,
                met + (f" {row.note}" if row.note else ""),
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) for r in [head] + body)


def _ns(value: float) -> str:
    return f"{value / 1000:.2f} µs" if value >= 1000 else f"{value:.0f} ns"


def stop_servers(processes: Iterable[subprocess.Popen[bytes]]) -> None:
    """Stop the server processes a benchmark started: all asked to end at
    once, then each waited for (killed if it takes more than 10 s)."""
    processes = list(processes)
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def start_server(
    script: str, *args: str, env: Mapping[str, str], cpus: set[int] | None = None
) -> tuple[int, subprocess.Popen[bytes]]:
    """Start ``python script serve ARGS... PORT`` on a free loopback port,
    its output discarded; ``cpus`` pins it (set before it starts, so its
    threads and worker processes inherit it). Stop it with stop_servers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, script, "serve", *args, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(env),
        preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
    )
    return port, process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
