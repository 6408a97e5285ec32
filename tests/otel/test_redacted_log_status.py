"""A log line the logging filter redacts in enforce mode failed nothing: the
request span it was written under keeps its status (the violation's event and
exception are recorded on it, as for every enforce-mode violation)."""

from __future__ import annotations

import io
import logging

from opentelemetry.trace import StatusCode
from purposeguard.integrations.logging import setup, teardown

import purposeguard as pg
from purposeguard import _otel_attributes as names

from .conftest import Telemetry

SECRET = "SECRET-77 quarterly numbers"
CONTENT = "customer_data.content.email"


def test_a_redacted_log_line_does_not_mark_the_request_span_failed(telemetry: Telemetry) -> None:
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    logger = logging.getLogger("pgtest.redacted.status")
    logger.propagate = False
    # Whatever earlier tests left on the logging tree, this logger writes warnings.
    logger.disabled = False
    logger.setLevel(logging.INFO)
    disabled = logging.root.manager.disable
    logging.disable(logging.NOTSET)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    guard_filter = setup(logger)
    try:
        with telemetry.tracer().start_as_current_span("GET /notes/{note}"), pg.zone(tenant="contoso"):
            logger.warning("note: %s", pg.label(SECRET, CONTENT))  # labelled: redacted
            body = pg.label(SECRET, CONTENT)
            logger.warning(f"rebuilt: {body}")  # through the zone: redacted
    finally:
        teardown(guard_filter, logger)
        logger.removeHandler(handler)
        logging.disable(disabled)
    assert SECRET not in stream.getvalue() and stream.getvalue().count("redacted") == 2
    (span,) = telemetry.spans.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET
    events = [e.name for e in span.events]
    assert names.EVENT_VIOLATION in events and "exception" in events
    assert SECRET not in span.to_json()


def test_a_raised_violation_still_marks_the_span_failed(telemetry: Telemetry) -> None:
    pg.configure("trust-center", mode="enforce")

    @pg.purpose("advertising")
    def recommend(body: str) -> str:
        return "ad"

    with telemetry.tracer().start_as_current_span(
        "GET /ads", record_exception=False, set_status_on_exception=False
    ):
        try:
            recommend(pg.label(SECRET, CONTENT))
        except pg.PurposeViolation:
            pass
    (span,) = telemetry.spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
