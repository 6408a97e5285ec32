"""What each column of a queryset's SQL is computed from, and the labels
that gives what the queryset hands out: ``values()``/``values_list()`` rows
(the ``Values*Iterable`` classes), instances' annotations and the fields of
combined queries (``ModelIterable``, which also loads the tenant field
beside the declared fields ``only()``/``defer()`` load), and ``aggregate()``
results (``Query.get_aggregation``). Columns are followed through
relations, annotations, ``Subquery``/``OuterRef``, ``union()`` and
conditions (a ``When``'s, a ``Q`` as a value, an aggregate's ``filter=``, a
subquery's ``WHERE``: what a value is computed through); a value
computed from other rows (a subquery's, a window's, an aggregate's) carries
several tenants (``MIXED_TENANT``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from purposeguard._context import MIXED_TENANT
from purposeguard._labels import label, merge_tenants

from ._declared import STATE, Declaration, as_tenant, declaration_of

# -- what a query's columns are computed from ---------------------------------------------

# Subqueries are followed this deep; deeper ones are labelled with every
# category of their model (over-labelling rather than none).
_MAX_DEPTH = 8


# (model, field name, relation prefix): where a value comes from. The prefix
# ("" for the row's own table, "author__" through a relation) names where the
# row's tenant may be selected; None for a column of other rows (a
# subquery's), whose tenant no column of this row holds.
_Source = tuple[Any, str, "str | None"]


def _names_of(query: Any) -> list[str]:
    selected = getattr(query, "selected", None)
    if selected:
        return list(selected)
    return [*query.extra_select, *query.values_select, *query.annotation_select]


def _resolve_path(
    model: Any, path: str, filtered: dict[str, Any] | None = None
) -> tuple[Any, str, str] | None:
    """(model, field name, relation prefix) of a ``values()`` path, or None.
    ``filtered`` is the query's ``FilteredRelation`` aliases: a path may start
    with one (``"n__body"`` after ``annotate(n=FilteredRelation("notes"))``),
    which stands for the relation it filters; the prefix keeps the alias, as
    the row's other columns spell it (``"n__owner"``)."""
    from django.core.exceptions import FieldDoesNotExist

    prefix = ""
    parts = path.split("__")
    if filtered and parts[0] in filtered and len(parts) > 1:
        try:
            model._meta.get_field(parts[0])
        except FieldDoesNotExist:
            for hop in filtered[parts[0]].relation_name.split("__"):
                try:
                    model = model._meta.get_field(hop).related_model
                except FieldDoesNotExist:
                    return None
                if model is None:
                    return None
            prefix, parts = parts[0] + "__", parts[1:]
    for index, part in enumerate(parts):
        try:
            field = model._meta.get_field(part)
        except FieldDoesNotExist:
            # A transform (body__lower) keeps the field it starts from.
            return (model, parts[index - 1], prefix) if index else None
        related = getattr(field, "related_model", None)
        if related is not None and index < len(parts) - 1:
            model = related
            prefix += part + "__"
            continue
        return model, part, prefix
    return None


def _prefix(query: Any, alias: str) -> str | None:
    """The relation path from ``query``'s own table to the table ``alias``
    ("" for the own table and its parents' in multi-table inheritance), or
    None when the joins do not spell one."""
    from django.db.models import ForeignObjectRel

    parts: list[str] = []
    for _hop in range(64):
        join = query.alias_map.get(alias)
        if join is None:
            return None
        parent = getattr(join, "parent_alias", None)
        if parent is None:
            return "".join(f"{part}__" for part in reversed(parts))
        field = join.join_field
        reverse = isinstance(field, ForeignObjectRel)
        if reverse or not getattr(field.remote_field, "parent_link", False):
            # A parent's table holds the row's own inherited fields: no step in the path.
            parts.append(field.name)
        alias = parent
    return None


def _every_field(model: Any) -> list[_Source]:
    if model is None:
        return []
    return [(model, name, None) for name, _attname, _categories in declaration_of(model).fields]


