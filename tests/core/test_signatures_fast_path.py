"""Every signature takes the shortcut for an allowed labelled argument, and none lets a denied one through."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import purposeguard as pg
from purposeguard._shortcut import hits
from purposeguard._state import STATE

PURPOSE = "service.communications"
TICKET = "customer_data"  # allowed for PURPOSE
EMAIL = "customer_data.content.email"  # denied for PURPOSE


@pytest.fixture(autouse=True)
def _counting() -> Iterator[None]:
    pg.configure("trust-center", mode="enforce")
    STATE.counters.enabled = True
    yield
    STATE.counters.enabled = False


def _signatures() -> dict[str, Callable[[Any], Any]]:
    @pg.purpose(PURPOSE)
    def star(*args: Any) -> Any:
        return args[0]

    @pg.purpose(PURPOSE)
    def star_kw(**kwargs: Any) -> Any:
        return kwargs["x"]

    @pg.purpose(PURPOSE)
    def both(first: Any, *args: Any, **kwargs: Any) -> Any:
        return first

    @pg.purpose(PURPOSE)
    def keyword_only(*, x: Any) -> Any:
        return x

    @pg.purpose(PURPOSE)
    def positional_only(x: Any, /) -> Any:
        return x

    class Service:
        @pg.purpose(PURPOSE)
        def method(self, x: Any) -> Any:
            return x

    class Handler:
        def __call__(self, x: Any) -> Any:
            return x

    service = Service()
    handler = pg.purpose(PURPOSE)(Handler())
    return {
        "*args": lambda v: star(v),
        "**kwargs": lambda v: star_kw(x=v),
        "*args and **kwargs": lambda v: both(v, 1, v, y=v, z="plain"),
        "keyword-only": lambda v: keyword_only(x=v),
        "positional-only": lambda v: positional_only(v),
        "method": lambda v: service.method(v),
        "__call__": lambda v: handler(v),
    }


@pytest.mark.parametrize("kind", list(_signatures()))
def test_an_allowed_labelled_argument_takes_the_shortcut_after_the_first_call(kind: str) -> None:
    call = _signatures()[kind]
    allowed = pg.label("ticket 4711", TICKET)
    counter = hits(PURPOSE)
    assert call(allowed) == allowed  # first sight: the guard decides and the shortcut learns
    before = counter.value()
    for _ in range(5):
        assert call(allowed) == allowed
    # Five calls, each through the shortcut on entry (and on return).
    assert counter.value() - before >= 5


@pytest.mark.parametrize("kind", list(_signatures()))
def test_a_denied_label_next_to_allowed_ones_is_still_refused(kind: str) -> None:
    call = _signatures()[kind]
    allowed = pg.label("ticket 4711", TICKET)
    call(allowed)
    with pytest.raises(pg.PurposeViolation):
        call(pg.label("a@example.com", EMAIL))


def test_a_denied_item_anywhere_in_a_spread_is_refused() -> None:
    @pg.purpose(PURPOSE)
    def spread(*args: Any, **kwargs: Any) -> int:
        return len(args) + len(kwargs)

    allowed = pg.label("ticket 4711", TICKET)
    denied = pg.label("a@example.com", EMAIL)
    assert spread(allowed, "plain", 3, a=allowed, b=None) == 5
    assert spread(allowed, "plain", 3, a=allowed, b=None) == 5
    with pytest.raises(pg.PurposeViolation):
        spread(allowed, allowed, denied)
    with pytest.raises(pg.PurposeViolation):
        spread(allowed, a=allowed, b="plain", c=denied)
    with pytest.raises(pg.PurposeViolation):
        spread(*([allowed] * 31 + [denied]))


def test_a_callable_object_wrapped_is_called_through_its_own_call() -> None:
    class Counter:
        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, x: Any) -> Any:
            self.calls += 1
            return x

    counter = Counter()
    wrapped = pg.purpose(PURPOSE)(counter)
    assert wrapped("plain") == "plain" and counter.calls == 1
    with pytest.raises(pg.PurposeViolation):
        wrapped(pg.label("a@example.com", EMAIL))
    assert counter.calls == 1  # refused before the object ran


class Mailbox:
    def __init__(self) -> None:
        self.owner = "ops"
        self.size = 3

    @pg.purpose(PURPOSE)
    def read(self, x: Any) -> Any:
        return x

    @pg.purpose(PURPOSE)
    def plain(self) -> str:
        return "done"


def _fast_calls(call: Callable[[], Any]) -> int:
    counter = hits(PURPOSE)
    before = counter.value()
    for _ in range(5):
        call()
    return counter.value() - before


def test_a_method_of_a_plain_object_takes_the_shortcut() -> None:
    box = Mailbox()
    allowed = pg.label("ticket 4711", TICKET)
    box.read(allowed)
    assert _fast_calls(lambda: box.read(allowed)) >= 5


@pytest.mark.parametrize(
    "where",
    [
        "new attribute",
        "existing attribute",
        "inside a list attribute",
        "inside a dict attribute",
        "nested object",
    ],
)
def test_a_labelled_attribute_set_after_the_first_call_is_seen_at_once(where: str) -> None:
    box = Mailbox()
    allowed = pg.label("ticket 4711", TICKET)
    denied = pg.label("a@example.com", EMAIL)
    box.read(allowed)
    assert box.plain() == "done"
    assert _fast_calls(lambda: box.read(allowed)) >= 5  # learnt: self is a plain object
    if where == "new attribute":
        box.body = denied  # type: ignore[attr-defined]
    elif where == "existing attribute":
        box.owner = denied
    elif where == "inside a list attribute":
        box.items = ["plain"]  # type: ignore[attr-defined]
        box.read(allowed)  # a list attribute: the full check, still allowed
        box.items.append(denied)  # type: ignore[attr-defined]
    elif where == "inside a dict attribute":
        box.meta = {}  # type: ignore[attr-defined]
        box.read(allowed)
        box.meta["from"] = denied  # type: ignore[attr-defined]
    else:
        inner = Mailbox()
        box.inner = inner  # type: ignore[attr-defined]
        box.read(allowed)
        inner.owner = denied
    with pytest.raises(pg.PurposeViolation):
        box.read(allowed)
    with pytest.raises(pg.PurposeViolation):
        box.plain()  # self alone carries the label now
    other = Mailbox()
    assert other.read(allowed) == allowed  # another instance of the class is not affected


def test_an_object_labelled_in_place_after_the_first_call_is_refused() -> None:
    box = Mailbox()
    allowed = pg.label("ticket 4711", TICKET)
    box.read(allowed)
    box.read(allowed)
    pg.label(box, EMAIL)
    with pytest.raises(pg.PurposeViolation):
        box.read(allowed)
    with pytest.raises(pg.PurposeViolation):
        Mailbox.read(box, "plain")


def test_a_class_with_annotated_fields_or_slots_is_never_taken_for_plain() -> None:
    from typing import Annotated

    from purposeguard._labels import FLAT_OBJECTS

    class Note:
        body: Annotated[str, pg.Category(EMAIL)]

        def __init__(self) -> None:
            self.body = "text"

        @pg.purpose(PURPOSE)
        def read(self) -> None:
            return None

    class Slotted:
        __slots__ = ("body",)

        def __init__(self) -> None:
            self.body = pg.label("a@example.com", EMAIL)

        @pg.purpose(PURPOSE)
        def read(self) -> None:
            return None

    note = Note()
    for _ in range(3):
        with pytest.raises(pg.PurposeViolation):
            note.read()
    slotted = Slotted()
    for _ in range(3):
        with pytest.raises(pg.PurposeViolation):
            slotted.read()
    assert Note not in FLAT_OBJECTS and Slotted not in FLAT_OBJECTS


def test_a_single_star_arg_is_checked_alone() -> None:
    @pg.purpose(PURPOSE)
    def star(*args: Any) -> int:
        return len(args)

    allowed = pg.label("ticket 4711", TICKET)
    denied = pg.label("a@example.com", EMAIL)
    assert star(allowed) == 1
    assert _fast_calls(lambda: star(allowed)) >= 5  # one item: the branch without a loop
    with pytest.raises(pg.PurposeViolation):
        star(denied)
    with pytest.raises(pg.PurposeViolation):
        star([denied])  # a container item: the full check looks inside
    assert star("plain") == 1 and star() == 0


@pytest.mark.parametrize("where", ["alone", "first", "middle", "last"])
def test_a_denied_keyword_value_among_allowed_ones_is_refused(where: str) -> None:
    @pg.purpose(PURPOSE)
    def star_kw(**kwargs: Any) -> int:
        return len(kwargs)

    allowed = pg.label("ticket 4711", TICKET)
    denied = pg.label("a@example.com", EMAIL)
    assert star_kw(a=allowed) == 1 and star_kw(a=allowed, b=allowed, c="plain") == 3
    assert _fast_calls(lambda: star_kw(b=allowed)) >= 5
    keywords = {
        "alone": {"z": denied},
        "first": {"z": denied, "a": allowed, "b": allowed},
        "middle": {"a": allowed, "z": denied, "b": "plain"},
        "last": {"a": allowed, "b": allowed, "z": denied},
    }[where]
    with pytest.raises(pg.PurposeViolation):
        star_kw(**keywords)


def test_one_positional_item_next_to_keywords_checks_the_keywords_too() -> None:
    @pg.purpose(PURPOSE)
    def both(*args: Any, **kwargs: Any) -> int:
        return len(args) + len(kwargs)

    allowed = pg.label("ticket 4711", TICKET)
    denied = pg.label("a@example.com", EMAIL)
    assert both(allowed) == 1 and both(allowed) == 1
    with pytest.raises(pg.PurposeViolation):
        both(allowed, y=denied)
    with pytest.raises(pg.PurposeViolation):
        both("plain", y=denied)
    with pytest.raises(pg.PurposeViolation):
        both(y=denied)
    with pytest.raises(pg.PurposeViolation):
        both(denied)


@pytest.mark.parametrize("attributes", [1, 8, 9, 30])
def test_a_labelled_attribute_after_many_plain_ones_is_seen(attributes: int) -> None:
    # Up to eight attributes are looked at in a loop, more in one C call:
    # the labelled one is the last either way.
    class Box:  # a class of its own: another test labels a Mailbox in place
        @pg.purpose(PURPOSE)
        def read(self, x: Any) -> Any:
            return x

    box = Box()
    for index in range(attributes):
        setattr(box, f"a{index}", index)
    allowed = pg.label("ticket 4711", TICKET)
    box.read(allowed)
    assert _fast_calls(lambda: box.read(allowed)) >= 5
    setattr(box, f"a{attributes - 1}", pg.label("a@example.com", EMAIL))
    with pytest.raises(pg.PurposeViolation):
        box.read(allowed)
    with pytest.raises(pg.PurposeViolation):
        box.read("plain")
