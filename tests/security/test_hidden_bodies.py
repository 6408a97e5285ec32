"""Code that runs later than its call, or returns what it read for itself.

Found by a red-team pass, tried as application code would: a coroutine or
generator function under an ordinary decorator (or a thin wrapper returning a
client's coroutine) ran its body under the caller's purpose; a decision frame
took labelled text and an ``int`` subclass for decisions; a frame in trace
mode raised on a result too large to look through; a generator's return
value went unchecked; a transform declassified data its body read for itself.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import purposeguard as pg

CONTENT = "customer_data.content.email"
ACCOUNT = "customer_data"
BODY = "Quarterly numbers attached"


@pytest.fixture
def enforcing() -> pg.Guard:
    return pg.configure("trust-center", mode="enforce", context_mode="enforce")


def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An ordinary decorator that knows nothing of coroutines or generators."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


# -- bodies that run after the call returned -------------------------------------------------


@pg.purpose("advertising")
@timed
async def hidden_ad_purpose() -> str | None:
    return pg.current_purpose()


@pg.purpose("advertising")
@timed
async def hidden_ad_returning(value: Any) -> Any:
    await asyncio.sleep(0)
    return value


async def _client_call(value: Any) -> Any:
    await asyncio.sleep(0)
    return value


@pg.purpose("advertising")
def ad_through_client(value: Any) -> Any:
    """A thin wrapper that returns a client's coroutine for the caller to await."""
    return _client_call(value)


def test_a_coroutine_hidden_by_a_decorator_runs_for_its_declared_purpose(enforcing: pg.Guard) -> None:
    async def caller() -> str | None:
        with pg.purpose("service.operations"):
            return await hidden_ad_purpose()

    assert asyncio.run(caller()) == "advertising"


@pytest.mark.parametrize("function", [hidden_ad_returning, ad_through_client], ids=["hidden", "client"])
def test_what_a_hidden_coroutine_returns_is_checked(enforcing: pg.Guard, function: Any) -> None:
    content = pg.label(BODY, CONTENT)

    async def caller() -> Any:
        holder: dict[str, Any] = {}
        coroutine = function(holder)  # checked on entry: it holds nothing yet
        # Put in after the call: only the check of what comes back sees it.
        holder["mail"] = content
        return await coroutine

    with pytest.raises(pg.PurposeViolation) as refused:
        asyncio.run(caller())
    assert [(v.via, v.rule) for v in refused.value.violations] == [("return", "no-advertising")]
    assert BODY not in str(refused.value)


def test_a_hidden_coroutine_inside_a_zone_is_checked_against_it(enforcing: pg.Guard) -> None:
    async def caller() -> None:
        with pg.zone(tenant="contoso"), pg.purpose("service.operations"):
            coroutine = hidden_ad_purpose()  # the zone holds nothing yet
            pg.label(BODY, CONTENT)  # read before the body runs
            with pytest.raises(pg.PurposeViolation) as refused:
                await coroutine
            assert refused.value.violations[0].via == "context"

    asyncio.run(caller())


@pg.purpose("advertising")
@timed
def hidden_ad_lines() -> Iterator[bool]:
    yield pg.current_purpose() == "advertising"
    yield pg.check(pg.label(BODY, CONTENT)).allowed


@pg.purpose("advertising")
@timed
async def hidden_ad_stream() -> AsyncIterator[str | None]:
    yield pg.current_purpose()


def test_a_generator_hidden_by_a_decorator_runs_for_its_declared_purpose(enforcing: pg.Guard) -> None:
    lines = hidden_ad_lines()
    assert next(lines) is True
    with pytest.raises(pg.PurposeViolation):
        next(lines)


def test_an_async_generator_hidden_by_a_decorator_runs_for_its_declared_purpose(enforcing: pg.Guard) -> None:
    async def consume() -> list[str | None]:
        with pg.purpose("service.operations"):
            return [item async for item in hidden_ad_stream()]

    assert asyncio.run(consume()) == ["advertising"]


# -- what a generator returns ----------------------------------------------------------------


@pg.purpose("advertising")
def ad_generator(holder: dict[str, Any]) -> Iterator[int]:
    yield 1
    return holder["mail"]


def test_what_a_decorated_generator_returns_is_checked(enforcing: pg.Guard) -> None:
    holder: dict[str, Any] = {}

    def consumer() -> Iterator[int]:
        return (yield from ad_generator(holder))

    running = consumer()
    assert next(running) == 1
    holder["mail"] = pg.label(BODY, CONTENT)
    with pytest.raises(pg.PurposeViolation) as refused:
        next(running)
    assert [(v.via, v.rule) for v in refused.value.violations] == [("return", "no-advertising")]


# -- decision frames -------------------------------------------------------------------------


@pg.purpose("service.operations")
def load_mail() -> str:
    return pg.label(BODY, CONTENT)


@pg.purpose("service.operations")
def load_name() -> str:
    return pg.label("Megan", ACCOUNT)


@pg.purpose("service.operations", output="decision")
def greeting() -> str:
    body = load_mail()
    # Labelled text, but only with the name's label: the body rebuilt in C.
    return load_name() + f" wrote: {body[:18]}"


class Score(int):
    pass


