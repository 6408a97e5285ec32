"""Trusted tracers: spans of library instrumentations named in
``spans.instrument(trusted_tracers=...)`` skip the zone check, and nothing
else (purposeguard.integrations.spans)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from purposeguard.integrations import spans

import purposeguard as pg

from .conftest import Telemetry
from .test_span_exit import CONTENT, ENTRIES, LOGS, REDACTED, RULE, SECRET, _body, _exported

CONTRIB = "opentelemetry.instrumentation.*"
ASGI = "opentelemetry.instrumentation.asgi"
HTTPX = "opentelemetry.instrumentation.httpx"
# What an instrumentation puts on its spans: fixed semantic-convention values.
ROUTE: dict[str, str | int] = {
    "http.route": "/notes/{note_id}",
    "http.request.method": "GET",
    "url.scheme": "https",
}
SENT: dict[str, str | int] = {
    "http.response.status_code": 200,
    "server.address": "notes.internal",
    "network.protocol.version": "1.1",
}


@pytest.fixture
def trusting(telemetry: Telemetry) -> Iterator[Telemetry]:
    """The span exit on, trusting the OpenTelemetry contrib instrumentations."""
    spans.instrument(trusted_tracers=[CONTRIB])
    try:
        yield telemetry
    finally:
        spans.uninstrument()


@pytest.fixture
def instrumented(telemetry: Telemetry) -> Iterator[Telemetry]:
    """The span exit on; each test chooses the trusted tracers."""
    try:
        yield telemetry
    finally:
        spans.uninstrument()


# What a server or client instrumentation does within a request: a span
# started with fixed attributes, more set later, an event. Compiled as code of
# the module the tracer is named after, as the contrib instrumentations are:
# trust needs the setting code's module to be trusted too.
_LIBRARY_CODE = """
def library_span(tracer, route, sent, kind):
    with tracer.start_as_current_span("GET /notes/{note_id}", kind=kind, attributes=route) as span:
        span.set_attribute("server.address", sent["server.address"])
        span.set_attributes(sent)
        span.add_event("http send", {"asgi.event.type": "http.response.start"})
        span.update_name("GET /notes/{note_id}")

def route(tracer):
    with tracer.start_as_current_span("GET") as span:
        span.set_attribute("http.route", "/notes")
"""


def _module_code(module: str) -> dict[str, Any]:
    """``_LIBRARY_CODE``'s functions, as if defined in ``module``."""
    namespace: dict[str, Any] = {"__name__": module}
    exec(compile(_LIBRARY_CODE, f"<{module}>", "exec"), namespace)
    return namespace


def _library_span(telemetry: Telemetry, tracer_name: str, module: str | None = None) -> None:
    tracer = telemetry.tracer_provider.get_tracer(tracer_name)
    _module_code(module or tracer_name)["library_span"](tracer, ROUTE, SENT, SpanKind.SERVER)


def _attributes(telemetry: Telemetry, tracer_name: str) -> list[dict[str, Any]]:
    return [
        dict(span.attributes or {})
        for span in telemetry.spans.get_finished_spans()
        if span.instrumentation_scope is not None and span.instrumentation_scope.name == tracer_name
    ]


def _kept(telemetry: Telemetry, tracer_name: str) -> bool:
    """Whether the library span of ``tracer_name`` kept its fixed values."""
    (attributes,) = _attributes(telemetry, tracer_name)
    return attributes == {**ROUTE, **SENT}


def _in_a_content_zone(telemetry: Telemetry, *tracer_names: str) -> list[pg.Violation]:
    """Each tracer's library span inside a zone that read a note body."""
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        _body()  # the zone now refuses text for the logs purpose
        for name in tracer_names:
            _library_span(telemetry, name)
    return list(violations)


# -- (1) a trusted tracer's own values ----------------------------------------------------------


@pytest.mark.parametrize("context_mode", ["trace", "enforce"])
def test_a_trusted_tracers_plain_values_pass_a_content_zone_unrecorded(
    trusting: Telemetry, context_mode: str
) -> None:
    pg.configure("trust-center", mode="enforce", context_mode=context_mode)
    violations = _in_a_content_zone(trusting, ASGI, HTTPX)
    assert _kept(trusting, ASGI) and _kept(trusting, HTTPX)
    assert [span.name for span in trusting.spans.get_finished_spans()] == ["GET /notes/{note_id}"] * 2
    assert violations == []


