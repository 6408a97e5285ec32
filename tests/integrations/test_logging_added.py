"""What a record holds beside its message: attributes a handler's filter adds
after the record was judged (request context set through dictConfig), and
plain ``extra=`` fields of a refused record, rebuilt from the refused value.
Real stream handlers configured with ``logging.config.dictConfig``."""

from __future__ import annotations

import contextvars
import io
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

import pytest
from purposeguard.integrations.logging import setup, teardown

import purposeguard as pg

CONTENT = "customer_data.content.document"
CURRENT_NOTE: contextvars.ContextVar[Any] = contextvars.ContextVar("pgtest_note", default="-")


class RequestContext(logging.Filter):
    """An application's context filter: adds what the request works on."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.note = CURRENT_NOTE.get()
        return True


@pytest.fixture
def configured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A handler with a context filter, from dictConfig, on a logger setup() covers."""
    stream = io.StringIO()
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"context": {"()": RequestContext}},
            "formatters": {"line": {"format": "%(levelname)s %(message)s note=%(note)s"}},
            "handlers": {
                "stream": {
                    "class": "logging.StreamHandler",
                    "stream": stream,
                    "formatter": "line",
                    "filters": ["context"],
                }
            },
            "loggers": {"pgtest.added": {"handlers": ["stream"], "level": "INFO", "propagate": False}},
        }
    )
    logger = logging.getLogger("pgtest.added")
    guard_filter = setup(logger)
    yield logger, stream
    teardown(guard_filter, logger)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def test_a_labelled_value_a_handlers_filter_adds_is_redacted(
    configured: tuple[logging.Logger, io.StringIO], marker: str
) -> None:
    logger, stream = configured
    token = CURRENT_NOTE.set(pg.label(marker, CONTENT, tenant="contoso"))
    try:
        with pg.testing.capture() as violations:
            logger.info("indexing ticket")
    finally:
        CURRENT_NOTE.reset(token)
    assert marker not in stream.getvalue()
    assert stream.getvalue() == f"INFO indexing ticket note=[redacted: {CONTENT}]\n"
    assert [(v.category, v.via) for v in violations] == [(CONTENT, "egress")]


def test_plain_context_a_handlers_filter_adds_stays(configured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = configured
    token = CURRENT_NOTE.set("request 42")
    try:
        with pg.testing.assert_no_violations():
            logger.info("indexing ticket")
    finally:
        CURRENT_NOTE.reset(token)
    assert stream.getvalue() == "INFO indexing ticket note=request 42\n"


def test_context_added_to_a_refused_record_is_redacted_with_it(
    configured: tuple[logging.Logger, io.StringIO], marker: str
) -> None:
    """Text the context filter adds carries no label, but it sits on a
    record refused for the content it carried: it is redacted as every
    extra of that record is."""
    logger, stream = configured
    body = pg.label(marker, CONTENT)
    token = CURRENT_NOTE.set(f"working on {body}")
    try:
        logger.info("indexing %s", body)
    finally:
        CURRENT_NOTE.reset(token)
    assert marker not in stream.getvalue()
    assert stream.getvalue().endswith(f"note=[redacted: {CONTENT}]\n")


def test_plain_extras_of_a_refused_record_are_redacted(
    configured: tuple[logging.Logger, io.StringIO], marker: str
) -> None:
    """The shape of Django's query log: the statement with its parameters
    interpolated, as plain text, beside the parameters that carry the label."""
    logger, stream = configured
    handler = logger.handlers[0]
    handler.setFormatter(logging.Formatter("%(message)s | sql=%(sql)s params=%(params)s took=%(duration).3f"))
    body = pg.label(marker, CONTENT)
    logger.warning(
        "(%.3f) %s; args=%s",
        0.25,
        f"SELECT 1 WHERE body = '{body}'",
        (body,),
        extra={"duration": 0.25, "sql": f"SELECT 1 WHERE body = '{body}'", "params": (body,)},
    )
    text = stream.getvalue()
    assert marker not in text
    assert f"sql=[redacted: {CONTENT}] params=[redacted: {CONTENT}] took=0.250" in text


def test_extras_of_a_record_refused_for_its_exception_are_redacted(
    configured: tuple[logging.Logger, io.StringIO], marker: str
) -> None:
    logger, stream = configured
    logger.handlers[0].setFormatter(logging.Formatter("%(message)s | detail=%(detail)s"))
    body = pg.label(marker, CONTENT)
    try:
        raise ValueError(body)
    except ValueError as error:
        logger.exception("could not index", extra={"detail": f"ValueError: {error}"})
    text = stream.getvalue()
    assert marker not in text
    assert f"could not index | detail=[redacted: {CONTENT}]" in text
