"""One local Spark for every Spark test (starting it is the slow part), and
generated mailbox data of several tenants."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from purposeguard.integrations import spark as pg_spark

import purposeguard as pg

TENANTS = ("contoso", "fabrikam", "northwind", "tailspin")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/spark" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.services)


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from pyspark.sql import SparkSession

    # The Python workers run this interpreter, with purposeguard importable.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("purposeguard-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("warehouse")))
        .config("spark.sql.session.timeZone", "UTC")
        # Plain Python UDFs go pickled row by row (test_pandas_udfs.py tries the Arrow ones).
        .config("spark.sql.execution.pythonUDF.arrow.enabled", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(autouse=True)
def _test_functions_travel_by_value(request: pytest.FixtureRequest) -> None:
    """A UDF defined in a test module reaches the workers whole: they import
    the installed purposeguard, never the repository's tests/ folder."""
    from pyspark import cloudpickle

    module = request.module
    if sys.modules.get(module.__name__) is module:
        cloudpickle.register_pickle_by_value(module)


@pytest.fixture(autouse=True)
def _instrumented() -> Iterator[None]:
    pg_spark.instrument()
    yield
    pg_spark.uninstrument()


MESSAGES = [
    (
        f"m{i}",
        TENANTS[i % len(TENANTS)],
        f"user{i % 7}@{TENANTS[i % len(TENANTS)]}.example",
        f"Body of message {i}: quarterly numbers",
        1000 + 17 * i,
        f"2026-11-{1 + i % 3:02d}",
    )
    for i in range(40)
]


@pytest.fixture(scope="session")
def raw_mail(spark: Any) -> Any:
    return spark.createDataFrame(MESSAGES, ["id", "tenant", "sender", "body", "size", "day"])


@pytest.fixture
def mail(raw_mail: Any) -> Any:
    return pg_spark.label_columns(
        raw_mail,
        {"body": "customer_data.content.email", "sender": "customer_data"},
        tenant_column="tenant",
    )


@pytest.fixture
def enforce() -> pg.Guard:
    return pg.configure("trust-center", mode="enforce")


@pytest.fixture
def ads_policy(tmp_path: Path) -> Iterator[Path]:
    """Enforce mode, with writes to ``<tmp_path>/ads/*``, s3://ads-bucket/* and
    tables named ``ads_*`` declared for advertising; yields ``tmp_path``."""
    from importlib import resources

    pack = resources.files("purposeguard.packs").joinpath("trust-center.toml").read_text(encoding="utf-8")
    text = pack + (
        '\n[[destinations]]\nid = "ads-bucket"\n'
        f'paths = ["{tmp_path.as_posix()}/ads/*", "s3://ads-bucket/*"]\n'
        'tables = ["ads_*"]\npurpose = "advertising"\n'
    )
    pg.configure(pg.Policy.from_toml(text, source="ads-test"), mode="enforce")
    yield tmp_path
