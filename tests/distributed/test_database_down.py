"""The database goes away and comes back: enforce mode fails closed, trace mode
keeps working within its buffer, and the chain still verifies afterwards."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from services import PostgresServer

import purposeguard as pg
from purposeguard import audit
from purposeguard._runtime import SinkFailure, get_guard
from purposeguard.audit import AuditLog, AuditSink
from purposeguard.consent import ConsentStore

CONTENT = "customer_data.content.email"


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """A server of this module's own: its tests stop and start it."""
    own = PostgresServer()
    try:
        yield own
    finally:
        own.close()


@pytest.fixture
def url(server: PostgresServer) -> Iterator[str]:
    created = server.create_database()
    yield created
    if not _listening(server):
        server.start()


def _listening(server: PostgresServer) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=0.5):
            return True
    except OSError:
        return False


def violation(n: int, mode: str = "trace") -> pg.Violation:
    return pg.Violation(
        CONTENT, "advertising", "no-advertising", "argument", f"w.{n}", "contoso", mode, time.time()
    )


def wait_until(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def flush_when_back(sink: AuditSink, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            sink.flush()
            return
        except pg.PurposeGuardError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_trace_mode_keeps_working_while_down_and_writes_the_buffer_in_order(
    server: PostgresServer, url: str
) -> None:
    pg.configure("trust-center", mode="trace")
    sink = audit.attach(url)
    guard = get_guard()
    for n in range(20):
        guard.dispatch(violation(n))
    sink.flush()
    server.stop()

    @pg.purpose("advertising")
    def advertise(body: str) -> str:
        return "sent"

    body = pg.label("mail body", CONTENT)
    for n in range(20, 50):
        guard.dispatch(violation(n))
        assert advertise(body) == "sent"  # trace mode: the call goes on
    wait_until(lambda: sink.error is not None)
    assert sink.pending >= 60
    server.start()
    flush_when_back(sink)
    assert sink.error is None and sink.pending == 0
    with AuditLog(url, readonly=True) as log:
        result = log.verify()
        numbers = [e.data["function"] for e in log.records() if e.data["function"].startswith("w.")]
    assert result.ok, result.reason
    assert result.count == 80
    assert numbers == [f"w.{n}" for n in range(50)]


def test_records_beyond_the_buffer_are_counted_in_a_gap_record(server: PostgresServer, url: str) -> None:
    log = AuditLog(url)
    sink = AuditSink(log, max_pending=25, owns_log=True)
    try:
        server.stop()
        for n in range(10):
            sink(violation(n))
        wait_until(lambda: sink.error is not None)
        for n in range(10, 60):
            sink(violation(n))  # trace records: never raise
        assert sink.pending == 26  # 25 records and one gap marker
        assert sink.dropped == 35
        server.start()
        flush_when_back(sink)
    finally:
        sink.close()
    with AuditLog(url, readonly=True) as check:
        entries = list(check.records())
        assert check.verify().ok
    assert [e.data["function"] for e in entries[:25]] == [f"w.{n}" for n in range(25)]
    gap = entries[25]
    assert gap.kind == "audit.gap" and gap.data["dropped"] == 35 and "unreachable" in gap.data["reason"]
    assert len(entries) == 26


def test_enforce_mode_denies_a_record_that_cannot_be_kept(server: PostgresServer, url: str) -> None:
    pg.configure("trust-center", mode="enforce")
    sink = audit.attach(url)

    @pg.transform("usage-aggregate")
    def count(body: str) -> int:
        return len(body)

    body = pg.label("mail body", CONTENT)
    assert count(body) == 9
    server.stop()
    get_guard().dispatch(violation(0, mode="trace"))
    wait_until(lambda: sink.error is not None)
    with pytest.raises(SinkFailure, match="unreachable"):
        count(body)
    server.start()
    flush_when_back(sink)
    assert count(body) == 9


def test_consent_decisions_fail_closed_when_the_database_is_gone_too_long(
    server: PostgresServer, url: str
) -> None:
    store = ConsentStore(url)
    try:
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
        pg.configure("trust-center", mode="enforce", consents=store)

        @pg.purpose("improvement")
        def improve(body: str) -> str:
            return "improved"

        body = pg.label("mail body", CONTENT, tenant="contoso")
        with pg.zone(tenant="contoso"):
            assert improve(body) == "improved"
        server.stop()
        stopped = time.monotonic()
        # Still allowed while the view is within its bound, refused after it.
        wait_until(lambda: not store.has_consent("contoso", "improvement", CONTENT), timeout=5)
        assert time.monotonic() - stopped <= store.audit.storage.stale_after + 1.0  # type: ignore[attr-defined]
        with pg.zone(tenant="contoso"), pytest.raises(pg.PurposeViolation):
            improve(body)
        # A change cannot be made while the database is gone: nothing half-written.
        with pytest.raises(pg.PurposeGuardError, match="unreachable|cannot connect"):
            store.revoke("contoso", "improvement", revoked_by="admin@contoso")
        server.start()
        wait_until(lambda: store.has_consent("contoso", "improvement", CONTENT), timeout=15)
        with pg.zone(tenant="contoso"):
            assert improve(body) == "improved"
        assert [g.tenant for g in store.list()] == ["contoso"]
        assert store.audit.verify().ok
    finally:
        store.close()