# -- (2) labelled values on a trusted tracer's span ----------------------------------------------


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_trusted_tracer_handed_a_labelled_body_is_still_redacted(trusting: Telemetry, entry: str) -> None:
    pg.configure("trust-center", mode="enforce", context_mode="trace")
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        ENTRIES[entry](trusting.tracer_provider.get_tracer(HTTPX), _body())
    assert SECRET not in _exported(trusting)
    assert (CONTENT, LOGS, RULE, "egress", f"opentelemetry.trace.{HTTPX}", "enforce") in {
        (v.category, v.purpose, v.rule, v.via, v.function, v.mode) for v in violations
    }


def test_a_trusted_tracer_handed_a_labelled_body_records_it_in_trace_mode(trusting: Telemetry) -> None:
    pg.configure("trust-center", mode="trace", context_mode="trace")
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        with trusting.tracer_provider.get_tracer(HTTPX).start_as_current_span("POST") as span:
            span.set_attribute("http.request.body", _body())
    assert SECRET in _exported(trusting)
    assert {(v.category, v.via, v.function, v.mode) for v in violations} == {
        (CONTENT, "egress", f"opentelemetry.trace.{HTTPX}", "trace")
    }


@pytest.mark.parametrize(
    "entry",
    [
        "record_exception",
        "set_status(Status)",
        "set_status(code, description)",
        "an exception leaving start_as_current_span",
        "an exception leaving a started span",
    ],
)
def test_an_exception_on_a_trusted_span_is_still_held_to_the_zone(trusting: Telemetry, entry: str) -> None:
    # The exception (and the error description quoting it) is the application's text.
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        ENTRIES[entry](trusting.tracer_provider.get_tracer(ASGI), f"about: {_body()}")
    assert SECRET not in _exported(trusting)
    assert {(v.via, v.function, v.mode) for v in violations} == {
        ("context", f"opentelemetry.trace.{ASGI}", "enforce")
    }


# -- (3) trust does not leak to other tracers ------------------------------------------------------


@pytest.mark.parametrize("context_mode", ["trace", "enforce"])
def test_an_untrusted_tracer_in_the_same_zone_is_still_checked(
    trusting: Telemetry, context_mode: str
) -> None:
    pg.configure("trust-center", mode="enforce", context_mode=context_mode)
    violations = _in_a_content_zone(trusting, ASGI, "app", HTTPX)
    assert _kept(trusting, ASGI) and _kept(trusting, HTTPX)
    (app,) = _attributes(trusting, "app")
    fixed = {**ROUTE, **SENT}
    if context_mode == "enforce":
        # Its text is redacted; its numbers quote no text and pass.
        assert app == {key: REDACTED if isinstance(value, str) else value for key, value in fixed.items()}
    else:
        assert app == fixed
    assert {(v.category, v.via, v.function, v.mode) for v in violations} == {
        (CONTENT, "context", "opentelemetry.trace.app", context_mode)
    }


def test_nothing_is_trusted_by_default(instrumented: Telemetry) -> None:
    spans.instrument()
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    violations = _in_a_content_zone(instrumented, ASGI)
    (attributes,) = _attributes(instrumented, ASGI)
    assert attributes["http.route"] == REDACTED
    assert {v.function for v in violations} == {f"opentelemetry.trace.{ASGI}"}


