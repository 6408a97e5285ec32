"""The labelled types: values that carry their labels with them.

``str`` and ``bytes`` are labelled by subclassing. ``str`` cannot have a
non-empty ``__slots__``, so the labels live on the *class*: one small
subclass per label set (cached), which makes building a labelled string a
plain ``str.__new__`` and reading its labels a class attribute lookup, with
no per-instance ``__dict__``. Methods of the subclass return labelled results
carrying the union of their operands' labels. Numbers and containers are
labelled subclasses too.

Other objects: an object that supports weak references keeps its identity
and its full speed; its labels are kept in a side table keyed by ``id`` and
dropped when it dies. Objects that cannot be weakly referenced (``list``,
``dict``, ``int`` ...) are wrapped in a ``wrapt.ObjectProxy``. Measured here:
attribute access through the proxy costs about 1-2 µs against 50 ns, which is
why it is only the fallback. Types of other libraries carry labels their own
way, through the readers integrations register (:class:`ForeignLabels`).

The public API that labels values and reads their labels is ``_labels``,
built on this module; the kinds these types carry are ``_kinds``, below it.
"""

from __future__ import annotations

import copyreg
import datetime
import decimal
import linecache
import sys
import types
import weakref
from collections.abc import Callable, ItemsView, Iterable, KeysView, Mapping, ValuesView
from itertools import repeat
from typing import Any, Protocol, SupportsIndex

import wrapt

from ._context import FLAGS, MIXED_TENANT, ZONE
from ._kinds import (
    EMPTY,
    PARENTS,
    _current_purpose,
    _join,
    _Kind,
    _kind_for,
    _read_allowed,
    _read_in_purpose,
    _union,
    _with_tenant,
    merge_tenants,
)
from ._state import STATE, remember

# The registries below belong to the process state; these names are bound to
# its containers, which a reset clears in place.
_STATE = STATE.labels


# -- building labelled values --------------------------------------------------


_getattr = getattr
# Bound once: a method call on a ContextVar measured about four times the
# cost of calling its bound ``get`` (what the conversions below pay per call).
_zone_get = ZONE.get


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


def _tell_zone(value: Any) -> None:
    """Add a labelled str, bytes or number's categories and tenant to the
    current zone: text made from it is plain wherever CPython copies it into
    a new string (text around an f-string field, ``"{}".format``, ``%`` with
    a tuple), and the zone must know it was read here even when the value
    was labelled before the zone opened."""
    if FLAGS.zones and (state := _zone_get()) is not None:
        state.add(type(value)._pg_kind.labels, _tenant_on(value))


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


def _quoting(error: BaseException, kind: _Kind, tenant: str | None) -> None:
    """An error raised by a method of labelled text may quote a piece of it
    (``str.format`` names the missing field of a labelled template): the
    text in its arguments carries the labels on, so a log or span that
    shows the error is checked as the text would be."""
    try:
        error.args = tuple(
            _relabel(arg, kind, tenant) if type(arg) in (str, bytes) else arg for arg in error.args
        )
    except Exception:
        # An error class whose args cannot be set keeps them as they are.
        return


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


