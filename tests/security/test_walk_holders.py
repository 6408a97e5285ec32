"""Values that hold labelled data without being containers the walk iterates.

An argument can carry content without being a list or an object with
attributes: a generator, an iterator over a list, ``zip``/``map``/
``enumerate``, a ``functools.partial``, a ``memoryview`` of labelled bytes, a
regular-expression match over labelled text. Each must be refused where the
content itself would be, without consuming what the function will iterate.
And a collection the walk cannot look through (its ``__iter__`` raises, or
never ends) is content not looked at: refused in enforce mode, never let
through.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections import UserString
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

import purposeguard as pg

EMAIL = "customer_data.content.email"
SECRET = "Quarterly numbers attached"


def body() -> str:
    return pg.label(SECRET, EMAIL)


HOLDERS: dict[str, Callable[[], Any]] = {
    "generator expression": lambda: (word for word in [body()]),
    "iter(list)": lambda: iter([body()]),
    "iter(tuple)": lambda: iter((body(),)),
    "iter(set)": lambda: iter({body()}),
    "iter(dict.values())": lambda: iter({"k": body()}.values()),
    "reversed(list)": lambda: reversed([body()]),
    "map": lambda: map(str.strip, [body()]),
    "filter": lambda: filter(None, [body()]),
    "zip": lambda: zip([body()], [1], strict=True),
    "enumerate": lambda: enumerate([body()]),
    "itertools.chain": lambda: itertools.chain([body()]),
    "functools.partial": lambda: functools.partial(print, body()),
    "memoryview": lambda: memoryview(pg.label(SECRET.encode(), EMAIL)),
    "re.Match": lambda: re.search("numbers", body()),
    "UserString": lambda: UserString(body()),
}


def _generator_function() -> Iterator[str]:
    yield body()


@pg.purpose("advertising")
def profile(value: object) -> None:
    return None


@pytest.mark.parametrize("make", HOLDERS.values(), ids=list(HOLDERS))
def test_what_a_lazy_or_wrapping_value_holds_is_refused(make: Callable[[], Any]) -> None:
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PurposeViolation) as refused:
        profile(make())
    assert refused.value.violations[0].rule == "no-advertising"
    assert pg.labels_of(make()) == {EMAIL}


def test_a_generator_of_a_generator_function_is_looked_into_through_its_frame() -> None:
    pg.configure("trust-center", mode="enforce")

    def wrap(text: str) -> Iterator[str]:
        yield text

    with pytest.raises(pg.PurposeViolation):
        profile(wrap(body()))
    finished = _generator_function()
    list(finished)
    assert pg.labels_of(finished) == frozenset()  # a finished generator holds nothing


def test_looking_into_an_iterator_does_not_consume_it() -> None:
    pg.configure("trust-center", mode="trace")
    received: list[list[Any]] = []

    @pg.purpose("service.operations")
    def consume(items: Any) -> None:
        received.append(list(items))

    consume(word for word in ["a", body()])
    consume(zip(["a"], [body()], strict=True))
    consume(iter({"k": body()}.items()))
    assert received == [["a", SECRET], [("a", SECRET)], [("k", SECRET)]]


def test_holders_of_plain_values_pass() -> None:
    pg.configure("trust-center", mode="enforce")
    with pg.testing.assert_no_violations():
        profile(word for word in ["plain"])
        profile(zip(["a"], [1], strict=True))
        profile(functools.partial(print, "plain"))
        profile(memoryview(b"plain"))
        profile(re.search("a", "plain"))
        profile(UserString("plain"))


class _Thread(list):  # type: ignore[type-arg]
    """A list subclass that keeps more than its items."""

    def __init__(self, items: list[str], subject: str) -> None:
        super().__init__(items)
        self.subject = subject


def test_public_attributes_of_a_container_subclass_are_looked_into() -> None:
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PurposeViolation):
        profile(_Thread(["plain"], body()))
    with pg.testing.assert_no_violations():
        profile(_Thread(["plain"], "plain"))


class _Broken(Sequence):  # type: ignore[type-arg]
    __slots__ = ()

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: Any) -> Any:
        raise RuntimeError("cannot read")

    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError("cannot iterate")


class _Endless(Sequence):  # type: ignore[type-arg]
    __slots__ = ()

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: Any) -> Any:
        return "plain"

    def __iter__(self) -> Iterator[Any]:
        return itertools.repeat("x")  # plain text never counts: the bound is on how many are looked at


class _EndlessObjects(_Endless):
    __slots__ = ()

    def __iter__(self) -> Iterator[Any]:
        return (object() for _ in itertools.count())


@pytest.mark.parametrize("value", [_Broken(), _EndlessObjects()], ids=["raises", "endless"])
def test_a_collection_that_cannot_be_looked_through_is_refused_in_enforce_mode(value: Any) -> None:
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PurposeViolation) as refused:
        profile(value)
    assert refused.value.violations[0].rule == "purposeguard.internal-error"


def test_a_plain_userstring_is_text_not_a_walk_past_the_bound() -> None:
    pg.configure("trust-center", mode="enforce")
    with pg.testing.assert_no_violations():
        profile(UserString("plain text"))
    assert pg.labels_of(UserString(body())) == {EMAIL}


class _Node:
    """A link in an object graph far past the bounds, as an ORM's machinery is."""

    def __init__(self, below: Any) -> None:
        self.below = below
        self.other = object()


