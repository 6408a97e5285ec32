"""What models and tables declare, kept in the integration's one store.

A column's categories come from its ``Mapped[...]`` annotation or its
``info=`` (a ``column_property`` without either takes those of the columns
its expression reads); a row's tenant from the column the model's
``__purposeguard_tenant__`` (or a Core table's ``info``) names. Checked as
each model is declared.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

from purposeguard._errors import PolicyError, UnknownKeyError
from purposeguard._labels import KEYS, annotated_fields
from purposeguard._state import on_reset, remember

from ._lineage import _columns_in
from ._reading import _read_through

logger = logging.getLogger("purposeguard")

INFO_KEY = "purposeguard"
# The tenant of a table whose model keeps its rows' tenant in another table
# (a subclass under joined inheritance): its values' tenant is not read.
_ELSEWHERE = "(the tenant column is in another table)"
# The tenant of a table the application says is one tenant's, whichever
# reads it (``__purposeguard_tenant__ = None``, or a Core table's
# ``info={"purposeguard_tenant": None}``): a database per tenant, or an
# application with one tenant. Its values name no tenant: the zone's.
_ZONES = "(the rows are the reading zone's tenant's)"
# A model that leaves __purposeguard_tenant__ out (None is an answer).
_UNSAID = object()
# Tables whose declarations are remembered; past it the oldest eighth is read again when next selected.
TABLES_LIMIT = 4096
TABLE_TENANT_KEY = "purposeguard_tenant"
# The loader strategy of a query_expression() attribute (and of with_expression()).
QUERY_EXPRESSION = (("query_expression", True),)
# A name in SQL text: where a textual column_property names a declared column.
_IDENTIFIER = re.compile(r"[A-Za-z_][\w$]*")


class _Model:
    """What one mapped class declares: labelled attributes and its tenant attribute."""

    __slots__ = (
        "fields",
        "tenant",
        "categories",
        "undeclared",
        "loud",
        "of_other_rows",
        "expressions",
        "tenantless",
    )

    def __init__(
        self,
        fields: tuple[tuple[str, tuple[str, ...]], ...],
        tenant: str | None,
        undeclared: bool = False,
        of_other_rows: frozenset[str] = frozenset(),
        expressions: tuple[str, ...] = (),
        tenantless: bool = False,
    ) -> None:
        self.fields = fields
        self.tenant = tenant
        # Names no tenant column, and was not said to be one tenant's: its
        # values are several tenants' (a consent covers one tenant's data,
        # and nothing says whose these rows are).
        self.tenantless = tenantless
        # column_property values computed from other tables' rows (a
        # correlated subquery): not the row's own, so not of its tenant.
        self.of_other_rows = of_other_rows
        # query_expression() attributes: what with_expression() fills them
        # with is known only from the query that loads the instance.
        self.expressions = expressions
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
    """Everything this integration keeps of the declarations (and the plans
    made from them), with one reset."""

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
        # The declared tables by lower-case name: where a table reflected or
        # defined again finds its model's declarations (see _namesake).
        self.by_name: dict[str, list[_Table]] = {}
        # Counts declarations: a table entry or plan worked out while one was
        # made is not kept (it may predate the declaration).
        self.epoch = 0
        # Statement cache key -> its plan (see _plan); emptied when a model
        # is declared, since a plan reads the declarations.
        self.plans: dict[Any, Any] = {}

    def forget(self) -> None:
        for attribute, original in self.readers:
            attribute.__class__ = original
        self.readers.clear()
        self.models.clear()
        self.declared.clear()
        self.tables.clear()
        self.by_name.clear()
        self.plans.clear()
        self.epoch += 1


_STATE = _State()


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
    borrowed = False
    declares = bool(annotated) or any(
        _info_categories(getattr(column, "info", None), owner, key)
        or _info_categories(getattr(_property(mapper, key), "info", None), owner, key)
        for key, column in mapper.columns.items()
    )
    for key, column in mapper.columns.items():
        # column_property(..., info=...) keeps its info on the property.
        from_info = _info_categories(getattr(column, "info", None), owner, key) | _info_categories(
            getattr(_property(mapper, key), "info", None), owner, key
        )
        categories = from_info | set(annotated.get(key, ()))
        if not categories and not declares and _is_table_column(column):
            # A class that declares nothing, mapped to a table reflected
            # again (automap, a second MetaData): what a model declares for
            # that table holds for it.
            namesake = _namesake(column.table)
            if namesake is not None:
                from_info = set(namesake.columns.get(str(column.name).lower(), ()))
                categories = from_info
                borrowed = borrowed or bool(from_info)
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
        if not derived:
            # Written in SQL text (literal_column, text()): no column to
            # follow, so labelled by the declared names it holds, of no
            # one row (a text may read any), and said.
            derived, tables = _textual_categories(expression, by_table)
            if derived:
                other_rows = True
                _say_textual_property(owner, key, tables, derived)
        if derived:
            fields.append((key, derived))
            undeclared = True
            if other_rows:
                of_other_rows.add(key)
    said = getattr(cls, "__purposeguard_tenant__", _UNSAID)
    zones = said is None
    tenant = None if said is _UNSAID else said
    if said is _UNSAID and borrowed:
        tenant = _borrowed_tenant(mapper)
        zones = tenant is _ZONES
        if zones or tenant is _ELSEWHERE:
            tenant = None
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
    # Not mapper.column_attrs: it configures every mapper, and a relationship
    # to a class not defined yet would fail here.
    expression_keys = tuple(
        key
        for key in mapper.columns.keys()
        if getattr(_property(mapper, key), "strategy_key", None) == QUERY_EXPRESSION
    )
    model = _Model(
        tuple(fields),
        tenant,
        undeclared,
        frozenset(of_other_rows),
        expression_keys,
        tenantless=tenant is None and not zones and bool(fields),
    )
    with _STATE.lock:
        _STATE.epoch += 1
        _STATE.plans.clear()
        # Tables read before this model was declared may be its namesakes.
        _STATE.tables.clear()
        _STATE.models[cls] = model
        _read_through(mapper, model, _STATE.readers)
        for table_id, (table, columns) in by_table.items():
            tenant_name: str | None = None
            if tenant_column is not None:
                # A subclass's own table under joined inheritance: the row's
                # tenant is in its parent's table.
                same = getattr(tenant_column, "table", None) is table
                tenant_name = tenant_column.name if same else _ELSEWHERE
            elif zones:
                tenant_name = _ZONES
            known = _STATE.declared.get(table_id)
            if known is None or known.table is not table:
                # Declared by a model: kept while instrumented (the bounded
                # cache of Core tables would forget it first).
                known = _STATE.declared[table_id] = _table_info(table, namesakes=not declares)
                _STATE.tables.pop(table_id, None)
                name = getattr(table, "name", None)
                if isinstance(name, str):
                    _STATE.by_name.setdefault(name.lower(), []).append(known)
                    if columns:
                        _forget_namesakes_of(name.lower(), cls)
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


def _textual_categories(
    expression: Any, by_table: dict[int, tuple[Any, dict[str, tuple[str, ...]]]]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The categories of the declared columns that textual SQL inside
    ``expression`` names (``literal_column("notes.body")``, ``text(...)``, a
    lightweight ``column("body")``), and the tables they are of: its own
    model's columns by name, another declared table's where the text names
    that table too. Nothing can be followed through text, so this reads
    names, not SQL: a name that happens to match labels more, never less."""
    from sqlalchemy.sql import visitors
    from sqlalchemy.sql.elements import ColumnClause, TextClause
    from sqlalchemy.sql.selectable import TableClause

    texts: list[str] = []
    try:
        for node in visitors.iterate(expression):
            if isinstance(node, TextClause):
                texts.append(str(node.text))
            elif isinstance(node, ColumnClause) and (
                node.is_literal or node.table is None or type(node.table) is TableClause
            ):
                texts.append(f"{getattr(node.table, 'name', '')} {node.name}")
    except Exception:  # noqa: BLE001 - not a SQL expression: nothing textual in it
        return (), ()
    if not texts:
        return (), ()
    words = {word.lower() for word in _IDENTIFIER.findall(" ".join(texts))}
    found: set[str] = set()
    tables: set[str] = set()
    own = {id(table) for table, _columns in by_table.values()}
    candidates = [(table, columns) for table, columns in by_table.values()]
    candidates += [(known.table, known.columns) for known in list(_STATE.declared.values())]
    for table, columns in candidates:
        name = str(getattr(table, "name", ""))
        if id(table) not in own and name.lower() not in words:
            continue
        named = [categories for column, categories in columns.items() if column.lower() in words]
        for categories in named:
            found.update(categories)
        if named:
            tables.add(name)
    return tuple(sorted(found)), tuple(sorted(tables))


