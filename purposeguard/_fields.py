"""Labels at the source for classes that declare them on their fields.

``body: Annotated[str, Category("customer_data.content.email")]`` on a
dataclass or an attrs class: each time the class's ``__init__`` (or any
assignment) sets the field, the value is labelled with the field's
categories, so ``message.body`` reads as a labelled value at full attribute
speed (the value is labelled once, when set, and stored as it is).

Neither dataclasses nor attrs offer a hook that sees every class they
build, so purposeguard wraps the one function each calls to finish a class
(``dataclasses._process_class``; attrs' ``_ClassBuilder.build_class``, once
attrs is imported), for the versions tested below, and leaves other
versions alone with a warning. pydantic needs no patch: :class:`Category`
is pydantic metadata itself.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import re
import sys
import typing
from typing import Any

import wrapt

from ._labels import annotated_fields, label

__all__ = ["install", "labelled_fields"]

logger = logging.getLogger("purposeguard")

_PATCHED: dict[str, bool] = {}
# attrs releases whose class builder was tried here.
_ATTRS_TESTED = ((22, 2), (26, 99))


class _Setter:
    """A field whose values are labelled when set (classes with a ``__dict__``).

    Only ``__set__``: a data descriptor without ``__get__`` leaves reads to
    the instance dictionary, so reading the field costs what it did.
    """

    __slots__ = ("name", "keys")

    def __init__(self, name: str, keys: tuple[str, ...]) -> None:
        self.name = name
        self.keys = keys

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = label(value, *self.keys)

    def __delete__(self, obj: Any) -> None:
        try:
            del obj.__dict__[self.name]
        except KeyError:
            raise AttributeError(self.name) from None

    def __repr__(self) -> str:
        return f"<labelled field {self.name!r} {list(self.keys)}>"


class _DefaultedSetter(_Setter):
    """A dataclass field whose default stays on the class (``field(init=False,
    default=...)``: dataclasses' ``__init__`` does not set it, and a read of
    an instance that never set it finds the class attribute). Reads go
    through here, for these fields only."""

    __slots__ = ("default",)

    def __init__(self, name: str, keys: tuple[str, ...], default: Any) -> None:
        super().__init__(name, keys)
        self.default = label(default, *keys)

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        try:
            return obj.__dict__[self.name]
        except KeyError:
            return self.default


class _SlotSetter:
    """The same for a ``__slots__`` field: the slot keeps the value."""

    __slots__ = ("name", "keys", "slot")

    def __init__(self, name: str, keys: tuple[str, ...], slot: Any) -> None:
        self.name = name
        self.keys = keys
        self.slot = slot

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        return self.slot.__get__(obj, owner)

    def __set__(self, obj: Any, value: Any) -> None:
        self.slot.__set__(obj, label(value, *self.keys))

    def __delete__(self, obj: Any) -> None:
        self.slot.__delete__(obj)

    def __repr__(self) -> str:
        return f"<labelled field {self.name!r} {list(self.keys)}>"


_SETTERS = (_Setter, _SlotSetter)
# Names a postponed annotation may use that hold no Annotated.
_PLAIN_NAMES = frozenset(dir(__import__("builtins"))) | {"None"}


def _class_default(cls: type, name: str) -> Any:
    """The default a dataclass field keeps on the class (init=False, no
    factory), else MISSING."""
    field = (getattr(cls, "__dataclass_fields__", None) or {}).get(name)
    if field is None or field.init or field.default is dataclasses.MISSING:
        return dataclasses.MISSING
    return field.default


def labelled_fields(cls: type) -> dict[str, tuple[str, ...]]:
    """The fields of ``cls`` whose values are labelled when set, and their categories."""
    found: dict[str, tuple[str, ...]] = {}
    for klass in reversed(cls.__mro__):
        for name, attribute in vars(klass).items():
            if isinstance(attribute, _SETTERS):
                found[name] = attribute.keys
    return found


def _declares_annotated(cls: type) -> bool:
    """Whether the class's own annotations (or attrs' field types) may hold
    a Category: a cheap test run for every dataclass in the process, most
    of which hold none."""
    try:
        own = inspect.get_annotations(cls)
    except Exception:  # noqa: BLE001 - let the full reading decide
        return True
    hints = [*own.values(), *(getattr(a, "type", None) for a in getattr(cls, "__attrs_attrs__", ()) or ())]
    module = sys.modules.get(getattr(cls, "__module__", ""), None)
    namespace = vars(module) if module is not None else {}
    return any(_mentions_annotated(hint, namespace) for hint in hints if hint is not None)


# A dotted name in a string annotation.
_NAME = re.compile(r"[A-Za-z_][\w.]*")


def _mentions_annotated(hint: Any, namespace: Any = None) -> bool:
    if isinstance(hint, str):
        # A postponed annotation: "Annotated[...]" itself, or a name the
        # module binds to an alias that holds one (Email = Annotated[...]).
        if "Annotated" in hint:
            return True
        for name in _NAME.findall(hint):
            head, _, rest = name.partition(".")
            if namespace is None or head not in namespace:
                if head in _PLAIN_NAMES:
                    continue
                # Not known here (a class body's or a function's own name):
                # the full reading decides.
                return True
            found = namespace[head]
            for part in rest.split(".") if rest else ():
                found = getattr(found, part, None)
            if found is not None and not isinstance(found, str) and _mentions_annotated(found):
                return True
        return False
    if type(hint).__name__ == "TypeAliasType":
        # type Email = Annotated[...]: what the alias stands for.
        return _mentions_annotated(getattr(hint, "__value__", None))
    if typing.get_origin(hint) is typing.Annotated:
        return True
    return any(_mentions_annotated(arg) for arg in typing.get_args(hint))


def _install_setters(cls: type) -> None:
    if not _declares_annotated(cls):
        return
    for name, categories in annotated_fields(cls):
        keys = tuple(sorted(categories))
        current = next((k.__dict__[name] for k in cls.__mro__ if name in k.__dict__), None)
        if isinstance(current, _SETTERS):
            continue
        slot = current if type(current).__name__ == "member_descriptor" else None
        if slot is not None:
            setattr(cls, name, _SlotSetter(name, keys, slot))
            continue
        default = _class_default(cls, name)
        setattr(
            cls,
            name,
            _Setter(name, keys) if default is dataclasses.MISSING else _DefaultedSetter(name, keys, default),
        )


def _inherited_setters_out_of_the_way(cls: type) -> None:
    # dataclasses reads a redeclared field's default with getattr(cls, name):
    # a base class's setter must not be taken for one.
    for name in cls.__dict__.get("__annotations__", {}) or {}:
        if name not in cls.__dict__ and isinstance(getattr(cls, name, None), _SETTERS):
            setattr(cls, name, dataclasses.MISSING)


def _finish_dataclass(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    cls = args[0] if args else kwargs.get("cls")
    if isinstance(cls, type):
        _inherited_setters_out_of_the_way(cls)
    built = wrapped(*args, **kwargs)
    if isinstance(built, type):
        for name, value in list(vars(built).items()):
            if value is dataclasses.MISSING:
                delattr(built, name)
        _install_setters(built)
    return built


def _finish_attrs_class(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    built = wrapped(*args, **kwargs)
    if isinstance(built, type):
        _install_setters(built)
        if _writes_its_dict(built):
            _label_after_init(built)
    return built


def _writes_its_dict(cls: type) -> bool:
    """A frozen attrs class with a ``__dict__``: its ``__init__`` writes the
    instance dictionary directly, past the fields' setters."""
    make = sys.modules.get("attr._make")
    frozen = getattr(make, "_frozen_setattrs", None)
    return frozen is not None and getattr(cls, "__setattr__", None) is frozen and "__slots__" not in vars(cls)


