"""Data that reaches the driver (collect() and its kin) is a read: the zone
learns it, a current purpose is checked against it, and the rows carry their
columns' categories into whatever is built from them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from purposeguard.integrations import spark as pg_spark
from pyspark.sql import functions as F

import purposeguard as pg
from purposeguard.consent import ConsentStore

pytestmark = [
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
    # PySpark 4's toPandas() passes pandas 3 a keyword it deprecates.
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
    # toJSON() says its return type will change; what it returns now is read here.
    pytest.mark.filterwarnings("ignore:The return type of DataFrame.toJSON:UserWarning"),
]

EMAIL = "customer_data.content.email"
TEXT = "Body of message"  # what every message body starts with: never in a violation


def _plain_text(values: list[Any]) -> str:
    # An f-string that adds text gives a plain str: only the zone still knows.
    return "|".join(f"<{value}>" for value in values)


READS: dict[str, Callable[[Any], list[Any]]] = {
    "collect": lambda frame: [r.body for r in frame.collect()],
    "take": lambda frame: [r.body for r in frame.take(2)],
    "first": lambda frame: [frame.first().body],
    "tail": lambda frame: [r.body for r in frame.tail(1)],
    "toLocalIterator": lambda frame: [r.body for r in frame.toLocalIterator()],
    "toPandas": lambda frame: list(frame.toPandas()["body"]),
    "toArrow": lambda frame: frame.toArrow().column("body").to_pylist(),
    "rdd": lambda frame: [r.body for r in frame.rdd.collect()],
    "toJSON": lambda frame: frame.toJSON().collect(),
}


@pytest.fixture
def strict() -> pg.Guard:
    return pg.configure("trust-center", mode="enforce", context_mode="enforce")


@pg.purpose("advertising")
def build_audience(data: Any) -> int:
    return len(data) if isinstance(data, str) else int(data.count())


def _no_value_in(error: pg.PurposeViolation) -> None:
    shown = str(error) + repr(error.violations) + repr([v.to_dict() for v in error.violations])
    assert TEXT not in shown


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
def test_data_read_into_the_driver_inside_a_zone_is_refused_to_a_forbidden_purpose(
    read: Callable[[Any], list[Any]], mail: Any, strict: pg.Guard
) -> None:
    """Labelled before the zone opened: the read itself tells the zone."""
    with pg.zone():
        text = _plain_text(read(mail.select("id", "body")))
        assert TEXT in text and pg.labels_of(text) == frozenset()
        with pytest.raises(pg.PurposeViolation) as refused:
            build_audience(text)
    assert {(v.via, v.category) for v in refused.value.violations} == {("context", EMAIL)}
    _no_value_in(refused.value)


def _rows(frame: Any, spark: Any) -> Any:
    return spark.createDataFrame(frame.collect())


def _values_read(frame: Any, spark: Any) -> Any:
    return spark.createDataFrame([(r.id, r.body.upper()) for r in frame.collect()], ["who", "words"])


def _pandas(frame: Any, spark: Any) -> Any:
    return spark.createDataFrame(frame.toPandas())


def _pandas_derived(frame: Any, spark: Any) -> Any:
    # A column made in pandas may hold any column's values: it carries them all.
    local = frame.toPandas()
    return spark.createDataFrame(local.assign(words=local["body"].str.upper())[["id", "words"]])


def _arrow(frame: Any, spark: Any) -> Any:
    return spark.createDataFrame(frame.toArrow())


def _mapped_rdd(frame: Any, spark: Any) -> Any:
    return frame.rdd.map(lambda r: (r.id, r.body)).toDF(["who", "words"])


def _parallelized(frame: Any, spark: Any) -> Any:
    return spark.sparkContext.parallelize(frame.collect()).toDF()


REBUILT = {
    "rows": _rows,
    "values_read": _values_read,
    "pandas": _pandas,
    "pandas_derived": _pandas_derived,
    "arrow": _arrow,
    "mapped_rdd": _mapped_rdd,
    "parallelized": _parallelized,
}


@pytest.mark.parametrize("zoned", [False, True], ids=["no_zone", "zone"])
@pytest.mark.parametrize("rebuild", REBUILT.values(), ids=REBUILT.keys())
def test_a_dataframe_rebuilt_from_collected_data_keeps_its_categories(
    rebuild: Callable[[Any, Any], Any], zoned: bool, mail: Any, spark: Any, strict: pg.Guard
) -> None:
    ran = []

    @pg.purpose("advertising")
    def audience(frame: Any) -> None:
        ran.append(frame)

    with pg.zone() if zoned else contextlib.nullcontext(), pytest.raises(pg.PurposeViolation) as refused:
        rebuilt = rebuild(mail.select("id", "body"), spark)
        assert EMAIL in pg.labels_of(rebuilt)
        audience(rebuilt)
    assert ran == []
    assert EMAIL in {v.category for v in refused.value.violations}
    assert "argument" in {v.via for v in refused.value.violations}
    _no_value_in(refused.value)


def test_a_labelled_parquet_file_read_back_collected_and_rebuilt_is_refused(
    mail: Any, spark: Any, strict: pg.Guard, tmp_path: Path
) -> None:
    """As a job does it: a labelled copy written, read back in a zone, its rows
    collected and made into a new DataFrame for an advertising function."""
    mail.write.parquet(str(tmp_path / "mail.parquet"))
    with pg.zone(), pytest.raises(pg.PurposeViolation) as refused:
        again = spark.read.parquet(str(tmp_path / "mail.parquet"))
        build_audience(spark.createDataFrame(again.select("sender", "body").collect()))
    assert EMAIL in {v.category for v in refused.value.violations}


def test_collected_rows_carry_categories_and_each_row_s_tenant(mail: Any, strict: pg.Guard) -> None:
    rows = mail.select("tenant", "body", "size").collect()
    for row in rows[:4]:
        assert pg.labels_of(row) == frozenset({EMAIL})
        assert pg.labels_of(row.body) == pg.labels_of(row["body"]) == pg.labels_of(row[1]) == {EMAIL}
        assert pg.tenant_of(row.body) == row.tenant
        assert pg.labels_of(row.asDict()["body"]) == {EMAIL}
        assert pg.labels_of(row.tenant) == frozenset()
    # Values compare equal to what Spark made; unlabelled columns stay as they were.
    assert rows[0] == tuple(rows[0]) and type(rows[0].size) is int
    # The rows go back into Spark (labels taken off for it, put on the columns).
    again = mail.sparkSession.createDataFrame(rows)
    assert pg_spark.lineage(again).categories == (frozenset(), frozenset({EMAIL}), frozenset())
    assert again.count() == 40


def test_reading_is_a_use_under_the_current_purpose(mail: Any) -> None:
    pg.configure("trust-center", mode="trace")
    with pg.testing.capture() as seen, pg.purpose("advertising"):
        mail.select("body").toPandas()
    assert {(v.via, v.category, v.function.rsplit(".", 1)[-1]) for v in seen} == {
        ("source", EMAIL, "test_reading_is_a_use_under_the_current_purpose")
    }
    pg.configure("trust-center", mode="enforce")
    with pg.purpose("advertising"), pytest.raises(pg.PurposeViolation) as refused:
        mail.select("body").collect()
    assert {v.via for v in refused.value.violations} == {"source"}


def test_the_allowed_path_passes(mail: Any, strict: pg.Guard) -> None:
    @pg.purpose("service.security")
    def scan(frame: Any) -> list[str]:
        return [r.body for r in frame.filter(F.col("size") > 1500).collect()]

    @pg.purpose("service.security")
    def report(found: list[str]) -> int:
        return len(found)

    with pg.testing.capture() as seen, pg.zone():
        assert report(scan(mail)) == 10
        assert report([_plain_text(scan(mail))]) == 1
    assert seen == []


def test_consented_rows_read_in_a_zone_stay_covered_for_their_purpose(mail: Any) -> None:
    """Rows of the consenting tenants only: the zone learns them as those
    tenants' data, and their consent still covers the next step."""
    consents = ConsentStore(":memory:")
    consents.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    pg.configure("trust-center", mode="enforce", context_mode="enforce", consents=consents)

    @pg.purpose("improvement")
    def lengths(frame: Any) -> list[Any]:
        return frame.groupBy("tenant").agg(F.avg(F.length("body")).alias("average")).collect()

    try:
        with pg.testing.capture() as seen, pg.zone():
            first = lengths(pg_spark.consented(mail, "improvement"))
            assert [r.tenant for r in first] == ["contoso"]
            assert lengths(pg_spark.consented(mail, "improvement")) == first
        assert seen == []
        with pg.zone(), pytest.raises(pg.PurposeViolation) as refused:
            lengths(pg_spark.consented(mail, "improvement"))
            build_audience(_plain_text([1]))
        assert {(v.via, v.purpose) for v in refused.value.violations} == {("context", "advertising")}
    finally:
        consents.close()


