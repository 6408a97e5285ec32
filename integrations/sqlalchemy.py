"""Labels at the source for SQLAlchemy 2, ORM and Core.

>>> from typing import Annotated
>>> from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
>>> import purposeguard as pg
>>> from purposeguard.integrations import sqlalchemy as pg_sqlalchemy
>>> class Base(DeclarativeBase): ...
>>> class Post(Base):
...     __tablename__ = "posts"
...     __purposeguard_tenant__ = "tenant"          # the attribute holding the row's tenant
...     id: Mapped[int] = mapped_column(primary_key=True)
...     tenant: Mapped[str]
...     body: Mapped[Annotated[str, pg.Category("customer_data.content.email")]]
...     note: Mapped[str] = mapped_column(info={"purposeguard": "customer_data"})
>>> pg_sqlalchemy.instrument()
>>> pg_sqlalchemy.uninstrument()

One declaration per column: a ``Category`` in the ``Mapped[...]``
annotation, or ``mapped_column(info={"purposeguard": "..."})`` (a key or a
list of keys; Core tables say the same with ``Column(..., info=...)`` and
name their tenant column with ``Table(..., info={"purposeguard_tenant": "tenant"})``).
Nothing is added to the schema: no column type changes, so Alembic's
autogenerate and the database see exactly the tables they saw before.

Once instrumented:

- attribute values of instances loaded or refreshed from the database
  (queries, lazy and deferred loads, ``session.refresh``) are labelled with
  their column's categories and the row's tenant (the value of the column
  ``__purposeguard_tenant__`` names); the instance itself carries the union;
- rows of ``select(Post.id, Post.body)`` (through a ``Session`` or a Core
  ``Connection``) carry the same labels in the positions of labelled
  columns, and so do SQL expressions computed from a labelled column
  (``func.lower(Post.body)``): derived in SQL from content is still content.
  The tenant of such a row comes from the tenant column when the row
  selects it (through the same table, alias or subquery); otherwise, and
  for a value computed from two rows, its tenant is several tenants'
  (``"(several tenants)"``), so no one tenant's consent, not the request's
  either, can widen its use: select the tenant column where consent should
  apply. A column of a subquery, alias, CTE, union or table-valued
  function is labelled as the table columns it was selected from (also
  through expressions inside the subquery), and so are rows of
  ``INSERT``/``UPDATE``/``DELETE ... RETURNING`` and ``Connection.scalar``;
  a statement nested too deep to follow is refused before it runs. Rows of
  such selects are read in full before they are returned (``yield_per``
  and async ``stream`` buffer);
- a ``column_property`` is labelled with the categories declared on it
  (``info=`` or its annotation), else with those of the columns its
  expression reads (``func.lower(body)``, a correlated subquery);
- not labelled: textual SQL (``text()``, ``exec_driver_sql``, and
  ``literal_column``/``column()`` names, which name no declared column),
  lightweight ``table()`` constructs, and the members of a composite
  selected as one column (select its columns instead); a ``Bundle``'s
  members are labelled each as its column;
- values the database makes during a flush (server defaults, computed
  columns) are labelled as they are fetched;
- labelling goes through :func:`purposeguard.label`, so a value loaded while
  a purpose is current is checked like any other labelled value;
- a request's zone learns a loaded instance's categories when a labelled
  attribute is read (``post.body``), not when the row is loaded: the login
  layer loading the user does not taint a request that never reads the
  user's personal fields. Rows of ``select(Post.body)`` are reads: their
  categories reach the zone as they are returned. Reading the instance's
  ``__dict__`` directly hands out the labelled values without telling the
  zone.

Labelled values bound as parameters (writes, WHERE clauses) are ``str``,
``bytes``, ``int`` or ``float`` subclasses: the database stores the plain
value. A ``Category`` with a key the taxonomy does not define, and a model
whose ``__purposeguard_tenant__`` names no column, fail in
:func:`instrument` (or when a model defined later is mapped), naming the
class and the field. Needs ``pip install 'purposeguard[sqlalchemy]'``.
"""

from __future__ import annotations

import contextvars
import threading
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

