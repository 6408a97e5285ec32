"""Purposes and labels never bleed between concurrent work."""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import ThreadPoolExecutor

import purposeguard as pg

PURPOSES = ["service.operations", "service.security", "service.communications", "advertising", "improvement"]
CATEGORIES = [
    "customer_data",
    "customer_data.content.email",
    "usage_data",
    "usage_data.end_user",
    "payment_data",
]


_REFERENCE = pg.Policy.load("trust-center")


def _expected(category: str, purpose: str) -> bool:
    """The decision of an independent copy of the pack, outside any concurrency."""
    return _REFERENCE.decide([category], purpose).allowed


async def test_many_tasks_each_under_its_own_purpose_decide_right() -> None:
    pg.configure("trust-center", mode="trace")
    rng = random.Random(7)
    plan = [(rng.choice(PURPOSES), rng.choice(CATEGORIES), f"tenant-{i}") for i in range(240)]
    wrong: list[str] = []

    async def job(purpose: str, category: str, tenant: str) -> None:
        async with pg.purpose(purpose):
            value = pg.label(f"data of {tenant}", category, tenant=tenant)
            for _ in range(3):
                await asyncio.sleep(rng.random() / 1000)
                if pg.current_purpose() != purpose:
                    wrong.append(f"{tenant}: purpose {pg.current_purpose()} != {purpose}")
                decision = pg.check(value)
                if decision.allowed != _expected(category, purpose) or decision.purpose != purpose:
                    wrong.append(f"{tenant}: wrong decision {decision}")
                if pg.labels_of(value) != {category}:
                    wrong.append(f"{tenant}: labels {pg.labels_of(value)}")

    with pg.testing.capture() as violations:
        await asyncio.gather(*(job(*item) for item in plan))
    assert wrong == []
    # Labelling inside a purpose that may not hold the category is a read (via="source"), then three checks.
    expected_violations = sum(4 for p, c, _ in plan if not _expected(c, p))
    assert len(violations) == expected_violations
    for violation in violations:
        tenant_plan = next(item for item in plan if item[2] == violation.tenant)
        assert (violation.purpose, violation.category) == tenant_plan[:2]


def test_thread_pool_workers_each_under_their_own_purpose_decide_right() -> None:
    pg.configure("trust-center", mode="trace")
    rng = random.Random(11)
    plan = [(rng.choice(PURPOSES), rng.choice(CATEGORIES), f"t{i}") for i in range(400)]

    def work(purpose: str, category: str, tenant: str) -> list[str]:
        errors = []

        @pg.purpose(purpose)
        def guarded(value: str) -> str | None:
            return pg.current_purpose()

        value = pg.label("x" * 50, category, tenant=tenant)
        for _ in range(5):
            if guarded(value) != purpose:
                errors.append("purpose")
            if pg.check(value, purpose).allowed != _expected(category, purpose):
                errors.append("decision")
        if pg.current_purpose() is not None:
            errors.append("leaked purpose")
        return errors

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda item: work(*item), plan))
    assert [r for r in results if r] == []