# -- (4) what a pattern matches ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "tracer_name", "trusted"),
    [
        (CONTRIB, "opentelemetry.instrumentation.fastapi", True),
        (CONTRIB, "opentelemetry.instrumentation.asgi", True),
        (CONTRIB, "opentelemetry.instrumentation.httpx.client", True),
        (CONTRIB, "opentelemetry.instrumentationx", False),
        (CONTRIB, "opentelemetry.instrumentation", False),
        (CONTRIB, "app", False),
        (CONTRIB, "app.opentelemetry.instrumentation.asgi", False),
        ("opentelemetry.instrumentation*", "opentelemetry.instrumentationx", True),
        ("opentelemetry.instrumentation*", "opentelemetry.instrumentation", True),
        ("opentelemetry.instrumentation*", "opentelemetry.sdk", False),
        ("app.db", "app.db", True),
        ("app.db", "app.dbx", False),
        ("app.db", "app.db.pool", False),
        ("app.db", "app", False),
    ],
)
def test_a_pattern_trusts_only_what_it_names(
    instrumented: Telemetry, pattern: str, tracer_name: str, trusted: bool
) -> None:
    spans.instrument(trusted_tracers=[pattern])
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    violations = _in_a_content_zone(instrumented, tracer_name)
    assert _kept(instrumented, tracer_name) is trusted
    assert (violations == []) is trusted


# -- (5) the option itself -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error", "named"),
    [
        ([42], TypeError, "int"),
        ([None], TypeError, "NoneType"),
        ([b"opentelemetry.instrumentation.asgi"], TypeError, "bytes"),
        ([{"note": SECRET}], TypeError, "dict"),
        (CONTRIB, TypeError, "single str"),
        (b"app", TypeError, "single bytes"),
        (42, TypeError, "int"),
        ([""], ValueError, "empty"),
        (["app", ""], ValueError, "empty"),
        (["*"], ValueError, "every tracer"),
        ([".*"], ValueError, "every tracer"),
        (["opentelemetry.*.asgi"], ValueError, "trailing"),
        (["opentelemetry.**"], ValueError, "trailing"),
    ],
)
def test_a_bad_trusted_tracers_value_is_refused(
    instrumented: Telemetry, value: Any, error: type[Exception], named: str
) -> None:
    with pytest.raises(error, match="trusted_tracers") as raised:
        spans.instrument(trusted_tracers=value)
    assert named in str(raised.value)
    assert SECRET not in str(raised.value)  # a wrong entry's type, never its content
    assert not spans.is_instrumented()


def test_a_refused_value_leaves_the_previous_setting_in_force(trusting: Telemetry) -> None:
    with pytest.raises(TypeError):
        spans.instrument(trusted_tracers=[ASGI, 3])  # type: ignore[list-item]  # the wrong type is the point
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    assert _in_a_content_zone(trusting, ASGI) == []
    assert _kept(trusting, ASGI)


def test_any_iterable_of_names_is_taken(instrumented: Telemetry) -> None:
    spans.instrument(trusted_tracers=(name for name in [ASGI]))
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    assert _in_a_content_zone(instrumented, ASGI) == []


def test_instrument_again_replaces_the_trusted_tracers(trusting: Telemetry) -> None:
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    asgi = trusting.tracer_provider.get_tracer(ASGI)
    app = trusting.tracer_provider.get_tracer("app")

    def route(tracer: Any) -> list[pg.Violation]:
        with pg.testing.capture() as violations:
            _module_code(tracer._instrumentation_scope.name)["route"](tracer)
        return list(violations)

    with pg.zone(tenant="contoso"):
        _body()
        assert route(asgi) == []  # resolved as trusted, and cached so
        spans.instrument(trusted_tracers=["app"])
        assert [v.function for v in route(asgi)] == [f"opentelemetry.trace.{ASGI}"]
        assert route(app) == []
        spans.instrument()  # without trusted_tracers: none trusted
        assert [v.function for v in route(app)] == ["opentelemetry.trace.app"]
    kept = [dict(s.attributes or {})["http.route"] for s in trusting.spans.get_finished_spans()]
    assert kept == ["/notes", REDACTED, "/notes", REDACTED]


def test_uninstrument_forgets_the_trusted_tracers(trusting: Telemetry) -> None:
    spans.uninstrument()
    spans.instrument()
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    violations = _in_a_content_zone(trusting, ASGI)
    assert not _kept(trusting, ASGI)
    assert {v.via for v in violations} == {"context"}


