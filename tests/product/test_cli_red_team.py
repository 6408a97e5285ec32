"""Findings of a red-team pass over the command line, the report, the audit
log and the consent store, tried as a new user (or someone with write access
to the files but not the key) would: each stays fixed.

Every command that could block on a FIFO runs in a subprocess with a
timeout, so a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard.audit import AuditError, AuditLog
from purposeguard.cli import main
from purposeguard.consent import ConsentStore
from purposeguard.report import build_report, entries, render_html, render_markdown

KEY = "red-team-key-" + "0123456789abcdef" * 2
EMAIL = "customer_data.content.email"
TIMEOUT = 30


def policy() -> pg.Policy:
    return pg.Policy.load("trust-center")


def run(*argv: str | bytes, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """The command line in a process of its own: a command that blocks fails the test."""
    return subprocess.run(
        [sys.executable, "-m", "purposeguard", *argv],
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=timeout,
    )


def one_line_failure(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr.strip()


def sql(path: Path, *statements: str, params: tuple[Any, ...] = ()) -> None:
    connection = sqlite3.connect(path)
    try:
        for statement in statements:
            connection.execute(statement, params)
        connection.commit()
    finally:
        connection.close()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.key"
    path.write_text(KEY + "\n")
    return path


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def violation(n: int) -> dict[str, Any]:
    return {
        "kind": "violation",
        "category": EMAIL,
        "purpose": "advertising",
        "rule": "no-advertising",
        "function": f"app.f{n}",
        "tenant": "contoso",
        "timestamp": 1000.0 + n,
    }


def keyed_log(path: Path, n: int = 5) -> Path:
    with AuditLog(path, key=KEY) as log:
        log.append_many([violation(i) for i in range(n)])
    return path


# -- A. a revoked consent never comes back -----------------------------------------------------


def granted_then_revoked(path: Path) -> tuple[Any, ...]:
    """A keyed store: contoso's grant, then its revocation (seq 2); the
    grant's table row as it was, for the attacker to put back."""
    with ConsentStore(AuditLog(path, key=KEY), policy=policy()) as store:
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
        store.grant("fabrikam", "improvement", ["customer_data"], granted_by="admin@fabrikam")
        connection = sqlite3.connect(path)
        row = connection.execute("SELECT * FROM purposeguard_consent WHERE tenant = 'contoso'").fetchone()
        connection.close()
        store.revoke("contoso", "improvement", revoked_by="admin@contoso")
        assert not store.has_consent("contoso", "improvement", EMAIL)
        store.audit.close()
    return tuple(row)


def decisions(path: Path) -> tuple[bool, bool]:
    """contoso's and fabrikam's consent, as a fresh store (a restarted process) sees them."""
    with AuditLog(path, key=KEY) as log, ConsentStore(log, policy=policy()) as store:
        return (
            store.has_consent("contoso", "improvement", EMAIL),
            store.has_consent("fabrikam", "improvement", EMAIL),
        )


def put_back(path: Path, row: tuple[Any, ...]) -> None:
    sql(path, "INSERT INTO purposeguard_consent VALUES (?, ?, ?, ?, ?, ?)", params=row)


