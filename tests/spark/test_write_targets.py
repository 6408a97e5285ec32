"""Where a write lands beyond a table's own location: a partition's own
location, the files under a temporary view, and files a table is made over
through spark.catalog. Each is checked as the write it is."""

from __future__ import annotations

import functools
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import functions as F

import purposeguard as pg

SQL = "pyspark.sql.SparkSession.sql"
CREATE_TABLE = "pyspark.sql.Catalog.createTable"
EGRESS_TO_ADS = {("egress", "advertising", SQL)}


@pytest.fixture
def names() -> Iterator[dict[str, str]]:
    """Table and view names of this test alone (the session is shared)."""
    suffix = uuid.uuid4().hex[:8]
    yield {key: f"{key}_{suffix}" for key in ("ads", "mail", "backup", "view", "other")}


@pytest.fixture
def mail_view(mail: Any, names: dict[str, str], spark: Any) -> Iterator[str]:
    mail.createOrReplaceTempView(names["mail"])
    yield names["mail"]
    spark.catalog.dropTempView(names["mail"])


def _refused(run: Any) -> set[tuple[str, str, str]]:
    with pytest.raises(pg.PurposeViolation) as refused:
        run()
    return {(v.via, v.purpose, v.function) for v in refused.value.violations}


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("part-*")) if folder.exists() else []


def test_an_insert_into_a_partition_located_in_an_ad_path_is_refused(
    spark: Any, ads_policy: Path, names: dict[str, str], mail: Any, mail_view: str
) -> None:
    table = names["backup"]
    spark.sql(f"CREATE TABLE {table} (body STRING, d INT) USING parquet PARTITIONED BY (d)")
    in_ads = ads_policy / "ads" / "day-1"
    moved = ads_policy / "ads" / "day-3"
    # Partitions pointed at new, empty folders: nothing is written yet.
    spark.sql(f"ALTER TABLE {table} ADD PARTITION (d=1) LOCATION '{in_ads.as_posix()}'")
    spark.sql(f"ALTER TABLE {table} ADD PARTITION (d=2)")
    spark.sql(f"ALTER TABLE {table} ADD PARTITION (d=3)")
    spark.sql(f"ALTER TABLE {table} PARTITION (d=3) SET LOCATION '{moved.as_posix()}'")
    statements = [
        f"INSERT INTO {table} PARTITION (d=1) SELECT body FROM {mail_view}",
        # The column named in any case, the value as Spark reads it.
        f"INSERT OVERWRITE TABLE {table} PARTITION (D=01) SELECT upper(body) FROM {mail_view}",
        f"INSERT INTO {table} PARTITION (d=3) SELECT body FROM {mail_view}",
        # The rows pick their partitions when the statement runs: any of them may be d=1.
        f"INSERT INTO {table} SELECT body, 2 AS d FROM {mail_view}",
        f"INSERT INTO {table} PARTITION (d) SELECT body, 2 AS d FROM {mail_view}",
    ]
    for statement in statements:
        assert _refused(functools.partial(spark.sql, statement)) == EGRESS_TO_ADS, statement
    rows = mail.select("body", F.lit(2).alias("d"))
    with pytest.raises(pg.PurposeViolation):
        rows.write.insertInto(table)
    assert _files(in_ads) == [] and _files(moved) == []
    assert spark.table(table).count() == 0
    # Unlabelled rows may go there; labelled rows may go to a partition kept
    # in the warehouse, for a purpose that may write them.
    spark.sql(f"INSERT INTO {table} PARTITION (d=1) SELECT id FROM {mail_view}")
    assert len(_files(in_ads)) > 0
    with pg.purpose("service.operations"):
        spark.sql(f"INSERT INTO {table} PARTITION (d=2) SELECT body FROM {mail_view}")
    assert spark.table(table).where("d = 2").count() == mail.count()


