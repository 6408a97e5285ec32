"""Modes under pressure: an engine failure takes the strictest mode a rule for
its purpose carries, and a later configuration that loosens the modes says so."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import purposeguard as pg
from purposeguard import Guard, Policy
from purposeguard._labels import MAX_DEPTH
from purposeguard._runtime import INTERNAL_ERROR_RULE

EMAIL = "customer_data.content.email"
SECRET = "alice@example.com"

# A rollout that traces everything, except the never-rule, which enforces.
SHADOW = """
[policy]
name = "shadow"
extends = "trust-center"
mode = "trace"

[[rules]]
id = "no-advertising"
categories = ["customer_data"]
purposes = ["advertising"]
effect = "deny"
mode = "enforce"
context_mode = "enforce"
"""

# The consent rule enforces its zone's flows; the rest of the policy traces.
CONSENT_IN_ZONES = """
[policy]
name = "consent-in-zones"
extends = "trust-center"
mode = "trace"
context_mode = "trace"

[[rules]]
id = "improvement-only-with-consent"
categories = ["customer_data"]
purposes = ["improvement"]
effect = "deny"
consentable = true
context_mode = "enforce"
"""

# A rule naming a parent purpose decides for its children too.
PARENT_RULE = """
[policy]
name = "parent"
extends = "trust-center"
mode = "trace"

[[rules]]
id = "no-marketing"
categories = ["customer_data"]
purposes = ["marketing"]
effect = "deny"
mode = "enforce"
"""


class Node:
    pass


def _deep(value: Any) -> Node:
    """``value`` nested past the walk's depth bound."""
    top = current = Node()
    for _ in range(MAX_DEPTH + 4):
        nested = Node()
        current.next = nested  # type: ignore[attr-defined]
        current = nested
    current.body = value  # type: ignore[attr-defined]
    return top


class Unreadable:
    """Reading its labels raises, quoting what it holds."""

    @property
    def __dict__(self) -> Any:  # type: ignore[override]
        raise RuntimeError(f"cannot read the mailbox of {SECRET}")


class BrokenConsents:
    def has_consent(self, tenant: str, purpose: str, category: str) -> bool:
        raise RuntimeError(f"consent store unreachable for {SECRET}")


@pg.purpose("advertising")
def advertise(value: Any) -> str:
    return "sent"


@pg.purpose("marketing.direct")
def mail_campaign(value: Any) -> str:
    return "sent"


@pg.purpose("service.communications")
def notify(value: Any) -> str:
    return "sent"


@pg.purpose("improvement")
def train(value: Any) -> str:
    return "trained"


def _refusal(call: Any) -> pg.Violation:
    with pytest.raises(pg.PurposeViolation) as caught:
        call()
    violation: pg.Violation = caught.value.violations[0]
    return violation


# -- engine failures take the deciding rules' mode ---------------------------------


def test_a_value_past_the_walk_bound_is_refused_when_the_rule_enforces() -> None:
    pg.configure(Policy.from_toml(SHADOW))
    violation = _refusal(lambda: advertise(_deep(pg.label("Quarterly numbers", EMAIL))))
    assert (violation.rule, violation.mode, violation.purpose) == (
        INTERNAL_ERROR_RULE,
        "enforce",
        "advertising",
    )


def test_a_value_whose_label_read_raises_is_refused_when_the_rule_enforces() -> None:
    pg.configure(Policy.from_toml(SHADOW))
    violation = _refusal(lambda: advertise(Unreadable()))
    assert (violation.rule, violation.mode) == (INTERNAL_ERROR_RULE, "enforce")
    assert SECRET not in repr(violation)


def test_check_fails_closed_under_the_rules_mode_too() -> None:
    pg.configure(Policy.from_toml(SHADOW))
    violation = _refusal(lambda: pg.check(_deep(pg.label("Quarterly numbers", EMAIL)), "advertising"))
    assert violation.mode == "enforce"


def test_a_rule_on_a_parent_purpose_sets_the_failure_mode_of_its_children() -> None:
    pg.configure(Policy.from_toml(PARENT_RULE))
    violation = _refusal(lambda: mail_campaign(Unreadable()))
    assert (violation.rule, violation.mode) == (INTERNAL_ERROR_RULE, "enforce")


def test_a_purpose_no_enforcing_rule_decides_stays_in_the_policys_mode() -> None:
    pg.configure(Policy.from_toml(SHADOW))
    seen: list[pg.Violation] = []
    unsubscribe = pg.on_violation(seen.append)
    try:
        assert notify(Unreadable()) == "sent"
    finally:
        unsubscribe()
    assert [(v.rule, v.mode) for v in seen] == [(INTERNAL_ERROR_RULE, "trace")]


def test_the_operators_cap_still_wins_over_the_rules_enforce() -> None:
    pg.configure(Policy.from_toml(SHADOW), mode="trace")
    assert advertise(Unreadable()) == "sent"
    pg.configure(Policy.from_toml(SHADOW), mode="off")
    assert advertise(Unreadable()) == "sent"


