"""Django ORM values arrive labelled, from the ``Category`` annotations on
model fields: model instances (``Model.from_db``, ``refresh_from_db``, values
the database makes on INSERT), their annotations (``ModelIterable``),
``values()``/``values_list()`` rows (the ``Values*Iterable`` classes) and
``aggregate()`` results (``Query.get_aggregation``). What is and is not
labelled, and with which tenant, is listed in the package docstring.

A request's zone learns an instance's categories when a declared field is
read (``profile.email``), not when the row is loaded: the login layer loading
the user does not taint a request that never reads the user's personal
fields. Declared fields' descriptors get a reading subclass of Django's
``DeferredAttribute`` for this (given back by :func:`uninstrument`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from purposeguard._context import FLAGS, MIXED_TENANT, ZONE, ZoneState
from purposeguard._errors import PolicyError, UnknownKeyError
from purposeguard._labels import KEYS, _label_object, _resolve, annotated_fields, label, merge_tenants

from .. import require
from .._patch import Patcher

__all__ = ["instrument", "is_instrumented", "uninstrument"]


class _Model:
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
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.instrumented = False
        self.models: dict[type, _Model] = {}
        # Declared fields' descriptors whose class was swapped for a reading
        # one, with the class each had before: put back by forget().
        self.readers: list[tuple[Any, type]] = []
        # Model methods: instances loaded, refreshed and saved.
        self.instances = Patcher(
            "django.db.models.base",
            [
                ("Model", "from_db", _from_db),
                ("Model", "refresh_from_db", _refresh_from_db),
                ("Model", "_save_table", _save_table),
            ],
        )
        # What a queryset hands back: instances with their annotations,
        # values()/values_list() rows, bulk_create()'s instances.
        self.querysets = Patcher(
            "django.db.models.query",
            [
                ("ModelIterable", "__iter__", _model_iter),
                ("ValuesIterable", "__iter__", _values_iter),
                ("ValuesListIterable", "__iter__", _values_list_iter),
                ("FlatValuesListIterable", "__iter__", _flat_values_iter),
                ("QuerySet", "bulk_create", _bulk_create),
            ],
        )
        self.aggregates = Patcher(
            "django.db.models.sql.query", [("Query", "get_aggregation", _get_aggregation)]
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
        model = _model(type(instance))
        if model.fields:
            _quietly(model, _label_instance, instance, model)
    return instance


def _quietly(model: _Model, labelling: Callable[..., None], *args: Any) -> None:
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


def _row_tenant(values: dict[str, Any], model: _Model) -> str | None:
    if model.tenant is None:
        return None
    if model.tenant not in values:
        # Declared values without their row's tenant (a raw() query that does
        # not select it): whose they are is unknown, so no tenant's consent covers them.
        return MIXED_TENANT
    return _tenant(values[model.tenant])


def _label_instance(instance: Any, model: _Model) -> None:
    values = instance.__dict__
    tenant = _row_tenant(values, model)
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


def _refresh_from_db(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Django reloads deferred and refreshed fields into a second instance
    and copies them over with setattr. That instance is loaded with the
    tenant field too (see :func:`_load_tenants`), so its values carry the
    row's tenant in the database; the tenant the instance holds is kept
    (Django would copy the database's over it) and merged into the labels:
    a row whose tenant changed in memory gives values of several tenants,
    never of the wrong one."""
    if not _STATE.instrumented:
        return wrapped(*args, **kwargs)
    model = _model(type(instance))
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
    _quietly(model, _label_values, values, refreshed, _tenant(held))
    return result


def _server_fields(instance: Any, model: _Model) -> tuple[tuple[str, tuple[str, ...]], ...]:
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


def _label_server_values(instance: Any) -> None:
    """Label what the database made on INSERT (db_default, GeneratedField):
    Django sets it with setattr, not through ``from_db``."""
    model = _model(type(instance))
    server = _server_fields(instance, model) if model.fields else ()
    if not server:
        return
    values = instance.__dict__
    _quietly(model, _label_values, values, server, _row_tenant(values, model))


