"""`purposeguard audit migrate SQLITE_PATH POSTGRES_URL`: the chain and its consents, proven."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

import purposeguard as pg
from purposeguard.audit import AuditLog
from purposeguard.consent import ConsentStore


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "purposeguard", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def sqlite_log(tmp_path: Path) -> Path:
    path = tmp_path / "audit.db"
    with ConsentStore(str(path)) as store:
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
        store.grant("fabrikam", "improvement", ["customer_data.content"], granted_by="admin@fabrikam")
        store.revoke("fabrikam", "improvement", revoked_by="admin@fabrikam")
        for n in range(40):
            store.audit.append(
                pg.Violation(
                    "customer_data.content.email",
                    "advertising",
                    "no-advertising",
                    "argument",
                    f"f{n}",
                    "contoso",
                    "trace",
                    time.time(),
                )
            )
    return path


def test_migrate_copies_the_chain_and_consents_and_proves_the_copy(sqlite_log: Path, pg_url: str) -> None:
    with AuditLog(str(sqlite_log), readonly=True) as source:
        expected = source.verify()
        log_id = source.log_id
    done = cli("audit", "migrate", str(sqlite_log), pg_url)
    assert done.returncode == 0, done.stderr
    assert f"copied {expected.count} records and 1 consent grants" in done.stdout
    assert f"head {expected.head} (the source's)" in done.stdout
    assert "pgtest-secret" not in done.stdout
    with AuditLog(pg_url, readonly=True) as copy:
        assert copy.verify(anchor=expected.head).ok
        assert copy.log_id == log_id
    with ConsentStore(pg_url) as store:
        assert store.has_consent("contoso", "improvement", "customer_data.content.email")
        assert not store.has_consent("fabrikam", "improvement", "customer_data.content.email")
        # The migrated log goes on: new records chain onto the copied head.
        store.revoke("contoso", "improvement", revoked_by="admin@contoso")
        assert store.audit.verify().count == expected.count + 1
    assert cli("audit", "verify", pg_url).returncode == 0


def test_a_source_that_does_not_verify_is_not_migrated(sqlite_log: Path, pg_url: str) -> None:
    with sqlite3.connect(sqlite_log) as conn:
        conn.execute("UPDATE purposeguard_audit SET data = replace(data, 'f7', 'f8') WHERE seq = 11")
    done = cli("audit", "migrate", str(sqlite_log), pg_url)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "NOT intact, not migrated: record 11 was altered" in done.stderr
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)


def test_migrating_into_a_database_that_holds_records_is_refused(sqlite_log: Path, pg_url: str) -> None:
    with AuditLog(pg_url) as existing:
        existing.append({"kind": "note", "text": "already here"})
    done = cli("audit", "migrate", str(sqlite_log), pg_url)
    assert done.returncode == 1 and "already holds records" in done.stderr
    with AuditLog(pg_url, readonly=True) as existing:
        assert len(existing) == 1 and existing.verify().ok


def test_migrate_checks_its_arguments(sqlite_log: Path, tmp_path: Path) -> None:
    done = cli("audit", "migrate", str(sqlite_log), str(tmp_path / "other.db"))
    assert done.returncode == 2 and "postgresql:// URL" in done.stderr
    missing = cli("audit", "migrate", str(tmp_path / "missing.db"), "postgresql://u:p@127.0.0.1:1/d")
    assert missing.returncode == 1 and "no such audit log" in missing.stderr
