"""Writers in several processes replace a keyed SQLite log's checkpoint file
in turn: the older of two ends never wins."""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from types import ModuleType

import pytest

import purposeguard as pg
from purposeguard.audit import AuditLog

KEY = "checkpoint-processes-key-" + "k" * 20

WORKER = """
import time

import purposeguard as pg
from purposeguard._storage import sqlite
from purposeguard.audit import AuditLog


def _violation(n):
    return pg.Violation(
        category="customer_data.content.email", purpose="advertising", rule="no-advertising",
        via="argument", function=f"worker.n{n}", tenant="contoso", mode="trace", timestamp=time.time(),
    )


def paused_writer(path, key, read, go, written, finish):
    # Stops once it has read the checkpoint file and decided to replace it,
    # until the test says go: the moment another process may commit a later
    # end and sign it.
    write = sqlite.write_checkpoint
    paused = []

    def write_after_go(*args, **kwargs):
        if not paused:
            paused.append(True)
            read.set()
            go.wait(60)
        write(*args, **kwargs)

    sqlite.write_checkpoint = write_after_go
    log = AuditLog(path, key=key, checkpoint_every=1)
    log.append(_violation(0))
    written.set()
    finish.wait(60)  # its close signs the head again: not before the test has looked
    log.close()


def burst(path, key, ident, count, ready):
    log = AuditLog(path, key=key, checkpoint_every=1)
    ready.wait(60)
    for n in range(count):
        log.append(_violation(ident * 1000 + n))
    log.close()
"""


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    (tmp_path / "pg_checkpoint_worker.py").write_text(WORKER)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module("pg_checkpoint_worker")


def _violation(n: int) -> pg.Violation:
    return pg.Violation(
        category="customer_data.content.email",
        purpose="advertising",
        rule="no-advertising",
        via="argument",
        function=f"tests.writer_{n}",
        tenant="contoso",
        mode="trace",
        timestamp=0.0,
    )


def _checkpoint_seq(log_path: Path) -> int:
    from purposeguard._storage import read_checkpoint

    checkpoint = read_checkpoint(str(log_path) + "-checkpoint")
    assert checkpoint is not None
    return checkpoint.seq


def test_an_older_end_written_last_by_another_process_does_not_replace_a_newer_one(
    log_path: Path, worker: ModuleType
) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    read, go, written, finish = (context.Event() for _ in range(4))
    log = AuditLog(log_path, key=KEY, checkpoint_every=1)
    try:
        log.append(_violation(1))  # seq 1, signed
        child = context.Process(
            target=worker.paused_writer, args=(str(log_path), KEY, read, go, written, finish)
        )
        child.start()
        try:
            # The child committed seq 2, read the checkpoint (seq 1) and is
            # about to replace it with its end.
            assert read.wait(60)
            # This process commits seq 3 and signs it meanwhile: without a lock
            # shared between processes it writes seq 3 at once and the child's
            # seq 2 then replaces it; with one, it waits for the child's write,
            # then finds seq 2 older than its own.
            appending = threading.Thread(target=log.append, args=(_violation(3),))
            appending.start()
            appending.join(1)  # a bound, not a measure: the outcome is what the file holds
            go.set()
            assert written.wait(60)
            appending.join(60)
            assert not appending.is_alive()
            assert len(log) == 3
            assert _checkpoint_seq(log_path) == 3
        finally:
            go.set()
            finish.set()
            child.join(60)
        assert child.exitcode == 0
    finally:
        log.close()
    with AuditLog(log_path, key=KEY, readonly=True) as reader:
        result = reader.verify()
    assert result.ok, result.reason


def test_processes_signing_every_commit_leave_the_newest_end_signed(
    log_path: Path, worker: ModuleType
) -> None:
    import multiprocessing

    AuditLog(log_path, key=KEY).close()  # created once; the workers race to append and sign
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(3)
    processes = [
        context.Process(target=worker.burst, args=(str(log_path), KEY, ident, 40, ready))
        for ident in range(3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    assert _checkpoint_seq(log_path) == 120
    with AuditLog(log_path, key=KEY, readonly=True) as reader:
        result = reader.verify()
    assert result.ok, result.reason
    assert result.count == 120


def test_a_process_forked_while_a_checkpoint_is_written_holds_no_lock(tmp_path: Path) -> None:
    """A prefork worker forked while one of the parent's threads signs the
    end: neither the worker's copy of the lock file's descriptor nor its copy
    of the thread lock keeps a writer (the parent's, its own) waiting."""
    import os

    from purposeguard._storage.base import checkpoint_guard

    path = str(tmp_path / "audit.db-checkpoint")
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with checkpoint_guard(path):
            inside.set()
            release.wait(60)

    def take(taken: threading.Event) -> None:
        with checkpoint_guard(path):
            taken.set()

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(60)
    go_read, go_write = os.pipe()
    child = os.fork()
    if child == 0:  # the worker: once the parent has looked, it signs its own end
        code = 1
        try:
            os.close(go_write)
            os.read(go_read, 1)
            taken = threading.Event()
            threading.Thread(target=take, args=(taken,), daemon=True).start()
            code = 0 if taken.wait(10) else 3
        finally:
            os._exit(code)
    os.close(go_read)
    try:
        release.set()
        holder.join(60)
        taken = threading.Event()
        threading.Thread(target=take, args=(taken,), daemon=True).start()
        # A bound, not a measure: with the worker's copy still locked it
        # would wait until the worker exits.
        taken_while_the_worker_lives = taken.wait(10)
    finally:
        os.write(go_write, b"g")
        os.close(go_write)
        _, status = os.waitpid(child, 0)
    assert taken_while_the_worker_lives
    assert os.waitstatus_to_exitcode(status) == 0
