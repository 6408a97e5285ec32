"""logger.exception on an ExceptionGroup never prints labelled values."""

from __future__ import annotations

import builtins
import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from purposeguard.integrations.logging import setup, teardown

import purposeguard as pg
from purposeguard._labels import MAX_DEPTH

PAYMENT = "payment_data"
SECRET = "4111-1111-1111-1111"
# What asyncio/anyio/Starlette task groups raise (Python 3.11+).
ExceptionGroup: Any = builtins.ExceptionGroup


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    logger = logging.getLogger("pgtest.groups")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    guard_filter = setup(logger)
    yield logger, stream
    teardown(guard_filter, logger)
    logger.removeHandler(handler)


def _log_exception(logger: logging.Logger, error: BaseException) -> None:
    try:
        raise error
    except BaseException:
        logger.exception("task group failed")


def test_an_exception_group_with_a_labelled_member_is_redacted(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    """A labelled value in an ExceptionGroup member does not reach the log."""
    pg.configure("trust-center", mode="enforce")
    logger, stream = logged
    _log_exception(logger, ExceptionGroup("tasks", [ValueError(pg.label(SECRET, PAYMENT))]))
    text = stream.getvalue()
    assert SECRET not in text and "redacted" in text


def test_a_nested_exception_group_is_redacted(logged: tuple[logging.Logger, io.StringIO]) -> None:
    """Groups inside groups, with the labelled value as a member's cause."""
    pg.configure("trust-center", mode="enforce")
    logger, stream = logged
    inner = RuntimeError("wrapped")
    inner.__cause__ = KeyError(pg.label(SECRET, PAYMENT))
    _log_exception(logger, ExceptionGroup("outer", [ExceptionGroup("inner", [inner]), ValueError("x")]))
    text = stream.getvalue()
    assert SECRET not in text and "redacted" in text


def test_an_exception_chain_beyond_the_bound_is_redacted_in_enforce_mode(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    """A cause chain longer than the walk's bound is not looked at whole, so enforce mode redacts it."""
    pg.configure("trust-center", mode="enforce")
    logger, stream = logged
    error: BaseException = ValueError("plain")
    for index in range(MAX_DEPTH + 2):
        outer = ValueError(f"level {index}")
        outer.__cause__ = error
        error = outer
    _log_exception(logger, error)
    text = stream.getvalue()
    assert "redacted" in text and "level 0" not in text


def test_a_plain_exception_group_is_logged_as_is(logged: tuple[logging.Logger, io.StringIO]) -> None:
    """Without labels the group's traceback is logged unchanged."""
    pg.configure("trust-center", mode="enforce")
    logger, stream = logged
    _log_exception(logger, ExceptionGroup("tasks", [ValueError("plain failure")]))
    assert "plain failure" in stream.getvalue()


def test_trace_mode_records_the_group_and_keeps_the_record(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    """Trace mode records a violation for the labelled member."""
    pg.configure("trust-center", mode="trace")
    logger, _ = logged
    with pg.testing.capture() as violations:
        _log_exception(logger, ExceptionGroup("tasks", [ValueError(pg.label(SECRET, PAYMENT))]))
    found: list[Any] = [(v.category, v.via) for v in violations]
    assert found == [(PAYMENT, "egress")]
