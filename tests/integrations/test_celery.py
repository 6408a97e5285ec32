"""Celery with a real worker thread in this process (in-memory broker, not eager mode)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from purposeguard.integrations import baggage
from purposeguard.integrations import celery as pg_celery

import purposeguard as pg

from .conftest import Signer

CONTENT = "customer_data.content.email"


def state() -> dict[str, Any]:
    zone = pg.current_zone()
    return {
        "purpose": pg.current_purpose(),
        "tenant": pg.current_tenant(),
        "zone": sorted(zone.categories) if zone is not None else None,
    }


app = Celery("purposeguard-test", broker="memory://", backend="cache+memory://")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    worker_enable_remote_control=False,
    # The in-memory transport polls; the default second would make the tests crawl.
    broker_transport_options={"polling_interval": 0.01},
)


@app.task(name="pgtest.inspect")
def inspect_task(*args: Any) -> dict[str, Any]:
    return state()


@app.task(name="pgtest.advertise", shared=False)  # unknown to `remote` below
@pg.purpose("advertising")
def advertise_task(campaign: str) -> dict[str, Any]:
    return {"campaign": campaign, **state()}


@app.task(name="pgtest.operate")
@pg.purpose("service.operations")
def operate_task(ticket: str) -> dict[str, Any]:
    return {"ticket": ticket, **state()}


@app.task(name="pgtest.learn")
def learn_task() -> str:
    """Reads customer content and returns it laundered (no label)."""
    return f"summary of {pg.label('a mail body', CONTENT)}"


@app.task(name="pgtest.report", bind=True)
def report_task(self: Any, other_id: str) -> None:
    """Reports progress for another task id, made from what it read."""
    self.update_state(
        task_id=other_id, state="PROGRESS", meta={"seen": f"{pg.label('a mail body', CONTENT)}"}
    )


# A publisher that does not know the tasks by their functions (another
# service's code base): only the worker can check them.
remote = Celery("purposeguard-test-publisher", broker="memory://", backend="cache+memory://")
remote.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_transport_options={"polling_interval": 0.01},
)


@pytest.fixture(autouse=True)
def _shared_key(signed: Signer) -> None:
    """Publisher and worker (one process here) hold the same baggage key."""


@pytest.fixture(scope="module")
def worker() -> Iterator[Any]:
    pg_celery.instrument()
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10) as running:
            yield running
    finally:
        pg_celery.uninstrument()


def test_publishing_carries_purpose_tenant_and_zone_to_the_worker(worker: Any) -> None:
    with pg.zone(tenant="contoso"), pg.purpose("service.operations"):
        pg.label("mail body", CONTENT)
        result = inspect_task.delay()
    assert result.get(timeout=10, interval=0.01) == {
        "purpose": "service.operations",
        "tenant": "contoso",
        "zone": [CONTENT],
    }


def test_labels_of_task_arguments_travel_though_json_drops_them(worker: Any, marker: str) -> None:
    result = inspect_task.delay(pg.label(marker, "customer_data.content.crm"))
    assert result.get(timeout=10, interval=0.01)["zone"] == ["customer_data.content.crm"]


def test_each_task_runs_in_a_zone_of_its_own(worker: Any) -> None:
    with pg.zone(tenant="contoso"):
        pg.label("mail body", CONTENT)
        inspect_task.delay().get(timeout=10, interval=0.01)
    assert inspect_task.delay().get(timeout=10, interval=0.01) == {
        "purpose": None,
        "tenant": None,
        "zone": [],
    }


def test_a_task_declared_with_a_purpose_is_guarded_in_trace(worker: Any) -> None:
    # The pack's no-advertising enforces zone flows; trace them for this test.
    pg.configure("trust-center", context_mode="trace")
    with pg.testing.capture() as violations:
        with pg.zone(tenant="contoso"), pg.purpose("service.operations"):
            pg.label("mail body", CONTENT)
            result = remote.send_task("pgtest.advertise", args=["spring"])
        outcome = result.get(timeout=10, interval=0.01)
    assert outcome["purpose"] == "advertising"
    assert [(v.category, v.purpose, v.via, v.tenant, v.rule) for v in violations] == [
        (CONTENT, "advertising", "context", "contoso", "no-advertising")
    ]
    assert violations[0].function.endswith("advertise_task")


def test_a_task_declared_with_a_purpose_fails_when_context_mode_enforces(worker: Any, marker: str) -> None:
    pg.configure("trust-center", context_mode="enforce")
    with pg.zone(tenant="contoso"):
        pg.label(marker, CONTENT)
        result = remote.send_task("pgtest.advertise", args=["spring"])
    result.get(timeout=10, interval=0.01, propagate=False)
    assert result.state == "FAILURE"
    assert "no-advertising" in str(result.result)
    assert marker not in str(result.result) and marker not in str(result.traceback)


def test_an_allowed_task_runs(worker: Any) -> None:
    with pg.testing.assert_no_violations(), pg.zone(tenant="contoso"):
        pg.label("mail body", CONTENT)
        outcome = operate_task.delay("T-1").get(timeout=10, interval=0.01)
    assert outcome == {
        "ticket": "T-1",
        "purpose": "service.operations",
        "tenant": "contoso",
        "zone": [CONTENT],
    }


def test_bad_header_is_ignored_with_a_warning(worker: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        result = inspect_task.apply_async(
            headers={pg_celery.HEADER: "purposeguard.zone=no.such%2Cneither,purposeguard.purpose=%FF"}
        )
        outcome = result.get(timeout=10, interval=0.01)
    assert outcome == {"purpose": None, "tenant": None, "zone": []}
    assert any(r.name == "purposeguard" and r.levelno == logging.WARNING for r in caplog.records)


def test_a_header_signed_for_its_own_task_is_read(worker: Any, signed: Signer) -> None:
    header = signed(
        tenant="contoso", zone=CONTENT, channel=baggage.task_channel("celery", "task-7", "pgtest.inspect")
    )
    outcome = inspect_task.apply_async(task_id="task-7", headers={pg_celery.HEADER: header}).get(timeout=10)
    assert outcome == {"purpose": None, "tenant": "contoso", "zone": [CONTENT]}


def test_a_header_copied_onto_another_task_is_ignored(
    worker: Any, signed: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    header = signed(
        tenant="contoso", zone=CONTENT, channel=baggage.task_channel("celery", "task-7", "pgtest.inspect")
    )
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        outcome = inspect_task.apply_async(task_id="task-8", headers={pg_celery.HEADER: header}).get(
            timeout=10
        )
    assert outcome == {"purpose": None, "tenant": None, "zone": []}
    assert any("badly signed" in r.getMessage() for r in caplog.records)


def test_a_header_put_on_another_task_enqueued_under_the_same_id_is_ignored(
    worker: Any, signed: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    """Whoever enqueues chooses the task id: a header seen on one task, put on a
    different task under that same id, carries nothing."""
    header = signed(
        tenant="contoso", zone=CONTENT, channel=baggage.task_channel("celery", "task-9", "pgtest.operate")
    )
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        outcome = inspect_task.apply_async(task_id="task-9", headers={pg_celery.HEADER: header}).get(
            timeout=10
        )
    assert outcome == {"purpose": None, "tenant": None, "zone": []}
    assert any("badly signed" in r.getMessage() for r in caplog.records)


def test_a_header_made_for_an_http_call_is_ignored_in_a_task(worker: Any, signed: Signer) -> None:
    outcome = inspect_task.apply_async(headers={pg_celery.HEADER: signed(tenant="contoso")}).get(timeout=10)
    assert outcome["tenant"] is None


@app.task(name="pgtest.improvement_after_naming")
def improvement_after_naming(*text: str) -> dict[str, Any]:
    """The task names its tenant (as an app does after authenticating), then
    asks whether what its zone holds may be used for improvement."""
    pg.set_tenant("acme")
    try:
        with pg.purpose("improvement"):
            pg.check("plain text")
        return {"improvement": True}
    except pg.PurposeViolation as error:
        return {"improvement": False, "tenants": sorted({str(v.tenant) for v in error.violations})}


def test_a_zone_of_several_tenants_is_no_ones_in_the_task_whatever_tenant_it_names(worker: Any) -> None:
    from purposeguard._context import MIXED_TENANT
    from purposeguard.consent import ConsentStore

    store = ConsentStore(":memory:")
    try:
        pg.configure("trust-center", context_mode="enforce", consents=store)
        store.grant("acme", "improvement", ["customer_data"], granted_by="admin@acme")
        with pg.zone(tenant="acme"):
            globex = pg.label("globex private mail", CONTENT, tenant="globex")
            with pg.purpose("service.operations"):
                mixed = improvement_after_naming.delay(f"copy: {globex}").get(timeout=10, interval=0.01)
        with pg.zone(tenant="acme"):
            acme = pg.label("acme mail", CONTENT, tenant="acme")
            own = improvement_after_naming.delay(f"copy: {acme}").get(timeout=10, interval=0.01)
    finally:
        store.close()
    assert mixed == {"improvement": False, "tenants": [MIXED_TENANT]}
    assert own == {"improvement": True}


# -- where the publisher knows the task: checked before the message is sent -----------------


def test_publishing_to_a_task_declared_for_a_forbidden_purpose_is_refused_at_once(
    worker: Any, marker: str
) -> None:
    sent: list[Any] = []
    from celery import signals

    def count(**_: Any) -> None:
        sent.append(1)

    signals.before_task_publish.connect(count, weak=False, dispatch_uid="pgtest.count")
    try:
        with pytest.raises(pg.PurposeViolation) as refused:
            advertise_task.delay(pg.label(marker, CONTENT))  # no zone: the argument itself
        with pg.zone(tenant="contoso"), pytest.raises(pg.PurposeViolation):
            pg.label(marker, CONTENT)
            advertise_task.delay("spring")  # the zone held content
    finally:
        signals.before_task_publish.disconnect(count, dispatch_uid="pgtest.count")
    assert sent == []  # nothing reached the broker
    assert [(v.via, v.rule) for v in refused.value.violations] == [("argument", "no-advertising")]
    assert marker not in str(refused.value)


@pytest.fixture
def no_baggage_key(monkeypatch: pytest.MonkeyPatch) -> None:
    pg.configure("trust-center", baggage_keys=[])
    monkeypatch.delenv("PURPOSEGUARD_BAGGAGE_KEYS", raising=False)


def test_without_a_baggage_key_publishing_labelled_data_is_said_once(
    worker: Any, no_baggage_key: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        inspect_task.delay(pg.label("mail body", CONTENT)).get(timeout=10, interval=0.01)
        inspect_task.delay(pg.label("mail body", CONTENT)).get(timeout=10, interval=0.01)
        inspect_task.delay("plain").get(timeout=10, interval=0.01)
    said = [r for r in caplog.records if "no baggage key" in r.getMessage()]
    assert len(said) == 1


def test_the_tasks_a_chain_a_chord_or_a_link_runs_next_are_checked_too(worker: Any, marker: str) -> None:
    from celery import chain, chord

    value = pg.label(marker, CONTENT)
    for publish in (
        lambda: chain(operate_task.s("T-1"), advertise_task.si(value)).apply_async(),
        lambda: chord([inspect_task.s()], advertise_task.si(value)).apply_async(),
        lambda: inspect_task.apply_async(("x",), link=advertise_task.si(value)),
    ):
        with pytest.raises(pg.PurposeViolation) as refused:
            publish()
        assert [(v.via, v.rule) for v in refused.value.violations] == [("argument", "no-advertising")]


def test_a_result_carries_what_the_task_read_back_to_its_reader(worker: Any) -> None:
    with pg.zone() as reader:
        value = learn_task.delay().get(timeout=10, interval=0.01)
        assert value == "summary of a mail body"
        assert pg.labels_of(value) == {CONTENT}
        assert reader.categories == {CONTENT}


def test_without_a_baggage_key_a_result_made_from_data_is_said_once(
    worker: Any, no_baggage_key: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        values = [learn_task.delay().get(timeout=10, interval=0.01) for _ in range(2)]
        inspect_task.delay("plain").get(timeout=10, interval=0.01)
    assert [pg.labels_of(value) for value in values] == [frozenset(), frozenset()]
    said = [r for r in caplog.records if "results are signed with a baggage key" in r.getMessage()]
    assert len(said) == 1


def test_a_get_callback_gets_the_value_labelled(worker: Any) -> None:
    seen: list[Any] = []
    with pg.zone():
        value = learn_task.delay().get(timeout=10, interval=0.01, callback=lambda _id, v: seen.append(v))
    assert [pg.labels_of(v) for v in seen] == [{CONTENT}]
    assert pg.labels_of(value) == {CONTENT}


def test_a_state_stored_for_another_task_or_by_hand_carries_what_its_zone_held(worker: Any) -> None:
    from celery.result import AsyncResult

    report_task.delay("progress-of-another-task").get(timeout=10, interval=0.01)
    info = AsyncResult("progress-of-another-task", app=app).info
    assert info == {"seen": "a mail body"}
    assert pg.labels_of(info) == {CONTENT}
    with pg.zone():
        pg.label("a mail body", CONTENT)
        app.backend.store_result("stored-by-hand", "a summary", "SUCCESS")
    for read in (AsyncResult("stored-by-hand", app=app).result, app.backend.get_result("stored-by-hand")):
        assert (read, pg.labels_of(read)) == ("a summary", {CONTENT})


def test_sending_by_name_never_finalizes_the_app() -> None:
    lazy = Celery("purposeguard-lazy", broker="memory://", autofinalize=False)
    pg_celery.instrument()
    try:
        lazy.send_task("elsewhere.task", args=["x"])  # raised "app not finalized" before
        assert not lazy.finalized
    finally:
        pg_celery.uninstrument()


def test_a_partial_of_a_declared_task_function_keeps_its_purpose() -> None:
    import functools

    from purposeguard.integrations._tasks import declared_purpose

    @pg.purpose("advertising")
    def advertise(campaign: str) -> None:
        return None

    assert declared_purpose(functools.partial(advertise, "spring")) == "advertising"


def test_the_task_sent_event_names_no_argument_where_the_data_is_protected(marker: str) -> None:
    from celery.events import EventDispatcher

    events: list[tuple[str, dict[str, Any]]] = []
    original = EventDispatcher.publish

    def publish(self: Any, type: str, fields: Any, *args: Any, **kwargs: Any) -> Any:
        # What monitors (Flower) read.
        events.append((type, dict(fields)))
        return original(self, type, fields, *args, **kwargs)

    sender = Celery("purposeguard-sent-events", broker="memory://", backend="cache+memory://")
    sender.conf.task_send_sent_event = True
    pg_celery.instrument()
    EventDispatcher.publish = publish  # type: ignore[method-assign]
    try:
        with pg.zone(tenant="contoso"):
            sender.send_task("pgtest.operate", args=(pg.label(marker, CONTENT),))
            sender.send_task("pgtest.operate", args=("T-2",), argsrepr="('T-2',)")
        sender.send_task("pgtest.operate", args=(f"plain {marker}",))
    finally:
        EventDispatcher.publish = original  # type: ignore[method-assign]
        pg_celery.uninstrument()
    sent = [fields for type, fields in events if type == "task-sent"]
    assert len(sent) == 3
    # Labelled arguments: withheld. A repr the application gave: its own.
    # Nothing protected: Celery's own repr.
    assert marker not in str(sent[0]["args"]) and "withheld" in str(sent[0]["args"])
    assert sent[1]["args"] == "('T-2',)"
    assert marker in str(sent[2]["args"])


def test_a_result_backend_that_keeps_only_its_own_fields_is_said_once(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from celery.app.task import Context
    from celery.result import AsyncResult

    pg_celery.instrument()
    stored = Celery("purposeguard-test-db", backend=f"db+sqlite:///{tmp_path / 'results.db'}")
    try:
        with caplog.at_level(logging.WARNING, logger="purposeguard"):
            for task_id in ("db-1", "db-2"):
                with pg.zone():
                    pg.label("a mail body", CONTENT)
                    stored.backend.store_result(task_id, "a summary", "SUCCESS", request=Context(id=task_id))
        said = [r for r in caplog.records if "keeps only its own fields" in r.getMessage()]
        assert len(said) == 1
        assert "DatabaseBackend" in said[0].getMessage()
        # What the warning says: the reader gets the value without the categories.
        value = AsyncResult("db-1", app=stored).result
        assert (value, pg.labels_of(value)) == ("a summary", frozenset())
    finally:
        pg_celery.uninstrument()
        stored.close()


def test_uninstrument_restores_how_celery_reads_results() -> None:
    from celery.backends.base import Backend
    from celery.backends.rpc import RPCBackend
    from celery.result import AsyncResult

    pg_celery.instrument()
    try:
        assert hasattr(RPCBackend.get_task_meta, "__wrapped__")
        assert hasattr(AsyncResult._get_task_meta, "__wrapped__")
        assert hasattr(Backend.get_state, "__wrapped__")
        assert AsyncResult.__dict__["args"].fget.__module__ == pg_celery.__name__
    finally:
        pg_celery.uninstrument()
    for method in (
        RPCBackend.get_task_meta,
        AsyncResult._get_task_meta,
        Backend.get_state,
        Backend.get_status,
    ):
        assert not hasattr(method, "__wrapped__")
    for name in ("args", "kwargs", "result"):
        assert AsyncResult.__dict__[name].fget.__module__ == "celery.result"