def test_foreach_under_a_purpose_gives_the_workers_labelled_rows(mail: Any, spark: Any) -> None:
    seen = spark.sparkContext.accumulator(0)

    def look(row: Any) -> None:
        if pg.current_purpose() == "service.security" and pg.labels_of(row.body) == {EMAIL}:
            seen.add(1)

    with pg.purpose("service.security"):
        mail.foreach(look)
    assert seen.value == 40


def test_uninstrument_restores_the_actions() -> None:
    from pyspark.sql.classic.dataframe import DataFrame
    from pyspark.sql.session import SparkSession

    patched = (DataFrame.collect, DataFrame.__dict__["rdd"], SparkSession.createDataFrame)
    pg_spark.uninstrument()
    try:
        restored = (DataFrame.collect, DataFrame.__dict__["rdd"], SparkSession.createDataFrame)
        assert all(a is not b for a, b in zip(patched, restored, strict=True))
        assert type(DataFrame.__dict__["rdd"]).__name__ == "cached_property"
    finally:
        pg_spark.instrument()


def test_a_projection_without_the_tenant_column_is_still_several_tenants_data(mail: Any) -> None:
    """One tenant's consent, in that tenant's zone, never covers every
    tenant's rows because the tenant column was left out of a select."""
    consents = ConsentStore(":memory:")
    consents.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    pg.configure("trust-center", mode="enforce", context_mode="enforce", consents=consents)

    @pg.purpose("improvement")
    def lengths(frame: Any) -> list[int]:
        return [len(r.body) for r in frame.collect()]

    try:
        with pg.zone(tenant="contoso"), pytest.raises(pg.PurposeViolation) as refused:
            lengths(mail.select("body"))
        assert {(v.via, v.tenant) for v in refused.value.violations} == {("argument", "(several tenants)")}
        with pg.zone(tenant="contoso"):
            assert len(lengths(pg_spark.consented(mail, "improvement").select("body"))) == 10
    finally:
        consents.close()


