"""The ORM-backed example app, imported from the examples folder and run on real SQLite files."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="session")
def notes_app_module() -> Iterator[Any]:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import notes_app

        yield notes_app
    finally:
        sys.path.remove(str(EXAMPLES))
