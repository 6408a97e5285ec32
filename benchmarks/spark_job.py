"""The example Spark job with and without purposeguard: the end-to-end cost.

    python benchmarks/spark_job.py                    # 300,000 messages, 7 rounds
    python benchmarks/spark_job.py --messages 50000 --rounds 3

Both sides read the same Parquet files on the same local Spark and compute
the same results: the usage report and the improvement analysis over the
tenants that consented (read from the same consent store). With
purposeguard, the columns are labelled where the data enters, the usage
figures go through the policy transform, ``consented()`` filters the rows,
each use runs under its purpose, and the advertising audience is attempted
and refused. Without it, the job filters the consenting tenants with the same
broadcast semi-join by hand and builds no audience (the guarded side never
builds one either: it is refused before Spark runs anything).

Each round runs both, in alternating order; the figure is the median of the
per-round ratios (guarded / plain), so drift of a shared machine cancels out.
Target: at most 1.05 (5% slower end to end).
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from purposeguard.integrations import spark as pg_spark  # noqa: E402

import purposeguard as pg  # noqa: E402

# examples/spark_job.py, found through sys.path (this file has the same name).
job: Any = importlib.import_module("spark_job")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=40)
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    store = job.consent_store(args.tenants)
    pg.configure("trust-center", mode="enforce", consents=store)
    pg_spark.instrument()
    spark = job.session("purposeguard-spark-benchmark")
    try:
        with tempfile.TemporaryDirectory() as scratch:
            path = os.path.join(scratch, "mail")
            job.generate_mailboxes(spark, tenants=args.tenants, messages=args.messages).write.parquet(path)

            def guarded() -> object:
                outcome = job.run_job(job.label_mail(spark.read.parquet(path)))
                assert outcome.audience_refused
                return outcome.report, outcome.analysis

            def plain() -> object:
                mail = spark.read.parquet(path)
                tenants = sorted(
                    {g.tenant for g in store.list() if store.has_consent(g.tenant, "improvement", job.EMAIL)}
                )
                return job.usage_summary(job.usage_rows(mail)), job.length_by_day(
                    job.keep_tenants(mail, tenants)
                )

            # Warm up the JVM, the Python workers and both code paths; the
            # results must agree, or the comparison means nothing.
            assert guarded() == plain()
            ratios: list[float] = []
            times: dict[str, list[float]] = {"guarded": [], "plain": []}
            for round_number in range(args.rounds):
                order = [("plain", plain), ("guarded", guarded)]
                if round_number % 2:
                    order.reverse()
                took: dict[str, float] = {}
                for name, run in order:
                    started = time.perf_counter()
                    run()
                    took[name] = time.perf_counter() - started
                    times[name].append(took[name])
                ratios.append(took["guarded"] / took["plain"])
                print(
                    f"round {round_number + 1}: plain {took['plain']:.2f} s, guarded {took['guarded']:.2f} s, "
                    f"ratio {ratios[-1]:.3f}",
                    file=sys.stderr,
                )
    finally:
        spark.stop()
        store.close()
    ratio = statistics.median(ratios)
    print(
        f"spark job, {args.messages:,} messages of {args.tenants} tenants, {args.rounds} rounds: "
        f"plain {statistics.median(times['plain']):.2f} s, with purposeguard "
        f"{statistics.median(times['guarded']):.2f} s (medians); median per-round ratio {ratio:.3f} "
        f"(target <= 1.05: {'met' if ratio <= 1.05 else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
