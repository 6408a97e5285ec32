"""Django: reads and writes that went past labelling unnoticed, now labelled, refused or logged.

``FilteredRelation`` paths in ``values()``, updates whose expressions read
declared fields in SQL, data written into fields that declare no category
(logged), serialized querysets, and the PostgreSQL aggregates, JSON keys and
``dates()`` of declared fields.

The notes site of test_django.py (tests/orm/django_site) on SQLite. Django's
settings are made once per process: when test_django.py ran before this
module in the session (as it does, collected first), its site is used, with
rows of this module's own; else this module sets the site up the same way.
The PostgreSQL checks run in a Django process of their own, as in
test_django_postgres.py."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard._context import MIXED_TENANT

HERE = Path(__file__).resolve().parent
SITE = HERE / "django_site"
DOCUMENT = "customer_data.content.document"
BODY = "Draft of the Fabrikam merger terms"
OTHER = "Dave's packing list"
EMAIL = "carol@contoso.example"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    # Imported here: this file also runs as a script (the PostgreSQL case, below).
    from .conftest import set_up_notes_site

    set_up_notes_site(tmp_path_factory)
    from django.contrib.auth.models import User
    from djnotes.models import Note, Profile
    from purposeguard.integrations import django as pg_django

    pg_django.instrument()  # test_django.py's site switches it off as it ends
    carol = User.objects.create_user("exits-carol", password="pw-carol")
    dave = User.objects.create_user("exits-dave", password="pw-dave")
    notes = [
        Note.objects.create(owner=carol, title="terms", body=BODY).pk,
        Note.objects.create(owner=dave, title="packing", body=OTHER).pk,
    ]
    Profile.objects.create(user=carol, email=EMAIL)
    yield {"carol": carol, "dave": dave, "notes": notes, "User": User, "Note": Note, "Profile": Profile}
    User.objects.filter(username__startswith="exits-").delete()
    pg_django.uninstrument()
    sys.path.remove(str(SITE))


@pytest.fixture(autouse=True)
def configured(site: dict[str, Any]) -> Iterator[None]:
    """The PURPOSEGUARD setting (trust-center, enforce) applied to a fresh guard;
    the notes' rows put back as they were."""
    from purposeguard.integrations.django import _settings

    _settings.apply()
    yield
    Note = site["Note"]
    Note.objects.filter(owner__in=[site["carol"], site["dave"]]).exclude(pk__in=site["notes"]).delete()
    Note.objects.filter(owner=site["carol"]).update(title="terms", body=BODY)
    Note.objects.filter(owner=site["dave"]).update(title="packing", body=OTHER)


@pytest.fixture
def said(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[str]]]:
    """What the purposeguard logger has warned so far in the test (every
    model field and categories told anew: once per process otherwise)."""
    from purposeguard.integrations.django._declared import STATE

    STATE.laundered.clear()
    caplog.set_level(logging.WARNING, logger="purposeguard")
    yield lambda: [r.getMessage() for r in caplog.records if r.name == "purposeguard"]
    STATE.laundered.clear()


def _model(name: str, namespace: dict[str, Any], names: list[str], base: Any = None) -> Any:
    from django.db import models

    names.append(name)
    namespace = {
        "__module__": "djnotes.models",
        "Meta": type("Meta", (), {"app_label": "djnotes"}),
        **namespace,
    }
    return type(name, (base or models.Model,), namespace)


@contextmanager
def _tables(*made: Any) -> Iterator[None]:
    from django.db import connection

    with connection.schema_editor() as editor:
        for model in made:
            editor.create_model(model)
    try:
        yield
    finally:
        with connection.schema_editor() as editor:
            for model in reversed(made):
                editor.delete_model(model)


def _refused(run: Any) -> list[tuple[str, str, str]]:
    with pytest.raises(pg.PurposeViolation) as caught:
        run()
    return [(v.via, v.purpose, v.category) for v in caught.value.violations]


def _mine(site: dict[str, Any]) -> Any:
    return site["Note"].objects.filter(owner__in=[site["carol"], site["dave"]]).order_by("id")


# -- FilteredRelation paths -------------------------------------------------------------------


