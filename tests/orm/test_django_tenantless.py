"""Django: whose a row's values are when the model names no tenant field, or its tenant field holds no tenant id.

A model with declared fields and no ``__purposeguard_tenant__`` (a child
table whose rows' tenant is on a parent row) holds every tenant's rows: the
requesting tenant's consent must not release another tenant's data from it.
Its values are several tenants' (``MIXED_TENANT``), as the SQLAlchemy
integration labels them. A model said to be one tenant's, whichever zone
reads it (``__purposeguard_tenant__ = None``), gives its values the zone's
tenant. A row whose tenant field holds no tenant id loads as several
tenants' too (as writing it labels it), said once on the purposeguard logger
without the value.

The notes site of test_django.py (tests/orm/django_site) on SQLite, with
models of this file's own, made for the module and taken out after it."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest

import purposeguard as pg
from purposeguard._context import MIXED_TENANT

SITE = Path(__file__).resolve().parent / "django_site"
EMAIL = "customer_data.content.email"
CONTOSO_MAIL = "contoso: quarterly numbers"
FABRIKAM_MAIL = "fabrikam: private merger mail"
# What a damaged tenant field holds: never to be seen in a log line.
BAD_TENANT = "contoso\tleaked-tenant-text"


def _model(name: str, namespace: dict[str, Any]) -> Any:
    from django.db import models

    namespace = {
        "__module__": "djnotes.models",
        "Meta": type("Meta", (), {"app_label": "djnotes"}),
        **namespace,
    }
    return type(name, (models.Model,), namespace)


def _models() -> dict[str, Any]:
    from django.db import models

    Account = _model(
        "TenantlessAccount",
        {"__purposeguard_tenant__": "tenant", "tenant": models.CharField(max_length=60)},
    )
    Message = _model(
        "TenantlessMessage",
        {
            # No tenant field of its own: each row is its account's tenant's.
            "__annotations__": {
                "body": Annotated[str, pg.Category(EMAIL)],
                "urgent": Annotated[bool, pg.Category(EMAIL)],
            },
            "account": models.ForeignKey(Account, on_delete=models.CASCADE),
            "body": models.TextField(),
            "urgent": models.BooleanField(default=False),
        },
    )
    Memo = _model(
        "TenantlessMemo",
        {
            # Said to be one tenant's, whichever zone reads it (a database per tenant).
            "__purposeguard_tenant__": None,
            "__annotations__": {"body": Annotated[str, pg.Category(EMAIL)]},
            "body": models.TextField(),
        },
    )
    Slip = _model(
        "TenantlessSlip",
        {
            "__purposeguard_tenant__": "tenant",
            "__annotations__": {
                "body": Annotated[str, pg.Category(EMAIL)],
                "urgent": Annotated[bool, pg.Category(EMAIL)],
            },
            "tenant": models.CharField(max_length=60),
            "body": models.TextField(),
            "urgent": models.BooleanField(default=True),
        },
    )
    return {"Account": Account, "Message": Message, "Memo": Memo, "Slip": Slip}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from .conftest import set_up_notes_site

    set_up_notes_site(tmp_path_factory)
    from django.apps import apps
    from django.db import connection
    from purposeguard.integrations import django as pg_django

    # Labelling as this file found it is put back after it: the app's ready()
    # switched it on, unless an earlier test file switched it off.
    found_on = pg_django.is_instrumented()
    pg_django.instrument()
    made = _models()
    with connection.schema_editor() as editor:
        for model in made.values():
            editor.create_model(model)
    contoso = made["Account"].objects.create(tenant="contoso")
    fabrikam = made["Account"].objects.create(tenant="fabrikam")
    made["Message"].objects.create(account=contoso, body=CONTOSO_MAIL)
    made["Message"].objects.create(account=fabrikam, body=FABRIKAM_MAIL, urgent=True)
    made["Memo"].objects.create(body="our memo")
    try:
        yield made
    finally:
        with connection.schema_editor() as editor:
            for model in reversed(made.values()):
                editor.delete_model(model)
        for model in made.values():
            apps.all_models["djnotes"].pop(model.__name__.lower(), None)
        apps.clear_cache()
        pg_django.uninstrument()  # forgets their declarations
        if found_on:
            pg_django.instrument()
        if str(SITE) in sys.path and not found_on:
            sys.path.remove(str(SITE))


@pytest.fixture(autouse=True)
def configured(site: dict[str, Any]) -> None:
    """The PURPOSEGUARD setting (trust-center, enforce) applied to a fresh guard."""
    from purposeguard.integrations.django import _settings

    _settings.apply()


@pytest.fixture
def contoso_consented(site: dict[str, Any]) -> Iterator[None]:
    """contoso consented to improvement for its customer data."""
    from purposeguard.consent import ConsentStore

    with ConsentStore(":memory:") as store:
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
        pg.configure("trust-center", mode="enforce", consents=store)
        yield


# -- a model that names no tenant field -------------------------------------------------------


def test_values_of_a_model_naming_no_tenant_field_are_several_tenants(site: dict[str, Any]) -> None:
    from django.db.models import Max
    from django.db.models.functions import Length, Upper

    Message = site["Message"]
    messages = list(Message.objects.order_by("id"))
    assert [m.body for m in messages] == [CONTOSO_MAIL, FABRIKAM_MAIL]
    assert [pg.tenant_of(m.body) for m in messages] == [MIXED_TENANT, MIXED_TENANT]
    assert pg.labels_of(messages[0].body) == {EMAIL} and pg.tenant_of(messages[0]) == MIXED_TENANT
    rows = list(Message.objects.order_by("id").values("body", "account__tenant"))
    assert {pg.tenant_of(row["body"]) for row in rows} == {MIXED_TENANT}
    flat = list(Message.objects.values_list("body", flat=True))
    assert {pg.tenant_of(body) for body in flat} == {MIXED_TENANT}
    shouted = Message.objects.annotate(shout=Upper("body")).order_by("id").first()
    assert shouted is not None and pg.tenant_of(shouted.shout) == MIXED_TENANT
    longest = Message.objects.aggregate(longest=Max(Length("body")))["longest"]
    assert pg.labels_of(longest) == {EMAIL} and pg.tenant_of(longest) == MIXED_TENANT
    # Written, it is labelled as a load labels it.
    written = Message.objects.create(account=messages[0].account, body="new mail")
    try:
        assert pg.tenant_of(written.body) == MIXED_TENANT
    finally:
        written.delete()


def test_one_tenants_consent_does_not_release_a_tenantless_models_rows_in_another_tenants_request(
    site: dict[str, Any], contoso_consented: None
) -> None:
    Message = site["Message"]
    fabrikams = Message.objects.get(account__tenant="fabrikam").pk
    with pg.zone(tenant="contoso"):
        with pytest.raises(pg.PurposeViolation) as caught, pg.purpose("improvement"):
            Message.objects.get(pk=fabrikams)
        assert {(v.via, v.category, v.tenant) for v in caught.value.violations} == {
            ("source", EMAIL, MIXED_TENANT)
        }
        with pytest.raises(pg.PurposeViolation), pg.purpose("improvement"):
            list(Message.objects.values_list("body", flat=True))
        with pytest.raises(pg.PurposeViolation), pg.purpose("improvement"):
            list(Message.objects.values("body", "account__tenant"))


def test_a_value_read_from_a_tenantless_row_tells_the_zone_it_is_several_tenants(
    site: dict[str, Any],
) -> None:
    """A truth value carries no label: the zone hears the row's tenant from the model."""
    message = site["Message"].objects.get(account__tenant="fabrikam")
    with pg.zone(tenant="contoso") as zone:
        assert message.urgent is True
    assert zone.categories == {EMAIL} and MIXED_TENANT in zone.owners