from purposeguard._context import FLAGS, MIXED_TENANT, ZONE, ZoneState
from purposeguard._errors import PolicyError, PurposeGuardError, UnknownKeyError
from purposeguard._labels import (
    EMPTY,
    KEYS,
    _label_object,
    _resolve,
    _tenant_on,
    annotated_fields,
    label,
    register_foreign,
    unregister_foreign,
)
from purposeguard._state import remember

from . import require
from ._patch import Patcher

__all__ = ["SUPPORTED", "instrument", "is_instrumented", "uninstrument"]

# The SQLAlchemy releases this integration was tried against (major, minor).
SUPPORTED = ((2, 0), (2, 1))

INFO_KEY = "purposeguard"
# The tenant of a table whose model keeps its rows' tenant in another table
# (a subclass under joined inheritance): its values' tenant is not read.
_ELSEWHERE = "(the tenant column is in another table)"
# Tables whose declarations are remembered; past it the oldest eighth is read again when next selected.
TABLES_LIMIT = 4096
TABLE_TENANT_KEY = "purposeguard_tenant"


class _Model:
    """What one mapped class declares: labelled attributes and its tenant attribute."""

    __slots__ = ("fields", "tenant", "categories", "undeclared", "loud", "of_other_rows")

    def __init__(
        self,
        fields: tuple[tuple[str, tuple[str, ...]], ...],
        tenant: str | None,
        undeclared: bool = False,
        of_other_rows: frozenset[str] = frozenset(),
    ) -> None:
        self.fields = fields
        self.tenant = tenant
        # column_property values computed from other tables' rows (a
        # correlated subquery): not the row's own, so not of its tenant.
        self.of_other_rows = of_other_rows
        # Some categories come from column info only (labels_of(instance) cannot see them).
        self.undeclared = undeclared
        # Loads tell the zone at once: an attribute could not be made to tell it on read.
        self.loud = False
        found: set[str] = set()
        for _key, categories in fields:
            found.update(categories)
        self.categories = tuple(sorted(found))


class _Table:
    """What one table declares, for rows: column name -> categories, and the tenant column."""

    __slots__ = ("table", "columns", "tenant")

    def __init__(self, table: Any, columns: dict[str, tuple[str, ...]], tenant: str | None) -> None:
        self.table = table
        self.columns = columns
        self.tenant = tenant


