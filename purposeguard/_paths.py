"""Labelled text as part of a ``pathlib`` path.

pathlib interns every part of a path it parses, and ``sys.intern`` takes an
exact ``str`` only: ``Path(folder) / labelled_name`` raised ``TypeError``
(Python 3.10 and 3.11 say it through ``/`` as an unsupported operand). A
path cannot carry a label, so a labelled part is handed to pathlib as plain
text and its categories are told to the current zone, as any rebuild of a
labelled value that loses the label is (``str`` results of C code). Outside
a zone the path is plain, as such rebuilds are.
"""

from __future__ import annotations

from typing import Any

import wrapt

from ._context import FLAGS, ZONE
from ._labels import labels_of, tenant_of

__all__: list[str] = []


def _plain(value: Any) -> Any:
    """``value`` as exact ``str`` if it is labelled text, telling the zone its labels."""
    if type(value) is str or not isinstance(value, str):
        return value
    labels = labels_of(value)
    if labels and FLAGS.zones:
        state = ZONE.get()
        if state is not None:
            state.add(labels, tenant_of(value))
    return str.__str__(value)


def _parse_parts(wrapped: Any, _flavour: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # Python 3.10, 3.11: _Flavour.parse_parts(parts), every part of a new
    # path (also with_name, with_suffix, relative_to).
    if args:
        parts = args[0]
        if any(type(part) is not str and isinstance(part, str) for part in parts):
            args = (tuple(_plain(part) for part in parts), *args[1:])
    return wrapped(*args, **kwargs)


def _parse_path(wrapped: Any, _cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # Python 3.12 and later: PurePath._parse_path(path), the joined path text.
    if args and type(args[0]) is not str:
        args = (_plain(args[0]), *args[1:])
    return wrapped(*args, **kwargs)


@wrapt.when_imported("pathlib")
def _hook(pathlib: Any) -> None:
    flavour = getattr(pathlib, "_Flavour", None)
    if flavour is not None and "parse_parts" in vars(flavour):
        wrapt.wrap_function_wrapper(flavour, "parse_parts", _parse_parts)
    elif "_parse_path" in vars(pathlib.PurePath):
        wrapt.wrap_function_wrapper(pathlib.PurePath, "_parse_path", _parse_path)
