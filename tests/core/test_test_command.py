"""`bash scripts/test`, the README's test command, tried as a new contributor would:
it names what it cannot install, passes pytest's arguments and exit code through,
and `.ci/run` calls exactly it."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "test"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the script beside a stand-in .venv/bin/pytest that echoes its arguments."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / "test")
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    pytest_stub = venv_bin / "pytest"
    pytest_stub.write_text('#!/bin/sh\necho "pytest ran with: $*"\nexit 3\n', encoding="utf-8")
    pytest_stub.chmod(0o755)
    return tmp_path


def _bare_path(tmp_path: Path) -> str:
    """A PATH with only what the script itself uses: no apt-get, no sudo, no service binaries."""
    bin_dir = tmp_path / "bare-bin"
    bin_dir.mkdir()
    for tool in ("dirname", "id"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def _run(checkout: Path, *args: str, path: str) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash is not None
    return subprocess.run(
        [bash, str(checkout / "scripts" / "test"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": path, "HOME": str(checkout)},
    )


def test_missing_packages_are_named_and_pytest_still_runs(checkout: Path, tmp_path: Path) -> None:
    done = _run(checkout, "-x", "tests/core", path=_bare_path(tmp_path))
    expected = ["prometheus", "chromium", "redis-server", "default-jre-headless", "wrk"]
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        expected.insert(2, "postgresql")
    missing_line = next(line for line in done.stderr.splitlines() if "missing Debian packages" in line)
    assert missing_line.startswith(f"scripts/test: missing Debian packages: {' '.join(expected)} (")
    assert "no apt-get" in missing_line
    assert f"sudo apt-get install {' '.join(expected)}" in done.stderr
    assert 'bash scripts/test -m "not services"' in done.stderr
    assert done.stdout == "pytest ran with: -x tests/core\n"
    assert done.returncode == 3, "pytest's exit code is the script's"


def test_the_hermetic_run_needs_no_packages(checkout: Path, tmp_path: Path) -> None:
    done = _run(checkout, "-m", "not services", path=_bare_path(tmp_path))
    assert done.stderr == ""
    assert done.stdout == "pytest ran with: -m not services\n"


def test_nothing_is_missing_on_a_prepared_machine(checkout: Path) -> None:
    """This machine has the packages (the script installed them, or an image did)."""
    done = _run(checkout, "-q", path=os.environ["PATH"])
    assert "missing" not in done.stderr, done.stderr
    assert done.stdout == "pytest ran with: -q\n"


def test_without_the_venv_it_says_to_run_the_first_command(checkout: Path, tmp_path: Path) -> None:
    shutil.rmtree(checkout / ".venv")
    done = _run(checkout, path=_bare_path(tmp_path))
    assert done.returncode == 2
    assert "run the README's first command first" in done.stderr
    assert (
        "python3 -m venv .venv && .venv/bin/pip install -q '.[test]' && .venv/bin/purposeguard demo"
        in done.stderr
    )


def test_ci_installs_as_the_readme_says_then_runs_the_same_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    first = lines.index("rm -rf .venv")
    assert lines[first + 1] == (
        "python3 -m venv .venv && .venv/bin/pip install -q '.[test]' && .venv/bin/purposeguard demo"
    )
    assert "bash scripts/test || status=$?" in lines
    assert 'if [ "$status" -eq 5 ]; then' in lines, "no tests collected is a failure"
    assert not [line for line in lines if "pytest" in line and "echo" not in line], (
        "pytest only through scripts/test"
    )


def test_the_script_runs_pytest_from_the_venv_with_the_arguments_it_was_given() -> None:
    lines = SCRIPT.read_text(encoding="utf-8").rstrip().splitlines()
    assert lines[-1] == 'exec .venv/bin/pytest "$@"'