def _nodes(expression: Any) -> Iterator[Any]:
    """Every node an expression is built from, conditions included: what
    ``get_source_expressions()`` gives (Django's ``flatten()`` stops at a
    ``WhereNode``, which has no ``flatten()``), a ``WhereNode``'s or a
    ``Q``'s children (a ``When``'s condition, an aggregate's ``filter=``,
    ``ExpressionWrapper(Q(...))``) and a lookup's left and right sides, a
    list of values on the right (``__in``) item by item. A subquery (``Query``, a ``QuerySet``'s in a ``Q`` not yet resolved)
    is yielded, not entered: its caller reads it as other rows'. Each node
    once: the walk ends however the tree is shared."""
    from django.db.models.lookups import Lookup
    from django.db.models.query import QuerySet
    from django.db.models.sql.query import Query
    from django.utils import tree

    stack = [expression]
    # Held, not only their ids: a node made by get_source_expressions() and
    # dropped could hand its id to the next one, which would be skipped.
    seen: dict[int, Any] = {}
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node
        if isinstance(node, (list, tuple, set, frozenset)):
            stack.extend(node)
            continue
        if isinstance(node, QuerySet):
            stack.append(node.query)
            continue
        yield node
        if isinstance(node, Query):
            continue
        if isinstance(node, tree.Node):
            # A Q not yet resolved holds (path, value) pairs: the path is read
            # by the caller from the Q itself, the value (an F, a subquery) here.
            stack.extend(child[1] if isinstance(child, tuple) else child for child in node.children)
            continue
        if isinstance(node, Lookup):
            stack.extend((node.lhs, node.rhs))
        sources = getattr(node, "get_source_expressions", None)
        if sources is not None:
            stack.extend(sources())


def _unread(node: Any) -> bool:
    """Whether ``node`` is SQL of a shape :func:`_nodes` cannot see into (an
    ``extra(where=)`` clause in a subquery, a third-party node with no source
    expressions), as opposed to a plain value compared with."""
    from django.db.models.expressions import Col
    from django.db.models.sql.where import NothingNode
    from django.utils import tree

    if isinstance(node, (Col, NothingNode, tree.Node)) or hasattr(node, "get_source_expressions"):
        return False
    return hasattr(node, "as_sql") or hasattr(node, "resolve_expression")


def _columns_of(expression: Any, query: Any, depth: int = 0, outer: tuple[Any, ...] = ()) -> list[_Source]:
    """Every column an expression of ``query`` is computed from, followed
    through conditions, into subqueries (whose columns are of other rows) and
    the outer columns they name. An expression holding a window function or
    an aggregate is computed from other rows (a window's frame, a group, a
    relation's rows) wherever its columns are: all of them are of other rows.
    A node of a shape not read reads, for all anyone can tell, every declared
    field of ``query``'s model. Expressions an ``UPDATE`` has not resolved
    yet (a parent's table's, in multi-table inheritance) name their columns
    by path (``F("body")``, ``Q(body__icontains=...)``): of no one row."""
    from django.db.models import Aggregate, F, OuterRef, Q
    from django.db.models.expressions import Col, ResolvedOuterRef, Window
    from django.db.models.sql.query import Query

    found: list[_Source] = []
    if expression is None:
        return found
    nodes = list(_nodes(expression))
    own = query is not None and depth == 0
    if own and any(isinstance(node, (Window, Aggregate)) for node in nodes):
        own = False
    base = getattr(query, "model", None)
    for node in nodes:
        if isinstance(node, Col):
            prefix = _prefix(query, node.alias) if own else None
            found.append((node.target.model, node.target.name, prefix))
        elif isinstance(node, Query):
            found.extend(
                (model, name, None) for model, name, _ in _selected_by(node, depth + 1, (query, *outer))
            )
        elif isinstance(node, ResolvedOuterRef):
            # OuterRef(OuterRef("x")) names a column of the query two levels up.
            name, level = node.name, 0
            while not isinstance(name, str) and hasattr(name, "name"):
                name, level = name.name, level + 1
            if isinstance(name, str) and level < len(outer) and outer[level] is not None:
                named = outer[level]
                if name in named.annotations:
                    nested = _columns_of(named.annotations[name], named, depth + 1, outer[level + 1 :])
                    found.extend((model, field, None) for model, field, _ in nested)
                else:
                    resolved = _resolve_path(named.model, name, getattr(named, "_filtered_relations", None))
                    if resolved is not None:
                        found.append((resolved[0], resolved[1], None))
        elif isinstance(node, OuterRef):
            continue  # not resolved: no query it refers to is known
        elif isinstance(node, (F, Q)):
            if base is None:
                continue
            paths = (
                [node.name]
                if isinstance(node, F)
                else [child[0] for child in node.children if isinstance(child, tuple)]
            )
            for path in paths:
                resolved = _resolve_path(base, path) if isinstance(path, str) else None
                if resolved is not None:
                    found.append((resolved[0], resolved[1], None))
        elif base is not None and _unread(node):
            found.extend(_every_field(base))
    return found


