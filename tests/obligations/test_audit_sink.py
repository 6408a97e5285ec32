"""The audit sink: records reach the log off the caller's thread, and a log
that cannot keep them makes enforce mode deny (fail closed)."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard import audit
from purposeguard._runtime import SinkFailure
from purposeguard.audit import AuditError, AuditLog, AuditSink

EMAIL = "customer_data.content.email"


@pg.purpose("advertising")
def recommend_ads(text: str) -> int:
    return len(text)


@pg.purpose("service.operations")
def troubleshoot(text: str) -> int:
    return len(text)


def count_in(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute("SELECT count(*) FROM purposeguard_audit").fetchone()[0])
    finally:
        connection.close()


def wait_for(predicate: Any, limit: float = 10.0) -> bool:
    """Poll (bounded) for something the writer thread does in its own time."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_configure_audit_path_records_every_violation(log_path: Path) -> None:
    pg.configure("trust-center", mode="trace", audit=str(log_path))
    body = pg.label("Quarterly numbers attached", EMAIL, tenant="contoso")
    for _ in range(5):
        recommend_ads(body)
    sink = audit.attached()
    assert sink is not None
    sink.flush()
    with AuditLog(log_path, readonly=True) as log:
        entries = list(log.records())
        assert log.verify().ok
    assert len(entries) == 5
    assert {e.kind for e in entries} == {"violation"}
    first = entries[0].data
    assert (first["category"], first["purpose"], first["rule"], first["mode"]) == (
        EMAIL,
        "advertising",
        "no-advertising",
        "trace",
    )
    assert first["tenant"] == "contoso"
    assert first["function"].endswith("recommend_ads")
    pg.configure("trust-center", audit=False)
    assert audit.attached() is None


def test_enforce_mode_violations_are_recorded_too(log_path: Path) -> None:
    pg.configure("trust-center", audit=log_path)
    body = pg.label("Quarterly numbers attached", EMAIL)
    with pytest.raises(pg.PurposeViolation):
        recommend_ads(body)
    audit.detach()
    with AuditLog(log_path, readonly=True) as log:
        (entry,) = log.records()
    assert entry.data["mode"] == "enforce"


def test_declassifications_are_recorded(log_path: Path) -> None:
    @pg.transform("usage-aggregate")
    def mailbox_size(messages: list[str]) -> int:
        return sum(len(m) for m in messages)

    pg.configure("trust-center", audit=log_path)
    mailbox_size([pg.label("hello there", EMAIL)])
    audit.detach()
    with AuditLog(log_path, readonly=True) as log:
        (entry,) = log.records()
    assert entry.kind == "declassification"
    assert entry.data["transform"] == "usage-aggregate"
    assert entry.data["from_categories"] == [EMAIL]


def test_the_allowed_path_writes_nothing(log_path: Path) -> None:
    pg.configure("trust-center", mode="trace", audit=log_path)
    body = pg.label("Quarterly numbers attached", EMAIL)
    for _ in range(200):
        troubleshoot(body)
        troubleshoot("plain")
    audit.detach()
    assert count_in(log_path) == 0


def test_violations_are_written_off_the_callers_thread(log_path: Path) -> None:
    log = AuditLog(log_path)
    threads: set[int] = set()
    log.storage.trace(lambda statement: threads.add(threading.get_ident()))  # type: ignore[attr-defined]
    pg.configure("trust-center", mode="trace")
    sink = audit.attach(log, interval=0.01)
    body = pg.label("Quarterly numbers attached", EMAIL)
    for _ in range(300):
        recommend_ads(body)
        troubleshoot(body)
    assert wait_for(lambda: sink.written == 300 and sink.pending == 0)
    assert threads, "the writer ran no statement"
    assert threading.get_ident() not in threads
    audit.detach()
    log.close()
    assert count_in(log_path) == 300


