"""Where an integration touches a dependency's internals, it does so only on
releases it was tried with: httpx is refused outside its tested range, and
logging is wrapped with wrapt and put back exactly as it was."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import httpx
import pytest
import wrapt
from purposeguard.integrations import httpx as pg_httpx
from purposeguard.integrations.logging import setup, teardown

ROOT = Path(__file__).resolve().parents[2]
ORIGINAL_ADD_HANDLER = vars(logging.Logger)["addHandler"]


@pytest.mark.parametrize("version", ["0.27.0", "0.27.2", "0.28.1"])
def test_tried_httpx_releases_are_accepted(version: str) -> None:
    pg_httpx.check_version(version)


@pytest.mark.parametrize("version", ["0.26.0", "0.29.0", "1.0.0", "1.0.0.dev1", "", "unknown"])
def test_other_httpx_releases_are_refused_with_one_line(version: str) -> None:
    with pytest.raises(RuntimeError) as caught:
        pg_httpx.check_version(version)
    message = str(caught.value)
    assert "\n" not in message
    assert "tried with httpx 0.27 to 0.28" in message
    assert (version or "(unknown version)") in message
    assert "pip install 'purposeguard[httpx]'" in message


def test_instrument_refuses_an_untried_httpx_and_patches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(httpx, "__version__", "0.29.0")
    send_single = vars(httpx.Client)["_send_single_request"]
    with pytest.raises(RuntimeError, match="httpx 0.29.0 is not supported"):
        pg_httpx.instrument()
    assert not pg_httpx.is_instrumented()
    assert vars(httpx.Client)["_send_single_request"] is send_single


def test_the_installed_httpx_is_a_tried_release() -> None:
    pg_httpx.check_version(httpx.__version__)


def test_the_httpx_extras_allow_only_the_tried_releases() -> None:
    (low_major, low_minor), (high_major, high_minor) = pg_httpx.TESTED_HTTPX
    expected = f"httpx>={low_major}.{low_minor},<{high_major}.{high_minor + 1}"
    pins = re.findall(r'"(httpx[^"]*)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pins and all(pin == expected for pin in pins), pins


def test_logging_is_wrapped_with_wrapt_while_set_up_and_restored_by_the_last_teardown() -> None:
    logger = logging.getLogger("pgtest.internals")
    first = setup(logger)
    second = setup(logger, purpose="service.communications")
    try:
        assert isinstance(vars(logging.Logger)["addHandler"], wrapt.FunctionWrapper)
        assert "addHandler" not in vars(logging.RootLogger), "subclasses keep inheriting it"
        teardown(first, logger)
        assert isinstance(vars(logging.Logger)["addHandler"], wrapt.FunctionWrapper), (
            "one setup is still live"
        )
        handler = logging.NullHandler()
        logger.addHandler(handler)
        assert handler.filters == [second]
        logger.removeHandler(handler)
    finally:
        teardown(second, logger)
    assert vars(logging.Logger)["addHandler"] is ORIGINAL_ADD_HANDLER
    handler = logging.NullHandler()
    logger.addHandler(handler)
    assert handler.filters == []
    logger.removeHandler(handler)
