"""Integrations import their frameworks only when used, and a missing one names its extra."""

from __future__ import annotations

import subprocess
import sys

import pytest
from purposeguard.integrations import require

FRAMEWORKS = ("starlette", "fastapi", "flask", "werkzeug", "httpx", "requests", "celery", "uvicorn")


def test_importing_every_integration_imports_no_framework() -> None:
    code = (
        "import sys\n"
        "import purposeguard.integrations.asgi, purposeguard.integrations.wsgi\n"
        "import purposeguard.integrations.httpx, purposeguard.integrations.requests\n"
        "import purposeguard.integrations.celery, purposeguard.integrations.logging\n"
        "import purposeguard.integrations.baggage\n"
        f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_a_missing_framework_names_the_extra_to_install() -> None:
    with pytest.raises(ImportError, match=r"pip install 'purposeguard\[celery\]'"):
        require("purposeguard_no_such_framework", "celery")
