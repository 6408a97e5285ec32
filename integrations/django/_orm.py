"""Django ORM values arrive labelled: model instances (``Model.from_db``) and
``values()``/``values_list()`` rows, from the ``Category`` annotations on model fields.

A request's zone learns an instance's categories when a declared field is
read (``profile.email``), not when the row is loaded: the login layer loading
the user does not taint a request that never reads the user's personal
fields. Declared fields' descriptors get a reading subclass of Django's
``DeferredAttribute`` for this (given back by :func:`uninstrument`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from purposeguard._context import FLAGS, ZONE, ZoneState
from purposeguard._errors import PolicyError, UnknownKeyError
from purposeguard._labels import KEYS, _label_object, _resolve, annotated_fields, label

from .. import require
from .._patch import Patcher

__all__ = ["instrument", "is_instrumented", "uninstrument"]


class _Model:
    """What one model declares: (field name, attname, categories) and its tenant attname."""

    __slots__ = ("fields", "by_name", "tenant", "tenant_name", "categories", "loud")

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


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.instrumented = False
        self.models: dict[type, _Model] = {}
        # Declared fields' descriptors whose class was swapped for a reading
        # one, with the class each had before: put back by forget().
        self.readers: list[tuple[Any, type]] = []
        self.from_db = Patcher("django.db.models.base", [("Model", "from_db", _from_db)])
        self.values = Patcher(
            "django.db.models.query",
            [
                ("ValuesIterable", "__iter__", _values_iter),
                ("ValuesListIterable", "__iter__", _values_list_iter),
                ("FlatValuesListIterable", "__iter__", _flat_values_iter),
            ],
        )

    def forget(self) -> None:
        for descriptor, original in self.readers:
            descriptor.__class__ = original
        self.readers.clear()
        self.models.clear()


def _name(model: type) -> str:
    return f"{model.__module__}.{model.__qualname__}"


def declare(model: type) -> _Model:
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
    found = _Model(tuple(fields), tenant, tenant_name)
    _STATE.models[model] = found
    return found


def _model(model: type) -> _Model:
    found = _STATE.models.get(model)
    if found is None:
        # A model defined after instrument(): checked, and read through, on its first load.
        found = declare(model)
        with _STATE.lock:
            if _STATE.instrumented:
                _read_through(model, found)
    return found


def _tenant(value: Any) -> str | None:
    if value is None:
        return None
    return value if type(value) is str else str(value)


# -- instances -------------------------------------------------------------------------


def _from_db(wrapped: Any, _cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    instance = wrapped(*args, **kwargs)
    if _STATE.instrumented:
        _quietly(instance)
    return instance


def _quietly(instance: Any) -> None:
    """Label a loaded instance without telling the request's zone: loading a
    row is not yet a flow (the reading descriptor tells the zone when a value
    is read). The labels still pass the source check under the current
    purpose, in a scratch zone with the request's tenant and categories that
    records flows where the request's zone does."""
    model = _model(type(instance))
    if not model.fields:
        return
    outer = ZONE.get() if FLAGS.zones else None
    if outer is None or model.loud:
        _label_instance(instance, model)
        return
    token = ZONE.set(outer.scratch())
    try:
        _label_instance(instance, model)
    finally:
        ZONE.reset(token)


def _label_instance(instance: Any, model: _Model) -> None:
    values = instance.__dict__
    tenant = _tenant(values.get(model.tenant)) if model.tenant is not None else None
    for _field, attname, categories in model.fields:
        value = values.get(attname)
        if value is not None:
            # Into the instance dict: no descriptor, nothing marked changed.
            values[attname] = label(value, *categories, tenant=tenant)
    # The instance carries its fields' categories too, for checks on the whole object.
    _label_object(instance, _resolve(model.categories, tenant))


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
    zone.add(labels, _tenant(tenant))


def _descriptor(model: type, attname: str) -> Any:
    for klass in model.__mro__:
        found = klass.__dict__.get(attname)
        if found is not None:
            return found
    return None


def _read_through(model: type, declared: _Model) -> None:
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
        _STATE.readers.append((descriptor, original))


# -- values() and values_list() rows ----------------------------------------------------


# per output position: (categories, position of the tenant) or None
_Plan = list["tuple[tuple[str, ...], int | None] | None"]


def _names(queryset: Any) -> list[str]:
    query = queryset.query
    selected = getattr(query, "selected", None)
    if selected:
        return list(selected)
    return [*query.extra_select, *query.values_select, *query.annotation_select]


