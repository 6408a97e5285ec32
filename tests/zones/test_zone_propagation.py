"""Purpose, tenant and zone follow work into tasks, threads and executors."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

import pytest

import purposeguard as pg

EMAIL = "customer_data.content.email"
DOCUMENT = "customer_data.content.document"


def snapshot() -> tuple[str | None, str | None, Any]:
    return pg.current_purpose(), pg.current_tenant(), pg.current_zone()


def read_mail() -> str:
    """Work that reads content where it runs (a worker thread, a task)."""
    body = pg.label("Quarterly numbers attached", EMAIL)
    return f"summary: {body}"  # the f-string drops the label; the zone keeps it


@pg.purpose("advertising")
def show_ads(user_id: str) -> str:
    return user_id


# -- asyncio ---------------------------------------------------------------------------


async def test_a_task_created_in_a_zone_carries_purpose_tenant_and_zone() -> None:
    async def work() -> tuple[str | None, str | None, Any]:
        await asyncio.sleep(0)
        return snapshot()

    with pg.zone(tenant="contoso") as state:
        with pg.purpose("service.operations"):
            seen = await asyncio.create_task(work())
    assert seen == ("service.operations", "contoso", state)


async def test_what_a_task_learns_reaches_its_zone() -> None:
    # A probe of where zone categories travel: traced, since the pack's
    # never-rules would refuse the flow (context_mode = "enforce").
    pg.configure("trust-center", context_mode="trace")

    async def work() -> str:
        await asyncio.sleep(0)
        return read_mail()

    with pg.testing.capture() as violations:
        with pg.zone() as state:
            summary = await asyncio.create_task(work())
            assert state.categories == {EMAIL}
            show_ads(summary)
    assert [(v.via, v.category) for v in violations] == [("context", EMAIL)]


async def test_to_thread_carries_purpose_tenant_and_zone() -> None:
    with pg.zone(tenant="contoso") as state:
        with pg.purpose("service.security"):
            seen = await asyncio.to_thread(snapshot)
            summary = await asyncio.to_thread(read_mail)
    assert seen == ("service.security", "contoso", state)
    assert pg.labels_of(summary) == frozenset()
    assert state.categories == {EMAIL}


async def test_run_in_executor_with_a_wrapped_pool_carries_the_zone() -> None:
    loop = asyncio.get_running_loop()
    with pg.wrap_executor(concurrent.futures.ThreadPoolExecutor(2)) as pool:
        with pg.zone(tenant="contoso") as state:
            with pg.purpose("service.operations"):
                seen = await loop.run_in_executor(pool, snapshot)
                await loop.run_in_executor(pool, read_mail)
    assert seen == ("service.operations", "contoso", state)
    assert state.categories == {EMAIL}


# -- concurrent.futures ---------------------------------------------------------------------


def test_a_wrapped_thread_pool_carries_purpose_tenant_and_zone() -> None:
    with pg.wrap_executor(concurrent.futures.ThreadPoolExecutor(2)) as pool:
        with pg.zone(tenant="contoso") as state:
            with pg.purpose("service.operations"):
                seen = pool.submit(snapshot).result()
                mapped = list(pool.map(lambda _: snapshot(), range(3)))
    assert seen == ("service.operations", "contoso", state)
    assert mapped == [seen] * 3


def test_a_zones_categories_reach_work_in_a_wrapped_thread_pool() -> None:
    """Learned in the request thread, checked by guarded code in the pool."""
    # A probe of where zone categories travel: traced, since the pack's
    # never-rules would refuse the flow (context_mode = "enforce").
    pg.configure("trust-center", context_mode="trace")
    with pg.testing.capture() as violations:
        with pg.wrap_executor(concurrent.futures.ThreadPoolExecutor(2)) as pool:
            with pg.zone(tenant="contoso"):
                pg.label("body", EMAIL)
                pool.submit(show_ads, "u-1").result()
    assert [(v.via, v.category, v.tenant) for v in violations] == [("context", EMAIL, "contoso")]


def test_what_work_in_a_wrapped_pool_learns_reaches_the_zone() -> None:
    # A probe of where zone categories travel: traced, since the pack's
    # never-rules would refuse the flow (context_mode = "enforce").
    pg.configure("trust-center", context_mode="trace")
    with pg.testing.capture() as violations:
        with pg.wrap_executor(concurrent.futures.ThreadPoolExecutor(2)) as pool:
            with pg.zone() as state:
                summary = pool.submit(read_mail).result()
                assert state.categories == {EMAIL}
                show_ads(summary)
    assert [(v.via, v.category) for v in violations] == [("context", EMAIL)]


def test_an_unwrapped_pool_does_not_carry_the_zone() -> None:
    """Why wrap_executor exists: a plain pool runs work in its own context."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with pg.zone(tenant="contoso"):
            with pg.purpose("service.operations"):
                seen = pool.submit(snapshot).result()
    assert seen == (None, None, None)


def test_wrapping_twice_returns_the_same_wrapper_and_bad_input_raises() -> None:
    pool = pg.wrap_executor(concurrent.futures.ThreadPoolExecutor(1))
    try:
        assert pg.wrap_executor(pool) is pool
    finally:
        pool.shutdown()
    with pytest.raises(TypeError):
        pg.wrap_executor(object())  # type: ignore[arg-type]


