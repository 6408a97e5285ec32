"""Decision frames under concurrency: tasks and threads of one request share
its zone, and a frame stays private to the call that opened it."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import pytest

import purposeguard as pg

EMAIL = "customer_data.content.email"
BODY = "Board minutes: the merger closes Friday"


@pytest.fixture(autouse=True)
def enforcing() -> pg.Guard:
    return pg.configure("trust-center", mode="enforce", context_mode="enforce")


@pg.purpose("service.security", output="decision")
async def async_verdict(delay: float) -> bool:
    body = pg.label(BODY, EMAIL)
    await asyncio.sleep(delay)
    return "lottery" in body


@pg.purpose("advertising")
async def async_house_ad() -> str:
    await asyncio.sleep(0)
    return "house ad"


@pg.purpose("advertising")
def house_ad() -> str:
    return "house ad"


@pytest.mark.parametrize("tasks", [2, 8, 32])
def test_concurrent_decisions_never_taint_a_sibling_ad_task(tasks: int) -> None:
    """Secure and precise: decision frames in concurrent tasks keep their reads; a sibling ad task is served."""

    async def main() -> list[Any]:
        with pg.zone(tenant="contoso") as state:
            results = await asyncio.gather(
                *(async_verdict(0.001 * (i % 3)) for i in range(tasks)), async_house_ad()
            )
            assert EMAIL not in state.categories
            return results

    assert asyncio.run(main())[-1] == "house ad"


@pytest.mark.parametrize("workers", [1, 4])
def test_decisions_in_a_wrapped_thread_pool_keep_their_reads(workers: int) -> None:
    """Secure and precise: decisions run in a wrapped pool keep the request's zone clean."""

    @pg.purpose("service.security", output="decision")
    def verdict(i: int) -> bool:
        return "lottery" in pg.label(f"{BODY} {i}", EMAIL)

    with pg.zone(tenant="contoso") as state:
        with pg.wrap_executor(concurrent.futures.ThreadPoolExecutor(workers)) as pool:
            assert not any(pool.map(verdict, range(16)))
        assert EMAIL not in state.categories
        assert house_ad() == "house ad"


@pytest.mark.parametrize("workers", [1, 4])
def test_content_read_in_pool_work_outside_a_frame_taints(workers: int) -> None:
    """Secure: pool work that reads content outside a decision frame taints the request: ads refused."""

    def read(i: int) -> int:
        return len(pg.label(f"{BODY} {i}", EMAIL))

    with pg.zone(tenant="contoso"):
        with pg.wrap_executor(concurrent.futures.ThreadPoolExecutor(workers)) as pool:
            list(pool.map(read, range(8)))
        with pytest.raises(pg.PurposeViolation):
            house_ad()


def test_a_task_started_inside_a_frame_reports_to_the_frame_only() -> None:
    """Precise: a task a decision starts and awaits belongs to the frame; its reads stay there."""

    @pg.purpose("service.security", output="decision")
    async def verdict() -> bool:
        async def inner() -> int:
            return len(pg.label(BODY, EMAIL))

        return await asyncio.create_task(inner()) > 0

    async def main() -> frozenset[str]:
        with pg.zone(tenant="contoso") as state:
            await verdict()
            await async_house_ad()
            return state.categories

    assert EMAIL not in asyncio.run(main())


def test_nested_decisions_hand_on_only_what_the_outer_returns() -> None:
    """Precise: a decision inside a decision: the inner's text result taints only the outer frame."""

    @pg.purpose("service.security", output="decision")
    def inner() -> str:
        return f"re: {pg.label(BODY, EMAIL)}"

    @pg.purpose("service.security", output="decision")
    def outer() -> bool:
        return len(inner()) > 3

    with pg.zone(tenant="contoso") as state:
        assert outer() is True
        assert EMAIL not in state.categories


def test_nested_decisions_whose_outer_returns_text_taint_the_request() -> None:
    """Secure: when the outer decision hands text on, everything either frame saw reaches the request."""

    @pg.purpose("service.security", output="decision")
    def inner() -> str:
        return f"re: {pg.label(BODY, EMAIL)}"

    @pg.purpose("service.security", output="decision")
    def outer() -> str:
        return inner().upper()

    with pg.zone(tenant="contoso"):
        outer()
        with pytest.raises(pg.PurposeViolation):
            house_ad()


def test_a_decision_frame_never_escapes_into_the_caller_after_cancellation() -> None:
    """Secure: a cancelled decision task leaves the request's zone as the current one, untainted."""

    async def main() -> tuple[bool, frozenset[str]]:
        with pg.zone(tenant="contoso") as state:
            task = asyncio.create_task(async_verdict(5))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return pg.current_zone() is state, state.categories

    current, categories = asyncio.run(main())
    assert current and EMAIL not in categories
