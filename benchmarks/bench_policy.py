"""Loading a policy against parsing its TOML: 10, 1,000 and 10,000 rules over
about 100 categories × 100 purposes.

Each group's baseline is ``tomllib.loads`` of the same text, so a row's ratio
is what validating and compiling add on top of reading the file; the target
is at most 5× the parse alone. Compiling indexes rules by (category, purpose)
and looks up each cell's ancestor pairs, so it grows with the policy, not
with rules × cells.
"""

from __future__ import annotations

import sys

from harness import Case, Group

import purposeguard as pg

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KEYS = 100  # categories and purposes each, ten roots with nine children


def policy_text(rules: int, keys: int = KEYS) -> str:
    """``rules`` rules, each naming one or two categories and purposes, spread over the tree."""
    categories = [f"c{i // 10}" if i % 10 == 0 else f"c{i // 10}.k{i % 10}" for i in range(keys)]
    purposes = [f"u{i // 10}" if i % 10 == 0 else f"u{i // 10}.k{i % 10}" for i in range(keys)]
    lines = ['[policy]\nname = "big"\ndefault = "deny"', "[taxonomy.categories]"]
    lines += [f'"{c}" = "benchmark category"' for c in categories]
    lines.append("[taxonomy.purposes]")
    lines += [f'"{p}" = "benchmark purpose"' for p in purposes]
    for index in range(rules):
        named_categories = sorted({categories[(index * 7) % keys], categories[(index * 31 + 3) % keys]})
        named_purposes = sorted(
            {purposes[(index * 13 + index // keys) % keys], purposes[(index * 17 + 5) % keys]}
        )
        effect = "deny" if index % 3 == 0 else "allow"
        lines.append(
            f'[[rules]]\nid = "rule-{index}"\ndescription = "benchmark rule {index}"\n'
            f'categories = {named_categories}\npurposes = {named_purposes}\neffect = "{effect}"'.replace(
                "'", '"'
            )
        )
    return "\n".join(lines) + "\n"


def groups() -> list[Group]:
    out = []
    for rules, number, rounds in ((10, 20, 15), (1_000, 3, 11), (10_000, 1, 7)):
        text = policy_text(rules)
        policy = pg.Policy.from_toml(text)
        assert len(policy.rules) == rules and len(policy.taxonomy.categories) >= KEYS
        out.append(
            Group(
                title=f"policy load, {rules:,} rules ({len(policy.taxonomy.categories)} × {len(policy.taxonomy.purposes)} keys)",
                baseline=Case("tomllib.loads(text)", "tomllib.loads(text)"),
                cases=[
                    Case("Policy.from_toml(text)", "Policy.from_toml(text)", "<= 5x", ratio_limit=5.0),
                ],
                globals={"tomllib": tomllib, "Policy": pg.Policy, "text": text},
                number=number,
                rounds=rounds,
                baseline_label="tomllib parse",
            )
        )
    return out
