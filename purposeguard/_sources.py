"""Reading is a use: the runtime's side of the ``via="source"`` check.

The labels layer calls :data:`purposeguard._labels.SOURCE`'s ``check`` when
a value is labelled (``label()``, ``@produces``, annotated fields, ORM
loads) while a purpose is current; this module installs it, so the labels
layer never imports the runtime.
"""

from __future__ import annotations

import sys

from ._context import FLAGS, ZONE
from ._labels import SOURCE
from ._runtime import frame_name, get_guard

__all__ = ["install"]

# Frames that read on the application's behalf: the violation names the
# application code that asked for the data, not the machinery between.
_MACHINERY = (
    "purposeguard",
    "pydantic",
    "pydantic_core",
    "attr",
    "dataclasses",
    "sqlalchemy",
    "django",
    "jinja2",
    "functools",
    "contextlib",
    "typing",
)


def reader_name() -> str:
    """The first frame above the labelling machinery."""
    frame = sys._getframe(2)
    for _ in range(64):
        module = str(frame.f_globals.get("__name__", ""))
        if not module.startswith(_MACHINERY) or module.startswith("purposeguard.tests"):
            return frame_name(frame)
        if frame.f_back is None:
            break
        frame = frame.f_back
    return frame_name(frame)


def check_read(labels: frozenset[str], purpose: str, tenant: str | None) -> bool:
    """Check categories labelled while ``purpose`` is current; True when the
    policy allows them without consent (the caller remembers that)."""
    guard = get_guard()
    if guard.allowed_without_consent(labels, purpose):
        return True
    if tenant is None:
        state = ZONE.get() if FLAGS.zones else None
        tenant = state.tenant if state is not None else None
    decision = guard.check_labels(labels, purpose, via="source", function=reader_name, tenant=tenant)
    return decision.allowed and not decision.consent


def install() -> None:
    SOURCE.check = check_read
