"""Labelling what is loaded: instances on the ORM's load and refresh events
(and the instances a flush has written, whose values are then what the
database stores), and rows of a ``Session`` or ``Connection``
(``RETURNING`` and ``Connection.scalar`` too), relabelled by their
statement's plan.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Iterable, Sequence
from typing import Any

from purposeguard._context import FLAGS, MIXED_TENANT, ZONE
from purposeguard._kinds import _checked_tenant
from purposeguard._labels import (
    EMPTY,
    NO_LABELS,
    _label_object,
    _own_labels,
    _resolve,
    label,
    relabel,
    tenant_of_values,
)
from purposeguard._walk import _walk

from .._patch import Patcher
from ._declarations import _STATE, _declare, _Model, _model
from ._plans import _expressions, _Plan, _plan
from ._reading import _tenant
from ._textual import say_textual, say_textual_statement
from ._writes import _check_copy, _check_write, _is_copy, _is_write

# Set while a Session runs a statement this integration labels itself, so the
# Connection underneath hands the ORM its own result untouched.
_IN_SESSION: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "purposeguard_sqlalchemy_session", default=False
)


def _label_instance(state: Any, attrs: Iterable[str] | None, flushed: bool = False) -> None:
    model = _STATE.models.get(state.class_) or _declare(state.mapper)
    if not model.fields:
        return
    values = state.dict
    if model.tenantless:
        tenant: str | None = MIXED_TENANT
    elif flushed:
        tenant = _flushed_tenant(values, model.tenant)
    else:
        # A value that is no tenant id: several tenants' (see _tenant).
        tenant = _tenant(values.get(model.tenant)) if model.tenant is not None else None
    # What a flush wrote was the application's already, not read from the
    # database: labelled without the check of a read under the current purpose.
    mark = relabel if flushed else label
    wanted = None if attrs is None else set(attrs)
    for key, categories in model.fields:
        if wanted is not None and key not in wanted:
            continue
        value = values.get(key)
        if value is not None:
            if flushed and type(value) not in NO_LABELS and _own_labels(value):
                # Labelled by the application (or loaded): kept as it is.
                continue
            # Straight into the instance dict: the ORM sees no change to flush.
            whose = MIXED_TENANT if key in model.of_other_rows else tenant
            values[key] = mark(value, *categories, tenant=whose)
    if model.undeclared:
        # Categories given only in column info are not in the class's
        # annotations: the instance carries them (and the tenant) itself, for
        # checks on the whole object. Its values were labelled, and checked,
        # one by one already.
        obj = state.obj()
        if obj is not None:
            _label_object(obj, _resolve(model.categories, tenant))


def _flushed_tenant(values: dict[str, Any], key: str | None) -> str | None:
    """The tenant of a row a flush wrote, from the instance's tenant
    attribute as the application set it. Not loaded (expired, or made by
    the database and not fetched) or not a tenant id: several tenants', so
    no one tenant's consent widens the use of its values."""
    if key is None:
        return None
    if key not in values:
        return MIXED_TENANT
    tenant = values[key]
    if tenant is None:
        return None
    text = tenant if isinstance(tenant, str) else str(tenant)
    try:
        return _checked_tenant(str.__str__(text))
    except (TypeError, ValueError):
        return MIXED_TENANT


def _quietly(attrs: Iterable[str] | None, state: Any, context: Any = None, flushed: bool = False) -> None:
    """Label a loaded instance without telling the request's zone: loading a
    row is not yet a flow (the reading attribute tells the zone when a value
    is read). The labels still pass the source check under the current
    purpose, in a scratch zone with the request's tenant and categories that
    records flows where the request's zone does. An instance a flush wrote
    (``flushed``) is labelled the same way, less that check (see
    :func:`_label_instance`)."""
    model = _STATE.models.get(state.class_) or _declare(state.mapper)
    if model.expressions and context is not None:
        _label_expressions(state, model, attrs, context)
    if not model.fields:
        return
    outer = ZONE.get() if FLAGS.zones else None
    if outer is None or model.loud:
        _label_instance(state, attrs, flushed)
        return
    token = ZONE.set(outer.scratch())
    try:
        _label_instance(state, attrs, flushed)
    finally:
        ZONE.reset(token)


