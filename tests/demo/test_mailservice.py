"""The example mail service keeps the data-use promise, path by path, over real HTTP."""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from purposeguard.integrations import sqlalchemy as pg_sqlalchemy

import purposeguard as pg
from purposeguard._demo import Store, running
from purposeguard._demo.outside import AD_NETWORK, NEWSLETTER
from purposeguard._scan import scan
from purposeguard.audit import AuditLog

from .conftest import MARKER, MEGAN, PAT, Service

StartService = Callable[..., Service]


def rules(service: Service) -> set[str | None]:
    return {v.rule for v in service.violations}


def test_spam_filter_reads_content_for_security(start_service: StartService) -> None:
    """service.security over content: allowed; spam is flagged, ham is not."""
    service = start_service()
    service.seed()
    spam = service.deliver("contoso", MEGAN, "WINNER!!!", "You won the lottery: free money, click here!!!")
    ham = service.deliver("contoso", MEGAN, "Lunch", "Lunch on Friday?")
    assert (spam.status_code, spam.json()["spam"]) == (201, True)
    assert (ham.status_code, ham.json()["spam"]) == (201, False)
    assert service.violations == []


def test_troubleshooting_reads_content_for_operations(start_service: StartService) -> None:
    service = start_service()
    service.seed()
    response = service.client.get(f"/t/contoso/mailboxes/{MEGAN}/diagnostics")
    assert response.status_code == 200
    assert response.json()["messages"] == 1
    assert service.violations == []


def test_unknown_mailbox_is_404_and_bad_json_is_400(start_service: StartService) -> None:
    service = start_service()
    service.seed()
    assert service.client.get("/t/contoso/mailboxes/nobody@contoso.example/diagnostics").status_code == 404
    bad = service.client.post(
        "/t/contoso/users", content=b"not json", headers={"content-type": "application/json"}
    )
    assert bad.status_code == 400


def test_usage_statistics_come_from_the_usage_aggregate_transform(start_service: StartService) -> None:
    service = start_service()
    service.seed()
    put = service.client.put(
        "/t/contoso/documents/plan.docx", json={"owner": MEGAN, "body": "Plan: ship it."}
    )
    assert put.status_code == 201
    response = service.client.get("/t/contoso/usage-statistics")
    assert response.status_code == 200
    stats = response.json()
    assert stats["categories"] == ["usage_data"]
    assert (stats["messages"], stats["documents"], stats["users"]) == (1, 1, 1)
    aggregates = [
        r for r in service.records if isinstance(r, pg.Declassification) and r.transform == "usage-aggregate"
    ]
    assert len(aggregates) == 1
    assert set(aggregates[0].from_categories) == {
        "customer_data.content.email",
        "customer_data.content.document",
    }
    assert service.violations == []


def test_storage_notice_from_end_user_usage_reaches_administrators(start_service: StartService) -> None:
    """service.communications from usage_data.end_user (transform end-user-usage): allowed."""
    service = start_service()
    service.seed(quota=40)
    response = service.client.post("/t/contoso/admin/storage-notices", json={})
    assert response.json() == {"tenant": "contoso", "sent": 1}
    [notice] = service.outbox("contoso")
    assert notice["recipient"] == "it-admin@contoso.example"
    assert notice["kind"] == "storage-notice" and MEGAN in notice["text"]
    assert MARKER not in notice["text"]
    declassified = {r.transform for r in service.records if isinstance(r, pg.Declassification)}
    assert "end-user-usage" in declassified
    assert service.violations == []


def test_storage_notice_quoting_mail_is_blocked_in_enforce_mode(start_service: StartService) -> None:
    service = start_service()
    service.seed(quota=40)
    response = service.client.post("/t/contoso/admin/storage-notices?quote=latest", json={})
    assert response.status_code == 403
    assert response.json()["rule"] == "no-content-in-service-communications"
    assert service.outbox("contoso") == []
    assert rules(service) == {"no-content-in-service-communications"}


def test_storage_notice_quoting_mail_proceeds_but_is_recorded_in_trace_mode(
    start_service: StartService,
) -> None:
    service = start_service("trace")
    service.seed(quota=40)
    response = service.client.post("/t/contoso/admin/storage-notices?quote=latest", json={})
    assert response.json()["sent"] == 1
    assert rules(service) == {"no-content-in-service-communications"}
    assert {v.mode for v in service.violations} == {"trace"}


def test_ad_recommendations_never_reach_the_ad_network(start_service: StartService) -> None:
    """The route claims personalization; the call to ads.example.net is advertising: blocked."""
    service = start_service()
    service.seed()
    response = service.client.get(f"/t/contoso/mailboxes/{MEGAN}/recommendations")
    assert response.status_code == 403
    assert response.json()["rule"] == "no-advertising"
    [violation] = service.violations
    assert (violation.via, violation.purpose, violation.category) == (
        "egress",
        "advertising",
        "customer_data.content.email",
    )
    assert service.outside.received == []


