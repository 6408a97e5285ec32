"""The deep walk: the one walk that finds the labels anywhere inside a value.

Every checkpoint reads labels through it: ``@purpose`` arguments and return
values, ``pg.check``, the egress guards and the logging filter. It looks
into containers of every kind (``dict``, ``list``, ``tuple``, ``set``,
``deque``, any :class:`collections.abc.Mapping` or ``Collection`` such as
``OrderedDict``, ``defaultdict``, ``ChainMap``, ``UserDict``, ``UserList``
and named tuples, and their subclasses), into labelled containers and
proxies, and into the attribute values of plain objects (``__dict__`` and
``__slots__``).

The walk is bounded: :data:`MAX_DEPTH` levels of nesting and
:data:`MAX_ITEMS` values looked into (values of a type known to carry no
labels, such as plain ``str`` and ``int``, cost one set lookup and do not
count). Content beyond either bound is not looked at, and the walk says so
by raising :class:`WalkLimit`: checkpoints treat that as an engine failure,
so enforce mode refuses (fails closed) and trace mode records it.

It is apart from the labelled types (``_labelled``, below it) and the public
API (``_labels``, above it, which reads labels through :func:`_walk`): its
bounds and its per-type memos are one concern, read in one place.
"""

from __future__ import annotations

import types
import weakref
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from ._errors import PurposeGuardError
from ._kinds import EMPTY, _Kind, merge_tenants
from ._labelled import ForeignLabels, LabelledProxy, _plain_items, _tenant_on, foreign_reader
from ._state import STATE, remember, trim_types

# The registries below belong to the process state (_labelled says what each
# holds); these names are bound to its containers, which a reset clears in
# place. Bound here, not imported: Python 3.11 compiles ``NAME.get(...)`` on
# an imported name as an attribute read and a call, a bound method per call.
_STATE = STATE.labels
_OBJECTS: dict[int, _Kind] = _STATE.objects
_OBJECT_REFS: dict[int, weakref.ref[Any]] = _STATE.object_refs
NO_LABELS: set[type] = _STATE.no_labels
SIDE_TABLE_TYPES: set[type] = _STATE.side_table_types
FOREIGN: dict[type, ForeignLabels] = _STATE.foreign


def _installed_by_labels(t: type) -> tuple[tuple[str, frozenset[str]], ...]:
    # The package imports _labels, which replaces this, before any value is read.
    raise RuntimeError("purposeguard._labels is not loaded")


# The categories a class declares on its fields (Category annotations):
# defined in _labels on top of this module, which installs it here when it loads.
annotated_fields: Callable[[type], tuple[tuple[str, frozenset[str]], ...]] = _installed_by_labels


# Deep enough for JSON documents and object graphs of a request; bounded so a
# huge payload cannot turn a check into the slow part of a call.
MAX_DEPTH = 8
MAX_ITEMS = 50_000

# Never looked into: code, classes and modules are not data.
_OPAQUE = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    types.FrameType,
    types.TracebackType,
    types.GeneratorType,
    types.CoroutineType,
    types.AsyncGeneratorType,
    property,
    classmethod,
    staticmethod,
)
_TEXT = (str, bytes, bytearray, memoryview)


class WalkLimit(PurposeGuardError):
    """A value nests deeper than ``MAX_DEPTH`` or holds more than
    ``MAX_ITEMS`` values: what lies beyond was not looked at."""

    def __init__(self, labels: frozenset[str], tenant: str | None) -> None:
        super().__init__(
            f"a value nests deeper than {MAX_DEPTH} levels or holds more than {MAX_ITEMS} values; "
            "purposeguard did not look beyond that"
        )
        self.labels = labels
        self.tenant = tenant


# type -> attribute names its __slots__ declare (empty: none).
_SLOTS: dict[type, tuple[str, ...]] = {}


def _slots(t: type) -> tuple[str, ...]:
    found = _SLOTS.get(t)
    if found is None:
        names: list[str] = []
        for klass in t.__mro__:
            declared = klass.__dict__.get("__slots__", ())
            if isinstance(declared, str):
                declared = (declared,)
            for name in declared:
                if name not in ("__dict__", "__weakref__") and name not in names:
                    names.append(name)
        found = remember(_SLOTS, t, tuple(names))
    return found


_BUILTIN_CONTAINERS = frozenset({dict, list, tuple, set, frozenset, deque})
# How the walk looks into instances of a type, decided once per type.
_OPAQUE_SHAPE, _EXCEPTION, _MAPPING, _COLLECTION, _OBJECT, _NOTHING = range(6)
_SHAPES: dict[type, tuple[int, tuple[str, ...]]] = {}


def _shape(t: type) -> tuple[int, tuple[str, ...]]:
    found = _SHAPES.get(t)
    if found is None:
        names: tuple[str, ...] = ()
        if issubclass(t, _TEXT) or issubclass(t, _OPAQUE):
            how = _OPAQUE_SHAPE
        elif issubclass(t, BaseException):
            how = _EXCEPTION
        elif issubclass(t, (dict, Mapping)):
            how = _MAPPING
        elif issubclass(t, (list, tuple, set, frozenset, deque, Collection)):
            how = _COLLECTION
        else:
            names = _slots(t)
            how = _OBJECT if names or getattr(t, "__dictoffset__", 0) != 0 else _NOTHING
        found = remember(_SHAPES, t, (how, names))
        # A new type: the walk may learn it as label-free next, so bound
        # that set here (it stays a plain set for the hot path).
        trim_types(NO_LABELS, _STATE.no_labels_default)
    return found