class _State:
    """Everything this integration keeps, with one reset."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.instrumented = False
        self.models: dict[type, _Model] = {}
        # Labelled attributes whose class was swapped for a reading one, with
        # the class each had before: put back when the models are forgotten.
        self.readers: list[tuple[Any, type]] = []
        # id(table) -> declarations; _Table.table keeps the table alive, so
        # the id stays its own. Only tables (schema objects) are kept: a
        # subquery's or alias's columns are followed to their tables. Those
        # of mapped models are kept apart, never forgotten while instrumented.
        self.declared: dict[int, _Table] = {}
        self.tables: dict[int, _Table] = {}
        # Statement cache key -> its plan (see _plan); emptied when a model
        # is declared, since a plan reads the declarations.
        self.plans: dict[Any, Any] = {}
        self.patcher = Patcher(
            "sqlalchemy.engine.base",
            [
                ("Connection", "execute", lambda *a: _connection_execute(*a)),
                # scalar() runs the statement without execute(): see _connection_scalar.
                ("Connection", "scalar", lambda *a: _connection_scalar(*a)),
            ],
        )

    def forget(self) -> None:
        for attribute, original in self.readers:
            attribute.__class__ = original
        self.readers.clear()
        self.models.clear()
        self.declared.clear()
        self.tables.clear()
        self.plans.clear()


_STATE = _State()
# Set while a Session runs a statement this integration labels itself, so the
# Connection underneath hands the ORM its own result untouched.
_IN_SESSION: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "purposeguard_sqlalchemy_session", default=False
)


def _version(text: str) -> tuple[int, int]:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return (parts + [0, 0])[0], (parts + [0, 0])[1]


def _check_version(sqlalchemy: Any) -> None:
    found = _version(str(sqlalchemy.__version__))
    if found < SUPPORTED[0]:
        raise RuntimeError(
            f"purposeguard.integrations.sqlalchemy needs SQLAlchemy 2.0 or later; found {sqlalchemy.__version__}"
        )
    if found > SUPPORTED[-1]:
        warnings.warn(
            f"purposeguard.integrations.sqlalchemy was tried with SQLAlchemy "
            f"{SUPPORTED[0][0]}.{SUPPORTED[0][1]} to {SUPPORTED[-1][0]}.{SUPPORTED[-1][1]}; "
            f"found {sqlalchemy.__version__}: check that loaded values are still labelled",
            RuntimeWarning,
            stacklevel=3,
        )


# -- declarations -------------------------------------------------------------------


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _info_categories(info: Any, owner: str, field: str) -> set[str]:
    if not info:
        return set()
    value = info.get(INFO_KEY) if hasattr(info, "get") else None
    if value is None:
        return set()
    if isinstance(value, str):
        return {value}
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(v, str) for v in value):
        return set(value)
    raise PolicyError(
        f'info={{"{INFO_KEY}": ...}} must be a category key or a list of keys, not {type(value).__name__}',
        path=owner,
        field=field,
    )


def _validated(categories: Iterable[str], owner: str, field: str) -> tuple[str, ...]:
    taxonomy = KEYS.current()
    for category in categories:
        if category not in taxonomy.categories:
            raise UnknownKeyError(category, "category", path=owner, field=field)
    return tuple(sorted(categories))


def _declare(mapper: Any) -> _Model:
    """Read and check what a mapped class declares; remember its tables' columns."""
    cls = mapper.class_
    owner = _name(cls)
    try:
        annotated = dict(annotated_fields(cls))
    except Exception:  # noqa: BLE001 - annotations that do not resolve declare nothing
        annotated = {}
    fields: list[tuple[str, tuple[str, ...]]] = []
    undeclared = False
    by_table: dict[int, tuple[Any, dict[str, tuple[str, ...]]]] = {}
    expressions: list[tuple[str, Any]] = []
    for key, column in mapper.columns.items():
        # column_property(..., info=...) keeps its info on the property.
        from_info = _info_categories(getattr(column, "info", None), owner, key) | _info_categories(
            getattr(_property(mapper, key), "info", None), owner, key
        )
        categories = from_info | set(annotated.get(key, ()))
        if not categories:
            if not _is_table_column(column):
                expressions.append((key, column))
            continue
        undeclared = undeclared or not from_info <= set(annotated.get(key, ()))
        checked = _validated(categories, owner, key)
        fields.append((key, checked))
        table = getattr(column, "table", None)
        name = getattr(column, "name", None)
        if table is not None and name is not None:
            by_table.setdefault(id(table), (table, {}))[1][name] = checked
    of_other_rows: set[str] = set()
    for key, expression in expressions:
        # column_property(func.lower(body)) or a correlated subquery: what is
        # computed in SQL from labelled columns carries their categories.
        derived, other_rows = _derived_categories(expression, by_table)
        if derived:
            fields.append((key, derived))
            undeclared = True
            if other_rows:
                of_other_rows.add(key)
    tenant = getattr(cls, "__purposeguard_tenant__", None)
    tenant_column: Any = None
    if tenant is not None:
        if not isinstance(tenant, str) or tenant not in mapper.columns:
            names = ", ".join(mapper.columns.keys()) or "none"
            raise PolicyError(
                f"__purposeguard_tenant__ = {tenant!r} names no column of the model (its columns: {names})",
                path=owner,
                field="__purposeguard_tenant__",
            )
        tenant_column = mapper.columns[tenant]
    model = _Model(tuple(fields), tenant, undeclared, frozenset(of_other_rows))
    with _STATE.lock:
        _STATE.plans.clear()
        _STATE.models[cls] = model
        _read_through(mapper, model)
        for table_id, (table, columns) in by_table.items():
            tenant_name: str | None = None
            if tenant_column is not None:
                # A subclass's own table under joined inheritance: the row's
                # tenant is in its parent's table.
                same = getattr(tenant_column, "table", None) is table
                tenant_name = tenant_column.name if same else _ELSEWHERE
            known = _STATE.declared.get(table_id)
            if known is None or known.table is not table:
                # Declared by a model: kept while instrumented (the bounded
                # cache of Core tables would forget it first).
                known = _STATE.declared[table_id] = _table_info(table)
                _STATE.tables.pop(table_id, None)
            known.columns.update(columns)
            if tenant_name is not None and (known.tenant is None or known.tenant is _ELSEWHERE):
                known.tenant = tenant_name
    return model


