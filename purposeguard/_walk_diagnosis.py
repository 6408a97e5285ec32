"""Where the deep walk gave up, for the refusal that says so.

A checkpoint whose walk raised (:class:`~purposeguard._walk.WalkLimit`, or
an error from the application's code while labels were read) refuses the
call; this module says where: which value, and the chain of types and
attribute names down to where the walk stopped, such as
``request: Request -> .scope: dict -> [...]: App -> .routes: list (more
than the 50000 values the walk looks into)``.

It is a second pass, run only after the walk failed, so the walk itself (the
hot path of every guarded call) keeps no path: :class:`_Diagnosis` is the
walk with a stack beside it, making the same reads in the same order within
the same bounds; naming a hop reads the holder's ``__dict__`` or slots again,
as the walk did, and a list's or tuple's items through the built-in type's
own iteration. It costs about as much as the walk, once per failure. The
chain holds type names and attribute names only, never a value: a mapping
entry is ``[...]`` (keys can be customer data, an e-mail address), a
sequence item ``[i]``, and an attribute ``.name`` only when its class
declares the name (in its ``__slots__``, its annotations or dataclass
fields, as a class attribute, or as a name its methods use, as
``self.name = ...`` in ``__init__``); any other attribute, such as one set
from a mapping's keys (``SimpleNamespace(**row)``), is ``.<attribute>``.
Nothing here raises: what it cannot tell, it leaves out.
"""

from __future__ import annotations

import functools
import types
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ._labelled import LabelledProxy
from ._state import remember
from ._walk import (
    _BOUND,
    _COLLECTION,
    _EXCEPTION,
    _HIDING,
    _ITERATION_LIMIT,
    _MAPPING,
    _OBJECT,
    MAX_DEPTH,
    MAX_ITEMS,
    NO_LABELS,
    _shape,
    _slots,
    _Walk,
)

# Arrows in a chain: a longer one keeps its first value (which argument) and
# its last hops (where the walk stopped: the useful part). The walk's own
# depth bound makes chains of at most this many.
MAX_HOPS = MAX_DEPTH
# Attribute and type names are code, but a generated class or a long name
# would make the refusal unreadable.
MAX_NAME = 64
# Past the item bound, or an __iter__ that went on past what the walk iterates.
_TOO_MANY = f"more than the {MAX_ITEMS} values the walk looks into"


class _Diagnosis(_Walk):
    """The walk, with the stack of values it is inside of: when it stops,
    ``found`` holds that stack and why it stopped."""

    __slots__ = ("path", "found", "why")

    def __init__(self, purpose: str | None) -> None:
        super().__init__(purpose)
        self.path: list[Any] = []
        self.found: tuple[list[Any], str] | None = None
        # Why the last collection's items could not be read (see items_of).
        self.why = ""

    def items_of(self, collection: Iterable[Any]) -> list[Any] | None:
        self.why = ""
        try:
            found = _Walk.items_of(self, collection)
        except Exception as error:
            # The walk goes on to the collection's attributes; if it has none,
            # this is why it stops. The error's message is never read: it
            # may quote the collection's content.
            self.why = f"could not be iterated: {type_name(type(error))}"
            raise
        if found is None:
            self.why = _TOO_MANY
        return found

    def visit(self, value: Any, level: int) -> None:
        path = self.path
        path.append(value)
        try:
            _Walk.visit(self, value, level)
        except Exception as error:
            if self.found is None:
                self.found = (list(path), f"raised {type_name(type(error))}")
            path.pop()
            raise
        if self.short:
            # The innermost value the walk stopped in is the first to see it.
            if self.found is None:
                self.found = (list(path), self._stopped(value, level))
        else:
            self.why = ""
        path.pop()

    def _stopped(self, value: Any, level: int) -> str:
        if self.budget < 0:
            return _TOO_MANY
        t = type(value)
        if issubclass(t, LabelledProxy):
            t = type(value.__wrapped__)
        how = _shape(t)[0]
        if (how == _MAPPING or how == _COLLECTION) and self.why:
            return self.why
        if level <= 0:
            return f"nested deeper than {MAX_DEPTH} levels"
        if how == _MAPPING or how == _COLLECTION:
            return "could not be iterated"
        return "holds values it would not hand over"


def diagnose(values: Sequence[Any], purpose: str | None, name_of: Callable[[int], str]) -> str | None:
    """Where the walk over ``values`` (as ``labels_in_values`` walks them)
    stops: ``name: Type -> .attribute: Type -> [...]: Type (why)``, the
    first hop named by ``name_of(index of the value)``. None when this pass
    does not stop (what stopped the walk did not happen again); never raises.
    """
    try:
        state = _Diagnosis(purpose)
        for index, value in enumerate(values):
            t = type(value)
            if t in NO_LABELS or getattr(t, "_pg_kind", None) is not None:
                continue
            try:
                state.visit(value, MAX_DEPTH)
            except Exception:
                pass  # recorded in state.found
            if state.found is not None:
                path, why = state.found
                return f"{_chain(_argument(name_of, index), path)} ({why})"
            if state.short:
                return None
        return None
    except Exception:
        return None


def _argument(name_of: Callable[[int], str], index: int) -> str:
    try:
        return name_of(index)
    except Exception:
        return f"argument {index + 1}"