# -- str and bytes -------------------------------------------------------------

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
    try:
        result = _base(self, *args, **kwargs)
    except Exception as error:
        _quoting(error, *_merged(type(self)._pg_kind, _getattr(self, "_pg_tenant", None), args, kwargs))
        raise
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
            "_quoting": _quoting,
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

    # Text conversions tell the zone (see _tell_zone): CPython calls these for
    # an f-string field, str.format, %-formatting and str()/repr(), then
    # copies the text into a new plain string in C. Inlined: an f-string is
    # the commonest use of a labelled value, and a call costs more than the check.
    def __str__(self) -> str:
        if FLAGS.zones and (state := _zone_get()) is not None:
            state.add(type(self)._pg_kind.labels, self._pg_tenant)
        return self

    def __format__(self, spec: str) -> str:
        if FLAGS.zones and (state := _zone_get()) is not None:
            state.add(type(self)._pg_kind.labels, self._pg_tenant)
        if not spec:
            return self
        return _str_with(type(self)._pg_kind, _tenant_on(self), str.__format__(self, spec))  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        if FLAGS.zones and (state := _zone_get()) is not None:
            state.add(type(self)._pg_kind.labels, self._pg_tenant)
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
        try:
            text = bytes.decode(self, encoding, errors)
        except UnicodeDecodeError as error:
            # The error quotes the bytes it was given, a plain copy: given
            # these instead, whatever shows the error is checked as they are.
            raise UnicodeDecodeError(error.encoding, self, error.start, error.end, error.reason) from None
        return _str_with(type(self)._pg_kind, _tenant_on(self), text)  # type: ignore[no-any-return]

    def __bytes__(self) -> bytes:
        return self

    # Text made from bytes (``str(b)``, ``repr(b)``, an f-string field, ``%s``
    # and ``%r``: object.__format__ calls __str__) keeps the labels and tells
    # the zone, as for str. bytes.__str__ keeps Python's -b warning.
    def __str__(self) -> str:
        _tell_zone(self)
        return _str_with(type(self)._pg_kind, _tenant_on(self), bytes.__str__(self))  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        _tell_zone(self)
        return _str_with(type(self)._pg_kind, _tenant_on(self), bytes.__repr__(self))  # type: ignore[no-any-return]

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


# -- numbers and containers ----------------------------------------------------


class _LabelledNumber:
    """Text made from a labelled number keeps its labels: ``str(n)``,
    ``repr(n)``, ``format(n, spec)`` and a lone f-string ``f"{n}"``."""

    __slots__ = ()
    _pg_kind: _Kind
    _pg_number: Any
    _pg_tenant: str | None = None

    def __str__(self) -> str:
        _tell_zone(self)
        number: Any = type(self)._pg_number
        return _str_with(type(self)._pg_kind, _tenant_on(self), number.__repr__(self))  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        _tell_zone(self)
        number: Any = type(self)._pg_number
        return _str_with(type(self)._pg_kind, _tenant_on(self), number.__repr__(self))  # type: ignore[no-any-return]

    def __format__(self, spec: str) -> str:
        _tell_zone(self)
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


# How each of these value types is copied into a class of its own (plain or
# labelled): a datetime cannot be built from another one as a number can.
_VALUE_COPIES: dict[type, Callable[[type, Any], Any]] = {
    decimal.Decimal: lambda cls, v: cls(v),
    datetime.datetime: lambda cls, v: cls(
        v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, v.tzinfo, fold=v.fold
    ),
    datetime.date: lambda cls, v: cls(v.year, v.month, v.day),
    datetime.time: lambda cls, v: cls(v.hour, v.minute, v.second, v.microsecond, v.tzinfo, fold=v.fold),
    datetime.timedelta: lambda cls, v: cls(v.days, v.seconds, v.microseconds),
}


def _value_with(kind: _Kind, tenant: str | None, base: type, value: Any) -> Any:
    """``value`` (a Decimal, date, datetime, time or timedelta) as ``kind``'s labelled subclass of ``base``."""
    made = _VALUE_COPIES[base](kind.number_cls(base, tenant is not None), value)
    if tenant is not None:
        made._pg_tenant = tenant
    return made