def _property(mapper: Any, key: str) -> Any:
    try:
        return mapper.get_property(key)
    except Exception:  # noqa: BLE001 - a column with no property of that name
        return None


def _is_table_column(column: Any) -> bool:
    from sqlalchemy.sql.schema import Table

    return isinstance(getattr(column, "table", None), Table)


def _derived_categories(
    expression: Any, by_table: dict[int, tuple[Any, dict[str, tuple[str, ...]]]]
) -> tuple[tuple[str, ...], bool]:
    """The categories of the columns an expression reads, and whether any is
    read from another table's rows (or another alias of the model's own)."""
    found: set[str] = set()
    other_rows = False
    for source in _columns_in(expression):
        own = by_table.get(id(source.table))
        categories = own[1].get(source.name) if own is not None else None
        if categories is None:
            # Another model's (declared already, see instrument) or a Core table's.
            categories = _table(source.table).columns.get(source.name)
        if categories:
            found.update(categories)
            # Not this row's: another table's, another alias of its own (a
            # correlated subquery), or many rows' (an aggregate).
            other_rows = (
                other_rows
                or own is None
                or source.other_rows
                or source.origin != frozenset({id(source.table)})
            )
    return tuple(sorted(found)), other_rows


def _model(cls: type, mapper: Any) -> _Model:
    model = _STATE.models.get(cls)
    if model is None:
        model = _declare(mapper)
    return model


def _table(table: Any) -> _Table:
    known = _STATE.declared.get(id(table)) or _STATE.tables.get(id(table))
    if known is not None and known.table is table:
        return known
    entry = _table_info(table)
    with _STATE.lock:
        remember(_STATE.tables, id(table), entry, TABLES_LIMIT)
    return entry


def _table_info(table: Any) -> _Table:
    """What a table's own ``info`` declares (a Core table, or one no mapper maps)."""
    owner = str(getattr(table, "fullname", None) or getattr(table, "name", "table"))
    columns: dict[str, tuple[str, ...]] = {}
    for column in getattr(table, "columns", ()):
        categories = _info_categories(getattr(column, "info", None), owner, column.name)
        if categories:
            columns[column.name] = _validated(categories, owner, column.name)
    tenant = (getattr(table, "info", None) or {}).get(TABLE_TENANT_KEY)
    if tenant is not None and (not isinstance(tenant, str) or tenant not in table.columns):
        raise PolicyError(
            f"info={{{TABLE_TENANT_KEY!r}: {tenant!r}}} names no column of the table",
            path=owner,
            field=TABLE_TENANT_KEY,
        )
    return _Table(table, columns, tenant)


# -- instances ---------------------------------------------------------------------


def _tenant(value: Any) -> str | None:
    if value is None:
        return None
    return value if type(value) is str else str(value)


def _label_instance(state: Any, attrs: Iterable[str] | None) -> None:
    model = _STATE.models.get(state.class_) or _declare(state.mapper)
    if not model.fields:
        return
    values = state.dict
    tenant = values.get(model.tenant) if model.tenant is not None else None
    if tenant is not None and type(tenant) is not str:
        tenant = str(tenant)
    wanted = None if attrs is None else set(attrs)
    for key, categories in model.fields:
        if wanted is not None and key not in wanted:
            continue
        value = values.get(key)
        if value is not None:
            # Straight into the instance dict: the ORM sees no change to flush.
            whose = MIXED_TENANT if key in model.of_other_rows else tenant
            values[key] = label(value, *categories, tenant=whose)
    if model.undeclared:
        # Categories given only in column info are not in the class's
        # annotations: the instance carries them (and the tenant) itself, for
        # checks on the whole object. Its values were labelled, and checked,
        # one by one already.
        obj = state.obj()
        if obj is not None:
            _label_object(obj, _resolve(model.categories, tenant))


