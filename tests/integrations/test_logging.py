"""The logging filter with the standard logging module and a real file handler."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import wrapt
from purposeguard.integrations.logging import PurposeGuardFilter, setup, teardown

import purposeguard as pg

PAYMENT = "payment_data"  # not allowed for service.operations in the built-in pack


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[tuple[logging.Logger, Path]]:
    path = tmp_path / "service.log"
    logger = logging.getLogger("pgtest.service")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(
        logging.Formatter("%(levelname)s %(name)s %(message)s %(card)s", defaults={"card": "-"})
    )
    logger.addHandler(handler)
    guard_filter = setup(logger)
    yield logger, path
    teardown(guard_filter, logger)
    logger.removeHandler(handler)
    handler.close()


def read(path: Path) -> str:
    for handler in logging.getLogger("pgtest.service").handlers:
        handler.flush()
    return path.read_text(encoding="utf-8")


def test_enforce_redacts_a_labelled_argument_naming_the_category(
    log_file: tuple[logging.Logger, Path], marker: str
) -> None:
    logger, path = log_file
    with pg.testing.capture() as violations:
        logger.info("charging card %s", pg.label(marker, PAYMENT))
    text = read(path)
    assert marker not in text
    assert "redacted" in text and PAYMENT in text
    assert [(v.category, v.purpose, v.via, v.mode) for v in violations] == [
        (PAYMENT, "service.operations.logs", "egress", "enforce")
    ]


def test_enforce_redacts_a_labelled_message(log_file: tuple[logging.Logger, Path], marker: str) -> None:
    logger, path = log_file
    logger.warning(pg.label(f"card {marker}", PAYMENT))
    text = read(path)
    assert marker not in text and PAYMENT in text


def test_enforce_redacts_labelled_extra_fields(log_file: tuple[logging.Logger, Path], marker: str) -> None:
    logger, path = log_file
    logger.info("payment accepted", extra={"card": pg.label(marker, PAYMENT)})
    text = read(path)
    assert marker not in text
    assert "[redacted: payment_data]" in text


def test_labels_inside_a_dict_argument_are_found(log_file: tuple[logging.Logger, Path], marker: str) -> None:
    logger, path = log_file
    logger.info("request %(body)s", {"body": pg.label(marker, PAYMENT)})
    assert marker not in read(path)


def test_trace_passes_the_record_and_records_a_violation(
    log_file: tuple[logging.Logger, Path], marker: str
) -> None:
    pg.configure("trust-center", mode="trace")
    logger, path = log_file
    with pg.testing.capture() as violations:
        logger.info("charging card %s", pg.label(marker, PAYMENT))
    assert marker in read(path)
    assert [(v.category, v.mode) for v in violations] == [(PAYMENT, "trace")]


def test_allowed_categories_and_plain_records_pass_untouched(log_file: tuple[logging.Logger, Path]) -> None:
    logger, path = log_file
    with pg.testing.assert_no_violations():
        logger.info("ticket %s", pg.label("mailbox over quota", "customer_data"))
        logger.info("plain %d", 42)
    text = read(path)
    assert "ticket mailbox over quota" in text and "plain 42" in text


def test_a_stricter_purpose_redacts_content(tmp_path: Path, marker: str) -> None:
    """Logs that feed service communications may not hold content."""
    logger = logging.getLogger("pgtest.comms")
    logger.propagate = False
    handler = logging.FileHandler(tmp_path / "comms.log", encoding="utf-8")
    logger.addHandler(handler)
    guard_filter = setup(logger, purpose="service.communications")
    try:
        logger.warning("%s", pg.label(marker, "customer_data.content.email"))
        handler.flush()
        assert marker not in (tmp_path / "comms.log").read_text(encoding="utf-8")
    finally:
        teardown(guard_filter, logger)
        logger.removeHandler(handler)
        handler.close()


def test_records_of_child_loggers_reach_the_handler_filter(tmp_path: Path, marker: str) -> None:
    parent = logging.getLogger("pgtest.parent")
    parent.propagate = False
    handler = logging.FileHandler(tmp_path / "parent.log", encoding="utf-8")
    parent.addHandler(handler)
    guard_filter = setup(parent)
    try:
        with pg.testing.capture() as violations:
            logging.getLogger("pgtest.parent.child").error("card %s", pg.label(marker, PAYMENT))
        handler.flush()
        assert marker not in (tmp_path / "parent.log").read_text(encoding="utf-8")
        assert len(violations) == 1
    finally:
        teardown(guard_filter, parent)
        parent.removeHandler(handler)
        handler.close()


def test_two_handlers_judge_a_record_once(tmp_path: Path, marker: str) -> None:
    logger = logging.getLogger("pgtest.twice")
    logger.propagate = False
    handlers = [logging.FileHandler(tmp_path / f"{i}.log", encoding="utf-8") for i in range(2)]
    for handler in handlers:
        logger.addHandler(handler)
    guard_filter = setup(logger)
    try:
        with pg.testing.capture() as violations:
            logger.error("card %s", pg.label(marker, PAYMENT))
        assert len(violations) == 1
        for i, handler in enumerate(handlers):
            handler.flush()
            assert marker not in (tmp_path / f"{i}.log").read_text(encoding="utf-8")
    finally:
        teardown(guard_filter, logger)
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()


def test_teardown_removes_the_filter(log_file: tuple[logging.Logger, Path]) -> None:
    logger, _ = log_file
    (handler,) = [h for h in logger.handlers if isinstance(h, logging.FileHandler)]
    (guard_filter,) = [f for f in handler.filters if isinstance(f, PurposeGuardFilter)]
    teardown(guard_filter, logger)
    assert not [f for f in handler.filters if isinstance(f, PurposeGuardFilter)]


def test_unknown_purpose_is_refused_at_setup() -> None:
    with pytest.raises(pg.UnknownKeyError):
        PurposeGuardFilter("logging.everything")


CONTENT = "customer_data.content.email"  # allowed for service.operations, not for communications


def _file_logger(name: str, path: Path, purpose: str | None = None) -> tuple[logging.Logger, logging.Handler]:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(path, encoding="utf-8")
    if purpose is not None:
        handler.addFilter(PurposeGuardFilter(purpose))
    logger.addHandler(handler)
    return logger, handler


def test_each_filter_decides_for_its_own_purpose(tmp_path: Path, marker: str) -> None:
    """A record allowed for operations is still judged by a stricter filter on another handler."""
    logger, ops = _file_logger("pgtest.purposes", tmp_path / "ops.log", "service.operations")
    comms = logging.FileHandler(tmp_path / "comms.log", encoding="utf-8")
    comms.addFilter(PurposeGuardFilter("service.communications"))
    logger.addHandler(comms)
    try:
        with pg.testing.capture() as violations:
            logger.info("body %s", pg.label(marker, CONTENT))
        for handler in (ops, comms):
            handler.flush()
        assert marker in (tmp_path / "ops.log").read_text(encoding="utf-8")
        comms_text = (tmp_path / "comms.log").read_text(encoding="utf-8")
        assert marker not in comms_text and CONTENT in comms_text
        assert [v.purpose for v in violations] == ["service.communications"]
    finally:
        for handler in (ops, comms):
            logger.removeHandler(handler)
            handler.close()


def test_setup_before_any_handler_covers_handlers_added_later(tmp_path: Path, marker: str) -> None:
    """setup() first, then handlers (as basicConfig/dictConfig do): child records are redacted too."""
    parent = logging.getLogger("pgtest.late")
    parent.propagate = False
    parent.setLevel(logging.INFO)
    guard_filter = setup(parent, purpose="service.communications")
    handler = logging.FileHandler(tmp_path / "late.log", encoding="utf-8")
    parent.addHandler(handler)
    try:
        logging.getLogger("pgtest.late.child").info("child %s", pg.label(marker, CONTENT))
        parent.info("own %s", pg.label(marker, CONTENT))
        handler.flush()
        text = (tmp_path / "late.log").read_text(encoding="utf-8")
        assert marker not in text
        assert text.count("redacted") == 2
    finally:
        teardown(guard_filter, parent)
        parent.removeHandler(handler)
        handler.close()
    assert not isinstance(
        vars(logging.Logger)["addHandler"], wrapt.ObjectProxy
    )  # the last teardown restores it


def test_setup_before_basic_config_on_root_in_a_subprocess(tmp_path: Path, marker: str) -> None:
    import subprocess
    import sys
    import textwrap

    path = tmp_path / "root.log"
    code = textwrap.dedent(
        f"""
        import logging
        import purposeguard as pg
        from purposeguard.integrations.logging import setup
        setup(purpose="service.communications")
        logging.basicConfig(filename={str(path)!r}, level=logging.INFO)
        logging.getLogger("app.child").info("child %s", pg.label({marker!r}, {CONTENT!r}))
        logging.info("root %s", pg.label({marker!r}, {CONTENT!r}))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    text = path.read_text(encoding="utf-8")
    assert marker not in text and text.count("redacted") == 2


