"""Checks look as deep as egress does, into objects' attributes, and fail closed beyond the bound."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from purposeguard.integrations._egress import deep_labels

import purposeguard as pg
from purposeguard._labels import MAX_DEPTH, MAX_ITEMS

EMAIL = "customer_data.content.email"


@pg.purpose("advertising")
def ads(value: Any) -> int:
    return 1


class Message:
    def __init__(self, body: Any) -> None:
        self.subject = "hello"
        self.body = body


class Slotted:
    __slots__ = ("body",)

    def __init__(self, body: Any) -> None:
        self.body = body


def _nested(value: Any, levels: int) -> Any:
    for _ in range(levels):
        value = [value]
    return value


def test_check_finds_a_label_two_levels_deep() -> None:
    """pg.check([subject, [recipient], body]) sees the labelled recipient in the inner list."""
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PurposeViolation):
        pg.check(["subject", [pg.label("a@b.example", EMAIL)], "body"], "advertising")


def test_an_argument_nested_to_the_bound_is_refused() -> None:
    """A labelled value nested MAX_DEPTH - 1 lists deep is found by @purpose."""
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PurposeViolation) as raised:
        ads(_nested(pg.label("body", EMAIL), MAX_DEPTH - 1))
    assert {v.category for v in raised.value.violations} == {EMAIL}


def test_an_attribute_of_a_plain_object_is_looked_into() -> None:
    """self.body of a plain object carries its label into the check."""
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PurposeViolation):
        ads(Message(pg.label("mail body", EMAIL)))


def test_a_slot_of_an_object_is_looked_into() -> None:
    """__slots__ values are looked into too."""
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PurposeViolation):
        ads(Slotted(pg.label("mail body", EMAIL)))


def test_an_unlabelled_object_passed_first_does_not_hide_a_labelled_one_later() -> None:
    """Seeing a plain Message once does not mark the class label-free for later calls."""
    pg.configure("trust-center", mode="enforce")
    assert ads(Message("house ad")) == 1
    with pytest.raises(pg.PurposeViolation):
        ads(Message(pg.label("mail body", EMAIL)))


def test_a_return_value_is_looked_into_as_deep() -> None:
    """What a guarded function returns is walked as deep as its arguments."""
    pg.configure("trust-center", mode="enforce")

    @pg.purpose("advertising")
    def build() -> Any:
        return {"profile": [Message(pg.label("mail body", EMAIL))]}

    with pytest.raises(pg.PurposeViolation):
        build()


def test_content_deeper_than_the_bound_is_refused_in_enforce_mode() -> None:
    """Beyond MAX_DEPTH nothing is looked at, so enforce mode refuses (fails closed)."""
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PurposeViolation) as raised:
        ads(_nested("plain", MAX_DEPTH + 2))
    assert [v.rule for v in raised.value.violations] == ["purposeguard.internal-error"]


def test_more_items_than_the_bound_are_refused_in_enforce_mode() -> None:
    """More than MAX_ITEMS values to look into: enforce mode refuses."""
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PurposeViolation):
        ads([[i] for i in range(MAX_ITEMS + 1)])


def test_plain_scalars_do_not_count_against_the_bound() -> None:
    """A long list of plain numbers is not 'beyond the bound': it holds nothing to look into."""
    pg.configure("trust-center", mode="enforce")
    assert ads(list(range(MAX_ITEMS * 2))) == 1


def test_content_beyond_the_bound_is_recorded_in_trace_mode(caplog: pytest.LogCaptureFixture) -> None:
    """Trace mode records the unchecked content and lets the call run."""
    pg.configure("trust-center", mode="trace")
    with caplog.at_level(logging.ERROR, "purposeguard"), pg.testing.capture() as violations:
        assert ads(_nested("plain", MAX_DEPTH + 2)) == 1
    assert [v.rule for v in violations] == ["purposeguard.internal-error"]


def test_egress_uses_the_same_walk_and_bound() -> None:
    """The egress checker sees objects' attributes and refuses content beyond the bound in enforce mode."""
    pg.configure("trust-center", mode="enforce")
    assert deep_labels({"message": Message(pg.label("body", EMAIL))}) == {EMAIL}
    with pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation):
        deep_labels(_nested("plain", MAX_DEPTH + 2))


def test_a_cycle_is_walked_once() -> None:
    """Objects that refer to each other do not loop the walk."""
    pg.configure("trust-center", mode="enforce")
    first = Message("a")
    second = Message(first)
    first.body = second
    assert ads(first) == 1
    second.subject = pg.label("mail body", EMAIL)
    with pytest.raises(pg.PurposeViolation):
        ads(first)


class _Node:
    def __init__(self, child: Any) -> None:
        self.child = child


def _chain(value: Any, levels: int) -> Any:
    for _ in range(levels):
        value = _Node(value)
    return value


def test_an_object_graph_deeper_than_the_bound_is_refused_in_enforce_mode() -> None:
    """Attributes beyond MAX_DEPTH are not looked at: enforce mode refuses, as for containers."""
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PurposeViolation) as raised:
        ads(_chain(pg.label("mail body", EMAIL), MAX_DEPTH + 2))
    assert [v.rule for v in raised.value.violations] == ["purposeguard.internal-error"]


def test_an_object_graph_beyond_the_bound_is_recorded_in_trace_mode() -> None:
    """Trace mode records the unchecked attributes and lets the call run."""
    pg.configure("trust-center", mode="trace")
    with pg.testing.capture() as violations:
        assert ads(_chain({"body": "plain"}, MAX_DEPTH + 2)) == 1
    assert [v.rule for v in violations] == ["purposeguard.internal-error"]


def test_an_object_graph_within_the_bound_is_looked_through() -> None:
    """A label MAX_DEPTH levels down an object graph is found and refused as a label, not as the bound."""
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PurposeViolation) as raised:
        ads(_chain(pg.label("mail body", EMAIL), MAX_DEPTH))
    assert {v.category for v in raised.value.violations} == {EMAIL}


def test_an_object_ending_in_plain_values_at_the_bound_passes() -> None:
    """Plain text and numbers at the bound hold nothing more: the call runs."""
    pg.configure("trust-center", mode="enforce")
    assert ads(_chain("plain", MAX_DEPTH + 1)) == 1