def _quietly(attrs: Iterable[str] | None, state: Any) -> None:
    """Label a loaded instance without telling the request's zone: loading a
    row is not yet a flow (the reading attribute tells the zone when a value
    is read). The labels still pass the source check under the current
    purpose, in a scratch zone with the request's tenant and categories that
    records flows where the request's zone does."""
    outer = ZONE.get() if FLAGS.zones else None
    model = _STATE.models.get(state.class_) or _declare(state.mapper)
    if not model.fields:
        return
    if outer is None or model.loud:
        _label_instance(state, attrs)
        return
    token = ZONE.set(outer.scratch())
    try:
        _label_instance(state, attrs)
    finally:
        ZONE.reset(token)


def _on_load(state: Any, _context: Any) -> None:
    _quietly(None, state)


def _on_refresh(state: Any, _context: Any, attrs: Iterable[str] | None) -> None:
    _quietly(attrs, state)


def _on_refresh_flush(state: Any, _flush_context: Any, attrs: Iterable[str] | None) -> None:
    # Values the database made during a flush (server defaults, computed
    # columns, fetched with RETURNING or a SELECT): loaded, so labelled. The
    # values the application set itself are left as it set them.
    _quietly(attrs or (), state)


_READER: list[type] = []


def _reader_base() -> type:
    """The attribute class of labelled columns: SQLAlchemy's own, plus telling
    the zone what a read hands out (built once, after SQLAlchemy is imported)."""
    if _READER:
        return _READER[0]
    from sqlalchemy.orm.attributes import InstrumentedAttribute

    class ReadingAttribute(InstrumentedAttribute[Any]):
        __slots__ = ()
        inherit_cache = True
        # Set on the per-column subclasses: the column's categories and the
        # model's tenant attribute, for values that cannot carry a label.
        _pg_labels: frozenset[str] = frozenset()
        _pg_tenant: str | None = None

        def __get__(self, instance: Any, owner: Any) -> Any:
            if instance is None:
                return self
            # SQLAlchemy's own fast path (a loaded value in the instance's
            # dict), inlined: this runs on every read of a declared column.
            values = instance.__dict__
            key = self.key
            if key in values and self.impl.supports_population:
                value = values[key]
            else:
                value = InstrumentedAttribute.__get__(self, instance, owner)
            if FLAGS.zones and value is not None:
                zone = ZONE.get()
                if zone is not None:
                    kind = getattr(type(value), "_pg_kind", None)
                    if (
                        kind is None
                        or not kind.labels <= zone.categories
                        or ((tenant := _tenant_on(value)) is not None and tenant not in zone.owners)
                    ):
                        _note_read(zone, type(self), instance, value)
            return value

    _READER.append(ReadingAttribute)
    return ReadingAttribute


def _note_read(zone: ZoneState, reader: Any, instance: Any, value: Any) -> None:
    kind = getattr(type(value), "_pg_kind", None) or getattr(type(value), "_pg_box", None)
    if kind is not None:
        zone.add(kind.labels, _tenant_on(value))
        return
    # None, a truth value, a proxy: the column's categories with the row's tenant.
    tenant = instance.__dict__.get(reader._pg_tenant) if reader._pg_tenant is not None else None
    zone.add(reader._pg_labels, _tenant(tenant))


def _read_through(mapper: Any, model: _Model) -> None:
    """Give each labelled column attribute of ``mapper``'s class the reading
    class. An attribute of a class of its own (a custom instrumentation)
    keeps it, and its model's loads tell the zone at once instead."""
    base = _reader_base()
    manager = mapper.class_manager
    for key, categories in model.fields:
        attribute = manager.get(key)
        if attribute is None or isinstance(attribute, base):
            continue
        original = type(attribute)
        if original is not base.__mro__[1]:
            model.loud = True
            continue
        reader = type(
            "ReadingInstrumentedAttribute",
            (base,),
            {
                "__slots__": (),
                "inherit_cache": True,
                "_pg_labels": _resolve(categories, None).labels,
                "_pg_tenant": model.tenant,
            },
        )
        attribute.__class__ = reader
        _STATE.readers.append((attribute, original))


