"""Purposes on Spark jobs: DataFrame arguments, UDFs in the workers, writes as egress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from purposeguard.integrations import spark as pg_spark
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

import purposeguard as pg

from .test_lineage import KINDS

EMAIL = "customer_data.content.email"


@pytest.mark.parametrize("kind", KINDS, ids=[k.__name__ for k in KINDS])
def test_a_forbidden_flow_through_each_transformation_is_refused_in_enforce_mode(
    kind: Any, mail: Any, spark: Any, enforce: pg.Guard
) -> None:
    ran = []

    @pg.purpose("advertising")
    def build_audience(frame: Any) -> None:
        ran.append(frame)

    with pg.testing.capture() as seen, pytest.raises(pg.PurposeViolation) as refused:
        build_audience(kind(mail, spark))
    assert ran == []
    assert EMAIL in {v.category for v in refused.value.violations}
    assert {(v.via, v.mode, v.rule) for v in seen} == {("argument", "enforce", "no-advertising")}


@pytest.mark.parametrize("kind", KINDS, ids=[k.__name__ for k in KINDS])
def test_a_forbidden_flow_through_each_transformation_is_recorded_in_trace_mode(
    kind: Any, mail: Any, spark: Any
) -> None:
    pg.configure("trust-center", mode="trace")
    ran = []

    @pg.purpose("advertising")
    def build_audience(frame: Any) -> None:
        ran.append(frame)

    with pg.testing.capture() as seen:
        build_audience(kind(mail, spark))
    assert len(ran) == 1
    assert EMAIL in {v.category for v in seen}
    assert {(v.via, v.mode, v.function.rsplit(".", 1)[-1]) for v in seen} == {
        ("argument", "trace", "build_audience")
    }


def test_an_allowed_purpose_receives_labelled_data(mail: Any, enforce: pg.Guard) -> None:
    @pg.purpose("service.security")
    def scan(frame: Any) -> int:
        return int(frame.filter(F.col("body").contains("numbers")).count())

    with pg.testing.capture() as seen:
        assert scan(mail) == 40
    assert seen == []


def test_unlabelled_data_passes_any_purpose(raw_mail: Any, enforce: pg.Guard) -> None:
    @pg.purpose("advertising")
    def build_audience(frame: Any) -> list[str]:
        return sorted(r.tenant for r in frame.select("tenant").distinct().collect())

    assert build_audience(raw_mail.select("tenant")) == ["contoso", "fabrikam", "northwind", "tailspin"]


def test_a_dataframe_returned_to_a_purpose_is_checked(mail: Any, enforce: pg.Guard) -> None:
    @pg.purpose("advertising")
    def audience() -> Any:
        return mail.select(F.upper("body").alias("interests"))

    with pytest.raises(pg.PurposeViolation) as refused:
        audience()
    assert {v.via for v in refused.value.violations} == {"return"}


def test_the_jobs_zone_is_checked(raw_mail: Any) -> None:
    """Labelling inside a job's zone puts the categories into the zone; a later
    purpose sees them even on values that lost them (collected, rebuilt)."""
    pg.configure("trust-center", mode="enforce", context_mode="enforce")

    @pg.purpose("advertising")
    def build_audience(rows: list[str]) -> None: ...

    with pg.zone(), pytest.raises(pg.PurposeViolation) as refused:
        labelled = pg_spark.label_columns(raw_mail, {"body": EMAIL}, tenant_column="tenant")
        # An f-string that adds text makes a plain str: only the zone knows.
        rebuilt = [f"<{r.body}>" for r in labelled.select("body").limit(2).collect()]
        build_audience(rebuilt)
    assert {v.via for v in refused.value.violations} == {"context"}


def test_label_puts_categories_on_every_column(raw_mail: Any) -> None:
    frame = pg.label(raw_mail.select("id", "size"), "payment_data")
    assert pg_spark.lineage(frame).categories == (frozenset({"payment_data"}),) * 2


# -- UDFs ------------------------------------------------------------------------------------------


def _purpose_in_worker(text):  # type: ignore[no-untyped-def]  # PySpark reads UDF annotations as pandas hints
    return f"{pg.current_purpose()}"


def test_a_udf_runs_with_the_purpose_current_where_it_was_defined(raw_mail: Any) -> None:
    with pg.purpose("service.security"):
        where_defined = F.udf(_purpose_in_worker, StringType())
    rows = raw_mail.select(where_defined("body").alias("p")).distinct().collect()
    assert [r.p for r in rows] == ["service.security"]


def test_a_udf_defined_outside_any_purpose_runs_without_one(raw_mail: Any) -> None:
    plain = F.udf(_purpose_in_worker, StringType())
    with pg.purpose("service.security"):
        rows = raw_mail.select(plain("body").alias("p")).distinct().collect()
    assert [r.p for r in rows] == ["None"]


def test_a_purpose_inside_a_udf_is_checked_in_the_worker(raw_mail: Any) -> None:
    """The worker knows the purpose: a guarded call there with labelled data
    for a forbidden purpose fails the task."""

    def profile(text):  # type: ignore[no-untyped-def]
        @pg.purpose("advertising")
        def interests(value: str) -> str:
            return value[:3]

        return interests(pg.label(text, EMAIL))

    with pg.purpose("service.operations"):
        as_udf = F.udf(profile, StringType())
    with pytest.raises(Exception, match="PurposeViolation"):
        raw_mail.select(as_udf("body")).collect()


# -- writes ----------------------------------------------------------------------------------------


def test_writing_labelled_data_to_an_ad_path_is_refused(mail: Any, ads_policy: Path) -> None:
    target = ads_policy / "ads" / "audience"
    with pytest.raises(pg.PurposeViolation) as refused:
        mail.select("tenant", "body").write.parquet(str(target))
    assert {(v.via, v.purpose) for v in refused.value.violations} == {("egress", "advertising")}
    assert not target.exists()


def test_writing_labelled_data_to_an_ad_table_is_refused(mail: Any, ads_policy: Path) -> None:
    with pytest.raises(pg.PurposeViolation) as refused:
        mail.select(F.upper("body").alias("b")).write.saveAsTable("ads_audience")
    assert {v.via for v in refused.value.violations} == {"egress"}


def test_writing_is_recorded_in_trace_mode(mail: Any, ads_policy: Path, spark: Any) -> None:
    pg.configure(pg.get_guard().policy, mode="trace")
    target = ads_policy / "ads" / "traced"
    with pg.testing.capture() as seen:
        mail.select("body").write.mode("overwrite").save(str(target), format="json")
    assert {(v.via, v.mode) for v in seen} == {("egress", "trace")}
    assert spark.read.json(str(target)).count() == 40


def test_unlabelled_data_may_go_to_an_ad_path(mail: Any, ads_policy: Path, spark: Any) -> None:
    target = ads_policy / "ads" / "counts"
    mail.groupBy("day").count().write.csv(str(target))
    assert spark.read.csv(str(target)).count() == 3


def test_other_paths_are_checked_against_the_current_purpose(mail: Any, ads_policy: Path) -> None:
    with pg.purpose("service.operations"):
        mail.select("body").write.parquet(str(ads_policy / "backup"))
    with pg.purpose("marketing.direct"), pytest.raises(pg.PurposeViolation):
        mail.select("body").write.parquet(str(ads_policy / "campaign"))


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        ('paths = []\npurpose = "advertising"', "paths", "non-empty"),
        ('tables = [1]\npurpose = "advertising"', "tables", "non-empty"),
        ('paths = "s3://x/*"\npurpose = "advertising"', "paths", "non-empty"),
        ('purpose = "advertising"', "hosts", "hosts, paths or tables"),
    ],
)
def test_bad_destination_places_are_policy_errors(entry: str, field: str, words: str) -> None:
    text = '[policy]\nname = "p"\ndefault = "deny"\n\n[[destinations]]\nid = "ads-out"\n' + entry + "\n"
    with pytest.raises(pg.PolicyError) as error:
        pg.Policy.from_toml(text, source="bad.toml")
    message = str(error.value)
    assert "bad.toml" in message and "ads-out" in message and field in message and words in message


def test_a_udf_registered_for_sql_keeps_its_purpose(raw_mail: Any, spark: Any) -> None:
    with pg.purpose("service.operations"):
        spark.udf.register("purpose_here", _purpose_in_worker, StringType())
    raw_mail.createOrReplaceTempView("raw_mail")
    rows = spark.sql("SELECT DISTINCT purpose_here(body) AS p FROM raw_mail").collect()
    assert [r.p for r in rows] == ["service.operations"]


def test_writing_to_an_ad_table_through_write_to_is_refused(mail: Any, ads_policy: Path) -> None:
    with pytest.raises(pg.PurposeViolation) as refused:
        mail.select("body").writeTo("ads_interests").using("parquet").create()
    assert {(v.via, v.purpose) for v in refused.value.violations} == {("egress", "advertising")}


def test_uninstrument_restores_pyspark(raw_mail: Any) -> None:
    from pyspark.sql import readwriter

    patched = readwriter.DataFrameWriter.parquet
    pg_spark.uninstrument()
    try:
        assert readwriter.DataFrameWriter.parquet is not patched
        assert not pg_spark.is_instrumented()
    finally:
        pg_spark.instrument()
    assert pg_spark.is_instrumented()
    pg_spark.instrument()  # idempotent
    assert readwriter.DataFrameWriter.parquet.__name__ == "parquet"


def test_a_worker_decides_by_the_driver_s_policy_file(raw_mail: Any, tmp_path: Path) -> None:
    """The driver traces advertising; the UDF's guarded call in the worker
    traces too instead of failing the task under the worker's default."""
    from importlib import resources

    pack = resources.files("purposeguard.packs").joinpath("trust-center.toml").read_text(encoding="utf-8")
    path = tmp_path / "policy.toml"
    path.write_text(pack, encoding="utf-8")
    pg.configure(str(path), mode="trace")

    def profile(text):  # type: ignore[no-untyped-def]
        @pg.purpose("advertising")
        def interests(value):  # type: ignore[no-untyped-def]
            return f"{pg.current_purpose()}:{pg.get_guard().mode}:{pg.get_guard().policy.source == str(path)}"

        return interests(pg.label(text, EMAIL))

    with pg.purpose("service.operations"):
        as_udf = F.udf(profile, StringType())
    rows = raw_mail.select(as_udf("body").alias("p")).distinct().collect()
    assert [r.p for r in rows] == ["advertising:trace:True"]


