"""Celery results read every way, on a real redis-server with worker
processes started here: the rpc result backend (results sent back as
messages over the redis broker), results stored with the task's arguments
(``result_extended``), and results that cannot carry a label (True, False,
None), whose categories reach the reader's zone instead."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import jobs
import pytest
from celery import Celery
from purposeguard.integrations import celery as pg_celery
from services import RedisServer
from test_jobs_on_redis import BAGGAGE_KEY, Worker, worker_env

import purposeguard as pg
from purposeguard.audit import AuditLog

CONTENT = jobs.CONTENT
CRM = "customer_data.content.crm"
MARKER = "PGMARKER-results-7c2d-do-not-leak"


@pytest.fixture(scope="module", autouse=True)
def _shared_baggage_key() -> Iterator[None]:
    before = os.environ.get("PURPOSEGUARD_BAGGAGE_KEYS")
    os.environ["PURPOSEGUARD_BAGGAGE_KEYS"] = BAGGAGE_KEY
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PURPOSEGUARD_BAGGAGE_KEYS", None)
        else:
            os.environ["PURPOSEGUARD_BAGGAGE_KEYS"] = before


def _serve(
    app: Celery, attribute: str, broker: str, audit_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Worker:
    return Worker(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            f"jobs:{attribute}",
            "worker",
            "--pool=prefork",
            "-c",
            "1",
            "-Q",
            app.conf.task_default_queue,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "warning",
        ],
        worker_env(broker, audit_url),
        tmp_path_factory.mktemp(attribute) / "worker.log",
    )


@pytest.fixture(scope="module")
def workers(
    redis_server: RedisServer, postgres: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Three worker processes on one redis: the redis backend, the rpc backend, extended results."""
    # The database test_jobs_on_redis uses: jobs.app keeps the first connection it makes.
    broker = redis_server.url(1)
    audit_url = postgres.create_database()
    AuditLog(audit_url).close()
    for app in (jobs.app, jobs.rpc_app):
        app.conf.update(broker_url=broker)
    jobs.app.conf.update(result_backend=broker)
    jobs.extended_app.conf.update(broker_url=broker, result_backend=broker)
    running = [
        _serve(jobs.app, "app", broker, audit_url, tmp_path_factory),
        _serve(jobs.rpc_app, "rpc_app", broker, audit_url, tmp_path_factory),
        _serve(jobs.extended_app, "extended_app", broker, audit_url, tmp_path_factory),
    ]
    pg_celery.instrument()
    try:
        # Up once each answers.
        for task in (jobs.celery_inspect, jobs.rpc_inspect, jobs.extended_inspect):
            task.delay().get(timeout=60)
        yield
    finally:
        pg_celery.uninstrument()
        for worker in running:
            worker.stop()


# -- the rpc result backend ---------------------------------------------------------------


def _polled(app: Celery, task_id: str) -> dict[str, Any]:
    """The backend's meta of ``task_id``, read until the task is done."""
    deadline = time.monotonic() + 30
    meta = app.backend.get_task_meta(task_id)
    while meta["status"] not in ("SUCCESS", "FAILURE") and time.monotonic() < deadline:
        time.sleep(0.05)
        meta = app.backend.get_task_meta(task_id)
    return dict(meta)


def test_celery_rpc_a_result_comes_back_with_what_the_task_read(workers: None) -> None:
    from celery.backends.rpc import RPCBackend

    assert isinstance(jobs.rpc_app.backend, RPCBackend)
    with pg.zone() as reader:
        value = jobs.rpc_learn.delay().get(timeout=30)
        assert json.loads(value) == {"body": "a mail body"}
        assert pg.labels_of(value) == {CONTENT}
        assert reader.categories == {CONTENT}
    # A task that read nothing hands back a plain value.
    with pg.zone() as plain_reader:
        assert pg.labels_of(jobs.rpc_inspect.delay().get(timeout=30)) == frozenset()
        assert plain_reader.categories == frozenset()


def test_celery_rpc_a_result_read_as_a_property_carries_what_the_task_read(workers: None) -> None:
    learned = jobs.rpc_learn.delay()
    # Read as a property only (no get()): the rpc backend polls the reply queue.
    with pg.zone() as reader:
        deadline = time.monotonic() + 30
        while not learned.ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reader.categories == frozenset()  # a status check learns nothing of the data
        value = learned.result
        assert pg.labels_of(value) == {CONTENT}
        assert reader.categories == {CONTENT}


def test_celery_rpc_the_backend_s_own_meta_carries_what_the_task_read(workers: None) -> None:
    # Polled by task id, as a status page would (an rpc result is delivered
    # once: read by get(), it is no longer in the reply queue).
    learned = jobs.rpc_learn.delay()
    meta = _polled(jobs.rpc_app, learned.id)
    assert meta["status"] == "SUCCESS"
    assert pg.labels_of(meta["result"]) == {CONTENT}


def test_celery_rpc_a_failed_task_s_error_tells_the_reader_what_it_read(workers: None) -> None:
    with pg.zone() as reader, pytest.raises(Exception, match="the job failed"):
        jobs.rpc_fail.delay().get(timeout=30)
    assert reader.categories == {CONTENT}


