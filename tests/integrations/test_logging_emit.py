"""What finally reaches a handler's output is judged: a value a handler's
filter puts in place of one the record had, a filter added to a logger or a
handler after ``setup()``, and what a formatter sets on the record or writes
itself. Real StreamHandlers (to a buffer) and FileHandlers (to a temporary
file)."""

from __future__ import annotations

import contextvars
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from purposeguard.integrations.logging import setup, teardown

import purposeguard as pg

CONTENT = "customer_data.content.document"
CURRENT_USER: contextvars.ContextVar[Any] = contextvars.ContextVar("pgtest_emit_user", default="-")


class ReplaceNote(logging.Filter):
    """Puts the current user in place of the ``note`` the call passed."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.note = CURRENT_USER.get()
        return True


class AddUser(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.user = CURRENT_USER.get()
        return True


class ReplaceArgs(logging.Filter):
    """Fills the message's argument from the context (a request's subject)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.args = (CURRENT_USER.get(),)
        return True


class UserFormatter(logging.Formatter):
    """Sets the current user on the record on every format, as a formatter
    that enriches lines does."""

    def format(self, record: logging.LogRecord) -> str:
        record.user = CURRENT_USER.get()
        return super().format(record)


class UserOnceFormatter(logging.Formatter):
    """Sets the user only on a record that has none yet."""

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "user"):
            record.user = CURRENT_USER.get()
        return super().format(record)


class AppendUserFormatter(logging.Formatter):
    """Writes the current user into the line itself, never on the record."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{super().format(record)} user={CURRENT_USER.get()}"


@pytest.fixture
def user(marker: str) -> Iterator[str]:
    token = CURRENT_USER.set(pg.label(marker, CONTENT, tenant="contoso"))
    yield marker
    CURRENT_USER.reset(token)


@pytest.fixture
def no_logging_errors(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    yield
    assert "Logging error" not in capsys.readouterr().err


def _logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.disabled = False
    return logger


@pytest.fixture
def streamed() -> Iterator[tuple[logging.Logger, logging.StreamHandler[io.StringIO], io.StringIO]]:
    """A logger with a StreamHandler to a buffer, set up after the handler was added."""
    logger = _logger("pgtest.emit.stream")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    guard_filter = setup(logger)
    yield logger, handler, stream
    teardown(guard_filter, logger)
    logger.removeHandler(handler)
    handler.close()
    logger.filters.clear()


# -- a handler's filter replaces a value the record had ---------------------------------------


@pytest.mark.usefixtures("no_logging_errors")
def test_a_labelled_value_a_handlers_filter_puts_in_place_of_an_extra_is_redacted(
    user: str,
) -> None:
    logger = _logger("pgtest.emit.replace")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s note=%(note)s"))
    handler.addFilter(ReplaceNote())
    logger.addHandler(handler)
    guard_filter = setup(logger)
    try:
        with pg.testing.capture() as violations:
            logger.info("indexing ticket", extra={"note": "-"})
    finally:
        teardown(guard_filter, logger)
        logger.removeHandler(handler)
        handler.close()
    assert user not in stream.getvalue()
    assert stream.getvalue() == f"indexing ticket note=[redacted: {CONTENT}]\n"
    assert [(v.category, v.via) for v in violations] == [(CONTENT, "egress")]


@pytest.mark.usefixtures("no_logging_errors")
def test_labelled_arguments_a_handlers_filter_puts_in_place_redact_the_message(user: str) -> None:
    logger = _logger("pgtest.emit.args")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(ReplaceArgs())
    logger.addHandler(handler)
    guard_filter = setup(logger)
    try:
        logger.info("indexing for %s", "nobody")
    finally:
        teardown(guard_filter, logger)
        logger.removeHandler(handler)
        handler.close()
    text = stream.getvalue()
    assert user not in text
    assert text.startswith(
        "INFO [purposeguard redacted this message: it carried customer_data.content.document"
    )


# -- filters added after setup() --------------------------------------------------------------


@pytest.mark.usefixtures("no_logging_errors")
def test_a_filter_added_to_a_file_handler_after_setup_is_judged(user: str, tmp_path: Path) -> None:
    logger = _logger("pgtest.emit.file")
    handler = logging.FileHandler(tmp_path / "app.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s user=%(user)s"))
    logger.addHandler(handler)
    guard_filter = setup(logger)
    handler.addFilter(AddUser())  # after setup(): runs after purposeguard's filter was added
    try:
        logger.info("exported report")
    finally:
        teardown(guard_filter, logger)
        logger.removeHandler(handler)
        handler.close()
    text = (tmp_path / "app.log").read_text(encoding="utf-8")
    assert user not in text
    assert text == f"exported report user=[redacted: {CONTENT}]\n"


@pytest.mark.usefixtures("no_logging_errors")
def test_a_filter_added_to_a_logger_after_setup_is_judged_before_its_parents_handler(user: str) -> None:
    """The parent's handler is outside the tree setup() covers: the record
    reaches it judged only where it was made. The filter runs before
    purposeguard's, so what it adds is judged as an ``extra=`` field is."""
    parent = _logger("pgtest.emit.parent")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s user=%(user)s"))
    parent.addHandler(handler)
    child = logging.getLogger("pgtest.emit.parent.child")
    child.disabled = False
    guard_filter = setup(child)
    context = AddUser()
    child.addFilter(context)
    try:
        child.info("exported report")
    finally:
        teardown(guard_filter, child)
        child.removeFilter(context)
        parent.removeHandler(handler)
        handler.close()
    text = stream.getvalue()
    assert user not in text
    assert text.startswith("[purposeguard redacted this message: it carried customer_data.content.document")
    assert text.endswith(f" user=[redacted: {CONTENT}]\n")


