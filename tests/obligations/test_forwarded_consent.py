"""A consent store on its own file and the audit sink on another, as a new
user would set them up: the sink's log keeps a copy of every consent change
and verifies on its own, while the store's log still proves its consent
table, however that table was tampered with."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard import audit
from purposeguard._storage import Grant
from purposeguard.audit import AuditLog, encode
from purposeguard.consent import ConsentStore

KEY = "f" * 16 + "0123456789abcdef0123456789abcdef"
EMAIL = "customer_data.content.email"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.key"
    path.write_text(KEY + "\n")
    return path


def cli_verify(path: Path, key_file: Path | None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "purposeguard", "audit", "verify", str(path)]
    if key_file is not None:
        argv += ["--key-file", str(key_file)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def sql(path: Path, *statements: str, params: tuple[Any, ...] = ()) -> None:
    connection = sqlite3.connect(path)
    try:
        for statement in statements:
            connection.execute(statement, params if "?" in statement else ())
        connection.commit()
    finally:
        connection.close()


def two_files(tmp_path: Path, keyed: bool) -> tuple[Path, Path]:
    """consent.db holds the grants, audit.db receives every record: the
    setup `configure(consents=..., audit=...)` makes."""
    consent, sink = tmp_path / "consent.db", tmp_path / "audit.db"
    key = KEY if keyed else None
    pg.configure("trust-center", audit_key=key)
    store = ConsentStore(str(consent))
    pg.configure("trust-center", consents=store, audit=str(sink), audit_key=key)
    store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    store.grant("fabrikam", "improvement", ["customer_data"], granted_by="admin@fabrikam")
    store.revoke("fabrikam", "improvement", revoked_by="dpo@fabrikam")
    pg.configure("trust-center", audit=False)
    store.close()
    return consent, sink


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "unkeyed"])
def test_the_sinks_log_verifies_beside_a_separate_consent_store(
    tmp_path: Path, key_file: Path, keyed: bool
) -> None:
    consent, sink = two_files(tmp_path, keyed)
    key = key_file if keyed else None
    with AuditLog(consent, key=key, readonly=True) as store_log:
        store_id = store_log.log_id
        assert store_log.verify().ok
    with AuditLog(sink, key=key, readonly=True) as log:
        result = log.verify()
        copies = list(log.records())
    assert result.ok, result.reason
    assert result.count == 3 and result.keyed == keyed
    # Every change is still there, shown as a consent record, naming where it is proven.
    assert [(e.kind, e.data["action"], e.data["tenant"]) for e in copies] == [
        ("consent", "grant", "contoso"),
        ("consent", "grant", "fabrikam"),
        ("consent", "revoke", "fabrikam"),
    ]
    assert [e.data["audit_ref"] for e in copies] == [f"{store_id}:{n}" for n in (1, 2, 3)]
    for path in (sink, consent):
        done = cli_verify(path, key)
        assert done.returncode == 0, done.stderr
        assert "intact, 3 records" in done.stdout


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "unkeyed"])
def test_an_emptied_consent_table_of_the_real_store_still_fails(
    tmp_path: Path, key_file: Path, keyed: bool
) -> None:
    consent, sink = two_files(tmp_path, keyed)
    key = key_file if keyed else None
    sql(consent, "DELETE FROM purposeguard_consent")
    with AuditLog(consent, key=key, readonly=True) as log:
        result = log.verify()
    reason = "the consent table lacks the grant to 'contoso' of improvement for customer_data"
    assert not result.ok and reason in result.reason
    done = cli_verify(consent, key)
    assert done.returncode == 1 and reason in done.stderr
    with ConsentStore(AuditLog(consent, key=key)) as store:
        assert not store.has_consent("contoso", "improvement", EMAIL)
    # The sink's log is not the one that proves those grants.
    assert cli_verify(sink, key).returncode == 0


def test_a_store_sharing_the_sinks_log_is_still_checked_beside_copies(tmp_path: Path) -> None:
    """One log holding both its own store's changes and copies of another's."""
    shared, other = tmp_path / "audit.db", tmp_path / "consent.db"
    own = ConsentStore(str(shared))
    elsewhere = ConsentStore(str(other))
    audit.attach(str(shared))
    own.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    elsewhere.grant("fabrikam", "improvement", ["customer_data"], granted_by="admin@fabrikam")
    audit.detach()
    own.close()
    elsewhere.close()
    with AuditLog(shared, readonly=True) as log:
        assert log.verify().ok
        assert [e.data["tenant"] for e in log.records()] == ["contoso", "fabrikam"]
    assert cli_verify(shared, None).returncode == 0
    sql(shared, "DELETE FROM purposeguard_consent")
    done = cli_verify(shared, None)
    assert done.returncode == 1
    assert "lacks the grant to 'contoso' of improvement for customer_data" in done.stderr


def test_a_copy_never_backs_a_grant_added_to_the_sinks_table(tmp_path: Path) -> None:
    consent, sink = two_files(tmp_path, keyed=False)
    # The row the copy describes, written by hand into the sink's own table.
    sql(
        sink,
        "INSERT INTO purposeguard_consent VALUES ('contoso', 'improvement', 'customer_data', 'x', 1.0, NULL)",
    )
    with ConsentStore(str(sink)) as store:
        assert not store.has_consent("contoso", "improvement", EMAIL)
    done = cli_verify(sink, None)
    assert done.returncode == 1
    assert "grants 'contoso' improvement for customer_data with no consent record" in done.stderr


def test_a_reference_added_to_the_stores_own_record_is_named(tmp_path: Path, key_file: Path) -> None:
    """Passing the store's own record off as a copy, to hide an emptied table,
    changes the record: the keyed chain names it."""
    consent, _ = two_files(tmp_path, keyed=True)
    connection = sqlite3.connect(consent)
    try:
        (data,) = connection.execute("SELECT data FROM purposeguard_audit WHERE seq = 1").fetchone()
    finally:
        connection.close()
    fields = json.loads(data)
    fields["audit_ref"] = "0" * 32 + ":1"
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    sql(consent, "UPDATE purposeguard_audit SET data = ? WHERE seq = 1", params=(text,))
    sql(consent, "DELETE FROM purposeguard_consent")
    done = cli_verify(consent, key_file)
    assert done.returncode == 1 and "record 1 was altered" in done.stderr


@pytest.mark.parametrize(
    "ref",
    ["absent", None, "", "no-colon", ":1", "own", 7],
    ids=["absent", "null", "empty", "no-colon", "no-log-id", "this-log", "not-text"],
)
def test_a_consent_record_counts_as_the_logs_own_unless_it_names_another_log(
    log_path: Path, ref: object
) -> None:
    """Records written before copies were told apart, or with a reference that
    names no other log, are checked against the table as they always were."""
    with AuditLog(log_path) as log:
        fields: dict[str, Any] = {
            "kind": "consent",
            "action": "grant",
            "tenant": "contoso",
            "purpose": "improvement",
            "categories": ["customer_data"],
            "actor": "admin@contoso",
            "expires_at": None,
            "timestamp": 1.0,
        }
        if ref == "own":
            fields["audit_ref"] = f"{log.log_id}:1"
        elif ref != "absent":
            fields["audit_ref"] = ref
        grant = Grant("contoso", "improvement", "customer_data", "admin@contoso", 1.0, None)
        log.storage.append([encode(fields)], grants=[grant])
        assert log.verify().ok
        with ConsentStore(log) as store:
            assert store.has_consent("contoso", "improvement", EMAIL)
    sql(log_path, "DELETE FROM purposeguard_consent")
    with AuditLog(log_path, readonly=True) as log:
        result = log.verify()
    assert not result.ok and "lacks the grant to 'contoso'" in result.reason
