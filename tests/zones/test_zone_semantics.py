"""Zones: what they learn, how they nest, and what guarded code checks against them."""

from __future__ import annotations

import pytest

import purposeguard as pg

EMAIL = "customer_data.content.email"
DOCUMENT = "customer_data.content.document"


@pg.purpose("advertising")
def show_ads(user_id: str) -> str:
    return f"ads for {user_id}"


@pg.purpose("service.operations")
def troubleshoot(user_id: str) -> str:
    return f"ticket for {user_id}"


def test_a_label_created_in_a_zone_adds_its_categories() -> None:
    with pg.zone() as state:
        assert state.categories == frozenset()
        pg.label("body", EMAIL)
        assert state.categories == {EMAIL}


def test_a_produced_value_adds_its_categories() -> None:
    @pg.produces(DOCUMENT)
    def read_file() -> str:
        return "file body"

    with pg.zone() as state:
        read_file()
    assert state.categories == {DOCUMENT}


def test_a_value_checked_in_a_zone_adds_its_categories() -> None:
    body = pg.label("body", EMAIL)  # labelled before the zone: the zone does not know it yet
    with pg.zone() as state:
        assert state.categories == frozenset()
        pg.check(body, "service.operations")
        assert state.categories == {EMAIL}


def test_a_value_passed_into_guarded_code_adds_its_categories() -> None:
    body = pg.label("body", EMAIL)
    with pg.zone() as state:
        troubleshoot(body)
        assert state.categories == {EMAIL}


def test_a_zone_seeded_with_categories_starts_with_them() -> None:
    with pg.zone(categories=[EMAIL]) as state:
        assert state.categories == {EMAIL}


def test_a_zone_seeded_with_an_unknown_key_raises() -> None:
    with pytest.raises(pg.UnknownKeyError):
        pg.zone(categories=["customer_data.nonsense"])


def test_a_zone_tenant_must_be_a_string() -> None:
    with pytest.raises(TypeError):
        pg.zone(tenant=42)  # type: ignore[arg-type]


def test_the_zone_tenant_is_the_current_tenant() -> None:
    assert pg.current_tenant() is None
    with pg.zone(tenant="contoso"):
        assert pg.current_tenant() == "contoso"
        with pg.zone():
            assert pg.current_tenant() == "contoso"  # inherited
        with pg.zone(tenant="fabrikam"):
            assert pg.current_tenant() == "fabrikam"
        assert pg.current_tenant() == "contoso"
    assert pg.current_tenant() is None


# -- nesting --------------------------------------------------------------------


def test_a_nested_zone_starts_with_its_parents_categories() -> None:
    with pg.zone() as outer:
        pg.label("body", EMAIL)
        with pg.zone() as inner:
            assert inner.categories == {EMAIL}
            assert pg.current_zone() is inner
        assert pg.current_zone() is outer


def test_what_a_nested_zone_learns_flows_back_when_it_closes() -> None:
    with pg.zone() as outer:
        with pg.zone() as inner:
            pg.label("file", DOCUMENT)
            assert outer.categories == frozenset()  # not before it closes
        assert inner.categories == {DOCUMENT}
        assert outer.categories == {DOCUMENT}


def test_a_sibling_zone_does_not_see_what_the_first_learned_before_it_closed() -> None:
    with pg.zone():
        with pg.zone() as first:
            pg.label("file", DOCUMENT)
        with pg.zone() as second:
            # The first closed, so the parent (and a new child) now know it.
            assert second.categories == {DOCUMENT}
        assert first.closed


def test_what_a_closed_nested_zone_still_learns_reaches_the_parent() -> None:
    """Work started in a nested zone (a task) may outlive it; its labels still count."""
    with pg.zone() as outer:
        with pg.zone() as inner:
            pass
        inner.add(frozenset({EMAIL}))
        assert outer.categories == {EMAIL}


def test_a_guarded_call_in_a_parent_sees_a_closed_childs_categories() -> None:
    # A probe of where zone categories travel: traced, since the pack's
    # never-rules would refuse the flow (context_mode = "enforce").
    pg.configure("trust-center", context_mode="trace")
    with pg.testing.capture() as violations:
        with pg.zone():
            with pg.zone():
                pg.label("body", EMAIL)
            show_ads("u-1")
    assert [(v.via, v.category) for v in violations] == [("context", EMAIL)]


# -- outside any zone ------------------------------------------------------------------


def test_outside_a_zone_there_is_no_zone_and_no_tracking() -> None:
    with pg.zone():
        pass  # zones have been used in this process: the flag is set
    assert pg.current_zone() is None
    pg.label("body", EMAIL)
    with pg.testing.capture() as violations:
        assert show_ads("u-1") == "ads for u-1"
    assert violations == []
    with pg.zone() as state:
        # A label made before the zone opened is not part of the zone.
        assert state.categories == frozenset()