def test_filters_added_after_setup_run_before_purposeguards(
    streamed: tuple[logging.Logger, logging.StreamHandler[io.StringIO], io.StringIO],
) -> None:
    logger, handler, _ = streamed
    added = AddUser()
    logger.addFilter(added)
    handler.addFilter(added)
    assert type(logger.filters[-1]).__name__ == "PurposeGuardFilter"
    assert type(handler.filters[-1]).__name__ == "PurposeGuardFilter"
    assert added in logger.filters and added in handler.filters


# -- what a formatter sets or writes -----------------------------------------------------------


@pytest.mark.usefixtures("no_logging_errors")
def test_a_labelled_attribute_a_formatter_sets_once_is_redacted(
    streamed: tuple[logging.Logger, logging.StreamHandler[io.StringIO], io.StringIO], user: str
) -> None:
    logger, handler, stream = streamed
    handler.setFormatter(UserOnceFormatter("%(message)s user=%(user)s"))
    with pg.testing.capture() as violations:
        logger.info("exported report")
    assert user not in stream.getvalue()
    assert stream.getvalue() == f"exported report user=[redacted: {CONTENT}]\n"
    assert [(v.category, v.via) for v in violations] == [(CONTENT, "egress")]


@pytest.mark.usefixtures("no_logging_errors")
def test_a_line_whose_formatter_sets_a_labelled_attribute_every_time_is_replaced_by_a_note(
    streamed: tuple[logging.Logger, logging.StreamHandler[io.StringIO], io.StringIO], user: str
) -> None:
    logger, handler, stream = streamed
    handler.setFormatter(UserFormatter("%(message)s user=%(user)s"))
    with pg.testing.capture() as violations:
        logger.info("exported report")
    text = stream.getvalue()
    assert user not in text
    assert text.startswith(
        "[purposeguard redacted a line its formatter wrote: it carried customer_data.content"
    )
    # Refused again on the line written anew, reported once.
    assert [(v.category, v.via) for v in violations] == [(CONTENT, "egress")]


