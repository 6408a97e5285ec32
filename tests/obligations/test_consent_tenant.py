"""has_consent takes a tenant id as zones and labels do: anything else is a
clear error naming the rule (never the value), a str subclass is looked up
as its plain value, and a well-formed id no grant can name has no consent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard.consent import ConsentStore

EMAIL = "customer_data.content.email"
MARKER = "PGMARKER-tenant"


class Tenant(str):
    """A str subclass, as a framework's request object may hand one."""


class EqualsAnyTenant(str):
    """Hashes and compares like the tenant that consented, whatever it holds."""

    def __hash__(self) -> int:
        return hash("contoso")

    def __eq__(self, other: object) -> bool:
        return True


@pg.purpose("improvement")
def train_spam_model(text: str) -> int:
    return len(text)


@pytest.fixture
def store(log_path: Path) -> Iterator[ConsentStore]:
    consent_store = ConsentStore(log_path)
    pg.configure("trust-center", mode="enforce", consents=consent_store)
    consent_store.grant("contoso", "improvement", "customer_data", granted_by="admin@contoso")
    yield consent_store
    consent_store.close()


NOT_TENANT_IDS: dict[str, Any] = {
    "int": 5,
    "float": 1.5,
    "bool": True,
    "none": None,
    "bytes": b"contoso",
    "dict": {},
    "list": ["contoso"],
    "empty": "",
    "too-long": MARKER + "a" * 100_000,
    "newline": MARKER + "\ncontoso",
    "nul": MARKER + "\x00contoso",
    "bidi-override": MARKER + "\u202econtoso",
    "leading-space": " " + MARKER,
}


@pytest.mark.parametrize("tenant", list(NOT_TENANT_IDS.values()), ids=list(NOT_TENANT_IDS))
def test_has_consent_refuses_what_is_no_tenant_id_without_repeating_it(
    store: ConsentStore, tenant: Any
) -> None:
    with pytest.raises(pg.PolicyError) as refused:
        store.has_consent(tenant, "improvement", EMAIL)
    assert refused.value.field == "tenant"
    assert "tenant id" in str(refused.value)
    assert MARKER not in str(refused.value)


def test_has_consent_refuses_a_labelled_tenant(store: ConsentStore) -> None:
    labelled = pg.label("contoso", "customer_data")
    with pytest.raises(pg.PolicyError, match="must not be a labelled value") as refused:
        store.has_consent(labelled, "improvement", EMAIL)
    assert "contoso" not in str(refused.value)


def test_a_str_subclass_is_asked_about_as_its_plain_value(store: ConsentStore) -> None:
    assert store.has_consent("contoso", "improvement", EMAIL)  # now cached
    # Whatever it claims to equal, it is the tenant its text names.
    assert not store.has_consent(EqualsAnyTenant("mallory"), "improvement", EMAIL)
    assert store.has_consent(Tenant("contoso"), "improvement", EMAIL)


def test_a_well_formed_tenant_no_grant_can_name_has_no_consent(store: ConsentStore) -> None:
    # Zones and labels take it; grant() does not, so it cannot have consented.
    assert not store.has_consent("Acme Corp", "improvement", EMAIL)
    body = pg.label("spam sample", EMAIL, tenant="Acme Corp")
    with pytest.raises(pg.PurposeViolation) as refused:
        train_spam_model(body)
    assert refused.value.rule == "improvement-only-with-consent"
    assert train_spam_model(pg.label("spam sample", EMAIL, tenant="contoso")) == len("spam sample")
