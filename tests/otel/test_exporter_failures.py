"""Exporters that raise or hang never break the host: guarded code runs on,
and a failure is logged once, not once per guarded call."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import purposeguard as pg
from purposeguard import _otel_attributes as names
from purposeguard import otel

from .conftest import metric_points

CONTENT = "customer_data.content.email"
CALLS = 300
HANG_LIMIT = 10.0  # seconds a "hanging" exporter waits at most, so no test can hang


@pg.purpose("advertising")
def recommend_ads(text: str) -> str:
    return "ad"


@pg.purpose("service.operations")
def troubleshoot(ticket: str) -> str:
    return "ok"


class RaisingSpanExporter(SpanExporter):
    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        raise ConnectionError("collector unreachable")

    def shutdown(self) -> None:
        pass


class RaisingMetricExporter(MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.calls += 1
        raise ConnectionError("collector unreachable")

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


class Hang:
    """Blocks the exporting thread until released (or HANG_LIMIT passes)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> None:
        self.entered.set()
        self.release.wait(HANG_LIMIT)


class HangingSpanExporter(SpanExporter):
    def __init__(self) -> None:
        self.hang = Hang()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.hang()
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.hang.release.set()


class HangingMetricExporter(RaisingMetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.hang = Hang()

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.hang()
        return MetricExportResult.FAILURE


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def warnings_logged() -> Iterator[_Collect]:
    """WARNING and above from every logger, the SDK's included."""
    handler = _Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def _traffic(tracer: Any, spans: int) -> int:
    """Guarded calls, violating and allowed, inside ``spans`` request spans."""
    done = 0
    per_span = CALLS // spans
    for _ in range(spans):
        with tracer.start_as_current_span("request"):
            for _ in range(per_span):
                assert recommend_ads(pg.label("body", CONTENT)) == "ad"
                assert troubleshoot(pg.label("ticket", CONTENT)) == "ok"
                done += 1
    return done


def test_raising_exporters_are_logged_per_export_not_per_call(warnings_logged: _Collect) -> None:
    spans = RaisingSpanExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    # Exports only when flushed: one export attempt for all the calls.
    processor = BatchSpanProcessor(spans, schedule_delay_millis=600_000, max_export_batch_size=512)
    tracer_provider.add_span_processor(processor)
    metrics = RaisingMetricExporter()
    reader = PeriodicExportingMetricReader(metrics, export_interval_millis=math.inf)
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        pg.configure("trust-center", mode="trace")
        assert _traffic(tracer_provider.get_tracer("tests"), spans=CALLS) == CALLS
        tracer_provider.force_flush(10_000)
        meter_provider.force_flush(10_000)
    finally:
        otel.uninstrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()
    assert spans.calls == 1 and metrics.calls == 1
    failures = [r for r in warnings_logged.records if r.exc_info and r.exc_info[0] is ConnectionError]
    assert len(failures) == 2, [r.getMessage() for r in failures]
    assert not [r for r in warnings_logged.records if r.name == "purposeguard"]


def test_hanging_exporters_do_not_stop_guarded_code(warnings_logged: _Collect) -> None:
    spans = HangingSpanExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(spans, schedule_delay_millis=10, max_export_batch_size=1)
    )
    metrics = HangingMetricExporter()
    reader = PeriodicExportingMetricReader(
        metrics, export_interval_millis=10, export_timeout_millis=HANG_LIMIT * 1000
    )
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    tracer = tracer_provider.get_tracer("tests")
    try:
        pg.configure("trust-center", mode="trace")
        with tracer.start_as_current_span("warm-up"):
            recommend_ads(pg.label("body", CONTENT))  # something for the metric reader to export
        assert spans.hang.entered.wait(5) and metrics.hang.entered.wait(5)
        # Both exporting threads are stuck now; the guarded code is not.
        with pg.testing.capture() as violations:
            assert _traffic(tracer, spans=3) == CALLS
        assert not spans.hang.release.is_set() and not metrics.hang.release.is_set()
        assert len(violations) == CALLS
        # Counting went on while the reader was stuck.
        assert sum(otel._STATE.session.violations.values()) == CALLS + 1  # type: ignore[union-attr]
    finally:
        otel.uninstrument()
        spans.hang.release.set()
        metrics.hang.release.set()
        tracer_provider.shutdown()
        meter_provider.shutdown(timeout_millis=HANG_LIMIT * 1000)
    assert not [r for r in warnings_logged.records if r.name == "purposeguard"]
    assert len(warnings_logged.records) < 10  # nothing per call


class BrokenSpan(NonRecordingSpan):
    """A span from a broken tracing setup: recording, but every event raises."""

    def is_recording(self) -> bool:
        return True

    def add_event(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("span processor crashed")


def test_a_broken_tracing_setup_is_logged_once_and_counting_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    otel.instrument(meter_provider=meter_provider)
    try:
        pg.configure("trust-center", mode="trace")
        span = BrokenSpan(SpanContext(trace_id=1, span_id=1, is_remote=False, trace_flags=TraceFlags(1)))
        with caplog.at_level(logging.WARNING, logger="purposeguard"):
            with trace.use_span(span):
                for _ in range(100):
                    assert recommend_ads(pg.label("body", CONTENT)) == "ad"
        ours = [r for r in caplog.records if r.name == "purposeguard" and r.levelno >= logging.ERROR]
        assert len(ours) == 1
        assert "span signal" in ours[0].getMessage()
        assert [v for _, v in metric_points(reader, names.VIOLATIONS)] == [100]
    finally:
        otel.uninstrument()
        meter_provider.shutdown()


def test_a_raising_logging_filter_never_reaches_the_guarded_code() -> None:
    class Explode(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            raise RuntimeError("log pipeline down")

    log = logging.getLogger("purposeguard")
    level = log.level
    explode = Explode()
    log.addFilter(explode)
    log.setLevel(logging.INFO)
    otel.instrument()
    try:
        pg.configure("trust-center", mode="trace")
        with pg.testing.capture() as violations:
            for _ in range(10):
                assert recommend_ads(pg.label("body", CONTENT)) == "ad"
        assert len(violations) == 10
    finally:
        otel.uninstrument()
        log.removeFilter(explode)
        log.setLevel(level)