class _LabelledValue(_LabelledNumber):
    """A ``Decimal``, ``date``, ``datetime``, ``time`` or ``timedelta`` that
        carries data categories (a declared amount or timestamp). A subclass,
        not a proxy: ``Decimal(x)``, ``isinstance(x, datetime)``, ``utcoffset``
        and database drivers take it as the value it is. ``str``, ``repr`` and
        ``format`` keep the labels; a decimal's arithmetic results are plain, a
        date's or time's (which CPython builds as ``type(x)``) keep the labels
        and the tenant; ``isoformat()`` and ``strftime()`` text is what the zone
        covers. ``sqlite3``, which looks its adapters up by exact type, binds it
    with the adapter registered for the plain type (see ``__conform__``)."""

    __slots__ = ()

    def __conform__(self, protocol: Any) -> Any:
        # sqlite3 asks the value itself when no adapter is registered for
        # its exact type: a labelled date is bound as a plain one would be
        # (the application's own adapter for Decimal included), and the
        # zone learns of it as of any text made from it.
        sqlite3 = sys.modules.get("sqlite3")
        if sqlite3 is None or protocol is not sqlite3.PrepareProtocol:
            return None
        adapter = sqlite3.adapters.get((type(self)._pg_number, protocol))
        if adapter is None:
            return None
        _tell_zone(self)
        return adapter(self._pg_plain())

    def __str__(self) -> str:
        _tell_zone(self)
        number: Any = type(self)._pg_number
        return _str_with(type(self)._pg_kind, _tenant_on(self), number.__str__(self))  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        # The plain value's: these types' own repr names the class, here the labelled one.
        _tell_zone(self)
        return _str_with(type(self)._pg_kind, _tenant_on(self), repr(self._pg_plain()))  # type: ignore[no-any-return]

    def _pg_plain(self) -> Any:
        base: Any = type(self)._pg_number
        return _VALUE_COPIES[base](base, self)

    def __reduce_ex__(self, protocol: Any) -> Any:
        kind = type(self)._pg_kind
        return (_rebuild, (self._pg_plain(), tuple(sorted(kind.labels)), _tenant_on(self)))


def _with_tenant_of(source: Any, result: Any) -> Any:
    """``result`` of date arithmetic on ``source``, which CPython builds as
    ``type(source)(...)``: it keeps ``source``'s tenant (a class carrying a
    tenant would otherwise name several tenants, which no consent covers)."""
    if type(result) is type(source):
        tenant = _tenant_on(source)
        if tenant is not None:
            result._pg_tenant = tenant
    return result


class _DateArithmetic:
    """What builds a new date, datetime or time of the value's own class."""

    __slots__ = ()
    _pg_number: Any

    def __add__(self, other: Any) -> Any:
        number: Any = type(self)._pg_number
        return _with_tenant_of(self, number.__add__(self, other))

    def __radd__(self, other: Any) -> Any:
        number: Any = type(self)._pg_number
        return _with_tenant_of(self, number.__radd__(self, other))

    def __sub__(self, other: Any) -> Any:
        number: Any = type(self)._pg_number
        return _with_tenant_of(self, number.__sub__(self, other))

    def replace(self, *args: Any, **kwargs: Any) -> Any:
        number: Any = type(self)._pg_number
        return _with_tenant_of(self, number.replace(self, *args, **kwargs))

    def astimezone(self, *args: Any, **kwargs: Any) -> Any:
        number: Any = type(self)._pg_number
        return _with_tenant_of(self, number.astimezone(self, *args, **kwargs))


class LabelledDecimal(_LabelledValue, decimal.Decimal):  # type: ignore[misc]  # format() takes no context here
    """A ``decimal.Decimal`` that carries data categories; see :class:`_LabelledValue`."""

    __slots__ = ()
    _pg_kind: _Kind
    _pg_number = decimal.Decimal


class LabelledDatetime(_DateArithmetic, _LabelledValue, datetime.datetime):
    """A ``datetime.datetime`` that carries data categories; see :class:`_LabelledValue`."""

    __slots__ = ()
    _pg_kind: _Kind
    _pg_number = datetime.datetime


class LabelledDate(_DateArithmetic, _LabelledValue, datetime.date):
    """A ``datetime.date`` that carries data categories; see :class:`_LabelledValue`."""

    __slots__ = ()
    _pg_kind: _Kind
    _pg_number = datetime.date


