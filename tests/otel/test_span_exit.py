"""Spans are an exit: labelled content set on a span of the SDK is redacted in
enforce mode and recorded in trace mode (purposeguard.integrations.spans)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import Span
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags
from purposeguard.integrations import spans

import purposeguard as pg
from purposeguard import _otel_attributes as names
from purposeguard import otel
from purposeguard._labels import MAX_DEPTH
from purposeguard._runtime import INTERNAL_ERROR_RULE

from .conftest import Telemetry

SECRET = "SECRET-5d81 quarterly numbers, call me"
CONTENT = "customer_data.content.email"
LOGS = "service.operations.logs"
RULE = "no-content-in-logs"
FUNCTION = "opentelemetry.trace.tests.otel"
REDACTED = f"[redacted: {CONTENT}]"
# What a refused exception's message becomes.
REDACTED_EXCEPTION = f"it carried {CONTENT}]"
METHODS = (
    "__init__",
    "set_attribute",
    "set_attributes",
    "add_event",
    "add_link",
    "update_name",
    "set_status",
    "record_exception",
)


@pytest.fixture
def guarded(telemetry: Telemetry) -> Iterator[Telemetry]:
    """The span exit on, over in-memory providers with purposeguard's telemetry on."""
    spans.instrument()
    try:
        yield telemetry
    finally:
        spans.uninstrument()


def _body() -> str:
    return pg.label(SECRET, CONTENT)


def _exported(telemetry: Telemetry) -> str:
    """Everything the exporter received, as text."""
    return "\n".join(span.to_json(indent=None) for span in telemetry.spans.get_finished_spans())


def _link_context() -> SpanContext:
    return SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))


class _Holder:
    """An object holding content deeper than the walk looks."""

    def __init__(self, depth: int) -> None:
        nested: Any = "plain"
        for _ in range(depth):
            nested = [nested]
        self.payload = nested


# Each entry point, given the tracer and the value to put on a span (the
# name of the span that receives it is "handle", unless the value is the name).
Entry = Callable[[Any, Any], None]


def _within(tracer: Any, act: Callable[[Any], None]) -> None:
    with tracer.start_as_current_span("handle") as span:
        act(span)


def _leaving(tracer: Any, value: Any) -> None:
    try:
        with tracer.start_as_current_span("handle"):
            raise ValueError(value)
    except ValueError:
        pass


def _leaving_started(tracer: Any, value: Any) -> None:
    span = tracer.start_span("handle")
    try:
        with span:
            raise ValueError(value)
    except ValueError:
        pass


ENTRIES: dict[str, Entry] = {
    "set_attribute": lambda tracer, v: _within(tracer, lambda s: s.set_attribute("mail.body", v)),
    "set_attributes": lambda tracer, v: _within(
        tracer, lambda s: s.set_attributes({"mail.body": v, "mail.size": 3})
    ),
    "add_event attributes": lambda tracer, v: _within(
        tracer, lambda s: s.add_event("parsed", {"preview": v})
    ),
    "add_event name": lambda tracer, v: _within(tracer, lambda s: s.add_event(v)),
    "add_link attributes": lambda tracer, v: _within(
        tracer, lambda s: s.add_link(_link_context(), {"note": v})
    ),
    "record_exception": lambda tracer, v: _within(tracer, lambda s: s.record_exception(ValueError(v))),
    "record_exception attributes": lambda tracer, v: _within(
        tracer, lambda s: s.record_exception(KeyError("id"), {"mail.body": v})
    ),
    "update_name": lambda tracer, v: _within(tracer, lambda s: s.update_name(v)),
    "set_status(Status)": lambda tracer, v: _within(
        tracer, lambda s: s.set_status(Status(StatusCode.ERROR, v))
    ),
    "set_status(code, description)": lambda tracer, v: _within(
        tracer, lambda s: s.set_status(StatusCode.ERROR, v)
    ),
    "start_span attributes": lambda tracer, v: tracer.start_span("handle", attributes={"mail.body": v}).end(),
    "start_as_current_span attributes": lambda tracer, v: _within_attributes(tracer, v),
    "start_span name": lambda tracer, v: tracer.start_span(v).end(),
    "start_as_current_span name": lambda tracer, v: _named(tracer, v),
    "an exception leaving start_as_current_span": _leaving,
    "an exception leaving a started span": _leaving_started,
}


def _within_attributes(tracer: Any, value: Any) -> None:
    with tracer.start_as_current_span("handle", attributes={"mail.body": value}):
        pass


def _named(tracer: Any, value: Any) -> None:
    with tracer.start_as_current_span(value):
        pass


