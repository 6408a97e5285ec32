"""The example mail service running for real: uvicorn on loopback, SQLite audit
log and consent store in the test's directory, the outside world on loopback too."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import purposeguard as pg
from purposeguard import audit as audit_module
from purposeguard._demo import Running, running
from purposeguard.audit import AuditLog
from purposeguard.consent import ConsentStore

MARKER = "zq-mailmarker-5d2e81c4"  # inside mail bodies: it must never show up where values must not go
MEGAN = "megan@contoso.example"
PAT = "pat@fabrikam.example"


@dataclass
class Service:
    """A running mail service, a client for it, and what it recorded."""

    running: Running
    client: httpx.Client
    audit: AuditLog
    audit_path: Path
    consents: ConsentStore
    violations: list[pg.Violation]
    records: list[pg.Record]

    @property
    def outside(self) -> Any:
        return self.running.outside

    def seed(self, *, quota: int = 50 * 1024**3, body: str = "") -> None:
        """Two tenants with users, administrators and a mail each."""
        post = self.client.post
        ok = [
            post("/t/contoso/users", json={"address": MEGAN, "name": "Megan Bowen", "quota": quota}),
            post("/t/contoso/administrators", json={"address": "it-admin@contoso.example"}),
            post("/t/fabrikam/users", json={"address": PAT, "name": "Pat Kim"}),
            post("/t/fabrikam/administrators", json={"address": "admin@fabrikam.example"}),
            self.deliver("contoso", MEGAN, "Q3 numbers", body or f"The Q3 numbers are attached {MARKER}."),
            self.deliver("fabrikam", PAT, "Rota", f"You are on call next week {MARKER}."),
        ]
        assert all(r.status_code == 201 for r in ok), [r.text for r in ok]

    def deliver(self, tenant: str, mailbox: str, subject: str, body: str) -> httpx.Response:
        return self.client.post(
            f"/t/{tenant}/mailboxes/{mailbox}/messages",
            json={"sender": "alex@contoso.example", "subject": subject, "body": body},
        )

    def outbox(self, tenant: str) -> list[dict[str, str]]:
        return list(self.client.get(f"/t/{tenant}/admin/outbox").json()["outbox"])

    def flush(self) -> None:
        sink = audit_module.attached()
        if sink is not None:
            sink.flush()


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """``start_service(mode="enforce")``: configure the guard with an audit log and
    a consent store in ``tmp_path`` and serve the mail service."""
    stack = ExitStack()

    def start(mode: str = "enforce") -> Service:
        path = tmp_path / f"audit-{mode}.db"
        log = AuditLog(path)
        consents = ConsentStore(log)
        stack.callback(log.close)
        stack.callback(consents.close)
        pg.configure("trust-center", mode=mode, audit=log, consents=consents)
        stack.callback(audit_module.detach)
        violations: list[pg.Violation] = []
        records: list[pg.Record] = []
        stack.callback(pg.on_violation(violations.append))
        stack.callback(pg.on_record(records.append))
        service = stack.enter_context(running(consents=consents))
        client = stack.enter_context(httpx.Client(base_url=service.url, timeout=15.0))
        return Service(service, client, log, path, consents, violations, records)

    with stack:
        yield start
