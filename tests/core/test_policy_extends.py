"""``extends``: a policy that starts from another, overrides rules by id and removes some."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import purposeguard as pg

PACK = pg.Policy.load("trust-center")


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_extending_the_pack_takes_all_of_it_and_adds_keys_and_rules(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "team.toml",
        """
        [policy]
        name = "team"
        extends = "trust-center"

        [taxonomy.categories]
        "customer_data.content.ticket" = "support tickets"

        [[rules]]
        id = "tickets-in-notices"
        categories = ["customer_data.content.ticket"]
        purposes = ["service.communications"]
        effect = "allow"
        """,
    )
    policy = pg.Policy.load(path)
    assert policy.name == "team" and policy.extends == ("pack:trust-center",)
    assert [r.id for r in policy.rules] == [r.id for r in PACK.rules] + ["tickets-in-notices"]
    assert set(PACK.transforms) == set(policy.transforms)
    assert [d.id for d in policy.destinations] == [d.id for d in PACK.destinations]
    assert policy.require_tls == PACK.require_tls
    assert policy.default == "deny" and policy.context_mode == "trace"
    # the pack's decisions hold, and the new key follows this file's rule
    assert not policy.decide(["customer_data.content.email"], "service.communications").allowed
    assert policy.decide(["customer_data.content.ticket"], "service.communications").allowed
    assert policy.rules_by_id["no-advertising"].origin == "pack:trust-center"
    assert policy.rules_by_id["tickets-in-notices"].origin == str(path)


def test_a_rule_with_the_same_id_replaces_the_inherited_one_in_place(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "team.toml",
        """
        [policy]
        extends = "trust-center"
        [[rules]]
        id = "service-communications"
        categories = ["customer_data"]
        purposes = ["service.communications"]
        effect = "deny"
        mode = "trace"
        """,
    )
    policy = pg.Policy.load(path)
    assert [r.id for r in policy.rules] == [r.id for r in PACK.rules]
    replaced = policy.rules_by_id["service-communications"]
    assert replaced.effect == "deny" and replaced.mode == "trace" and replaced.origin == str(path)
    decision = policy.decide(["customer_data"], "service.communications")
    assert not decision.allowed and decision.rule == "service-communications"


def test_remove_drops_inherited_rules(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "team.toml",
        '[policy]\nextends = "trust-center"\nremove = ["compelled-disclosure", "no-advertising"]\n',
    )
    policy = pg.Policy.load(path)
    assert "compelled-disclosure" not in policy.rules_by_id and "no-advertising" not in policy.rules_by_id
    decision = policy.decide(["customer_data"], "disclosure.compelled")
    assert not decision.allowed and decision.rule is None  # the default decides now


def test_extends_a_path_relative_to_the_file_and_chains(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "base/company.toml",
        '[policy]\nextends = "trust-center"\nmode = "trace"\n'
        '[[rules]]\nid = "company-ops"\ncategories = ["payment_data"]\npurposes = ["service.operations"]\neffect = "allow"\n',
    )
    team = _write(
        tmp_path, "teams/mail.toml", '[policy]\nextends = "../base/company.toml"\nremove = ["company-ops"]\n'
    )
    policy = pg.Policy.load(team)
    assert policy.extends == (str(tmp_path / "teams" / "../base/company.toml"), "pack:trust-center")
    assert policy.mode == "trace"  # inherited: this file sets none
    assert "company-ops" not in policy.rules_by_id
    assert "operate-the-service" in policy.rules_by_id


def test_this_files_header_wins_over_the_inherited_one(tmp_path: Path) -> None:
    _write(tmp_path, "base.toml", '[policy]\ndefault = "allow"\nmode = "off"\ncontext_mode = "off"\n')
    policy = pg.Policy.load(
        _write(tmp_path, "team.toml", '[policy]\nextends = "base.toml"\ndefault = "deny"\nmode = "enforce"\n')
    )
    assert (policy.default, policy.mode, policy.context_mode) == ("deny", "enforce", "off")


# -- bad input -----------------------------------------------------------------------------


def test_a_cycle_is_a_policy_error_naming_the_file(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.toml", '[policy]\nextends = "b.toml"\n')
    _write(tmp_path, "b.toml", '[policy]\nextends = "a.toml"\n')
    with pytest.raises(pg.PolicyError, match="cycle") as raised:
        pg.Policy.load(a)
    assert raised.value.field == "policy.extends"
    assert raised.value.path == str(tmp_path / "b.toml")
    assert str(a.resolve()) in str(raised.value)


def test_a_file_that_extends_itself_is_a_cycle(tmp_path: Path) -> None:
    path = _write(tmp_path, "self.toml", '[policy]\nextends = "self.toml"\n')
    with pytest.raises(pg.PolicyError, match="cycle"):
        pg.Policy.load(path)


def test_an_unknown_rule_id_in_remove_names_file_rule_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "team.toml", '[policy]\nextends = "trust-center"\nremove = ["no-such-rule"]\n')
    with pytest.raises(pg.PolicyError) as raised:
        pg.Policy.load(path)
    assert (raised.value.path, raised.value.rule, raised.value.field) == (
        str(path),
        "no-such-rule",
        "policy.remove",
    )


def test_remove_without_extends_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "team.toml", '[policy]\nremove = ["no-advertising"]\n')
    with pytest.raises(pg.PolicyError, match="set extends") as raised:
        pg.Policy.load(path)
    assert raised.value.field == "policy.remove"


def test_an_unknown_base_names_the_file_that_asked_for_it(tmp_path: Path) -> None:
    path = _write(tmp_path, "team.toml", '[policy]\nextends = "trust-centre"\n')
    with pytest.raises(pg.PolicyError, match="no such policy file") as raised:
        pg.Policy.load(path)
    assert (raised.value.path, raised.value.field) == (str(path), "policy.extends")
    assert "trust-center" in str(raised.value)  # the hint lists the packs


def test_an_error_in_the_base_names_the_base_file(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "base.toml",
        '[[rules]]\nid = "x"\ncategories = ["customer_data"]\npurposes = ["advertising"]\neffect = "maybe"\n',
    )
    with pytest.raises(pg.PolicyError) as raised:
        pg.Policy.load(_write(tmp_path, "team.toml", '[policy]\nextends = "base.toml"\n'))
    assert (raised.value.path, raised.value.rule, raised.value.field) == (
        str(tmp_path / "base.toml"),
        "x",
        "effect",
    )


def test_a_chain_of_files_over_the_size_limit_in_all_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file under the limit, the chain over it: every level's parsed
    text stays in memory while its base is read, so the chain is bounded."""
    from purposeguard import _policy

    monkeypatch.setattr(_policy, "MAX_POLICY_BYTES", 40_000)
    filler = "x" * 15_000
    for index in range(3):
        extends = f"p{index + 1}.toml" if index < 2 else "trust-center"
        _write(tmp_path, f"p{index}.toml", f'[policy]\nextends = "{extends}"\ndescription = "{filler}"\n')
    assert pg.Policy.load(tmp_path / "p1.toml").description == filler  # two files: 30,000 bytes
    with pytest.raises(pg.PolicyError) as refused:
        pg.Policy.load(tmp_path / "p0.toml")
    assert "40,000 bytes in all" in str(refused.value) and refused.value.field == "policy.extends"
    # The count is the one load's: loading again, or from a dict, starts afresh.
    assert pg.Policy.load(tmp_path / "p1.toml").description == filler
    data = {"policy": {"extends": str(tmp_path / "p1.toml")}}
    assert pg.Policy.from_dict(data, source=str(tmp_path / "d.toml")).description == filler
    assert pg.Policy.from_dict(data, source=str(tmp_path / "d.toml")).description == filler


