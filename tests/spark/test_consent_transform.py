"""Consent at scale (consented()), declassification (@pg.transform) and bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from purposeguard.integrations import spark as pg_spark
from pyspark.sql import functions as F

import purposeguard as pg
from purposeguard.consent import ConsentStore

EMAIL = "customer_data.content.email"
# The tenants the store fixture has consenting to improvement.
CONSENTING = ["contoso", "northwind"]


@pytest.fixture
def store() -> Iterator[ConsentStore]:
    consents = ConsentStore(":memory:")
    for tenant in ("contoso", "northwind"):
        consents.grant(tenant, "improvement", ["customer_data"], granted_by=f"admin@{tenant}")
    # Consent for documents does not cover mail.
    consents.grant("fabrikam", "improvement", ["customer_data.content.document"], granted_by="admin@fabrikam")
    pg.configure("trust-center", mode="enforce", consents=consents)
    yield consents
    consents.close()


def _tenants(frame: Any) -> list[str]:
    return sorted(r.tenant for r in frame.select("tenant").distinct().collect())


def _each_refused(made: dict[str, Any], match: str, tenant_column: str | None = None) -> None:
    """consented() refuses every frame of ``made``, saying ``match``."""
    for what, frame in made.items():
        with pytest.raises(pg_spark.SchemaError, match=match):
            pg_spark.consented(frame, "improvement", tenant_column=tenant_column)
            pytest.fail(f"{what}: consented")


def test_consented_keeps_the_tenants_that_consented(mail: Any, store: ConsentStore) -> None:
    kept = pg_spark.consented(mail, "improvement")
    assert _tenants(kept) == CONSENTING
    assert kept.count() == 20
    assert kept.columns == mail.columns


def test_an_improvement_job_over_consented_tenants_is_allowed(mail: Any, store: ConsentStore) -> None:
    @pg.purpose("improvement")
    def average_length(frame: Any) -> float:
        return float(frame.agg(F.avg(F.length("body"))).first()[0])

    with pg.testing.capture() as seen:
        assert average_length(pg_spark.consented(mail, "improvement")) > 0
        # Derived from consented rows only: still covered.
        average_length(pg_spark.consented(mail, "improvement").select(F.upper("body").alias("body")))
    assert seen == []


def test_a_consentable_purpose_on_unfiltered_multi_tenant_data_is_a_violation(
    mail: Any, store: ConsentStore
) -> None:
    @pg.purpose("improvement")
    def average_length(frame: Any) -> None: ...

    with pytest.raises(pg.PurposeViolation) as refused:
        average_length(mail)
    violations = refused.value.violations
    assert {(v.rule, v.tenant) for v in violations} == {
        ("improvement-only-with-consent", "(several tenants)")
    }


def test_mixing_consented_and_other_rows_loses_the_consent(mail: Any, store: ConsentStore) -> None:
    @pg.purpose("improvement")
    def train(frame: Any) -> None: ...

    mixed = pg_spark.consented(mail, "improvement").select("body").union(mail.select("body"))
    with pytest.raises(pg.PurposeViolation):
        train(mixed)


def test_a_consented_column_combined_with_an_unlabelled_one_stays_covered(
    mail: Any, store: ConsentStore
) -> None:
    """An input without the category takes nothing away from its consent."""

    @pg.purpose("improvement")
    def train(frame: Any) -> int:
        return int(frame.count())

    kept = pg_spark.consented(mail, "improvement")
    assert train(kept.select(F.concat("body", "id", F.col("size").cast("string")).alias("x"))) == 20
    # The same expression over unfiltered rows is still refused.
    with pytest.raises(pg.PurposeViolation):
        train(mail.select(F.concat("body", "id").alias("x")))


def test_consent_for_one_purpose_does_not_cover_another(mail: Any, store: ConsentStore) -> None:
    @pg.purpose("advertising")
    def audience(frame: Any) -> None: ...

    with pytest.raises(pg.PurposeViolation) as refused:
        audience(pg_spark.consented(mail, "improvement"))
    assert {v.rule for v in refused.value.violations} == {"no-advertising"}
    # Advertising is never consentable: nothing to filter, nothing to cover.
    assert pg_spark.consented(mail, "advertising") is mail


def test_the_snapshot_is_recorded_once(mail: Any, store: ConsentStore) -> None:
    records: list[Any] = []
    unsubscribe = pg.on_record(records.append)
    try:
        kept = pg_spark.consented(mail, "improvement")
        kept.count()
        kept.select("body").collect()
    finally:
        unsubscribe()
    snapshots = [r for r in records if r.kind == "consent_snapshot"]
    assert len(snapshots) == 1
    assert snapshots[0].tenants == ("contoso", "northwind")
    assert snapshots[0].rules == ("improvement-only-with-consent",)
    assert "Body of message" not in repr(snapshots[0].to_dict())


def test_a_revoked_consent_applies_to_the_next_job(mail: Any, store: ConsentStore) -> None:
    store.revoke("northwind", "improvement", ["customer_data"], revoked_by="admin@northwind")
    assert _tenants(pg_spark.consented(mail, "improvement")) == ["contoso"]


def test_without_a_store_no_tenant_is_kept(mail: Any) -> None:
    pg.configure("trust-center", mode="enforce")
    assert pg_spark.consented(mail, "improvement").count() == 0


def test_consented_needs_a_tenant_column(raw_mail: Any, store: ConsentStore) -> None:
    unlabelled_tenants = pg_spark.label_columns(raw_mail, {"body": EMAIL})
    with pytest.raises(pg_spark.SchemaError, match="tenant column"):
        pg_spark.consented(unlabelled_tenants, "improvement")
    with pytest.raises(pg_spark.SchemaError, match="'owner'"):
        pg_spark.consented(unlabelled_tenants, "improvement", tenant_column="owner")


# -- transforms ----------------------------------------------------------------------------------


@pg.transform("usage-aggregate")
def usage_per_tenant_and_day(frame: Any) -> Any:
    return frame.groupBy("tenant", "day").agg(
        F.count("*").alias("messages"), F.avg(F.length("body")).alias("average_length")
    )


def test_a_transform_turns_content_into_usage_data(mail: Any, enforce: pg.Guard) -> None:
    records: list[Any] = []
    unsubscribe = pg.on_record(records.append)
    try:
        usage = usage_per_tenant_and_day(mail)
    finally:
        unsubscribe()
    assert pg.labels_of(usage) == frozenset({"usage_data"})
    assert [r.kind for r in records] == ["declassification"]
    assert records[0].from_categories == ("customer_data", EMAIL)
    # And what follows the transform carries usage data only.
    later = usage.select(F.concat("tenant", F.col("messages").cast("string")).alias("line"))
    assert pg.labels_of(later) == frozenset({"usage_data"})

    @pg.purpose("service.communications")
    def notify_admins(frame: Any) -> int:
        return int(frame.count())

    assert notify_admins(usage) == 12


def test_a_transform_refuses_categories_it_does_not_accept(mail: Any, enforce: pg.Guard) -> None:
    billed = pg_spark.label_columns(mail, {"size": "payment_data"})
    with pytest.raises(pg.PurposeViolation) as refused:
        usage_per_tenant_and_day(billed)
    assert {v.category for v in refused.value.violations} == {"payment_data"}


def test_in_trace_mode_refused_categories_stay_on_the_result(mail: Any) -> None:
    pg.configure("trust-center", mode="trace")
    billed = pg_spark.label_columns(mail, {"size": "payment_data"})
    with pg.testing.capture() as seen:
        usage = usage_per_tenant_and_day(billed)
    assert {v.category for v in seen} == {"payment_data"}
    assert pg.labels_of(usage) == frozenset({"usage_data", "payment_data"})


# -- bad input -------------------------------------------------------------------------------------


@pytest.fixture
def no_jobs(spark: Any) -> Iterator[Any]:
    """Fails the test if a Spark job ran inside it."""
    context = spark.sparkContext
    context.setJobGroup("purposeguard-bad-input", "bad input must fail before any job")
    yield
    tracker = context.statusTracker()
    assert list(tracker.getJobIdsForGroup("purposeguard-bad-input")) == []
    context.setLocalProperty("spark.jobGroup.id", None)


def test_an_unknown_category_is_named(raw_mail: Any, no_jobs: Any) -> None:
    with pytest.raises(pg.UnknownKeyError, match="customer_data.content.fax"):
        pg_spark.label_columns(raw_mail, {"body": "customer_data.content.fax"})


def test_a_missing_column_is_named(raw_mail: Any, no_jobs: Any) -> None:
    with pytest.raises(pg_spark.SchemaError, match="'subject'") as error:
        pg_spark.label_columns(raw_mail, {"subject": EMAIL})
    assert error.value.column == "subject"


def test_a_missing_tenant_column_is_named(raw_mail: Any, no_jobs: Any) -> None:
    with pytest.raises(pg_spark.SchemaError, match="tenant column 'customer'") as error:
        pg_spark.label_columns(raw_mail, {"body": EMAIL}, tenant_column="customer")
    assert error.value.column == "customer"


def test_the_job_group_check_sees_jobs(raw_mail: Any, spark: Any) -> None:
    """The no_jobs fixture can fail: a count in the group is seen."""
    context = spark.sparkContext
    context.setJobGroup("purposeguard-probe", "probe")
    try:
        raw_mail.count()
        assert list(context.statusTracker().getJobIdsForGroup("purposeguard-probe"))
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)


def test_one_consenting_tenants_frame_written_in_a_zone_is_allowed(
    spark: Any, store: ConsentStore, tmp_path: Any
) -> None:
    """The zone learns whose data the written frame is: its copy of the
    categories is that tenant's, which the tenant's consent covers."""
    pg.configure("trust-center", mode="enforce", context_mode="enforce", consents=store)
    frame = pg.label(spark.createDataFrame([("hello",)], ["body"]), "customer_data", tenant="contoso")
    with pg.testing.capture() as seen, pg.purpose("improvement"), pg.zone() as zone:
        frame.write.mode("overwrite").parquet(str(tmp_path / "out"))
    assert seen == []
    assert zone.data_tenant() == "contoso"


# -- rows combined across tenants ------------------------------------------------------------------


def test_consented_refuses_rows_combined_across_tenants(mail: Any, store: ConsentStore) -> None:
    """A row's tenant column says whose row it was, not whose data a window
    or an aggregation across tenants put in it: its consent cannot cover
    that, so consented() refuses, before reading the store."""
    from pyspark.sql import Window

    previous = mail.withColumn("previous_body", F.lag("body").over(Window.orderBy("id")))
    with pytest.raises(
        pg_spark.SchemaError, match="a window that is not keyed by the tenant column 'tenant'"
    ):
        pg_spark.consented(previous, "improvement")
    per_day = mail.groupBy("day").agg(
        F.first("tenant").alias("tenant"), F.collect_list("body").alias("bodies")
    )
    with pytest.raises(pg_spark.SchemaError, match="an aggregation") as refused:
        pg_spark.consented(per_day, "improvement", tenant_column="tenant")
    assert refused.value.column == "tenant"


def test_rows_combined_per_tenant_or_with_reference_data_stay_consentable(
    mail: Any, store: ConsentStore, spark: Any
) -> None:
    from pyspark.sql import Window

    per_tenant = mail.withColumn(
        "previous_body", F.lag("body").over(Window.partitionBy("tenant").orderBy("id"))
    )
    assert _tenants(pg_spark.consented(per_tenant, "improvement")) == CONSENTING
    grouped = mail.groupBy("tenant", "day").agg(F.collect_list("body").alias("bodies"))
    assert _tenants(pg_spark.consented(grouped, "improvement", tenant_column="tenant")) == CONSENTING
    # Counts over a lookup table that holds no tenant's rows combine none.
    calendar = spark.createDataFrame([(f"2026-11-{d:02d}", 1) for d in (1, 2, 3)], ["day", "weight"])
    enriched = mail.join(calendar.groupBy("day").agg(F.sum("weight").alias("weight")), "day", "left")
    assert _tenants(pg_spark.consented(enriched, "improvement")) == CONSENTING


def test_consented_refuses_a_join_of_two_tenants_data_unless_it_ties_their_tenants(
    mail: Any, raw_mail: Any, store: ConsentStore
) -> None:
    notes = pg_spark.label_columns(
        raw_mail.select("sender", "tenant", F.concat(F.lit("note on "), "body").alias("note")),
        {"note": EMAIL},
        tenant_column="tenant",
    )
    # A contoso message joined with every tenant's notes on the same sender name.
    by_sender = mail.join(notes.withColumnRenamed("tenant", "note_tenant"), "sender")
    with pytest.raises(pg_spark.SchemaError, match="a join"):
        pg_spark.consented(by_sender, "improvement")
    tied = mail.join(notes, ["tenant", "sender"])
    assert _tenants(pg_spark.consented(tied, "improvement")) == CONSENTING


def _notes(raw_mail: Any) -> Any:
    """Every tenant's notes on a sender, with a tenant column of their own."""
    return pg_spark.label_columns(
        raw_mail.select("sender", F.col("tenant").alias("note_tenant"), F.col("body").alias("note")),
        {"note": EMAIL},
        tenant_column="note_tenant",
    )


