"""The package's shape: public surface, typing marker, lazy extras, wheel contents."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg

ROOT = Path(__file__).resolve().parents[2]


def test_all_is_sorted_and_complete() -> None:
    assert pg.__all__ == sorted(pg.__all__)
    import inspect

    public = {name for name in dir(pg) if not name.startswith("_")}
    assert set(pg.__all__) - {"compelled_disclosure"} <= public
    submodules = {name for name in public if inspect.ismodule(getattr(pg, name))}
    assert public - set(pg.__all__) - submodules - {"annotations"} == set()
    for name in pg.__all__:
        assert getattr(pg, name) is not None


def test_one_exception_root() -> None:
    for error in (
        pg.PurposeViolation,
        pg.PolicyError,
        pg.UnknownKeyError,
        pg.ObligationError,
        pg.AuditError,
        pg.SinkFailure,
    ):
        assert issubclass(error, pg.PurposeGuardError)
    assert issubclass(pg.PurposeViolation, PermissionError)
    assert issubclass(pg.UnknownKeyError, pg.PolicyError)


def test_importing_the_core_imports_no_framework_or_sdk() -> None:
    code = (
        "import sys, purposeguard, purposeguard.integrations\n"
        "heavy = [m for m in ('opentelemetry.sdk', 'starlette', 'flask', 'httpx', 'requests', "
        "'celery', 'pydantic', 'fideslang', 'sqlite3') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_installed_package_has_integrations_and_py_typed() -> None:
    import purposeguard.integrations as integrations

    assert Path(pg.__file__).parent.joinpath("py.typed").exists()
    assert Path(integrations.__file__).parent.name == "integrations"


# Names that only the old ``__path__`` extension made importable from a checkout.
NOT_IN_THE_PACKAGE = (
    "purposeguard.tests",
    "purposeguard.build",
    "purposeguard.benchmarks",
    "purposeguard.examples",
    "purposeguard.mailservice",
)

# Run from a directory outside the checkout: which files do these names import, and which do not import?
PROBE = (
    "import importlib, purposeguard, purposeguard.integrations.asgi as asgi\n"
    "print(purposeguard.__file__); print(asgi.__file__)\n"
    f"for name in {NOT_IN_THE_PACKAGE!r}:\n"
    "    try:\n"
    "        importlib.import_module(name)\n"
    "    except ImportError:\n"
    "        continue\n"
    "    print('importable:', name)\n"
)


def _run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _source_files() -> set[str]:
    """Every module of the package and of the integrations, as the wheel names them."""
    package = {
        f"purposeguard/{p.relative_to(ROOT / 'purposeguard').as_posix()}"
        for p in ROOT.glob("purposeguard/**/*.py")
    }
    integrations = {
        f"purposeguard/integrations/{p.relative_to(ROOT / 'integrations').as_posix()}"
        for p in ROOT.glob("integrations/**/*.py")
    }
    return package | integrations


@pytest.mark.slow
def test_built_wheel_holds_the_package_integrations_and_pack_and_nothing_else(tmp_path: Path) -> None:
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)])
    (wheel,) = tmp_path.glob("purposeguard-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "purposeguard/__init__.py",
        "purposeguard/py.typed",
        "purposeguard/packs/trust-center.toml",
        "purposeguard/_cli/policy.py",
        "purposeguard/_demo/__init__.py",
        "purposeguard/_demo/app.py",
    ):
        assert required in names
    # No module left behind by a package missing from pyproject's list.
    assert _source_files() - names == set()
    # Only the package and its metadata: no tests, benchmarks, examples or a public demo module.
    tops = {name.split("/")[0] for name in names}
    assert tops == {"purposeguard", "purposeguard-0.1.0.dist-info"}, tops
    for name in names:
        parts = name.split("/")
        assert not {"tests", "benchmarks", "examples", "mailservice", "build"} & set(parts), name
    # Installed from that wheel alone, run from elsewhere: the integrations import from it, nothing else does.
    target = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    done = _run([sys.executable, "-c", PROBE], env=env, cwd=elsewhere)
    package_file, asgi_file = done.stdout.splitlines()[:2]
    assert package_file == str(target / "purposeguard" / "__init__.py")
    assert asgi_file == str(target / "purposeguard" / "integrations" / "asgi.py")
    assert "importable" not in done.stdout, done.stdout
    code = "import purposeguard as pg; print(pg.decide(['customer_data'], 'advertising').allowed)"
    assert _run([sys.executable, "-c", code], env=env, cwd=elsewhere).stdout.strip() == "False"


@pytest.mark.slow
def test_editable_install_maps_the_integrations_folder(tmp_path: Path) -> None:
    """``pip install -e .`` installs ``integrations/`` as ``purposeguard.integrations`` and nothing more."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", "-e", str(ROOT)]
    )
    # purposeguard's own dependencies come from this environment, without its purposeguard.
    deps = tmp_path / "deps"
    deps.mkdir()
    for site_dir in {Path(p) for p in sys.path if p.endswith("site-packages")}:
        for entry in site_dir.iterdir():
            if (
                entry.name.startswith(("purposeguard", "__editable__", "_purposeguard"))
                or entry.suffix == ".pth"
            ):
                continue
            if not deps.joinpath(entry.name).exists():
                deps.joinpath(entry.name).symlink_to(entry)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(deps), "PATH": "/usr/bin:/bin"}
    done = _run([str(python), "-c", PROBE], env=env, cwd=elsewhere)
    package_file, asgi_file = done.stdout.splitlines()[:2]
    assert package_file == str(ROOT / "purposeguard" / "__init__.py")
    assert asgi_file == str(ROOT / "integrations" / "asgi.py")
    assert "importable" not in done.stdout, done.stdout


def test_a_checkout_imports_no_repository_folder_as_a_submodule() -> None:
    """Whatever the install, the package's ``__path__`` is the package folder alone."""
    import importlib

    assert list(pg.__path__) == [str(Path(pg.__file__).parent)]
    for name in NOT_IN_THE_PACKAGE:
        with pytest.raises(ImportError):
            importlib.import_module(name)


def test_only_the_demo_command_imports_the_demo_service() -> None:
    """The demo is a top layer, like the CLI: the library and the integrations never import it."""
    importers = []
    for path in sorted(
        [*ROOT.joinpath("purposeguard").rglob("*.py"), *ROOT.joinpath("integrations").rglob("*.py")]
    ):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("purposeguard/_demo/"):
            continue
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = "." * node.level + (node.module or "")
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value]  # importlib.import_module("purposeguard._demo")
            if any(
                name == "purposeguard._demo" or name.startswith("purposeguard._demo.") or "._demo" in name
                for name in names
            ):
                importers.append(relative)
    assert sorted(set(importers)) == ["purposeguard/_cli/demo.py"]


def test_missing_extra_names_the_extra() -> None:
    from purposeguard.integrations import require

    try:
        require("purposeguard_no_such_module", "asgi")
    except ImportError as error:
        assert "pip install 'purposeguard[asgi]'" in str(error)
    else:  # pragma: no cover
        raise AssertionError("expected ImportError")
