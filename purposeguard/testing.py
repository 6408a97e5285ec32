"""Testing helpers: capture violations, assert there were none.

>>> import purposeguard as pg
>>> with pg.testing.capture() as violations:
...     pass
>>> violations
[]
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._records import Record, Violation
from ._runtime import on_record, on_violation

__all__ = ["capture", "capture_records", "assert_no_violations"]


class _Captured(list):  # type: ignore[type-arg]
    """A list that other threads and tasks append to while the block is open."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def add(self, item: Any) -> None:
        with self.lock:
            self.append(item)


@contextmanager
def capture() -> Iterator[list[Violation]]:
    """Collect every :class:`Violation` recorded while the block is open, in
    any mode, thread or task."""
    captured = _Captured()
    unsubscribe = on_violation(captured.add)
    try:
        yield captured
    finally:
        unsubscribe()


@contextmanager
def capture_records() -> Iterator[list[Record]]:
    """Like :func:`capture`, for every record: declassifications, consent
    changes and disclosures as well as violations."""
    captured = _Captured()
    unsubscribe = on_record(captured.add)
    try:
        yield captured
    finally:
        unsubscribe()


@contextmanager
def assert_no_violations() -> Iterator[list[Violation]]:
    """Fail with an ``AssertionError`` listing them if any violation is recorded
    in the block (even in trace mode, where nothing raises)."""
    with capture() as violations:
        yield violations
    if violations:
        lines = "\n".join(
            f"  {v.category} for {v.purpose} (rule {v.rule or 'default'}, via {v.via}, in {v.function})"
            for v in violations
        )
        raise AssertionError(f"{len(violations)} purpose violation(s) recorded:\n{lines}")
