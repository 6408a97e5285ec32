"""Labels at the source, a zone per request and 403s for Django.

In ``settings.py``::

    INSTALLED_APPS = [..., "purposeguard.integrations.django"]
    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "purposeguard.integrations.django.PurposeGuardMiddleware",
    ]
    PURPOSEGUARD = {
        "policy": "trust-center",            # pack name, path, or Policy
        "mode": "enforce",                   # optional: enforce | trace | off
        "tenant_from": "notes.tenancy.tenant_of",  # callable(request) -> str | None
    }

Every keyword of ``pg.configure`` is a key too (``context_mode``,
``audit``, ``consents``, also as a dotted path, ``telemetry``,
``audit_key``, ``baggage_keys``), given to one ``configure()`` call; and
``read_baggage`` (default True). An unknown key stops the start with
``ImproperlyConfigured`` naming it and the accepted ones.

and in ``models.py``, one declaration per field::

    class Note(models.Model):
        __purposeguard_tenant__ = "owner"     # the field holding the row's tenant
        owner = models.ForeignKey(User, on_delete=models.CASCADE)
        body: Annotated[str, pg.Category("customer_data.content.document")] = models.TextField()

Listing the app switches ORM labelling on (its ``AppConfig.ready()``
configures purposeguard from ``PURPOSEGUARD`` and checks every model).
Labelled, with the categories of the declared fields a value is read or
computed from (more categories than strictly needed, never fewer):

* model instances' field values, however loaded (``get``, iteration,
  ``select_related``/``prefetch_related``, deferred fields read later,
  ``refresh_from_db``, ``raw()`` rows of the model's own columns), with the
  row's tenant. ``only()``/``defer()`` load the tenant field beside a
  declared one; a refreshed value also carries the tenant the instance
  holds, so a tenant changed in memory gives values of several tenants;
* instances the application writes: once ``save()``, ``create()`` (a
  ``ModelForm``'s ``save()``, ``get_or_create()``, ``update_or_create()``),
  ``bulk_create()`` or ``bulk_update()`` has written a row, the declared
  values its instance holds are what the database stores, labelled as a
  load labels them, with the tenant its tenant field holds (several tenants
  when that field is deferred or holds no tenant id), before ``post_save``
  receivers run. Not a read (the application had the values): no check
  under the current purpose, and the zone learns them when they are read;
  a value labelled already keeps its own labels and tenant too;
* values the database makes on INSERT (``db_default``, ``GeneratedField``)
  in ``create()``, ``save()``, ``get_or_create()`` and ``bulk_create()``;
* annotations, on instances and in ``values()``/``values_list()`` rows
  (``F``, functions, aggregates, window functions, JSON keys, ``Subquery``
  and ``OuterRef``, followed into nested subqueries);
* ``values()``/``values_list()`` rows, related paths (``"author__email"``,
  and a ``FilteredRelation`` alias's, ``"n__body"``) included, and the columns of ``union()``/``intersection()``/``difference()``
  (a column holds what any of the combined queries selects there; so does
  ``values()`` called after ``union()``);
* ``aggregate()``/``aaggregate()`` results (``Max``, ``Min``, ``StringAgg``,
  ``ArrayAgg``, custom aggregates; a ``Count`` is a number of rows and stays plain);
* the text ``django.core.serializers.serialize()`` returns (JSON, XML, YAML,
  JSON Lines), with the categories of the declared fields it holds (none
  when ``fields=`` leaves them out) and of every declared value read while
  it is made (a related row's ``natural_key()`` under
  ``use_natural_foreign_keys=True``, however it builds its text), with those
  rows' tenants; text written to a ``stream=`` is not.

Writes: an ``update()``, ``bulk_update()``, ``save()`` or ``create()``
whose expressions read declared fields in SQL (``update(title=F("body"))``,
``Concat``, ``Subquery``) reads them: checked against the current purpose
before it runs (``via="source"``), of several tenants, and told to the
zone. Data written into a field that declares no category (a labelled value,
a declared field copied in SQL) reads back unlabelled: not refused, but
logged once per model field and categories on the ``purposeguard`` logger,
naming them (never the value). Declare the field if it holds such data.

Tenants: an instance's values carry its row's tenant. A ``values()`` row
carries it when the tenant field (or the related one, ``"author__tenant"``)
is selected too; otherwise its values carry several tenants (a value with
no tenant would take the request's, whose consent does not cover another
tenant's rows): select the tenant field where consent should apply (a flat ``values_list()``
carries a row's tenant only when its one column is the tenant field itself).
Values computed from other rows
(subqueries, aggregates and window functions in annotations, even over the
row's own table or grouped by its tenant, ``aggregate()``,
combined queries whose tenants are not in the same column, a ``raw()`` row
without the tenant column) carry several tenants (``MIXED_TENANT``), which
no one tenant's consent covers. So do the values of a model with declared
fields that names no tenant field (its rows may be any tenant's), unless it
says they are the reading zone's tenant's with ``__purposeguard_tenant__ =
None``, and those of a row whose tenant field holds no tenant id (logged
once per model, never the value).

Not labelled: SQL run through ``connection.cursor()``; ``RawSQL``
expressions (in annotations, ``values()``, updates: SQL text, not read
for the columns it names); the extra columns
of ``raw()`` (those not fields of the model) and of ``extra(select=...)``;
``Exists`` annotations and other truth values (booleans cannot carry a
label); values of fields with no ``Category`` (``dates()`` over a plain
date field, for one).

A request's zone learns an instance's categories
when a declared field is read, not when the row is loaded: the login layer
loading the user does not taint a request that never reads the user's
fields (an annotation on an instance has no field to read: the zone
learns its categories when the row is loaded). The middleware opens a zone per request (sync and
async views), seeded with the categories of the caller's signed W3C
baggage (read as the ASGI and WSGI middlewares read it), makes the
caller's purpose current until a view declared for its own runs, names the
zone's tenant with ``tenant_from(request)`` once the request is
authenticated (in ``process_view``; the caller's tenant when it names
none), checks the caller's purpose against the caller's zone there, and answers a
:class:`~purposeguard.PurposeViolation` with a 403: JSON for requests that
accept or send JSON, an HTML page otherwise; neither ever holds the data.
``@pg.purpose`` works on views as on any function.

Needs ``pip install 'purposeguard[django]'``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PurposeGuardMiddleware", "instrument", "is_instrumented", "uninstrument"]


def __getattr__(name: str) -> Any:
    # Django is imported only when one of these is used, never by importing
    # this package (Django imports it itself, by name, from INSTALLED_APPS).
    if name in ("PurposeGuardMiddleware", "instrument", "uninstrument", "is_instrumented"):
        from .. import require

        require("django", "django")
    if name == "PurposeGuardMiddleware":
        from .middleware import PurposeGuardMiddleware

        return PurposeGuardMiddleware
    if name in ("instrument", "uninstrument", "is_instrumented"):
        from . import _orm

        return getattr(_orm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
