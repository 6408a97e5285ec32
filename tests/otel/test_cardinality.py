"""Metric cardinality is bounded by the taxonomy, never by tenants or data."""

from __future__ import annotations

import itertools

import pytest

import purposeguard as pg
from purposeguard import _otel_attributes as names
from purposeguard._records import VIAS

from .conftest import Telemetry

CATEGORIES = ("customer_data", "customer_data.content.email", "customer_data.content.crm", "payment_data")
PURPOSES = ("advertising", "marketing.direct", "improvement")
MODES = ("enforce", "trace")


@pg.purpose("advertising")
def advertise(value: object) -> None:
    return None


@pg.purpose("marketing.direct")
def mail_campaign(value: object) -> None:
    return None


@pg.purpose("improvement")
def train_model(value: object) -> None:
    return None


FUNCTIONS = {"advertising": advertise, "marketing.direct": mail_campaign, "improvement": train_model}


def test_ten_thousand_violations_across_a_thousand_tenants_stay_within_the_bound(
    telemetry: Telemetry,
) -> None:
    guards = {mode: pg.Guard(pg.Policy.load("trust-center"), mode=mode) for mode in MODES}
    combos = list(itertools.product(CATEGORIES, PURPOSES, MODES, ("argument", "egress")))
    total = 10_000
    tenants = [f"tenant-{n:04d}" for n in range(1_000)]
    recorded = 0
    for n in range(total):
        category, purpose, mode, via = combos[n % len(combos)]
        tenant = tenants[n % len(tenants)]
        value = pg.label(f"note {n} for {tenant}", category, tenant=tenant)
        with guards[mode].activate():
            try:
                if via == "argument":
                    FUNCTIONS[purpose](value)
                else:
                    guards[mode].check_labels(
                        pg.labels_of(value),
                        purpose,
                        via="egress",
                        function="tests.otel.upload",
                        tenant=tenant,
                    )
            except pg.PurposeViolation:
                assert mode == "enforce"
        recorded += 1
    assert recorded == total

    violations = telemetry.points(names.VIOLATIONS)
    checks = telemetry.points(names.CHECKS)
    by_function = telemetry.points(names.VIOLATIONS_BY_FUNCTION)
    assert sum(v for _, v in violations) == total

    taxonomy = pg.get_guard().policy.taxonomy
    # Each attribute ranges over a set the policy fixes: (category, purpose)
    # decides the rule, so rules add nothing to the product.
    bound = len(taxonomy.categories) * len(taxonomy.purposes) * len(MODES) * len(VIAS)
    assert len(violations) <= bound
    assert len(violations) == len(combos)  # exactly what was driven, whatever the tenants
    assert len(checks) <= len(taxonomy.purposes) * 3
    assert len(by_function) <= (len(FUNCTIONS) + 1) * len(taxonomy.purposes)
    for attributes, _ in violations + checks + by_function:
        assert names.TENANT not in attributes
        assert not any(str(v).startswith("tenant-") for v in attributes.values())
        assert not any("note" in str(v) for v in attributes.values())


def test_function_names_past_the_cap_are_counted_together(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from purposeguard import otel

    monkeypatch.setattr(otel, "MAX_FUNCTIONS", 5)
    guard = pg.configure("trust-center", mode="trace")
    for n in range(20):
        guard.check_labels(
            frozenset({"customer_data"}), "advertising", via="egress", function=f"generated.fn_{n}"
        )
    points = telemetry.points(names.VIOLATIONS_BY_FUNCTION)
    assert len(points) == 6
    assert dict((a[names.CODE_FUNCTION], v) for a, v in points)[names.OTHER_FUNCTIONS] == 15
