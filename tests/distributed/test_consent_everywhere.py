"""A consent change on one replica changes decisions on every other within a second."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from purposeguard.consent import ConsentStore

REPLICA = Path(__file__).resolve().parent / "consent_replica.py"
BOUND = 1.0  # seconds: the documented propagation bound


class Replica:
    def __init__(self, url: str, tenant: str, seconds: float = 30) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(REPLICA), url, tenant, str(seconds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.next_line() == "ready"

    def next_line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(
                f"the replica died: {self.process.stderr.read() if self.process.stderr else ''}"
            )
        return line.strip()

    def wait_state(self, expected: bool) -> float:
        """The wall time at which the replica's decision became ``expected``."""
        while True:
            _, state, stamp = self.next_line().split()
            if state == str(expected):
                return float(stamp)

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def replicas(pg_url: str) -> Iterator[list[Replica]]:
    ConsentStore(pg_url).close()  # schema first
    started = [Replica(pg_url, "contoso") for _ in range(2)]
    yield started  # type: ignore[misc]
    for replica in started:
        replica.close()


def test_a_grant_and_a_revocation_reach_every_replica_within_the_bound(
    pg_url: str, replicas: list[Replica]
) -> None:
    for replica in replicas:
        assert replica.wait_state(False)
    with ConsentStore(pg_url) as store:
        for _ in range(3):
            before = time.time()
            store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
            # This replica sees its own change at once.
            assert store.has_consent("contoso", "improvement", "customer_data.content.email")
            for replica in replicas:
                assert replica.wait_state(True) - before < BOUND
            before = time.time()
            store.revoke("contoso", "improvement", revoked_by="admin@contoso")
            assert not store.has_consent("contoso", "improvement", "customer_data.content.email")
            for replica in replicas:
                assert replica.wait_state(False) - before < BOUND


def test_two_stores_in_one_process_see_each_others_grants_for_that_tenant_only(pg_url: str) -> None:
    with ConsentStore(pg_url) as first, ConsentStore(pg_url) as second:
        first.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
        deadline = time.monotonic() + BOUND
        while (
            not second.has_consent("contoso", "improvement", "customer_data") and time.monotonic() < deadline
        ):
            time.sleep(0.005)
        assert second.has_consent("contoso", "improvement", "customer_data.content.email")
        assert not second.has_consent("fabrikam", "improvement", "customer_data.content.email")
