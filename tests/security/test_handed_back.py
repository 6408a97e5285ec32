"""Return values are checked even when an argument is handed back."""

from __future__ import annotations

from typing import Any

import pytest

import purposeguard as pg

EMAIL = "customer_data.content.email"


def test_a_dict_argument_filled_with_a_labelled_value_and_returned_is_refused() -> None:
    """A function that puts a labelled value into its argument dict and returns it is refused on return."""
    pg.configure("trust-center", mode="enforce")
    body = pg.label("mail body", EMAIL)

    @pg.purpose("advertising")
    def fill(profile: dict[str, Any]) -> dict[str, Any]:
        profile["interests"] = body
        return profile

    with pytest.raises(pg.PurposeViolation) as raised:
        fill({})
    assert [v.via for v in raised.value.violations] == ["return"]


def test_a_labelled_string_passed_through_is_recorded_once() -> None:
    """An immutable labelled value handed back is the value checked on entry: one record, not two."""
    pg.configure("trust-center", mode="trace")

    @pg.purpose("advertising")
    def echo(value: str) -> str:
        return value

    with pg.testing.capture() as violations:
        echo(pg.label("mail body", EMAIL))
    assert [v.via for v in violations] == ["argument"]
