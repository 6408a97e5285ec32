"""Django: values computed in SQL through a condition on a declared field carry its categories.

``Case(When(body__icontains=...))``, ``ExpressionWrapper(Q(...))``, an
aggregate's ``filter=``, ``Exists()`` and ``Subquery`` with a filter on a
declared column (or on an outer declared column, through ``OuterRef``) and
``update()`` with such an expression: the value depends on the declared
column as much as ``Upper("body")`` does, so it is labelled, refused under a
purpose that may not read the column, and told to the zone.

The notes site of test_django.py (tests/orm/django_site) on SQLite, set up
as test_django_exits.py does, with rows of this module's own."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard._context import MIXED_TENANT

SITE = Path(__file__).resolve().parent / "django_site"
DOCUMENT = "customer_data.content.document"
BODY = "Notes on the Northwind merger"
OTHER = "Frank's recipe for bread"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from .conftest import set_up_notes_site

    set_up_notes_site(tmp_path_factory)
    from django.contrib.auth.models import User
    from djnotes.models import Note, Profile
    from purposeguard.integrations import django as pg_django

    pg_django.instrument()  # test_django.py's site switches it off as it ends
    erin = User.objects.create_user("cond-erin", password="pw-erin")
    frank = User.objects.create_user("cond-frank", password="pw-frank")
    Note.objects.create(owner=erin, title="deal", body=BODY)
    Note.objects.create(owner=frank, title="bread", body=OTHER)
    yield {"erin": erin, "frank": frank, "User": User, "Note": Note, "Profile": Profile}
    User.objects.filter(username__startswith="cond-").delete()
    pg_django.uninstrument()
    sys.path.remove(str(SITE))


@pytest.fixture(autouse=True)
def configured(site: dict[str, Any]) -> Iterator[None]:
    """A fresh guard (trust-center, enforce); the notes' titles put back."""
    from purposeguard.integrations.django import _settings

    _settings.apply()
    yield
    site["Note"].objects.filter(owner=site["erin"]).update(title="deal")
    site["Note"].objects.filter(owner=site["frank"]).update(title="bread")


def _notes(site: dict[str, Any]) -> Any:
    return site["Note"].objects.filter(owner__in=[site["erin"], site["frank"]]).order_by("id")


def _segment() -> Any:
    """An ad segment computed in SQL from the note's body."""
    from django.db.models import Case, CharField, Value, When

    return Case(
        When(body__icontains="merger", then=Value("m&a")), default=Value("other"), output_field=CharField()
    )


def _refused(run: Any) -> list[tuple[str, str, str]]:
    with pytest.raises(pg.PurposeViolation) as caught:
        run()
    return sorted({(v.via, v.purpose, v.category) for v in caught.value.violations})


@contextmanager
def _advertising() -> Iterator[None]:
    with pg.purpose("advertising"):
        yield


# -- Case/When ---------------------------------------------------------------------------------


def test_a_case_on_a_declared_field_labels_values_rows_with_the_rows_tenant(site: dict[str, Any]) -> None:
    rows = list(_notes(site).annotate(segment=_segment()).values_list("segment", "owner"))
    assert [segment for segment, _owner in rows] == ["m&a", "other"]
    for segment, owner in rows:
        assert pg.labels_of(segment) == {DOCUMENT} and pg.tenant_of(segment) == str(owner)
    by_values = _notes(site).values(segment=_segment()).first()
    assert pg.labels_of(by_values["segment"]) == {DOCUMENT}
    flat = _notes(site).annotate(segment=_segment()).values_list("segment", flat=True).first()
    assert pg.labels_of(flat) == {DOCUMENT} and pg.tenant_of(flat) == MIXED_TENANT


def test_a_case_on_a_declared_field_labels_an_instances_annotation(site: dict[str, Any]) -> None:
    note = _notes(site).annotate(segment=_segment()).first()
    assert note.segment == "m&a"
    assert pg.labels_of(note.segment) == {DOCUMENT} and pg.tenant_of(note.segment) == str(site["erin"].pk)


def test_a_case_through_an_alias_is_labelled(site: dict[str, Any]) -> None:
    from django.db.models import F

    shown = _notes(site).alias(segment=_segment()).annotate(shown=F("segment"))
    assert pg.labels_of(shown.values_list("shown", flat=True).first()) == {DOCUMENT}


def test_a_case_on_a_declared_field_is_refused_and_told_to_the_zone(site: dict[str, Any]) -> None:
    segments = _notes(site).filter(owner=site["erin"]).annotate(segment=_segment())

    def read() -> None:
        with _advertising():
            list(segments.values_list("segment", flat=True))

    assert _refused(read) == [("source", "advertising", DOCUMENT)]
    with pg.zone(tenant=str(site["erin"].pk)) as zone:
        segments.values_list("segment", "owner").get()
    assert zone.categories == {DOCUMENT}


