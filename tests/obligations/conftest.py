"""Fixtures for the obligations tests: real SQLite files, and no sink left attached."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import purposeguard as pg
from purposeguard import audit


@pytest.fixture(autouse=True)
def _no_sink_left() -> Iterator[None]:
    yield
    audit.detach()


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


@pytest.fixture
def marker() -> str:
    """A value no record may ever contain: tests label it, then search every file for it."""
    return "PGMARKER-7f3c9e1a-do-not-leak"


def _violation(n: int = 0, mode: str = "trace") -> pg.Violation:
    return pg.Violation(
        category="customer_data.content.email",
        purpose="advertising",
        rule="no-advertising",
        via="argument",
        function=f"tests.writer_{n}",
        tenant="contoso",
        mode=mode,
        timestamp=time.time(),
    )


@pytest.fixture
def make_violation() -> Callable[..., pg.Violation]:
    return _violation


def _file_bytes(path: Path) -> bytes:
    data = b""
    for suffix in ("", "-wal"):
        candidate = Path(str(path) + suffix)
        if candidate.exists():
            data += candidate.read_bytes()
    return data


@pytest.fixture
def file_bytes() -> Callable[[Path], bytes]:
    """The database file with its WAL: everything SQLite has written."""
    return _file_bytes
