"""Telemetry costs (targets: BENCHMARKS.md): the violation path with the OpenTelemetry
SDK installed and instrumented, and the allowed path with and without it.

Instrumenting is switched in each case's ``setup``, which timeit runs before
every timed loop, so the cases still interleave round by round.
"""

from __future__ import annotations

import itertools
from typing import Any

from harness import Case, Group
from opentelemetry import context, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import purposeguard as pg
from purposeguard import otel

EMAIL = "customer_data.content.email"
SPREAD = 2000


class _Switch:
    """Puts telemetry (and a current recording span) in the state a case needs."""

    def __init__(self) -> None:
        self.tracer_provider = TracerProvider(shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        self.meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
        # One long request span: events past the SDK's limit (128) are
        # dropped by the SDK, so memory stays bounded over the run.
        self.span = self.tracer_provider.get_tracer("bench").start_span("request")
        self.token: Any = None

    def __call__(self, instrumented: bool, in_span: bool = False) -> None:
        if self.token is not None:
            context.detach(self.token)
            self.token = None
        if in_span:
            self.token = context.attach(trace.set_span_in_context(self.span))
        if instrumented:
            otel.instrument(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)
        else:
            otel.uninstrument()


def _namespace() -> dict[str, Any]:
    pg.configure("trust-center", mode="trace")

    def bare(x: object) -> object:
        return x

    @pg.purpose("service.operations")
    def troubleshoot(x: object) -> object:
        return x

    @pg.purpose("advertising")
    def recommend_ads(x: object) -> None:
        # Returns nothing: one violation per call (the argument), not two.
        return None

    # 2,000 functions and 2,000 tenants, visited in an order that pairs each
    # function with many tenants: what a multi-tenant service's violations look
    # like to the telemetry caches. The single-tenant row walks the same code
    # (one step of a counter, two list reads) over one function and one tenant.
    functions, values = [], []
    for index in range(SPREAD):
        scope: dict[str, Any] = {}
        exec(f"def advertise_{index}(x):\n    return None\n", scope)
        functions.append(pg.purpose("advertising")(scope[f"advertise_{index}"]))
        values.append(pg.label("ticket 4711", EMAIL, tenant=f"tenant-{index}"))
    step = itertools.count()

    def spread() -> None:
        index = next(step)
        functions[index % SPREAD](values[(index * 7) % SPREAD])

    def one() -> None:
        index = next(step)
        functions[index % 1](values[(index * 7) % 1])

    return {
        "spread": spread,
        "one": one,
        "bare": bare,
        "troubleshoot": troubleshoot,
        "recommend_ads": recommend_ads,
        "labelled": pg.label("ticket 4711", EMAIL),
        "switch": _Switch(),
    }


def groups() -> list[Group]:
    namespace = _namespace()
    violation = Group(
        "otel: violation path (trace mode)",
        Case("bare call f(x)", "bare(1)", setup="switch(False)"),
        [
            Case(
                "trace-mode violation, telemetry off",
                "recommend_ads(labelled)",
                "informative",
                setup="switch(False)",
            ),
            Case(
                "trace-mode violation, SDK instrumented, recording span",
                "recommend_ads(labelled)",
                "<= 20 us",
                setup="switch(True, in_span=True)",
                absolute_limit_us=20,
            ),
        ],
        globals=namespace,
        number=5000,
    )
    spread = Group(
        f"otel: violation path, {SPREAD:,} tenants and {SPREAD:,} functions (trace mode, SDK, span)",
        Case("one tenant, one function", "one()", setup="switch(True, in_span=True)"),
        [
            Case(
                f"{SPREAD:,} tenants x {SPREAD:,} functions, in turn",
                "spread()",
                "<= 1.30x",
                setup="switch(True, in_span=True)",
                ratio_limit=1.30,
            ),
        ],
        globals=namespace,
        number=4000,
        rounds=15,
        baseline_label="one tenant, one function",
    )
    # Same host conditions on both sides (SDK installed, a request span
    # current); only instrument() differs. An extra row shows the host's own
    # cost of having a span in the context, which is not purposeguard's.
    allowed = []
    for title, stmt in (("labelled", "troubleshoot(labelled)"), ("unlabelled", "troubleshoot(1)")):
        allowed.append(
            Group(
                f"otel: allowed path, {title} argument",
                Case("SDK installed, not instrumented", stmt, setup="switch(False, in_span=True)"),
                [
                    Case(
                        "SDK installed and instrumented",
                        stmt,
                        "<= 1.10x",
                        setup="switch(True, in_span=True)",
                        ratio_limit=1.10,
                    ),
                    Case(
                        "not instrumented, no span in the context (host cost)",
                        stmt,
                        "informative",
                        setup="switch(False)",
                    ),
                ],
                globals=namespace,
                number=20000,
                # A 10% bound on a ~1 µs call needs more rounds than the default
                # to stay above the shared machine's noise.
                rounds=25,
                baseline_label="SDK installed, not instrumented",
            )
        )
    return [violation, spread, *allowed]
