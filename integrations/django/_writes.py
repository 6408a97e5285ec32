"""What ``UPDATE`` and ``INSERT`` statements carry into the database, seen as
Django's SQL compilers run them (``SQLUpdateCompiler.execute_sql`` and
``SQLInsertCompiler.execute_sql``: ``update()``, ``bulk_update()``,
``save()``, ``create()``, ``bulk_create()``, the parents' tables of
multi-table inheritance included).

* An expression that reads declared fields (``update(title=F("body"))``,
  ``Concat``, ``Subquery``) reads them in SQL, though no value reaches
  Python: a read of several tenants' rows, checked under the current
  purpose before the statement runs (a violation ``via="source"``) and told
  to the zone.
* Data written into a field that declares no category (a labelled value,
  or a declared field's value copied in SQL) reads back unlabelled later. The
  write is the application's to make, so it is not refused, but logged on the
  ``purposeguard`` logger once per model field and categories in the process,
  naming them, never the value.

Updates and inserts of plain values cost one type test per value."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from purposeguard._labels import EMPTY, NO_LABELS, SIDE_TABLE_TYPES, _own_labels_shallow, label, labels_of

from ._declared import STATE, Declaration, declaration_of
from ._queries import _columns_of, _labelling, _nodes, _Source

logger = logging.getLogger("purposeguard")

# Values walked for the labels inside them (JSONField and ArrayField values);
# any other value is looked at shallowly: a walk of every object saved (a
# UUID, a Decimal) would cost each save more than the statement's own Python.
_WALKED = (dict, list, tuple, set, frozenset)


def _carried(value: Any) -> frozenset[str]:
    """The labels a value written to a column carries."""
    t = type(value)
    if t in NO_LABELS:
        return EMPTY
    if t in _WALKED or t in SIDE_TABLE_TYPES:
        return labels_of(value)
    return _own_labels_shallow(value)


def _nowhere(_declared: Declaration, _prefix: str) -> None:
    # A statement's expression reads every row it writes: no one row's tenant.
    return None


def _read_by(expression: Any, query: Any) -> tuple[list[_Source], frozenset[str]]:
    """The declared columns an expression written by ``query`` reads, and the
    labels of the values it holds (``Value(labelled)``, as ``bulk_update()``
    writes them)."""
    from django.db.models import Value

    # A parent's table's update (multi-table inheritance) resolves its
    # expressions only as it is compiled: _columns_of reads their F() and
    # Q() paths against the model updated.
    sources = _columns_of(expression, query)
    carried: frozenset[str] = EMPTY
    for node in _nodes(expression):
        if isinstance(node, Value) and type(node.value) not in NO_LABELS:
            carried = carried | _carried(node.value)
    return sources, carried


def _written(query: Any, writes: Iterable[tuple[Any, Any]]) -> None:
    """Check and note (field, value) pairs a statement of ``query`` writes."""
    for field, value in writes:
        t = type(value)
        if t in NO_LABELS:
            continue
        if hasattr(value, "resolve_expression"):
            sources, carried = _read_by(value, query)
            found: tuple[tuple[str, ...], tuple[object, ...], str | None] | None
            found = _labelling(sources, _nowhere)
            if found is not None:
                categories, _places, tenant = found
                # Nothing is read into Python: the check and the zone see the
                # categories on no value (None keeps none, as for a truth value).
                label(None, *categories, tenant=tenant)
                carried = carried | frozenset(categories)
        elif hasattr(value, "prepare_database_save"):
            continue  # a related instance: its key is written, not its fields
        elif declaration_of(field.model).by_name.get(field.name):
            continue  # a declared field reads back labelled
        else:
            carried = _carried(value)
        if carried and not declaration_of(field.model).by_name.get(field.name):
            _laundered(field, carried)


def _laundered(field: Any, categories: frozenset[str]) -> None:
    key = (field.model, field.name, categories)
    if key in STATE.laundered:
        return
    STATE.laundered.add(key)
    logger.warning(
        "purposeguard: %s.%s, a field with no Category, was written data labelled %s: "
        "it will read back unlabelled; declare the field's category "
        "(%s: Annotated[..., pg.Category(...)] = models.%s(...)) if it holds such data",
        field.model._meta.label,
        field.name,
        ", ".join(sorted(categories)),
        field.name,
        type(field).__name__,
    )


def update_sql(wrapped: Any, compiler: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if STATE.instrumented:
        query = compiler.query
        if query.values:
            _written(query, ((field, value) for field, _model, value in query.values))
    return wrapped(*args, **kwargs)


def insert_sql(wrapped: Any, compiler: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if STATE.instrumented:
        query = compiler.query
        fields = query.fields
        if fields and query.objs:
            # The instances' values as Django's pre_save() reads them; values
            # pre_save() makes (auto_now, a default) are no one's data.
            _written(
                query,
                (
                    (field, obj.__dict__.get(field.attname))
                    for obj in query.objs
                    for field in fields
                    if field.attname in obj.__dict__
                ),
            )
    return wrapped(*args, **kwargs)