@pytest.mark.usefixtures("no_logging_errors")
def test_a_formatter_that_writes_a_labelled_value_into_the_line_inside_a_zone(
    streamed: tuple[logging.Logger, logging.StreamHandler[io.StringIO], io.StringIO], user: str
) -> None:
    """The f-string makes the text plain; inside a zone the formatting tells
    what it read."""
    logger, handler, stream = streamed
    handler.setFormatter(AppendUserFormatter("%(message)s"))
    with pg.zone():
        logger.info("exported report")
    assert user not in stream.getvalue()
    assert stream.getvalue().startswith("[purposeguard redacted a line its formatter wrote")


@pytest.mark.usefixtures("no_logging_errors")
def test_a_plain_attribute_a_formatter_sets_stays(
    streamed: tuple[logging.Logger, logging.StreamHandler[io.StringIO], io.StringIO],
) -> None:
    logger, handler, stream = streamed
    handler.setFormatter(UserFormatter("%(message)s user=%(user)s"))
    token = CURRENT_USER.set("request 42")
    try:
        with pg.testing.assert_no_violations():
            logger.info("exported %s", "report")
            logger.info("exported %s", "report")
    finally:
        CURRENT_USER.reset(token)
    assert stream.getvalue() == "exported report user=request 42\n" * 2


@pytest.mark.usefixtures("no_logging_errors")
def test_a_refused_records_plain_formatter_attribute_stays_and_its_message_is_redacted(
    streamed: tuple[logging.Logger, logging.StreamHandler[io.StringIO], io.StringIO], marker: str
) -> None:
    logger, handler, stream = streamed
    handler.setFormatter(UserFormatter("%(message)s user=%(user)s"))
    token = CURRENT_USER.set("request 42")
    try:
        logger.info("indexing %s", pg.label(marker, CONTENT))
    finally:
        CURRENT_USER.reset(token)
    text = stream.getvalue()
    assert marker not in text
    assert text.startswith("[purposeguard redacted this message: it carried customer_data.content.document")
    assert text.endswith(" user=request 42\n")


@pytest.mark.usefixtures("no_logging_errors")
def test_trace_mode_reports_a_formatters_labelled_attribute_once(
    trace_guard: pg.Guard,
    streamed: tuple[logging.Logger, logging.StreamHandler[io.StringIO], io.StringIO],
    user: str,
) -> None:
    logger, handler, stream = streamed
    handler.setFormatter(UserOnceFormatter("%(message)s user=%(user)s"))
    second = logging.StreamHandler(io.StringIO())
    logger.addHandler(second)
    try:
        with pg.testing.capture() as violations:
            logger.info("exported report")
    finally:
        logger.removeHandler(second)
    assert [(v.category, v.via) for v in violations] == [(CONTENT, "egress")]
    assert stream.getvalue() == f"exported report user={user}\n"


@pytest.mark.usefixtures("no_logging_errors")
def test_a_record_handed_straight_to_emit_is_judged_when_formatted(
    streamed: tuple[logging.Logger, logging.StreamHandler[io.StringIO], io.StringIO], marker: str
) -> None:
    """``emit()`` skips the handler's filters (a handler that wraps another
    calls it so): the line is judged where it is made."""
    _, handler, stream = streamed
    record = logging.LogRecord(
        "pgtest.emit.stream", logging.INFO, __file__, 1, "indexing %s", (pg.label(marker, CONTENT),), None
    )
    handler.emit(record)
    text = stream.getvalue()
    assert marker not in text
    assert text.startswith("[purposeguard redacted this message: it carried customer_data.content.document")


@pytest.mark.usefixtures("no_logging_errors")
def test_a_filter_put_in_the_handlers_list_by_hand_after_purposeguards_is_judged_when_formatted(
    streamed: tuple[logging.Logger, logging.StreamHandler[io.StringIO], io.StringIO], user: str
) -> None:
    logger, handler, stream = streamed
    handler.setFormatter(logging.Formatter("%(message)s user=%(user)s"))
    handler.filters.append(AddUser())  # not through addFilter: runs after purposeguard's
    logger.info("exported report")
    assert user not in stream.getvalue()
    assert stream.getvalue() == f"exported report user=[redacted: {CONTENT}]\n"
