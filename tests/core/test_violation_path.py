"""One violation path: every checkpoint records and raises through Guard.violate,
so they agree on sink failures, tenants and modes."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from purposeguard.integrations._egress import check_egress
from purposeguard.integrations.asgi import PurposeGuardMiddleware
from purposeguard.integrations.logging import PurposeGuardFilter
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import purposeguard as pg
from purposeguard import audit
from purposeguard._labels import MIXED_TENANT, tenant_of_values
from purposeguard._runtime import Guard
from purposeguard.audit import AuditError, AuditLog

EMAIL = "customer_data.content.email"


class Detached:
    """An object whose annotated field raises when read, like a detached ORM row."""

    body: Annotated[str, pg.Category(EMAIL)]

    @property  # type: ignore[no-redef]
    def body(self) -> str:
        raise RuntimeError("detached instance")


@pytest.fixture
def full_audit_log(tmp_path: Path) -> Iterator[AuditLog]:
    """A real audit log attached as the sink whose file cannot grow: a full disk, for SQLite."""
    path = tmp_path / "audit.db"
    AuditLog(path).close()
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    connection.close()
    log = AuditLog(path, max_bytes=(pages + 1) * page_size)
    pg.configure("trust-center", mode="trace")
    sink = audit.attach(log, interval=60.0)

    @pg.purpose("advertising")
    def recommend_ads(text: str) -> int:
        return len(text)

    body = pg.label("Quarterly numbers attached", EMAIL)
    for _ in range(200):
        recommend_ads(body)  # trace mode: recorded, queued, until the file is full
    with pytest.raises(AuditError, match="database or disk is full"):
        sink.flush()
    try:
        yield log
    finally:
        audit.detach()
        log.close()


def _refusing_transform() -> Any:
    # usage-aggregate accepts customer data; payment data is not its to declassify.
    @pg.transform("usage-aggregate")
    def billing_size(text: str) -> int:
        return len(text)

    return billing_size


def test_a_transform_refusal_with_a_failing_sink_is_still_a_purpose_violation(
    full_audit_log: AuditLog,
) -> None:
    pg.configure("trust-center", mode="enforce")
    billing_size = _refusing_transform()
    card = pg.label("4111 1111 1111 1111", "payment_data")
    with pytest.raises(pg.PurposeViolation) as caught:
        billing_size(card)
    # Like an @purpose denial: a violation to the caller, the lost record its cause.
    assert caught.value.violations[0].category == "payment_data"
    assert caught.value.violations[0].rule == "usage-aggregate"
    assert isinstance(caught.value.__cause__, pg.SinkFailure)


async def test_the_asgi_middleware_turns_that_refusal_into_a_403(full_audit_log: AuditLog) -> None:
    pg.configure("trust-center", mode="enforce")
    billing_size = _refusing_transform()

    async def size(request: Request) -> JSONResponse:
        return JSONResponse({"size": billing_size(pg.label("4111 1111 1111 1111", "payment_data"))})

    async def denied(request: Request) -> JSONResponse:
        pg.check(pg.label("Quarterly numbers", EMAIL), "advertising")
        return JSONResponse({"sent": True})

    app = Starlette(
        routes=[Route("/size", size), Route("/ads", denied)], middleware=[Middleware(PurposeGuardMiddleware)]
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
        refused = await client.get("/size")
        as_purpose = await client.get("/ads")
    assert as_purpose.status_code == 403
    assert refused.status_code == 403
    assert "payment_data" in refused.text


def test_a_transform_over_two_tenants_data_belongs_to_several_tenants_like_purpose() -> None:
    pg.configure("trust-center", mode="trace")
    contoso = pg.label("contoso's card", "payment_data", tenant="contoso")
    fabrikam = pg.label("fabrikam's card", "payment_data", tenant="fabrikam")

    @pg.transform("usage-aggregate")
    def total(a: str, b: str) -> int:
        return len(a) + len(b)

    @pg.purpose("advertising")
    def target(a: str, b: str) -> None:
        return None

    with pg.testing.capture_records() as records:
        result = total(contoso, fabrikam)
        target(contoso, fabrikam)
    refusal, *_ = [r for r in records if isinstance(r, pg.Violation) and r.rule == "usage-aggregate"]
    declassified = next(r for r in records if isinstance(r, pg.Declassification))
    denial = next(r for r in records if isinstance(r, pg.Violation) and r.purpose == "advertising")
    assert denial.tenant == MIXED_TENANT
    assert refusal.tenant == MIXED_TENANT  # not the first tenant's
    assert declassified.tenant == MIXED_TENANT
    assert pg.tenant_of(result) == MIXED_TENANT  # no one tenant's consent covers the result


def test_tenant_of_values_looks_as_deep_as_labels() -> None:
    contoso = pg.label("a", "customer_data", tenant="contoso")
    fabrikam = pg.label("b", "customer_data", tenant="fabrikam")
    assert tenant_of_values(("plain", 3)) is None
    assert tenant_of_values((contoso, "plain")) == "contoso"
    assert tenant_of_values(([contoso, contoso],)) == "contoso"
    assert tenant_of_values(([contoso], {"k": fabrikam})) == MIXED_TENANT
    assert tenant_of_values((contoso, fabrikam)) == MIXED_TENANT


def test_every_checkpoint_records_through_guard_violate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argument, return, zone, transform, egress, transport, logging and an
    engine failure: each violation recorded is one Guard.violate returned."""
    through: list[pg.Violation] = []
    original = Guard.violate

    def spy(self: Guard, *args: Any, **kwargs: Any) -> list[pg.Violation]:
        recorded = original(self, *args, **kwargs)
        through.extend(recorded)
        return recorded

    monkeypatch.setattr(Guard, "violate", spy)
    pg.configure("trust-center", mode="trace")
    body = pg.label("Quarterly numbers attached", EMAIL)

    @pg.purpose("advertising")
    def takes(text: str) -> None:
        return None

    @pg.purpose("advertising")
    def gives() -> str:
        return body

    with pg.testing.capture() as captured:
        takes(body)
        gives()
        with pg.zone(tenant="contoso"):
            pg.label("zone content", EMAIL)
            takes("plain")
        _refusing_transform()(pg.label("card", "payment_data"))
        with pg.purpose("advertising"):
            check_egress("https://partner.example/upload", frozenset({EMAIL}), function="tests.egress")
        with pg.purpose("service.operations"):
            check_egress("http://partner.example/upload", frozenset({EMAIL}), function="tests.transport")
        PurposeGuardFilter("service.communications").filter(
            logging.LogRecord("tests", logging.INFO, __file__, 1, "body: %s", (body,), None)
        )
        with pg.purpose("service.operations"):
            pg.check(Detached())
    vias = {v.via for v in captured}
    assert {"argument", "return", "context", "egress", "transport"} <= vias
    assert "purposeguard.internal-error" in {v.rule for v in captured}
    assert "usage-aggregate" in {v.rule for v in captured}
    assert [id(v) for v in captured] == [id(v) for v in through]
