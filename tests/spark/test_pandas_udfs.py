"""pandas UDFs (pandas_udf, mapInPandas, applyInPandas) on a real local Spark:
they keep the purpose where they were defined, in the Python workers too, and
their output columns carry the categories of the columns they read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd  # type: ignore[import-untyped]  # no stubs shipped
import pytest
from purposeguard.integrations import spark as pg_spark
from pyspark.sql import functions as F

import purposeguard as pg

# PySpark 4.3 notes that it does not fully support pandas 3 yet; what these
# tests use works on both.
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")

EMAIL = "customer_data.content.email"
# PySpark's overloads name pandas' own types, which mypy does not have here.
_pandas_udf: Any = F.pandas_udf


# -- functions the workers run (pickled by value with this module) ---------------------------------


def _purpose_per_value(texts: pd.Series) -> pd.Series:
    return texts.map(lambda _text: f"{pg.current_purpose()}")


def _purpose_per_batch(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
    for texts in batches:
        yield texts.map(lambda _text: f"{pg.current_purpose()}")


def _purposes_of_rows(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for frame in frames:
        yield pd.DataFrame({"p": [f"{pg.current_purpose()}"] * len(frame)})


def _first_words(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for frame in frames:
        yield pd.DataFrame({"id": frame["id"], "word": frame["body"].str.split().str[0]})


def _purpose_of_group(key: tuple[Any, ...], frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"tenant": [key[0]], "p": [f"{pg.current_purpose()}"]})


def _count_of_group(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"tenant": [frame["tenant"].iloc[0]], "n": [len(frame)]})


def _bodies_of_group(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"tenant": [frame["tenant"].iloc[0]], "longest": [frame["body"].str.len().max()]})


def _cogrouped(key: tuple[Any, ...], left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"tenant": [key[0]], "n": [len(left) + len(right)], "p": [f"{pg.current_purpose()}"]})


def _interests(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    @pg.purpose("advertising")
    def profile(text: str) -> str:
        return text[:3]

    for frame in frames:
        yield pd.DataFrame({"i": [profile(pg.label(str(b), EMAIL)) for b in frame["body"]]})


def _distinct(frame: Any, column: str) -> list[str]:
    return sorted({str(r[column]) for r in frame.select(column).distinct().collect()})


# -- the purpose travels to the workers ----------------------------------------------------------


def test_a_pandas_udf_runs_with_the_purpose_current_where_it_was_defined(raw_mail: Any) -> None:
    with pg.purpose("service.security"):
        where_defined = _pandas_udf(_purpose_per_value, "string")
    assert _distinct(raw_mail.select(where_defined("body").alias("p")), "p") == ["service.security"]


def test_an_iterator_pandas_udf_has_the_purpose_while_it_iterates(raw_mail: Any) -> None:
    """The batches are computed as the worker pulls them, after the call returned."""
    with pg.purpose("service.security"):
        where_defined = _pandas_udf(_purpose_per_batch, "string")
    assert _distinct(raw_mail.select(where_defined("body").alias("p")), "p") == ["service.security"]


def test_a_pandas_udf_defined_outside_any_purpose_runs_without_one(raw_mail: Any) -> None:
    plain = _pandas_udf(_purpose_per_value, "string")
    with pg.purpose("service.security"):
        frame = raw_mail.select(plain("body").alias("p"))
    assert _distinct(frame, "p") == ["None"]


def test_map_in_pandas_runs_with_the_purpose_where_it_was_called(raw_mail: Any) -> None:
    with pg.purpose("service.operations"):
        mapped = raw_mail.mapInPandas(_purposes_of_rows, "p string")
    assert _distinct(mapped, "p") == ["service.operations"]


def test_apply_in_pandas_passes_the_group_key_and_the_purpose(raw_mail: Any) -> None:
    """A two-argument function still receives the key: the wrapper keeps its signature."""
    with pg.purpose("service.operations"):
        grouped = raw_mail.groupBy("tenant").applyInPandas(_purpose_of_group, "tenant string, p string")
    rows = sorted((r.tenant, r.p) for r in grouped.collect())
    assert rows == [(t, "service.operations") for t in ("contoso", "fabrikam", "northwind", "tailspin")]


def test_apply_in_pandas_with_one_argument_gets_the_frame(raw_mail: Any) -> None:
    with pg.purpose("service.operations"):
        grouped = raw_mail.groupBy("tenant").applyInPandas(_count_of_group, "tenant string, n long")
    assert sorted((r.tenant, r.n) for r in grouped.collect()) == [
        ("contoso", 10),
        ("fabrikam", 10),
        ("northwind", 10),
        ("tailspin", 10),
    ]


def test_a_guarded_call_inside_map_in_pandas_is_checked_in_the_worker(raw_mail: Any) -> None:
    pg.configure("trust-center", mode="enforce")
    with pg.purpose("service.operations"):
        mapped = raw_mail.mapInPandas(_interests, "i string")
    with pytest.raises(Exception, match="PurposeViolation"):
        mapped.collect()


def test_cogrouped_apply_in_pandas_gets_the_key_the_purpose_and_both_sides_categories(
    mail: Any, spark: Any
) -> None:
    audiences = spark.createDataFrame([("contoso", "a1"), ("fabrikam", "a2")], ["tenant", "audience"])
    with pg.purpose("service.operations"):
        joined = (
            audiences.groupBy("tenant")
            .cogroup(mail.select("tenant", "body").groupBy("tenant"))
            .applyInPandas(_cogrouped, "tenant string, n long, p string")
        )
    assert pg_spark.lineage(joined).categories == (frozenset({EMAIL}),) * 3
    rows = sorted((r.tenant, r.n, r.p) for r in joined.collect())
    assert rows[:2] == [("contoso", 11, "service.operations"), ("fabrikam", 11, "service.operations")]


# -- labels through pandas UDFs -----------------------------------------------------------------------


def test_a_pandas_udf_column_carries_its_inputs_categories(mail: Any) -> None:
    upper = _pandas_udf(lambda s: s.str.upper(), "string")
    found = pg_spark.lineage(mail.select("id", upper("body").alias("loud"), upper("tenant").alias("t")))
    assert found.categories == (frozenset(), frozenset({EMAIL}), frozenset())


def test_map_in_pandas_output_carries_the_categories_of_the_columns_it_reads(mail: Any) -> None:
    mapped = mail.select("id", "body").mapInPandas(_first_words, "id string, word string")
    assert pg_spark.lineage(mapped).categories == (frozenset({EMAIL}),) * 2


def test_map_in_pandas_over_unlabelled_columns_stays_unlabelled(mail: Any) -> None:
    """Derived from the function's own inputs, not from everything in the plan."""
    mapped = mail.select("id", "size").mapInPandas(_purposes_of_rows, "p string")
    found = pg_spark.lineage(mapped)
    assert found.derived
    assert found.categories == (frozenset(),)


