"""Testing helpers: capture violations, assert there were none, reset
everything the process keeps.

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
from ._runtime import reset as _reset
from ._runtime import subscribe_scoped

__all__ = ["assert_no_violations", "capture", "capture_records", "reset"]


def reset(*, keep_telemetry: bool = False) -> None:
    """Put purposeguard back as a fresh process has it: the configured
    guard, subscribers, telemetry and the audit sink (detached), counters,
    the hot path's shortcuts and label caches, and the zones switch (off
    unless a zone is open). Call it between tests (the suite's autouse
    fixture does); guards activated by an open ``with guard.activate()``
    block, and labels already on values, stay.

    ``keep_telemetry=True`` leaves OpenTelemetry instrumentation and the
    counts it reports, for tests that share one instrumentation.

    >>> import purposeguard as pg
    >>> pg.testing.reset()
    """
    _reset(keep_telemetry=keep_telemetry)


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
    unsubscribe = subscribe_scoped("violations", captured.add)
    try:
        yield captured
    finally:
        unsubscribe()


@contextmanager
def capture_records() -> Iterator[list[Record]]:
    """Like :func:`capture`, for every record: declassifications, consent
    changes and disclosures as well as violations."""
    captured = _Captured()
    unsubscribe = subscribe_scoped("records", captured.add)
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
