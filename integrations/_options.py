"""Checking the options the integrations take from application code."""

from __future__ import annotations

from typing import Any

__all__ = ["name_list"]


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
