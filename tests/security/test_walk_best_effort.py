"""A best-effort read (a request object handed to guarded code, whose
framework parts go past the walk's bounds) never stops at the first object
it cannot look into: a labelled value beside it is still read."""

from __future__ import annotations

import types
from typing import Any

import pytest

import purposeguard as pg
from purposeguard._walk import MAX_DEPTH, WalkLimit, _walk

DOCUMENT = "customer_data.content.document"


def _nested(depth: int) -> Any:
    inner: Any = "bottom"
    for _ in range(depth):
        inner = types.SimpleNamespace(inner=inner)
    return inner


@pytest.mark.parametrize("deep_first", [True, False], ids=["deep object first", "labelled value first"])
def test_a_best_effort_walk_reads_what_lies_beside_an_object_past_the_bound(deep_first: bool) -> None:
    note = pg.label("a note", DOCUMENT)
    held = (
        [_nested(MAX_DEPTH + 4), {"note": note}] if deep_first else [{"note": note}, _nested(MAX_DEPTH + 4)]
    )
    assert _walk([held], strict=False)[0] == {DOCUMENT}
    # A checkpoint's walk still refuses to guess: what it could not look at fails closed.
    with pytest.raises(WalkLimit):
        _walk([held])


def test_a_starlette_request_with_a_deep_object_in_its_state_still_shows_the_note() -> None:
    from purposeguard.integrations.asgi import PurposeGuardMiddleware
    from starlette.applications import Starlette
    from starlette.requests import Request

    pg.configure("trust-center", mode="enforce")
    PurposeGuardMiddleware(Starlette())  # registers the request reader

    @pg.purpose("advertising")
    def choose_ad(request: Request) -> str:
        return "ad"

    request = Request({"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""})
    request.state.client = _nested(MAX_DEPTH + 4)
    request.state.note = pg.label("a note", DOCUMENT)
    assert pg.labels_of(request) == {DOCUMENT}
    with pytest.raises(pg.PurposeViolation) as refused:
        choose_ad(request)
    assert [(v.via, v.category) for v in refused.value.violations] == [("argument", DOCUMENT)]


def test_an_object_keeping_a_logger_is_read_without_the_processs_loggers() -> None:
    """A logger reaches every logger of the process and their handlers (an
    RQ job's ``log``, a service's ``self.log``): passing such an object to
    guarded code must not fail closed on them, and what it holds beside the
    logger is still read."""
    import logging

    for index in range(200):  # a process with many loggers, as one using a few libraries has
        logging.getLogger(f"purposeguard-test.walk.{index}").addHandler(logging.NullHandler())

    class Service:
        def __init__(self, note: object) -> None:
            self.log = logging.getLogger("purposeguard-test.walk.service")
            self.note = note

    pg.configure("trust-center", mode="enforce")

    @pg.purpose("service.operations")
    def operate(service: Service) -> str:
        return "ran"

    @pg.purpose("advertising")
    def choose_ad(service: Service) -> str:
        return "ad"

    assert operate(Service("plain")) == "ran"
    with pytest.raises(pg.PurposeViolation) as refused:
        choose_ad(Service(pg.label("a note", DOCUMENT)))
    assert [(v.via, v.category) for v in refused.value.violations] == [("argument", DOCUMENT)]
