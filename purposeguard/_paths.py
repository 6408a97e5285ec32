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


# Plain functions in place of pathlib's (not wrapt's wrappers): every path
# built in the process goes through them, and a wrapper doubled the cost of
# ``Path("a") / "b"``; these add one loop over the parts.


def _parse_parts_of(original: Any) -> Any:
    # Python 3.10, 3.11: _Flavour.parse_parts(parts), every part of a new
    # path (also with_name, with_suffix, relative_to).
    def parse_parts(self: Any, parts: Any) -> Any:
        for part in parts:
            if type(part) is not str and isinstance(part, str):
                return original(self, [_plain(part) for part in parts])
        return original(self, parts)

    return parse_parts


def _parse_path_of(original: Any) -> Any:
    # Python 3.12 and later: the classmethod PurePath._parse_path(path), the
    # joined path text; ``original`` is its function, called with the class
    # it was called on (a Windows path parses its own way).
    def parse_path(cls: Any, path: Any) -> Any:
        return original(cls, _plain(path) if type(path) is not str else path)

    return classmethod(parse_path)


@wrapt.when_imported("pathlib")
def _hook(pathlib: Any) -> None:
    flavour = getattr(pathlib, "_Flavour", None)
    if flavour is not None and "parse_parts" in vars(flavour):
        flavour.parse_parts = _parse_parts_of(flavour.parse_parts)
    elif "_parse_path" in vars(pathlib.PurePath):
        pathlib.PurePath._parse_path = _parse_path_of(vars(pathlib.PurePath)["_parse_path"].__func__)
