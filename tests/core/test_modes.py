"""Which mode a flow runs in: the rule, configure() as a ceiling, the policy, the environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard._policy import effective_mode

EMAIL = "customer_data.content.email"


@pg.purpose("advertising")
def show_ads(value: Any) -> str:
    return "ad"


@pg.purpose("marketing.direct")
def newsletter(value: Any) -> str:
    return "sent"


@pytest.fixture(autouse=True)
def _no_mode_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PURPOSEGUARD_MODE", raising=False)
    monkeypatch.delenv("PURPOSEGUARD_CONTEXT_MODE", raising=False)


def _argument_modes() -> list[str]:
    """Pass a labelled value to advertising; the modes recorded ("raised" when it raised)."""
    with pg.testing.capture() as violations:
        try:
            show_ads(pg.label("body", EMAIL))
        except pg.PurposeViolation:
            return [v.mode for v in violations] + ["raised"]
    return [v.mode for v in violations]


def _zone_modes(function: Any = show_ads) -> list[str]:
    """Reach advertising through the zone only (the argument is unlabelled)."""
    with pg.testing.capture() as violations:
        try:
            with pg.zone():
                pg.label("body", EMAIL)
                function("user-1")
        except pg.PurposeViolation:
            return [v.mode for v in violations] + ["raised"]
    return [v.mode for v in violations]


# -- the environment with the built-in pack ------------------------------------------------


def test_the_pack_sets_no_policy_wide_mode() -> None:
    assert pg.Policy.load("trust-center").mode is None


@pytest.mark.parametrize(
    ("environment", "expected"),
    [(None, ["enforce", "raised"]), ("trace", ["trace"]), ("off", []), ("Trace", ["trace"])],
)
def test_purposeguard_mode_decides_the_rollout_of_the_pack(
    monkeypatch: pytest.MonkeyPatch, environment: str | None, expected: list[str]
) -> None:
    if environment is not None:
        monkeypatch.setenv("PURPOSEGUARD_MODE", environment)
    pg.configure("trust-center")
    assert _argument_modes() == expected


def test_purposeguard_mode_reaches_a_process_that_never_calls_configure() -> None:
    code = (
        "import purposeguard as pg\n"
        "@pg.purpose('advertising')\n"
        "def ads(v): return 'ran'\n"
        "print(ads(pg.label('x', 'customer_data')))\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("PURPOSEGUARD_")}
    traced = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "PURPOSEGUARD_MODE": "trace"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert traced.returncode == 0 and traced.stdout.strip() == "ran", traced.stderr
    enforced = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert enforced.returncode != 0 and "PurposeViolation" in enforced.stderr


# -- configure(mode=...) is a ceiling ---------------------------------------------------------

RULE_MODES = """
[policy]
name = "rule-modes"
{header}
[[rules]]
id = "no-ads"
categories = ["customer_data"]
purposes = ["advertising"]
effect = "deny"
{ads_modes}
[[rules]]
id = "no-newsletter"
categories = ["customer_data"]
purposes = ["marketing.direct"]
effect = "deny"
{newsletter_modes}
"""


def _policy(header: str = "", ads_modes: str = "", newsletter_modes: str = "") -> pg.Policy:
    return pg.Policy.from_toml(
        RULE_MODES.format(header=header, ads_modes=ads_modes, newsletter_modes=newsletter_modes)
    )


def test_configure_trace_traces_a_rule_that_says_enforce() -> None:
    pg.configure(_policy(ads_modes='mode = "enforce"'), mode="trace")
    assert _argument_modes() == ["trace"]


def test_configure_off_turns_off_a_rule_that_says_enforce() -> None:
    pg.configure(_policy(ads_modes='mode = "enforce"\ncontext_mode = "enforce"'), mode="off")
    assert _argument_modes() == []
    assert _zone_modes() == []


def test_configure_enforce_leaves_a_rule_that_says_trace_in_trace() -> None:
    pg.configure(_policy(ads_modes='mode = "trace"'), mode="enforce")
    assert _argument_modes() == ["trace"]


def test_configure_trace_caps_zone_flows_of_a_rule_that_enforces_them() -> None:
    pg.configure(_policy(ads_modes='context_mode = "enforce"'), mode="trace")
    assert _zone_modes() == ["trace"]


def test_configure_trace_caps_the_policy_wide_context_mode() -> None:
    guard = pg.configure(_policy(header='context_mode = "enforce"'), mode="trace")
    assert guard.context_mode == "trace"
    assert _zone_modes() == ["trace"]


def test_configure_mode_applies_where_the_rule_says_nothing() -> None:
    pg.configure(_policy(header='mode = "off"'), mode="trace")
    assert _argument_modes() == ["trace"]


def test_the_environment_is_no_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PURPOSEGUARD_MODE", "trace")
    pg.configure(_policy(ads_modes='mode = "enforce"'))
    assert _argument_modes() == ["enforce", "raised"]


# -- per-rule context_mode ------------------------------------------------------------------


def test_a_rule_context_mode_enforces_its_zone_flows_only() -> None:
    pg.configure(_policy(ads_modes='context_mode = "enforce"'))
    assert _zone_modes(show_ads) == ["enforce", "raised"]
    # The other rule says nothing: the default context_mode, trace.
    assert _zone_modes(newsletter) == ["trace"]


def test_a_rule_context_mode_off_silences_its_zone_flows_but_not_its_arguments() -> None:
    pg.configure(_policy(ads_modes='context_mode = "off"'))
    assert _zone_modes() == []
    assert _argument_modes() == ["enforce", "raised"]


def test_configure_context_mode_caps_zone_flows_alone() -> None:
    pg.configure(_policy(ads_modes='mode = "enforce"\ncontext_mode = "enforce"'), context_mode="trace")
    assert _zone_modes() == ["trace"]
    assert _argument_modes() == ["enforce", "raised"]


def test_configure_context_mode_applies_where_the_rule_says_nothing() -> None:
    pg.configure(_policy(header='context_mode = "off"'), context_mode="enforce")
    assert _zone_modes(newsletter) == ["enforce", "raised"]


def test_zone_chain_reaches_the_environment_then_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PURPOSEGUARD_CONTEXT_MODE", "enforce")
    pg.configure(_policy())
    assert _zone_modes() == ["enforce", "raised"]
    monkeypatch.delenv("PURPOSEGUARD_CONTEXT_MODE")
    pg.configure(_policy())
    assert _zone_modes() == ["trace"]


def test_a_reloaded_policy_brings_its_own_modes(tmp_path: Path) -> None:
    path = tmp_path / "modes.toml"
    path.write_text(RULE_MODES.format(header='mode = "trace"', ads_modes="", newsletter_modes=""))
    guard = pg.configure(path)
    assert guard.mode == "trace"
    path.write_text(RULE_MODES.format(header='mode = "off"', ads_modes="", newsletter_modes=""))
    guard.reload()
    assert guard.mode == "off" and _argument_modes() == []


@pytest.mark.parametrize(
    ("rule", "configured", "policy", "environment", "also_capped_by", "expected"),
    [
        ("enforce", None, "off", "off", None, "enforce"),
        (None, "trace", "enforce", "enforce", None, "trace"),
        (None, None, "off", "enforce", None, "off"),
        (None, None, None, "trace", None, "trace"),
        (None, None, None, None, None, "enforce"),
        ("enforce", "trace", None, None, None, "trace"),
        ("enforce", "off", None, None, None, "off"),
        ("trace", "enforce", None, None, None, "trace"),
        ("off", "enforce", None, None, None, "off"),
        ("enforce", None, None, None, "trace", "trace"),
        ("enforce", "enforce", None, None, "off", "off"),
    ],
)
def test_effective_mode_table(
    rule: str | None,
    configured: str | None,
    policy: str | None,
    environment: str | None,
    also_capped_by: str | None,
    expected: str,
) -> None:
    assert effective_mode(rule, configured, policy, environment, also_capped_by=also_capped_by) == expected


# -- the pack: service and administrator data run the service ----------------------------------

PACK_PURPOSES = [
    "service",
    "service.operations",
    "service.security",
    "service.communications",
    "service.personalization",
]


@pytest.mark.parametrize("category", ["service_data", "administrator_data"])
@pytest.mark.parametrize("purpose", PACK_PURPOSES)
def test_the_pack_allows_service_and_administrator_data_for_the_service(category: str, purpose: str) -> None:
    decision = pg.decide([category], purpose)
    assert decision.allowed and decision.rule == "service-and-administrator-data-run-the-service"


@pytest.mark.parametrize("category", ["service_data", "administrator_data"])
@pytest.mark.parametrize(
    "purpose",
    ["advertising", "marketing", "marketing.direct", "disclosure", "disclosure.voluntary", "improvement"],
)
def test_the_pack_still_denies_service_and_administrator_data_beyond_the_service(
    category: str, purpose: str
) -> None:
    assert not pg.decide([category], purpose).allowed


def test_a_storage_notice_can_be_mailed_to_a_labelled_administrator() -> None:
    @pg.purpose("service.communications")
    def mail(to: str, text: str) -> str:
        return f"sent to {len(to)} chars"

    pg.configure("trust-center", mode="enforce")
    administrator = pg.label("it-admin@contoso.example", "administrator_data")
    notice = pg.label(
        "user@contoso.example is close to the storage limit", "customer_data", "usage_data.end_user"
    )
    with pg.testing.capture() as violations:
        assert mail(administrator, notice) == "sent to 24 chars"
    assert violations == []
    with pytest.raises(pg.PurposeViolation):
        newsletter(administrator)


# -- bad input ------------------------------------------------------------------------------


def test_unknown_rule_context_mode_names_file_rule_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(RULE_MODES.format(header="", ads_modes='context_mode = "loud"', newsletter_modes=""))
    with pytest.raises(pg.PolicyError) as raised:
        pg.Policy.load(path)
    error = raised.value
    assert (error.path, error.rule, error.field) == (str(path), "no-ads", "context_mode")
    assert "loud" in str(error) and str(path) in str(error)


@pytest.mark.parametrize("section", ["transforms", "destinations"])
@pytest.mark.parametrize("key", ["mode", "context_mode"])
def test_a_mode_on_a_transform_or_destination_is_refused(tmp_path: Path, section: str, key: str) -> None:
    entry = (
        '[[transforms]]\nid = "agg"\nfrom = ["customer_data"]\nto = "usage_data"\n'
        if section == "transforms"
        else '[[destinations]]\nid = "ads"\nhosts = ["ads.example.net"]\npurpose = "advertising"\n'
    )
    path = tmp_path / "bad.toml"
    path.write_text(_policy_text() + entry + f'{key} = "trace"\n')
    with pytest.raises(pg.PolicyError) as raised:
        pg.Policy.load(path)
    error = raised.value
    assert (error.path, error.rule, error.field) == (
        str(path),
        "agg" if section == "transforms" else "ads",
        key,
    )
    assert "modes belong to rules" in str(error)


def _policy_text() -> str:
    return RULE_MODES.format(header="", ads_modes="", newsletter_modes="")


@pytest.mark.parametrize("variable", ["PURPOSEGUARD_MODE", "PURPOSEGUARD_CONTEXT_MODE"])
def test_an_invalid_environment_mode_fails_configure_and_keeps_the_old_guard(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    before = pg.configure("trust-center")
    monkeypatch.setenv(variable, "trcae")
    with pytest.raises(pg.PolicyError, match=f"{variable}='trcae' is not a mode"):
        pg.configure("trust-center")
    assert pg.get_guard() is before


def test_an_invalid_environment_mode_stops_a_process_at_configure() -> None:
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("PURPOSEGUARD_")}
    code = "import purposeguard as pg\npg.configure('trust-center')\n"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "PURPOSEGUARD_MODE": "sometimes"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "PURPOSEGUARD_MODE='sometimes' is not a mode" in done.stderr


# -- shown where people look ----------------------------------------------------------------


def test_policy_show_lists_each_rules_mode_and_context_mode(tmp_path: Path) -> None:
    path = tmp_path / "modes.toml"
    path.write_text(
        RULE_MODES.format(
            header="", ads_modes='mode = "trace"\ncontext_mode = "enforce"', newsletter_modes=""
        )
    )
    shown = subprocess.run(
        [sys.executable, "-m", "purposeguard", "policy", "show", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    (row,) = [line for line in shown.stdout.splitlines() if line.startswith("no-ads ")]
    assert row.split()[-3:] == ["trace", "enforce", str(path)]
    as_json = subprocess.run(
        [sys.executable, "-m", "purposeguard", "policy", "show", str(path), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    import json

    rules = {r["id"]: r for r in json.loads(as_json.stdout)["rules"]}
    assert (rules["no-ads"]["mode"], rules["no-ads"]["context_mode"]) == ("trace", "enforce")
    assert (rules["no-newsletter"]["mode"], rules["no-newsletter"]["context_mode"]) == (None, None)


def test_explain_shows_the_deciding_rules_modes() -> None:
    policy = _policy(ads_modes='mode = "trace"\ncontext_mode = "enforce"')
    assert "rule modes: mode trace, context_mode enforce" in policy.explain("customer_data", "advertising")
    assert "rule modes: mode unset, context_mode unset" in policy.explain("customer_data", "marketing.direct")


# -- the pack's never-rules enforce zone flows ------------------------------------------------


@pg.purpose("disclosure.voluntary")
def tell_the_police(value: Any) -> str:
    return "told"


@pytest.mark.parametrize("function", [show_ads, newsletter, tell_the_police])
def test_the_packs_never_rules_refuse_zone_flows(function: Any) -> None:
    pg.configure("trust-center")
    assert _zone_modes(function) == ["enforce", "raised"]


@pytest.mark.parametrize("configured", [{"mode": "trace"}, {"context_mode": "trace"}])
def test_the_operator_can_trace_the_packs_never_rules_zone_flows(configured: dict[str, Any]) -> None:
    pg.configure("trust-center", **configured)
    assert _zone_modes(show_ads) == ["trace"]


def test_other_zone_flows_of_the_pack_stay_traced() -> None:
    @pg.purpose("service.communications")
    def notice(value: Any) -> str:
        return "sent"

    pg.configure("trust-center")
    assert _zone_modes(notice) == ["trace"]  # content in a service communication, zone only


# -- an environment variable the policy outranks is said, not ignored silently -----------------


def test_an_environment_variable_the_policy_outranks_is_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The built-in pack sets ``context_mode = "trace"``, which comes before
    PURPOSEGUARD_CONTEXT_MODE: an operator setting it to enforce is told it
    does nothing, and how to decide it."""
    monkeypatch.setenv("PURPOSEGUARD_CONTEXT_MODE", "enforce")
    with caplog.at_level("WARNING", logger="purposeguard"):
        pg.configure("trust-center")
    said = [r.getMessage() for r in caplog.records if "has no effect" in r.getMessage()]
    assert len(said) == 1
    assert "PURPOSEGUARD_CONTEXT_MODE=enforce" in said[0] and "configure(context_mode=...)" in said[0]
    assert pg.get_guard().context_mode == "trace"


