"""`purposeguard report` on a log it cannot fully trust or read: one line on
stderr and a non-zero exit, never a traceback, never a report that says
nothing is wrong."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from purposeguard._storage import GENESIS, link
from purposeguard.audit import AuditLog
from purposeguard.consent import ConsentStore

TIMEOUT = 60
TENANT = "tenant-7a1c"


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "purposeguard", *argv],
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=TIMEOUT,
    )


def one_line_failure(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr.strip()


def granted(path: Path) -> Path:
    with ConsentStore(str(path)) as store:
        store.grant(TENANT, "improvement", ["customer_data.content.email"], granted_by="admin")
    return path


def edit(path: Path, statement: str) -> None:
    connection = sqlite3.connect(path)
    try:
        connection.execute(statement)
        connection.commit()
    finally:
        connection.close()


def test_a_consent_row_that_is_not_utf8_is_one_line_and_no_report(tmp_path: Path) -> None:
    log = granted(tmp_path / "audit.db")
    edit(log, "UPDATE purposeguard_consent SET granted_by = CAST(X'61ff62' AS TEXT)")
    out = tmp_path / "out"
    text = one_line_failure(run("report", "--audit", str(log), "--out", str(out)))
    assert "cannot read the audit log" in text and "not UTF-8" in text and "granted_by" in text
    assert not (out / "report.html").exists() and not (out / "report.md").exists()
    assert one_line_failure(run("audit", "verify", str(log)))


def test_a_consent_row_with_a_time_that_is_not_a_number_is_not_intact(tmp_path: Path) -> None:
    log = granted(tmp_path / "audit.db")
    edit(log, "UPDATE purposeguard_consent SET granted_at = 'nan'")
    out = tmp_path / "out"
    text = one_line_failure(run("report", "--audit", str(log), "--out", str(out)))
    assert "NOT intact" in text and "consent table" in text
    # Written whole, and says so at the top.
    assert "NOT intact" in (out / "report.md").read_text()


@pytest.mark.parametrize("stamp", ["nan", "inf", "-inf"])
def test_a_record_time_that_is_not_a_number_fails_verify_and_the_report(tmp_path: Path, stamp: str) -> None:
    log = tmp_path / "audit.db"
    with AuditLog(log) as opened:
        opened.append({"kind": "disclosure", "purpose": "legal", "category": "customer_data"})
        opened.append({"kind": "violation", "rule": "no-advertising", "purpose": "advertising"})
    # An unkeyed chain rewritten whole, hashes made to match: only the
    # time, which purposeguard never writes as anything but a finite
    # number, gives it away.
    connection = sqlite3.connect(log)
    try:
        rows = connection.execute("SELECT seq, kind, timestamp, data FROM purposeguard_audit ORDER BY seq")
        prev = GENESIS
        for seq, kind, timestamp, data in rows.fetchall():
            if seq == 1:
                timestamp = float(stamp)
                connection.execute("UPDATE purposeguard_audit SET timestamp = ? WHERE seq = 1", (stamp,))
            digest = link(prev, seq, kind, timestamp, data)
            connection.execute(
                "UPDATE purposeguard_audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, seq)
            )
            prev = digest
        connection.execute("UPDATE purposeguard_meta SET value = ? WHERE key = 'head_hash'", (prev,))
        connection.commit()
    finally:
        connection.close()
    verified = run("audit", "verify", str(log))
    assert "time is not a finite number" in one_line_failure(verified)
    out = tmp_path / "out"
    text = one_line_failure(run("report", "--audit", str(log), "--out", str(out)))
    assert "NOT intact" in text and "record 1" in text and "time is not a finite number" in text
    assert "NOT intact" in (out / "report.md").read_text()
