"""Four replicas of the example service on one PostgreSQL, under concurrent
load over loopback, with a consent granted in the middle: no wrong decision
after the propagation bound, no record lost, one chain that verifies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from replica_load import Replicas, run_load

from purposeguard.audit import AuditLog

BOUND = 1.0  # seconds: the documented propagation bound


@pytest.fixture
def replicas(pg_url: str, tmp_path: Path) -> Iterator[Replicas]:
    AuditLog(pg_url).close()  # the schema exists before four replicas race to it
    started = Replicas(pg_url, 4, tmp_path)
    try:
        yield started
    finally:
        started.stop()


def test_four_replicas_one_consent_flip_no_wrong_decision_no_lost_record(
    pg_url: str, replicas: Replicas
) -> None:
    result = run_load(replicas.urls(), total=1600, concurrency=16, seconds=90)
    assert result.errors == 0
    assert len(result.outcomes) == 1600
    # Both sides of the flip were exercised on every replica.
    assert {o.replica for o in result.outcomes if not o.allowed} == {0, 1, 2, 3}
    assert {o.replica for o in result.outcomes if o.allowed} == {0, 1, 2, 3}
    assert result.wrong(BOUND) == []
    assert all(delay < BOUND for delay in result.propagation().values())
    replicas.flush()
    with AuditLog(pg_url, readonly=True) as log:
        verified = log.verify()
        entries = list(log.records())
    assert verified.ok, verified.reason
    refusals = [e for e in entries if e.kind == "violation"]
    # One record per refused request, from every replica, none lost.
    assert len(refusals) == result.refused()
    assert {(e.data["rule"], e.data["tenant"]) for e in refusals} == {
        ("improvement-only-with-consent", "contoso")
    }
    assert [e.data["action"] for e in entries if e.kind == "consent"] == ["grant"]
    assert verified.count == len(refusals) + 1
