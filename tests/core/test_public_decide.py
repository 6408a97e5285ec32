"""pg.decide() reads the memoised decision directly: same answers as the guard, in every input form."""

from __future__ import annotations

import pytest

import purposeguard as pg
from purposeguard import _runtime
from purposeguard._state import STATE

EMAIL = "customer_data.content.email"


class Consents:
    def __init__(self, granted: set[tuple[str, str, str]]) -> None:
        self.granted = granted

    def has_consent(self, tenant: str, purpose: str, category: str) -> bool:
        from purposeguard._taxonomy import ancestors

        return any((tenant, p, c) in self.granted for p in ancestors(purpose) for c in ancestors(category))


def test_every_input_form_decides_what_the_guard_decides_before_and_after_memoising() -> None:
    pg.configure("trust-center")
    guard = pg.get_guard()
    reference = pg.Policy.load("trust-center")
    categories = sorted(reference.taxonomy.categories)[:12]
    purposes = sorted(reference.taxonomy.purposes)
    for purpose in purposes:
        for category in categories:
            expected = reference.decide([category], purpose)
            for _ in range(2):  # the first call fills the memo, the second reads it
                forms = [
                    category,
                    [category],
                    (category,),
                    frozenset({category}),
                    {category},
                    iter([category]),
                ]
                for form in forms:
                    got = pg.decide(form, purpose)
                    assert (got.allowed, got.rule) == (expected.allowed, expected.rule), (form, purpose)
        pair = [categories[0], categories[-1]]
        expected = reference.decide(pair, purpose)
        assert pg.decide(pair, purpose).allowed == expected.allowed
        assert guard.decide(pair, purpose).allowed == expected.allowed


def test_an_activated_guard_decides_not_the_process_wide_memo() -> None:
    pg.configure("trust-center")
    assert not pg.decide(EMAIL, "advertising").allowed  # memoised under the process guard
    permissive = pg.Policy.from_toml('[policy]\nname = "open"\ndefault = "allow"\n', source="open")
    with pg.Guard(permissive).activate():
        assert pg.decide(EMAIL, "advertising").allowed
    assert not pg.decide(EMAIL, "advertising").allowed


def test_a_memoised_denial_still_asks_the_tenants_consent() -> None:
    consents = Consents({("contoso", "improvement", "customer_data")})
    guard = pg.Guard(pg.Policy.load("trust-center"), consents=consents)
    with guard.activate():
        assert not pg.decide(EMAIL, "improvement").allowed  # memoised denial
        assert pg.decide(EMAIL, "improvement", tenant="contoso").allowed
        assert not pg.decide([EMAIL], "improvement", tenant="fabrikam").allowed
        consents.granted.clear()
        assert not pg.decide(EMAIL, "improvement", tenant="contoso").allowed


def test_unknown_keys_are_refused_even_next_to_a_memoised_decision() -> None:
    pg.configure("trust-center")
    pg.decide(EMAIL, "service.operations")
    with pytest.raises(pg.UnknownKeyError):
        pg.decide(EMAIL, "no.such.purpose")
    with pytest.raises(pg.UnknownKeyError):
        pg.decide("no.such.category", "service.operations")
    with pytest.raises(pg.UnknownKeyError):
        pg.decide([EMAIL, "no.such.category"], "service.operations")


def test_the_one_category_sets_are_bounded_and_evicted_one_at_a_time() -> None:
    pg.configure("trust-center")
    limit = _runtime._SINGLE_SETS_LIMIT
    pg.decide(EMAIL, "service.operations")
    for index in range(limit + 50):
        with pytest.raises(pg.UnknownKeyError):
            pg.decide(f"unknown.category{index}", "service.operations")
    assert len(STATE.single_sets) == limit  # full, never emptied at once
    assert EMAIL not in STATE.single_sets  # the oldest went first
    assert pg.decide(EMAIL, "service.operations").allowed
    pg.testing.reset()
    assert not STATE.single_sets


def test_no_grant_covers_data_of_several_tenants_even_under_the_markers_name() -> None:
    """A tenant that calls itself "(several tenants)" and consents must not
    release every mixed value: the marker is never a tenant to ask."""
    from purposeguard._context import MIXED_TENANT

    consents = Consents(
        {(MIXED_TENANT, "improvement", "customer_data"), ("contoso", "improvement", "customer_data")}
    )
    guard = pg.Guard(pg.Policy.load("trust-center"), consents=consents)
    with guard.activate():
        assert pg.decide(EMAIL, "improvement", tenant="contoso").allowed  # the store answers
        assert not pg.decide(EMAIL, "improvement", tenant=MIXED_TENANT).allowed
        assert not guard.decide([EMAIL], "improvement", tenant=MIXED_TENANT).allowed
        mixed = pg.label("Quarterly numbers", EMAIL, tenant="contoso") + pg.label(
            " and more", EMAIL, tenant="fabrikam"
        )
        assert pg.tenant_of(mixed) == MIXED_TENANT
        with pytest.raises(pg.PurposeViolation):
            pg.check(mixed, "improvement")


@pytest.mark.parametrize(
    "tenant",
    [5, b"contoso", "x" * 300, "con\x00toso", "", " contoso"],
    ids=["int", "bytes", "too-long", "nul", "empty", "padded"],
)
def test_decide_and_explain_refuse_a_tenant_that_is_no_tenant_id(tenant: object) -> None:
    pg.configure("trust-center")
    with pytest.raises((TypeError, ValueError)):
        pg.decide(["customer_data"], "improvement", tenant=tenant)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError)):
        pg.explain("customer_data", "improvement", tenant=tenant)  # type: ignore[arg-type]
    # Seen before (memoised) or not, the same answer.
    with pytest.raises((TypeError, ValueError)):
        pg.decide(["customer_data"], "improvement", tenant=tenant)  # type: ignore[arg-type]


def test_a_labelled_tenant_is_refused_and_its_value_never_quoted() -> None:
    pg.configure("trust-center")
    tenant = pg.label("megan@contoso.example", "customer_data")
    with pytest.raises(ValueError) as refused:
        pg.decide(["customer_data"], "improvement", tenant=tenant)
    assert "megan" not in str(refused.value)
    assert pg.decide(["customer_data"], "improvement", tenant="contoso").allowed is False
