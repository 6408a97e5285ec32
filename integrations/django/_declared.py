"""Declared models: what each model's ``Category`` annotations and
``__purposeguard_tenant__`` declare (checked once, kept in :data:`STATE`),
and the reading descriptor class its declared fields get.

A request's zone learns an instance's categories when a declared field is
read (``profile.email``), not when the row is loaded: the login layer loading
the user does not taint a request that never reads the user's personal
fields. Declared fields' descriptors get a reading subclass of Django's
``DeferredAttribute`` for this (given back by ``uninstrument()``)."""

from __future__ import annotations

import threading
from typing import Any

from purposeguard._context import FLAGS, ZONE, ZoneState
from purposeguard._errors import PolicyError, UnknownKeyError
from purposeguard._labels import KEYS, _resolve, annotated_fields


class Declaration:
    """What one model declares: (field name, attname, categories) and its tenant attname."""

    __slots__ = ("fields", "by_name", "tenant", "tenant_name", "categories", "loud", "server")

    def __init__(
        self,
        fields: tuple[tuple[str, str, tuple[str, ...]], ...],
        tenant: str | None,
        tenant_name: str | None,
    ) -> None:
        self.fields = fields
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
    tenant_name = getattr(model, "__purposeguard_tenant__", None)
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
    found = Declaration(tuple(fields), tenant, tenant_name)
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


def as_tenant(value: Any) -> str | None:
    if value is None:
        return None
    return value if type(value) is str else str(value)


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


def _reader(attname: str, labels: frozenset[str], tenant_attname: str | None) -> type:
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
                    _note_read(zone, instance, value, labels, tenant_attname)
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
    zone: ZoneState, instance: Any, value: Any, labels: frozenset[str], tenant_attname: str | None
) -> None:
    kind = getattr(type(value), "_pg_kind", None) or getattr(type(value), "_pg_box", None)
    if kind is not None:
        zone.add(kind.labels, getattr(value, "_pg_tenant", None))
        return
    # A value that carries no label (a date, a truth value, an object): the
    # field's categories with the row's tenant.
    tenant = instance.__dict__.get(tenant_attname) if tenant_attname is not None else None
    zone.add(labels, as_tenant(tenant))


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
        reader = _reader(attname, _resolve(categories, None).labels, declared.tenant)
        descriptor.__class__ = reader
        STATE.readers.append((descriptor, original))