# Textual column_property expressions said already: (class, attribute, categories).
_SAID_TEXTUAL: set[tuple[str, str, tuple[str, ...]]] = set()


def _say_textual_property(owner: str, key: str, tables: tuple[str, ...], categories: tuple[str, ...]) -> None:
    with _STATE.lock:
        if (owner, key, categories) in _SAID_TEXTUAL:
            return
        _SAID_TEXTUAL.add((owner, key, categories))
    logger.warning(
        "purposeguard: %s.%s is a column_property written in textual SQL that names declared columns of "
        "%s: no column can be followed through it, so it is labelled %s as several tenants' data; write "
        "it with the model's columns (func.lower(Model.column)) to have it labelled with the row's tenant",
        owner,
        key,
        ", ".join(tables),
        ", ".join(categories),
    )


def _forget_said() -> None:
    _SAID_TEXTUAL.clear()


on_reset("sqlalchemy textual column properties", _forget_said)


def _model(cls: type, mapper: Any) -> _Model:
    model = _STATE.models.get(cls)
    if model is None:
        model = _declare(mapper)
    return model


def _table(table: Any) -> _Table:
    known = _STATE.declared.get(id(table)) or _STATE.tables.get(id(table))
    if known is not None and known.table is table:
        return known
    epoch = _STATE.epoch
    entry = _table_info(table)
    with _STATE.lock:
        if _STATE.epoch == epoch:
            remember(_STATE.tables, id(table), entry, TABLES_LIMIT)
    return entry