def _on_mapper(mapper: Any, _cls: type) -> None:
    # Models defined after instrument(): checked as they are mapped.
    _declare(mapper)


# -- rows ----------------------------------------------------------------------------

# (position, categories, position of the row's tenant column or None)
# (an int; or a tenant fixed for every row, MIXED_TENANT; or None for a
# table that names no tenant column) and, for a Bundle selected as one
# column, the plan of its members.
_Plan = tuple[tuple[int, tuple[str, ...], "int | str | None", Any], ...]


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
    from sqlalchemy.sql import visitors
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
        nodes = list(visitors.iterate(element))
    except Exception:  # noqa: BLE001 - not a SQL expression: nothing to label
        return []
    other_rows = any(_of_other_rows(node) for node in nodes)
    for node in nodes:
        # ColumnClause: a table's Column, and a subquery's column of an expression.
        if isinstance(node, ColumnClause):
            column = _column_of(node)
            if column is not None:
                out.extend(_table_columns(column, depth, origin, plain=False, other_rows=other_rows))
    return out


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
    for base in getattr(column, "base_columns", ()):
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


def _is_entity(description: dict[str, Any]) -> bool:
    expr = description.get("expr")
    return isinstance(expr, type) or (
        description.get("entity") is not None and expr is description.get("entity")
    )


def _positions(statement: Any) -> list[list[Any]] | None:
    """Per position of a row, the table columns it is computed from, or None
    for a statement whose rows this integration does not label."""
    from sqlalchemy.sql import CompoundSelect, Select

    if isinstance(statement, CompoundSelect):
        # UNION and friends: a position holds what any of the selects puts there.
        merged: list[list[Any]] | None = None
        for select in statement.selects:
            part = _positions(select)
            if part is None:
                continue
            if merged is None:
                merged = [list(columns) for columns in part]
            else:
                merged = [_merged(columns, more) for columns, more in zip(merged, part, strict=False)]
        return merged
    if isinstance(statement, Select):
        descriptions: Sequence[dict[str, Any]] = statement.column_descriptions
    elif getattr(statement, "is_dml", False):
        # INSERT, UPDATE, DELETE ... RETURNING: rows read back from the table.
        descriptions = getattr(statement, "returning_column_descriptions", None) or ()
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


def _columns_or_members(expr: Any) -> list[Any]:
    from sqlalchemy.orm import Bundle

    if isinstance(expr, Bundle):
        # Its members are read out of it one by one: each is labelled as its own column.
        return [_Members([_columns_or_members(member) for member in expr.exprs])]
    columns = _columns_in(expr)
    declared = _declared_on_property(expr)
    return [*columns, declared] if declared is not None else columns


def _merged(columns: list[Any], more: list[Any]) -> list[Any]:
    """One position of a union: what either select puts there. Two bundles
    of one shape merge member by member; otherwise a bundle's members are
    read as the position's columns."""
    if (
        len(columns) == 1
        and len(more) == 1
        and type(columns[0]) is _Members
        and type(more[0]) is _Members
        and len(columns[0].per_member) == len(more[0].per_member)
    ):
        pairs = zip(columns[0].per_member, more[0].per_member, strict=True)
        return [_Members([_merged(a, b) for a, b in pairs])]
    return _flattened(columns) + _flattened(more)


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

    __slots__ = ("categories",)
    table = None  # no table: never a row's tenant column

    def __init__(self, categories: tuple[str, ...]) -> None:
        self.categories = categories


def _declared_on_property(expr: Any) -> _Declared | None:
    prop = getattr(expr, "property", None)
    cls = getattr(getattr(prop, "parent", None), "class_", None)
    key = getattr(prop, "key", None)
    model = _STATE.models.get(cls) if isinstance(cls, type) else None
    if model is None or not isinstance(key, str):
        return None
    categories = dict(model.fields).get(key)
    return _Declared(categories) if categories else None


