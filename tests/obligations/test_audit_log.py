"""The audit log on real SQLite files: append, read, verify, bad files."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard.audit import AuditError, AuditLog


def test_append_returns_consecutive_seqs_and_records_read_back(log_path: Path, make_violation: Any) -> None:
    with AuditLog(log_path) as log:
        seqs = [log.append(make_violation(i)) for i in range(3)]
        entries = list(log.records())
    assert seqs == [1, 2, 3]
    assert [e.seq for e in entries] == [1, 2, 3]
    assert {e.kind for e in entries} == {"violation"}
    assert entries[1].data["function"] == "tests.writer_1"
    assert entries[1].data["rule"] == "no-advertising"
    assert entries[0].prev_hash == "0" * 64
    assert entries[1].prev_hash == entries[0].hash


def test_entries_survive_reopening_and_the_chain_continues(log_path: Path, make_violation: Any) -> None:
    with AuditLog(log_path) as log:
        log.append(make_violation(1))
    with AuditLog(log_path) as log:
        assert log.append(make_violation(2)) == 2
        assert log.verify().ok
        assert len(log) == 2


def test_the_file_is_in_wal_mode(log_path: Path, make_violation: Any) -> None:
    with AuditLog(log_path) as log:
        log.append(make_violation())
    connection = sqlite3.connect(log_path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        connection.close()


def test_memory_log_works_for_tests(make_violation: Any) -> None:
    log = AuditLog(":memory:")
    log.append(make_violation())
    assert log.verify() == log.verify()
    assert log.verify().ok and log.verify().count == 1
    log.close()


def test_declassification_records_are_kept(log_path: Path) -> None:
    record = pg.Declassification(
        transform="usage-aggregate",
        from_categories=("customer_data.content.email",),
        to="usage_data",
        function="tests.size",
        purpose=None,
        tenant="contoso",
        timestamp=1.5,
    )
    with AuditLog(log_path) as log:
        log.append(record)
        (entry,) = log.records()
    assert entry.kind == "declassification"
    assert entry.timestamp == 1.5
    assert entry.data["from_categories"] == ["customer_data.content.email"]


def test_a_labelled_value_in_a_record_is_refused_and_nothing_is_written(
    log_path: Path, marker: str, file_bytes: Callable[[Path], bytes]
) -> None:
    secret = pg.label(marker, "customer_data.content.email")
    with AuditLog(log_path) as log:
        with pytest.raises(AuditError, match="labelled value in field 'note'"):
            log.append({"kind": "note", "note": secret})
        assert len(log) == 0
    assert marker.encode() not in file_bytes(log_path)


def test_a_record_that_is_not_json_is_kept_escaped_and_one_without_a_kind_refused(log_path: Path) -> None:
    with AuditLog(log_path) as log:
        # Kept, with the field by its type's name (never its repr) and flagged.
        assert log.append({"kind": "note", "what": object()}) == 1
        (entry,) = log.tail(1)
        assert entry.data["what"] == "<object>" and entry.data["escaped"] == ["what"]
        with pytest.raises(AuditError, match="needs a kind"):
            log.append({"note": "no kind"})
        assert len(log) == 1


def test_threads_writing_at_once_lose_nothing(log_path: Path, make_violation: Any) -> None:
    log = AuditLog(log_path, synchronous="normal")
    seqs: list[int] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        for _ in range(100):
            seq = log.append(make_violation(n))
            with lock:
                seqs.append(seq)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = log.verify()
    log.close()
    assert sorted(seqs) == list(range(1, 601))
    assert result.ok and result.count == 600


# -- files that are not audit logs ------------------------------------------------


def test_a_file_that_is_not_sqlite_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"just some notes, not a database\n" * 50)
    before = path.read_bytes()
    with pytest.raises(AuditError, match="not an SQLite database") as caught:
        AuditLog(path)
    assert caught.value.path == str(path)
    assert isinstance(caught.value, pg.PurposeGuardError)
    assert path.read_bytes() == before
    assert not Path(str(path) + "-wal").exists()


def test_a_foreign_sqlite_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    connection.commit()
    connection.close()
    before = path.read_bytes()
    with pytest.raises(AuditError, match=r"not a purposeguard audit log: .*other tables \(users\)"):
        AuditLog(path)
    assert path.read_bytes() == before
    connection = sqlite3.connect(path)
    try:
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables == {"users"}
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        connection.close()


def test_a_corrupted_audit_log_is_reported(log_path: Path, make_violation: Any) -> None:
    with AuditLog(log_path, synchronous="full") as log:
        for i in range(300):
            log.append(make_violation(i))
    # Fold the WAL into the main file, then damage pages in its middle.
    connection = sqlite3.connect(log_path)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    data = bytearray(log_path.read_bytes())
    assert len(data) > 8192
    for offset in range(4096, len(data) - 4096, 512):
        data[offset : offset + 64] = b"\xff" * 64
    log_path.write_bytes(bytes(data))
    with pytest.raises(AuditError, match="corrupted|malformed|not a database|damaged"):
        with AuditLog(log_path) as log:
            log.verify()


def test_a_missing_log_is_an_error_when_it_must_exist(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(AuditError, match="no such audit log"):
        AuditLog(path, create=False)
    with pytest.raises(AuditError, match="no such audit log"):
        AuditLog(path, readonly=True)
    assert not path.exists()


def test_a_directory_or_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="is a directory"):
        AuditLog(tmp_path)
    with pytest.raises(AuditError, match="no such directory"):
        AuditLog(tmp_path / "nowhere" / "audit.db")


def test_a_readonly_log_cannot_be_appended_to(log_path: Path, make_violation: Any) -> None:
    AuditLog(log_path).close()
    with AuditLog(log_path, readonly=True) as log:
        with pytest.raises(AuditError, match="read-only"):
            log.append(make_violation())


# -- the head kept in memory ----------------------------------------------------


@pytest.mark.parametrize("key", [None, "head-" + "0123456789abcdef" * 3], ids=["unkeyed", "keyed"])
def test_two_connections_appending_in_turn_keep_one_chain(
    log_path: Path, make_violation: Any, key: str | None
) -> None:
    """Each writer learns the head the other wrote: no seq twice, no broken link."""
    first = AuditLog(log_path, synchronous="normal", key=key)
    second = AuditLog(log_path, synchronous="normal", key=key)
    try:
        seqs = []
        for n in range(20):
            writer = first if n % 3 else second  # uneven turns: runs of two, then a switch
            seqs.append(writer.append(make_violation(n)))
        assert seqs == list(range(1, 21))
        assert first.verify().ok and second.verify().ok
        assert first.verify().count == 20
    finally:
        first.close()
        second.close()


def test_an_append_reads_the_head_only_after_another_connection_committed(
    log_path: Path, make_violation: Any
) -> None:
    log = AuditLog(log_path, synchronous="normal")
    other = AuditLog(log_path, synchronous="normal")
    statements: list[str] = []
    try:
        log.append(make_violation(1))
        log.storage.trace(statements.append)  # type: ignore[attr-defined]
        log.append(make_violation(2))
        log.append(make_violation(3))
        reads_alone = sum(
            "head_seq', 'head_hash'" in s and s.lstrip().startswith("SELECT") for s in statements
        )
        other.append(make_violation(4))
        log.append(make_violation(5))
        reads_after = sum(
            "head_seq', 'head_hash'" in s and s.lstrip().startswith("SELECT") for s in statements
        )
        assert (reads_alone, reads_after) == (0, 1)
        assert log.verify().ok and log.verify().count == 5
    finally:
        log.close()
        other.close()


def test_a_row_slipped_in_by_another_connection_is_still_reported_as_an_altered_log(
    log_path: Path, make_violation: Any
) -> None:
    log = AuditLog(log_path, synchronous="normal")
    try:
        log.append(make_violation(1))
        intruder = sqlite3.connect(log_path)
        intruder.execute(
            "INSERT INTO purposeguard_audit (seq, kind, timestamp, data, prev_hash, hash) "
            "VALUES (2, 'violation', 0, '{}', 'x', 'y')"
        )
        intruder.commit()
        intruder.close()
        with pytest.raises(AuditError, match="altered"):
            log.append(make_violation(2))
    finally:
        log.close()
