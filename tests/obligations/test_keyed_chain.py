"""A keyed audit chain: every kind of tampering by someone without the key is
named by `purposeguard audit verify --key-file`, and bad keys are refused
with one line, never a traceback and never "intact"."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard._storage import ChainKey, link
from purposeguard.audit import AuditError, AuditLog
from purposeguard.cli import main
from purposeguard.consent import ConsentStore

KEY = "k" * 16 + "0123456789abcdef0123456789abcdef"
OTHER_KEY = "o" * 48


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.key"
    path.write_text(KEY + "\n")
    return path


@pytest.fixture
def keyed(log_path: Path, key_file: Path, make_violation: Any) -> Path:
    with AuditLog(log_path, key=key_file, synchronous="normal") as log:
        for i in range(1, 11):
            log.append(make_violation(i))
    return log_path


def sql(path: Path, *statements: str, params: tuple[Any, ...] = ()) -> None:
    connection = sqlite3.connect(path)
    try:
        for statement in statements:
            connection.execute(statement, params if "?" in statement else ())
        connection.commit()
    finally:
        connection.close()


def rows(path: Path) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(
            "SELECT seq, kind, timestamp, data, prev_hash, hash FROM purposeguard_audit ORDER BY seq"
        ).fetchall()
    finally:
        connection.close()


def meta(path: Path) -> dict[str, str]:
    connection = sqlite3.connect(path)
    try:
        return dict(connection.execute("SELECT key, value FROM purposeguard_meta").fetchall())
    finally:
        connection.close()


def verify(
    path: Path, key_file: Path | None, capsys: pytest.CaptureFixture[str], *more: str
) -> tuple[int, str]:
    argv = ["audit", "verify", str(path), *more]
    if key_file is not None:
        argv += ["--key-file", str(key_file)]
    code = main(argv)
    out, err = capsys.readouterr()
    return code, (out + err).strip()


def rechain(
    path: Path, records: list[tuple[str, float, str]], key: ChainKey | None, log_id: str = ""
) -> None:
    """What an attacker without the real key does: rebuild a consistent chain
    (unkeyed, or under a key of their own) and move the recorded end."""
    prev = "0" * 64
    built = []
    for seq, (kind, timestamp, data) in enumerate(records, 1):
        digest = link(prev, seq, kind, timestamp, data, key, log_id)
        built.append((seq, kind, timestamp, data, prev, digest))
        prev = digest
    connection = sqlite3.connect(path)
    try:
        connection.execute("DELETE FROM purposeguard_audit")
        connection.executemany("INSERT INTO purposeguard_audit VALUES (?, ?, ?, ?, ?, ?)", built)
        connection.execute(
            "UPDATE purposeguard_meta SET value = ? WHERE key = 'head_seq'", (str(len(built)),)
        )
        connection.execute("UPDATE purposeguard_meta SET value = ? WHERE key = 'head_hash'", (prev,))
        if key is not None:
            connection.execute("UPDATE purposeguard_meta SET value = ? WHERE key = 'key_id'", (key.key_id,))
            connection.execute(
                "UPDATE purposeguard_meta SET value = ? WHERE key = 'head_mac'",
                (key.sign_head(log_id, len(built), prev),),
            )
        connection.commit()
    finally:
        connection.close()


def test_an_intact_keyed_log_verifies_and_says_it_is_keyed(
    keyed: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = verify(keyed, key_file, capsys)
    head = rows(keyed)[-1][5]
    assert code == 0
    assert text == f"{keyed}: keyed chain (key id {ChainKey(KEY).key_id}): intact, 10 records, head {head}"


def test_an_unkeyed_log_says_it_proves_integrity_against_accidents_only(
    log_path: Path, make_violation: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with AuditLog(log_path) as log:
        log.append(make_violation(1))
    code, text = verify(log_path, None, capsys)
    assert code == 0 and "unkeyed chain, integrity against accidents only" in text
    assert not meta(log_path).get("key_id")


def test_links_are_hmacs_not_plain_hashes(keyed: Path) -> None:
    seq, kind, timestamp, data, prev, digest = rows(keyed)[0]
    assert digest != link(prev, seq, kind, timestamp, data)
    assert digest == link(prev, seq, kind, timestamp, data, ChainKey(KEY), meta(keyed)["log_id"])


def test_an_altered_record_is_named(keyed: Path, key_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql(keyed, "UPDATE purposeguard_audit SET data = replace(data, 'advertising', 'analytics') WHERE seq = 4")
    code, text = verify(keyed, key_file, capsys)
    assert code == 1
    assert text == f"{keyed}: NOT intact: record 4 was altered or moved: its hash does not match its content"


def test_an_inserted_record_is_named(keyed: Path, key_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Records 5..10 move up one; a new record 5 is linked to record 4 the only
    # way someone without the key can: with a plain hash.
    original = rows(keyed)
    sql(keyed, "UPDATE purposeguard_audit SET seq = seq + 1000 WHERE seq >= 5")
    sql(keyed, "UPDATE purposeguard_audit SET seq = seq - 999 WHERE seq >= 1000")
    seq4 = original[3]
    data = seq4[3].replace("tests.writer_4", "tests.writer_x")
    forged = link(seq4[5], 5, "violation", seq4[2], data)
    sql(
        keyed,
        "INSERT INTO purposeguard_audit VALUES (?, ?, ?, ?, ?, ?)",
        params=(5, "violation", seq4[2], data, seq4[5], forged),
    )
    code, text = verify(keyed, key_file, capsys)
    assert code == 1 and "NOT intact: record 5 " in text


def test_a_deleted_record_is_named(keyed: Path, key_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql(keyed, "DELETE FROM purposeguard_audit WHERE seq = 6")
    code, text = verify(keyed, key_file, capsys)
    assert code == 1 and text.endswith("NOT intact: record 6 is missing (deleted)")


def test_reordered_records_are_named(keyed: Path, key_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql(
        keyed,
        "UPDATE purposeguard_audit SET seq = 100 WHERE seq = 3",
        "UPDATE purposeguard_audit SET seq = 3 WHERE seq = 4",
        "UPDATE purposeguard_audit SET seq = 4 WHERE seq = 100",
    )
    code, text = verify(keyed, key_file, capsys)
    assert code == 1 and "NOT intact: record 3 " in text


def test_a_cut_off_tail_is_named(keyed: Path, key_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The end moved back consistently to record 7: what an unkeyed chain
    # cannot tell from a log that only ever had 7 records.
    seventh = rows(keyed)[6]
    sql(
        keyed,
        "DELETE FROM purposeguard_audit WHERE seq > 7",
        "UPDATE purposeguard_meta SET value = '7' WHERE key = 'head_seq'",
        f"UPDATE purposeguard_meta SET value = '{seventh[5]}' WHERE key = 'head_hash'",
    )
    code, text = verify(keyed, key_file, capsys)
    assert code == 1
    assert text.endswith(
        "NOT intact: records from 8 on were cut off: the recorded end (record 7) is not signed with the key"
    )


def test_a_consistent_rewrite_without_the_key_is_named(
    keyed: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [(kind, timestamp, data) for _, kind, timestamp, data, _, _ in rows(keyed)]
    del records[3]  # record 4 goes, and the rest is re-linked with plain hashes
    rechain(keyed, records, None)
    code, text = verify(keyed, key_file, capsys)
    assert code == 1 and "NOT intact: record 1 was altered" in text


def test_a_rewrite_under_another_key_is_not_intact(
    keyed: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [(kind, timestamp, data) for _, kind, timestamp, data, _, _ in rows(keyed)][:5]
    rechain(keyed, records, ChainKey(OTHER_KEY), meta(keyed)["log_id"])
    code, text = verify(keyed, key_file, capsys)
    assert code != 0 and "\n" not in text and "intact" not in text.replace("NOT intact", "")
    assert "wrong audit key" in text and "rewritten under another key" in text


def test_a_keyed_log_made_to_look_unkeyed_is_not_intact(
    keyed: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [(kind, timestamp, data) for _, kind, timestamp, data, _, _ in rows(keyed)]
    rechain(keyed, records[:-1], None)
    sql(keyed, "DELETE FROM purposeguard_meta WHERE key IN ('key_id', 'head_mac')")
    code, text = verify(keyed, key_file, capsys)
    assert code != 0 and "\n" not in text
    assert "the log's chain is not keyed" in text


def test_a_changed_log_id_breaks_every_record(
    keyed: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sql(keyed, "UPDATE purposeguard_meta SET value = 'ffffffffffffffffffffffffffffffff' WHERE key = 'log_id'")
    code, text = verify(keyed, key_file, capsys)
    # The signed checkpoint file beside it names the log it belongs to.
    assert code == 1 and "the file was swapped" in text
    Path(str(keyed) + "-checkpoint").unlink()
    with AuditLog(keyed, readonly=True, key=key_file) as log:
        result = log.verify()
    # Without it, every record's link names the log id it was written under.
    assert not result.ok and result.first_bad == 1 and "record 1 was altered" in result.reason


def test_a_record_copied_from_another_log_with_the_same_key_does_not_fit(
    keyed: Path, tmp_path: Path, key_file: Path, make_violation: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.db"
    with AuditLog(other, key=key_file) as log:
        for i in range(1, 11):
            log.append(make_violation(100 + i))
    # Record 10 of the other log replaces record 10 here, whole, with its end.
    seq, kind, timestamp, data, prev, digest = rows(other)[-1]
    sql(keyed, "DELETE FROM purposeguard_audit WHERE seq = 10")
    sql(
        keyed,
        "INSERT INTO purposeguard_audit VALUES (?, ?, ?, ?, ?, ?)",
        params=(seq, kind, timestamp, data, rows(keyed)[-1][5], digest),
    )
    code, text = verify(keyed, key_file, capsys)
    assert code == 1 and "record 10 was altered" in text


# -- keys --------------------------------------------------------------------------


def test_a_keyed_log_cannot_be_verified_or_written_without_its_key(
    keyed: Path, capsys: pytest.CaptureFixture[str], make_violation: Any
) -> None:
    code, text = verify(keyed, None, capsys)
    assert code == 2 and "\n" not in text
    assert "the chain is keyed" in text and "--key-file" in text
    with pytest.raises(AuditError, match="chain is keyed"):
        AuditLog(keyed)
    with AuditLog(keyed, readonly=True) as log:
        assert not log.verify().ok


def test_a_wrong_key_is_one_line_and_never_intact(
    keyed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "wrong.key"
    wrong.write_text(OTHER_KEY)
    code, text = verify(keyed, wrong, capsys)
    assert code != 0 and "\n" not in text and "Traceback" not in text
    assert "wrong audit key" in text and ": intact" not in text


def test_a_key_cannot_be_put_on_a_log_started_without_one(
    log_path: Path, key_file: Path, make_violation: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with AuditLog(log_path) as log:
        log.append(make_violation(1))
    with pytest.raises(AuditError, match="not keyed"):
        AuditLog(log_path, key=key_file)
    code, text = verify(log_path, key_file, capsys)
    assert code != 0 and "\n" not in text and "not keyed" in text


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "it is empty"),
        (b"\n", "it is empty"),
        (b"short-key\n", "too short (9 bytes; at least 32"),
        (KEY.encode() + b"\n" + KEY.encode() + b"\n", "no spaces, tabs, control characters or further lines"),
        (b"two words " + KEY.encode(), "no spaces"),
        (b"\xff\xfe" + KEY.encode(), "not text"),
        (b"k" * 5000, "longer than 4096 bytes"),
    ],
)
def test_malformed_key_files_are_one_line_errors(
    keyed: Path, tmp_path: Path, content: bytes, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.key"
    bad.write_bytes(content)
    code, text = verify(keyed, bad, capsys)
    assert code != 0 and "\n" not in text and "Traceback" not in text
    assert says in text and ": intact" not in text


def test_missing_key_files_are_one_line_errors(
    keyed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = verify(keyed, tmp_path / "nowhere.key", capsys)
    assert code != 0 and "\n" not in text and "cannot read the audit key file" in text
    code, text = verify(keyed, tmp_path, capsys)
    assert code != 0 and "\n" not in text and "a directory" in text


@pytest.mark.parametrize("key", ["short", b"\x00" * 31, ""])
def test_keys_that_are_too_short_are_refused(log_path: Path, key: Any) -> None:
    with pytest.raises(AuditError, match="too short"):
        AuditLog(log_path, key=key)
    assert not log_path.exists()


def test_the_environment_key_is_used_and_checked(
    log_path: Path, make_violation: Any, monkeypatch: pytest.MonkeyPatch, key_file: Path
) -> None:
    monkeypatch.setenv("PURPOSEGUARD_AUDIT_KEY", "too-short")
    with pytest.raises(AuditError, match="PURPOSEGUARD_AUDIT_KEY: the audit key is too short"):
        AuditLog(log_path)
    monkeypatch.setenv("PURPOSEGUARD_AUDIT_KEY", KEY)
    with AuditLog(log_path) as log:
        log.append(make_violation(1))
        assert log.keyed and log.verify().keyed
    monkeypatch.delenv("PURPOSEGUARD_AUDIT_KEY")
    monkeypatch.setenv("PURPOSEGUARD_AUDIT_KEY_FILE", str(key_file))
    with AuditLog(log_path, readonly=True) as log:
        assert log.verify().ok


def test_configure_audit_key_keys_the_attached_sink(log_path: Path, key_file: Path) -> None:
    try:
        pg.configure("trust-center", mode="trace", audit=str(log_path), audit_key=KEY)
        pg.check(pg.label("x@example.com", "customer_data.content.email"), purpose="advertising")
    finally:
        pg.configure("trust-center", audit=False)
        from purposeguard import audit

        audit.set_key(None)
    assert meta(log_path)["key_id"] == ChainKey(KEY).key_id
    done = subprocess.run(
        [sys.executable, "-m", "purposeguard", "audit", "verify", str(log_path), "--key-file", str(key_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "keyed chain" in done.stdout and "intact, 1 records" in done.stdout


# -- consents in the chain ---------------------------------------------------------------


def _policy() -> pg.Policy:
    return pg.get_guard().policy


def test_a_forged_grant_is_never_used_and_verify_names_it(
    log_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ConsentStore(AuditLog(log_path, key=key_file)) as store:
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    sql(
        log_path,
        "INSERT INTO purposeguard_consent VALUES ('fabrikam', 'improvement', 'customer_data', 'x', 1.0, NULL)",
        "UPDATE purposeguard_consent SET expires_at = NULL WHERE tenant = 'contoso'",
    )
    with ConsentStore(AuditLog(log_path, key=key_file)) as store:
        assert not store.has_consent("fabrikam", "improvement", "customer_data.content.email")
        assert store.has_consent("contoso", "improvement", "customer_data.content.email")
    code, text = verify(log_path, key_file, capsys)
    assert code == 1 and "grants 'fabrikam' improvement for customer_data with no consent record" in text


def test_a_forged_grant_with_a_forged_consent_record_is_never_used(
    log_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ConsentStore(AuditLog(log_path, key=key_file)) as store:
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    # The attacker appends a consent record linked with a plain hash, and
    # the grant it claims.
    last = rows(log_path)[-1]
    data = json.loads(last[3])
    data["tenant"] = "fabrikam"
    text_data = json.dumps(data, sort_keys=True, separators=(",", ":"))
    forged = link(last[5], 2, "consent", last[2], text_data)
    sql(
        log_path,
        "INSERT INTO purposeguard_audit VALUES (?, ?, ?, ?, ?, ?)",
        params=(2, "consent", last[2], text_data, last[5], forged),
    )
    sql(
        log_path,
        "UPDATE purposeguard_meta SET value = '2' WHERE key = 'head_seq'",
        f"UPDATE purposeguard_meta SET value = '{forged}' WHERE key = 'head_hash'",
        "INSERT INTO purposeguard_consent VALUES ('fabrikam', 'improvement', 'customer_data', 'x', 1.0, NULL)",
    )
    with ConsentStore(AuditLog(log_path, key=key_file)) as store:
        assert not store.has_consent("fabrikam", "improvement", "customer_data.content.email")
    code, text = verify(log_path, key_file, capsys)
    assert code == 1 and "record 2 was altered" in text


@pytest.mark.parametrize("expiry", [float("inf"), float("nan"), -float("inf"), 1.0])
def test_non_finite_or_past_expiries_are_refused(expiry: float) -> None:
    with ConsentStore(":memory:") as store:
        with pytest.raises(pg.PolicyError, match="expires_at must be a finite time|already past"):
            store.grant(
                "contoso", "improvement", ["customer_data"], granted_by="admin@contoso", expires_at=expiry
            )
        assert store.audit.verify().count == 0


def test_a_forked_worker_writes_the_same_keyed_chain(log_path: Path, key_file: Path) -> None:
    from purposeguard import audit

    audit.attach(str(log_path), key=key_file)
    child = os.fork()
    if child == 0:  # a prefork worker: its own sink on the same keyed log
        code = 1
        try:
            sink = audit.attached()
            if sink is not None and sink.log.keyed:
                sink({"kind": "note", "text": "from the worker"})  # type: ignore[arg-type]
                sink.flush()
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    sink = audit.attached()
    assert sink is not None
    sink({"kind": "note", "text": "from the parent"})  # type: ignore[arg-type]
    audit.detach()
    with AuditLog(log_path, readonly=True, key=key_file) as log:
        result = log.verify()
        texts = sorted(e.data["text"] for e in log.records())
    assert result.ok and result.keyed and texts == ["from the parent", "from the worker"]


def test_a_configure_whose_audit_log_fails_to_open_keeps_the_previous_key(tmp_path: Path) -> None:
    """Nothing changes if anything fails: the key of a log that did not open is not kept."""
    from purposeguard import audit

    try:
        audit.set_key(KEY)
        with pytest.raises(AuditError):
            pg.configure(
                "trust-center", audit=str(tmp_path / "no-such-folder" / "audit.db"), audit_key=OTHER_KEY
            )
        assert audit.default_key() is not None and audit.default_key().key_id == ChainKey(KEY).key_id  # type: ignore[union-attr]
    finally:
        audit.set_key(None)


def test_a_reader_between_the_first_commit_and_its_checkpoint_sees_the_grant(
    log_path: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A keyed log is signed for its empty chain when it is created: another
    store reading consents while the first grant's checkpoint is still being
    written finds a checkpoint, not a log that looks cut off."""
    import threading

    import purposeguard._storage.sqlite as sqlite_storage

    writer = ConsentStore(AuditLog(log_path, key=key_file))
    reader = ConsentStore(AuditLog(log_path, key=key_file))
    original = sqlite_storage.write_checkpoint
    paused, go = threading.Event(), threading.Event()

    def slow(*args: Any, **kwargs: Any) -> None:
        paused.set()
        go.wait(10)
        original(*args, **kwargs)

    monkeypatch.setattr(sqlite_storage, "write_checkpoint", slow)
    granting = threading.Thread(
        target=lambda: writer.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    )
    granting.start()
    try:
        assert paused.wait(10)
        assert reader.has_consent("contoso", "improvement", "customer_data.content.email")
    finally:
        go.set()
        granting.join(10)
    writer.close()
    reader.close()


