"""Category and purpose keys are bounded in depth and length.

Every key implies its ancestors, each compiled into the decision table: a
policy of a few thousand nested keys once took gigabytes and half a minute
before any size check ran. Such a policy is now refused at the first key
past the bound, with a message that names the bound and quotes no more of
the key than fits on a line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import purposeguard as pg
from purposeguard._taxonomy import MAX_KEY_DEPTH, MAX_KEY_LENGTH


def _policy(keys: list[str]) -> str:
    lines = ["[policy]", 'name = "deep"', 'extends = "trust-center"', "", "[taxonomy.categories]"]
    lines += [f'"{key}" = "x"' for key in keys]
    return "\n".join(lines) + "\n"


def _chain(levels: int, segment: str = "a") -> list[str]:
    keys, key = [], "customer_data"
    for _ in range(levels - 1):
        key = f"{key}.{segment}"
        keys.append(key)
    return keys


def test_keys_as_deep_as_the_bound_load() -> None:
    policy = pg.Policy.from_toml(_policy(_chain(MAX_KEY_DEPTH)))
    deepest = _chain(MAX_KEY_DEPTH)[-1]
    assert deepest.count(".") + 1 == MAX_KEY_DEPTH
    assert deepest in policy.taxonomy.categories


def test_a_key_deeper_than_the_bound_is_refused_naming_it() -> None:
    with pytest.raises(pg.PolicyError, match=f"at most {MAX_KEY_DEPTH} levels") as refused:
        pg.Policy.from_toml(_policy(_chain(MAX_KEY_DEPTH + 1)))
    assert refused.value.field == "taxonomy.categories"


def test_a_key_longer_than_the_bound_is_refused_and_quoted_short() -> None:
    key = "customer_data." + "a" * MAX_KEY_LENGTH
    with pytest.raises(pg.PolicyError, match=f"{MAX_KEY_LENGTH} characters") as refused:
        pg.Policy.from_toml(_policy([key]))
    assert key not in str(refused.value)
    assert f"({len(key)} characters)" in str(refused.value)


def test_a_policy_of_thousands_of_nested_keys_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text(_policy(_chain(2000)))
    with pytest.raises(pg.PolicyError, match="levels") as refused:
        pg.Policy.load(path)
    assert str(path) in str(refused.value)
