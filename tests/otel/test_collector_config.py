"""The shipped OpenTelemetry Collector example is well formed and wires OTLP
in to a Prometheus endpoint out (no collector binary runs here)."""

from __future__ import annotations

import importlib.resources
from typing import Any

import yaml


def _config() -> dict[str, Any]:
    text = (
        importlib.resources.files("purposeguard.integrations")
        .joinpath("otel-collector.yaml")
        .read_text(encoding="utf-8")
    )
    return yaml.safe_load(text)


def test_otlp_in_prometheus_out_for_metrics() -> None:
    config = _config()
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].startswith("127.0.0.1:")
    assert protocols["http"]["endpoint"].startswith("127.0.0.1:")
    assert config["exporters"]["prometheus"]["endpoint"].startswith("127.0.0.1:")
    metrics = config["service"]["pipelines"]["metrics"]
    assert metrics["receivers"] == ["otlp"]
    assert metrics["exporters"] == ["prometheus"]


def test_every_pipeline_names_only_defined_components() -> None:
    config = _config()
    for name, pipeline in config["service"]["pipelines"].items():
        assert set(pipeline) <= {"receivers", "processors", "exporters"}, name
        for section in ("receivers", "processors", "exporters"):
            for component in pipeline.get(section, []):
                assert component in config[section], (
                    f"pipeline {name} uses undefined {section[:-1]} {component}"
                )
    assert {"traces", "metrics", "logs"} <= set(config["service"]["pipelines"])
