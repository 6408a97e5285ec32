"""Django: ORM values arrive labelled, a zone per request, the tenant after login, violations as 403s.

A real Django project (tests/orm/django_site) on a real SQLite file, driven by
Django's test clients and served on loopback (WSGI and ASGI)."""

import asyncio
import json
import logging
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

import purposeguard as pg
from purposeguard._context import MIXED_TENANT

from .conftest import served_django_asgi, set_up_notes_site

SITE = Path(__file__).parent / "django_site"
DOCUMENT = "customer_data.content.document"
BODY = "Minutes of the board meeting: merger talks with Fabrikam"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The Django project, set up once: settings, apps (our AppConfig.ready()), tables, two users."""
    set_up_notes_site(tmp_path_factory)
    from django.apps import apps
    from django.contrib.auth.models import User
    from djnotes.models import Note, Profile
    from purposeguard.integrations import django as pg_django

    if not pg_django.is_instrumented():
        # Django ran the app's ready() when another test file set the site up,
        # and that file switched labelling off as it ended: run it again, as
        # django.setup() would in a process of its own.
        apps.get_app_config("purposeguard").ready()
    alice = User.objects.create_user("alice", password="pw-alice")
    bob = User.objects.create_user("bob", password="pw-bob")
    Note.objects.create(owner=alice, title="board", body=BODY)
    Note.objects.create(owner=bob, title="shopping", body="Bob's shopping list")
    Profile.objects.create(user=alice, email="alice@contoso.example")
    yield {"alice": alice, "bob": bob, "Note": Note, "Profile": Profile}
    pg_django.uninstrument()
    sys.path.remove(str(SITE))


@pytest.fixture(autouse=True)
def configured(site: dict[str, Any]) -> None:
    """The PURPOSEGUARD setting applied again: every test starts from a fresh guard."""
    from purposeguard.integrations.django import _settings

    _settings.apply()


def _client(site: dict[str, Any], user: str = "alice") -> Any:
    from django.test import Client

    client = Client()
    client.force_login(site[user])
    return client


# -- the ORM ---------------------------------------------------------------------------


def test_listing_the_app_switches_orm_labelling_on(site: dict[str, Any]) -> None:
    from django.apps import apps
    from purposeguard.integrations import django as pg_django

    assert pg_django.is_instrumented()
    # What django.setup() runs for an app listed in INSTALLED_APPS, from
    # labelling off (the state this file's fixture may have found it in).
    assert apps.is_installed("purposeguard.integrations.django")
    pg_django.uninstrument()
    try:
        apps.get_app_config("purposeguard").ready()
        assert pg_django.is_instrumented()
    finally:
        pg_django.instrument()


def test_a_loaded_instance_has_labelled_fields_and_the_row_tenant(site: dict[str, Any]) -> None:
    note = site["Note"].objects.get(title="board")
    assert note.body == BODY
    assert pg.labels_of(note.body) == {DOCUMENT}
    assert pg.tenant_of(note.body) == str(site["alice"].pk)
    assert pg.labels_of(note.title) == frozenset()
    assert DOCUMENT in pg.labels_of(note)


def test_deferred_fields_are_labelled_when_they_load(site: dict[str, Any]) -> None:
    note = site["Note"].objects.only("title").get(title="board")
    assert "body" not in note.__dict__
    assert pg.labels_of(note.body) == {DOCUMENT}


def test_loading_marks_nothing_changed_and_saving_stores_the_plain_value(site: dict[str, Any]) -> None:
    from django.db import connection

    Note = site["Note"]
    note = Note.objects.get(title="board")
    note.title = note.body[:7]  # a labelled value written to a plain column
    note.save()
    with connection.cursor() as cursor:
        cursor.execute("select title, body, typeof(body) from djnotes_note where id = %s", [note.pk])
        title, body, kind = cursor.fetchone()
    assert (title, body, kind) == (BODY[:7], BODY, "text") and type(title) is str
    assert Note.objects.filter(body=note.body).count() == 1  # a labelled value in a WHERE clause
    note.title = "board"
    note.save()


def test_values_rows_are_labelled_with_the_tenant_when_it_is_selected(site: dict[str, Any]) -> None:
    row = site["Note"].objects.filter(title="board").values("title", "body", "owner").get()
    assert pg.labels_of(row["body"]) == {DOCUMENT} and pg.tenant_of(row["body"]) == str(site["alice"].pk)
    assert pg.labels_of(row["title"]) == frozenset()


def test_values_list_rows_and_named_rows_are_labelled(site: dict[str, Any]) -> None:
    Note = site["Note"]
    (title, body) = Note.objects.filter(title="board").values_list("title", "body").get()
    named = Note.objects.filter(title="board").values_list("body", "owner_id", named=True).get()
    # The tenant not selected: several tenants', which no one tenant's consent covers.
    assert pg.labels_of(body) == {DOCUMENT} and pg.tenant_of(body) == MIXED_TENANT
    assert pg.labels_of(named.body) == {DOCUMENT} and pg.tenant_of(named.body) == str(site["alice"].pk)


def test_flat_values_lists_are_labelled(site: dict[str, Any]) -> None:
    bodies = list(site["Note"].objects.order_by("id").values_list("body", flat=True))
    titles = list(site["Note"].objects.order_by("id").values_list("title", flat=True))
    assert [pg.labels_of(b) for b in bodies] == [{DOCUMENT}, {DOCUMENT}]
    assert [type(t) for t in titles] == [str, str]


def test_related_fields_and_annotations_are_labelled(site: dict[str, Any]) -> None:
    from django.db.models.functions import Upper

    User = type(site["alice"])
    row = User.objects.filter(username="alice").values("profile__email", "profile__user").get()
    assert pg.labels_of(row["profile__email"]) == {"customer_data"}
    assert pg.tenant_of(row["profile__email"]) == str(site["alice"].pk)
    shouted = (
        site["Note"].objects.filter(title="board").annotate(loud=Upper("body")).values_list("loud", flat=True)
    )
    assert [pg.labels_of(v) for v in shouted] == [{DOCUMENT}]


def test_async_queries_are_labelled(site: dict[str, Any]) -> None:
    async def load() -> Any:
        return await site["Note"].objects.filter(title="board").afirst()

    note = asyncio.run(load())
    assert pg.labels_of(note.body) == {DOCUMENT}


# -- the zone learns what is read --------------------------------------------------------------

EMAIL = "alice@contoso.example"


def test_loading_an_instance_inside_a_zone_leaves_the_zone_as_it_was(site: dict[str, Any]) -> None:
    """A loaded row is not yet a flow: the login layer loading the user does not taint the request."""
    with pg.zone(tenant=str(site["alice"].pk)) as zone:
        profile = site["Profile"].objects.get(user=site["alice"])
        assert profile.user_id == site["alice"].pk
        assert zone.categories == frozenset()
        assert pg.labels_of(profile.__dict__["email"]) == {"customer_data"}  # labelled all the same


def test_reading_a_declared_field_inside_a_zone_adds_its_categories(site: dict[str, Any]) -> None:
    alice = str(site["alice"].pk)
    with pg.zone(tenant=alice) as zone:
        profile = site["Profile"].objects.get(user=site["alice"])
        laundered = f"{profile.email}!"  # an f-string drops the label: the zone has it
        assert pg.labels_of(laundered) == frozenset()
        assert zone.categories == {"customer_data"} and alice in zone.owners


def test_every_zone_and_every_row_tenant_a_read_names_is_told(site: dict[str, Any]) -> None:
    """Reads are remembered per zone, class and tenant: another zone, or a
    row of another tenant read in the same zone, is told again."""
    alice, bob = str(site["alice"].pk), str(site["bob"].pk)
    notes = list(site["Note"].objects.order_by("id"))
    with pg.zone(tenant=alice) as first:
        assert notes[0].body == BODY
    with pg.zone(tenant=alice) as second:
        assert notes[0].body == BODY
        assert (second.categories, second.owners) == ({DOCUMENT}, {alice})
        assert notes[1].body == "Bob's shopping list"
        assert second.owners == {alice, bob}
    assert (first.categories, first.owners) == ({DOCUMENT}, {alice})


def test_a_deferred_field_read_inside_a_zone_adds_its_categories(site: dict[str, Any]) -> None:
    with pg.zone(tenant=str(site["alice"].pk)) as zone:
        note = site["Note"].objects.only("title").get(title="board")
        assert note.title == "board" and zone.categories == frozenset()
        assert note.body == BODY
        assert zone.categories == {DOCUMENT}


def test_values_rows_inside_a_zone_are_reads(site: dict[str, Any]) -> None:
    with pg.zone(tenant=str(site["alice"].pk)) as zone:
        bodies = list(site["Note"].objects.filter(title="board").values_list("body", flat=True))
        assert bodies == [BODY] and zone.categories == {DOCUMENT}
    with pg.zone(tenant=str(site["alice"].pk)) as zone:
        site["Note"].objects.filter(title="board").values("title", "body").get()
        assert zone.categories == {DOCUMENT}


def test_loading_under_a_forbidden_purpose_inside_a_zone_is_still_a_source_violation(
    site: dict[str, Any],
) -> None:
    @pg.purpose("advertising")
    def load() -> Any:
        return site["Profile"].objects.get(user=site["alice"])

    with pg.zone(tenant=str(site["alice"].pk)) as zone, pytest.raises(pg.PurposeViolation) as caught:
        load()
    assert [(v.via, v.purpose, v.category) for v in caught.value.violations] == [
        ("source", "advertising", "customer_data")
    ]
    assert zone.categories == frozenset()


def test_assigning_a_declared_field_stores_it_and_saves_the_plain_value(site: dict[str, Any]) -> None:
    from django.db import connection

    Profile = site["Profile"]
    profile = Profile.objects.get(user=site["alice"])
    profile.email = "alice@fabrikam.example"
    assert profile.__dict__["email"] == "alice@fabrikam.example"
    profile.save()
    with connection.cursor() as cursor:
        cursor.execute("select email from djnotes_profile where id = %s", [profile.pk])
        assert cursor.fetchone() == ("alice@fabrikam.example",)
    profile.email = EMAIL
    profile.save()
    assert Profile.objects.get(pk=profile.pk).email == EMAIL


def test_saving_inside_a_zone_reads_the_fields_it_writes(site: dict[str, Any]) -> None:
    with pg.zone(tenant=str(site["alice"].pk)) as zone:
        profile = site["Profile"].objects.get(user=site["alice"])
        profile.save(update_fields=["user"])
        assert zone.categories == frozenset()
        profile.save()
        assert zone.categories == {"customer_data"}


def test_uninstrument_gives_the_fields_django_s_own_descriptor_back(site: dict[str, Any]) -> None:
    from django.db.models.query_utils import DeferredAttribute
    from purposeguard.integrations import django as pg_django

    Profile, Note = site["Profile"], site["Note"]
    assert type(Profile.__dict__["email"]) is not DeferredAttribute
    assert type(Note.__dict__["title"]) is DeferredAttribute  # undeclared: untouched
    pg_django.uninstrument()
    try:
        assert type(Profile.__dict__["email"]) is DeferredAttribute
        assert type(Note.__dict__["body"]) is DeferredAttribute
        with pg.zone() as zone:
            profile = Profile.objects.get(user=site["alice"])
            assert type(profile.email) is str and zone.categories == frozenset()
    finally:
        pg_django.instrument()
    assert type(Profile.__dict__["email"]) is not DeferredAttribute


def _enforce_zone_flows() -> None:
    pg.configure("trust-center", mode="enforce", context_mode="enforce")


def test_a_signed_in_house_ad_is_allowed_with_zone_flows_enforced(site: dict[str, Any]) -> None:
    """The account middleware loads the user's profile in every request: the
    house ad reads none of it, so it is not refused."""
    _enforce_zone_flows()
    with pg.testing.assert_no_violations():
        response = _client(site).get("/house-ad/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200 and response.json() == {"ad": "ad-for-28"}


def test_a_users_email_laundered_into_an_ad_is_refused(site: dict[str, Any]) -> None:
    _enforce_zone_flows()
    with pg.testing.capture() as violations:
        response = _client(site).get("/email-ad/", HTTP_ACCEPT="application/json")
    assert response.status_code == 403 and EMAIL not in response.content.decode()
    body = response.json()
    assert (body["via"], body["purpose"], body["category"], body["rule"]) == (
        "context",
        "advertising",
        "customer_data",
        "no-advertising",
    )
    assert [(v.via, v.tenant) for v in violations] == [("context", str(site["alice"].pk))]


# -- requests --------------------------------------------------------------------------------


def test_an_allowed_view_answers_within_a_zone_named_after_the_user(site: dict[str, Any]) -> None:
    with pg.testing.assert_no_violations():
        response = _client(site).get("/notes/")
    assert response.status_code == 200
    assert response.json() == {"notes": [BODY[:20]], "tenant": str(site["alice"].pk)}


def test_an_allowed_async_view_answers(site: dict[str, Any]) -> None:
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    async def call() -> Any:
        client = AsyncClient()
        await sync_to_async(client.force_login)(site["bob"])  # aforce_login is Django 5.0+
        return await client.get("/notes-async/")

    response = asyncio.run(call())
    assert response.status_code == 200
    assert response.json() == {"notes": ["Bob's shopping list"], "tenant": str(site["bob"].pk)}


def test_content_reaching_an_ad_is_a_403_with_a_json_body_for_json_requests(site: dict[str, Any]) -> None:
    with pg.testing.capture() as violations:
        response = _client(site).get("/ads/", HTTP_ACCEPT="application/json")
    assert response.status_code == 403 and response["Content-Type"] == "application/json"
    body = response.json()
    assert (body["error"], body["purpose"], body["category"], body["rule"]) == (
        "purpose_violation",
        "advertising",
        DOCUMENT,
        "no-advertising",
    )
    assert BODY not in response.content.decode()
    assert [(v.purpose, v.tenant) for v in violations] == [("advertising", str(site["alice"].pk))]


def test_a_violation_is_an_html_page_for_a_browser(site: dict[str, Any]) -> None:
    response = _client(site).get("/ads/", HTTP_ACCEPT="text/html")
    page = response.content.decode()
    assert response.status_code == 403 and response["Content-Type"].startswith("text/html")
    assert "<h1>403 Forbidden</h1>" in page and "no-advertising" in page and BODY not in page


def test_async_views_are_refused_too(site: dict[str, Any]) -> None:
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    async def call() -> Any:
        client = AsyncClient()
        await sync_to_async(client.force_login)(site["alice"])
        return await client.get("/ads-async/", headers={"Accept": "application/json"})

    response = asyncio.run(call())
    assert response.status_code == 403 and response.json()["purpose"] == "advertising"


def test_values_list_rows_reaching_an_ad_are_refused(site: dict[str, Any]) -> None:
    assert _client(site).get("/ads-values/").status_code == 403


def test_what_the_request_zone_saw_reaches_an_ad_built_with_an_f_string(site: dict[str, Any]) -> None:
    with pg.testing.capture() as violations:
        response = _client(site).get("/profile-ads/", HTTP_ACCEPT="application/json")
    (violation,) = violations
    assert (violation.via, violation.purpose, violation.category) == ("context", "advertising", DOCUMENT)
    assert violation.tenant == str(site["alice"].pk)  # the zone's tenant, named after login
    # Zone-only flows follow the rule's context_mode.
    assert response.status_code == (403 if violation.mode == "enforce" else 200)


def test_a_view_declared_for_ads_may_not_even_read_the_notes(site: dict[str, Any]) -> None:
    with pg.testing.capture() as violations:
        response = _client(site).get("/ads-by-purpose/", HTTP_ACCEPT="application/json")
    assert response.status_code == 403 and response.json()["via"] == "source"
    assert [(v.via, v.purpose, v.tenant) for v in violations] == [
        ("source", "advertising", str(site["alice"].pk))
    ]


def test_in_trace_mode_the_view_runs_and_the_violation_is_recorded(site: dict[str, Any]) -> None:
    pg.configure("trust-center", mode="trace")
    with pg.testing.capture() as violations:
        response = _client(site).get("/ads/")
    assert response.status_code == 200
    assert [(v.purpose, v.category, v.mode) for v in violations] == [("advertising", DOCUMENT, "trace")]


def test_an_anonymous_request_has_no_tenant(site: dict[str, Any]) -> None:
    from django.test import Client

    response = Client().get("/notes/")
    assert response.status_code == 302  # login_required, and nothing else in the way


# -- served on loopback --------------------------------------------------------------------


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def served(site: dict[str, Any]) -> Iterator[str]:
    from django.core.wsgi import get_wsgi_application

    server = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _session_cookie(site: dict[str, Any], user: str) -> str:
    return str(_client(site, user).cookies["sessionid"].value)


def _get(url: str, cookie: str, accept: str = "application/json") -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Cookie": f"sessionid={cookie}", "Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_served_over_loopback_allowed_and_refused(site: dict[str, Any], served: str) -> None:
    cookie = _session_cookie(site, "alice")
    status, body = _get(served + "/notes/", cookie)
    assert status == 200 and json.loads(body)["tenant"] == str(site["alice"].pk)
    status, body = _get(served + "/ads/", cookie)
    assert status == 403 and json.loads(body)["rule"] == "no-advertising" and BODY not in body


def test_served_over_loopback_zone_flows_enforced(site: dict[str, Any], served: str) -> None:
    _enforce_zone_flows()
    cookie = _session_cookie(site, "alice")
    status, body = _get(served + "/house-ad/", cookie)
    assert (status, json.loads(body)) == (200, {"ad": "ad-for-28"})
    status, body = _get(served + "/email-ad/", cookie)
    assert status == 403 and json.loads(body)["via"] == "context" and EMAIL not in body


def test_served_through_asgi_over_loopback(site: dict[str, Any], served_asgi: str) -> None:
    cookie = _session_cookie(site, "bob")
    status, body = _get(served_asgi + "/notes-async/", cookie)
    assert status == 200 and json.loads(body)["notes"] == ["Bob's shopping list"]
    status, body = _get(served_asgi + "/ads-async/", cookie, accept="text/html")
    assert status == 403 and "<h1>403 Forbidden</h1>" in body


# -- bad input ----------------------------------------------------------------------------------


def _model(name: str, namespace: dict[str, Any], names: list[str]) -> type:
    from django.db import models

    names.append(name)
    namespace = {
        "__module__": "djnotes.models",
        "Meta": type("Meta", (), {"app_label": "djnotes"}),
        **namespace,
    }
    return type(name, (models.Model,), namespace)


def _create_table(model: type) -> None:
    from django.db import connection

    with connection.schema_editor() as editor:
        editor.create_model(model)


def _drop_table(model: type) -> None:
    from django.db import connection

    with connection.schema_editor() as editor:
        editor.delete_model(model)


def test_a_model_defined_after_instrument_is_read_through_from_its_first_load(
    temporary_models: list[str],
) -> None:
    from typing import Annotated

    from django.db import models
    from django.db.models.query_utils import DeferredAttribute

    Late: Any = _model(
        "Late",
        {
            "__annotations__": {"secret": Annotated[str, pg.Category("customer_data")]},
            "secret": models.TextField(),
            "title": models.TextField(),
        },
        temporary_models,
    )
    _create_table(Late)
    try:
        Late.objects.create(secret="s3cret", title="t")
        with pg.zone() as zone:
            late = Late.objects.get()
            assert type(Late.__dict__["secret"]) is not DeferredAttribute
            assert late.title == "t" and zone.categories == frozenset()
            assert late.secret == "s3cret" and zone.categories == {"customer_data"}
    finally:
        _drop_table(Late)


def test_reading_a_declared_value_that_cannot_carry_a_label_tells_the_zone(
    temporary_models: list[str],
) -> None:
    """True and False stay themselves: the read names the field's categories and the row's tenant."""
    from typing import Annotated

    from django.db import models

    Flag: Any = _model(
        "Flag",
        {
            "__purposeguard_tenant__": "account",
            "__annotations__": {"vip": Annotated[bool, pg.Category("customer_data")]},
            "account": models.CharField(max_length=20),
            "vip": models.BooleanField(),
        },
        temporary_models,
    )
    _create_table(Flag)
    try:
        Flag.objects.create(account="acct-7", vip=True)
        with pg.zone() as zone:
            flag = Flag.objects.get()
            assert zone.categories == frozenset()
            assert flag.vip is True
            assert (zone.categories, zone.owners) == ({"customer_data"}, {"acct-7"})
    finally:
        _drop_table(Flag)


def test_a_declared_field_with_a_descriptor_of_its_own_tells_the_zone_at_load(
    temporary_models: list[str],
) -> None:
    """A file field keeps Django's FileDescriptor: its model's loads tell the zone at once."""
    from typing import Annotated

    from django.db import models
    from django.db.models.fields.files import FileDescriptor
    from purposeguard.integrations import django as pg_django

    Upload: Any = _model(
        "Upload",
        {
            "__annotations__": {"scan": Annotated[str, pg.Category("customer_data")]},
            "scan": models.FileField(upload_to="scans"),
        },
        temporary_models,
    )
    pg_django.uninstrument()
    pg_django.instrument()
    _create_table(Upload)
    try:
        Upload.objects.create(scan="scans/passport.png")
        assert type(Upload.__dict__["scan"]) is FileDescriptor
        with pg.zone() as zone:
            Upload.objects.get()
            assert zone.categories == {"customer_data"}
    finally:
        _drop_table(Upload)


def test_an_unknown_category_key_fails_at_instrument_naming_model_and_field(
    temporary_models: list[str],
) -> None:
    from typing import Annotated

    from django.db import models
    from purposeguard.integrations import django as pg_django

    category = pg.Category("customer_data")
    category.categories = frozenset({"customer_data.contnet"})  # as if the taxonomy had changed since
    _model(
        "BadKey",
        {"__annotations__": {"text": Annotated[str, category]}, "text": models.TextField()},
        temporary_models,
    )
    pg_django.uninstrument()
    with pytest.raises(pg.UnknownKeyError) as caught:
        pg_django.instrument()
    assert "BadKey" in str(caught.value) and caught.value.field == "text"
    assert not pg_django.is_instrumented()


def test_a_missing_tenant_field_fails_at_instrument(temporary_models: list[str]) -> None:
    from django.db import models
    from purposeguard.integrations import django as pg_django

    _model(
        "NoTenant",
        {"__purposeguard_tenant__": "tenant", "owner": models.CharField(max_length=10)},
        temporary_models,
    )
    pg_django.uninstrument()
    with pytest.raises(
        pg.PolicyError, match=r"NoTenant.*'tenant' names no field of the model \(its fields: id, owner\)"
    ):
        pg_django.instrument()


def test_a_category_on_something_that_is_not_a_field_fails(temporary_models: list[str]) -> None:
    from typing import Annotated

    from purposeguard.integrations import django as pg_django

    _model(
        "NotAField",
        {"__annotations__": {"body": Annotated[str, pg.Category("customer_data")]}},
        temporary_models,
    )
    pg_django.uninstrument()
    with pytest.raises(pg.PolicyError, match="NotAField.*'body'.*not a field of the model"):
        pg_django.instrument()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"policy": "trust-center", "tenant": "x"}, "unknown keys 'tenant'"),
        (
            {"tenant_from": "djnotes.tenancy.nobody"},
            "PURPOSEGUARD\\['tenant_from'\\] = 'djnotes.tenancy.nobody'",
        ),
        ({"tenant_from": 42}, "must be a callable or its dotted path"),
        (["policy"], "PURPOSEGUARD must be a dict, not list"),
    ],
)
def test_a_bad_setting_stops_the_start_with_a_clear_error(
    site: dict[str, Any], setting: Any, message: str
) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings
    from purposeguard.integrations.django import _settings

    before = _settings.LOADED.tenant_from
    with override_settings(PURPOSEGUARD=setting), pytest.raises(ImproperlyConfigured, match=message):
        _settings.apply()
    assert _settings.LOADED.tenant_from is before  # nothing half-applied


def test_a_bad_policy_in_the_setting_is_a_policy_error(site: dict[str, Any]) -> None:
    from django.test import override_settings
    from purposeguard.integrations.django import _settings

    with override_settings(PURPOSEGUARD={"policy": "no-such-pack"}), pytest.raises(pg.PolicyError):
        _settings.apply()


# -- every way a value leaves the ORM is labelled (red-team holes) -----------------------------

MIXED = "(several tenants)"  # purposeguard's tenant of data of several tenants: no consent covers it


def test_a_deferred_field_carries_the_tenant_of_its_row(site: dict[str, Any]) -> None:
    Note = site["Note"]
    alice = str(site["alice"].pk)
    deferred = Note.objects.defer("body").get(title="board")
    assert pg.labels_of(deferred.body) == {DOCUMENT} and pg.tenant_of(deferred.body) == alice
    refreshed = Note.objects.get(title="board")
    refreshed.refresh_from_db(fields=["body"])
    assert pg.labels_of(refreshed.body) == {DOCUMENT} and pg.tenant_of(refreshed.body) == alice
    only = Note.objects.only("body").get(title="board")  # the tenant field is not asked for
    assert pg.labels_of(only.body) == {DOCUMENT} and pg.tenant_of(only.body) == alice
    nothing = Note.objects.only("id").get(title="board")
    assert pg.tenant_of(nothing.body) == alice and nothing.owner_id == site["alice"].pk


def test_a_deferred_value_is_not_released_by_another_tenants_consent(site: dict[str, Any]) -> None:
    from purposeguard.consent import ConsentStore

    store = ConsentStore(":memory:")
    bob = str(site["bob"].pk)
    store.grant(bob, "improvement", ["customer_data"], granted_by=f"admin@{bob}")
    pg.configure("trust-center", mode="enforce", consents=store)
    with pg.zone(tenant=bob):
        pg.check(site["Note"].objects.get(title="shopping").body, "improvement")  # bob's own: consented
        for body in (
            site["Note"].objects.defer("body").get(title="board").body,
            site["Note"].objects.only("id").get(title="board").body,
        ):
            with pytest.raises(pg.PurposeViolation):
                pg.check(body, "improvement")


def test_a_refresh_never_labels_with_a_tenant_the_row_does_not_have(site: dict[str, Any]) -> None:
    """The instance's tenant was changed in memory: the refreshed value is
    of both tenants (no consent covers it), and the change is kept."""
    note = site["Note"].objects.defer("body").get(title="board")
    note.owner_id = site["bob"].pk
    note.refresh_from_db(fields=["body"])
    assert note.owner_id == site["bob"].pk
    assert pg.labels_of(note.body) == {DOCUMENT} and pg.tenant_of(note.body) == MIXED


def test_annotations_on_instances_are_labelled(site: dict[str, Any]) -> None:
    from django.db.models import F, Max, OuterRef, Subquery
    from django.db.models.functions import Lower

    Note, User = site["Note"], type(site["alice"])
    alice = str(site["alice"].pk)
    note = Note.objects.annotate(low=Lower("body"), same=F("body"), plain=Lower("title")).get(title="board")
    assert note.low == BODY.lower() and pg.labels_of(note.low) == {DOCUMENT}
    assert pg.tenant_of(note.low) == alice and pg.tenant_of(note.same) == alice
    assert pg.labels_of(note.plain) == frozenset()
    user = User.objects.annotate(longest=Max("notes__body")).get(username="alice")
    assert pg.labels_of(user.longest) == {DOCUMENT} and pg.tenant_of(user.longest) == MIXED
    first = Subquery(Note.objects.filter(owner=OuterRef("pk")).values("body")[:1])
    user = User.objects.annotate(first=first).get(username="alice")
    assert user.first == BODY and pg.labels_of(user.first) == {DOCUMENT} and pg.tenant_of(user.first) == MIXED


def test_subquery_annotations_in_values_are_labelled(site: dict[str, Any]) -> None:
    from django.db.models import OuterRef, Subquery
    from django.db.models.functions import Upper

    Note, Profile, User = site["Note"], site["Profile"], type(site["alice"])
    same = Subquery(Note.objects.filter(pk=OuterRef("pk")).values("body")[:1])
    row = Note.objects.filter(title="board").annotate(s=same).values("s", "owner").get()
    assert pg.labels_of(row["s"]) == {DOCUMENT} and pg.tenant_of(row["s"]) == MIXED
    flat = Note.objects.filter(title="board").annotate(s=same).values_list("s", flat=True)
    assert [pg.labels_of(v) for v in flat] == [{DOCUMENT}]
    # An annotation of the inner query, a subquery within a subquery, and an
    # outer column handed into the inner query's selection.
    inner = Note.objects.filter(owner=OuterRef("user")).annotate(u=Upper("body")).values("u")[:1]
    email = Subquery(Profile.objects.filter(user=OuterRef("pk")).values("email")[:1])
    nested = Subquery(User.objects.filter(pk=OuterRef("owner")).annotate(e=email).values("e")[:1])
    handed = Subquery(User.objects.filter(pk=OuterRef("owner")).annotate(b=OuterRef("body")).values("b")[:1])
    row = Note.objects.filter(title="board").annotate(n=nested, h=handed).values("n", "h").get()
    assert pg.labels_of(row["n"]) == {"customer_data"} and pg.labels_of(row["h"]) == {DOCUMENT}
    loud = Profile.objects.annotate(u=Subquery(inner)).values_list("u", flat=True).get()
    assert loud == BODY.upper() and pg.labels_of(loud) == {DOCUMENT}


def test_an_annotation_takes_a_tenant_only_from_its_own_row(site: dict[str, Any]) -> None:
    """A related row's column is labelled with several tenants unless its own tenant is selected."""
    from django.db.models import F

    Profile = site["Profile"]
    row = (
        Profile.objects.values("user", mail=F("email"), n=F("user__notes__body"))
        .filter(user__notes__title="board")
        .get()
    )
    alice = str(site["alice"].pk)
    assert pg.tenant_of(row["mail"]) == alice and pg.labels_of(row["n"]) == {DOCUMENT}
    # user__notes__owner not selected: several tenants', as for "user__notes__body".
    assert pg.tenant_of(row["n"]) == MIXED_TENANT
    row = (
        Profile.objects.values("user", "user__notes__owner", n=F("user__notes__body"))
        .filter(user__notes__title="board")
        .get()
    )
    assert pg.tenant_of(row["n"]) == alice


