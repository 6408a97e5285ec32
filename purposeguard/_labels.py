"""Labels: which data categories a value carries, and how they follow it.

``str`` and ``bytes`` are labelled by subclassing. ``str`` cannot have a
non-empty ``__slots__``, so the labels live on the *class*: one small
subclass per label set (cached), which makes building a labelled string a
plain ``str.__new__`` and reading its labels a class attribute lookup, with
no per-instance ``__dict__``. Methods of the subclass return labelled results
carrying the union of their operands' labels.

Other objects: an object that supports weak references keeps its identity
and its full speed; its labels are kept in a side table keyed by ``id`` and
dropped when it dies. Objects that cannot be weakly referenced (``list``,
``dict``, ``int`` ...) are wrapped in a ``wrapt.ObjectProxy``. Measured here:
attribute access through the proxy costs about 1-2 µs against 50 ns, which is
why it is only the fallback.
"""

from __future__ import annotations

import copyreg
import dataclasses
import functools
import inspect
import itertools
import linecache
import re
import sys
import types
import typing
import weakref
from collections import deque
from collections.abc import Callable, Collection, ItemsView, Iterable, KeysView, Mapping, ValuesView
from itertools import repeat
from typing import Any, NoReturn, SupportsIndex, TypeVar

import wrapt

from ._context import ACTIVE_GUARD, FLAGS, PURPOSE, ZONE
from ._context import MIXED_TENANT as MIXED_TENANT
from ._delegation import async_generator_function, generator_function
from ._errors import PurposeGuardError, UnknownKeyError
from ._shortcut import forget_classes
from ._state import STATE, remember, trim_types
from ._taxonomy import Taxonomy

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
EMPTY: frozenset[str] = frozenset()


# The registries and caches below belong to the process state; these names
# are bound to its containers, which a reset clears in place.
_STATE = STATE.labels
_STATE.default_taxonomy = Taxonomy.builtin()
if _STATE.taxonomy is None:
    _STATE.taxonomy = _STATE.default_taxonomy


class _Keys:
    """The taxonomy that label keys are validated against: the process-wide
    policy's, or, while a guard is activated for one context, that guard's."""

    __slots__ = ()

    @property
    def taxonomy(self) -> Taxonomy:
        return _STATE.taxonomy  # type: ignore[no-any-return]

    def current(self) -> Taxonomy:
        if FLAGS.activations:
            active = ACTIVE_GUARD.get()
            if active is not None:
                return active.policy.taxonomy  # type: ignore[no-any-return]
        return _STATE.taxonomy  # type: ignore[no-any-return]


KEYS = _Keys()


def set_taxonomy(taxonomy: Taxonomy) -> None:
    if taxonomy is not _STATE.taxonomy:
        _STATE.taxonomy = taxonomy
        _KINDS_NO_TENANT.clear()
        _STR_FAST.clear()


# -- str and bytes -------------------------------------------------------------


class _Kind:
    """A label set, and with ``tenant`` whose data it is.

    The kind of a label set alone (``tenant`` None) is made once per label
    set and owns its labelled classes: with and without a tenant slot, for
    str, bytes, numbers and containers. Tenants live on the labelled
    instances, never in a class, so a million tenants make no class and
    evict nothing. A kind with a tenant is a light pair made as needed (for
    side-table objects and proxies), pointing at its label set's kind
    (``base``); it owns no class."""

    __slots__ = (
        "labels",
        "tenant",
        "base",
        "evicted",
        "str_cls",
        "bytes_cls",
        "tstr_cls",
        "tbytes_cls",
        "_numbers",
    )

    def __init__(self, labels: frozenset[str], tenant: str | None = None, base: _Kind | None = None) -> None:
        self.labels = labels
        self.tenant = tenant
        # Set when the label set is forgotten (LABEL_SETS_LIMIT): a live
        # value of it still works, but no shortcut or memo learns it again.
        self.evicted = False
        if base is not None:
            self.base = base
            return
        self.base = self
        self.str_cls: type[LabelledStr] = self._subclass(LabelledStr, "_pg_kind")
        self.tstr_cls: type[LabelledStr] = self._subclass(_TenantStr, "_pg_kind")
        self.bytes_cls: type[LabelledBytes] = self._subclass(LabelledBytes, "_pg_kind")
        self.tbytes_cls: type[LabelledBytes] = self._subclass(_TenantBytes, "_pg_kind")
        self._numbers: dict[tuple[type, bool], type] = {}

    def _subclass(self, parent: type, attribute: str) -> Any:
        # Every one is named as the public class it stands for.
        name = parent.__name__.lstrip("_").replace("Tenant", "Labelled")
        namespace: dict[str, Any] = {
            "__slots__": (),
            attribute: self,
            "__module__": __name__,
            "__qualname__": name,
        }
        if attribute == "_pg_kind":
            namespace["_pg_labels"] = self.labels
        return type(name, (parent,), namespace)

    def number_cls(self, base: type, tenant: bool = False) -> type:
        """The labelled subclass of ``int`` or ``float`` (with a tenant
        attribute when ``tenant``), built on first use."""
        found = self._numbers.get((base, tenant))
        if found is None:
            parent: type = LabelledInt if base is int else LabelledFloat
            found = self._subclass(_tenant_parent(parent) if tenant else parent, "_pg_kind")
            self._numbers[base, tenant] = found
        return found

    def container_cls(self, base: type, tenant: bool = False) -> type:
        """The labelled subclass of ``dict``, ``list``, ``tuple``, ``set`` or
        ``frozenset``, built on first use.

        It carries the kind as ``_pg_box``, not ``_pg_kind``: ``_pg_kind`` tells
        the hot path a value's labels are all on its class, while a
        container's items may carry labels of their own."""
        found = self._numbers.get((base, tenant))
        if found is None:
            parent = _CONTAINER_CLASSES[base]
            found = self._subclass(_tenant_parent(parent) if tenant else parent, "_pg_box")
            self._numbers[base, tenant] = found
        return found


# Parents of the labelled classes whose instances carry a tenant: str has a
# slot for it; bytes, numbers and containers an instance __dict__ (their C
# layout admits no slot).
_TENANT_PARENTS: dict[type, type] = {}


class _UnsetContainerTenant:
    """The tenant of a tenant-carrying container whose own was never set
    (``type(d)(...)``, as ``dataclasses.asdict`` rebuilds one): the tenant
    its items name, and none (:data:`MIXED_TENANT`) when they name nobody,
    never the zone's. Read only while the instance holds no tenant."""

    def __get__(self, instance: Any, owner: type | None = None) -> str:
        if instance is None:
            return MIXED_TENANT
        found = tenant_of_values(_plain_items(instance))
        return MIXED_TENANT if found is None else found


def _tenant_parent(parent: type) -> type:
    found = _TENANT_PARENTS.get(parent)
    if found is None:
        # An instance made by calling its class (``type(x)(...)``) was given
        # no tenant: a number belongs to none, so no tenant's consent covers
        # it; a container to whoever its items name (none if they name nobody).
        unset: Any = _UnsetContainerTenant() if issubclass(parent, _LabelledContainer) else MIXED_TENANT
        found = _TENANT_PARENTS[parent] = type(
            parent.__name__,
            (parent,),
            {"__module__": __name__, "__qualname__": parent.__name__, "_pg_tenant": unset},
        )
    return found


# label set -> kind: every labelled class made.
_CLASSES: dict[frozenset[str], _Kind] = _STATE.classes
_CLASSES_LOCK = _STATE.classes_lock
# categories as given -> kind, for keys already validated.
_KINDS_NO_TENANT: dict[tuple[str, ...], _Kind] = _STATE.kinds_no_tenant
# categories as given -> labelled str class: label()'s first and cheapest test.
_STR_FAST: dict[tuple[str, ...], type[LabelledStr]] = _STATE.str_fast
_UNIONS: dict[tuple[_Kind, _Kind], _Kind] = _STATE.unions


