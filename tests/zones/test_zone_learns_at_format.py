"""A value labelled before a zone opened, turned into text inside it.

An f-string with text around the field, ``"...{}".format``, ``%`` with a
tuple and ``str()``/``repr()`` inside larger text build a plain string in C:
the label cannot follow. The zone must still learn the categories (and whose
data it is) at the conversion, so a later exit in the same zone sees the
flow, as it does for a value labelled or loaded inside the zone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import purposeguard as pg
from purposeguard._context import MIXED_TENANT

EMAIL = "customer_data.content.email"
BODY = "Quarterly numbers attached"


@pytest.fixture(autouse=True)
def _enforce() -> Iterator[None]:
    # The built-in pack: its "never" rules (no-advertising) enforce zone flows.
    pg.configure("trust-center", mode="enforce")
    yield


@pg.purpose("advertising")
def show_ads(text: str) -> str:
    return f"ads about {text}"


def _plain(value: object) -> str:
    """The text alone, as exact ``str``: nothing a label could ride on."""
    assert isinstance(value, str)
    return str.__str__(value)


# name -> conversion of a labelled value into text. Each is the commonest
# shape of its hook: __format__ (f-string fields, format(), str.format),
# __str__ (str(), %s, {!s}) and __repr__ (repr(), %r, {!r}).
CONVERSIONS: dict[str, Callable[[Any], str]] = {
    "fstring-with-text": lambda v: f"ticket: {v}",
    "fstring-with-spec": lambda v: f"[{v:>40}]",
    "fstring-conversion-s": lambda v: f"ticket: {v!s}",
    "fstring-conversion-r": lambda v: f"ticket: {v!r}",
    "format-builtin": lambda v: format(v, ">40"),
    "format-builtin-no-spec": lambda v: format(v),
    "str-format": lambda v: "to: {}".format(v),  # noqa: UP032 - the shape under test
    "str-format-r": lambda v: "to: {!r}".format(v),  # noqa: UP032
    "percent-s-tuple": lambda v: "%s!" % (v,),  # noqa: UP031
    "percent-r-tuple": lambda v: "%r!" % (v,),  # noqa: UP031
    "percent-s-mapping": lambda v: "%(body)s!" % {"body": v},  # noqa: UP031
    "str": lambda v: "re: " + _plain(str(v)),
    "repr": lambda v: "re: " + _plain(repr(v)),
}


@pytest.mark.parametrize("name", list(CONVERSIONS))
def test_a_value_labelled_before_the_zone_tells_it_when_turned_into_text(name: str) -> None:
    body = pg.label(BODY, EMAIL)  # before any zone: only the value knows
    with pg.zone() as state:
        assert state.categories == frozenset()
        text = _plain(CONVERSIONS[name](body))
        assert BODY in text
        assert pg.labels_of(text) == frozenset()
        zone = pg.current_zone()
        assert zone is not None and EMAIL in zone.categories
        # The plain text reaches advertising code: the zone refuses it.
        with pg.testing.capture() as violations, pytest.raises(pg.PurposeViolation):
            show_ads(text)
        with pytest.raises(pg.PurposeViolation):
            pg.check(text, "advertising")
    assert [(v.via, v.category, v.rule) for v in violations] == [("context", EMAIL, "no-advertising")]


@pytest.mark.parametrize(
    "value",
    [b"Quarterly numbers attached", 42, 4.2, ["Quarterly numbers attached"], {"subject": "numbers"}],
    ids=["bytes", "int", "float", "list", "dict"],
)
def test_other_labelled_values_tell_the_zone_when_turned_into_text(value: object) -> None:
    labelled = pg.label(value, EMAIL)
    with pg.zone() as state:
        text = _plain(f"value: {labelled}")
        assert state.categories == {EMAIL}
        with pytest.raises(pg.PurposeViolation):
            pg.check(text, "advertising")


def test_another_tenants_value_turned_into_text_makes_the_zone_several_tenants() -> None:
    theirs = pg.label(BODY, EMAIL, tenant="fabrikam")
    ours = pg.label(BODY, EMAIL, tenant="contoso")
    with pg.zone(tenant="contoso") as state:
        _ = f"ticket: {ours}"
        assert state.data_tenant() == "contoso"
        _ = f"ticket: {theirs}"
        assert state.data_tenant() == MIXED_TENANT


def test_a_context_flow_of_another_tenants_text_names_no_single_tenant() -> None:
    pg.configure("trust-center", mode="trace")
    theirs = pg.label(BODY, EMAIL, tenant="fabrikam")
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        show_ads(f"ticket: {theirs}")
    assert [(v.via, v.tenant) for v in violations] == [("context", MIXED_TENANT)]


def test_outside_a_zone_nothing_changes() -> None:
    body = pg.label(BODY, EMAIL)
    for convert in CONVERSIONS.values():
        assert BODY in convert(body)
    assert pg.current_zone() is None
    assert f"{body}" == BODY and pg.labels_of(f"{body}") == {EMAIL}
    assert pg.labels_of(str(body)) == {EMAIL}
    with pg.zone() as state:
        # What was turned into text before the zone opened is not the zone's.
        assert state.categories == frozenset()
    # Plain text outside a zone is plain text: nothing to refuse.
    assert show_ads(f"ticket: {body}") == f"ads about ticket: {BODY}"


def test_a_zone_opened_in_a_zone_hands_what_it_learned_to_the_outer_one() -> None:
    body = pg.label(BODY, EMAIL, tenant="contoso")
    with pg.zone(tenant="contoso") as outer:
        with pg.zone() as inner:
            _ = f"ticket: {body}"
            assert inner.categories == {EMAIL}
        assert outer.categories == {EMAIL}
        with pytest.raises(pg.PurposeViolation):
            show_ads("just text")
