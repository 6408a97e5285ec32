"""How cost grows: one curve per dimension a deployment scales along.

    python benchmarks/run.py --growth [--quick] [--write]

Each curve runs in a process of its own (``growth.py CURVE --emit-json``) and
returns harness rows: a point's ratio is to the curve's first point, or to
the plain operation measured in the same round where that is the question
(labelled against plain strings, guarded against bare calls, purposeguard's
load against ``tomllib``'s parse). Rounds interleave the points and each
ratio is the median of per-round ratios. The peers (pycasbin, and oso,
cedarpy, regorus where they import) are measured in the same run.

A benchmark file adds curves of its own by defining
``growth(quick: bool, smoke: bool) -> list[Row]``: the runner calls it too,
so ``bench_NAME.py`` can contribute rows without editing this file.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import Row  # noqa: E402

import purposeguard as pg  # noqa: E402

EMAIL = "customer_data.content.email"
PURPOSE = "service.operations"


def _interleave(
    points: Sequence[tuple[str, Callable[..., Any], int]], rounds: int
) -> tuple[list[float], list[list[float]]]:
    """Time each point's callable ``number`` times per round, in turn; returns
    the per-call medians (ns) and every round's per-call samples."""
    samples: list[list[float]] = [[] for _ in points]
    for _, run, _number in points:
        run()  # warm up
    for _ in range(rounds):
        for index, (_, run, number) in enumerate(points):
            started = time.perf_counter()
            for _ in range(number):
                run()
            samples[index].append((time.perf_counter() - started) / number * 1e9)
    return [statistics.median(s) for s in samples], samples


def _ratios(samples: list[list[float]], base: int = 0) -> list[float]:
    return [
        statistics.median(s / b for s, b in zip(column, samples[base], strict=True)) for column in samples
    ]


def _curve(
    group: str, names: list[str], medians: list[float], ratios: list[float], **extra: Any
) -> list[Row]:
    targets: dict[int, tuple[str, bool | None]] = extra.get("targets", {})
    notes: dict[int, str] = extra.get("notes", {})
    out = []
    for index, name in enumerate(names):
        target, met = targets.get(index, ("", None))
        out.append(Row(group, name, medians[index], ratios[index], target, met, notes.get(index, "")))
    return out


# -- policy size ------------------------------------------------------------------------------


def rules(quick: bool, smoke: bool) -> list[Row]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    from bench_policy import policy_text

    out = []
    sizes = (10, 100) if smoke else (10, 1_000, 10_000)
    for size in sizes:
        text = policy_text(size)
        number = 1 if size >= 1_000 else 10
        medians, samples = _interleave(
            [
                ("parse", lambda text=text: tomllib.loads(text), number),
                ("load", lambda text=text: pg.Policy.from_toml(text), number),
            ],
            rounds=1 if smoke else 3 if quick else 7,
        )
        ratio = _ratios(samples)[1]
        out.append(
            Row(
                "rules: Policy.from_toml against tomllib.loads of the same text",
                f"{size:,} rules",
                medians[1],
                ratio,
                "<= 5x",
                ratio <= 5,
                f"parse {medians[0] / 1e6:.1f} ms",
            )
        )
    return out


# -- tenants --------------------------------------------------------------------------------------


def tenants(quick: bool, smoke: bool) -> list[Row]:
    """``label(value, category, tenant=t)`` cycling over pools of distinct
    tenants, each pool first labelled through once (within a time bound)."""
    pools = (10, 100) if smoke else (10, 10_000, 1_000_000)
    budget = 0.5 if smoke else 20.0 if quick else 60.0
    label = pg.label
    points = []
    notes = {}
    for index, size in enumerate(pools):
        names = [f"tenant-{size}-{n}" for n in range(size)]
        started = time.perf_counter()
        seen = 0
        for name in names:
            label("ticket 4711", EMAIL, tenant=name)
            seen += 1
            if seen % 1000 == 0 and time.perf_counter() - started > budget:
                break
        if seen < size:
            notes[index] = f"{seen:,} of {size:,} distinct tenants labelled within {budget:.0f} s"
        cycle = itertools.cycle(names[: max(seen, 1)] if seen < size else names)

        def one(cycle: Any = cycle) -> None:
            label("ticket 4711", EMAIL, tenant=next(cycle))

        points.append((f"{size:,} tenants", one, 200 if smoke else 2000))
    medians, samples = _interleave(points, rounds=1 if smoke else 5 if quick else 9)
    return _curve(
        "tenants: label(value, category, tenant=t), to 10 tenants",
        [p[0] for p in points],
        medians,
        _ratios(samples),
        targets={i: ("<= 1.5x", r <= 1.5) for i, r in enumerate(_ratios(samples)) if i},
        notes=notes,
    )