@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
def test_keys_and_conditions_that_only_mention_the_tenant_column_do_not_key_by_it(
    mail: Any, raw_mail: Any, store: ConsentStore
) -> None:
    from pyspark.sql import Window

    notes = _notes(raw_mail)
    made = {
        "grouped by a function of the tenant": mail.groupBy(F.length("tenant").alias("n")).agg(
            F.collect_list("body").alias("bodies"), F.first("tenant").alias("tenant")
        ),
        "partitioned by a test of the tenant": mail.withColumn(
            "previous_body", F.lag("body").over(Window.partitionBy(F.col("tenant").isNotNull()).orderBy("id"))
        ),
        "a rollup's grand total": mail.rollup("tenant", "day").agg(F.collect_list("body").alias("bodies")),
        "a join that names both tenants without tying them": mail.join(
            notes,
            (mail.sender == notes.sender) & mail.tenant.isNotNull() & notes.note_tenant.isNotNull(),
        ),
        "a join that ties the tenant to another column": mail.join(notes, mail.tenant == notes.sender),
        "a scalar subquery over every tenant's mail": mail.withColumn(
            "everything", mail.select(F.concat_ws(",", F.collect_list("body"))).scalar()
        ),
        "a grouped function": mail.groupBy("day").applyInPandas(
            lambda frame: frame, "id string, tenant string, sender string, body string, size long, day string"
        ),
    }
    _each_refused(made, "not keyed by the tenant column", "tenant")


