"""One tenant rule: several tenants' data belongs to none, a value's tenant beats the zone's,
and no tenant's consent covers another tenant's data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard._labels import tenant_of_values
from purposeguard.consent import ConsentStore

EMAIL = "customer_data.content.email"
CUSTOMER = "customer_data"
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


# -- the same rule in transforms, disclosures and records ------------------------------

MARKER = "tenant-marker-5521"


@pg.transform("usage-aggregate")
def _size(*texts: str) -> int:
    return sum(len(t) for t in texts)


def test_a_transform_of_several_tenants_data_records_no_single_tenant() -> None:
    """A transform fed contoso's and fabrikam's data: its result and its record belong to none."""
    pg.configure("trust-center", mode="enforce")
    with pg.zone(tenant="contoso"), pg.testing.capture_records() as records:
        result = _size(pg.label("a", EMAIL, tenant="contoso"), pg.label("b", EMAIL, tenant="fabrikam"))
    assert pg.tenant_of(result) == MIXED
    assert [getattr(r, "tenant", None) for r in records if r.kind == "declassification"] == [MIXED]


def test_a_transform_of_unowned_data_records_the_zones_tenant() -> None:
    """Data that names no tenant is the zone's: the record says contoso."""
    pg.configure("trust-center", mode="enforce")
    with pg.zone(tenant="contoso"), pg.testing.capture_records() as records:
        _size(pg.label("a", EMAIL))
    assert [getattr(r, "tenant", None) for r in records if r.kind == "declassification"] == ["contoso"]


def test_another_tenants_data_seen_by_a_transform_is_no_longer_covered_by_the_zones_consent(
    store: ConsentStore,
) -> None:
    """fabrikam's value (labelled before the zone) reaching a transform in contoso's zone makes the zone's
    data several tenants': contoso's consent no longer covers text laundered from it."""
    pg.configure("trust-center", mode="enforce", context_mode="enforce", consents=store)
    theirs = pg.label("fabrikam's mail", EMAIL, tenant="fabrikam")
    with pg.zone(tenant="contoso"), pg.testing.capture() as violations:
        _size(theirs)
        try:
            train(_laundered(theirs))
        except pg.PurposeViolation:
            pass
    assert (EMAIL, "context", MIXED) in {(v.category, v.via, v.tenant) for v in violations}
    assert {v.tenant for v in violations} == {MIXED}


@pg.transform("usage-aggregate")
def _count_refused(value: object) -> int:
    return 1


def test_a_refused_transform_still_tells_the_zone_whose_data_reached_it(store: ConsentStore) -> None:
    """A transform that refuses fabrikam's input (a category outside its `from`) still marks the zone as
    holding fabrikam's data, so contoso's consent no longer covers the zone's flows."""
    pg.configure("trust-center", mode="enforce", context_mode="enforce", consents=store)
    theirs = pg.label("billing ref 4411", "payment_data", tenant="fabrikam")
    with pg.zone(tenant="contoso"), pg.testing.capture():
        with pytest.raises(pg.PurposeViolation):
            _count_refused(theirs)
        state = pg.current_zone()
        assert state is not None and state.data_tenant() == MIXED


def test_a_return_value_of_another_tenant_is_recorded_for_its_own_tenant() -> None:
    """fabrikam's value returned from guarded code in contoso's zone: the record names fabrikam."""
    pg.configure("trust-center", mode="trace")

    theirs = pg.label("fabrikam's mail", EMAIL, tenant="fabrikam")

    @pg.purpose("advertising")
    def build() -> str:
        return theirs

    with pg.zone(tenant="contoso"), pg.testing.capture() as violations:
        build()
    assert {(v.via, v.tenant) for v in violations if v.via == "return"} == {("return", "fabrikam")}


def test_a_read_of_another_tenants_data_is_recorded_for_its_own_tenant() -> None:
    """Labelling fabrikam's data under a purpose in contoso's zone: the source record names fabrikam."""
    pg.configure("trust-center", mode="trace")
    with pg.zone(tenant="contoso"), pg.purpose("advertising"), pg.testing.capture() as violations:
        pg.label("fabrikam's mail", EMAIL, tenant="fabrikam")
    assert {(v.via, v.tenant) for v in violations if v.via == "source"} == {("source", "fabrikam")}


class _Customer:
    def __init__(self, email: str) -> None:
        self.email = email


def _case(tmp_path: Path, tenant: str = "contoso") -> Any:
    return pg.compelled_disclosure(
        case="LE-7",
        tenant=tenant,
        authority="Court",
        redirect_attempted=True,
        notifier=lambda notice: None,
        audit=tmp_path / "audit.db",
    )


@pytest.mark.parametrize(
    "record",
    [
        lambda: pg.label({"email": f"{MARKER}@fabrikam"}, CUSTOMER, tenant="fabrikam"),
        lambda: pg.label(_Customer(f"{MARKER}@fabrikam"), CUSTOMER, tenant="fabrikam"),
    ],
    ids=["labelled-dict", "labelled-object"],
)
def test_a_disclosure_refuses_a_field_of_a_record_labelled_for_another_tenant(
    tmp_path: Path, record: Callable[[], Any]
) -> None:
    """The record as a whole is fabrikam's: its plain fields are fabrikam's data, refused in contoso's case."""
    pg.configure("trust-center", mode="enforce")
    with _case(tmp_path) as disclosure, pytest.raises(pg.ObligationError) as raised:
        disclosure.release(record(), fields=["email"])
    assert raised.value.obligation == "tenant"
    assert MARKER not in str(raised.value)


def test_a_disclosure_in_another_tenants_zone_releases_the_cases_own_data(tmp_path: Path) -> None:
    """A value's own tenant beats the zone's: contoso's data is released in contoso's case inside fabrikam's zone."""
    pg.configure("trust-center", mode="enforce")
    with pg.zone(tenant="fabrikam"), _case(tmp_path) as disclosure:
        released = disclosure.release(
            {"email": pg.label("megan@contoso", CUSTOMER, tenant="contoso")}, ["email"]
        )
    assert released["email"] == "megan@contoso"


def test_a_disclosure_refuses_unowned_data_read_in_another_tenants_zone(tmp_path: Path) -> None:
    """Data naming no tenant is the zone's: in fabrikam's zone it is not contoso's to release."""
    pg.configure("trust-center", mode="enforce")
    with (
        pg.zone(tenant="fabrikam"),
        _case(tmp_path) as disclosure,
        pytest.raises(pg.ObligationError) as raised,
    ):
        disclosure.release({"email": pg.label(f"{MARKER}@fabrikam", CUSTOMER)}, ["email"])
    assert raised.value.obligation == "tenant"


def test_a_disclosure_of_several_tenants_data_in_the_cases_zone_is_refused(tmp_path: Path) -> None:
    """contoso's zone holding fabrikam's value too: a field built from both is nobody's, refused."""
    pg.configure("trust-center", mode="enforce")
    both = pg.label("a", CUSTOMER, tenant="contoso") + pg.label("b", CUSTOMER, tenant="fabrikam")
    with pg.zone(tenant="contoso"), _case(tmp_path) as disclosure, pytest.raises(pg.ObligationError):
        disclosure.release({"email": both}, ["email"])
