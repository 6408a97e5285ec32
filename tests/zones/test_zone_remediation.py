"""Every violation says how to fix it: the rule, the kind of fix, never the value."""

from __future__ import annotations

import pytest

import purposeguard as pg

MARKER = "rm-5521-marker-do-not-leak"
FIXES = {"transform", "consent", "label-sink", "block"}
POLICY = pg.Policy.load("trust-center")
DENIED = [
    (category, purpose)
    for category in POLICY.taxonomy.categories
    for purpose in POLICY.taxonomy.purposes
    if not POLICY.decide([category], purpose).allowed
]


def _violations_for(category: str, purpose: str) -> list[pg.Violation]:
    """One argument flow and one zone-only flow of ``category`` into ``purpose``."""
    pg.configure(POLICY, mode="trace")  # loaded once: the table is compiled once

    @pg.purpose(purpose)
    def sink(value: object) -> None:
        return None

    with pg.testing.capture() as violations:
        with pg.zone(tenant="contoso"):
            value = pg.label(f"{MARKER} payload", category)
            sink(value)
            sink(f"derived: {value}")  # the label is gone; the zone reports it
    return violations


def test_the_table_has_denials_of_every_fix_kind() -> None:
    kinds = {POLICY.remediation(c, p).kind for c, p in DENIED}
    assert kinds == FIXES


@pytest.mark.parametrize(("category", "purpose"), DENIED, ids=[f"{c}->{p}" for c, p in DENIED])
def test_a_violation_names_the_rule_and_the_fix_and_explain_agrees(category: str, purpose: str) -> None:
    violations = _violations_for(category, purpose)
    assert sorted(v.via for v in violations) == ["argument", "context"]
    explained = pg.explain(category, purpose)
    for violation in violations:
        assert violation.fix in FIXES
        if violation.rule is None:
            assert "policy default" in violation.remediation
        else:
            assert f"rule {violation.rule!r}" in violation.remediation
        assert f"fix: {violation.remediation}" in explained
        assert MARKER not in violation.remediation
        assert MARKER not in repr(violation)
        assert MARKER not in str(violation.to_dict())


@pytest.mark.parametrize(
    ("category", "purpose", "fix", "named"),
    [
        ("customer_data.content.email", "advertising", "block", "no-advertising"),
        ("customer_data", "advertising", "block", "no-advertising"),
        ("customer_data.content.document", "service.communications", "transform", "usage-aggregate"),
        ("customer_data.content.email", "improvement", "consent", "improvement-only-with-consent"),
        ("customer_data", "marketing.direct", "label-sink", "service.operations"),
        ("usage_data", "service", "label-sink", "service.operations"),
    ],
)
def test_the_fix_matches_the_policy(category: str, purpose: str, fix: str, named: str) -> None:
    with pg.testing.capture() as violations:

        @pg.purpose(purpose)
        def sink(value: object) -> None:
            return None

        try:
            sink(pg.label("x", category))
        except pg.PurposeViolation:
            pass
    (violation,) = violations
    assert violation.fix == fix
    assert named in violation.remediation
    assert pg.explain(category, purpose).endswith(f"fix: {violation.remediation}")


def test_the_exception_message_never_holds_the_value() -> None:
    @pg.purpose("advertising")
    def sink(value: object) -> None:
        return None

    with pytest.raises(pg.PurposeViolation) as raised:
        sink(pg.label(MARKER, "customer_data.content.email"))
    assert MARKER not in str(raised.value)
    assert MARKER not in repr(raised.value.violations)
    assert raised.value.violations[0].remediation


def test_an_allowed_flow_has_nothing_to_fix_and_explain_shows_no_fix() -> None:
    assert "fix:" not in pg.explain("customer_data.content.email", "service.operations")
