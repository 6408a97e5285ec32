"""Writes: an ``INSERT``, ``UPDATE`` or ``DELETE`` is checked before it runs.

- What its SQL reads of declared columns into what it stores or hands
  back (``insert(...).from_select(select(Post.body))``, an ``UPDATE`` whose
  values read a declared column, ``RETURNING``) is a read, of several
  tenants' rows: under a current purpose that may not hold those
  categories it is refused before it reaches the database, and a zone
  learns them. Its ``WHERE`` is not: it picks rows, as a select's does
  (the ORM's own UPDATE and DELETE find rows by their primary key, which
  may be a declared column).
- A labelled value stored in a column that declares no category (bound as a
  parameter, or copied in SQL from a declared column) will read back
  unlabelled: no rule forbids storing it, so it is said once per column and
  categories on the ``purposeguard`` logger, naming neither value nor row.

A table or view made from a select (``CreateTableAs``, ``CreateView``)
reads what its select reads, and what it holds reads back unlabelled: both
checked and said the same way.

What a statement reads and which of its target columns declare nothing
depend on its shape only: worked out once per statement cache key.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from purposeguard._context import MIXED_TENANT
from purposeguard._labels import NO_LABELS, label, labels_of
from purposeguard._state import on_reset

from ._declarations import _STATE, _table
from ._lineage import _columns_in
from ._plans import _cache_key, _Declared, _Members, _positions, _resolved, keep_plan

logger = logging.getLogger("purposeguard")

# The statement attributes that are not read into what it stores or
# returns: the target table (its columns are named as targets), the ORM's
# own options, and the WHERE criteria that pick the rows.
_NOT_READ = frozenset(
    {"table", "_with_options", "_propagate_attrs", "_compile_state_funcs", "_hints", "_where_criteria"}
)
# Tables Alembic's batch mode copies a table through (a declared column
# copied into its temporary twin is the same data, moved back at once).
_ALEMBIC_COPY = "_alembic_tmp_"


class _Write:
    """What one statement shape reads and where it stores."""

    __slots__ = ("reads", "copies", "targets")

    def __init__(
        self,
        reads: tuple[str, ...],
        copies: tuple[tuple[str, tuple[str, ...]], ...],
        targets: dict[str, str],
    ) -> None:
        # Categories of the declared columns its SQL reads.
        self.reads = reads
        # ("table.column", categories): declared columns copied in SQL into a
        # column that declares nothing.
        self.copies = copies
        # Parameter name -> "table.column" of the target columns that declare
        # nothing (by column key, and by the name of a bindparam() set into one).
        self.targets = targets


_NOTHING = _Write((), (), {})


def _is_write(statement: Any) -> bool:
    if getattr(statement, "is_dml", False):
        return True
    # lambda_stmt(lambda: update(...)) says is_dml of its own (False).
    return bool(getattr(statement, "_is_lambda_element", False) and statement._resolved.is_dml)


def _check_write(statement: Any, parameters: Any) -> None:
    """Run before ``statement`` (an INSERT, UPDATE or DELETE) is executed."""
    statement = _resolved(statement)
    write = _write(statement)
    if write.reads:
        # A value of these categories read now, of no one tenant: the source
        # check under the current purpose (refused before the SQL runs), and
        # the zone learns them.
        label(None, *write.reads, tenant=MIXED_TENANT)
    for target, categories in write.copies:
        _say_stored(target, categories)
    if write.targets:
        _check_stored(statement, parameters, write)


# Schema statements that copy a select's rows (CREATE TABLE ... AS) or keep
# it to be read later (CREATE VIEW): SQLAlchemy 2.1's CreateTableAs, CreateView.
_COPYING_DDL = frozenset({"create_table_as", "create_view"})


def _is_copy(statement: Any) -> bool:
    return getattr(statement, "__visit_name__", None) in _COPYING_DDL


def _check_copy(statement: Any) -> None:
    """Run before a CREATE TABLE ... AS or CREATE VIEW: what its select reads
    of declared columns is a read (as an INSERT ... SELECT's is), and the
    table or view it makes declares nothing, so it is said as data stored
    where it reads back unlabelled."""
    selected = getattr(statement, "selectable", None)
    if selected is None:
        return
    found: set[str] = set()
    for columns in _positions(selected) or ():
        found |= _categories_of_position(columns)
    if not found:
        return
    categories = tuple(sorted(found))
    label(None, *categories, tenant=MIXED_TENANT)
    made = getattr(getattr(statement, "table", None), "name", None) or getattr(statement, "table_name", "?")
    _say_stored(f"{made} (made from a select)", categories)


def _write(statement: Any) -> _Write:
    key = _cache_key(statement)
    if key is not None:
        found = _STATE.plans.get((_WRITES, key))
        if found is not None:
            return found  # type: ignore[no-any-return]
    epoch = _STATE.epoch
    write = _analysed(statement)
    if key is not None:
        keep_plan((_WRITES, key), write, epoch)
    return write


_WRITES = "write"


def _analysed(statement: Any) -> _Write:
    from sqlalchemy.sql import ClauseElement
    from sqlalchemy.sql.visitors import InternalTraversal

    reads: set[str] = set()
    proposed = _proposed_row(statement)
    values_kinds = (InternalTraversal.dp_dml_values, InternalTraversal.dp_dml_multi_values)
    for name, kind in getattr(statement, "_traverse_internals", ()):
        if name in _NOT_READ:
            continue
        value = getattr(statement, name, None)
        if kind in values_kinds:
            # The values set, never the columns they are set into.
            elements: Iterable[Any] = [v for _column, v in _pairs(statement, value)]
        elif isinstance(value, ClauseElement):
            elements = (value,)
        elif isinstance(value, (tuple, list)):
            elements = value
        else:
            continue
        for element in elements:
            if isinstance(element, ClauseElement):
                reads.update(_categories_read(element, proposed))
    table = _target_table(statement)
    if table is None or str(getattr(table, "name", "")).startswith(_ALEMBIC_COPY):
        return _Write(tuple(sorted(reads)), (), {}) if reads else _NOTHING
    undeclared = _undeclared_columns(table)
    copies: dict[str, set[str]] = {}
    targets: dict[str, str] = {}
    for column_key, name in undeclared.items():
        targets[column_key] = name
    for column, value in _pairs(statement, getattr(statement, "_values", None)):
        name = undeclared.get(_key_of(column))
        if name is None:
            continue
        if isinstance(value, ClauseElement):
            found = _categories_read(value)
            if found:
                copies.setdefault(name, set()).update(found)
            bind_key = getattr(value, "key", None)
            if _is_named_bind(value) and isinstance(bind_key, str):
                targets[bind_key] = name
    selected = getattr(statement, "select", None)
    names = getattr(statement, "_select_names", None)
    if selected is not None and names:
        for column_name, columns in zip(names, _positions(selected) or (), strict=False):
            name = undeclared.get(_key_of(column_name))
            found = _categories_of_position(columns)
            if name is not None and found:
                copies.setdefault(name, set()).update(found)
    return _Write(
        tuple(sorted(reads)),
        tuple((name, tuple(sorted(found))) for name, found in copies.items()),
        targets,
    )


def _proposed_row(statement: Any) -> frozenset[int]:
    """The row an upsert proposes (``excluded`` of PostgreSQL and SQLite,
    ``inserted`` of MySQL, aliases of the target table by those names): its
    columns hold the values being written, not anything stored."""
    from sqlalchemy.sql import visitors
    from sqlalchemy.sql.selectable import Alias

    clause = getattr(statement, "_post_values_clause", None)
    if clause is None:
        return frozenset()
    found = set()
    for node in visitors.iterate(clause):
        table = getattr(node, "table", None)
        if isinstance(table, Alias) and table.name in ("excluded", "inserted"):
            found.add(id(table))
    return frozenset(found)


def _categories_read(element: Any, proposed: frozenset[int] = frozenset()) -> set[str]:
    found: set[str] = set()
    for read in _columns_in(element):
        if read.origin & proposed:
            continue
        categories = _table(read.table).columns.get(read.name)
        if categories:
            found.update(categories)
    return found


def _categories_of_position(columns: list[Any]) -> set[str]:
    found: set[str] = set()
    for column in columns:
        if type(column) is _Declared:
            found.update(column.categories)
        elif type(column) is _Members:
            for member in column.per_member:
                found.update(_categories_of_position(member))
        else:
            found.update(_table(column.table).columns.get(column.name) or ())
    return found


def _target_table(statement: Any) -> Any:
    from sqlalchemy.sql.schema import Table

    if not (getattr(statement, "is_insert", False) or getattr(statement, "is_update", False)):
        return None
    table = getattr(statement, "table", None)
    deannotate = getattr(table, "_deannotate", None)
    table = deannotate() if deannotate is not None else table
    return table if isinstance(table, Table) else None


def _undeclared_columns(table: Any) -> dict[str, str]:
    """Column key -> "table.column" of the columns of ``table`` that declare no category."""
    declared = _table(table).columns
    owner = str(getattr(table, "fullname", None) or table.name)
    return {column.key: f"{owner}.{column.name}" for column in table.columns if column.name not in declared}


def _key_of(column: Any) -> Any:
    return column if isinstance(column, str) else getattr(column, "key", None)


def _is_named_bind(value: Any) -> bool:
    from sqlalchemy.sql.elements import BindParameter

    # bindparam("body"): its value is given at execution under that name.
    return isinstance(value, BindParameter) and not value.unique


def _pairs(statement: Any, values: Any) -> list[tuple[Any, Any]]:
    """(column, value) of a statement's ``values()``: one row's, or each
    row's of a multi-row ``values([...])``."""
    if not values:
        return []
    if isinstance(values, Mapping):
        return list(values.items())
    pairs: list[tuple[Any, Any]] = []
    columns = list(getattr(getattr(statement, "table", None), "columns", ()))
    for rows in values:
        for row in rows:
            if isinstance(row, Mapping):
                pairs.extend(row.items())
            elif isinstance(row, (tuple, list)):
                pairs.extend(zip(columns, row, strict=False))
    return pairs


def _check_stored(statement: Any, parameters: Any, write: _Write) -> None:
    """Labelled values bound into target columns that declare nothing."""
    from sqlalchemy.sql import ClauseElement, visitors
    from sqlalchemy.sql.elements import BindParameter

    targets = write.targets
    for column, value in _pairs(statement, getattr(statement, "_values", None)):
        name = targets.get(_key_of(column))
        if name is None:
            continue
        if type(value) is BindParameter:
            # What values() makes of a plain value: its value is the one stored.
            _check_value(name, value.value)
        elif isinstance(value, ClauseElement):
            for node in visitors.iterate(value):
                if isinstance(node, BindParameter):
                    _check_value(name, node.value)
        else:
            _check_value(name, value)
    if isinstance(parameters, Mapping):
        _check_row(parameters, targets)
    elif isinstance(parameters, (list, tuple)):
        for row in parameters:
            if isinstance(row, Mapping):
                _check_row(row, targets)


def _check_row(row: Mapping[str, Any], targets: dict[str, str]) -> None:
    for key, value in row.items():
        if type(value) in NO_LABELS:
            continue
        name = targets.get(key)
        if name is not None:
            _check_value(name, value)


def _check_value(name: str, value: Any) -> None:
    if type(value) in NO_LABELS:
        return
    kind = getattr(type(value), "_pg_kind", None)
    found = kind.labels if kind is not None else labels_of(value)
    if found:
        _say_stored(name, tuple(sorted(found)))


# ("table.column", categories) said already: once per process (and after
# pg.testing.reset(), once again).
_SAID: set[tuple[str, tuple[str, ...]]] = set()
_SAID_LOCK = threading.Lock()
# Past this many, what was said is forgotten and may be said again.
SAID_LIMIT = 4096


def _say_stored(name: str, categories: tuple[str, ...]) -> None:
    topic = (name, categories)
    if topic in _SAID:
        return
    with _SAID_LOCK:
        if topic in _SAID:
            return
        if len(_SAID) >= SAID_LIMIT:
            _SAID.clear()
        _SAID.add(topic)
    logger.warning(
        "purposeguard: a value labelled %s is stored in %s, which declares no category: it will read "
        'back unlabelled; declare the column (pg.Category in its Mapped[...] annotation, or info={"purposeguard": ...})',
        ", ".join(categories),
        name,
    )


def _forget_said() -> None:
    with _SAID_LOCK:
        _SAID.clear()


on_reset("sqlalchemy stored values", _forget_said)
