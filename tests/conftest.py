"""Shared fixtures: every test starts from the default guard and no subscribers."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import purposeguard as pg
from purposeguard import _runtime

# The tests run against the installed package. A ``python -c``/``-m`` that a
# test starts from the repository root would otherwise import the checkout's
# purposeguard/ folder ahead of it (which has no integrations/ inside).
os.environ.setdefault("PYTHONSAFEPATH", "1")


@pytest.fixture(autouse=True)
def _fresh_guard() -> Iterator[None]:
    """Reset the process-wide guard, and fail a test that leaks a subscriber."""
    _runtime.reset()
    violations_before = list(_runtime.HANDLERS.violations)
    records_before = list(_runtime.HANDLERS.records)
    yield
    _runtime.reset()
    leaked = [h for h in _runtime.HANDLERS.violations if h not in violations_before]
    leaked += [h for h in _runtime.HANDLERS.records if h not in records_before]
    # Drop them so one test's subscriber cannot affect the next.
    _runtime.HANDLERS.violations[:] = violations_before
    _runtime.HANDLERS.records[:] = records_before
    assert not leaked, f"test left subscribers behind: {leaked}"


@pytest.fixture
def trace_guard() -> pg.Guard:
    return pg.configure("trust-center", mode="trace")


@pytest.fixture
def content() -> str:
    return pg.label("Quarterly numbers attached, call me", "customer_data.content.email")