def _selected_by(query: Any, depth: int, outer: tuple[Any, ...]) -> list[_Source]:
    """The columns what a (sub)query selects is computed from, all of other rows."""
    if depth > _MAX_DEPTH:
        return _every_field(query.model)
    found: list[_Source] = []
    for column in query.select:
        found.extend(_columns_of(column, query, depth, outer))
    for expression in query.annotation_select.values():
        found.extend(_columns_of(expression, query, depth, outer))
    # What a subquery gives depends on the rows it keeps (Exists(), a
    # Subquery's first row): its conditions are read, the outer columns an
    # OuterRef in them names included. The outermost query's own WHERE is
    # not: it picks the rows handed out, whose values are labelled by column.
    found.extend(_columns_of(query.where, query, depth, outer))
    if query.default_cols:
        found.extend(_every_field(query.model))
    for combined in getattr(query, "combined_queries", ()):
        found.extend(_selected_by(combined, depth + 1, outer))
    return found


_Place = TypeVar("_Place")


def _labelling(
    sources: list[_Source], tenant_at: Callable[[Declaration, str], _Place | None]
) -> tuple[tuple[str, ...], tuple[_Place, ...], str | None] | None:
    """What labels a value computed from ``sources``: its categories, the
    places of the row's tenants to merge (``tenant_at(model, prefix)``: a
    position in a values() row, an attname on an instance; None where the
    row does not hold that tenant), and a tenant fixed for every row:
    MIXED_TENANT when the value is of other rows or its tenant is not held.
    None when no source is declared."""
    categories: set[str] = set()
    places: list[_Place] = []
    fixed: str | None = None
    for model, field, prefix in sources:
        declared = declaration_of(model)
        found = declared.by_name.get(field)
        if not found:
            continue
        categories.update(found)
        if declared.tenantless:
            # A model that names no tenant field: its rows are several tenants'.
            fixed = MIXED_TENANT
            continue
        if declared.tenant is None:
            continue
        place = None if prefix is None else tenant_at(declared, prefix)
        if place is None:
            # Other rows', or the row's tenant is not held: whose the value
            # is is unknown, so no one tenant's consent (not the request's
            # either, which a value with no tenant would take) may widen its use.
            fixed = MIXED_TENANT
        elif place not in places:
            places.append(place)
    if not categories:
        return None
    return tuple(sorted(categories)), tuple(places), fixed


# What labels one value: (categories, positions in the row of tenants to
# merge, a tenant fixed for every row: MIXED_TENANT when the value is of other rows).
_Entry = tuple[tuple[str, ...], tuple[int, ...], "str | None"]
# per output position: an entry, or None
_Plan = list["_Entry | None"]


def _entry(sources: list[_Source], position: dict[str, int]) -> _Entry | None:
    def tenant_at(declared: Declaration, prefix: str) -> int | None:
        at = position.get(prefix + declared.tenant_name)  # type: ignore[operator]
        return position.get(prefix + declared.tenant) if at is None else at  # type: ignore[operator]

    return _labelling(sources, tenant_at)