def test_a_filtered_relation_path_in_values_is_labelled(site: dict[str, Any]) -> None:
    from django.db.models import FilteredRelation, Q

    User = site["User"]
    users = User.objects.filter(username="exits-carol").annotate(
        n=FilteredRelation("notes", condition=Q(notes__title="terms"))
    )
    row = users.values("n__body", "n__owner").get()
    alone = users.values("n__body").get()["n__body"]
    (flat,) = users.values_list("n__body", flat=True)
    assert (row["n__body"], pg.labels_of(row["n__body"])) == (BODY, {DOCUMENT})
    assert pg.tenant_of(row["n__body"]) == str(site["carol"].pk)  # the related row's tenant, selected
    assert pg.labels_of(alone) == {DOCUMENT} and pg.tenant_of(alone) == MIXED_TENANT
    assert pg.labels_of(flat) == {DOCUMENT} and pg.tenant_of(flat) == MIXED_TENANT


def test_a_filtered_relation_path_is_refused_under_a_purpose_that_may_not_read_it(
    site: dict[str, Any],
) -> None:
    from django.db.models import FilteredRelation

    users = site["User"].objects.filter(username="exits-carol").annotate(n=FilteredRelation("notes"))

    @pg.purpose("advertising")
    def flat() -> list[str]:
        return list(users.values_list("n__body", flat=True))

    def values() -> Any:
        with pg.purpose("advertising"):
            return list(users.values("n__body"))

    refused = [("source", "advertising", DOCUMENT)]
    assert _refused(flat) == refused and _refused(values) == refused


# -- updates that read declared fields in SQL -------------------------------------------------


def _copies(site: dict[str, Any]) -> dict[str, Any]:
    """update() expressions that read a declared field in SQL, with the category each reads."""
    from django.db.models import F, OuterRef, Subquery, TextField, Value
    from django.db.models.functions import Concat, Upper

    email = Subquery(site["Profile"].objects.filter(user=OuterRef("owner")).values("email")[:1])
    return {
        "F": (F("body"), DOCUMENT),
        "Concat": (Concat(Value("re: "), "body", output_field=TextField()), DOCUMENT),
        "Upper": (Upper("body"), DOCUMENT),
        "Subquery": (email, "customer_data"),
    }


@pytest.mark.parametrize("copy", ["F", "Concat", "Upper", "Subquery"])
def test_an_update_reading_a_declared_field_is_refused_before_it_runs(
    site: dict[str, Any], copy: str
) -> None:
    expression, category = _copies(site)[copy]
    carols = site["Note"].objects.filter(owner=site["carol"])

    def update() -> None:
        with pg.purpose("advertising"):
            carols.update(title=expression)

    assert _refused(update) == [("source", "advertising", category)]
    assert carols.values_list("title", flat=True).get() == "terms"  # nothing written


def test_saves_and_bulk_updates_of_expressions_are_refused_too(site: dict[str, Any]) -> None:
    from django.db.models import F

    Note = site["Note"]

    @pg.purpose("advertising")
    def save() -> None:
        note = Note.objects.only("id", "title").get(owner=site["carol"])
        note.title = F("body")
        note.save(update_fields=["title"])

    @pg.purpose("advertising")
    def bulk() -> None:
        note = Note(pk=Note.objects.values_list("pk", flat=True).get(owner=site["carol"]))
        note.title = F("body")
        Note.objects.bulk_update([note], ["title"])

    refused = [("source", "advertising", DOCUMENT)]
    assert _refused(save) == refused and _refused(bulk) == refused
    assert Note.objects.filter(owner=site["carol"]).values_list("title", flat=True).get() == "terms"


def test_an_update_reading_a_declared_field_tells_the_zone(site: dict[str, Any]) -> None:
    from django.db.models import F

    carols = site["Note"].objects.filter(owner=site["carol"])
    with pg.zone(tenant=str(site["carol"].pk)) as zone:
        carols.update(title=F("body"))
        # Every row the statement writes: no one tenant's.
        assert zone.categories == {DOCUMENT} and MIXED_TENANT in zone.owners
    assert carols.values_list("title", flat=True).get() == BODY


def test_an_update_reading_no_declared_field_runs_under_any_purpose(site: dict[str, Any]) -> None:
    from django.db.models import Value
    from django.db.models.functions import Concat, Upper

    carols = site["Note"].objects.filter(owner=site["carol"])
    with pg.zone() as zone, pg.purpose("advertising"):
        carols.update(title=Upper("title"))
        carols.update(title=Concat(Value("re: "), "title"))
        carols.update(title="plain")
    assert zone.categories == frozenset()
    assert carols.values_list("title", flat=True).get() == "plain"


