"""Celery and RQ on a real redis-server, with worker processes started here:
purpose, tenant and zone travel with the job; a forbidden job is refused in
the worker and recorded once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jobs
import pytest
from celery import Celery
from purposeguard.integrations import baggage
from purposeguard.integrations import celery as pg_celery
from purposeguard.integrations import rq as pg_rq
from redis import Redis
from rq import Queue
from services import RedisServer

import purposeguard as pg
from purposeguard.audit import AuditLog

HERE = Path(__file__).resolve().parent
CONTENT = jobs.CONTENT
# Publisher and workers share a baggage key, as peers that trust each other do
# (purposeguard's baggage members are signed where signing is available).
BAGGAGE_KEY = "jobs-test-baggage-key-0123456789abcdef"


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


def worker_env(broker: str, audit: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PG_JOBS_WORKER="1",
        PG_JOBS_BROKER=broker,
        PG_JOBS_AUDIT=audit,
        PG_JOBS_CONTEXT_MODE="enforce",
        PURPOSEGUARD_BAGGAGE_KEYS=BAGGAGE_KEY,
        PYTHONPATH=os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]),
    )
    return env


class Worker:
    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.output = log.open("w")
        self.process = subprocess.Popen(
            command, cwd=HERE, env=env, stdout=self.output, stderr=subprocess.STDOUT
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.output.close()


def violations_in(audit_url: str, function_suffix: str) -> list[dict[str, Any]]:
    with AuditLog(audit_url, readonly=True) as log:
        assert log.verify().ok
        return [
            e.data
            for e in log.records()
            if e.kind == "violation" and e.data["function"].endswith(function_suffix)
        ]


def recorded_once(audit_url: str, function_suffix: str) -> dict[str, Any]:
    """The one violation a refused job left, after giving a second one time to appear."""
    deadline = time.monotonic() + 20
    found: list[dict[str, Any]] = []
    while not found and time.monotonic() < deadline:
        found = violations_in(audit_url, function_suffix)
        time.sleep(0.1)
    time.sleep(1.0)
    found = violations_in(audit_url, function_suffix)
    assert len(found) == 1, found
    return found[0]


# -- Celery ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def celery_worker(
    redis_server: RedisServer, postgres: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A Celery worker process (prefork pool) on redis; yields its audit URL."""
    broker = redis_server.url(1)
    audit_url = postgres.create_database()
    AuditLog(audit_url).close()
    jobs.app.conf.update(broker_url=broker, result_backend=broker)
    worker = Worker(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "jobs",
            "worker",
            "--pool=prefork",
            "-c",
            "1",
            "-Q",
            "pgjobs",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "warning",
        ],
        worker_env(broker, audit_url),
        tmp_path_factory.mktemp("celery") / "worker.log",
    )
    pg_celery.instrument()
    try:
        # Up once it answers.
        jobs.celery_inspect.delay().get(timeout=60)
        yield audit_url
    finally:
        pg_celery.uninstrument()
        worker.stop()


def test_celery_carries_purpose_tenant_and_zone_to_a_worker_process(celery_worker: str) -> None:
    with pg.zone(tenant="contoso"), pg.purpose("service.operations"):
        pg.label("mail body", CONTENT)
        result = jobs.celery_inspect.delay()
    assert result.get(timeout=30) == {"purpose": "service.operations", "tenant": "contoso", "zone": [CONTENT]}
    # Each job runs in a zone of its own.
    assert jobs.celery_inspect.delay().get(timeout=30) == {"purpose": None, "tenant": None, "zone": []}


def test_celery_runs_an_allowed_job(celery_worker: str) -> None:
    with pg.zone(tenant="contoso"):
        pg.label("mail body", CONTENT)
        outcome = jobs.celery_operate.delay("T-1").get(timeout=30)
    assert outcome == {
        "ticket": "T-1",
        "purpose": "service.operations",
        "tenant": "contoso",
        "zone": [CONTENT],
    }


@pytest.mark.parametrize("how", ["labelled_argument", "zone_holds_content", "nothing_protected"])
def test_celery_a_message_s_argument_repr_names_no_argument_where_the_data_is_protected(
    celery_worker: str, marker: str, how: str
) -> None:
    from celery import signals

    sent: list[dict[str, Any]] = []

    def seen(headers: Any = None, **_: Any) -> None:
        # Connected after purposeguard's receiver: what goes to the broker.
        sent.append(dict(headers or {}))

    signals.before_task_publish.connect(seen, weak=False)
    try:
        with pg.zone(tenant="contoso"):
            if how == "labelled_argument":
                result = jobs.celery_operate.delay(pg.label(marker, "customer_data.content.crm"))
            elif how == "zone_holds_content":
                body = pg.label(marker, CONTENT)
                result = jobs.celery_operate.delay(f"re: {body}")
            else:
                result = jobs.celery_inspect.delay(marker)
        result.get(timeout=30)
    finally:
        signals.before_task_publish.disconnect(seen)
    [headers] = sent
    if how == "nothing_protected":
        # Nothing protected: Celery's own repr, as it made it.
        assert marker in headers["argsrepr"]
    else:
        assert marker not in headers["argsrepr"] and marker not in headers["kwargsrepr"]
        assert "withheld" in headers["argsrepr"]


