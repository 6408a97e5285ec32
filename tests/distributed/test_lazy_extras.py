"""The PostgreSQL and RQ extras are imported only when used, and name their extra when missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run(
    code: str, *, without: str | None = None, tmp_path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    prelude = ""
    if without is not None:
        assert tmp_path is not None
        stub = tmp_path / "stubs" / without
        stub.mkdir(parents=True)
        (stub / "__init__.py").write_text(f"raise ImportError('no {without} here')\n", encoding="utf-8")
        prelude = f"import sys; sys.path.insert(0, {str(tmp_path / 'stubs')!r})\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=60)


def test_the_core_and_the_rq_integration_import_neither_psycopg_nor_rq() -> None:
    done = run(
        "import sys, purposeguard, purposeguard.audit, purposeguard.consent\n"
        "import purposeguard.integrations.rq\n"
        "from purposeguard.audit import AuditLog\n"
        "AuditLog(':memory:').close()\n"
        "print(sorted(m for m in ('psycopg', 'rq', 'redis') if m in sys.modules))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_postgres_url_without_psycopg_names_the_extra(tmp_path: Path) -> None:
    done = run(
        "from purposeguard.audit import AuditLog\nAuditLog('postgresql://u:p@127.0.0.1:1/d')",
        without="psycopg",
        tmp_path=tmp_path,
    )
    assert done.returncode != 0
    assert "pip install 'purposeguard[postgres]'" in done.stderr.strip().splitlines()[-1]


def test_the_cli_says_so_in_one_line(tmp_path: Path) -> None:
    done = run(
        "import sys; from purposeguard.cli import main; sys.exit(main(['audit', 'verify', 'postgresql://u:p@127.0.0.1:1/d']))",
        without="psycopg",
        tmp_path=tmp_path,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "purposeguard[postgres]" in done.stderr


def test_rq_instrument_without_rq_names_the_extra(tmp_path: Path) -> None:
    done = run(
        "from purposeguard.integrations import rq as m; m.uninstrument(); m.instrument()",
        without="rq",
        tmp_path=tmp_path,
    )
    assert done.returncode != 0
    assert "pip install 'purposeguard[rq]'" in done.stderr.strip().splitlines()[-1]
