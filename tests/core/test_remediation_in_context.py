"""A refusal's advice is said for how the flow was met: a read (``via="source"``)
is refused before any transform could see the value, and several tenants'
data is no one tenant's to consent for."""

from __future__ import annotations

import pytest

import purposeguard as pg
from purposeguard._context import MIXED_TENANT

EMAIL = "customer_data.content.email"


def test_a_read_is_told_to_load_less_not_only_to_transform() -> None:
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PurposeViolation) as refused, pg.purpose("service.communications"):
        pg.label("Quarterly numbers", EMAIL)
    (violation,) = refused.value.violations
    assert violation.via == "source"
    assert "reading is a use: load only what service.communications may read" in violation.remediation
    assert "load_only()/defer()" in str(refused.value)
    # The policy's own advice is kept after it.
    assert "usage-aggregate" in violation.remediation
    assert "Quarterly" not in str(refused.value)


def test_an_argument_keeps_the_policys_advice_alone() -> None:
    pg.configure("trust-center", mode="enforce")

    @pg.purpose("service.communications")
    def digest(body: str) -> str:
        return "sent"

    with pytest.raises(pg.PurposeViolation) as refused:
        digest(pg.label("Quarterly numbers", EMAIL))
    assert "reading is a use" not in refused.value.violations[0].remediation


def test_a_consentable_refusal_of_several_tenants_data_says_why_no_consent_helps() -> None:
    pg.configure("trust-center", mode="enforce")
    mixed = pg.label("one", EMAIL, tenant="acme") + pg.label(" two", EMAIL, tenant="globex")
    assert pg.tenant_of(mixed) == MIXED_TENANT
    with pytest.raises(pg.PurposeViolation) as refused:
        pg.check(mixed, "improvement")
    (violation,) = refused.value.violations
    assert violation.fix == "consent"
    assert "no one tenant's consent covers" in violation.remediation
    with pytest.raises(pg.PurposeViolation) as one_tenant:
        pg.check(pg.label("one", EMAIL, tenant="acme"), "improvement")
    assert "no one tenant's consent covers" not in one_tenant.value.violations[0].remediation
