"""Labelled Python values handed to Spark as literals keep their categories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import py4j.java_gateway
import py4j.protocol
import pytest
from purposeguard.integrations import spark as pg_spark
from pyspark.sql import functions as F

import purposeguard as pg
from purposeguard._context import MIXED_TENANT

ADDRESS = "someone@contoso.example"


def test_a_labelled_value_made_a_literal_labels_the_column(spark: Any) -> None:
    frame = spark.range(3)
    address = pg.label(ADDRESS, "customer_data", tenant="contoso")
    for made in (
        frame.withColumn("email", F.lit(address)),
        frame.select(F.concat(F.lit("to: "), F.lit(address)).alias("line")),
        frame.select(F.when(F.col("id") > 1, address).otherwise("nobody").alias("email")),
        spark.createDataFrame([(None,)], "email string").fillna(address),
    ):
        assert pg.labels_of(made) == {"customer_data"}
        # Its tenant is not kept in the plan: several tenants' data, which
        # no one tenant's consent releases.
        assert pg.tenant_of(made) == MIXED_TENANT
    # Only the column made from it.
    with_literal = frame.withColumn("email", F.lit(address))
    assert pg.labels_of(with_literal.select("id")) == frozenset()
    # A plain literal, or a filter by the value (it picks rows), carries nothing.
    assert pg.labels_of(frame.withColumn("note", F.lit("plain text"))) == frozenset()
    assert pg.labels_of(frame.filter(F.col("id").cast("string") == F.lit(address))) == frozenset()


def test_a_literal_written_to_an_ad_table_is_refused(spark: Any, ads_policy: Path) -> None:
    address = pg.label(ADDRESS, "customer_data")
    made = spark.range(2).withColumn("email", F.lit(address))
    with pytest.raises(pg.PurposeViolation) as refused:
        made.write.saveAsTable("ads_literals")
    assert {(v.via, v.category) for v in refused.value.violations} == {("egress", "customer_data")}
    spark.sql("CREATE TABLE ads_literal_values (b STRING) USING parquet")
    try:
        # A Column literal as a SQL parameter: its label stays in Python, the text is noted.
        with pytest.raises(pg.PurposeViolation):
            spark.sql("INSERT INTO ads_literal_values VALUES (:a)", {"a": F.lit(address)})
        assert spark.table("ads_literal_values").count() == 0
    finally:
        spark.sql("DROP TABLE ads_literal_values")


def test_uninstrument_stops_noting_what_is_sent(spark: Any) -> None:
    patched = py4j.java_gateway.get_command_part
    pg_spark.uninstrument()
    try:
        assert py4j.java_gateway.get_command_part is not patched
        assert py4j.java_gateway.get_command_part is py4j.protocol.get_command_part
        fresh = pg.label("other@contoso.example", "customer_data")
        assert pg.labels_of(spark.range(1).withColumn("e", F.lit(fresh))) == frozenset()
    finally:
        pg_spark.instrument()
    assert hasattr(py4j.java_gateway.get_command_part, "__pg_original__")


def test_sql_text_built_with_a_labelled_value_labels_its_literals(spark: Any) -> None:
    address = pg.label("builder@contoso.example", "customer_data")
    assert pg.labels_of(spark.sql("SELECT '" + address + "' AS e")) == {"customer_data"}
    assert pg.labels_of(spark.range(1).select(F.expr("'" + address + "'").alias("e"))) == {"customer_data"}
    assert pg.labels_of(spark.range(1).selectExpr("concat('to: ', '" + address + "') AS e")) == {
        "customer_data"
    }


def test_short_labelled_texts_are_not_noted(spark: Any) -> None:
    # Noted, every plain '' or 'US' in the session would read labelled.
    for short in ("", "US", " x "):
        spark.range(1).withColumn("c", F.lit(pg.label(short, "customer_data")))
    for plain in ("", "US"):
        assert pg.labels_of(spark.range(1).withColumn("c", F.lit(plain))) == frozenset()