def test_celery_refuses_a_forbidden_job_in_the_worker_and_records_it_once(
    celery_worker: str, marker: str
) -> None:
    # Published by name from an app that does not know the task: only the
    # worker can check it (a publisher that knows it refuses it at once, below).
    remote = Celery("pgjobs-remote", broker=jobs.app.conf.broker_url, backend=jobs.app.conf.result_backend)
    remote.conf.update(task_serializer="json", accept_content=["json"], task_default_queue="pgjobs")
    with pg.zone(tenant="contoso"):
        pg.label(marker, CONTENT)
        result = remote.send_task("pgjobs.advertise", args=["celery-spring"])
    result.get(timeout=30, propagate=False)
    assert result.state == "FAILURE"
    assert "no-advertising" in str(result.result) and marker not in str(result.result)
    # Rebuilt from Celery's JSON result whole: the caller can catch it and read its records.
    with pytest.raises(pg.PurposeViolation) as caught:
        result.get(timeout=30)
    assert [(v.rule, v.via, v.tenant) for v in caught.value.violations] == [
        ("no-advertising", "context", "contoso")
    ]
    assert marker not in repr(caught.value)
    record = recorded_once(celery_worker, "advertise_job")
    assert (record["category"], record["purpose"], record["via"], record["tenant"], record["mode"]) == (
        CONTENT,
        "advertising",
        "context",
        "contoso",
        "enforce",
    )
    assert marker not in str(record)


@pytest.mark.parametrize("forgery", ["wrong key", "another task's header", "unsigned"])
def test_celery_a_forged_header_gains_nothing_in_the_worker_process(celery_worker: str, forgery: str) -> None:
    """A publisher without the shared key cannot set the worker's purpose, tenant
    or zone, nor make a job be refused and recorded."""
    task_id = f"forged-{forgery.replace(' ', '-')}-{time.monotonic_ns()}"
    members: dict[str, Any] = {"purpose": "service.security", "tenant": "contoso", "categories": [CONTENT]}
    if forgery == "wrong key":
        header = baggage.signed_header(
            **members, key="a-key-the-worker-does-not-hold-0123", channel=f"celery task {task_id}"
        )
    elif forgery == "another task's header":
        header = baggage.signed_header(**members, key=BAGGAGE_KEY, channel="celery task some-other-task")
    else:
        header = f"purposeguard.tenant=contoso,purposeguard.zone={CONTENT}"
    outcome = jobs.celery_inspect.apply_async(task_id=task_id, headers={pg_celery.HEADER: header})
    assert outcome.get(timeout=30) == {"purpose": None, "tenant": None, "zone": []}
    before = len(violations_in(celery_worker, "advertise_job"))
    advertised = jobs.celery_advertise.apply_async(
        args=["forged-spring"], task_id=task_id + "-ad", headers={pg_celery.HEADER: header}
    )
    assert advertised.get(timeout=30)["tenant"] is None  # ran: the forged zone refused nothing
    time.sleep(1.0)
    assert len(violations_in(celery_worker, "advertise_job")) == before


# -- RQ ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rq_queue(
    redis_server: RedisServer, postgres: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Queue, str]]:
    """An RQ worker process (forking a work horse per job) on redis; the queue and its audit URL."""
    url = redis_server.url(2)
    audit_url = postgres.create_database()
    AuditLog(audit_url).close()
    rq_binary = str(Path(sys.executable).parent / "rq")
    worker = Worker(
        [
            rq_binary,
            "worker",
            "-u",
            url,
            "-c",
            "jobs",
            "--path",
            str(HERE),
            "--disable-job-desc-logging",
            "pgjobs",
        ],
        worker_env(url, audit_url),
        tmp_path_factory.mktemp("rq") / "worker.log",
    )
    connection = Redis.from_url(url)
    pg_rq.instrument()
    try:
        yield Queue("pgjobs", connection=connection), audit_url
    finally:
        pg_rq.uninstrument()
        worker.stop()
        connection.close()