def _label_expressions(state: Any, model: _Model, attrs: Iterable[str] | None, context: Any) -> None:
    """``query_expression()`` attributes as the query's ``with_expression()``
    filled them: labelled as the columns the expression reads, with the row's
    tenant when it reads only its own row, else of several tenants. Told to
    the zone as they load: the attribute class does not know what a query
    will put there, so it cannot tell the zone on read."""
    values = state.dict
    statement = getattr(context, "query", None)
    if statement is None or all(values.get(key) is None for key in model.expressions):
        return
    found = _expressions(statement)
    if not found:
        return
    wanted = None if attrs is None else set(attrs)
    for key in model.expressions:
        entry = found.get(key)
        value = values.get(key)
        if entry is None or value is None or (wanted is not None and key not in wanted):
            continue
        categories, own_row = entry
        if not own_row or model.tenantless:
            tenant: str | None = MIXED_TENANT
        else:
            tenant = _tenant(values.get(model.tenant)) if model.tenant is not None else None
        values[key] = label(value, *categories, tenant=tenant)


def _on_load(state: Any, context: Any) -> None:
    _quietly(None, state, context)


def _on_refresh(state: Any, context: Any, attrs: Iterable[str] | None) -> None:
    _quietly(attrs, state, context)


def _on_refresh_flush(state: Any, _flush_context: Any, attrs: Iterable[str] | None) -> None:
    # Values the database made during a flush (server defaults, computed
    # columns, fetched with RETURNING or a SELECT): loaded, so labelled. The
    # values the application set itself are left as it set them.
    _quietly(attrs or (), state)


# Where a flush keeps, from its after_flush event to its after_flush_postexec,
# the states of declared models it writes (UOWTransaction.attributes: kept
# for outside code, gone with the flush).
_FLUSHED = "purposeguard_flushed"


def _on_after_flush(session: Any, flush_context: Any) -> None:
    """Note the instances of declared models this flush inserts or updates:
    the session's ``new`` and ``dirty`` still show them here (``dirty``
    leaves out deleted ones), and no longer once the flush is done. They
    are labelled then (see :func:`_on_flushed`): a flush event may not
    change attribute state while it runs."""
    from sqlalchemy.orm.attributes import instance_state

    flushed = []
    for instances in (session.new, session.dirty):
        for instance in instances:
            state = instance_state(instance)
            if _model(state.class_, state.mapper).fields:
                flushed.append(state)
    if flushed:
        flush_context.attributes[_FLUSHED] = flushed


def _on_flushed(_session: Any, flush_context: Any) -> None:
    """Once a flush has written an instance, the values of its declared
    columns held on it are what the database stores: labelled as a load
    labels them (the categories, the row's tenant), so the instance the
    identity map hands back to a later ``select`` in the same session
    carries them. Only values the instance holds (nothing is loaded or
    unexpired), straight into its dict (nothing to flush again); values
    labelled already stay as they are."""
    flushed = flush_context.attributes.pop(_FLUSHED, None)
    if not flushed:
        return
    for state in flushed:
        # Not written by this flush: left out of a flush(objects=...), or
        # changed again by another listener since.
        if state.persistent and not state.modified:
            _quietly(None, state, flushed=True)


def _on_mapper(mapper: Any, _cls: type) -> None:
    # Models defined after instrument(): checked as they are mapped.
    _declare(mapper)


