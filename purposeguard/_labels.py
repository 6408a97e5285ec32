"""Labels: which data categories a value carries, and how they follow it.

This module is the labelling API: :func:`label`, :func:`relabel` and
:func:`strip_labels`; reading labels (:func:`labels_of`, :func:`tenant_of`,
:func:`labels_in_values`); :class:`Category` field annotations and
:func:`produces`. What it builds on is in three modules below it:

- ``_kinds``: label sets and tenants (validated keys, the kinds values
  carry, their caches and bounds, which kinds a purpose may read);
- ``_labelled``: the labelled types (``str``, ``bytes``, numbers,
  containers, the side table and proxy for other objects, foreign readers);
- ``_walk``: the bounded deep walk that finds labels inside a value.

The names other modules import from here stay importable from here.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import linecache
import re
import sys
import types
import typing
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from . import _labelled as _labelled_module
from . import _walk as _walk_module
from ._context import FLAGS, ZONE
from ._context import MIXED_TENANT as MIXED_TENANT
from ._delegation import async_generator_function, generator_function
from ._errors import UnknownKeyError
from ._kinds import EMPTY as EMPTY
from ._kinds import KEYS as KEYS
from ._kinds import MAX_TENANT_LENGTH as MAX_TENANT_LENGTH
from ._kinds import SOURCE as SOURCE
from ._kinds import (
    _checked_tenant,
    _current_purpose,
    _Kind,
    _read_allowed,
    _read_in_purpose,
    _unhashable,
    _union,
    _with_tenant,
)
from ._kinds import _kind_for as _kind_for
from ._kinds import _resolve as _resolve
from ._kinds import merge_tenants as merge_tenants
from ._kinds import require_tenant as require_tenant
from ._kinds import set_taxonomy as set_taxonomy
from ._labelled import _CONTAINER_CLASSES as _CONTAINER_CLASSES
from ._labelled import (
    _CONTAINERS,
    _NONE_TYPE,
    _bytes_with,
    _container_with,
    _LabelledContainer,
    _LabelledNumber,
    _LabelledValue,
    _number_with,
    _plain_bytes,
    _plain_container,
    _str_with,
    _value_with,
    box_base,
)
from ._labelled import _VALUE_COPIES as _VALUE_COPIES
from ._labelled import ForeignLabels as ForeignLabels
from ._labelled import LabelledBytes as LabelledBytes
from ._labelled import LabelledDict as LabelledDict
from ._labelled import LabelledFloat as LabelledFloat
from ._labelled import LabelledFrozenSet as LabelledFrozenSet
from ._labelled import LabelledInt as LabelledInt
from ._labelled import LabelledList as LabelledList
from ._labelled import LabelledProxy as LabelledProxy
from ._labelled import LabelledSet as LabelledSet
from ._labelled import LabelledStr as LabelledStr
from ._labelled import LabelledTuple as LabelledTuple
from ._labelled import _label_object as _label_object
from ._labelled import _rebuild as _rebuild
from ._labelled import _rebuild_object as _rebuild_object
from ._labelled import _tenant_on as _tenant_on
from ._labelled import box_kind as box_kind
from ._labelled import foreign_reader as foreign_reader
from ._labelled import register_foreign as register_foreign
from ._labelled import unregister_foreign as unregister_foreign
from ._state import STATE, remember
from ._walk import _OBJECT, _shape, _walk
from ._walk import MAX_DEPTH as MAX_DEPTH
from ._walk import MAX_ITEMS as MAX_ITEMS
from ._walk import WalkLimit as WalkLimit

__all__ = [
    "MAX_DEPTH",
    "MAX_ITEMS",
    "Category",
    "ForeignLabels",
    "LabelledBytes",
    "LabelledDict",
    "LabelledFloat",
    "LabelledFrozenSet",
    "LabelledInt",
    "LabelledList",
    "LabelledProxy",
    "LabelledSet",
    "LabelledStr",
    "LabelledTuple",
    "box_kind",
    "label",
    "labels_of",
    "learn_flat",
    "tenant_of",
    "tenant_of_values",
    "produces",
    "register_foreign",
    "relabel",
    "strip_labels",
    "unregister_foreign",
    "WalkLimit",
]

T = TypeVar("T")

# The registries and caches below belong to the process state; these names
# are bound to its containers, which a reset clears in place (_kinds and
# _labelled bind the same ones and say what each holds). Bound here, not
# imported: Python 3.11 compiles ``NAME.get(...)`` on an imported name as an
# attribute read and a call (it expects a module), a bound method per call.
_STATE = STATE.labels
_CLASSES: dict[frozenset[str], _Kind] = _STATE.classes
_KINDS_NO_TENANT: dict[tuple[str, ...], _Kind] = _STATE.kinds_no_tenant
_STR_FAST: dict[tuple[str, ...], type[LabelledStr]] = _STATE.str_fast
_UNIONS: dict[tuple[_Kind, _Kind], _Kind] = _STATE.unions
_OBJECTS: dict[int, _Kind] = _STATE.objects
_OBJECT_REFS: dict[int, weakref.ref[Any]] = _STATE.object_refs
NO_LABELS: set[type] = _STATE.no_labels
SIDE_TABLE_TYPES: set[type] = _STATE.side_table_types
FLAT_OBJECTS: set[type] = _STATE.flat_objects
FOREIGN: dict[type, ForeignLabels] = _STATE.foreign


# -- labelling ------------------------------------------------------------------


def label(value: T, *categories: str, tenant: str | None = None) -> T:
    """Return ``value`` labelled with ``categories`` (added to any it has).

    >>> body = label("Quarterly numbers attached", "customer_data.content.email")
    >>> sorted(labels_of(body.upper()))
    ['customer_data.content.email']

    ``str``, ``bytes``, ``int``, ``float`` and the containers come back as
    labelled subclasses, ``None`` and booleans as themselves (their categories
    go to the zone), weakly referenceable objects unchanged (labelled in
    place), and other objects wrapped in a transparent proxy.

    Reading is a use: labelling while a purpose is current checks the
    categories against it, and a denial is a violation ``via="source"``,
    handled per mode like any other.
    """
    if type(value) is str:
        try:
            cls = _STR_FAST.get(categories)
        except Exception:  # an unhashable "category", a str subclass whose hash raises: _attach sees to it
            cls = None
        if cls is not None and not FLAGS.activations:
            fast: Any
            if tenant is None:
                fast = cls(value)
            else:
                # The tenant goes on the instance: no class per tenant, no
                # cache that a million tenants would fill.
                tenant = _checked_tenant(tenant) if type(tenant) is str else _exact_tenant(tenant)
                fast = cls._pg_kind.tstr_cls(value)
                fast._pg_tenant = tenant
            if FLAGS.zones:
                state = ZONE.get()
                if state is not None:
                    state.add(cls._pg_kind.labels, tenant)
            purpose = _current_purpose()
            if purpose is not None:
                kind = cls._pg_kind
                if not _read_allowed(kind, purpose):
                    _read_in_purpose(kind, tenant, purpose)
            return fast  # type: ignore[no-any-return]
    result, attached = _attach(value, categories, tenant)
    purpose = _current_purpose()
    if purpose is not None and not _read_allowed(attached, purpose):
        _read_in_purpose(attached, tenant, purpose)
    return result  # type: ignore[no-any-return]


def _read_again(kind: _Kind, tenant: str | None) -> None:
    """A labelled value read again where its copy cannot carry the label
    (pydantic's JSON output): the zone learns it, and the current purpose is
    checked as at :func:`label`, without making a labelled copy."""
    if FLAGS.zones:
        state = ZONE.get()
        if state is not None:
            state.add(kind.labels, tenant)
    purpose = _current_purpose()
    if purpose is not None and not _read_allowed(kind, purpose):
        _read_in_purpose(kind, tenant, purpose)


def relabel(value: T, *categories: str, tenant: str | None = None) -> T:
    """:func:`label` for values already read: what is built from labelled
    values (a rendered page, a transform's output) carries their labels on
    without counting as reading them again (no ``via="source"`` check)."""
    if not categories:
        raise TypeError("relabel() needs at least one category")
    return _attach(value, categories, tenant)[0]  # type: ignore[no-any-return]


def _attach(value: Any, categories: tuple[str, ...], tenant: str | None) -> tuple[Any, _Kind]:
    """Label ``value`` and tell the zone; returns the result and the kind of
    the categories attached (not merged with the value's own, without a tenant)."""
    try:
        kind = _KINDS_NO_TENANT.get(categories) if not FLAGS.activations else None
    except TypeError:
        _unhashable(categories, tenant)
    except Exception:  # a str subclass whose hash or == raises: looked up as plain text below
        kind = None
    if kind is None:
        if not categories:
            raise TypeError("label() needs at least one category")
        # Before the caches key on them: a hit later is an equal tuple of plain str.
        categories = _exact_categories(categories)
        try:
            kind = _resolve(categories).base
        except UnknownKeyError as error:
            if type(value) is str and value in KEYS.current().categories:
                # pg.label("customer_data", value): name the mistake, not the value.
                raise UnknownKeyError(
                    categories[0], "category", hint="the arguments look swapped: pg.label(value, *categories)"
                ) from None
            raise error from None
    if tenant is not None:
        tenant = _checked_tenant(tenant) if type(tenant) is str else _exact_tenant(tenant)
    attached = kind
    t = type(value)
    result: Any
    if t is str:
        result = _str_with(kind, tenant, value)
    elif t is bytes:
        result = _bytes_with(kind, tenant, value)
    else:
        own = getattr(t, "_pg_kind", None)
        if own is not None:
            kind = _union(own, kind)
            tenant = merge_tenants(_tenant_on(value), tenant)
            if isinstance(value, str):
                result = _str_with(kind, tenant, str.__str__(value))
            elif isinstance(value, bytes):
                result = _bytes_with(kind, tenant, _plain_bytes(value))
            elif isinstance(value, _LabelledValue):
                result = _value_with(kind, tenant, t._pg_number, value._pg_plain())
            else:
                base = int if isinstance(value, int) else float
                result = _number_with(kind, tenant, base, base(value))
        elif isinstance(value, enum.Enum):
            # A member is a singleton of the program's own (a status read
            # from a column is the very Status.OPEN the code names): labelled
            # in place, every use of it anywhere would carry the labels; as
            # a copy it would lose its type. It stays itself, as None does,
            # and its categories go to the zone (below).
            result = value
        elif isinstance(value, str):
            result = _str_with(kind, tenant, str.__str__(value))
        elif isinstance(value, bytes):
            result = _bytes_with(kind, tenant, _plain_bytes(value))
        elif t is int or t is float:
            # Subclasses, not proxies: json, sqlite3 and arithmetic see a number.
            result = _number_with(kind, tenant, t, value)
        elif t in _VALUE_COPIES:
            # Subclasses, not proxies: Decimal(x), date arithmetic and drivers see the value.
            result = _value_with(kind, tenant, t, value)
        elif t in _CONTAINER_CLASSES:
            # Subclasses too (a shallow copy): json.dumps and web frameworks
            # reject a proxy of a dict, and take a dict subclass as a dict.
            result = _container_with(kind, tenant, t, value)
        elif t is _NONE_TYPE or t is bool:
            # None, True and False are singletons: a labelled stand-in would
            # break `is None` and database drivers. They stay themselves and
            # their categories go to the zone (below), which checks them
            # where the request's data leaves.
            result = value
        elif FOREIGN and (reader := foreign_reader(t)) is not None:
            result = reader.label(value, kind.labels, tenant)
        else:
            box = getattr(t, "_pg_box", None)
            if box is not None:
                kind = _union(box, kind)
                tenant = merge_tenants(_tenant_on(value), tenant)
                result = _container_with(kind, tenant, box_base(t), _plain_container(value))
            else:
                result = _label_object(value, _with_tenant(kind, tenant))
    if FLAGS.zones:
        state = ZONE.get()
        if state is not None:
            state.add(kind.labels, tenant)
    return result, attached


def _exact_categories(categories: tuple[Any, ...]) -> tuple[Any, ...]:
    """``categories`` with each category key given as a ``str`` subclass (a
    ``StrEnum`` member) as the plain ``str``: labels, caches and violations
    hold exact strings (a subclass's ``repr`` or ``==`` is its own). What is
    not a key is left as given, for the caller's error, which does not show
    text that could be data."""
    if all(type(category) is str for category in categories):
        return categories
    known = KEYS.current().categories
    exact: list[Any] = []
    for category in categories:
        if type(category) is not str and isinstance(category, str):
            plain = str.__str__(category)
            if plain in known:
                category = plain
        exact.append(category)
    return tuple(exact)


def _exact_tenant(tenant: object) -> str:
    """A valid tenant id (see ``require_tenant``) as the plain ``str``: a
    ``str`` subclass would be what records, baggage and violations show."""
    checked = _checked_tenant(tenant)
    return checked if type(checked) is str else str.__str__(checked)


def strip_labels(value: T) -> T:
    """The plain value under a labelled one. Internal: removing labels is a
    declassification, which only a policy transform may do."""
    t = type(value)
    if getattr(t, "_pg_kind", None) is not None:
        if isinstance(value, str):
            return str.__str__(value)  # type: ignore[return-value]
        if isinstance(value, int):
            return int(value)  # type: ignore[return-value]
        if isinstance(value, float):
            return float(value)  # type: ignore[return-value]
        if isinstance(value, _LabelledValue):
            return value._pg_plain()  # type: ignore[no-any-return]
        return _plain_bytes(value)  # type: ignore[return-value]
    if issubclass(type(value), LabelledProxy):
        wrapped: T = cast(LabelledProxy, value).__wrapped__
        return wrapped
    if getattr(t, "_pg_box", None) is not None:
        return _plain_container(value)  # type: ignore[no-any-return]
    if FOREIGN and (reader := foreign_reader(t)) is not None:
        return reader.strip(value)  # type: ignore[no-any-return]
    if _OBJECTS.pop(id(value), None) is not None:
        _OBJECT_REFS.pop(id(value), None)
    return value


# -- field annotations -----------------------------------------------------------


# The last refusal raised while pydantic serialised a declared field, for
# the middlewares to find behind pydantic's own error (see _server.violation_in).
SERIALIZER_REFUSALS: list[BaseException | None] = [None]


class Category:
    """Marks a field's categories: ``body: Annotated[str, Category("customer_data.content.email")]``.

    One declaration per field, read wherever the object is built: values of
    such fields arrive labelled from dataclasses, attrs classes and pydantic
    v2 models (and from the ORM integrations). An unknown key raises
    :class:`UnknownKeyError` when the class is defined, naming the class and
    field when the class body shows them.
    """

    __slots__ = ("categories", "_keys")

    def __init__(self, *categories: str) -> None:
        if not categories:
            raise TypeError("Category() needs at least one category")
        taxonomy = KEYS.current()
        for category in categories:
            if not isinstance(category, str) or category not in taxonomy.categories:
                raise UnknownKeyError(category, "category", field=_defining_field(sys._getframe(1)))
        # Plain str: the walk reports these categories as they are kept here.
        self.categories = frozenset(str.__str__(category) for category in categories)
        # As given, for label(): its caches are keyed by the categories' tuple.
        self._keys: tuple[str, ...] = tuple(sorted(self.categories))

    def __repr__(self) -> str:
        return f"Category({', '.join(repr(c) for c in sorted(self.categories))})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Category) and other.categories == self.categories

    def __hash__(self) -> int:
        return hash(self.categories)

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        """pydantic v2: validate as the annotated type would, then label.

        The labels the input already carried are kept (validating a ``str``
        field builds a new plain ``str``), as is its tenant.
        """
        from pydantic_core import core_schema

        union = _enclosing_union(sys._getframe(1))
        if union is not None:
            field = getattr(handler, "field_name", None)
            raise TypeError(
                f"{self!r} is declared on one member of a union ({union}"
                f"{f', field {field!r}' if field else ''}): pydantic's union serializer swallows "
                "a refusal from one member and writes the value anyway. Declare the category on the "
                "whole union: Annotated[str | int, Category(...)]"
            )
        keys = self._keys

        def keep_labels(value: Any, validate: Any) -> Any:
            result = validate(value)
            carried = labels_of(value) if type(value) not in NO_LABELS else EMPTY
            # A list or dict of labelled items names its items' tenant.
            tenant = (tenant_of(value) or tenant_of_values((value,))) if carried else None
            extra = carried - self.categories
            if extra:
                # Read where the input was labelled: carried on, not read again.
                result = relabel(result, *sorted(extra), tenant=tenant)
            return label(result, *keys, tenant=tenant if not extra else None)

        def serialized(value: Any, serialize: Any) -> Any:
            # JSON mode builds new plain values (model_dump(mode="json"),
            # model_dump_json(), FastAPI's encoder): writing the field out
            # is a read, which tells a zone (and the current purpose) of it
            # when a model validated elsewhere (another request, a cache) is
            # written out. Checked before pydantic reads the value.
            if value is None:
                return serialize(value)
            t = type(value)
            kind = getattr(t, "_pg_kind", None)
            if kind is not None:
                tenant = _tenant_on(value)
            else:
                # A labelled list, dict or tuple, a nested model, an object
                # labelled in place: what any check reads of it; and the
                # field's own categories whatever the value carries (a bool,
                # which stays itself, or what a validator after this one
                # rebuilt), as the data of the zone's tenant.
                carried = labels_of(value) if t not in NO_LABELS else EMPTY
                if carried:
                    tenant = tenant_of(value)
                else:
                    state = ZONE.get() if FLAGS.zones else None
                    tenant = state.data_tenant() if state is not None else None
                kind = _kind_for(carried | self.categories)
            try:
                _read_again(kind, tenant)
            except BaseException as refused:
                # pydantic wraps it in its own error, and model_dump_json()
                # drops the cause: kept where a middleware finds it.
                SERIALIZER_REFUSALS[0] = refused
                raise
            # Checked: the plain items go in, with no check of each on the way.
            return serialize(_plain_container(value) if getattr(t, "_pg_box", None) is not None else value)

        def serialized_copied(value: Any, serialize: Any, info: Any) -> Any:
            if info.mode_is_json():
                return serialized(value, serialize)
            # Python mode hands back a labelled value itself. A labelled
            # container pydantic copies item by item in C, and its copy
            # comes out plain whatever this returns: the zone is told, and
            # the plain items go in (a set's own iteration would check each
            # where pydantic cannot carry a refusal).
            if getattr(type(value), "_pg_box", None) is None:
                return serialize(value)
            if FLAGS.zones:
                state = ZONE.get()
                if state is not None:
                    state.add(labels_of(value), tenant_of(value))
            return serialize(_plain_container(value))

        # Python mode is seen only where pydantic copies the value item by
        # item (a container field): every other field's Python-mode dump
        # hands back the value itself, and a call per field per dump would
        # cost more than the dump.
        origin = typing.get_origin(source) or source
        copied = isinstance(origin, type) and issubclass(origin, (list, tuple, set, frozenset, dict))
        return core_schema.no_info_wrap_validator_function(
            keep_labels,
            handler(source),
            serialization=(
                core_schema.wrap_serializer_function_ser_schema(serialized_copied, info_arg=True)
                if copied
                else core_schema.wrap_serializer_function_ser_schema(serialized, when_used="json")
            ),
        )


# pydantic's schema builders: a Category met while it builds one member of
# a union is inside the union, unless a model's schema is built in between
# (a model member, a deferred or recursive model): a model's own serializer
# refuses when it is written, and the union does not swallow that.
_SCHEMA_BUILDERS = "/pydantic/_internal/_generate_schema.py"
_UNION_BUILDER = "_union_schema"
_MODEL_BUILDER = "_model_schema"


def _enclosing_union(frame: Any) -> str | None:
    """The union (of more than one type besides None) whose member's schema
    pydantic is building around this frame, if any, as text. An Optional
    field is a nullable schema, not a union: its refusals propagate."""
    for _ in range(256):
        if frame is None:
            return None
        code = frame.f_code
        name = code.co_name
        if name not in (_UNION_BUILDER, _MODEL_BUILDER) or not code.co_filename.replace("\\", "/").endswith(
            _SCHEMA_BUILDERS
        ):
            frame = frame.f_back
            continue
        if name == _MODEL_BUILDER:
            return None
        if name == _UNION_BUILDER:
            union = frame.f_locals.get("union_type")
            members = [arg for arg in typing.get_args(union) if arg is not None and arg is not type(None)]
            if len(members) > 1:
                return " | ".join(
                    member.__name__ if isinstance(member, type) else repr(member) for member in members
                )
        frame = frame.f_back
    return None


def _defining_field(frame: Any) -> str | None:
    """``Class.field`` whose annotation is being evaluated, when the stack
    shows it, else None: a class body running ``name: Annotated[...]``, or a
    type-hint reader (``typing.get_type_hints``, pydantic) resolving
    postponed annotations with the class and field name in its locals."""
    try:
        namespace = frame.f_locals
        if "__module__" in namespace and "__qualname__" in namespace:
            owner = str(namespace["__qualname__"])
            line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
            found = re.match(r"\s*([A-Za-z_]\w*)\s*:", line)
            return f"{owner}.{found.group(1)}" if found else owner
        for _ in range(12):
            frame = frame.f_back
            if frame is None:
                return None
            names = frame.f_locals
            field = names.get("name", names.get("ann_name"))
            if not isinstance(field, str):
                continue
            for holder in ("base", "obj", "cls"):
                owner_type = names.get(holder)
                if isinstance(owner_type, type) and field in getattr(owner_type, "__annotations__", {}):
                    return f"{owner_type.__qualname__}.{field}"
        return None
    except Exception:  # noqa: BLE001 - only a better message is at stake
        return None


# type -> ((field name, categories), ...); empty tuple for types without any.
_FIELDS: dict[type, tuple[tuple[str, frozenset[str]], ...]] = _STATE.fields


def annotated_fields(t: type) -> tuple[tuple[str, frozenset[str]], ...]:
    found = _FIELDS.get(t)
    if found is not None:
        return found
    fields: list[tuple[str, frozenset[str]]] = []
    try:
        hints = typing.get_type_hints(t, include_extras=True)
    except Exception:
        # A class defined inside a function, under postponed annotations, cannot
        # be resolved as a whole; resolve what each field's string allows.
        hints = {}
        for klass in reversed(t.__mro__):
            module = sys.modules.get(getattr(klass, "__module__", ""), None)
            namespace = {"Annotated": typing.Annotated, "Category": Category, "typing": typing}
            namespace.update(vars(module) if module is not None else {})
            for name, hint in (getattr(klass, "__annotations__", {}) or {}).items():
                if isinstance(hint, str):
                    try:
                        hint = eval(hint, namespace)  # noqa: S307 - the class's own annotation
                    except UnknownKeyError as error:
                        raise UnknownKeyError(
                            error.key, error.kind, field=f"{klass.__qualname__}.{name}"
                        ) from None
                    except Exception:
                        continue
                hints[name] = hint
    # attrs fields given their type as an argument (attr.ib(type=...),
    # attrs.make_class) rather than an annotation.
    for attribute in getattr(t, "__attrs_attrs__", ()) or ():
        name = getattr(attribute, "name", None)
        if isinstance(name, str) and name not in hints and getattr(attribute, "type", None) is not None:
            hints[name] = attribute.type
    for name, hint in hints.items():
        categories = _categories_in_hint(hint)
        if categories:
            fields.append((name, categories))
    # pydantic keeps Annotated metadata on its field info, not in the hints alone.
    model_fields = getattr(t, "model_fields", None)
    if isinstance(model_fields, dict):
        known = {name for name, _ in fields}
        for name, info in model_fields.items():
            if name in known:
                continue
            found_here: frozenset[str] = frozenset()
            for meta in getattr(info, "metadata", ()) or ():
                if isinstance(meta, Category):
                    found_here |= meta.categories
            if found_here:
                fields.append((name, found_here))
    result = tuple(fields)
    remember(_FIELDS, t, result)
    return result


def _alias_value(hint: Any) -> Any:
    """What a ``type X = ...`` alias (``TypeAliasType``) stands for; other hints as they are."""
    for _ in range(16):
        value = getattr(hint, "__value__", None) if type(hint).__name__ == "TypeAliasType" else None
        if value is None:
            return hint
        hint = value
    return hint


def _categories_in_hint(hint: Any) -> frozenset[str]:
    found: frozenset[str] = frozenset()
    hint = _alias_value(hint)
    if typing.get_origin(hint) is typing.Annotated:
        for meta in hint.__metadata__:
            if isinstance(meta, Category):
                found |= meta.categories
        hint = typing.get_args(hint)[0]
    for arg in typing.get_args(hint):
        found |= _categories_in_hint(arg)
    return found


# -- reading labels -----------------------------------------------------------------


def _own_labels(value: Any) -> frozenset[str]:
    t = type(value)
    kind = getattr(t, "_pg_kind", None)
    if kind is not None:
        return kind.labels  # type: ignore[no-any-return]
    if t is LabelledProxy or issubclass(t, LabelledProxy):
        return value._self_pg_kind.labels  # type: ignore[no-any-return]
    box = getattr(t, "_pg_box", None)
    if box is not None:
        return box.labels  # type: ignore[no-any-return]
    if FOREIGN:
        reader = foreign_reader(t)
        if reader is not None:
            return reader.labels(value, None)
    found = EMPTY
    object_kind = _OBJECTS.get(id(value))
    if object_kind is not None and _OBJECT_REFS[id(value)]() is value:
        found = object_kind.labels
    for name, categories in annotated_fields(t):
        field_value = getattr(value, name, None)
        if field_value is not None:
            found = found | categories | _own_labels_shallow(field_value)
    return found


def _own_labels_shallow(value: Any) -> frozenset[str]:
    kind = getattr(type(value), "_pg_kind", None)
    if kind is not None:
        return kind.labels  # type: ignore[no-any-return]
    if issubclass(type(value), LabelledProxy):
        labels: frozenset[str] = value._self_pg_kind.labels
        return labels
    box = getattr(type(value), "_pg_box", None)
    if box is not None:
        return box.labels  # type: ignore[no-any-return]
    return EMPTY


def labels_of(value: Any) -> frozenset[str]:
    """The categories ``value`` carries: its own, its annotated fields', and
    those of everything inside it, as deep as the deep walk (``_walk``)
    looks (what lies beyond its bound is left out here; checkpoints refuse it)."""
    t = type(value)
    if t in NO_LABELS:
        return EMPTY
    kind = getattr(t, "_pg_kind", None)
    if kind is not None:
        return kind.labels  # type: ignore[no-any-return]
    return _walk((value,), strict=False)[0]


def _item_labels(item: Any) -> frozenset[str]:
    if type(item) in NO_LABELS:
        return EMPTY
    kind = getattr(type(item), "_pg_kind", None)
    if kind is not None:
        return kind.labels  # type: ignore[no-any-return]
    return _own_labels(item)


def tenant_of(value: Any) -> str | None:
    """The tenant a labelled value belongs to, if it was labelled with one."""
    if (
        getattr(type(value), "_pg_kind", None) is not None
        or getattr(type(value), "_pg_box", None) is not None
    ):
        # Labelled str, bytes, numbers and containers carry it themselves.
        return _tenant_on(value)
    if issubclass(type(value), LabelledProxy):
        tenant: str | None = value._self_pg_kind.tenant
        return tenant
    kind = _OBJECTS.get(id(value))
    if kind is None and FOREIGN:
        reader = foreign_reader(type(value))
        if reader is not None:
            return reader.tenant(value)
    return kind.tenant if kind is not None else None


def tenant_of_values(values: Iterable[Any]) -> str | None:
    """Whose data ``values`` are: the tenants their labels name, looked up
    as deep as :func:`labels_in_values` looks. Data of several tenants
    belongs to none of them: the result is :data:`MIXED_TENANT`, which no
    tenant's consent covers. None when no value names a tenant."""
    found: str | None = None
    rest: list[Any] = []
    for value in values:
        t = type(value)
        if t in NO_LABELS:
            continue
        kind = getattr(t, "_pg_kind", None)
        if kind is not None:
            tenant = _tenant_on(value)
            if tenant is not None:
                found = merge_tenants(found, tenant)
            continue
        rest.append(value)
    if rest:
        found = merge_tenants(found, _walk(rest, strict=False)[1]) if found else _walk(rest, strict=False)[1]
    return found


# -- produces ---------------------------------------------------------------------------


def produces(*categories: str, tenant: str | None = None) -> Callable[[T], T]:
    """Label what the decorated function returns (or yields) with ``categories``.

    >>> @produces("customer_data.content.email")
    ... def read_body(message_id): return "Hello"
    """
    if not categories:
        raise TypeError("produces() needs at least one category")
    categories = _exact_categories(categories)
    _resolve(categories, tenant)  # unknown keys fail when decorating
    if tenant is not None:
        tenant = _exact_tenant(tenant)

    def relabel(item: Any) -> Any:
        return label(item, *categories, tenant=tenant)

    def decorate(fn: Any) -> Any:
        if isinstance(fn, (classmethod, staticmethod)):
            return type(fn)(decorate(fn.__func__))
        if inspect.isasyncgenfunction(fn):
            return functools.wraps(fn)(async_generator_function(fn, relabel))
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return label(await fn(*args, **kwargs), *categories, tenant=tenant)

            return async_wrapper
        if inspect.isgeneratorfunction(fn):
            # send(), throw(), close() and the return value are forwarded.
            return functools.wraps(fn)(generator_function(fn, relabel))

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return label(fn(*args, **kwargs), *categories, tenant=tenant)

        wrapper.__purposeguard_produces__ = frozenset(categories)  # type: ignore[attr-defined]
        return wrapper

    return decorate


def is_dataclass_instance(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def labels_in_values(values: Iterable[Any], purpose: str | None = None) -> frozenset[str]:
    """The labels of ``values``, as deep as the deep walk (``_walk``) looks;
    with ``purpose``, foreign values may leave out categories they show to
    be allowed for it (see :class:`ForeignLabels`). Raises
    :class:`WalkLimit` for content beyond the walk's bound."""
    found = EMPTY
    rest: list[Any] | None = None
    for value in values:
        t = type(value)
        if t in NO_LABELS:
            continue
        kind = getattr(t, "_pg_kind", None)
        if kind is not None:
            found = found | kind.labels
        elif rest is None:
            rest = [value]
        else:
            rest.append(value)
    if rest is not None:
        found = found | _walk(rest, purpose)[0]
    return found


# -- plain objects --------------------------------------------------------------

# type -> whether its instances are plain objects (see learn_flat); bounded.
_FLAT_KNOWN: dict[type, bool] = {}


def learn_flat(t: type) -> None:
    """Put ``t`` in :data:`FLAT_OBJECTS` if its instances are plain objects."""
    if issubclass(t, _LABELLED_BASES):
        return  # never plain, and not remembered: the class goes with its values
    known = _FLAT_KNOWN.get(t)
    if known is None:
        size = len(_FLAT_KNOWN)
        known = remember(_FLAT_KNOWN, t, _is_flat(t))
        if len(_FLAT_KNOWN) <= size:
            # The oldest eighth was forgotten: the set follows, so both keep
            # the same (newest) types and no older class stays alive in one.
            FLAT_OBJECTS.intersection_update(_FLAT_KNOWN)
    if known and t not in SIDE_TABLE_TYPES and not (FOREIGN and foreign_reader(t) is not None):
        FLAT_OBJECTS.add(t)


_LABELLED_BASES = (LabelledStr, LabelledBytes, _LabelledNumber, _LabelledContainer, LabelledProxy)


def _is_flat(t: type) -> bool:
    if t in _CONTAINERS or issubclass(t, LabelledProxy) or getattr(t, "_pg_box", None) is not None:
        return False
    if getattr(t, "_pg_kind", None) is not None or t.__getattribute__ is not object.__getattribute__:
        return False
    how, names = _shape(t)
    if how != _OBJECT or names or annotated_fields(t):
        return False
    # Its __dict__ must be the instance dict itself, not a property of the class.
    for klass in t.__mro__:
        declared = klass.__dict__.get("__dict__")
        if declared is not None:
            return type(declared) is types.GetSetDescriptorType
    return False


# The modules below call back into this one for what is defined here (they
# cannot import it): items read from a labelled container are labelled as
# label() labels them, a container given no tenant belongs to whoever its
# items name, and the walk reads the categories classes declare on fields.
_labelled_module.label = label
_labelled_module.tenant_of_values = tenant_of_values
_walk_module.annotated_fields = annotated_fields
