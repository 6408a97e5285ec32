"""Jobs for the Celery and RQ tests, and the workers' settings.

Imported by the test process (to enqueue) and by the worker processes the
tests start. A worker (``PG_JOBS_WORKER=1``) configures purposeguard from the
environment: ``PG_JOBS_AUDIT`` (where records go) and
``PG_JOBS_CONTEXT_MODE``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from celery import Celery

import purposeguard as pg

CONTENT = "customer_data.content.email"


def state() -> dict[str, Any]:
    zone = pg.current_zone()
    return {
        "purpose": pg.current_purpose(),
        "tenant": pg.current_tenant(),
        "zone": sorted(zone.categories) if zone is not None else None,
    }


def inspect_job(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return state()


@pg.purpose("advertising")
def advertise_job(campaign: str) -> dict[str, Any]:
    return {"campaign": campaign, **state()}


@pg.purpose("service.operations")
def operate_job(ticket: str) -> dict[str, Any]:
    return {"ticket": ticket, **state()}


def learn_job() -> str:
    """Reads customer content in the worker and returns it laundered (no label)."""
    return json.dumps({"body": str(pg.label("a mail body", CONTENT))})


def answer_job(answer: str) -> Any:
    """Reads customer content in the worker and answers with a value that
    cannot carry a label (True, False, None)."""
    pg.label("a mail body", CONTENT)
    return {"true": True, "false": False, "none": None}[answer]


def fail_job() -> None:
    pg.label("a mail body", CONTENT)
    raise RuntimeError("the job failed")


def _callback_key(job: Any) -> str:
    return f"pgjobs:callback:{job.id}"


def record_callback_state(job: Any, connection: Any, *rest: Any) -> None:
    connection.set(_callback_key(job), json.dumps(state()))


@pg.purpose("advertising")
def advertise_callback(job: Any, connection: Any, *rest: Any) -> None:
    connection.set(_callback_key(job), "ran")


app = Celery(
    "pgjobs", broker=os.environ.get("PG_JOBS_BROKER", "memory://"), backend=os.environ.get("PG_JOBS_BROKER")
)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue="pgjobs",
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
)
celery_inspect = app.task(name="pgjobs.inspect")(inspect_job)
# Not shared with other Celery apps: a publisher app of its own sends it by
# name only, as another service's code would (see the tests).
celery_advertise = app.task(name="pgjobs.advertise", shared=False)(advertise_job)
celery_operate = app.task(name="pgjobs.operate")(operate_job)
celery_learn = app.task(name="pgjobs.learn")(learn_job)
# Stores no result: in a chord's header, its value still reaches the callback.
celery_learn_ignored = app.task(name="pgjobs.learn_ignored", ignore_result=True)(learn_job)
celery_fail = app.task(name="pgjobs.fail")(fail_job)
celery_answer = app.task(name="pgjobs.answer")(answer_job)


def _results_app(name: str, backend: str | None, **settings: Any) -> Celery:
    """A Celery app of its own, on a queue of its own, served by a worker of its own."""
    other = Celery(name, broker=os.environ.get("PG_JOBS_BROKER", "memory://"), backend=backend)
    other.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=name,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=1,
        **settings,
    )
    return other


# Results sent back as messages over the broker (here redis), not stored.
rpc_app = _results_app("pgjobs-rpc", "rpc://")
rpc_inspect = rpc_app.task(name="pgjobs.rpc.inspect", shared=False)(inspect_job)
rpc_learn = rpc_app.task(name="pgjobs.rpc.learn", shared=False)(learn_job)
rpc_answer = rpc_app.task(name="pgjobs.rpc.answer", shared=False)(answer_job)
rpc_fail = rpc_app.task(name="pgjobs.rpc.fail", shared=False)(fail_job)
# Results stored with the task's name, arguments and keyword arguments.
extended_app = _results_app("pgjobs-extended", os.environ.get("PG_JOBS_BROKER"), result_extended=True)
extended_inspect = extended_app.task(name="pgjobs.extended.inspect", shared=False)(inspect_job)

if os.environ.get("PG_JOBS_WORKER") == "1":
    from purposeguard.integrations import celery as pg_celery
    from purposeguard.integrations import rq as pg_rq

    pg.configure(
        "trust-center",
        context_mode=os.environ.get("PG_JOBS_CONTEXT_MODE", "trace"),
        audit=os.environ["PG_JOBS_AUDIT"],
    )
    pg_celery.instrument()
    pg_rq.instrument()
