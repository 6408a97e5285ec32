"""The Django integration tried on the oldest Django the package claims to support.

The integration patches parts of Django's ORM that change between releases
(how a values_list() row is ordered, which iterables exist). The suite runs on
the newest Django; here tests/orm/test_django.py runs again, in a process of
its own, with the oldest release series the ``django`` extra allows put first
on the import path.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _oldest_series() -> tuple[int, int]:
    for requirement in metadata.requires("purposeguard") or ():
        found = re.fullmatch(r'django>=(\d+)\.(\d+)\s*;\s*extra == "django"', requirement.strip())
        if found:
            return int(found.group(1)), int(found.group(2))
    raise AssertionError("the django extra names no lower bound")


@pytest.mark.services  # fetches that Django release with pip
def test_the_django_suite_passes_on_the_oldest_supported_django(tmp_path: Path) -> None:
    major, minor = _oldest_series()
    target = tmp_path / "oldest-django"
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--target",
            str(target),
            f"django>={major}.{minor},<{major}.{minor + 1}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target)}
    version = subprocess.run(
        [sys.executable, "-c", "import django; print(django.get_version())"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert version.stdout.startswith(f"{major}.{minor}."), version.stdout + version.stderr
    # From a directory of its own: the checkout's purposeguard/ folder is not the installed package.
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "test_django.py")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.search(r"\b\d+ passed\b", done.stdout) and " failed" not in done.stdout
