"""`purposeguard report --audit LOG --key-file FILE`: a keyed log is reported
without environment variables, and every unusable key file is one line and a
non-zero exit (run as a user runs it: the installed command in a process)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from purposeguard.audit import AuditLog

KEY = "9f3c1b7e5a2d4c6b8e0f1a3c5e7d9b2a4c6e8f0a1b3d5f7e9c2a4b6d8f0e1c3"
OTHER_KEY = "0e1c3f7e9c2a4b6d8f0a1b3d5f7e9b2a4c6e8f0a9f3c1b7e5a2d4c6b8e0f1a3c"


def run(*argv: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PURPOSEGUARD_AUDIT_KEY")}
    done = subprocess.run(
        [sys.executable, "-m", "purposeguard", "report", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    file = tmp_path / "audit.key"
    file.write_text(KEY + "\n")
    return file


@pytest.fixture
def keyed_log(tmp_path: Path, key_file: Path) -> Path:
    path = tmp_path / "audit.db"
    with AuditLog(path, key=key_file) as log:
        for i in range(3):
            log.append({"kind": "note", "text": f"record {i}"})
    return path


def test_a_keyed_log_is_reported_with_its_key_file(keyed_log: Path, key_file: Path, tmp_path: Path) -> None:
    code, out, err = run("--audit", str(keyed_log), "--key-file", str(key_file), "--out", str(tmp_path / "r"))
    assert (code, err) == (0, "")
    assert "audit chain intact (3 records)" in out
    assert "intact" in (tmp_path / "r" / "report.md").read_text()


def test_without_the_key_file_the_report_says_how_to_verify(keyed_log: Path, tmp_path: Path) -> None:
    code, out, err = run("--audit", str(keyed_log), "--out", str(tmp_path / "r"))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "--key-file FILE" in err and "Traceback" not in err


def test_a_tampered_keyed_log_is_not_intact_with_the_right_key(
    keyed_log: Path, key_file: Path, tmp_path: Path
) -> None:
    with sqlite3.connect(keyed_log) as db:
        changed = db.execute(
            "UPDATE purposeguard_audit SET data = replace(data, 'record 1', 'record X') WHERE seq = 2"
        ).rowcount
    assert changed == 1
    code, _, err = run("--audit", str(keyed_log), "--key-file", str(key_file), "--out", str(tmp_path / "r"))
    assert code == 1 and "NOT intact" in err and err.count("\n") == 1


def key_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "too short": ("short-key\n", None),
        "two lines": (KEY + "\n" + KEY + "\n", None),
        "spaces": ("a b c d e f g h i j k l m n o p q r s t u v w x y z\n", None),
        "empty": ("", None),
        "not text": (None, b"\xff\xfe" * 20),
        "the wrong key": (OTHER_KEY + "\n", None),
    }
    out = {}
    for name, (text, data) in files.items():
        file = tmp_path / name.replace(" ", "-")
        if text is not None:
            file.write_text(text)
        else:
            file.write_bytes(data or b"")
        out[name] = file
    out["missing"] = tmp_path / "no-such-key"
    out["a directory"] = tmp_path
    return out


@pytest.mark.parametrize(
    "which",
    ["too short", "two lines", "spaces", "empty", "not text", "the wrong key", "missing", "a directory"],
)
def test_an_unusable_key_file_is_one_line_and_exit_1(keyed_log: Path, tmp_path: Path, which: str) -> None:
    key_file = key_files(tmp_path)[which]
    code, out, err = run("--audit", str(keyed_log), "--key-file", str(key_file), "--out", str(tmp_path / "r"))
    assert code == 1 and out == ""
    assert err.startswith("purposeguard report: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and KEY not in err and OTHER_KEY not in err
    assert not (tmp_path / "r" / "report.html").exists()  # nothing written from an unverified read


def test_key_file_without_an_audit_log_is_a_usage_error(key_file: Path, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    code, _, err = run(
        "--source", str(tmp_path / "src"), "--key-file", str(key_file), "--out", str(tmp_path / "r")
    )
    assert code == 2 and "--key-file goes with --audit" in err