def _table_info(table: Any, *, namesakes: bool = True) -> _Table:
    """What a table's own ``info`` declares (a Core table, or one no mapper maps)."""
    owner = str(getattr(table, "fullname", None) or getattr(table, "name", "table"))
    columns: dict[str, tuple[str, ...]] = {}
    for column in getattr(table, "columns", ()):
        categories = _info_categories(getattr(column, "info", None), owner, column.name)
        if categories:
            columns[column.name] = _validated(categories, owner, column.name)
    info = getattr(table, "info", None) or {}
    tenant = info.get(TABLE_TENANT_KEY)
    if tenant is None and TABLE_TENANT_KEY in info:
        tenant = _ZONES
    elif tenant is not None and (not isinstance(tenant, str) or tenant not in table.columns):
        raise PolicyError(
            f"info={{{TABLE_TENANT_KEY!r}: {tenant!r}}} names no column of the table",
            path=owner,
            field=TABLE_TENANT_KEY,
        )
    if namesakes:
        namesake = _namesake(table)
        if namesake is not None:
            # Only adds: a column the table declares itself keeps its own.
            for column in getattr(table, "columns", ()):
                borrowed = namesake.columns.get(str(column.name).lower())
                if borrowed and column.name not in columns:
                    columns[column.name] = borrowed
            if tenant is None and namesake.tenant is not None:
                tenant = _ZONES if namesake.tenant == _ZONES else _ELSEWHERE
                if namesake.tenant not in (_ELSEWHERE, _ZONES):
                    wanted = namesake.tenant.lower()
                    tenant = next(
                        (c.name for c in getattr(table, "columns", ()) if str(c.name).lower() == wanted),
                        _ELSEWHERE,
                    )
    return _Table(table, columns, tenant)


def _namesake(table: Any) -> _Table | None:
    """What the models declare for a table of the same name as ``table``,
    if ``table`` is another object for it: reflected (``autoload_with``,
    ``MetaData.reflect``, automap) or defined again in another
    ``MetaData``. Names compare without case (as most databases fold
    them); a model's table of the same schema is preferred, else those
    whose schema either side leaves unnamed; several are merged (their
    categories together, and a tenant column only where all name the same
    one: else several tenants'). Two databases with a table of the same
    name are both labelled so: more labels, never fewer. Its columns are
    keyed by lower-case name."""
    name = getattr(table, "name", None)
    if not isinstance(name, str):
        return None
    candidates = [k for k in _STATE.by_name.get(name.lower(), ()) if k.table is not table and k.columns]
    if not candidates:
        return None
    schema = getattr(table, "schema", None)
    exact = [k for k in candidates if schema is not None and getattr(k.table, "schema", None) == schema]
    if not exact:
        exact = [k for k in candidates if schema is None or getattr(k.table, "schema", None) is None]
    if not exact:
        return None
    columns: dict[str, set[str]] = {}
    tenants: set[str | None] = set()
    for known in exact:
        for column, categories in known.columns.items():
            columns.setdefault(column.lower(), set()).update(categories)
        tenants.add(known.tenant.lower() if known.tenant not in (None, _ELSEWHERE, _ZONES) else known.tenant)
    tenant = tenants.pop() if len(tenants) == 1 else _ELSEWHERE
    return _Table(None, {c: tuple(sorted(found)) for c, found in columns.items()}, tenant)


def _forget_namesakes_of(name: str, declaring: type) -> None:
    """Classes that declared nothing, mapped to a table named ``name``
    (automapped before the model was declared): read again when next loaded,
    so they take the model's declarations. (A class that declared nothing
    had no attribute made a reader: nothing to put back.)"""
    for cls, model in list(_STATE.models.items()):
        if model.fields or cls is declaring:
            continue
        table_name = getattr(getattr(cls, "__table__", None), "name", None)
        if isinstance(table_name, str) and table_name.lower() == name:
            del _STATE.models[cls]


def _borrowed_tenant(mapper: Any) -> str | None:
    """The tenant attribute of a class whose declarations come from its
    table's namesake: the attribute mapping the namesake's tenant column;
    :data:`_ZONES` where the namesake's rows are the zone's tenant's.
    Where the class maps no such column (a reflected child table under
    joined inheritance, a table defined without it), :data:`_ELSEWHERE`,
    and where the namesake names no tenant, None: its values are several
    tenants', never no one's."""
    local = getattr(mapper, "local_table", None)
    namesake = _namesake(local) if local is not None else None
    if namesake is None or namesake.tenant is None or namesake.tenant is _ZONES:
        return None if namesake is None else namesake.tenant
    if namesake.tenant is not _ELSEWHERE:
        for key, column in mapper.columns.items():
            if str(getattr(column, "name", "")).lower() == namesake.tenant:
                return str(key)
    return _ELSEWHERE