class _Walk:
    __slots__ = ("labels", "tenant", "budget", "seen", "purpose", "short")

    def __init__(self, purpose: str | None) -> None:
        self.labels: set[str] = set()
        self.tenant: str | None = None
        self.budget = MAX_ITEMS
        self.seen: set[int] = set()
        self.purpose = purpose
        self.short = False

    def add(self, kind: Any, tenant: str | None = None) -> None:
        self.labels.update(kind.labels)
        if tenant is None:
            tenant = kind.tenant
        if tenant is not None:
            self.tenant = merge_tenants(self.tenant, tenant)

    def visit(self, value: Any, level: int) -> None:
        t = type(value)
        if t in NO_LABELS:
            return
        kind = getattr(t, "_pg_kind", None)
        if kind is not None:
            self.add(kind, _tenant_on(value))
            return
        self.budget -= 1
        if self.budget < 0:
            self.short = True
            return
        if t is LabelledProxy or isinstance(value, LabelledProxy):
            self.add(value._self_pg_kind)
            value = value.__wrapped__
            t = type(value)
            if t in NO_LABELS:
                return
        box = getattr(t, "_pg_box", None)
        if box is not None:
            self.add(box, _tenant_on(value))
        elif FOREIGN and (reader := foreign_reader(t)) is not None:
            self.labels.update(reader.labels(value, self.purpose))
            owner = reader.tenant(value)
            if owner is not None:
                self.tenant = merge_tenants(self.tenant, owner)
            return
        elif t in SIDE_TABLE_TYPES:
            object_kind = _OBJECTS.get(id(value))
            if object_kind is not None and _OBJECT_REFS[id(value)]() is value:
                self.add(object_kind)
        how, names = _shape(t)
        if how == _OPAQUE_SHAPE:
            return
        fields = annotated_fields(t)
        for name, categories in fields:
            if getattr(value, name, None) is not None:
                self.labels.update(categories)
        children: Iterable[Any]
        if how == _OBJECT:
            state = getattr(value, "__dict__", None)
            if names:
                children = list(state.values()) if isinstance(state, dict) else []
                for name in names:
                    try:
                        children.append(object.__getattribute__(value, name))
                    except AttributeError:
                        continue
            elif isinstance(state, dict):
                children = state.values()
            else:
                return
        elif how == _MAPPING or how == _COLLECTION:
            if t in _BUILTIN_CONTAINERS:
                children = _pairs(value) if how == _MAPPING else value
            elif box is not None:
                # As stored: the labelled container's own methods would label each item.
                children = _plain_items(value)
            else:
                # Code of the application's own: a lazy proxy (Django's
                # SimpleLazyObject) may claim to be a collection and fail to
                # iterate. Then its attributes are what it holds.
                try:
                    children = list(_pairs(value) if how == _MAPPING else value)
                except Exception:
                    state = getattr(value, "__dict__", None)
                    if not isinstance(state, dict):
                        return
                    children = list(state.values())
        elif how == _EXCEPTION:
            # An exception's arguments are not in its __dict__; an
            # ExceptionGroup's exceptions are among its arguments.
            children = (
                *value.args,
                *getattr(value, "__dict__", {}).values(),
                value.__cause__,
                value.__context__,
            )
        else:
            if not fields and t not in SIDE_TABLE_TYPES:
                # Instances of this type hold no attributes to look into.
                NO_LABELS.add(t)
                if t in SIDE_TABLE_TYPES:
                    NO_LABELS.discard(t)
            return
        if level <= 0:
            for child in children:  # anything that may hold labels is beyond the bound
                if type(child) not in NO_LABELS:
                    self.short = True
                    return
            return
        key = id(value)
        if key in self.seen:
            return
        self.seen.add(key)
        for child in children:
            self.visit(child, level - 1)
            if self.short:
                return


def _pairs(mapping: Any) -> Iterable[Any]:
    for key, item in mapping.items():
        yield key
        yield item


def _walk(
    values: Iterable[Any], purpose: str | None = None, *, strict: bool = True
) -> tuple[frozenset[str], str | None]:
    """The labels anywhere in ``values`` and whose data they are
    (:data:`~purposeguard._labels.MIXED_TENANT` for several tenants).

    With ``strict`` (checkpoints), content beyond the bounds raises
    :class:`WalkLimit` carrying what was found; without, what was found is
    returned. ``purpose`` lets foreign readers leave out categories they show
    to be allowed for it.
    """
    state = _Walk(purpose)
    for value in values:
        state.visit(value, MAX_DEPTH)
        if state.short:
            break
    labels = frozenset(state.labels) if state.labels else EMPTY
    if state.short and strict:
        raise WalkLimit(labels, state.tenant)
    return labels, state.tenant