def test_aggregates_are_labelled(site: dict[str, Any]) -> None:
    from django.db.models import Aggregate, Count, Max, Min, TextField
    from django.db.models.functions import Lower

    class GroupConcat(Aggregate):  # type: ignore[misc]  # Django ships no types
        function = "GROUP_CONCAT"
        output_field = TextField()

    Note = site["Note"]
    found = Note.objects.aggregate(
        most=Max("body"), least=Min("body"), all=GroupConcat("body"), n=Count("body"), t=Max("title")
    )
    assert found["most"] == BODY and found["least"] == "Bob's shopping list"
    for key in ("most", "least", "all"):
        assert pg.labels_of(found[key]) == {DOCUMENT} and pg.tenant_of(found[key]) == MIXED
    assert type(found["n"]) is int and pg.labels_of(found["t"]) == frozenset()
    low = Note.objects.annotate(low=Lower("body")).aggregate(m=Max("low"))["m"]
    assert low == BODY.lower() and pg.labels_of(low) == {DOCUMENT}

    async def later() -> Any:
        return (await Note.objects.aaggregate(m=Max("body")))["m"]

    assert pg.labels_of(asyncio.run(later())) == {DOCUMENT}
    assert Note.objects.count() == 2


def test_combined_queries_label_what_any_of_them_puts_in_a_column(site: dict[str, Any]) -> None:
    Note, User = site["Note"], type(site["alice"])
    alice = str(site["alice"].pk)
    plain_first = Note.objects.values_list("title").union(Note.objects.values_list("body"))
    assert {pg.labels_of(v) for (v,) in plain_first} == {frozenset({DOCUMENT})}
    flat = Note.objects.values_list("title", flat=True).union(Note.objects.values_list("body", flat=True))
    assert {pg.labels_of(v) for v in flat} == {frozenset({DOCUMENT})}
    rows = Note.objects.values("title").union(Note.objects.values("body"))
    assert {pg.labels_of(r["title"]) for r in rows} == {frozenset({DOCUMENT})}
    other_model = User.objects.values_list("username").union(Note.objects.values_list("body"))
    assert {pg.labels_of(v) for (v,) in other_model} == {frozenset({DOCUMENT})}
    both = Note.objects.values_list("body", "owner").intersection(Note.objects.values_list("body", "owner"))
    assert {pg.tenant_of(b) for b, o in both if o == site["alice"].pk} == {alice}
    shifted = Note.objects.values_list("body", "owner", "title").union(
        Note.objects.values_list("body", "title", "owner")
    )
    assert {pg.tenant_of(b) for b, _, _ in shifted} == {MIXED}  # the tenant is not where a row says
    rest = Note.objects.values_list("title").difference(Note.objects.filter(title="x").values_list("body"))
    assert {pg.labels_of(v) for (v,) in rest} == {frozenset({DOCUMENT})}