def test_back_pressure_instead_of_loss_when_the_queue_is_full(log_path: Path) -> None:
    pg.configure("trust-center", mode="trace")
    sink = audit.attach(str(log_path), batch_size=8, max_pending=16, interval=5.0)
    body = pg.label("Quarterly numbers attached", EMAIL)
    for _ in range(500):
        recommend_ads(body)
        assert sink.pending <= 16 + 8
    audit.detach()
    assert count_in(log_path) == 500


def test_detach_writes_what_is_queued(log_path: Path) -> None:
    pg.configure("trust-center", mode="trace")
    audit.attach(log_path, interval=60.0)
    body = pg.label("Quarterly numbers attached", EMAIL)
    for _ in range(40):
        recommend_ads(body)
    audit.detach()
    assert count_in(log_path) == 40


def test_attach_rejects_what_is_not_a_log(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="audit= takes a path"):
        audit.attach(42)  # type: ignore[arg-type]
    junk = tmp_path / "junk"
    junk.write_text("not a database at all " * 100)
    with pytest.raises(AuditError, match="not an SQLite database"):
        pg.configure("trust-center", audit=junk)
    assert audit.attached() is None


# -- fail closed -------------------------------------------------------------------


def _tiny_log(path: Path) -> AuditLog:
    """A real log whose file may not grow past one more page: a full disk, for SQLite."""
    AuditLog(path).close()
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    connection.close()
    return AuditLog(path, max_bytes=(pages + 1) * page_size)


def test_a_full_disk_is_reported_not_silently_dropped(
    log_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = _tiny_log(log_path)
    pg.configure("trust-center", mode="trace")
    sink = audit.attach(log, interval=60.0)
    body = pg.label("Quarterly numbers attached", EMAIL)
    with caplog.at_level(logging.ERROR, logger="purposeguard"):
        for _ in range(200):
            recommend_ads(body)
        with pytest.raises(AuditError, match="database or disk is full"):
            sink.flush()
        assert sink.pending > 0  # kept for a retry, not dropped
        # Trace mode: the next record is reported and the call proceeds.
        assert recommend_ads(body) == len(body)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "cannot keep records" in messages
    assert "database or disk is full" in messages
    audit.detach()
    log.close()


def test_a_full_disk_makes_enforce_mode_deny(log_path: Path) -> None:
    log = _tiny_log(log_path)
    pg.configure("trust-center", mode="trace")
    sink = audit.attach(log, interval=60.0)
    body = pg.label("Quarterly numbers attached", EMAIL)
    for _ in range(200):
        recommend_ads(body)
    with pytest.raises(AuditError):
        sink.flush()
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PurposeViolation) as caught:
        recommend_ads(body)
    # Denied as a violation (a 403 on the web), caused by the lost record.
    assert isinstance(caught.value.__cause__, SinkFailure)
    assert "database or disk is full" in str(caught.value.__cause__)

    @pg.transform("usage-aggregate")
    def mailbox_size(messages: list[str]) -> int:
        return sum(len(m) for m in messages)

    # A declassification that cannot be proven does not happen either.
    with pytest.raises(SinkFailure):
        mailbox_size([body])
    # The allowed path records nothing, so it goes on.
    assert troubleshoot(body) == len(body)
    audit.detach()
    log.close()


def test_a_read_only_log_makes_enforce_mode_deny(log_path: Path) -> None:
    AuditLog(log_path).close()
    log = AuditLog(log_path, readonly=True)
    pg.configure("trust-center")
    sink = audit.attach(log, interval=60.0)
    body = pg.label("Quarterly numbers attached", EMAIL)
    with pytest.raises(pg.PurposeViolation):
        recommend_ads(body)  # queued; the write fails below
    with pytest.raises(AuditError, match="read-only"):
        sink.flush()
    with pytest.raises(pg.PurposeViolation) as caught:
        recommend_ads(body)
    assert isinstance(caught.value.__cause__, SinkFailure) and "read-only" in str(caught.value.__cause__)
    audit.detach()
    log.close()


