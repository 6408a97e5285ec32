"""Django: instances the application writes carry labels as loaded ones do.

Once ``save()``, ``create()``, a ``ModelForm``'s ``save()``,
``get_or_create()``, ``update_or_create()``, ``bulk_create()`` or
``bulk_update()`` has written a row, the declared values its instance holds
are what the database stores: labelled with the field's categories and the
row's tenant, as a load of the row labels them, so code handed the new
instance is refused what it would be refused for the row loaded back.

The notes site of test_django.py (tests/orm/django_site) on SQLite, shared
with the other Django test files of the session as test_django_exits.py
shares it; the PostgreSQL case is in test_django_postgres.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard._context import MIXED_TENANT

from .conftest import set_up_notes_site

SITE = Path(__file__).resolve().parent / "django_site"
DOCUMENT = "customer_data.content.document"
BODY = "Draft of the Fabrikam merger terms"
EMAIL = "erin@contoso.example"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    set_up_notes_site(tmp_path_factory)
    from django.contrib.auth.models import User
    from djnotes.models import Note, Profile
    from purposeguard.integrations import django as pg_django

    pg_django.instrument()  # test_django.py's site switches it off as it ends
    erin = User.objects.create_user("written-erin", password="pw-erin")
    fay = User.objects.create_user("written-fay", password="pw-fay")
    yield {"erin": erin, "fay": fay, "User": User, "Note": Note, "Profile": Profile}
    User.objects.filter(username__startswith="written-").delete()
    pg_django.uninstrument()
    sys.path.remove(str(SITE))


@pytest.fixture(autouse=True)
def configured(site: dict[str, Any]) -> Iterator[None]:
    """The PURPOSEGUARD setting (trust-center, enforce, no consent recorded)
    applied to a fresh guard; the rows a test wrote taken out again."""
    from purposeguard.integrations.django import _settings

    _settings.apply()
    yield
    site["Note"].objects.filter(owner__in=[site["erin"], site["fay"]]).delete()
    site["Profile"].objects.filter(user__in=[site["erin"], site["fay"]]).delete()


def _of(site: dict[str, Any], user: str) -> str:
    return str(site[user].pk)


@pg.purpose("improvement")  # consentable: no tenant here has recorded consent
def _sync_to_product_analytics(email: str) -> str:
    return email


def _refused_rule(call: Any) -> str:
    with pytest.raises(pg.PurposeViolation) as caught:
        call()
    rule = caught.value.violations[0].rule
    assert rule is not None
    return rule


def test_a_created_instance_has_labelled_fields_and_its_row_tenant(site: dict[str, Any]) -> None:
    profile = site["Profile"].objects.create(user=site["erin"], email=EMAIL)
    note = site["Note"].objects.create(owner=site["erin"], title="terms", body=BODY)
    assert (profile.email, pg.labels_of(profile.email), pg.tenant_of(profile.email)) == (
        EMAIL,
        {"customer_data"},
        _of(site, "erin"),
    )
    assert pg.labels_of(note.body) == {DOCUMENT} and pg.tenant_of(note.body) == _of(site, "erin")
    assert type(note.title) is str  # a field with no Category stays plain
    assert DOCUMENT in pg.labels_of(note)  # the instance carries its fields' categories, as a loaded one


def test_outside_a_zone_a_created_instance_is_refused_as_the_loaded_row_is(site: dict[str, Any]) -> None:
    """A management command importing customers: no zone, no trace; the label is all there is."""
    created = site["Profile"].objects.create(user=site["erin"], email=EMAIL)
    loaded = site["Profile"].objects.get(pk=created.pk)
    assert _refused_rule(lambda: _sync_to_product_analytics(created.email)) == "improvement-only-with-consent"
    assert _refused_rule(lambda: _sync_to_product_analytics(loaded.email)) == "improvement-only-with-consent"


def test_a_model_form_saved_in_a_request_zone_is_labelled(site: dict[str, Any]) -> None:
    from django import forms

    class NoteForm(forms.ModelForm):  # type: ignore[type-arg]  # Django ships no types
        class Meta:
            model = site["Note"]
            fields = ["owner", "title", "body"]

    with pg.zone(tenant=_of(site, "erin")):
        form = NoteForm({"owner": site["erin"].pk, "title": "terms", "body": BODY})
        assert form.is_valid()
        note = form.save()
        assert pg.labels_of(note.body) == {DOCUMENT} and pg.tenant_of(note.body) == _of(site, "erin")
        with pytest.raises(pg.PurposeViolation) as caught:
            _sync_to_product_analytics(note.body)
    assert [(v.via, v.rule, v.category) for v in caught.value.violations] == [
        ("argument", "improvement-only-with-consent", DOCUMENT)
    ]


def test_a_value_assigned_and_saved_is_labelled(site: dict[str, Any]) -> None:
    Note = site["Note"]
    made = Note(owner=site["erin"], title="terms", body=BODY)
    made.save()
    loaded = Note.objects.get(pk=made.pk)
    loaded.body = "Revised merger terms"
    loaded.save()
    assert pg.labels_of(made.body) == {DOCUMENT} and pg.tenant_of(made.body) == _of(site, "erin")
    assert pg.labels_of(loaded.body) == {DOCUMENT} and pg.tenant_of(loaded.body) == _of(site, "erin")


def test_get_or_create_and_update_or_create_label_what_they_write(site: dict[str, Any]) -> None:
    Note = site["Note"]
    made, created = Note.objects.get_or_create(owner=site["erin"], title="terms", defaults={"body": BODY})
    updated, was_created = Note.objects.update_or_create(
        owner=site["erin"], title="terms", defaults={"body": "Revised merger terms"}
    )
    fresh, fresh_created = Note.objects.update_or_create(
        owner=site["fay"], title="packing", defaults={"body": "Fay's packing list"}
    )
    assert (created, was_created, fresh_created) == (True, False, True)
    assert [(pg.labels_of(n.body), pg.tenant_of(n.body)) for n in (made, updated, fresh)] == [
        ({DOCUMENT}, _of(site, "erin")),
        ({DOCUMENT}, _of(site, "erin")),
        ({DOCUMENT}, _of(site, "fay")),
    ]


def test_bulk_create_and_bulk_update_label_the_instances_they_write(site: dict[str, Any]) -> None:
    Note = site["Note"]
    made = Note.objects.bulk_create(
        [
            Note(owner=site["erin"], title="terms", body=BODY),
            Note(owner=site["fay"], title="packing", body="Fay's packing list"),
        ]
    )
    assert [(pg.labels_of(n.body), pg.tenant_of(n.body)) for n in made] == [
        ({DOCUMENT}, _of(site, "erin")),
        ({DOCUMENT}, _of(site, "fay")),
    ]
    changed = []
    for note in Note.objects.filter(pk__in=[n.pk for n in made]).order_by("id"):
        note.body = f"{note.title}: revised"
        changed.append(note)
    # A generator: bulk_update() reads it once, and the instances are still labelled after.
    assert Note.objects.bulk_update((note for note in changed), ["body"]) == 2
    assert [(n.body, pg.labels_of(n.body), pg.tenant_of(n.body)) for n in changed] == [
        ("terms: revised", {DOCUMENT}, _of(site, "erin")),
        ("packing: revised", {DOCUMENT}, _of(site, "fay")),
    ]
    assert list(
        Note.objects.filter(pk__in=[n.pk for n in made]).order_by("id").values_list("body", flat=True)
    ) == [
        "terms: revised",
        "packing: revised",
    ]


def test_a_post_save_receiver_gets_a_labelled_instance(site: dict[str, Any]) -> None:
    from django.db.models.signals import post_save

    seen: list[tuple[frozenset[str], str | None]] = []

    def receiver(sender: Any, instance: Any, **kwargs: Any) -> None:
        seen.append((pg.labels_of(instance.email), pg.tenant_of(instance.email)))

    post_save.connect(receiver, sender=site["Profile"])
    try:
        site["Profile"].objects.create(user=site["erin"], email=EMAIL)
    finally:
        post_save.disconnect(receiver, sender=site["Profile"])
    assert seen == [({"customer_data"}, _of(site, "erin"))]


def test_labelling_a_write_tells_the_zone_nothing_reading_the_field_does(site: dict[str, Any]) -> None:
    Note = site["Note"]
    note = Note.objects.create(owner=site["erin"], title="terms", body=BODY)
    with pg.zone(tenant=_of(site, "erin")) as zone:
        loaded = Note.objects.get(pk=note.pk)
        loaded.__dict__["body"] = "Revised merger terms"  # set without a read
        loaded.save(update_fields=["title"])  # writes the title alone: reads no declared field
        assert zone.categories == frozenset()
        assert pg.labels_of(loaded.__dict__["body"]) == {DOCUMENT}
        assert loaded.body == "Revised merger terms"
        assert zone.categories == {DOCUMENT} and _of(site, "erin") in zone.owners


def test_writing_is_not_a_read_under_the_current_purpose(site: dict[str, Any]) -> None:
    """The application had the values: a write under a purpose that may not
    read them is not a source violation (handing them on still is checked)."""

    made: list[Any] = []

    @pg.purpose("advertising")
    def save_in_campaign_code() -> None:
        made.append(site["Note"].objects.create(owner=site["erin"], title="terms", body=BODY))

    save_in_campaign_code()
    assert site["Note"].objects.filter(pk=made[0].pk).exists()
    assert pg.labels_of(made[0].body) == {DOCUMENT}
    with pytest.raises(pg.PurposeViolation):
        pg.check(made[0].body, "advertising")


def test_a_written_value_carries_every_tenant_it_may_belong_to(site: dict[str, Any]) -> None:
    """A row moved to another tenant in memory, then saved: its loaded values
    were the first tenant's, so they carry both (several tenants), never
    only the wrong one; a plain value written there is the new tenant's."""
    Note = site["Note"]
    note = Note.objects.create(owner=site["erin"], title="terms", body=BODY)
    moved = Note.objects.get(pk=note.pk)
    assert pg.tenant_of(moved.body) == _of(site, "erin")
    moved.owner = site["fay"]
    moved.save()
    assert pg.labels_of(moved.body) == {DOCUMENT} and pg.tenant_of(moved.body) == MIXED_TENANT
    moved.body = "Fay's copy"
    moved.save()
    assert pg.tenant_of(moved.body) == _of(site, "fay")


def test_a_written_value_is_stored_plain_and_saves_again(site: dict[str, Any]) -> None:
    from django.db import connection

    Note = site["Note"]
    note = Note.objects.create(owner=site["erin"], title="terms", body=BODY)
    note.title = note.body[:5]  # a labelled value into a plain column
    note.save()
    with connection.cursor() as cursor:
        cursor.execute("select title, body, typeof(body) from djnotes_note where id = %s", [note.pk])
        title, body, kind = cursor.fetchone()
    assert (title, body, kind) == (BODY[:5], BODY, "text") and type(body) is str