@pytest.mark.skipif(
    tuple(int(part) for part in metadata.version("django").split(".")[:2]) < (5, 0),
    reason="db_default and GeneratedField arrived in Django 5.0",
)
def test_values_returned_by_an_insert_are_labelled(temporary_models: list[str]) -> None:
    from typing import Annotated

    from django.db import models
    from django.db.models.functions import Lower

    Made: Any = _model(
        "Made",
        {
            "__purposeguard_tenant__": "account",
            "__annotations__": {
                "stamp": Annotated[str, pg.Category("customer_data")],
                "low": Annotated[str, pg.Category("customer_data")],
            },
            "account": models.CharField(max_length=20),
            "text": models.TextField(),
            "stamp": models.TextField(db_default="server-side secret"),
            "low": models.GeneratedField(
                expression=Lower("text"), output_field=models.TextField(), db_persist=True
            ),
        },
        temporary_models,
    )
    _create_table(Made)
    try:
        made = Made.objects.create(account="acct-1", text="Hello")
        assert made.stamp == "server-side secret" and pg.labels_of(made.stamp) == {"customer_data"}
        assert pg.tenant_of(made.stamp) == "acct-1"
        assert made.low == "hello" and pg.labels_of(made.low) == {"customer_data"}
        (bulk,) = Made.objects.bulk_create([Made(account="acct-2", text="Bulk")])
        assert pg.labels_of(bulk.stamp) == {"customer_data"} and pg.tenant_of(bulk.stamp) == "acct-2"
        got, created = Made.objects.get_or_create(account="acct-3", defaults={"text": "New"})
        assert (
            created and pg.labels_of(got.stamp) == {"customer_data"} and pg.tenant_of(got.stamp) == "acct-3"
        )
    finally:
        _drop_table(Made)


