"""Violations on traces: a span event on the current span, never a new span."""

from __future__ import annotations

import pytest
from opentelemetry.trace import StatusCode

import purposeguard as pg
from purposeguard import _otel_attributes as names

from .conftest import Telemetry

CONTENT = "customer_data.content.email"


@pg.purpose("advertising")
def recommend_ads(text: str) -> str:
    return "ad"


@pg.purpose("service.operations")
def troubleshoot(ticket: str) -> str:
    return "ok"


def _events(telemetry: Telemetry, name: str = names.EVENT_VIOLATION) -> list[dict[str, object]]:
    return [
        dict(e.attributes or {})
        for s in telemetry.spans.get_finished_spans()
        for e in s.events
        if e.name == name
    ]


def test_trace_mode_violation_is_an_event_on_the_current_span(telemetry: Telemetry) -> None:
    pg.configure("trust-center", mode="trace")
    with telemetry.tracer().start_as_current_span("request"):
        recommend_ads(pg.label("Quarterly numbers", CONTENT, tenant="contoso"))
    (span,) = telemetry.spans.get_finished_spans()
    assert [e.name for e in span.events] == [names.EVENT_VIOLATION]
    assert dict(span.events[0].attributes or {}) == {
        "purposeguard.category": CONTENT,
        "purposeguard.purpose": "advertising",
        "purposeguard.rule": "no-advertising",
        "purposeguard.mode": "trace",
        "purposeguard.via": "argument",
        "purposeguard.tenant": "contoso",
        "code.function": f"{__name__}.recommend_ads",
        "purposeguard.count": 1,
    }


def test_trace_mode_leaves_the_span_status_untouched(telemetry: Telemetry) -> None:
    pg.configure("trust-center", mode="trace")
    with telemetry.tracer().start_as_current_span("request"):
        recommend_ads(pg.label("Quarterly numbers", CONTENT))
    (span,) = telemetry.spans.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET


def test_enforce_mode_records_the_exception_and_sets_error(telemetry: Telemetry) -> None:
    pg.configure("trust-center", mode="enforce")
    # The host catches the violation inside its span, so only purposeguard
    # can have recorded the exception and set the status.
    with telemetry.tracer().start_as_current_span(
        "request", record_exception=False, set_status_on_exception=False
    ):
        with pytest.raises(pg.PurposeViolation):
            recommend_ads(pg.label("Quarterly numbers", CONTENT))
    (span,) = telemetry.spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert "no-advertising" in (span.status.description or "")
    assert [e.name for e in span.events] == [names.EVENT_VIOLATION, "exception"]
    exception = dict(span.events[1].attributes or {})
    assert exception["exception.type"].endswith("PurposeViolation")  # type: ignore[union-attr]
    assert exception["purposeguard.mode"] == "enforce"
    assert exception["purposeguard.rule"] == "no-advertising"


def test_no_span_is_created_per_guarded_call(telemetry: Telemetry) -> None:
    pg.configure("trust-center", mode="trace")
    with telemetry.tracer().start_as_current_span("request"):
        for _ in range(5):
            troubleshoot(pg.label("ticket", CONTENT))
            troubleshoot("plain")
            recommend_ads(pg.label("body", CONTENT))
    assert [s.name for s in telemetry.spans.get_finished_spans()] == ["request"]
    assert len(_events(telemetry)) == 5


def test_without_a_current_span_nothing_is_traced_and_nothing_breaks(telemetry: Telemetry) -> None:
    pg.configure("trust-center", mode="trace")
    assert recommend_ads(pg.label("body", CONTENT)) == "ad"
    assert telemetry.spans.get_finished_spans() == ()
    assert [v for _, v in telemetry.points(names.VIOLATIONS)] == [1]


def test_a_default_deny_names_the_default_rule(telemetry: Telemetry) -> None:
    policy = pg.Policy.from_toml(
        '[policy]\nname = "bare"\ndefault = "deny"\nmode = "trace"\n'
        '[[rules]]\nid = "ops"\ncategories = ["customer_data"]\npurposes = ["service.operations"]\neffect = "allow"\n'
    )
    pg.configure(policy)
    with telemetry.tracer().start_as_current_span("request"):
        recommend_ads(pg.label("body", "payment_data"))
    (event,) = _events(telemetry)
    assert event["purposeguard.rule"] == names.DEFAULT_RULE
    assert event["purposeguard.category"] == "payment_data"


def test_every_denied_category_is_its_own_event(telemetry: Telemetry) -> None:
    pg.configure("trust-center", mode="trace")
    with telemetry.tracer().start_as_current_span("request"):
        recommend_ads(pg.label("body", CONTENT, "payment_data"))
    assert sorted(str(e["purposeguard.category"]) for e in _events(telemetry)) == [CONTENT, "payment_data"]


def test_return_violations_name_the_return_path(telemetry: Telemetry) -> None:
    pg.configure("trust-center", mode="trace")
    body = pg.label("body", CONTENT)  # labelling inside the purpose would be a read (via="source")

    @pg.purpose("advertising")
    def leak() -> str:
        return body

    with telemetry.tracer().start_as_current_span("request"):
        leak()
    (event,) = _events(telemetry)
    assert event["purposeguard.via"] == "return"
    assert str(event["code.function"]).endswith("leak")


def test_repeated_violations_give_equal_events_and_respect_span_limits(telemetry: Telemetry) -> None:
    """Event attributes are validated once and reused; the span's own limits still apply."""
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    pg.configure("trust-center", mode="trace")
    with telemetry.tracer().start_as_current_span("request"):
        for tenant in ("contoso", "contoso", "fabrikam"):
            recommend_ads(pg.label("Quarterly numbers", CONTENT, tenant=tenant))
    (span,) = telemetry.spans.get_finished_spans()
    events = [dict(e.attributes or {}) for e in span.events]
    assert len(events) == 3 and events[0] == events[1]
    assert [e["purposeguard.tenant"] for e in events] == ["contoso", "contoso", "fabrikam"]

    exporter = InMemorySpanExporter()
    small = TracerProvider(span_limits=SpanLimits(max_event_attributes=2, max_attribute_length=4))
    small.add_span_processor(SimpleSpanProcessor(exporter))
    with small.get_tracer("t").start_as_current_span("request"):
        recommend_ads(pg.label("Quarterly numbers", CONTENT, tenant="contoso"))
    (limited,) = exporter.get_finished_spans()
    attributes = dict(limited.events[0].attributes or {})
    assert len(attributes) == 2 and all(len(str(v)) <= 4 for v in attributes.values())
    small.shutdown()
