"""Model instances labelled as Django makes them: loaded (``Model.from_db``),
refreshed or loaded later (``refresh_from_db``), and written: once a row is
saved (``Model._save_table``: ``save()``, ``create()``, ``get_or_create()``,
``update_or_create()``) or written in bulk (``QuerySet.bulk_create``,
``QuerySet.bulk_update``), the declared values the instance holds are what
the database stores, labelled as a load labels them, and values the
database makes on INSERT are loaded. Labelling tells the request's zone
nothing (``_quietly``); reading a declared field does (the reading
descriptors in ``_declared``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from purposeguard._context import FLAGS, ZONE, ZoneState
from purposeguard._labels import _label_object, _resolve, label, merge_tenants, relabel
from purposeguard._zones import zone

from ._declared import STATE, Declaration, as_tenant, declaration_of, row_tenant


def from_db(wrapped: Any, _cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    instance = wrapped(*args, **kwargs)
    if STATE.instrumented:
        model = declaration_of(type(instance))
        if model.fields:
            _quietly(model, _label_instance, instance, model)
    return instance


def _quietly(model: Declaration, labelling: Callable[..., None], *args: Any) -> None:
    """Run ``labelling(*args)`` (labelling ``model``'s values) without telling
    the request's zone: loading a row is not yet a flow (the reading
    descriptor tells the zone when a value is read). The labels still pass
    the source check under the current purpose, in a scratch zone with the
    request's tenant and categories that records flows where the request's
    zone does. A model whose loads are loud labels in the request's zone."""
    outer = ZONE.get() if FLAGS.zones else None
    if outer is None or model.loud:
        labelling(*args)
        return
    token = ZONE.set(outer.scratch())
    try:
        labelling(*args)
    finally:
        ZONE.reset(token)


def _label_instance(instance: Any, model: Declaration) -> None:
    values = instance.__dict__
    tenant = row_tenant(values, model)
    for _field, attname, categories in model.fields:
        value = values.get(attname)
        if value is not None:
            # Into the instance dict: no descriptor, nothing marked changed.
            values[attname] = label(value, *categories, tenant=tenant)
    # The instance carries its fields' categories too, for checks on the whole object.
    _label_object(instance, _resolve(model.categories, tenant))


def _label_values(
    values: dict[str, Any], fields: Sequence[tuple[str, tuple[str, ...]]], tenant: str | None
) -> None:
    """Label the (attname, categories) ``fields`` present in an instance dict.
    An expression (Django's DatabaseDefault marker, where the backend
    returns nothing on INSERT) is not a value: it stays as it is."""
    for attname, categories in fields:
        value = values.get(attname)
        if value is not None and not hasattr(value, "resolve_expression"):
            values[attname] = label(value, *categories, tenant=tenant)


