"""Consent: grants widen consentable uses only, revocation and expiry apply at once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import purposeguard as pg
from purposeguard import audit
from purposeguard.audit import AuditLog
from purposeguard.consent import ConsentChange, ConsentStore

EMAIL = "customer_data.content.email"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pg.purpose("improvement")
def train_spam_model(text: str) -> int:
    return len(text)


@pytest.fixture
def store(log_path: Path) -> Iterator[ConsentStore]:
    consent_store = ConsentStore(log_path, tenants=["contoso", "fabrikam"])
    yield consent_store
    consent_store.close()


def test_grant_turns_the_consentable_deny_into_allow_for_that_tenant_only(store: ConsentStore) -> None:
    guard = pg.Guard(pg.Policy.load("trust-center"), consents=store)
    assert not guard.decide([EMAIL], "improvement", tenant="contoso").allowed
    store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    decision = guard.decide([EMAIL], "improvement", tenant="contoso")
    assert decision.allowed and decision.consent
    assert decision.rule == "improvement-only-with-consent"
    assert not guard.decide([EMAIL], "improvement", tenant="fabrikam").allowed
    assert not guard.decide([EMAIL], "improvement").allowed


def test_configure_consents_applies_to_guarded_calls(store: ConsentStore) -> None:
    pg.configure("trust-center", consents=store)
    body = pg.label("spam sample", EMAIL, tenant="contoso")
    with pytest.raises(pg.PurposeViolation):
        train_spam_model(body)
    store.grant("contoso", "improvement", "customer_data", granted_by="admin@contoso")
    assert train_spam_model(body) == len(body)
    with pg.zone(tenant="fabrikam"):
        with pytest.raises(pg.PurposeViolation):
            train_spam_model(pg.label("spam sample", EMAIL))


def test_revocation_applies_to_the_next_decision_despite_memoised_decisions(store: ConsentStore) -> None:
    pg.configure("trust-center", consents=store)
    body = pg.label("spam sample", EMAIL, tenant="contoso")
    store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    for _ in range(3):  # the base decision for this label set is memoised now
        assert train_spam_model(body)
    store.revoke("contoso", "improvement", ["customer_data"], revoked_by="admin@contoso")
    with pytest.raises(pg.PurposeViolation) as caught:
        train_spam_model(body)
    assert caught.value.rule == "improvement-only-with-consent"


def test_a_revocation_by_another_process_applies_here(log_path: Path) -> None:
    """Another connection (another process, in production) revokes; this store sees it at once."""
    import subprocess
    import sys

    here = ConsentStore(log_path)
    guard = pg.Guard(pg.Policy.load("trust-center"), consents=here)
    here.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    assert guard.decide([EMAIL], "improvement", tenant="contoso").allowed
    script = (
        "import sys; from purposeguard.consent import ConsentStore; "
        "ConsentStore(sys.argv[1]).revoke('contoso', 'improvement', revoked_by='dpo@contoso')"
    )
    subprocess.run([sys.executable, "-c", script, str(log_path)], check=True, timeout=60)
    assert not guard.decide([EMAIL], "improvement", tenant="contoso").allowed
    here.close()


def test_a_revocation_by_another_store_on_the_same_log_applies_here(log_path: Path) -> None:
    """Two stores sharing one AuditLog share one connection, whose own commits
    do not move SQLite's data_version: the guard's store must still see them."""
    log = AuditLog(log_path)
    deciding = ConsentStore(log)
    pg.configure("trust-center", consents=deciding)
    admin = ConsentStore(log)

    def allowed() -> bool:
        return pg.decide([EMAIL], "improvement", tenant="contoso").allowed

    assert not allowed()
    admin.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    assert allowed()
    admin.revoke("contoso", "improvement", revoked_by="admin@contoso")
    assert not allowed()
    admin.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    assert allowed()
    # And the other way round: the deciding store's own change, seen by the admin store.
    deciding.revoke("contoso", "improvement", ["customer_data"], revoked_by="dpo@contoso")
    assert not admin.has_consent("contoso", "improvement", EMAIL)
    assert not allowed()
    log.close()


def test_expired_grants_stop_applying(log_path: Path) -> None:
    clock = Clock()
    store = ConsentStore(log_path, clock=clock)
    guard = pg.Guard(pg.Policy.load("trust-center"), consents=store)
    store.grant(
        "contoso", "improvement", ["customer_data"], granted_by="admin@contoso", expires_at=clock.now + 60
    )
    assert guard.decide([EMAIL], "improvement", tenant="contoso").allowed
    clock.now += 61
    assert not guard.decide([EMAIL], "improvement", tenant="contoso").allowed
    assert store.list("contoso") == []
    assert len(store.list("contoso", include_expired=True)) == 1
    store.close()


def test_expiry_as_an_aware_datetime(store: ConsentStore) -> None:
    later = datetime.now(timezone.utc) + timedelta(days=30)
    change = store.grant("contoso", "improvement", [EMAIL], granted_by="a@contoso", expires_at=later)
    assert change.expires_at == pytest.approx(later.timestamp())
    with pytest.raises(pg.PolicyError, match="timezone-aware"):
        store.grant(
            "contoso", "improvement", [EMAIL], granted_by="a@contoso", expires_at=datetime(2099, 1, 1)
        )
    with pytest.raises(pg.PolicyError, match="already past"):
        store.grant("contoso", "improvement", [EMAIL], granted_by="a@contoso", expires_at=1.0)


def test_list_shows_who_granted_what_and_when(log_path: Path) -> None:
    clock = Clock()
    store = ConsentStore(log_path, clock=clock)
    store.grant(
        "contoso", "improvement", [EMAIL, "customer_data.content.document"], granted_by="admin@contoso"
    )
    store.grant("fabrikam", "improvement", "customer_data", granted_by="it@fabrikam")
    grants = store.list()
    assert [(g.tenant, g.category) for g in grants] == [
        ("contoso", "customer_data.content.document"),
        ("contoso", EMAIL),
        ("fabrikam", "customer_data"),
    ]
    assert {g.granted_by for g in store.list("contoso")} == {"admin@contoso"}
    assert grants[0].granted_at == clock.now and grants[0].expires_at is None
    store.close()


@pytest.mark.parametrize(
    ("purpose", "category", "rule"),
    [
        ("advertising", "customer_data", "no-advertising"),
        ("advertising", EMAIL, "no-advertising"),
        ("marketing.direct", "customer_data", "no-direct-marketing"),
        ("disclosure.voluntary", "customer_data", "no-voluntary-disclosure"),
        ("service.communications", EMAIL, "no-content-in-service-communications"),
    ],
)
def test_a_grant_where_the_rule_is_not_consentable_names_the_rule(
    store: ConsentStore, purpose: str, category: str, rule: str
) -> None:
    with pytest.raises(pg.PolicyError, match="not consentable") as caught:
        store.grant("contoso", purpose, [category], granted_by="admin@contoso")
    assert caught.value.rule == rule
    assert rule in str(caught.value)
    assert store.list() == [] and len(store.audit) == 0


def test_a_grant_decided_by_the_default_or_already_allowed_is_refused(store: ConsentStore) -> None:
    with pytest.raises(pg.PolicyError, match="the policy default is not consentable"):
        store.grant("contoso", "marketing", ["payment_data"], granted_by="admin@contoso")
    with pytest.raises(pg.PolicyError, match="already allowed") as caught:
        store.grant("contoso", "service.operations", ["customer_data"], granted_by="admin@contoso")
    assert caught.value.rule == "operate-the-service"
    assert len(store.audit) == 0


@pytest.mark.parametrize(
    ("tenant", "purpose", "categories", "error", "text"),
    [
        ("initech", "improvement", ["customer_data"], pg.UnknownKeyError, "unknown tenant 'initech'"),
        ("", "improvement", ["customer_data"], pg.PolicyError, "malformed tenant"),
        ("contoso", "improvment", ["customer_data"], pg.UnknownKeyError, "unknown purpose 'improvment'"),
        ("contoso", "improvement", ["customer_dta"], pg.UnknownKeyError, "unknown category 'customer_dta'"),
        ("contoso", "improvement", [], pg.PolicyError, "at least one category"),
    ],
)
def test_bad_grants_are_clear_errors_and_leave_no_record(
    store: ConsentStore, tenant: str, purpose: str, categories: list[str], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        store.grant(tenant, purpose, categories, granted_by="admin@contoso")
    assert store.list() == []
    assert len(store.audit) == 0
    assert store.audit.verify().ok


def test_who_granted_is_required(store: ConsentStore) -> None:
    with pytest.raises(pg.PolicyError, match="granted_by must name who"):
        store.grant("contoso", "improvement", ["customer_data"], granted_by="  ")
    assert len(store.audit) == 0


def test_revoking_what_was_never_granted_is_an_error_and_records_nothing(store: ConsentStore) -> None:
    store.grant("contoso", "improvement", [EMAIL], granted_by="admin@contoso")
    with pytest.raises(
        pg.PolicyError, match="has no consent to improvement for customer_data.content.document"
    ):
        store.revoke(
            "contoso", "improvement", [EMAIL, "customer_data.content.document"], revoked_by="x@contoso"
        )
    # All or nothing: the email grant is still there.
    assert [g.category for g in store.list("contoso")] == [EMAIL]
    assert len(store.audit) == 1
    with pytest.raises(pg.UnknownKeyError):
        store.revoke("initech", "improvement", revoked_by="x@contoso")


def test_consent_changes_are_audited_in_the_same_file(store: ConsentStore, log_path: Path) -> None:
    store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    store.revoke("contoso", "improvement", revoked_by="dpo@contoso")
    with AuditLog(log_path, readonly=True) as log:
        grant, revoke = log.records()
        assert log.verify().ok
    assert (grant.kind, grant.data["action"], grant.data["actor"]) == ("consent", "grant", "admin@contoso")
    assert grant.data["rules"] == ["improvement-only-with-consent"]
    assert grant.data["categories"] == ["customer_data"]
    assert (revoke.data["action"], revoke.data["actor"]) == ("revoke", "dpo@contoso")


def test_consent_changes_are_dispatched_and_written_once_to_a_shared_log(log_path: Path) -> None:
    log = AuditLog(log_path)
    store = ConsentStore(log)
    audit.attach(log)
    with pg.testing.capture_records() as records:
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    audit.detach()
    (record,) = records
    assert isinstance(record, ConsentChange) and record.kind == "consent"
    assert record.audit_ref == f"{log.log_id}:1"
    assert log.verify().count == 1
    log.close()


def test_consent_changes_also_reach_a_separate_audit_sink(tmp_path: Path) -> None:
    store = ConsentStore(tmp_path / "consent.db")
    audit.attach(tmp_path / "audit.db")
    store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    audit.detach()
    with AuditLog(tmp_path / "audit.db", readonly=True) as log:
        (entry,) = log.records()
    assert entry.kind == "consent" and entry.data["tenant"] == "contoso"
    store.close()


def test_a_store_can_share_the_audit_logs_file(log_path: Path) -> None:
    with AuditLog(log_path) as log:
        store = ConsentStore(log)
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
        log.append({"kind": "note", "text": "after"})
        assert log.verify().count == 2
    with ConsentStore(log_path) as again:
        assert again.has_consent("contoso", "improvement", EMAIL)
        assert not again.has_consent("contoso", "advertising", EMAIL)


def test_a_foreign_file_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "consent.db"
    junk.write_bytes(b"\x00garbage" * 500)
    with pytest.raises(pg.PurposeGuardError, match="not an SQLite database"):
        ConsentStore(junk)


def test_a_value_naming_no_tenant_in_a_zone_that_read_another_tenants_data_is_no_ones_to_consent_for(
    store: ConsentStore,
) -> None:
    """The zone's tenant consented; the zone also read another tenant's data:
    a value that names no tenant of its own may be either's, and one
    tenant's consent never covers the other's data."""
    pg.configure("trust-center", consents=store)
    store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    with pg.zone(tenant="contoso"):
        assert train_spam_model(pg.label("spam sample", EMAIL)) == 11
    with pg.zone(tenant="contoso"):
        str(pg.label("a note of another tenant", EMAIL, tenant="fabrikam"))
        with pytest.raises(pg.PurposeViolation) as caught:
            train_spam_model(pg.label("spam sample", EMAIL))
    assert caught.value.rule == "improvement-only-with-consent"
