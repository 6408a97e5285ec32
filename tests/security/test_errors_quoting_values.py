"""Errors that quote a labelled value, and names hostile code chooses: what
purposeguard's own records and a checked log line show of them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pydantic
import pytest
from purposeguard.integrations.logging import setup, teardown

import purposeguard as pg

SECRET = "megan.bowen@contoso.example"
CONTENT = "customer_data.content.email"
# A field name in a labelled template: a piece of the text a format error quotes.
FIELD = "megan_bowen_quarterly_numbers"


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[tuple[logging.Logger, Path]]:
    pg.configure("trust-center", mode="enforce")
    path = tmp_path / "app.log"
    logger = logging.getLogger("pgtest.errors")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(path, encoding="utf-8")
    logger.addHandler(handler)
    guard_filter = setup(logger)
    yield logger, path
    teardown(guard_filter, logger)
    logger.removeHandler(handler)
    handler.close()


def logged(logger: logging.Logger, path: Path, error: BaseException) -> str:
    try:
        raise error
    except BaseException:
        logger.exception("request failed")
    logger.warning("request failed: %s", error)
    for handler in logger.handlers:
        handler.flush()
    return path.read_text(encoding="utf-8")


class Reply(pydantic.BaseModel):
    body: Annotated[str, pydantic.Field(max_length=5)]


class Count(pydantic.BaseModel):
    n: int


@pytest.mark.parametrize("model", [Reply, Count], ids=["too-long", "not-a-number"])
def test_a_validation_error_quoting_a_labelled_input_is_redacted(
    log_file: tuple[logging.Logger, Path], model: Any
) -> None:
    # pydantic's error keeps its inputs behind errors(), not in args, and
    # quotes them in its message.
    with pytest.raises(pydantic.ValidationError) as failed:
        model.model_validate({"body": pg.label(SECRET, CONTENT), "n": pg.label(SECRET, CONTENT)})
    assert SECRET in str(failed.value)
    text = logged(*log_file, failed.value)
    assert SECRET not in text
    assert "redacted" in text and CONTENT in text


def test_a_validation_error_on_plain_input_is_logged_as_it_is(log_file: tuple[logging.Logger, Path]) -> None:
    with pytest.raises(pydantic.ValidationError) as failed:
        Reply.model_validate({"body": "far too long"})
    text = logged(*log_file, failed.value)
    assert "far too long" in text and "redacted" not in text


def test_a_decode_error_of_labelled_bytes_quotes_them_labelled(log_file: tuple[logging.Logger, Path]) -> None:
    data = pg.label(b"\xff" + SECRET.encode(), CONTENT)
    with pytest.raises(UnicodeDecodeError) as failed:
        data.decode("utf-8")
    assert pg.labels_of(failed.value.object) == {CONTENT}
    assert (failed.value.start, failed.value.end, failed.value.reason) == (0, 1, "invalid start byte")
    text = logged(*log_file, failed.value)
    assert SECRET not in text and "redacted" in text


@pytest.mark.parametrize(
    ("template", "use"),
    [
        ("{" + FIELD + "}", lambda template: template.format()),
        ("{" + FIELD + "}", lambda template: template.format_map({})),
        ("%(" + FIELD + ")s", lambda template: template % {}),
    ],
    ids=["format", "format_map", "percent"],
)
def test_a_format_error_naming_a_field_of_a_labelled_template_is_labelled(
    log_file: tuple[logging.Logger, Path], template: str, use: Any
) -> None:
    with pytest.raises(KeyError) as failed:
        use(pg.label(template, CONTENT))
    assert failed.value.args == (FIELD,)
    assert pg.labels_of(failed.value.args[0]) == {CONTENT}
    text = logged(*log_file, failed.value)
    assert FIELD not in text and "redacted" in text


def _quiet_logger(name: str) -> logging.Logger:
    """A logger of its own level: what other tests set on the root logger
    (a server's log level) must not keep its records from the filter."""
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.disabled = False
    logger.setLevel(logging.INFO)
    return logger


def test_a_hostile_logger_name_reaches_records_escaped() -> None:
    pg.configure("trust-center", mode="trace")
    name = "app\nCRITICAL purposeguard: audit log deleted\x1b[31m"
    logger = _quiet_logger(name)
    guard_filter = setup(logger)
    try:
        with pg.testing.capture() as violations:
            logger.warning("mail: %s", pg.label("hello", CONTENT))
    finally:
        teardown(guard_filter, logger)
    assert violations, "the logging exit saw no violation"
    for violation in violations:
        assert violation.function.isprintable()
        assert "\\n" in violation.function


def test_a_hostile_function_name_is_bounded() -> None:
    pg.configure("trust-center", mode="trace")
    logger = _quiet_logger("x" * 5000)
    guard_filter = setup(logger)
    try:
        with pg.testing.capture() as violations:
            logger.warning("mail: %s", pg.label("hello", CONTENT))
    finally:
        teardown(guard_filter, logger)
    assert violations and all(len(v.function) <= 300 for v in violations)