def test_exception_text_is_checked_and_redacted(tmp_path: Path, marker: str) -> None:
    logger, handler = _file_logger("pgtest.exc", tmp_path / "exc.log")
    guard_filter = setup(logger, purpose="service.communications")
    try:
        with pg.testing.capture() as violations:
            try:
                raise ValueError(pg.label(marker, CONTENT))
            except ValueError:
                logger.exception("failed")
            try:
                try:
                    raise KeyError(pg.label(marker, CONTENT))
                except KeyError as inner:
                    raise RuntimeError("outer") from inner
            except RuntimeError:
                logger.error("chained", exc_info=True)
        handler.flush()
        text = (tmp_path / "exc.log").read_text(encoding="utf-8")
        assert marker not in text
        assert "ValueError" in text and "RuntimeError" in text and CONTENT in text
        assert "failed" in text and "chained" in text  # the clean messages stay
        assert len(violations) == 2
    finally:
        teardown(guard_filter, logger)
        logger.removeHandler(handler)
        handler.close()


# -- text rebuilt from what the request's zone saw -------------------------------------------

CONTENT = "customer_data.content.email"


def test_an_f_string_of_content_in_a_zone_is_recorded_under_the_packs_context_mode(
    log_file: tuple[logging.Logger, Path], marker: str
) -> None:
    logger, path = log_file
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        body = pg.label(marker, CONTENT)
        logger.info(f"got mail {body}")  # the f-string carries no label
    assert [(v.category, v.purpose, v.via, v.mode) for v in violations] == [
        (CONTENT, "service.operations.logs", "context", "trace")
    ]
    assert marker in read(path)  # the pack's context_mode for logs is trace: recorded, passed