def _plan_of(query: Any, names: list[str]) -> _Plan:
    annotations = query.annotation_select
    extra = query.extra_select
    base = query.model
    filtered = getattr(query, "_filtered_relations", None)
    # A tenant is taken from a selected field, never from an annotation or
    # extra SQL that names itself like one.
    position = {
        name: index for index, name in enumerate(names) if name not in annotations and name not in extra
    }
    plan: _Plan = []
    for name in names:
        sources: list[_Source] = []
        if name in annotations:
            sources = _columns_of(annotations[name], query)
        elif name not in extra:  # extra(select=...) is raw SQL: see the module docstring
            resolved = _resolve_path(base, name, filtered)
            if resolved is not None:
                sources = [resolved]
        plan.append(_entry(sources, position))
    combined = getattr(query, "combined_queries", ())
    if query.combinator and combined:
        # As Django's compiler does: a combined query that selects nothing of
        # its own selects what the combined query names (values() after union()).
        outer = _selects(query)
        parts = [
            _plan_of(part, names if outer and not _selects(part) else _names_of(part)) for part in combined
        ]
        plan = _combined(plan, parts)
    return plan


def _selects(query: Any) -> bool:
    """Whether values()/values_list() limited what ``query`` selects."""
    if hasattr(query, "selected"):  # Django 5.2
        return query.selected is not None
    return bool(query.values_select)


def _combined(first: _Plan, parts: list[_Plan]) -> _Plan:
    """A column of union()/intersection()/difference() holds what any of the
    combined queries puts there. A row does not say which query it came
    from, so its tenant is read from the row only where every query puts
    its tenant in the same place."""
    plan: _Plan = []
    for index in range(len(first)):
        own = first[index]
        # A query whose plan does not reach this column (its selection not
        # known) stands for what the combined query says is there, which
        # counts too: a part plan short of a column never takes its labels off.
        entries = [part[index] if index < len(part) else own for part in parts]
        if own is not None:
            entries.append(own)
        categories: set[str] = set()
        for entry in entries:
            if entry is not None:
                categories.update(entry[0])
        if not categories:
            plan.append(None)
            continue
        shapes = {(entry[1], entry[2]) if entry is not None else None for entry in entries}
        if len(shapes) == 1 and None not in shapes:
            positions, fixed = next(iter(shapes))  # type: ignore[misc]
        elif any(entry is not None and (entry[1] or entry[2]) for entry in entries):
            positions, fixed = (), MIXED_TENANT
        else:
            positions, fixed = (), None
        plan.append((tuple(sorted(categories)), positions, fixed))
    return plan


def _plan(queryset: Any, names: list[str] | None = None) -> tuple[list[str], _Plan] | None:
    query = queryset.query
    if names is None:
        names = _names_of(query)
    plan = _plan_of(query, names)
    return (names, plan) if any(entry is not None for entry in plan) else None


def _tuple_names(queryset: Any) -> list[str]:
    """The names of a ``values_list()`` row's columns, in the row's order."""
    query = queryset.query
    names = _names_of(query)
    fields = getattr(queryset, "_fields", None)
    if getattr(query, "selected", None) or not fields:
        return names
    # Before Django 5.2 the SQL selects fields, then annotations, and
    # ValuesListIterable reorders each row to the order values_list() named.
    ordered = [*fields, *(name for name in query.annotation_select if name not in fields)]
    return ordered if ordered != names and set(ordered) <= set(names) else names


def _tenant_in(row: Sequence[Any], positions: tuple[int, ...], fixed: str | None) -> str | None:
    tenant = fixed
    for at in positions:
        tenant = merge_tenants(tenant, as_tenant(row[at]))
    return tenant


# -- values() and values_list() rows ----------------------------------------------------


def _labelled(row: Sequence[Any], plan: _Plan) -> list[Any]:
    values = list(row)
    for index, entry in enumerate(plan):
        if entry is None or index >= len(values):
            continue
        # A NULL is read too (what a condition found, an empty field):
        # label() keeps it None, tells the zone and checks the read.
        categories, positions, fixed = entry
        values[index] = label(values[index], *categories, tenant=_tenant_in(row, positions, fixed))
    return values


