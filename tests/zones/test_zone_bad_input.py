"""Misused zones raise a clear PurposeGuardError and leave every zone as it was."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import pytest

import purposeguard as pg

EMAIL = "customer_data.content.email"


def test_leaving_a_zone_that_was_never_entered_raises() -> None:
    with pytest.raises(pg.PurposeGuardError, match="never entered"):
        pg.zone().__exit__(None, None, None)
    assert pg.current_zone() is None


def test_leaving_a_never_entered_zone_inside_another_changes_nothing() -> None:
    with pg.zone(tenant="contoso") as state:
        pg.label("body", EMAIL)
        with pytest.raises(pg.PurposeGuardError, match="never entered"):
            pg.zone().__exit__(None, None, None)
        assert pg.current_zone() is state
        assert state.categories == {EMAIL}
        assert not state.closed
    assert pg.current_zone() is None


def test_leaving_the_same_zone_twice_raises_the_second_time() -> None:
    request = pg.zone()
    request.__enter__()
    request.__exit__(None, None, None)
    with pytest.raises(pg.PurposeGuardError):
        request.__exit__(None, None, None)
    assert pg.current_zone() is None


def test_leaving_an_outer_zone_before_the_inner_one_raises() -> None:
    outer, inner = pg.zone(tenant="outer"), pg.zone(tenant="inner")
    outer_state = outer.__enter__()
    inner_state = inner.__enter__()
    with pytest.raises(pg.PurposeGuardError, match="inner zone first"):
        outer.__exit__(None, None, None)
    # Nothing moved: the inner zone is still current and both close in order.
    assert pg.current_zone() is inner_state
    inner.__exit__(None, None, None)
    assert pg.current_zone() is outer_state
    outer.__exit__(None, None, None)
    assert pg.current_zone() is None


def test_leaving_a_zone_from_another_thread_raises_and_keeps_both_threads_state() -> None:
    request = pg.zone(tenant="contoso")
    errors: list[BaseException] = []
    seen_in_thread: list[Any] = []

    with request as state:
        pg.label("body", EMAIL)

        def intruder() -> None:
            # A thread running a copy of the request's context: it sees the
            # zone and the zone object, but did not enter it.
            try:
                request.__exit__(None, None, None)
            except pg.PurposeGuardError as error:
                errors.append(error)
            seen_in_thread.append(pg.current_zone())

        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(intruder,))
        thread.start()
        thread.join()
        assert pg.current_zone() is state
        assert not state.closed
    assert len(errors) == 1
    assert "another thread" in str(errors[0])
    assert seen_in_thread == [state]
    assert state.closed
    assert pg.current_zone() is None


def test_leaving_a_zone_from_a_thread_that_never_saw_it_raises() -> None:
    request = pg.zone()
    outcome: dict[str, Any] = {}
    with request as state:

        def other_request() -> None:
            with pg.zone(tenant="fabrikam") as own:
                try:
                    request.__exit__(None, None, None)
                except pg.PurposeGuardError as error:
                    outcome["error"] = error
                # This thread's own zone is untouched and still current.
                outcome["own zone still current"] = pg.current_zone() is own

        thread = threading.Thread(target=other_request)
        thread.start()
        thread.join()
        assert pg.current_zone() is state
    assert isinstance(outcome["error"], pg.PurposeGuardError)
    assert outcome["own zone still current"] is True


async def test_leaving_a_zone_from_a_task_that_inherited_it_raises() -> None:
    request = pg.zone(tenant="contoso")
    async with request as state:

        async def child() -> str:
            try:
                request.__exit__(None, None, None)
            except pg.PurposeGuardError as error:
                return str(error)
            return "no error"

        message = await asyncio.create_task(child())
        assert "another task or context" in message
        assert pg.current_zone() is state
        assert not state.closed
    assert state.closed


def test_a_bad_exit_does_not_touch_another_threads_zone() -> None:
    """Two requests in two threads; one misbehaves, the other is unaffected."""
    ready = threading.Event()
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def good_request() -> None:
        with pg.zone(tenant="good") as state:
            pg.label("body", EMAIL)
            ready.set()
            done.wait(10)
            outcome["good"] = (pg.current_zone() is state, state.categories, state.closed)

    def bad_request() -> None:
        ready.wait(10)
        try:
            pg.zone(tenant="good").__exit__(None, None, None)
        except pg.PurposeGuardError:
            outcome["bad"] = "raised"
        done.set()

    threads = [threading.Thread(target=good_request), threading.Thread(target=bad_request)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert outcome == {"good": (True, frozenset({EMAIL}), False), "bad": "raised"}


def test_errors_are_purposeguard_errors_not_runtime_errors() -> None:
    with pytest.raises(pg.PurposeGuardError) as raised:
        pg.zone().__exit__(None, None, None)
    assert not isinstance(raised.value, (ValueError, RuntimeError))
