"""Violations as structured ``logging`` records on the ``purposeguard`` logger."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator

import pytest
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

import purposeguard as pg
from purposeguard import otel

from .conftest import Telemetry

CONTENT = "customer_data.content.email"


@pg.purpose("advertising")
def recommend_ads(text: str) -> str:
    return "ad"


EXPECTED = {
    "purposeguard.category": CONTENT,
    "purposeguard.purpose": "advertising",
    "purposeguard.rule": "no-advertising",
    "purposeguard.mode": "trace",
    "purposeguard.via": "argument",
    "purposeguard.tenant": "contoso",
    "code.function": f"{__name__}.recommend_ads",
}


@pytest.fixture
def otel_logs() -> Iterator[InMemoryLogRecordExporter]:
    """The OpenTelemetry logging handler on the ``purposeguard`` logger, at INFO."""
    provider = LoggerProvider(shutdown_on_exit=False)
    exporter = InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    with warnings.catch_warnings():
        # opentelemetry-sdk 1.45 deprecates its handler in favour of the one in
        # opentelemetry-instrumentation-logging; both translate records alike.
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(logger_provider=provider)
    log = logging.getLogger("purposeguard")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield exporter
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        provider.shutdown()


def test_a_violation_is_logged_with_its_attributes(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    pg.configure("trust-center", mode="trace")
    with caplog.at_level(logging.INFO, logger="purposeguard"):
        recommend_ads(pg.label("Quarterly numbers", CONTENT, tenant="contoso"))
    (record,) = [r for r in caplog.records if r.name == "purposeguard"]
    assert record.levelno == otel.LOG_LEVEL == logging.INFO
    assert {k: record.__dict__[k] for k in EXPECTED} == EXPECTED
    assert record.getMessage() == (
        f"purpose violation: {CONTENT} may not be used for advertising "
        f"(rule no-advertising, via argument, in {__name__}.recommend_ads, trace mode)"
    )


def test_the_opentelemetry_handler_carries_the_attributes(
    telemetry: Telemetry, otel_logs: InMemoryLogRecordExporter
) -> None:
    pg.configure("trust-center", mode="trace")
    with telemetry.tracer().start_as_current_span("request") as span:
        recommend_ads(pg.label("Quarterly numbers", CONTENT, tenant="contoso"))
    (exported,) = otel_logs.get_finished_logs()
    attributes = dict(exported.log_record.attributes or {})
    assert {k: attributes[k] for k in EXPECTED} == EXPECTED
    assert exported.log_record.severity_text == "INFO"
    # Correlated with the trace the span event is on.
    assert exported.log_record.trace_id == span.get_span_context().trace_id


def test_nothing_is_logged_when_not_instrumented(caplog: pytest.LogCaptureFixture) -> None:
    pg.configure("trust-center", mode="trace")
    with caplog.at_level(logging.INFO, logger="purposeguard"):
        recommend_ads(pg.label("Quarterly numbers", CONTENT))
    assert [r for r in caplog.records if r.name == "purposeguard"] == []


SCRIPT = textwrap.dedent(
    """
    import logging, sys
    import purposeguard as pg
    from purposeguard import otel
    if sys.argv[1] == "configured":
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    pg.configure("trust-center", mode="trace", telemetry=True)

    @pg.purpose("advertising")
    def recommend_ads(text):
        return "ad"

    for _ in range(3):
        recommend_ads(pg.label("Quarterly numbers", "customer_data.content.email"))
    print("done")
    """
)


def test_an_unconfigured_application_sees_no_violation_lines_on_stderr() -> None:
    """INFO on purpose: logging.lastResort would print WARNING records to stderr."""
    quiet = subprocess.run(
        [sys.executable, "-c", SCRIPT, "unconfigured"], capture_output=True, text=True, timeout=60
    )
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip() == "done"
    assert quiet.stderr == ""
    loud = subprocess.run(
        [sys.executable, "-c", SCRIPT, "configured"], capture_output=True, text=True, timeout=60
    )
    assert loud.returncode == 0, loud.stderr
    assert loud.stderr.count("INFO:purposeguard:purpose violation: customer_data.content.email") == 3


def test_telemetry_without_the_sdk_says_so_once() -> None:
    """The API alone is a no-op: instrument() warns instead of reporting into nothing."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['opentelemetry.sdk'] = None  # as if the [otel] extra were not installed\n"
        "import purposeguard as pg\n"
        "pg.configure('trust-center', telemetry=True)\n"
        "pg.configure('trust-center', mode='trace')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("SDK is not installed") == 1
    assert "pip install 'purposeguard[otel]'" in done.stderr