def test_the_guard_used_before_configure_says_nothing_of_the_environment(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An integration instrumented before ``configure()`` loads the built-in
    pack: the warning would name a policy the application is not using. It
    is said for the policy the application configures."""
    from purposeguard._state import STATE

    monkeypatch.setenv("PURPOSEGUARD_CONTEXT_MODE", "enforce")
    STATE.guard = None
    with caplog.at_level("WARNING", logger="purposeguard"):
        assert pg.get_guard().implicit
        assert not [r for r in caplog.records if "has no effect" in r.getMessage()]
        pg.configure(pg.Policy.from_toml('[policy]\nname = "mine"\nextends = "trust-center"\n'))
    said = [r.getMessage() for r in caplog.records if "has no effect" in r.getMessage()]
    assert len(said) == 1 and "'mine'" in said[0]


@pytest.mark.parametrize(
    ("environment", "configured"),
    [("trace", None), ("enforce", "enforce")],
    ids=["the policy's own value", "configure() decides"],
)
def test_nothing_is_said_when_the_variable_is_not_outranked(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    environment: str,
    configured: str | None,
) -> None:
    monkeypatch.setenv("PURPOSEGUARD_CONTEXT_MODE", environment)
    monkeypatch.setenv("PURPOSEGUARD_MODE", "trace")  # the pack sets no policy-wide mode
    with caplog.at_level("WARNING", logger="purposeguard"):
        pg.configure("trust-center", context_mode=configured)
    assert not [r for r in caplog.records if "has no effect" in r.getMessage()]