def test_nested_conditions_lookups_on_either_side_and_in_lists_are_followed(site: dict[str, Any]) -> None:
    from django.db.models import Case, CharField, F, Q, Value, When
    from django.db.models.functions import Lower
    from django.db.models.lookups import StartsWith

    def case(condition: Any) -> Any:
        return Case(When(condition, then=Value("y")), default=Value("n"), output_field=CharField())

    conditions = {
        "nested": Q(title="nothing") | (Q(title="deal") & ~Q(body__icontains="bread")),
        "right side": Q(title=F("body")),
        "in a list": Q(title__in=["deal", F("body")]),
        "on an expression": StartsWith(Lower("body"), "notes"),
    }
    for name, condition in conditions.items():
        value = _notes(site).annotate(x=case(condition)).values_list("x", flat=True).first()
        assert pg.labels_of(value) == {DOCUMENT}, name


def test_a_condition_on_undeclared_fields_only_labels_nothing(site: dict[str, Any]) -> None:
    from django.db.models import BooleanField, Case, CharField, Count, ExpressionWrapper, Q, Value, When

    plain = Case(When(title="deal", then=Value("y")), default=Value("n"), output_field=CharField())
    with pg.zone() as zone, _advertising():
        value = _notes(site).annotate(x=plain).values_list("x", flat=True).first()
        flag = (
            _notes(site)
            .annotate(x=ExpressionWrapper(Q(title="deal"), output_field=BooleanField()))
            .values_list("x", flat=True)
            .first()
        )
        counted = _notes(site).aggregate(n=Count("id", filter=Q(title="deal")))["n"]
    assert (value, flag, counted) == ("y", True, 1)
    assert pg.labels_of(value) == frozenset() and pg.labels_of(counted) == frozenset()
    assert zone.categories == frozenset()


# -- Q as a value, aggregates' filter= ----------------------------------------------------------


def test_a_wrapped_q_on_a_declared_field_tells_the_zone_and_is_refused(site: dict[str, Any]) -> None:
    from django.db.models import BooleanField, ExpressionWrapper, Q

    flagged = _notes(site).annotate(
        mentions=ExpressionWrapper(Q(body__icontains="merger"), output_field=BooleanField())
    )
    with pg.zone(tenant=str(site["erin"].pk)) as zone:
        flags = list(flagged.values_list("mentions", flat=True))
    # A truth value carries no label of its own: its categories go to the zone.
    assert flags == [True, False] and zone.categories == {DOCUMENT}

    def read() -> None:
        with _advertising():
            flagged.values_list("mentions", flat=True).first()

    assert _refused(read) == [("source", "advertising", DOCUMENT)]


def test_an_aggregates_filter_on_a_declared_field_labels_its_result(site: dict[str, Any]) -> None:
    from django.db.models import Case, Count, IntegerField, Max, Q, Value, When

    mentions = Q(body__icontains="merger")
    notes = _notes(site)
    found = notes.aggregate(
        newest=Max("id", filter=mentions),
        counted=Count("id", filter=mentions),
        cased=Count(Case(When(mentions, then=Value(1)), output_field=IntegerField())),
    )
    assert (found["counted"], found["cased"]) == (1, 1)
    for name, value in found.items():
        assert pg.labels_of(value) == {DOCUMENT} and pg.tenant_of(value) == MIXED_TENANT, name
    alone = notes.aggregate(n=Count("id", filter=mentions))["n"]
    assert pg.labels_of(alone) == {DOCUMENT}
    # A count of rows is still no value of them.
    assert pg.labels_of(notes.count()) == frozenset()
    assert pg.labels_of(notes.aggregate(n=Count("id"))["n"]) == frozenset()
    per_user = (
        site["User"]
        .objects.filter(username="cond-erin")
        .annotate(n=Count("notes", filter=Q(notes__body__icontains="merger")))
        .values_list("n", flat=True)
        .get()
    )
    assert per_user == 1 and pg.labels_of(per_user) == {DOCUMENT}


# -- subqueries --------------------------------------------------------------------------------


def test_exists_with_a_filter_on_a_declared_column_tells_the_zone(site: dict[str, Any]) -> None:
    from django.db.models import Exists, OuterRef

    Note = site["Note"]
    users = (
        site["User"]
        .objects.filter(username__startswith="cond-")
        .order_by("id")
        .annotate(deal=Exists(Note.objects.filter(owner=OuterRef("pk"), body__icontains="merger")))
    )
    with pg.zone(tenant=str(site["erin"].pk)) as zone:
        assert list(users.values_list("deal", flat=True)) == [True, False]
    # Other rows' bodies: several tenants'.
    assert zone.categories == {DOCUMENT} and MIXED_TENANT in zone.owners

    def read() -> None:
        with _advertising():
            list(users.values_list("deal", flat=True))

    assert _refused(read) == [("source", "advertising", DOCUMENT)]


def test_a_subquery_filtered_on_a_declared_column_is_labelled(site: dict[str, Any]) -> None:
    from django.db.models import OuterRef, Subquery

    Note = site["Note"]
    title = Subquery(Note.objects.filter(owner=OuterRef("pk"), body__icontains="merger").values("title")[:1])
    value = (
        site["User"].objects.filter(username="cond-erin").annotate(t=title).values_list("t", flat=True).get()
    )
    assert value == "deal" and pg.labels_of(value) == {DOCUMENT} and pg.tenant_of(value) == MIXED_TENANT