def _resolve_path(model: Any, path: str) -> tuple[Any, str, str] | None:
    """(model, field name, relation prefix) of a ``values()`` path, or None."""
    from django.core.exceptions import FieldDoesNotExist

    prefix = ""
    parts = path.split("__")
    for index, part in enumerate(parts):
        try:
            field = model._meta.get_field(part)
        except FieldDoesNotExist:
            # A transform (body__lower) keeps the field it starts from.
            return (model, parts[index - 1], prefix) if index else None
        related = getattr(field, "related_model", None)
        if related is not None and index < len(parts) - 1:
            model = related
            prefix += part + "__"
            continue
        return model, part, prefix
    return None


def _columns_of(expression: Any) -> list[tuple[Any, str]]:
    """(model, field name) of every column an annotation is computed from."""
    from django.db.models.expressions import Col

    found: list[tuple[Any, str]] = []
    flatten = getattr(expression, "flatten", None)
    if flatten is None:
        return found
    for node in flatten():
        if isinstance(node, Col):
            target = node.target
            found.append((target.model, target.name))
    return found


def _plan(queryset: Any) -> tuple[list[str], _Plan] | None:
    names = _names(queryset)
    query = queryset.query
    annotations = query.annotation_select
    base = queryset.model
    position = {name: index for index, name in enumerate(names)}
    plan: _Plan = []
    any_labelled = False
    for name in names:
        sources: list[tuple[Any, str, str]] = []
        if name in annotations:
            sources = [(model, field, "") for model, field in _columns_of(annotations[name])]
        else:
            resolved = _resolve_path(base, name)
            if resolved is not None:
                sources = [resolved]
        categories: set[str] = set()
        tenant_at = None
        for model, field, prefix in sources:
            declared = _model(model)
            found = declared.by_name.get(field)
            if not found:
                continue
            categories.update(found)
            if tenant_at is None and declared.tenant_name is not None:
                tenant_at = position.get(prefix + declared.tenant_name)
                if tenant_at is None:
                    tenant_at = position.get(prefix + declared.tenant)  # type: ignore[operator]
        if categories:
            plan.append((tuple(sorted(categories)), tenant_at))
            any_labelled = True
        else:
            plan.append(None)
    return (names, plan) if any_labelled else None


def _labelled(row: Sequence[Any], plan: _Plan) -> list[Any]:
    values = list(row)
    for index, entry in enumerate(plan):
        if entry is None or index >= len(values):
            continue
        value = values[index]
        if value is not None:
            categories, tenant_at = entry
            tenant = _tenant(row[tenant_at]) if tenant_at is not None else None
            values[index] = label(value, *categories, tenant=tenant)
    return values


def _values_iter(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[Any]:
    planned = _plan(instance.queryset) if _STATE.instrumented else None
    if planned is None:
        yield from wrapped(*args, **kwargs)
        return
    names, plan = planned
    for row in wrapped(*args, **kwargs):
        labelled = _labelled([row.get(name) for name in names], plan)
        yield {
            name: labelled[index] if index < len(names) and names[index] == name else value
            for index, (name, value) in enumerate(row.items())
        }


def _values_list_iter(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    planned = _plan(instance.queryset) if _STATE.instrumented else None
    rows = wrapped(*args, **kwargs)
    if planned is None:
        return rows
    plan = planned[1]
    return (tuple(_labelled(row, plan)) for row in rows)


def _flat_values_iter(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    planned = _plan(instance.queryset) if _STATE.instrumented else None
    rows = wrapped(*args, **kwargs)
    if planned is None or planned[1][0] is None:
        return rows
    categories, _tenant_at = planned[1][0]
    return (label(value, *categories) if value is not None else None for value in rows)


_STATE = _State()


def instrument() -> None:
    """Label what the Django ORM loads (idempotent); checks every installed model first."""
    require("django", "django")
    from django.apps import apps

    with _STATE.lock:
        if _STATE.instrumented:
            return
        _STATE.forget()
        declared = [(model, declare(model)) for model in apps.get_models(include_auto_created=True)]
        # Every model checked (a check raises before anything is switched on):
        # declared fields read through.
        for model, found in declared:
            _read_through(model, found)
        _STATE.instrumented = True
    _STATE.from_db.install()
    _STATE.values.install()


def uninstrument() -> None:
    """Stop labelling (idempotent); values labelled already keep their labels,
    declared fields get Django's own descriptor class back."""
    with _STATE.lock:
        _STATE.instrumented = False
        _STATE.forget()
    _STATE.from_db.remove()
    _STATE.values.remove()


def is_instrumented() -> bool:
    return _STATE.instrumented
