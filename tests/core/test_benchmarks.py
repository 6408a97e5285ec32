"""Every benchmark still runs: one short round each (`benchmarks/run.py NAME --smoke`).

No figure is asserted: a shared machine makes timings noise. What is held is
that each file loads against today's code, measures every case it declares
and hands back rows the table can print.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
NAMES = sorted(path.stem.removeprefix("bench_") for path in BENCHMARKS.glob("bench_*.py"))
# Benchmarks that need a program pip cannot install (wrk, the Debian package).
NEEDS_SERVICES = {"load"}


def _smoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), *args], capture_output=True, text=True, timeout=300
    )


def test_there_are_benchmarks_to_run() -> None:
    assert {"audit", "core", "middleware", "otel", "zones"} <= set(NAMES)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=[pytest.mark.services, pytest.mark.slow]) if n in NEEDS_SERVICES else n
        for n in NAMES
    ],
)
def test_benchmark_runs_one_short_round(name: str) -> None:
    done = _smoke(name, "--smoke", "--emit-json")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    assert rows, f"benchmark {name} produced no rows"
    for row in rows:
        assert row["group"] and row["name"], row
        assert math.isfinite(row["per_call_ns"]) and row["per_call_ns"] > 0, row
        assert math.isfinite(row["ratio"]) and row["ratio"] > 0, row


def test_a_smoke_run_cannot_overwrite_the_table() -> None:
    done = _smoke("core", "--smoke", "--write")
    assert done.returncode == 2
    assert "--smoke measures nothing worth keeping" in done.stderr


def test_the_growth_report_runs_one_short_round_of_every_curve() -> None:
    done = _smoke("--growth", "--smoke")
    assert done.returncode == 0, done.stderr[-3000:]
    groups = {line.split("  ")[0] for line in done.stdout.splitlines()[1:] if line.strip()}
    for curve in (
        "rules",
        "tenants",
        "arguments",
        "labels per value",
        "string length",
        "violations",
        "audit batch",
        "peers",
    ):
        assert any(group.startswith(curve) for group in groups), (curve, groups)
    assert "pycasbin enforce" in done.stdout


def test_a_smoke_growth_run_cannot_overwrite_the_report() -> None:
    done = _smoke("--growth", "--smoke", "--write")
    assert done.returncode == 2
    assert "--smoke measures nothing worth keeping" in done.stderr


def test_an_unknown_curve_is_one_line_and_exit_2() -> None:
    done = _smoke("--growth", "--smoke", "no-such-curve")
    assert done.returncode == 2
    assert (
        done.stderr.strip().splitlines() == [done.stderr.strip().splitlines()[0]]
        and "no curve named no-such-curve" in done.stderr
    )