# -- checks against the zone -------------------------------------------------------------


def test_a_guarded_entry_checks_the_zone_via_context_in_context_mode() -> None:
    """trust-center: no-advertising sets context_mode = "enforce", so the call is refused."""
    with pg.testing.capture() as violations:
        with pg.zone(tenant="contoso"):
            pg.label("body", EMAIL)
            with pytest.raises(pg.PurposeViolation):
                show_ads("u-1")
    assert len(violations) == 1
    violation = violations[0]
    assert violation.via == "context"
    assert violation.mode == "enforce"
    assert violation.category == EMAIL
    assert violation.purpose == "advertising"
    assert violation.rule == "no-advertising"
    assert violation.tenant == "contoso"
    assert violation.function.endswith("show_ads")


def test_an_argument_flow_keeps_mode_while_the_zone_keeps_context_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Through the environment: configure(mode="trace") would cap the zone's flows too.
    monkeypatch.setenv("PURPOSEGUARD_MODE", "trace")
    pg.configure("trust-center", context_mode="enforce")
    with pg.testing.capture() as violations:
        with pg.zone():
            body = pg.label("body", EMAIL)
            pg.label("file", DOCUMENT)
            with pytest.raises(pg.PurposeViolation) as raised:
                show_ads(body)
    # The email came as the argument (mode: trace); the document reached the
    # zone only, so it is reported via context (context_mode: enforce).
    assert sorted((v.via, v.mode, v.category) for v in violations) == [
        ("argument", "trace", EMAIL),
        ("context", "enforce", DOCUMENT),
    ]
    assert [v.via for v in raised.value.violations] == ["context"]


def test_in_enforce_mode_the_argument_check_raises_first() -> None:
    """The call is blocked on its argument; the zone is not consulted further."""
    with pg.testing.capture() as violations:
        with pg.zone():
            body = pg.label("body", EMAIL)
            pg.label("file", DOCUMENT)
            with pytest.raises(pg.PurposeViolation) as raised:
                show_ads(body)
    assert [(v.via, v.mode, v.category) for v in raised.value.violations] == [("argument", "enforce", EMAIL)]
    assert violations == raised.value.violations


def test_context_mode_enforce_raises_before_the_call() -> None:
    pg.configure("trust-center", context_mode="enforce")
    ran = []

    @pg.purpose("advertising")
    def campaign(user_id: str) -> None:
        ran.append(user_id)

    with pg.zone():
        pg.label("body", EMAIL)
        with pytest.raises(pg.PurposeViolation) as raised:
            campaign("u-1")
    assert ran == []
    assert raised.value.violations[0].via == "context"


def test_context_mode_off_records_nothing() -> None:
    pg.configure("trust-center", context_mode="off")
    with pg.testing.capture() as violations:
        with pg.zone():
            pg.label("body", EMAIL)
            show_ads("u-1")
    assert violations == []


def test_an_allowed_purpose_in_a_zone_records_nothing() -> None:
    with pg.testing.capture() as violations:
        with pg.zone():
            pg.label("body", EMAIL)
            troubleshoot("u-1")
    assert violations == []


def test_check_sees_the_zone() -> None:
    # A probe of where zone categories travel: traced, since the pack's
    # never-rules would refuse the flow (context_mode = "enforce").
    pg.configure("trust-center", context_mode="trace")
    with pg.testing.capture() as violations:
        with pg.zone():
            pg.label("body", EMAIL)
            decision = pg.check("plain", "advertising")
    assert decision.allowed  # the value itself carries nothing
    assert [(v.via, v.category) for v in violations] == [("context", EMAIL)]


def test_with_purpose_block_checks_the_zone() -> None:
    # A probe of where zone categories travel: traced, since the pack's
    # never-rules would refuse the flow (context_mode = "enforce").
    pg.configure("trust-center", context_mode="trace")
    with pg.testing.capture() as violations:
        with pg.zone():
            pg.label("body", EMAIL)
            with pg.purpose("advertising"):
                pass
    assert [(v.via, v.purpose) for v in violations] == [("context", "advertising")]


async def test_an_async_zone_works_like_a_sync_one() -> None:
    # A probe of where zone categories travel: traced, since the pack's
    # never-rules would refuse the flow (context_mode = "enforce").
    pg.configure("trust-center", context_mode="trace")

    @pg.purpose("advertising")
    async def show_ads_async(user_id: str) -> str:
        return user_id

    with pg.testing.capture() as violations:
        async with pg.zone(tenant="contoso") as state:
            assert pg.current_zone() is state
            pg.label("body", EMAIL)
            await show_ads_async("u-1")
        assert pg.current_zone() is None
    assert [(v.via, v.tenant) for v in violations] == [("context", "contoso")]


def test_a_zone_object_can_be_entered_again_after_it_closed() -> None:
    request = pg.zone(tenant="contoso")
    with request as first:
        pg.label("body", EMAIL)
    with request as second:
        assert second is not first
        assert second.categories == frozenset()


