"""Cutting records off a keyed chain: the signed end and the SQLite checkpoint
file are signed apart, so neither stands in for the other, and a consent
change is checkpointed at once; how storage locations and their passwords
are shown; and who granted a consent and when, as the chain's record says."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from purposeguard._storage import (
    AuditError,
    ChainKey,
    is_url,
    open_storage,
    read_checkpoint,
    redact,
)
from purposeguard.audit import AuditLog
from purposeguard.cli import main
from purposeguard.consent import ConsentChange, ConsentStore

KEY = "rollback-" + "0123456789abcdef" * 3
EMAIL = "customer_data.content.email"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.key"
    path.write_text(KEY + "\n")
    return path


def violation(n: int) -> dict[str, Any]:
    return {
        "kind": "violation",
        "category": EMAIL,
        "purpose": "advertising",
        "rule": "no-advertising",
        "function": f"tests.f{n}",
        "tenant": "contoso",
        "timestamp": 1000.0 + n,
    }


def sql(path: Path, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute(statement, params).fetchall()
        connection.commit()
        return rows
    finally:
        connection.close()


def recorded_end(path: Path) -> tuple[int, str, str]:
    meta = dict(sql(path, "SELECT key, value FROM purposeguard_meta"))
    return int(meta["head_seq"]), str(meta["head_hash"]), str(meta["head_mac"])


def put_end(path: Path, end: tuple[int, str, str]) -> None:
    """What someone who can write the file does: the recorded end set by hand."""
    seq, head_hash, mac = end
    sql(path, "UPDATE purposeguard_meta SET value = ? WHERE key = 'head_seq'", (str(seq),))
    sql(path, "UPDATE purposeguard_meta SET value = ? WHERE key = 'head_hash'", (head_hash,))
    sql(path, "UPDATE purposeguard_meta SET value = ? WHERE key = 'head_mac'", (mac,))


def verify(path: Path | str, key_file: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["audit", "verify", str(path), "--key-file", str(key_file)])
    out, err = capsys.readouterr()
    return code, (out + err).strip()


@contextlib.contextmanager
def keyed_store(where: Path | str, key_file: Path) -> Iterator[ConsentStore]:
    """A consent store on a keyed log, both closed at the end."""
    log = AuditLog(where, key=key_file)
    try:
        with ConsentStore(log) as store:
            yield store
    finally:
        log.close()


def seq_of(change: ConsentChange) -> int:
    assert change.audit_ref is not None
    return int(change.audit_ref.rpartition(":")[2])


def checkpoint_of(path: Path) -> tuple[int, str, str]:
    found = read_checkpoint(str(path) + "-checkpoint")
    assert found is not None
    return found.seq, found.hash, found.mac


# -- the checkpoint file and the recorded end are signed apart ------------------------------


def test_a_checkpoint_and_a_recorded_end_are_signed_over_different_messages(
    log_path: Path, key_file: Path
) -> None:
    key = ChainKey(KEY)
    assert key.sign_checkpoint("log", 3, "a" * 64) != key.sign_head("log", 3, "a" * 64)
    assert not key.checks_head("log", 3, "a" * 64, key.sign_checkpoint("log", 3, "a" * 64))
    assert not key.checks_checkpoint("log", 3, "a" * 64, key.sign_head("log", 3, "a" * 64))
    with AuditLog(log_path, key=key_file) as log:
        log.append(violation(1))
    # Closed: both name the same end, each with a signature of its own.
    seq, head_hash, mac = recorded_end(log_path)
    assert checkpoint_of(log_path)[:2] == (seq, head_hash) and checkpoint_of(log_path)[2] != mac


def test_a_checkpoint_pasted_into_the_recorded_end_does_not_cut_records_off(
    log_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The running application's log: its checkpoint file names an early
    record; the records after it are cut and the checkpoint's signature
    written into the database as the recorded end."""
    log = AuditLog(log_path, key=key_file)
    try:
        for i in range(1, 31):
            log.append(violation(i))
        seq, head_hash, mac = checkpoint_of(log_path)
        assert seq < 30
        sql(log_path, "DELETE FROM purposeguard_audit WHERE seq > ?", (seq,))
        put_end(log_path, (seq, head_hash, mac))
        code, text = verify(log_path, key_file, capsys)
        assert code == 1 and "\n" not in text
        assert f"records from {seq + 1} on were cut off" in text and "not signed with the key" in text
    finally:
        log.close()


