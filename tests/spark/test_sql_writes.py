"""Writes issued as SQL text (spark.sql): checked as the DataFrame API's writes are."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from purposeguard.integrations import spark as pg_spark
from pyspark.sql import functions as F

import purposeguard as pg

EMAIL = "customer_data.content.email"
SQL = "pyspark.sql.SparkSession.sql"


@pytest.fixture
def names() -> Iterator[dict[str, str]]:
    """Table and view names of this test alone (the session is shared)."""
    suffix = uuid.uuid4().hex[:8]
    yield {"ads": f"ads_{suffix}", "mail": f"mail_{suffix}", "backup": f"backup_{suffix}"}


@pytest.fixture
def mail_view(mail: Any, names: dict[str, str], spark: Any) -> Iterator[str]:
    mail.createOrReplaceTempView(names["mail"])
    yield names["mail"]
    spark.catalog.dropTempView(names["mail"])


def _ads_table(spark: Any, name: str) -> None:
    # A table made without a query writes no data: not checked.
    spark.sql(f"CREATE TABLE {name} (b STRING) USING parquet")


def _refused(run: Any) -> set[tuple[str, str, str]]:
    with pytest.raises(pg.PurposeViolation) as refused:
        run()
    return {(v.via, v.purpose, v.function) for v in refused.value.violations}


EGRESS_TO_ADS = {("egress", "advertising", SQL)}


def test_insert_into_an_ad_table_is_refused_before_spark_writes(
    spark: Any, ads_policy: Path, names: dict[str, str], mail_view: str
) -> None:
    _ads_table(spark, names["ads"])
    statements = [
        f"INSERT INTO {names['ads']} SELECT body FROM {mail_view}",
        f"INSERT OVERWRITE TABLE {names['ads']} SELECT upper(body) FROM {mail_view}",
        f"INSERT INTO {names['ads']} (b) SELECT lower(body) FROM {mail_view}",
        f"FROM {mail_view} INSERT INTO {names['ads']} SELECT body",
        # The query keeps its common table expressions.
        f"WITH m AS (SELECT body FROM {mail_view}) INSERT INTO {names['ads']} SELECT * FROM m",
        # The table named with the catalog and database, and quoted.
        f"INSERT INTO spark_catalog.default.`{names['ads']}` SELECT body FROM {mail_view}",
    ]
    for statement in statements:
        assert _refused(functools.partial(spark.sql, statement)) == EGRESS_TO_ADS, statement
    assert spark.table(names["ads"]).count() == 0


def test_create_table_as_select_to_an_ad_table_is_refused(
    spark: Any, ads_policy: Path, names: dict[str, str], mail_view: str
) -> None:
    for statement in (
        f"CREATE TABLE {names['ads']} USING parquet AS SELECT upper(body) AS b FROM {mail_view}",
        f"CREATE OR REPLACE TABLE {names['ads']} USING parquet AS SELECT body FROM {mail_view}",
    ):
        assert _refused(functools.partial(spark.sql, statement)) == EGRESS_TO_ADS, statement
    assert not spark.catalog.tableExists(names["ads"])


def test_a_table_whose_location_is_an_ad_path_is_refused(
    spark: Any, ads_policy: Path, names: dict[str, str], mail_view: str
) -> None:
    target = ads_policy / "ads" / "located"
    statement = (
        f"CREATE TABLE {names['backup']} USING parquet LOCATION '{target.as_posix()}' "
        f"AS SELECT body FROM {mail_view}"
    )
    assert _refused(lambda: spark.sql(statement)) == EGRESS_TO_ADS
    assert not target.exists()


def test_insert_overwrite_directory_to_an_ad_path_is_refused(
    spark: Any, ads_policy: Path, mail_view: str
) -> None:
    target = ads_policy / "ads" / "export"
    statement = f"INSERT OVERWRITE DIRECTORY '{target.as_posix()}' USING parquet SELECT body FROM {mail_view}"
    assert _refused(lambda: spark.sql(statement)) == EGRESS_TO_ADS
    assert not target.exists()


def test_merge_into_an_ad_table_is_checked_before_spark_reads_it(
    spark: Any, ads_policy: Path, names: dict[str, str], mail_view: str
) -> None:
    _ads_table(spark, names["ads"])
    # (A parquet table cannot be merged into: the check comes first.)
    statement = (
        f"MERGE INTO {names['ads']} t USING (SELECT body AS b FROM {mail_view}) s ON t.b = s.b "
        "WHEN NOT MATCHED THEN INSERT *"
    )
    assert _refused(lambda: spark.sql(statement)) == EGRESS_TO_ADS


def test_parameters_and_formatted_frames_are_read_as_spark_reads_them(
    spark: Any, ads_policy: Path, names: dict[str, str], mail: Any, mail_view: str
) -> None:
    _ads_table(spark, names["ads"])
    ads = names["ads"]
    runs = [
        lambda: spark.sql(
            f"INSERT INTO {ads} SELECT body FROM {mail_view} WHERE tenant = :t", {"t": "contoso"}
        ),
        lambda: spark.sql(f"INSERT INTO {ads} SELECT body FROM {mail_view} WHERE tenant = ?", ["contoso"]),
        lambda: spark.sql(f"INSERT INTO {ads} SELECT body FROM {{frame}}", frame=mail),
    ]
    for run in runs:
        assert _refused(run) == EGRESS_TO_ADS
    assert spark.table(ads).count() == 0
    # Spark still binds them when the statement is allowed (no data labelled).
    spark.sql(f"INSERT INTO {ads} SELECT day FROM {mail_view} WHERE tenant = :t", {"t": "contoso"})
    spark.sql(f"INSERT INTO {ads} SELECT id FROM {{frame}} WHERE size > ?", [1000], frame=mail)
    assert spark.table(ads).count() > 0


def test_a_labelled_value_put_into_the_statement_is_written_too(
    spark: Any, ads_policy: Path, names: dict[str, str]
) -> None:
    _ads_table(spark, names["ads"])
    address = pg.label("someone@contoso.example", "customer_data")
    statements = [
        (f"INSERT INTO {names['ads']} VALUES ('" + address + "')", None),
        (f"INSERT INTO {names['ads']} VALUES (:a)", {"a": address}),
    ]
    for statement, args in statements:
        refused = _refused(functools.partial(spark.sql, statement, args))
        assert refused == EGRESS_TO_ADS, statement
    assert spark.table(names["ads"]).count() == 0


def test_every_insert_of_a_multi_insert_is_checked(
    spark: Any, ads_policy: Path, names: dict[str, str], mail_view: str
) -> None:
    _ads_table(spark, names["ads"])
    spark.sql(f"CREATE TABLE {names['backup']} (b STRING) USING parquet")
    for statement in (
        f"FROM {mail_view} INSERT INTO {names['backup']} SELECT day INSERT INTO {names['ads']} SELECT body",
        f"WITH m AS (SELECT * FROM {mail_view}) "
        f"FROM m INSERT INTO {names['backup']} SELECT day INSERT INTO {names['ads']} SELECT sender",
    ):
        assert _refused(functools.partial(spark.sql, statement)) == EGRESS_TO_ADS, statement
    assert spark.table(names["ads"]).count() == 0


def test_parameters_naming_the_target_are_read_as_spark_reads_them(
    spark: Any, ads_policy: Path, names: dict[str, str], mail_view: str
) -> None:
    _ads_table(spark, names["ads"])
    target = (ads_policy / "ads" / "by-parameter").as_posix()
    runs = [
        functools.partial(
            spark.sql,
            f"INSERT OVERWRITE DIRECTORY :p USING parquet SELECT body FROM {mail_view}",
            {"p": target},
        ),
        functools.partial(
            spark.sql, f"INSERT OVERWRITE DIRECTORY ? USING parquet SELECT body FROM {mail_view}", [target]
        ),
        functools.partial(
            spark.sql,
            f"CREATE TABLE {names['backup']} USING parquet LOCATION :p AS SELECT body FROM {mail_view}",
            {"p": target},
        ),
        functools.partial(
            spark.sql, f"INSERT INTO IDENTIFIER(:t) SELECT body FROM {mail_view}", {"t": names["ads"]}
        ),
        functools.partial(
            spark.sql, f"INSERT INTO IDENTIFIER('{names['ads']}') SELECT body FROM {mail_view}"
        ),
    ]
    for run in runs:
        assert _refused(run) == EGRESS_TO_ADS
    assert not (ads_policy / "ads" / "by-parameter").exists()
    assert spark.table(names["ads"]).count() == 0


def test_a_write_word_formatted_in_is_seen(
    spark: Any, ads_policy: Path, names: dict[str, str], mail_view: str
) -> None:
    _ads_table(spark, names["ads"])
    # A Column argument is put into the text as its SQL, unquoted.
    statement = f"{{verb}} INTO {names['ads']} SELECT body FROM {mail_view}"
    assert _refused(functools.partial(spark.sql, statement, verb=F.col("INSERT"))) == EGRESS_TO_ADS
    # A labelled string formatted into the text makes a plain one: its labels are checked.
    address = pg.label("someone@contoso.example", "customer_data")
    statement = f"INSERT INTO {names['ads']} VALUES ({{a}})"
    assert _refused(functools.partial(spark.sql, statement, a=address)) == EGRESS_TO_ADS
    assert spark.table(names["ads"]).count() == 0


def test_a_table_whose_files_are_in_an_ad_path_is_written_to_that_path(
    spark: Any, ads_policy: Path, names: dict[str, str], mail: Any, mail_view: str
) -> None:
    located = (ads_policy / "ads" / "located").as_posix()
    spark.sql(f"CREATE TABLE {names['backup']} (body STRING) USING parquet LOCATION '{located}'")
    assert (
        _refused(functools.partial(spark.sql, f"INSERT INTO {names['backup']} SELECT body FROM {mail_view}"))
        == EGRESS_TO_ADS
    )
    with pytest.raises(pg.PurposeViolation):
        mail.select("body").write.insertInto(names["backup"])
    # A database made in an ad path: its tables' files are there.
    database = f"db_{names['backup']}"
    spark.sql(f"CREATE DATABASE {database} LOCATION '{(ads_policy / 'ads' / 'database').as_posix()}'")
    try:
        statement = f"CREATE TABLE {database}.copied USING parquet AS SELECT body FROM {mail_view}"
        assert _refused(functools.partial(spark.sql, statement)) == EGRESS_TO_ADS
    finally:
        spark.sql(f"DROP DATABASE {database} CASCADE")
    assert spark.table(names["backup"]).count() == 0


def test_an_ad_table_in_another_database_matches_the_pattern(
    spark: Any, ads_policy: Path, names: dict[str, str], mail: Any, mail_view: str
) -> None:
    database = f"db_{names['ads']}"
    spark.sql(f"CREATE DATABASE {database}")
    try:
        statement = f"CREATE TABLE {database}.{names['ads']} USING parquet AS SELECT body FROM {mail_view}"
        assert _refused(functools.partial(spark.sql, statement)) == EGRESS_TO_ADS
        with pytest.raises(pg.PurposeViolation):
            mail.select("body").write.saveAsTable(f"{database}.{names['ads']}")
    finally:
        spark.sql(f"DROP DATABASE {database} CASCADE")


def test_a_labelled_table_renamed_to_an_ad_table_is_refused(
    spark: Any, ads_policy: Path, names: dict[str, str], mail: Any
) -> None:
    with pg.purpose("service.operations"):
        mail.select("body").write.saveAsTable(names["backup"])
    statement = f"ALTER TABLE {names['backup']} RENAME TO {names['ads']}"
    assert _refused(functools.partial(spark.sql, statement)) == EGRESS_TO_ADS
    assert spark.catalog.tableExists(names["backup"]) and not spark.catalog.tableExists(names["ads"])
    # A table of no labelled data may be renamed so.
    spark.sql(f"CREATE TABLE {names['backup']}_plain (n INT) USING parquet")
    spark.sql(f"ALTER TABLE {names['backup']}_plain RENAME TO {names['ads']}")
    assert spark.catalog.tableExists(names["ads"])


def test_a_symbolic_link_into_an_ad_path_is_written_there(ads_policy: Path, mail: Any) -> None:
    (ads_policy / "ads").mkdir()
    link = ads_policy / "reports"
    link.symlink_to(ads_policy / "ads", target_is_directory=True)
    with pytest.raises(pg.PurposeViolation):
        mail.select("body").write.parquet(str(link / "weekly"))
    assert not (ads_policy / "ads" / "weekly").exists()


def test_an_ad_table_made_over_labelled_files_is_refused(
    spark: Any, ads_policy: Path, names: dict[str, str], mail: Any
) -> None:
    source = (ads_policy / "derived").as_posix()
    with pg.purpose("service.operations"):
        mail.select("body").write.parquet(source)
    statement = f"CREATE TABLE {names['ads']} USING parquet LOCATION '{source}'"
    assert _refused(functools.partial(spark.sql, statement)) == EGRESS_TO_ADS
    assert not spark.catalog.tableExists(names["ads"])
    # Over a new, empty location: nothing enters it.
    empty = (ads_policy / "empty").as_posix()
    spark.sql(f"CREATE TABLE {names['ads']} (b STRING) USING parquet LOCATION '{empty}'")
    assert spark.catalog.tableExists(names["ads"])


def test_an_ad_table_or_partition_pointed_at_labelled_files_is_refused(
    spark: Any, ads_policy: Path, names: dict[str, str], mail: Any
) -> None:
    source = (ads_policy / "derived").as_posix()
    with pg.purpose("service.operations"):
        mail.select("body").write.parquet(source)
    _ads_table(spark, names["ads"])
    statement = f"ALTER TABLE {names['ads']} SET LOCATION '{source}'"
    assert _refused(functools.partial(spark.sql, statement)) == EGRESS_TO_ADS
    assert spark.table(names["ads"]).count() == 0
    partitioned = names["ads"] + "_p"
    spark.sql(f"CREATE TABLE {partitioned} (body STRING, d INT) USING parquet PARTITIONED BY (d)")
    statement = f"ALTER TABLE {partitioned} ADD PARTITION (d=1) LOCATION '{source}'"
    assert _refused(functools.partial(spark.sql, statement)) == EGRESS_TO_ADS
    assert spark.table(partitioned).count() == 0


def test_a_relative_path_is_where_spark_puts_it(
    ads_policy: Path, mail: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from pyspark import SparkContext

    jvm = SparkContext._jvm
    assert jvm is not None
    started_in = Path(str(jvm.java.lang.System.getProperty("user.dir")))
    # Python's folder moved on since Spark started: Spark still resolves from its own.
    elsewhere = ads_policy / "elsewhere" / "deeper"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    relative = os.path.relpath(ads_policy / "ads" / "relative", started_in)
    with pytest.raises(pg.PurposeViolation):
        mail.select("body").write.parquet(relative)
    assert not (ads_policy / "ads" / "relative").exists()


def test_values_with_default_are_written_and_a_subquery_in_values_is_read(
    spark: Any, ads_policy: Path, names: dict[str, str], mail_view: str
) -> None:
    spark.sql(f"CREATE TABLE {names['ads']} (b STRING, n INT DEFAULT 7) USING parquet")
    with pg.purpose("service.operations"):
        spark.sql(f"INSERT INTO {names['ads']} VALUES ('plain', DEFAULT)")
    assert [tuple(r) for r in spark.table(names["ads"]).collect()] == [("plain", 7)]
    statement = f"INSERT INTO {names['ads']} VALUES ((SELECT max(body) FROM {mail_view}), 1)"
    with pytest.raises(pg.PurposeViolation):
        spark.sql(statement)
    assert spark.table(names["ads"]).count() == 1


def test_unlabelled_rows_may_go_to_an_ad_table_and_queries_are_untouched(
    spark: Any, ads_policy: Path, names: dict[str, str], mail_view: str
) -> None:
    _ads_table(spark, names["ads"])
    spark.sql(f"INSERT INTO {names['ads']} SELECT DISTINCT day FROM {mail_view}")
    assert spark.table(names["ads"]).count() == 3
    rows = spark.sql(
        "SELECT count(*) AS n FROM {frame} WHERE b > {least}", frame=spark.table(names["ads"]), least=0
    )
    assert pg.labels_of(rows) == frozenset()


def test_other_tables_are_checked_against_the_current_purpose(
    spark: Any, ads_policy: Path, names: dict[str, str], mail_view: str
) -> None:
    statement = f"CREATE TABLE {names['backup']} USING parquet AS SELECT body FROM {mail_view}"
    with pg.purpose("marketing.direct"):
        assert _refused(lambda: spark.sql(statement)) == {("egress", "marketing.direct", SQL)}
    assert not spark.catalog.tableExists(names["backup"])
    with pg.purpose("service.operations"):
        spark.sql(statement)
    assert spark.table(names["backup"]).count() == 40


def test_trace_mode_records_the_write_and_spark_runs_it(
    spark: Any, ads_policy: Path, names: dict[str, str], mail_view: str
) -> None:
    pg.configure(pg.get_guard().policy, mode="trace")
    with pg.testing.capture() as seen:
        spark.sql(f"CREATE TABLE {names['ads']} USING parquet AS SELECT body FROM {mail_view}")
    assert {(v.via, v.mode, v.category, v.function) for v in seen} == {("egress", "trace", EMAIL, SQL)}
    assert spark.table(names["ads"]).count() == 40


def test_labels_a_sql_write_leaves_behind_are_said_once_naming_no_value(
    spark: Any, names: dict[str, str], mail: Any, mail_view: str, caplog: pytest.LogCaptureFixture
) -> None:
    pg.configure("trust-center", mode="enforce")
    derived, copied, kept = names["backup"], names["backup"] + "_copied", names["backup"] + "_kept"
    with caplog.at_level(logging.WARNING, logger="purposeguard"), pg.purpose("service.operations"):
        # A column derived from a labelled one: written without its labels.
        spark.sql(f"CREATE TABLE {derived} USING parquet AS SELECT upper(body) AS b, size FROM {mail_view}")
        spark.sql(f"INSERT INTO {derived} SELECT upper(body), size FROM {mail_view}")
        # A plain copy keeps the column's own metadata, and so its labels.
        spark.sql(f"CREATE TABLE {copied} USING parquet AS SELECT body, size FROM {mail_view}")
        # A table df.write made keeps what its columns carry: nothing to say.
        mail.select(F.upper("body").alias("b"), "size").write.saveAsTable(kept)
        spark.sql(f"INSERT INTO {kept} SELECT upper(body), size FROM {mail_view}")
    said = [r.getMessage() for r in caplog.records if "read back without" in r.getMessage()]
    assert len(said) == 1
    assert derived in said[0] and EMAIL in said[0]
    assert "BODY OF MESSAGE" not in said[0] and "example" not in said[0]
    assert pg.labels_of(spark.table(derived)) == frozenset()
    assert EMAIL in pg.labels_of(spark.table(copied))
    assert EMAIL in pg.labels_of(spark.table(kept))


def test_labels_a_sql_write_leaves_behind_are_said_with_no_purpose_current(
    spark: Any, names: dict[str, str], mail_view: str, caplog: pytest.LogCaptureFixture
) -> None:
    pg.configure("trust-center", mode="enforce")
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        spark.sql(
            f"CREATE TABLE {names['backup']} USING parquet AS SELECT concat(body, '') AS b FROM {mail_view}"
        )
    assert any(
        names["backup"] in r.getMessage() and "read back without" in r.getMessage() for r in caplog.records
    )


def test_a_session_variable_set_from_labelled_columns_is_said(
    spark: Any, mail_view: str, caplog: pytest.LogCaptureFixture
) -> None:
    pg.configure("trust-center", mode="enforce")
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        spark.sql("DECLARE OR REPLACE VARIABLE pg_held STRING")
        spark.sql(f"SET VAR pg_held = (SELECT max(body) FROM {mail_view})")
    said = [r.getMessage() for r in caplog.records if "session variable" in r.getMessage()]
    assert len(said) == 1 and EMAIL in said[0] and "Body of message" not in said[0]


def test_statements_that_build_statements_are_said_not_checked(
    spark: Any, names: dict[str, str], mail_view: str, caplog: pytest.LogCaptureFixture
) -> None:
    pg.configure("trust-center", mode="enforce")
    _ads_table(spark, names["ads"])
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        spark.sql(f"EXECUTE IMMEDIATE 'INSERT INTO {names['ads']} SELECT day FROM {mail_view}'")
    assert any("is not checked" in r.getMessage() for r in caplog.records)


def test_a_statement_it_cannot_read_is_denied_in_enforce_mode(
    spark: Any, ads_policy: Path, names: dict[str, str], mail_view: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreadable(*args: Any) -> Any:
        raise RuntimeError("the query could not be analysed")

    _ads_table(spark, names["ads"])
    monkeypatch.setattr(pg_spark, "_sql_query_frame", unreadable)
    with pytest.raises(pg.PurposeViolation):
        spark.sql(f"INSERT INTO {names['ads']} SELECT day FROM {mail_view}")
    assert spark.table(names["ads"]).count() == 0


def test_a_statement_spark_refuses_fails_with_spark_s_own_error(spark: Any, ads_policy: Path) -> None:
    from pyspark.errors import ParseException

    with pytest.raises(ParseException):
        spark.sql("INSERT INTO ads_x SELEC body FROM nowhere")


def test_uninstrument_restores_spark_sql(spark: Any) -> None:
    from pyspark.sql.session import SparkSession

    patched = SparkSession.sql
    pg_spark.uninstrument()
    try:
        original = SparkSession.sql
        assert original is not patched
    finally:
        pg_spark.instrument()
    assert SparkSession.sql is not original
