"""An audit log whose bytes are damaged where SQLite keeps text (a name in
its schema, a record's column) is a corrupted file, said in one line by
every entry point: never an internal UnicodeDecodeError, never the text."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import purposeguard as pg
from purposeguard import audit
from purposeguard.audit import AuditError, AuditLog
from purposeguard.cli import main
from purposeguard.consent import ConsentStore

# The name SQLite gives the index of purposeguard_meta's primary key, on page 1.
INDEX_NAME = b"sqlite_autoindex_purposeguard_meta_1"


@pytest.fixture
def damaged_schema(tmp_path: Path) -> Path:
    """A new log with one byte of an index name in its schema made 0x97:
    SQLite then reports the schema malformed in a message quoting that
    name, which is not UTF-8 (as a randomly damaged file was found to)."""
    path = tmp_path / "damaged.db"
    AuditLog(path).close()
    data = bytearray(path.read_bytes())
    at = data.index(INDEX_NAME, 0, 4096)
    data[at + INDEX_NAME.index(b"rd_meta")] = 0x97
    path.write_bytes(bytes(data))
    return path


def test_a_damaged_schema_name_is_a_corrupted_file_to_configure(damaged_schema: Path, log_path: Path) -> None:
    pg.configure("trust-center", mode="trace", audit=log_path)
    before = audit.attached()
    with pytest.raises(AuditError, match=r"corrupted SQLite file \(malformed database schema"):
        pg.configure("trust-center", audit=damaged_schema)
    assert audit.attached() is before


def test_a_damaged_schema_name_is_a_corrupted_file_to_a_consent_store(damaged_schema: Path) -> None:
    with pytest.raises(AuditError, match=r"corrupted SQLite file \(malformed database schema"):
        ConsentStore(damaged_schema)


@pytest.mark.parametrize(
    "command",
    [
        ["audit", "verify", "{log}"],
        ["audit", "tail", "{log}"],
        ["audit", "tail", "--json", "{log}"],
        ["explain", "customer_data", "improvement", "--tenant", "acme", "--consents", "{log}"],
        ["report", "--out", "{out}", "--audit", "{log}"],
    ],
    ids=["verify", "tail", "tail-json", "explain", "report"],
)
def test_a_damaged_schema_name_is_one_line_from_every_command(
    damaged_schema: Path, tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.format(log=damaged_schema, out=tmp_path / "report") for a in command]
    code = main(args)
    out, err = capsys.readouterr()
    assert code != 0
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "internal error" not in err
    assert "corrupted SQLite file (malformed database schema" in err


def test_a_column_that_is_not_utf8_is_named_without_its_text(
    log_path: Path, marker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with AuditLog(log_path) as log:
        log.append({"kind": "note", "text": "kept"})
    connection = sqlite3.connect(log_path)
    try:
        # A byte that is not UTF-8, then text the error must not repeat.
        connection.execute(
            "UPDATE purposeguard_audit SET data = CAST(x'ff' || ? AS TEXT) WHERE seq = 1", (marker,)
        )
        connection.commit()
    finally:
        connection.close()
    with AuditLog(log_path, readonly=True) as log, pytest.raises(AuditError) as raised:
        log.tail(1)
    assert "corrupted SQLite file (column 'data' holds text that is not UTF-8)" in str(raised.value)
    assert marker not in str(raised.value)
    assert main(["audit", "verify", str(log_path)]) != 0
    out, err = capsys.readouterr()
    assert "column 'data' holds text that is not UTF-8" in err
    assert marker not in out + err