# -- arguments and labels per value ------------------------------------------------------------------


def _function(count: int) -> tuple[Callable[..., Any], Callable[..., Any]]:
    parameters = ", ".join(f"a{n}" for n in range(count))
    scope: dict[str, Any] = {}
    exec(f"def takes_{count}({parameters}):\n    return a0\n", scope)
    bare = scope[f"takes_{count}"]
    exec(f"def guarded_{count}({parameters}):\n    return a0\n", scope)
    return bare, pg.purpose(PURPOSE)(scope[f"guarded_{count}"])


def arguments(quick: bool, smoke: bool) -> list[Row]:
    """A guarded call with N labelled allowed arguments against a bare call with the same N."""
    pg.configure("trust-center", mode="trace")
    counts = (1, 4) if smoke else (1, 2, 4, 8, 16, 32)
    out = []
    for count in counts:
        bare, guarded = _function(count)
        values = [pg.label(f"ticket {n}", EMAIL) for n in range(count)]
        call_args = ", ".join(f"v[{n}]" for n in range(count))
        namespace = {"bare": bare, "guarded": guarded, "v": values}
        bare_call = timeit.Timer(f"bare({call_args})", globals=namespace)
        guarded_call = timeit.Timer(f"guarded({call_args})", globals=namespace)
        number = 20 if smoke else 5000
        medians, samples = _interleave(
            [
                ("bare", lambda t=bare_call, n=number: t.timeit(n) / n, 1),
                ("guarded", lambda t=guarded_call, n=number: t.timeit(n) / n, 1),
            ],
            rounds=1 if smoke else 5 if quick else 11,
        )
        # _interleave timed one timeit() call; per call is that over number.
        per_call = [m / number for m in medians]
        ratio = _ratios(samples)[1]
        out.append(
            Row(
                "arguments: @purpose with N labelled allowed arguments, to a bare call with N",
                f"{count} argument{'s' if count > 1 else ''}",
                per_call[1],
                ratio,
                "informative",
                None,
                f"bare {per_call[0]:.0f} ns",
            )
        )
    return out


def labels_per_value(quick: bool, smoke: bool) -> list[Row]:
    """A guarded call whose one argument carries N allowed categories."""
    pg.configure("trust-center", mode="trace")
    policy = pg.Policy.load("trust-center")
    allowed = [c for c in sorted(policy.taxonomy.categories) if policy.decide([c], PURPOSE).allowed]
    counts = [n for n in ((1, 2) if smoke else (1, 2, 4, 8)) if n <= len(allowed)]

    @pg.purpose(PURPOSE)
    def use(value: object) -> object:
        return value

    points = []
    for count in counts:
        value = pg.label("ticket 4711", *allowed[:count])
        points.append(
            (f"{count} categor{'ies' if count > 1 else 'y'}", lambda v=value: use(v), 20 if smoke else 20000)
        )
    medians, samples = _interleave(points, rounds=1 if smoke else 5 if quick else 11)
    return _curve(
        "labels per value: @purpose call, allowed, to 1 category",
        [p[0] for p in points],
        medians,
        _ratios(samples),
    )


# -- string length --------------------------------------------------------------------------------------