def test_the_trust_is_resolved_once_per_tracer(trusting: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    resolved = spans._SETTINGS.tracers.resolved
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    _in_a_content_zone(trusting, ASGI, ASGI, "app")
    assert resolved == {
        ASGI: (f"opentelemetry.trace.{ASGI}", True),
        "app": ("opentelemetry.trace.app", False),
    }
    # Later calls answer from the cache: no pattern is matched again.
    monkeypatch.setattr(spans._SETTINGS.tracers, "prefixes", ())
    _in_a_content_zone(trusting, ASGI)
    assert _attributes(trusting, ASGI)[-1] == {**ROUTE, **SENT}


# -- (6) trust needs the setting code's module too ---------------------------------------------


@pytest.mark.parametrize("context_mode", ["trace", "enforce"])
def test_the_applications_text_on_a_trusted_span_is_held_to_the_zone(
    trusting: Telemetry, context_mode: str
) -> None:
    """A handler putting rebuilt text on the current span, which is the
    server instrumentation's: the tracer is trusted, the code is not."""
    pg.configure("trust-center", mode="enforce", context_mode=context_mode)
    tracer = trusting.tracer_provider.get_tracer(ASGI)
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        body = _body()
        with tracer.start_as_current_span("GET /notes/{note_id}", attributes=ROUTE):
            trace.get_current_span().set_attribute("note.preview", f"preview: {body}")
    (attributes,) = _attributes(trusting, ASGI)
    # The route, set at start by this module too, is a fixed plain value
    # checked against the zone: the first value decides the span, once.
    assert {(v.via, v.function, v.mode) for v in violations} == {
        ("context", f"opentelemetry.trace.{ASGI}", context_mode)
    }
    if context_mode == "enforce":
        assert attributes["note.preview"] == REDACTED and SECRET not in _exported(trusting)


def test_a_library_whose_module_is_not_named_is_held_to_the_zone(trusting: Telemetry) -> None:
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        _body()
        _library_span(trusting, ASGI, module="vendor.tracing")
    (attributes,) = _attributes(trusting, ASGI)
    assert attributes["http.route"] == REDACTED
    assert {v.via for v in violations} == {"context"}


def _asgi_app(route_body: Callable[[str], None]) -> Any:
    """A Starlette app behind the real OpenTelemetry ASGI instrumentation,
    purposeguard's middleware inside it: each request reads a note body."""
    from purposeguard.integrations.asgi import PurposeGuardMiddleware
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def note(request: Request) -> PlainTextResponse:
        route_body(_body())
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/notes/{note_id}", note)])
    app.add_middleware(PurposeGuardMiddleware)
    return app


def _serve(telemetry: Telemetry, app: Any) -> list[pg.Violation]:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from starlette.exceptions import StarletteDeprecationWarning

    with warnings.catch_warnings():
        # Starlette 1.x prefers httpx2 for its test client and warns when it
        # falls back to httpx; either drives the app the same way.
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from starlette.testclient import TestClient

    wrapped = OpenTelemetryMiddleware(app, tracer_provider=telemetry.tracer_provider)
    with pg.testing.capture() as violations, TestClient(wrapped) as client:
        assert client.get("/notes/7").status_code == 200
    return list(violations)


def test_the_real_asgi_instrumentation_is_trusted_and_a_handler_is_not(instrumented: Telemetry) -> None:
    """The contrib ASGI instrumentation's own spans pass a content zone once
    trusted (and are recorded before), while a handler's text on the same
    server span is still refused."""
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    asgi_function = f"opentelemetry.trace.{ASGI}"

    spans.instrument()
    before = _serve(instrumented, _asgi_app(lambda body: None))
    assert {(v.via, v.function) for v in before} == {("context", asgi_function)}

    spans.instrument(trusted_tracers=[CONTRIB])
    instrumented.spans.clear()
    assert _serve(instrumented, _asgi_app(lambda body: None)) == []
    server = [s for s in instrumented.spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert server and dict(server[0].attributes or {}).get("http.status_code", 200) == 200
    assert REDACTED not in _exported(instrumented)

    def preview(body: str) -> None:
        trace.get_current_span().set_attribute("note.preview", f"preview: {body}")

    instrumented.spans.clear()
    refused = _serve(instrumented, _asgi_app(preview))
    assert {(v.via, v.function) for v in refused} == {("context", asgi_function)}
    assert SECRET not in _exported(instrumented) and REDACTED in _exported(instrumented)
