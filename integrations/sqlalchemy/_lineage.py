"""Which table columns an expression reads.

Followed through labels, SQL functions, subqueries, aliases, CTEs, unions and
table-valued functions down to the table columns, where the declarations
are; a column read through an aggregate or a window is a value of other rows.
Knows nothing of declarations: :mod:`._plans` and :mod:`._declarations` look
the columns up.
"""

from __future__ import annotations

from typing import Any

from purposeguard._errors import PurposeGuardError


def _column_of(expr: Any) -> Any:
    """The table column an ORM attribute or Core column stands for, or None."""
    prop = getattr(expr, "property", None)
    columns = getattr(prop, "columns", None)
    if columns is not None and len(columns) == 1:
        # The attribute's own column: of an alias for an aliased class
        # (aliased(Post).body), so a self-join's two rows stay apart.
        clause = getattr(expr, "__clause_element__", None)
        own = clause() if clause is not None else None
        expr = own if own is not None and getattr(own, "table", None) is not None else columns[0]
    deannotate = getattr(expr, "_deannotate", None)
    if deannotate is not None:
        expr = deannotate()
    if getattr(expr, "table", None) is not None and getattr(expr, "name", None) is not None:
        return expr
    return None


class _Read:
    """A table column a row position reads, and the FROM object it was
    selected through (the table itself, or an alias, subquery or CTE of it):
    a row's tenant is read from the tenant column selected through the same
    one, never from another alias of the same table (a self-join)."""

    __slots__ = ("column", "origin", "plain", "other_rows")

    def __init__(self, column: Any, origin: frozenset[int], plain: bool, other_rows: bool) -> None:
        self.column = column
        # The FROM objects (ids) the column was selected through, from the
        # outermost subquery to the table: the same for two columns of one
        # row, different for a self-join's two aliases (also inside a subquery).
        self.origin = origin
        # The position is the column itself, not an expression of it: only
        # such a position can be the row's tenant.
        self.plain = plain
        # Read through an aggregate or a window: a value of other rows.
        self.other_rows = other_rows

    @property
    def table(self) -> Any:
        return self.column.table

    @property
    def name(self) -> Any:
        return self.column.name


def _columns_in(expr: Any, depth: int = 0, origin: frozenset[int] = frozenset()) -> list[_Read]:
    """Every table column an expression is computed from (a column, a label,
    a function of columns), through subqueries, aliases and CTEs."""
    from sqlalchemy.sql.elements import ColumnClause, Label

    while isinstance(expr, Label):
        expr = expr.element  # Post.tenant.label("owner") is still the column
    found = _column_of(expr)
    if found is not None:
        return _table_columns(found, depth, origin, plain=True)
    clause = getattr(expr, "__clause_element__", None)
    element = clause() if clause is not None else expr
    out = []
    try:
        nodes = list(_nodes(element))
    except Exception:  # noqa: BLE001 - not a SQL expression: nothing to label
        return []
    other_rows = any(_of_other_rows(node) for node, _correlated in nodes)
    for node, correlated in nodes:
        # ColumnClause: a table's Column, and a subquery's column of an expression.
        if isinstance(node, ColumnClause):
            column = _column_of(node)
            if column is not None:
                # Read inside a nested SELECT (a scalar subquery, EXISTS, IN):
                # another row's, even of the same table (no alias tells the
                # two rows apart), unless that select correlates the table
                # explicitly, so the column is the outer row's own.
                nested = correlated is not None and id(column.table) not in correlated
                out.extend(
                    _table_columns(column, depth, origin, plain=False, other_rows=other_rows or nested)
                )
    return out