def test_a_revocation_whose_kind_is_changed_brings_no_grant_back(
    tmp_path: Path, key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "consent.db"
    row = granted_then_revoked(path)
    assert decisions(path) == (False, True)
    # No key is needed for this: the revocation stops being a consent record.
    sql(path, "UPDATE purposeguard_audit SET kind = 'note' WHERE seq = 3")
    put_back(path, row)
    with caplog.at_level(logging.ERROR, logger="purposeguard"):
        with AuditLog(path, key=KEY) as log, ConsentStore(log, policy=policy()) as store:
            for _ in range(3):
                # Fail closed, for every tenant: which grant the tampering hid cannot be told.
                assert not store.has_consent("contoso", "improvement", EMAIL)
                assert not store.has_consent("fabrikam", "improvement", EMAIL)
            with pytest.raises(AuditError, match="record 3 was altered"):
                store.list()
    said = [r.getMessage() for r in caplog.records if "cannot be trusted" in r.getMessage()]
    assert len(said) == 1 and "record 3 was altered" in said[0], said
    done = run("audit", "verify", str(path), "--key-file", str(key_file))
    assert "NOT intact: record 3 was altered" in one_line_failure(done)


def test_an_altered_revocation_brings_no_grant_back(tmp_path: Path) -> None:
    path = tmp_path / "consent.db"
    row = granted_then_revoked(path)
    sql(path, "UPDATE purposeguard_audit SET data = replace(data, '\"revoke\"', '\"revokd\"') WHERE seq = 3")
    put_back(path, row)
    assert decisions(path) == (False, False)


def test_a_deleted_revocation_brings_no_grant_back(tmp_path: Path) -> None:
    path = tmp_path / "consent.db"
    row = granted_then_revoked(path)
    with AuditLog(path, key=KEY) as log:
        log.append(violation(1))  # the revocation is not the last record
    sql(path, "DELETE FROM purposeguard_audit WHERE seq = 3")
    put_back(path, row)
    assert decisions(path) == (False, False)


def test_a_revocation_cut_off_the_tail_brings_no_grant_back(tmp_path: Path) -> None:
    """The last record deleted and the recorded end put back as it was before
    it (copied then): the signed checkpoint beside the file still counts it."""
    path = tmp_path / "consent.db"
    with ConsentStore(AuditLog(path, key=KEY), policy=policy()) as store:
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
        connection = sqlite3.connect(path)
        row = connection.execute("SELECT * FROM purposeguard_consent").fetchone()
        head = connection.execute(
            "SELECT key, value FROM purposeguard_meta WHERE key IN ('head_seq', 'head_hash', 'head_mac')"
        ).fetchall()
        connection.close()
        store.revoke("contoso", "improvement", revoked_by="admin@contoso")
        store.audit.close()
    sql(path, "DELETE FROM purposeguard_audit WHERE seq = 2")
    for key, value in head:
        sql(path, "UPDATE purposeguard_meta SET value = ? WHERE key = ?", params=(value, key))
    put_back(path, tuple(row))
    assert decisions(path)[0] is False


def test_an_untouched_store_still_grants_beside_many_records(tmp_path: Path) -> None:
    path = tmp_path / "consent.db"
    with AuditLog(path, key=KEY) as log, ConsentStore(log, policy=policy()) as store:
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
        log.append_many([violation(i) for i in range(300)])
        assert store.has_consent("contoso", "improvement", EMAIL)
    assert decisions(path) == (True, False)


def test_a_table_expiry_written_as_text_is_no_grant(tmp_path: Path) -> None:
    path = tmp_path / "consent.db"
    with ConsentStore(path, policy=policy()) as store:
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    sql(path, "UPDATE purposeguard_consent SET expires_at = 'abc'")
    with ConsentStore(path, policy=policy()) as store:
        assert not store.has_consent("contoso", "improvement", EMAIL)


@pytest.mark.services
def test_on_postgresql_a_revocation_whose_kind_is_changed_brings_no_grant_back(postgres_server: Any) -> None:
    import psycopg

    url = postgres_server.create_database()
    with ConsentStore(AuditLog(url, key=KEY), policy=policy()) as store:
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT * FROM purposeguard_consent").fetchone()
        store.revoke("contoso", "improvement", revoked_by="admin@contoso")
        store.audit.close()
    assert row is not None
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE purposeguard_audit SET kind = 'note' WHERE seq = 2")
        conn.execute("INSERT INTO purposeguard_consent VALUES (%s, %s, %s, %s, %s, %s)", row)
    with AuditLog(url, key=KEY) as log, ConsentStore(log, policy=policy()) as store:
        assert not store.has_consent("contoso", "improvement", EMAIL)
        with pytest.raises(AuditError, match="record 2 was altered"):
            store.list()


# -- B. nothing blocks on a FIFO or reads a device ------------------------------------------------


def test_audit_commands_refuse_a_fifo(tmp_path: Path, fifo: Path) -> None:
    for argv in (
        ("audit", "verify", str(fifo)),
        ("audit", "tail", str(fifo)),
        ("report", "--audit", str(fifo), "--out", str(tmp_path / "out")),
        ("explain", "customer_data", "improvement", "--consents", str(fifo)),
    ):
        text = one_line_failure(run(*argv))
        assert "not a regular file" in text, (argv, text)


def test_a_fifo_key_file_is_refused(tmp_path: Path, fifo: Path) -> None:
    log = keyed_log(tmp_path / "audit.db")
    for argv in (
        ("audit", "verify", str(log), "--key-file", str(fifo)),
        ("report", "--audit", str(log), "--key-file", str(fifo), "--out", str(tmp_path / "out")),
    ):
        text = one_line_failure(run(*argv))
        assert "a FIFO, not a regular file" in text, text


def test_a_fifo_checkpoint_fails_verify_and_never_blocks_the_writer(tmp_path: Path, key_file: Path) -> None:
    log = keyed_log(tmp_path / "audit.db")
    checkpoint = Path(f"{log}-checkpoint")
    checkpoint.unlink()
    os.mkfifo(checkpoint)
    text = one_line_failure(run("audit", "verify", str(log), "--key-file", str(key_file)))
    assert "NOT intact" in text and "a FIFO, not a regular file" in text
    # The application's writer reads the checkpoint before writing the next one.
    writer = textwrap.dedent(
        f"""
        from purposeguard.audit import AuditLog
        with AuditLog({str(log)!r}, key={KEY!r}, checkpoint_every=2) as log:
            for i in range(6):
                log.append({{"kind": "note", "n": i}})
        print("done")
        """
    )
    done = subprocess.run([sys.executable, "-c", writer], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr
    assert checkpoint.is_file()  # replaced by a good one
    assert run("audit", "verify", str(log), "--key-file", str(key_file)).returncode == 0


def test_a_fifo_in_place_of_the_checkpoint_lock_never_blocks_the_writer(
    tmp_path: Path, key_file: Path
) -> None:
    log = keyed_log(tmp_path / "audit.db")
    lock = Path(f"{log}-checkpoint.lock")
    lock.unlink(missing_ok=True)
    os.mkfifo(lock)
    writer = textwrap.dedent(
        f"""
        from purposeguard.audit import AuditLog
        with AuditLog({str(log)!r}, key={KEY!r}, checkpoint_every=2) as log:
            for i in range(6):
                log.append({{"kind": "note", "n": i}})
        print("done")
        """
    )
    done = subprocess.run([sys.executable, "-c", writer], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr
    # Said, once: the records are committed, their end is not signed outside the file.
    assert done.stderr.count("cannot write its checkpoint file") == 1, done.stderr
    assert "checkpoint.lock is not a regular file" in done.stderr, done.stderr
    lock.unlink()
    done = subprocess.run([sys.executable, "-c", writer], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0 and "cannot write" not in done.stderr, done.stderr
    assert lock.is_file()
    assert run("audit", "verify", str(log), "--key-file", str(key_file)).returncode == 0


def test_a_fifo_beside_the_log_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "audit.db"
    with AuditLog(log) as opened:
        opened.append(violation(1))
    os.mkfifo(f"{log}-wal")
    text = one_line_failure(run("audit", "verify", str(log)))
    assert "audit.db-wal beside it is a FIFO" in text


def test_the_source_scan_skips_fifos_devices_and_huge_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "app.py").write_text("import purposeguard as pg\n\n@pg.purpose('service')\ndef f(): pass\n")
    os.mkfifo(source / "trap.py")
    os.symlink("/dev/zero", source / "zero.py")
    done = run("report", "--source", str(source), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "skipped trap.py: a FIFO, not a regular file" in done.stderr
    assert "skipped zero.py: a device, not a regular file" in done.stderr
    assert "1 files scanned, 2 skipped" in done.stdout
    from purposeguard import _scan

    monkeypatch.setattr(_scan, "MAX_SOURCE_BYTES", 10)
    result = _scan.scan(source)
    assert ("app.py", "larger than 10 bytes") in result.skipped
    fifo = tmp_path / "alone.py"
    os.mkfifo(fifo)
    text = one_line_failure(run("report", "--source", str(fifo), "--out", str(tmp_path / "out")))
    assert "neither a directory nor a .py file" in text


# -- C. the report renders what a log can hold -------------------------------------------------------


@pytest.mark.parametrize("expiry", [1e300, 10**400, 253402300800.0])
def test_an_expiry_past_year_9999_is_refused(expiry: float) -> None:
    with ConsentStore(":memory:", policy=policy()) as store:
        with pytest.raises(pg.PolicyError, match="past the latest expiry"):
            store.grant("contoso", "improvement", ["customer_data"], granted_by="admin", expires_at=expiry)
        last = store.grant(
            "contoso", "improvement", ["customer_data"], granted_by="admin", expires_at=253402300799.0
        )
        assert last.expires_at == 253402300799.0


def test_a_far_future_expiry_written_in_a_record_still_renders(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(path) as log:
        log.append(
            {
                "kind": "consent",
                "action": "grant",
                "tenant": "contoso",
                "purpose": "improvement",
                "categories": ["customer_data"],
                "expires_at": 1e300,
                "audit_ref": "0" * 32 + ":1",  # a copy: grants nothing in this log
            }
        )
        log.append(dict(violation(1), timestamp=1e300))
        log.append(dict(violation(2), timestamp=-1e18))
    done = run("report", "--audit", str(path), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    markdown = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "1e+300 (not a date)" in markdown


def test_names_that_are_not_utf8_are_escaped_in_the_report(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / os.fsdecode(b"m\xff.py")).write_text(
        "import purposeguard as pg\n\n@pg.purpose('service')\ndef f(): pass\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "purposeguard",
            "report",
            "--source",
            str(source),
            "--out",
            str(tmp_path / "o"),
        ]
        + ["--title", os.fsdecode(b"T\xff")],
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    assert "m\\udcff.py" in html and "T\\udcff" in html


@pytest.mark.parametrize("value", [5, -1, 1e300, True, {"a": 1}, "customer_data"])
@pytest.mark.parametrize(
    ("kind", "field"), [("consent", "categories"), ("declassification", "from_categories")]
)
def test_record_fields_of_another_type_still_render(kind: str, field: str, value: Any) -> None:
    record = {
        "kind": kind,
        "action": "grant",
        "tenant": "contoso",
        "purpose": "improvement",
        "transform": "usage-aggregate",
        "to": "usage_data",
        field: value,
    }
    with AuditLog(":memory:") as log:
        log.append(record)
        report = build_report(entries(list(log.records())), None, policy())
    assert render_html(report) and render_markdown(report)


# -- D. a timestamp written as text is a bad record ----------------------------------------------------


@pytest.mark.parametrize("keyed", [False, True], ids=["unkeyed", "keyed"])
def test_a_timestamp_written_as_text_is_named_as_an_altered_record(
    tmp_path: Path, key_file: Path, keyed: bool
) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(path, key=KEY if keyed else None) as log:
        log.append_many([violation(i) for i in range(5)])
    sql(path, "UPDATE purposeguard_audit SET timestamp = 'abc' WHERE seq = 3")
    key = ["--key-file", str(key_file)] if keyed else []
    text = one_line_failure(run("audit", "verify", str(path), *key))
    assert text.endswith("NOT intact: record 3 was altered or moved: its hash does not match its content")
    tail = run("audit", "tail", str(path))
    assert tail.returncode == 0 and " nan " in tail.stdout, tail.stderr
    report = run("report", "--audit", str(path), *key, "--out", str(tmp_path / "out"))
    assert "is NOT intact: record 3 was altered" in one_line_failure(report)


# -- E. a locked log is said to be locked -----------------------------------------------------------


def test_a_locked_log_is_reported_as_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from purposeguard._storage.sqlite import SQLiteStorage

    path = tmp_path / "audit.db"
    with AuditLog(path) as log:
        log.append(violation(1))
    assert SQLiteStorage.__init__.__kwdefaults__ is not None
    monkeypatch.setitem(SQLiteStorage.__init__.__kwdefaults__, "timeout", 0.05)
    holder = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        holder.execute("PRAGMA journal_mode=DELETE")
        holder.execute("BEGIN EXCLUSIVE")
        for argv in (
            ["audit", "verify", str(path)],
            ["audit", "tail", str(path)],
            ["report", "--audit", str(path), "--out", str(tmp_path / "out")],
        ):
            assert main(argv) == 1
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and "locked by another connection (busy)" in err, err
            assert "not a purposeguard audit log" not in err
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# -- F. numbers past any range are one-line errors -------------------------------------------------------


def test_numbers_past_any_range(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(path) as log:
        log.append({"kind": "note", "timestamp": 10**400})  # kept; the entry takes its own time
        log.append({"kind": "note", "timestamp": 10**5000})  # past what Python turns into text
        assert log.verify().ok
        assert len(log.tail(10**30)) == 2
        with pytest.raises(AuditError, match="0 or more"):
            log.tail(-1)
        escaped = log.tail(1)[0].data
    assert escaped["escaped"] == ["timestamp"] and escaped["timestamp"] == "<int of 16610 bits>"
    text = one_line_failure(run("audit", "tail", "-n", "99999999999999999999", str(path)), code=2)
    assert "-n must be 0 to" in text
    assert run("audit", "tail", "-n", "1000000000", str(path)).returncode == 0


# -- G. read-only commands write nothing -----------------------------------------------------------------


def test_verify_and_tail_write_nothing_beside_a_read_only_log(tmp_path: Path) -> None:
    folder = tmp_path / "evidence"
    folder.mkdir()
    path = folder / "audit.db"
    with AuditLog(path) as log:
        log.append_many([violation(i) for i in range(3)])
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()
    assert sorted(p.name for p in folder.iterdir()) == ["audit.db"]
    path.chmod(0o444)
    before = path.read_bytes()
    assert "intact, 3 records" in run("audit", "verify", str(path)).stdout
    assert run("audit", "tail", str(path)).stdout.count("violation") == 3
    assert run("report", "--audit", str(path), "--out", str(tmp_path / "out")).returncode == 0
    assert sorted(p.name for p in folder.iterdir()) == ["audit.db"]
    assert path.read_bytes() == before


def test_records_still_in_the_write_ahead_log_of_a_read_only_copy_are_read(tmp_path: Path) -> None:
    """A copy taken while the application runs: part of the chain is only in
    its -wal, which a read-only open must still read."""
    live = tmp_path / "live.db"
    copy = tmp_path / "copy" / "audit.db"
    copy.parent.mkdir()
    with AuditLog(live) as log:
        log.append_many([violation(i) for i in range(4)])
        assert Path(f"{live}-wal").stat().st_size > 0
        shutil.copy(live, copy)
        shutil.copy(f"{live}-wal", f"{copy}-wal")
    copy.chmod(0o444)
    done = run("audit", "verify", str(copy))
    assert done.returncode == 0 and "intact, 4 records" in done.stdout, done.stderr


def test_explain_opens_its_consent_store_read_only(tmp_path: Path, key_file: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    text = one_line_failure(run("explain", "customer_data", "improvement", "--consents", str(empty)))
    assert "not a purposeguard audit log: an empty database" in text
    assert empty.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == [
        "audit.key",
        "empty.db",
    ]
    store = tmp_path / "consent.db"
    with ConsentStore(AuditLog(store, key=KEY), policy=policy()) as consents:
        consents.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
        consents.audit.close()
    argv = ("explain", EMAIL, "improvement", "--tenant", "contoso", "--consents", str(store))
    text = one_line_failure(run(*argv), code=2)
    assert "is keyed" in text and "--key-file" in text
    done = run(*argv, "--key-file", str(key_file))
    assert done.returncode == 0, done.stderr
    assert "tenant 'contoso' consented" in done.stdout
    # A store whose records were tampered with is an error here, not a silent "no consent".
    sql(store, "UPDATE purposeguard_audit SET kind = 'note' WHERE seq = 1")
    text = one_line_failure(run(*argv, "--key-file", str(key_file)))
    assert "cannot be trusted: record 1 was altered" in text


# -- H. no audit log that vanishes ------------------------------------------------------------------------


@pytest.mark.parametrize("target", [":memory:", "sqlite://", "sqlite:///", "sqlite:///:memory:"])
def test_audit_init_refuses_an_in_memory_log(target: str) -> None:
    text = one_line_failure(run("audit", "init", target), code=2)
    assert "in-memory log" in text


# -- I. policy text cannot act on the terminal -----------------------------------------------------------


def test_policy_show_and_explain_escape_free_text(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile.toml"
    hostile.write_text(
        textwrap.dedent(
            """
            [policy]
            name = "x\\u001b[31mRED\\nFAKE line"
            extends = "trust-center"
            [[rules]]
            id = "r1"
            description = "line1\\nFAKE: decided by: rule 'other'\\u001b]0;pwned\\u0007"
            categories = ["customer_data.content"]
            purposes = ["advertising"]
            effect = "allow"
            """
        )
    )
    for argv in (
        ("policy", "show", str(hostile)),
        ("policy", "show", str(hostile), "--format", "markdown"),
        ("policy", "check", str(hostile)),
        ("explain", EMAIL, "advertising", "--policy", str(hostile)),
    ):
        done = run(*argv)
        assert done.returncode == 0, done.stderr
        assert "\x1b" not in done.stdout and "\x07" not in done.stdout, argv
        assert not any(line.startswith("FAKE") for line in done.stdout.splitlines()), argv
    explained = run("explain", EMAIL, "advertising", "--policy", str(hostile)).stdout
    assert "  rule says: line1\\x0aFAKE: decided by: rule 'other'\\x1b]0;pwned\\x07" in explained
    shown = run("policy", "show", str(hostile)).stdout
    assert shown.splitlines()[0] == "Data-use table: x\\x1b[31mRED\\x0aFAKE line"
    as_json = json.loads(run("policy", "show", str(hostile), "--format", "json").stdout)
    assert as_json["policy"] == "x\x1b[31mRED\nFAKE line"  # JSON escapes its own


# -- a report made with another policy than the log's --------------------------------------------


def test_a_report_says_when_the_log_names_rules_its_policy_does_not_define(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PURPOSEGUARD_POLICY", raising=False)
    path = tmp_path / "audit.db"
    with AuditLog(path) as log:
        log.append_many([{**violation(1), "rule": "no-ads-in-mail"}])
    mine = tmp_path / "mine.toml"
    mine.write_text(
        textwrap.dedent(
            """
            [policy]
            name = "mine"
            extends = "trust-center"

            [[rules]]
            id = "no-ads-in-mail"
            categories = ["customer_data.content.email"]
            purposes = ["advertising"]
            effect = "deny"
            """
        )
    )
    assumed = run("report", "--audit", str(path), "--out", str(tmp_path / "a"))
    assert assumed.returncode == 0, assumed.stderr
    assert "names rule no-ads-in-mail, which policy trust-center does not define" in assumed.stderr
    given = run("report", "--audit", str(path), "--policy", str(mine), "--out", str(tmp_path / "b"))
    assert given.returncode == 0 and given.stderr == "", given.stderr
    # PURPOSEGUARD_POLICY names the policy when --policy is not given.
    monkeypatch.setenv("PURPOSEGUARD_POLICY", str(mine))
    from_environment = run("report", "--audit", str(path), "--out", str(tmp_path / "c"))
    assert from_environment.returncode == 0 and from_environment.stderr == "", from_environment.stderr
    assert "mine" in (tmp_path / "c" / "report.md").read_text()


def test_a_failure_line_shows_terminal_escapes_escaped(tmp_path: Path) -> None:
    hostile = tmp_path / "log\x1b[2Jname.db"
    line = one_line_failure(run("audit", "verify", str(hostile)))
    assert "\x1b" not in line and "\\u001b[2J" in line


def test_the_report_is_written_through_names_no_one_can_prepare(tmp_path: Path) -> None:
    import threading

    from purposeguard.report import write_files

    out = tmp_path / "report"
    out.mkdir()
    # What a predictable temporary name would meet: a FIFO, which blocks its writer.
    trap = out / f".report.html.{os.getpid()}.part"
    os.mkfifo(trap)
    data = build_report([], None, policy(), title="t")
    writing = threading.Thread(target=write_files, args=(out, data), daemon=True)
    writing.start()
    writing.join(20)
    if writing.is_alive():
        os.open(trap, os.O_RDONLY | os.O_NONBLOCK)  # let the stuck writer go before failing
    assert not writing.is_alive()
    assert (out / "report.html").read_text().rstrip().endswith("</html>")
    assert oct((out / "report.html").stat().st_mode & 0o777) == oct(0o644)
