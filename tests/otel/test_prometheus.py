"""What purposeguard counts reaches a real Prometheus, and the shipped Grafana
dashboard's queries run against it.

One instrumentation serves the whole module: Prometheus marks a series stale
as soon as a scrape no longer has it, so the data must stay exported while
the dashboard queries run.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard import otel

from .conftest import Prometheus

CONTENT = "customer_data.content.email"
# Read by conftest: this module's instrumentation outlives each test.
KEEPS_TELEMETRY = True


@pg.purpose("advertising")
def recommend_ads(text: str) -> None:
    return None


@pg.purpose("marketing.direct")
def send_newsletter(address: str) -> None:
    return None


@pg.purpose("service.operations")
def troubleshoot(ticket: str) -> None:
    return None


@pg.transform("usage-aggregate")
def mailbox_size(messages: list[str]) -> int:
    return sum(len(m) for m in messages)


def _burst(audit: Path) -> None:
    """3 trace + 1 context violations for advertising, 2 enforced for direct
    marketing, 5 allowed checks, 1 declassification, 1 disclosure."""
    trace_guard = pg.Guard(pg.Policy.load("trust-center"), mode="trace", context_mode="trace")
    enforce_guard = pg.Guard(pg.Policy.load("trust-center"), mode="enforce")
    with trace_guard.activate():
        for _ in range(3):
            recommend_ads(pg.label("Quarterly numbers", CONTENT))
        with pg.zone(tenant="contoso"):
            body = pg.label("Lunch on Friday?", CONTENT)
            recommend_ads(f"summary: {body}")  # the label is lost; the zone is not
        for _ in range(5):
            troubleshoot(pg.label("ticket 42", CONTENT))
        mailbox_size([pg.label("hello", CONTENT)])
        with pg.compelled_disclosure(
            case="LE-2026-0042",
            tenant="contoso",
            authority="District Court, Springfield",
            redirect_attempted=True,
            notifier=lambda notice: None,
            audit=audit,
        ) as disclosure:
            disclosure.release(
                {"owner": pg.label("megan@contoso.example", "customer_data")}, fields=["owner"]
            )
    with enforce_guard.activate():
        for _ in range(2):
            with pytest.raises(pg.PurposeViolation):
                send_newsletter(pg.label("ops@contoso.example", "customer_data"))


def _value(result: list[dict[str, Any]]) -> float:
    return sum(float(series["value"][1]) for series in result)


@pytest.fixture(scope="module")
def prometheus_data(prometheus: Prometheus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Two bursts, the second after Prometheus has scraped the first, so
    rates and increases over the window are not zero."""
    audit = tmp_path_factory.mktemp("audit") / "audit.sqlite"
    otel.instrument(meter_provider=prometheus.endpoint.meter_provider)
    try:
        _burst(audit)
        prometheus.wait_for("sum(purposeguard_violations_total)", lambda r: r and _value(r) == 6)
        time.sleep(1.5)
        _burst(audit)
        yield prometheus
    finally:
        otel.uninstrument()


@pytest.mark.services
def test_violations_reach_prometheus_with_their_labels(prometheus_data: Prometheus) -> None:
    """purposeguard_violations_total carries the counts and the labels docs/telemetry.md lists."""
    result = prometheus_data.wait_for(
        'purposeguard_violations_total{mode="trace", via="argument"}',
        lambda r: len(r) == 1 and _value(r) == 6,
    )
    labels = result[0]["metric"]
    assert labels["category"] == CONTENT
    assert labels["purpose"] == "advertising"
    assert labels["rule"] == "no-advertising"
    assert labels["job"] == "purposeguard-tests"

    enforced = prometheus_data.wait_for(
        'purposeguard_violations_total{mode="enforce"}',
        lambda r: len(r) == 1 and _value(r) == 4,
    )
    assert enforced[0]["metric"]["purpose"] == "marketing.direct"
    assert enforced[0]["metric"]["category"] == "customer_data"
    assert enforced[0]["metric"]["rule"] == "no-direct-marketing"
    assert enforced[0]["metric"]["via"] == "argument"

    context = prometheus_data.wait_for(
        'purposeguard_violations_total{via="context"}', lambda r: _value(r) == 2
    )
    assert {s["metric"]["mode"] for s in context} == {"trace"}
    prometheus_data.wait_for("sum(purposeguard_violations_total)", lambda r: _value(r) == 12)


@pytest.mark.services
def test_checks_reach_prometheus_by_purpose_and_outcome(prometheus_data: Prometheus) -> None:
    allowed = prometheus_data.wait_for(
        'purposeguard_checks_total{outcome="allowed", purpose="service.operations"}',
        lambda r: _value(r) == 10,
    )
    assert len(allowed) == 1
    # The compelled disclosure's release is checked too, and allowed.
    prometheus_data.wait_for(
        'purposeguard_checks_total{outcome="allowed", purpose="disclosure.compelled"}',
        lambda r: _value(r) > 0,
    )
    denied = prometheus_data.wait_for(
        'sum by (purpose) (purposeguard_checks_total{outcome="denied"})',
        lambda r: _value(r) == 12,
    )
    assert {s["metric"]["purpose"]: float(s["value"][1]) for s in denied} == {
        "advertising": 8.0,
        "marketing.direct": 4.0,
    }


