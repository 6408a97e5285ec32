"""Nothing that purposeguard protects leaves through telemetry: spans, metrics
and logs name categories, purposes, rules, modes, paths and functions only."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

import purposeguard as pg
from purposeguard import _otel_attributes as names
from purposeguard._policy import MODES
from purposeguard._records import VIAS

from .conftest import Telemetry

MARKER = "PGLEAK-5e0c7d1a9b"
CONTENT = "customer_data.content.email"
TENANT = "contoso"
FUNCTION = re.compile(r"^[A-Za-z_][\w.<>]*$")


@pg.purpose("advertising")
def recommend_ads(text: str) -> str:
    return "ad"


PROFILE: list[str] = []


@pg.purpose("advertising")
def build_profile() -> str:
    return PROFILE[0]


@pg.purpose("advertising")
def read_profile() -> str:
    # Reading (labelling) inside a purpose that may not hold it: via="source".
    return pg.label(f"profile of {MARKER}", CONTENT, tenant=TENANT)


@pg.purpose("service.operations")
def troubleshoot(ticket: str) -> str:
    return "ok"


@pg.transform("usage-aggregate")
def mailbox_size(body: str) -> int:
    return len(body)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logs() -> Iterator[tuple[InMemoryLogRecordExporter, _Records]]:
    provider = LoggerProvider(shutdown_on_exit=False)
    exporter = InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK's handler is deprecated, still correct
        otel_handler = LoggingHandler(logger_provider=provider)
    plain = _Records()
    log = logging.getLogger("purposeguard")
    level = log.level
    log.addHandler(otel_handler)
    log.addHandler(plain)
    log.setLevel(logging.DEBUG)
    try:
        yield exporter, plain
    finally:
        log.removeHandler(otel_handler)
        log.removeHandler(plain)
        log.setLevel(level)
        provider.shutdown()


def _every_path(mode: str) -> None:
    """A violation through every path, in ``mode``: argument, return, context, egress, source."""
    guard = pg.configure("trust-center", mode=mode, context_mode=mode)
    secret = pg.label(f"Quarterly numbers {MARKER}", CONTENT, tenant=TENANT)

    def attempt(fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except pg.PurposeViolation as error:
            assert mode == "enforce"
            assert MARKER not in str(error) and MARKER not in repr(error.violations)

    attempt(recommend_ads, secret)
    PROFILE[:] = [pg.label(f"profile of {MARKER}", CONTENT, tenant=TENANT)]
    attempt(build_profile)
    attempt(read_profile)
    with pg.zone(tenant=TENANT):
        inside = pg.label(f"Lunch with {MARKER}", CONTENT)
        attempt(recommend_ads, f"summary: {inside}")  # only the zone still knows
    with pg.zone(tenant=TENANT):
        for _ in range(3):  # one flow, repeated: a repeats event and log record at the close
            attempt(recommend_ads, secret)
    attempt(
        lambda: guard.check_labels(
            pg.labels_of(secret),
            "advertising",
            via="egress",
            function="tests.otel.egress.post",
            tenant=TENANT,
        )
    )
    troubleshoot(secret)
    with pg.purpose("service.operations"):
        mailbox_size(secret)
    # A transform refusing what it does not accept, outside any purpose.
    try:
        mailbox_size(pg.label(f"card {MARKER}", "payment_data", tenant=TENANT))
    except pg.PurposeViolation:
        pass


def _attributes_of_spans(telemetry: Telemetry) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for span in telemetry.spans.get_finished_spans():
        found.append(("span", dict(span.attributes or {})))
        found.extend((event.name, dict(event.attributes or {})) for event in span.events)
    return found


def _check_attribute(key: str, value: Any, policy: pg.Policy) -> None:
    taxonomy = policy.taxonomy
    allowed: dict[str, Any] = {
        names.CATEGORY: lambda v: v in taxonomy.categories,
        # "transform": a transform refused its input outside any purpose.
        names.PURPOSE: lambda v: v in taxonomy.purposes or v == "transform",
        # A transform's id is the rule when a transform refuses its input.
        names.RULE: lambda v: v in policy.rules_by_id or v in policy.transforms or v == names.DEFAULT_RULE,
        names.MODE: lambda v: v in MODES,
        names.VIA: lambda v: v in VIAS,
        names.OUTCOME: lambda v: v in ("allowed", "denied", "error"),
        names.TRANSFORM: lambda v: v in policy.transforms,
        names.METRIC_CATEGORY: lambda v: v in taxonomy.categories,
        names.METRIC_PURPOSE: lambda v: v in taxonomy.purposes or v == "transform",
        names.METRIC_RULE: lambda v: (
            v in policy.rules_by_id or v in policy.transforms or v == names.DEFAULT_RULE
        ),
        names.METRIC_MODE: lambda v: v in MODES,
        names.METRIC_VIA: lambda v: v in VIAS,
        names.METRIC_OUTCOME: lambda v: v in ("allowed", "denied", "error"),
        names.METRIC_TRANSFORM: lambda v: v in policy.transforms,
        names.TENANT: lambda v: v == TENANT,
        names.CODE_FUNCTION: lambda v: bool(FUNCTION.match(v)),
        names.COUNT: lambda v: type(v) is int and v >= 1,
    }
    assert key in allowed, f"unexpected attribute {key}={value!r}"
    assert allowed[key](value), f"attribute {key} holds {value!r}"


def test_the_marker_appears_in_no_span_metric_or_log(
    telemetry: Telemetry, logs: tuple[InMemoryLogRecordExporter, _Records]
) -> None:
    exporter, plain = logs
    with pg.testing.capture() as violations:
        for mode in ("enforce", "trace", "off"):
            with telemetry.tracer().start_as_current_span(f"request-{mode}"):
                _every_path(mode)
    # Every mode that records, through every path, really happened.
    assert {(v.mode, v.via) for v in violations} == {
        (mode, via)
        for mode in ("enforce", "trace")
        for via in ("argument", "return", "context", "egress", "source")
    }
    assert all(v.mode != "off" for v in violations)

    exported: list[str] = [span.to_json() for span in telemetry.spans.get_finished_spans()]
    metrics_data = telemetry.reader.get_metrics_data()
    assert metrics_data is not None
    exported.append(metrics_data.to_json())
    exported.extend(record.to_json() for record in exporter.get_finished_logs())
    formatter = logging.Formatter("%(message)s %(name)s %(levelname)s")
    for record in plain.records:
        exported.append(formatter.format(record))
        exported.append(repr(record.__dict__))
    # One log record per violation record, and one per flow that recurred in a zone.
    repeated = sum(1 for v in violations if v.count > 1)
    assert repeated == 1  # the trace-mode pass; enforce mode records each refusal
    # And one warning each time a configuration loosened the modes (enforce -> trace -> off).
    loosened = sum(1 for r in plain.records if "loosens enforcement" in r.getMessage())
    assert loosened == 2
    assert len(plain.records) == len(violations) + repeated + loosened
    assert len(exporter.get_finished_logs()) == len(violations) + repeated + loosened
    everything = "\n".join(exported)
    assert "Quarterly numbers" not in everything and "Lunch with" not in everything
    assert MARKER not in everything

    policy = pg.get_guard().policy
    span_attributes = _attributes_of_spans(telemetry)
    events = [a for name, a in span_attributes if name == names.EVENT_VIOLATION]
    assert len(events) == len(violations)
    for name, attributes in span_attributes:
        for key, value in attributes.items():
            if name == "exception" and key.startswith("exception."):
                continue  # type, message, stacktrace: checked for the marker above
            _check_attribute(key, value, policy)

    metric_names = set()
    for resource in metrics_data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                metric_names.add(metric.name)
                for point in metric.data.data_points:
                    assert names.TENANT not in (point.attributes or {})
                    for key, value in (point.attributes or {}).items():
                        _check_attribute(key, value, policy)
    assert {names.VIOLATIONS, names.CHECKS, names.DECLASSIFICATIONS} <= metric_names

    for exported_log in exporter.get_finished_logs():
        for key, value in (exported_log.log_record.attributes or {}).items():
            if key.startswith("purposeguard.") or key == names.CODE_FUNCTION:
                _check_attribute(key, value, policy)
