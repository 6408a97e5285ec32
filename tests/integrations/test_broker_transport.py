"""``[transport] require_tls`` covers task brokers: a job's arguments cross the
network to Redis or RabbitMQ as plainly as a request body does.

The refusals here come before any connection is made (the broker addresses are
in TEST-NET-1, which nothing answers); the TLS cases are read from the URL the
integrations decide with, since reaching a TLS broker off-host is not possible
here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from purposeguard.integrations import celery as pg_celery
from purposeguard.integrations import rq as pg_rq
from redis import Redis
from rq import Queue

import purposeguard as pg

CONTENT = "customer_data.content.email"
OFF_HOST = "192.0.2.7"


@pytest.fixture(autouse=True)
def _instrumented() -> Iterator[None]:
    pg.configure("trust-center", mode="enforce")
    pg_celery.instrument()
    pg_rq.instrument()
    try:
        yield
    finally:
        pg_rq.uninstrument()
        pg_celery.uninstrument()


def _transport_rules(caught: pytest.ExceptionInfo[pg.PurposeViolation]) -> list[tuple[str, str | None]]:
    return [(v.via, v.rule) for v in caught.value.violations]


def test_content_published_to_a_plain_redis_broker_off_host_is_refused(marker: str) -> None:
    app = Celery("transport", broker=f"redis://{OFF_HOST}:6379/0", set_as_current=False)
    with pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation) as caught:
        app.send_task("mail.archive", args=[pg.label(marker, CONTENT)])
    assert _transport_rules(caught) == [("transport", "transport.require_tls")]
    assert marker not in str(caught.value)
    assert "rediss://" in str(caught.value)


def test_content_published_to_a_plain_amqp_broker_off_host_is_refused(marker: str) -> None:
    app = Celery("transport", broker=f"pyamqp://guest@{OFF_HOST}//", set_as_current=False)
    with pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation) as caught:
        app.send_task("mail.archive", kwargs={"body": pg.label(marker, CONTENT)})
    assert _transport_rules(caught) == [("transport", "transport.require_tls")]
    assert marker not in str(caught.value)


def test_content_enqueued_on_a_plain_redis_off_host_is_refused(marker: str) -> None:
    queue = Queue("mail", connection=Redis(host=OFF_HOST, socket_connect_timeout=0.2))
    with pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation) as caught:
        queue.enqueue("mail.archive", pg.label(marker, CONTENT))
    assert _transport_rules(caught) == [("transport", "transport.require_tls")]
    assert marker not in str(caught.value)


def test_a_category_without_require_tls_goes_to_a_plain_broker() -> None:
    # The check lets it through; the connection then fails, as nothing answers.
    queue = Queue("mail", connection=Redis(host=OFF_HOST, socket_connect_timeout=0.2))
    with pg.testing.capture() as seen, pg.purpose("service.operations"):
        with pytest.raises(Exception) as caught:
            queue.enqueue("mail.archive", pg.label("acct-1", "customer_data.account"))
    assert not isinstance(caught.value, pg.PurposeViolation)
    assert [v.rule for v in seen] == []


@pytest.mark.parametrize(
    ("broker", "use_ssl", "expected"),
    [
        (f"redis://{OFF_HOST}:6379/0", None, "redis"),
        (f"rediss://{OFF_HOST}:6380/0?ssl_cert_reqs=required", None, "rediss"),
        (f"redis://{OFF_HOST}:6379/0", {"ssl_cert_reqs": "required"}, "rediss"),
        (f"sentinel://{OFF_HOST}:26379", None, "redis"),
        (f"amqp://guest@{OFF_HOST}//", None, "amqp"),
        (f"pyamqp://guest@{OFF_HOST}//", None, "amqp"),
        (f"amqps://guest@{OFF_HOST}//", None, "amqps"),
        (f"pyamqp://guest@{OFF_HOST}//", True, "amqps"),
        ("memory://", None, "memory"),
    ],
)
def test_a_celery_broker_is_named_by_the_wire_it_uses(broker: str, use_ssl: Any, expected: str) -> None:
    app = Celery("transport", broker=broker, set_as_current=False)
    if use_ssl is not None:
        app.conf.broker_use_ssl = use_ssl
    assert pg_celery._broker_url(app).split("://", 1)[0] == expected


@pytest.mark.parametrize(
    ("connection", "expected"),
    [
        (lambda: Redis(host=OFF_HOST), "redis"),
        (lambda: Redis(host=OFF_HOST, ssl=True), "rediss"),
        (lambda: Redis.from_url(f"rediss://{OFF_HOST}:6380/0"), "rediss"),
        (lambda: Redis.from_url(f"redis://{OFF_HOST}:6379/0"), "redis"),
    ],
)
def test_an_rq_queue_is_named_by_the_wire_it_uses(connection: Any, expected: str) -> None:
    queue = Queue("mail", connection=connection())
    assert pg_rq._queue_url(queue).split("://", 1)[0] == expected


def test_content_enqueued_over_tls_off_host_passes_the_transport_check(marker: str) -> None:
    # The check lets it through; the connection then fails, as nothing answers.
    queue = Queue("mail", connection=Redis(host=OFF_HOST, ssl=True, socket_connect_timeout=0.2))
    with pg.testing.capture() as seen, pg.purpose("service.operations"):
        with pytest.raises(Exception) as caught:
            queue.enqueue("mail.archive", pg.label(marker, CONTENT))
    assert not isinstance(caught.value, pg.PurposeViolation)
    assert [v.rule for v in seen] == []