@pytest.mark.services
def test_declassifications_and_disclosures_have_their_own_counters(prometheus_data: Prometheus) -> None:
    result = prometheus_data.wait_for("purposeguard_declassifications_total", lambda r: _value(r) == 2)
    assert result[0]["metric"]["transform"] == "usage-aggregate"
    assert result[0]["metric"]["category"] == "usage_data"
    prometheus_data.wait_for(
        'purposeguard_disclosures_total{purpose="disclosure.compelled"}',
        lambda r: _value(r) == 2,
    )


@pytest.mark.services
def test_no_series_carries_a_tenant_or_a_value(prometheus_data: Prometheus) -> None:
    result = prometheus_data.wait_for('{__name__=~"purposeguard_.*"}', lambda r: len(r) >= 8)
    for series in result:
        for key, value in series["metric"].items():
            assert "tenant" not in key
            assert value != "contoso"
            assert "Quarterly" not in value and "Lunch" not in value


# -- the Grafana dashboard --------------------------------------------------------------

# What Grafana substitutes before it sends a query to Prometheus.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "${__rate_interval}": "1m",
    "$__interval": "15s",
    "${__interval}": "15s",
    "$__range": "5m",
    "${__range}": "5m",
}


def _dashboard() -> dict[str, Any]:
    text = (
        importlib.resources.files("purposeguard.integrations")
        .joinpath("grafana-dashboard.json")
        .read_text(encoding="utf-8")
    )
    return json.loads(text)


def _expressions(node: Any) -> list[str]:
    """Every ``expr`` anywhere in the dashboard (panels, rows, templating)."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_expressions(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_expressions(item))
    return found


def _substitute(expr: str) -> str:
    # Longest names first: $__range must not eat the start of $__range_ms.
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    assert "$" not in expr, f"a dashboard variable the test does not know: {expr}"
    return expr


def test_dashboard_has_the_panels_the_issue_names() -> None:
    dashboard = _dashboard()
    titles = {p["title"] for p in dashboard["panels"]}
    for wanted in (
        "Violations by purpose and category",
        "Violations by rule",
        "Top functions",
        "Checks per second by outcome",
        "Enforce vs trace",
    ):
        assert wanted in titles
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["type"] == "prometheus"
    assert len(_expressions(dashboard)) >= 10


@pytest.mark.services
def test_every_dashboard_query_is_valid_and_returns_data(prometheus_data: Prometheus) -> None:
    expressions = [_substitute(e) for e in _expressions(_dashboard())]
    assert expressions
    for expr in expressions:
        assert re.search(r"purposeguard_\w+", expr), expr
        # Bounded wait each: rates need two scrapes inside their window.
        prometheus_data.wait_for(expr, lambda r: len(r) > 0, timeout=30)


_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
_METRIC = re.compile(r"\b(purposeguard_[a-z_]+)\b")


@pytest.mark.services
def test_every_dashboard_query_uses_only_exported_label_names(prometheus_data: Prometheus) -> None:
    """A `sum by (x)` over a label that does not exist still returns a series,
    so "returns data" alone cannot catch a misspelt label: compare the names."""
    for expr in (_substitute(e) for e in _expressions(_dashboard())):
        used = {
            name.strip() for group in _GROUPING.findall(expr) for name in group.split(",") if name.strip()
        }
        used |= set(_MATCHER.findall(expr))
        exported: set[str] = set()
        for metric in set(_METRIC.findall(expr)):
            for series in prometheus_data.wait_for(metric, lambda r: len(r) > 0, timeout=30):
                exported |= set(series["metric"])
        missing = used - exported - {"le"}
        assert not missing, f"{expr}: labels {sorted(missing)} are not exported"


@pytest.mark.services
def test_dashboard_rate_panels_see_the_second_burst(prometheus_data: Prometheus) -> None:
    """The counters grew between scrapes, so the panels show real movement."""
    prometheus_data.wait_for(
        "sum(increase(purposeguard_violations_total[5m]))", lambda r: r and _value(r) > 0, timeout=30
    )


def test_a_missing_prometheus_binary_fails_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI installs Prometheus; without it these tests fail, they never skip."""
    from . import conftest

    monkeypatch.setattr(conftest.shutil, "which", lambda name: None)
    monkeypatch.setattr(conftest.os.path, "exists", lambda path: False)
    with pytest.raises(pytest.fail.Exception, match="apt-get install prometheus"):
        conftest.prometheus_binary()