def test_combined_instances_label_a_field_holding_another_querys_column(site: dict[str, Any]) -> None:
    Note = site["Note"]
    same = list(Note.objects.filter(title="board").union(Note.objects.filter(title="board")))
    assert pg.tenant_of(same[0].body) == str(site["alice"].pk)  # the same columns: labelled as loaded
    rows = Note.objects.filter(title="board").only("id", "title")
    mixed = list(rows.union(Note.objects.filter(title="board").only("id", "body")))
    assert sorted(note.title for note in mixed) == sorted(["board", BODY])
    assert {pg.labels_of(note.title) for note in mixed} == {frozenset({DOCUMENT})}
    assert {pg.tenant_of(note.title) for note in mixed} == {MIXED}


def test_window_functions_and_aggregates_in_annotations_carry_several_tenants(site: dict[str, Any]) -> None:
    """A window or an aggregate computes a row's value from other rows: no one
    row's tenant is its tenant, even the row's own one, selected beside it."""
    from django.db.models import F, Max, Window
    from django.db.models.functions import Lag, Upper

    Note = site["Note"]
    both = Note.objects.filter(title__in=["board", "shopping"])
    notes = list(both.annotate(m=Window(Max("body"))).order_by("id"))
    assert [n.m for n in notes] == [BODY, BODY]  # bob's row holds alice's body
    assert [(pg.labels_of(n.m), pg.tenant_of(n.m)) for n in notes] == [({DOCUMENT}, MIXED)] * 2
    lag = Window(Lag("body"), order_by=F("id").asc())
    rows = list(both.values("owner").annotate(prev=lag).order_by("id"))
    assert rows[1]["prev"] == BODY and rows[1]["owner"] == site["bob"].pk
    assert pg.labels_of(rows[1]["prev"]) == {DOCUMENT} and pg.tenant_of(rows[1]["prev"]) == MIXED
    nested = list(both.annotate(p=Upper(lag)).values_list("p", "owner").order_by("id"))
    assert nested[1][0] == BODY.upper() and pg.tenant_of(nested[1][0]) == MIXED
    shifted = list(both.annotate(prev=lag).order_by("id"))
    assert shifted[1].prev == BODY and pg.tenant_of(shifted[1].prev) == MIXED
    # An aggregate in an annotation, over the row's own table, is of other rows too.
    grouped = both.values("owner").annotate(m=Max("body")).order_by("owner")
    assert {pg.tenant_of(row["m"]) for row in grouped} == {MIXED}
    assert {pg.labels_of(row["m"]) for row in grouped} == {frozenset({DOCUMENT})}