def _nodes(element: Any) -> list[tuple[Any, frozenset[int] | None]]:
    """Every node of an expression, with, for a node inside a nested SELECT,
    the tables every select around it correlates explicitly (``None``
    outside any nested select). Auto-correlation is decided only when the
    statement compiles: a table it might correlate counts as another row's."""
    from sqlalchemy.sql.selectable import Select, SelectBase

    out: list[tuple[Any, frozenset[int] | None]] = []
    stack: list[tuple[Any, frozenset[int] | None]] = [(element, None)]
    while stack:
        node, correlated = stack.pop()
        out.append((node, correlated))
        if isinstance(node, SelectBase):
            named = (
                frozenset(id(_deannotated(table)) for table in getattr(node, "_correlate", ()) or ())
                if isinstance(node, Select)
                else frozenset()
            )
            correlated = named if correlated is None else correlated & named
        stack.extend((child, correlated) for child in node.get_children())
    return out


def _deannotated(element: Any) -> Any:
    deannotate = getattr(element, "_deannotate", None)
    return deannotate() if deannotate is not None else element


# Aggregate functions by name (SQLAlchemy has no flag for them): a value
# they compute is of many rows, whose tenants may differ.
_AGGREGATES = frozenset(
    {
        "aggregate_strings", "array_agg", "avg", "bool_and", "bool_or", "count", "every",
        "group_concat", "json_agg", "json_group_array", "json_group_object", "json_object_agg",
        "jsonb_agg", "jsonb_object_agg", "listagg", "max", "min", "mode", "percentile_cont",
        "percentile_disc", "stddev", "stddev_pop", "stddev_samp", "string_agg", "sum",
        "var_pop", "var_samp", "variance", "xmlagg",
    }
)  # fmt: skip


def _of_other_rows(node: Any) -> bool:
    from sqlalchemy.sql.elements import FunctionFilter, Over, WithinGroup
    from sqlalchemy.sql.functions import FunctionElement

    if isinstance(node, (Over, WithinGroup, FunctionFilter)):
        return True
    return isinstance(node, FunctionElement) and str(getattr(node, "name", "")).lower() in _AGGREGATES


def _lineage(column: Any) -> frozenset[int]:
    return frozenset(
        id(table)
        for proxy in getattr(column, "proxy_set", ())
        if (table := getattr(proxy, "table", None)) is not None
    )


# Subqueries of functions of subqueries...: a statement nested deeper than
# this is refused rather than returned with labels it could not follow.
MAX_NESTING = 32


def _table_columns(
    column: Any, depth: int, origin: frozenset[int], *, plain: bool, other_rows: bool = False
) -> list[_Read]:
    """The columns of tables a column stands for: itself when it is a
    table's, else (a column of a subquery, alias, CTE or union) the table
    columns it was selected from, which is where the declarations are."""
    from sqlalchemy.sql.functions import FunctionElement
    from sqlalchemy.sql.schema import Table

    origin = origin | _lineage(column)
    if isinstance(column.table, Table):
        return [_Read(column, origin, plain, other_rows)]
    if depth >= MAX_NESTING:
        raise PurposeGuardError(
            f"purposeguard could not follow the columns of a statement nested more than {MAX_NESTING} "
            "levels deep to their tables: its rows are not returned unlabelled"
        )
    out: list[_Read] = []
    function = getattr(column.table, "element", None)
    if isinstance(function, FunctionElement):
        # A table-valued function's column (json_each(Post.data)): what the
        # function reads.
        out.extend(_columns_in(function, depth + 1, origin))
    bases = getattr(column, "base_columns", ())
    if len(bases) > 1:
        # A union's column: each select fills it from another column (or a
        # literal), so no one of them is the row's own tenant column.
        plain = False
    for base in bases:
        if base is column:
            # A column of a lightweight table() or a textual FROM: it names no
            # table that could declare anything.
            continue
        found = _column_of(base)
        if found is not None and found is not column:
            out.extend(_table_columns(found, depth + 1, origin, plain=plain, other_rows=other_rows))
        else:
            # An expression selected inside the subquery (func.lower(...)).
            inner = _columns_in(base, depth + 1, origin)
            for read in inner:
                read.other_rows = read.other_rows or other_rows
            out.extend(inner)
    return out