def test_an_unknown_transport_key_is_refused_before_the_base_is_read(tmp_path: Path) -> None:
    path = _write(tmp_path, "team.toml", '[policy]\nextends = "missing.toml"\n[transport]\njunk = [[], []]\n')
    with pytest.raises(pg.PolicyError) as refused:
        pg.Policy.load(path)
    assert refused.value.field == "transport.junk"


def test_a_key_only_the_child_defines_is_unknown_to_the_base(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "base.toml",
        '[[rules]]\nid = "x"\ncategories = ["customer_data.content.ticket"]\npurposes = ["service"]\neffect = "allow"\n',
    )
    child = _write(
        tmp_path,
        "team.toml",
        '[policy]\nextends = "base.toml"\n[taxonomy.categories]\n"customer_data.content.ticket" = "t"\n',
    )
    with pytest.raises(pg.UnknownKeyError):
        pg.Policy.load(child)


# -- shown by the CLI ------------------------------------------------------------------------


def test_policy_show_shows_the_merged_rules_and_where_each_came_from(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "team.toml",
        '[policy]\nextends = "trust-center"\nremove = ["no-direct-marketing"]\n'
        '[[rules]]\nid = "no-advertising"\ncategories = ["customer_data"]\npurposes = ["advertising"]\n'
        'effect = "deny"\ncontext_mode = "enforce"\n',
    )
    shown = subprocess.run(
        [sys.executable, "-m", "purposeguard", "policy", "show", str(path), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    origins = {r["id"]: r["from"] for r in data["rules"]}
    assert origins["no-advertising"] == str(path)
    assert origins["operate-the-service"] == "pack:trust-center"
    assert "no-direct-marketing" not in origins
    assert data["extends"] == ["pack:trust-center"]
    table = subprocess.run(
        [sys.executable, "-m", "purposeguard", "policy", "show", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "extends: pack:trust-center" in table.stdout


def test_policy_check_reports_a_cycle_in_one_line(tmp_path: Path) -> None:
    _write(tmp_path, "a.toml", '[policy]\nextends = "b.toml"\n')
    _write(tmp_path, "b.toml", '[policy]\nextends = "a.toml"\n')
    done = subprocess.run(
        [sys.executable, "-m", "purposeguard", "policy", "check", str(tmp_path / "a.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "cycle" in done.stderr


# -- the pack: content stays out of logs -------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "allowed", "rule"),
    [
        ("customer_data.content", False, "no-content-in-logs"),
        ("customer_data.content.email", False, "no-content-in-logs"),
        ("customer_data", True, "operate-the-service"),
        ("usage_data", True, "usage-data-runs-the-service"),
        ("service_data", True, "service-and-administrator-data-run-the-service"),
    ],
)
def test_the_pack_keeps_content_out_of_logs(category: str, allowed: bool, rule: str) -> None:
    decision = PACK.decide([category], "service.operations.logs")
    assert (decision.allowed, decision.rule) == (allowed, rule)
