"""Decimals, dates, times and durations labelled as subclasses of their own
type: usable wherever the plain value is (``Decimal(x)``, ``utcoffset``,
database drivers), their labels kept through text, pickling and copies, and
refused where the policy refuses their category."""

from __future__ import annotations

import copy
import datetime
import decimal
import enum
import pickle
import sqlite3
import warnings
from typing import Any

import pytest

import purposeguard as pg
from purposeguard._labels import strip_labels

DOCUMENT = "customer_data.content.document"
UTC = datetime.timezone.utc

VALUES: dict[str, Any] = {
    "decimal": decimal.Decimal("12.50"),
    "datetime": datetime.datetime(2024, 5, 1, 10, 30, 5, 7, tzinfo=UTC, fold=1),
    "naive datetime": datetime.datetime(2024, 5, 1, 10, 30),
    "date": datetime.date(2024, 5, 1),
    "time": datetime.time(10, 30, 5, 7, tzinfo=UTC),
    "timedelta": datetime.timedelta(days=2, seconds=5, microseconds=7),
}


@pg.purpose("advertising")
def choose_ad(value: object) -> None:
    pass


@pytest.mark.parametrize("plain", VALUES.values(), ids=VALUES.keys())
def test_a_labelled_value_is_its_own_type_and_equal_to_the_plain_one(plain: Any) -> None:
    labelled = pg.label(plain, DOCUMENT, tenant="contoso")
    assert isinstance(labelled, type(plain)) and type(labelled) is not type(plain)
    assert labelled == plain and hash(labelled) == hash(plain)
    assert pg.labels_of(labelled) == {DOCUMENT} and pg.tenant_of(labelled) == "contoso"
    stripped = strip_labels(labelled)
    assert type(stripped) is type(plain) and stripped == plain
    if isinstance(plain, datetime.datetime):
        assert stripped.fold == plain.fold and stripped.tzinfo is plain.tzinfo


@pytest.mark.parametrize("plain", VALUES.values(), ids=VALUES.keys())
def test_text_made_from_it_reads_as_the_plain_values_and_keeps_the_labels(plain: Any) -> None:
    labelled = pg.label(plain, DOCUMENT, tenant="contoso")
    for made, expected in (
        (str(labelled), str(plain)),
        (repr(labelled), repr(plain)),
        (f"{labelled}", f"{plain}"),
    ):
        assert made == expected
        assert pg.labels_of(made) == {DOCUMENT} and pg.tenant_of(made) == "contoso"


@pytest.mark.parametrize("plain", VALUES.values(), ids=VALUES.keys())
def test_pickles_and_copies_keep_labels_and_tenant(plain: Any) -> None:
    labelled = pg.label(plain, DOCUMENT, tenant="contoso")
    for made in (pickle.loads(pickle.dumps(labelled)), copy.copy(labelled), copy.deepcopy(labelled)):
        assert made == plain and type(made) is type(labelled)
        assert pg.labels_of(made) == {DOCUMENT} and pg.tenant_of(made) == "contoso"


@pytest.mark.parametrize("plain", VALUES.values(), ids=VALUES.keys())
def test_labelling_again_merges_the_categories(plain: Any) -> None:
    twice = pg.label(pg.label(plain, DOCUMENT), "customer_data.content.email")
    assert twice == plain
    assert pg.labels_of(twice) == {DOCUMENT, "customer_data.content.email"}


@pytest.mark.parametrize("plain", VALUES.values(), ids=VALUES.keys())
def test_it_is_refused_where_its_category_is(plain: Any) -> None:
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PurposeViolation) as refused:
        choose_ad(pg.label(plain, DOCUMENT))
    assert [(v.category, v.via) for v in refused.value.violations] == [(DOCUMENT, "argument")]


def test_the_type_itself_takes_it_where_a_proxy_was_refused() -> None:
    amount = pg.label(decimal.Decimal("12.50"), DOCUMENT)
    assert decimal.Decimal(amount) == decimal.Decimal("12.50")
    at = pg.label(VALUES["datetime"], DOCUMENT)
    assert UTC.utcoffset(at) == datetime.timedelta(0)
    assert datetime.datetime.fromisoformat(str(at)) == VALUES["datetime"]


