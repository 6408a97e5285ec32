"""logging.setup() serves service.operations.logs by default: content stays out of logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from purposeguard.integrations.logging import setup, teardown

import purposeguard as pg


@pytest.fixture
def diary_log(tmp_path: Path) -> Iterator[tuple[logging.Logger, Path]]:
    path = tmp_path / "app.log"
    logger = logging.getLogger("pgtest.default_purpose")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(path, encoding="utf-8")
    logger.addHandler(handler)
    guard_filter = setup(logger)  # the default purpose
    yield logger, path
    teardown(guard_filter, logger)
    logger.removeHandler(handler)
    handler.close()


def test_content_is_redacted_under_the_pack_with_default_setup(
    diary_log: tuple[logging.Logger, Path],
) -> None:
    logger, path = diary_log
    pg.configure("trust-center")
    with pg.testing.capture() as violations:
        logger.info("user wrote: %s", pg.label("my secret diary entry", "customer_data.content"))
    logger.handlers[0].flush()
    text = path.read_text(encoding="utf-8")
    assert "my secret diary entry" not in text
    assert "redacted" in text and "no-content-in-logs" in text
    assert [(v.purpose, v.rule) for v in violations] == [("service.operations.logs", "no-content-in-logs")]


def test_customer_data_that_is_not_content_still_reaches_the_log(
    diary_log: tuple[logging.Logger, Path],
) -> None:
    logger, path = diary_log
    pg.configure("trust-center")
    logger.info("mailbox %s is full", pg.label("user@contoso.example", "customer_data"))
    logger.handlers[0].flush()
    assert "mailbox user@contoso.example is full" in path.read_text(encoding="utf-8")


def test_a_policy_can_let_content_into_its_logs(
    diary_log: tuple[logging.Logger, Path], tmp_path: Path
) -> None:
    policy = tmp_path / "verbose.toml"
    policy.write_text(
        '[policy]\nextends = "trust-center"\nremove = ["no-content-in-logs"]\n', encoding="utf-8"
    )
    logger, path = diary_log
    pg.configure(policy)
    logger.info("user wrote: %s", pg.label("my secret diary entry", "customer_data.content"))
    logger.handlers[0].flush()
    assert "user wrote: my secret diary entry" in path.read_text(encoding="utf-8")