def refresh_from_db(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Django reloads deferred and refreshed fields into a second instance
    and copies them over with setattr. That instance is loaded with the
    tenant field too (see ``_queries._load_tenants``), so its values carry the
    row's tenant in the database; the tenant the instance holds is kept
    (Django would copy the database's over it) and merged into the labels:
    a row whose tenant changed in memory gives values of several tenants,
    never of the wrong one."""
    if not STATE.instrumented:
        return wrapped(*args, **kwargs)
    model = declaration_of(type(instance))
    if model.tenant is None or not model.fields:
        return wrapped(*args, **kwargs)
    values = instance.__dict__
    if "fields" in kwargs:
        fields = kwargs["fields"] = None if kwargs["fields"] is None else list(kwargs["fields"])
    elif len(args) > 1:
        fields = None if args[1] is None else list(args[1])
        args = (args[0], fields, *args[2:])
    else:
        fields = None
    if fields is None or model.tenant not in values or {model.tenant, model.tenant_name} & set(fields):
        # Every loaded field is refreshed, the tenant with them (or it was not loaded).
        return wrapped(*args, **kwargs)
    held = values[model.tenant]
    relation = instance._meta.get_field(model.tenant_name)
    cached = relation.is_relation and relation.is_cached(instance)
    related = relation.get_cached_value(instance) if cached else None
    try:
        result = wrapped(*args, **kwargs)
    finally:
        values[model.tenant] = held
        if cached:
            relation.set_cached_value(instance, related)
    asked = set(fields)
    refreshed = [
        (attname, categories) for name, attname, categories in model.fields if {name, attname} & asked
    ]
    _quietly(model, _label_values, values, refreshed, as_tenant(held, model))
    return result


def _server_fields(instance: Any, model: Declaration) -> tuple[tuple[str, tuple[str, ...]], ...]:
    found = model.server
    if found is None:
        meta = instance._meta
        made: list[tuple[str, tuple[str, ...]]] = []
        for name, attname, categories in model.fields:
            field = meta.get_field(name)
            # has_db_default() and GeneratedField came with Django 5.0.
            if getattr(field, "generated", False) or getattr(field, "has_db_default", lambda: False)():
                made.append((attname, categories))
        found = tuple(made)
        model.server = found
    return found


def _label_written(instance: Any, model: Declaration) -> None:
    """Label the declared values a written instance holds as a load of its
    row labels them: the field's categories, the row's tenant (several
    tenants' where the tenant field is not held, holds no tenant id, or the
    model names none: no one tenant's consent widens the use of its
    values). The application had the values already, so this is not a read (no check
    under the current purpose: see ``relabel``); a value labelled otherwise
    keeps its labels and tenant too (merged), never fewer. Deferred fields
    are not loaded for it (they load labelled), and an expression
    (``F("n") + 1``, Django's DatabaseDefault marker) is not a value."""
    values = instance.__dict__
    tenant = row_tenant(values, model)
    for _field, attname, categories in model.fields:
        value = values.get(attname)
        if value is None or hasattr(value, "resolve_expression"):
            continue
        kind = getattr(type(value), "_pg_kind", None)
        if (
            kind is not None
            and getattr(value, "_pg_tenant", None) == tenant
            and kind.labels >= _resolve(categories).labels
        ):
            continue  # loaded, or written before, with this row's tenant: nothing to add
        # Into the instance dict: no descriptor, nothing marked changed.
        values[attname] = relabel(value, *categories, tenant=tenant)
    _label_object(instance, _resolve(model.categories, tenant))


def _label_saved(
    instances: Sequence[Any], model: Declaration, server: tuple[tuple[str, tuple[str, ...]], ...]
) -> None:
    for instance in instances:
        values = instance.__dict__
        if server:
            # What the database made on INSERT (db_default, GeneratedField),
            # which Django sets with setattr: loaded, so read (checked).
            _label_values(values, server, row_tenant(values, model))
        _label_written(instance, model)


def _written(instances: Sequence[Any], model: Declaration, inserted: bool = True) -> None:
    if instances and model.fields:
        server = _server_fields(instances[0], model) if inserted else ()
        _quietly(model, _label_saved, instances, model, server)


def save_table(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # Before save_base() sends post_save: its receivers get a labelled instance.
    result = wrapped(*args, **kwargs)
    if STATE.instrumented:
        _written((instance,), declaration_of(type(instance)))
    return result


def bulk_create(wrapped: Any, queryset: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    made = wrapped(*args, **kwargs)
    if STATE.instrumented and made:
        _written(made, declaration_of(queryset.model))
    return made


def bulk_update(wrapped: Any, queryset: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not STATE.instrumented:
        return wrapped(*args, **kwargs)
    # Held, to label once written: the objects may come as a generator.
    if args:
        objs = tuple(args[0])
        args = (objs, *args[1:])
    elif "objs" in kwargs:
        objs = kwargs["objs"] = tuple(kwargs["objs"])
    else:
        return wrapped(*args, **kwargs)
    result = wrapped(*args, **kwargs)
    # An UPDATE: the database made no value of its own.
    _written(objs, declaration_of(queryset.model), inserted=False)
    return result


# -- serializers ---------------------------------------------------------------------------


class _Reading(ZoneState):
    """The zone a serialization runs in, nested in the current one. It
    decides and records flows as the enclosing zone does (its categories,
    tenant, owners, memo and flow records, shared as ``ZoneState.scratch``
    shares them) and hands what it learns back as it closes; it also notes
    what is read in it (``read``, ``tenants``): the declared values the
    serializer reads through their descriptors, natural keys' included,
    however ``natural_key()`` builds its text from them. Loads are not reads
    (they label in a scratch zone), so a field ``fields=`` leaves out is not
    noted."""

    __slots__ = ("read", "tenants")

    def __init__(self, outer: ZoneState) -> None:
        super().__init__(None, outer)
        self.read: frozenset[str] = frozenset()
        self.tenants: set[str] = set()
        with outer._lock:
            if outer.flows is None:
                outer.flows = {}
        self.flows = outer.flows
        self.allowed = outer.memo()
        self._own_lock = outer._lock

    def add(self, labels: frozenset[str], tenant: str | None = None) -> None:
        if labels:
            with self._lock:
                self.read = self.read | labels
                if tenant is not None:
                    self.tenants.add(tenant)
        super().add(labels, tenant)


def serialize(wrapped: Any, serializer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``serializers.serialize("json", queryset)`` (and XML, YAML, JSON
    Lines): text the serializer's writer makes from the field values, which
    keeps no label. It is labelled with what it was made from: the declared
    fields the objects hold (noted as they pass, with their rows' tenants)
    and every declared value read while it is made (a natural key's text
    from a related row's field, a custom field's ``value_to_string()``),
    noted by the zone it is made in (see :class:`_Reading`); ``getvalue()``
    labels the text with them."""
    if not STATE.instrumented:
        return wrapped(*args, **kwargs)
    outer = ZONE.get() if FLAGS.zones else None
    if outer is None:
        # Outside any zone (a dumpdata-like script): one for the reads to be told to.
        with zone() as opened:
            return _serialize(wrapped, serializer, args, kwargs, opened)
    return _serialize(wrapped, serializer, args, kwargs, outer)


def _serialize(
    wrapped: Any, serializer: Any, args: tuple[Any, ...], kwargs: dict[str, Any], outer: ZoneState
) -> Any:
    selected = kwargs.get("fields")
    chosen = None if selected is None else set(selected)
    categories: set[str] = set()
    tenant: list[str | None] = [None]

    def passing(objects: Any) -> Any:
        for obj in objects:
            yield obj
            # After the object was written: deferred fields have loaded.
            declared = declaration_of(type(obj)) if hasattr(obj, "_meta") else None
            if declared is None or not declared.fields:
                continue
            values = obj.__dict__
            held = [
                found
                for name, attname, found in declared.fields
                if (chosen is None or name in chosen or attname in chosen) and values.get(attname) is not None
            ]
            if held:
                for found in held:
                    categories.update(found)
                tenant[0] = merge_tenants(tenant[0], row_tenant(values, declared))

    if args:
        args = (passing(args[0]), *args[1:])
    else:
        kwargs["queryset"] = passing(kwargs["queryset"])
    serializer.__dict__.pop("_pg_serialized", None)
    reading = _Reading(outer)
    token = ZONE.set(reading)
    try:
        result = wrapped(*args, **kwargs)
    finally:
        ZONE.reset(token)
        reading.close()
    categories.update(reading.read)
    for owner in reading.tenants:
        tenant[0] = merge_tenants(tenant[0], owner)
    if categories:
        found = tuple(sorted(categories))
        serializer.__dict__["_pg_serialized"] = (found, tenant[0])
        if isinstance(result, (str, bytes)):
            # Serializer.serialize() hands back getvalue() too, called before this knew.
            result = relabel(result, *found, tenant=tenant[0])
    return result


def getvalue(wrapped: Any, serializer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = wrapped(*args, **kwargs)
    serialized = serializer.__dict__.get("_pg_serialized")
    if serialized is not None and isinstance(result, (str, bytes)):
        categories, tenant = serialized
        # Read already (each field's read told the zone, each load was checked): carried on.
        result = relabel(result, *categories, tenant=tenant)
    return result
