"""The import layering: import-linter's contracts (pyproject.toml) hold.

The contracts name modules as installed, where ``integrations/`` is
``purposeguard.integrations``; each test copies the package into that
layout (following ``[tool.setuptools.package-dir]``) and runs
``lint-imports`` on the copy, so a forbidden edge or a cycle fails here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[2]

LINT = (
    "import sys\n"
    "from importlinter.cli import lint_imports\n"
    "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))\n"
)


def installed_layout(target: Path) -> Path:
    """The package tree as a wheel installs it, plus the contracts."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    mapping = config.get("tool", {}).get("setuptools", {}).get("package-dir", {}) or {
        "purposeguard": "purposeguard",
        "purposeguard.integrations": "integrations",
    }
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name, source in sorted(mapping.items(), key=lambda item: item[0].count(".")):
        if name == "":
            continue
        shutil.copytree(ROOT / source, target.joinpath(*name.split(".")), ignore=ignore, dirs_exist_ok=True)
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    # A fresh interpreter started in the copy: the copy, not the checkout
    # this test runs from, is what it finds as ``purposeguard``.
    return subprocess.run(
        [sys.executable, "-c", LINT], cwd=tree, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_package_keeps_every_contract(tmp_path: Path) -> None:
    result = lint(installed_layout(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # policy must not know the runtime or telemetry
        ("_policy.py", "from . import otel", "policy and labels know nothing"),
        # labels must not know the runtime
        ("_labels.py", "from . import _runtime", "policy and labels know nothing"),
        # the runtime must not import a sink: sinks register with it
        ("_runtime.py", "from . import audit", "the runtime knows no exporter"),
        # library code must not import the command line
        ("report.py", "from ._cli import policy", "nothing in the library imports the command line"),
        # a cycle between two siblings
        ("_context.py", "from . import _labels", "no import cycles between sibling modules"),
    ],
)
def test_a_forbidden_edge_fails(tmp_path: Path, module: str, line: str, broken: str) -> None:
    tree = installed_layout(tmp_path)
    path = tree / "purposeguard" / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}  # an edge the architecture forbids\n")
    result = lint(tree)
    assert result.returncode != 0, result.stdout
    broken_section = result.stdout.split("Broken contracts", 1)[-1]
    assert broken in broken_section, result.stdout
