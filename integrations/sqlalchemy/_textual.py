"""Textual SQL that reads declared tables: said once per table.

``text("select body from notes")`` and ``exec_driver_sql(...)`` hand back
what the database returns, with no columns to follow to their
declarations: their values come back unlabelled and are checked against no
purpose. That cannot be labelled, but it need not be silent: the first
statement that names a table with declared columns is said on the
``purposeguard`` logger, naming the table (never the statement, which can
quote values), with what to use instead.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from purposeguard._state import on_reset, remember

from ._declarations import _STATE

logger = logging.getLogger("purposeguard")

# Statement texts looked at already (bounded: the oldest eighth is
# forgotten past the limit, and looked at again when next met).
_LOOKED_AT: dict[str, None] = {}
_LIMIT = 4096
# Tables said already, and the pattern for the declared tables' names,
# rebuilt when the declarations change.
_SAID: set[str] = set()
_PATTERN: list[Any] = [None, None]  # [names, compiled pattern]


def _declared_names() -> frozenset[str]:
    names: set[str] = set()
    for found in (*_STATE.declared.values(), *_STATE.tables.values()):
        name = getattr(found.table, "name", None)
        if found.columns and isinstance(name, str):
            names.add(name)
    for cls, model in list(_STATE.models.items()):
        name = getattr(getattr(cls, "__table__", None), "name", None)
        if model.fields and isinstance(name, str):
            names.add(name)
    return frozenset(names)


# A read: what comes back is rows (not a schema query of the dialect's own,
# PRAGMA table_info("notes"), nor a migration's UPDATE).
_READ = re.compile(r"\A[\s(]*(?:select|with|table|values)\b", re.IGNORECASE)


def say_textual(text: Any) -> None:
    """Say the declared tables a textual read names, once each."""
    if type(text) is not str or text in _LOOKED_AT:
        return
    remember(_LOOKED_AT, text, None, _LIMIT)
    if _READ.match(text) is None:
        return
    names = _declared_names()
    if not names:
        return
    if _PATTERN[0] != names:
        alternatives = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
        # A name as a whole word, bare or quoted ("notes", `notes`, [notes]).
        _PATTERN[:] = [names, re.compile(rf"(?<![\w$])({alternatives})(?![\w$])", re.IGNORECASE)]
    pattern: re.Pattern[str] = _PATTERN[1]
    found = {match.group(1).lower() for match in pattern.finditer(text)}
    for name in sorted(names):
        if name.lower() not in found or name in _SAID:
            continue
        with _STATE.lock:
            if name in _SAID:
                continue
            _SAID.add(name)
        logger.warning(
            "purposeguard: textual SQL names table %s, which has declared columns: what it reads comes "
            "back unlabelled and is checked against no purpose; select the columns with select(...) "
            "or text(...).columns(...) naming the model's columns",
            name,
        )


def forget_said() -> None:
    _SAID.clear()
    _LOOKED_AT.clear()


on_reset("sqlalchemy textual statements", forget_said)