def test_common_pipelines_that_combine_no_tenants_data_stay_consentable(
    mail: Any, store: ConsentStore
) -> None:
    from pyspark.sql import Window

    # The latest message of each id: row_number() combines no category.
    latest = (
        mail.withColumn("rank", F.row_number().over(Window.partitionBy("id").orderBy(F.desc("size"))))
        .where("rank = 1")
        .drop("rank")
    )
    assert _tenants(pg_spark.consented(latest, "improvement")) == CONSENTING
    # Per-day counts over every tenant, joined back: counts carry no category.
    per_day = mail.join(mail.groupBy("day").count(), "day")
    assert _tenants(pg_spark.consented(per_day, "improvement")) == CONSENTING
    # Combined after the filter, for the purpose it was filtered for: the
    # rows combined are all consenting tenants'.
    daily = (
        pg_spark.consented(mail, "improvement")
        .groupBy("day")
        .agg(F.collect_list("body").alias("bodies"), F.first("tenant").alias("tenant"))
    )
    assert pg_spark.consented(daily, "improvement", tenant_column="tenant").count() == 3
    # So is a scalar subquery over rows consented for that purpose.
    consenting = pg_spark.consented(mail, "improvement")
    everything = consenting.select(F.concat_ws(",", F.collect_list("body"))).scalar()
    assert (
        _tenants(pg_spark.consented(mail.withColumn("everything", everything), "improvement")) == CONSENTING
    )


