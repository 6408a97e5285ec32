"""Declared models: what each model's ``Category`` annotations and
``__purposeguard_tenant__`` declare (checked once, kept in :data:`STATE`),
and the reading descriptor class its declared fields get.

A model with declared fields that leaves ``__purposeguard_tenant__`` out
names no tenant field: its rows may be any tenant's (a child table whose
tenant is on a parent row), so its values are several tenants' data
(``MIXED_TENANT``), which no one tenant's consent covers. A model said to be
one tenant's, whichever zone reads it (``__purposeguard_tenant__ = None``: a
database per tenant, an application with one tenant), gives its values no
tenant: the reading zone's.

A request's zone learns an instance's categories when a declared field is
read (``profile.email``), not when the row is loaded: the login layer loading
the user does not taint a request that never reads the user's personal
fields. Declared fields' descriptors get a reading subclass of Django's
``DeferredAttribute`` for this (given back by ``uninstrument()``)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from purposeguard._context import FLAGS, MIXED_TENANT, ZONE, ZoneState
from purposeguard._errors import PolicyError, UnknownKeyError
from purposeguard._kinds import MAX_TENANT_LENGTH, _checked_tenant
from purposeguard._labels import KEYS, _resolve, annotated_fields

logger = logging.getLogger("purposeguard")

# A model that leaves __purposeguard_tenant__ out (None is an answer).
_UNSAID = object()


class Declaration:
    """What one model declares: (field name, attname, categories) and its tenant attname."""

    __slots__ = (
        "fields",
        "by_name",
        "tenant",
        "tenant_name",
        "categories",
        "loud",
        "server",
        "tenantless",
        "label",
    )

    def __init__(
        self,
        fields: tuple[tuple[str, str, tuple[str, ...]], ...],
        tenant: str | None,
        tenant_name: str | None,
        tenantless: bool = False,
        label: str = "",
    ) -> None:
        self.fields = fields
        # Names no tenant field, and was not said to be one tenant's: its
        # values are several tenants' (a consent covers one tenant's data,
        # and nothing says whose these rows are).
        self.tenantless = tenantless
        # The model as Django names it ("app_label.Model"), for what is logged.
        self.label = label
        self.by_name: dict[str, tuple[str, ...]] = {}
        for name, attname, categories in fields:
            self.by_name[name] = categories
            self.by_name[attname] = categories
        self.tenant = tenant
        self.tenant_name = tenant_name
        found: set[str] = set()
        for _name, _attname, categories in fields:
            found.update(categories)
        self.categories = tuple(sorted(found))
        # Loads tell the zone at once: a field's descriptor is not Django's
        # plain one (a file, a foreign key, a custom field), so reads cannot tell it.
        self.loud = False
        # Declared fields whose value the database may make on INSERT
        # (db_default, GeneratedField): found on the first save, None till then.
        self.server: tuple[tuple[str, tuple[str, ...]], ...] | None = None


class _State:
    """The integration's process state (one object, :data:`STATE`): the
    models' declarations and the descriptors read through. ``_orm`` holds the
    patches of Django's methods."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.instrumented = False
        self.models: dict[type, Declaration] = {}
        # Declared fields' descriptors whose class was swapped for a reading
        # one, with the class each had before: put back by forget().
        self.readers: list[tuple[Any, type]] = []
        # (model, field name, categories) already logged as written into a
        # field with no Category (see _writes): once per process, so kept by forget().
        self.laundered: set[tuple[type, str, frozenset[str]]] = set()
        # Models (their labels, "" where a row's model is not known) logged as
        # holding a tenant field value that is no tenant id: once per process too.
        self.untenanted: set[str] = set()

    def forget(self) -> None:
        for descriptor, original in self.readers:
            descriptor.__class__ = original
        self.readers.clear()
        self.models.clear()


STATE = _State()


def _name(model: type) -> str:
    return f"{model.__module__}.{model.__qualname__}"