def test_ad_recommendations_in_trace_mode_reach_the_local_fake_and_are_recorded(
    start_service: StartService,
) -> None:
    service = start_service("trace")
    service.seed()
    response = service.client.get(f"/t/contoso/mailboxes/{MEGAN}/recommendations")
    assert response.status_code == 200 and response.json()["ads"]
    assert [d.host for d in service.outside.received] == [AD_NETWORK]
    assert "no-advertising" in rules(service)
    # Baggage (tenant, zone) is for the service's own calls, never for another party.
    assert b"purposeguard" not in service.outside.received[0].body


def test_newsletter_is_blocked_before_it_leaves(start_service: StartService) -> None:
    service = start_service()
    service.seed()
    response = service.client.post("/t/contoso/newsletter", json={"subject": "Spring offers"})
    assert response.status_code == 403
    assert response.json()["rule"] == "no-direct-marketing"
    # The route reads the users' addresses itself: reading under marketing.direct is the use refused.
    assert {v.via for v in service.violations} == {"source"}
    assert not any(d.host == NEWSLETTER for d in service.outside.received)


def test_product_analytics_needs_the_tenants_consent(start_service: StartService) -> None:
    """improvement: denied, allowed once the tenant consents, denied again after revoking;
    one tenant's consent never applies to another."""
    service = start_service()
    service.seed()
    job = "/t/{}/jobs/product-analytics"
    denied = service.client.post(job.format("contoso"), json={})
    assert denied.status_code == 403 and denied.json()["rule"] == "improvement-only-with-consent"

    grant = service.client.post(
        "/t/contoso/admin/consents",
        json={
            "purpose": "improvement",
            "categories": ["customer_data"],
            "granted_by": "it-admin@contoso.example",
        },
    )
    assert grant.status_code == 201 and grant.json()["rules"] == ["improvement-only-with-consent"]
    service.violations.clear()
    allowed = service.client.post(job.format("contoso"), json={})
    assert allowed.status_code == 200 and allowed.json()["messages"] == 1
    assert service.violations == []
    assert service.client.post(job.format("fabrikam"), json={}).status_code == 403

    revoke = service.client.post(
        "/t/contoso/admin/consents/revoke",
        json={"purpose": "improvement", "revoked_by": "it-admin@contoso.example"},
    )
    assert revoke.status_code == 200
    assert service.client.post(job.format("contoso"), json={}).status_code == 403


def test_consent_to_advertising_is_refused(start_service: StartService) -> None:
    service = start_service()
    service.seed()
    response = service.client.post(
        "/t/contoso/admin/consents",
        json={
            "purpose": "advertising",
            "categories": ["customer_data"],
            "granted_by": "it-admin@contoso.example",
        },
    )
    assert response.status_code == 400
    assert "no-advertising" in response.json()["message"]


def test_voluntary_disclosure_is_blocked(start_service: StartService) -> None:
    service = start_service()
    service.seed()
    response = service.client.post(
        "/t/contoso/law-enforcement/voluntary",
        json={"requester": "Springfield PD", "mailbox": MEGAN, "fields": ["owner", "messages"]},
    )
    assert response.status_code == 403
    assert response.json()["rule"] == "no-voluntary-disclosure"
    assert MARKER not in response.text


COMPELLED = {
    "case": "LE-2026-0042",
    "authority": "District Court, Springfield",
    "mailbox": MEGAN,
    "fields": ["owner", "message_count"],
}


def test_compelled_disclosure_requires_a_redirect_first(start_service: StartService) -> None:
    service = start_service()
    service.seed()
    response = service.client.post(
        "/t/contoso/law-enforcement/compelled", json={**COMPELLED, "redirect_attempted": False}
    )
    assert response.status_code == 409
    assert response.json()["obligation"] == "redirect_first"
    assert response.json()["rule"] == "compelled-disclosure"
    assert service.outbox("contoso") == []
    assert not [r for r in service.records if r.kind == "disclosure"]


