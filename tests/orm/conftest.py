"""Real databases for the ORM tests: SQLite files in a temporary folder (and
PostgreSQL, when the services fixture is there)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database of each backend under test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'app.db'}"


@pytest.fixture
def engine(database_url: str) -> Iterator[Any]:
    engine = sqlalchemy.create_engine(database_url)
    yield engine
    engine.dispose()
