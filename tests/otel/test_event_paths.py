"""The violation span event takes the SDK span's fast path only on the SDK
releases it was tried with, and falls back to the public ``span.add_event``
for any other span, release or error; the event is the same either way."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import Span as SdkSpan

import purposeguard as pg
from purposeguard import _otel_attributes as names
from purposeguard import otel

from .conftest import Telemetry

CONTENT = "customer_data.content.email"


@pg.purpose("advertising")
def recommend_ads(text: str) -> None:
    return None


@pytest.fixture
def public_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of events added through the SDK span's public add_event."""
    calls: list[str] = []
    public = SdkSpan.add_event

    def counting(self: Any, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        calls.append(name)
        public(self, name, attributes, timestamp)

    monkeypatch.setattr(SdkSpan, "add_event", counting)
    return calls


@pytest.fixture
def fast_path_restored() -> Iterator[None]:
    saved = otel._FAST_PATH.sdk
    yield
    otel._FAST_PATH.sdk = saved


def _violation_event(telemetry: Telemetry, tenant: str = "contoso") -> dict[str, Any]:
    pg.configure("trust-center", mode="trace")
    with telemetry.tracer().start_as_current_span("request"):
        recommend_ads(pg.label("quarterly numbers", CONTENT, tenant=tenant))
    (span,) = telemetry.spans.get_finished_spans()
    (event,) = [e for e in span.events if e.name == names.EVENT_VIOLATION]
    return dict(event.attributes or {})


EXPECTED = {
    names.CATEGORY: CONTENT,
    names.PURPOSE: "advertising",
    names.RULE: "no-advertising",
    names.MODE: "trace",
    names.VIA: "argument",
    names.TENANT: "contoso",
}


def test_the_installed_sdk_release_is_one_the_fast_path_was_tried_with() -> None:
    """The suite runs on a tried release; bump FAST_PATH_SDK_VERSIONS only after trying a new one."""
    found = otel._sdk_version()
    low, high = otel.FAST_PATH_SDK_VERSIONS
    assert found is not None and low <= found <= high, found
    assert otel._FAST_PATH.sdk is not None


def test_a_tried_release_takes_the_fast_path(telemetry: Telemetry, public_calls: list[str]) -> None:
    attributes = _violation_event(telemetry)
    assert {k: attributes[k] for k in EXPECTED} == EXPECTED
    assert public_calls == [], "the fast path adds the event without the public call"


def test_a_release_not_tried_takes_the_public_call(
    telemetry: Telemetry, public_calls: list[str], fast_path_restored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(otel, "_sdk_version", lambda: (1, 99))
    otel._FAST_PATH.sdk = otel._sdk_internals()
    assert otel._FAST_PATH.sdk is None
    attributes = _violation_event(telemetry)
    assert {k: attributes[k] for k in EXPECTED} == EXPECTED
    assert public_calls == [names.EVENT_VIOLATION]


def test_a_fast_path_that_raises_falls_back_and_stays_off(
    telemetry: Telemetry,
    public_calls: list[str],
    fast_path_restored: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As an SDK release whose Event took other arguments would."""

    def changed(**kwargs: Any) -> Any:
        raise TypeError("Event() got an unexpected keyword argument 'attributes'")

    sdk = otel._FAST_PATH.sdk
    assert sdk is not None
    monkeypatch.setattr(sdk, "event", changed)
    with caplog.at_level("WARNING", logger="purposeguard"):
        attributes = _violation_event(telemetry)
    assert {k: attributes[k] for k in EXPECTED} == EXPECTED
    assert public_calls == [names.EVENT_VIOLATION]
    assert otel._FAST_PATH.sdk is None, "one failure turns the fast path off for the process"
    assert not [r for r in caplog.records if r.levelname in {"WARNING", "ERROR"}], (
        "nothing was lost: no failure logged"
    )


def test_a_span_without_the_sdk_internals_gets_the_public_call(fast_path_restored: None) -> None:
    """A vendor's recording span (no ``_add_event``, no ``_limits``) receives the event through the API."""

    class VendorSpan(trace.NonRecordingSpan):
        def __init__(self) -> None:
            super().__init__(trace.INVALID_SPAN_CONTEXT)
            self.events: list[tuple[str, dict[str, Any]]] = []

        def is_recording(self) -> bool:
            return True

        def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
            self.events.append((name, dict(attributes or {})))

    span = VendorSpan()
    otel.instrument()
    try:
        pg.configure("trust-center", mode="trace")
        with trace.use_span(span, end_on_exit=False):
            recommend_ads(pg.label("quarterly numbers", CONTENT, tenant="contoso"))
    finally:
        otel.uninstrument()
    (event,) = span.events
    assert event[0] == names.EVENT_VIOLATION
    assert {k: event[1][k] for k in EXPECTED} == EXPECTED
    assert otel._FAST_PATH.sdk is not None, "another span class is no failure of the fast path"


def test_a_subclass_of_the_sdk_span_gets_the_public_call(
    telemetry: Telemetry, public_calls: list[str]
) -> None:
    """A subclass may override add_event (to enrich or filter events): the fast path would skip that."""

    class Enriching(SdkSpan):
        pass

    pg.configure("trust-center", mode="trace")
    with telemetry.tracer().start_as_current_span("request") as span:
        span.__class__ = Enriching
        recommend_ads(pg.label("quarterly numbers", CONTENT, tenant="contoso"))
    assert public_calls == [names.EVENT_VIOLATION]


def test_many_tenants_share_one_cached_entry_and_each_event_names_its_own(
    telemetry: Telemetry, public_calls: list[str]
) -> None:
    """The cache keys on what repeats (rule, function, ...): a tenant takes no entry, evicts none."""
    pg.configure("trust-center", mode="trace")
    otel._FROZEN.clear()
    tenants = [f"tenant-{n}" for n in range(300)]
    with telemetry.tracer().start_as_current_span("request"):
        for tenant in tenants:
            recommend_ads(pg.label("quarterly numbers", CONTENT, tenant=tenant))
    (span,) = telemetry.spans.get_finished_spans()
    events = [dict(e.attributes or {}) for e in span.events if e.name == names.EVENT_VIOLATION]
    assert [e[names.TENANT] for e in events] == tenants[-len(events) :]
    assert all(
        {k: e[k] for k in EXPECTED if k != names.TENANT}
        == {k: v for k, v in EXPECTED.items() if k != names.TENANT}
        for e in events
    )
    assert len(otel._FROZEN) == 1
    assert public_calls == []


def test_a_full_cache_evicts_its_oldest_entry_only(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg.configure("trust-center", mode="trace")
    otel._FROZEN.clear()
    monkeypatch.setattr(otel, "_FROZEN_LIMIT", 3)
    functions = []
    for n in range(5):

        def ads(text: str) -> None:
            return None

        ads.__qualname__ = f"ads_{n}"
        functions.append(pg.purpose("advertising")(ads))
    with telemetry.tracer().start_as_current_span("request"):
        for function in functions:
            function(pg.label("quarterly numbers", CONTENT))
    kept = [key[2][5] for key in otel._FROZEN]
    assert len(kept) == 3 and [name.rsplit("ads_", 1)[1] for name in kept] == ["2", "3", "4"]


def test_a_tenant_longer_than_the_span_limit_is_cut_by_the_sdk(
    telemetry: Telemetry, public_calls: list[str]
) -> None:
    """What the SDK would truncate (and warn about) takes the SDK's public call."""
    pg.configure("trust-center", mode="trace")
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider

    provider = TracerProvider(span_limits=SpanLimits(max_attribute_length=8))
    with provider.get_tracer("t").start_as_current_span("request") as span:
        recommend_ads(pg.label("quarterly numbers", CONTENT, tenant="a-tenant-with-a-long-name"))
    assert public_calls == [names.EVENT_VIOLATION]
    (event,) = [e for e in span.events if e.name == names.EVENT_VIOLATION]  # type: ignore[attr-defined]
    assert (event.attributes or {})[names.TENANT] == "a-tenant"


def test_events_without_a_tenant_share_one_validated_attributes_object(
    telemetry: Telemetry, public_calls: list[str]
) -> None:
    pg.configure("trust-center", mode="trace")
    with telemetry.tracer().start_as_current_span("request"):
        for _ in range(3):
            recommend_ads(pg.label("quarterly numbers", CONTENT))
        recommend_ads(pg.label("quarterly numbers", CONTENT, tenant="contoso"))
    (span,) = telemetry.spans.get_finished_spans()
    events = [e for e in span.events if e.name == names.EVENT_VIOLATION]
    assert len({id(e.attributes) for e in events[:3]}) == 1
    assert names.TENANT not in (events[0].attributes or {})
    assert (events[3].attributes or {})[names.TENANT] == "contoso"
    assert events[3].attributes is not events[0].attributes
    assert public_calls == []
