"""Checking the options the integrations take from application code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["calling_module", "name_list"]

# Frames walked up at most to find the code that called: a logging or
# tracing call passes through a handful of library frames first.
CALLER_DEPTH = 24


def calling_module(depth: int, passing_through: Callable[[str], bool]) -> str | None:
    """The module of the first frame, ``depth`` frames above the caller of
    this function, that ``passing_through`` does not skip (the library the
    call goes through); None when it cannot be told."""
    frame: FrameType | None = sys._getframe(depth + 1)
    for _ in range(CALLER_DEPTH):
        if frame is None:
            return None
        module = frame.f_globals.get("__name__")
        if not isinstance(module, str):
            return None
        if not passing_through(module):
            return module
        frame = frame.f_back
    return None


def name_list(value: Any, option: str, what: str) -> list[str]:
    """The entries of ``option`` (an iterable of ``what`` names, as
    ``trusted_tracers`` and ``trusted_loggers`` take): plain ``str``, none
    empty. Errors name an entry's type, never its value, which may be
    anything, content included."""
    if isinstance(value, (str, bytes, bytearray)):
        raise TypeError(f"{option} takes an iterable of {what} names, not a single {type(value).__name__}")
    try:
        entries = list(value)
    except TypeError:
        raise TypeError(f"{option} takes an iterable of {what} names, not {type(value).__name__}") from None
    names: list[str] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise TypeError(f"{option} holds {what} names (str), not {type(entry).__name__}")
        name = str.__str__(entry)
        if not name:
            raise ValueError(f"{option} holds an empty {what} name")
        names.append(name)
    return names
