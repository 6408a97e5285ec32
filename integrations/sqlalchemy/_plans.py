"""Row plans: per statement, which categories and whose tenant the values in
each position of its rows carry.

A position reads the table columns :mod:`._lineage` follows it to; the plan
looks them up in the declarations. Plans are remembered by the statement's
cache key, so a statement shape is planned once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from purposeguard._context import MIXED_TENANT
from purposeguard._state import remember

from ._declarations import _ELSEWHERE, _STATE, _ZONES, QUERY_EXPRESSION, _table
from ._lineage import _columns_in, _Read

# (position, categories, position of the row's tenant column or None)
# (an int; or a tenant fixed for every row, MIXED_TENANT; or None for a
# table that names no tenant column) and, for a Bundle selected as one
# column, the plan of its members.
_Plan = tuple[tuple[int, tuple[str, ...], "int | str | None", Any], ...]


def _is_entity(description: dict[str, Any]) -> bool:
    expr = description.get("expr")
    return isinstance(expr, type) or (
        description.get("entity") is not None and expr is description.get("entity")
    )


def _positions(statement: Any) -> list[list[Any]] | None:
    """Per position of a row, the table columns it is computed from, or None
    for a statement whose rows this integration does not label."""
    from sqlalchemy.sql import CompoundSelect, Select
    from sqlalchemy.sql.selectable import TextualSelect

    statement = _resolved(statement)
    if isinstance(statement, CompoundSelect):
        return _compound(statement)
    if isinstance(statement, TextualSelect):
        # text(...).columns(Post.body): the SQL is opaque, but the columns it
        # is declared to return are the table's own.
        return [_columns_or_members(column) for column in statement.column_args]
    if isinstance(statement, Select) or _is_from_statement(statement):
        descriptions: Sequence[dict[str, Any]] = statement.column_descriptions
    elif getattr(statement, "is_dml", False):
        # INSERT, UPDATE, DELETE ... RETURNING: rows read back from the table.
        try:
            descriptions = statement.returning_column_descriptions
        except AttributeError:
            # The ORM's descriptions fail on an expression (returning
            # func.lower(Note.body)): read what the statement returns.
            return _returned(statement)
        if not descriptions:
            return None
    else:
        return None
    per_position: list[list[Any]] = []
    for description in descriptions:
        expr = description.get("expr")
        if _is_entity(description) or getattr(expr, "is_aliased_class", False):
            per_position.append([])  # instances are labelled by the load event
        else:
            per_position.append(_columns_or_members(expr))
    return per_position


def _returned(statement: Any) -> list[list[Any]] | None:
    """Per position of an ORM statement's RETURNING rows, the columns it is
    computed from: a mapped entity (its instances, labelled by the load
    event) takes one position, any other table its every column."""
    per_position: list[list[Any]] = []
    for element in getattr(statement, "_returning", ()):
        if getattr(element, "is_selectable", False) and getattr(element, "columns", None) is not None:
            if "parententity" in getattr(element, "_annotations", {}):
                per_position.append([])
            else:
                per_position.extend(_columns_or_members(column) for column in element.columns)
        else:
            per_position.append(_columns_or_members(element))
    return per_position or None


def _resolved(statement: Any) -> Any:
    """The statement a ``lambda_stmt`` stands for (SQLAlchemy builds it from
    the lambda once per code and closure, and keeps it as ``_resolved``)."""
    if getattr(statement, "_is_lambda_element", False):
        return statement._resolved
    return statement


def _is_from_statement(statement: Any) -> bool:
    # select(Post.body).from_statement(...): the ORM's construct, in its own module.
    from sqlalchemy.orm.context import FromStatement

    return isinstance(statement, FromStatement)


def _compound(statement: Any) -> list[list[Any]] | None:
    """UNION and friends: a position holds what any of the selects puts there,
    and is the row's tenant only when every select puts the same tenant
    column there (a literal or another column in one of them would give
    its rows another row's, or a made-up, tenant)."""
    parts: list[list[list[Any]]] = []
    unknown = False
    for select in statement.selects:
        part = _positions(select)
        if part is None:
            unknown = True
        else:
            parts.append(part)
    if not parts:
        return None
    width = min(len(part) for part in parts)
    return [_merged([part[position] for part in parts], unknown) for position in range(width)]


def _merged(per_part: list[list[Any]], unknown: bool = False) -> list[Any]:
    """One position of a union: what each select puts there. Bundles of one
    shape merge member by member; otherwise a bundle's members are read as
    the position's columns."""
    first = per_part[0]
    if all(
        len(columns) == 1
        and type(columns[0]) is _Members
        and len(columns[0].per_member) == len(first[0].per_member)
        for columns in per_part
    ):
        members = [
            [columns[0].per_member[i] for columns in per_part] for i in range(len(first[0].per_member))
        ]
        return [_Members([_merged(member, unknown) for member in members])]
    if not unknown and all(len(columns) == 1 and _same_read(columns[0], first[0]) for columns in per_part):
        return [first[0]]
    merged = [column for columns in per_part for column in _flattened(columns)]
    # Never alone in its position, so never taken for the row's tenant column.
    return [*merged, _NOT_TENANT]


def _same_read(one: Any, other: Any) -> bool:
    return (
        type(one) is _Read
        and type(other) is _Read
        and one.plain
        and other.plain
        and not one.other_rows
        and not other.other_rows
        and one.column is other.column
        and one.origin == other.origin
    )


def _columns_or_members(expr: Any) -> list[Any]:
    from sqlalchemy.orm import Bundle

    if isinstance(expr, Bundle):
        # Its members are read out of it one by one: each is labelled as its own column.
        return [_Members([_columns_or_members(member) for member in expr.exprs])]
    columns = _columns_in(expr)
    declared = _declared_on_property(expr)
    return [*columns, declared] if declared is not None else columns


def _flattened(columns: list[Any]) -> list[Any]:
    out: list[Any] = []
    for column in columns:
        if type(column) is _Members:
            for member in column.per_member:
                out.extend(_flattened(member))
        else:
            out.append(column)
    return out


class _Members:
    """A ``Bundle`` selected as one column: the columns of each member."""

    __slots__ = ("per_member",)
    table = None  # no table: never a row's tenant column

    def __init__(self, per_member: list[list[Any]]) -> None:
        self.per_member = per_member


class _Declared:
    """What a model declares on a mapped attribute (a column_property's
    info, or categories derived for it), standing in a row position beside
    the table columns the expression reads."""

    __slots__ = ("categories", "of_other_rows")
    table = None  # no table: never a row's tenant column

    def __init__(self, categories: tuple[str, ...], of_other_rows: bool = False) -> None:
        self.categories = categories
        # Not the row's own (a textual expression, a model that names no
        # tenant column): several tenants', whatever else the row selects.
        self.of_other_rows = of_other_rows


# A column of a union's position that some select fills otherwise: no categories.
_NOT_TENANT = _Declared(())


def _declared_on_property(expr: Any) -> _Declared | None:
    prop = getattr(expr, "property", None)
    cls = getattr(getattr(prop, "parent", None), "class_", None)
    key = getattr(prop, "key", None)
    model = _STATE.models.get(cls) if isinstance(cls, type) else None
    if model is None or not isinstance(key, str):
        return None
    categories = dict(model.fields).get(key)
    if not categories:
        return None
    return _Declared(categories, key in model.of_other_rows or model.tenantless)


def _plan(statement: Any) -> _Plan | None:
    """How to label the rows of ``statement``, or None. Remembered by the
    statement's cache key (SQLAlchemy's own, memoised on the statement and
    used for its compiled cache): a plan depends on the statement's shape and
    the declarations, never on bound values, and costs tens of microseconds."""
    key = _cache_key(statement)
    if key is not None:
        found = _STATE.plans.get(key, _UNPLANNED)
        if found is not _UNPLANNED:
            return found  # type: ignore[no-any-return]
    epoch = _STATE.epoch
    per_position = _positions(statement)
    plan = _plan_of(per_position) or None if per_position is not None else None
    if key is not None:
        keep_plan(key, plan, epoch)
    return plan


def keep_plan(key: Any, plan: Any, epoch: int) -> None:
    """Remember a plan worked out from the declarations as they were at
    ``epoch``, unless a model was declared since (it may read differently)."""
    with _STATE.lock:
        if _STATE.epoch == epoch:
            remember(_STATE.plans, key, plan, PLANS_LIMIT)


def _cache_key(statement: Any) -> Any:
    try:
        cache_key = statement._generate_cache_key()
    except Exception:  # noqa: BLE001 - not a statement SQLAlchemy can cache: planned each time
        return None
    return getattr(cache_key, "key", None)


# An attribute's with_expression(): its categories, and whether it reads its
# own row only (then its tenant is the row's).
_Expressions = dict[str, tuple[tuple[str, ...], bool]]


def _expressions(statement: Any) -> _Expressions:
    """What each ``with_expression()`` option of ``statement`` fills its
    ``query_expression()`` attribute with, by attribute name (two options
    naming one attribute name: both's categories, of several tenants).
    Remembered by the statement's cache key, as plans are."""
    key = _cache_key(statement)
    if key is not None:
        found = _STATE.plans.get((_EXPRESSIONS, key))
        if found is not None:
            return found  # type: ignore[no-any-return]
    epoch = _STATE.epoch
    expressions: _Expressions = {}
    for option in getattr(_resolved(statement), "_with_options", ()):
        for element in getattr(option, "context", ()):
            criteria = getattr(element, "_extra_criteria", ())
            path: Any = getattr(element, "path", ())
            if getattr(element, "strategy", None) != QUERY_EXPRESSION or not criteria or not len(path):
                continue
            prop = path[-1]
            name = getattr(prop, "key", None)
            if not isinstance(name, str):
                continue
            categories, own_row = _expression_reads(criteria[0], getattr(prop, "parent", None))
            if not categories:
                continue
            if name in expressions:
                before = expressions[name][0]
                categories, own_row = tuple(sorted({*before, *categories})), False
            expressions[name] = (categories, own_row)
    if key is not None:
        keep_plan((_EXPRESSIONS, key), expressions, epoch)
    return expressions


def _expression_reads(expression: Any, mapper: Any) -> tuple[tuple[str, ...], bool]:
    """The categories of the columns ``expression`` reads, and whether it
    reads only the loaded row's own columns (not another table's, an
    alias's, a subquery's or an aggregate's, whose rows' tenants may differ)."""
    from sqlalchemy.sql import visitors
    from sqlalchemy.sql.selectable import ScalarSelect, SelectBase

    own_tables = {id(table) for table in getattr(mapper, "tables", ())}
    categories: set[str] = set()
    own_row = not any(isinstance(node, (ScalarSelect, SelectBase)) for node in visitors.iterate(expression))
    for read in _columns_in(expression):
        found = _table(read.table).columns.get(read.name)
        if not found:
            continue
        categories.update(found)
        own_row = (
            own_row
            and not read.other_rows
            and id(read.table) in own_tables
            and read.origin == frozenset({id(read.table)})
        )
    return tuple(sorted(categories)), own_row


_UNPLANNED = object()
_EXPRESSIONS = "with_expression"
# Statement shapes whose plan is remembered; past it the oldest eighth is planned again.
PLANS_LIMIT = 2048


def _plan_of(per_position: list[list[Any]]) -> _Plan:
    plan: list[tuple[int, tuple[str, ...], int | str | None, Any]] = []
    for position, columns in enumerate(per_position):
        if len(columns) == 1 and type(columns[0]) is _Members:
            members = _plan_of(columns[0].per_member)
            if members:
                plan.append((position, (), None, members))
            continue
        categories: set[str] = set()
        tenant_at: int | str | None = None
        for column in columns:
            if type(column) is _Declared:
                categories.update(column.categories)
                if column.of_other_rows:
                    tenant_at = MIXED_TENANT
                continue
            entry = _table(column.table)
            found = entry.columns.get(column.name)
            if not found:
                continue
            categories.update(found)
            if entry.tenant is not _ZONES:
                at = (
                    _position_of(per_position, column, entry.tenant)
                    if entry.tenant is not None and entry.tenant is not _ELSEWHERE and not column.other_rows
                    else None
                )
                # A tenanted row's value whose tenant the row does not
                # select (or computed from two rows', or from many by an
                # aggregate or a window), or a value of a table that names
                # no tenant column: whose it is is unknown, so no one
                # tenant's consent, not the request's either, may widen its use.
                found_at: int | str = at if at is not None else MIXED_TENANT
                tenant_at = found_at if tenant_at is None or tenant_at == found_at else MIXED_TENANT
        if categories:
            plan.append((position, tuple(sorted(categories)), tenant_at, None))
    return tuple(plan)


def _position_of(per_position: list[list[Any]], read: _Read, name: str) -> int | None:
    """The position of the row's tenant column for ``read``'s value: selected
    through the same FROM object, alone in its position."""
    for position, columns in enumerate(per_position):
        if len(columns) == 1 and type(columns[0]) is _Read:
            other = columns[0]
            if (
                other.plain
                and not other.other_rows
                and other.origin == read.origin
                and other.table is read.table
                and other.name == name
            ):
                return position
    return None
