"""Values a caller hands into a guarded generator are checked like arguments."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator

import pytest

import purposeguard as pg

EMAIL = "customer_data.content.email"


@pg.purpose("advertising")
def ad_loop() -> Generator[int, object, None]:
    while True:
        received = yield 1
        if received is None:
            return


@pg.purpose("advertising")
async def async_ad_loop() -> AsyncGenerator[int, object]:
    while True:
        received = yield 1
        if received is None:
            return


def test_send_of_a_labelled_value_is_refused_in_enforce_mode() -> None:
    """send() of a labelled value into an advertising generator raises, and the generator is closed."""
    pg.configure("trust-center", mode="enforce")
    generator = ad_loop()
    next(generator)
    with pytest.raises(pg.PurposeViolation) as raised:
        generator.send(pg.label("mail body", EMAIL))
    assert [v.via for v in raised.value.violations] == ["argument"]
    with pytest.raises(StopIteration):
        next(generator)


def test_send_of_a_labelled_value_is_recorded_in_trace_mode() -> None:
    """In trace mode the received value is recorded as a violation and the generator goes on."""
    pg.configure("trust-center", mode="trace")
    generator = ad_loop()
    next(generator)
    with pg.testing.capture() as violations:
        assert generator.send(pg.label("mail body", EMAIL)) == 1
    assert [(v.category, v.purpose, v.via) for v in violations] == [(EMAIL, "advertising", "argument")]


def test_throw_of_an_exception_carrying_a_labelled_value_is_refused() -> None:
    """throw() hands an exception into the generator: its arguments are checked too."""
    pg.configure("trust-center", mode="enforce")
    generator = ad_loop()
    next(generator)
    with pytest.raises(pg.PurposeViolation):
        generator.throw(ValueError(pg.label("mail body", EMAIL)))


def test_plain_values_sent_in_pass() -> None:
    """Unlabelled values sent in are not refused."""
    pg.configure("trust-center", mode="enforce")
    generator = ad_loop()
    next(generator)
    assert generator.send("house ad") == 1


def test_asend_of_a_labelled_value_is_refused() -> None:
    """asend() of a labelled value into an advertising async generator raises."""
    pg.configure("trust-center", mode="enforce")

    async def run() -> None:
        generator = async_ad_loop()
        await generator.asend(None)
        await generator.asend(pg.label("mail body", EMAIL))

    with pytest.raises(pg.PurposeViolation):
        asyncio.run(run())


def test_athrow_of_a_labelled_exception_is_refused() -> None:
    """athrow() of an exception carrying a labelled value raises the violation."""
    pg.configure("trust-center", mode="enforce")

    async def run() -> None:
        generator = async_ad_loop()
        await generator.asend(None)
        await generator.athrow(ValueError(pg.label("mail body", EMAIL)))

    with pytest.raises(pg.PurposeViolation):
        asyncio.run(run())


def test_send_inside_an_enforcing_zone_is_refused_via_the_zone_too() -> None:
    """Inside a zone with context_mode=enforce, text derived from content and sent in is refused."""
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    with pg.zone():
        body = pg.label("mail body", EMAIL)
        derived = "".join(reversed(str.__str__(body)))  # a new, unlabelled str
        generator = ad_loop()
        with pytest.raises(pg.PurposeViolation):
            next(generator)
            generator.send(derived)


# -- each step checks the zone: a consumer primed before the request read content --------


@pg.purpose("advertising")
def ad_consumer(received: list[object]) -> Generator[None, object, None]:
    while True:
        received.append((yield))


@pg.purpose("advertising")
async def ad_stream(received: list[object]) -> AsyncGenerator[None, object]:
    while True:
        received.append((yield))


@pytest.mark.parametrize("step", ["send", "next"])
def test_a_generator_primed_before_the_read_is_refused_at_its_next_step(step: str) -> None:
    pg.configure("trust-center", mode="enforce")
    received: list[object] = []
    with pg.zone(tenant="contoso"):
        consumer = ad_consumer(received)
        next(consumer)
        text = f"re: {pg.label('Quarterly numbers', EMAIL)}"
        with pytest.raises(pg.PurposeViolation) as refused:
            consumer.send(text) if step == "send" else next(consumer)
    assert refused.value.violations[0].via == "context"
    assert received == []


def test_a_generator_made_before_the_read_is_refused_at_its_first_step() -> None:
    pg.configure("trust-center", mode="enforce")
    received: list[object] = []
    with pg.zone(tenant="contoso"):
        consumer = ad_consumer(received)
        pg.label("Quarterly numbers", EMAIL)
        with pytest.raises(pg.PurposeViolation):
            next(consumer)
    assert received == []


def test_an_async_generator_primed_before_the_read_is_refused_at_asend() -> None:
    pg.configure("trust-center", mode="enforce")
    received: list[object] = []

    async def run() -> None:
        with pg.zone(tenant="contoso"):
            stream = ad_stream(received)
            await stream.asend(None)
            text = f"re: {pg.label('Quarterly numbers', EMAIL)}"
            await stream.asend(text)

    with pytest.raises(pg.PurposeViolation):
        asyncio.run(run())
    assert received == []


def test_a_generator_stepping_in_a_zone_that_allows_it_runs_every_step() -> None:
    pg.configure("trust-center", mode="enforce")
    received: list[object] = []
    with pg.testing.assert_no_violations(), pg.zone(tenant="contoso"):
        consumer = ad_consumer(received)
        next(consumer)
        consumer.send("plain")
        next(consumer)
    assert received == ["plain", None]