def _plan(statement: Any) -> _Plan | None:
    """How to label the rows of ``statement``, or None. Remembered by the
    statement's cache key (SQLAlchemy's own, memoised on the statement and
    used for its compiled cache): a plan depends on the statement's shape and
    the declarations, never on bound values, and costs tens of microseconds."""
    try:
        cache_key = statement._generate_cache_key()
    except Exception:  # noqa: BLE001 - not a statement SQLAlchemy can cache: planned each time
        cache_key = None
    key = getattr(cache_key, "key", None)
    if key is not None:
        found = _STATE.plans.get(key, _UNPLANNED)
        if found is not _UNPLANNED:
            return found  # type: ignore[no-any-return]
    per_position = _positions(statement)
    plan = _plan_of(per_position) or None if per_position is not None else None
    if key is not None:
        remember(_STATE.plans, key, plan, PLANS_LIMIT)
    return plan


_UNPLANNED = object()
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
                continue
            entry = _table(column.table)
            found = entry.columns.get(column.name)
            if not found:
                continue
            categories.update(found)
            if entry.tenant is not None:
                at = (
                    _position_of(per_position, column, entry.tenant)
                    if entry.tenant is not _ELSEWHERE and not column.other_rows
                    else None
                )
                # A tenanted row's value whose tenant the row does not
                # select (or computed from two rows', or from many by an
                # aggregate or a window): whose it is is unknown, so no one
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


def _labelled_row(row: Sequence[Any], plan: _Plan) -> tuple[Any, ...]:
    values = list(row)
    for position, categories, tenant_at, members in plan:
        value = values[position]
        if value is None:
            continue
        if members is not None:
            values[position] = _labelled_bundle(value, members)
            continue
        tenant = _tenant(row[tenant_at]) if isinstance(tenant_at, int) else tenant_at
        values[position] = label(value, *categories, tenant=tenant)
    return tuple(values)


def _labelled_bundle(value: Any, members: _Plan) -> Any:
    """A Bundle's row with each member labelled as its own column."""
    from sqlalchemy.engine.result import result_tuple

    fields = getattr(value, "_fields", None)
    if not isinstance(fields, tuple) or not isinstance(value, Sequence):
        # A Bundle subclass making rows of its own: labelled as a whole, with
        # every member's categories (more than each member has, never fewer).
        return label(value, *sorted(_every_category(members)), tenant=MIXED_TENANT)
    return result_tuple(list(fields))(_labelled_row(value, members))


def _every_category(plan: _Plan) -> set[str]:
    found: set[str] = set()
    for _position, categories, _tenant_at, members in plan:
        found.update(categories)
        if members is not None:
            found.update(_every_category(members))
    return found


def _relabelled(result: Any, plan: _Plan) -> Any:
    frozen = result.freeze()
    scalars = getattr(frozen, "_source_supports_scalars", False)
    rows = [_labelled_row((item,) if scalars else item, plan) for item in frozen.data]
    relabelled = frozen.with_new_rows(rows)()
    # The execution context async streaming asks about (its rows were read
    # here), and what an INSERT, UPDATE or DELETE ... RETURNING tells besides
    # its rows, as the driver's result told it.
    context = getattr(result, "context", None)
    dml = any(getattr(context, kind, False) for kind in ("isinsert", "isupdate", "isdelete"))
    for name in _DML_ATTRIBUTES if dml else ("rowcount", "context"):
        try:
            setattr(relabelled, name, getattr(result, name))
        except Exception:  # noqa: BLE001 - a result that has none (inserted_primary_key of an UPDATE)
            continue
    return relabelled


_DML_ATTRIBUTES = (
    "rowcount",
    "context",
    "is_insert",
    "lastrowid",
    "inserted_primary_key",
    "inserted_primary_key_rows",
    "returned_defaults",
    "returned_defaults_rows",
)


def _on_orm_execute(state: Any) -> Any:
    if not (state.is_select or state.is_insert or state.is_update or state.is_delete):
        return None
    plan = _plan(state.statement)
    if plan is None:
        return None
    token = _IN_SESSION.set(True)
    try:
        result = state.invoke_statement()
    finally:
        _IN_SESSION.reset(token)
    return _relabelled(result, plan)