def test_a_subquery_condition_on_an_outer_declared_column_is_labelled(site: dict[str, Any]) -> None:
    from django.db.models import Exists, OuterRef

    User = site["User"]
    # The subquery's own table declares nothing: the outer body is what is read.
    named = _notes(site).annotate(named=Exists(User.objects.filter(username=OuterRef("body"))))
    with pg.zone() as zone:
        assert list(named.values_list("named", flat=True)) == [False, False]
    assert zone.categories == {DOCUMENT}


def test_a_subquery_condition_of_a_shape_not_read_counts_as_every_declared_field(
    site: dict[str, Any],
) -> None:
    from django.db.models import Exists, OuterRef

    Note = site["Note"]
    raw = Note.objects.filter(owner=OuterRef("pk")).extra(where=["body like '%%merger%%'"])
    users = site["User"].objects.filter(username="cond-erin").annotate(deal=Exists(raw))
    with pg.zone() as zone:
        assert users.values_list("deal", flat=True).get() is True
    assert zone.categories == {DOCUMENT}


# -- update() ----------------------------------------------------------------------------------


def test_an_update_through_a_condition_on_a_declared_field_is_refused_before_it_runs(
    site: dict[str, Any],
) -> None:
    from django.db.models import BooleanField, Exists, ExpressionWrapper, OuterRef, Q

    Note = site["Note"]
    erins = Note.objects.filter(owner=site["erin"])
    others = Note.objects.filter(pk=OuterRef("pk"), body__icontains="merger")
    writes = {
        "Case": _segment(),
        "Q": ExpressionWrapper(Q(body__icontains="merger"), output_field=BooleanField()),
        "Exists": Exists(others),
    }
    for name, expression in writes.items():

        def update(expression: Any = expression) -> None:
            with _advertising():
                erins.update(title=expression)

        assert _refused(update) == [("source", "advertising", DOCUMENT)], name
    assert erins.values_list("title", flat=True).get() == "deal"  # nothing written
    with pg.zone(tenant=str(site["erin"].pk)) as zone:
        erins.update(title=_segment())
    assert zone.categories == {DOCUMENT} and MIXED_TENANT in zone.owners
    assert erins.values_list("title", flat=True).get() == "m&a"


def test_an_update_of_a_parents_field_through_a_condition_is_refused(
    site: dict[str, Any], temporary_models: list[str]
) -> None:
    """Multi-table inheritance: the parent's UPDATE holds expressions not yet resolved."""
    from typing import Annotated

    from django.db import connection, models
    from django.db.models import Case, CharField, Value, When

    def model(name: str, namespace: dict[str, Any], base: Any) -> Any:
        temporary_models.append(name)
        meta = type("Meta", (), {"app_label": "djnotes"})
        return type(name, (base,), {"__module__": "djnotes.models", "Meta": meta, **namespace})

    Account: Any = model(
        "CondAccount",
        {
            "__annotations__": {"secret": Annotated[str, pg.Category("customer_data")]},
            "secret": models.TextField(),
            "label": models.TextField(default=""),
        },
        models.Model,
    )
    Premium: Any = model("CondPremium", {"level": models.TextField(default="")}, Account)
    with connection.schema_editor() as editor:
        editor.create_model(Account)
        editor.create_model(Premium)
    try:
        Premium.objects.create(secret="s3cret", label="gold")
        tier = Case(
            When(secret__startswith="s3", then=Value("s")), default=Value("-"), output_field=CharField()
        )

        def update() -> None:
            with _advertising():
                Premium.objects.update(label=tier)

        assert _refused(update) == [("source", "advertising", "customer_data")]
        assert Premium.objects.values_list("label", flat=True).get() == "gold"
        # A queryset in such a condition is read as a subquery: one reading no
        # declared column lets the update run.
        golden = Account.objects.filter(label="gold").values("pk")
        plain = Case(When(pk__in=golden, then=Value("g")), default=Value("-"), output_field=CharField())
        with _advertising():
            Premium.objects.update(label=plain)
        assert Premium.objects.values_list("label", flat=True).get() == "g"
    finally:
        with connection.schema_editor() as editor:
            editor.delete_model(Premium)
            editor.delete_model(Account)


def test_a_null_a_condition_gives_is_a_read_too(site: dict[str, Any]) -> None:
    """No match is an answer too: the NULL stays None, the zone learns it,
    and it is refused under a purpose that may not read the field."""
    from django.db.models import Case, CharField, Value, When

    found = Case(When(body__icontains="layoffs", then=Value("yes")), output_field=CharField())
    with pg.zone() as zone:
        assert list(_notes(site).values_list(found, flat=True)) == [None, None]
    assert zone.categories == {DOCUMENT}
    with pg.purpose("advertising"), pytest.raises(pg.PurposeViolation):
        list(_notes(site).values_list(found, flat=True))