# -- a value's own labels -------------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRIES)
def test_enforce_mode_redacts_labelled_content_outside_a_zone(guarded: Telemetry, entry: str) -> None:
    pg.configure("trust-center", mode="enforce")
    with pg.testing.capture() as violations:
        ENTRIES[entry](guarded.tracer(), _body())
    exported = _exported(guarded)
    assert SECRET not in exported
    assert REDACTED in exported or REDACTED_EXCEPTION in exported
    assert violations, "the refusal is recorded"
    assert {(v.category, v.purpose, v.rule, v.via, v.function, v.mode) for v in violations} == {
        (CONTENT, LOGS, RULE, "egress", FUNCTION, "enforce")
    }


@pytest.mark.parametrize("entry", ENTRIES)
def test_enforce_mode_redacts_labelled_content_inside_a_zone(guarded: Telemetry, entry: str) -> None:
    pg.configure("trust-center", mode="enforce")
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        ENTRIES[entry](guarded.tracer(), _body())
    assert SECRET not in _exported(guarded)
    assert (LOGS, RULE, "egress", "enforce") in {(v.purpose, v.rule, v.via, v.mode) for v in violations}
    # The pack traces zone flows: the span's other text (its name) is recorded, not refused.
    assert all(v.mode == "trace" and v.via == "context" for v in violations if v.mode != "enforce")


@pytest.mark.parametrize("entry", ENTRIES)
def test_trace_mode_passes_labelled_content_and_records_it(guarded: Telemetry, entry: str) -> None:
    pg.configure("trust-center", mode="trace")
    with pg.testing.capture() as violations:
        ENTRIES[entry](guarded.tracer(), _body())
    exported = _exported(guarded)
    assert SECRET in exported
    assert REDACTED not in exported and REDACTED_EXCEPTION not in exported
    assert {(v.category, v.purpose, v.rule, v.via, v.function, v.mode) for v in violations} == {
        (CONTENT, LOGS, RULE, "egress", FUNCTION, "trace")
    }


@pytest.mark.parametrize("entry", ENTRIES)
def test_trace_mode_inside_a_zone_passes_and_records(guarded: Telemetry, entry: str) -> None:
    pg.configure("trust-center", mode="trace", context_mode="trace")
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        ENTRIES[entry](guarded.tracer(), _body())
    assert SECRET in _exported(guarded)
    assert violations and all(v.mode == "trace" and v.purpose == LOGS for v in violations)


def test_only_the_labelled_attributes_are_redacted(guarded: Telemetry) -> None:
    pg.configure("trust-center", mode="enforce")
    with guarded.tracer().start_as_current_span("handle") as span:
        span.set_attributes({"mail.body": _body(), "mail.size": 3, "mail.folder": "inbox"})
        span.set_attribute("mail.subject", _body())
        span.set_attribute("http.status_code", 200)
    (finished,) = guarded.spans.get_finished_spans()
    assert dict(finished.attributes or {}) == {
        "mail.body": REDACTED,
        "mail.size": 3,
        "mail.folder": "inbox",
        "mail.subject": REDACTED,
        "http.status_code": 200,
    }
    assert finished.name == "handle"


def test_a_refused_exception_keeps_only_its_type(guarded: Telemetry) -> None:
    pg.configure("trust-center", mode="enforce")
    with guarded.tracer().start_as_current_span("handle") as span:
        span.record_exception(ValueError("bad mail:", _body()), {"attempt": 2})
    (finished,) = guarded.spans.get_finished_spans()
    (event,) = [e for e in finished.events if dict(e.attributes or {}).get("exception.type") == "ValueError"]
    attributes = dict(event.attributes or {})
    assert attributes["exception.message"] == f"[purposeguard redacted a ValueError: it carried {CONTENT}]"
    assert attributes["attempt"] == 2
    assert "exception.stacktrace" not in attributes


def test_a_status_quoting_a_refused_exception_is_redacted_without_a_second_record(guarded: Telemetry) -> None:
    pg.configure("trust-center", mode="enforce")
    with pg.testing.capture() as violations:
        _leaving(guarded.tracer(), _body())
    (finished,) = [s for s in guarded.spans.get_finished_spans() if s.name == "handle"]
    assert finished.status.status_code is StatusCode.ERROR
    assert finished.status.description == REDACTED
    assert len(violations) == 1


def test_a_labelled_number_answers_for_its_own_labels(guarded: Telemetry) -> None:
    pg.configure("trust-center", mode="enforce")
    with guarded.tracer().start_as_current_span("handle") as span:
        span.set_attribute("mail.size", pg.label(4096, CONTENT))
    (finished,) = guarded.spans.get_finished_spans()
    assert dict(finished.attributes or {}) == {"mail.size": REDACTED}


