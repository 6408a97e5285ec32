"""Counters: counted in process, reported through observable instruments."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import purposeguard as pg
from purposeguard import _otel_attributes as names
from purposeguard import _runtime, otel

from .conftest import Telemetry, metric_points

CONTENT = "customer_data.content.email"


@pg.purpose("advertising")
def recommend_ads(text: str) -> str:
    return "ad"


@pg.purpose("service.operations")
def troubleshoot(ticket: str) -> str:
    return "ok"


def test_violations_counter_has_the_design_attributes(telemetry: Telemetry) -> None:
    pg.configure("trust-center", mode="trace")
    for _ in range(3):
        recommend_ads(pg.label("body", CONTENT, tenant="contoso"))
    assert telemetry.points(names.VIOLATIONS) == [
        (
            {
                "category": CONTENT,
                "purpose": "advertising",
                "rule": "no-advertising",
                "mode": "trace",
                "via": "argument",
            },
            3,
        )
    ]


def test_checks_counter_counts_by_purpose_and_outcome(telemetry: Telemetry) -> None:
    pg.configure("trust-center", mode="trace")
    for _ in range(4):
        troubleshoot(pg.label("ticket", CONTENT))
    recommend_ads(pg.label("body", CONTENT))
    counted = {(a["purpose"], a["outcome"]): v for a, v in telemetry.points(names.CHECKS)}
    assert counted == {("service.operations", "allowed"): 4, ("advertising", "denied"): 1}


def test_enforce_violations_are_counted_in_enforce_mode(telemetry: Telemetry) -> None:
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PurposeViolation):
        recommend_ads(pg.label("body", CONTENT))
    ((attributes, value),) = telemetry.points(names.VIOLATIONS)
    assert attributes["mode"] == "enforce" and value == 1


def test_violations_by_function_feed_the_top_functions_panel(telemetry: Telemetry) -> None:
    pg.configure("trust-center", mode="trace")
    recommend_ads(pg.label("body", CONTENT))
    recommend_ads(pg.label("body", CONTENT))
    assert telemetry.points(names.VIOLATIONS_BY_FUNCTION) == [
        ({"code.function": f"{__name__}.recommend_ads", "purpose": "advertising"}, 2)
    ]


def test_declassifications_have_their_own_counter(telemetry: Telemetry) -> None:
    pg.configure("trust-center", mode="trace")

    @pg.transform("usage-aggregate")
    def size(body: str) -> int:
        return len(body)

    with pg.purpose("service.operations"):
        size(pg.label("body", CONTENT, tenant="contoso"))
    assert telemetry.points(names.DECLASSIFICATIONS) == [
        (
            {
                "transform": "usage-aggregate",
                "category": "usage_data",
                "purpose": "service.operations",
            },
            1,
        )
    ]
    assert telemetry.points(names.VIOLATIONS) == []


def test_disclosures_have_their_own_counter(telemetry: Telemetry, tmp_path: Path) -> None:
    mailbox = {
        "owner": pg.label("megan@contoso.example", "customer_data", tenant="contoso"),
        "body": pg.label("Quarterly numbers", CONTENT, tenant="contoso"),
    }
    notices: list[object] = []
    with pg.compelled_disclosure(
        case="LE-2026-0042 free text",
        tenant="contoso",
        authority="District Court, Springfield",
        redirect_attempted=True,
        notifier=notices.append,
        audit=tmp_path / "audit.sqlite",
    ) as disclosure:
        disclosure.release(mailbox, fields=["owner"])
    assert len(notices) == 1
    assert telemetry.points(names.DISCLOSURES) == [({"purpose": "disclosure.compelled"}, 1)]


def test_the_hot_path_never_calls_the_metrics_sdk() -> None:
    """Only observable instruments are created; the SDK reads totals when it collects."""
    created: list[str] = []
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)

    class RecordingMeter:
        def __init__(self, meter: Any) -> None:
            self.meter = meter

        def __getattr__(self, name: str) -> Any:
            created.append(name)
            return getattr(self.meter, name)

    class RecordingProvider:
        def get_meter(self, *args: Any, **kwargs: Any) -> Any:
            return RecordingMeter(provider.get_meter(*args, **kwargs))

    otel.instrument(meter_provider=RecordingProvider())  # type: ignore[arg-type]
    try:
        pg.configure("trust-center", mode="trace")
        troubleshoot(pg.label("ticket", CONTENT))
        recommend_ads(pg.label("body", CONTENT))
        assert created and set(created) == {"create_observable_counter"}
        assert [v for _, v in metric_points(reader, names.VIOLATIONS)] == [1]
    finally:
        otel.uninstrument()
        provider.shutdown()


def test_checks_are_counted_only_while_instrumented(telemetry: Telemetry) -> None:
    pg.configure("trust-center", mode="trace")
    assert _runtime.COUNTERS.enabled
    troubleshoot(pg.label("ticket", CONTENT))
    otel.uninstrument()
    assert not _runtime.COUNTERS.enabled
    before = dict(_runtime.COUNTERS.checks)
    troubleshoot(pg.label("ticket", CONTENT))
    assert _runtime.COUNTERS.checks == before


def test_uninstrument_stops_events_counts_and_subscription(telemetry: Telemetry) -> None:
    pg.configure("trust-center", mode="trace")
    records_before = len(_runtime.HANDLERS.records)
    otel.uninstrument()
    assert len(_runtime.HANDLERS.records) == records_before - 1
    assert not otel.instrumented()
    with telemetry.tracer().start_as_current_span("request"):
        recommend_ads(pg.label("body", CONTENT))
    assert telemetry.points(names.VIOLATIONS) == []
    assert telemetry.points(names.CHECKS) == []
    (span,) = telemetry.spans.get_finished_spans()
    assert span.events == ()
    otel.uninstrument()  # twice is harmless


def test_instrument_again_with_the_same_providers_keeps_counting(telemetry: Telemetry) -> None:
    pg.configure("trust-center", mode="trace")
    records = len(_runtime.HANDLERS.records)
    recommend_ads(pg.label("body", CONTENT))
    otel.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    recommend_ads(pg.label("body", CONTENT))
    assert [v for _, v in telemetry.points(names.VIOLATIONS)] == [2]
    assert len(_runtime.HANDLERS.records) == records


def test_instrument_again_after_uninstrument_counts_from_zero(telemetry: Telemetry) -> None:
    """The SDK keeps the first callbacks of an instrument; they follow the new session."""
    pg.configure("trust-center", mode="trace")
    recommend_ads(pg.label("body", CONTENT))
    otel.uninstrument()
    otel.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    recommend_ads(pg.label("body", CONTENT))
    recommend_ads(pg.label("body", CONTENT))
    assert [v for _, v in telemetry.points(names.VIOLATIONS)] == [2]


def test_instrumenting_another_provider_silences_the_first(telemetry: Telemetry) -> None:
    pg.configure("trust-center", mode="trace")
    reader = InMemoryMetricReader()
    other = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    try:
        otel.instrument(meter_provider=other)
        recommend_ads(pg.label("body", CONTENT))
        assert [v for _, v in metric_points(reader, names.VIOLATIONS)] == [1]
        assert telemetry.points(names.VIOLATIONS) == []
    finally:
        otel.uninstrument()
        other.shutdown()


def test_configure_telemetry_switches_instrumentation_with_global_providers() -> None:
    pg.configure("trust-center", telemetry=True)
    try:
        assert otel.instrumented()
        session = otel._STATE.session
        assert session is not None
        assert session.meter_provider is metrics.get_meter_provider()
        assert session.tracer_provider is trace.get_tracer_provider()
        pg.configure("trust-center", mode="trace")  # says nothing about telemetry
        assert otel.instrumented()
        recommend_ads(pg.label("body", CONTENT))  # no SDK installed globally: a no-op, no error
    finally:
        pg.configure("trust-center", telemetry=False)
    assert not otel.instrumented()
    assert not _runtime.COUNTERS.enabled


def test_instrument_rejects_objects_that_are_not_providers() -> None:
    with pytest.raises(TypeError, match="meter_provider"):
        otel.instrument(meter_provider="prometheus")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tracer_provider"):
        otel.instrument(tracer_provider=object())  # type: ignore[arg-type]
    assert not otel.instrumented()


def test_counts_are_exact_across_threads(telemetry: Telemetry) -> None:
    pg.configure("trust-center", mode="trace")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(1_000):
                recommend_ads(pg.label("body", CONTENT))
                troubleshoot(pg.label("ticket", CONTENT))
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    assert [v for _, v in telemetry.points(names.VIOLATIONS)] == [4_000]
    assert sum(v for a, v in telemetry.points(names.VIOLATIONS_BY_FUNCTION)) == 4_000


GLOBAL_SCRIPT = textwrap.dedent(
    """
    import json
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import purposeguard as pg

    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

    pg.configure("trust-center", mode="trace", telemetry=True)

    @pg.purpose("advertising")
    def recommend_ads(text):
        return None

    with trace.get_tracer("app").start_as_current_span("request"):
        recommend_ads(pg.label("body", "customer_data.content.email"))
    events = [e.name for s in spans.get_finished_spans() for e in s.events]
    points = [
        (dict(p.attributes), p.value)
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics if m.name == "purposeguard.violations"
        for p in m.data.data_points
    ]
    print(json.dumps({"events": events, "points": points}))
    """
)


def test_configure_telemetry_uses_the_global_sdk_providers() -> None:
    """In a fresh process (global providers can be set once per process)."""
    done = subprocess.run([sys.executable, "-c", GLOBAL_SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["events"] == ["purposeguard.violation"]
    ((attributes, value),) = result["points"]
    assert value == 1 and attributes["rule"] == "no-advertising"