def test_joins_that_put_another_tenants_data_next_to_a_tenant_column_are_refused(
    mail: Any, raw_mail: Any, store: ConsentStore, spark: Any
) -> None:
    notes = pg_spark.label_columns(
        raw_mail.select(F.col("sender").alias("s2"), F.col("tenant").alias("note_tenant"), "body"),
        {"body": EMAIL},
        tenant_column="note_tenant",
    )
    fabrikam = pg.label(
        spark.createDataFrame([("2026-11-01", "fabrikam's own note")], ["day", "note"]),
        "customer_data",
        tenant="fabrikam",
    )
    made = {
        # One side hands on the tenant column only, the other the bodies of every tenant.
        "tenant from one side, bodies from the other": mail.select("id", "tenant", "day").join(
            mail.select("day", "body"), "day"
        ),
        "a tie between two tenant columns of the same side": mail.withColumn("t2", F.col("tenant")).join(
            notes, (F.col("tenant") == F.col("t2")) & (F.col("sender") == F.col("s2"))
        ),
        "another tenant's frame, labelled with its owner": mail.join(fabrikam, "day"),
        "a lateral subquery over every tenant's mail": _lateral(mail, spark),
    }
    _each_refused(made, "not keyed by the tenant column", "tenant")


def _lateral(mail: Any, spark: Any) -> Any:
    mail.createOrReplaceTempView("mail_for_lateral")
    return spark.sql(
        "SELECT m.*, l.everything FROM mail_for_lateral m, "
        "LATERAL (SELECT concat_ws(',', collect_list(body)) AS everything FROM mail_for_lateral) l"
    )