def test_an_update_of_a_parents_field_reading_a_declared_field_is_refused(
    site: dict[str, Any], temporary_models: list[str]
) -> None:
    """Multi-table inheritance: the parent's table gets an UPDATE of its own."""
    from typing import Annotated

    from django.db import models
    from django.db.models import F

    Account: Any = _model(
        "ExitsAccount",
        {
            "__annotations__": {"secret": Annotated[str, pg.Category("customer_data")]},
            "secret": models.TextField(),
            "label": models.TextField(default=""),
        },
        temporary_models,
    )
    Premium: Any = _model("ExitsPremium", {"level": models.TextField(default="")}, temporary_models, Account)
    with _tables(Account, Premium):
        Premium.objects.create(secret="s3cret", label="gold")

        def update() -> None:
            with pg.purpose("advertising"):
                Premium.objects.update(label=F("secret"))

        assert _refused(update) == [("source", "advertising", "customer_data")]
        assert Premium.objects.values_list("label", flat=True).get() == "gold"


# -- data written into a field that declares no category ---------------------------------------


def test_a_labelled_value_saved_into_an_undeclared_field_is_stored_and_logged_once(
    site: dict[str, Any], said: Callable[[], list[str]]
) -> None:
    Note = site["Note"]
    note = Note.objects.get(owner=site["carol"])
    note.title = "re: " + note.body
    note.save()
    note.title = note.body[:9]
    note.save()  # the same field and categories: told once
    (warning,) = said()
    assert "djnotes.Note.title" in warning and DOCUMENT in warning
    assert "unlabelled" in warning and "declare" in warning
    assert BODY[:9] not in warning  # never the value
    # Not refused: stored, and read back without a label.
    title = Note.objects.values_list("title", flat=True).get(pk=note.pk)
    assert title == BODY[:9] and pg.labels_of(title) == frozenset()


def _writes(site: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """Ways to write carol's note body (labelled, or read in SQL) into Note.title."""
    from django.db.models import F

    Note, carol = site["Note"], site["carol"]
    mine = Note.objects.filter(pk=site["notes"][0])

    def body() -> str:
        return Note.objects.get(pk=site["notes"][0]).body  # type: ignore[no-any-return]

    def bulk_update() -> None:
        note = Note.objects.get(pk=site["notes"][0])
        note.title = note.body
        Note.objects.bulk_update([note], ["title"])

    return {
        "create": lambda: Note.objects.create(owner=carol, title=body(), body="copy"),
        "get_or_create": lambda: Note.objects.get_or_create(owner=carol, title=body(), body="copy"),
        "bulk_create": lambda: Note.objects.bulk_create([Note(owner=carol, title=body(), body="copy")]),
        "update": lambda: mine.update(title=body()),
        "update F": lambda: mine.update(title=F("body")),
        "bulk_update": bulk_update,
    }


@pytest.mark.parametrize(
    "write", ["create", "get_or_create", "bulk_create", "update", "update F", "bulk_update"]
)
def test_every_write_into_an_undeclared_field_is_logged(
    site: dict[str, Any], said: Callable[[], list[str]], write: str
) -> None:
    _writes(site)[write]()
    (warning,) = said()
    assert "djnotes.Note.title" in warning and DOCUMENT in warning and BODY not in warning


def test_other_categories_written_into_the_same_field_are_logged_again(
    site: dict[str, Any], said: Callable[[], list[str]]
) -> None:
    Note, Profile = site["Note"], site["Profile"]
    mine = Note.objects.filter(pk=site["notes"][0])
    mine.update(title=Note.objects.get(pk=site["notes"][0]).body)
    mine.update(title=Profile.objects.get(user=site["carol"]).email)
    mine.update(title=Note.objects.get(pk=site["notes"][0]).body)
    first, second = said()
    assert DOCUMENT in first and "customer_data" in second and DOCUMENT not in second
    assert EMAIL not in second


def test_declared_fields_and_plain_values_are_written_without_a_word(
    site: dict[str, Any], said: Callable[[], list[str]]
) -> None:
    Note, Profile = site["Note"], site["Profile"]
    note = Note.objects.get(pk=site["notes"][0])
    note.body = note.body.upper()  # a declared field: reads back labelled
    note.title = "plain"
    note.save()
    Note.objects.create(owner=site["carol"], title="plain", body=note.body)
    profile = Profile.objects.get(user=site["carol"])
    profile.save()
    Note.objects.filter(pk=note.pk).update(title="plain", owner=site["carol"])
    assert said() == []


# -- serialized querysets ---------------------------------------------------------------------


def test_serialized_text_carries_the_categories_and_tenants_of_the_fields_it_holds(
    site: dict[str, Any],
) -> None:
    from django.core import serializers

    carols = site["Note"].objects.filter(owner=site["carol"])
    text = serializers.serialize("json", carols)
    assert BODY in text and pg.labels_of(text) == {DOCUMENT} and pg.tenant_of(text) == str(site["carol"].pk)
    later = serializers.serialize("jsonl", carols.only("title"))  # the body loads as it is written
    assert (
        BODY in later and pg.labels_of(later) == {DOCUMENT} and pg.tenant_of(later) == str(site["carol"].pk)
    )
    both = serializers.serialize("xml", _mine(site))
    assert pg.labels_of(both) == {DOCUMENT} and pg.tenant_of(both) == MIXED_TENANT
    titles = serializers.serialize("json", carols, fields=("title",))
    assert BODY not in titles and pg.labels_of(titles) == frozenset()
    with pytest.raises(pg.PurposeViolation):
        pg.check(text, "advertising")


def test_serializing_inside_a_zone_tells_it_what_was_written(site: dict[str, Any]) -> None:
    from django.core import serializers

    with pg.zone(tenant=str(site["carol"].pk)) as zone:
        serializers.serialize("json", site["Note"].objects.filter(owner=site["carol"]))
    assert zone.categories == {DOCUMENT}


def _tickets(names: list[str]) -> tuple[Any, Any]:
    """A ticket model whose natural key is text built from its declared body,
    and an order model that names tickets (a foreign key, a many-to-many)."""
    from typing import Annotated

    from django.db import models

    def natural_key(self: Any) -> tuple[str]:
        # An ordinary natural key: the f-string keeps no label of the body.
        return (f"ticket: {self.body}",)

    Ticket = _model(
        "ExitsTicket",
        {
            "__purposeguard_tenant__": "tenant",
            "__annotations__": {"body": Annotated[str, pg.Category(DOCUMENT)]},
            "tenant": models.CharField(max_length=20),
            "body": models.TextField(),
            "natural_key": natural_key,
        },
        names,
    )
    Order = _model(
        "ExitsOrder",
        {
            "ticket": models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="exits_orders"),
            "also": models.ManyToManyField(Ticket, related_name="exits_orders_also"),
            "total": models.IntegerField(default=0),
        },
        names,
    )
    return Ticket, Order