def _connection_execute(wrapped: Any, _instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if _IN_SESSION.get() or not _STATE.instrumented:
        return wrapped(*args, **kwargs)
    options = kwargs.get("execution_options") or {}
    if any(type(key) is str and key.startswith("_sa_orm_") for key in options):
        # The ORM reads this result itself (loads, ORM-enabled INSERT, UPDATE,
        # DELETE): its rows are labelled above it, in the session's event.
        return wrapped(*args, **kwargs)
    statement = args[0] if args else kwargs.get("statement")
    # Planned before it runs: a statement whose columns cannot be followed
    # to their tables is refused before it reaches the database.
    plan = _plan(statement)
    result = wrapped(*args, **kwargs)
    if plan is None or not getattr(result, "returns_rows", False):
        return result
    return _relabelled(result, plan)


def _connection_scalar(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if _IN_SESSION.get() or not _STATE.instrumented:
        return wrapped(*args, **kwargs)
    statement = args[0] if args else kwargs.get("statement")
    if _plan(statement) is None:
        return wrapped(*args, **kwargs)
    # The first column of the first row, as execute().scalar() reads it, so
    # that it is labelled (with its row's tenant when the row selects it).
    return instance.execute(*args, **kwargs).scalar()


class _Machinery:
    """Label reading for SQLAlchemy's per-instance state (``_sa_instance_state``):
    it holds no application data, only the way into the session, the mapper
    and the engine. Checks look into a loaded instance's attribute values
    (columns and loaded relationships) and stop there, instead of walking the
    ORM's object graph to their bound and failing closed."""

    def labels(self, value: Any, purpose: str | None) -> frozenset[str]:
        return EMPTY

    def tenant(self, value: Any) -> str | None:
        return None

    def label(self, value: Any, categories: frozenset[str], tenant: str | None) -> Any:
        raise TypeError("SQLAlchemy's instance state is not data: label the instance or its values")

    def strip(self, value: Any) -> Any:
        return value


_MACHINERY = _Machinery()


# -- switching on and off ----------------------------------------------------------------


def _all_mappers() -> list[Any]:
    from sqlalchemy.orm import mapperlib

    registries = getattr(mapperlib, "_mapper_registries", {})
    found = []
    for registry in list(registries):
        found.extend(registry.mappers)
    return found


def instrument() -> None:
    """Label values loaded through SQLAlchemy (idempotent).

    Checks every model mapped so far (unknown category keys and a missing
    tenant column raise :class:`~purposeguard.PolicyError` naming the class and
    field); models mapped later are checked as they are mapped.
    """
    sqlalchemy = require("sqlalchemy", "sqlalchemy")
    _check_version(sqlalchemy)
    from sqlalchemy import event
    from sqlalchemy.orm import InstanceState, Mapper, Session

    with _STATE.lock:
        if _STATE.instrumented:
            return
        _STATE.forget()
        mappers = _all_mappers()
        for mapper in mappers:
            _declare(mapper)  # raises before anything is switched on
        # Again, now that every model's columns are known: a column_property
        # computed from another model's columns takes their categories.
        for mapper in mappers:
            _declare(mapper)
        event.listen(Mapper, "load", _on_load, raw=True)
        event.listen(Mapper, "refresh", _on_refresh, raw=True)
        event.listen(Mapper, "refresh_flush", _on_refresh_flush, raw=True)
        event.listen(Mapper, "after_mapper_constructed", _on_mapper)
        event.listen(Session, "do_orm_execute", _on_orm_execute)
        register_foreign(InstanceState, _MACHINERY)
        _STATE.instrumented = True
    _STATE.patcher.install()


def uninstrument() -> None:
    """Stop labelling loaded values (idempotent); values labelled already keep their labels."""
    with _STATE.lock:
        if not _STATE.instrumented:
            return
        from sqlalchemy import event
        from sqlalchemy.orm import InstanceState, Mapper, Session

        unregister_foreign(InstanceState)
        event.remove(Mapper, "load", _on_load)
        event.remove(Mapper, "refresh", _on_refresh)
        event.remove(Mapper, "refresh_flush", _on_refresh_flush)
        event.remove(Mapper, "after_mapper_constructed", _on_mapper)
        event.remove(Session, "do_orm_execute", _on_orm_execute)
        _STATE.instrumented = False
        _STATE.forget()
    _STATE.patcher.remove()


def is_instrumented() -> bool:
    return _STATE.instrumented
