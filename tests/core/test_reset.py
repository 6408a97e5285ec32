"""pg.testing.reset(): one owner of process state, one reset that really resets it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import purposeguard as pg
from purposeguard import _shortcut, audit, otel
from purposeguard._state import STATE, Counter

EMAIL = "customer_data.content.email"

CUSTOM = """
[policy]
name = "custom"
default = "deny"

[taxonomy.categories]
"customer_data.content.recipe" = "recipes"

[[rules]]
id = "operate"
categories = ["customer_data"]
purposes = ["service.operations"]
effect = "allow"
"""


@pg.purpose("service.operations")
def troubleshoot(text: str) -> int:
    return len(text)


def test_the_zones_switch_goes_off_again() -> None:
    with pg.zone(tenant="contoso"):
        pass
    assert STATE.flags.zones
    pg.testing.reset()
    assert not STATE.flags.zones
    assert STATE.flags.fast


def test_an_open_zone_keeps_the_zones_switch_on() -> None:
    with pg.zone(tenant="contoso"):
        pg.testing.reset()
        assert STATE.flags.zones  # the zone's flows are still checked
        pg.configure("trust-center", context_mode="enforce")
        with pytest.raises(pg.PurposeViolation):
            pg.label("Quarterly numbers", EMAIL)
            troubleshoot_for_ads("plain")
    pg.testing.reset()
    assert not STATE.flags.zones


@pg.purpose("advertising")
def troubleshoot_for_ads(text: str) -> int:
    return len(text)


def test_configuration_subscribers_and_counters_go(tmp_path: Path) -> None:
    pg.configure("trust-center", mode="trace", audit=tmp_path / "audit.db")
    seen: list[pg.Violation] = []
    pg.on_violation(seen.append)
    STATE.counters.enabled = True
    troubleshoot(pg.label("Quarterly numbers", EMAIL))
    troubleshoot(pg.label("Quarterly numbers", EMAIL))  # through the shortcut
    assert STATE.counters.snapshot()[("service.operations", "allowed")] == 2
    assert any(STATE.fast_allowed.values())

    pg.testing.reset()

    assert pg.get_guard().mode == "enforce"
    assert audit.attached() is None
    assert not STATE.handlers.violations and not STATE.handlers.records
    assert not STATE.counters.enabled
    assert STATE.counters.snapshot() == {}
    assert not any(STATE.fast_allowed.values())
    with pytest.raises(pg.PurposeViolation):
        troubleshoot_for_ads(pg.label("Quarterly numbers", EMAIL))
    assert seen == []  # the old subscriber is gone


def test_a_policy_taxonomy_and_label_caches_go() -> None:
    pg.configure(pg.Policy.from_toml(CUSTOM))
    recipe = pg.label("two eggs", "customer_data.content.recipe")
    assert STATE.labels.kinds_no_tenant
    pg.testing.reset()
    assert not STATE.labels.kinds_no_tenant and not STATE.labels.str_fast
    with pytest.raises(pg.UnknownKeyError):
        pg.label("two eggs", "customer_data.content.recipe")
    # A value labelled before keeps its labels: they are its data.
    assert pg.labels_of(recipe) == {"customer_data.content.recipe"}


def test_telemetry_is_turned_off_unless_kept() -> None:
    from opentelemetry.sdk.metrics import MeterProvider

    provider = MeterProvider(shutdown_on_exit=False)
    otel.instrument(meter_provider=provider)
    try:
        pg.testing.reset(keep_telemetry=True)
        assert otel.instrumented() and STATE.counters.enabled
        pg.testing.reset()
        assert not otel.instrumented() and not STATE.counters.enabled
    finally:
        otel.uninstrument()
        provider.shutdown()


def test_a_capture_block_survives_a_reset_inside_it() -> None:
    pg.configure("trust-center", mode="trace")
    with pg.testing.capture() as violations:
        pg.testing.reset()
        pg.configure("trust-center", mode="trace")
        troubleshoot_for_ads(pg.label("Quarterly numbers", EMAIL))
    assert [v.rule for v in violations] == ["no-advertising"]
    assert not STATE.handlers.violations


def test_invalidate_empties_the_shortcut_and_says_why() -> None:
    pg.configure("trust-center")
    troubleshoot(pg.label("Quarterly numbers", EMAIL))
    allowed = _shortcut.allowed_classes("service.operations")
    assert allowed
    epoch = STATE.flags.epoch
    pg.get_guard().reload()
    assert not allowed  # the same set object the wrappers hold, emptied
    assert STATE.flags.epoch > epoch
    assert STATE.invalidated_because == "policy replaced"


def test_a_counter_loses_no_bump_between_threads_and_resets_to_zero() -> None:
    counter = Counter()

    def bump() -> None:
        for _ in range(10_000):
            next(counter.steps)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert counter.value() == 40_000
    assert counter.value() == 40_000  # reading does not count
    counter.reset()
    assert counter.value() == 0
    next(counter.steps)
    assert counter.value() == 1