@pg.purpose("service.operations", output="decision")
def spam_score() -> Score:
    body = load_mail()
    score = Score(3)
    score.excerpt = f"re: {body}"  # type: ignore[attr-defined]
    return score


@pg.purpose("service.communications")
def notify(text: str) -> str:
    return "sent"


@pytest.mark.parametrize(
    "flow",
    [lambda: notify(greeting()), lambda: notify(spam_score().excerpt)],  # type: ignore[attr-defined]
    ids=["labelled-text", "int-subclass"],
)
def test_data_in_the_shape_of_a_decision_hands_the_frame_on(enforcing: pg.Guard, flow: Any) -> None:
    with pg.zone(tenant="contoso") as state:
        with pytest.raises(pg.PurposeViolation) as refused:
            flow()
        assert CONTENT in state.categories
    assert refused.value.violations[0].rule == "no-content-in-service-communications"


def test_a_labelled_number_is_still_a_decision(enforcing: pg.Guard) -> None:
    @pg.purpose("service.operations", output="decision")
    def size() -> int:
        return pg.label(len(load_mail()), "usage_data")

    with pg.zone(tenant="contoso") as state:
        assert notify(str(size())) == "sent"
        assert CONTENT not in state.categories


class Node:
    def __init__(self, child: Node | None = None) -> None:
        self.child = child


def test_a_decision_frame_in_trace_mode_goes_on_with_a_result_too_large_to_look_through() -> None:
    pg.configure("trust-center", mode="trace", context_mode="trace")

    @pg.purpose("service.operations", output="decision")
    def deep() -> Node:
        load_mail()
        node = Node()
        for _ in range(20):
            node = Node(node)
        return node

    with pg.zone(tenant="contoso") as state:
        assert isinstance(deep(), Node)
        # Not a decision: everything the frame saw flows on.
        assert CONTENT in state.categories


# -- transforms ------------------------------------------------------------------------------

NARROW = """
[policy]
name = "narrow"
extends = "trust-center"

[[transforms]]
id = "contact-count"
from = ["customer_data.content.crm"]
to = "usage_data"
"""


def test_a_transform_does_not_declassify_what_its_body_read_outside_from() -> None:
    pg.configure(pg.Policy.from_toml(NARROW), mode="enforce")
    mail = pg.label(BODY, CONTENT)

    @pg.transform("contact-count")
    def contact_count(user_id: int) -> str:
        return mail + " (count)"

    with pytest.raises(pg.PurposeViolation) as refused:
        contact_count(7)
    assert [(v.via, v.rule, v.category) for v in refused.value.violations] == [
        ("return", "contact-count", CONTENT)
    ]
    assert BODY not in str(refused.value)


def test_in_trace_mode_what_a_transform_may_not_declassify_keeps_its_label() -> None:
    pg.configure(pg.Policy.from_toml(NARROW), mode="trace")
    mail = pg.label(BODY, CONTENT)
    crm = pg.label("lead", "customer_data.content.crm")

    @pg.transform("contact-count")
    def contact_count(note: str) -> str:
        return mail + note

    with pg.testing.capture() as seen:
        out = contact_count(crm)
    assert pg.labels_of(out) == {"usage_data", CONTENT}
    assert [(v.via, v.category) for v in seen] == [("return", CONTENT)]


# -- found by review: what must stay as it was -----------------------------------------------


def test_a_generator_handed_in_or_already_started_is_handed_back_as_it_is(enforcing: pg.Guard) -> None:
    """A shared cursor returned by a guarded function is not wrapped: closing
    a wrapper would close the cursor for everyone else."""

    def rows() -> Iterator[str]:
        yield from ("row1", "row2", "row3", "row4")

    shared = rows()

    @pg.purpose("service.operations")
    def cursor() -> Iterator[str]:
        return shared

    @pg.purpose("service.operations")
    def same(feed: Iterator[str]) -> Iterator[str]:
        return feed

    first = cursor()  # not started: run for the purpose, but left open when dropped
    assert next(first) == "row1"
    del first
    assert cursor() is shared and same(shared) is shared  # started, or handed in: as it is
    assert list(cursor()) == ["row2", "row3", "row4"]


class MlScore(float):
    """What a model library returns: a float subclass that holds nothing else."""

    __slots__ = ()


def test_a_number_subclass_that_holds_nothing_else_is_a_decision(enforcing: pg.Guard) -> None:
    @pg.purpose("service.security", output="decision")
    def spam_probability() -> float:
        load_mail()
        return MlScore(0.93)

    with pg.zone(tenant="contoso") as state:
        assert spam_probability() == 0.93
        assert CONTENT not in state.categories


def test_a_transform_may_return_its_own_output_category() -> None:
    pg.configure("trust-center", mode="enforce")
    mail = [pg.label(BODY, CONTENT)]

    @pg.transform("usage-aggregate")
    def size(messages: list[str]) -> int:
        return pg.label(sum(map(len, messages)), "usage_data")

    assert pg.labels_of(size(mail)) == {"usage_data"}


def test_a_generator_based_coroutine_returned_is_still_awaitable(enforcing: pg.Guard) -> None:
    import types

    @types.coroutine
    def legacy() -> Any:
        yield
        return "done"

    @pg.purpose("service.security")
    def start() -> Any:
        return legacy()

    async def caller() -> Any:
        return await start()

    assert asyncio.run(caller()) == "done"