def string_length(quick: bool, smoke: bool) -> list[Row]:
    """Labelled against plain, per operation and length (interleaved in each round)."""
    lengths = (100, 10_000) if smoke else (100, 10_000, 100_000, 1_000_000)
    operations: dict[str, Callable[[str], Any]] = {
        "upper()": str.upper,
        "slice [1:-1]": lambda s: s[1:-1],
        "+ ' -- sent'": lambda s: s + " -- sent",
        "replace('a', 'b')": lambda s: s.replace("a", "b"),
    }
    out = []
    for length in lengths:
        plain = ("ticket body, " * (length // 13 + 1))[:length]
        labelled = pg.label(plain, EMAIL)
        number = 2 if smoke else max(3, 300_000 // length)
        for op_name, op in operations.items():
            medians, samples = _interleave(
                [
                    ("plain", lambda o=op, s=plain: o(s), number),
                    ("labelled", lambda o=op, s=labelled: o(s), number),
                ],
                rounds=1 if smoke else 5 if quick else 9,
            )
            ratio = _ratios(samples)[1]
            out.append(
                Row(
                    "string length: labelled str operation, to the plain one",
                    f"{length:,} chars: {op_name}",
                    medians[1],
                    ratio,
                    "<= 3x",
                    ratio <= 3,
                    f"plain {medians[0] / 1000:.1f} µs",
                )
            )
    return out


# -- violations per second and the audit log -----------------------------------------------------------------


def violations(quick: bool, smoke: bool) -> list[Row]:
    """Bursts of trace-mode violations with the audit sink attached (batch
    durability, keyed), each burst flushed to disk: the cost per violation
    as the volume grows, and the rate one thread sustains."""
    from purposeguard.audit import AuditLog, AuditSink

    pg.configure("trust-center", mode="trace")
    folder = Path(tempfile.mkdtemp(prefix="pg-growth-violations-"))
    sink = AuditSink(
        AuditLog(folder / "audit.db", synchronous="normal", key="growth-" + "0123456789abcdef" * 3),
        owns_log=True,
    )
    unsubscribe = pg.on_record(sink)

    @pg.purpose("advertising")
    def advertise(value: object) -> None:
        return None

    value = pg.label("ticket 4711", EMAIL, tenant="contoso")
    bursts = (10, 100) if smoke else (100, 1_000, 10_000)

    def burst(size: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(size):
                advertise(value)
            sink.flush()

        return run

    try:
        medians, samples = _interleave(
            [(f"{size:,}", burst(size), 1) for size in bursts], rounds=1 if smoke else 3 if quick else 7
        )
    finally:
        unsubscribe()
        sink.close()
        shutil.rmtree(folder, ignore_errors=True)
    per_violation = [[s / size for s in column] for column, size in zip(samples, bursts, strict=True)]
    ratios = _ratios(per_violation)
    out = []
    for index, size in enumerate(bursts):
        each = medians[index] / size
        out.append(
            Row(
                "violations per second: a burst with the audit sink, flushed, per violation, to 100",
                f"burst of {size:,} violations",
                each,
                ratios[index],
                "",
                None,
                f"{1e9 / each:,.0f} violations/s",
            )
        )
    return out


def audit_batch(quick: bool, smoke: bool) -> list[Row]:
    """``append_many`` of batches of N records to a keyed SQLite log, per record, to batch size 1."""
    from purposeguard.audit import AuditLog

    folder = Path(tempfile.mkdtemp(prefix="pg-growth-audit-"))
    log = AuditLog(folder / "audit.db", synchronous="normal", key="growth-" + "0123456789abcdef" * 3)
    record = pg.Violation(EMAIL, "advertising", "r1", "argument", "growth.f", "contoso", "trace", time.time())
    sizes = (1, 10) if smoke else (1, 10, 100, 1_000)
    total = 20 if smoke else 1_000 if quick else 3_000
    points = []
    for size in sizes:
        batch = [record] * size
        points.append((f"batch of {size:,}", lambda b=batch: log.append_many(b), max(1, total // size)))
    try:
        medians, samples = _interleave(points, rounds=1 if smoke else 3 if quick else 7)
    finally:
        log.close()
        shutil.rmtree(folder, ignore_errors=True)
    per_record = [[s / size for s in column] for column, size in zip(samples, sizes, strict=True)]
    ratios = _ratios(per_record)
    return [
        Row(
            "audit batch size: per record, to batch size 1",
            points[i][0],
            medians[i] / size,
            ratios[i],
            "",
            None,
            f"{size * 1e9 / medians[i]:,.0f} records/s",
        )
        for i, size in enumerate(sizes)
    ]


# -- peers --------------------------------------------------------------------------------------------------


PEER_NOTES: list[str] = []


def _cedar() -> Callable[[], Any] | None:
    try:
        import cedarpy  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        PEER_NOTES.append("cedarpy: not installed")
        return None
    policies = (
        'permit(principal, action == Action::"service.operations", '
        'resource == Category::"customer_data.content.email");'
    )
    request = {
        "principal": 'Service::"api"',
        "action": 'Action::"service.operations"',
        "resource": 'Category::"customer_data.content.email"',
        "context": {},
    }
    if not cedarpy.is_authorized(request, policies, []).allowed:
        raise RuntimeError("cedarpy did not allow what its policy permits")
    return lambda: cedarpy.is_authorized(request, policies, [])


def _oso() -> Callable[[], Any] | None:
    try:
        from oso import Oso  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        PEER_NOTES.append(
            "oso: not installed (not in the `bench` extra: it pins cffi~=1.15, which would downgrade cffi 2)"
        )
        return None
    oso = Oso()
    oso.load_str('allow(actor, "service.operations", "customer_data.content.email");')
    return lambda: oso.is_allowed("api", "service.operations", EMAIL)


def _regorus() -> Callable[[], Any] | None:
    try:
        import regorus  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        PEER_NOTES.append(
            "regorus: not installed (the package registry offers no build of it for this Python)"
        )
        return None
    engine = regorus.Engine()
    engine.add_policy(
        "policy.rego",
        'package pg\nallow if { input.purpose == "service.operations"; input.category == "customer_data.content.email" }',
    )
    engine.set_input({"purpose": PURPOSE, "category": EMAIL})
    return lambda: engine.eval_query("data.pg.allow")


def peers(quick: bool, smoke: bool) -> list[Row]:
    """decide() of a label set seen before, and each peer's own check of the same question."""
    from bench_core import _casbin_enforcer

    policy = pg.Policy.load("trust-center")
    labels = frozenset([EMAIL])
    enforcer = _casbin_enforcer()
    points: list[tuple[str, Callable[[], Any], int]] = [
        ("purposeguard decide(), label set seen before", lambda: policy.decide(labels, PURPOSE), 20000),
        ("pycasbin enforce", lambda: enforcer.enforce(EMAIL, PURPOSE, "use"), 300),
    ]
    for name, make in (
        ("cedarpy is_authorized", _cedar),
        ("oso is_allowed", _oso),
        ("regorus eval_query", _regorus),
    ):
        check = make()
        if check is not None:
            points.append((name, check, 300))
    if smoke:
        points = [(name, run, 5) for name, run, _ in points]
    medians, samples = _interleave(points, rounds=1 if smoke else 3 if quick else 9)
    ratios = _ratios(samples)
    rows = _curve(
        "peers: the same allow decision, to purposeguard's decide()", [p[0] for p in points], medians, ratios
    )
    for row in rows[1:]:
        row.target, row.met = ">= 100x (decide faster)", row.ratio >= 100
    if PEER_NOTES:
        rows[0].note = "; ".join(PEER_NOTES)
    return rows


CURVES: dict[str, Callable[[bool, bool], list[Row]]] = {
    "rules": rules,
    "tenants": tenants,
    "arguments": arguments,
    "labels": labels_per_value,
    "strings": string_length,
    "violations": violations,
    "audit": audit_batch,
    "peers": peers,
}


def main() -> int:
    name = sys.argv[1]
    quick, smoke = "--quick" in sys.argv, "--smoke" in sys.argv
    if name.startswith("bench:"):
        from run import load

        rows = load(name.removeprefix("bench:")).growth(quick=quick, smoke=smoke)
    else:
        rows = CURVES[name](quick, smoke)
    print(json.dumps([dataclasses.asdict(row) for row in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