@pytest.mark.parametrize("plain", VALUES.values(), ids=VALUES.keys())
def test_sqlite3_binds_it_as_it_binds_the_plain_value(plain: Any) -> None:
    # sqlite3 finds adapters by exact type; the application's adapters (here
    # for Decimal, time and timedelta) serve the labelled value too.
    connection = sqlite3.connect(":memory:")
    registered = [decimal.Decimal, datetime.time, datetime.timedelta]
    for kind in registered:
        sqlite3.register_adapter(kind, str)
    try:
        connection.execute("create table t (v)")
        with warnings.catch_warnings():
            # Python 3.12 deprecates the default date adapters, for both alike.
            warnings.simplefilter("ignore", DeprecationWarning)
            connection.execute("insert into t values (?)", (plain,))
            with pg.zone(tenant="contoso") as zone:
                connection.execute("insert into t values (?)", (pg.label(plain, DOCUMENT, tenant="contoso"),))
        stored = [row[0] for row in connection.execute("select v from t")]
        assert stored[0] == stored[1] and type(stored[1]) is type(stored[0])
        # Bound as text or a number made from it: the zone knows what was written.
        assert zone.categories == {DOCUMENT}
    finally:
        for kind in registered:
            del sqlite3.adapters[(kind, sqlite3.PrepareProtocol)]
        connection.close()


def test_sqlite3_refuses_it_where_it_refuses_the_plain_value() -> None:
    connection = sqlite3.connect(":memory:")
    for value in (decimal.Decimal("1.5"), pg.label(decimal.Decimal("1.5"), DOCUMENT)):
        with pytest.raises(sqlite3.ProgrammingError, match="not supported"):
            connection.execute("select ?", (value,))
    connection.close()


def test_date_arithmetic_keeps_the_labels_and_the_tenant() -> None:
    """Date arithmetic builds the value's own class: the labels stay, and so
    does the tenant (else a consenting tenant's due date plus 30 days would
    be no one's, which no consent covers)."""
    at = pg.label(VALUES["datetime"], DOCUMENT, tenant="contoso")
    day = pg.label(VALUES["date"], DOCUMENT, tenant="contoso")
    made = {
        "datetime + timedelta": at + datetime.timedelta(days=1),
        "timedelta + datetime": datetime.timedelta(days=1) + at,
        "datetime - timedelta": at - datetime.timedelta(days=1),
        "replace": at.replace(year=2030),
        "astimezone": at.astimezone(datetime.timezone(datetime.timedelta(hours=2))),
        "date + timedelta": day + datetime.timedelta(days=30),
    }
    assert made["datetime + timedelta"] == VALUES["datetime"] + datetime.timedelta(days=1)
    for name, value in made.items():
        assert (pg.labels_of(value), pg.tenant_of(value)) == ({DOCUMENT}, "contoso"), name
    # A difference of two dates is a plain duration.
    assert type(at - VALUES["datetime"]) is datetime.timedelta


def test_a_consenting_tenants_date_arithmetic_stays_covered_by_its_consent(tmp_path: Any) -> None:
    from purposeguard.consent import ConsentStore

    store = ConsentStore(tmp_path / "consent.db")
    store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    pg.configure("trust-center", mode="enforce", context_mode="enforce", consents=store)

    @pg.purpose("improvement")
    def plan(due: datetime.date) -> datetime.date:
        return due

    with pg.zone(tenant="contoso"):
        due = pg.label(VALUES["date"], "customer_data", tenant="contoso")
        assert plan(due + datetime.timedelta(days=30)) == VALUES["date"] + datetime.timedelta(days=30)
    store.close()


class Status(enum.Enum):
    OPEN = "open"


class Priority(enum.IntEnum):
    HIGH = 1


class Colour(str, enum.Enum):
    RED = "red"


@pytest.mark.parametrize(
    "member", [Status.OPEN, Priority.HIGH, Colour.RED], ids=["Enum", "IntEnum", "str Enum"]
)
def test_an_enum_member_stays_itself_and_is_never_labelled_for_the_whole_program(member: Any) -> None:
    """A member is a singleton the program names in its code: labelling one
    read from a column must not label every use of it, nor turn it into text."""
    pg.configure("trust-center", mode="enforce")
    with pg.zone() as zone:
        assert pg.label(member, DOCUMENT) is member
    assert zone.categories == {DOCUMENT}
    assert pg.labels_of(member) == frozenset()
    choose_ad(member)  # the code's own constant is no customer data