def test_compelled_disclosure_releases_only_the_named_fields_after_notifying(
    start_service: StartService,
) -> None:
    service = start_service()
    service.seed()
    response = service.client.post(
        "/t/contoso/law-enforcement/compelled", json={**COMPELLED, "redirect_attempted": True}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["released"] == {"owner": MEGAN, "message_count": 1}
    assert body["notified"] is True
    assert body["obligations"] == ["redirect_first", "minimize", "notify_tenant"]
    [notice] = service.outbox("contoso")
    assert notice["kind"] == "disclosure-notice"
    assert "LE-2026-0042" in notice["text"] and "owner, message_count" in notice["text"]
    service.flush()
    with AuditLog(service.audit_path, create=False, readonly=True) as log:
        disclosures = [e.data for e in log.records() if e.kind == "disclosure"]
    assert len(disclosures) == 1
    assert disclosures[0]["fields"] == ["owner", "message_count"] and disclosures[0]["notified"] is True


def test_compelled_disclosure_without_an_administrator_to_notify_releases_nothing(
    start_service: StartService,
) -> None:
    service = start_service()
    assert (
        service.client.post(
            "/t/tailspin/users", json={"address": "kim@tailspin.example", "name": "Kim"}
        ).status_code
        == 201
    )
    response = service.client.post(
        "/t/tailspin/law-enforcement/compelled",
        json={**COMPELLED, "mailbox": "kim@tailspin.example", "redirect_attempted": True},
    )
    assert response.status_code == 409
    assert response.json()["obligation"] == "notify_tenant"
    assert "released" not in response.json()


def test_tenants_do_not_see_each_others_mailboxes(start_service: StartService) -> None:
    service = start_service()
    service.seed()
    assert service.client.get(f"/t/contoso/mailboxes/{PAT}/diagnostics").status_code == 404


def test_no_value_leaks_into_records_audit_or_logs(
    start_service: StartService, caplog: pytest.LogCaptureFixture
) -> None:
    """Every forbidden flow in trace mode (so every record is made): the marker in the
    mail never reaches a violation, a record, the audit log or a log line."""
    caplog.set_level(logging.DEBUG)
    service = start_service("trace")
    service.seed(quota=40)
    client = service.client
    client.post("/t/contoso/admin/storage-notices?quote=latest", json={})
    client.get(f"/t/contoso/mailboxes/{MEGAN}/recommendations")
    client.post("/t/contoso/newsletter", json={"subject": "Offers"})
    client.post("/t/contoso/jobs/product-analytics", json={})
    client.post(
        "/t/contoso/law-enforcement/voluntary",
        json={"requester": "PD", "mailbox": MEGAN, "fields": ["messages"]},
    )
    client.post("/t/contoso/law-enforcement/compelled", json={**COMPELLED, "redirect_attempted": True})
    assert len(service.violations) >= 5
    service.flush()
    for record in service.records:
        assert MARKER not in repr(record) and MARKER not in str(record.to_dict())
    stored = b"".join(p.read_bytes() for p in service.audit_path.parent.glob(f"{service.audit_path.name}*"))
    assert MARKER.encode() not in stored
    assert MARKER not in caplog.text


def test_the_store_can_live_in_a_sqlite_file(tmp_path: Path) -> None:
    """Mailboxes kept in a file outlive the service; reads label them again."""
    path = tmp_path / "mail.db"
    with running(store=Store(path)) as first, httpx.Client(base_url=first.url) as client:
        assert client.post("/t/contoso/users", json={"address": MEGAN, "name": "Megan"}).status_code == 201
        delivered = client.post(
            f"/t/contoso/mailboxes/{MEGAN}/messages",
            json={"sender": "a@b.example", "subject": "Hi", "body": "Hello"},
        )
        assert delivered.status_code == 201
    first.service.store.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("select body, typeof(body) from messages").fetchall() == [("Hello", "text")]
    again = Store(path)
    pg_sqlalchemy.instrument()
    try:
        [message] = again.messages("contoso", MEGAN)
        assert message.body == "Hello"
        assert pg.labels_of(message.body) == {"customer_data.content.email"}
        assert pg.tenant_of(message.body) == "contoso"
        assert pg.labels_of(again.users("contoso")[0].address) == {"customer_data"}
    finally:
        pg_sqlalchemy.uninstrument()
        again.close()


# -- labels at the source --------------------------------------------------------------------

DEMO = Path(pg.__file__).parent / "_demo"


def test_no_line_of_the_demo_labels_a_value_by_hand() -> None:
    """What the store reads and what requests carry arrive labelled: the service never calls pg.label."""
    assert scan(DEMO).of_kind("label") == []
    by_hand = [
        f"{path.name}:{number}"
        for path in sorted(DEMO.glob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\b(pg\.)?(re)?label\(", line.split("#", 1)[0])
    ]
    assert by_hand == []


def test_categories_are_declared_once_per_field_in_models_and_bodies() -> None:
    found = {(f.function, f.keys) for f in scan(DEMO).of_kind("category")}
    assert ("store.Message", ("customer_data.content.email",)) in found
    assert ("bodies.Mail", ("customer_data.content.email",)) in found
    assert ("store.StorageUsed", ("usage_data.end_user",)) in found


def test_a_delivered_mail_is_labelled_from_the_request_body_and_from_the_store(
    start_service: StartService,
) -> None:
    service = start_service()
    service.seed()
    [message] = service.running.service.store.messages("contoso", MEGAN)
    assert pg.labels_of(message.body) == {"customer_data.content.email"}
    assert pg.labels_of(message.sender) == {"customer_data"}
    assert pg.tenant_of(message.body) == "contoso"
    assert pg.labels_of(service.running.service.store.storage_used("contoso")[MEGAN]) == {
        "usage_data.end_user"
    }
    assert pg.labels_of(service.running.service.store.administrators("contoso")[0]) == {"administrator_data"}


def test_an_invalid_body_names_the_fields_not_the_values(start_service: StartService) -> None:
    service = start_service()
    service.seed()
    answer = service.client.post(
        f"/t/contoso/mailboxes/{MEGAN}/messages", json={"sender": MARKER, "subject": "", "body": 3}
    )
    assert answer.status_code == 400
    assert answer.json() == {"error": "invalid fields: body, subject"}
