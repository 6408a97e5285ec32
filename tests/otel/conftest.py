"""Fixtures for the telemetry tests: in-memory SDK providers per test, and one
real Prometheus server per session scraping the app's exporter endpoint."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from purposeguard import otel
from purposeguard._runtime import COUNTERS

PROMETHEUS_START_TIMEOUT = 30.0


@dataclass
class Telemetry:
    """In-memory SDK providers, instrumented for one test."""

    tracer_provider: TracerProvider
    spans: InMemorySpanExporter
    meter_provider: MeterProvider
    reader: InMemoryMetricReader

    def tracer(self) -> Any:
        return self.tracer_provider.get_tracer("tests.otel")

    def points(self, name: str) -> list[tuple[dict[str, Any], float]]:
        """(attributes, value) of every data point of metric ``name``, now."""
        return metric_points(self.reader, name)


def metric_points(reader: InMemoryMetricReader, name: str) -> list[tuple[dict[str, Any], float]]:
    data = reader.get_metrics_data()
    found: list[tuple[dict[str, Any], float]] = []
    if data is None:
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend((dict(p.attributes or {}), p.value) for p in metric.data.data_points)  # type: ignore[union-attr]
    return found


def sdk_providers() -> tuple[TracerProvider, InMemorySpanExporter, MeterProvider, InMemoryMetricReader]:
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    spans = InMemorySpanExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    return tracer_provider, spans, meter_provider, reader


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    """``otel.instrument()`` with fresh in-memory providers, undone afterwards."""
    tracer_provider, spans, meter_provider, reader = sdk_providers()
    otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        yield Telemetry(tracer_provider, spans, meter_provider, reader)
    finally:
        otel.uninstrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()


@pytest.fixture(autouse=True)
def _telemetry_off(request: pytest.FixtureRequest) -> Iterator[None]:
    """No test leaves telemetry on for the next one (the Prometheus module
    keeps one instrumentation for all its tests, on purpose)."""
    yield
    if getattr(request.module, "KEEPS_TELEMETRY", False):
        return
    if otel.instrumented():
        otel.uninstrument()
    assert not COUNTERS.enabled


# -- a real Prometheus ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pytest_runtest_setup(item: pytest.Item) -> None:
    # `-m "not services"` must leave out every test that needs the Prometheus binary.
    if "prometheus" in getattr(item, "fixturenames", ()) and item.get_closest_marker("services") is None:
        pytest.fail(f"{item.nodeid} starts Prometheus: mark it @pytest.mark.services", pytrace=False)


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None
    )
    if found is None:
        pytest.fail(
            "the Prometheus server binary is missing: install Debian's 'prometheus' package "
            "(apt-get install prometheus; `bash scripts/test` does this). These tests need a real Prometheus.",
            pytrace=False,
        )
    return found


@dataclass
class MetricsEndpoint:
    """The app side: an SDK meter provider exported on a loopback HTTP port."""

    meter_provider: MeterProvider
    port: int


@dataclass
class Prometheus:
    url: str
    endpoint: MetricsEndpoint
    log: Path

    def query(self, promql: str) -> dict[str, Any]:
        """Run an instant query; the decoded ``data`` of a successful answer."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")
            raise AssertionError(f"Prometheus rejected {promql!r}: {error.code} {detail}") from None
        assert body["status"] == "success", body
        return body["data"]

    def wait_for(self, promql: str, predicate: Any, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Poll ``promql`` until ``predicate(result)`` holds; fail after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while True:
            result = self.query(promql)["result"]
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"Prometheus never answered {promql!r} as expected within {timeout:.0f} s; "
                    f"last answer: {result}; server log: {self.log}"
                )
            time.sleep(0.5)


@pytest.fixture(scope="session")
def metrics_endpoint() -> Iterator[MetricsEndpoint]:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield MetricsEndpoint(meter_provider, port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        meter_provider.shutdown()


@pytest.fixture(scope="session")
def prometheus(
    metrics_endpoint: MetricsEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    """Debian's Prometheus on a free loopback port, scraping the app every second."""
    binary = prometheus_binary()
    home = tmp_path_factory.mktemp("prometheus")
    config = home / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: purposeguard-tests\n"
        "    scrape_interval: 1s\n"
        "    scrape_timeout: 1s\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics_endpoint.port}']\n",
        encoding="utf-8",
    )
    port = free_port()
    log = home / "prometheus.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PROMETHEUS_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"Prometheus exited with {process.returncode}: {log.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Prometheus was not ready within {PROMETHEUS_START_TIMEOUT:.0f} s: {log}")
            time.sleep(0.2)
        yield Prometheus(url, metrics_endpoint, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
