"""Textual SQL that reads declared tables: said once per table.

``text("select body from notes")``, ``exec_driver_sql(...)`` and a select
whose columns or FROM are textual (``literal_column``, a lightweight
``column()``/``table()``, ``from_statement(text(...))``) hand back what the
database returns, with no columns to follow to their declarations: their
values come back unlabelled and are checked against no purpose. That
cannot be labelled, but it need not be silent: the first statement that
names a table with declared columns is said on the ``purposeguard``
logger, naming the table (never the statement, which can quote values),
with what to use instead. A select that labels a declared column, or loads
instances, is not said: what it reads is labelled.

Textual SQL that stores rows (``INSERT``, ``UPDATE``, ``CREATE TABLE ... AS``,
``REPLACE``, ``MERGE``: a migration's ``op.execute``) and names a declared
table and one of its declared columns (or ``*``) may copy them where they
read back unlabelled, checked against no purpose: said once per table too.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from purposeguard._state import on_reset, remember

from ._declarations import _STATE
from ._plans import _cache_key, _is_entity, _is_from_statement, _plan

logger = logging.getLogger("purposeguard")

# Statement texts looked at already (bounded: the oldest eighth is
# forgotten past the limit, and looked at again when next met).
_LOOKED_AT: dict[str, None] = {}
_LIMIT = 4096
# Statement shapes (cache keys) looked at already, bounded as above.
_SHAPES: dict[Any, None] = {}
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
# A statement that stores rows, which it may copy from a declared column.
# (CREATE only as CREATE TABLE/VIEW ... AS: an index or a plain table stores nothing.)
_STORE = re.compile(
    r"\A[\s(]*(?:insert|update|replace|merge|upsert)\b|\A[\s(]*create\b.*?\bas\b",
    re.IGNORECASE | re.DOTALL,
)
_NAME = re.compile(r"[A-Za-z_][\w$]*")
# Tables said already for textual SQL that stores rows.
_SAID_STORING: set[str] = set()


def _declared_columns() -> dict[str, set[str]]:
    """The declared tables' names, each with its declared columns' (lower case)."""
    found: dict[str, set[str]] = {}
    for entry in (*_STATE.declared.values(), *_STATE.tables.values()):
        name = getattr(entry.table, "name", None)
        if entry.columns and isinstance(name, str):
            found.setdefault(name, set()).update(column.lower() for column in entry.columns)
    for cls, model in list(_STATE.models.items()):
        name = getattr(getattr(cls, "__table__", None), "name", None)
        if model.fields and isinstance(name, str):
            found.setdefault(name, set()).update(key.lower() for key, _categories in model.fields)
    return found


def _say_storing(text: str) -> None:
    """Say the declared tables textual SQL that stores rows names along with
    one of their declared columns (or ``*``): once each."""
    declared = _declared_columns()
    if not declared:
        return
    names = {word.lower() for word in _NAME.findall(text)}
    every_column = "*" in text
    for table in sorted(declared):
        if table.lower() not in names or table in _SAID_STORING:
            continue
        if not every_column and not declared[table] & names:
            continue
        with _STATE.lock:
            if table in _SAID_STORING:
                continue
            _SAID_STORING.add(table)
        logger.warning(
            "purposeguard: textual SQL that stores rows names table %s and its declared columns: what it "
            "copies from them is checked against no purpose and reads back unlabelled where it lands in a "
            "column that declares no category; write it with insert()/update() and the model's columns, "
            "or declare the column it stores into",
            table,
        )


def say_textual(text: Any) -> None:
    """Say the declared tables a textual read (or a textual statement that
    stores rows) names, once each."""
    if type(text) is not str or text in _LOOKED_AT:
        return
    remember(_LOOKED_AT, text, None, _LIMIT)
    if _READ.match(text) is None:
        if _STORE.match(text) is not None:
            _say_storing(text)
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


def say_textual_statement(statement: Any, dialect: Any) -> None:
    """Say the declared tables a statement's textual SQL reads from, when it
    selects no declared column (one that does is labelled) and loads no
    instance (labelled as it loads): once per statement shape."""
    if getattr(statement, "__visit_name__", None) == "textclause":
        say_textual(getattr(statement, "text", None))
        return
    from sqlalchemy.sql import CompoundSelect, Select
    from sqlalchemy.sql.selectable import TextualSelect

    if not isinstance(statement, (Select, CompoundSelect, TextualSelect)) and not _is_from_statement(
        statement
    ):
        return
    key = _cache_key(statement)
    if key is not None:
        if key in _SHAPES:
            return
        remember(_SHAPES, key, None, _LIMIT)
    try:
        if not _holds_text(statement) or _plan(statement) is not None or _loads_instances(statement):
            return
        sql = str(statement.compile(dialect=dialect))
    except Exception:  # noqa: BLE001 - not one to look into: SQLAlchemy says what is wrong as it runs it
        return
    say_textual(sql)


def _holds_text(statement: Any) -> bool:
    """Whether what a select returns comes from textual SQL: a TextClause
    (its FROM, or the statement itself), a literal column, or a lightweight
    ``column()``/``table()`` that no declaration can be found for."""
    from sqlalchemy.sql import CompoundSelect, Select, visitors
    from sqlalchemy.sql.selectable import TextualSelect

    if isinstance(statement, TextualSelect):
        return True
    if isinstance(statement, CompoundSelect):
        return any(_holds_text(select) for select in statement.selects)
    if _is_from_statement(statement):
        inner = statement.element
        return getattr(inner, "__visit_name__", None) == "textclause" or _holds_text(inner)
    if not isinstance(statement, Select):
        return False
    # The selected columns and the FROMs, not the WHERE: what a WHERE names
    # picks rows and is not returned.
    parts = [*statement.selected_columns, *statement.get_final_froms()]
    return any(_is_textual(node) for part in parts for node in visitors.iterate(part))


def _is_textual(node: Any) -> bool:
    from sqlalchemy.sql.elements import ColumnClause, TextClause
    from sqlalchemy.sql.selectable import TableClause

    if isinstance(node, TextClause) or type(node) is TableClause:
        return True
    if not isinstance(node, ColumnClause):
        return False
    if node.is_literal:
        return node.name != "*"  # count(*), EXISTS (SELECT * ...)
    table = node.table
    return table is None or type(table) is TableClause


def _loads_instances(statement: Any) -> bool:
    descriptions = getattr(statement, "column_descriptions", ())
    return any(
        _is_entity(description) or getattr(description.get("expr"), "is_aliased_class", False)
        for description in descriptions
    )


def forget_said() -> None:
    _SAID.clear()
    _SAID_STORING.clear()
    _LOOKED_AT.clear()
    _SHAPES.clear()


on_reset("sqlalchemy textual statements", forget_said)
