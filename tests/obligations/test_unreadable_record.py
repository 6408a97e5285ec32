"""A record whose stored JSON cannot be read back (not JSON, or nested
deeper than any reader takes) is shown as the altered record it is, by
number, by every reader: never an internal RecursionError."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from purposeguard.audit import AuditLog
from purposeguard.cli import main

UNREADABLE = {
    "not-json": "{not json",
    # Far past the interpreter's recursion limit, as a hand edit can make it.
    "nested-deep": "[" * 100_000 + "]" * 100_000,
}


@pytest.fixture(params=sorted(UNREADABLE))
def altered(request: pytest.FixtureRequest, log_path: Path, make_violation: Any) -> Path:
    with AuditLog(log_path) as log:
        log.append(make_violation(1))
        log.append(make_violation(2))
    connection = sqlite3.connect(log_path)
    try:
        connection.execute(
            "UPDATE purposeguard_audit SET data = ? WHERE seq = 1", (UNREADABLE[request.param],)
        )
        connection.commit()
    finally:
        connection.close()
    return log_path


def test_reading_the_log_names_the_unreadable_record(altered: Path) -> None:
    with AuditLog(altered, readonly=True) as log:
        first, second = log.tail(2)
        assert [e.seq for e in log.records()] == [1, 2]
        kept, result = log.verified_records()
    assert first.data == {"unreadable": "record 1 was altered: its data is not readable JSON"}
    assert second.data["purpose"] == "advertising"
    assert [e.seq for e in kept] == [1, 2]
    assert not result.ok and result.first_bad == 1


def test_audit_tail_shows_the_unreadable_record_by_number(
    altered: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "tail", str(altered)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2 and err == ""
    assert lines[0].endswith("(record 1 was altered: its data is not readable JSON)")
    assert main(["audit", "tail", "--json", str(altered)]) == 0
    out, err = capsys.readouterr()
    first = json.loads(out.splitlines()[0])
    assert first["seq"] == 1
    assert first["data"] == {"unreadable": "record 1 was altered: its data is not readable JSON"}
    assert err == ""


def test_the_report_names_the_altered_record_in_one_line(
    altered: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "report"
    assert main(["report", "--out", str(out_dir), "--audit", str(altered)]) != 0
    _, err = capsys.readouterr()
    assert "internal error" not in err
    assert len(err.strip().splitlines()) == 1
    assert "NOT intact: record 1 was altered" in err
    assert "record 1 was altered" in (out_dir / "report.md").read_text()