def test_the_allowed_label_shortcut_still_feeds_and_checks_the_zone() -> None:
    """A labelled class learnt as allowed outside a zone takes no shortcut inside one."""

    @pg.purpose("service.communications")
    def notify(address: str) -> str:
        return address

    address = pg.label("admin@contoso.example", "customer_data")
    for _ in range(3):  # outside any zone: learnt as allowed, then the shortcut
        notify(address)
    with pg.testing.capture() as violations:
        with pg.zone(categories=[EMAIL]) as state:
            assert notify(address) == address
            assert "customer_data" in state.categories
        notify(address)  # outside again: nothing to report
    assert [(v.via, v.category, v.purpose) for v in violations] == [
        ("context", EMAIL, "service.communications")
    ]


# -- the zone's memory of allowed checks ------------------------------------------------


def test_a_zone_checked_again_after_it_learns_a_new_category() -> None:
    # A probe of where zone categories travel: traced, since the pack's
    # never-rules would refuse the flow (context_mode = "enforce").
    pg.configure("trust-center", context_mode="trace")
    with pg.testing.capture() as violations:
        with pg.zone():
            pg.label("x", "customer_data")
            for _ in range(3):
                troubleshoot("u-1")  # allowed, remembered
            show_ads("u-1")
            pg.label("address", "payment_data")  # not allowed for operations
            troubleshoot("u-1")
    assert sorted((v.purpose, v.category) for v in violations) == [
        ("advertising", "customer_data"),
        ("service.operations", "payment_data"),
    ]


def test_a_zone_checked_again_after_the_policy_changes() -> None:
    strict = pg.Policy.from_toml(
        """
        [policy]
        name = "strict"
        context_mode = "trace"
        [[rules]]
        id = "nothing-for-operations"
        categories = ["customer_data"]
        purposes = ["service.operations"]
        effect = "deny"
        """
    )
    with pg.testing.capture() as violations:
        with pg.zone():
            pg.label("x", EMAIL)
            for _ in range(3):
                troubleshoot("u-1")  # allowed under trust-center, remembered
            assert violations == []
            pg.configure(strict)
            troubleshoot("u-1")
    assert [(v.rule, v.via) for v in violations] == [("nothing-for-operations", "context")]


def test_a_zone_checked_by_an_activated_guard_is_not_skipped() -> None:
    with pg.testing.capture() as violations:
        with pg.zone():
            pg.label("x", EMAIL)
            for _ in range(3):
                troubleshoot("u-1")
            strict = pg.Guard(
                pg.Policy.from_toml('[policy]\nname = "deny-all"\ncontext_mode = "trace"\n'),
            )
            with strict.activate():
                troubleshoot("u-1")
    assert [(v.rule, v.via) for v in violations] == [(None, "context")]


def test_an_argument_in_a_remembered_zone_is_still_checked_as_an_argument() -> None:
    with pg.zone():
        pg.label("x", EMAIL)
        for _ in range(3):
            troubleshoot("u-1")  # the zone is allowed for operations, remembered
        for _ in range(3):
            troubleshoot(pg.label("y", EMAIL))  # allowed, inside what the zone knows
        card = pg.label("4111", "payment_data")
        with pytest.raises(pg.PurposeViolation) as raised:
            troubleshoot(card)
    assert [(v.via, v.category) for v in raised.value.violations] == [("argument", "payment_data")]


def test_a_labelled_return_in_a_remembered_zone_is_checked() -> None:
    card = pg.label("4111", "payment_data")  # read before: labelling inside would be via="source"

    @pg.purpose("service.operations")
    def lookup_card() -> str:
        return card

    with pg.zone():
        pg.label("x", EMAIL)
        for _ in range(3):
            troubleshoot("u-1")
        with pytest.raises(pg.PurposeViolation) as raised:
            lookup_card()
    assert [(v.via, v.category) for v in raised.value.violations] == [("return", "payment_data")]


def test_context_mode_defaults_to_trace_when_the_policy_sets_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PURPOSEGUARD_CONTEXT_MODE", raising=False)
    monkeypatch.delenv("PURPOSEGUARD_MODE", raising=False)
    pg.configure(
        pg.Policy.from_toml(
            """
            [policy]
            name = "no-modes"
            [[rules]]
            id = "no-ads"
            categories = ["customer_data"]
            purposes = ["advertising"]
            effect = "deny"
            """
        )
    )
    with pg.testing.capture() as violations:
        with pg.zone():
            body = pg.label("body", EMAIL)
            show_ads("u-1")  # zone only: trace, proceeds
            with pytest.raises(pg.PurposeViolation):
                show_ads(body)  # argument: enforce
    assert [(v.via, v.mode) for v in violations] == [("context", "trace"), ("argument", "enforce")]
