"""The audit sink on the violation path, and its absence from the allowed path.

The process's guard is configured once (trace mode), never activated inside
a timed statement: activation costs about as much as the call itself and
turns the wrappers' fast path off. Each row's setup (run before its timing,
every round) only subscribes or unsubscribes the sink, a real SQLite file
in WAL mode written by the sink's own thread in batches; rows without the
sink first flush what the sink still holds, so its writer does not bill
them. The writer shares the GIL with the measured calls, so its cost shows
in the rows with the sink; the "committed" group also pays for the commit
itself, on the caller's thread, by flushing after every 100 calls.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness import Case, Group

import purposeguard as pg
from purposeguard._records import Violation
from purposeguard.audit import AuditLog, AuditSink

EMAIL = "customer_data.content.email"
BURST = 100


def _namespace() -> dict[str, object]:
    pg.configure("trust-center", mode="trace")
    folder = Path(tempfile.mkdtemp(prefix="pg-bench-audit-"))
    log = AuditLog(folder / "audit.db", synchronous="normal")
    sink = AuditSink(log, owns_log=True)
    subscribed: list[Callable[[], None]] = []

    def with_sink() -> None:
        if not subscribed:
            subscribed.append(pg.on_record(sink))

    def without_sink() -> None:
        while subscribed:
            subscribed.pop()()
        sink.flush()

    # One sink per way of keeping records, each on its own file; only the
    # row's own sink is subscribed while it is timed.
    key = "bench-" + "0123456789abcdef" * 3
    sinks = {
        "batch": sink,
        "batch_keyed": AuditSink(AuditLog(folder / "keyed.db", synchronous="normal", key=key), owns_log=True),
        "sync": AuditSink(
            AuditLog(folder / "sync.db", synchronous="normal"), owns_log=True, durability="sync"
        ),
        "sync_keyed": AuditSink(
            AuditLog(folder / "sync-keyed.db", synchronous="normal", key=key),
            owns_log=True,
            durability="sync",
        ),
    }
    only: list[Callable[[], None]] = []

    def use(name: str) -> None:
        while only:
            only.pop()()
        for other in sinks.values():
            other.flush()
        only.append(pg.on_record(sinks[name]))

    def cleanup() -> None:
        without_sink()
        while only:
            only.pop()()
        for each in sinks.values():
            each.close()
        raw.close()
        shutil.rmtree(folder, ignore_errors=True)

    atexit.register(cleanup)

    @pg.purpose("advertising")
    def denied(x: object) -> object:
        return x

    @pg.purpose("service.operations")
    def allowed(x: object) -> object:
        return x

    labelled = pg.label("ticket 4711", EMAIL, tenant="contoso")

    # Batch size 1: one record, one transaction, against a raw sqlite3 loop
    # that does the same work by hand: the record's JSON (same encoder
    # settings), the keyed HMAC link to the previous entry, the signed head
    # kept beside the rows (what lets verify notice a cut tail), one
    # transaction per record, the same WAL and synchronous settings.
    record = Violation(EMAIL, "advertising", "r1", "argument", "bench.f", "contoso", "trace", time.time())
    one_by_one = AuditSink(
        AuditLog(folder / "one.db", synchronous="normal", key=key), owns_log=True, durability="sync"
    )
    sinks["one_by_one"] = one_by_one
    raw = sqlite3.connect(folder / "raw.db", isolation_level=None, check_same_thread=False)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=NORMAL")
    raw.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    raw.execute(
        "CREATE TABLE audit (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, timestamp REAL NOT NULL, "
        "data TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)"
    )
    encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    secret = key.encode()
    head: list[tuple[int, str]] = [(0, "0" * 64)]

    def raw_append() -> None:
        data = encoder.encode(record.to_dict())
        seq, prev = head[0][0] + 1, head[0][1]
        mac = hmac.new(secret, digestmod=hashlib.sha256)
        mac.update(f"log\n{prev}\n{seq}\nviolation\n{record.timestamp!r}\n".encode())
        mac.update(data.encode())
        digest = mac.hexdigest()
        signed = hmac.new(secret, f"checkpoint\nlog\n{seq}\n{digest}".encode(), hashlib.sha256).hexdigest()
        raw.execute("BEGIN IMMEDIATE")
        raw.execute(
            "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?)",
            (seq, "violation", record.timestamp, data, prev, digest),
        )
        raw.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('head_seq', ?), ('head_hash', ?), ('head_mac', ?)",
            (str(seq), digest, signed),
        )
        raw.execute("COMMIT")
        head[0] = (seq, digest)

    def raw_rows_only() -> None:
        data = encoder.encode(record.to_dict())
        seq, prev = head[0][0] + 1, head[0][1]
        mac = hmac.new(secret, digestmod=hashlib.sha256)
        mac.update(f"log\n{prev}\n{seq}\nviolation\n{record.timestamp!r}\n".encode())
        mac.update(data.encode())
        digest = mac.hexdigest()
        raw.execute("BEGIN IMMEDIATE")
        raw.execute(
            "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?)",
            (seq, "violation", record.timestamp, data, prev, digest),
        )
        raw.execute("COMMIT")
        head[0] = (seq, digest)

    def burst() -> None:
        for _ in range(BURST):
            denied(labelled)

    def burst_committed() -> None:
        for _ in range(BURST):
            denied(labelled)
        sink.flush()

    return {
        "with_sink": with_sink,
        "without_sink": without_sink,
        "denied": denied,
        "allowed": allowed,
        "labelled": labelled,
        "burst": burst,
        "burst_committed": burst_committed,
        "use": use,
        "one_by_one": one_by_one,
        "record": record,
        "raw_append": raw_append,
        "raw_rows_only": raw_rows_only,
    }


def groups() -> list[Group]:
    namespace = _namespace()
    violation = Group(
        title="audit: violation path (trace mode)",
        baseline=Case("violation recorded, no audit sink", "denied(labelled)", setup="without_sink()"),
        baseline_label="violation without audit",
        cases=[
            Case(
                "violation recorded, audit sink attached (caller's time)",
                "denied(labelled)",
                "<= 2x",
                setup="with_sink()",
                ratio_limit=2.0,
            ),
        ],
        globals=namespace,
        number=5000,
        rounds=9,
    )
    committed = Group(
        title=f"audit: {BURST} violations, then committed (trace mode)",
        baseline=Case(f"{BURST} violations, no audit sink", "burst()", setup="without_sink()"),
        baseline_label=f"{BURST} violations without audit",
        cases=[
            # Informative: the whole cost of keeping every record (encoding,
            # hashing, committing), which no caller waits for in production.
            Case(
                f"{BURST} violations, audit sink attached, flushed to disk",
                "burst_committed()",
                setup="with_sink()",
            ),
        ],
        globals=namespace,
        number=50,
        rounds=9,
    )
    allowed = Group(
        title="audit: allowed path (trace mode)",
        baseline=Case("allowed call, no audit sink", "allowed(labelled)", setup="without_sink()"),
        baseline_label="allowed call without audit",
        cases=[
            Case(
                "allowed call, audit sink attached",
                "allowed(labelled)",
                "<= 1.2x (no record, no I/O)",
                setup="with_sink()",
                ratio_limit=1.2,
            ),
        ],
        globals=namespace,
        number=20000,
        rounds=9,
    )
    durability = Group(
        title="audit: durability and key (trace mode, caller's time per violation)",
        baseline=Case("audit sink, batch durability, unkeyed", "denied(labelled)", setup="use('batch')"),
        baseline_label="batch durability, unkeyed",
        cases=[
            Case(
                "audit sink, batch durability, keyed chain (HMAC)",
                "denied(labelled)",
                setup="use('batch_keyed')",
            ),
            # Informative: what a deployment that must not lose the last
            # milliseconds pays, one SQLite commit per record on the caller's thread.
            Case(
                "audit sink, sync durability (a commit per record)", "denied(labelled)", setup="use('sync')"
            ),
            Case("audit sink, sync durability, keyed chain", "denied(labelled)", setup="use('sync_keyed')"),
        ],
        globals=namespace,
        number=300,
        rounds=7,
    )
    single = Group(
        title="audit: batch size 1, keyed chain (a transaction per record)",
        baseline=Case("raw sqlite3 loop: same JSON, HMAC link and signed head", "raw_append()"),
        baseline_label="raw sqlite3 loop",
        cases=[
            Case(
                "audit sink, sync durability: one record appended and committed",
                "one_by_one(record)",
                "<= 1.5x",
                ratio_limit=1.5,
            ),
            # Informative: what keeping the signed head beside the rows costs
            # (a second page in every commit), paid by both rows above.
            Case("raw sqlite3 loop, rows only (no head kept)", "raw_rows_only()", "informative"),
        ],
        globals=namespace,
        number=300,
        rounds=9,
    )
    return [violation, committed, allowed, durability, single]