def test_natural_keys_in_serialized_text_carry_the_labels_of_what_they_are_made_from(
    site: dict[str, Any], temporary_models: list[str]
) -> None:
    """use_natural_foreign_keys=True writes a related row's natural_key() into
    the text: the order model declares nothing, its tickets' bodies are in it."""
    from django.core import serializers

    Ticket, Order = _tickets(temporary_models)
    with _tables(Ticket, Order):
        first = Ticket.objects.create(tenant="contoso", body=BODY)
        other = Ticket.objects.create(tenant="fabrikam", body=OTHER)
        order = Order.objects.create(ticket=first, total=5)
        orders = Order.objects.all()
        by_key = serializers.serialize("json", orders, use_natural_foreign_keys=True)
        as_xml = serializers.serialize("xml", orders, use_natural_foreign_keys=True)
        # The serializer's own serialize() hands the text back too.
        direct = serializers.get_serializer("json")().serialize(orders, use_natural_foreign_keys=True)
        order.also.add(first, other)
        both = serializers.serialize("jsonl", orders, use_natural_foreign_keys=True)
        by_id = serializers.serialize("json", orders)
        left_out = serializers.serialize("json", orders, fields=("total",), use_natural_foreign_keys=True)
        with pg.zone(tenant="contoso") as zone:
            assert site["Profile"].objects.get(user=site["carol"]).email == EMAIL  # read before
            in_zone = serializers.serialize("json", orders, fields=("ticket",), use_natural_foreign_keys=True)
            plain_in_zone = serializers.serialize("json", orders, fields=("total",))
    for text in (by_key, as_xml, direct):
        assert f"ticket: {BODY}" in text
        assert pg.labels_of(text) == {DOCUMENT} and pg.tenant_of(text) == "contoso"
        with pytest.raises(pg.PurposeViolation):
            pg.check(text, "advertising")
    assert (
        f"ticket: {OTHER}" in both and pg.labels_of(both) == {DOCUMENT} and pg.tenant_of(both) == MIXED_TENANT
    )
    for text in (by_id, left_out):
        assert BODY not in text and pg.labels_of(text) == frozenset()
    # What the zone saw before (an address) is not what the text was made from.
    assert pg.labels_of(in_zone) == {DOCUMENT} and pg.tenant_of(in_zone) == "contoso"
    assert pg.labels_of(plain_in_zone) == frozenset()
    assert zone.categories == {"customer_data", DOCUMENT}


