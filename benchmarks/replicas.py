"""Many replicas on one PostgreSQL: audit append cost, consent propagation, a load run.

    python benchmarks/replicas.py [--write]

Starts a throwaway PostgreSQL (Debian's postgresql package, as the tests do)
and measures, in interleaved rounds:

- audit appends per second through purposeguard (encode, chain under the
  head-row lock, commit) against raw psycopg inserts of the same JSON rows
  into a plain table, in the same transaction sizes: the ratio is the price
  of the chain;
- consent propagation: the time from a grant or revocation on one store to
  the changed decision in three replica processes (median, p99);
- the load test's scenario (four replicas of examples/replica_service.py,
  concurrent requests, one consent flip).

``--write`` puts the table into BENCHMARKS.md between its replica markers.
Not part of ``benchmarks/run.py``: it needs a database server.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "distributed"))

import psycopg  # noqa: E402
from replica_load import Replicas, run_load  # noqa: E402
from services import PostgresServer  # noqa: E402

from purposeguard.audit import AuditLog, encode  # noqa: E402
from purposeguard.consent import ConsentStore  # noqa: E402

ROUNDS = 7
RECORDS = 2000
BATCH = 100
SINGLE = 200
FLIPS = 30
REPLICA = ROOT / "tests" / "distributed" / "consent_replica.py"
BEGIN, END = "<!-- replicas table: begin -->", "<!-- replicas table: end -->"


def record(n: int) -> dict[str, object]:
    return {
        "kind": "violation",
        "category": "customer_data.content.email",
        "purpose": "advertising",
        "rule": "no-advertising",
        "via": "argument",
        "function": f"bench.f{n}",
        "tenant": "contoso",
        "mode": "trace",
        "timestamp": time.time(),
    }


def audit_rounds(url: str) -> dict[str, list[float]]:
    log = AuditLog(url)
    raw = psycopg.connect(url, autocommit=True)
    raw.execute(
        "CREATE TABLE raw_records (id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, "
        "timestamp DOUBLE PRECISION NOT NULL, data TEXT NOT NULL)"
    )
    cursor = raw.cursor()

    def raw_insert(rows: list[dict[str, object]]) -> None:
        with raw.transaction():
            cursor.executemany(
                "INSERT INTO raw_records (kind, timestamp, data) VALUES (%s, %s, %s)",
                [(r["kind"], r["timestamp"], json.dumps(r, sort_keys=True)) for r in rows],
            )

    def chained(rows: list[dict[str, object]]) -> None:
        log.storage.append([encode(r) for r in rows])

    times: dict[str, list[float]] = {"chain batch": [], "raw batch": [], "chain single": [], "raw single": []}
    for _ in range(ROUNDS):
        batches = [[record(n) for n in range(i, i + BATCH)] for i in range(0, RECORDS, BATCH)]
        singles = [[record(n)] for n in range(SINGLE)]
        for name, fn, work in (
            ("raw batch", raw_insert, batches),
            ("chain batch", chained, batches),
            ("chain single", chained, singles),
            ("raw single", raw_insert, singles),
        ):
            start = time.perf_counter()
            for rows in work:
                fn(rows)
            elapsed = time.perf_counter() - start
            times[name].append(elapsed / sum(len(rows) for rows in work))
    assert log.verify().ok
    log.close()
    raw.close()
    return times


def propagation(url: str) -> list[float]:
    ConsentStore(url).close()
    watchers = [
        subprocess.Popen(
            [sys.executable, str(REPLICA), url, "contoso", "600"], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    delays: list[float] = []
    try:
        for watcher in watchers:
            assert watcher.stdout is not None and watcher.stdout.readline().strip() == "ready"
            assert watcher.stdout.readline().split()[1] == "False"
        with ConsentStore(url) as store:
            for flip in range(FLIPS):
                granting = flip % 2 == 0
                before = time.time()
                if granting:
                    store.grant("contoso", "improvement", ["customer_data"], granted_by="bench@contoso")
                else:
                    store.revoke("contoso", "improvement", revoked_by="bench@contoso")
                for watcher in watchers:
                    assert watcher.stdout is not None
                    _, state, stamp = watcher.stdout.readline().split()
                    assert state == str(granting)
                    delays.append(float(stamp) - before)
                time.sleep(0.05)
    finally:
        for watcher in watchers:
            watcher.kill()
            watcher.wait()
            if watcher.stdout is not None:
                watcher.stdout.close()
    return delays


def per_round_ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    started = time.perf_counter()
    server = PostgresServer()
    try:
        times = audit_rounds(server.create_database())
        delays = propagation(server.create_database())
        url = server.create_database()
        AuditLog(url).close()
        with tempfile.TemporaryDirectory() as logs:
            replicas = Replicas(url, 4, Path(logs))
            try:
                load = run_load(replicas.urls(), total=2000, concurrency=16, seconds=120)
                replicas.flush()
            finally:
                replicas.stop()
        with AuditLog(url, readonly=True) as log:
            verified = log.verify()
            refusals = sum(1 for e in log.records() if e.kind == "violation")
    finally:
        server.close()
    rows = [
        (
            "audit append, 100 per transaction: raw psycopg insert (baseline)",
            f"{statistics.median(times['raw batch']) * 1e6:.1f} µs/record",
            f"{1 / statistics.median(times['raw batch']):,.0f}/s",
            "1.00x",
        ),
        (
            "audit append, 100 per transaction: purposeguard chain",
            f"{statistics.median(times['chain batch']) * 1e6:.1f} µs/record",
            f"{1 / statistics.median(times['chain batch']):,.0f}/s",
            f"{per_round_ratio(times, 'chain batch', 'raw batch'):.2f}x",
        ),
        (
            "audit append, 1 per transaction (sync durability): raw psycopg insert (baseline)",
            f"{statistics.median(times['raw single']) * 1e6:.0f} µs/record",
            f"{1 / statistics.median(times['raw single']):,.0f}/s",
            "1.00x",
        ),
        (
            "audit append, 1 per transaction (sync durability): purposeguard chain",
            f"{statistics.median(times['chain single']) * 1e6:.0f} µs/record",
            f"{1 / statistics.median(times['chain single']):,.0f}/s",
            f"{per_round_ratio(times, 'chain single', 'raw single'):.2f}x",
        ),
        (
            f"consent propagation to 3 replica processes ({len(delays)} samples)",
            f"median {statistics.median(delays) * 1000:.1f} ms",
            f"p99 {percentile(delays, 0.99) * 1000:.1f} ms",
            "bound 1 s",
        ),
        (
            "load: 4 replicas, 2000 requests, 16 concurrent, consent granted halfway",
            f"{load.rate():,.0f} req/s, median {load.latency_ms():.1f} ms",
            f"wrong decisions after the bound: {len(load.wrong(1.0))}",
            f"refused {load.refused()}, recorded {refusals}, chain {'intact' if verified.ok else 'BROKEN'}",
        ),
        (
            "load: first allowed answer per replica after the grant's commit",
            ", ".join(f"r{r}: {d * 1000:.0f} ms" for r, d in sorted(load.propagation().items())),
            "",
            "",
        ),
    ]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on CPython {platform.python_version()}, PostgreSQL 15 on loopback "
        f"(fsync off, as in the tests), in {time.perf_counter() - started:.0f} s (`python benchmarks/replicas.py --write`). "
        f"Append ratios are medians of per-round ratios over {ROUNDS} interleaved rounds.",
        "",
        "| case | per record / result | rate | ratio / note |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
    ]
    table = "\n".join(lines)
    print(table)
    if "--write" in sys.argv:
        path = ROOT / "BENCHMARKS.md"
        text = path.read_text(encoding="utf-8")
        if BEGIN in text:
            head, _, rest = text.partition(BEGIN)
            _, _, tail = rest.partition(END)
            text = f"{head}{BEGIN}\n{table}\n{END}{tail}"
        else:
            text += f"\n## Replicas on one PostgreSQL\n\n{BEGIN}\n{table}\n{END}\n"
        path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
