"""The indexed compiler decides exactly what the rules × cells one did, and big policies are bounded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import purposeguard as pg
from purposeguard import _policy
from purposeguard._policy import Rule
from purposeguard._taxonomy import depth


@dataclass(frozen=True)
class ReferenceCell:
    allowed: bool
    rule: Rule | None
    consentable: bool
    candidates: tuple[Rule, ...]


def reference_compile(policy: pg.Policy) -> dict[tuple[str, str], ReferenceCell]:
    """The original compiler, kept as the specification: every rule scored for every cell."""
    table: dict[tuple[str, str], ReferenceCell] = {}
    for category in policy.taxonomy.categories:
        category_chain = policy.taxonomy.category_ancestors(category)
        for purpose in policy.taxonomy.purposes:
            purpose_chain = policy.taxonomy.purpose_ancestors(purpose)
            ranked: list[tuple[int, int, int, Rule]] = []
            for index, rule in enumerate(policy.rules):
                category_depth = max((depth(c) for c in rule.categories if c in category_chain), default=0)
                purpose_depth = max((depth(p) for p in rule.purposes if p in purpose_chain), default=0)
                if category_depth and purpose_depth:
                    ranked.append((category_depth, purpose_depth, index, rule))
            if not ranked:
                table[category, purpose] = ReferenceCell(policy.default == "allow", None, False, ())
                continue
            ranked.sort(key=lambda item: (-item[0], -item[1], item[2]))
            top = [r for cd, pd, _, r in ranked if (cd, pd) == ranked[0][:2]]
            denies = [r for r in top if r.effect == "deny"]
            if denies:
                firm = [r for r in denies if not r.consentable]
                winner = firm[0] if firm else denies[0]
                table[category, purpose] = ReferenceCell(
                    False, winner, not firm, tuple(r for *_, r in ranked)
                )
            else:
                table[category, purpose] = ReferenceCell(True, top[0], False, tuple(r for *_, r in ranked))
    return table


def _assert_same_decisions(policy: pg.Policy) -> None:
    reference = reference_compile(policy)
    for (category, purpose), expected in reference.items():
        allowed, rule, consentable = policy.cell(category, purpose)
        assert (allowed, rule, consentable) == (expected.allowed, expected.rule, expected.consentable), (
            category,
            purpose,
        )
        assert policy.candidates(category, purpose) == expected.candidates, (category, purpose)


# -- random policies over a small tree, so rules collide at every depth ----------------------

CATEGORY_TREE = ["a", "a.b", "a.b.c", "a.b.d", "a.e", "f", "f.g"]
PURPOSE_TREE = ["p", "p.q", "p.q.r", "p.s", "t", "t.u", "t.u.v"]


def _taxonomy_toml() -> str:
    lines = ["[taxonomy.categories]"]
    lines += [f'"{key}" = "test category"' for key in CATEGORY_TREE]
    lines += ["[taxonomy.purposes]"]
    lines += [f'"{key}" = "test purpose"' for key in PURPOSE_TREE]
    return "\n".join(lines)


ALL_CATEGORIES = CATEGORY_TREE + ["customer_data", "customer_data.content", "usage_data.end_user"]
ALL_PURPOSES = PURPOSE_TREE + ["service", "service.operations", "improvement"]

rules_strategy = st.lists(
    st.tuples(
        st.lists(st.sampled_from(ALL_CATEGORIES), min_size=1, max_size=3, unique=True),
        st.lists(st.sampled_from(ALL_PURPOSES), min_size=1, max_size=3, unique=True),
        st.sampled_from(["allow", "deny", "deny-consentable"]),
    ),
    max_size=25,
)


def _policy_from(rules: list[tuple[list[str], list[str], str]], default: str) -> pg.Policy:
    parts = [f'[policy]\nname = "random"\ndefault = "{default}"', _taxonomy_toml()]
    for index, (categories, purposes, effect) in enumerate(rules):
        consentable = effect == "deny-consentable"
        parts.append(
            f'[[rules]]\nid = "r{index}"\ncategories = {categories!r}\npurposes = {purposes!r}\n'
            f'effect = "{"deny" if consentable else effect}"\n'
            + ("consentable = true\n" if consentable else "")
        )
    return pg.Policy.from_toml("\n".join(parts).replace("'", '"'))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=rules_strategy, default=st.sampled_from(["allow", "deny"]))
def test_indexed_compiler_matches_the_reference_on_random_policies(
    rules: list[tuple[list[str], list[str], str]], default: str
) -> None:
    _assert_same_decisions(_policy_from(rules, default))


def test_indexed_compiler_matches_the_reference_on_the_pack() -> None:
    _assert_same_decisions(pg.Policy.load("trust-center"))


def test_the_reference_catches_a_wrong_winner() -> None:
    """The comparison can fail: a deny and an allow at equal specificity, deny wins."""
    policy = _policy_from([(["a.b"], ["p.q"], "allow"), (["a.b"], ["p.q"], "deny")], "allow")
    reference = reference_compile(policy)
    assert reference["a.b.c", "p.q.r"].allowed is False
    assert policy.cell("a.b.c", "p.q.r")[0] is False


# -- growth ------------------------------------------------------------------------------------


def _big_policy_text(rules: int, keys: int = 100) -> str:
    """``rules`` rules over ``keys`` categories × ``keys`` purposes (two levels deep)."""
    categories = [f"c{i // 10}" if i % 10 == 0 else f"c{i // 10}.k{i % 10}" for i in range(keys)]
    purposes = [f"u{i // 10}" if i % 10 == 0 else f"u{i // 10}.k{i % 10}" for i in range(keys)]
    lines = ['[policy]\nname = "big"', "[taxonomy.categories]"]
    lines += [f'"{c}" = "c"' for c in categories]
    lines.append("[taxonomy.purposes]")
    lines += [f'"{p}" = "p"' for p in purposes]
    for index in range(rules):
        category = categories[(index * 7) % keys]
        purpose = purposes[(index * 13 + index // keys) % keys]
        effect = "deny" if index % 3 == 0 else "allow"
        lines.append(
            f'[[rules]]\nid = "r{index}"\ncategories = ["{category}"]\npurposes = ["{purpose}"]\neffect = "{effect}"'
        )
    return "\n".join(lines) + "\n"


def test_a_large_policy_matches_the_reference() -> None:
    _assert_same_decisions(pg.Policy.from_toml(_big_policy_text(300, keys=40)))


def _deep_policy_text(depth_levels: int, rules_per_pair: int = 1) -> str:
    """Categories and purposes nested ``depth_levels`` deep (two siblings a
    level), a rule on every ancestor pair of the first chain, some denied."""
    categories = [
        ".".join(["c"] + [f"l{level}" for level in range(1, d)]) for d in range(1, depth_levels + 1)
    ]
    purposes = [".".join(["u"] + [f"l{level}" for level in range(1, d)]) for d in range(1, depth_levels + 1)]
    categories += [key + ".x" for key in categories]
    purposes += [key + ".x" for key in purposes]
    lines = ['[policy]\nname = "deep"', "[taxonomy.categories]"]
    lines += [f'"{c}" = "c"' for c in categories]
    lines.append("[taxonomy.purposes]")
    lines += [f'"{p}" = "p"' for p in purposes]
    index = 0
    for i, category in enumerate(categories[:depth_levels]):
        for j, purpose in enumerate(purposes[:depth_levels]):
            if (i * 3 + j) % 4 == 0:
                continue
            for _ in range(rules_per_pair):
                effect = "deny" if (i + j + index) % 5 == 0 else "allow"
                lines.append(
                    f'[[rules]]\nid = "r{index}"\ncategories = ["{category}"]\n'
                    f'purposes = ["{purpose}"]\neffect = "{effect}"'
                )
                index += 1
    return "\n".join(lines) + "\n"


def test_a_deep_taxonomy_with_rules_on_every_level_matches_the_reference() -> None:
    _assert_same_decisions(pg.Policy.from_toml(_deep_policy_text(9, rules_per_pair=2)))


def test_rules_naming_one_pair_are_ranked_once_not_once_per_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of rules on one (category, purpose) pair made every cell
    below it rank them all again: a small file took minutes to load."""
    calls: list[int] = []
    real = _policy._winner

    def counting(top: list[Rule]) -> tuple[Rule, bool]:
        calls.append(len(top))
        return real(top)

    monkeypatch.setattr(_policy, "_winner", counting)
    lines = ['[policy]\nname = "one-pair"', "[taxonomy.categories]", '"c" = "c"']
    lines += [f'"c.k{i}" = "c"' for i in range(40)]
    lines += ["[taxonomy.purposes]", '"u" = "p"']
    lines += [f'"u.k{i}" = "p"' for i in range(40)]
    lines += [
        f'[[rules]]\nid = "r{i}"\ncategories = ["c"]\npurposes = ["u"]\neffect = "allow"' for i in range(500)
    ]
    text = "\n".join(lines)
    policy = pg.Policy.from_toml(text + "\n")
    assert policy.cell("c.k3", "u.k7")[0] is True
    # One list of rules, ranked once (the table has 41 × 41 cells under it).
    assert calls == [500]