@pytest.mark.parametrize("mode", ["enforce", "trace"])
def test_content_beyond_the_walk_fails_closed_in_enforce_mode(guarded: Telemetry, mode: str) -> None:
    pg.configure("trust-center", mode=mode)
    error = ValueError("deep")
    error.holder = _Holder(MAX_DEPTH + 4)  # type: ignore[attr-defined]
    with pg.testing.capture() as violations:
        with guarded.tracer().start_as_current_span("handle") as span:
            span.record_exception(error)
    (finished,) = guarded.spans.get_finished_spans()
    (event,) = [e for e in finished.events if dict(e.attributes or {}).get("exception.type") == "ValueError"]
    message = dict(event.attributes or {})["exception.message"]
    assert (message == "deep") is (mode == "trace")
    assert [v.rule for v in violations] == [INTERNAL_ERROR_RULE]


def test_an_ended_span_records_nothing(guarded: Telemetry) -> None:
    pg.configure("trust-center", mode="enforce")
    span = guarded.tracer().start_span("handle")
    span.end()
    with pg.testing.capture() as violations:
        span.set_attribute("mail.body", _body())
        span.add_event("parsed", {"preview": _body()})
    assert violations == []


# -- the zone ---------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_refusing_zone_redacts_text_rebuilt_from_content(guarded: Telemetry, entry: str) -> None:
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        rebuilt = f"about: {_body()}"  # an f-string: the label is gone, the zone saw it
        assert pg.labels_of(rebuilt) == frozenset()
        ENTRIES[entry](guarded.tracer(), rebuilt)
    assert SECRET not in _exported(guarded)
    assert {(v.category, v.purpose, v.rule, v.via, v.function, v.mode) for v in violations} == {
        (CONTENT, LOGS, RULE, "context", FUNCTION, "enforce")
    }


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_tracing_zone_passes_rebuilt_text_and_records_the_flow(guarded: Telemetry, entry: str) -> None:
    pg.configure("trust-center", mode="enforce", context_mode="trace")
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        ENTRIES[entry](guarded.tracer(), f"about: {_body()}")
    assert SECRET in _exported(guarded)
    assert {(v.category, v.purpose, v.via, v.function, v.mode) for v in violations} == {
        (CONTENT, LOGS, "context", FUNCTION, "trace")
    }


def test_text_outside_any_zone_carries_no_label_and_passes(guarded: Telemetry) -> None:
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    rebuilt = f"about: {_body()}"
    with pg.testing.capture() as violations:
        ENTRIES["set_attribute"](guarded.tracer(), rebuilt)
    assert SECRET in _exported(guarded)
    assert violations == []


@pytest.mark.parametrize("context_mode", ["enforce", "trace"])
def test_a_zone_records_one_flow_per_span_not_one_per_value(guarded: Telemetry, context_mode: str) -> None:
    pg.configure("trust-center", mode="enforce", context_mode=context_mode)
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        text = f"about: {_body()}"
        with guarded.tracer().start_as_current_span("handle") as span:
            for index in range(5):
                span.set_attribute(f"mail.part.{index}", text)
            span.add_event("parsed", {"preview": text})
            span.record_exception(ValueError(text))
    (finished,) = guarded.spans.get_finished_spans()
    kept = {key: value for key, value in (finished.attributes or {}).items() if key.startswith("mail.part.")}
    assert set(kept.values()) == ({REDACTED} if context_mode == "enforce" else {text})
    assert len(kept) == 5
    assert len(violations) == 1


def test_numbers_are_not_held_to_the_zone(guarded: Telemetry) -> None:
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        with guarded.tracer().start_as_current_span("handle") as span:
            _body()  # the zone now refuses text for the logs purpose
            numbers = {"mail.size": len(SECRET), "mail.unread": True, "mail.score": 0.5, "mail.parts": (1, 2)}
            span.set_attributes(numbers)
    (finished,) = guarded.spans.get_finished_spans()
    assert dict(finished.attributes or {}) == numbers
    assert violations == []


def test_a_zone_without_content_lets_text_pass(guarded: Telemetry) -> None:
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        pg.label("account 42", "customer_data")  # allowed in logs
        with guarded.tracer().start_as_current_span("handle") as span:
            span.set_attribute("mail.folder", "inbox")
    (finished,) = guarded.spans.get_finished_spans()
    assert dict(finished.attributes or {}) == {"mail.folder": "inbox"}
    assert violations == []


def test_nothing_protected_reaches_the_exporter_in_enforce_mode(guarded: Telemetry) -> None:
    """Every entry point at once, labelled and rebuilt, in and out of a zone."""
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    tracer = guarded.tracer()
    for entry in ENTRIES.values():
        entry(tracer, _body())
    with pg.zone(tenant="contoso"):
        for entry in ENTRIES.values():
            entry(tracer, _body())
            entry(tracer, f"about: {_body()}")
            entry(tracer, [f"about: {_body()}", "plain"])
    assert len(guarded.spans.get_finished_spans()) >= 3 * len(ENTRIES)
    assert SECRET not in _exported(guarded)


