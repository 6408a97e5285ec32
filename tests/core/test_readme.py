"""The README's quick start runs exactly as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_quick_start_runs_as_written(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Five-minute tour", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    script = tmp_path / "quickstart.py"
    script.write_text(code.group(1), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "1"
    assert lines[1] == "no-advertising"
    assert "no-content-in-service-communications" in done.stdout


def test_readme_starts_with_exactly_two_setup_commands() -> None:
    text = README.read_text(encoding="utf-8")
    first_block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert first_block is not None
    commands = [line for line in first_block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    assert "pip install" in commands[0] and commands[1] == "bash scripts/test"
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    for command in commands:
        assert command in ci


def test_obligations_example_runs(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Obligations and records", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    prelude = (
        "import purposeguard as pg\n"
        "notices = []\n"
        "def notify_admins(notice):\n"
        "    notices.append(notice)\n"
        "mailbox = {'owner': pg.label('megan@contoso.example', 'customer_data'), 'message_count': 12,\n"
        "           'body': pg.label('private words', 'customer_data.content.email')}\n"
    )
    epilogue = (
        "\nassert dict(released) == {'owner': 'megan@contoso.example', 'message_count': 12}, dict(released)\n"
        "assert len(notices) == 1\n"
        "print('ok')\n"
    )
    script = tmp_path / "obligations.py"
    script.write_text(prelude + code.group(1) + epilogue, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")
    verify = subprocess.run(
        [sys.executable, "-m", "purposeguard", "audit", "verify", str(tmp_path / "audit.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stderr