def test_an_f_string_of_content_in_a_zone_is_redacted_under_context_enforce(
    log_file: tuple[logging.Logger, Path], marker: str
) -> None:
    logger, path = log_file
    pg.configure("trust-center", context_mode="enforce")
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        body = pg.label(marker, CONTENT)
        logger.info(f"got mail {body}")
        try:
            int(body)
        except ValueError:
            logger.exception("could not read the number")  # the traceback quotes the body
    text = read(path)
    assert marker not in text
    assert text.count("redacted") >= 2
    # The line carried no label of its own: it says where it was written, not what it carried.
    assert f"written in a zone that had read {CONTENT}" in text
    assert {(v.via, v.mode) for v in violations} == {("context", "enforce")}


def test_a_zone_that_saw_no_content_leaves_records_alone(log_file: tuple[logging.Logger, Path]) -> None:
    logger, path = log_file
    pg.configure("trust-center", context_mode="enforce")
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        logger.info("request handled in %d ms", 5)
    assert violations == [] and "request handled in 5 ms" in read(path)


def test_setup_covers_the_handlers_of_loggers_below_it(tmp_path: Path, marker: str) -> None:
    parent = logging.getLogger("pgtest.tree")
    parent.propagate = False
    child = logging.getLogger("pgtest.tree.mail")
    quiet = logging.getLogger("pgtest.tree.audit")
    quiet.propagate = False  # never reaches the parent's handlers
    own = logging.FileHandler(tmp_path / "child.log", encoding="utf-8")
    child.addHandler(own)
    guard_filter = setup(parent)
    later = logging.FileHandler(tmp_path / "quiet.log", encoding="utf-8")
    quiet.addHandler(later)  # added after setup()
    try:
        child.error("card %s", pg.label(marker, PAYMENT))
        quiet.error("card %s", pg.label(marker, PAYMENT))
        for handler in (own, later):
            handler.flush()
        assert marker not in (tmp_path / "child.log").read_text(encoding="utf-8")
        assert marker not in (tmp_path / "quiet.log").read_text(encoding="utf-8")
    finally:
        teardown(guard_filter, parent)
        for logger, handler in ((child, own), (quiet, later)):
            logger.removeHandler(handler)
            handler.close()
            assert guard_filter not in handler.filters


def test_purposeguards_own_records_in_a_zone_are_not_flows(tmp_path: Path, marker: str) -> None:
    own = logging.getLogger("purposeguard")
    # Other tests may have quietened it (a dictConfig disables existing loggers).
    level, disabled = own.level, own.disabled
    own.setLevel(logging.WARNING)
    own.disabled = False
    handler = logging.FileHandler(tmp_path / "own.log", encoding="utf-8")
    own.addHandler(handler)
    guard_filter = setup(own)
    pg.configure("trust-center", context_mode="enforce")
    try:
        with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
            pg.label(marker, CONTENT)
            own.warning("purposeguard: a warning naming %s only", CONTENT)
        handler.flush()
        assert violations == []
        assert "a warning naming" in (tmp_path / "own.log").read_text(encoding="utf-8")
    finally:
        teardown(guard_filter, own)
        own.removeHandler(handler)
        handler.close()
        own.setLevel(level)
        own.disabled = disabled


def test_a_violation_callback_that_logs_is_not_judged_again(
    log_file: tuple[logging.Logger, Path], marker: str
) -> None:
    logger, path = log_file
    pg.configure("trust-center", context_mode="enforce")
    calls: list[str] = []

    def audit(violation: pg.Violation) -> None:
        calls.append(violation.category)
        logger.warning("flow of %s", violation.category)

    unsubscribe = pg.on_violation(audit)
    try:
        with pg.zone(tenant="contoso"):
            pg.label(marker, CONTENT)
            logger.info("request handled")
    finally:
        unsubscribe()
    assert calls == [CONTENT]  # once, not once per nested record
    assert marker not in read(path)
