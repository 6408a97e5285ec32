"""Installing ``purposeguard[all]`` never downgrades what an application has.

pip's own resolver decides, in ``--dry-run --report`` mode against the
package index pip is configured with: once for an application's common
dependencies alone (the newest releases that go together), once for the
same dependencies plus ``purposeguard[all]``. Each must resolve to the same
release or a newer one with purposeguard as without it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the core's own dependency on 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
# What applications that use purposeguard's integrations commonly install themselves.
COMMON = [
    "pydantic",
    "fastapi",
    "starlette",
    "flask",
    "werkzeug",
    "jinja2",
    "httpx",
    "requests",
    "attrs",
    "celery",
    "uvicorn",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "wrapt",
    "typing-extensions",
    "packaging",
    "pyyaml",
    "urllib3",
    "sqlalchemy",
    "django",
    "aiohttp",
]


def resolve(requirements: list[str], report: Path) -> dict[str, Version]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--disable-pip-version-check",
            "--report",
            str(report),
            *requirements,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=report.parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    return {
        canonicalize_name(item["metadata"]["name"]): Version(item["metadata"]["version"])
        for item in data["install"]
    }


def downgrades(alone: dict[str, Version], with_us: dict[str, Version]) -> list[str]:
    return sorted(
        f"{name} {alone[name]} -> {version}"
        for name, version in with_us.items()
        if name in alone and version < alone[name]
    )


def test_downgrades_names_each_package_resolved_lower() -> None:
    alone = {"pydantic": Version("2.14.4"), "flask": Version("3.1.3")}
    assert downgrades(alone, {"pydantic": Version("2.12.5"), "flask": Version("3.1.3")}) == [
        "pydantic 2.14.4 -> 2.12.5"
    ]
    assert downgrades(alone, {"pydantic": Version("2.14.4"), "purposeguard": Version("0.1.0")}) == []


def test_fideslang_stays_out_of_the_all_extra() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    assert "fides" not in extras["all"][0], "fideslang pins pydantic below its newest releases"
    assert extras["fides"] == ["fideslang>=3.0"]


@pytest.mark.slow
def test_installing_all_downgrades_nothing_against_the_newest_releases(tmp_path: Path) -> None:
    (tmp_path / "alone").mkdir()
    (tmp_path / "ours").mkdir()
    # The two resolutions are independent: run them side by side.
    with ThreadPoolExecutor(2) as pool:
        alone_job = pool.submit(resolve, COMMON, tmp_path / "alone" / "report.json")
        ours_job = pool.submit(resolve, [*COMMON, f"{ROOT}[all]"], tmp_path / "ours" / "report.json")
        alone, with_us = alone_job.result(), ours_job.result()
    assert "purposeguard" in with_us and "pydantic" in alone
    assert downgrades({n: v for n, v in alone.items() if n in COMMON}, with_us) == []