def _chain(first: str, path: list[Any]) -> str:
    hops = [f"{first}: {type_name(type(path[0]))}"]
    for parent, child in zip(path, path[1:], strict=False):
        hops.append(f"{_edge(parent, child)}: {type_name(type(child))}")
    if len(hops) > MAX_HOPS + 1:
        hops = [hops[0], "...", *hops[len(hops) - MAX_HOPS :]]
    return " -> ".join(hops)


def type_name(t: type) -> str:
    try:
        name = type.__dict__["__name__"].__get__(t)
    except Exception:
        return "<type>"
    if not isinstance(name, str) or not name.isprintable():
        return "<type>"
    return capped(name)


def capped(name: str) -> str:
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 3] + "..."


def _edge(parent: Any, child: Any) -> str:
    """How the walk got from ``parent`` to ``child``, in the words of code:
    an attribute's name, a sequence's index, ``[...]`` for a mapping entry."""
    try:
        t = type(parent)
        if issubclass(t, LabelledProxy):
            parent = parent.__wrapped__
            t = type(parent)
        how = _shape(t)[0]
        if how == _MAPPING or how == _COLLECTION:
            index = _index(parent, t, child)
            if index is not None:
                return f"[{index}]"
            # A collection of the application's own: its public attributes are walked too.
            name = _attribute(parent, t, child)
            return f".{name}" if name is not None else "[...]"
        if how == _OBJECT or how == _EXCEPTION or how == _HIDING:
            name = _attribute(parent, t, child)
            if name is not None:
                return f".{name}"
            return "(arguments)" if how == _EXCEPTION else ".<attribute>"
        if t in _BOUND:
            return ".__self__"
        # A generator, an iterator, a partial: what it holds, unnamed.
        return "(held)"
    except Exception:
        return "(inside)"


def _index(parent: Any, t: type, child: Any) -> int | None:
    """The index of ``child`` in a list, tuple or deque, read through the
    built-in type's own iteration: a subclass's ``__iter__`` is not run again."""
    for base in (list, tuple, deque):
        if issubclass(t, base):
            for index, item in enumerate(base.__iter__(parent)):
                if item is child:
                    return index
                if index >= _ITERATION_LIMIT:
                    break
            return None
    return None


def _attribute(parent: Any, t: type, child: Any) -> str | None:
    """The name of the attribute of ``parent`` that holds ``child``, read
    as the walk reads attributes; ``<attribute>`` for a name its class does
    not declare (an object filled from a mapping's keys: the name is data)."""
    state = getattr(parent, "__dict__", None)
    if isinstance(state, dict):
        for name, item in tuple(state.items()):
            if item is child:
                return _attribute_name(name, t)
    for name in _slots(t):
        try:
            if object.__getattribute__(parent, name) is child:
                return _attribute_name(name, t)
        except AttributeError:
            continue
    return None


def _attribute_name(name: object, t: type) -> str:
    if type(name) is str and name.isascii() and name.isidentifier() and name in _declared(t):
        return capped(name)
    return "<attribute>"


# type -> the attribute names its code declares (see _declared), bounded.
_DECLARED: dict[type, frozenset[str]] = {}


def _declared(t: type) -> frozenset[str]:
    """The attribute names ``t``'s code declares: its slots, annotations,
    dataclass and attrs fields, class attributes, and the names its methods
    use (``self.cache = ...`` in ``__init__``). A name only data supplied
    (``setattr(obj, key, ...)``, ``SimpleNamespace(**row)``) is not among them."""
    found = _DECLARED.get(t)
    if found is None:
        names: set[str] = set(_slots(t))
        for klass in t.__mro__:
            namespace = klass.__dict__
            names.update(name for name in namespace if type(name) is str)
            annotations = namespace.get("__annotations__")
            if isinstance(annotations, dict):
                names.update(name for name in annotations if type(name) is str)
            for member in tuple(namespace.values()):
                for code in _code_of(member):
                    names.update(_code_names(code))
        for field in getattr(t, "__attrs_attrs__", ()) or ():
            name = getattr(field, "name", None)
            if type(name) is str:
                names.add(name)
        found = remember(_DECLARED, t, frozenset(names))
    return found


def _code_of(member: object) -> Iterator[types.CodeType]:
    """The code of a method, static or class method, or property in a class's
    namespace; nothing for other members (their attributes are not read)."""
    if type(member) is staticmethod or type(member) is classmethod:
        member = member.__func__
    elif type(member) is functools.cached_property:
        member = member.func
    parts = (member.fget, member.fset, member.fdel) if type(member) is property else (member,)
    for part in parts:
        # A decorated method (functools.wraps): the function it wraps names the attributes.
        for _ in range(4):
            if type(part) is not types.FunctionType:
                break
            yield part.__code__
            part = part.__dict__.get("__wrapped__")


def _code_names(code: types.CodeType) -> Iterator[str]:
    """The names ``code`` and the functions, lambdas and comprehensions inside it use."""
    pending = [code]
    for _ in range(256):
        if not pending:
            return
        current = pending.pop()
        yield from current.co_names
        pending.extend(const for const in current.co_consts if isinstance(const, types.CodeType))