# -- purposeguard's own telemetry and re-entry -----------------------------------------------------


@pg.purpose("advertising")
def recommend_ads(text: str) -> str:
    return "ad"


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast path", "span.add_event"])
def test_purposeguards_own_violation_telemetry_is_not_redacted(
    guarded: Telemetry, monkeypatch: pytest.MonkeyPatch, fast_path: bool
) -> None:
    if not fast_path:
        monkeypatch.setattr(otel._FAST_PATH, "sdk", None)
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    with pg.zone(tenant="contoso"), guarded.tracer().start_as_current_span("handle"):
        body = _body()  # the zone now refuses text for the logs purpose
        with pytest.raises(pg.PurposeViolation) as raised:
            recommend_ads(body)
    (finished,) = guarded.spans.get_finished_spans()
    (event,) = [e for e in finished.events if e.name == names.EVENT_VIOLATION]
    assert dict(event.attributes or {})[names.PURPOSE] == "advertising"
    assert dict(event.attributes or {})[names.CATEGORY] == CONTENT
    (exception,) = [e for e in finished.events if e.name == "exception"]
    assert dict(exception.attributes or {})["exception.message"] == str(raised.value)
    assert finished.status.description == str(raised.value)
    assert REDACTED not in _exported(guarded)


def test_a_violation_callback_that_uses_a_span_does_not_reenter_the_hook(guarded: Telemetry) -> None:
    pg.configure("trust-center", mode="enforce")
    calls: list[str] = []

    def on_violation(violation: pg.Violation) -> None:
        calls.append(violation.via)
        # Labelled: judged again, this would record a violation, call back, and so on.
        trace.get_current_span().set_attribute("callback", pg.label("callback saw it", CONTENT))

    unsubscribe = pg.on_violation(on_violation)
    try:
        with guarded.tracer().start_as_current_span("handle") as span:
            span.set_attribute("mail.body", _body())
    finally:
        unsubscribe()
    assert calls == ["egress"]
    (finished,) = guarded.spans.get_finished_spans()
    assert dict(finished.attributes or {})["mail.body"] == REDACTED


# -- instrument / uninstrument ----------------------------------------------------------------


def test_uninstrument_restores_the_sdk_span_class(telemetry: Telemetry) -> None:
    before = {name: vars(Span).get(name) for name in METHODS}
    spans.instrument()
    patched = {name: vars(Span).get(name) for name in METHODS}
    spans.instrument()  # again: the same patch, not a second layer
    assert {name: vars(Span).get(name) for name in METHODS} == patched
    assert all(patched[name] is not before[name] for name in METHODS)
    assert spans.is_instrumented()
    spans.uninstrument()
    assert {name: vars(Span).get(name) for name in METHODS} == before
    assert not spans.is_instrumented()
    pg.configure("trust-center", mode="enforce")
    with pg.testing.capture() as violations:
        ENTRIES["set_attribute"](telemetry.tracer(), _body())
    assert SECRET in _exported(telemetry)
    assert violations == []


def test_instrument_takes_another_purpose(guarded: Telemetry) -> None:
    pg.configure("trust-center", mode="enforce")
    spans.instrument(purpose="service.operations")
    with pg.testing.capture() as violations:
        ENTRIES["set_attribute"](guarded.tracer(), _body())
    assert violations == []
    assert SECRET in _exported(guarded)


def test_instrument_refuses_an_unknown_purpose() -> None:
    with pytest.raises(pg.UnknownKeyError):
        spans.instrument(purpose="no.such.purpose")
    assert not spans.is_instrumented()


def test_a_missing_sdk_names_the_extra(tmp_path: Path) -> None:
    # A namespace portion ahead of the real one: opentelemetry.sdk fails to import.
    stub = tmp_path / "stubs" / "opentelemetry" / "sdk"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('no SDK here')\n", encoding="utf-8")
    program = (
        f"import sys; sys.path.insert(0, {str(tmp_path / 'stubs')!r})\n"
        "from purposeguard.integrations import spans\n"
        "spans.instrument()\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:") and "pip install 'purposeguard[otel]'" in last, done.stderr[-1500:]


def test_a_redacted_value_does_not_mark_the_span_failed(guarded: Telemetry) -> None:
    """A value the exit replaced failed nothing: the request span keeps its
    status (the violation's event and exception are still recorded on it)."""
    pg.configure("trust-center", mode="enforce")
    with guarded.tracer().start_as_current_span("request") as span:
        span.set_attribute("note", _body())
    (finished,) = guarded.spans.get_finished_spans()
    assert dict(finished.attributes or {})["note"] == REDACTED
    assert finished.status.status_code is StatusCode.UNSET
    assert [e.name for e in finished.events] == [names.EVENT_VIOLATION, "exception"]