def declare(model: type) -> Declaration:
    """Read and check what a model declares (raises naming the model and field)."""
    from django.core.exceptions import FieldDoesNotExist

    owner = _name(model)
    taxonomy = KEYS.current()
    fields = []
    try:
        annotated = annotated_fields(model)
    except Exception:  # noqa: BLE001 - annotations that do not resolve declare nothing
        annotated = ()
    meta = model._meta  # type: ignore[attr-defined]
    for name, categories in annotated:
        for category in categories:
            if category not in taxonomy.categories:
                raise UnknownKeyError(category, "category", path=owner, field=name)
        try:
            field = meta.get_field(name)
        except FieldDoesNotExist:
            raise PolicyError(
                "has a Category annotation but is not a field of the model "
                "(annotate the field itself: body: Annotated[str, pg.Category(...)] = models.TextField())",
                path=owner,
                field=name,
            ) from None
        attname = getattr(field, "attname", None) or name
        fields.append((name, attname, tuple(sorted(categories))))
    said: Any = getattr(model, "__purposeguard_tenant__", _UNSAID)
    tenant_name = None if said is _UNSAID else said
    tenant = None
    if tenant_name is not None:
        try:
            tenant_field = meta.get_field(tenant_name) if isinstance(tenant_name, str) else None
        except FieldDoesNotExist:
            tenant_field = None
        if tenant_field is None or getattr(tenant_field, "attname", None) is None:
            names = ", ".join(f.name for f in meta.concrete_fields)
            raise PolicyError(
                f"__purposeguard_tenant__ = {tenant_name!r} names no field of the model (its fields: {names})",
                path=owner,
                field="__purposeguard_tenant__",
            )
        tenant = tenant_field.attname
    tenantless = said is _UNSAID and bool(fields)
    found = Declaration(tuple(fields), tenant, tenant_name, tenantless, meta.label)
    STATE.models[model] = found
    return found


def declaration_of(model: type) -> Declaration:
    """What ``model`` declares, declared on first sight."""
    found = STATE.models.get(model)
    if found is None:
        # A model defined after instrument(): checked, and read through, on its first load.
        found = declare(model)
        with STATE.lock:
            if STATE.instrumented:
                read_through(model, found)
    return found


def as_tenant(value: Any, model: Declaration | None = None) -> str | None:
    """The tenant of a row whose tenant field holds ``value`` (loaded or
    written). A value that is no tenant id (empty, too long, unprintable,
    spaces around it) names no one tenant: the row is several tenants'
    (``MIXED_TENANT``), as no one tenant's consent covers, and the model is
    logged once, naming its tenant field, never the value. Plain text: a
    labelled value is no tenant id (records and baggage keep it)."""
    if value is None:
        return None
    if type(value) is str:
        text = value
    else:
        text = str.__str__(value) if isinstance(value, str) else str.__str__(str(value))
    try:
        return _checked_tenant(text)
    except (TypeError, ValueError):
        _not_a_tenant(model)
        return MIXED_TENANT


def _not_a_tenant(model: Declaration | None) -> None:
    key = "" if model is None else model.label
    if key in STATE.untenanted:
        return
    STATE.untenanted.add(key)
    named = "a selected tenant field" if model is None else f"{model.label}.{model.tenant_name}"
    logger.warning(
        "purposeguard: %s held a value that is not a tenant id (1 to %d printable characters "
        "without surrounding spaces): the row's declared values are labelled as several "
        "tenants' data, which no one tenant's consent covers",
        named,
        MAX_TENANT_LENGTH,
    )


# -- reading descriptors -------------------------------------------------------------------

_READER: list[type] = []


def _reader_base() -> type:
    """The base of the reading descriptor classes (built once, after Django is imported)."""
    if _READER:
        return _READER[0]
    from django.db.models.query_utils import DeferredAttribute

    class ReadingAttribute(DeferredAttribute):  # type: ignore[misc]  # Django ships no types
        __slots__ = ()

    _READER.append(ReadingAttribute)
    return ReadingAttribute


