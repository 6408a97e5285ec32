"""Writes through JDBC: checked as the other DataFrame writes are, against
a destination naming the database's host, else the current purpose. The
allowed writes go to a real embedded Derby database (Spark ships its
driver); the refused ones never reach a database."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg

ADS_DB = "jdbc:postgresql://Ads-DB.example:5432/audiences"


@pytest.fixture
def ads_db_policy() -> Iterator[None]:
    """Enforce mode, with the database host ``ads-db.example`` declared for advertising."""
    pack = resources.files("purposeguard.packs").joinpath("trust-center.toml").read_text(encoding="utf-8")
    text = pack + '\n[[destinations]]\nid = "ads-db"\nhosts = ["ads-db.example"]\npurpose = "advertising"\n'
    pg.configure(pg.Policy.from_toml(text, source="ads-db-test"), mode="enforce")
    yield


def _derby(spark: Any, folder: Path) -> str:
    jvm = spark.sparkContext._jvm
    # Derby writes its log where the JVM started (the repository) unless told
    # otherwise before it first starts.
    if jvm.java.lang.System.getProperty("derby.stream.error.file") is None:
        jvm.java.lang.System.setProperty("derby.stream.error.file", (folder / "derby.log").as_posix())
    return f"jdbc:derby:{(folder / 'derby').as_posix()};create=true"


def _refused(run: Any) -> set[tuple[str, str, str]]:
    with pytest.raises(pg.PurposeViolation) as refused:
        run()
    return {(v.via, v.purpose, v.function) for v in refused.value.violations}


def test_a_jdbc_write_to_an_ad_database_is_refused(ads_db_policy: None, mail: Any) -> None:
    body = mail.select("body")
    runs = {
        "pyspark.sql.DataFrameWriter.jdbc": functools.partial(body.write.jdbc, ADS_DB, "audience"),
        "pyspark.sql.DataFrameWriter.save": lambda: (
            body.write.format("jdbc").option("url", ADS_DB).option("dbtable", "audience").save()
        ),
    }
    for function, run in runs.items():
        assert _refused(run) == {("egress", "advertising", function)}
    # The url among save()'s own options, in any case.
    with pytest.raises(pg.PurposeViolation):
        body.write.save(format="jdbc", URL=ADS_DB, dbtable="audience")
    with pytest.raises(pg.PurposeViolation):
        body.write.format("jdbc").options(Url=ADS_DB, dbtable="audience").save()


def test_unlabelled_rows_may_go_to_an_ad_database(ads_db_policy: None, mail: Any) -> None:
    # Not refused by purposeguard: Spark itself then finds no driver for the URL.
    with pytest.raises(Exception) as failed:
        mail.select("id").write.jdbc(ADS_DB, "audience")
    assert not isinstance(failed.value, pg.PurposeViolation)


def test_a_jdbc_write_elsewhere_is_checked_against_the_current_purpose(
    spark: Any, enforce: pg.Guard, mail: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = _derby(spark, tmp_path)
    with pg.purpose("advertising"):
        assert _refused(functools.partial(mail.select("body").write.jdbc, url, "audience")) == {
            ("egress", "advertising", "pyspark.sql.DataFrameWriter.jdbc")
        }
        mail.select("id").write.jdbc(url, "ids")
    assert spark.read.jdbc(url, "ids").count() == mail.count()
    with caplog.at_level(logging.WARNING, logger="purposeguard"), pg.purpose("service.operations"):
        mail.select("body").write.jdbc(url, "bodies")
    assert spark.read.jdbc(url, "bodies").count() == mail.count()
    # Read back, the rows carry no labels: said, naming the categories, never a value.
    said = [r.getMessage() for r in caplog.records if "through JDBC" in r.getMessage()]
    assert said and "customer_data.content.email" in said[0] and "Body of message" not in said[0]
