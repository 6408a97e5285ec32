"""The built-in trust-center pack reproduces the published data-use table."""

from __future__ import annotations

import pytest

import purposeguard as pg

CONTENT_SUBCATEGORIES = [
    "customer_data.content.email",
    "customer_data.content.document",
    "customer_data.content.instant_message",
    "customer_data.content.voice",
    "customer_data.content.crm",
]

# (purpose, customer data excluding content, content): the data-use table at the top of README.md.
SEED_TABLE = [
    ("service.operations", True, True),
    ("service.security", True, True),
    ("service.communications", True, False),
    ("improvement", False, False),
    ("advertising", False, False),
    ("disclosure.voluntary", False, False),
    ("marketing.direct", False, False),
]

CELLS = [(p, "customer_data", data) for p, data, _ in SEED_TABLE] + [
    (p, "customer_data.content", content) for p, _, content in SEED_TABLE
]


@pytest.mark.parametrize(("purpose", "category", "allowed"), CELLS)
def test_seed_table_cell(purpose: str, category: str, allowed: bool) -> None:
    assert pg.decide([category], purpose).allowed is allowed


@pytest.mark.parametrize("subcategory", CONTENT_SUBCATEGORIES)
@pytest.mark.parametrize(("purpose", "_data", "content"), SEED_TABLE)
def test_content_subcategories_follow_the_content_column(
    subcategory: str, purpose: str, _data: bool, content: bool
) -> None:
    assert pg.decide([subcategory], purpose).allowed is content


@pytest.mark.parametrize("category", ["customer_data", "customer_data.content", *CONTENT_SUBCATEGORIES])
def test_personalization_is_allowed_for_data_and_content(category: str) -> None:
    assert pg.decide([category], "service.personalization").allowed


@pytest.mark.parametrize("category", ["customer_data", "customer_data.content.voice"])
def test_compelled_disclosure_is_allowed_with_its_obligations(category: str) -> None:
    decision = pg.decide([category], "disclosure.compelled")
    assert decision.allowed
    assert decision.rule == "compelled-disclosure"
    assert set(decision.obligations) == {"redirect_first", "minimize", "notify_tenant"}


def test_improvement_rule_is_consentable_and_advertising_never_is() -> None:
    policy = pg.get_guard().policy
    assert policy.is_consentable("customer_data", "improvement")
    assert policy.is_consentable("customer_data.content.email", "improvement")
    for category in ["customer_data", "customer_data.content", *CONTENT_SUBCATEGORIES]:
        assert not policy.is_consentable(category, "advertising")


@pytest.mark.parametrize(
    ("category", "purpose", "allowed"),
    [
        ("usage_data", "service.operations", True),
        ("usage_data", "service.security", True),
        ("usage_data", "service.communications", True),
        ("usage_data", "service.personalization", False),
        ("usage_data", "advertising", False),
        ("usage_data.end_user", "service.operations", True),
        ("usage_data.end_user", "service.communications", True),
        ("usage_data.end_user", "service.security", False),
        ("usage_data.end_user", "service.personalization", False),
        ("usage_data.end_user", "improvement", False),
    ],
)
def test_usage_data_rows(category: str, purpose: str, allowed: bool) -> None:
    assert pg.decide([category], purpose).allowed is allowed


def _listed(category: str, purpose: str) -> bool:
    if purpose == "service.operations.logs":
        # Logs serve operations, except content (rule no-content-in-logs).
        if category.startswith("customer_data.content"):
            return True
        purpose = "service.operations"
    customer = category == "customer_data" or category.startswith("customer_data.")
    if customer and purpose in {p for p, _, _ in SEED_TABLE} | {
        "service.personalization",
        "disclosure.compelled",
    }:
        return True
    if category == "usage_data" and purpose in {
        "service.operations",
        "service.security",
        "service.communications",
    }:
        return True
    if category in {"service_data", "administrator_data"} and purpose.split(".")[0] == "service":
        return True
    return category == "usage_data.end_user" and purpose.startswith("service")


def test_every_other_pair_is_denied_by_the_default() -> None:
    policy = pg.get_guard().policy
    unlisted = [
        (c, p) for c in policy.taxonomy.categories for p in policy.taxonomy.purposes if not _listed(c, p)
    ]
    assert len(unlisted) > 50
    for category, purpose in unlisted:
        decision = pg.decide([category], purpose)
        assert not decision.allowed, (category, purpose)
        assert decision.rule is None, (category, purpose, decision.rule)


def test_unlabelled_values_are_always_allowed() -> None:
    decision = pg.decide([], "advertising")
    assert decision.allowed and decision.category is None and decision.rule is None


def test_several_categories_report_every_denied_one() -> None:
    decision = pg.decide(
        ["usage_data", "customer_data.content.email", "customer_data"], "service.communications"
    )
    assert not decision.allowed
    assert decision.denied == ("customer_data.content.email",)
    assert decision.category == "customer_data.content.email"
    assert decision.rule == "no-content-in-service-communications"


def test_all_allowed_reports_the_first_category_in_sorted_order() -> None:
    decision = pg.decide(["usage_data", "customer_data"], "service.operations")
    assert decision.allowed
    assert decision.category == "customer_data"
    assert decision.rule == "operate-the-service"
    assert decision.denied == ()


def test_decide_accepts_a_single_key_string() -> None:
    assert not pg.decide("customer_data.content", "advertising").allowed


def test_decide_rejects_unknown_keys() -> None:
    with pytest.raises(pg.UnknownKeyError):
        pg.decide(["customer_data.nope"], "service.operations")
    with pytest.raises(pg.UnknownKeyError):
        pg.decide(["customer_data"], "service.nope")


def test_explain_names_the_rule_and_the_fix() -> None:
    text = pg.explain("customer_data.content.email", "service.communications")
    assert "denied" in text
    assert "no-content-in-service-communications" in text
    assert "fix:" in text
    allowed = pg.explain("customer_data", "disclosure.compelled")
    assert "allowed" in allowed and "redirect_first" in allowed
    default = pg.explain("payment_data", "advertising")
    assert "policy default" in default