# -- a consent store made before configure(audit_key=...) ----------------------------------------


def _store_before_key(location: str, key_file: Path) -> None:
    """As the storage docs order it: the store first, then configure() with
    the key, which keys the new log the store already holds open."""
    store = ConsentStore(location)
    pg.configure("trust-center", audit=location, consents=store, audit_key=key_file)
    store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso.example")


@pg.purpose("improvement")
def _improve(value: object) -> int:
    return 1


def _consent_after_reopen(location: str, key_file: Path) -> None:
    pg.configure("trust-center", audit=location, audit_key=key_file, mode="enforce")
    store = ConsentStore(location)
    pg.configure("trust-center", audit=location, consents=store, audit_key=key_file, mode="enforce")
    assert _improve(pg.label("x", "customer_data", tenant="contoso")) == 1
    store.close()


def test_a_store_opened_before_its_log_was_keyed_takes_the_key_on(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its grant is chained with the key: the log verifies, and a process
    started later finds the consent."""
    location = str(tmp_path / "consent.db")
    _store_before_key(location, key_file)
    pg.configure("trust-center")
    code, text = verify(Path(location), key_file, capsys)
    assert code == 0 and "intact" in text, text
    _consent_after_reopen(location, key_file)


def test_a_store_whose_log_another_process_keyed_is_refused_not_broken(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the key in this process, appending unkeyed records to the now
    keyed chain would break it without a word: the grant is refused."""
    location = str(tmp_path / "consent.db")
    store = ConsentStore(location)
    keying = (
        "import sys, purposeguard as pg\n"
        "from pathlib import Path\n"
        "pg.configure('trust-center', audit=sys.argv[1], audit_key=Path(sys.argv[2]))\n"
    )
    subprocess.run([sys.executable, "-c", keying, location, str(key_file)], check=True, timeout=120)
    with pytest.raises(AuditError, match="keyed .* after this writer opened it"):
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso.example")
    store.close()
    code, text = verify(Path(location), key_file, capsys)
    assert code == 0 and "intact" in text, text


@pytest.mark.services
def test_a_postgresql_store_opened_before_its_log_was_keyed_takes_the_key_on(
    postgres_server: Any, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    location = postgres_server.create_database()
    _store_before_key(location, key_file)
    pg.configure("trust-center")
    code, text = verify(location, key_file, capsys)  # type: ignore[arg-type]
    assert code == 0 and "intact" in text, text
    _consent_after_reopen(location, key_file)


def test_a_key_is_handed_on_only_while_its_writer_is_open(tmp_path: Path, key_file: Path) -> None:
    from purposeguard._storage import base

    location = str(tmp_path / "consent.db")
    _store_before_key(location, key_file)
    resolved = str(Path(location).resolve())
    assert resolved in base._KEYS_IN_USE
    pg.configure("trust-center", audit=False)  # the keyed sink is closed
    assert resolved not in base._KEYS_IN_USE


@pytest.mark.slow
def test_every_revocation_is_covered_by_the_checkpoint_file_while_the_sink_writes_too(
    tmp_path: Path, key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The documented set-up, configure(audit=path, audit_key=...) and a
    ConsentStore on the same file, with requests writing violations all the
    while: each revoke() returns with the checkpoint file covering it (the
    two writers once replaced each other's file in progress, and a
    revocation could then be cut off with the checkpoint file untouched)."""
    import threading

    from purposeguard._storage.base import read_checkpoint

    path = tmp_path / "audit.db"
    pg.configure("trust-center", mode="trace", audit=path, audit_key=key_file)
    store = ConsentStore(path)
    pg.configure("trust-center", mode="trace", audit=path, audit_key=key_file, consents=store)
    value = pg.label("x", "customer_data", tenant="fabrikam")

    @pg.purpose("advertising")
    def advertise(text: str) -> None:
        return None

    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            advertise(value)

    threads = [threading.Thread(target=traffic) for _ in range(2)]
    uncovered = 0
    with caplog.at_level("ERROR", logger="purposeguard"):
        for thread in threads:
            thread.start()
        try:
            for _ in range(200):
                store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso.example")
                revoked = store.revoke("contoso", "improvement", revoked_by="admin@contoso.example")
                assert revoked.audit_ref is not None
                seq = int(revoked.audit_ref.split(":")[1])
                checkpoint = read_checkpoint(f"{path}-checkpoint")
                if checkpoint is None or checkpoint.seq < seq:
                    uncovered += 1
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
    store.close()
    assert uncovered == 0
    assert not [r for r in caplog.records if "checkpoint" in r.getMessage()]