def test_apply_in_pandas_output_carries_the_group_s_categories(mail: Any) -> None:
    grouped = mail.groupBy("tenant").applyInPandas(_bodies_of_group, "tenant string, longest long")
    assert pg_spark.lineage(grouped).categories == (frozenset({EMAIL, "customer_data"}),) * 2


@pytest.mark.parametrize("mode", ["enforce", "trace"])
def test_a_forbidden_purpose_on_pandas_udf_output_is_refused_or_recorded(mail: Any, mode: str) -> None:
    pg.configure("trust-center", mode=mode)
    mapped = mail.select("id", "body").mapInPandas(_first_words, "id string, word string")
    ran = []

    @pg.purpose("advertising")
    def build_audience(frame: Any) -> None:
        ran.append(frame)

    with pg.testing.capture() as seen:
        if mode == "enforce":
            with pytest.raises(pg.PurposeViolation):
                build_audience(mapped)
        else:
            build_audience(mapped)
    assert len(ran) == (0 if mode == "enforce" else 1)
    assert {(v.category, v.via, v.mode) for v in seen} == {(EMAIL, "argument", mode)}


def test_consent_survives_map_in_pandas(mail: Any) -> None:
    """Rows kept by consented() stay covered after a pandas map over them."""
    from purposeguard.consent import ConsentStore

    store = ConsentStore(":memory:")
    store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    pg.configure("trust-center", mode="enforce", consents=store)
    try:
        kept = pg_spark.consented(mail, "improvement")
        mapped = kept.select("id", "body").mapInPandas(_first_words, "id string, word string")

        @pg.purpose("improvement")
        def analyse(frame: Any) -> int:
            return int(frame.count())

        assert analyse(mapped) == 10
        with pytest.raises(pg.PurposeViolation):
            analyse(mail.select("id", "body").mapInPandas(_first_words, "id string, word string"))
    finally:
        store.close()


def test_a_pandas_map_whose_inputs_cannot_be_seen_carries_every_category(mail: Any) -> None:
    """A function that takes no column purposeguard can follow fails closed:
    its output carries every category of the plan, never none."""
    mapped = mail.select().mapInPandas(_purposes_of_rows, "p string")
    assert pg_spark.lineage(mapped).categories == (frozenset({EMAIL, "customer_data"}),)


def _upper(texts: pd.Series) -> pd.Series:
    return texts.str.upper()


def _joined_with_the_batch(texts: pd.Series) -> pd.Series:
    return texts.map(lambda text: f"{text} | {' / '.join(texts)}")


def test_consented_refuses_what_a_non_deterministic_pandas_function_made_of_a_batch(mail: Any) -> None:
    """A pandas function is handed a batch of rows, every tenant's; one
    declared non-deterministic owes no row its own result, so its column is
    combined across tenants. A deterministic one is trusted to keep the
    row-wise contract pandas UDFs have."""
    from purposeguard.consent import ConsentStore

    store = ConsentStore(":memory:")
    try:
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
        pg.configure("trust-center", mode="enforce", consents=store)
        batch = _pandas_udf(_joined_with_the_batch, "string").asNondeterministic()
        mixed = mail.withColumn("digest", batch("body"))
        with pytest.raises(pg_spark.SchemaError, match="a non-deterministic Python function"):
            pg_spark.consented(mixed, "improvement")
        row_wise = mail.withColumn("digest", _pandas_udf(_upper, "string")("body"))
        kept = pg_spark.consented(row_wise, "improvement").select("tenant").distinct().collect()
        assert [row.tenant for row in kept] == ["contoso"]
    finally:
        store.close()
