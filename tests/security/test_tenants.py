"""One tenant rule: several tenants' data belongs to none, a value's tenant beats the zone's,
and no tenant's consent covers another tenant's data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import purposeguard as pg
from purposeguard._labels import tenant_of_values
from purposeguard.consent import ConsentStore

EMAIL = "customer_data.content.email"
MIXED = "(several tenants)"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConsentStore]:
    consent_store = ConsentStore(tmp_path / "audit.log", tenants=["contoso", "fabrikam"])
    consent_store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    yield consent_store
    consent_store.close()


@pg.purpose("improvement")
def train(text: str) -> int:
    return len(text)


def _laundered(value: str) -> str:
    # A new str built in C: no label of its own, only the zone knows.
    return "".join(reversed(str.__str__(value)))


def test_a_consenting_tenants_zone_does_not_cover_another_tenants_laundered_data(store: ConsentStore) -> None:
    """Inside zone(tenant="contoso") with contoso's consent, fabrikam's laundered data is refused."""
    pg.configure("trust-center", mode="enforce", context_mode="enforce", consents=store)
    with pg.zone(tenant="contoso"), pg.testing.capture() as violations:
        text = _laundered(pg.label("fabrikam's mail", EMAIL, tenant="fabrikam"))
        try:
            train(text)
        except pg.PurposeViolation:
            pass  # the rule's own context_mode decides whether it raises
    # Not allowed: recorded for data that is no single tenant's.
    assert [(v.category, v.via, v.tenant) for v in violations] == [(EMAIL, "context", MIXED)]


def test_a_consenting_tenants_own_laundered_data_is_allowed_in_its_zone(store: ConsentStore) -> None:
    """The same flow with contoso's own data is covered by contoso's consent."""
    pg.configure("trust-center", mode="enforce", context_mode="enforce", consents=store)
    with pg.zone(tenant="contoso"):
        text = _laundered(pg.label("contoso's mail", EMAIL, tenant="contoso"))
        assert train(text) == len(text)


def test_a_values_own_tenant_beats_the_zones(store: ConsentStore) -> None:
    """fabrikam's labelled value in contoso's zone is decided for fabrikam, which did not consent."""
    pg.configure("trust-center", mode="enforce", consents=store)
    with pg.zone(tenant="contoso"), pytest.raises(pg.PurposeViolation) as raised:
        train(pg.label("fabrikam's mail", EMAIL, tenant="fabrikam"))
    assert raised.value.violations[0].tenant == "fabrikam"


def test_mixed_tenants_in_one_value_belong_to_none(store: ConsentStore) -> None:
    """A value built from contoso's and fabrikam's data is no tenant's: contoso's consent does not cover it."""
    pg.configure("trust-center", mode="enforce", consents=store)
    both = pg.label("a", EMAIL, tenant="contoso") + pg.label("b", EMAIL, tenant="fabrikam")
    assert pg.tenant_of(both) == MIXED
    with pytest.raises(pg.PurposeViolation) as raised:
        train(both)
    assert raised.value.violations[0].tenant == MIXED


def test_a_nested_value_of_another_tenant_is_found_by_the_deep_walk(store: ConsentStore) -> None:
    """Whose data a nested structure is comes from the same deep walk as its labels."""
    pg.configure("trust-center", mode="enforce", consents=store)
    nested = {
        "rows": [
            {"body": pg.label("x", EMAIL, tenant="contoso")},
            {"body": pg.label("y", EMAIL, tenant="fabrikam")},
        ]
    }
    assert tenant_of_values([nested]) == MIXED


def test_a_transform_in_another_tenants_zone_records_the_values_tenant() -> None:
    """A transform run in contoso's zone on fabrikam's value labels the result as fabrikam's."""
    pg.configure("trust-center", mode="enforce")
    with pg.zone(tenant="contoso"):
        size = pg.transform("usage-aggregate")(lambda text: len(text))
        with pg.testing.capture_records() as records:
            result = size(pg.label("fabrikam's mail", EMAIL, tenant="fabrikam"))
    assert pg.tenant_of(result) == "fabrikam"
    assert [getattr(r, "tenant", None) for r in records if r.kind == "declassification"] == ["fabrikam"]
