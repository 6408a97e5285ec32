"""Every way out of ``logging`` sees judged records after ``setup()``: Python's
last-resort handler, handlers put in place without ``addHandler``, and
records whose ``extra=`` names purposeguard's own bookkeeping."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator

import pytest
import wrapt
from purposeguard.integrations.logging import PurposeGuardFilter, setup, teardown

import purposeguard as pg

CONTENT = "customer_data.content.email"  # not allowed for service.operations.logs


@pytest.fixture
def root_setup() -> Iterator[PurposeGuardFilter]:
    guard_filter = setup()
    yield guard_filter
    teardown(guard_filter)


def fresh(name: str) -> logging.Logger:
    """A logger of its own: no handler, no propagation, switched on (a
    dictConfig in another test disables the loggers that exist then)."""
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.handlers = []
    logger.disabled = False
    logger.setLevel(logging.WARNING)
    return logger


def lonely(name: str) -> logging.Logger:
    """A logger whose records reach no handler: Python's last resort prints them."""
    return fresh(name)


def stream_of(logger: logging.Logger) -> io.StringIO:
    stream = io.StringIO()
    logger.handlers = [logging.StreamHandler(stream)]  # not through addHandler
    return stream


# -- Python's last-resort handler ---------------------------------------------------------------


def test_a_record_for_the_last_resort_handler_is_redacted(
    root_setup: PurposeGuardFilter, marker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = lonely("pgtest.lastresort.mail")
    logger.warning("child: %s", pg.label(marker, CONTENT))
    err = capsys.readouterr().err
    assert marker not in err
    assert "redacted" in err and CONTENT in err


def test_a_record_of_a_logger_made_by_hand_reaches_the_last_resort_redacted(
    root_setup: PurposeGuardFilter, marker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    logging.Logger("pgtest.by-hand").warning("%s", pg.label(marker, CONTENT))
    err = capsys.readouterr().err
    assert marker not in err and "redacted" in err


def test_plain_records_reach_the_last_resort_untouched(
    root_setup: PurposeGuardFilter, capsys: pytest.CaptureFixture[str]
) -> None:
    with pg.testing.assert_no_violations():
        lonely("pgtest.lastresort.plain").warning("disk %d%% full", 91)
    assert "disk 91% full" in capsys.readouterr().err


def test_teardown_gives_the_last_resort_handler_back_as_it_was() -> None:
    last_resort = logging.lastResort
    assert last_resort is not None
    before = list(last_resort.filters)
    guard_filter = setup()
    assert guard_filter in last_resort.filters
    teardown(guard_filter)
    assert last_resort.filters == before


def test_setup_before_any_handler_keeps_content_off_stderr_in_a_subprocess(marker: str) -> None:
    """As an application that never configured logging: no handler anywhere."""
    code = textwrap.dedent(
        f"""
        import logging
        import purposeguard as pg
        from purposeguard.integrations.logging import setup
        pg.configure("trust-center", mode="enforce")
        setup()
        body = pg.label({marker!r}, {CONTENT!r})
        logging.getLogger().warning("root: %s", body)
        logging.getLogger("app.mail").warning("child: %s", body)
        logging.getLogger("app.mail").warning("plain words")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert marker not in done.stderr
    assert done.stderr.count("redacted") == 2 and "plain words" in done.stderr


# -- handlers set without addHandler ------------------------------------------------------------


@pytest.mark.parametrize("made", ["before setup", "after setup"])
def test_a_handler_list_assigned_by_hand_gets_judged_records(made: str, marker: str) -> None:
    name = f"pgtest.assigned.{made.replace(' ', '-')}"
    if made == "before setup":
        fresh(name)
    guard_filter = setup()
    try:
        stream = stream_of(fresh(name))
        logging.getLogger(name).warning("handlers assigned: %s", pg.label(marker, CONTENT))
        logging.getLogger(name).warning("plain %s", "words")
    finally:
        teardown(guard_filter)
    text = stream.getvalue()
    assert marker not in text and "redacted" in text
    assert "plain words" in text


def test_a_subtree_setup_covers_a_logger_created_below_it_later(marker: str) -> None:
    parent = logging.getLogger("pgtest.subtree")
    guard_filter = setup(parent, purpose="service.communications")
    try:
        stream = stream_of(fresh("pgtest.subtree.late.child"))
        outside = stream_of(fresh("pgtest.subtreeish"))  # a name that only starts alike
        logging.getLogger("pgtest.subtree.late.child").warning("%s", pg.label(marker, CONTENT))
        logging.getLogger("pgtest.subtreeish").warning("%s", pg.label(marker, CONTENT))
    finally:
        teardown(guard_filter, parent)
    assert marker not in stream.getvalue()
    assert marker in outside.getvalue()  # not below the logger setup() was given
    assert guard_filter not in logging.getLogger("pgtest.subtree.late.child").filters


def test_allowed_categories_pass_through_an_assigned_handler(root_setup: PurposeGuardFilter) -> None:
    stream = stream_of(fresh("pgtest.assigned.allowed"))
    with pg.testing.assert_no_violations():
        logging.getLogger("pgtest.assigned.allowed").warning(
            "mailbox %s full", pg.label("user@contoso.example", "customer_data")
        )
    assert "mailbox user@contoso.example full" in stream.getvalue()


def test_a_record_judged_at_its_logger_and_at_a_handler_is_reported_once(marker: str) -> None:
    pg.configure("trust-center", mode="trace")
    stream = io.StringIO()
    parent = fresh("pgtest.once")
    fresh("pgtest.once.child").propagate = True
    parent.addHandler(logging.StreamHandler(stream))
    guard_filter = setup(parent)
    try:
        with pg.testing.capture() as violations:
            logging.getLogger("pgtest.once.child").warning("%s", pg.label(marker, CONTENT))
    finally:
        teardown(guard_filter, parent)
        parent.handlers = []
    assert [(v.category, v.mode) for v in violations] == [(CONTENT, "trace")]
    assert marker in stream.getvalue()  # trace mode passes the record


def test_the_last_teardown_restores_logger_creation() -> None:
    original = vars(logging.Logger)["__init__"]
    guard_filter = setup()
    assert isinstance(vars(logging.Logger)["__init__"], wrapt.FunctionWrapper)
    teardown(guard_filter)
    assert vars(logging.Logger)["__init__"] is original
    assert not isinstance(vars(logging.Logger)["__init__"], wrapt.ObjectProxy)


# -- purposeguard's bookkeeping is not a record attribute --------------------------------------


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept() -> Iterator[tuple[logging.Logger, Keep, io.StringIO]]:
    logger = fresh("pgtest.forged")
    keep = Keep()
    stream = io.StringIO()
    logger.addHandler(keep)
    logger.addHandler(logging.StreamHandler(stream))
    guard_filter = setup(logger)
    yield logger, keep, stream
    teardown(guard_filter, logger)
    logger.handlers = []


@pytest.mark.parametrize(
    "forged",
    [{"service.operations.logs"}, ["service.operations.logs"], "service.operations.logs", None],
    ids=["set", "list", "str", "None"],
)
def test_extra_cannot_mark_a_record_as_judged(
    forged: object, kept: tuple[logging.Logger, Keep, io.StringIO], marker: str
) -> None:
    logger, _, stream = kept
    logger.warning("extra marker: %s", pg.label(marker, CONTENT), extra={"_purposeguard_checked": forged})
    logger.warning("plain", extra={"_purposeguard_checked": forged})
    text = stream.getvalue()
    assert marker not in text and "redacted" in text
    assert text.splitlines()[-1] == "plain"


def test_a_judged_record_carries_no_attribute_of_purposeguards(
    kept: tuple[logging.Logger, Keep, io.StringIO], marker: str
) -> None:
    logger, keep, _ = kept
    logger.warning("%s", pg.label(marker, CONTENT))
    logger.warning("plain")
    standard = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
    assert [set(vars(record)) - standard for record in keep.records] == [set(), set()]


# -- the usual record is not walked; a labelled one always is -------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(lambda marker: pg.label(marker, CONTENT), id="str"),
        pytest.param(lambda marker: pg.label(marker.encode(), CONTENT), id="bytes"),
        pytest.param(lambda marker: pg.label(4111, CONTENT), id="int"),
        pytest.param(lambda marker: pg.label(41.5, CONTENT), id="float"),
        pytest.param(lambda marker: [pg.label(marker, CONTENT)], id="inside a list"),
        pytest.param(lambda marker: {"body": pg.label(marker, CONTENT)}, id="inside a dict"),
    ],
)
def test_a_labelled_argument_of_any_plain_type_is_redacted(
    value: Callable[[str], object], kept: tuple[logging.Logger, Keep, io.StringIO], marker: str
) -> None:
    logger, _, stream = kept
    with pg.testing.capture() as violations:
        logger.warning("plain %s then %s", "words", value(marker))
    assert "redacted" in stream.getvalue() and marker not in stream.getvalue()
    assert [v.category for v in violations] == [CONTENT]