def test_semi_joins_counts_and_a_tied_join_with_shared_names_stay_consentable(
    mail: Any, raw_mail: Any, store: ConsentStore
) -> None:
    notes = _notes(raw_mail)
    senders = mail.select("sender").distinct()
    assert (
        _tenants(pg_spark.consented(mail.join(senders, "sender", "left_semi"), "improvement")) == CONSENTING
    )
    # Counted per day over every tenant, keyed by tenant and day: a count
    # of a labelled column is no row's data.
    counted = mail.groupBy("tenant", "day").agg(F.count("body").alias("n"))
    assert _tenants(pg_spark.consented(counted, "improvement", tenant_column="tenant")) == CONSENTING
    # A tenant column made of the first row's tenant of each day is no row's tenant.
    per_day = mail.groupBy("day").agg(F.count("body").alias("n"), F.first("tenant").alias("tenant"))
    with pytest.raises(pg_spark.SchemaError, match="not the tenant column"):
        pg_spark.consented(per_day, "improvement", tenant_column="tenant")
    # Tied by the tenants, and both sides name a column "sender".
    tied = mail.join(notes, (mail.tenant == notes.note_tenant) & (mail.sender == notes.sender))
    kept = pg_spark.consented(tied, "improvement")
    assert sorted({row.tenant for row in kept.select("tenant").collect()}) == CONSENTING


def test_rows_combined_across_tenants_stay_so_when_written_checkpointed_or_collected(
    mail: Any, store: ConsentStore, spark: Any, tmp_path: Any
) -> None:
    from pyspark.sql import Window

    previous = mail.withColumn("previous_body", F.lag("body").over(Window.orderBy("id")))
    previous.write.parquet(str(tmp_path / "previous"))
    made = {
        "read back from parquet": spark.read.parquet(str(tmp_path / "previous")),
        "checkpointed": previous.localCheckpoint(),
    }
    _each_refused(made, "before it was written")
    rebuilt = spark.createDataFrame(previous.collect())
    with pytest.raises(pg_spark.SchemaError, match="several tenants' data"):
        pg_spark.consented(rebuilt, "improvement", tenant_column="tenant")
    # Written from rows each of its own tenant, it is consentable again.
    mail.write.parquet(str(tmp_path / "mail"))
    assert (
        _tenants(pg_spark.consented(spark.read.parquet(str(tmp_path / "mail")), "improvement")) == CONSENTING
    )