def test_a_wrapped_process_pool_carries_purpose_tenant_and_zone_categories() -> None:
    # Only functions of the library itself are submitted, so this works with
    # any start method (a test module cannot be imported by a spawned worker).
    with pg.wrap_executor(concurrent.futures.ProcessPoolExecutor(1)) as pool:
        with pg.zone(tenant="contoso") as state:
            pg.label("body", EMAIL)
            with pg.purpose("service.operations"):
                purpose = pool.submit(pg.current_purpose).result()
                tenant = pool.submit(pg.current_tenant).result()
                seeded = pool.submit(pg.current_zone).result()
                value = pool.submit(pg.label, "file body", DOCUMENT).result()
            assert (purpose, tenant) == ("service.operations", "contoso")
            assert seeded is not None and seeded.categories == {EMAIL}
            # The worker's zone learned a document; it is added back on completion.
            assert state.categories == {EMAIL, DOCUMENT}
            # Labels survive the trip back (pickle).
            assert pg.labels_of(value) == {DOCUMENT}


def test_a_wrapped_process_pool_reports_the_workers_error() -> None:
    with pg.wrap_executor(concurrent.futures.ProcessPoolExecutor(1)) as pool:
        with pg.zone():
            future = pool.submit(int, "not a number")
            with pytest.raises(ValueError):
                future.result()


# -- plain threads ---------------------------------------------------------------------------


def test_a_thread_started_with_a_copied_context_shares_the_zone() -> None:
    import contextvars

    with pg.zone(tenant="contoso") as state:
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(read_mail,))
        thread.start()
        thread.join()
    assert state.categories == {EMAIL}


# -- isolation -----------------------------------------------------------------------------


async def test_two_concurrent_zones_in_tasks_stay_apart() -> None:
    """One request reads mail; the other, interleaved with it, shows ads."""
    mail_read = asyncio.Event()
    ads_shown = asyncio.Event()
    states: dict[str, Any] = {}

    async def mail_request() -> None:
        async with pg.zone(tenant="contoso") as state:
            states["mail"] = state
            pg.label("body", EMAIL)
            mail_read.set()
            await ads_shown.wait()
            assert pg.current_tenant() == "contoso"

    async def ads_request() -> None:
        async with pg.zone(tenant="fabrikam") as state:
            states["ads"] = state
            await mail_read.wait()
            show_ads("u-2")
            assert pg.current_tenant() == "fabrikam"
            ads_shown.set()

    with pg.testing.capture() as violations:
        await asyncio.wait_for(asyncio.gather(mail_request(), ads_request()), timeout=10)
    assert violations == []
    assert states["mail"].categories == {EMAIL}
    assert states["ads"].categories == frozenset()


def test_two_concurrent_zones_in_threads_stay_apart() -> None:
    # A probe of where zone categories travel: traced, since the pack's
    # never-rules would refuse the flow (context_mode = "enforce").
    pg.configure("trust-center", context_mode="trace")
    barrier = threading.Barrier(2, timeout=10)
    results: dict[str, Any] = {}

    def request(tenant: str, reads_mail: bool) -> None:
        with pg.zone(tenant=tenant) as state:
            if reads_mail:
                pg.label("body", EMAIL)
            barrier.wait()  # both zones are open and one has read mail
            show_ads("u")
            barrier.wait()
            results[tenant] = (pg.current_tenant(), state.categories)

    with pg.testing.capture() as violations:
        with pg.wrap_executor(concurrent.futures.ThreadPoolExecutor(2)) as pool:
            futures = [pool.submit(request, "contoso", True), pool.submit(request, "fabrikam", False)]
            for future in futures:
                future.result()
    assert results == {"contoso": ("contoso", {EMAIL}), "fabrikam": ("fabrikam", frozenset())}
    assert [(v.tenant, v.category, v.via) for v in violations] == [("contoso", EMAIL, "context")]


def test_one_zone_object_entered_by_concurrent_tasks_keeps_their_states_apart() -> None:
    shared = pg.zone(tenant="contoso")

    async def request(reads_mail: bool, started: asyncio.Event, other: asyncio.Event) -> frozenset[str]:
        async with shared as state:
            if reads_mail:
                pg.label("body", EMAIL)
            started.set()
            await other.wait()
            return state.categories

    async def main() -> list[frozenset[str]]:
        a, b = asyncio.Event(), asyncio.Event()
        return list(await asyncio.gather(request(True, a, b), request(False, b, a)))

    assert asyncio.run(main()) == [frozenset({EMAIL}), frozenset()]


def test_a_violation_in_a_process_worker_reaches_the_submitter_whole() -> None:
    with pg.wrap_executor(concurrent.futures.ProcessPoolExecutor(1)) as pool:
        with pg.zone(tenant="contoso"):
            body = pg.label("body", EMAIL)
            future = pool.submit(pg.check, body, "advertising")
            with pytest.raises(pg.PurposeViolation) as raised:
                future.result()
    assert [(v.category, v.rule, v.via, v.tenant) for v in raised.value.violations] == [
        (EMAIL, "no-advertising", "argument", "contoso")
    ]
