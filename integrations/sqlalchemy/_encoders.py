"""FastAPI's ``jsonable_encoder`` reads a loaded instance wholesale: the zone is told.

``jsonable_encoder(note)``, and a route that returns an instance with no
response model, read ``vars(note)``: the instance's ``__dict__``, not its
attributes, so the reading attribute class (see ``_reading``) never runs,
and the JSON text made from the result carries no label. The encoder is
wrapped where FastAPI binds it, once FastAPI is imported: given an
instance's ``__dict__`` (what it encodes an instance as, through its own
module's name, so also when the caller holds the encoder from before
:func:`instrument`), it first tells the request's zone what a read of each
declared attribute there would. A response model (``from_attributes``)
reads attributes one by one and needs nothing of this.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import Any

import wrapt

from .._patch import FunctionPatch
from ._declarations import _STATE
from ._reading import note_wholesale

# The module defining the encoder (which calls itself through this name)
# first, then those that bind it by name.
_HOMES = (
    "fastapi.encoders",
    "fastapi.routing",
    "fastapi.exception_handlers",
    "fastapi.openapi.utils",
    "fastapi.openapi.docs",
)
_INSTANCE_STATE = "_sa_instance_state"


def _telling(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def jsonable_encoder(obj: Any, *args: Any, **kwargs: Any) -> Any:
        if type(obj) is dict and _INSTANCE_STATE in obj and _STATE.instrumented:
            include = args[0] if args else kwargs.get("include")
            exclude = args[1] if len(args) > 1 else kwargs.get("exclude")
            note_wholesale(obj, include, exclude)
        return original(obj, *args, **kwargs)

    return jsonable_encoder


class _Encoder:
    """Wraps FastAPI's encoder when ``fastapi.encoders`` is imported (now, if
    it already is) while instrumented; :meth:`remove` puts it back."""

    def __init__(self) -> None:
        self.patch = FunctionPatch("jsonable_encoder", _HOMES, _telling)
        self._hooked = False
        self._lock = threading.Lock()

    def install(self) -> None:
        with self._lock:
            first = not self._hooked
            self._hooked = True
        if first:
            # Fires at once if FastAPI is imported already, else on its import.
            wrapt.when_imported(_HOMES[0])(self._imported)
        elif _HOMES[0] in sys.modules:
            self.patch.install()

    def _imported(self, _module: Any) -> None:
        if _STATE.instrumented:
            self.patch.install()

    def remove(self) -> None:
        self.patch.remove()


_ENCODER = _Encoder()
