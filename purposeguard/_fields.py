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
import inspect
import logging
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


def labelled_fields(cls: type) -> dict[str, tuple[str, ...]]:
    """The fields of ``cls`` whose values are labelled when set, and their categories."""
    found: dict[str, tuple[str, ...]] = {}
    for klass in reversed(cls.__mro__):
        for name, attribute in vars(klass).items():
            if isinstance(attribute, _SETTERS):
                found[name] = attribute.keys
    return found


def _declares_annotated(cls: type) -> bool:
    """Whether the class's own annotations may hold a Category: a cheap test
    run for every dataclass in the process, most of which hold none."""
    try:
        own = inspect.get_annotations(cls)
    except Exception:  # noqa: BLE001 - let the full reading decide
        return True
    return any(_mentions_annotated(hint) for hint in own.values())


def _mentions_annotated(hint: Any) -> bool:
    if isinstance(hint, str):
        return "Annotated" in hint
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
        setattr(cls, name, _Setter(name, keys) if slot is None else _SlotSetter(name, keys, slot))


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
    return built


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
