"""Label readers for foreign types (how the Spark integration plugs in)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import purposeguard as pg
from purposeguard import _labels


class Frame:
    """Stands for a type whose labels live inside it (a DataFrame's schema)."""

    def __init__(self, categories: frozenset[str], consented: frozenset[str] = frozenset()) -> None:
        self.categories = categories
        self.consented = consented


class FrameLabels:
    def labels(self, value: Any, purpose: str | None) -> frozenset[str]:
        if purpose == "improvement":
            return frozenset(value.categories - value.consented)
        return frozenset(value.categories)

    def tenant(self, value: Any) -> str | None:
        return _labels.MIXED_TENANT

    def label(self, value: Any, categories: frozenset[str], tenant: str | None) -> Any:
        return Frame(value.categories | categories)

    def strip(self, value: Any) -> Any:
        return Frame(frozenset())


@pytest.fixture
def registered() -> Iterator[None]:
    _labels.register_foreign(Frame, FrameLabels())
    yield
    _labels.unregister_foreign(Frame)


EMAIL = "customer_data.content.email"


def test_an_unregistered_type_carries_no_labels() -> None:
    # Its attributes are looked into (a plain object's fields can hold labelled
    # values); a frozenset of plain key strings is no label.
    assert pg.labels_of(Frame(frozenset({EMAIL}))) == frozenset()


def test_registering_reads_labels_even_after_the_type_was_seen(registered: None) -> None:
    assert Frame not in _labels.NO_LABELS
    frame = Frame(frozenset({EMAIL}))
    assert pg.labels_of(frame) == frozenset({EMAIL})
    assert pg.labels_of([frame]) == frozenset({EMAIL})
    assert pg.tenant_of(frame) == _labels.MIXED_TENANT
    assert Frame not in _labels.NO_LABELS


def test_subclasses_are_read_through_the_base_reader(registered: None) -> None:
    class Classic(Frame):
        pass

    assert pg.labels_of(Classic(frozenset({EMAIL}))) == frozenset({EMAIL})


def test_a_purpose_sees_the_reader_s_answer_for_it(registered: None) -> None:
    pg.configure("trust-center", mode="enforce")

    @pg.purpose("improvement")
    def analyse(frame: Frame) -> None: ...

    @pg.purpose("advertising")
    def audience(frame: Frame) -> None: ...

    covered = Frame(frozenset({EMAIL}), consented=frozenset({EMAIL}))
    analyse(covered)
    with pytest.raises(pg.PurposeViolation):
        audience(covered)
    with pytest.raises(pg.PurposeViolation) as refused:
        analyse(Frame(frozenset({EMAIL})))
    assert {v.tenant for v in refused.value.violations} == {_labels.MIXED_TENANT}


def test_label_and_transform_go_through_the_reader(registered: None) -> None:
    labelled = pg.label(Frame(frozenset()), "payment_data")
    assert isinstance(labelled, Frame) and labelled.categories == frozenset({"payment_data"})

    @pg.transform("usage-aggregate")
    def usage(frame: Frame) -> Frame:
        return frame

    assert pg.labels_of(usage(Frame(frozenset({EMAIL})))) == frozenset({"usage_data"})