def test_a_temporary_view_over_files_in_an_ad_path_is_written_there(
    spark: Any, ads_policy: Path, names: dict[str, str], mail: Any, mail_view: str
) -> None:
    folder = ads_policy / "ads" / "viewed"
    spark.createDataFrame([("seed",)], ["b"]).write.parquet(folder.as_posix())
    view, other = names["view"], names["other"]
    spark.sql(f"CREATE TEMPORARY VIEW {view} USING parquet OPTIONS (path '{folder.as_posix()}')")
    spark.read.parquet(folder.as_posix()).createOrReplaceTempView(other)
    spark.sql(f"CREATE GLOBAL TEMPORARY VIEW {view} USING parquet OPTIONS (path '{folder.as_posix()}')")
    try:
        before = _files(folder)
        for target in (view, other, f"global_temp.{view}"):
            for statement in (
                f"INSERT INTO {target} SELECT body FROM {mail_view}",
                f"INSERT OVERWRITE TABLE {target} SELECT sender FROM {mail_view}",
            ):
                assert _refused(functools.partial(spark.sql, statement)) == EGRESS_TO_ADS, statement
            with pytest.raises(pg.PurposeViolation):
                mail.select("body").write.insertInto(target)
        assert _files(folder) == before
        # Unlabelled rows may go there.
        spark.sql(f"INSERT INTO {view} SELECT id FROM {mail_view}")
        assert spark.table(view).count() == 1 + mail.count()
    finally:
        spark.catalog.dropTempView(view)
        spark.catalog.dropTempView(other)
        spark.catalog.dropGlobalTempView(view)


def test_a_temporary_view_over_an_ad_table_writes_that_table(
    spark: Any, ads_policy: Path, names: dict[str, str], mail_view: str
) -> None:
    spark.sql(f"CREATE TABLE {names['ads']} (b STRING) USING parquet")
    spark.table(names["ads"]).createOrReplaceTempView(names["view"])
    elsewhere = ads_policy / "elsewhere"
    spark.createDataFrame([("seed",)], ["b"]).write.parquet(elsewhere.as_posix())
    spark.read.parquet(elsewhere.as_posix()).createOrReplaceTempView(names["other"])
    try:
        statement = f"INSERT INTO {names['view']} SELECT body FROM {mail_view}"
        assert _refused(functools.partial(spark.sql, statement)) == EGRESS_TO_ADS
        assert spark.table(names["ads"]).count() == 0
        # A view over files no destination names: the current purpose decides.
        with pg.purpose("service.operations"):
            spark.sql(f"INSERT INTO {names['other']} SELECT body FROM {mail_view}")
        with pg.purpose("advertising"), pytest.raises(pg.PurposeViolation):
            spark.sql(f"INSERT INTO {names['other']} SELECT body FROM {mail_view}")
        assert spark.table(names["other"]).count() == 1 + 40
    finally:
        spark.catalog.dropTempView(names["view"])
        spark.catalog.dropTempView(names["other"])


def _external_table(spark: Any, name: str, path: str) -> None:
    with warnings.catch_warnings():
        # (Spark says createExternalTable is deprecated: it calls createTable.)
        warnings.simplefilter("ignore", FutureWarning)
        spark.catalog.createExternalTable(name, path, "parquet")


def test_a_catalog_table_made_over_labelled_files_is_refused(
    spark: Any, ads_policy: Path, names: dict[str, str], mail: Any
) -> None:
    source = (ads_policy / "derived").as_posix()
    with pg.purpose("service.operations"):
        mail.select("body").write.parquet(source)
    ads = names["ads"]
    refused_to_ads = {("egress", "advertising", CREATE_TABLE)}
    runs = [
        lambda: spark.catalog.createTable(ads, path=source),
        lambda: spark.catalog.createTable(ads, source="parquet", PATH=source),
        functools.partial(_external_table, spark, ads, source),
    ]
    for run in runs:
        assert _refused(run) == refused_to_ads
    assert not spark.catalog.tableExists(ads)
    # Unlabelled files, or a new, empty location, may become an ad table.
    plain = (ads_policy / "plain").as_posix()
    spark.createDataFrame([("seed",)], ["b"]).write.parquet(plain)
    spark.catalog.createTable(ads, path=plain)
    assert spark.table(ads).count() == 1
    empty = (ads_policy / "empty").as_posix()
    spark.catalog.createTable(f"{ads}_e", path=empty, schema=spark.table(ads).schema)
    assert spark.catalog.tableExists(f"{ads}_e")
    # Another table over the labelled files, for a purpose that may keep them.
    with pg.purpose("service.operations"):
        spark.catalog.createTable(names["backup"], path=source)
    assert spark.table(names["backup"]).count() == mail.count()
    with pg.purpose("advertising"), pytest.raises(pg.PurposeViolation):
        spark.catalog.createTable(names["other"], path=source)
