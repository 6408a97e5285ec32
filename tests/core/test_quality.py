"""House rules that a test can hold: ruff clean and formatted, mypy clean (strict) on the package, a relaxed
mypy pass over tests and benchmarks, no references to design-document sections in code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_is_clean() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_is_applied() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, "run `ruff format .`:\n" + done.stdout + done.stderr


def test_mypy_strict_is_clean() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", "/dev/null"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_relaxed_is_clean_on_tests_and_benchmarks() -> None:
    """Bodies type-checked, annotations not required (tests/mypy.ini)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            "tests/mypy.ini",
            "--no-incremental",
            "--cache-dir",
            "/dev/null",
            "tests",
            "benchmarks",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_flags_unused_ignores() -> None:
    config = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r"^warn_unused_ignores = true$", config, re.M)


def test_code_points_to_its_own_docs_not_to_design_sections() -> None:
    """What the code needs is in the project's docs (README.md, docs/) or in a comment saying why."""
    pattern = re.compile(r"DESIGN\s*§|§\s*\d|DESIGN\.md")
    offenders = []
    paths = sorted(ROOT.glob("*.md"))
    for folder in (
        "purposeguard",
        "integrations",
        "examples",
        "benchmarks",
        "tests",
        "scripts",
        ".ci",
        "docs",
    ):
        paths += sorted((ROOT / folder).rglob("*"))
    for path in paths:
        if path.is_file() and path.suffix in {
            "",
            ".py",
            ".toml",
            ".sh",
            ".ini",
            ".md",
            ".yaml",
            ".json",
            ".html",
        }:
            text = path.read_text(encoding="utf-8", errors="replace")
            for number, line in enumerate(text.splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