def test_a_generators_locals_are_looked_into_as_far_as_their_share_of_the_budget() -> None:
    """Objects among a generator's locals are looked into best effort (a generator
    over an ORM query holds the ORM's machinery far past the bounds, and no
    labelled value until it runs); built-in containers and labelled values
    among them are looked into as anywhere else, bounds included."""
    pg.configure("trust-center", mode="enforce")
    machinery: Any = "plain"
    nested: Any = "plain"
    for _ in range(20):
        machinery = _Node(machinery)
        nested = {"next": [nested]}

    def rows(source: Any, label: str) -> Iterator[str]:
        yield label

    with pg.testing.assert_no_violations():
        profile(rows(machinery, "plain"))
    with pytest.raises(pg.PurposeViolation) as labelled:
        profile(rows(machinery, body()))
    assert labelled.value.violations[0].rule == "no-advertising"
    for too_deep in ([machinery], rows(nested, "plain"), (item for item in [nested])):
        with pytest.raises(pg.PurposeViolation) as refused:
            profile(too_deep)  # content not looked at
        assert refused.value.violations[0].rule == "purposeguard.internal-error"


def test_a_generator_suspended_in_what_it_delegates_to_is_looked_into() -> None:
    pg.configure("trust-center", mode="enforce")

    def inner(text: str) -> Iterator[str]:
        yield "first"
        yield text

    def outer() -> Iterator[str]:
        yield from inner(body())

    started = outer()
    next(started)
    with pytest.raises(pg.PurposeViolation):
        profile(started)


def test_plain_items_of_a_large_collection_of_the_applications_own_are_free() -> None:
    from collections import Counter, OrderedDict, UserList

    pg.configure("trust-center", mode="enforce")
    with pg.testing.assert_no_violations():
        profile(UserList(range(60_000)))
        profile(Counter(str(n) for n in range(30_000)))
        profile(OrderedDict((str(n), n) for n in range(30_000)))
        profile({n: n for n in range(60_000)}.keys())
        profile(itertools.pairwise([1, 2, 3]))


def test_a_client_that_reaches_the_event_loop_is_not_a_walk_past_the_bound() -> None:
    import asyncio

    import aiohttp

    pg.configure("trust-center", mode="enforce")

    @pg.purpose("service.operations")
    async def notify(session: Any, to: str) -> str:
        return type(session).__name__

    @pg.purpose("advertising")
    async def advertise(session: Any, to: str) -> str:
        return type(session).__name__

    async def main() -> None:
        # An aiohttp session reaches the loop through its connector: the
        # loop's selector and ready queue are machinery, not the call's data.
        async with aiohttp.ClientSession() as session:
            assert await notify(session, "ops") == "ClientSession"
            # What the call is handed beside the session is still checked.
            with pytest.raises(pg.PurposeViolation):
                await advertise(session, pg.label(SECRET, EMAIL))

    asyncio.run(main())


def test_labelled_data_in_an_object_beside_the_loop_is_still_found() -> None:
    import asyncio

    pg.configure("trust-center", mode="enforce")

    class Sender:
        def __init__(self, loop: asyncio.AbstractEventLoop, draft: str) -> None:
            self.loop = loop
            self.draft = draft

    @pg.purpose("advertising")
    def advertise(sender: Sender) -> None:
        pass

    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(pg.PurposeViolation):
            advertise(Sender(loop, pg.label(SECRET, EMAIL)))
    finally:
        loop.close()


def test_an_applications_own_subclass_of_the_machinery_is_looked_into() -> None:
    import socket
    from concurrent.futures import ThreadPoolExecutor

    pg.configure("trust-center", mode="enforce")

    class Outbox(ThreadPoolExecutor):
        # The application's own: it may keep data on itself.
        def __init__(self, draft: str) -> None:
            super().__init__(max_workers=1)
            self.draft = draft

    class Tagged(socket.socket):
        pass

    @pg.purpose("advertising")
    def advertise(holder: Any) -> None:
        pass

    outbox = Outbox(pg.label(SECRET, EMAIL))
    tagged = Tagged()
    tagged.note = pg.label(SECRET, EMAIL)  # type: ignore[attr-defined]
    try:
        for holder in (outbox, tagged):
            with pytest.raises(pg.PurposeViolation):
                advertise(holder)
    finally:
        outbox.shutdown()
        tagged.close()