def test_a_tenant_column_overwritten_rebuilt_or_forged_in_a_union_is_no_tenant_column(
    mail: Any, store: ConsentStore
) -> None:
    made = {
        "overwritten": mail.withColumn("tenant", F.lit("contoso")),
        "rebuilt": mail.withColumn("tenant", F.lower("tenant")),
        "forged in one branch of a union": mail.union(mail.withColumn("tenant", F.lit("contoso"))),
    }
    _each_refused(made, "not the tenant column the data was labelled with", "tenant")
    # A plain copy under another name is the tenant column still.
    copied = mail.withColumn("owner", F.col("tenant"))
    assert _tenants(pg_spark.consented(copied, "improvement", tenant_column="owner")) == CONSENTING


def test_tenant_columns_of_the_same_name_a_number_or_a_dotted_name_are_filtered(
    mail: Any, raw_mail: Any, store: ConsentStore, spark: Any
) -> None:
    notes = pg_spark.label_columns(
        raw_mail.select("tenant", "sender", F.col("body").alias("note")),
        {"note": EMAIL},
        tenant_column="tenant",
    )
    # Tied by tenant, both sides named "tenant" (and "sender").
    tied = mail.join(notes, (mail.tenant == notes.tenant) & (mail.sender == notes.sender))
    kept = pg_spark.consented(tied, "improvement")
    assert sorted({row[1] for row in kept.collect()}) == CONSENTING
    # Tenant ids stored as numbers, compared as the store's text.
    store.grant("42", "improvement", ["customer_data"], granted_by="admin@42")
    numbered = pg_spark.label_columns(
        spark.createDataFrame([(42, "mail of 42"), (7, "mail of 7")], ["tenant", "body"]),
        {"body": EMAIL},
        tenant_column="tenant",
    )
    assert [row.tenant for row in pg_spark.consented(numbered, "improvement").collect()] == [42]
    dotted = pg_spark.label_columns(
        mail.withColumnRenamed("tenant", "org.id"), {"body": EMAIL}, tenant_column="org.id"
    )
    assert pg_spark.consented(dotted, "improvement").count() == 20


def test_counted_subqueries_cast_tenant_columns_and_labelled_frames_stay_consentable(
    mail: Any, store: ConsentStore
) -> None:
    counted = mail.withColumn("messages", mail.select(F.count("*")).scalar())
    assert _tenants(pg_spark.consented(counted, "improvement")) == CONSENTING
    cast = mail.withColumn("tenant", F.col("tenant").cast("string"))
    assert _tenants(pg_spark.consented(cast, "improvement", tenant_column="tenant")) == CONSENTING
    # pg.label() on a DataFrame keeps what consented() needs to know of it.
    relabelled = pg.label(pg_spark.consented(mail, "improvement"), "customer_data")
    assert _tenants(pg_spark.consented(relabelled, "improvement")) == CONSENTING
    assert _tenants(pg_spark.consented(pg.label(mail, "customer_data"), "improvement")) == CONSENTING


def test_a_tenant_column_named_anew_over_tenant_labelled_rows_is_refused(
    mail: Any, store: ConsentStore
) -> None:
    with pytest.raises(pg_spark.SchemaError, match="already labelled with a tenant column"):
        pg_spark.label_columns(
            mail.withColumn("tenant", F.lit("contoso")), {"body": EMAIL}, tenant_column="tenant"
        )
    with pytest.raises(pg_spark.SchemaError, match="tenant column was dropped or changed"):
        pg_spark.consented(mail.withColumn("tenant", F.lit("contoso")), "improvement")


def test_rows_combined_across_tenants_stay_so_in_a_write_partitioned_by_tenant(
    mail: Any, store: ConsentStore, spark: Any, tmp_path: Any
) -> None:
    from pyspark.sql import Window

    previous = mail.withColumn("previous_body", F.lag("body").over(Window.orderBy("id")))
    previous.write.partitionBy("tenant").parquet(str(tmp_path / "previous"))
    with pytest.raises(pg_spark.SchemaError, match="before it was written"):
        pg_spark.consented(
            spark.read.parquet(str(tmp_path / "previous")), "improvement", tenant_column="tenant"
        )