def test_values_of_a_combined_query_are_labelled(site: dict[str, Any]) -> None:
    """values()/values_list() after union(): the combined queries select the
    columns the combined query names (as Django's compiler sets them)."""
    from purposeguard.integrations.django import _queries

    Note = site["Note"]
    alice, bob = str(site["alice"].pk), str(site["bob"].pk)
    combined = Note.objects.filter(title="board").union(Note.objects.filter(title="shopping"))
    rows = combined.values("body", "owner")
    assert {(r["body"], pg.tenant_of(r["body"])) for r in rows} == {
        (BODY, alice),
        ("Bob's shopping list", bob),
    }
    assert {pg.labels_of(r["body"]) for r in rows} == {frozenset({DOCUMENT})}
    flat = list(combined.values_list("body", flat=True))
    assert len(flat) == 2 and {(pg.labels_of(b), pg.tenant_of(b)) for b in flat} == {
        (frozenset({DOCUMENT}), MIXED)
    }

    async def later() -> list[Any]:
        return [row["body"] async for row in combined.values("body")]

    assert {pg.labels_of(b) for b in asyncio.run(later())} == {frozenset({DOCUMENT})}
    # A combined query whose plan is empty where the outer one is not leaves the labels on.
    entry = ((DOCUMENT,), (1,), None)
    assert _queries._combined([entry, None], [[], []]) == [entry, None]


