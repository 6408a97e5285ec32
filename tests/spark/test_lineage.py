"""Labels follow the data through a Spark job, derived from Spark's own plan."""

from __future__ import annotations

from typing import Any

import pytest
from purposeguard.integrations import spark as pg_spark
from pyspark.sql import functions as F
from pyspark.sql.types import StringType
from pyspark.sql.window import Window

import purposeguard as pg

EMAIL = "customer_data.content.email"


def projection(mail: Any, spark: Any) -> Any:
    return mail.select("id", "body")


def alias(mail: Any, spark: Any) -> Any:
    return mail.select(F.col("body").alias("text"))


def expression(mail: Any, spark: Any) -> Any:
    return mail.select(F.concat(F.upper(F.col("body")), F.lit("!")).alias("shout"))


def join(mail: Any, spark: Any) -> Any:
    audiences = spark.createDataFrame([("contoso", "a1"), ("fabrikam", "a2")], ["tenant", "audience"])
    return audiences.join(mail, "tenant").select("audience", "body")


def union(mail: Any, spark: Any) -> Any:
    other = spark.createDataFrame([("x",)], ["note"])
    return other.union(mail.select("body"))


def aggregation(mail: Any, spark: Any) -> Any:
    return mail.groupBy("tenant").agg(F.collect_list("body").alias("bodies"))


def window(mail: Any, spark: Any) -> Any:
    by_tenant = Window.partitionBy("tenant").orderBy("id")
    return mail.select("id", F.lag("body").over(by_tenant).alias("previous"))


def udf(mail: Any, spark: Any) -> Any:
    first_word = F.udf(lambda text: text.split()[0], StringType())
    return mail.select(first_word("body").alias("word"))


def sql(mail: Any, spark: Any) -> Any:
    mail.createOrReplaceTempView("mail")
    return spark.sql("SELECT lower(body) AS quiet FROM mail WHERE size > 0")


KINDS = [projection, alias, expression, join, union, aggregation, window, udf, sql]


@pytest.mark.parametrize("kind", KINDS, ids=[k.__name__ for k in KINDS])
def test_derived_columns_carry_their_inputs_categories(kind: Any, mail: Any, spark: Any) -> None:
    derived = kind(mail, spark)
    assert EMAIL in pg.labels_of(derived)


def test_columns_without_labelled_inputs_stay_unlabelled(mail: Any) -> None:
    counts = mail.groupBy("tenant", "day").agg(F.count("*").alias("messages"), F.sum("size").alias("bytes"))
    assert pg.labels_of(counts) == frozenset()
    assert pg_spark.lineage(counts).categories == (frozenset(), frozenset(), frozenset(), frozenset())


def test_each_column_carries_only_its_own_lineage(mail: Any) -> None:
    found = pg_spark.lineage(mail.select("id", F.upper("sender").alias("who"), "body", "size"))
    assert found.names == ("id", "who", "body", "size")
    assert found.categories == (frozenset(), frozenset({"customer_data"}), frozenset({EMAIL}), frozenset())


def test_labels_of_a_column(mail: Any) -> None:
    assert pg.labels_of(mail["body"]) == frozenset({EMAIL})
    assert pg.labels_of(mail["size"]) == frozenset()
    derived = mail.select(F.concat("body", "id").alias("both"))
    assert pg.labels_of(derived["both"]) == frozenset({EMAIL})


def test_union_merges_columns_by_position(mail: Any, spark: Any) -> None:
    other = spark.createDataFrame([("x", "y")], ["a", "b"])
    merged = other.union(mail.select("id", "body"))
    assert pg_spark.lineage(merged).categories == (frozenset(), frozenset({EMAIL}))


def test_spark_keeps_the_metadata_of_simple_projections(mail: Any) -> None:
    field = mail.select("body").schema["body"]
    assert field.metadata["purposeguard"]["categories"] == [EMAIL]


def test_labels_written_to_files_come_back(mail: Any, spark: Any, tmp_path: Any) -> None:
    mail.select("id", "body").write.parquet(str(tmp_path / "mail"))
    again = spark.read.parquet(str(tmp_path / "mail"))
    assert pg.labels_of(again) == frozenset({EMAIL})


def test_a_plan_that_cannot_be_read_carries_every_category(
    mail: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    derived = mail.select(F.upper("body").alias("loud"), "size")

    def broken(self: Any, jplan: Any) -> None:
        raise RuntimeError("unreadable plan")

    monkeypatch.setattr(pg_spark._Plan, "__init__", broken)
    monkeypatch.setattr(pg_spark, "_LINEAGE", pg_spark.weakref.WeakKeyDictionary())
    found = pg_spark.lineage(derived)
    assert not found.derived
    # The schema no longer shows the email category (upper() dropped it):
    # failing closed takes every category the plan's sources declare.
    assert found.categories == (frozenset({EMAIL, "customer_data"}),) * 2


def test_a_plan_node_read_before_gives_the_same_lineage(mail: Any) -> None:
    """Nodes already read (the same job's earlier step) are not asked again,
    and what they give is what a fresh read gives."""

    def derived() -> Any:
        return mail.groupBy("tenant").agg(F.collect_list("body").alias("b"), F.max("sender").alias("s"))

    pg_spark._NODE_READS.clear()
    fresh = pg_spark.lineage(derived())
    assert pg_spark._NODE_READS
    again = pg_spark.lineage(derived())
    assert again == fresh
    assert fresh.categories == (frozenset(), frozenset({EMAIL}), frozenset({"customer_data"}))


def test_columns_with_dots_and_backticks_in_their_names_are_labelled(raw_mail: Any) -> None:
    odd = raw_mail.select(F.col("body").alias("mail.body"), F.col("id").alias("the `id`"))
    labelled = pg_spark.label_columns(odd, {"mail.body": EMAIL, "the `id`": "customer_data"})
    assert labelled.columns == ["mail.body", "the `id`"]
    assert pg_spark.lineage(labelled.select(F.upper(F.col("`mail.body`")))).categories == (
        frozenset({EMAIL}),
    )
    assert labelled.schema["the `id`"].metadata["purposeguard"]["categories"] == ["customer_data"]
