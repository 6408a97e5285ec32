"""A Spark batch job over many tenants' mailboxes, under the data-use promise.

Three uses of the same mail data, on a local Spark:

- a usage report (messages and bytes per tenant and day): content becomes
  ``usage_data`` through the policy transform ``usage-aggregate`` and goes to
  administrators under ``service.communications`` -- allowed;
- an improvement analysis (average body length per day): ``improvement`` is
  denied by a consentable rule, so it runs over the tenants that consented
  only (``consented()``) -- allowed for those rows;
- an advertising audience (senders by the words they write) -- refused
  before Spark runs anything: customer data never reaches advertising.

    python examples/spark_job.py                     # 40 tenants, 200,000 messages
    python examples/spark_job.py --messages 20000    # smaller

Needs ``pip install 'purposeguard[spark]'`` and Java 17 or later.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from purposeguard.integrations import spark as pg_spark

import purposeguard as pg
from purposeguard.consent import ConsentStore

EMAIL = "customer_data.content.email"
SENTENCES = (
    "the quarterly numbers are attached, please keep them internal",
    "reminder: the board meeting moved to thursday at ten",
    "can you review the draft contract before friday",
    "lunch order for the offsite, reply with your choice",
    "the build is green again after the dependency update",
    "invoice 4711 is overdue, finance will follow up",
)


def session(app: str = "purposeguard-spark-job") -> Any:
    """A lean local Spark: two cores, no UI, few shuffle partitions, loopback only."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master("local[2]")
        .appName(app)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.execution.pythonUDF.arrow.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def generate_mailboxes(spark: Any, *, tenants: int = 40, messages: int = 200_000) -> Any:
    """Mail of ``tenants`` tenants, generated inside Spark (no driver-side lists)."""
    from pyspark.sql import functions as F

    n = F.col("id")
    sentences = F.array(*[F.lit(s) for s in SENTENCES])
    return spark.range(messages).select(
        F.concat(F.lit("m"), n.cast("string")).alias("id"),
        F.concat(F.lit("tenant-"), F.lpad((n % tenants).cast("string"), 3, "0")).alias("tenant"),
        F.concat(
            F.lit("user"),
            (n % 97).cast("string"),
            F.lit("@tenant"),
            (n % tenants).cast("string"),
            F.lit(".example"),
        ).alias("sender"),
        F.concat(
            F.lit("Message "),
            n.cast("string"),
            F.lit(": "),
            F.element_at(sentences, (n % len(SENTENCES) + 1).cast("int")),
        ).alias("body"),
        (n * 7919 % 50_000 + 200).alias("size"),
        F.date_add(F.lit("2026-11-01").cast("date"), (n % 30).cast("int")).cast("string").alias("day"),
    )


def label_mail(raw: Any) -> Any:
    """Where the data enters the job: one declaration per column."""
    return pg_spark.label_columns(raw, {"body": EMAIL, "sender": "customer_data"}, tenant_column="tenant")


# -- the computations (plain Spark; the benchmark runs them without purposeguard too) --------------


def usage_rows(mail: Any) -> Any:
    from pyspark.sql import functions as F

    return mail.groupBy("tenant", "day").agg(F.count("*").alias("messages"), F.sum("size").alias("bytes"))


def usage_summary(usage: Any) -> list[tuple[str, int, int]]:
    from pyspark.sql import functions as F

    rows = usage.groupBy("tenant").agg(F.sum("messages").alias("m"), F.sum("bytes").alias("b"))
    return [(str(r.tenant), int(r.m), int(r.b)) for r in rows.orderBy("tenant").collect()]


def length_by_day(mail: Any) -> list[tuple[str, float]]:
    from pyspark.sql import functions as F

    rows = mail.groupBy("day").agg(F.avg(F.length("body")).alias("average_length")).orderBy("day")
    return [(str(r.day), float(r.average_length)) for r in rows.collect()]


def audience_rows(mail: Any) -> Any:
    from pyspark.sql import functions as F

    words = F.explode(F.split(F.lower("body"), " ")).alias("interest")
    return mail.select("sender", words).groupBy("sender", "interest").count()


def keep_tenants(mail: Any, tenants: list[str]) -> Any:
    """The consent filter a job would write by hand: a broadcast semi-join."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    schema = StructType([StructField("consenting_tenant", StringType())])
    snapshot = mail.sparkSession.createDataFrame([(t,) for t in tenants], schema)
    return mail.join(F.broadcast(snapshot), mail["tenant"] == snapshot["consenting_tenant"], "left_semi")


# -- the job, with purposes ------------------------------------------------------------------------


@pg.transform("usage-aggregate")
def usage_per_tenant_and_day(mail: Any) -> Any:
    """Counts and sizes per tenant and day: usage data, no longer content."""
    return usage_rows(mail)


@pg.purpose("service.communications")
def usage_report(usage: Any) -> list[tuple[str, int, int]]:
    """What each tenant's administrators are told about their usage."""
    return usage_summary(usage)


@pg.purpose("improvement")
def improvement_analysis(mail: Any) -> list[tuple[str, float]]:
    """How long mails are, day by day: product improvement."""
    return length_by_day(mail)


@pg.purpose("advertising")
def build_audience(mail: Any) -> int:
    """Senders by the words they write: an advertising profile."""
    return int(audience_rows(mail).count())


@dataclass
class Outcome:
    report: list[tuple[str, int, int]]
    analysis: list[tuple[str, float]]
    audience_refused: bool
    violations: list[pg.Violation] = field(default_factory=list)


def run_job(mail: Any) -> Outcome:
    """The three uses, each under its purpose; the audience build is refused."""
    report = usage_report(usage_per_tenant_and_day(mail))
    analysis = improvement_analysis(pg_spark.consented(mail, "improvement"))
    refused = False
    with pg.testing.capture() as seen:
        try:
            build_audience(mail)
        except pg.PurposeViolation:
            refused = True
    return Outcome(report, analysis, refused, list(seen))


def consent_store(tenants: int, path: str = ":memory:") -> ConsentStore:
    """Every fourth tenant has consented to improvement of the service."""
    store = ConsentStore(path)
    for index in range(0, tenants, 4):
        tenant = f"tenant-{index:03d}"
        store.grant(tenant, "improvement", ["customer_data"], granted_by=f"admin@{tenant}")
    return store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=40)
    parser.add_argument("--messages", type=int, default=200_000)
    args = parser.parse_args(argv)
    if args.tenants < 1 or args.messages < 1:
        parser.error("--tenants and --messages must be positive")
    store = consent_store(args.tenants)
    pg.configure("trust-center", mode="enforce", consents=store)
    pg_spark.instrument()
    spark = session()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            path = os.path.join(scratch, "mail")
            generate_mailboxes(spark, tenants=args.tenants, messages=args.messages).write.parquet(path)
            started = time.perf_counter()
            outcome = run_job(label_mail(spark.read.parquet(path)))
            took = time.perf_counter() - started
    finally:
        spark.stop()
        store.close()
    print(f"usage report: {len(outcome.report)} tenants, e.g. {outcome.report[0]}")
    print(f"improvement analysis over consented tenants: {len(outcome.analysis)} days")
    print(
        "advertising audience: "
        + ("refused" if outcome.audience_refused else "BUILT")
        + "".join(
            f"\n  {v.category} for {v.purpose} (rule {v.rule}, via {v.via})" for v in outcome.violations
        )
    )
    print(f"job took {took:.1f} s")
    return 0 if outcome.audience_refused else 1


if __name__ == "__main__":
    sys.exit(main())