def test_the_writer_recovers_and_writes_what_it_kept(log_path: Path) -> None:
    log = _tiny_log(log_path)
    pg.configure("trust-center", mode="trace")
    sink = AuditSink(log, interval=60.0)
    unsubscribe = pg.on_record(sink)
    try:
        body = pg.label("Quarterly numbers attached", EMAIL)
        for _ in range(100):
            recommend_ads(body)
        with pytest.raises(AuditError):
            sink.flush()
        kept = sink.pending
        # Room again (an operator freed space): raise the cap on the same connection.
        log.storage._connection.execute("PRAGMA max_page_count=1000000")  # type: ignore[attr-defined]
        sink.flush()
        assert sink.error is None and sink.pending == 0
        assert log.verify().count == 100
        assert kept > 0
    finally:
        unsubscribe()
        sink.close()
        log.close()


def _audit_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name.startswith("purposeguard") and r.levelno == level
    ]


def test_a_full_disk_is_logged_once_per_episode_not_once_per_record(
    log_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = _tiny_log(log_path)
    pg.configure("trust-center", mode="trace")
    sink = audit.attach(log, interval=60.0)
    body = pg.label("Quarterly numbers attached", EMAIL)
    with caplog.at_level(logging.INFO, logger="purposeguard"):
        for _ in range(50):
            recommend_ads(body)
        with pytest.raises(AuditError):
            sink.flush()
        for _ in range(200):  # the disk stays full: nothing more to say
            assert recommend_ads(body) == len(body)
        with pytest.raises(AuditError):
            sink.flush()
        assert len(_audit_lines(caplog, logging.ERROR)) == 1
        assert "database or disk is full" in _audit_lines(caplog, logging.ERROR)[0]
        # Only what still fitted in smaller pieces; the rest waits, in order.
        assert sink.written < 50 and sink.pending == 250 - sink.written
        # Room again: one line for the recovery, every kept record written.
        log.storage._connection.execute("PRAGMA max_page_count=1000000")  # type: ignore[attr-defined]
        sink.flush()
        assert [m for m in _audit_lines(caplog, logging.WARNING) if "writing again" in m] == [
            f"purposeguard audit log {log.path}: writing again"
        ]
        # A second episode is a second error line.
        log.storage._connection.execute("PRAGMA max_page_count=1")  # type: ignore[attr-defined]
        for _ in range(100):
            recommend_ads(body)
        with pytest.raises(AuditError):
            sink.flush()
        assert len(_audit_lines(caplog, logging.ERROR)) == 2
        log.storage._connection.execute("PRAGMA max_page_count=1000000")  # type: ignore[attr-defined]
        sink.flush()
    assert sink.pending == 0 and sink.written == log.verify().count == 350
    audit.detach()
    log.close()


def test_written_counts_only_records_that_reached_the_log(log_path: Path, marker: str) -> None:
    log = AuditLog(log_path)
    sink = AuditSink(log, interval=60.0)
    try:
        sink({"kind": "note", "text": "kept"})  # type: ignore[arg-type]
        # A record no log may hold (a labelled value in a field): skipped, named, never counted.
        sink({"kind": "note", "leak": pg.label(marker, EMAIL)})  # type: ignore[arg-type]
        sink({"kind": "note", "text": "kept too"})  # type: ignore[arg-type]
        sink.flush()
        assert sink.written == 2 == log.verify().count
    finally:
        sink.close()
        log.close()
    assert marker.encode() not in log_path.read_bytes()


def test_the_log_file_alone_holds_every_record_after_the_process_exits(tmp_path: Path) -> None:
    """At exit the sink closes the log, which folds the write-ahead log into
    the main file: copying just that file loses nothing."""
    import shutil
    import subprocess
    import sys

    code = (
        "import purposeguard as pg\n"
        "pg.configure('trust-center', mode='trace', audit='audit.db')\n"
        "for _ in range(3):\n"
        "    pg.check(pg.label('x', 'customer_data.content.email'), 'advertising')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(tmp_path / "audit.db", copy / "audit.db")
    log = AuditLog(copy / "audit.db", readonly=True)
    try:
        result = log.verify()
        assert result.ok and len(list(log.records())) == 3
    finally:
        log.close()
