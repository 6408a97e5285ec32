"""The audit sink on the violation path, and its absence from the allowed path.

Every row runs under an activated guard in trace mode; the two guards differ
only in whether an audit sink (a real SQLite file, WAL, written by the sink's
own thread in batches) is subscribed. The writer thread's work shares the
GIL with the measured calls, so its cost shows up in the rows.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from harness import Case, Group

import purposeguard as pg
from purposeguard.audit import AuditLog, AuditSink

EMAIL = "customer_data.content.email"


def _namespace() -> dict[str, object]:
    pg.configure("trust-center")
    folder = Path(tempfile.mkdtemp(prefix="pg-bench-audit-"))
    log = AuditLog(folder / "audit.db", synchronous="normal")
    sink = AuditSink(log, owns_log=True)

    def cleanup() -> None:
        sink.close()
        shutil.rmtree(folder, ignore_errors=True)

    atexit.register(cleanup)
    policy = pg.Policy.load("trust-center")
    plain_guard = pg.Guard(policy, mode="trace")
    audited_guard = pg.Guard(policy, mode="trace")
    audited_guard.on_record(sink)

    @pg.purpose("advertising")
    def denied(x: object) -> object:
        return x

    @pg.purpose("service.operations")
    def allowed(x: object) -> object:
        return x

    return {
        "plain_guard": plain_guard,
        "audited_guard": audited_guard,
        "denied": denied,
        "allowed": allowed,
        "labelled": pg.label("ticket 4711", EMAIL, tenant="contoso"),
    }


def groups() -> list[Group]:
    namespace = _namespace()
    violation = Group(
        title="audit: violation path (trace mode)",
        baseline=Case(
            "violation recorded, no audit sink", "with plain_guard.activate(): denied(labelled)"
        ),
        baseline_label="violation without audit",
        cases=[
            Case(
                "violation recorded, audit sink attached",
                "with audited_guard.activate(): denied(labelled)",
                "<= 2x",
                ratio_limit=2.0,
            ),
            Case(
                "allowed call, audit sink attached",
                "with audited_guard.activate(): allowed(labelled)",
                "no record, no I/O",
            ),
            Case("allowed call, no audit sink", "with plain_guard.activate(): allowed(labelled)", ""),
        ],
        globals=namespace,
        number=5000,
        rounds=9,
    )
    return [violation]
