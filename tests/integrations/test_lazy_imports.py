"""Integrations import their frameworks only when used, and a missing one names its extra."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

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


# Each public entry point, run in a fresh interpreter where importing the
# framework fails (a stub package that raises ImportError comes first on sys.path).
ENTRY_POINTS = {
    "httpx.instrument": (
        "httpx",
        "httpx",
        "from purposeguard.integrations import httpx as m; m.instrument()",
    ),
    "requests.instrument": (
        "requests",
        "requests",
        "from purposeguard.integrations import requests as m; m.instrument()",
    ),
    "celery.instrument": (
        "celery",
        "celery",
        "from purposeguard.integrations import celery as m; m.instrument()",
    ),
    "celery.uninstrument": (
        "celery",
        "celery",
        "from purposeguard.integrations import celery as m; m.uninstrument()",
    ),
    "wsgi.init_app": (
        "flask",
        "flask",
        "from purposeguard.integrations import wsgi as m; m.init_app(object())",
    ),
    "jinja2 (import)": ("jinja2", "jinja2", "from purposeguard.integrations import jinja2 as m"),
}


def _run_without(framework: str, code: str, tmp_path: Any) -> subprocess.CompletedProcess[str]:
    stub = tmp_path / "stubs" / framework
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(f"raise ImportError('no {framework} here')\n", encoding="utf-8")
    program = f"import sys; sys.path.insert(0, {str(tmp_path / 'stubs')!r})\n{code}\n"
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_each_entry_point_names_its_extra_when_the_framework_is_missing(entry: str, tmp_path: Any) -> None:
    framework, extra, code = ENTRY_POINTS[entry]
    done = _run_without(framework, code, tmp_path)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:") and f"pip install 'purposeguard[{extra}]'" in last, done.stderr[
        -1500:
    ]


def test_the_asgi_middleware_runs_without_starlette(tmp_path: Any) -> None:
    """Pure ASGI: without Starlette there are no route marks, and path purposes still apply."""
    code = (
        "import asyncio\n"
        "import purposeguard as pg\n"
        "from purposeguard.integrations.asgi import PurposeGuardMiddleware\n"
        "seen = []\n"
        "async def app(scope, receive, send):\n"
        "    seen.append(pg.current_purpose())\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b''})\n"
        "mw = PurposeGuardMiddleware(app, purposes={'/ops': 'service.operations'})\n"
        "async def receive(): return {'type': 'http.request', 'body': b''}\n"
        "async def send(message): pass\n"
        "asyncio.run(mw({'type': 'http', 'method': 'GET', 'path': '/ops', 'headers': []}, receive, send))\n"
        "import sys; assert 'starlette' not in sys.modules or sys.modules['starlette'] is None\n"
        "print(seen)\n"
    )
    done = _run_without("starlette", code, tmp_path)
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.strip() == "['service.operations']"