def test_a_flat_list_takes_its_tenant_from_the_row_only_when_it_is_the_tenant(
    temporary_models: list[str],
) -> None:
    """The tenant field itself declared: a flat list of it carries each row's
    tenant; a flat list of another declared field cannot, so it is several tenants'."""
    from typing import Annotated

    from django.db import models

    Account: Any = _model(
        "Account",
        {
            "__purposeguard_tenant__": "org",
            "__annotations__": {
                "org": Annotated[str, pg.Category("customer_data")],
                "secret": Annotated[str, pg.Category(DOCUMENT)],
            },
            "org": models.CharField(max_length=20),
            "secret": models.TextField(),
        },
        temporary_models,
    )
    _create_table(Account)
    try:
        Account.objects.create(org="org-1", secret="one")
        Account.objects.create(org="org-2", secret="two")
        orgs = list(Account.objects.order_by("id").values_list("org", flat=True))
        assert orgs == ["org-1", "org-2"]
        assert [(pg.labels_of(o), pg.tenant_of(o)) for o in orgs] == [
            ({"customer_data"}, "org-1"),
            ({"customer_data"}, "org-2"),
        ]
        secrets = list(Account.objects.order_by("id").values_list("secret", flat=True))
        assert [(pg.labels_of(s), pg.tenant_of(s)) for s in secrets] == [({DOCUMENT}, MIXED)] * 2
        pairs = list(Account.objects.order_by("id").values_list("secret", "org"))
        assert [pg.tenant_of(s) for s, _ in pairs] == ["org-1", "org-2"]
    finally:
        _drop_table(Account)


# -- querysets and lazy objects handed to guarded code --------------------------------------


def test_a_queryset_handed_to_guarded_code_is_read_not_walked_past_the_bound(site: dict[str, Any]) -> None:
    """A filtered queryset's Query goes far past the walk's bounds: what it
    would yield (or holds, once evaluated) is read instead."""
    Note = site["Note"]
    pg.configure("trust-center", mode="enforce")

    @pg.purpose("service.operations")
    def count(rows: Any) -> int:
        return sum(1 for _ in rows)

    @pg.purpose("advertising")
    def target(rows: Any) -> None:
        return None

    filtered = Note.objects.filter(title="board", owner=site["alice"]).order_by("id")
    with pg.testing.assert_no_violations():
        assert count(filtered) == 1
        assert count(filtered.values_list("title", flat=True)) == 1
        target(filtered.values_list("title", flat=True))  # no declared column
    for handed in (filtered, filtered.values_list("body", flat=True), filtered.values("body")):
        with pytest.raises(pg.PurposeViolation) as refused:
            target(handed)
        assert refused.value.violations[0].category == DOCUMENT
    evaluated = Note.objects.filter(title="board")
    list(evaluated)
    assert pg.tenant_of(evaluated) == str(site["alice"].pk)
    assert pg.tenant_of(Note.objects.filter(title="board")) == MIXED


