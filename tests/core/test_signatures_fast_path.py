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


# A bound method's ``self`` is an object whose attributes are looked into on
# every call (they can hold labelled values), so a method never takes the
# unlabelled-argument shortcut: methods are not on the fast path yet.
_SHORTCUT_KINDS = [kind for kind in _signatures() if kind != "method"]


@pytest.mark.parametrize("kind", _SHORTCUT_KINDS)
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
