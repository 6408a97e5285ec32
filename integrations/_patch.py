"""Patching third-party clients after import, and undoing it (wrapt)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import wrapt

Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


class Patcher:
    """Wraps ``module.Class.method`` when ``module`` is imported (now, if it
    already is) and restores the originals on :meth:`remove`."""

    def __init__(self, module: str, targets: list[tuple[str, str, Wrapper]]) -> None:
        self.module = module
        self.targets = targets
        self.enabled = False
        self._hooked = False
        self._applied: list[tuple[type, str, bool, Any]] = []
        self._lock = threading.Lock()

    def install(self) -> None:
        with self._lock:
            self.enabled = True
            first = not self._hooked
            self._hooked = True
        if first:
            # Fires at once if the module is already imported, else on import.
            wrapt.when_imported(self.module)(self._apply)
        elif self.module in sys.modules:
            self._apply(sys.modules[self.module])

    def _apply(self, module: Any) -> None:
        with self._lock:
            if not self.enabled or self._applied:
                return
            for class_name, method, wrapper in self.targets:
                cls = getattr(module, class_name)
                own = method in vars(cls)
                self._applied.append((cls, method, own, vars(cls).get(method)))
                wrapt.wrap_function_wrapper(cls, method, wrapper)

    def remove(self) -> None:
        with self._lock:
            self.enabled = False
            for cls, method, own, original in reversed(self._applied):
                if own:
                    setattr(cls, method, original)
                else:
                    delattr(cls, method)  # it was inherited: let the base class answer again
            self._applied.clear()

    @property
    def applied(self) -> bool:
        return bool(self._applied)


# Where a replaced function keeps the function it replaced.
ORIGINAL = "__pg_original__"


class FunctionPatch:
    """Replaces the module-level function ``name`` in each module of
    ``homes`` that binds it (the defining module first), with
    ``make(original)``, and puts the original back on :meth:`remove`. For
    functions a library calls, and its users call, by module attribute
    (``urllib3.make_headers``, ``aiohttp.encode_basic_auth``); a reference
    taken before :meth:`install` keeps the original. Installing from two
    threads at once patches, and restores, once."""

    def __init__(
        self, name: str, homes: tuple[str, ...], make: Callable[[Callable[..., Any]], Callable[..., Any]]
    ) -> None:
        self.name = name
        self.homes = homes
        self.make = make
        self._lock = threading.Lock()

    def install(self) -> None:
        with self._lock:
            original = getattr(sys.modules.get(self.homes[0]), self.name, None)
            if original is None or hasattr(original, ORIGINAL):
                return
            replacement = self.make(original)
            setattr(replacement, ORIGINAL, original)
            for home in self.homes:
                module = sys.modules.get(home)
                if module is not None and getattr(module, self.name, None) is original:
                    setattr(module, self.name, replacement)

    def remove(self) -> None:
        with self._lock:
            for home in self.homes:
                module = sys.modules.get(home)
                original = getattr(getattr(module, self.name, None), ORIGINAL, None)
                if module is not None and original is not None:
                    setattr(module, self.name, original)
