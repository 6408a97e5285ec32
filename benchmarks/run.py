"""Run every benchmark and print each row as a ratio to its baseline.

    python benchmarks/run.py                 # all benchmark files
    python benchmarks/run.py core zones      # only bench_core.py, bench_zones.py
    python benchmarks/run.py --write         # also refresh the table in BENCHMARKS.md
    python benchmarks/run.py --smoke         # one short round of everything: does it run? (no figures)

Each ``benchmarks/bench_*.py`` defines ``groups()`` (interleaved timeit
groups, see harness.py) and/or ``rows()`` (benchmarks that measure their own
way, e.g. a load generator against a server, returning harness.Row objects;
``rows(quick=..., smoke=...)``: ``smoke`` asks for one round of a few
operations, enough to prove the benchmark still runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import Row, format_rows, run_group  # noqa: E402

BEGIN = "<!-- benchmark table: begin -->"
END = "<!-- benchmark table: end -->"


def load(name: str):
    path = HERE / f"bench_{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(name: str, quick: bool, smoke: bool = False) -> list[Row]:
    module = load(name)
    rows: list[Row] = []
    for group in getattr(module, "groups", lambda: [])():
        if smoke:
            group.rounds, group.number = 1, 20
        elif quick:
            group.rounds, group.number = 3, max(1000, group.number // 10)
        print(f"# {group.title} ...", file=sys.stderr, flush=True)
        rows.extend(run_group(group))
    if hasattr(module, "rows"):
        print(f"# {name}: own measurement ...", file=sys.stderr, flush=True)
        if smoke and "smoke" in inspect.signature(module.rows).parameters:
            rows.extend(module.rows(quick=True, smoke=True))
        else:
            rows.extend(module.rows(quick=quick or smoke))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="benchmark files to run (default: all)")
    parser.add_argument("--write", action="store_true", help="refresh the table in BENCHMARKS.md")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run, not for the table)")
    parser.add_argument(
        "--smoke", action="store_true", help="one short round: proves each benchmark runs, no figures"
    )
    parser.add_argument("--emit-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    available = sorted(p.stem[6:] for p in HERE.glob("bench_*.py"))
    unknown = [name for name in args.names if name not in available]
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)} (available: {', '.join(available)})")
    if args.smoke and args.write:
        parser.error("--smoke measures nothing worth keeping: it cannot --write")
    names = args.names or available
    rows: list[Row] = []
    started = time.time()
    if args.emit_json:
        # One benchmark file, measured in this (fresh) process, rows as JSON.
        print(json.dumps([dataclasses.asdict(row) for row in measure(names[0], args.quick, args.smoke)]))
        return 0
    for name in names:
        # Each file in a process of its own: servers, writer threads and
        # telemetry one file leaves behind must not bill the next one.
        command = [sys.executable, str(Path(__file__).resolve()), name, "--emit-json"]
        if args.quick:
            command.append("--quick")
        if args.smoke:
            command.append("--smoke")
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=1800)
        if done.returncode != 0:
            print(f"run.py: benchmark {name} failed (exit {done.returncode})", file=sys.stderr)
            return 1
        rows.extend(Row(**row) for row in json.loads(done.stdout.strip().splitlines()[-1]))
    print(format_rows(rows, markdown=False))
    misses = [r for r in rows if r.met is False]
    header = (
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.machine()}, in {time.time() - started:.0f} s "
        f"(`python benchmarks/run.py --write`). Ratios are medians of per-round ratios to the "
        f"group's baseline measured in the same round."
    )
    if args.write:
        target = HERE.parent / "BENCHMARKS.md"
        text = target.read_text(encoding="utf-8") if target.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
        table = f"{BEGIN}\n{header}\n\n{format_rows(rows)}\n\nMisses: {len(misses)}\n{END}"
        if BEGIN in text and END in text:
            text = text[: text.index(BEGIN)] + table + text[text.index(END) + len(END) :]
        else:
            text += "\n" + table + "\n"
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
