"""The keyed chain on a real PostgreSQL: each kind of tampering by someone
with database access but without the key is named by `audit verify`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

import purposeguard as pg
from purposeguard._storage import ChainKey, link
from purposeguard.audit import AuditError, AuditLog
from purposeguard.consent import ConsentStore

KEY = "pgkey-" + "0123456789abcdef" * 3
CONTENT = "customer_data.content.email"


def violation(n: int) -> pg.Violation:
    return pg.Violation(
        CONTENT, "advertising", "no-advertising", "argument", f"tests.f{n}", "contoso", "trace", time.time()
    )


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.key"
    path.write_text(KEY + "\n")
    return path


@pytest.fixture
def keyed(pg_url: str, key_file: Path) -> str:
    with AuditLog(pg_url, key=key_file) as log:
        log.append_many([violation(i) for i in range(1, 11)])
    return pg_url


def sql(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def verify(url: str, key_file: Path | None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "purposeguard", "audit", "verify", url]
    if key_file is not None:
        argv += ["--key-file", str(key_file)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_an_intact_keyed_chain_verifies(keyed: str, key_file: Path) -> None:
    done = verify(keyed, key_file)
    assert done.returncode == 0, done.stderr
    assert f"keyed chain (key id {ChainKey(KEY).key_id}): intact, 10 records" in done.stdout
    unkeyed = verify(keyed, None)
    assert (
        unkeyed.returncode == 2 and unkeyed.stderr.count("\n") == 1 and "the chain is keyed" in unkeyed.stderr
    )


@pytest.mark.parametrize(
    ("statements", "says"),
    [
        (
            ["UPDATE purposeguard_audit SET data = replace(data, 'advertising', 'analytics') WHERE seq = 4"],
            "record 4 was altered",
        ),
        (["DELETE FROM purposeguard_audit WHERE seq = 6"], "record 6 is missing (deleted)"),
        (
            [
                "UPDATE purposeguard_audit SET seq = 100 WHERE seq = 3",
                "UPDATE purposeguard_audit SET seq = 3 WHERE seq = 4",
                "UPDATE purposeguard_audit SET seq = 4 WHERE seq = 100",
            ],
            "record 3 ",
        ),
        (
            [
                "DELETE FROM purposeguard_audit WHERE seq > 7",
                "UPDATE purposeguard_head SET seq = 7, hash = (SELECT hash FROM purposeguard_audit WHERE seq = 7)",
            ],
            "records from 8 on were cut off",
        ),
        (["UPDATE purposeguard_meta SET value = 'ffff' WHERE key = 'log_id'"], "record 1 was altered"),
    ],
    ids=["altered", "deleted", "reordered", "cut-off-tail", "log-id"],
)
def test_tampering_is_named(keyed: str, key_file: Path, statements: list[str], says: str) -> None:
    sql(keyed, *statements)
    done = verify(keyed, key_file)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "NOT intact: " + says in done.stderr


def test_a_consistent_rewrite_without_the_key_is_named(keyed: str, key_file: Path) -> None:
    with psycopg.connect(keyed, autocommit=True) as conn:
        records = conn.execute("SELECT kind, timestamp, data FROM purposeguard_audit ORDER BY seq").fetchall()
        del records[3]
        prev = "0" * 64
        conn.execute("DELETE FROM purposeguard_audit")
        for seq, (kind, timestamp, data) in enumerate(records, 1):
            digest = link(prev, seq, kind, timestamp, data)
            conn.execute(
                "INSERT INTO purposeguard_audit VALUES (%s, %s, %s, %s, %s, %s)",
                (seq, kind, timestamp, data, prev, digest),
            )
            prev = digest
        conn.execute("UPDATE purposeguard_head SET seq = %s, hash = %s", (len(records), prev))
    done = verify(keyed, key_file)
    assert done.returncode == 1 and "NOT intact: record 1 was altered" in done.stderr


def test_a_wrong_key_and_a_keyless_writer_are_refused(keyed: str, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.key"
    wrong.write_text("w" * 40)
    done = verify(keyed, wrong)
    assert done.returncode != 0 and done.stderr.count("\n") == 1 and "wrong audit key" in done.stderr
    assert "Traceback" not in done.stderr and ": intact" not in done.stdout
    with pytest.raises(AuditError, match="chain is keyed"):
        AuditLog(keyed)


def test_a_forged_grant_never_widens_a_decision(pg_url: str, key_file: Path) -> None:
    with ConsentStore(AuditLog(pg_url, key=key_file)) as store:
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        # A consent record linked with a plain hash, its head, and its grant.
        seq, hash_ = conn.execute("SELECT seq, hash FROM purposeguard_head").fetchone()  # type: ignore[misc]
        data = '{"action":"grant","categories":["customer_data"],"kind":"consent","purpose":"improvement","tenant":"fabrikam"}'
        forged = link(hash_, seq + 1, "consent", 1.0, data)
        conn.execute(
            "INSERT INTO purposeguard_audit VALUES (%s, 'consent', 1.0, %s, %s, %s)",
            (seq + 1, data, hash_, forged),
        )
        conn.execute("UPDATE purposeguard_head SET seq = %s, hash = %s", (seq + 1, forged))
        conn.execute(
            "INSERT INTO purposeguard_consent VALUES ('fabrikam', 'improvement', 'customer_data', 'x', 1.0, NULL)"
        )
    with ConsentStore(AuditLog(pg_url, key=key_file)) as store:
        assert not store.has_consent("fabrikam", "improvement", CONTENT)
        # A forged record could as well hide a revocation: past it no grant is trusted.
        assert not store.has_consent("contoso", "improvement", CONTENT)
    done = verify(pg_url, key_file)
    assert done.returncode == 1 and "NOT intact: record 2 was altered" in done.stderr


def test_a_keyed_sqlite_log_migrates_with_its_key(tmp_path: Path, pg_url: str, key_file: Path) -> None:
    source = tmp_path / "audit.db"
    with ConsentStore(AuditLog(source, key=key_file)) as store:
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
        store.audit.append_many([violation(i) for i in range(5)])
        head = store.audit.verify().head
    cli = [sys.executable, "-m", "purposeguard", "audit", "migrate", str(source), pg_url]
    refused = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "the chain is keyed" in refused.stderr
    done = subprocess.run([*cli, "--key-file", str(key_file)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"head {head} (the source's)" in done.stdout
    verified = verify(pg_url, key_file)
    assert (
        verified.returncode == 0
        and "keyed chain" in verified.stdout
        and "intact, 6 records" in verified.stdout
    )
    with ConsentStore(AuditLog(pg_url, key=key_file)) as store:
        assert store.has_consent("contoso", "improvement", CONTENT)