def values_iter(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[Any]:
    planned = _plan(instance.queryset) if STATE.instrumented else None
    if planned is None:
        yield from wrapped(*args, **kwargs)
        return
    names, plan = planned
    for row in wrapped(*args, **kwargs):
        labelled = _labelled([row.get(name) for name in names], plan)
        yield {
            name: labelled[index] if index < len(names) and names[index] == name else value
            for index, (name, value) in enumerate(row.items())
        }


def values_list_iter(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    queryset = instance.queryset
    planned = _plan(queryset, _tuple_names(queryset)) if STATE.instrumented else None
    rows = wrapped(*args, **kwargs)
    if planned is None:
        return rows
    plan = planned[1]
    return (tuple(_labelled(row, plan)) for row in rows)


def flat_values_iter(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    planned = _plan(instance.queryset) if STATE.instrumented else None
    rows = wrapped(*args, **kwargs)
    if planned is None or planned[1][0] is None:
        return rows
    # One column: the row's tenant is in it only where it is the tenant field itself.
    categories, positions, fixed = planned[1][0]
    # A NULL is read too (see _labelled): label() keeps it None.
    return (label(value, *categories, tenant=_tenant_in((value,), positions, fixed)) for value in rows)


# -- model instances: their tenant always loaded, their annotations labelled ---------------


def _load_tenants(model: Any, names: frozenset[str], defer: bool) -> frozenset[str] | None:
    """The ``only()``/``defer()`` field names widened so that the tenant field
    of every model a declared field is loaded from loads too (a value labelled
    without its row's tenant is released by any tenant's consent), or None
    when they need nothing."""
    widened = set(names)
    for name in names:
        resolved = _resolve_path(model, name)
        if resolved is None:
            continue
        owner, field, prefix = resolved
        declared = declaration_of(owner)
        if declared.tenant_name is None or not declared.fields:
            continue
        if defer:
            if field in (declared.tenant_name, declared.tenant):
                widened.discard(name)
        elif field in declared.by_name:
            spelled = {prefix + declared.tenant_name, prefix + (declared.tenant or declared.tenant_name)}
            if not spelled & names:
                widened.add(prefix + declared.tenant_name)
    return None if widened == names else frozenset(widened)


# Per annotation set on an instance: (name, categories, attnames of the row's
# tenants to merge, a tenant fixed for every row).
_Annotations = list[tuple[str, tuple[str, ...], tuple[str, ...], "str | None"]]


def _own_tenant(declared: Declaration, prefix: str) -> str | None:
    # An instance holds its own row's tenant only, not a related row's.
    return declared.tenant if prefix == "" else None


def _annotation_plan(query: Any) -> _Annotations:
    plan: _Annotations = []
    for name, expression in query.annotation_select.items():
        found = _labelling(_columns_of(expression, query), _own_tenant)
        if found is not None:
            plan.append((name, *found))
    return plan


def _combined_fields(query: Any, using: str) -> _Annotations:
    """Instances of union()/intersection()/difference(): a field holds what
    any combined query selects in its column, which from_db's labels (the
    field's own) do not cover when the queries select different columns."""
    try:
        select, klass_info, _annotations = query.get_compiler(using=using).get_select()
        parts = [part.get_compiler(using=using).get_select()[0] for part in query.combined_queries]
    except Exception:  # noqa: BLE001 - Django raises its own error when the query runs
        return []
    plan: _Annotations = []
    for index in klass_info["select_fields"] if klass_info else ():
        target = getattr(select[index][0], "target", None)
        if target is None:
            continue
        own = declaration_of(target.model).by_name.get(target.name, ())
        sources = [
            source
            for part in parts
            if index < len(part)
            for source in _columns_of(part[index][0], None)
            if declaration_of(source[0]).by_name.get(source[1])
        ]
        categories = {
            category for model, field, _ in sources for category in declaration_of(model).by_name[field]
        }
        if categories - set(own) or any(
            (model, field) != (target.model, target.name) for model, field, _ in sources
        ):
            # Another query's column: its row's tenant is not this field's.
            tenanted = any(
                declaration_of(model).tenant is not None or declaration_of(model).tenantless
                for model, _field, _ in sources
            )
            plan.append(
                (target.attname, tuple(sorted(categories | set(own))), (), MIXED_TENANT if tenanted else None)
            )
    return plan


def model_iter(wrapped: Any, iterable: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[Any]:
    if not STATE.instrumented:
        yield from wrapped(*args, **kwargs)
        return
    queryset = iterable.queryset
    query = queryset.query
    names, defer = query.deferred_loading
    if names and not query.combinator:
        widened = _load_tenants(queryset.model, names, defer)
        if widened is not None:
            # A clone: the caller's queryset keeps the fields it asked for.
            queryset = queryset._chain()
            queryset.query.deferred_loading = (widened, defer)
            iterable.queryset = queryset
            query = queryset.query
    plan = _annotation_plan(query) if query.annotation_select else []
    if query.combinator:
        plan.extend(_combined_fields(query, queryset.db))
    if not plan:
        yield from wrapped(*args, **kwargs)
        return
    for instance in wrapped(*args, **kwargs):
        values = instance.__dict__
        for name, categories, attnames, fixed in plan:
            value = values.get(name)
            if value is None:
                continue
            tenant = fixed
            for attname in attnames:
                # A tenant field not loaded: whose the value is is unknown.
                tenant = merge_tenants(
                    tenant, as_tenant(values[attname]) if attname in values else MIXED_TENANT
                )
            # An annotation has no reading descriptor to tell the zone when
            # it is read: labelling it tells the zone now, as a values() row does.
            values[name] = label(value, *categories, tenant=tenant)
        yield instance


# -- aggregate() ---------------------------------------------------------------------------


def _counted_by(count: Any, query: Any) -> list[Any]:
    """What decides which rows a ``Count`` counts, beyond the rows themselves:
    its ``filter=`` and what it counts when that is computed
    (``Count(Case(When(body__icontains=...)))``, an annotation's name). A
    count of rows or of a column's values (``Count("*")``, ``Count("id")``)
    reads no value of them."""
    from django.db.models import F
    from django.db.models.expressions import Col, Star

    found = [] if count.filter is None else [count.filter]
    for source in count.source_expressions:
        if isinstance(source, (Star, Col)):
            continue
        if type(source) is F and source.name not in query.annotations:
            continue  # not resolved yet: a field's name
        found.append(source)
    return found


def get_aggregation(wrapped: Any, query: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Label aggregate() results (a dict made by the SQL compiler, through no
    iterable) with the categories of the columns each is computed from. They
    sum up many rows: their tenant is several tenants' when the model names one."""
    exprs = args[1] if len(args) > 1 else kwargs.get("aggregate_exprs")
    if not STATE.instrumented or not isinstance(exprs, dict) or not exprs:
        return wrapped(*args, **kwargs)
    from django.db.models import Count

    if all(
        isinstance(expression, Count) and not _counted_by(expression, query) for expression in exprs.values()
    ):
        # count(): a number of rows, not a value of them (the hot path stays as it is).
        return wrapped(*args, **kwargs)
    # Resolved as Django resolves them, on a clone: get_aggregation changes the query it runs.
    plan: dict[str, _Entry] = {}
    probe = query.clone()
    try:
        for alias, expression in exprs.items():
            resolved = expression.resolve_expression(probe, allow_joins=True, reuse=None, summarize=True)
            probe.annotations[alias] = resolved  # later aggregates may name it
            if isinstance(resolved, Count):
                counted = _counted_by(resolved, probe)
                sources = [source for part in counted for source in _columns_of(part, probe)]
            else:
                sources = _columns_of(resolved, probe)
            entry = _entry([(model, field, None) for model, field, _ in sources], {})
            if entry is not None:
                plan[alias] = entry
    except Exception:  # noqa: BLE001 - Django raises its own error below; if not, label with every category
        entry = _entry(_every_field(query.model), {})
        plan = dict.fromkeys(exprs, entry) if entry is not None else {}
    result = wrapped(*args, **kwargs)
    if not plan:
        return result
    for alias, (categories, _positions, fixed) in plan.items():
        value = result.get(alias)
        if value is not None:
            result[alias] = label(value, *categories, tenant=fixed)
    return result