def test_a_model_said_to_be_one_tenants_gives_its_values_the_zones_tenant(
    site: dict[str, Any], contoso_consented: None
) -> None:
    Memo = site["Memo"]
    with pg.zone(tenant="contoso"), pg.purpose("improvement"):
        memo = Memo.objects.get()
        assert memo.body == "our memo" and pg.tenant_of(memo.body) is None
        assert [pg.tenant_of(b) for b in Memo.objects.values_list("body", flat=True)] == [None]
    # Without consent, still refused: saying whose the rows are widens nothing by itself.
    with pg.zone(tenant="fabrikam"):
        with pytest.raises(pg.PurposeViolation), pg.purpose("improvement"):
            Memo.objects.get()


# -- a tenant field that holds no tenant id ----------------------------------------------------


def test_a_row_whose_tenant_field_holds_no_tenant_id_loads_as_several_tenants(site: dict[str, Any]) -> None:
    Slip = site["Slip"]
    written = Slip.objects.create(tenant=BAD_TENANT, body=FABRIKAM_MAIL)
    try:
        # Writing labelled it several tenants'; loading it does the same.
        assert pg.tenant_of(written.body) == MIXED_TENANT
        loaded = Slip.objects.get(pk=written.pk)
        assert loaded.body == FABRIKAM_MAIL and pg.labels_of(loaded.body) == {EMAIL}
        assert pg.tenant_of(loaded.body) == MIXED_TENANT and pg.tenant_of(loaded) == MIXED_TENANT
        row = Slip.objects.values("body", "tenant").get(pk=written.pk)
        assert pg.tenant_of(row["body"]) == MIXED_TENANT
        (body,) = Slip.objects.filter(pk=written.pk).values_list("body", "tenant").get()[:1]
        assert pg.tenant_of(body) == MIXED_TENANT
        deferred = Slip.objects.only("tenant").get(pk=written.pk)
        assert pg.tenant_of(deferred.body) == MIXED_TENANT
        loaded.refresh_from_db(fields=["body"])
        assert pg.tenant_of(loaded.body) == MIXED_TENANT
        # A truth value carries no label: the zone hears the row's tenant, never the field's text.
        with pg.zone() as zone:
            assert loaded.urgent is True
        assert zone.categories == {EMAIL} and zone.owners == {MIXED_TENANT}
    finally:
        written.delete()