def test_the_failure_mode_is_memoised_per_purpose_and_forgotten_with_the_policy() -> None:
    guard = pg.configure(Policy.from_toml(SHADOW))
    assert guard.failure_mode("advertising") == "enforce"
    assert guard.failure_mode("service.communications") == "trace"
    assert guard.failure_mode("advertising", context=True) == "enforce"
    guard.policy = Policy.load("trust-center")
    assert guard.failure_mode("advertising") == "enforce"  # the pack sets no mode: enforce
    assert guard.failure_mode("advertising", context=True) == "enforce"
    assert guard.failure_mode("improvement", context=True) == "trace"


def test_a_purpose_the_taxonomy_lacks_has_no_rule_and_takes_the_guards_mode() -> None:
    guard = pg.configure(Policy.from_toml(SHADOW))
    assert guard.failure_mode("no.such.purpose") == "trace"
    assert guard.failure_mode(object(), context=True) == "trace"
    assert guard._failure_modes == {}


def test_a_consent_lookup_that_raises_in_a_zone_takes_the_rules_context_mode() -> None:
    pg.configure(Policy.from_toml(CONSENT_IN_ZONES), consents=BrokenConsents())
    with pg.zone(tenant="acme"):
        str(pg.label("Quarterly numbers", EMAIL))
        violation = _refusal(lambda: train(1))
    assert (violation.rule, violation.via, violation.mode) == (INTERNAL_ERROR_RULE, "context", "enforce")
    assert SECRET not in repr(violation)


def test_under_the_pack_zone_failures_of_a_never_rule_are_refused() -> None:
    # The pack's context_mode is trace, but advertising's rule says enforce.
    guard = pg.configure("trust-center")
    assert guard.failure_mode("advertising", context=True) == "enforce"
    assert guard.failure_mode("improvement", context=True) == "trace"


# -- a later configuration that loosens the modes says so --------------------------


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "purposeguard" and r.levelno == logging.WARNING and "loosens" in r.getMessage()
    ]


def test_the_first_configuration_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="purposeguard")
    caplog.clear()  # what the setup above said is not under test
    pg.get_guard()  # the default guard, loaded before anything is configured
    pg.configure("trust-center", mode="off")
    assert _warnings(caplog) == []


def test_a_second_configure_in_trace_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    pg.configure("trust-center", mode="enforce")
    caplog.set_level(logging.WARNING, logger="purposeguard")
    caplog.clear()  # what the setup above said is not under test
    pg.configure("trust-center", mode="trace")
    said = _warnings(caplog)
    assert len(said) == 1
    assert "mode enforce -> trace" in said[0] and "configure()" in said[0]
    assert SECRET not in said[0]


def test_a_second_configure_in_off_names_both_modes(caplog: pytest.LogCaptureFixture) -> None:
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    caplog.set_level(logging.WARNING, logger="purposeguard")
    caplog.clear()  # what the setup above said is not under test
    pg.configure("trust-center", mode="off")
    (said,) = _warnings(caplog)
    assert "mode enforce -> off" in said and "context_mode enforce -> off" in said


def test_a_looser_context_mode_alone_is_said(caplog: pytest.LogCaptureFixture) -> None:
    pg.configure("trust-center", context_mode="enforce")
    caplog.set_level(logging.WARNING, logger="purposeguard")
    caplog.clear()  # what the setup above said is not under test
    pg.configure("trust-center")
    (said,) = _warnings(caplog)
    assert "context_mode enforce -> trace" in said and "mode enforce ->" not in said.replace(
        "context_mode", ""
    )


def test_an_equal_or_stricter_configuration_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    pg.configure("trust-center", mode="trace")
    caplog.set_level(logging.WARNING, logger="purposeguard")
    caplog.clear()  # what the setup above said is not under test
    pg.configure("trust-center", mode="trace")
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    assert _warnings(caplog) == []


def test_a_reset_clears_without_a_word(caplog: pytest.LogCaptureFixture) -> None:
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    caplog.set_level(logging.WARNING, logger="purposeguard")
    caplog.clear()  # what the setup above said is not under test
    pg.testing.reset()
    pg.configure("trust-center", mode="off")
    assert _warnings(caplog) == []


def test_activating_a_looser_guard_is_said_once_per_guard(caplog: pytest.LogCaptureFixture) -> None:
    pg.configure("trust-center")
    guard = Guard(Policy.load("trust-center"), mode="off")
    caplog.set_level(logging.WARNING, logger="purposeguard")
    caplog.clear()  # what the setup above said is not under test
    for _ in range(3):
        with guard.activate():
            assert advertise(pg.label("Quarterly numbers", EMAIL)) == "sent"
    (said,) = _warnings(caplog)
    assert "Guard.activate()" in said and "mode enforce -> off" in said


def test_activating_over_the_default_guard_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="purposeguard")
    caplog.clear()  # what the setup above said is not under test
    with Guard(Policy.load("trust-center"), mode="trace").activate():
        pass
    assert _warnings(caplog) == []


def test_reloading_a_looser_policy_is_said(caplog: pytest.LogCaptureFixture, tmp_path: Any) -> None:
    path = tmp_path / "shadow.toml"
    path.write_text('[policy]\nname = "shadow"\nextends = "trust-center"\nmode = "trace"\n')
    guard = pg.configure("trust-center")
    caplog.set_level(logging.WARNING, logger="purposeguard")
    caplog.clear()  # what the setup above said is not under test
    guard.reload(path)
    (said,) = _warnings(caplog)
    assert "mode enforce -> trace" in said