def test_to_json_as_a_dataframe_carries_every_category(mail: Any, spark: Any) -> None:
    """Spark serializes the rows by position, with no column reference to
    follow: the JSON text carries every category of the plan (fail closed)."""
    spark.conf.set("spark.sql.pyspark.toJSON.returnDataFrame", "true")
    try:
        as_json = mail.select("id", "body").toJSON()
        assert pg_spark.lineage(as_json).categories == (frozenset({EMAIL, "customer_data"}),)
    finally:
        spark.conf.unset("spark.sql.pyspark.toJSON.returnDataFrame")


def test_rows_read_under_a_consented_purpose_keep_every_category(
    mail: Any, spark: Any, tmp_path: Path
) -> None:
    """Consent covers the read, not what is built from it: the rows, the
    pandas and Arrow copies and a DataFrame made from them still carry the
    categories, a later use for the same purpose is decided by consent with
    each row's tenant, and a copy written and read back is refused to
    advertising."""
    consents = ConsentStore(":memory:")
    consents.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    pg.configure("trust-center", mode="enforce", context_mode="enforce", consents=consents)
    out = str(tmp_path / "improved.parquet")

    @pg.purpose("improvement")
    def summary(body: str) -> int:
        return len(body)

    @pg.purpose("improvement")
    def improve(frame: Any) -> tuple[list[Any], Any, Any]:
        rows = frame.select("tenant", "body").collect()
        assert {r.tenant for r in rows} == {"contoso"}
        assert all(summary(r.body) > 0 for r in rows)  # contoso's consent, at this use
        rebuilt = spark.createDataFrame(rows)
        assert EMAIL in pg.labels_of(rebuilt)
        pg_spark.consented(rebuilt, "improvement").write.parquet(out)
        return rows, frame.toPandas(), frame.toArrow()

    try:
        with pg.testing.capture() as seen:
            rows, local, table = improve(pg_spark.consented(mail, "improvement"))
        assert seen == []
        assert pg.labels_of(rows[0]) == pg.labels_of(rows[0].body) == {EMAIL}
        assert pg.tenant_of(rows[0].body) == "contoso"
        assert local.attrs["purposeguard"]["columns"]["body"] == [EMAIL]
        for made in (spark.createDataFrame(rows), spark.createDataFrame(local), spark.createDataFrame(table)):
            with pytest.raises(pg.PurposeViolation):
                build_audience(made)
        with pytest.raises(pg.PurposeViolation) as refused:
            build_audience(spark.read.parquet(out))
        assert {(v.category, v.purpose) for v in refused.value.violations} == {(EMAIL, "advertising")}
        with pytest.raises(pg.PurposeViolation):
            build_audience(rows[0].body)
    finally:
        consents.close()