def test_a_row_whose_tenant_field_holds_no_tenant_id_is_said_once_without_the_value(
    site: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    from purposeguard.integrations.django._declared import STATE

    Slip = site["Slip"]
    STATE.untenanted.clear()
    caplog.set_level(logging.WARNING, logger="purposeguard")
    written = Slip.objects.create(tenant=BAD_TENANT, body=FABRIKAM_MAIL)
    try:
        for _ in range(3):
            Slip.objects.get(pk=written.pk)
    finally:
        written.delete()
        STATE.untenanted.clear()
    messages = [r.getMessage() for r in caplog.records if r.name == "purposeguard"]
    told = [m for m in messages if "not a tenant id" in m]
    assert len(told) == 1 and "djnotes.TenantlessSlip.tenant" in told[0]
    assert all("leaked-tenant-text" not in m and FABRIKAM_MAIL not in m for m in messages)


def test_a_tenant_id_that_is_no_tenant_id_does_not_take_a_tenants_consent(
    site: dict[str, Any], contoso_consented: None
) -> None:
    Slip = site["Slip"]
    written = Slip.objects.create(tenant=BAD_TENANT, body=FABRIKAM_MAIL)
    try:
        with pg.zone(tenant="contoso"):
            with pytest.raises(pg.PurposeViolation) as caught, pg.purpose("improvement"):
                Slip.objects.get(pk=written.pk)
        assert {v.tenant for v in caught.value.violations} == {MIXED_TENANT}
        # A row of a tenant id is released by its tenant's consent, as before.
        Slip.objects.filter(pk=written.pk).update(tenant="contoso")
        with pg.zone(tenant="contoso"), pg.purpose("improvement"):
            assert Slip.objects.get(pk=written.pk).body == FABRIKAM_MAIL
    finally:
        written.delete()
