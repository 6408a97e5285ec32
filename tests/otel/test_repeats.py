"""One record per flow on the real OpenTelemetry SDK: span events carry the count, metrics count every check."""

from __future__ import annotations

from typing import Any

import purposeguard as pg
from purposeguard import _otel_attributes as names

from .conftest import Telemetry

EMAIL = "customer_data.content.email"
REPEATS = 1000


@pg.purpose("advertising")
def ads(value: Any) -> int:
    return 1


def _events(telemetry: Telemetry) -> list[tuple[str, dict[str, Any]]]:
    return [
        (e.name, dict(e.attributes or {})) for s in telemetry.spans.get_finished_spans() for e in s.events
    ]


def _total(telemetry: Telemetry, metric: str, **attributes: str) -> float:
    return sum(
        value
        for found, value in telemetry.points(metric)
        if all(found.get(key) == wanted for key, wanted in attributes.items())
    )


def _repeat_in_a_zone(telemetry: Telemetry) -> None:
    pg.configure("trust-center", mode="trace")
    body = pg.label("mail body", EMAIL)
    with telemetry.tracer().start_as_current_span("request"), pg.zone(tenant="contoso"):
        for _ in range(REPEATS):
            ads(body)


def test_the_violation_event_carries_its_count(telemetry: Telemetry) -> None:
    """The first occurrence's span event says it stands for one check."""
    _repeat_in_a_zone(telemetry)
    violations = [attributes for name, attributes in _events(telemetry) if name == names.EVENT_VIOLATION]
    assert len(violations) == 1
    assert violations[0][names.COUNT] == 1


def test_the_zone_closing_adds_one_event_with_the_final_count(telemetry: Telemetry) -> None:
    """A flow repeated 1,000 times in a zone: one violation event and one repeats event with count 1000."""
    _repeat_in_a_zone(telemetry)
    events = _events(telemetry)
    assert [name for name, _ in events] == [names.EVENT_VIOLATION, names.EVENT_REPEATS]
    repeats = events[1][1]
    assert repeats[names.COUNT] == REPEATS
    assert {key: repeats[key] for key in (names.CATEGORY, names.PURPOSE, names.VIA, names.TENANT)} == {
        names.CATEGORY: EMAIL,
        names.PURPOSE: "advertising",
        names.VIA: "argument",
        names.TENANT: "contoso",
    }


def test_the_violations_counter_counts_every_occurrence(telemetry: Telemetry) -> None:
    """purposeguard.violations and .by_function add the repeats: 1,000 checks denied count 1,000."""
    _repeat_in_a_zone(telemetry)
    assert (
        _total(telemetry, names.VIOLATIONS, category=EMAIL, purpose="advertising", via="argument") == REPEATS
    )
    assert _total(telemetry, names.VIOLATIONS_BY_FUNCTION, purpose="advertising") == REPEATS


def test_the_checks_counter_counts_every_check(telemetry: Telemetry) -> None:
    """purposeguard.checks counts each denied check, aggregated records or not."""
    _repeat_in_a_zone(telemetry)
    assert _total(telemetry, names.CHECKS, purpose="advertising", outcome="denied") == REPEATS


def test_a_flow_seen_once_has_no_repeats_event(telemetry: Telemetry) -> None:
    """One occurrence: one event with count 1 and nothing when the zone closes."""
    pg.configure("trust-center", mode="trace")
    with telemetry.tracer().start_as_current_span("request"), pg.zone():
        ads(pg.label("mail body", EMAIL))
    assert [(name, attributes[names.COUNT]) for name, attributes in _events(telemetry)] == [
        (names.EVENT_VIOLATION, 1)
    ]
    assert _total(telemetry, names.VIOLATIONS, purpose="advertising") == 1


def test_the_repeats_log_record_carries_the_count(telemetry: Telemetry, caplog: Any) -> None:
    """The repeats are on the purposeguard logger too, with the count and no value."""
    import logging

    with caplog.at_level(logging.INFO, "purposeguard"):
        _repeat_in_a_zone(telemetry)
    repeated = [r for r in caplog.records if "repeated" in r.getMessage()]
    assert len(repeated) == 1
    assert getattr(repeated[0], names.COUNT) == REPEATS
    assert "mail body" not in repeated[0].getMessage()