def _save_table(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = wrapped(*args, **kwargs)
    if _STATE.instrumented:
        _label_server_values(instance)
    return result


def _bulk_create(wrapped: Any, queryset: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    made = wrapped(*args, **kwargs)
    if _STATE.instrumented and made:
        model = _model(queryset.model)
        if model.fields and _server_fields(made[0], model):
            for instance in made:
                _label_server_values(instance)
    return made


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


# -- what a query's columns are computed from ---------------------------------------------

# Subqueries are followed this deep; deeper ones are labelled with every
# category of their model (over-labelling rather than none).
_MAX_DEPTH = 8


# (model, field name, relation prefix): where a value comes from. The prefix
# ("" for the row's own table, "author__" through a relation) names where the
# row's tenant may be selected; None for a column of other rows (a
# subquery's), whose tenant no column of this row holds.
_Source = tuple[Any, str, "str | None"]


def _names_of(query: Any) -> list[str]:
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


def _prefix(query: Any, alias: str) -> str | None:
    """The relation path from ``query``'s own table to the table ``alias``
    ("" for the own table and its parents' in multi-table inheritance), or
    None when the joins do not spell one."""
    from django.db.models import ForeignObjectRel

    parts: list[str] = []
    for _hop in range(64):
        join = query.alias_map.get(alias)
        if join is None:
            return None
        parent = getattr(join, "parent_alias", None)
        if parent is None:
            return "".join(f"{part}__" for part in reversed(parts))
        field = join.join_field
        reverse = isinstance(field, ForeignObjectRel)
        if reverse or not getattr(field.remote_field, "parent_link", False):
            # A parent's table holds the row's own inherited fields: no step in the path.
            parts.append(field.name)
        alias = parent
    return None


def _every_field(model: Any) -> list[_Source]:
    if model is None:
        return []
    return [(model, name, None) for name, _attname, _categories in _model(model).fields]


def _columns_of(expression: Any, query: Any, depth: int = 0, outer: tuple[Any, ...] = ()) -> list[_Source]:
    """Every column an expression of ``query`` is computed from, followed into
    subqueries (whose columns are of other rows) and the outer columns they name.
    An expression holding a window function or an aggregate is computed from
    other rows (a window's frame, a group, a relation's rows) wherever its
    columns are: all of them are of other rows."""
    from django.db.models import Aggregate
    from django.db.models.expressions import Col, ResolvedOuterRef, Window
    from django.db.models.sql.query import Query

    found: list[_Source] = []
    flatten = getattr(expression, "flatten", None)
    if flatten is None:
        return found
    nodes = list(flatten())
    own = query is not None and depth == 0
    if own and any(isinstance(node, (Window, Aggregate)) for node in nodes):
        own = False
    for node in nodes:
        if isinstance(node, Col):
            prefix = _prefix(query, node.alias) if own else None
            found.append((node.target.model, node.target.name, prefix))
        elif isinstance(node, Query):
            found.extend(
                (model, name, None) for model, name, _ in _selected_by(node, depth + 1, (query, *outer))
            )
        elif isinstance(node, ResolvedOuterRef):
            # OuterRef(OuterRef("x")) names a column of the query two levels up.
            name, level = node.name, 0
            while not isinstance(name, str) and hasattr(name, "name"):
                name, level = name.name, level + 1
            if isinstance(name, str) and level < len(outer) and outer[level] is not None:
                named = outer[level]
                if name in named.annotations:
                    nested = _columns_of(named.annotations[name], named, depth + 1, outer[level + 1 :])
                    found.extend((model, field, None) for model, field, _ in nested)
                else:
                    resolved = _resolve_path(named.model, name)
                    if resolved is not None:
                        found.append((resolved[0], resolved[1], None))
    return found


def _selected_by(query: Any, depth: int, outer: tuple[Any, ...]) -> list[_Source]:
    """The columns what a (sub)query selects is computed from, all of other rows."""
    if depth > _MAX_DEPTH:
        return _every_field(query.model)
    found: list[_Source] = []
    for column in query.select:
        found.extend(_columns_of(column, query, depth, outer))
    for expression in query.annotation_select.values():
        found.extend(_columns_of(expression, query, depth, outer))
    if query.default_cols:
        found.extend(_every_field(query.model))
    for combined in getattr(query, "combined_queries", ()):
        found.extend(_selected_by(combined, depth + 1, outer))
    return found


_Place = TypeVar("_Place")


def _labelling(
    sources: list[_Source], tenant_at: Callable[[_Model, str], _Place | None]
) -> tuple[tuple[str, ...], tuple[_Place, ...], str | None] | None:
    """What labels a value computed from ``sources``: its categories, the
    places of the row's tenants to merge (``tenant_at(model, prefix)``: a
    position in a values() row, an attname on an instance; None where the
    row does not hold that tenant), and a tenant fixed for every row:
    MIXED_TENANT when the value is of other rows or its tenant is not held.
    None when no source is declared."""
    categories: set[str] = set()
    places: list[_Place] = []
    fixed: str | None = None
    for model, field, prefix in sources:
        declared = _model(model)
        found = declared.by_name.get(field)
        if not found:
            continue
        categories.update(found)
        if declared.tenant is None:
            continue
        place = None if prefix is None else tenant_at(declared, prefix)
        if place is None:
            # Other rows', or the row's tenant is not held: whose the value
            # is is unknown, so no one tenant's consent (not the request's
            # either, which a value with no tenant would take) may widen its use.
            fixed = MIXED_TENANT
        elif place not in places:
            places.append(place)
    if not categories:
        return None
    return tuple(sorted(categories)), tuple(places), fixed


# What labels one value: (categories, positions in the row of tenants to
# merge, a tenant fixed for every row: MIXED_TENANT when the value is of other rows).
_Entry = tuple[tuple[str, ...], tuple[int, ...], "str | None"]
# per output position: an entry, or None
_Plan = list["_Entry | None"]


def _entry(sources: list[_Source], position: dict[str, int]) -> _Entry | None:
    def tenant_at(declared: _Model, prefix: str) -> int | None:
        at = position.get(prefix + declared.tenant_name)  # type: ignore[operator]
        return position.get(prefix + declared.tenant) if at is None else at  # type: ignore[operator]

    return _labelling(sources, tenant_at)


def _plan_of(query: Any, names: list[str]) -> _Plan:
    annotations = query.annotation_select
    extra = query.extra_select
    base = query.model
    # A tenant is taken from a selected field, never from an annotation or
    # extra SQL that names itself like one.
    position = {
        name: index for index, name in enumerate(names) if name not in annotations and name not in extra
    }
    plan: _Plan = []
    for name in names:
        sources: list[_Source] = []
        if name in annotations:
            sources = _columns_of(annotations[name], query)
        elif name not in extra:  # extra(select=...) is raw SQL: see the module docstring
            resolved = _resolve_path(base, name)
            if resolved is not None:
                sources = [resolved]
        plan.append(_entry(sources, position))
    combined = getattr(query, "combined_queries", ())
    if query.combinator and combined:
        # As Django's compiler does: a combined query that selects nothing of
        # its own selects what the combined query names (values() after union()).
        outer = _selects(query)
        parts = [
            _plan_of(part, names if outer and not _selects(part) else _names_of(part)) for part in combined
        ]
        plan = _combined(plan, parts)
    return plan


def _selects(query: Any) -> bool:
    """Whether values()/values_list() limited what ``query`` selects."""
    if hasattr(query, "selected"):  # Django 5.2
        return query.selected is not None
    return bool(query.values_select)


def _combined(first: _Plan, parts: list[_Plan]) -> _Plan:
    """A column of union()/intersection()/difference() holds what any of the
    combined queries puts there. A row does not say which query it came
    from, so its tenant is read from the row only where every query puts
    its tenant in the same place."""
    plan: _Plan = []
    for index in range(len(first)):
        own = first[index]
        # A query whose plan does not reach this column (its selection not
        # known) stands for what the combined query says is there, which
        # counts too: a part plan short of a column never takes its labels off.
        entries = [part[index] if index < len(part) else own for part in parts]
        if own is not None:
            entries.append(own)
        categories: set[str] = set()
        for entry in entries:
            if entry is not None:
                categories.update(entry[0])
        if not categories:
            plan.append(None)
            continue
        shapes = {(entry[1], entry[2]) if entry is not None else None for entry in entries}
        if len(shapes) == 1 and None not in shapes:
            positions, fixed = next(iter(shapes))  # type: ignore[misc]
        elif any(entry is not None and (entry[1] or entry[2]) for entry in entries):
            positions, fixed = (), MIXED_TENANT
        else:
            positions, fixed = (), None
        plan.append((tuple(sorted(categories)), positions, fixed))
    return plan


def _plan(queryset: Any) -> tuple[list[str], _Plan] | None:
    query = queryset.query
    names = _names_of(query)
    plan = _plan_of(query, names)
    return (names, plan) if any(entry is not None for entry in plan) else None


def _tenant_in(row: Sequence[Any], positions: tuple[int, ...], fixed: str | None) -> str | None:
    tenant = fixed
    for at in positions:
        tenant = merge_tenants(tenant, _tenant(row[at]))
    return tenant


# -- values() and values_list() rows ----------------------------------------------------


def _labelled(row: Sequence[Any], plan: _Plan) -> list[Any]:
    values = list(row)
    for index, entry in enumerate(plan):
        if entry is None or index >= len(values):
            continue
        value = values[index]
        if value is not None:
            categories, positions, fixed = entry
            values[index] = label(value, *categories, tenant=_tenant_in(row, positions, fixed))
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
    # One column: the row's tenant is in it only where it is the tenant field itself.
    categories, positions, fixed = planned[1][0]
    return (
        label(value, *categories, tenant=_tenant_in((value,), positions, fixed))
        if value is not None
        else None
        for value in rows
    )


# -- model instances: their tenant always loaded, their annotations labelled ---------------


def _load_tenants(model: Any, names: frozenset[str], defer: bool) -> frozenset[str] | None:
    """The ``only()``/``defer()`` field names widened so that the tenant field
    of every model a declared field is loaded from loads too (a value labelled
    without its row's tenant is released by any tenant's consent), or None
    when they need nothing."""
    widened = set(names)
    for name in names:
        resolved = _resolve_path(model, name)
        if resolved is None:
            continue
        owner, field, prefix = resolved
        declared = _model(owner)
        if declared.tenant_name is None or not declared.fields:
            continue
        if defer:
            if field in (declared.tenant_name, declared.tenant):
                widened.discard(name)
        elif field in declared.by_name:
            spelled = {prefix + declared.tenant_name, prefix + (declared.tenant or declared.tenant_name)}
            if not spelled & names:
                widened.add(prefix + declared.tenant_name)
    return None if widened == names else frozenset(widened)


# Per annotation set on an instance: (name, categories, attnames of the row's
# tenants to merge, a tenant fixed for every row).
_Annotations = list[tuple[str, tuple[str, ...], tuple[str, ...], "str | None"]]


def _own_tenant(declared: _Model, prefix: str) -> str | None:
    # An instance holds its own row's tenant only, not a related row's.
    return declared.tenant if prefix == "" else None


def _annotation_plan(query: Any) -> _Annotations:
    plan: _Annotations = []
    for name, expression in query.annotation_select.items():
        found = _labelling(_columns_of(expression, query), _own_tenant)
        if found is not None:
            plan.append((name, *found))
    return plan


def _combined_fields(query: Any, using: str) -> _Annotations:
    """Instances of union()/intersection()/difference(): a field holds what
    any combined query selects in its column, which from_db's labels (the
    field's own) do not cover when the queries select different columns."""
    try:
        select, klass_info, _annotations = query.get_compiler(using=using).get_select()
        parts = [part.get_compiler(using=using).get_select()[0] for part in query.combined_queries]
    except Exception:  # noqa: BLE001 - Django raises its own error when the query runs
        return []
    plan: _Annotations = []
    for index in klass_info["select_fields"] if klass_info else ():
        target = getattr(select[index][0], "target", None)
        if target is None:
            continue
        own = _model(target.model).by_name.get(target.name, ())
        sources = [
            source
            for part in parts
            if index < len(part)
            for source in _columns_of(part[index][0], None)
            if _model(source[0]).by_name.get(source[1])
        ]
        categories = {category for model, field, _ in sources for category in _model(model).by_name[field]}
        if categories - set(own) or any(
            (model, field) != (target.model, target.name) for model, field, _ in sources
        ):
            # Another query's column: its row's tenant is not this field's.
            tenanted = any(_model(model).tenant is not None for model, _field, _ in sources)
            plan.append(
                (target.attname, tuple(sorted(categories | set(own))), (), MIXED_TENANT if tenanted else None)
            )
    return plan


def _model_iter(wrapped: Any, iterable: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[Any]:
    if not _STATE.instrumented:
        yield from wrapped(*args, **kwargs)
        return
    queryset = iterable.queryset
    query = queryset.query
    names, defer = query.deferred_loading
    if names and not query.combinator:
        widened = _load_tenants(queryset.model, names, defer)
        if widened is not None:
            # A clone: the caller's queryset keeps the fields it asked for.
            queryset = queryset._chain()
            queryset.query.deferred_loading = (widened, defer)
            iterable.queryset = queryset
            query = queryset.query
    plan = _annotation_plan(query) if query.annotation_select else []
    if query.combinator:
        plan.extend(_combined_fields(query, queryset.db))
    if not plan:
        yield from wrapped(*args, **kwargs)
        return
    for instance in wrapped(*args, **kwargs):
        values = instance.__dict__
        for name, categories, attnames, fixed in plan:
            value = values.get(name)
            if value is None:
                continue
            tenant = fixed
            for attname in attnames:
                # A tenant field not loaded: whose the value is is unknown.
                tenant = merge_tenants(
                    tenant, _tenant(values[attname]) if attname in values else MIXED_TENANT
                )
            # An annotation has no reading descriptor to tell the zone when
            # it is read: labelling it tells the zone now, as a values() row does.
            values[name] = label(value, *categories, tenant=tenant)
        yield instance


# -- aggregate() ---------------------------------------------------------------------------


def _get_aggregation(wrapped: Any, query: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Label aggregate() results (a dict made by the SQL compiler, through no
    iterable) with the categories of the columns each is computed from. They
    sum up many rows: their tenant is several tenants' when the model names one."""
    exprs = args[1] if len(args) > 1 else kwargs.get("aggregate_exprs")
    if not _STATE.instrumented or not isinstance(exprs, dict) or not exprs:
        return wrapped(*args, **kwargs)
    from django.db.models import Count

    if all(isinstance(expression, Count) for expression in exprs.values()):
        # count(): a number of rows, not a value of them (the hot path stays as it is).
        return wrapped(*args, **kwargs)
    # Resolved as Django resolves them, on a clone: get_aggregation changes the query it runs.
    plan: dict[str, _Entry] = {}
    probe = query.clone()
    try:
        for alias, expression in exprs.items():
            resolved = expression.resolve_expression(probe, allow_joins=True, reuse=None, summarize=True)
            probe.annotations[alias] = resolved  # later aggregates may name it
            if isinstance(resolved, Count):
                continue
            entry = _entry([(model, field, None) for model, field, _ in _columns_of(resolved, probe)], {})
            if entry is not None:
                plan[alias] = entry
    except Exception:  # noqa: BLE001 - Django raises its own error below; if not, label with every category
        entry = _entry(_every_field(query.model), {})
        plan = dict.fromkeys(exprs, entry) if entry is not None else {}
    result = wrapped(*args, **kwargs)
    if not plan:
        return result
    for alias, (categories, _positions, fixed) in plan.items():
        value = result.get(alias)
        if value is not None:
            result[alias] = label(value, *categories, tenant=fixed)
    return result


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
    _STATE.instances.install()
    _STATE.querysets.install()
    _STATE.aggregates.install()


def uninstrument() -> None:
    """Stop labelling (idempotent); values labelled already keep their labels,
    declared fields get Django's own descriptor class back."""
    with _STATE.lock:
        _STATE.instrumented = False
        _STATE.forget()
    _STATE.instances.remove()
    _STATE.querysets.remove()
    _STATE.aggregates.remove()


def is_instrumented() -> bool:
    return _STATE.instrumented