# Label sets are bounded by the taxonomy (tenants no longer make classes),
# but a program may combine categories in many ways: past this many label
# sets the oldest eighth is forgotten. Live values keep their classes; a
# forgotten class is freed with its last value.
LABEL_SETS_LIMIT = 4096


def _kind_for(labels: frozenset[str], tenant: str | None = None) -> _Kind:
    kind = _CLASSES.get(labels)
    if kind is None:
        with _CLASSES_LOCK:
            kind = _CLASSES.get(labels)
            if kind is None:
                if len(_CLASSES) >= LABEL_SETS_LIMIT:
                    _forget_oldest_label_sets()
                kind = _Kind(labels)
                _CLASSES[labels] = kind
    return kind if tenant is None else _Kind(labels, tenant, kind)


def _with_tenant(kind: _Kind, tenant: str | None) -> _Kind:
    # ``kind`` is a label set's own kind (no tenant).
    return kind if tenant is None else _Kind(kind.labels, tenant, kind)


def _forget_oldest_label_sets() -> None:
    # Partial and local: only the forgotten kinds leave the caches and the
    # wrappers' shortcut sets. Nothing is invalidated, since the policy did
    # not change: the classes of other label sets stay allowed, and zones
    # keep what they learnt. (Dicts keep insertion order: the first are the oldest.)
    keys = list(itertools.islice(_CLASSES, max(1, len(_CLASSES) // 8)))
    gone: set[_Kind] = {_CLASSES.pop(k) for k in keys}
    for kind_key in [k for k, kind in _KINDS_NO_TENANT.items() if kind in gone]:
        del _KINDS_NO_TENANT[kind_key]
        _STR_FAST.pop(kind_key, None)
    for union_key in [k for k, kind in _UNIONS.items() if kind in gone or k[0] in gone or k[1] in gone]:
        del _UNIONS[union_key]
    for allowed in SOURCE.allowed.values():
        allowed.difference_update(gone)
    classes: set[type] = set()
    for kind in gone:
        kind.evicted = True
        classes.update(
            (kind.str_cls, kind.tstr_cls, kind.bytes_cls, kind.tbytes_cls, *kind._numbers.values())
        )
    forget_classes(classes)


def merge_tenants(a: str | None, b: str | None) -> str | None:
    if a == b or b is None:
        return a
    if a is None:
        return b
    return MIXED_TENANT


def _union(a: _Kind, b: _Kind) -> _Kind:
    """The kind of both label sets (kinds without a tenant)."""
    if a is b:
        return a
    kind = _UNIONS.get((a, b))
    if kind is None:
        kind = _kind_for(a.labels | b.labels)
        remember(_UNIONS, (a, b), kind, 4 * LABEL_SETS_LIMIT)
    return kind


def _join(a: _Kind, b: _Kind) -> _Kind:
    """:func:`_union` for kinds that may carry a tenant (tenants merged)."""
    if a is b:
        return a
    return _with_tenant(_union(a.base, b.base), merge_tenants(a.tenant, b.tenant))


_getattr = getattr


def _tenant_on(value: Any) -> str | None:
    """The tenant a labelled str, bytes, number or container carries."""
    return _getattr(value, "_pg_tenant", None)


def _str_with(kind: _Kind, tenant: str | None, text: str) -> Any:
    if tenant is None:
        return kind.str_cls(text)
    made = kind.tstr_cls(text)
    made._pg_tenant = tenant
    return made


def _bytes_with(kind: _Kind, tenant: str | None, data: bytes) -> Any:
    if tenant is None:
        return _bytes_new(kind.bytes_cls, data)
    made = _bytes_new(kind.tbytes_cls, data)
    made._pg_tenant = tenant
    return made


def _number_with(kind: _Kind, tenant: str | None, base: type, number: Any) -> Any:
    made = kind.number_cls(base, tenant is not None)(number)
    if tenant is not None:
        made._pg_tenant = tenant
    return made


def _container_with(kind: _Kind, tenant: str | None, base: type, items: Any) -> Any:
    made = kind.container_cls(base, tenant is not None)(items)
    if tenant is not None:
        made._pg_tenant = tenant
    return made


_str_new = str.__new__
_str_add = str.__add__
_str_replace = str.replace
_str_join = str.join
_bytes_new = bytes.__new__
_FULL = slice(None)


def _plain_bytes(value: Any) -> bytes:
    # bytes(x) would call a labelled value's __bytes__ (which keeps the label).
    return bytes.__getitem__(bytes(value) if isinstance(value, bytearray) else value, _FULL)


def _kind_of(value: object) -> _Kind | None:
    """The kind of a labelled str, bytes or number, with its tenant."""
    kind = getattr(type(value), "_pg_kind", None)
    if kind is None:
        return None
    return _with_tenant(kind, _tenant_on(value))


def _merged(
    kind: _Kind, tenant: str | None, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> tuple[_Kind, str | None]:
    for arg in args:
        if type(arg) in NO_LABELS:
            continue
        other = getattr(type(arg), "_pg_kind", None)
        if other is not None:
            kind = _union(kind, other)
            tenant = merge_tenants(tenant, _tenant_on(arg))
        elif type(arg) in (list, tuple):
            for item in arg:
                other = getattr(type(item), "_pg_kind", None)
                if other is not None:
                    kind = _union(kind, other)
                    tenant = merge_tenants(tenant, _tenant_on(item))
    for arg in kwargs.values():
        other = getattr(type(arg), "_pg_kind", None)
        if other is not None:
            kind = _union(kind, other)
            tenant = merge_tenants(tenant, _tenant_on(arg))
    return kind, tenant


def _relabel(result: Any, kind: _Kind, tenant: str | None) -> Any:
    t = type(result)
    own = getattr(t, "_pg_kind", None) if t not in NO_LABELS else None
    if own is not None:
        # The result is an operand itself ("%s" % labelled): it keeps its labels
        # and gains the receiver's.
        kind = _union(kind, own)
        tenant = merge_tenants(tenant, _tenant_on(result))
        result = str.__str__(result) if isinstance(result, str) else _plain_bytes(result)
        t = type(result)
    if t is str:
        return _str_with(kind, tenant, result)
    if t is bytes:
        return _bytes_with(kind, tenant, result)
    if t is list:
        return [_relabel(item, kind, tenant) for item in result]
    if t is tuple:
        return tuple(_relabel(item, kind, tenant) for item in result)
    return result


# Methods are generated from small templates rather than written through one
# generic *args/**kwargs wrapper: each labelled class *is* the class of its
# label set, so a result is relabelled by calling ``type(self)(result)`` (the
# cheapest way to build a str subclass instance, measured here: ~0.16 µs
# against ~0.35 µs for ``str.__new__(cls, result)``), with the method's own
# signature so no argument tuple is built, and no argument scan.
_SAME = """
def {name}(self{params}):
    return type(self)(_base(self{args}))
"""
_SAME_OR_NOT_IMPLEMENTED = """
def {name}(self, other):
    result = _base(self, other)
    if result is NotImplemented:
        return result
    return type(self)(result)
"""
_PIECES = """
def {name}(self{params}):
    cls = type(self)
    return [cls(piece) for piece in _base(self{args})]
"""
_COMBINING = """
def {name}(self, *args, **kwargs):
    result = _base(self, *args, **kwargs)
    if result is NotImplemented:
        return result
    return _relabel(result, *_merged(type(self)._pg_kind, _getattr(self, "_pg_tenant", None), args, kwargs))
"""
_TO_STR = """
def {name}(self{params}):
    return _str_with(type(self)._pg_kind, _getattr(self, "_pg_tenant", None), _base(self{args}))
"""
# The same for classes whose instances carry a tenant: results carry it on.
_TENANT_SAME = """
def {name}(self{params}):
    made = type(self)(_base(self{args}))
    made._pg_tenant = _getattr(self, "_pg_tenant", None)
    return made
"""
_TENANT_SAME_OR_NOT_IMPLEMENTED = """
def {name}(self, other):
    result = _base(self, other)
    if result is NotImplemented:
        return result
    made = type(self)(result)
    made._pg_tenant = _getattr(self, "_pg_tenant", None)
    return made
"""
_TENANT_PIECES = """
def {name}(self{params}):
    cls = type(self)
    tenant = _getattr(self, "_pg_tenant", None)
    pieces = [cls(piece) for piece in _base(self{args})]
    for piece in pieces:
        piece._pg_tenant = tenant
    return pieces
"""

# name -> (parameters after self, arguments passed on); defaults as the base type's.
_SIGNATURES: dict[str, tuple[str, str]] = {
    "upper": ("", ""),
    "lower": ("", ""),
    "casefold": ("", ""),
    "swapcase": ("", ""),
    "title": ("", ""),
    "capitalize": ("", ""),
    "strip": (", chars=None", ", chars"),
    "lstrip": (", chars=None", ", chars"),
    "rstrip": (", chars=None", ", chars"),
    "center": (", width, fillchar=_SPACE", ", width, fillchar"),
    "ljust": (", width, fillchar=_SPACE", ", width, fillchar"),
    "rjust": (", width, fillchar=_SPACE", ", width, fillchar"),
    "zfill": (", width", ", width"),
    "removeprefix": (", prefix", ", prefix"),
    "removesuffix": (", suffix", ", suffix"),
    "translate": (", table", ", table"),
    "expandtabs": (", tabsize=8", ", tabsize"),
    "__getitem__": (", key", ", key"),
    "split": (", sep=None, maxsplit=-1", ", sep, maxsplit"),
    "rsplit": (", sep=None, maxsplit=-1", ", sep, maxsplit"),
    "splitlines": (", keepends=False", ", keepends"),
}
# bytes methods whose parameters differ from str's.
_BYTES_SIGNATURES: dict[str, tuple[str, str]] = {
    "translate": (", table, delete=_EMPTY_BYTES", ", table, delete"),
    "hex": (", *args, **kwargs", ", *args, **kwargs"),
}


def _register_source(filename: str, source: str) -> None:
    # Generated code you can read: tracebacks and debuggers find the source
    # under this name (an mtime of None keeps linecache.checkcache off it).
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)


def _install(cls: type, base: type, template: str, names: Iterable[str]) -> None:
    for name in names:
        signatures = _BYTES_SIGNATURES if base is bytes and name in _BYTES_SIGNATURES else _SIGNATURES
        params, args = signatures.get(name, ("", ""))
        namespace: dict[str, Any] = {
            "_base": getattr(base, name),
            "_relabel": _relabel,
            "_merged": _merged,
            "_getattr": getattr,
            "_str_with": _str_with,
            "_SPACE": " " if base is str else b" ",
            "_EMPTY_BYTES": b"",
        }
        source = template.format(name=name, params=params, args=args)
        filename = f"<purposeguard generated {cls.__name__}.{name}>"
        _register_source(filename, source)
        exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - fixed templates above
        method = namespace[name]
        method.__doc__ = getattr(base, name).__doc__
        method.__qualname__ = f"{cls.__name__}.{name}"
        setattr(cls, name, method)


_CASE_AND_PADDING = (
    "upper",
    "lower",
    "strip",
    "lstrip",
    "rstrip",
    "title",
    "capitalize",
    "swapcase",
    "center",
    "ljust",
    "rjust",
    "zfill",
    "removeprefix",
    "removesuffix",
    "translate",
    "expandtabs",
)


class LabelledStr(str):
    """A ``str`` that carries data categories; see :func:`label`."""

    __slots__ = ()
    _pg_labels: frozenset[str] = EMPTY
    _pg_tenant: str | None = None
    _pg_kind: _Kind

    def __add__(self, other: object) -> Any:
        result = _str_add(self, other)  # type: ignore[arg-type]
        if result is NotImplemented:
            return result
        if type(other) is str:
            return type(self)(result)
        other_kind = getattr(type(other), "_pg_kind", None)
        if other_kind is None:
            return type(self)(result)
        return _str_with(_union(type(self)._pg_kind, other_kind), _tenant_on(other), result)

    def replace(self, old: str, new: str, count: SupportsIndex = -1) -> Any:
        result = _str_replace(self, old, new, count)
        if type(new) is str:
            # Nothing replaced: the value itself, as str.replace does, instead
            # of a second copy (a megabyte string copies in about 1 ms).
            return self if result == self else type(self)(result)
        # getattr() on a type that lacks the attribute raises and clears an
        # AttributeError inside: test the common exact-str case first.
        other = getattr(type(new), "_pg_kind", None)
        if other is None:
            return type(self)(result)
        return _str_with(_union(type(self)._pg_kind, other), _tenant_on(new), result)

    def join(self, iterable: Iterable[str]) -> Any:
        items = iterable if type(iterable) in (list, tuple) else list(iterable)
        kind = type(self)._pg_kind
        tenant = _tenant_on(self)
        for item in items:
            if type(item) is not str:
                other = getattr(type(item), "_pg_kind", None)
                if other is not None:
                    kind = _union(kind, other)
                    tenant = merge_tenants(tenant, _tenant_on(item))
        return _str_with(kind, tenant, _str_join(self, items))

    def __radd__(self, other: object) -> Any:
        # Python tries this before str.__add__ of the left operand because this
        # class subclasses str: "plain" + labelled keeps the label.
        if not isinstance(other, str):
            return NotImplemented
        return type(self)(_str_add(other, self))

    def __rmod__(self, template: object) -> Any:
        if not isinstance(template, str):
            return NotImplemented
        kind = type(self)._pg_kind
        tenant = _tenant_on(self)
        other = getattr(type(template), "_pg_kind", None)
        if other is not None:
            kind = _union(kind, other)
            tenant = merge_tenants(tenant, _tenant_on(template))
        # ``self`` as the operand: formatting reads it through __str__ (itself),
        # so the text is copied once, not first into a plain str.
        return _str_with(kind, tenant, str.__mod__(template, self))

    def __str__(self) -> str:
        return self

    def __format__(self, spec: str) -> str:
        if not spec:
            return self
        return _str_with(type(self)._pg_kind, _tenant_on(self), str.__format__(self, spec))  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return _str_with(type(self)._pg_kind, _tenant_on(self), str.__repr__(self))  # type: ignore[no-any-return]

    def __iter__(self) -> Any:
        return map(type(self), str.__iter__(self))

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return _bytes_with(type(self)._pg_kind, _tenant_on(self), str.encode(self, encoding, errors))  # type: ignore[no-any-return]

    def __reduce_ex__(self, protocol: Any) -> Any:
        kind = type(self)._pg_kind
        return (_rebuild, (str.__str__(self), tuple(sorted(kind.labels)), _tenant_on(self)))

    def __getnewargs__(self) -> Any:
        return (str.__str__(self),)


class _TenantStr(LabelledStr):
    """A labelled ``str`` that also says whose data it is: the tenant is a
    slot of the instance (one pointer), so tenants make no classes."""

    __slots__ = ("_pg_tenant",)

    def __getattr__(self, name: str) -> Any:
        # Only reached when the slot was never set (``type(x)(...)`` builds
        # one without a tenant): whose data it is is unknown, so it belongs
        # to no tenant, never to the zone's.
        if name == "_pg_tenant":
            return MIXED_TENANT
        raise AttributeError(name)

    def __add__(self, other: object) -> Any:
        result = _str_add(self, other)  # type: ignore[arg-type]
        if result is NotImplemented:
            return result
        kind = type(self)._pg_kind
        tenant = _tenant_on(self)
        if type(other) is not str:
            other_kind = getattr(type(other), "_pg_kind", None)
            if other_kind is not None:
                kind = _union(kind, other_kind)
                tenant = merge_tenants(tenant, _tenant_on(other))
        return _str_with(kind, tenant, result)

    def replace(self, old: str, new: str, count: SupportsIndex = -1) -> Any:
        result = _str_replace(self, old, new, count)
        if type(new) is str and result == self:
            return self  # nothing replaced (see LabelledStr.replace)
        kind = type(self)._pg_kind
        tenant = _tenant_on(self)
        if type(new) is not str:
            other = getattr(type(new), "_pg_kind", None)
            if other is not None:
                kind = _union(kind, other)
                tenant = merge_tenants(tenant, _tenant_on(new))
        return _str_with(kind, tenant, result)

    def __radd__(self, other: object) -> Any:
        if not isinstance(other, str):
            return NotImplemented
        return _str_with(type(self)._pg_kind, _tenant_on(self), _str_add(other, self))

    def __iter__(self) -> Any:
        kind = type(self)._pg_kind
        tenant = _tenant_on(self)
        return (_str_with(kind, tenant, c) for c in str.__iter__(self))


class LabelledBytes(bytes):
    """A ``bytes`` that carries data categories; see :func:`label`."""

    __slots__ = ()
    _pg_labels: frozenset[str] = EMPTY
    _pg_tenant: str | None = None
    _pg_kind: _Kind

    def __add__(self, other: Any) -> Any:
        try:
            result = bytes.__add__(self, other)
        except TypeError:
            return NotImplemented
        kind = type(self)._pg_kind
        tenant = _tenant_on(self)
        other_kind = getattr(type(other), "_pg_kind", None)
        if other_kind is not None:
            kind = _union(kind, other_kind)
            tenant = merge_tenants(tenant, _tenant_on(other))
        return _bytes_with(kind, tenant, result)

    def __radd__(self, other: Any) -> Any:
        # A bytearray stays a (mutable, unlabelled) bytearray: the zone's job.
        if not isinstance(other, bytes):
            return NotImplemented
        return _bytes_with(type(self)._pg_kind, _tenant_on(self), _plain_bytes(other) + _plain_bytes(self))

    def __rmod__(self, template: Any) -> Any:
        if not isinstance(template, bytes):
            return NotImplemented
        return _bytes_with(type(self)._pg_kind, _tenant_on(self), bytes.__mod__(template, _plain_bytes(self)))

    def __getitem__(self, key: Any) -> Any:
        result = bytes.__getitem__(self, key)
        # An index gives an int, which cannot carry labels: the zone's job.
        return _bytes_with(type(self)._pg_kind, _tenant_on(self), result) if type(result) is bytes else result

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return _str_with(type(self)._pg_kind, _tenant_on(self), bytes.decode(self, encoding, errors))  # type: ignore[no-any-return]

    def __bytes__(self) -> bytes:
        return self

    def __iter__(self) -> Any:
        # Items of bytes are ints, which cannot carry labels: the zone's job.
        return bytes.__iter__(self)

    def __reduce_ex__(self, protocol: Any) -> Any:
        kind = type(self)._pg_kind
        return (_rebuild, (_plain_bytes(self), tuple(sorted(kind.labels)), _tenant_on(self)))


class _TenantBytes(LabelledBytes):
    """A labelled ``bytes`` that also says whose data it is (an instance
    attribute: bytes admits no slot)."""

    # One made by calling its class (``type(x)(...)``) has no tenant of its
    # own: it belongs to none, never to the zone's.
    _pg_tenant: str | None = MIXED_TENANT


_install(LabelledStr, str, _SAME, _CASE_AND_PADDING + ("casefold", "__getitem__"))
_install(LabelledStr, str, _SAME_OR_NOT_IMPLEMENTED, ("__mul__", "__rmul__"))
_install(LabelledStr, str, _PIECES, ("split", "rsplit", "splitlines"))
_install(LabelledStr, str, _COMBINING, ("format", "format_map", "partition", "rpartition", "__mod__"))
_install(_TenantStr, str, _TENANT_SAME, _CASE_AND_PADDING + ("casefold", "__getitem__"))
_install(_TenantStr, str, _TENANT_SAME_OR_NOT_IMPLEMENTED, ("__mul__", "__rmul__"))
_install(_TenantStr, str, _TENANT_PIECES, ("split", "rsplit", "splitlines"))
_install(LabelledBytes, bytes, _SAME, _CASE_AND_PADDING)
_install(LabelledBytes, bytes, _TO_STR, ("hex",))
_install(LabelledBytes, bytes, _SAME_OR_NOT_IMPLEMENTED, ("__mul__", "__rmul__"))
_install(LabelledBytes, bytes, _PIECES, ("split", "rsplit", "splitlines"))
_install(LabelledBytes, bytes, _COMBINING, ("partition", "rpartition", "__mod__", "replace", "join"))
_install(_TenantBytes, bytes, _TENANT_SAME, _CASE_AND_PADDING)
_install(_TenantBytes, bytes, _TENANT_SAME_OR_NOT_IMPLEMENTED, ("__mul__", "__rmul__"))
_install(_TenantBytes, bytes, _TENANT_PIECES, ("split", "rsplit", "splitlines"))


class _LabelledNumber:
    """Text made from a labelled number keeps its labels: ``str(n)``,
    ``repr(n)``, ``format(n, spec)`` and a lone f-string ``f"{n}"``."""

    __slots__ = ()
    _pg_kind: _Kind
    _pg_number: Any
    _pg_tenant: str | None = None

    def __str__(self) -> str:
        number: Any = type(self)._pg_number
        return _str_with(type(self)._pg_kind, _tenant_on(self), number.__repr__(self))  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        number: Any = type(self)._pg_number
        return _str_with(type(self)._pg_kind, _tenant_on(self), number.__repr__(self))  # type: ignore[no-any-return]

    def __format__(self, spec: str) -> str:
        number: Any = type(self)._pg_number
        return _str_with(type(self)._pg_kind, _tenant_on(self), number.__format__(self, spec))  # type: ignore[no-any-return]


class LabelledInt(_LabelledNumber, int):
    """An ``int`` that carries data categories (a count, an id); arithmetic
    results are plain ints, which the zone covers."""

    __slots__ = ()
    _pg_kind: _Kind
    _pg_number = int

    def __reduce_ex__(self, protocol: Any) -> Any:
        kind = type(self)._pg_kind
        return (_rebuild, (int(self), tuple(sorted(kind.labels)), _tenant_on(self)))


class LabelledFloat(_LabelledNumber, float):
    """A ``float`` that carries data categories; see :class:`LabelledInt`."""

    __slots__ = ()
    _pg_kind: _Kind
    _pg_number = float

    def __reduce_ex__(self, protocol: Any) -> Any:
        kind = type(self)._pg_kind
        return (_rebuild, (float(self), tuple(sorted(kind.labels)), _tenant_on(self)))


class _LabelledContainer:
    """What the labelled containers share: their labels on the class (as
    ``_pg_box``), items that keep them, and pickling that keeps them. They
    are real ``dict``/``list``/... instances, so ``json.dumps``, web
    frameworks' JSON responses and clients that test ``isinstance(x, dict)``
    take them as they are.

    Every way Python code reads items goes through a method here and hands
    them out labelled: indexing, iteration (``for``, unpacking, ``list()``,
    ``sorted()``, ``enumerate``, ``zip``, ``map``, comprehensions, ``*args``),
    ``keys()``/``values()``/``items()``, ``dict(d)`` and ``{**d}``, ``pop()``,
    ``copy()`` and the operators that build a new container. What C code reads
    without asking the class (``set(s)``, ``frozenset(s)``, ``orjson``) is
    listed in docs/laundering.md: the zone covers it."""

    __slots__ = ()
    _pg_box: _Kind
    _pg_base: Any
    _pg_tenant: str | None = None

    def __reduce_ex__(self, protocol: Any) -> Any:
        kind = type(self)._pg_box
        return (_rebuild, (_plain_container(self), tuple(sorted(kind.labels)), _tenant_on(self)))

    def __iter__(self) -> Any:
        return map(_item_of, repeat(self), type(self)._pg_base.__iter__(self))

    def __repr__(self) -> str:
        text: str = _str_with(type(self)._pg_box, _tenant_on(self), type(self)._pg_base.__repr__(self))
        return text

    def copy(self) -> Any:
        cls: Any = type(self)
        return _container_with(cls._pg_box, _tenant_on(self), cls._pg_base, _plain_container(self))

    def __copy__(self) -> Any:
        return self.copy()


def _plain_container(value: Any) -> Any:
    """A plain copy of a labelled container, its items as they are stored
    (``dict(labelled)`` would hand them out labelled)."""
    base = type(value)._pg_base
    if base is dict:
        return dict(dict.items(value))
    return base(base.__iter__(value))


def _plain_items(value: Any) -> Iterable[Any]:
    """A labelled container's items as stored, without labelling each one."""
    base = type(value)._pg_base
    if base is dict:
        return _stored_pairs(value)
    return base.__iter__(value)  # type: ignore[no-any-return]


def _stored_pairs(mapping: Any) -> Iterable[Any]:
    for key, item in dict.items(mapping):
        yield key
        yield item


def _item_of(container: Any, item: Any) -> Any:
    """An item read from a labelled container: it keeps the container's
    labels. Strings, bytes and numbers come back labelled, objects are
    labelled in place; a mutable container inside (a nested ``dict`` or
    ``list``) comes back as itself, so writes through it still reach the
    outer one, and its categories go to the zone."""
    kind = type(container)._pg_box
    tenant = _tenant_on(container)
    t = type(item)
    # Plain text and numbers first (a JSON document's keys and values):
    # getattr() on a type that lacks the attribute raises and clears an
    # AttributeError inside, which would cost more than the rest.
    if (t is str or t is int or t is float) and not FLAGS.activations:
        # The categories were checked when the container was labelled; the
        # zone and the read check as label() does them.
        result = _str_with(kind, tenant, item) if t is str else _number_with(kind, tenant, t, item)
        if FLAGS.zones:
            state = ZONE.get()
            if state is not None:
                state.add(kind.labels, tenant)
        purpose = _current_purpose()
        if purpose is not None and not _read_allowed(kind, purpose):
            _read_in_purpose(kind, tenant, purpose)
        return result
    if t is _NONE_TYPE or t is bool:
        return label(item, *sorted(kind.labels), tenant=tenant)
    if t is tuple or t is frozenset:
        # Nothing writes through an immutable one (a row of a query result):
        # it comes back labelled, so its items do too.
        if FLAGS.zones:
            state = ZONE.get()
            if state is not None:
                state.add(kind.labels, tenant)
        return _container_with(kind, tenant, t, item)
    if t in _CONTAINERS or getattr(t, "_pg_box", None) is not None or isinstance(item, LabelledProxy):
        if FLAGS.zones:
            state = ZONE.get()
            if state is not None:
                state.add(kind.labels, tenant)
        return item
    return label(item, *sorted(kind.labels), tenant=tenant)


def _pair_of(container: Any, pair: tuple[Any, Any]) -> tuple[Any, Any]:
    return (_item_of(container, pair[0]), _item_of(container, pair[1]))


def _combined(container: Any, other: Any, result: Any, *more: Any) -> Any:
    """A container built by an operator (``+``, ``|``, ``&`` ...) from a
    labelled one: labelled with its operands' labels."""
    if result is NotImplemented:
        return result
    base = type(result)
    if base not in _CONTAINER_CLASSES:
        return result
    kind = type(container)._pg_box
    tenant = _tenant_on(container)
    for operand in (other, *more):
        operand_kind = getattr(type(operand), "_pg_box", None)
        if operand_kind is not None:
            kind = _union(kind, operand_kind)
            tenant = merge_tenants(tenant, _tenant_on(operand))
    return _container_with(kind, tenant, base, result)


class _LabelledView:
    """What the views of a labelled dict share: live, and every entry read
    through them keeps the dict's labels."""

    __slots__ = ()
    _mapping: Any
    # The dict's own view of what is stored, and what each entry becomes
    # (static methods: (dict) -> view, (dict, entry) -> labelled entry).
    _stored: Any
    _entry: Any

    def __iter__(self) -> Any:
        cls = type(self)
        return map(cls._entry, repeat(self._mapping), cls._stored(self._mapping))

    def __reversed__(self) -> Any:
        cls = type(self)
        return map(cls._entry, repeat(self._mapping), reversed(cls._stored(self._mapping)))

    def __len__(self) -> int:
        return dict.__len__(self._mapping)

    @property
    def mapping(self) -> Any:
        return types.MappingProxyType(self._mapping)


class _LabelledKeys(_LabelledView, KeysView):  # type: ignore[type-arg]
    """``keys()`` of a labelled dict: a live view whose keys keep the labels."""

    __slots__ = ()
    _stored = staticmethod(dict.keys)
    _entry = staticmethod(_item_of)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self._mapping, key)


class _LabelledValues(_LabelledView, ValuesView):  # type: ignore[type-arg]
    """``values()`` of a labelled dict: a live view whose values keep the labels."""

    __slots__ = ()
    _stored = staticmethod(dict.values)
    _entry = staticmethod(_item_of)

    def __contains__(self, value: object) -> bool:
        return value in dict.values(self._mapping)


class _LabelledItems(_LabelledView, ItemsView):  # type: ignore[type-arg]
    """``items()`` of a labelled dict: a live view whose keys and values keep the labels."""

    __slots__ = ()
    _stored = staticmethod(dict.items)
    _entry = staticmethod(_pair_of)

    def __contains__(self, item: object) -> bool:
        stored: Any = dict.items(self._mapping)
        return item in stored


class LabelledDict(_LabelledContainer, dict):  # type: ignore[type-arg]
    """A ``dict`` that carries data categories; see :func:`label`. Keys and
    values read from it (``d[key]``, ``d.get(key)``, iteration, the views,
    ``dict(d)``, ``{**d}``, ``pop``) keep them."""

    __slots__ = ()
    _pg_base = dict

    def __getitem__(self, key: Any) -> Any:
        return _item_of(self, dict.__getitem__(self, key))

    def get(self, key: Any, default: Any = None) -> Any:
        if dict.__contains__(self, key):
            return _item_of(self, dict.__getitem__(self, key))
        return default

    def __reversed__(self) -> Any:
        return map(_item_of, repeat(self), dict.__reversed__(self))

    def keys(self) -> Any:
        return _LabelledKeys(self)

    def values(self) -> Any:
        return _LabelledValues(self)

    def items(self) -> Any:
        return _LabelledItems(self)

    def pop(self, key: Any, *default: Any) -> Any:
        if dict.__contains__(self, key):
            return _item_of(self, dict.pop(self, key))
        return dict.pop(self, key, *default)

    def popitem(self) -> Any:
        return _pair_of(self, dict.popitem(self))

    def setdefault(self, key: Any, default: Any = None) -> Any:
        return _item_of(self, dict.setdefault(self, key, default))

    def __or__(self, other: Any) -> Any:
        return _combined(self, other, dict.__or__(self, other))

    def __ror__(self, other: Any) -> Any:
        return _combined(self, other, dict.__ror__(self, other))


class LabelledList(_LabelledContainer, list):  # type: ignore[type-arg]
    """A ``list`` that carries data categories; see :func:`label`. Items read
    from it (by index, by iteration, ``pop``) keep them."""

    __slots__ = ()
    _pg_base = list

    def __getitem__(self, index: Any) -> Any:
        found = list.__getitem__(self, index)
        if isinstance(index, slice):
            return _container_with(type(self)._pg_box, _tenant_on(self), list, found)
        return _item_of(self, found)

    def __reversed__(self) -> Any:
        return map(_item_of, repeat(self), list.__reversed__(self))

    def pop(self, index: SupportsIndex = -1) -> Any:
        return _item_of(self, list.pop(self, index))

    def __add__(self, other: Any) -> Any:
        return _combined(self, other, list.__add__(self, other))

    def __radd__(self, other: Any) -> Any:
        # plain + labelled: Python asks the subclass on the right first.
        if not isinstance(other, list):
            return NotImplemented
        return _combined(self, other, list.__add__(other, self))

    def __mul__(self, times: Any) -> Any:
        return _combined(self, None, list.__mul__(self, times))

    def __rmul__(self, times: Any) -> Any:
        return _combined(self, None, list.__rmul__(self, times))


class LabelledTuple(_LabelledContainer, tuple):  # type: ignore[type-arg]
    """A ``tuple`` that carries data categories; see :func:`label`. Items
    read from it (by index, by iteration and unpacking) keep them."""

    __slots__ = ()
    _pg_base = tuple

    def __getitem__(self, index: Any) -> Any:
        found = tuple.__getitem__(self, index)
        if isinstance(index, slice):
            return _container_with(type(self)._pg_box, _tenant_on(self), tuple, found)
        return _item_of(self, found)

    def copy(self) -> Any:
        return self

    def __copy__(self) -> Any:
        return self

    def __add__(self, other: Any) -> Any:
        return _combined(self, other, tuple.__add__(self, other))

    def __radd__(self, other: Any) -> Any:
        if not isinstance(other, tuple):
            return NotImplemented
        return _combined(self, other, tuple.__add__(other, self))

    def __mul__(self, times: Any) -> Any:
        return _combined(self, None, tuple.__mul__(self, times))

    def __rmul__(self, times: Any) -> Any:
        return _combined(self, None, tuple.__rmul__(self, times))


class _LabelledSetOps(_LabelledContainer):
    """The set operations of labelled sets: results keep the labels."""

    __slots__ = ()

    def __or__(self, other: Any) -> Any:
        return _combined(self, other, type(self)._pg_base.__or__(self, other))

    def __ror__(self, other: Any) -> Any:
        return _combined(self, other, type(self)._pg_base.__ror__(self, other))

    def __and__(self, other: Any) -> Any:
        return _combined(self, other, type(self)._pg_base.__and__(self, other))

    def __rand__(self, other: Any) -> Any:
        return _combined(self, other, type(self)._pg_base.__rand__(self, other))

    def __sub__(self, other: Any) -> Any:
        return _combined(self, other, type(self)._pg_base.__sub__(self, other))

    def __rsub__(self, other: Any) -> Any:
        return _combined(self, other, type(self)._pg_base.__rsub__(self, other))

    def __xor__(self, other: Any) -> Any:
        return _combined(self, other, type(self)._pg_base.__xor__(self, other))

    def __rxor__(self, other: Any) -> Any:
        return _combined(self, other, type(self)._pg_base.__rxor__(self, other))

    def union(self, *others: Any) -> Any:
        return _combined(self, None, type(self)._pg_base.union(self, *others), *others)

    def intersection(self, *others: Any) -> Any:
        return _combined(self, None, type(self)._pg_base.intersection(self, *others), *others)

    def difference(self, *others: Any) -> Any:
        return _combined(self, None, type(self)._pg_base.difference(self, *others))

    def symmetric_difference(self, other: Any) -> Any:
        return _combined(self, other, type(self)._pg_base.symmetric_difference(self, other))


class LabelledSet(_LabelledSetOps, set):  # type: ignore[type-arg]
    """A ``set`` that carries data categories; see :func:`label`. Items read
    from it (by iteration, ``pop``) keep them."""

    __slots__ = ()
    _pg_base = set

    def pop(self) -> Any:
        return _item_of(self, set.pop(self))


class LabelledFrozenSet(_LabelledSetOps, frozenset):  # type: ignore[type-arg]
    """A ``frozenset`` that carries data categories; see :func:`label`.
    Items read from it by iteration keep them."""

    __slots__ = ()
    _pg_base = frozenset


_CONTAINER_CLASSES: dict[type, type] = {
    dict: LabelledDict,
    list: LabelledList,
    tuple: LabelledTuple,
    set: LabelledSet,
    frozenset: LabelledFrozenSet,
}


def box_base(t: type) -> type:
    """The plain container type a labelled container class stands for."""
    return t._pg_base  # type: ignore[attr-defined,no-any-return]


def box_kind(value: Any) -> _Kind | None:
    """The kind of a labelled container (:class:`LabelledDict` ...), else None."""
    return getattr(type(value), "_pg_box", None)


def _rebuild(value: Any, labels: tuple[str, ...], tenant: str | None) -> Any:
    # Unpickling trusts the labels it finds: they were valid when pickled, and
    # dropping them would be a silent declassification.
    kind = _kind_for(frozenset(labels))
    if isinstance(value, str):
        return _str_with(kind, tenant, value)
    if isinstance(value, bytes):
        return _bytes_with(kind, tenant, value)
    if type(value) in (int, float):
        return _number_with(kind, tenant, type(value), value)
    if type(value) in _CONTAINER_CLASSES:
        return _container_with(kind, tenant, type(value), value)
    return _label_object(value, _with_tenant(kind, tenant))


# -- other objects --------------------------------------------------------------


# wrapt 2 ships types; 1.x (still allowed) does not, and subclassing its Any is an error there.
class LabelledProxy(wrapt.ObjectProxy):  # type: ignore[misc,type-arg,unused-ignore]
    """Carries labels for objects that cannot be weakly referenced (list, dict, ...)."""

    __slots__ = ("_self_pg_kind",)

    def __init__(self, wrapped: Any, kind: _Kind) -> None:
        super().__init__(wrapped)
        self._self_pg_kind = kind

    def __reduce_ex__(self, protocol: Any) -> Any:
        kind = self._self_pg_kind
        return (_rebuild, (self.__wrapped__, tuple(sorted(kind.labels)), kind.tenant))

    def __copy__(self) -> Any:
        import copy

        return LabelledProxy(copy.copy(self.__wrapped__), self._self_pg_kind)

    def __deepcopy__(self, memo: Any) -> Any:
        import copy

        return LabelledProxy(copy.deepcopy(self.__wrapped__, memo), self._self_pg_kind)

    def __repr__(self) -> str:
        return repr(self.__wrapped__)


# id(obj) -> kind, for weakly referenceable objects; entries leave with the object.
_OBJECTS: dict[int, _Kind] = _STATE.objects
_OBJECT_REFS: dict[int, weakref.ref[Any]] = _STATE.object_refs

# Types whose instances are known to carry no labels: the hot path's one test.
# A type leaves the set the moment one of its instances is labelled.
NO_LABELS: set[type] = _STATE.no_labels
# Types that ever had an instance labelled in the side table: never "label-free".
SIDE_TABLE_TYPES: set[type] = _STATE.side_table_types
# Types of plain objects, whose instances carry labels only in the values of
# their ``__dict__``: an instance whose attribute values are all of types in
# NO_LABELS carries none. Guarded methods test their ``self`` that way on
# every call (a shallow look at the attribute types, so setting a labelled
# attribute later is seen at once, with no hook on the class).
FLAT_OBJECTS: set[type] = _STATE.flat_objects
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


_CONTAINERS = (list, tuple, set, frozenset, dict)


def _forget(object_id: int) -> Callable[[Any], None]:
    def callback(_ref: Any) -> None:
        _OBJECTS.pop(object_id, None)
        _OBJECT_REFS.pop(object_id, None)

    return callback


def _label_object(value: Any, kind: _Kind) -> Any:
    if isinstance(value, LabelledProxy):
        return LabelledProxy(value.__wrapped__, _join(value._self_pg_kind, kind))
    t = type(value)
    if t in _CONTAINERS or t in (int, float, complex, bool, type(None)) or not _weakrefable(t):
        return LabelledProxy(value, kind)
    object_id = id(value)
    previous = _OBJECTS.get(object_id)
    if previous is not None and _OBJECT_REFS[object_id]() is value:
        kind = _join(previous, kind)
    else:
        _OBJECT_REFS[object_id] = weakref.ref(value, _forget(object_id))
    _OBJECTS[object_id] = kind
    if t not in SIDE_TABLE_TYPES:
        SIDE_TABLE_TYPES.add(t)
        _keep_labels_when_pickled(t)
    NO_LABELS.discard(t)
    FLAT_OBJECTS.discard(t)
    return value


def _keep_labels_when_pickled(t: type) -> None:
    """Pickling (and ``copy``) of ``t``'s instances keeps side-table labels:
    pickle asks ``copyreg.dispatch_table`` before an object's own
    ``__reduce_ex__``. A type with a reducer of its own is left alone."""
    if t in copyreg.dispatch_table:
        return
    copyreg.dispatch_table[t] = _reduce_labelled_object


def _reduce_labelled_object(value: Any) -> Any:
    reduced = value.__reduce_ex__(4)
    object_kind = _OBJECTS.get(id(value))
    if object_kind is None or _OBJECT_REFS[id(value)]() is not value or not isinstance(reduced, tuple):
        return reduced
    return (_rebuild_object, (reduced, tuple(sorted(object_kind.labels)), object_kind.tenant))


def _rebuild_object(reduced: tuple[Any, ...], labels: tuple[str, ...], tenant: str | None) -> Any:
    # What pickle does with a reduce tuple, then the labels the object had.
    factory, args = reduced[0], reduced[1]
    value = factory(*args)
    state = reduced[2] if len(reduced) > 2 else None
    if state is not None:
        setstate = getattr(value, "__setstate__", None)
        if setstate is not None:
            setstate(state)
        else:
            slot_state = None
            if isinstance(state, tuple) and len(state) == 2:
                state, slot_state = state
            if state:
                value.__dict__.update(state)
            for name, item in (slot_state or {}).items():
                setattr(value, name, item)
    if len(reduced) > 3 and reduced[3] is not None:
        for item in reduced[3]:
            value.append(item)
    if len(reduced) > 4 and reduced[4] is not None:
        for key, item in reduced[4]:
            value[key] = item
    return _label_object(value, _kind_for(frozenset(labels), tenant))


_WEAKREFABLE: dict[type, bool] = _STATE.weakrefable


def _weakrefable(t: type) -> bool:
    known = _WEAKREFABLE.get(t)
    if known is None:
        known = t.__weakrefoffset__ != 0
        remember(_WEAKREFABLE, t, known)
    return known


# -- labelling ------------------------------------------------------------------

_NONE_TYPE = type(None)


def _unhashable(categories: tuple[Any, ...], tenant: object = None) -> NoReturn:
    """A category (or tenant) that cannot even be looked up (a dict, a list): name it by type."""
    if tenant is not None:
        require_tenant(tenant)
    for category in categories:
        if not isinstance(category, str):
            raise UnknownKeyError(category, "category")
    raise TypeError("categories must be strings")


def _resolve(categories: tuple[str, ...], tenant: str | None = None) -> _Kind:
    """The kind of ``categories`` (validated) with ``tenant`` (validated)."""
    if FLAGS.activations:
        # Another context may run under another taxonomy: validate against this
        # context's, and keep the caches for the process-wide one.
        taxonomy = KEYS.current()
        for category in categories:
            if not isinstance(category, str) or category not in taxonomy.categories:
                raise UnknownKeyError(category, "category")
        return _kind_for(frozenset(categories), None if tenant is None else _checked_tenant(tenant))
    try:
        kind = _KINDS_NO_TENANT.get(categories)
    except TypeError:
        _unhashable(categories, tenant)
    if kind is None:
        taxonomy = KEYS.taxonomy
        for category in categories:
            if not isinstance(category, str) or category not in taxonomy.categories:
                raise UnknownKeyError(category, "category")
        kind = _kind_for(frozenset(categories))
        if len(_KINDS_NO_TENANT) >= LABEL_SETS_LIMIT:
            # Partial and local: the oldest eighth of these lookups goes.
            for old in list(itertools.islice(_KINDS_NO_TENANT, LABEL_SETS_LIMIT // 8)):
                del _KINDS_NO_TENANT[old]
                _STR_FAST.pop(old, None)
        _KINDS_NO_TENANT[categories] = kind
        _STR_FAST[categories] = kind.str_cls
    return kind if tenant is None else _Kind(kind.labels, _checked_tenant(tenant), kind)


def _checked_tenant(tenant: object) -> str:
    # The common case in one expression; anything else gets require_tenant's
    # full test and its error.
    if (
        type(tenant) is str
        and 0 < len(tenant) <= MAX_TENANT_LENGTH
        and tenant.isprintable()
        and tenant[0] != " "
        and tenant[-1] != " "
    ):
        return tenant
    return require_tenant(tenant)


class _Source:
    """Reading is a use: labelling a value while a purpose is current checks
    its categories against that purpose (``via="source"``). ``check`` is
    installed by the runtime (this layer does not import it); it returns True
    when the policy allows the categories without consent, which is
    remembered per purpose (as the labelled kinds seen) until the policy
    changes (``epoch``)."""

    __slots__ = ("check", "allowed", "epoch")

    def __init__(self) -> None:
        self.check: Callable[[frozenset[str], str, str | None], bool] | None = None
        # purpose -> kinds whose categories it may read without consent
        self.allowed: dict[str, set[_Kind]] = {}
        self.epoch = -1


SOURCE = _Source()
_NOTHING_ALLOWED: frozenset[_Kind] = frozenset()
_current_purpose = PURPOSE.get


def _read_in_purpose(kind: _Kind, tenant: str | None, purpose: str) -> None:
    """Check a read of ``kind``'s categories under ``purpose`` (the caller
    found it not remembered as allowed)."""
    check = SOURCE.check
    if check is None:
        return
    epoch = FLAGS.epoch  # before the check: a policy change meanwhile invalidates it
    if SOURCE.epoch != epoch:
        SOURCE.allowed = {}
        SOURCE.epoch = epoch
    if check(kind.labels, purpose, tenant) and not FLAGS.activations and SOURCE.epoch == epoch:
        # The label set's own kind: a kind with a tenant is made per value.
        base = kind.base
        if not base.evicted:
            SOURCE.allowed.setdefault(purpose, set()).add(base)


def _read_allowed(kind: _Kind, purpose: str) -> bool:
    return (
        kind.base in SOURCE.allowed.get(purpose, _NOTHING_ALLOWED)
        and SOURCE.epoch == FLAGS.epoch
        and not FLAGS.activations
    )


# The longest tenant id accepted anywhere (zones, labels, baggage).
MAX_TENANT_LENGTH = 256


def require_tenant(tenant: object) -> str:
    """A tenant id as records, logs and baggage may carry it: a printable
    string of 1 to 256 characters without surrounding spaces, not a
    labelled value. The error names the rule, never the value."""
    if not isinstance(tenant, str):
        raise TypeError(f"tenant must be a string or None, not {type(tenant).__name__}")
    if getattr(type(tenant), "_pg_kind", None) is not None:
        raise ValueError("a tenant id must not be a labelled value: it is kept in records and baggage")
    if not tenant or tenant != tenant.strip() or len(tenant) > MAX_TENANT_LENGTH or not tenant.isprintable():
        raise ValueError(
            f"a tenant id is 1 to {MAX_TENANT_LENGTH} printable characters without surrounding spaces"
        )
    return tenant


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
        except TypeError:  # an unhashable "category": _attach names the mistake
            cls = None
        if cls is not None and not FLAGS.activations:
            fast: Any
            if tenant is None:
                fast = cls(value)
            else:
                # The tenant goes on the instance: no class per tenant, no
                # cache that a million tenants would fill.
                fast = cls._pg_kind.tstr_cls(value)
                fast._pg_tenant = _checked_tenant(tenant)
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
    if kind is None:
        if not categories:
            raise TypeError("label() needs at least one category")
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
        tenant = _checked_tenant(tenant)
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
            else:
                base = int if isinstance(value, int) else float
                result = _number_with(kind, tenant, base, base(value))
        elif isinstance(value, str):
            result = _str_with(kind, tenant, str.__str__(value))
        elif isinstance(value, bytes):
            result = _bytes_with(kind, tenant, _plain_bytes(value))
        elif t is int or t is float:
            # Subclasses, not proxies: json, sqlite3 and arithmetic see a number.
            result = _number_with(kind, tenant, t, value)
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
        return _plain_bytes(value)  # type: ignore[return-value]
    if isinstance(value, LabelledProxy):
        return value.__wrapped__  # type: ignore[no-any-return]
    if getattr(t, "_pg_box", None) is not None:
        return _plain_container(value)  # type: ignore[no-any-return]
    if FOREIGN and (reader := foreign_reader(t)) is not None:
        return reader.strip(value)  # type: ignore[no-any-return]
    if _OBJECTS.pop(id(value), None) is not None:
        _OBJECT_REFS.pop(id(value), None)
    return value


# -- field annotations -----------------------------------------------------------


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
        self.categories = frozenset(categories)
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

        keys = self._keys

        def keep_labels(value: Any, validate: Any) -> Any:
            result = validate(value)
            carried = labels_of(value) if type(value) not in NO_LABELS else EMPTY
            tenant = tenant_of(value) if carried else None
            extra = carried - self.categories
            if extra:
                # Read where the input was labelled: carried on, not read again.
                result = relabel(result, *sorted(extra), tenant=tenant)
            return label(result, *keys, tenant=tenant if not extra else None)

        return core_schema.no_info_wrap_validator_function(keep_labels, handler(source))


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


def _categories_in_hint(hint: Any) -> frozenset[str]:
    found: frozenset[str] = frozenset()
    if typing.get_origin(hint) is typing.Annotated:
        for meta in hint.__metadata__:
            if isinstance(meta, Category):
                found |= meta.categories
        hint = typing.get_args(hint)[0]
    for arg in typing.get_args(hint):
        found |= _categories_in_hint(arg)
    return found


# -- labels of foreign types -------------------------------------------------------------


class ForeignLabels(typing.Protocol):
    """How labels are read from and put on values of a type this layer does
    not know (a Spark DataFrame keeps them in its schema). Integrations
    register one per type; it is asked only after every fast path missed."""

    def labels(self, value: Any, purpose: str | None) -> frozenset[str]:
        """The value's categories; for ``purpose``, without those the value
        itself shows are allowed for it (rows filtered to consenting tenants)."""

    def tenant(self, value: Any) -> str | None: ...

    def label(self, value: Any, categories: frozenset[str], tenant: str | None) -> Any: ...

    def strip(self, value: Any) -> Any: ...


# type -> reader; subclasses are found through the MRO and remembered.
FOREIGN: dict[type, ForeignLabels] = _STATE.foreign
_FOREIGN_FOUND: dict[type, ForeignLabels | None] = _STATE.foreign_found


def register_foreign(t: type, reader: ForeignLabels) -> None:
    """Read labels of ``t`` (and its subclasses) through ``reader``."""
    FOREIGN[t] = reader
    _FOREIGN_FOUND.clear()
    NO_LABELS.difference_update([k for k in NO_LABELS if issubclass(k, t)])
    FLAT_OBJECTS.difference_update([k for k in FLAT_OBJECTS if issubclass(k, t)])


def unregister_foreign(t: type) -> None:
    FOREIGN.pop(t, None)
    _FOREIGN_FOUND.clear()


def foreign_reader(t: type) -> ForeignLabels | None:
    try:
        return _FOREIGN_FOUND[t]
    except KeyError:
        pass
    found = next((FOREIGN[base] for base in t.__mro__ if base in FOREIGN), None)
    remember(_FOREIGN_FOUND, t, found)
    return found


# -- reading labels -----------------------------------------------------------------


def _own_labels(value: Any) -> frozenset[str]:
    t = type(value)
    kind = getattr(t, "_pg_kind", None)
    if kind is not None:
        return kind.labels  # type: ignore[no-any-return]
    if t is LabelledProxy or isinstance(value, LabelledProxy):
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
    if isinstance(value, LabelledProxy):
        return value._self_pg_kind.labels
    box = getattr(type(value), "_pg_box", None)
    if box is not None:
        return box.labels  # type: ignore[no-any-return]
    return EMPTY


def labels_of(value: Any) -> frozenset[str]:
    """The categories ``value`` carries: its own, its annotated fields', and
    those of everything inside it, as deep as the deep walk below looks (what lies
    beyond its bound is left out here; checkpoints refuse it)."""
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
    if isinstance(value, LabelledProxy):
        return value._self_pg_kind.tenant
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
    _resolve(categories, tenant)  # unknown keys fail when decorating

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
    """The labels of ``values``, as deep as the deep walk below looks; with
    ``purpose``, foreign values may leave out categories they show to be
    allowed for it (see :class:`ForeignLabels`). Raises
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


# -- the deep walk -----------------------------------------------------------------------
#
# The one walk that finds the labels anywhere inside a value.
#
# Every checkpoint reads labels through it: ``@purpose`` arguments and return
# values, ``pg.check``, the egress guards and the logging filter. It looks
# into containers of every kind (``dict``, ``list``, ``tuple``, ``set``,
# ``deque``, any :class:`collections.abc.Mapping` or ``Collection`` such as
# ``OrderedDict``, ``defaultdict``, ``ChainMap``, ``UserDict``, ``UserList``
# and named tuples, and their subclasses), into labelled containers and
# proxies, and into the attribute values of plain objects (``__dict__`` and
# ``__slots__``).
#
# The walk is bounded: :data:`MAX_DEPTH` levels of nesting and
# :data:`MAX_ITEMS` values looked into (values of a type known to carry no
# labels, such as plain ``str`` and ``int``, cost one set lookup and do not
# count). Content beyond either bound is not looked at, and the walk says so
# by raising :class:`WalkLimit`: checkpoints treat that as an engine failure,
# so enforce mode refuses (fails closed) and trace mode records it.

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
