"""The package's shape: public surface, typing marker, lazy extras, wheel contents."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

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
    for error in (pg.PurposeViolation, pg.PolicyError, pg.UnknownKeyError, pg.ObligationError):
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


def test_built_wheel_holds_the_package_integrations_and_pack(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("purposeguard-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "purposeguard/__init__.py",
        "purposeguard/py.typed",
        "purposeguard/packs/trust-center.toml",
        "purposeguard/integrations/__init__.py",
        "purposeguard/_cli/policy.py",
    ):
        assert required in names
    # Installed from that wheel alone, purposeguard.integrations imports.
    target = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    code = "import purposeguard.integrations as i, purposeguard as pg; print(i.__file__); print(pg.decide(['customer_data'], 'advertising').allowed)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert str(target) in done.stdout and done.stdout.strip().endswith("False")


def test_missing_extra_names_the_extra() -> None:
    from purposeguard.integrations import require

    try:
        require("purposeguard_no_such_module", "asgi")
    except ImportError as error:
        assert "pip install 'purposeguard[asgi]'" in str(error)
    else:  # pragma: no cover
        raise AssertionError("expected ImportError")
