"""The deep walk: the one walk that finds the labels anywhere inside a value.

Every checkpoint reads labels through it: ``@purpose`` arguments and return
values, ``pg.check``, the egress guards and the logging filter. It looks
into containers of every kind (``dict``, ``list``, ``tuple``, ``set``,
``deque``, any :class:`collections.abc.Mapping` or ``Collection`` such as
``OrderedDict``, ``defaultdict``, ``ChainMap``, ``UserDict``, ``UserList``
and named tuples, and their subclasses), into labelled containers and
proxies, into the attribute values of plain objects (``__dict__`` and
``__slots__``), and into what lazy and wrapping values hold without
consuming them (generators, built-in iterators, ``functools.partial``,
bound methods, ``memoryview``, ``re.Match``, ``re.Pattern``, ``slice``,
``contextvars.Context``, ``UserString``: see :func:`_holder`). A subclass of
a built-in container is read through the built-in type's own iteration,
never through its class's ``items()`` or ``__iter__``, which could hide
what it holds.

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

import array
import asyncio
import concurrent.futures
import contextvars
import functools
import gc
import logging
import re
import selectors
import socket
import sys
import types
import weakref
from collections import UserString, deque
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
# Of MAX_ITEMS, what one best-effort look may take (a generator's locals, a
# collection's attributes: see _Walk.best_effort).
FRAME_BUDGET = 2_000
# A bound method's object, looked into on every call that passes the method
# (a callback, a handler held by a service): a glance, not a search. Its own
# attributes, and what small built-in containers among them hold: a profile
# whose summary is passed is seen; an application object is not searched at
# each call (measured: milliseconds for a large one).
BOUND_BUDGET = 64
BOUND_DEPTH = 2
# Items of a collection of the application's own iterated at most, plain ones
# included: its __iter__ may never end.
_ITERATION_LIMIT = 10 * MAX_ITEMS

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
    property,
    classmethod,
    staticmethod,
)
# The process's machinery, which a client object (an aiohttp session, a
# connection pool) reaches through its connector: an event loop's ready
# queue and selector go far past the walk's bounds and are no call's data.
# Only the standard library's own classes (and uvloop's loop): a subclass
# the application wrote may keep its data on itself, and is walked (the
# machinery it holds is then passed over). A value handed to a callback on
# a loop is checked where that callback runs.
_MACHINERY = (
    asyncio.AbstractEventLoop,
    selectors.BaseSelector,
    socket.socket,
    concurrent.futures.Executor,
    # A logger reaches every logger of the process (its manager's
    # loggerDict) and their handlers' streams: an object that keeps
    # ``self.log`` (an RQ job, a service class) is walked without it. What
    # is logged is checked where it is logged (the logging integration).
    logging.Logger,
    logging.Manager,
    logging.Handler,
)
_MACHINERY_MODULES = frozenset({*sys.stdlib_module_names, "uvloop"})


def _machinery(t: type) -> bool:
    return (
        issubclass(t, _MACHINERY)
        and str(getattr(t, "__module__", "")).partition(".")[0] in _MACHINERY_MODULES
    )


# array.array holds machine numbers or characters: nothing a label stays on.
_TEXT = (str, bytes, bytearray, memoryview, array.array)


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


_BUILTIN_CONTAINERS = frozenset(
    {dict, list, tuple, set, frozenset, deque, type({}.keys()), type({}.values()), type({}.items())}
)
# How the walk looks into instances of a type, decided once per type.
_OPAQUE_SHAPE, _EXCEPTION, _MAPPING, _COLLECTION, _OBJECT, _NOTHING, _HOLDER, _HIDING = range(8)
_SHAPES: dict[type, tuple[int, tuple[str, ...]]] = {}


def _shape(t: type) -> tuple[int, tuple[str, ...]]:
    found = _SHAPES.get(t)
    if found is None:
        names: tuple[str, ...] = ()
        holder = _holder(t)
        if holder is not None:
            remember(_HOLDERS, t, holder)
            how = _HOLDER
        elif issubclass(t, _TEXT) or issubclass(t, _OPAQUE) or _machinery(t):
            how = _OPAQUE_SHAPE
        elif issubclass(t, BaseException):
            how = _EXCEPTION
        elif issubclass(t, (dict, Mapping)):
            how = _MAPPING
        elif issubclass(t, (list, tuple, set, frozenset, deque, Collection)):
            how = _COLLECTION
        else:
            names = _slots(t)
            if names or getattr(t, "__dictoffset__", 0) != 0:
                how = _HIDING if _controls_its_state(t) else _OBJECT
            else:
                how = _NOTHING
        found = remember(_SHAPES, t, (how, names))
        # A new type: the walk may learn it as label-free next, so bound
        # that set here (it stays a plain set for the hot path).
        trim_types(NO_LABELS, _STATE.no_labels_default)
    return found


# Iterators written in C that hand over what they iterate through
# ``__reduce__`` without consuming it (dict and set iterators copy what is
# left). itertools' own stopped doing so in Python 3.12.
_REDUCING_MODULES = frozenset(
    {"builtins", "_collections"} | ({"itertools"} if sys.version_info < (3, 12) else set())
)


def _frame_locals(frame_name: str, awaiting: str) -> Callable[[Any], Iterable[Any] | None]:
    def held(value: Any) -> Iterable[Any]:
        # A generator not yet run or suspended: its arguments and locals (a
        # generator expression's source iterator among them), and what it
        # is suspended in (``yield from``, ``await``), are what it goes on
        # to produce from. A finished one holds nothing.
        frame = getattr(value, frame_name)
        if frame is None:
            return ()
        inner = getattr(value, awaiting, None)
        found = tuple(frame.f_locals.values())
        return found if inner is None else (*found, inner)

    return held


def _memoryview_object(value: Any) -> Iterable[Any]:
    try:
        return (value.obj,)
    except ValueError:  # released
        return ()


def _bound_self(value: Any) -> Iterable[Any]:
    # A callback holds its object: f(profile.summary) hands f the profile. A
    # module's function is bound to the module, which is code, not data.
    owner = value.__self__
    return () if owner is None or isinstance(owner, types.ModuleType) else (owner,)


def _at_hand(owner: Any) -> list[Any]:
    """What a bound method's object holds within reach: the object itself if
    labelled or a small built-in container, else its own attributes that
    are (never a large container's items nor another object's attributes)."""
    candidates: Iterable[Any]
    t = type(owner)
    if getattr(t, "_pg_kind", None) is not None or t in _BUILTIN_CONTAINERS:
        candidates = (owner,)
    else:
        try:
            state = object.__getattribute__(owner, "__dict__")
        except (AttributeError, TypeError):
            state = None
        held = list(state.values())[:BOUND_BUDGET] if type(state) is dict else []
        candidates = held + _slot_values(owner, t)[:BOUND_BUDGET]
    found = []
    for value in candidates:
        kind = type(value)
        if kind in NO_LABELS:
            continue
        if getattr(kind, "_pg_kind", None) is not None or getattr(kind, "_pg_box", None) is not None:
            found.append(value)
        elif kind in _BUILTIN_CONTAINERS and len(value) <= BOUND_BUDGET:
            found.append(value)
    return found


def _slice_bounds(value: Any) -> Iterable[Any]:
    return (value.start, value.stop, value.step)


def _context_values(value: Any) -> Iterable[Any]:
    # Its keys are the ContextVar objects; what they were set to is in its values.
    return tuple(value.values())


def _partial_arguments(value: Any) -> Iterable[Any]:
    state = getattr(value, "__dict__", None)
    return (*value.args, *value.keywords.values(), *(state.values() if isinstance(state, dict) else ()))


def _user_string(value: Any) -> Iterable[Any]:
    return (value.data, *_public_attributes(value, type(value)))


def _reduced(value: Any) -> Iterable[Any] | None:
    try:
        reduced = value.__reduce__()
    except Exception:
        return None
    if not isinstance(reduced, tuple) or len(reduced) < 2:
        return None
    return (*reduced[1], *reduced[2:]) if isinstance(reduced[1], tuple) else reduced[1:]


_FRAMES: dict[type, Callable[[Any], Iterable[Any] | None]] = {
    types.GeneratorType: _frame_locals("gi_frame", "gi_yieldfrom"),
    types.CoroutineType: _frame_locals("cr_frame", "cr_await"),
    types.AsyncGeneratorType: _frame_locals("ag_frame", "ag_await"),
}
# Methods bound to an object (a C method of a list, ``obj.__repr__``):
# looked into through the object they are bound to.
_BOUND = frozenset({types.MethodType, types.BuiltinMethodType, types.MethodWrapperType})
# Holders looked into best effort (see _Walk.best_effort): a generator's
# locals, a context's variables and a bound method's object, which hold
# libraries' machinery (a tracing span, a database session, the application
# object a handler is a method of) far past the bounds beside any data. A
# callback is passed all the time; refusing every one bound to a large
# object would make enforce mode refuse ordinary code.
_LOOSE = frozenset({*_FRAMES, contextvars.Context, *_BOUND})
# type -> how to read what an instance holds (see _holder), decided once per type.
_HOLDERS: dict[type, Callable[[Any], Iterable[Any] | None]] = {}


def _holder(t: type) -> Callable[[Any], Iterable[Any] | None] | None:
    """How to read what an instance of ``t`` holds, for the lazy and
    wrapping types the walk looks into by what they hold, not by iterating
    them (which would consume a generator) or by their attributes (which C
    types keep out of sight); None for every other type. The reader returns
    None when an instance will not tell."""
    read = _FRAMES.get(t)
    if read is None:
        if t in _BOUND:
            read = _bound_self
        elif t is slice:
            read = _slice_bounds
        elif t is contextvars.Context:
            read = _context_values
        elif t is re.Pattern:
            read = _attribute("pattern")
        elif issubclass(t, memoryview):
            read = _memoryview_object
        elif issubclass(t, re.Match):
            read = _attribute("string")
        elif issubclass(t, UserString):
            read = _user_string
        elif issubclass(t, functools.partial):
            read = _partial_arguments
        elif (
            t.__module__ in _REDUCING_MODULES
            and hasattr(t, "__next__")
            and "__reduce__" in t.__dict__  # not itertools.pairwise, nor an awaitable's iterator
            and not issubclass(t, (str, bytes, bytearray))
        ):
            read = _reduced
    return read


def _attribute(name: str) -> Callable[[Any], Iterable[Any]]:
    def held(value: Any) -> Iterable[Any]:
        return (getattr(value, name),)

    return held


def _controls_its_state(t: type) -> bool:
    """Whether a class of the application's decides what reading its
    instances' ``__dict__`` gives (a ``__dict__`` property, a
    ``__getattribute__`` of its own): what they hold is then read as the
    garbage collector sees it (see _held_by)."""
    mro = t.__mro__
    if any(type(klass.__dict__.get("__getattribute__")) is types.FunctionType for klass in mro):
        return True
    for klass in mro:
        declared = klass.__dict__.get("__dict__")
        if declared is not None:
            # The instance dict's own descriptor (a C type may keep it as a member).
            return type(declared) not in (types.GetSetDescriptorType, types.MemberDescriptorType)
    return False


def _held_by(value: Any) -> list[Any]:
    """What an object whose class controls its ``__dict__`` holds: what it
    refers to (its attributes or its dict, its slots; classes left out), and
    beside them what the class says its ``__dict__`` is (a proxy's may be
    the wrapped object's)."""
    held = [item for item in gc.get_referents(value) if not isinstance(item, type)]
    claimed = getattr(value, "__dict__", None)
    if type(claimed) is dict:
        held.append(claimed)
    return held


def _inputs_behind(error: BaseException) -> list[Any]:
    """What an exception keeps of its inputs outside ``args`` and its
    ``__dict__``: pydantic's ValidationError holds each failing input (and
    quotes it in its message) behind ``errors()``."""
    pydantic_core = sys.modules.get("pydantic_core")
    validation_error = getattr(pydantic_core, "ValidationError", None)
    if validation_error is None or not isinstance(error, validation_error):
        return []
    try:
        return list(error.errors(include_url=False))
    except Exception:
        return []


def _slot_values(value: Any, t: type) -> list[Any]:
    found: list[Any] = []
    for name in _slots(t):
        try:
            found.append(object.__getattribute__(value, name))
        except AttributeError:
            continue
    return found


def _public_attributes(value: Any, t: type) -> list[Any]:
    """The public attribute values of a container of the application's own
    (a list subclass with a ``subject``): private ones are left out, as
    libraries keep their machinery there (an ORM's collection adapter)."""
    found: list[Any] = []
    state = getattr(value, "__dict__", None)
    if isinstance(state, dict):
        found.extend(item for name, item in state.items() if type(name) is str and not name.startswith("_"))
    for name in _slots(t):
        if not name.startswith("_"):
            try:
                found.append(object.__getattribute__(value, name))
            except AttributeError:
                continue
    return found


class _Walk:
    __slots__ = ("labels", "tenant", "budget", "seen", "purpose", "short", "strict")

    def __init__(self, purpose: str | None, strict: bool = True) -> None:
        self.labels: set[str] = set()
        self.tenant: str | None = None
        self.budget = MAX_ITEMS
        self.seen: set[int] = set()
        self.purpose = purpose
        self.short = False
        self.strict = strict

    def beyond(self) -> None:
        """Content not looked at: past the depth bound, or held by an object
        that would not hand it over. A strict walk stops there (the check
        fails closed); a best-effort one goes on with what lies beside it,
        so a labelled value next to a deep object is still read. Only the
        item budget ends a best-effort walk."""
        if self.strict:
            self.short = True

    def add(self, kind: Any, tenant: str | None = None) -> None:
        self.labels.update(kind.labels)
        if tenant is None:
            tenant = kind.tenant
        if tenant is not None:
            self.tenant = merge_tenants(self.tenant, tenant)

    def items_of(self, collection: Iterable[Any]) -> list[Any] | None:
        """The items of a collection of the application's own that may hold
        labels, or None past the bounds: plain text and numbers are free, as
        in a built-in container, but an endless ``__iter__`` is not."""
        found: list[Any] = []
        looked = 0
        for item in collection:
            looked += 1
            if looked > _ITERATION_LIMIT:
                return None
            if type(item) in NO_LABELS:
                continue
            found.append(item)
            if len(found) > self.budget:
                return None
        return found

    def best_effort(self, held: Iterable[Any], level: int) -> None:
        """Look into ``held`` (a generator's or coroutine's locals, the public
        attributes of a collection of the application's own) as far as a
        share of the budget goes. Built-in containers, labelled values and
        lazy values among them are looked into as anywhere else, bounds
        included; other objects best effort: a generator over an ORM query
        holds the ORM's machinery (sessions, compiled statements), far past
        the bounds, and no labelled value until it runs (running it is
        checked where its items go); a paginator's page holds its paginator."""
        if level <= 0:
            return
        rest: list[Any] = []
        for child in held:
            t = type(child)
            if t in NO_LABELS:
                continue
            if (
                t in _BUILTIN_CONTAINERS
                or getattr(t, "_pg_kind", None) is not None
                or getattr(t, "_pg_box", None) is not None
                or (_shape(t)[0] == _HOLDER and t not in _BOUND)
            ):
                self.visit(child, level - 1)
                if self.short:
                    return
            else:
                rest.append(child)
        if rest:
            self.glance(rest, level, FRAME_BUDGET)

    def glance(self, held: Iterable[Any], level: int, budget: int) -> None:
        """Look into ``held`` with at most ``budget`` values of the walk's
        budget and never past ``level``; what lies beyond is not looked at,
        and is not a reason to refuse."""
        inner = _Walk(self.purpose, strict=False)
        share = inner.budget = min(self.budget, budget)
        inner.seen = set()
        for child in held:
            if inner.budget <= 0:
                break
            inner.visit(child, level - 1)
            inner.short = False
        if inner.labels:
            self.labels.update(inner.labels)
        if inner.tenant is not None:
            self.tenant = merge_tenants(self.tenant, inner.tenant)
        self.budget -= share - max(inner.budget, 0)

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
        if t is LabelledProxy or issubclass(t, LabelledProxy):
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
                # A copy: looking into a value may add to the dict (a lazy
                # attribute computed on first read).
                children = tuple(state.values())
            else:
                return
        elif how == _MAPPING or how == _COLLECTION:
            if t in _BUILTIN_CONTAINERS:
                children = _pairs(value) if how == _MAPPING else value
            elif box is not None:
                # As stored: the labelled container's own methods would label each item.
                children = _plain_items(value)
            else:
                # Code of the application's own: iterated no further than
                # the bounds (an endless __iter__ is content not looked at),
                # a subclass of a built-in container through the built-in
                # type's iteration (see _NATIVE_ITEMS), with its public
                # attributes looked into beside its items. A lazy proxy
                # (Django's SimpleLazyObject) may claim to be a collection and
                # fail to iterate: then its attributes are what it holds, and
                # a collection that neither iterates nor has attributes holds
                # what could not be looked at.
                try:
                    items = self.items_of((_ITEMS.get(t) or _items_reader(t, how))(value))
                except Exception:
                    state = getattr(value, "__dict__", None)
                    held = list(state.values()) if isinstance(state, dict) else []
                    held.extend(_slot_values(value, t))
                    if not held:
                        self.beyond()
                        return
                    children = held
                else:
                    if items is None:
                        self.beyond()
                        return
                    children = items
                    self.best_effort(_public_attributes(value, t), level)
                    if self.short:
                        return
        elif how == _HOLDER:
            read = _HOLDERS.get(t) or _holder(t)
            held_values = read(value) if read is not None else None
            if held_values is None:
                # Holds something it would not hand over: not looked at.
                self.beyond()
                return
            if t in _BOUND:
                for owner in held_values:
                    self.glance(_at_hand(owner), min(level, BOUND_DEPTH), BOUND_BUDGET)
                return
            if t in _LOOSE:
                self.best_effort(held_values, level)
                return
            children = held_values
        elif how == _HIDING:
            children = _held_by(value)
        elif how == _EXCEPTION:
            # An exception's arguments are not in its __dict__; an
            # ExceptionGroup's exceptions are among its arguments.
            children = (
                *value.args,
                *getattr(value, "__dict__", {}).values(),
                value.__cause__,
                value.__context__,
                *_inputs_behind(value),
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
                    self.beyond()
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


def _dict_pairs(mapping: Any) -> Iterable[Any]:
    for key, item in dict.items(mapping):
        yield key
        yield item


def _iterated(collection: Any) -> Iterable[Any]:
    return collection  # type: ignore[no-any-return]


# A subclass of a built-in container keeps its items in the built-in
# storage: read there, its class's items() or __iter__ (which could mask or
# refuse what it holds) is not asked.
_NATIVE_ITEMS: tuple[tuple[type, Callable[[Any], Iterable[Any]]], ...] = (
    (dict, _dict_pairs),
    (list, list.__iter__),
    (tuple, tuple.__iter__),
    (set, set.__iter__),
    (frozenset, frozenset.__iter__),
    (deque, deque.__iter__),
)
# type -> how to read the items of a container of the application's own, decided once per type.
_ITEMS: dict[type, Callable[[Any], Iterable[Any]]] = {}


def _items_reader(t: type, how: int) -> Callable[[Any], Iterable[Any]]:
    found: Callable[[Any], Iterable[Any]] = _pairs if how == _MAPPING else _iterated
    for base, read in _NATIVE_ITEMS:
        if issubclass(t, base):
            found = read
            break
    return remember(_ITEMS, t, found)  # type: ignore[no-any-return]


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
    state = _Walk(purpose, strict)
    for value in values:
        state.visit(value, MAX_DEPTH)
        if state.short:
            break
    labels = frozenset(state.labels) if state.labels else EMPTY
    if state.short and strict:
        raise WalkLimit(labels, state.tenant)
    return labels, state.tenant