def _label_after_init(cls: type) -> None:
    fields = list(labelled_fields(cls).items())
    if not fields:
        return
    original = cls.__init__  # type: ignore[misc]

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        values = self.__dict__
        for name, keys in fields:
            if name in values:
                values[name] = label(values[name], *keys)

    cls.__init__ = __init__  # type: ignore[misc]


def _patch_attrs(module: Any) -> None:
    if _PATCHED.get("attrs"):
        return
    import attr

    version = tuple(int(part) for part in attr.__version__.split(".")[:2] if part.isdigit())
    if not (_ATTRS_TESTED[0] <= version <= _ATTRS_TESTED[1]):
        logger.warning(
            "purposeguard does not label attrs fields with attrs %s (tried with %s.%s to %s.x)",
            attr.__version__,
            *_ATTRS_TESTED[0],
            _ATTRS_TESTED[1][0],
        )
        return
    wrapt.wrap_function_wrapper("attr._make", "_ClassBuilder.build_class", _finish_attrs_class)
    _PATCHED["attrs"] = True


def install() -> None:
    """Label annotated fields of dataclasses (now) and attrs classes (once
    attrs is imported). Idempotent; classes built before are left as they are."""
    if not _PATCHED.get("dataclasses"):
        if hasattr(dataclasses, "_process_class") and sys.version_info < (3, 15):
            wrapt.wrap_function_wrapper(dataclasses, "_process_class", _finish_dataclass)
            _PATCHED["dataclasses"] = True
        else:  # pragma: no cover - a Python this release was not tried with
            logger.warning(
                "purposeguard does not label dataclass fields on Python %s", sys.version.split()[0]
            )
    if "attrs_hook" not in _PATCHED:
        _PATCHED["attrs_hook"] = True
        wrapt.register_post_import_hook(_patch_attrs, "attr")