def test_a_lazy_object_is_not_set_up_by_a_check(site: dict[str, Any]) -> None:
    from django.utils.functional import SimpleLazyObject

    pg.configure("trust-center", mode="enforce")
    loaded: list[bool] = []

    def load() -> Any:
        loaded.append(True)
        return site["alice"]

    @pg.purpose("service.operations")
    def handle(user: Any) -> None:
        return None

    lazy = SimpleLazyObject(load)
    handle(lazy)
    assert loaded == []
    assert lazy.username == "alice" and loaded == [True]
    handle(lazy)


# -- a streamed response is produced under its view's purpose ------------------------------


def test_a_streamed_response_is_produced_under_the_views_purpose(
    site: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The note bodies of a service-communications view's StreamingHttpResponse
    are read after the view returned: each chunk runs in the request's zone,
    under the view's purpose, and reading content there is refused (the stream
    stops, and purposeguard says the response was cut off, naming the URL
    pattern, not the path) instead of being sent unseen."""
    pg.configure("trust-center", mode="enforce")
    response = _client(site).get("/digest-feed/")
    assert response.status_code == 200 and response.streaming, response.content[:600]
    caplog.set_level(logging.WARNING, logger="purposeguard")
    with pytest.raises(pg.PurposeViolation) as refused:
        b"".join(response.streaming_content)
    assert refused.value.violations[0].purpose == "service.communications"
    assert refused.value.violations[0].category == DOCUMENT
    said = [r.getMessage() for r in caplog.records if "cut off" in r.getMessage()]
    assert len(said) == 1 and "response to GET digest-feed/ had started" in said[0], said
    # A generator over a queryset, handed back: its queryset says what it will read.
    assert _client(site).get("/digest-of-a-query/").status_code == 403


def test_a_streamed_response_for_an_allowed_purpose_streams(site: dict[str, Any]) -> None:
    pg.configure("trust-center", mode="enforce")
    with pg.testing.assert_no_violations():
        response = _client(site).get("/notes-feed/")
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == (BODY[:20] + "\n").encode()


# -- what a calling service signed into its baggage governs the request --------------------------

BAGGAGE_KEY = "django-tests-baggage-key-4e9b1c07d2a8f6"
# Values that must never show up in a warning or a 403 body.
SECRET_TENANT = "zq-tenant-3b8e"
CONTACT = "customer_data"  # a profile's email


@pytest.fixture
def shared_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """This service holds the key its callers sign baggage with."""
    monkeypatch.setenv("PURPOSEGUARD_BAGGAGE_KEYS", BAGGAGE_KEY)
    return BAGGAGE_KEY


@pytest.fixture
def served_asgi(site: dict[str, Any]) -> Iterator[str]:
    yield from served_django_asgi()


@pytest.fixture(params=["wsgi", "asgi"])
def server(request: pytest.FixtureRequest) -> str:
    """The site served on loopback, through WSGI (sync middleware) and ASGI (async)."""
    return str(request.getfixturevalue("served" if request.param == "wsgi" else "served_asgi"))


def _signed(**members: Any) -> str:
    from purposeguard.integrations import baggage

    categories = members.pop("zone", ())
    return baggage.signed_header(categories=categories, key=BAGGAGE_KEY, **members)


def _call(url: str, baggage_header: str, cookie: str | None = None) -> Any:
    import httpx

    headers = {"Accept": "application/json", "baggage": baggage_header}
    if cookie is not None:
        headers["Cookie"] = f"sessionid={cookie}"
    return httpx.get(url, headers=headers, timeout=20)


def test_a_calling_services_zone_tenant_and_purpose_reach_the_view(
    site: dict[str, Any], server: str, shared_key: str
) -> None:
    """Sent by purposeguard's own httpx instrumentation from a zone holding a
    document under service.operations: the view sees all three."""
    import httpx
    from purposeguard.integrations import httpx as pg_httpx

    @pg.purpose("service.operations")
    def ask(text: str) -> tuple[int, Any]:
        response = httpx.get(server + "/whoami/", headers={"Accept": "application/json"}, timeout=20)
        return response.status_code, response.json()

    pg_httpx.instrument()
    try:
        with pg.zone(tenant="contoso"):
            status, seen = ask(pg.label(BODY, DOCUMENT))
    finally:
        pg_httpx.uninstrument()
    assert status == 200, seen
    assert seen == {
        "purpose": "service.operations",
        "tenant": "contoso",  # nobody signed in: tenant_from names none, the caller's stands
        "zone": [DOCUMENT],
        "data_tenant": "contoso",
    }


def test_the_applications_tenant_wins_over_the_callers(
    site: dict[str, Any], server: str, shared_key: str
) -> None:
    cookie = _session_cookie(site, "alice")
    response = _call(server + "/whoami/", _signed(tenant=SECRET_TENANT, zone=[CONTACT]), cookie)
    assert response.status_code == 200, response.text
    alice = str(site["alice"].pk)
    assert response.json() == {"purpose": None, "tenant": alice, "zone": [CONTACT], "data_tenant": alice}


def test_a_caller_holding_several_tenants_data_leaves_the_zone_no_tenants(
    site: dict[str, Any], server: str, shared_key: str
) -> None:
    cookie = _session_cookie(site, "alice")
    response = _call(server + "/whoami/", _signed(tenant=MIXED_TENANT, zone=[CONTACT]), cookie)
    assert response.status_code == 200, response.text
    seen = response.json()
    # Signed in as alice, but what arrived is no one tenant's: her consent covers none of it.
    assert (seen["tenant"], seen["data_tenant"]) == (str(site["alice"].pk), MIXED_TENANT)


def test_an_undeclared_view_runs_under_the_callers_purpose(
    site: dict[str, Any], server: str, shared_key: str
) -> None:
    """An advertising caller asks an internal endpoint for the notes: reading
    them under advertising is refused, and nothing of them goes back."""
    with pg.testing.capture() as violations:
        response = _call(server + "/internal-notes/", _signed(purpose="advertising", tenant=SECRET_TENANT))
    assert response.status_code == 403, response.text
    body = response.json()
    assert (body["purpose"], body["category"], body["via"]) == ("advertising", DOCUMENT, "source")
    assert BODY not in response.text and SECRET_TENANT not in response.text
    assert {v.purpose for v in violations} == {"advertising"}


@pytest.mark.parametrize(
    ("path", "purpose", "signed_in"),
    [
        # A view calling an advertising function, the caller's purpose allowed.
        ("/house-ad/", "service.operations", True),
        # The caller's own purpose may not have what its zone held.
        ("/whoami/", "advertising", False),
    ],
    ids=["view-for-advertising", "callers-purpose"],
)
def test_what_the_callers_zone_held_is_refused_to_a_forbidden_purpose(
    site: dict[str, Any], server: str, shared_key: str, path: str, purpose: str, signed_in: bool
) -> None:
    _enforce_zone_flows()
    cookie = _session_cookie(site, "alice") if signed_in else None
    header = _signed(purpose=purpose, tenant=SECRET_TENANT, zone=[DOCUMENT])
    with pg.testing.capture() as violations:
        response = _call(server + path, header, cookie)
    assert response.status_code == 403, response.text
    body = response.json()
    assert (body["purpose"], body["category"], body["via"]) == ("advertising", DOCUMENT, "context")
    assert SECRET_TENANT not in response.text
    expected_tenant = str(site["alice"].pk) if signed_in else SECRET_TENANT
    assert [(v.via, v.tenant) for v in violations] == [("context", expected_tenant)]
    # Without the caller's zone the same request is allowed.
    with pg.testing.assert_no_violations():
        assert _call(server + path, _signed(purpose=purpose), cookie).status_code == 200


def _unsigned() -> str:
    return (
        f"purposeguard.purpose=advertising,purposeguard.tenant={SECRET_TENANT},purposeguard.zone={DOCUMENT}"
    )


def _tampered() -> str:
    # Signed for another tenant: the signature holds for none of these members.
    signature = _signed(tenant="someone").split(",")[-1]
    return _unsigned() + "," + signature


def _other_key() -> str:
    from purposeguard.integrations import baggage

    return baggage.signed_header(
        purpose="advertising", tenant=SECRET_TENANT, categories=[DOCUMENT], key="x" * 40
    )


@pytest.mark.parametrize(
    "make", [_unsigned, _tampered, _other_key], ids=["unsigned", "tampered", "other-key"]
)
def test_a_forged_header_is_ignored_with_one_warning_naming_no_value(
    site: dict[str, Any], server: str, shared_key: str, make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        response = _call(server + "/whoami/", make())
    assert response.status_code == 200, response.text
    assert response.json() == {"purpose": None, "tenant": None, "zone": [], "data_tenant": None}
    said = [
        r.getMessage() for r in caplog.records if r.name == "purposeguard" and "baggage" in r.getMessage()
    ]
    assert len(said) == 1, said
    assert "advertising" not in said[0]
    assert not any(SECRET_TENANT in r.getMessage() for r in caplog.records)


def test_read_baggage_false_reads_none_of_it(site: dict[str, Any], served: str, shared_key: str) -> None:
    from django.test import override_settings
    from purposeguard.integrations.django import _settings

    with override_settings(PURPOSEGUARD={"read_baggage": False, "tenant_from": "djnotes.tenancy.tenant_of"}):
        _settings.apply()
        response = _call(served + "/whoami/", _signed(purpose="advertising", zone=[DOCUMENT]))
    _settings.apply()
    assert response.json() == {"purpose": None, "tenant": None, "zone": [], "data_tenant": None}


@pytest.mark.parametrize(
    ("returned", "tenant"),
    [("empty", None), ("padded", "acme"), ("plain", "fabrikam"), ("number", "42")],
)
def test_a_tenant_from_value_is_cleaned_as_asgi_and_wsgi_clean_it(
    site: dict[str, Any], served: str, returned: str, tenant: str | None
) -> None:
    """An anonymous visitor's "" is no tenant and a padded id is stripped,
    never a 500."""
    from django.test import override_settings
    from purposeguard.integrations.django import _settings

    with override_settings(PURPOSEGUARD={"tenant_from": "djnotes.tenancy.anonymous_is_empty"}):
        _settings.apply()
        import httpx

        response = httpx.get(
            served + "/whoami/",
            headers={"Accept": "application/json", "X-Test-Tenant-Shape": returned},
            timeout=20,
        )
    _settings.apply()
    assert response.status_code == 200
    assert response.json()["tenant"] == tenant


# -- every keyword of pg.configure in PURPOSEGUARD ------------------------------------------------


def test_purposeguard_takes_every_keyword_of_configure(
    site: dict[str, Any], served: str, tmp_path: Path
) -> None:
    """Mode, audit log, consents, telemetry and baggage keys from the setting
    alone: no second configure() in the app's ready() to drop the mode."""
    from django.test import override_settings
    from purposeguard.integrations.django import _settings

    from purposeguard import audit as pg_audit
    from purposeguard.otel import instrumented

    setting = {
        "policy": "trust-center",
        "mode": "trace",
        "context_mode": "enforce",
        "audit": str(tmp_path / "audit.db"),
        "consents": "djnotes.tenancy.CONSENTS",
        "telemetry": True,
        "baggage_keys": [BAGGAGE_KEY],
        "tenant_from": "djnotes.tenancy.tenant_of",
    }
    with override_settings(PURPOSEGUARD=setting):
        _settings.apply()
        from djnotes.tenancy import CONSENTS

        try:
            guard = pg.get_guard()
            assert (guard.mode, guard.consents) == ("trace", CONSENTS)
            assert instrumented()
            # The key came from the setting: signed baggage is read with it.
            response = _call(served + "/whoami/", _signed(purpose="service.operations", zone=[DOCUMENT]))
            assert response.json()["zone"] == [DOCUMENT]
            # In trace mode the advertising view runs; its violation goes to the audit log.
            assert _client(site).get("/ads/").status_code == 200
            sink = pg_audit.attached()
            assert sink is not None
            sink.flush()
        finally:
            pg_audit.detach()
    with pg_audit.AuditLog(str(tmp_path / "audit.db")) as log:
        kinds = [(entry.kind, entry.data.get("purpose")) for entry in log.records()]
    assert ("violation", "advertising") in kinds, kinds


