"""A labelled number turned into text keeps its label."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import purposeguard as pg

EMAIL = "customer_data.content.email"

CONVERSIONS: list[tuple[str, Callable[[Any], str]]] = [
    ("str", str),
    ("repr", repr),
    ("lone f-string", lambda n: f"{n}"),
    ("f-string with spec", lambda n: f"{n:>8}"),
    ("format", lambda n: format(n, "")),
    ("format with spec", lambda n: format(n, ".2f")),
]


@pytest.mark.parametrize("convert", [c[1] for c in CONVERSIONS], ids=[c[0] for c in CONVERSIONS])
@pytest.mark.parametrize("number", [42, 4.5], ids=["int", "float"])
def test_text_from_a_labelled_number_keeps_the_label(convert: Callable[[Any], str], number: float) -> None:
    """str/repr/format/f-string of a labelled int or float is a labelled str with the same text."""
    labelled = pg.label(number, EMAIL, tenant="contoso")
    text = convert(labelled)
    assert text == convert(number)
    assert pg.labels_of(text) == {EMAIL}
    assert pg.tenant_of(text) == "contoso"


def test_advertising_on_a_count_turned_into_text_is_refused() -> None:
    """ads(str(count)) is refused like ads(count)."""
    pg.configure("trust-center", mode="enforce")

    @pg.purpose("advertising")
    def ads(value: str) -> int:
        return 1

    with pytest.raises(pg.PurposeViolation):
        ads(str(pg.label(7, EMAIL)))
