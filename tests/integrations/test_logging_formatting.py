"""Arguments whose text is made when the record is formatted: the logging
filter formats the record itself, judges what formatting read, and hands the
handlers the text it judged. Real stream handlers; the lazily loaded values
come from a file on disk, labelled as they are loaded (as an ORM labels a row)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from purposeguard.integrations.logging import PurposeGuardFilter, setup, teardown

import purposeguard as pg

CONTENT = "customer_data.content.document"  # kept out of logs by rule no-content-in-logs
CUSTOMER = "customer_data"  # allowed in logs, not for advertising


class Document:
    """A document whose body is loaded the first time it is shown: nothing
    labelled is held before, so walking the object finds nothing."""

    def __init__(self, path: Path, category: str) -> None:
        self.path = path
        self.category = category
        self.shown = 0

    def __str__(self) -> str:
        self.shown += 1
        return f"document re: {pg.label(self.path.read_text(encoding='utf-8'), self.category)}"


@pytest.fixture
def stream_logger() -> Iterator[tuple[logging.Logger, list[io.StringIO]]]:
    logger = logging.getLogger("pgtest.formatting")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    streams = [io.StringIO(), io.StringIO()]
    handlers = [logging.StreamHandler(stream) for stream in streams]
    for handler in handlers:
        logger.addHandler(handler)
    guard_filter = setup(logger)
    yield logger, streams
    teardown(guard_filter, logger)
    for handler in handlers:
        logger.removeHandler(handler)


def written(stream: io.StringIO) -> str:
    return stream.getvalue()


def test_an_argument_that_loads_content_when_formatted_is_redacted(
    stream_logger: tuple[logging.Logger, list[io.StringIO]], tmp_path: Path, marker: str
) -> None:
    logger, streams = stream_logger
    path = tmp_path / "body.txt"
    path.write_text(marker, encoding="utf-8")
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        logger.info("processing %s", Document(path, CONTENT))
    for stream in streams:
        assert marker not in written(stream)
        assert f"it carried {CONTENT}" in written(stream)
    assert [(v.category, v.via, v.mode) for v in violations] == [(CONTENT, "egress", "enforce")]


def test_what_formatting_read_is_known_to_the_zone_afterwards(
    stream_logger: tuple[logging.Logger, list[io.StringIO]], tmp_path: Path, marker: str
) -> None:
    logger, _ = stream_logger
    path = tmp_path / "body.txt"
    path.write_text(marker, encoding="utf-8")
    with pg.zone(tenant="contoso") as zone:
        logger.info("processing %s", Document(path, CONTENT))
        assert CONTENT in zone.categories


def test_handlers_write_the_text_that_was_judged_made_once(
    stream_logger: tuple[logging.Logger, list[io.StringIO]], tmp_path: Path
) -> None:
    logger, streams = stream_logger
    path = tmp_path / "status.txt"
    path.write_text("mailbox over quota", encoding="utf-8")
    document = Document(path, CUSTOMER)
    with pg.testing.assert_no_violations(), pg.zone(tenant="contoso"):
        logger.info("processing %s", document)
        path.write_text("changed after the judgment", encoding="utf-8")
    assert document.shown == 1
    for stream in streams:
        assert written(stream) == "processing document re: mailbox over quota\n"


def test_a_stricter_purpose_on_another_handler_still_finds_what_formatting_read(
    stream_logger: tuple[logging.Logger, list[io.StringIO]], tmp_path: Path, marker: str
) -> None:
    """The logs' filter formats the record and replaces its message by the
    text; a filter for advertising on one handler judges that text by the
    labels the arguments carried."""
    logger, streams = stream_logger
    logger.handlers[1].addFilter(PurposeGuardFilter("advertising"))
    path = tmp_path / "body.txt"
    path.write_text(marker, encoding="utf-8")
    with pg.zone(tenant="contoso"):
        logger.info("processing %s", Document(path, CUSTOMER))
    assert marker in written(streams[0])  # allowed in logs
    assert marker not in written(streams[1])
    assert f"it carried {CUSTOMER}" in written(streams[1])


def test_a_message_that_does_not_format_is_left_to_the_handler() -> None:
    """The handler reports a broken message as it always did (logging's
    handleError); the filter neither raises nor changes the record."""
    argument = object()
    record = logging.LogRecord(
        "pgtest.formatting", logging.INFO, __file__, 1, "two values %s %s", (argument,), None
    )
    assert PurposeGuardFilter().filter(record)
    assert (record.msg, record.args) == ("two values %s %s", (argument,))


def test_plain_records_keep_their_arguments(stream_logger: tuple[logging.Logger, list[io.StringIO]]) -> None:
    """A record of plain values is not formatted by the filter: formatters
    that take ``record.args`` apart (uvicorn's) still find them."""
    logger, streams = stream_logger
    seen: list[object] = []

    class Arguments(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            seen.append(record.args)
            return True

    logger.handlers[0].addFilter(Arguments())
    logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/", "1.1", 200)
    assert seen == [("127.0.0.1:5000", "GET", "/", "1.1", 200)]
    assert written(streams[0]) == '127.0.0.1:5000 - "GET / HTTP/1.1" 200\n'


class BraceRecord(logging.LogRecord):
    """A record factory's record formatting its message with str.format."""

    def getMessage(self) -> str:
        args = self.args if isinstance(self.args, tuple) else ()
        return str(self.msg).format(*args)


def test_a_record_with_its_own_formatting_keeps_its_template(
    stream_logger: tuple[logging.Logger, list[io.StringIO]], tmp_path: Path
) -> None:
    """The formatted text is not handed back as a template its getMessage
    would read again ("{'a': 1}" is no str.format template)."""
    logger, streams = stream_logger
    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(BraceRecord)
    try:
        with pg.testing.assert_no_violations():
            logger.info("settings {0}", ({"a": 1},))
    finally:
        logging.setLogRecordFactory(factory)
    assert written(streams[0]) == "settings ({'a': 1},)\n"