# -- dates() and JSON keys of declared fields -------------------------------------------------


def _diary(names: list[str]) -> Any:
    """A model of declared date, datetime and JSON fields, of a tenant per row."""
    import datetime
    from typing import Annotated

    from django.db import models

    return _model(
        "ExitsDiary",
        {
            "__purposeguard_tenant__": "owner",
            "__annotations__": {
                "day": Annotated[datetime.date, pg.Category("customer_data")],
                "at": Annotated[datetime.datetime, pg.Category("customer_data")],
                "data": Annotated[dict[str, Any], pg.Category("customer_data")],
            },
            "owner": models.CharField(max_length=20),
            "day": models.DateField(),
            "at": models.DateTimeField(),
            "data": models.JSONField(default=dict),
        },
        names,
    )


def _diary_reads(Diary: Any) -> dict[str, Callable[[], Any]]:
    import datetime

    utc = datetime.timezone.utc
    return {
        "dates": lambda: list(Diary.objects.dates("day", "month"))[0],
        "datetimes": lambda: list(Diary.objects.datetimes("at", "day", tzinfo=utc))[0],
        "json key": lambda: Diary.objects.values("data__plan", "owner").get()["data__plan"],
        "json key flat": lambda: list(Diary.objects.values_list("data__plan", flat=True))[0],
    }


def _diary_row(Diary: Any) -> None:
    import datetime

    at = datetime.datetime(2024, 5, 1, 10, tzinfo=datetime.timezone.utc)
    Diary.objects.create(owner="contoso", day=at.date(), at=at, data={"plan": "gold"})


def test_dates_and_json_keys_of_declared_fields_are_labelled_and_refused(
    site: dict[str, Any], temporary_models: list[str]
) -> None:
    import datetime

    Diary = _diary(temporary_models)
    with _tables(Diary):
        _diary_row(Diary)
        reads = _diary_reads(Diary)
        seen = {name: (read(), pg.labels_of(read()), pg.tenant_of(read())) for name, read in reads.items()}
        for name, read in reads.items():

            def under_ads(read: Callable[[], Any] = read) -> None:
                with pg.purpose("advertising"):
                    read()

            assert _refused(under_ads) == [("source", "advertising", "customer_data")], name
    labelled = {"customer_data"}
    assert seen["dates"] == (datetime.date(2024, 5, 1), labelled, MIXED_TENANT)
    assert seen["datetimes"][0] == datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc)
    assert seen["datetimes"][1:] == (labelled, MIXED_TENANT)
    assert seen["json key"] == ("gold", labelled, "contoso")
    assert seen["json key flat"] == ("gold", labelled, MIXED_TENANT)


# -- PostgreSQL: aggregates of text and arrays, JSON keys, dates() ------------------------------