def test_a_recorded_end_copied_into_the_checkpoint_file_is_refused(
    log_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A roll-back with an end read from the database earlier, written into
    the checkpoint file too: it is not a checkpoint's signature."""
    with keyed_store(log_path, key_file) as store:
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
        saved = recorded_end(log_path)
        row = sql(log_path, "SELECT * FROM purposeguard_consent")[0]
        store.revoke("contoso", "improvement", revoked_by="admin@contoso")
        store.audit.append(violation(1))
    sql(log_path, "DELETE FROM purposeguard_audit WHERE seq > ?", (saved[0],))
    put_end(log_path, saved)
    sql(log_path, "INSERT INTO purposeguard_consent VALUES (?, ?, ?, ?, ?, ?)", row)
    log_id = dict(sql(log_path, "SELECT key, value FROM purposeguard_meta"))["log_id"]
    Path(str(log_path) + "-checkpoint").write_text(
        json.dumps(
            {
                "format": "purposeguard-checkpoint",
                "log_id": log_id,
                "seq": saved[0],
                "hash": saved[1],
                "mac": saved[2],
            }
        )
    )
    code, text = verify(log_path, key_file, capsys)
    assert code == 1 and "\n" not in text
    assert "is signed like a recorded end" in text and "older purposeguard" in text
    with keyed_store(log_path, key_file) as fresh:
        assert not fresh.has_consent("contoso", "improvement", EMAIL)


def test_a_checkpoint_file_an_older_purposeguard_wrote_is_replaced_at_the_next_commit(
    log_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with AuditLog(log_path, key=key_file) as log:
        log.append(violation(1))
    seq, head_hash, mac = recorded_end(log_path)
    checkpoint = Path(str(log_path) + "-checkpoint")
    # Signed as the recorded end is: what an older purposeguard wrote.
    data = json.loads(checkpoint.read_text())
    data["mac"] = mac
    checkpoint.write_text(json.dumps(data))
    code, text = verify(log_path, key_file, capsys)
    assert code == 1 and "written by an older purposeguard" in text
    with AuditLog(log_path, key=key_file) as log:
        log.append(violation(2))
    code, text = verify(log_path, key_file, capsys)
    assert code == 0 and "intact, 2 records" in text


# -- consent changes are signed outside the file at once ---------------------------------


def test_every_consent_change_writes_the_checkpoint_file_at_once(log_path: Path, key_file: Path) -> None:
    log = AuditLog(log_path, key=key_file)
    store = ConsentStore(log)
    try:
        log.append(violation(0))  # the first commit: checkpointed
        for i in range(1, 11):
            log.append(violation(i))
        assert checkpoint_of(log_path)[0] == 1
        granted = seq_of(store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso"))
        assert (
            checkpoint_of(log_path)[:2] == recorded_end(log_path)[:2]
            and checkpoint_of(log_path)[0] == granted
        )
        for i in range(11, 21):
            log.append(violation(i))
        revoked = seq_of(store.revoke("contoso", "improvement", revoked_by="admin@contoso"))
        assert checkpoint_of(log_path)[0] == revoked
        # A consent record appended as it is (a copy an audit sink keeps) too.
        copied = log.append(
            {
                "kind": "consent",
                "action": "revoke",
                "tenant": "fabrikam",
                "purpose": "improvement",
                "categories": [],
                "actor": "admin@fabrikam",
                "timestamp": 1000.0,
                "audit_ref": "0" * 32 + ":7",
            }
        )
        assert checkpoint_of(log_path)[0] == copied
    finally:
        store.close()
        log.close()


def test_a_revocation_cannot_be_cut_off_a_running_applications_log(
    log_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Someone who read the database before the revocation (its signed end
    then) cuts the revocation and what follows, writes that end back and
    puts the revoked grant's row back: the checkpoint file, signed at the
    revocation, says more records were written."""
    log = AuditLog(log_path, key=key_file)
    store = ConsentStore(log)
    try:
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
        row = sql(log_path, "SELECT * FROM purposeguard_consent")[0]
        for i in range(50):
            log.append(violation(i))
        saved = recorded_end(log_path)
        revoked = seq_of(store.revoke("contoso", "improvement", revoked_by="admin@contoso"))
        for i in range(50, 80):
            log.append(violation(i))
        sql(log_path, "DELETE FROM purposeguard_audit WHERE seq > ?", (saved[0],))
        put_end(log_path, saved)
        sql(log_path, "INSERT OR REPLACE INTO purposeguard_consent VALUES (?, ?, ?, ?, ?, ?)", row)
        code, text = verify(log_path, key_file, capsys)
        assert code == 1 and "\n" not in text
        assert f"records {revoked} are missing: the chain ends at record {saved[0]}" in text
        assert "a signed checkpoint says" in text
        with keyed_store(log_path, key_file) as restarted:
            assert not restarted.has_consent("contoso", "improvement", EMAIL)
        assert not store.has_consent("contoso", "improvement", EMAIL)
    finally:
        store.close()
        log.close()


# -- who granted a consent and when are the record's -----------------------------------------


def _forge_grantor(where: Path | str) -> None:
    statement = (
        "UPDATE purposeguard_consent SET granted_by = 'forged@attacker', granted_at = 1 "
        "WHERE tenant = 'fabrikam'"
    )
    if isinstance(where, Path):
        sql(where, statement)
        return
    import psycopg

    with psycopg.connect(where, autocommit=True) as connection:
        connection.execute(statement)


def _grantor_is_the_records(where: Path | str, key_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with keyed_store(where, key_file) as store:
        made = store.grant("fabrikam", "improvement", ["customer_data"], granted_by="admin@fabrikam")
    _forge_grantor(where)
    code, text = verify(where, key_file, capsys)
    assert code == 1 and "\n" not in text
    assert "grant to 'fabrikam' of improvement for customer_data names another grantor" in text
    with keyed_store(where, key_file) as store:
        (listed,) = store.list()
        assert (listed.granted_by, listed.granted_at) == ("admin@fabrikam", made.timestamp)
        assert store.has_consent("fabrikam", "improvement", EMAIL)


def test_a_grantor_or_time_changed_in_the_table_is_named_and_never_shown(
    log_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _grantor_is_the_records(log_path, key_file, capsys)
    # The time alone, too.
    sql(log_path, "UPDATE purposeguard_consent SET granted_by = 'admin@fabrikam'")
    code, text = verify(log_path, key_file, capsys)
    assert code == 1 and "was made at another time than its consent record says" in text


# -- storage locations and their passwords -----------------------------------------------------

CONNINFO = "host=127.0.0.1 port=5432 user=svc password=HUNTER2secret dbname=audit"


def test_a_libpq_connection_string_is_refused_never_taken_for_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for target in (CONNINFO, "dbname=audit", "  user = svc password='a b'"):
        with pytest.raises(AuditError) as caught:
            open_storage(target)
        assert "postgresql://" in str(caught.value) and "HUNTER2" not in str(caught.value)
        assert is_url(target)  # not a path: the CLI does not look for such a file
    with pytest.raises(AuditError, match="libpq connection string"):
        ConsentStore(CONNINFO)
    for argv in (["audit", "init", CONNINFO], ["audit", "verify", CONNINFO], ["audit", "tail", CONNINFO]):
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == 1 and out == "" and err.count("\n") == 1, (argv, err)
        assert "HUNTER2" not in err and "postgresql://USER:PASSWORD@HOST:PORT/DBNAME" in err
    assert list(tmp_path.iterdir()) == []
    assert "HUNTER2" not in redact(CONNINFO)
    # A file so named is still a file when written as a path.
    with AuditLog("./dbname=audit") as log:
        log.append(violation(1))
    assert (tmp_path / "dbname=audit").is_file()


def test_redaction_hides_a_password_whatever_characters_it_holds() -> None:
    for password in (
        "WRONG/PW123",
        "WRONG@PW123",
        "WRONG?PW123",
        "WRONG#PW123",
        "WRONG:PW123",
        "W/R@O?N#G:PW123",
    ):
        shown = redact(f"postgresql://pgtest:{password}@127.0.0.1:5432/postgres")
        assert shown == "postgresql://pgtest:***@127.0.0.1:5432/postgres", password
    assert redact("postgres://u:a/b@h/d?sslmode=require&password=x/y") == (
        "postgres://u:***@h/d?sslmode=require&password=***"
    )
    assert "PW123" not in redact("mysql://u:PW123@h/db")
    assert redact("sqlite:///logs/a:b@c.db") == "sqlite:///logs/a:b@c.db"  # a path, not a password


def test_driver_messages_never_show_a_piece_of_the_password() -> None:
    pytest.importorskip("psycopg")
    from purposeguard._storage.postgres import _line

    # libpq reads these URLs otherwise than a URL parser does: its own
    # messages would quote the password's tail as a host, a port or text it
    # cannot parse (no server is reached).
    for password, hint in (
        ("WRONG@PW123", "%40"),
        ("WRONG/PW123", "%2F"),
        ("WR%zzONG@PW123", "percent-encode"),
    ):
        with pytest.raises(AuditError) as caught:
            AuditLog(f"postgresql://pgtest:{password}@127.0.0.1:9/postgres")
        text = str(caught.value)
        assert "PW123" not in text and "WRONG" not in text and "zz" not in text, text
        assert "pgtest:***@127.0.0.1:9/postgres" in text and hint in text, text
    # A message that quotes an unambiguous password has it replaced.
    url = "postgresql://pgtest:HUNTER2secret@db/audit?sslpassword=KEYpass42"
    said = _line(RuntimeError("bad HUNTER2secret and KEYpass42\nsecond line"), url)
    assert said == "bad *** and *** second line"


# -- PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture
def pg_url(postgres_server: Any) -> str:
    url: str = postgres_server.create_database()
    return url


@pytest.mark.services
def test_a_grantor_or_time_changed_in_a_postgresql_table_is_named_and_never_shown(
    pg_url: str, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _grantor_is_the_records(pg_url, key_file, capsys)


@pytest.mark.services
def test_a_wrong_password_is_never_quoted_when_connecting_to_a_real_server(pg_url: str) -> None:
    for password in ("WRONG@PW123", "WRONG/PW123"):
        wrong = pg_url.replace(":pgtest-secret@", f":{password}@")
        assert wrong != pg_url
        with pytest.raises(AuditError) as caught:
            AuditLog(wrong)
        assert "PW123" not in str(caught.value) and "WRONG" not in str(caught.value), str(caught.value)
    # Percent-encoded, the same password is one libpq reads whole: the server's answer is shown.
    with pytest.raises(AuditError, match="password authentication failed") as caught:
        AuditLog(pg_url.replace(":pgtest-secret@", ":WRONG%40PW123@"))
    assert "PW123" not in str(caught.value)
