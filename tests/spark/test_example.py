"""The example job (examples/spark_job.py), tried as a new user would."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import purposeguard as pg

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def job() -> ModuleType:
    spec = importlib.util.spec_from_file_location("spark_job_example", ROOT / "examples" / "spark_job.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def stored_mail(job: ModuleType, spark: Any, tmp_path: Path) -> Any:
    path = str(tmp_path / "mail")
    job.generate_mailboxes(spark, tenants=12, messages=2400).write.parquet(path)
    return spark.read.parquet(path)


@pytest.fixture
def consents(job: ModuleType) -> Iterator[Any]:
    store = job.consent_store(12)
    yield store
    store.close()


def test_the_job_reports_usage_analyses_consented_tenants_and_refuses_the_audience(
    job: ModuleType, stored_mail: Any, consents: Any
) -> None:
    pg.configure("trust-center", mode="enforce", consents=consents)
    outcome = job.run_job(job.label_mail(stored_mail))

    assert [row[0] for row in outcome.report] == [f"tenant-{i:03d}" for i in range(12)]
    assert sum(row[1] for row in outcome.report) == 2400
    consenting = ["tenant-000", "tenant-004", "tenant-008"]
    assert outcome.analysis == job.length_by_day(job.keep_tenants(stored_mail, consenting))
    assert outcome.analysis != job.length_by_day(stored_mail)
    assert outcome.audience_refused
    assert {(v.rule, v.via, v.mode) for v in outcome.violations} == {
        ("no-advertising", "argument", "enforce")
    }


def test_in_trace_mode_the_audience_is_built_and_recorded(
    job: ModuleType, stored_mail: Any, consents: Any
) -> None:
    pg.configure("trust-center", mode="trace", consents=consents)
    outcome = job.run_job(job.label_mail(stored_mail))
    assert not outcome.audience_refused
    assert {v.category for v in outcome.violations} == {"customer_data", "customer_data.content.email"}
    assert {v.mode for v in outcome.violations} == {"trace"}


def test_the_example_runs_from_the_command_line(tmp_path: Path) -> None:
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable)
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "spark_job.py"), "--tenants", "8", "--messages", "2000"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage report: 8 tenants" in done.stdout
    assert "advertising audience: refused" in done.stdout
    assert "Message " not in done.stdout + done.stderr  # no mail content in what the job prints


def test_bad_arguments_are_one_line_errors() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "spark_job.py"), "--messages", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