def _reader(attname: str, labels: frozenset[str], model: Declaration) -> type:
    """The descriptor class of one declared field: Django's own, plus telling
    the zone what a read hands out.

    Django's ``DeferredAttribute`` has no ``__set__``, so a loaded value is
    read straight from the instance's dict without calling it; this class has
    one (storing into the dict, as Django's ``__init__`` and
    ``refresh_from_db`` expect), which makes every read of the field pass
    through ``__get__``: the hot path of a Django app, so what it needs is in
    the closure, not looked up on the descriptor."""
    from django.db.models.query_utils import DeferredAttribute

    base = _reader_base()
    deferred_get = DeferredAttribute.__get__
    flags = FLAGS
    zone_get = ZONE.get
    # (zone, labelled class, tenant) of the last read this field told a zone
    # of: a zone's categories and owners only grow, so reading a value of
    # that class and tenant in that zone again has nothing to tell it. One
    # tuple, replaced whole, so threads never see half of one.
    seen: list[tuple[Any, Any, Any]] = [(None, None, None)]

    def __get__(self: Any, instance: Any, cls: Any = None) -> Any:
        if instance is None:
            return self
        values = instance.__dict__
        if attname in values:
            value = values[attname]
        else:
            value = deferred_get(self, instance, cls)  # a deferred field loads
        if flags.zones and value is not None:
            zone = zone_get()
            if zone is not None:
                t = type(value)
                last = seen[0]
                if last[0] is zone and last[1] is t:
                    if last[2] is None:
                        return value
                    try:
                        if value._pg_tenant == last[2]:
                            return value
                    except AttributeError:  # a tenant slot never set: told below
                        pass
                kind = getattr(t, "_pg_kind", None)
                if kind is None:
                    _note_read(zone, instance, value, labels, model)
                    return value
                # The row's tenant is on the value, not its class.
                tenant = getattr(value, "_pg_tenant", None)
                zone.add(kind.labels, tenant)
                if tenant is not None or not hasattr(t, "_pg_tenant"):
                    seen[0] = (zone, t, tenant)
        return value

    def __set__(self: Any, instance: Any, value: Any) -> None:
        instance.__dict__[attname] = value

    return type(
        "ReadingDeferredAttribute", (base,), {"__slots__": (), "__get__": __get__, "__set__": __set__}
    )


def _note_read(
    zone: ZoneState, instance: Any, value: Any, labels: frozenset[str], model: Declaration
) -> None:
    kind = getattr(type(value), "_pg_kind", None) or getattr(type(value), "_pg_box", None)
    if kind is not None:
        zone.add(kind.labels, getattr(value, "_pg_tenant", None))
        return
    # A value that carries no label (a date, a truth value, an object): the
    # field's categories with the row's tenant.
    zone.add(labels, row_tenant(instance.__dict__, model))


def row_tenant(values: dict[str, Any], model: Declaration) -> str | None:
    """The tenant of the row an instance dict holds: its tenant field's;
    several tenants' where the model names none (unless said to be one
    tenant's) or the field is not loaded (a ``raw()`` query that does not
    select it: whose the values are is unknown)."""
    if model.tenantless:
        return MIXED_TENANT
    if model.tenant is None:
        return None
    if model.tenant not in values:
        return MIXED_TENANT
    return as_tenant(values[model.tenant], model)


def _descriptor(model: type, attname: str) -> Any:
    for klass in model.__mro__:
        found = klass.__dict__.get(attname)
        if found is not None:
            return found
    return None


def read_through(model: type, declared: Declaration) -> None:
    """Give each declared field of ``model`` the reading descriptor class. A
    field with a descriptor class of its own keeps it, and its model's loads
    tell the zone at once instead."""
    if not declared.fields:
        return
    from django.db.models.query_utils import DeferredAttribute

    base = _reader_base()
    for _field, attname, categories in declared.fields:
        descriptor = _descriptor(model, attname)
        if isinstance(descriptor, base):
            continue
        original = type(descriptor)
        if descriptor is None or original is not DeferredAttribute:
            declared.loud = True
            continue
        reader = _reader(attname, _resolve(categories, None).labels, declared)
        descriptor.__class__ = reader
        STATE.readers.append((descriptor, original))
