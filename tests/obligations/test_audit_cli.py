"""`purposeguard audit verify|tail`: tampering of each kind is found and named."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from purposeguard.audit import AuditLog
from purposeguard.cli import main


@pytest.fixture
def ten(log_path: Path, make_violation: Any) -> Path:
    with AuditLog(log_path, synchronous="normal") as log:
        for i in range(1, 11):
            log.append(make_violation(i))
    return log_path


def sql(path: Path, *statements: str) -> None:
    connection = sqlite3.connect(path)
    try:
        for statement in statements:
            connection.execute(statement)
        connection.commit()
    finally:
        connection.close()


def verify(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["audit", "verify", str(path)])
    out, err = capsys.readouterr()
    return code, (out + err).strip()


def test_an_intact_log_verifies_with_exit_0(ten: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = verify(ten, capsys)
    assert code == 0
    with AuditLog(ten, readonly=True) as log:
        (last,) = log.tail(1)
    # The head, to be kept where the log's writer cannot change it.
    assert text == (
        f"{ten}: unkeyed chain, integrity against accidents only (whoever can write the log could "
        f"rewrite it): intact, 10 records, head {last.hash}"
    )


def test_an_anchor_catches_a_rewrite_of_the_whole_chain(
    ten: Path, tmp_path: Path, make_violation: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = verify(ten, capsys)
    anchor = text.rsplit(" ", 1)[1]
    with AuditLog(ten) as log:
        log.append(make_violation(11))  # the log goes on growing past the anchor
    assert main(["audit", "verify", str(ten), "--anchor", anchor]) == 0
    capsys.readouterr()
    # An attacker who can write the file rebuilds a consistent chain without record 4:
    # the unkeyed chain alone verifies, the anchor does not.
    forged = tmp_path / "forged.db"
    with AuditLog(ten, readonly=True) as original, AuditLog(forged, synchronous="normal") as rewritten:
        for entry in original.records():
            if entry.seq != 4:
                rewritten.append(entry.data)
    forged_ok, _ = verify(forged, capsys)
    assert forged_ok == 0
    code, text = verify_with(forged, capsys, "--anchor", anchor)
    assert code == 1
    assert "anchor" in text and "rewritten" in text and "\n" not in text
    code, text = verify_with(ten, capsys, "--anchor", "xyz")
    assert code == 2 and "64 hex digits" in text


def verify_with(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["audit", "verify", str(path), *extra])
    out, err = capsys.readouterr()
    return code, (out + err).strip()


def test_the_installed_command_verifies_in_a_real_process(ten: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "purposeguard", "audit", "verify", str(ten)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    sql(ten, "UPDATE purposeguard_audit SET data = replace(data, 'no-advertising', 'other') WHERE seq = 4")
    bad = subprocess.run(
        [sys.executable, "-m", "purposeguard", "audit", "verify", str(ten)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1
    assert "record 4" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "Traceback" not in bad.stderr


def test_an_altered_record_is_named(ten: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql(ten, "UPDATE purposeguard_audit SET data = replace(data, 'no-advertising', 'allowed') WHERE seq = 6")
    code, text = verify(ten, capsys)
    assert code == 1
    assert "record 6 was altered" in text
    assert len(text.splitlines()) == 1


def test_an_altered_and_rehashed_record_is_named(ten: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A forger who recomputes the altered record's own hash is caught by the next link."""
    from purposeguard._storage import link

    connection = sqlite3.connect(ten)
    seq, kind, timestamp, data, prev = connection.execute(
        "SELECT seq, kind, timestamp, data, prev_hash FROM purposeguard_audit WHERE seq = 3"
    ).fetchone()
    forged = data.replace("no-advertising", "allowed")
    connection.execute(
        "UPDATE purposeguard_audit SET data = ?, hash = ? WHERE seq = 3",
        (forged, link(prev, seq, kind, timestamp, forged)),
    )
    connection.commit()
    connection.close()
    code, text = verify(ten, capsys)
    assert code == 1
    assert "record 3 was altered" in text