def _postgres_checks(url: str) -> dict[str, Any]:
    """In a Django process of its own, on PostgreSQL: what each read gives
    (value, labels, tenant) and whether it is refused under advertising."""
    spec = importlib.util.spec_from_file_location("_django_postgres_site", HERE / "test_django_postgres.py")
    assert spec is not None and spec.loader is not None
    postgres_site = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(postgres_site)
    site = postgres_site._setup(url)
    from django.contrib.postgres.aggregates import ArrayAgg, StringAgg
    from django.core import serializers

    User, Note, Ledger = site["User"], site["Note"], site["Ledger"]
    Ledger.objects.create(account="acct-1", entries={"plan": "gold"}, tags=["vip"])
    names: list[str] = []
    Diary = _diary(names)
    with _tables(Diary):
        _diary_row(Diary)
        reads: dict[str, Callable[[], Any]] = {
            **_diary_reads(Diary),
            "StringAgg aggregate": lambda: Note.objects.aggregate(s=StringAgg("body", delimiter="|"))["s"],
            "ArrayAgg aggregate": lambda: Note.objects.aggregate(s=ArrayAgg("body"))["s"],
            "StringAgg values": lambda: (
                User.objects.filter(username="alice")
                .annotate(s=StringAgg("notes__body", delimiter="|"))
                .values("s")
                .get()["s"]
            ),
            "ArrayAgg values": lambda: (
                User.objects.filter(username="alice")
                .annotate(s=ArrayAgg("notes__body"))
                .values("s")
                .get()["s"]
            ),
            "entries key": lambda: Ledger.objects.values("entries__plan", "account").get()["entries__plan"],
            "tags index": lambda: Ledger.objects.values("tags__0").get()["tags__0"],
            "serialized": lambda: serializers.serialize("json", Ledger.objects.all()),
        }
        found: dict[str, Any] = {}
        for name, read in reads.items():
            value = read()
            try:
                with pg.purpose("advertising"):
                    read()
                refused = None
            except pg.PurposeViolation as error:
                refused = error.violations[0].via
            found[name] = (str(value), sorted(pg.labels_of(value)), pg.tenant_of(value), refused)
    return found


@pytest.mark.services
def test_postgres_aggregates_json_keys_and_dates_of_declared_fields_are_labelled_and_refused(
    postgres_server: Any,
) -> None:
    url = postgres_server.create_database()
    ran = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), url],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
    )
    assert ran.returncode == 0, ran.stderr[-4000:]
    found = json.loads(ran.stdout.splitlines()[-1])
    for name, (value, labels, tenant, refused) in found.items():
        assert labels and refused == "source", (name, value, labels)
        if name not in ("json key", "entries key", "serialized"):
            assert tenant == MIXED_TENANT, name  # no one row's tenant selected with the value
    assert found["entries key"][:3] == ["gold", ["customer_data"], "acct-1"]
    assert found["json key"][:3] == ["gold", ["customer_data"], "contoso"]
    assert found["StringAgg values"][:2] == [
        "Minutes of the board meeting: merger talks with Fabrikam",
        [DOCUMENT],
    ]
    assert found["serialized"][1:3] == [["customer_data"], "acct-1"]


if __name__ == "__main__":
    print(json.dumps(_postgres_checks(sys.argv[1])))


# -- declared Decimal and datetime fields stay usable where Django needs the type -------------


def test_declared_decimal_and_datetime_fields_save_filter_and_format_as_their_types(
    site: dict[str, Any], temporary_models: list[str]
) -> None:
    """A labelled Decimal or datetime is a Decimal or datetime (not a proxy):
    saving a loaded row, filtering and updating by its value, ``Decimal(x)``
    and Django's date formatting work, and the value is still refused where
    the policy refuses its category."""
    import datetime
    import decimal
    from typing import Annotated

    from django.db import models
    from django.utils import dateformat, formats

    Ledger = _model(
        "ExitsLedger",
        {
            "__purposeguard_tenant__": "owner",
            "__annotations__": {
                "amount": Annotated[decimal.Decimal, pg.Category("customer_data")],
                "at": Annotated[datetime.datetime, pg.Category("customer_data")],
            },
            "owner": models.CharField(max_length=20),
            "amount": models.DecimalField(max_digits=8, decimal_places=2),
            "at": models.DateTimeField(),
        },
        temporary_models,
    )
    at = datetime.datetime(2024, 1, 1, 12, tzinfo=datetime.timezone.utc)
    with _tables(Ledger):
        Ledger.objects.create(owner="contoso", amount=decimal.Decimal("12.50"), at=at)
        row = Ledger.objects.get()
        assert isinstance(row.amount, decimal.Decimal) and isinstance(row.at, datetime.datetime)
        assert pg.labels_of(row.amount) == pg.labels_of(row.at) == {"customer_data"}
        assert pg.tenant_of(row.amount) == "contoso"
        row.save()
        assert Ledger.objects.filter(amount=row.amount, at=row.at).count() == 1
        assert Ledger.objects.filter(pk=row.pk).update(amount=row.amount) == 1
        assert decimal.Decimal(row.amount) == decimal.Decimal("12.50")
        assert dateformat.format(row.at, "Y") == "2024"
        assert formats.date_format(row.at, "Y-m-d") == "2024-01-01"

        def under_ads() -> None:
            with pg.purpose("advertising"):
                pg.check([row.amount, row.at])

        assert _refused(under_ads) == [("argument", "advertising", "customer_data")]