@pytest.mark.parametrize("each", [True, False], ids=["foreach", "foreachPartition"])
def test_foreach_without_a_purpose_gives_the_workers_labelled_rows(each: bool, mail: Any, spark: Any) -> None:
    seen = spark.sparkContext.accumulator(0)

    def look(row: Any) -> None:
        if pg.current_purpose() is None and pg.labels_of(row.body) == {EMAIL}:
            seen.add(1)

    def look_all(rows: Any) -> None:
        for row in rows:
            look(row)

    if each:
        mail.foreach(look)
    else:
        mail.foreachPartition(look_all)
    assert seen.value == 40


def test_a_struct_column_s_fields_carry_its_categories_outside_a_zone(mail: Any, strict: pg.Guard) -> None:
    rows = mail.select("tenant", F.struct("id", "body").alias("s")).collect()
    row = rows[0]
    assert pg.labels_of(row.s) == pg.labels_of(row.s.body) == {EMAIL}
    assert pg.tenant_of(row.s.body) == row.tenant
    assert pg.labels_of(row.asDict(True)["s"]["body"]) == {EMAIL}
    assert pg.labels_of(row["s"][1]) == {EMAIL}
    with pytest.raises(pg.PurposeViolation):
        build_audience(row.s.body)
    # The outer row keeps the struct Spark made: the rows go back in as they came.
    again = mail.sparkSession.createDataFrame(rows)
    assert EMAIL in pg.labels_of(again) and again.count() == 40


