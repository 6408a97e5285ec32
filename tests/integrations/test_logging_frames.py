"""Labelled values held in the local variables of a logged exception's
frames: handlers that show them (error trackers, Django's admin mail) get a
record whose traceback is text only. A real handler that writes each frame's
locals, as those do, beside a plain stream handler."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from purposeguard.integrations.logging import setup, teardown

import purposeguard as pg

CONTENT = "customer_data.content.document"


class LocalsHandler(logging.Handler):
    """Writes the record, then each frame of its traceback with its local values."""

    def __init__(self, stream: io.StringIO) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        lines = [self.format(record)]
        exc_info = record.exc_info
        error = exc_info[1] if exc_info else None
        while error is not None:
            tb = error.__traceback__
            while tb is not None:
                lines.append(f"{tb.tb_frame.f_code.co_name} locals: {tb.tb_frame.f_locals!r}")
                tb = tb.tb_next
            error = error.__cause__ or error.__context__
        self.stream.write("\n".join(lines) + "\n")


@pytest.fixture
def handlers() -> Iterator[tuple[logging.Logger, io.StringIO, io.StringIO]]:
    logger = logging.getLogger("pgtest.frames")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    with_locals, plain = io.StringIO(), io.StringIO()
    made = [LocalsHandler(with_locals), logging.StreamHandler(plain)]
    for handler in made:
        logger.addHandler(handler)
    guard_filter = setup(logger)
    yield logger, with_locals, plain
    teardown(guard_filter, logger)
    for handler in made:
        logger.removeHandler(handler)


def index_ticket(text: str) -> None:
    body = pg.label(text, CONTENT)  # noqa: F841 - held by the frame, as a view holds what it read
    raise RuntimeError("could not index the ticket")


def test_labelled_locals_take_the_frames_out_and_keep_the_traceback_text(
    handlers: tuple[logging.Logger, io.StringIO, io.StringIO], marker: str
) -> None:
    logger, with_locals, plain = handlers
    with pg.testing.capture() as violations:
        try:
            index_ticket(marker)
        except RuntimeError:
            logger.exception("indexing failed")
    assert marker not in with_locals.getvalue()
    assert "locals:" not in with_locals.getvalue()
    for text in (with_locals.getvalue(), plain.getvalue()):
        assert text.startswith("indexing failed\nTraceback (most recent call last):")
        assert "in index_ticket" in text and "RuntimeError: could not index the ticket" in text
        assert f"removed this RuntimeError traceback's frames: their local values held {CONTENT}" in text
    assert [(v.category, v.via, v.mode) for v in violations] == [(CONTENT, "egress", "enforce")]


def test_labelled_locals_in_the_frames_of_a_cause_are_found(
    handlers: tuple[logging.Logger, io.StringIO, io.StringIO], marker: str
) -> None:
    logger, with_locals, _ = handlers
    try:
        try:
            index_ticket(marker)
        except RuntimeError as error:
            raise LookupError("ticket unavailable") from error
    except LookupError:
        logger.exception("request failed")
    assert marker not in with_locals.getvalue()
    assert "removed this LookupError traceback's frames" in with_locals.getvalue()


def test_trace_mode_records_the_frames_and_keeps_them(
    handlers: tuple[logging.Logger, io.StringIO, io.StringIO], marker: str
) -> None:
    pg.configure("trust-center", mode="trace")
    logger, with_locals, _ = handlers
    with pg.testing.capture() as violations:
        try:
            index_ticket(marker)
        except RuntimeError:
            logger.exception("indexing failed")
    assert "index_ticket locals: {'text': " in with_locals.getvalue()
    assert [(v.category, v.via, v.mode) for v in violations] == [(CONTENT, "egress", "trace")]


def test_plain_locals_keep_the_frames(handlers: tuple[logging.Logger, io.StringIO, io.StringIO]) -> None:
    logger, with_locals, _ = handlers
    with pg.testing.assert_no_violations():
        try:
            index_ticket_plain("mailbox over quota")
        except RuntimeError:
            logger.exception("indexing failed")
    assert "index_ticket_plain locals: {'text': 'mailbox over quota'" in with_locals.getvalue()


def index_ticket_plain(text: str) -> None:
    raise RuntimeError("could not index the ticket")


class Row:
    def __init__(self, number: int) -> None:
        self.number = number
        self.cells = {"a": number, "b": [number] * 3}


def index_rows(rows: list[Row], body: object = None) -> None:
    raise RuntimeError(f"{len(rows)} rows could not be indexed")


def test_locals_past_the_bounded_look_do_not_refuse_the_record(
    handlers: tuple[logging.Logger, io.StringIO, io.StringIO], marker: str
) -> None:
    """A frame holding far more than the look covers (a query's rows): what
    lies beyond is not looked at, and is not a reason to take the frames
    out. A labelled value held by a frame itself is found beside it."""
    logger, with_locals, _ = handlers
    rows = [Row(number) for number in range(20_000)]
    with pg.testing.assert_no_violations():
        log_failure(logger, rows)
    assert "index_rows locals:" in with_locals.getvalue()
    log_failure(logger, rows, pg.label(marker, CONTENT))
    assert marker not in with_locals.getvalue()
    assert "removed this RuntimeError traceback's frames" in with_locals.getvalue()


def log_failure(logger: logging.Logger, rows: list[Row], body: object = None) -> None:
    """The frame that catches and logs: its locals are the rows and the body, no other text."""
    try:
        index_rows(rows, body)
    except RuntimeError:
        logger.exception("indexing failed")


def test_a_record_refused_for_its_message_loses_the_frames_holding_the_value(
    handlers: tuple[logging.Logger, io.StringIO, io.StringIO], marker: str
) -> None:
    logger, with_locals, _ = handlers
    log_named_failure(logger, pg.label(marker, CONTENT))
    assert marker not in with_locals.getvalue()
    assert "locals:" not in with_locals.getvalue()
    assert "RuntimeError: could not index the ticket" in with_locals.getvalue()


def log_named_failure(logger: logging.Logger, body: str) -> None:
    try:
        index_ticket_plain("mailbox over quota")
    except RuntimeError:
        logger.exception("indexing failed for %s", body)