def test_an_unknown_key_names_itself_and_every_accepted_key(site: dict[str, Any]) -> None:
    import inspect

    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings
    from purposeguard.integrations.django import _settings

    with override_settings(PURPOSEGUARD={"policy": "trust-center", "audti": "x.db"}):
        with pytest.raises(ImproperlyConfigured) as refused:
            _settings.apply()
    message = str(refused.value)
    assert "'audti'" in message
    for key in [*inspect.signature(pg.configure).parameters, "tenant_from", "read_baggage"]:
        assert key in message


@pytest.mark.parametrize(
    ("setting", "error", "message"),
    [
        ({"read_baggage": "no"}, "ImproperlyConfigured", "read_baggage'\\] must be True or False"),
        ({"consents": "djnotes.tenancy.nobody"}, "ImproperlyConfigured", "PURPOSEGUARD\\['consents'\\]"),
        ({"mode": "loud"}, "PolicyError", "loud"),
        ({"baggage_keys": ["short"]}, "ConfigurationError", "32"),
    ],
)
def test_a_bad_value_is_refused_as_configure_refuses_it(
    site: dict[str, Any], setting: dict[str, Any], error: str, message: str
) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings
    from purposeguard.integrations.django import _settings

    errors = {"ImproperlyConfigured": ImproperlyConfigured, "PolicyError": pg.PolicyError}
    expected = errors.get(error) or getattr(pg, error)
    guard = pg.get_guard()
    with override_settings(PURPOSEGUARD=setting), pytest.raises(expected, match=message):
        _settings.apply()
    assert pg.get_guard() is guard  # nothing half-applied