RDD_READS: dict[str, Callable[[Any], list[Any]]] = {
    "take": lambda rdd: rdd.take(2),
    "first": lambda rdd: [rdd.first()],
    "toLocalIterator": lambda rdd: list(rdd.toLocalIterator()),
    "takeSample": lambda rdd: rdd.takeSample(False, 2, seed=1),
    "takeOrdered": lambda rdd: rdd.takeOrdered(2, key=lambda row: row.body),
    "top": lambda rdd: rdd.top(2, key=lambda row: row.body),
    "filter": lambda rdd: rdd.filter(lambda row: row.body is not None).collect(),
    "sample": lambda rdd: rdd.sample(False, 0.5, seed=1).collect(),
    "distinct": lambda rdd: rdd.distinct().collect(),
    "repartition": lambda rdd: rdd.repartition(2).collect(),
    "cache": lambda rdd: rdd.cache().collect(),
    "sortBy": lambda rdd: rdd.sortBy(lambda row: row.body).take(2),
    "randomSplit": lambda rdd: rdd.randomSplit([0.5, 0.5], seed=1)[0].collect(),
    "coalesce": lambda rdd: rdd.coalesce(1).collect(),
    "persist": lambda rdd: rdd.persist().take(2),
    "subtract": lambda rdd: rdd.subtract(rdd.filter(lambda row: False)).collect(),
    "max": lambda rdd: [rdd.max(key=lambda row: row.body)],
    "min": lambda rdd: [rdd.min(key=lambda row: row.body)],
    "union": lambda rdd: rdd.union(rdd.filter(lambda row: True)).collect(),
    "intersection": lambda rdd: rdd.intersection(rdd.sample(False, 0.5, seed=1)).collect(),
}


@pytest.mark.parametrize("read", RDD_READS.values(), ids=RDD_READS.keys())
def test_rows_an_rdd_action_brings_from_a_dataframe_s_rdd_are_labelled(
    read: Callable[[Any], list[Any]], mail: Any, strict: pg.Guard
) -> None:
    rows = read(mail.select("tenant", "body").rdd)
    assert rows
    for row in rows:
        assert pg.labels_of(row) == pg.labels_of(row.body) == {EMAIL}
        assert pg.tenant_of(row.body) == row.tenant
    with pytest.raises(pg.PurposeViolation) as refused:
        build_audience(rows[0].body)
    _no_value_in(refused.value)


def test_an_rdd_mapped_from_a_dataframe_s_rows_is_not_taken_for_them(mail: Any, strict: pg.Guard) -> None:
    # Its function made what it holds: not rows of the frame's columns.
    taken = mail.select("tenant", "body").rdd.map(lambda row: (row.tenant, len(row.body))).take(2)
    assert all(type(item) is tuple for item in taken)


def test_a_union_with_another_frame_s_rows_is_not_given_either_frame_s_labels(
    mail: Any, strict: pg.Guard
) -> None:
    # Rows of two frames (other columns): neither frame's row class fits both.
    ids = mail.select("id").rdd
    rows = mail.select("tenant", "body").rdd.union(ids).collect()
    assert any(not pg.labels_of(row) for row in rows if len(row) == 1)


def test_rows_of_a_dataframe_s_rdd_carry_its_categories_outside_a_zone(mail: Any, strict: pg.Guard) -> None:
    rows = mail.select("tenant", "body").rdd.collect()
    assert pg.labels_of(rows[0]) == pg.labels_of(rows[0].body) == {EMAIL}
    assert pg.tenant_of(rows[0].body) == rows[0].tenant
    with pytest.raises(pg.PurposeViolation):
        build_audience(rows[0].body)


def test_rows_a_window_combined_across_tenants_name_no_one_tenant(mail: Any) -> None:
    """Collected after a window over every tenant's rows, a row of contoso's
    holds another tenant's body too: its values and the zone name several
    tenants, whatever the tenant column says."""
    from pyspark.sql import Window

    previous = mail.withColumn("previous_body", F.lag("body").over(Window.orderBy("id")))
    with pg.zone(tenant="contoso") as reading:
        rows = previous.where(F.col("tenant") == "contoso").select("tenant", "previous_body").collect()
    assert {row.tenant for row in rows} == {"contoso"}
    assert pg.tenant_of(rows[1].previous_body) != "contoso"
    assert "(several tenants)" in reading.owners
    # Partitioned by the tenant column, the tenant column still says whose rows they are.
    own = mail.withColumn("previous_body", F.lag("body").over(Window.partitionBy("tenant").orderBy("id")))
    with pg.zone(tenant="contoso") as reading:
        rows = own.where(F.col("tenant") == "contoso").select("tenant", "previous_body").collect()
    assert pg.tenant_of(rows[1].previous_body) == "contoso"
    assert "(several tenants)" not in reading.owners