def _labelled_row(row: Sequence[Any], plan: _Plan) -> tuple[Any, ...]:
    values = list(row)
    for position, categories, tenant_at, members in plan:
        value = values[position]
        if members is not None and value is not None:
            values[position] = _labelled_bundle(value, members)
            continue
        tenant = _tenant(row[tenant_at]) if isinstance(tenant_at, int) else tenant_at
        # A NULL is read too (it says what a condition found, or that a
        # field is empty): label() keeps it None, tells the zone and checks
        # the read, as for every other value.
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
    # Still answers what the driver's result answers (cursor, returns_rows,
    # lastrowid, ...), as the result the application asked for would.
    relabelled.__class__ = _labelled_result_class()
    relabelled._pg_original = result
    # What a guarded function handed the result reads from it (see _Machinery).
    relabelled._pg_categories = frozenset(_every_category(plan))
    relabelled._pg_rows = rows
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


@functools.cache
def _labelled_result_class() -> type:
    """An ``IteratorResult`` that answers what it does not have itself
    (public names only) from the result it was made from."""
    from sqlalchemy.engine.result import IteratorResult

    class LabelledResult(IteratorResult[Any]):
        # No new slots: the frozen result's class can be swapped for it.
        __slots__ = ()

        def __getattr__(self, name: str) -> Any:
            original = self.__dict__.get("_pg_original")
            if original is None or name.startswith("_"):
                raise AttributeError(name)
            return getattr(original, name)

    return LabelledResult


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
    if not _STATE.instrumented:
        return wrapped(*args, **kwargs)
    statement = args[0] if args else kwargs.get("statement")
    if _is_write(statement):
        # Every write reaches the database here (a flush, the ORM's own
        # INSERT/UPDATE/DELETE, Core): checked before it runs.
        _check_write(statement, args[1] if len(args) > 1 else kwargs.get("parameters"))
    elif _is_copy(statement):
        _check_copy(statement)
    else:
        say_textual_statement(statement, getattr(_instance, "dialect", None))
    if _IN_SESSION.get():
        return wrapped(*args, **kwargs)
    options = kwargs.get("execution_options") or {}
    if any(type(key) is str and key.startswith("_sa_orm_") for key in options):
        # The ORM reads this result itself (loads, ORM-enabled INSERT, UPDATE,
        # DELETE): its rows are labelled above it, in the session's event.
        return wrapped(*args, **kwargs)
    # Planned before it runs: a statement whose columns cannot be followed
    # to their tables is refused before it reaches the database.
    plan = _plan(statement)
    result = wrapped(*args, **kwargs)
    if plan is None or not getattr(result, "returns_rows", False):
        return result
    return _relabelled(result, plan)


