"""Django ORM values arrive labelled: model instances (``Model.from_db``) and
``values()``/``values_list()`` rows, from the ``Category`` annotations on model fields."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from purposeguard._errors import PolicyError, UnknownKeyError
from purposeguard._labels import KEYS, annotated_fields, label

from .. import require
from .._patch import Patcher

__all__ = ["instrument", "is_instrumented", "uninstrument"]


class _Model:
    """What one model declares: (field name, attname, categories) and its tenant attname."""

    __slots__ = ("fields", "by_name", "tenant", "tenant_name", "categories")

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


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.instrumented = False
        self.models: dict[type, _Model] = {}
        self.from_db = Patcher("django.db.models.base", [("Model", "from_db", _from_db)])
        self.values = Patcher(
            "django.db.models.query",
            [
                ("ValuesIterable", "__iter__", _values_iter),
                ("ValuesListIterable", "__iter__", _values_list_iter),
                ("FlatValuesListIterable", "__iter__", _flat_values_iter),
            ],
        )


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
        found = declare(model)
    return found


def _tenant(value: Any) -> str | None:
    if value is None:
        return None
    return value if type(value) is str else str(value)


# -- instances -------------------------------------------------------------------------


def _from_db(wrapped: Any, _cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    instance = wrapped(*args, **kwargs)
    if _STATE.instrumented:
        _label_instance(instance)
    return instance


def _label_instance(instance: Any) -> None:
    model = _model(type(instance))
    if not model.fields:
        return
    values = instance.__dict__
    tenant = _tenant(values.get(model.tenant)) if model.tenant is not None else None
    for _field, attname, categories in model.fields:
        value = values.get(attname)
        if value is not None:
            # Into the instance dict: no descriptor, nothing marked changed.
            values[attname] = label(value, *categories, tenant=tenant)
    from purposeguard._labels import _label_object, _resolve

    # The instance carries its fields' categories too, for checks on the whole object.
    _label_object(instance, _resolve(model.categories, tenant))


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
        _STATE.models.clear()
        for model in apps.get_models(include_auto_created=True):
            declare(model)  # raises before anything is switched on
        _STATE.instrumented = True
    _STATE.from_db.install()
    _STATE.values.install()


def uninstrument() -> None:
    """Stop labelling (idempotent); values labelled already keep their labels."""
    with _STATE.lock:
        _STATE.instrumented = False
        _STATE.models.clear()
    _STATE.from_db.remove()
    _STATE.values.remove()


def is_instrumented() -> bool:
    return _STATE.instrumented