def wait_job(job: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = job.get_status(refresh=True)
        if status in ("finished", "failed"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job.id} did not finish in time")


def test_rq_carries_purpose_tenant_and_zone_to_a_worker_process(rq_queue: tuple[Queue, str]) -> None:
    queue, _ = rq_queue
    with pg.zone(tenant="contoso"), pg.purpose("service.operations"):
        pg.label("mail body", CONTENT)
        job = queue.enqueue(jobs.inspect_job)
    assert wait_job(job) == "finished"
    assert job.return_value() == {"purpose": "service.operations", "tenant": "contoso", "zone": [CONTENT]}
    plain = queue.enqueue(jobs.inspect_job)
    assert wait_job(plain) == "finished"
    assert plain.return_value() == {"purpose": None, "tenant": None, "zone": []}


def test_rq_labels_of_arguments_travel_though_the_serializer_drops_them(
    rq_queue: tuple[Queue, str], marker: str
) -> None:
    queue, _ = rq_queue
    job = queue.enqueue(jobs.operate_job, pg.label(marker, "customer_data.content.crm"))
    assert wait_job(job) == "finished"
    assert job.return_value()["zone"] == ["customer_data.content.crm"]  # type: ignore[index]


def test_rq_refuses_a_forbidden_job_in_the_worker_and_records_it_once(
    rq_queue: tuple[Queue, str], marker: str
) -> None:
    queue, audit_url = rq_queue
    with pg.zone(tenant="contoso"):
        pg.label(marker, CONTENT)
        # By dotted name: the enqueuer does not hold the function, only the worker can check it.
        job = queue.enqueue(f"{jobs.__name__}.advertise_job", "rq-spring")
    assert wait_job(job) == "failed"
    job.refresh()
    assert "no-advertising" in str(job.latest_result().exc_string)  # type: ignore[union-attr]
    assert marker not in str(job.latest_result().exc_string)  # type: ignore[union-attr]
    record = recorded_once(audit_url, "advertise_job")
    assert (record["category"], record["purpose"], record["via"], record["tenant"], record["mode"]) == (
        CONTENT,
        "advertising",
        "context",
        "contoso",
        "enforce",
    )


def test_rq_enqueue_is_an_egress_check(rq_queue: tuple[Queue, str], marker: str) -> None:
    queue, _ = rq_queue
    pg.configure("trust-center", mode="enforce")
    count = queue.count
    content = pg.label(
        marker, CONTENT
    )  # read before: labelling under advertising is itself a use (via="source")
    with pg.purpose("advertising"), pytest.raises(pg.PurposeViolation) as refused:
        queue.enqueue(jobs.inspect_job, content)
    assert refused.value.violations[0].via == "egress"
    assert queue.count == count  # nothing reached Redis


@pytest.mark.parametrize("how", ["labelled_argument", "zone_holds_content", "job_create"])
def test_rq_a_job_s_description_names_no_argument_where_the_data_is_protected(
    rq_queue: tuple[Queue, str], marker: str, how: str
) -> None:
    from rq.job import Job

    queue, _ = rq_queue
    with pg.zone(tenant="contoso"), pg.purpose("service.operations"):
        if how == "labelled_argument":
            job = queue.enqueue(jobs.operate_job, pg.label(marker, "customer_data.content.crm"))
        elif how == "zone_holds_content":
            # A plain argument made from what the zone read (an f-string drops labels).
            body = pg.label(marker, CONTENT)
            job = queue.enqueue(jobs.operate_job, f"re: {body}")
        else:
            body = pg.label(marker, CONTENT)
            job = queue.enqueue_job(
                Job.create(jobs.operate_job, args=(f"re: {body}",), connection=queue.connection)
            )
    # RQ stores the description in Redis and its worker logs it: the call's
    # arguments are not in it.
    stored = Job.fetch(job.id, connection=queue.connection)
    for description in (job.description, stored.description):
        assert marker not in str(description)
        assert str(description).startswith(f"{jobs.__name__}.operate_job(")
    assert wait_job(job) == "finished"


class _Draft:
    """An argument whose repr shows state that changes: RQ's description of
    it differs from a second rendering of the same call."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.shown = 0

    def __repr__(self) -> str:
        self.shown += 1
        return f"Draft({self.body}, shown={self.shown})"


@pytest.mark.parametrize("how", ["enqueue", "job_create"])
def test_rq_a_description_rq_made_is_withheld_however_its_arguments_render(
    rq_queue: tuple[Queue, str], marker: str, how: str
) -> None:
    from rq.job import Job

    queue, _ = rq_queue
    # No worker serves this queue: the jobs stay stored, unrun.
    idle = Queue("pgjobs-idle", connection=queue.connection)
    try:
        with pg.zone(tenant="contoso"):
            pg.label(marker, CONTENT)
            draft = _Draft(marker)
            if how == "enqueue":
                job = idle.enqueue(jobs.operate_job, draft)
            else:
                job = idle.enqueue_job(
                    Job.create(jobs.operate_job, args=(draft,), connection=idle.connection)
                )
        assert marker not in str(job.description)
        assert marker not in str(Job.fetch(job.id, connection=idle.connection).description)
    finally:
        idle.empty()


def test_rq_a_job_s_description_is_rq_s_own_where_nothing_is_protected(rq_queue: tuple[Queue, str]) -> None:
    queue, _ = rq_queue
    job = queue.enqueue(jobs.operate_job, "ticket-7")
    assert job.description == f"{jobs.__name__}.operate_job('ticket-7')"
    given = queue.enqueue(jobs.operate_job, "ticket-8", description="nightly reindex")
    assert given.description == "nightly reindex"
    assert wait_job(job) == "finished" and wait_job(given) == "finished"


def test_rq_a_labelled_description_is_checked_as_an_argument(
    rq_queue: tuple[Queue, str], marker: str
) -> None:
    queue, _ = rq_queue
    pg.configure("trust-center", mode="enforce")
    content = pg.label(marker, CONTENT)
    waiting = queue.count
    with pg.purpose("advertising"), pytest.raises(pg.PurposeViolation) as refused:
        queue.enqueue(jobs.operate_job, "ticket-9", description=content)
    assert refused.value.violations[0].via == "egress"
    assert queue.count == waiting


def test_rq_uninstrument_restores_rq(rq_queue: tuple[Queue, str]) -> None:
    from rq.job import Job

    pg_rq.uninstrument()
    try:
        assert not pg_rq.is_instrumented()
        assert not hasattr(Job.perform, "__wrapped__") and not hasattr(Queue.create_job, "__wrapped__")
        for name in ("enqueue_job", "schedule_job"):
            assert not hasattr(getattr(Queue, name), "__wrapped__")
        for name in ("success_callback", "failure_callback", "stopped_callback"):
            assert Job.__dict__[name].fget.__module__.startswith("rq")
    finally:
        pg_rq.instrument()
    pg_rq.instrument()  # idempotent
    assert Job.perform.__wrapped__.__name__ == "perform"  # type: ignore[attr-defined]
    for name in ("success_callback", "failure_callback", "stopped_callback"):
        assert Job.__dict__[name].fget.__module__ == pg_rq.__name__


@pytest.fixture
def marker() -> str:
    return "PGMARKER-jobs-4b1e-do-not-leak"


def test_a_publisher_that_knows_the_task_refuses_it_before_the_broker(
    celery_worker: str, rq_queue: tuple[Queue, str], marker: str
) -> None:
    queue, _audit_url = rq_queue
    waiting = queue.count
    with pg.zone(tenant="contoso"):
        pg.label(marker, CONTENT)
        with pytest.raises(pg.PurposeViolation) as celery_refused:
            jobs.celery_advertise.delay("celery-spring")
        with pytest.raises(pg.PurposeViolation) as rq_refused:
            queue.enqueue(jobs.advertise_job, "rq-spring")
    for refused in (celery_refused, rq_refused):
        assert {(v.via, v.rule) for v in refused.value.violations} == {("context", "no-advertising")}
        assert marker not in str(refused.value)
    assert queue.count == waiting
    # A labelled argument, no zone: refused as an argument of the task.
    with pytest.raises(pg.PurposeViolation) as argument:
        queue.enqueue(jobs.advertise_job, pg.label(marker, CONTENT))
    assert [v.via for v in argument.value.violations] == ["argument"]


# -- every way a job reaches Redis is checked, once ----------------------------------------------


@pg.purpose("improvement")
def improve_job(text: str) -> str:
    return "improved"


def improvement_allowed_here(*text: str) -> dict[str, Any]:
    """Run in the job's zone: may what the zone holds be used for improvement?"""
    try:
        with pg.purpose("improvement"):
            pg.check("plain text")  # only the zone speaks
        allowed = True
    except pg.PurposeViolation:
        allowed = False
    return {"tenant": pg.current_tenant(), "improvement": allowed}


def _stored(queue: Queue, job_id: str) -> bool:
    return bool(queue.connection.exists(f"rq:job:{job_id}"))


@pytest.mark.parametrize(
    "how", ["enqueue_job", "schedule_job", "enqueue_many", "enqueue_in", "save_and_push"]
)
def test_rq_a_job_made_any_way_is_checked_before_redis(
    rq_queue: tuple[Queue, str], marker: str, how: str
) -> None:
    from datetime import datetime, timedelta, timezone

    from rq.job import Job

    queue, _ = rq_queue
    pg.configure("trust-center", mode="enforce")
    body = pg.label(marker, CONTENT)
    job_id = f"checked-{how}-{time.monotonic_ns()}"
    waiting = queue.count
    with pytest.raises(pg.PurposeViolation) as refused:
        if how == "enqueue_job":
            queue.enqueue_job(
                Job.create(jobs.advertise_job, args=(body,), id=job_id, connection=queue.connection)
            )
        elif how == "schedule_job":
            job = Job.create(jobs.advertise_job, args=(body,), id=job_id, connection=queue.connection)
            queue.schedule_job(job, datetime.now(timezone.utc) + timedelta(minutes=5))
        elif how == "save_and_push":
            job = Job.create(
                jobs.advertise_job, args=(body,), id=job_id, origin=queue.name, connection=queue.connection
            )
            job.save()
            queue.push_job_id(job.id)
        elif how == "enqueue_many":
            queue.enqueue_many([Queue.prepare_data(jobs.advertise_job, args=(body,), job_id=job_id)])
        else:
            queue.enqueue_in(timedelta(minutes=5), jobs.advertise_job, body, job_id=job_id)
    assert [(v.via, v.rule) for v in refused.value.violations] == [("argument", "no-advertising")]
    assert marker not in str(refused.value)
    assert queue.count == waiting and not _stored(queue, job_id)


def test_rq_a_prepared_job_carries_purpose_tenant_and_zone_to_the_worker(rq_queue: tuple[Queue, str]) -> None:
    from rq.job import Job

    queue, _ = rq_queue
    with pg.zone(tenant="contoso"), pg.purpose("service.operations"):
        pg.label("mail body", CONTENT)
        job = queue.enqueue_job(Job.create(jobs.inspect_job, connection=queue.connection))
    assert pg_rq.META_KEY in job.meta
    assert wait_job(job) == "finished"
    assert job.return_value() == {"purpose": "service.operations", "tenant": "contoso", "zone": [CONTENT]}


def test_rq_a_saved_job_pushed_by_id_carries_purpose_tenant_and_zone_to_the_worker(
    rq_queue: tuple[Queue, str],
) -> None:
    from rq.job import Job

    queue, _ = rq_queue
    with pg.testing.capture() as seen, pg.zone(tenant="contoso"), pg.purpose("service.operations"):
        pg.label("mail body", CONTENT)
        job = Job.create(jobs.inspect_job, origin=queue.name, connection=queue.connection)
        job.save()
        queue.push_job_id(job.id)
    assert pg_rq.META_KEY in job.meta and seen == []
    assert wait_job(job) == "finished"
    assert job.return_value() == {"purpose": "service.operations", "tenant": "contoso", "zone": [CONTENT]}


def test_rq_enqueue_checks_and_records_once(rq_queue: tuple[Queue, str]) -> None:
    queue, _ = rq_queue
    pg.configure("trust-center", mode="trace")
    content = pg.label("mail body", CONTENT)
    with pg.testing.capture() as seen, pg.purpose("advertising"):
        job = queue.enqueue(jobs.inspect_job, content)
    assert [(v.via, v.rule) for v in seen] == [("egress", "no-advertising")]
    assert wait_job(job) == "finished"


def test_rq_a_job_enqueued_again_keeps_the_zone_it_carried(rq_queue: tuple[Queue, str]) -> None:
    from rq.job import Job

    queue, _ = rq_queue
    with pg.zone(tenant="contoso"):
        pg.label("mail body", CONTENT)
        first = queue.enqueue_job(Job.create(jobs.inspect_job, connection=queue.connection))
    assert wait_job(first) == "finished"
    again = Job.fetch(first.id, connection=queue.connection)
    queue.enqueue_job(again)  # from a context that holds nothing
    assert wait_job(again) == "finished"
    assert again.return_value() == {"purpose": None, "tenant": "contoso", "zone": [CONTENT]}


def _callback_saw(queue: Queue, job: Any) -> Any:
    raw = queue.connection.get(f"pgjobs:callback:{job.id}")
    return None if raw is None else json.loads(raw) if raw != b"ran" else "ran"


def test_rq_a_success_callback_runs_in_the_job_s_zone_with_its_purpose(rq_queue: tuple[Queue, str]) -> None:
    from rq import Callback

    queue, _ = rq_queue
    with pg.zone(tenant="contoso"), pg.purpose("service.operations"):
        job = queue.enqueue(jobs.learn_job, on_success=Callback(jobs.record_callback_state))
    assert wait_job(job) == "finished"
    # What the job itself read in the worker is known to its callback.
    assert _callback_saw(queue, job) == {
        "purpose": "service.operations",
        "tenant": "contoso",
        "zone": [CONTENT],
    }


def test_rq_a_failure_callback_runs_in_the_job_s_zone(rq_queue: tuple[Queue, str]) -> None:
    from rq import Callback

    queue, _ = rq_queue
    with pg.zone(tenant="contoso"):
        job = queue.enqueue(jobs.fail_job, on_failure=Callback(jobs.record_callback_state))
    assert wait_job(job) == "failed"
    assert _callback_saw(queue, job) == {"purpose": None, "tenant": "contoso", "zone": [CONTENT]}


def test_rq_a_callback_declared_for_a_forbidden_purpose_is_refused_with_what_the_job_learned(
    rq_queue: tuple[Queue, str],
) -> None:
    from rq import Callback

    queue, audit_url = rq_queue
    # Nothing labelled travels with the job: only what it read in the worker
    # (and returned laundered) stands between the callback and the data.
    job = queue.enqueue(jobs.learn_job, on_success=Callback(jobs.advertise_callback))
    assert wait_job(job) == "failed"
    assert _callback_saw(queue, job) is None
    job.refresh()
    assert "no-advertising" in str(job.latest_result().exc_string)  # type: ignore[union-attr]
    record = recorded_once(audit_url, "advertise_callback")
    assert (record["category"], record["purpose"], record["mode"]) == (CONTENT, "advertising", "enforce")


def _held(queue: Queue) -> Queue:
    """A queue on the same Redis that no worker serves: its jobs are run here, by hand."""
    return Queue("pgjobs-held", connection=queue.connection)


def test_rq_another_tenants_argument_is_not_published_on_the_zone_tenants_consent(
    rq_queue: tuple[Queue, str], consents: Any, marker: str
) -> None:
    queue = _held(rq_queue[0])
    waiting = queue.count
    globex = pg.label(marker, CONTENT, tenant="globex")  # read before the zone opened
    with pg.zone(tenant="acme"), pytest.raises(pg.PurposeViolation) as refused:
        queue.enqueue(improve_job, globex)
    assert {(v.via, v.tenant) for v in refused.value.violations} == {("argument", "globex")}
    assert queue.count == waiting
    # acme's own data, in acme's zone: its consent covers it.
    with pg.zone(tenant="acme"):
        queue.enqueue(improve_job, pg.label("acme mail", CONTENT, tenant="acme"))
    assert queue.count == waiting + 1


def test_rq_a_zone_of_several_tenants_reaches_the_job_as_no_ones(
    rq_queue: tuple[Queue, str], consents: Any
) -> None:
    from rq.job import Job

    queue = _held(rq_queue[0])
    with pg.zone(tenant="acme"):
        globex = pg.label("globex private mail", CONTENT, tenant="globex")
        with pg.purpose("service.operations"):
            job = queue.enqueue_job(
                Job.create(improvement_allowed_here, args=(f"copy: {globex}",), connection=queue.connection)
            )
    # Performed here, where the consent store is, as the worker performs it.
    assert Job.fetch(job.id, connection=queue.connection).perform() == {"tenant": None, "improvement": False}
    # One tenant's zone stays that tenant's.
    with pg.zone(tenant="acme"):
        pg.label("acme mail", CONTENT, tenant="acme")
        job = queue.enqueue_job(Job.create(improvement_allowed_here, connection=queue.connection))
    assert Job.fetch(job.id, connection=queue.connection).perform() == {"tenant": "acme", "improvement": True}


def test_celery_publishing_is_an_egress_check(celery_worker: str, marker: str) -> None:
    """Any task, declared with a purpose or not: its arguments leave the
    process for the broker under the current purpose, as an RQ job's do."""
    pg.configure("trust-center", mode="enforce")
    content = pg.label(marker, CONTENT)  # read before: labelling under advertising is a use too
    with pg.purpose("advertising"), pytest.raises(pg.PurposeViolation) as refused:
        jobs.celery_inspect.delay(content)
    assert [(v.via, v.rule) for v in refused.value.violations] == [("egress", "no-advertising")]
    assert marker not in str(refused.value)
    # What the current purpose may hold is sent.
    with pg.purpose("service.operations"):
        outcome = jobs.celery_inspect.delay(pg.label("mail body", CONTENT)).get(timeout=30)
    assert outcome["zone"] == [CONTENT]


def test_celery_another_tenants_argument_is_not_published_on_the_zone_tenants_consent(
    celery_worker: str, consents: Any, marker: str
) -> None:
    task = jobs.app.task(name="pgjobs.improve", shared=False)(improve_job)
    globex = pg.label(marker, CONTENT, tenant="globex")
    with pg.zone(tenant="acme"), pytest.raises(pg.PurposeViolation) as refused:
        task.delay(globex)
    assert {(v.via, v.tenant) for v in refused.value.violations} == {("argument", "globex")}


def test_celery_a_zone_of_several_tenants_reaches_the_worker_as_no_ones(
    celery_worker: str, consents: Any
) -> None:
    with pg.zone(tenant="acme"):
        globex = pg.label("globex private mail", CONTENT, tenant="globex")
        with pg.purpose("service.operations"):
            outcome = jobs.celery_inspect.delay(f"copy: {globex}").get(timeout=30)
    assert (outcome["tenant"], outcome["zone"]) == (None, [CONTENT])


# -- results come back with what the job read ------------------------------------------------


@pg.purpose("advertising")
def advertise_with(value: Any) -> None:
    """Guarded in the reading process: refused where its zone holds content."""


def _enforcing() -> None:
    pg.configure("trust-center", mode="enforce", context_mode="enforce")


def test_celery_a_result_comes_back_with_what_the_task_read_in_the_worker(celery_worker: str) -> None:
    _enforcing()
    # Nothing labelled goes to the task: it reads content in the worker and
    # returns it laundered (a JSON string the serializer carries as text).
    with pg.zone() as reader:
        value = jobs.celery_learn.delay().get(timeout=30)
        assert json.loads(value) == {"body": "a mail body"}
        assert pg.labels_of(value) == {CONTENT}
        assert CONTENT in reader.categories
        # Used for what the data forbids, in the reader's zone: refused,
        # though the value handed over is a plain copy.
        with pytest.raises(pg.PurposeViolation) as refused:
            advertise_with(str.__str__(value))
    assert {(v.via, v.category) for v in refused.value.violations} == {("context", CONTENT)}
    # Read outside any zone, the value still carries the labels.
    assert pg.labels_of(jobs.celery_learn.delay().get(timeout=30)) == {CONTENT}
    # A task that read nothing hands back a plain value.
    assert pg.labels_of(jobs.celery_inspect.delay().get(timeout=30)) == frozenset()


def test_celery_a_result_read_as_a_property_or_in_a_group_carries_what_the_tasks_read(
    celery_worker: str,
) -> None:
    from celery import group
    from celery.result import AsyncResult

    learned = jobs.celery_learn.delay()
    learned.get(timeout=30)
    # A new handle on the same task id, as another request would make.
    assert pg.labels_of(AsyncResult(learned.id, app=jobs.app).result) == {CONTENT}
    members = group(jobs.celery_learn.s(), jobs.celery_inspect.s()).apply_async()
    with pg.zone() as reader:
        bodies = members.get(timeout=30)
        assert [pg.labels_of(body) for body in bodies] == [{CONTENT}, frozenset()]
        assert reader.categories == {CONTENT}


@pytest.mark.parametrize(
    ("learner_first", "ignored"),
    [(True, False), (False, False), (True, True)],
    ids=["learner-first", "learner-last", "learner-ignores-its-result"],
)
def test_celery_a_chord_s_callback_knows_what_every_header_task_read(
    celery_worker: str, learner_first: bool, ignored: bool
) -> None:
    from celery import chord

    # One worker process, one task at a time: the header tasks finish in the
    # order sent, so the plain one finishes last in one of the two runs (the
    # callback is published from the zone of the one that finished last).
    learner = jobs.celery_learn_ignored if ignored else jobs.celery_learn
    header = [learner.s(), jobs.celery_inspect.s()]
    if not learner_first:
        header.reverse()
    with pg.zone() as reader:
        outcome = chord(header)(jobs.celery_inspect.s()).get(timeout=60)
        assert outcome["zone"] == [CONTENT]
        # The callback's own result carries it back to whoever reads it.
        assert pg.labels_of(outcome) == {CONTENT}
        assert reader.categories == {CONTENT}


def test_celery_a_chord_whose_header_holds_a_group_of_results_tells_its_callback_too(
    celery_worker: str,
) -> None:
    from celery import chain, chord, group

    # A chain that ends in a group, in the header: the backend joins the
    # header's results (kept as a group of groups) instead of reading its
    # stored parts. (A bare group in a header is flattened into it.)
    ends_in_group = chain(jobs.celery_inspect.si(), group(jobs.celery_learn.si(), jobs.celery_inspect.si()))
    header = [ends_in_group, jobs.celery_inspect.si()]
    outcome = chord(header)(jobs.celery_inspect.s()).get(timeout=60)
    assert outcome["zone"] == [CONTENT]


def test_celery_a_failed_task_s_error_and_traceback_tell_the_reader_what_it_read(celery_worker: str) -> None:
    failed = jobs.celery_fail.delay()
    with pg.zone() as reader:
        error = failed.get(timeout=30, propagate=False)
        assert isinstance(error, Exception)
        assert reader.categories == {CONTENT}
    assert pg.labels_of(failed.traceback) == {CONTENT}
    with pg.zone() as raising, pytest.raises(Exception, match="the job failed"):
        jobs.celery_fail.delay().get(timeout=30)
    assert raising.categories == {CONTENT}


def test_celery_the_backend_s_own_meta_carries_what_the_task_read(celery_worker: str) -> None:
    learned = jobs.celery_learn.delay()
    learned.get(timeout=30)
    failed = jobs.celery_fail.delay()
    failed.get(timeout=30, propagate=False)
    # Read as a dashboard or an admin script would, by task id.
    backend = jobs.app.backend
    meta = backend.get_task_meta(learned.id)
    assert meta["status"] == "SUCCESS"
    assert pg.labels_of(meta["result"]) == {CONTENT}
    assert backend.get_task_meta(failed.id)["status"] == "FAILURE"
    # Read by id several at once, as a dashboard would.
    many = dict(backend.get_many([learned.id]))
    assert pg.labels_of(many[learned.id]["result"]) == {CONTENT}
    # A status check reads the meta too: the zone learns nothing of the data.
    from celery.result import AsyncResult

    with pg.zone() as polling:
        handle = AsyncResult(learned.id, app=jobs.app)
        assert handle.state == "SUCCESS" and handle.ready() and handle.successful()
        assert polling.categories == frozenset()
    # A task that read nothing: Celery's meta as it is.
    plain = jobs.celery_inspect.delay()
    plain.get(timeout=30)
    assert pg.labels_of(backend.get_task_meta(plain.id)["result"]) == frozenset()


def test_celery_a_result_header_names_categories_never_values(celery_worker: str) -> None:
    learned = jobs.celery_learn.delay()
    learned.get(timeout=30)
    meta = jobs.app.backend.get_task_meta(learned.id)
    header = meta[pg_celery.HEADER]
    assert "customer_data.content.email" in header
    assert "mail" not in header.replace("customer_data.content.email", "")


def test_celery_a_result_header_copied_onto_another_task_gains_nothing(
    celery_worker: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = jobs.app.backend
    learned = jobs.celery_learn.delay()
    learned.get(timeout=30)
    meta = backend.get_task_meta(learned.id)
    forged_id = f"forged-{learned.id}"
    # Another task's result, with the learned task's signed header put on it.
    backend.client.set(
        backend.get_key_for_task(forged_id),
        backend.encode({**meta, "task_id": forged_id, "result": "plain text", "children": []}),
    )
    from celery.result import AsyncResult

    with pg.zone() as reader, caplog.at_level("WARNING", logger="purposeguard"):
        value = AsyncResult(forged_id, app=jobs.app).get(timeout=10)
    assert value == "plain text"
    assert pg.labels_of(value) == frozenset()
    assert reader.categories == frozenset()
    assert "badly signed" in caplog.text


def test_rq_a_result_comes_back_with_what_the_job_read_in_the_worker(rq_queue: tuple[Queue, str]) -> None:
    from rq.job import Job

    _enforcing()
    queue, _ = rq_queue
    job = queue.enqueue(jobs.learn_job)
    assert wait_job(job) == "finished"
    with pg.zone() as reader:
        value = job.return_value()
        assert isinstance(value, str)
        assert json.loads(value) == {"body": "a mail body"}
        assert pg.labels_of(value) == {CONTENT}
        assert CONTENT in reader.categories
        with pytest.raises(pg.PurposeViolation):
            advertise_with(str.__str__(value))
    # Read back by id, as another process would.
    latest = Job.fetch(job.id, connection=queue.connection).latest_result()
    assert latest is not None
    assert pg.labels_of(latest.return_value) == {CONTENT}
    plain = queue.enqueue(jobs.inspect_job)
    assert wait_job(plain) == "finished"
    assert pg.labels_of(plain.return_value()) == frozenset()


def test_rq_a_failed_job_s_error_text_carries_what_it_read(rq_queue: tuple[Queue, str]) -> None:
    queue, _ = rq_queue
    job = queue.enqueue(jobs.fail_job)
    assert wait_job(job) == "failed"
    with pg.zone() as reader:
        failure = job.latest_result()
        assert failure is not None
        assert "the job failed" in str(failure.exc_string)
        assert pg.labels_of(failure.exc_string) == {CONTENT}
        assert reader.categories == {CONTENT}