class LabelledTime(_DateArithmetic, _LabelledValue, datetime.time):
    """A ``datetime.time`` that carries data categories; see :class:`_LabelledValue`."""

    __slots__ = ()
    _pg_kind: _Kind
    _pg_number = datetime.time


class LabelledTimedelta(_LabelledValue, datetime.timedelta):
    """A ``datetime.timedelta`` that carries data categories; see :class:`_LabelledValue`."""

    __slots__ = ()
    _pg_kind: _Kind
    _pg_number = datetime.timedelta


_VALUE_CLASSES: dict[type, type] = {
    decimal.Decimal: LabelledDecimal,
    datetime.datetime: LabelledDatetime,
    datetime.date: LabelledDate,
    datetime.time: LabelledTime,
    datetime.timedelta: LabelledTimedelta,
}


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
        # The C repr reads the items without asking the class: tell the zone
        # here (str() and an f-string field come here too).
        kind = type(self)._pg_box
        tenant = _tenant_on(self)
        if FLAGS.zones and (state := _zone_get()) is not None:
            state.add(kind.labels, tenant)
        text: str = _str_with(kind, tenant, type(self)._pg_base.__repr__(self))
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


def _installed_by_labels(*args: Any, **kwargs: Any) -> Any:
    # The package imports _labels, which replaces this, before any value is labelled.
    raise RuntimeError("purposeguard._labels is not loaded")


# Defined in _labels on top of this module, which installs them here when it
# loads: an item read from a labelled container that is neither text nor a
# number is labelled as label() labels it, and a container given no tenant
# of its own belongs to whoever its items name.
label: Callable[..., Any] = _installed_by_labels
tenant_of_values: Callable[[Iterable[Any]], str | None] = _installed_by_labels


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


# -- the classes each label set's classes subclass (_kinds.PARENTS) ------------


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
    """The parent of ``parent``'s labelled classes whose instances carry a
    tenant (in an instance ``__dict__``: their C layout admits no slot)."""
    # An instance made by calling its class (``type(x)(...)``) was given
    # no tenant: a number belongs to none, so no tenant's consent covers
    # it; a container to whoever its items name (none if they name nobody).
    unset: Any = _UnsetContainerTenant() if issubclass(parent, _LabelledContainer) else MIXED_TENANT
    return type(
        parent.__name__,
        (parent,),
        {"__module__": __name__, "__qualname__": parent.__name__, "_pg_tenant": unset},
    )


PARENTS.update(
    {
        (str, False): LabelledStr,
        (str, True): _TenantStr,
        (bytes, False): LabelledBytes,
        (bytes, True): _TenantBytes,
    }
)
for _plain, _parent in (
    (int, LabelledInt),
    (float, LabelledFloat),
    *_VALUE_CLASSES.items(),
    *_CONTAINER_CLASSES.items(),
):
    PARENTS[_plain, False] = _parent
    PARENTS[_plain, True] = _tenant_parent(_parent)
del _plain, _parent


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
    if type(value) in _VALUE_COPIES:
        return _value_with(kind, tenant, type(value), value)
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


_CONTAINERS = (list, tuple, set, frozenset, dict)
_NONE_TYPE = type(None)


def _forget(object_id: int) -> Callable[[Any], None]:
    def callback(_ref: Any) -> None:
        _OBJECTS.pop(object_id, None)
        _OBJECT_REFS.pop(object_id, None)

    return callback


def _label_object(value: Any, kind: _Kind) -> Any:
    if issubclass(type(value), LabelledProxy):
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


# Pickles name these by their module path: they keep the one they had before
# the labels layer was split into modules (purposeguard._labels, which
# re-exports them), so values pickled by either layout unpickle under both.
_rebuild.__module__ = "purposeguard._labels"
_rebuild_object.__module__ = "purposeguard._labels"


# -- labels of foreign types -------------------------------------------------------------


class ForeignLabels(Protocol):
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