def _connection_exec_driver_sql(
    wrapped: Any, _instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if _STATE.instrumented:
        say_textual(args[0] if args else kwargs.get("statement"))
    return wrapped(*args, **kwargs)


def _connection_scalar(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if _IN_SESSION.get() or not _STATE.instrumented:
        return wrapped(*args, **kwargs)
    statement = args[0] if args else kwargs.get("statement")
    if _plan(statement) is None:
        if _is_write(statement):
            # scalar() runs it without execute(): the same check before it runs.
            _check_write(statement, args[1] if len(args) > 1 else kwargs.get("parameters"))
        else:
            say_textual_statement(statement, getattr(instance, "dialect", None))
        return wrapped(*args, **kwargs)
    # The first column of the first row, as execute().scalar() reads it, so
    # that it is labelled (with its row's tenant when the row selects it).
    return instance.execute(*args, **kwargs).scalar()


class _Machinery:
    """Label reading for SQLAlchemy's machinery: an instance's state
    (``_sa_instance_state``), sessions, queries, statements' results,
    connections and engines. Checks look into a loaded instance's attribute
    values (columns and loaded relationships) and stop at the machinery,
    instead of walking the ORM's object graph to its bound and failing
    closed (a session or a result handed to a guarded function, or a
    generator over a query). What the machinery does carry is read:

    - a result this integration labelled: the categories of its columns and
      the tenants of its rows (already read and buffered);
    - a query: the categories of what it selects, of no one tenant (it has
      not run), and the labels of the values bound in it;
    - a session, connection or engine: the labels of what the application
      keeps in its ``info``.
    """

    def labels(self, value: Any, purpose: str | None) -> frozenset[str]:
        return self._read(value)[0]

    def tenant(self, value: Any) -> str | None:
        return self._read(value)[1]

    def _read(self, value: Any) -> tuple[frozenset[str], str | None]:
        from sqlalchemy.orm import Query
        from sqlalchemy.sql import ClauseElement

        result = getattr(value, "_real_result", None) or value  # scalars(), mappings()
        categories = getattr(result, "_pg_categories", None)
        if categories is not None:
            return categories, tenant_of_values(getattr(result, "_pg_rows", ()))
        if isinstance(value, Query):
            return _query_labels(value, value.statement)
        if isinstance(value, ClauseElement):
            return _query_labels(value, value)
        info = value.__dict__.get("info") if hasattr(value, "__dict__") else None
        if isinstance(info, dict) and info:
            return _best_effort(info.values())
        return EMPTY, None

    def label(self, value: Any, categories: frozenset[str], tenant: str | None) -> Any:
        raise TypeError("SQLAlchemy's machinery is not data: label the instance or its values")

    def strip(self, value: Any) -> Any:
        return value


def _best_effort(values: Iterable[Any]) -> tuple[frozenset[str], str | None]:
    labels, tenant = _walk(values, strict=False)
    return labels, tenant


def _query_labels(query: Any, statement: Any) -> tuple[frozenset[str], str | None]:
    """A query's or statement's: the categories of what it selects (of no
    one tenant: it has not run) and the labels of the values bound in it."""
    from sqlalchemy import inspect as sa_inspect
    from sqlalchemy.sql import visitors
    from sqlalchemy.sql.elements import BindParameter

    try:
        plan = _plan(statement) if hasattr(statement, "_generate_cache_key") else None
        bound = [node.value for node in visitors.iterate(statement) if isinstance(node, BindParameter)]
        descriptions = getattr(query, "column_descriptions", ())
    except Exception:  # noqa: BLE001 - one that cannot compile yet: what it binds is unknown too
        return EMPTY, None
    labels, tenant = _best_effort(bound)
    selected = _every_category(plan) if plan is not None else set()
    # Whole entities (aliased ones too) are labelled as they load, not
    # through the row plan.
    for description in descriptions:
        entity = description.get("entity")
        if entity is not None and description.get("expr") is entity:
            mapper = sa_inspect(entity).mapper
            selected.update(_model(mapper.class_, mapper).categories)
    if selected:
        labels = labels | frozenset(selected)
        tenant = MIXED_TENANT
    return labels, tenant


_MACHINERY = _Machinery()


def machinery_types() -> tuple[type, ...]:
    """The SQLAlchemy classes read through :data:`_MACHINERY` (with their subclasses)."""
    from sqlalchemy import MetaData
    from sqlalchemy.engine import Connection, Engine, Result
    from sqlalchemy.engine.result import FilterResult
    from sqlalchemy.orm import InstanceState, Mapper, Query, Session
    from sqlalchemy.orm.util import AliasedClass
    from sqlalchemy.pool import Pool
    from sqlalchemy.sql import ClauseElement

    return (
        InstanceState,
        Session,
        Query,
        Result,
        FilterResult,
        Connection,
        Engine,
        ClauseElement,
        Mapper,
        AliasedClass,
        MetaData,
        Pool,
    )


# Installed by instrument(), removed by uninstrument().
_PATCHER = Patcher(
    "sqlalchemy.engine.base",
    [
        ("Connection", "execute", _connection_execute),
        # scalar() runs the statement without execute(): see _connection_scalar.
        ("Connection", "scalar", _connection_scalar),
        ("Connection", "exec_driver_sql", _connection_exec_driver_sql),
    ],
)
