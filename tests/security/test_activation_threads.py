"""Guards activated for one context from many threads at once leave the process flags right."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

import purposeguard as pg
from purposeguard import _runtime
from purposeguard._context import FLAGS

EMAIL = "customer_data.content.email"
THREADS = 4
ROUNDS = 150


@pg.purpose("advertising")
def ads(value: Any) -> int:
    return 1


def _yield_between_steps(frame: FrameType, event: str, arg: Any) -> Any:
    # Hand the GIL to another thread between every bytecode step of the
    # activation's own code: a read-modify-write that is not atomic loses
    # updates at once instead of once in a blue moon.
    if frame.f_code.co_filename != _runtime.__file__:
        return None
    frame.f_trace_opcodes = True

    def step(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            time.sleep(0)
        return step

    return step


@pytest.fixture
def interleaved() -> Iterator[None]:
    before = FLAGS.activations
    threading.settrace(_yield_between_steps)
    try:
        yield
    finally:
        threading.settrace(None)  # type: ignore[arg-type]
        # A failing run must not leave later tests a count no activation holds.
        with FLAGS.lock:
            FLAGS.activations = before
            FLAGS.refresh()


def test_concurrent_activations_leave_the_count_at_zero(interleaved: None) -> None:
    """Threads entering and leaving activations at once: afterwards none is counted and the shortcut is back."""
    guard = pg.configure("trust-center", mode="trace")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(ROUNDS):
                with guard.activate():
                    assert FLAGS.activations >= 1
                    assert not FLAGS.fast_unzoned
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert FLAGS.activations == 0
    assert FLAGS.fast_unzoned


def test_an_activation_stays_counted_while_other_threads_come_and_go(interleaved: None) -> None:
    """One long activation is never forgotten by other threads' enter and exit, so its guard keeps deciding."""
    pg.configure("trust-center", mode="trace")
    strict = pg.Guard(pg.Policy.load("trust-center"), mode="enforce")
    other = pg.Guard(pg.Policy.load("trust-center"), mode="trace")
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            with other.activate():
                pass

    workers = [threading.Thread(target=churn) for _ in range(THREADS)]
    forgotten = refused = 0
    with strict.activate():
        for worker in workers:
            worker.start()
        try:
            for _ in range(ROUNDS):
                forgotten += FLAGS.activations < 1 or FLAGS.fast_unzoned
                try:
                    ads(pg.label("mail body", EMAIL))
                except pg.PurposeViolation:
                    refused += 1
        finally:
            stop.set()
            for worker in workers:
                worker.join(timeout=120)
    assert forgotten == 0
    assert refused == ROUNDS
    assert FLAGS.activations == 0