def test_a_path_given_any_way_is_where_the_write_goes(mail: Any, ads_policy: Path) -> None:
    ads = ads_policy / "ads"
    writes = [
        # Among saveAsTable's own options.
        lambda: mail.select("body").write.saveAsTable("backup_options", path=str(ads / "table")),
        # Spark reads its options without case.
        lambda: mail.select("body").write.save(format="parquet", PATH=str(ads / "shouted")),
        # The destination's folder itself: the part files land in it.
        lambda: mail.select("body").write.mode("append").parquet(str(ads)),
    ]
    for write in writes:
        with pytest.raises(pg.PurposeViolation):
            write()
    assert not (ads / "table").exists() and not (ads / "shouted").exists()
    assert not ads.exists() or not any(ads.iterdir())


def test_a_streaming_query_s_sink_is_checked_as_it_starts(spark: Any, mail: Any, ads_policy: Path) -> None:
    mail.select("body", "tenant").write.parquet(str(ads_policy / "source"))
    stream = spark.readStream.schema(mail.select("body", "tenant").schema).parquet(str(ads_policy / "source"))
    labelled = pg_spark.label_columns(stream, {"body": EMAIL}, tenant_column="tenant")
    checkpoint = str(ads_policy / "checkpoint")
    with pytest.raises(pg.PurposeViolation):
        labelled.writeStream.format("parquet").option("checkpointLocation", checkpoint).start(
            str(ads_policy / "ads" / "stream")
        )
    with pytest.raises(pg.PurposeViolation):
        labelled.writeStream.option("checkpointLocation", checkpoint).toTable("ads_stream")
    assert not (ads_policy / "ads" / "stream").exists()


def test_an_rdd_of_labelled_rows_saved_to_an_ad_path_is_refused(mail: Any, ads_policy: Path) -> None:
    target = ads_policy / "ads" / "rdd"
    with pytest.raises(pg.PurposeViolation):
        mail.rdd.map(lambda row: row.body).saveAsTextFile(str(target))
    with pytest.warns(UserWarning, match="toJSON"):
        as_json = mail.toJSON()
    with pytest.raises(pg.PurposeViolation):
        as_json.saveAsTextFile(str(target))
    assert not target.exists()


def test_a_format_that_keeps_no_metadata_is_said_to_leave_labels_behind(
    mail: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    pg.configure("trust-center", mode="enforce")
    with caplog.at_level(logging.WARNING, logger="purposeguard"), pg.purpose("service.operations"):
        mail.select("body").write.csv(str(tmp_path / "as-csv"))
        mail.select("body").write.parquet(str(tmp_path / "as-parquet"))
    said = [r.getMessage() for r in caplog.records if "keeps no column metadata" in r.getMessage()]
    assert len(said) == 1 and "as-csv" in said[0] and EMAIL in said[0]