def test_celery_rpc_a_group_s_results_carry_what_the_tasks_read(workers: None) -> None:
    from celery import group

    members = group(jobs.rpc_learn.s(), jobs.rpc_inspect.s()).apply_async()
    with pg.zone() as reader:
        bodies = members.get(timeout=30)
        assert [pg.labels_of(body) for body in bodies] == [{CONTENT}, frozenset()]
        assert reader.categories == {CONTENT}


# -- results stored with the task's arguments (result_extended) ----------------------------------


def test_celery_extended_results_keep_the_labels_of_the_stored_arguments(workers: None) -> None:
    from celery.result import AsyncResult

    sent = jobs.extended_inspect.delay(pg.label(MARKER, CRM), note=pg.label(MARKER, CRM))
    assert sent.get(timeout=30)["zone"] == [CRM]
    # A new handle on the same task id, as another request (a dashboard) would make.
    with pg.zone() as reader:
        handle = AsyncResult(sent.id, app=jobs.extended_app)
        assert handle.name == "pgjobs.extended.inspect"
        args, kwargs = handle.args, handle.kwargs
        assert list(args) == [MARKER] and dict(kwargs) == {"note": MARKER}
        assert pg.labels_of(args) == {CRM} and pg.labels_of(kwargs) == {CRM}
        assert reader.categories == {CRM}
    meta = jobs.extended_app.backend.get_task_meta(sent.id)
    assert pg.labels_of(meta["args"]) == {CRM} and pg.labels_of(meta["kwargs"]) == {CRM}
    [(_, many)] = jobs.extended_app.backend.get_many([sent.id])
    assert pg.labels_of(many["args"]) == {CRM} and pg.labels_of(many["kwargs"]) == {CRM}


def test_celery_extended_results_of_a_task_that_expired_before_it_ran_keep_the_labels(workers: None) -> None:
    from datetime import datetime, timedelta, timezone

    from celery.result import AsyncResult

    # The worker stores its state without running it: no zone of the task is open.
    sent = jobs.extended_inspect.apply_async(
        args=[pg.label(MARKER, CRM)], expires=datetime.now(timezone.utc) - timedelta(minutes=1)
    )
    sent.get(timeout=30, propagate=False)
    assert sent.state == "REVOKED"
    with pg.zone() as reader:
        args = AsyncResult(sent.id, app=jobs.extended_app).args
        assert list(args) == [MARKER] and pg.labels_of(args) == {CRM}
        assert reader.categories == {CRM}


def test_celery_extended_results_of_plain_arguments_stay_plain(workers: None) -> None:
    from celery.result import AsyncResult

    sent = jobs.extended_inspect.delay("ticket-7")
    sent.get(timeout=30)
    with pg.zone() as reader:
        handle = AsyncResult(sent.id, app=jobs.extended_app)
        assert list(handle.args) == ["ticket-7"] and pg.labels_of(handle.args) == frozenset()
        assert reader.categories == frozenset()


# -- results that cannot carry a label ---------------------------------------------------------


@pytest.mark.parametrize(("answer", "expected"), [("true", True), ("false", False), ("none", None)])
def test_celery_an_answer_that_cannot_carry_a_label_tells_the_reader_s_zone_every_way_it_is_read(
    workers: None, answer: str, expected: Any
) -> None:
    from celery import chord, group
    from celery.result import AsyncResult

    sent = jobs.celery_answer.delay(answer)
    sent.get(timeout=30)
    backend = jobs.app.backend
    reads = {
        "get": lambda: AsyncResult(sent.id, app=jobs.app).get(timeout=30),
        "result": lambda: AsyncResult(sent.id, app=jobs.app).result,
        "get_result": lambda: backend.get_result(sent.id),
        "get_task_meta": lambda: backend.get_task_meta(sent.id)["result"],
        "get_many": lambda: dict(backend.get_many([sent.id]))[sent.id]["result"],
    }
    for how, read in reads.items():
        with pg.zone() as reader:
            assert read() is expected, how
            assert reader.categories == {CONTENT}, how
    members = group(jobs.celery_answer.s(answer), jobs.celery_inspect.s()).apply_async()
    with pg.zone() as reader:
        assert members.get(timeout=30)[0] is expected
        assert reader.categories == {CONTENT}
    # A status check still learns nothing.
    with pg.zone() as polling:
        handle = AsyncResult(sent.id, app=jobs.app)
        assert handle.state == "SUCCESS" and handle.ready()
        assert backend.get_state(sent.id) == "SUCCESS"
        assert polling.categories == frozenset()
    # A chord's callback knows what the answering task read.
    for header in (
        [jobs.celery_answer.si(answer), jobs.celery_inspect.si()],
        [jobs.celery_inspect.si(), jobs.celery_answer.si(answer)],
    ):
        assert chord(header)(jobs.celery_inspect.s()).get(timeout=60)["zone"] == [CONTENT]


def test_celery_rpc_an_answer_that_cannot_carry_a_label_tells_the_reader_s_zone(workers: None) -> None:
    with pg.zone() as reader:
        assert jobs.rpc_answer.delay("true").get(timeout=30) is True
        assert reader.categories == {CONTENT}
    sent = jobs.rpc_answer.delay("none")
    with pg.zone() as reader:
        assert _polled(jobs.rpc_app, sent.id)["result"] is None
        assert reader.categories == {CONTENT}