# -- bad input: bounded, never a hang ---------------------------------------------------------


def test_a_table_over_the_cell_limit_is_refused_naming_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_policy, "MAX_TABLE_CELLS", 50 * 50)
    with pytest.raises(pg.PolicyError) as raised:
        pg.Policy.from_toml(_big_policy_text(10, keys=60), source="big.toml")
    assert "MAX_TABLE_CELLS" not in str(raised.value)
    assert "2,500" in str(raised.value) and raised.value.path == "big.toml"


def test_the_documented_cell_limit_refuses_a_huge_taxonomy_before_building_it() -> None:
    keys = 1_100  # 1,100 × 1,100 cells is over the documented 1,000,000
    with pytest.raises(pg.PolicyError, match="over the limit of 1,000,000"):
        pg.Policy.from_toml(_big_policy_text(1, keys=keys))


def test_rule_pairs_over_the_limit_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_policy, "MAX_RULE_PAIRS", 100)
    with pytest.raises(pg.PolicyError, match="100 category-purpose pairs") as raised:
        pg.Policy.from_toml(_big_policy_text(101, keys=20), source="pairs.toml")
    assert raised.value.path == "pairs.toml"


def test_a_policy_over_the_size_limit_is_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_policy, "MAX_POLICY_BYTES", 1_000)
    with pytest.raises(pg.PolicyError, match="1,000 bytes"):
        pg.Policy.from_toml(_big_policy_text(50, keys=10), source="huge.toml")
    path = tmp_path / "huge.toml"
    path.write_text(_big_policy_text(50, keys=10))
    with pytest.raises(pg.PolicyError, match="1,000 bytes") as raised:
        pg.Policy.load(path)
    assert raised.value.path == str(path)
