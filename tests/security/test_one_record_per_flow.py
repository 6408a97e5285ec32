"""Within a zone, one violation record per flow, with a count; counters still count every check."""

from __future__ import annotations

from typing import Any

import purposeguard as pg
from purposeguard._state import STATE

EMAIL = "customer_data.content.email"


@pg.purpose("advertising")
def ads(value: str) -> int:
    return 1


def test_a_thousand_identical_violations_in_one_zone_are_one_record_with_count_1000() -> None:
    """1,000 identical trace-mode violations in one zone: one Violation (count 1000) and one Repeats record."""
    pg.configure("trust-center", mode="trace")
    body = pg.label("mail body", EMAIL)
    with pg.testing.capture() as violations, pg.testing.capture_records() as records:
        with pg.zone(tenant="contoso"):
            for _ in range(1000):
                ads(body)
    assert len(violations) == 1
    assert violations[0].count == 1000
    repeats: list[Any] = [r for r in records if r.kind == "repeats"]
    assert [(r.category, r.purpose, r.via, r.count) for r in repeats] == [
        (EMAIL, "advertising", "argument", 1000)
    ]
    assert [r.kind for r in records] == ["violation", "repeats"]


def test_the_first_occurrence_is_recorded_at_once_while_the_zone_is_open() -> None:
    """Nothing waits for the zone to close: a process that keeps running has the record already."""
    pg.configure("trust-center", mode="trace")
    with pg.testing.capture() as violations, pg.zone():
        ads(pg.label("mail body", EMAIL))
        assert len(violations) == 1
        ads(pg.label("mail body", EMAIL))
        assert len(violations) == 1 and violations[0].count == 2


def test_counters_still_count_every_check() -> None:
    """The denied-check counter counts each of the 1,000 checks."""
    pg.configure("trust-center", mode="trace")
    counters = STATE.counters
    counters.enabled = True
    body = pg.label("mail body", EMAIL)
    before = counters.snapshot().get(("advertising", "denied"), 0)
    with pg.testing.capture() as violations, pg.zone():
        for _ in range(1000):
            ads(body)
    assert len(violations) == 1
    assert counters.snapshot().get(("advertising", "denied"), 0) - before == 1000


def test_different_flows_are_separate_records() -> None:
    """Another function or another category is another flow: its own record."""
    pg.configure("trust-center", mode="trace")

    @pg.purpose("advertising")
    def other(value: str) -> int:
        return 2

    with pg.testing.capture() as violations, pg.zone():
        for _ in range(3):
            ads(pg.label("mail body", EMAIL))
            other(pg.label("mail body", EMAIL))
    assert sorted((v.function.rsplit(".", 1)[-1], v.count) for v in violations) == [("ads", 3), ("other", 3)]


def test_enforce_mode_records_every_refusal() -> None:
    """Refusals are never aggregated: each one raised is recorded."""
    pg.configure("trust-center", mode="enforce")
    with pg.testing.capture() as violations, pg.zone():
        for _ in range(3):
            try:
                ads(pg.label("mail body", EMAIL))
            except pg.PurposeViolation:
                pass
    assert len(violations) == 3


def test_outside_a_zone_each_violation_is_its_own_record() -> None:
    """Without a zone there is no flow scope: each check records."""
    pg.configure("trust-center", mode="trace")
    with pg.testing.capture() as violations:
        for _ in range(3):
            ads(pg.label("mail body", EMAIL))
    assert len(violations) == 3