def test_a_deleted_record_is_named(ten: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql(ten, "DELETE FROM purposeguard_audit WHERE seq = 5")
    code, text = verify(ten, capsys)
    assert code == 1
    assert "record 5 is missing (deleted)" in text


def test_deleting_the_last_records_is_noticed(ten: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql(ten, "DELETE FROM purposeguard_audit WHERE seq >= 9")
    code, text = verify(ten, capsys)
    assert code == 1
    assert "record 9 is missing" in text


def test_deleting_the_first_record_is_noticed(ten: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql(ten, "DELETE FROM purposeguard_audit WHERE seq = 1")
    code, text = verify(ten, capsys)
    assert code == 1
    assert "record 1 is missing" in text


def test_an_inserted_record_is_named(ten: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Renumber records 5.. up by one and forge a well-linked record 5 in the gap."""
    from purposeguard._storage import link

    connection = sqlite3.connect(ten)
    for seq in range(10, 4, -1):
        connection.execute("UPDATE purposeguard_audit SET seq = ? WHERE seq = ?", (seq + 1, seq))
    (prev,) = connection.execute("SELECT hash FROM purposeguard_audit WHERE seq = 4").fetchone()
    data = json.dumps({"kind": "violation", "rule": "forged"})
    connection.execute(
        "INSERT INTO purposeguard_audit VALUES (5, 'violation', 1.0, ?, ?, ?)",
        (data, prev, link(prev, 5, "violation", 1.0, data)),
    )
    connection.commit()
    connection.close()
    code, text = verify(ten, capsys)
    assert code == 1
    assert "record 5 was inserted" in text


def test_a_record_appended_behind_the_log_s_back_is_named(
    ten: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from purposeguard._storage import link

    connection = sqlite3.connect(ten)
    (prev,) = connection.execute("SELECT hash FROM purposeguard_audit WHERE seq = 10").fetchone()
    data = json.dumps({"kind": "violation", "rule": "forged"})
    connection.execute(
        "INSERT INTO purposeguard_audit VALUES (11, 'violation', 1.0, ?, ?, ?)",
        (data, prev, link(prev, 11, "violation", 1.0, data)),
    )
    connection.commit()
    connection.close()
    code, text = verify(ten, capsys)
    assert code == 1
    assert "record 11 was inserted" in text


def test_reordered_records_are_named(ten: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql(
        ten,
        "UPDATE purposeguard_audit SET seq = -1 WHERE seq = 7",
        "UPDATE purposeguard_audit SET seq = 7 WHERE seq = 8",
        "UPDATE purposeguard_audit SET seq = 8 WHERE seq = -1",
    )
    code, text = verify(ten, capsys)
    assert code == 1
    assert "record 7 was altered or moved" in text


def test_verify_of_a_missing_foreign_or_broken_file_is_one_line_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.db"
    code, text = verify(missing, capsys)
    assert (code, text) == (1, f"purposeguard: {missing}: no such audit log")
    assert not missing.exists()

    junk = tmp_path / "junk.db"
    junk.write_text("hello " * 1000)
    code, text = verify(junk, capsys)
    assert code == 1 and "not an SQLite database" in text and len(text.splitlines()) == 1

    foreign = tmp_path / "foreign.db"
    sql(foreign, "CREATE TABLE orders (id INTEGER)")
    code, text = verify(foreign, capsys)
    assert code == 1 and "not a purposeguard audit log" in text and "orders" in text


def test_tail_prints_the_last_records(ten: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "tail", str(ten), "-n", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].split()[0] == "8" and lines[-1].split()[0] == "10"
    assert "rule=no-advertising" in lines[0] and "violation" in lines[0]


def test_tail_json_is_one_object_per_line(ten: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "tail", str(ten), "-n", "2", "--json"]) == 0
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["seq"] for o in objects] == [9, 10]
    assert objects[0]["kind"] == "violation"
    assert objects[0]["data"]["purpose"] == "advertising"
    assert objects[1]["prev_hash"] == objects[0]["hash"]


def test_tail_defaults_to_ten_and_bad_n_is_a_usage_error(
    ten: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "tail", str(ten)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 10
    assert main(["audit", "tail", str(ten), "-n", "-1"]) == 2
    assert main(["audit", "tail", str(ten), "-n", "x"]) == 2
    assert main(["audit"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_reading_a_log_changes_nothing(ten: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql(ten, "PRAGMA wal_checkpoint(TRUNCATE)")
    before = ten.read_bytes()
    main(["audit", "verify", str(ten)])
    main(["audit", "tail", str(ten), "--json"])
    capsys.readouterr()
    assert ten.read_bytes() == before
