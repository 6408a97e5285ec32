"""Run every benchmark and print each row as a ratio to its baseline.

    python benchmarks/run.py                 # all benchmark files
    python benchmarks/run.py core zones      # only bench_core.py, bench_zones.py
    python benchmarks/run.py --write         # also refresh the table in BENCHMARKS.md
    python benchmarks/run.py --smoke         # one short round of everything: does it run? (no figures)
    python benchmarks/run.py --growth        # how cost grows (growth.py's curves); --write, --quick, --smoke

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
GROWTH_BEGIN = "<!-- growth table: begin -->"
GROWTH_END = "<!-- growth table: end -->"
GROWTH_HEADING = "## How cost grows"


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
    parser.add_argument(
        "--growth", action="store_true", help="how cost grows: the curves of growth.py and of bench files"
    )
    parser.add_argument("--emit-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.growth:
        if args.smoke and args.write:
            parser.error("--smoke measures nothing worth keeping: it cannot --write")
        return growth(args.names, quick=args.quick, smoke=args.smoke, write=args.write)
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


def growth(names: list[str], *, quick: bool, smoke: bool, write: bool) -> int:
    """Run each curve in a process of its own; print the section, and with
    ``write`` put it into BENCHMARKS.md under "How cost grows"."""
    import growth as curves

    # A bench file joins by defining growth(quick, smoke); read, not imported,
    # so looking costs nothing and runs none of its set-up.
    extra = [
        f"bench:{path.stem[6:]}"
        for path in sorted(HERE.glob("bench_*.py"))
        if "\ndef growth(" in path.read_text(encoding="utf-8")
    ]
    available = list(curves.CURVES) + extra
    unknown = [name for name in names if name not in available]
    if unknown:
        print(
            f"run.py: no curve named {', '.join(unknown)} (available: {', '.join(available)})",
            file=sys.stderr,
        )
        return 2
    started = time.time()
    rows: list[Row] = []
    for name in names or available:
        print(f"# growth: {name} ...", file=sys.stderr, flush=True)
        command = [sys.executable, str(HERE / "growth.py"), name]
        command += ["--quick"] if quick else []
        command += ["--smoke"] if smoke else []
        try:
            done = subprocess.run(
                command, stdout=subprocess.PIPE, text=True, timeout=300 if quick or smoke else 900
            )
        except subprocess.TimeoutExpired:
            print(f"run.py: curve {name} ran out of time", file=sys.stderr)
            return 1
        if done.returncode != 0:
            print(f"run.py: curve {name} failed (exit {done.returncode})", file=sys.stderr)
            return 1
        rows.extend(Row(**row) for row in json.loads(done.stdout.strip().splitlines()[-1]))
    elapsed = time.time() - started
    print(format_rows(rows, markdown=False))
    print(f"# {len(rows)} rows in {elapsed:.0f} s", file=sys.stderr)
    if write:
        header = (
            f"Measured {time.strftime('%Y-%m-%d')} on {platform.python_implementation()} "
            f"{platform.python_version()}, {platform.machine()}, in {elapsed:.0f} s "
            f"(`python benchmarks/run.py --growth{' --quick' if quick else ''} --write`). Each curve's "
            f"ratio is the median of per-round ratios to its first point, or to the plain operation "
            f"measured in the same round where the curve says so."
        )
        section = f"{GROWTH_BEGIN}\n{header}\n\n{format_rows(rows)}\n{GROWTH_END}"
        target = HERE.parent / "BENCHMARKS.md"
        text = target.read_text(encoding="utf-8")
        if GROWTH_BEGIN in text and GROWTH_END in text:
            text = (
                text[: text.index(GROWTH_BEGIN)] + section + text[text.index(GROWTH_END) + len(GROWTH_END) :]
            )
        else:
            text = text.rstrip("\n") + f"\n\n{GROWTH_HEADING}\n\n{section}\n"
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
