"""Purposes and labels on Apache Spark (PySpark) batch jobs.

>>> import purposeguard as pg
>>> from pyspark.sql import SparkSession, functions as F
>>> from purposeguard.integrations import spark as pg_spark
>>> pg_spark.instrument()        # UDFs keep their purpose; writes are egress checks
>>> spark = SparkSession.builder.master("local[1]").getOrCreate()
>>> raw = spark.createDataFrame([("contoso", "Quarterly numbers")], ["tenant", "body"])
>>> mail = pg_spark.label_columns(
...     raw, {"body": "customer_data.content.email"}, tenant_column="tenant")
>>> pg.labels_of(mail.select(F.upper("body")))
frozenset({'customer_data.content.email'})
>>> pg_spark.uninstrument()

Categories live in the Spark schema's column metadata (key
``purposeguard``), so they survive wherever Spark keeps metadata (simple
projections, aliases, files written with their schema). Where Spark drops it
(expressions, aggregations, joins, unions, windows, UDFs, SQL), the labels of
a column are derived from Spark's own analysed plan: an output column carries
the union of the categories of every column its expression references,
followed by expression id down to the source relations. A column whose
lineage cannot be derived carries every category of the plan and of its
subqueries (fail closed). Marks that lift labels (a transform's
declassification, ``consented()``) count only on the projections
purposeguard made, by expression id: one set in metadata by other code is
ignored.

Importing this module lets ``pg.labels_of``, ``@pg.purpose``, ``pg.label``
and ``@pg.transform`` read and write DataFrame labels. ``instrument()`` adds
what needs patching: UDFs run with the purpose that was current where they
were defined (also in the Python workers), writing a DataFrame to a path
or table is an egress checked against the policy's ``[[destinations]]``
(``paths``, ``tables``), what is written or checkpointed carries each
column's derived categories in its metadata, and data that reaches the driver (``collect()``,
``toPandas()``, ``df.rdd`` and their kin) is a read: checked against the
current purpose, learned by the zone, and carried by the rows into any
DataFrame made from them. Needs ``pip install 'purposeguard[spark]'``.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import functools
import inspect
import itertools
import json
import numbers
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from purposeguard import _runtime
from purposeguard._context import FLAGS, PURPOSE, ZONE
from purposeguard._errors import PurposeGuardError
from purposeguard._labelled import _str_with
from purposeguard._labels import (
    KEYS,
    MAX_TENANT_LENGTH,
    MIXED_TENANT,
    _resolve,
    labels_of,
    merge_tenants,
    register_foreign,
    relabel,
    strip_labels,
    tenant_of,
    unregister_foreign,
)
from purposeguard._policy import Policy
from purposeguard._records import Record
from purposeguard._runtime import check_zone, frame_name, get_guard, logger
from purposeguard._state import STATE, on_reset, remember

from . import require
from ._patch import FunctionPatch, Patcher

require("pyspark", "spark")

import pyspark  # noqa: E402 - after the check that names the extra
from pyspark.sql import Column, DataFrame, Row  # noqa: E402
from pyspark.sql.types import _create_row  # noqa: E402

__all__ = [
    "ConsentSnapshot",
    "SchemaError",
    "consented",
    "instrument",
    "is_instrumented",
    "label_columns",
    "lineage",
    "uninstrument",
]

KEY = "purposeguard"
SUPPORTED = (4,)


class SchemaError(PurposeGuardError, ValueError):
    """A column named for labelling, or as the tenant column, that the
    DataFrame does not have. ``column`` names it."""

    def __init__(self, message: str, column: str) -> None:
        super().__init__(message)
        self.column = column


@dataclass(slots=True)
class ConsentSnapshot(Record):
    """``consented()`` filtered a job's rows to the tenants that consented.

    Names the purpose, the categories whose consentable rules the filter
    satisfies, and the tenants kept; never any row or value.
    """

    purpose: str
    categories: tuple[str, ...]
    rules: tuple[str, ...]
    tenants: tuple[str, ...]
    function: str
    timestamp: float

    @property
    def kind(self) -> str:
        return "consent_snapshot"


# -- column metadata -------------------------------------------------------------------------


def _meta(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    found = (metadata or {}).get(KEY)
    return dict(found) if isinstance(found, Mapping) else {}


def _with_meta(metadata: Mapping[str, Any] | None, **changes: Any) -> dict[str, Any]:
    out = {k: v for k, v in (metadata or {}).items() if not k.startswith("__")}
    own = _meta(metadata)
    own.update(changes)
    out[KEY] = own
    return out


def _categories(value: str | Iterable[str], column: str) -> frozenset[str]:
    if isinstance(value, str):
        value = (value,)
    elif not isinstance(value, Iterable):
        raise TypeError(f"column {column!r}: categories must be a key or a list of keys")
    return frozenset(KEYS.current().require_categories(tuple(value)))


def _columns_of(df: DataFrame) -> list[str]:
    return [field.name for field in df.schema.fields]


def _relabelled(df: DataFrame, changes: Mapping[str, Mapping[str, Any]]) -> DataFrame:
    """One projection that puts new metadata on the named columns.

    Built on the JVM objects directly: the job pays one round trip per
    changed column and value, not PySpark's per-call bookkeeping, and the
    columns left alone cost nothing (``withColumns`` keeps them in place).
    """
    fields = df.schema.fields
    names = [field.name for field in fields]
    if not changes:
        return df
    if len({name.lower() for name in names}) < len(names):
        # Duplicate names: withColumns would replace every column of a name
        # with the same expression; a select names each (Spark reports a
        # name it cannot tell apart).
        return _relabelled_by_select(df, changes)
    jdf = df._jdf
    jvm = df.sparkSession._jvm
    metadata_class = getattr(jvm, "org.apache.spark.sql.types.Metadata")
    made: dict[str, Any] = {}
    replaced: dict[str, Any] = {}
    for name, change in changes.items():
        text = json.dumps(change, sort_keys=True)
        jmeta = made.get(text)
        if jmeta is None:
            jmeta = made[text] = metadata_class.fromJson(text)
        replaced[name] = getattr(jdf.col(_quoted(name)), "as")(name, jmeta)
    return type(df)(jdf.withColumns(replaced), df.sparkSession)


def _quoted(name: str) -> str:
    # Column names with dots or backticks are read as nested fields unless quoted.
    return "`" + name.replace("`", "``") + "`"


def _relabelled_by_select(df: DataFrame, changes: Mapping[str, Mapping[str, Any]]) -> DataFrame:
    # By position: a name two columns share (a join's "sender" on each
    # side) is ambiguous to Spark. An alias keeps a column's metadata and
    # its lineage.
    fields = df.schema.fields
    positional = df.toDF(*[f"_purposeguard_{k}" for k in range(len(fields))])
    columns = []
    for k, field in enumerate(fields):
        column = positional[f"_purposeguard_{k}"]
        change = changes.get(field.name)
        columns.append(
            column.alias(field.name, metadata=dict(change))
            if change is not None
            else column.alias(field.name)
        )
    return positional.select(*columns)


def label_columns(
    df: DataFrame,
    columns: Mapping[str, str | Iterable[str]],
    *,
    tenant_column: str | None = None,
) -> DataFrame:
    """Return ``df`` with data categories on ``columns`` (name -> key or keys).

    ``tenant_column`` names the column that says whose data each row is: the
    DataFrame then holds several tenants' data (consent never covers it as a
    whole; :func:`consented` filters it per tenant). Unknown keys raise
    :class:`~purposeguard.UnknownKeyError` and unknown columns
    :class:`SchemaError`, before any Spark job runs.
    """
    if not isinstance(df, DataFrame):
        raise TypeError(f"label_columns() needs a pyspark DataFrame, not {type(df).__name__}")
    if not isinstance(columns, Mapping) or not columns:
        raise TypeError("label_columns() needs a mapping of column name to categories")
    present = _columns_of(df)
    wanted: dict[str, frozenset[str]] = {}
    for name, value in columns.items():
        if name not in present:
            raise SchemaError(
                f"label_columns(): no column {name!r} (the DataFrame has {', '.join(present)})", name
            )
        wanted[name] = _categories(value, name)
    if tenant_column is not None and tenant_column not in present:
        raise SchemaError(
            f"label_columns(): no tenant column {tenant_column!r} (the DataFrame has {', '.join(present)})",
            tenant_column,
        )
    if tenant_column is not None:
        found = lineage(df)
        if found.derived and found.tenanted and tenant_column not in found.tenant_columns:
            # Naming another column the tenant column of data already labelled
            # with one would let its rows claim any tenant (a literal, a
            # rebuilt id) where consent is asked.
            raise SchemaError(
                f"label_columns(): the DataFrame's rows are already labelled with a tenant column, and "
                f"{tenant_column!r} is not it (nor a plain copy of it)",
                tenant_column,
            )
    schema = {field.name: field.metadata for field in df.schema.fields}
    changes: dict[str, dict[str, Any]] = {}
    for name, categories in wanted.items():
        before = frozenset(_meta(schema[name]).get("categories", ()))
        changes[name] = _with_meta(schema[name], categories=sorted(before | categories))
    if tenant_column is not None:
        changes[tenant_column] = _with_meta(changes.get(tenant_column, schema[tenant_column]), tenant=True)
    labelled = _relabelled(df, changes)
    _note_session(frozenset().union(*wanted.values()))
    _add_to_zone(frozenset().union(*wanted.values()))
    return labelled


def _add_to_zone(categories: frozenset[str]) -> None:
    if categories and FLAGS.zones:
        state = ZONE.get()
        if state is not None:
            state.add(categories)


# -- lineage from the analysed plan ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lineage:
    """What each output column of a DataFrame carries, in output order.

    ``consents`` maps a purpose to the categories a :func:`consented` filter
    covers for it, per column. ``tenanted``: a column somewhere in the plan
    was named the tenant column, so the rows may be several tenants' data
    even where the output no longer shows that column. ``combined``: what in
    the plan puts several tenants' rows' data in one row (a window or an
    aggregation not keyed by a tenant column, a join of two tenants' data
    not tied by their tenant columns, a map over batches of rows, a scalar
    subquery over tenants' rows), each as (what it is, the purposes for
    which consent already covers every category it combines): a row's
    tenant column does not say whose data such a row holds.
    """

    names: tuple[str, ...]
    categories: tuple[frozenset[str], ...]
    consents: tuple[Mapping[str, frozenset[str]], ...]
    derived: bool  # False: the plan could not be read, every column carries everything
    tenanted: bool = False
    combined: tuple[tuple[str, frozenset[str]], ...] = ()
    # Output columns that are a tenant column itself (labelled as such, or a
    # plain copy of one, in every branch of a union).
    tenant_columns: frozenset[str] = frozenset()

    def all(self) -> frozenset[str]:
        return frozenset().union(*self.categories) if self.categories else frozenset()

    def for_purpose(self, purpose: str) -> frozenset[str]:
        out: set[str] = set()
        for categories, consents in zip(self.categories, self.consents, strict=True):
            covered = consents.get(purpose)
            out.update(categories - covered if covered else categories)
        return frozenset(out)


_EMPTY: frozenset[str] = frozenset()
_NO_CONSENT: Mapping[str, frozenset[str]] = {}


def _class(node: Mapping[str, Any]) -> str:
    return str(node.get("class", "")).rsplit(".", 1)[-1]


def _expr_id(node: Mapping[str, Any]) -> int | None:
    found = node.get("exprId")
    if isinstance(found, Mapping) and isinstance(found.get("id"), int):
        return int(found["id"])
    return None


def _is_tree(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], Mapping) and "class" in value[0]


class _Plan:
    """Column lineage of one analysed logical plan, read from Spark's JSON
    form of it (one call to the JVM) plus the schemas of the nodes where
    metadata enters (their metadata is not in the JSON)."""

    def __init__(self, jplan: Any, fields: list[Any] | None = None) -> None:
        self.jplan = jplan
        # The root's schema as the DataFrame already holds it (no round trip).
        self.fields = fields
        self.nodes: list[Mapping[str, Any]] = json.loads(jplan.toJSON())
        # exprId -> (referenced exprIds, opaque): defined by an expression.
        self.defined: dict[int, tuple[set[int], bool]] = {}
        # exprId -> positional counterparts in the other children of a set operation.
        self.merged: dict[int, list[int]] = {}
        self.sources: set[int] = set()
        self.meta: dict[int, dict[str, Any]] = {}
        # Categories of the plans of subquery expressions (their columns are
        # not this plan's), and whether any of them holds several tenants' rows.
        self.nested: set[str] = set()
        self.nested_tenanted = False
        # A labelled literal with a tenant is in the plan (see _literal).
        self.literal_tenanted = False
        # A node made from data Spark already read (a transpose): its input is
        # not in the plan, so its columns may hold any category the session labelled.
        self.unknown_input = False
        self._subquery = False
        self._paths: list[tuple[int, ...]] = []
        # Nodes that make one row from several rows' data (see _Across).
        self.across_rows: list[_Across] = []
        # Nodes whose schema names a tenant column (where one enters the plan),
        # or an owner (pg.label(df, ..., tenant=...)): tenants' data enters there.
        self.tenant_nodes: set[int] = set()
        self.owner_nodes: set[int] = set()
        # exprId -> the attribute an alias copies unchanged (tenant.alias("t")).
        self.copies: dict[int, int] = {}
        # While a node is read: a scalar subquery is in it, and the columns
        # its non-deterministic Python functions take.
        self._scalar = False
        self._unpredictable: set[int] = set()
        self._walk_plan()

    # -- reading ------------------------------------------------------------------------------

    def _walk_plan(self) -> None:
        # Pre-order with children counts: each node's path of child positions from the root.
        self._paths = [()] * len(self.nodes)

        def visit(index: int, path: tuple[int, ...]) -> int:
            self._paths[index] = path
            nxt = index + 1
            for position in range(int(self.nodes[index].get("num-children", 0))):
                nxt = visit(nxt, (*path, position))
            return nxt

        visit(0, ())
        for index, node in enumerate(self.nodes):
            self._read_node(index, node)

    def _jnode(self, index: int) -> Any:
        j = self.jplan
        for position in self._paths[index]:
            j = j.children().apply(position)
        return j

    def _read_node(self, index: int, node: Mapping[str, Any]) -> None:
        name = _class(node)
        explicit = False
        self._subquery = self._scalar = False
        self._unpredictable = set()
        for key, value in node.items():
            if key in ("class", "num-children"):
                continue
            explicit = self._scan(value) or explicit
        if self._subquery:
            self._read_subqueries(index)
        children = int(node.get("num-children", 0))
        self._read_across_rows(index, name, node)
        if self._unpredictable:
            # A Python function declared non-deterministic is handed batches
            # of rows and owes no row its own result.
            self.across_rows.append(
                _Across(index, "a non-deterministic Python function", set(), set(self._unpredictable))
            )
        if children == 0 and name in _MATERIALISED_LEAVES:
            self._read_materialised(node)
            return
        if children == 0 or explicit:
            self._read_schema(index, source=children == 0)
        if name in ("Union", "Intersect", "Except"):
            self._read_set_operation(index)
        elif name == "Generate":
            refs, opaque = self._refs(node.get("generator"))
            for attr in self._attributes(node.get("generatorOutput")):
                self.defined[attr] = (refs, opaque)
        elif name == "Expand":
            self._read_expand(index, node)
        elif "serializer" in node or "outputObjAttr" in node:
            # Typed operators (toJSON(), object maps): the serializer reads
            # the objects by position (no attribute reference to follow) and
            # an object holds every column it was made from.
            for key in ("serializer", "outputObjAttr"):
                for attr in self._attributes(node.get(key)):
                    self.defined[attr] = (set(), True)
        elif "functionExpr" in node and "output" in node:
            # mapInPandas, applyInPandas, cogrouped and Arrow maps: the
            # function sees the columns its expression takes (and the group
            # keys), and every output column may hold any of them.
            fields = [v for k, v in node.items() if k not in ("class", "num-children", "output")]
            refs, opaque = self._refs(fields)
            for attr in self._attributes(node.get("output")):
                self.defined[attr] = (refs, opaque or not refs)

    def _read_schema(self, index: int, *, source: bool) -> None:
        node = self.nodes[index]
        key = _node_key(node)
        read = _NODE_READS.get(key) if key is not None else None
        if read is None:
            jnode = self._jnode(index)
            if index == 0 and self.fields is not None:
                fields = [{"name": f.name, "metadata": f.metadata} for f in self.fields]
            else:
                fields = json.loads(jnode.schema().json()).get("fields", [])
            ids = _listed_output(node, len(fields))
            if ids is None:
                key = None  # not listed as the key says: never cached
                ids = _output_ids(jnode)
            read = tuple(
                (expr_id, _meta(field.get("metadata"))) for expr_id, field in zip(ids, fields, strict=True)
            )
            if key is not None:
                remember(_NODE_READS, key, read, _NODE_READS_LIMIT)
        written: set[str] = set()
        for expr_id, own in read:
            if own:
                self.meta[expr_id] = own
                if own.get("tenant"):
                    self.tenant_nodes.add(index)
                if own.get("owner"):
                    self.owner_nodes.add(index)
                kinds = own.get("combined")
                if kinds and isinstance(kinds, list):
                    written.update(str(kind) for kind in kinds)
            if source:
                self.sources.add(expr_id)
        if written:
            # Written from rows combined across tenants (see _persisted): one
            # entry for the node, whichever of its columns carry the mark.
            self.across_rows.append(
                _Across(index, f"{', '.join(sorted(written))} before it was written", fixed=True)
            )

    def _read_expand(self, index: int, node: Mapping[str, Any]) -> None:
        """Expand (unpivot, melt, rollup, cube, grouping sets): output column
        k holds, row by row, the k-th expression of each projection. Spark's
        JSON gives no projections (a list of lists): they are read from the
        JVM. A column whose projections cannot be read holds anything."""
        outputs = self._attributes(node.get("output"))
        children = self._children(index)
        try:
            passing = set(self._output_of(children[0])) if children else set()
        except Exception:
            passing = set()
        per: list[tuple[set[int], bool]] | None = None
        try:
            rows = node.get("projections")
            if not (isinstance(rows, list) and rows and all(isinstance(r, list) for r in rows)):
                jrows = self._jnode(index).projections()
                rows = []
                for r in range(jrows.size()):
                    jrow = jrows.apply(r)
                    rows.append([json.loads(jrow.apply(k).toJSON()) for k in range(jrow.size())])
            per = [(set(), False) for _ in outputs]
            for row in rows:
                if len(row) != len(outputs):
                    raise ValueError("an Expand projection of another width")
                for k, item in enumerate(row):
                    refs, opaque = self._refs([item])
                    per[k] = (per[k][0] | refs, per[k][1] or opaque)
        except Exception:
            logger.debug("purposeguard could not read an Expand's projections", exc_info=True)
            per = None
        for k, attr in enumerate(outputs):
            if attr in passing:
                continue  # the child's own column, handed on unchanged
            self.defined[attr] = per[k] if per is not None else (set(), True)

    def _read_subqueries(self, index: int) -> None:
        """The plans of the subquery expressions in a node (scalar, EXISTS,
        IN): a column built from one may hold anything they read."""
        try:
            found = self._jnode(index).subqueries()
            for k in range(found.size()):
                # Every category its sources hold, not only those of its
                # output: EXISTS and a filter inside say something of them.
                nested = _Plan(found.apply(k))
                self.nested.update(nested.everything())
                self.nested_tenanted = self.nested_tenanted or nested.has_tenants()
                read = nested.resolve() if self._scalar and nested.tenant_nodes else None
                if read is not None and read.all():
                    # One value made from every tenant's rows, put in each row
                    # (one that carries a category: a count() carries none):
                    # unless consent for a purpose filtered what it read.
                    purposes = {purpose for consents in read.consents for purpose in consents}
                    self.across_rows.append(
                        _Across(
                            index,
                            "a scalar or lateral subquery over tenants' rows",
                            fixed=True,
                            covering=frozenset(p for p in purposes if not read.for_purpose(p)),
                        )
                    )
        except Exception:
            logger.debug("purposeguard could not read a subquery's plan", exc_info=True)
            self.unknown_input = True

    def _read_materialised(self, node: Mapping[str, Any]) -> None:
        for attr in self._attributes(node.get("output")):
            known = _MATERIALISED.get(attr)
            if known is None:
                self.unknown_input = True
                self.defined[attr] = (set(), True)
            else:
                categories, tenanted = known
                own: dict[str, Any] = {"categories": sorted(categories)}
                if tenanted:
                    own["tenant"] = True  # several tenants' rows, as the frame transposed
                self.meta[attr] = own
                self.sources.add(attr)

    def _read_set_operation(self, index: int) -> None:
        outputs = [self._output_of(child) for child in self._children(index)]
        if not outputs:
            return
        for position, expr_id in enumerate(outputs[0]):
            self.merged.setdefault(expr_id, []).extend(
                other[position] for other in outputs[1:] if position < len(other)
            )

    def _children(self, index: int) -> list[int]:
        out = []
        nxt = index + 1
        for _ in range(int(self.nodes[index].get("num-children", 0))):
            out.append(nxt)
            nxt = self._end(nxt)
        return out

    def _end(self, index: int) -> int:
        nxt = index + 1
        for _ in range(int(self.nodes[index].get("num-children", 0))):
            nxt = self._end(nxt)
        return nxt

    def _output_of(self, index: int) -> list[int]:
        listed = _listed_output(self.nodes[index], None)
        return listed if listed is not None else _output_ids(self._jnode(index))

    def _scan(self, value: Any) -> bool:
        """Record the definitions in a field; True when an alias there sets metadata."""
        if _is_tree(value):
            return self._tree(value)
        explicit = False
        if isinstance(value, list):
            for item in value:
                explicit = self._scan(item) or explicit
        elif isinstance(value, Mapping) and "product-class" in value:
            for item in value.values():
                explicit = self._scan(item) or explicit
        return explicit

    def _tree(self, nodes: list[Mapping[str, Any]]) -> bool:
        explicit = False

        def visit(i: int) -> tuple[int, set[int], bool]:
            nonlocal explicit
            node = nodes[i]
            name = _class(node)
            refs: set[int] = set()
            opaque = "Subquery" in name or name in ("Exists", "ListQuery", "LateralSubquery")
            if opaque:
                self._subquery = True
                if name in ("ScalarSubquery", "LateralSubquery"):
                    self._scalar = True
            expr_id = _expr_id(node)
            if name in ("AttributeReference", "OuterReference") and expr_id is not None:
                refs.add(expr_id)
            elif name == "Literal" and _SENT:
                sent = self._literal(node)
                if sent is not None:
                    refs.add(sent)
            nxt = i + 1
            for _ in range(int(node.get("num-children", 0))):
                nxt, child_refs, child_opaque = visit(nxt)
                refs |= child_refs
                opaque = opaque or child_opaque
            if name == "PythonUDF" and node.get("udfDeterministic") is False:
                self._unpredictable |= refs
            if name == "Alias" and expr_id is not None:
                self.defined[expr_id] = (refs, opaque)
                # An alias of a column itself, or of it cast (to text, as
                # tenant ids are compared): a copy of it.
                child_at = i + 1 if int(node.get("num-children", 0)) == 1 and i + 1 < len(nodes) else None
                if child_at is not None and _class(nodes[child_at]) == "Cast" and child_at + 1 < len(nodes):
                    child_at += 1
                child = nodes[child_at] if child_at is not None else None
                copied = _expr_id(child) if child is not None else None
                if child is not None and copied is not None and _class(child) == "AttributeReference":
                    self.copies[expr_id] = copied
                if node.get("explicitMetadata") is not None:
                    explicit = True
            return nxt, refs, opaque

        visit(0)
        return explicit

    def _refs(self, value: Any) -> tuple[set[int], bool]:
        refs: set[int] = set()
        opaque = False
        for tree in _trees(value):
            for node in tree:
                name = _class(node)
                expr_id = _expr_id(node)
                if name in ("AttributeReference", "OuterReference") and expr_id is not None:
                    refs.add(expr_id)
                elif name == "Literal" and _SENT:
                    sent = self._literal(node)
                    if sent is not None:
                        refs.add(sent)
                if "Subquery" in name or name in ("Exists", "ListQuery"):
                    opaque = self._subquery = True
        return refs, opaque

    def _literal(self, node: Mapping[str, Any]) -> int | None:
        """A literal whose text a labelled value sent to Spark (``F.lit(v)``,
        ``col == v``, ``when(..., v)``): a source of its own, carrying the
        value's categories (and several tenants' data where it had a tenant,
        its tenant is not kept in the plan)."""
        value = node.get("value")
        sent = _SENT.get(value) if isinstance(value, str) else None
        if sent is None:
            return None
        categories, tenant = sent
        # Ids Spark never gives (its own count up from 0).
        expr_id = -1 - len(self.meta)
        self.meta[expr_id] = {"categories": list(categories)}
        if tenant is not None:
            self.literal_tenanted = True
        return expr_id

    def _attributes(self, value: Any) -> list[int]:
        out = []
        for tree in _trees(value):
            expr_id = _expr_id(tree[0])
            if expr_id is not None:
                out.append(expr_id)
        return out

    # -- resolving ---------------------------------------------------------------------------

    def everything(self) -> frozenset[str]:
        """Every category the plan's sources and subqueries hold (what a
        column whose lineage cannot be followed may carry)."""
        found = frozenset(
            c for own in self.meta.values() for c in own.get("categories", ()) if isinstance(c, str)
        ) | frozenset(self.nested)
        if self.unknown_input:
            return found | _session_categories()
        _SESSION_CATEGORIES.update(found - _SESSION_CATEGORIES)
        return found

    def _read_across_rows(self, index: int, name: str, node: Mapping[str, Any]) -> None:
        """Note a node that makes one row from several rows' data."""
        if name == "Window":
            keys = _root_attributes(node.get("partitionSpec"))
            mixed = _refs_below(node.get("windowExpressions"), "WindowExpression", first_child=True)
            self.across_rows.append(_Across(index, "a window", keys, mixed))
        elif name == "Aggregate":
            keys = _root_attributes(node.get("groupingExpressions"))
            mixed = _refs_below(node.get("aggregateExpressions"), "AggregateExpression", skip=_COUNTS)
            self.across_rows.append(_Across(index, "an aggregation", keys, mixed))
        elif name in _GROUPED_MAPS:
            keys = _root_attributes(node.get("groupingAttributes"))
            mixed, _ = self._refs(node.get("functionExpr"))
            self.across_rows.append(_Across(index, "a function over groups of rows", keys, mixed))
        elif name in _BATCH_MAPS:
            # The function is handed batches (or co-groups) of rows.
            mixed, _ = self._refs(node.get("functionExpr"))
            self.across_rows.append(_Across(index, "a function over batches of rows", set(), mixed))
        elif name == "Join":
            self.across_rows.append(_Across(index, "a join", pairs=_equal_attributes(node.get("condition"))))

    def _tenant_columns(self) -> set[int]:
        """The exprIds of tenant columns: labelled as such, or a plain copy of one."""
        tenant = {expr_id for expr_id, own in self.meta.items() if own.get("tenant")}
        grown = bool(tenant)
        while grown:
            grown = False
            for expr_id, copied in self.copies.items():
                if expr_id not in tenant and copied in tenant:
                    tenant.add(expr_id)
                    grown = True
        return tenant

    def _holds_tenants(self, start: int, *, owners: bool = False) -> bool:
        end = self._end(start)
        return any(start <= node < end for node in self.tenant_nodes) or (
            owners and any(start <= node < end for node in self.owner_nodes)
        )

    def _joined_across_tenants(self, across: _Across, tenant: set[int]) -> list[int]:
        """What a join hands on next to a tenant column of the other side,
        from a side that holds tenants' data: other tenants' data in a
        tenant's row. Nothing where an equality ties a tenant column of
        each side, and nothing of a side a semi or anti join drops."""
        sides = self._children(across.index)
        if len(sides) != 2:
            return []
        outputs = [set(self._output_of(side)) for side in sides]
        for a, b in across.pairs:
            if a in tenant and b in tenant and ({a, b} & outputs[0]) and ({a, b} & outputs[1]) and a != b:
                return []
        joined = set(self._output_of(across.index))
        mixed: list[int] = []
        for this, other in ((0, 1), (1, 0)):
            if outputs[this] & joined & tenant and self._holds_tenants(sides[other], owners=True):
                mixed.extend(outputs[other] & joined)
        return mixed

    def combined(
        self, of: Callable[[int], tuple[frozenset[str], Mapping[str, frozenset[str]]]]
    ) -> tuple[tuple[str, frozenset[str]], ...]:
        """What in the plan puts several tenants' rows' data in one row (see
        :class:`Lineage`), given ``of``: an exprId's categories and consents.
        Only what combines categories counts (a ``row_number()``, a
        ``count()`` combines none), and only over tenants' rows (a lookup
        table's counts joined in combine no tenant's rows)."""
        # Marks of rows combined before they were written count wherever they
        # are read (a write partitioned by the tenant column loses its metadata).
        found: list[tuple[str, frozenset[str]]] = [(a.kind, a.covering) for a in self.across_rows if a.fixed]
        if not self.tenant_nodes:
            return tuple(found)
        tenant = self._tenant_columns()
        for across in self.across_rows:
            if across.fixed:
                continue
            mixed: Iterable[int]
            if across.kind == "a join":
                mixed = self._joined_across_tenants(across, tenant)
                if not mixed:
                    continue
            else:
                if across.keys & tenant or not self._holds_tenants(across.index + 1):
                    continue
                mixed = across.mixed
            covering: set[str] | None = None
            for expr_id in mixed:
                categories, consents = of(expr_id)
                if not categories:
                    continue
                purposes = {purpose for purpose, covered in consents.items() if categories <= covered}
                covering = purposes if covering is None else covering & purposes
            if covering is not None:
                found.append((across.kind, frozenset(covering)))
        return tuple(found)

    def has_tenants(self) -> bool:
        return (
            any(own.get("tenant") for own in self.meta.values())
            or self.nested_tenanted
            or self.literal_tenanted
            or (self.unknown_input and bool(self.everything()))
        )

    def resolve(self) -> Lineage:
        everything = self.everything()
        memo: dict[int, tuple[frozenset[str], Mapping[str, frozenset[str]]]] = {}

        def own_of(expr_id: int) -> tuple[frozenset[str], dict[str, frozenset[str]] | None, bool]:
            own = self.meta.get(expr_id, {})
            cats = frozenset(c for c in own.get("categories", ()) if isinstance(c, str))
            raw = own.get("consented")
            consents = (
                {p: frozenset(c) for p, c in raw.items() if isinstance(p, str) and isinstance(c, list)}
                if isinstance(raw, Mapping)
                else None
            )
            # Only the marks purposeguard itself put on a column count
            # (declassified by a transform, covered by consented()): a mark
            # set by other code, or read back from a file, is ignored.
            genuine = expr_id in _OWN_MARKS
            if not genuine:
                consents = None
            return cats, consents, genuine and bool(own.get("declassified"))

        def of(expr_id: int, depth: int = 0) -> tuple[frozenset[str], Mapping[str, frozenset[str]]]:
            found = memo.get(expr_id)
            if found is not None:
                return found
            memo[expr_id] = (everything, _NO_CONSENT)  # a cycle (never in a plan) fails closed
            cats, consents, barrier = own_of(expr_id)
            inherited: list[tuple[frozenset[str], Mapping[str, frozenset[str]]]] = []
            if depth > 500:
                result = (everything, _NO_CONSENT)
                memo[expr_id] = result
                return result
            if not barrier:
                if expr_id in self.defined:
                    refs, opaque = self.defined[expr_id]
                    if opaque:
                        cats = cats | everything
                        inherited.append((everything, _NO_CONSENT))
                    for ref in refs:
                        ref_cats, ref_consents = of(ref, depth + 1)
                        cats = cats | ref_cats
                        inherited.append((ref_cats, ref_consents))
                elif expr_id not in self.sources and expr_id not in self.merged:
                    # Neither read from a source nor defined by an expression
                    # this walk understands: carry everything.
                    cats = cats | everything
                    inherited.append((everything, _NO_CONSENT))
            if consents is None:
                consents = _combine(inherited) if inherited else {}
            if not barrier:
                # A set operation's column holds every child's rows: consent
                # covers it only where it covers each of them.
                for other in self.merged.get(expr_id, ()):
                    other_cats, other_consents = of(other, depth + 1)
                    consents = _combine([(cats, consents), (other_cats, other_consents)])
                    cats = cats | other_cats
            result = (cats, consents)
            memo[expr_id] = result
            return result

        if self.fields is not None:
            fields = [{"name": f.name, "metadata": f.metadata} for f in self.fields]
        else:
            fields = json.loads(self.jplan.schema().json()).get("fields", [])
        ids = _listed_output(self.nodes[0], len(fields))
        if ids is None:
            ids = _output_ids(self.jplan)
        names: list[str] = []
        categories: list[frozenset[str]] = []
        consents: list[Mapping[str, frozenset[str]]] = []
        tenant_ids = self._tenant_columns()
        genuine: list[str] = []
        for expr_id, field in zip(ids, fields, strict=True):
            # What Spark kept on the output column itself counts too.
            top = _meta(field.get("metadata"))
            if expr_id in tenant_ids and all(other in tenant_ids for other in self.merged.get(expr_id, ())):
                genuine.append(str(field.get("name")))
            cats, cons = of(expr_id)
            if not top.get("declassified"):
                cats = cats | frozenset(c for c in top.get("categories", ()) if isinstance(c, str))
            names.append(str(field.get("name")))
            categories.append(cats)
            consents.append(cons)
        tenanted = self.has_tenants()
        return Lineage(
            tuple(names),
            tuple(categories),
            tuple(consents),
            True,
            tenanted,
            self.combined(of) if self.across_rows else (),
            frozenset(genuine),
        )


@dataclass(slots=True)
class _Across:
    """A plan node that makes one row from several rows' data: where it is,
    what it is, the exprIds it is keyed by (the root attributes of its
    partition or grouping keys), the exprIds whose data it combines, for a
    join the attribute pairs its condition's equalities tie, and, for a
    scalar subquery or rows combined before they were written (``fixed``:
    combining whatever else the plan says), the purposes consent covers
    what it combines for."""

    index: int
    kind: str
    keys: set[int] = dataclasses.field(default_factory=set)
    mixed: set[int] = dataclasses.field(default_factory=set)
    pairs: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    fixed: bool = False
    covering: frozenset[str] = frozenset()


# Aggregates that hand on a count of the rows, not their data.
_COUNTS = frozenset({"Count", "HyperLogLogPlusPlus", "CountIf"})
# Grouped maps (applyInPandas, applyInArrow) and maps over batches of rows.
_GROUPED_MAPS = frozenset({"FlatMapGroupsInPandas", "FlatMapGroupsInArrow"})
_BATCH_MAPS = frozenset(
    {"MapInPandas", "MapInArrow", "PythonMapInArrow", "FlatMapCoGroupsInPandas", "FlatMapCoGroupsInArrow"}
)


def _root_attributes(value: Any) -> set[int]:
    """The exprIds of the expressions in ``value`` that are a column itself
    (a key made from a column, ``length(tenant)``, keys nothing by it)."""
    out: set[int] = set()
    for tree in _trees(value):
        expr_id = _expr_id(tree[0])
        if expr_id is not None and _class(tree[0]) == "AttributeReference":
            out.add(expr_id)
    return out


def _tree_end(tree: list[Mapping[str, Any]], index: int) -> int:
    nxt = index + 1
    for _ in range(int(tree[index].get("num-children", 0))):
        nxt = _tree_end(tree, nxt)
    return nxt


def _refs_below(
    value: Any, under: str, *, first_child: bool = False, skip: frozenset[str] = frozenset()
) -> set[int]:
    """The columns referenced below each ``under`` node of the trees in
    ``value`` (its first child only with ``first_child``: a window
    expression's function, not its window specification), except below
    one whose first child is of a class in ``skip``."""
    out: set[int] = set()
    for tree in _trees(value):
        for index, node in enumerate(tree):
            if _class(node) != under:
                continue
            if skip and index + 1 < len(tree) and _class(tree[index + 1]) in skip:
                continue
            start = index + 1
            end = (
                _tree_end(tree, start)
                if first_child and int(node.get("num-children", 0))
                else _tree_end(tree, index)
            )
            for inner in tree[start:end]:
                expr_id = _expr_id(inner)
                if expr_id is not None and _class(inner) in ("AttributeReference", "OuterReference"):
                    out.add(expr_id)
    return out


def _equal_attributes(value: Any) -> list[tuple[int, int]]:
    """The column pairs a join condition ties by an equality that must hold
    (one of its top-level AND parts: ``a.tenant == b.tenant``)."""
    pairs: list[tuple[int, int]] = []
    for tree in _trees(value):
        stack = [0]
        while stack:
            index = stack.pop()
            name = _class(tree[index])
            if name == "And":
                left = index + 1
                stack.extend((left, _tree_end(tree, left)))
            elif name in ("EqualTo", "EqualNullSafe"):
                left = index + 1
                right = _tree_end(tree, left)
                if right < len(tree):
                    ids = [
                        _expr_id(tree[side]) if _class(tree[side]) == "AttributeReference" else None
                        for side in (left, right)
                    ]
                    if ids[0] is not None and ids[1] is not None:
                        pairs.append((ids[0], ids[1]))
    return pairs


# Leaf nodes Spark makes from data it has already read (DataFrame.transpose()
# runs its input when analysed): their input is not in the plan.
_MATERIALISED_LEAVES = frozenset({"Transpose"})
# Output expression id of such a node -> (categories of its input, whether the
# input held several tenants' rows), noted by the patched DataFrame.transpose().
_MATERIALISED: dict[int, tuple[frozenset[str], bool]] = {}
_MATERIALISED_LIMIT = 1 << 16

# Every category a labelled source of this process held: what a column whose
# input cannot be found may hold.
_SESSION_CATEGORIES: set[str] = set()


def _session_categories() -> frozenset[str]:
    return frozenset(_SESSION_CATEGORIES)


def _note_session(categories: Iterable[str]) -> None:
    _SESSION_CATEGORIES.update(categories)


# Expression ids of the columns of projections purposeguard made with a mark
# that lifts labels (a transform's declassification, consented()'s consent):
# only there does the mark count. Spark never reuses an expression id in a
# JVM, and a projection another caller makes (withMetadata, an alias with
# metadata) or a file read back gets fresh ids, so a copied or forged mark
# is ignored and the column keeps what its lineage carries.
_OWN_MARKS: dict[int, None] = {}
_OWN_MARKS_LIMIT = 1 << 16


def _mark_own(df: DataFrame, names: Iterable[str]) -> None:
    wanted = set(names)
    if not wanted:
        return
    try:
        output = df._jdf.queryExecution().analyzed().output()
        for k, field in enumerate(df.schema.fields):
            if field.name in wanted:
                remember(_OWN_MARKS, int(output.apply(k).exprId().id()), None, _OWN_MARKS_LIMIT)
    except Exception:
        # Not noted: the marks do not count, and the columns keep their lineage (fail closed).
        logger.warning("purposeguard could not note the columns it marked", exc_info=True)


def _trees(value: Any) -> list[list[Mapping[str, Any]]]:
    if _is_tree(value):
        return [value]
    out: list[list[Mapping[str, Any]]] = []
    if isinstance(value, list):
        for item in value:
            out.extend(_trees(item))
    return out


def _combine(parts: list[tuple[frozenset[str], Mapping[str, frozenset[str]]]]) -> dict[str, frozenset[str]]:
    """Consent over a column built from ``parts`` (categories, consents):
    a category is covered for a purpose where every part carrying it is
    covered; a part without the category takes nothing away."""
    out: dict[str, frozenset[str]] = {}
    for purpose in {p for _, consents in parts for p in consents}:
        covered: set[str] = set()
        uncovered: set[str] = set()
        for categories, consents in parts:
            granted = consents.get(purpose, _EMPTY)
            covered |= categories & granted
            uncovered |= categories - granted
        if covered - uncovered:
            out[purpose] = frozenset(covered - uncovered)
    return out


def _listed_output(node: Mapping[str, Any], expected: int | None) -> list[int] | None:
    """The output expression ids of a plan node where its JSON form lists
    them (projections, aggregations, most relations), else None: asking the
    JVM costs three round trips per column."""
    name = _class(node)
    if name == "Project":
        items = node.get("projectList")
    elif name == "Aggregate":
        items = node.get("aggregateExpressions")
    elif int(node.get("num-children", 0)) == 0:
        items = node.get("output")
    else:
        return None
    if not isinstance(items, list):
        return None
    ids = []
    for item in items:
        if not _is_tree(item) or _class(item[0]) not in ("Alias", "AttributeReference"):
            return None
        expr_id = _expr_id(item[0])
        if expr_id is None:
            return None
        ids.append(expr_id)
    if expected is not None and len(ids) != expected:
        return None
    return ids


# The metadata of a relation's or labelling projection's output, by the node's
# output expression ids. Spark never reuses an expression id within a JVM (the
# JVM's id is part of the key), and the node that makes an id fixes its
# metadata, so a plan that contains a node read before (the next step of the
# same job) needs no round trip for it.
_NODE_READS: dict[tuple[str, str, tuple[int, ...]], tuple[tuple[int, dict[str, Any]], ...]] = {}
_NODE_READS_LIMIT = 4096


def _node_key(node: Mapping[str, Any]) -> tuple[str, str, tuple[int, ...]] | None:
    ids = _listed_output(node, None)
    if not ids:
        return None
    for item in node.get("projectList") or node.get("aggregateExpressions") or node.get("output") or ():
        found = item[0].get("exprId") if _is_tree(item) else None
        jvm = found.get("jvmId") if isinstance(found, Mapping) else None
        if isinstance(jvm, str) and jvm:
            return (jvm, _class(node), tuple(ids))
    return None


def _output_ids(jnode: Any) -> list[int]:
    output = jnode.output()
    return [int(output.apply(k).exprId().id()) for k in range(output.size())]


_LINEAGE: weakref.WeakKeyDictionary[Any, Lineage] = weakref.WeakKeyDictionary()
_LINEAGE_LOCK = threading.Lock()


def _schema_only(df: DataFrame) -> Lineage:
    """Fail closed where the plan cannot be read: every column carries every
    category shown anywhere in the plan's schemas (or, without a plan, the
    DataFrame's own schema)."""
    fields = df.schema.fields
    everything = set(c for f in fields for c in _meta(f.metadata).get("categories", ()) if isinstance(c, str))
    tenanted = any(_meta(f.metadata).get("tenant") for f in fields)
    try:
        stack = [df._jdf.queryExecution().analyzed()]
        while stack:
            node = stack.pop()
            for field in json.loads(node.schema().json()).get("fields", []):
                own = _meta(field.get("metadata"))
                everything.update(c for c in own.get("categories", ()) if isinstance(c, str))
                tenanted = tenanted or bool(own.get("tenant"))
            children = node.children()
            stack.extend(children.apply(k) for k in range(children.size()))
    except Exception:
        logger.debug("purposeguard read the DataFrame's own schema only", exc_info=True)
    found = frozenset(everything)
    return Lineage(
        tuple(f.name for f in fields),
        tuple(found for _ in fields),
        tuple(_NO_CONSENT for _ in fields),
        False,
        tenanted,
    )


# Frames a transform stripped, to be labelled next (see _DataFrameLabels.strip).
_STRIPPED: weakref.WeakSet[Any] = weakref.WeakSet()


def _seed(df: DataFrame, found: Lineage) -> None:
    with _LINEAGE_LOCK:
        _LINEAGE[df] = found


def lineage(df: DataFrame) -> Lineage:
    """The categories of each output column of ``df``, from its analysed plan."""
    with _LINEAGE_LOCK:
        found = _LINEAGE.get(df)
    if found is not None:
        return found
    try:
        jdf = df._jdf
        found = _Plan(jdf.queryExecution().analyzed(), list(df.schema.fields)).resolve()
    except Exception as error:
        if isinstance(error, AttributeError) and not hasattr(df, "_jdf"):
            # Spark Connect: no plan in this process.
            logger.debug("purposeguard reads Spark Connect DataFrames from their schema only")
        else:
            logger.warning(
                "purposeguard could not derive column lineage (%s); every column carries every "
                "category of the DataFrame",
                type(error).__name__,
            )
        found = _schema_only(df)
    with _LINEAGE_LOCK:
        _LINEAGE[df] = found
    return found


# -- the label reader registered with purposeguard ----------------------------------------------


def _data_tenant(df: DataFrame, found: Lineage) -> str | None:
    """Whose data ``df``'s rows are: several tenants' (``MIXED_TENANT``, which
    no consent covers) where a tenant column is in the output or anywhere in
    its plan (a projection that left it out still holds every tenant's rows),
    else the owner its labels name."""
    fields = df.schema.fields
    if found.tenanted or any(_meta(f.metadata).get("tenant") for f in fields):
        return MIXED_TENANT
    owners = {_meta(f.metadata).get("owner") for f in fields} - {None}
    if len(owners) == 1:
        return str(owners.pop())
    return MIXED_TENANT if owners else None


class _DataFrameLabels:
    """How ``pg.labels_of``, ``@pg.purpose``, ``pg.label`` and ``@pg.transform``
    see a DataFrame."""

    def labels(self, value: Any, purpose: str | None) -> frozenset[str]:
        found = lineage(value)
        return found.for_purpose(purpose) if purpose is not None else found.all()

    def tenant(self, value: Any) -> str | None:
        return _data_tenant(value, lineage(value))

    def label(self, value: Any, categories: frozenset[str], tenant: str | None) -> Any:
        found = lineage(value)
        stripped = value in _STRIPPED
        changes: dict[str, dict[str, Any]] = {}
        for field, have in zip(value.schema.fields, found.categories, strict=True):
            extra: dict[str, Any] = {"categories": sorted(have | categories)}
            if tenant is not None:
                extra["owner"] = tenant
            if stripped:
                # A mark only counts on the columns of this projection
                # (_OWN_MARKS); columns derived from them reach it by lineage.
                extra["declassified"] = True
            changes[field.name] = _with_meta(field.metadata, **extra)
        result = _relabelled(value, changes)
        if stripped:
            _mark_own(result, changes)
        _note_session(categories)
        # The projection added is known: no need to read its plan again.
        _seed(
            result,
            dataclasses.replace(found, categories=tuple(have | categories for have in found.categories)),
        )
        return result

    def strip(self, value: Any) -> Any:
        # Only a transform strips labels, and it labels the result at once: the
        # barrier (lineage stops there) goes into that one projection. Until
        # then a new wrapper of the same plan stands for the stripped frame.
        fields = value.schema.fields
        result = type(value)(value._jdf, value.sparkSession)
        _seed(
            result,
            Lineage(
                tuple(f.name for f in fields), (_EMPTY,) * len(fields), (_NO_CONSENT,) * len(fields), True
            ),
        )
        _STRIPPED.add(result)
        return result


class _ColumnLabels:
    """``pg.labels_of(df["body"])``: the categories of the columns a Column
    expression references."""

    def labels(self, value: Any, purpose: str | None) -> frozenset[str]:
        origin = _origin_of(value)
        try:
            ids, metadata = _column_references(value)
        except Exception:
            ids, metadata = [], []
        found: set[str] = set()
        for own in metadata:
            found.update(c for c in _meta(own).get("categories", ()) if isinstance(c, str))
        frames = [origin] if origin is not None else []
        frames += [f for f in (ref() for ref in _RECENT) if f is not None and f is not origin]
        wanted = set(ids)
        for frame in frames:
            if not wanted:
                break
            try:
                plan = _exprids_of(frame)
            except Exception:
                continue
            for expr_id in list(wanted):
                if expr_id in plan:
                    found.update(plan[expr_id])
                    wanted.discard(expr_id)
        return frozenset(found)

    def tenant(self, value: Any) -> str | None:
        return None

    def label(self, value: Any, categories: frozenset[str], tenant: str | None) -> Any:
        raise TypeError("label a DataFrame's columns with label_columns(), not a Column")

    def strip(self, value: Any) -> Any:
        return value


def _column_references(column: Any) -> tuple[list[int], list[dict[str, Any]]]:
    ids: list[int] = []
    metadata: list[dict[str, Any]] = []
    stack = [column._jc.node()]
    while stack:
        node = stack.pop()
        if node.getClass().getSimpleName() == "ExpressionColumnNode":
            refs = node.expression().references().toSeq()
            for k in range(refs.size()):
                attr = refs.apply(k)
                ids.append(int(attr.exprId().id()))
                metadata.append(json.loads(attr.metadata().json()))
            continue
        children = node.children()
        for k in range(children.size()):
            stack.append(children.apply(k))
    return ids, metadata


def _exprids_of(df: DataFrame) -> dict[int, frozenset[str]]:
    found = lineage(df)
    ids = _output_ids(df._jdf.queryExecution().analyzed())
    return dict(zip(ids, found.categories, strict=True))


# Columns taken from a DataFrame (df["x"], df.x) remember it, so their
# lineage can be read from its plan; recently used DataFrames serve columns
# built from such columns.
# Column defines __eq__ (it builds an expression), so it is no dict key: by id.
_ORIGINS: dict[int, tuple[weakref.ref[Any], Any]] = {}
_RECENT: list[weakref.ref[Any]] = []
_RECENT_LIMIT = 32


def _origin_of(column: Any) -> Any:
    entry = _ORIGINS.get(id(column))
    if entry is not None and entry[0]() is column:
        return entry[1]
    return None


def _remember_origin(df: Any, column: Any) -> None:
    key = id(column)
    try:
        ref = weakref.ref(column, lambda _ref, key=key: _ORIGINS.pop(key, None))  # type: ignore[misc]
    except TypeError:
        return
    _ORIGINS[key] = (ref, df)
    if not _RECENT or _RECENT[-1]() is not df:
        _RECENT.append(weakref.ref(df))
        del _RECENT[:-_RECENT_LIMIT]


_DATAFRAME_READER = _DataFrameLabels()
_COLUMN_READER = _ColumnLabels()
register_foreign(DataFrame, _DATAFRAME_READER)
register_foreign(Column, _COLUMN_READER)


# -- consent ----------------------------------------------------------------------------------


def _tenant_column(df: DataFrame, tenant_column: str | None) -> str:
    present = _columns_of(df)
    if tenant_column is not None:
        if tenant_column not in present:
            raise SchemaError(
                f"consented(): no tenant column {tenant_column!r} (the DataFrame has {', '.join(present)})",
                tenant_column,
            )
        return tenant_column
    for field in df.schema.fields:
        if _meta(field.metadata).get("tenant"):
            return str(field.name)
    if lineage(df).tenanted:
        raise SchemaError(
            "consented(): the DataFrame's tenant column was dropped or changed (its rows were "
            "labelled with one): keep the tenant column, or filter with consented() before changing it",
            "",
        )
    raise SchemaError(
        "consented(): the DataFrame names no tenant column: label it with "
        "label_columns(..., tenant_column=...) or pass tenant_column=",
        "",
    )


def consented(
    df: DataFrame,
    purpose: str,
    *,
    store: Any = None,
    tenant_column: str | None = None,
) -> DataFrame:
    """Keep the rows whose tenant consented to ``purpose`` where the deciding
    rule is consentable.

    For each category of ``df`` denied for ``purpose`` by a consentable rule,
    only tenants with a grant in the consent store (``store``, default the
    one given to ``pg.configure(consents=...)``) keep their rows; the store
    is read once, into a snapshot that Spark broadcasts to the executors, and
    the snapshot is recorded once (a :class:`ConsentSnapshot` record). The
    result's columns say that consent covers those categories for
    ``purpose``, so a ``@pg.purpose(purpose)`` function accepts it. Categories
    denied outright stay denied: consent never widens advertising.
    """
    guard = get_guard()
    policy = guard.policy
    policy.taxonomy.require_purpose(purpose)
    column = _tenant_column(df, tenant_column)
    found = lineage(df)
    for field in df.schema.fields:
        own = _meta(field.metadata)
        if own.get("owner") == MIXED_TENANT and own.get("categories"):
            # Made from rows read from several tenants (collected rows, a
            # pandas frame): a tenant column given here does not say whose.
            raise SchemaError(
                f"consented(): column {field.name!r} holds several tenants' data (it was made from "
                f"several tenants' rows, then collected or written), so the tenant column {column!r} "
                "cannot say whose each row is: filter with consented() before the rows are combined "
                "or collected",
                column,
            )
    for kind, covering in found.combined:
        if purpose not in covering:
            # Each row's tenant would be asked for data that is other rows'
            # too (a lag() over every tenant's mail, a collect_list() per day):
            # unless what it combines was filtered for this purpose before.
            raise SchemaError(
                f"consented(): the DataFrame was made with {kind} that is not keyed by the tenant "
                f"column {column!r}, so a row holds other tenants' data and its tenant's consent "
                "cannot cover it: filter with consented() before combining rows, or partition, "
                "group or join by the tenant column",
                column,
            )
    if found.derived and found.tenanted and column not in found.tenant_columns and found.for_purpose(purpose):
        # A column overwritten (withColumn("tenant", F.lit(...))), rebuilt
        # (F.lower("tenant")) or another one named: each row's consent would
        # be asked of a tenant the data was never labelled with. (Where
        # consent for this purpose covers every column already, filtering
        # again only narrows.)
        raise SchemaError(
            f"consented(): column {column!r} is not the tenant column the data was labelled with (or a "
            "plain copy of it, in every branch of a union): filter with consented() before changing it",
            column,
        )
    covered: list[str] = []
    rules: list[str] = []
    for category in sorted(found.all()):
        allowed, rule, consentable = policy.cell(category, purpose)
        if not allowed and consentable:
            covered.append(category)
            if rule is not None and rule.id not in rules:
                rules.append(rule.id)
    if not covered:
        return df
    lookup = store if store is not None else guard.consents
    tenants: list[str] = []
    if lookup is not None:
        candidates = sorted({grant.tenant for grant in lookup.list()}) if hasattr(lookup, "list") else []
        tenants = [t for t in candidates if all(lookup.has_consent(t, purpose, c) for c in covered)]
    spark = df.sparkSession
    from pyspark.sql.types import StringType, StructField, StructType

    snapshot = spark.createDataFrame(
        [(t,) for t in tenants], StructType([StructField("consenting_tenant", StringType())])
    )
    from pyspark.sql import functions as F

    names = [field.name for field in df.schema.fields]
    if names.count(column) > 1:
        # Two columns of that name (each side of a join tied by tenant):
        # Spark cannot tell them apart by name, so the filter goes by
        # position (the first, as _tenant_column picked) and the names come back.
        positional = df.toDF(*[f"_purposeguard_{k}" for k in range(len(names))])
        tenant_of_row = positional[f"_purposeguard_{names.index(column)}"]
        kept = positional.join(
            F.broadcast(snapshot), tenant_of_row.cast("string") == snapshot["consenting_tenant"], "left_semi"
        ).toDF(*names)
    else:
        # As text: the store's tenant ids are text, and Spark's strict casts
        # refuse to compare a number column with one that is not a number.
        tenant_of_row = df[_quoted(column)]
        kept = df.join(
            F.broadcast(snapshot), tenant_of_row.cast("string") == snapshot["consenting_tenant"], "left_semi"
        )
    # left_semi keeps the left side's columns (and their order): mark them.
    changes: dict[str, dict[str, Any]] = {}
    marked: list[Mapping[str, frozenset[str]]] = []
    for field, cats, had in zip(kept.schema.fields, found.categories, found.consents, strict=True):
        now = cats & frozenset(covered)
        if not now:
            # Nothing of this column is covered: an empty mark would read the
            # same as none, and leaving it saves the projection a column.
            marked.append(had)
            continue
        granted = {p: sorted(c) for p, c in had.items()}
        granted[purpose] = sorted(now)
        changes[field.name] = _with_meta(field.metadata, consented=granted)
        marked.append({p: frozenset(c) for p, c in granted.items()})
    result = _relabelled(kept, changes)
    _mark_own(result, changes)
    _seed(result, dataclasses.replace(found, consents=tuple(marked)))
    guard.dispatch(
        ConsentSnapshot(
            purpose=purpose,
            categories=tuple(covered),
            rules=tuple(rules),
            tenants=tuple(tenants),
            function=_caller(),
            timestamp=time.time(),
        )
    )
    return result


def _caller() -> str:
    import sys

    frame = sys._getframe(2)
    return (
        f"{frame.f_globals.get('__name__', '?')}.{getattr(frame.f_code, 'co_qualname', frame.f_code.co_name)}"
    )


# -- UDFs keep their purpose --------------------------------------------------------------------


class _WithPurpose:
    """A UDF's function, run with the purpose current where it was defined.

    Pickled to the Python workers with the function: the purpose travels as
    a plain key, set around each call there. The driver's policy (a pack, or
    a policy file the worker can read) and its mode settings travel too: a
    worker whose own guard differs runs the call under a guard built from
    them, so a guarded call inside the UDF is decided by the same rules.
    """

    def __init__(self, fn: Callable[..., Any], purpose: str) -> None:
        # First: it copies the function's own attributes, which must not
        # replace this wrapper's.
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.purpose = purpose
        guard = get_guard()
        source = guard.policy.source or ""
        self.policy: str | None = source if source.startswith("pack:") or os.path.isfile(source) else None
        self.modes = (guard.mode_setting, guard.context_mode_setting)

    @property
    def __signature__(self) -> inspect.Signature:
        # Grouped-map pandas UDFs pass the group key only to a function that
        # takes two arguments; the workers count them with getfullargspec,
        # which reads this and not __wrapped__.
        return inspect.signature(self.fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        guard = self._guard()
        token = PURPOSE.set(self.purpose)
        try:
            if guard is None:
                result = self.fn(*args, **kwargs)
            else:
                with guard.activate():
                    result = self.fn(*args, **kwargs)
        finally:
            PURPOSE.reset(token)
        if isinstance(result, Iterator):
            # Iterator pandas UDFs (mapInPandas, Iterator[pd.Series]) do their
            # work as the worker pulls each batch: the purpose is set for each.
            return self._each(result, guard)
        return result

    def _each(self, results: Iterator[Any], guard: Any) -> Iterator[Any]:
        while True:
            token = PURPOSE.set(self.purpose)
            try:
                if guard is None:
                    item = next(results)
                else:
                    with guard.activate():
                        item = next(results)
            except StopIteration:
                return
            finally:
                PURPOSE.reset(token)
            yield item

    def _guard(self) -> Any:
        if self.policy is None:
            return None
        current = STATE.guard
        if (
            current is not None
            and current.policy.source == self.policy
            and (current.mode_setting, current.context_mode_setting) == self.modes
        ):
            return None
        return _worker_guard(self.policy, self.modes)


_WORKER_GUARDS: dict[tuple[str, tuple[str | None, str | None]], Any] = {}


def _worker_guard(source: str, modes: tuple[str | None, str | None]) -> Any:
    key = (source, modes)
    if key in _WORKER_GUARDS:
        return _WORKER_GUARDS[key]
    guard = None
    try:
        policy = Policy.load(source[5:] if source.startswith("pack:") else source)
        guard = _runtime.Guard(policy, mode=modes[0], context_mode=modes[1])
    except PurposeGuardError as error:
        # The worker keeps its own guard (PURPOSEGUARD_POLICY, else the pack).
        logger.warning("purposeguard could not load the driver's policy in a Spark worker: %s", error)
    _WORKER_GUARDS[key] = guard
    return guard


# -- writes are egress ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    """Where a write lands, for the policy's destinations: the paths its
    files may go to, the names of the tables it writes, and the hosts of
    the databases it sends rows to (JDBC)."""

    paths: tuple[str, ...]
    tables: tuple[str, ...]
    hosts: tuple[str, ...] = ()


def _write_purpose(session: Any, target: _Target) -> str | None:
    """The purpose a write to ``target`` is for: the purpose of the policy's
    destination that names one of its paths, else one of its tables, else
    the current purpose."""
    policy = get_guard().policy
    for path in target.paths:
        for candidate in _path_candidates(path):
            destination = policy.destination_for_path(candidate)
            if destination is not None:
                return destination.purpose
    for host in target.hosts:
        destination = policy.destination_for(host)
        if destination is not None:
            return destination.purpose
    for table in target.tables:
        for candidate in _table_candidates(session, table):
            destination = policy.destination_for_table(candidate)
            if destination is not None:
                return destination.purpose
    return PURPOSE.get()


def _check_write(
    df: DataFrame,
    *,
    path: str | None = None,
    table: str | None = None,
    method: str,
    function: str | None = None,
    target: _Target | None = None,
    url: str | None = None,
) -> None:
    """``target``: where the write lands, already looked up; ``url``: the
    database a JDBC write sends its rows to."""
    guard = get_guard()
    if target is None:
        if path is None and table:
            # A table's files are where its location (or its database's,
            # its partitions', a temporary view's files) says.
            target = _target_of(df.sparkSession, table, {})
        else:
            target = _Target((path,) if path is not None else (), (table,) if table else ())
    if url is not None:
        target = _Target(target.paths, target.tables, _url_hosts(url))
    purpose = _write_purpose(df.sparkSession, target)
    if purpose is None:
        return
    function = function or f"pyspark.sql.DataFrameWriter.{method}"
    try:
        labels = _DATAFRAME_READER.labels(df, purpose)
    except Exception as error:
        guard._internal_error(error, frozenset(), purpose, "egress", function, None, False)
        return
    _check_written(labels, tenant_of(df) if labels else None, purpose, function)
    if path is not None and labels and method in _NO_METADATA:
        _say_once(
            f"labels left behind:{path}",
            "purposeguard: columns labelled %s were written as %s to %s, a format that keeps no column "
            "metadata: read back, they carry no labels (write parquet or orc, or label them where "
            "they are read with label_columns)",
            ", ".join(sorted(labels)),
            method,
            path,
        )
    if url is not None and labels:
        where = ", ".join(target.hosts) or "a database"
        _say_once(
            f"labels left behind:jdbc:{where}",
            "purposeguard: columns labelled %s were written through JDBC to %s, which keeps no column "
            "metadata: read back, they carry no labels (label them where they are read with "
            "label_columns)",
            ", ".join(sorted(labels)),
            where,
        )


_URL_NETWORK = re.compile(r"[a-z0-9:+._-]*[:@]//", re.IGNORECASE)


def _url_hosts(url: str) -> tuple[str, ...]:
    """The hosts a JDBC URL names after ``//`` (``jdbc:postgresql://db.example:5432/x``,
    several separated by commas, ``jdbc:oracle:thin:@//db.example/x``);
    none for a URL of another form (``jdbc:derby:/data/db``)."""
    rest = url[5:] if url[:5].lower() == "jdbc:" else url
    # "//" right after the subprotocol: one inside a file's path is no host.
    network = _URL_NETWORK.match(rest)
    if network is None:
        return ()
    authority = re.split(r"[/;?]", rest[network.end() :], maxsplit=1)[0]
    hosts: list[str] = []
    for part in authority.split(","):
        part = part.rpartition("@")[2].strip()
        host = part[1:].partition("]")[0] if part.startswith("[") else part.partition(":")[0]
        if host:
            hosts.append(host.lower())
    return tuple(hosts)


def _check_written(labels: frozenset[str], tenant: str | None, purpose: str, function: str) -> None:
    """A write of data labelled ``labels`` (whose ``tenant``) for ``purpose``:
    checked as egress, with the zone's own categories."""
    guard = get_guard()
    state = ZONE.get() if FLAGS.zones else None
    if state is not None and labels:
        # With whose data it is: the zone's data tenant is then the frame's.
        state.add(labels, tenant)
    if labels:
        guard.check_labels(labels, purpose, via="egress", function=function, tenant=tenant)
    if state is not None:
        check_zone(guard, state, purpose, labels, function, judged_for=tenant)


# Writers whose files keep no Spark schema metadata: what they write is read
# back unlabelled.
_NO_METADATA = frozenset({"csv", "json", "text", "xml"})


def _path_candidates(path: str) -> list[str]:
    """The forms of a written path a destination may name: as given, a
    ``file:`` URL as its local path, a local path made absolute and normal."""
    out = [path]
    local: str | None = None
    if path[:5].lower() == "file:":
        from urllib.parse import unquote, urlsplit

        local = unquote(urlsplit(path).path) or None
    elif "://" not in path:
        local = path
    if local is not None:
        # A symbolic link into a destination's folder writes there.
        candidates = [local, os.path.abspath(local), os.path.realpath(local)]
        if not os.path.isabs(local):
            # Spark makes a relative path absolute against the JVM's folder,
            # the one the process had when Spark started (not Python's now).
            started_in = _jvm_folder()
            if started_in is not None:
                joined = os.path.normpath(os.path.join(started_in, local))
                candidates += [joined, os.path.realpath(joined)]
        for candidate in candidates:
            if candidate not in out:
                out.append(candidate)
    # Spark writes its part files into the folder named: "<folder>/*" names it.
    for candidate in list(out):
        inside = candidate.rstrip("/") + "/part-00000"
        if inside not in out:
            out.append(inside)
    return out


_JVM_FOLDER: list[str | None] = []


def _jvm_folder() -> str | None:
    """The JVM's working folder (read once: a JVM's never changes)."""
    if not _JVM_FOLDER:
        from pyspark import SparkContext

        jvm = SparkContext._jvm
        if jvm is None:
            return None
        try:
            _JVM_FOLDER.append(str(jvm.java.lang.System.getProperty("user.dir")))
        except Exception:
            logger.debug("purposeguard could not read the JVM's working folder", exc_info=True)
            return None
    return _JVM_FOLDER[0]


def _identifier_parts(name: str) -> list[str]:
    """A multi-part Spark identifier (``db.tbl``, `` `a.b`.c ``) as its parts, unquoted."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    k = 0
    while k < len(name):
        char = name[k]
        if char == "`":
            if quoted and name[k + 1 : k + 2] == "`":
                current.append("`")
                k += 2
                continue
            quoted = not quoted
        elif char == "." and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        k += 1
    parts.append("".join(current).strip())
    return parts


def _table_candidates(session: Any, table: str) -> list[str]:
    """The names a written table goes by, for the policy's ``tables``: as
    given, unquoted, and with and without the session catalog and the
    current database (``ads``, ``default.ads``, ``spark_catalog.default.ads``)."""
    out = [table]
    parts = _identifier_parts(table)
    if not all(parts):
        return out
    if len(parts) == 3 and parts[0].lower() == "spark_catalog":
        parts = parts[1:]
    if len(parts) == 1 or len(parts) == 2:
        try:
            current = str(session.catalog.currentDatabase())
        except Exception:
            current = "default"
        database = parts[0] if len(parts) == 2 else current
        bare = parts[-1]
        # The bare name too, in any database: a pattern without a database
        # (ads_*) names such tables wherever they are made.
        names = [bare, f"{database}.{bare}", f"spark_catalog.{database}.{bare}"]
    else:
        names = [".".join(parts)]
    for name in names:
        if name not in out:
            out.append(name)
    return out


def _path_of(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str | None:
    path = args[0] if args else None
    for key, value in kwargs.items():
        # Spark reads its options without case (PATH=..., Path=...).
        if isinstance(key, str) and key.lower() == "path" and value is not None:
            path = value
    if isinstance(path, (list, tuple)):
        path = path[0] if path else None
    return str(path) if path is not None else None


def _persisted(df: DataFrame) -> DataFrame:
    """``df`` as it is written or checkpointed: each column's metadata says
    what its lineage carries (categories, and whose rows they are), so the
    file, table or checkpoint read back is labelled like ``df``. Marks that
    lift labels (declassified, consented) are left out: they count only on
    the projections purposeguard made, and consent is decided where the data
    is used again."""
    try:
        found = lineage(df)
        fields = df.schema.fields
        tenant = _data_tenant(df, found)
        has_tenant_column = any(_meta(f.metadata).get("tenant") for f in fields)
        # Rows combined across tenants stay so once written: the tenant
        # column read back says it, and consented() refuses them.
        combined = sorted({kind for kind, _ in found.combined})
        changes: dict[str, dict[str, Any]] = {}
        for field, categories in zip(fields, found.categories, strict=True):
            own = _meta(field.metadata)
            wanted = {k: v for k, v in own.items() if k not in ("declassified", "consented")}
            if combined and (own.get("tenant") or categories):
                # On the data's columns too: a write partitioned by the tenant
                # column keeps that column in directory names, without metadata.
                wanted["combined"] = sorted(set(wanted.get("combined") or ()) | set(combined))
            if categories:
                wanted["categories"] = sorted(categories)
                if tenant is not None and not has_tenant_column:
                    wanted["owner"] = tenant
            if wanted != own:
                out = {k: v for k, v in (field.metadata or {}).items() if not k.startswith("__")}
                out[KEY] = wanted
                changes[field.name] = out
        if not changes:
            return df
        result = _relabelled(df, changes)
        # The check of the write is the frame's own (with its consent).
        _seed(result, found)
        return result
    except Exception:
        logger.warning("purposeguard could not note a DataFrame's labels on what it writes", exc_info=True)
        return df


# -- writes issued as SQL text --------------------------------------------------------------------
#
# spark.sql() runs a statement that writes (INSERT, CREATE TABLE AS SELECT,
# MERGE, INSERT OVERWRITE DIRECTORY) at once, inside the JVM: no
# DataFrameWriter is made. The statement is parsed first, its query made a
# DataFrame of its own (analysed, never run), and that is checked as the
# DataFrame API's write of it would be; then Spark runs the statement.

# A statement with none of these words writes nothing: handed on unparsed.
_SQL_WRITE_WORDS = re.compile(
    r"(?i)\b(?:insert|create|replace|merge|execute|begin|set|declare|rename|location)\b"
)
# The parsed plans that write a query's rows somewhere.
_SQL_WRITES = frozenset(
    {
        "InsertIntoStatement",
        "CreateTableAsSelect",
        "ReplaceTableAsSelect",
        "InsertIntoDir",
        "MergeIntoTable",
        # ALTER TABLE ... RENAME TO: the table's rows, under a new name.
        "RenameTable",
    }
)
# Statements whose writes are not known before they run (their text is
# built when they run, or they hold several statements).
_SQL_UNREAD = frozenset({"UnresolvedExecuteImmediate", "ExecuteImmediateQuery", "CompoundBody"})
# Session variables set from a query: what they hold is not followed into
# the statements that read them.
_SQL_VARIABLES = frozenset({"SetVariable", "CreateVariable"})
_SQL_FUNCTION = "pyspark.sql.SparkSession.sql"
_SAID: set[str] = set()
_SAID_LIMIT = 1024
# Plan nodes looked through for writes (a multi-insert's union of inserts).
_SQL_NODES_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class _SqlWrite:
    """What a SQL statement writes: the plan of the rows, and where they go."""

    query: Any
    table: str | None
    path: str | None
    kind: str
    # A table whose rows are written whole (a rename's): read as spark.table().
    source: str | None = None
    # Files a table is pointed at (provider, location): read as the write.
    files: tuple[str, str] | None = None
    # The partition values an INSERT names (PARTITION (d=1)); the columns it
    # leaves to the rows (PARTITION (d), or no PARTITION) are not among them.
    partition: tuple[tuple[str, str | None], ...] = ()


def _sql_runner(original: Any) -> Any:
    def sql(self: Any, sqlQuery: Any, args: Any = None, **kwargs: Any) -> Any:
        if not isinstance(sqlQuery, str):
            return original(self, sqlQuery, args, **kwargs)
        if not kwargs:
            if _SQL_WRITE_WORDS.search(sqlQuery) is None:
                return original(self, sqlQuery, args)
            _check_sql(self, sqlQuery, args, ())
            return original(self, sqlQuery, args)
        # Formatted here, as PySpark would, before the words are looked for
        # (a Column argument is put in as its SQL text): the frames named in
        # the text are temporary views while the statement is checked and run.
        from pyspark.sql.sql_formatter import SQLStringFormatter

        formatter = SQLStringFormatter(self)
        text = formatter.format(sqlQuery, **kwargs)
        try:
            if _SQL_WRITE_WORDS.search(text) is not None:
                _check_sql(self, text, args, kwargs.values())
            return original(self, text, args)
        finally:
            formatter.clear()

    return sql


def _check_sql(session: Any, text: str, args: Any, formatted: Iterable[Any]) -> None:
    try:
        parsed = _parse_sql(session, text, args)
    except Exception:
        # Spark refuses the statement itself, with its own error.
        return
    try:
        writes = _sql_writes(parsed, session._jvm)
    except Exception as error:
        # Not read: the statement is not let through unread.
        get_guard()._internal_error(
            error, frozenset(), PURPOSE.get() or _NO_PURPOSE, "egress", _SQL_FUNCTION, None, False
        )
        return
    kind = parsed.getClass().getSimpleName()
    if kind in _SQL_UNREAD:
        _say_once(
            kind,
            "purposeguard: a SQL statement that builds or holds other statements (%s) is not "
            "checked: what it writes is not known before it runs; write through df.write, or run "
            "each statement with spark.sql()",
            kind,
        )
    elif kind in _SQL_VARIABLES:
        _say_if_variable_holds_data(session, parsed)
    # A labelled value put into the statement's text or its args (VALUES, a
    # literal in the query), or formatted into it (the text made from it
    # is plain), is written too.
    put_in = [text, args, *(v for v in formatted if not isinstance(v, (DataFrame, Column)))]
    labels, tenant = labels_of(put_in), tenant_of(put_in)
    sent = _sent_in_columns(session, args.values() if isinstance(args, dict) else (args or ()))
    if sent:
        labels, tenant = labels | sent, MIXED_TENANT
    for write in writes:
        _check_sql_write(session, write, labels, tenant)


def _sent_in_columns(session: Any, values: Iterable[Any]) -> frozenset[str]:
    """The categories of labelled values made literals (``F.lit(v)``) among
    a statement's parameters."""
    found: set[str] = set()
    if not _SENT:
        return frozenset()
    for value in values:
        if not isinstance(value, Column):
            continue
        try:
            expression = session._jsparkSession.expression(value._jc)
            if expression.getClass().getSimpleName() == "Literal":
                sent = _SENT.get(str(expression.value()))
                if sent is not None:
                    found.update(sent[0])
        except Exception:  # noqa: BLE001 - not a literal Spark can hand back
            continue
    return frozenset(found)


# The purpose an internal error is judged under where no purpose is current.
_NO_PURPOSE = "(none)"


def _check_sql_write(
    session: Any,
    write: _SqlWrite,
    put_in: frozenset[str],
    put_tenant: str | None,
    function: str = _SQL_FUNCTION,
) -> None:
    if write.path:
        target = _Target((write.path,), (write.table,) if write.table else ())
    else:
        # Files a table is pointed at stay where they are: no partition's
        # own location receives them.
        partition = None if write.kind == "CreateTable" else dict(write.partition)
        target = _target_of(session, write.table, partition)
    purpose = _write_purpose(session, target)
    if put_in and purpose is not None:
        get_guard().check_labels(put_in, purpose, via="egress", function=function, tenant=put_tenant)
    if write.query is not None and _literal_rows(write.query):
        # VALUES of literals (and DEFAULT, which only the target table
        # resolves): what they hold is the text, checked above, and labelled
        # values sent as literals, found in it. Not analysed: Spark would
        # log its own error for a DEFAULT out of its table, and a long list
        # costs more to analyse than to write.
        sent = _sent_in(str(write.query.toString()))
        if sent and purpose is not None:
            _check_written(sent, MIXED_TENANT, purpose, function)
        return
    try:
        if write.kind == "RenameTable":
            if write.source is None:
                return
            frame = session.table(write.source)
        elif write.kind == "CreateTable":
            frame = _files_at(session, write.files)
            if frame is None:
                return
        else:
            frame = _sql_query_frame(session, write.query)
    except Exception as error:
        if purpose is not None:
            # Spark would analyse the same query: a statement this cannot
            # read is not one to let through unchecked (enforce mode denies).
            get_guard()._internal_error(error, frozenset(), purpose, "egress", function, None, False)
        return
    if purpose is not None:
        _check_write(frame, table=write.table, method="sql", function=function, target=target)
    if write.kind not in ("RenameTable", "CreateTable"):
        # (A renamed table, or one over files, keeps its columns' metadata.)
        _say_if_labels_stay_behind(session, frame, write)


def _files_at(session: Any, files: tuple[str, str] | None) -> DataFrame | None:
    """The rows of the files a table is made over (provider, location), or
    None where there are none to read (a new, empty location)."""
    if files is None:
        return None
    provider, location = files
    try:
        jvm = session._jvm
        hadoop_path = jvm.org.apache.hadoop.fs.Path(location)
        file_system = hadoop_path.getFileSystem(session._jsc.hadoopConfiguration())
        if not file_system.exists(hadoop_path):
            return None
        frame: DataFrame = session.read.format(provider or "parquet").load(location)
        return frame
    except Exception:
        # Nothing there yet (or not readable so): no rows enter the table.
        logger.debug("purposeguard found no files to read where a table is made", exc_info=True)
        return None


def _parse_sql(session: Any, text: str, args: Any) -> Any:
    """``text`` parsed as ``spark.sql(text, args)`` parses it: parameters
    (also in a path or ``IDENTIFIER(:name)``) put in by the parser."""
    jss = session._jsparkSession
    parser = jss.sessionState().sqlParser()
    if not args:
        return parser.parsePlan(text)
    from pyspark.sql.classic.column import _to_java_column
    from pyspark.sql.functions import lit

    jvm = session._jvm
    contexts = jvm.org.apache.spark.sql.catalyst.parser
    if isinstance(args, dict):
        values = jvm.java.util.HashMap()
        for name, value in args.items():
            values.put(name, jss.expression(_to_java_column(lit(value))))
        context = contexts.NamedParameterContext(
            jvm.org.apache.spark.api.python.PythonUtils.toScalaMap(values)
        )
    else:
        context = contexts.PositionalParameterContext(
            _seq(jvm, [jss.expression(_to_java_column(lit(value))) for value in args])
        )
    return parser.parsePlanWithParameters(text, context)


def _sql_writes(parsed: Any, jvm: Any) -> list[_SqlWrite]:
    """Every write in ``parsed`` (a statement's parsed plan): one, or a
    multi-insert's several, each with the common table expressions above it."""
    found: list[_SqlWrite] = []
    stack: list[tuple[Any, Any]] = [(parsed, None)]
    seen = 0
    while stack:
        node, ctes = stack.pop()
        seen += 1
        if seen > _SQL_NODES_LIMIT:
            raise PurposeGuardError(f"a SQL statement's plan has more than {_SQL_NODES_LIMIT} nodes")
        kind = node.getClass().getSimpleName()
        if kind == "CreateTable":
            # A table made over files already written (LOCATION): their rows,
            # under the table's name.
            location = node.tableSpec().location()
            if location.isDefined():
                provider = node.tableSpec().provider()
                found.append(
                    _SqlWrite(
                        None,
                        _sql_relation_name(node.name()),
                        None,
                        kind,
                        files=(str(provider.get()) if provider.isDefined() else "", str(location.get())),
                    )
                )
            continue
        if kind in ("SetTableLocation", "AddPartitions"):
            # A table (or a partition of it) pointed at files already written.
            if kind == "SetTableLocation":
                locations = [str(node.location())]
            else:
                parts = node.parts()
                found_at = (parts.apply(k).location() for k in range(parts.size()))
                locations = [str(at.get()) for at in found_at if at.isDefined()]
            table = _sql_relation_name(node.child())
            found.extend(_SqlWrite(None, table, None, "CreateTable", files=("", at)) for at in locations)
            continue
        if kind == "RenameTable":
            if not node.isView():
                # A view renamed stores nothing: reading it reads its tables.
                new_name = _joined_name(node.newName())
                found.append(_SqlWrite(None, new_name, None, kind, _sql_relation_name(node.child())))
            continue
        if kind in _SQL_WRITES:
            found.append(_sql_write(node, kind, ctes, jvm))
            continue
        if kind == "UnresolvedWith":
            ctes = node
        elif kind != "Union" and node is not parsed:
            # Writes are statements: only a multi-insert's union of them, and
            # the WITH above it, hold any (a query's nodes never do).
            continue
        children = node.children()
        for k in range(children.size()):
            stack.append((children.apply(k), ctes))
    return found


def _sql_write(root: Any, kind: str, ctes: Any, jvm: Any) -> _SqlWrite:
    table: str | None = None
    path: str | None = None
    partition: tuple[tuple[str, str | None], ...] = ()
    if kind == "InsertIntoStatement":
        query = root.query()
        table = _sql_relation_name(root.table())
        spec = jvm.scala.jdk.javaapi.CollectionConverters.asJava(root.partitionSpec())
        values = ((str(k), v.get()) for k, v in spec.items() if v.isDefined())
        partition = tuple((k, None if v is None else str(v)) for k, v in values)
    elif kind in ("CreateTableAsSelect", "ReplaceTableAsSelect"):
        query = root.query()
        table = _sql_relation_name(root.name())
        location = root.tableSpec().location()
        path = str(location.get()) if location.isDefined() else None
    elif kind == "InsertIntoDir":
        query = root.child()
        location = root.storage().locationUri()
        path = str(location.get()) if location.isDefined() else None
    else:  # MergeIntoTable: the source's rows go into the target.
        query = root.sourceTable()
        table = _sql_relation_name(root.targetTable())
    if ctes is not None:
        # WITH ... INSERT INTO: the query keeps the common table expressions.
        query = ctes.withNewChildren(_seq(jvm, [query]))
    return _SqlWrite(query, table, path, kind, partition=partition)


def _sent_in(text: str) -> frozenset[str]:
    """The categories of labelled values sent to Spark whose text ``text`` holds."""
    found: set[str] = set()
    for sent, (categories, _tenant) in list(_SENT.items()):
        if sent in text:
            found.update(categories)
    return frozenset(found)


def _literal_rows(query: Any) -> bool:
    """Whether ``query`` is a VALUES list reading no table (no subquery)."""
    try:
        kind = query.getClass().getSimpleName()
        return (
            kind in ("UnresolvedInlineTable", "LocalRelation")
            and "subquery" not in str(query.toString()).lower()
        )
    except Exception:
        return False


def _table_location(session: Any, table: str | None) -> str | None:
    """Where a written table's files are, for the policy's ``paths``: the
    table's own location, or, for a table not made yet, its database's
    (only read where a destination names paths)."""
    if table is None or not any(d.paths for d in get_guard().policy.destinations):
        return None
    try:
        if session.catalog.tableExists(table):
            return _described_location(session, f"DESCRIBE TABLE EXTENDED {table}")
        parts = _identifier_parts(table)
        if len(parts) > 2:
            return None  # another catalog's table: no database location to read
        database = parts[0] if len(parts) == 2 else str(session.catalog.currentDatabase())
        if not session.catalog.databaseExists(database):
            return None
        quoted = f"`{database.replace('`', '``')}`"
        location = _described_location(session, f"DESCRIBE DATABASE EXTENDED {quoted}")
        return f"{location.rstrip('/')}/{parts[-1]}" if location else None
    except Exception:
        logger.debug("purposeguard could not find where a written table's files go", exc_info=True)
        return None


def _target_of(session: Any, table: str | None, partition: Mapping[str, str | None] | None) -> _Target:
    """Where a write into ``table`` lands: the table's location (or its
    database's), the own locations of the partitions it may write (those
    ``partition``'s values name; with none named, every one, as which a
    write's rows pick is known only when it runs; None: no partition's),
    and, for a temporary view over files or over a table, those files and
    that table (an INSERT into such a view writes there)."""
    if not table:
        return _Target((), ())
    destinations = get_guard().policy.destinations
    if not destinations:
        return _Target((), (table,))
    paths: list[str] = []
    tables = [table]
    viewed = _viewed_relation(session, table)
    if viewed is not None:
        files, under = viewed
        paths.extend(files)
        if under is None:
            return _Target(tuple(paths), tuple(tables))
        tables.append(under)
        table = under
    if any(d.paths for d in destinations):
        location = _table_location(session, table)
        if location is not None:
            paths.append(location)
        if partition is not None:
            paths.extend(_partition_locations(session, table, partition))
    return _Target(tuple(dict.fromkeys(paths)), tuple(tables))


def _viewed_relation(session: Any, name: str) -> tuple[list[str], str | None] | None:
    """For a temporary view Spark inserts into (one over files, ``CREATE
    TEMPORARY VIEW ... USING parquet OPTIONS (path ...)`` or
    ``spark.read.parquet(...).createOrReplaceTempView``, or over a table),
    the folders of its files and the table's name; None for any other name."""
    try:
        state = session._jsparkSession.sessionState()
        if not state.catalog().isTempView(state.sqlParser().parseMultipartIdentifier(name)):
            return None
        plan = session.table(name)._jdf.queryExecution().analyzed()
        while plan.getClass().getSimpleName() in ("SubqueryAlias", "View"):
            plan = plan.child()
        if plan.getClass().getSimpleName() != "LogicalRelation":
            return [], None  # a view of a query: Spark refuses to insert into it
        files: list[str] = []
        relation = plan.relation()
        if relation.getClass().getSimpleName() == "HadoopFsRelation":
            roots = relation.location().rootPaths()
            files = [str(roots.apply(k)) for k in range(roots.size())]
        table = plan.catalogTable()
        return files, str(table.get().identifier().quotedString()) if table.isDefined() else None
    except Exception:
        logger.debug("purposeguard could not read what a temporary view is over", exc_info=True)
        return None


def _partition_locations(session: Any, table: str, partition: Mapping[str, str | None]) -> list[str]:
    """The locations of a session catalog table's partitions that a write
    naming the values ``partition`` may write (ALTER TABLE ... ADD PARTITION
    ... LOCATION and SET LOCATION put one anywhere), found as Spark finds
    them when it writes: by the values named, with the table's own column
    names (any case)."""
    parts = _identifier_parts(table)
    if len(parts) == 3 and parts[0].lower() == "spark_catalog":
        parts = parts[1:]
    if len(parts) > 2 or not all(parts):
        return []  # another catalog's table: its partitions are its own
    jvm = session._jvm
    try:
        catalog = session._jsparkSession.sessionState().catalog()
        database = jvm.scala.Option.apply(parts[0] if len(parts) == 2 else None)
        identifier = jvm.org.apache.spark.sql.catalyst.TableIdentifier(parts[-1], database)
        if not catalog.tableExists(identifier):
            return []
        columns = catalog.getTableMetadata(identifier).partitionColumnNames()
        named = [str(columns.apply(k)) for k in range(columns.size())]
        if not named:
            return []
        spec: dict[str, str] = {}
        for key, value in partition.items():
            column = next((c for c in named if c.lower() == key.lower()), None)
            if column is None or value is None:
                # Not a column Spark would find, or a NULL Spark writes under
                # its own default name: every partition.
                spec = {}
                break
            spec[column] = value
        values = jvm.scala.Option.apply(
            jvm.org.apache.spark.api.python.PythonUtils.toScalaMap(spec) if spec else None
        )
        found = catalog.listPartitions(identifier, values)
        return [str(found.apply(k).location()) for k in range(found.size())]
    except Exception:
        logger.debug("purposeguard could not read where a table's partitions are", exc_info=True)
        return []


def _described_location(session: Any, statement: str) -> str | None:
    for row in session.sql(statement).collect():
        if str(row[0]).strip() == "Location":
            return str(row[1])
    return None


def _sql_relation_name(node: Any) -> str | None:
    """A written table's name as the policy's ``tables`` match it, or None
    where the statement computes it (IDENTIFIER(<expression>))."""
    kind = node.getClass().getSimpleName()
    if kind == "SubqueryAlias":
        # MERGE INTO t AS target
        node = node.child()
        kind = node.getClass().getSimpleName()
    if kind in ("UnresolvedRelation", "UnresolvedTableOrView", "UnresolvedTable"):
        parts = node.multipartIdentifier()
    elif kind == "UnresolvedIdentifier":
        parts = node.nameParts()
    else:
        return None
    return _joined_name(parts)


def _joined_name(parts: Any) -> str:
    """A Scala ``Seq`` of name parts as one name ``_identifier_parts`` reads back."""
    names = [str(parts.apply(k)) for k in range(parts.size())]
    return ".".join(f"`{n.replace('`', '``')}`" if "." in n or "`" in n else n for n in names)


def _seq(jvm: Any, items: list[Any]) -> Any:
    """A Scala ``Seq`` of ``items`` (JVM objects or strings)."""
    listed = jvm.java.util.ArrayList()
    for item in items:
        listed.add(item)
    return jvm.org.apache.spark.api.python.PythonUtils.toSeq(listed)


def _sql_query_frame(session: Any, query: Any) -> DataFrame:
    """The statement's query as a DataFrame (analysed, not run)."""
    from pyspark.sql.classic.dataframe import DataFrame as ClassicFrame

    dataset = getattr(session._jvm, "org.apache.spark.sql.classic.Dataset")
    return ClassicFrame(dataset.ofRows(session._jsparkSession, query), session)


def _say_if_variable_holds_data(session: Any, parsed: Any) -> None:
    """A session variable set from a query that reads labelled columns
    holds their data without labels: said once per variable."""
    carried: set[str] = set()
    try:
        children = parsed.children()
        for k in range(children.size()):
            carried |= lineage(_sql_query_frame(session, children.apply(k))).all()
    except Exception:
        # Not read (a value with no query): nothing known to say.
        logger.debug("purposeguard could not read what a SQL variable is set from", exc_info=True)
    if carried:
        _say_once(
            "variable",
            "purposeguard: a SQL session variable was set from columns labelled %s: what it holds "
            "reaches the statements that read it without labels (they are not checked for it); "
            "select the columns in the statement that writes them instead",
            ", ".join(sorted(carried)),
        )


def _say_if_labels_stay_behind(session: Any, frame: DataFrame, write: _SqlWrite) -> None:
    """What a SQL statement writes keeps the column metadata of its query's
    columns (a plain copy of a labelled column keeps its labels), or, into
    an existing table, that table's: a column derived from labelled ones
    (``upper(body)``) is read back without their labels, where ``df.write``
    would have written them. Said once per target."""
    found = lineage(frame)
    if not found.all():
        return
    left: set[str] = set()
    if write.kind in ("InsertIntoStatement", "MergeIntoTable") and write.table is not None:
        try:
            left = set(found.all() - lineage(session.table(write.table)).all())
        except Exception:
            logger.debug("purposeguard could not read the labels of a table SQL writes to", exc_info=True)
            left = set(found.all())
    else:
        for field, categories in zip(frame.schema.fields, found.categories, strict=True):
            kept = _meta(field.metadata).get("categories") or ()
            left |= categories - set(kept)
    if not left:
        return
    where = write.table or write.path or "a table"
    _say_once(
        f"labels left behind:{where}",
        "purposeguard: a SQL statement wrote columns derived from data labelled %s to %s, which is "
        "read back without those labels (SQL keeps only the metadata a column already has): write it "
        "with df.write or df.writeTo, or label it where it is read (label_columns)",
        ", ".join(sorted(left)),
        where,
    )


def _say_once(topic: str, message: str, *values: Any) -> None:
    with _SAID_LOCK:
        if topic in _SAID or len(_SAID) >= _SAID_LIMIT:
            return
        _SAID.add(topic)
    logger.warning(message, *values)


_SAID_LOCK = threading.Lock()
# A reset says each of them again.
on_reset("spark warnings said once", _SAID.clear)


# -- data that reaches Python ---------------------------------------------------------------------
#
# Labels live in the plan; collect() and its kin hand plain Python values to
# the driver. Each such read is a use: the zone learns what it read, a
# current purpose is checked against it (via="source"), and the rows carry
# their columns' categories so a check outside any zone still sees them.


@dataclass(frozen=True, slots=True)
class _Origin:
    """What a DataFrame's rows hold: its lineage, where its tenant column
    is, and whose data the rows are when no column of theirs says."""

    found: Lineage
    tenant_at: int | None
    tenant: str | None

    @property
    def columns(self) -> tuple[tuple[str, ...], ...]:
        """The categories each column's values carry: all of them. What a
        :func:`consented` filter covers is a note on the DataFrame's plan,
        true of the rows that plan keeps; values taken out of it (rows,
        pandas, Arrow, a DataFrame made from them) are checked again where
        they are used, with their own tenant, and consent decides there."""
        return tuple(tuple(sorted(categories)) for categories in self.found.categories)


def _origin(df: Any) -> _Origin | None:
    found = lineage(df)
    if not found.all():
        return None
    fields = df.schema.fields
    tenant_at = next((k for k, f in enumerate(fields) if _meta(f.metadata).get("tenant")), None)
    if tenant_at is not None and found.combined:
        # Rows a window or an aggregation combined across tenants: a row's
        # tenant column does not say whose data the row holds.
        tenant_at = None
    return _Origin(found, tenant_at, _data_tenant(df, found))


_SKIPPED_FRAMES = ("purposeguard", "pyspark", "py4j", "wrapt", "functools", "contextlib")


def _reader_name() -> str:
    """The application code that asked for the data (the frames of
    purposeguard and PySpark between are machinery)."""
    frame = sys._getframe(1)
    for _ in range(64):
        module = str(frame.f_globals.get("__name__", ""))
        if not module.startswith(_SKIPPED_FRAMES) or frame.f_back is None:
            break
        frame = frame.f_back
    return frame_name(frame)


def _reading(df: Any) -> _Origin | None:
    """Before ``df``'s data moves: check the read against the current purpose
    (``via="source"``, as loading a labelled row is checked) and return what
    the rows hold. None when they hold nothing labelled."""
    try:
        origin = _origin(df)
    except Exception:
        # The schema itself cannot be read: the action fails the same way.
        logger.debug("purposeguard could not read the DataFrame before an action", exc_info=True)
        return None
    if origin is None:
        return None
    purpose = PURPOSE.get()
    if purpose is not None:
        # The read itself: the consent the plan shows covers it.
        labels = origin.found.for_purpose(purpose)
        if labels:
            guard = get_guard()
            if not guard.allowed_without_consent(labels, purpose):
                tenant = origin.tenant
                if tenant is None:
                    state = ZONE.get() if FLAGS.zones else None
                    tenant = state.tenant if state is not None else None
                guard.check_labels(labels, purpose, via="source", function=_reader_name, tenant=tenant)
    return origin


def _learn(origin: _Origin, tenant: str | None) -> None:
    """The zone learns every category the read handed over (consent or not:
    the zone holds them for whatever purpose comes next) and whose they are."""
    if FLAGS.zones:
        state = ZONE.get()
        if state is not None:
            state.add(origin.found.all(), tenant)


def _tenant_id(value: Any) -> str:
    """A tenant column's value as a tenant id; a value that names no one (a
    null, an empty string) is several tenants' data, which no consent covers."""
    if isinstance(value, str):
        value = str.__str__(value)  # numpy's and pandas' text types, a labelled str
    elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = str(int(value))
    if type(value) is str and value and len(value) <= MAX_TENANT_LENGTH and value.isprintable():
        if value == value.strip():
            return value
    return MIXED_TENANT


def _rows_tenant(origin: _Origin, rows: Iterable[Any]) -> str | None:
    at = origin.tenant_at
    if at is None:
        return origin.tenant
    try:
        found = {tuple.__getitem__(row, at) for row in rows}
    except TypeError:  # a value that cannot be a set member names no one tenant
        return MIXED_TENANT
    return _tenant_id(found.pop()) if len(found) == 1 else MIXED_TENANT


# Values of these exact types come back labelled from a labelled row, and a
# nested row as a labelled row; others (None, booleans, dates, decimals) stay
# as Spark made them, and the zone and the row's own labels cover them.
_LABELLABLE = frozenset({str, bytes, int, float, list, dict})


class _LabelledRow(Row):
    """A collected Row whose values carry their column's categories when read
    (``row.body``, ``row["body"]``, ``row[1]``, iterating, ``asDict()``), with
    the row's tenant (its tenant column's value) when the DataFrame had one.
    Made by changing the class of the Row Spark built: no copy, and a value
    is labelled only when it is read."""

    __slots__ = ()
    _pgs_columns: tuple[tuple[str, ...], ...] = ()
    _pgs_kinds: list[Any] = []
    _pgs_labels: frozenset[str] = frozenset()
    _pgs_tenant_at: int | None = None
    _pgs_owner: str | None = None

    def _pgs_tenant(self) -> str | None:
        at = type(self)._pgs_tenant_at
        if at is None:
            return type(self)._pgs_owner
        return _tenant_id(tuple.__getitem__(self, at))

    def _pgs_value(self, index: int, value: Any) -> Any:
        cls = type(self)
        columns = cls._pgs_columns
        categories = columns[index] if 0 <= index < len(columns) else ()
        if not categories:
            return value
        t = type(value)
        if t is str and not FLAGS.activations:
            # Text is what rows mostly hold: the column's kind, found once per
            # row class, labels it at a third of relabel()'s cost.
            kinds = cls._pgs_kinds
            kind = kinds[index]
            if kind is None or kind.evicted:
                kind = kinds[index] = _resolve(categories).base
            tenant = self._pgs_tenant()
            if FLAGS.zones:
                state = ZONE.get()
                if state is not None:
                    state.add(kind.labels, tenant)
            return _str_with(kind, tenant, value)
        if t not in _LABELLABLE:
            if isinstance(value, Row) and hasattr(value, "__fields__"):
                return _nested(value, categories, self._pgs_tenant())
            return value
        return relabel(value, *categories, tenant=self._pgs_tenant())

    def __getitem__(self, item: Any) -> Any:
        value = Row.__getitem__(self, item)
        if isinstance(item, int):
            return self._pgs_value(item + len(self) if item < 0 else item, value)
        if isinstance(item, slice):
            return tuple(self._pgs_value(k, v) for k, v in zip(range(len(self))[item], value, strict=True))
        if isinstance(item, str):
            return self._pgs_value(self.__fields__.index(item), value)
        return value

    def __iter__(self) -> Iterator[Any]:
        return (self._pgs_value(k, v) for k, v in enumerate(tuple.__iter__(self)))


_ROW_CLASSES: dict[tuple[Any, ...], type[_LabelledRow]] = {}
_ROW_CLASSES_LIMIT = 256
_set_class = object.__setattr__  # Row.__setattr__ refuses every name but __fields__


def _row_class(columns: tuple[tuple[str, ...], ...], tenant_at: int | None, owner: str | None) -> type | None:
    if not any(columns):
        return None  # no column carries a category: plain rows
    key = (columns, tenant_at, owner)
    found = _ROW_CLASSES.get(key)
    if found is None:
        attributes = {
            "__slots__": (),
            "__module__": __name__,
            "_pgs_columns": columns,
            "_pgs_kinds": [None] * len(columns),
            "_pgs_labels": frozenset(c for categories in columns for c in categories),
            "_pgs_tenant_at": tenant_at,
            "_pgs_owner": owner,
        }
        found = remember(
            _ROW_CLASSES, key, type("LabelledRow", (_LabelledRow,), attributes), _ROW_CLASSES_LIMIT
        )
    return found


def _nested(value: Any, categories: tuple[str, ...], tenant: str | None) -> Any:
    """A struct column's value: a row whose every field carries the column's
    categories and the outer row's tenant. A copy, so the outer row keeps
    the Row Spark made (and goes back into Spark as it came)."""
    if isinstance(value, _LabelledRow):
        return value
    fields = value.__fields__
    copy = _create_row(fields, tuple.__getitem__(value, slice(None)))
    return _labelled(copy, _row_class((categories,) * len(fields), None, tenant))


def _labelled(row: Any, cls: type | None) -> Any:
    if cls is not None and type(row) is Row and hasattr(row, "__fields__"):
        _set_class(row, "__class__", cls)
    return row


class _RowLabels:
    """``pg.labels_of(row)`` and checks of a collected row: every category of
    its columns (also those whose values cannot carry a label), and its tenant."""

    def labels(self, value: Any, purpose: str | None) -> frozenset[str]:
        return type(value)._pgs_labels  # type: ignore[no-any-return]

    def tenant(self, value: Any) -> str | None:
        return value._pgs_tenant()  # type: ignore[no-any-return]

    def label(self, value: Any, categories: frozenset[str], tenant: str | None) -> Any:
        cls = type(value)
        columns = tuple(tuple(sorted(set(own) | categories)) for own in cls._pgs_columns)
        owner = value._pgs_tenant() if tenant is None else merge_tenants(value._pgs_tenant(), tenant)
        return _labelled(self.strip(value), _row_class(columns, None, owner))

    def strip(self, value: Any) -> Any:
        return _create_row(value.__fields__, tuple.__getitem__(value, slice(None)))


_ROW_READER = _RowLabels()
register_foreign(_LabelledRow, _ROW_READER)


def _rows_read(origin: _Origin | None, rows: list[Any]) -> list[Any]:
    """Rows that reached the driver: the zone learns them, and they carry
    their columns' categories."""
    if origin is None:
        return rows
    if rows:
        _learn(origin, _rows_tenant(origin, rows))
    cls = _row_class(origin.columns, origin.tenant_at, origin.tenant)
    if cls is not None:
        for row in rows:
            _labelled(row, cls)
    return rows


def _rows_iterated(origin: _Origin, rows: Iterator[Any]) -> Iterator[Any]:
    cls = _row_class(origin.columns, origin.tenant_at, origin.tenant)
    learned: set[str | None] = set()
    for row in rows:
        tenant = _rows_tenant(origin, (row,))
        if tenant not in learned:
            learned.add(tenant)
            _learn(origin, tenant)
        yield _labelled(row, cls)


# RDDs taken from a labelled DataFrame (df.rdd, df.toJSON()) or made from
# labelled values (sc.parallelize(rows)): a DataFrame made from one, or from
# an RDD mapped from one, carries what it held (categories, tenant).
_RDDS: weakref.WeakKeyDictionary[Any, tuple[frozenset[str], str | None]] = weakref.WeakKeyDictionary()
_RDD_DEPTH = 64


def _remember_rdd(rdd: Any, labels: frozenset[str], tenant: str | None) -> None:
    try:
        _RDDS[rdd] = labels, tenant
    except TypeError:
        pass


def _rdd_origin(rdd: Any) -> tuple[frozenset[str], str | None] | None:
    for _ in range(_RDD_DEPTH):
        if rdd is None:
            return None
        try:
            found = _RDDS.get(rdd)
        except TypeError:
            return None
        if found is not None:
            return found
        rdd = getattr(rdd, "prev", None)
    return None


class _RowsFor:
    """The function given to ``foreach``/``foreachPartition``, as the workers
    run it: each row it receives carries its columns' categories (and, when
    a purpose is current, runs under it: see :class:`_WithPurpose`)."""

    __slots__ = ("fn", "columns", "tenant_at", "tenant", "each")

    def __init__(
        self, fn: Callable[..., Any], columns: tuple[tuple[str, ...], ...], origin: _Origin, each: bool
    ) -> None:
        self.fn = fn
        self.columns = columns
        self.tenant_at = origin.tenant_at
        self.tenant = origin.tenant
        self.each = each

    def __call__(self, rows: Any) -> Any:
        cls = _row_class(self.columns, self.tenant_at, self.tenant)
        if self.each:
            return self.fn(_labelled(rows, cls))
        return self.fn(_labelled(row, cls) for row in rows)


# -- making a DataFrame from Python data --


class _Found:
    """The categories and tenants found in local data, by column."""

    __slots__ = ("by_name", "by_position", "everywhere", "tenant", "tenant_columns")

    def __init__(self) -> None:
        self.by_name: dict[str, set[str]] = {}
        self.by_position: dict[int, set[str]] = {}
        self.everywhere: set[str] = set()
        self.tenant: str | None = None
        self.tenant_columns: set[str] = set()

    def note(self, name: str | None, position: int | None, labels: Iterable[str], tenant: str | None) -> None:
        labels = set(labels)
        if not labels:
            return
        if name is not None:
            self.by_name.setdefault(name, set()).update(labels)
        elif position is not None:
            self.by_position.setdefault(position, set()).update(labels)
        else:
            self.everywhere.update(labels)
        if tenant is not None:
            self.tenant = merge_tenants(self.tenant, tenant)

    def __bool__(self) -> bool:
        return bool(self.by_name or self.by_position or self.everywhere)


# Cells of these types carry no label: data made only of them is passed on untouched.
_PLAIN_CELLS = frozenset(
    {str, bytes, bytearray, int, float, bool, type(None), datetime.date, datetime.datetime, decimal.Decimal}
)


def _plain(value: Any) -> Any:
    """``value`` without labels, as deep as rows nest (Spark converts
    only its own types: a labelled ``str`` is not one)."""
    t = type(value)
    if t in _PLAIN_CELLS:
        return value
    value = strip_labels(value)
    if isinstance(value, tuple):
        return _rebuilt(value, [_plain(v) for v in tuple.__iter__(value)])
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


def _rebuilt(row: Any, values: list[Any]) -> Any:
    """``row`` (a Row, a namedtuple, a tuple or a list) holding ``values`` instead."""
    if isinstance(row, Row):
        fields = getattr(row, "__fields__", None)
        return _create_row(fields, values) if fields is not None else tuple.__new__(Row, values)
    if isinstance(row, tuple):
        make = getattr(type(row), "_make", None)
        return make(values) if make is not None and hasattr(type(row), "_fields") else tuple(values)
    return values


def _cell(found: _Found, name: str | None, position: int | None, value: Any) -> Any:
    if type(value) in _PLAIN_CELLS:
        return value
    labels = labels_of(value)
    if labels:
        found.note(name, position, labels, tenant_of(value))
    return _plain(value)


def _looks_plain(data: list[Any] | tuple[Any, ...]) -> bool:
    kinds = set(map(type, data))
    if kinds <= _PLAIN_CELLS:
        return True
    if all(issubclass(k, (tuple, list)) for k in kinds):
        # A labelled row yields labelled values here: never plain.
        return set(map(type, itertools.chain.from_iterable(data))) <= _PLAIN_CELLS
    if all(issubclass(k, dict) for k in kinds):
        return set(map(type, itertools.chain.from_iterable(d.values() for d in data))) <= _PLAIN_CELLS
    return False


def _local_rows(data: list[Any] | tuple[Any, ...]) -> tuple[list[Any] | tuple[Any, ...], _Found | None]:
    """Rows, tuples, dicts or values for ``createDataFrame``: with labels
    (collected rows, values read from them), the plain data Spark converts
    and what each column carried."""
    if _looks_plain(data):
        return data, None
    found = _Found()
    out: list[Any] = []
    for row in data:
        if isinstance(row, _LabelledRow):
            fields = row.__fields__
            for k, categories in enumerate(type(row)._pgs_columns):
                found.note(fields[k] if k < len(fields) else None, k, categories, row._pgs_tenant())
            at = type(row)._pgs_tenant_at
            if at is not None and at < len(fields):
                found.tenant_columns.add(fields[at])
            out.append(_create_row(fields, [_plain(v) for v in tuple.__iter__(row)]))
        elif isinstance(row, dict):
            out.append({k: _cell(found, str(k), None, v) for k, v in row.items()})
        elif isinstance(row, (tuple, list)):
            # A Row or a namedtuple names its columns.
            fields = (
                getattr(row, "__fields__", None) if isinstance(row, Row) else getattr(row, "_fields", None)
            )
            values = [
                _cell(found, str(fields[k]) if fields is not None and k < len(fields) else None, k, v)
                for k, v in enumerate(tuple.__iter__(row) if isinstance(row, tuple) else row)
            ]
            out.append(_rebuilt(row, values))
        else:
            out.append(_cell(found, None, None, row))
    return out, (found or None)


def _pandas_found(frame: Any) -> tuple[Any, _Found | None]:
    """A pandas DataFrame: what ``toPandas()`` noted in its ``attrs``, and
    labelled values in object columns (made plain)."""
    found = _Found()
    known = KEYS.current().categories
    note = frame.attrs.get(KEY) if isinstance(getattr(frame, "attrs", None), dict) else None
    if isinstance(note, Mapping):
        columns = note.get("columns")
        before = note.get("names")
        if isinstance(columns, Mapping) and isinstance(before, list):
            every: set[str] = set()
            for categories in columns.values():
                if isinstance(categories, list):
                    every.update(c for c in categories if c in known)
            for name in map(str, frame.columns):
                if name in before:
                    own = columns.get(name)
                    found.note(
                        name, None, (c for c in own if c in known) if isinstance(own, list) else (), None
                    )
                else:
                    # Made or renamed in pandas: it may hold any column's values.
                    found.note(name, None, every, None)
        tenant = note.get("tenant")
        if isinstance(tenant, str) and found:
            found.tenant = merge_tenants(found.tenant, tenant)
        if isinstance(note.get("tenant_column"), str):
            found.tenant_columns.add(note["tenant_column"])
    copied = None
    for position, name in enumerate(frame.columns):
        column = frame.iloc[:, position]
        if column.dtype != object or set(map(type, column)) <= _PLAIN_CELLS:
            continue
        values = [_cell(found, str(name), None, v) for v in column]
        if copied is None:
            copied = frame.copy(deep=False)
        copied.isetitem(position, values)
    return (copied if copied is not None else frame), (found or None)


def _arrow_found(table: Any) -> _Found | None:
    found = _Found()
    known = KEYS.current().categories
    for field in table.schema:
        raw = (field.metadata or {}).get(KEY.encode())
        if raw is None:
            continue
        try:
            own = json.loads(raw)
        except ValueError:
            continue
        if isinstance(own, Mapping):
            categories = own.get("categories")
            if isinstance(categories, list):
                owner = own.get("owner")
                found.note(
                    field.name,
                    None,
                    (c for c in categories if c in known),
                    owner if isinstance(owner, str) else None,
                )
            if own.get("tenant"):
                found.tenant_columns.add(field.name)
    return found or None


def _made_from(df: Any, found: _Found) -> Any:
    """``df``, made by ``createDataFrame`` from data that carried ``found``,
    with those categories on its columns (a column it cannot place: on every column)."""
    fields = df.schema.fields
    names = [f.name for f in fields]
    everywhere = set(found.everywhere)
    per: list[set[str]] = [set() for _ in fields]
    for name, labels in found.by_name.items():
        if name in names:
            per[names.index(name)].update(labels)
        else:
            everywhere.update(labels)
    for position, labels in found.by_position.items():
        if position < len(per):
            per[position].update(labels)
        else:
            everywhere.update(labels)
    changes: dict[str, dict[str, Any]] = {}
    for field, labels in zip(fields, per, strict=True):
        labels |= everywhere
        extra: dict[str, Any] = {}
        if labels:
            before = frozenset(_meta(field.metadata).get("categories", ()))
            extra["categories"] = sorted(before | labels)
            if found.tenant is not None:
                extra["owner"] = found.tenant
        if field.name in found.tenant_columns:
            extra["tenant"] = True
        if extra:
            changes[field.name] = _with_meta(changes.get(field.name, field.metadata), **extra)
    result = _relabelled(df, changes)
    everything = frozenset(everywhere.union(*per))
    _note_session(everything)
    if everything and FLAGS.zones:
        state = ZONE.get()
        if state is not None:
            state.add(everything, found.tenant)
    return result


def _create_data_frame(
    wrapped: Callable[..., Any], session: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    data = kwargs.get("data", args[0] if args else None)
    found: _Found | None = None
    origin: tuple[frozenset[str], str | None] | None = None
    if isinstance(data, Iterator):
        data = list(data)  # Spark makes a list of it too
    if isinstance(data, (list, tuple)):
        data, found = _local_rows(data)
    elif type(data).__module__.startswith("pandas") and hasattr(data, "iloc"):
        data, found = _pandas_found(data)
    elif type(data).__module__.startswith("pyarrow") and hasattr(data, "schema"):
        found = _arrow_found(data)
    else:
        origin = _rdd_origin(data)
    if "data" in kwargs:
        kwargs = {**kwargs, "data": data}
    elif args:
        args = (data, *args[1:])
    df = wrapped(*args, **kwargs)
    if origin is not None:
        # A function mapped over the rows may move any column's values anywhere.
        found = _Found()
        found.note(None, None, *origin)
    if found:
        df = _made_from(df, found)
    return df


# -- the actions patched --


def _collect_like(wrapped: Callable[..., Any], df: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    read = _reading(df)
    rows = wrapped(*args, **kwargs)
    if read is not None and isinstance(rows, list):
        _rows_read(read, rows)
    return rows


def _local_iterator(
    wrapped: Callable[..., Any], df: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    read = _reading(df)
    rows = wrapped(*args, **kwargs)
    return rows if read is None else _rows_iterated(read, iter(rows))


def _to_pandas(wrapped: Callable[..., Any], df: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    origin = _reading(df)
    frame = wrapped(*args, **kwargs)
    if origin is None:
        return frame
    if len(frame):
        at = origin.tenant_at
        tenant = origin.tenant
        if at is not None and at < frame.shape[1]:
            tenants = frame.iloc[:, at].unique()
            tenant = _tenant_id(tenants[0]) if len(tenants) == 1 else MIXED_TENANT
        _learn(origin, tenant)
    try:
        # pandas values cannot all carry a label (its string columns hold
        # their own copies): the frame says what it holds, for
        # createDataFrame() to put back; pandas keeps attrs through many of
        # its operations.
        names = [str(c) for c in frame.columns]
        frame.attrs[KEY] = {
            "names": names,
            "columns": {n: list(c) for n, c in zip(names, origin.columns, strict=False) if c},
            "tenant": origin.tenant,
            "tenant_column": names[origin.tenant_at] if origin.tenant_at is not None else None,
        }
    except Exception:
        logger.debug("purposeguard could not note labels on a pandas frame", exc_info=True)
    return frame


def _to_arrow(wrapped: Callable[..., Any], df: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    origin = _reading(df)
    table = wrapped(*args, **kwargs)
    if origin is None:
        return table
    if table.num_rows:
        tenant = origin.tenant
        if origin.tenant_at is not None:
            tenants = table.column(origin.tenant_at).unique().to_pylist()
            tenant = _tenant_id(tenants[0]) if len(tenants) == 1 else MIXED_TENANT
        _learn(origin, tenant)
    try:
        schema = table.schema
        for k, (field, categories) in enumerate(zip(table.schema, origin.columns, strict=True)):
            own: dict[str, Any] = {}
            if categories:
                own["categories"] = list(categories)
                if origin.tenant is not None:
                    own["owner"] = origin.tenant
            if k == origin.tenant_at:
                own["tenant"] = True
            if own:
                meta = {**(field.metadata or {}), KEY.encode(): json.dumps(own).encode()}
                schema = schema.set(k, field.with_metadata(meta))
        # The same buffers under a schema that says what each column holds.
        table = type(table).from_arrays(table.columns, schema=schema)
    except Exception:
        logger.debug("purposeguard could not note labels on an Arrow table", exc_info=True)
    return table


def _shown(wrapped: Callable[..., Any], df: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    origin = _reading(df)
    text = wrapped(*args, **kwargs)
    if origin is not None:
        _learn(origin, origin.tenant)
    return text


# The RDD of a DataFrame's own rows (df.rdd), and those made from it that
# hand on the same rows (filter, sample, distinct, ...): what their actions
# bring to the driver (collect, take, first, toLocalIterator, ...) are those
# rows, labelled as df.collect() labels them. Not an RDD mapped from them:
# it holds whatever its function made (a DataFrame made from it still
# carries every category: _RDDS).
_RDD_ROWS: weakref.WeakKeyDictionary[Any, _Origin] = weakref.WeakKeyDictionary()

# RDD methods whose result holds the rows they were given, unchanged.
_ROW_KEEPING = (
    "filter",
    "sample",
    "distinct",
    "repartition",
    "coalesce",
    "sortBy",
    "cache",
    "persist",
    "subtract",
    "randomSplit",
)
# RDD actions that bring rows to the driver as a list (first() is take(1)),
# and those that bring one of the rows (by a key, or by the rows' order).
_ROW_LISTS = ("collect", "take", "takeSample", "top", "takeOrdered")
_ONE_ROW = ("max", "min")
# RDD methods that combine two RDDs' rows: rows of the same frame's RDD
# only when both sides hold that frame's rows.
_ROW_COMBINING = ("union", "intersection")


def _rdd_of(df: Any, rdd: Any) -> Any:
    origin = _reading(df)
    if origin is not None:
        # An RDD hands the rows to Python (map, foreach, collect): its
        # consumer is not known here, so the zone learns them now.
        _learn(origin, origin.tenant)
        _remember_rdd(rdd, origin.found.all(), origin.tenant)
        try:
            _RDD_ROWS[rdd] = origin
        except TypeError:
            pass
    return rdd


def _rows_origin(rdd: Any) -> _Origin | None:
    try:
        return _RDD_ROWS.get(rdd)
    except TypeError:
        return None


def _rdd_keeping(wrapped: Callable[..., Any], rdd: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = wrapped(*args, **kwargs)
    origin = _rows_origin(rdd)
    if origin is not None:
        # randomSplit hands back a list of RDDs, each holding some of the rows.
        for made in result if isinstance(result, list) else (result,):
            try:
                _RDD_ROWS[made] = origin
            except TypeError:
                pass
    return result


def _rdd_combining(
    wrapped: Callable[..., Any], rdd: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    result = wrapped(*args, **kwargs)
    origin = _rows_origin(rdd)
    other = args[0] if args else kwargs.get("other")
    if origin is not None and _rows_origin(other) is origin:
        try:
            _RDD_ROWS[result] = origin
        except TypeError:
            pass
    return result


def _rdd_one_row(wrapped: Callable[..., Any], rdd: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    row = wrapped(*args, **kwargs)
    origin = _rows_origin(rdd)
    if origin is not None:
        _labelled(row, _row_class(origin.columns, origin.tenant_at, origin.tenant))
    return row


def _rdd_rows(wrapped: Callable[..., Any], rdd: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    rows = wrapped(*args, **kwargs)
    origin = _rows_origin(rdd)
    if origin is not None and isinstance(rows, list):
        cls = _row_class(origin.columns, origin.tenant_at, origin.tenant)
        for row in rows:
            _labelled(row, cls)
    return rows


def _rdd_local_iterator(
    wrapped: Callable[..., Any], rdd: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    rows = wrapped(*args, **kwargs)
    origin = _rows_origin(rdd)
    if origin is None:
        return rows
    cls = _row_class(origin.columns, origin.tenant_at, origin.tenant)
    return (_labelled(row, cls) for row in rows)


def _parallelize(
    wrapped: Callable[..., Any], context: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``sc.parallelize(rows)``: Spark cannot take labelled values (nor do
    its workers need purposeguard for them); they go plain, and what they
    carried is remembered for a DataFrame made from the RDD."""
    data = kwargs.get("c", args[0] if args else None)
    if not isinstance(data, (list, tuple)):
        return wrapped(*args, **kwargs)
    data, found = _local_rows(data)
    if "c" in kwargs:
        kwargs = {**kwargs, "c": data}
    else:
        args = (data, *args[1:])
    rdd = wrapped(*args, **kwargs)
    if found:
        labels = frozenset(found.everywhere.union(*found.by_name.values(), *found.by_position.values()))
        _remember_rdd(rdd, labels, found.tenant)
    return rdd


def _to_json(wrapped: Callable[..., Any], df: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = wrapped(*args, **kwargs)
    if isinstance(result, DataFrame):
        return result  # its own lineage says what it holds (every category: fail closed)
    return _rdd_of(df, result)


def _foreach(each: bool) -> Callable[..., Any]:
    def run(wrapped: Callable[..., Any], df: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args and callable(args[0]):
            try:
                origin = _origin(df)
            except Exception:  # the schema cannot be read: the action fails the same way
                origin = None
            if origin is not None:
                # Labelled rows with or without a purpose: a worker's check
                # sees them either way.
                fn: Callable[..., Any] = _RowsFor(args[0], origin.columns, origin, each)
                purpose = PURPOSE.get()
                if purpose is not None:
                    fn = _WithPurpose(fn, purpose)
                args = (fn, *args[1:])
        # The rows go to the workers through df.rdd, which the zone learns.
        return wrapped(*args, **kwargs)

    return run


_INSIDE = threading.local()


def _outermost(wrapper: Callable[..., Any]) -> Callable[..., Any]:
    """``wrapper`` for the outermost action only: PySpark's toPandas()
    without Arrow calls collect(), and one read is checked and learned once."""

    def run(wrapped: Callable[..., Any], df: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if getattr(_INSIDE, "action", False):
            return wrapped(*args, **kwargs)
        _INSIDE.action = True
        try:
            return wrapper(wrapped, df, args, kwargs)
        finally:
            _INSIDE.action = False

    return run


# method -> wrapper(wrapped, instance, args, kwargs)
_READS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("collect", _outermost(_collect_like)),
    ("tail", _outermost(_collect_like)),
    ("toLocalIterator", _outermost(_local_iterator)),
    ("toPandas", _outermost(_to_pandas)),
    ("toArrow", _outermost(_to_arrow)),
    ("_show_string", _outermost(_shown)),
    ("toJSON", _to_json),
    ("foreach", _foreach(True)),
    ("foreachPartition", _foreach(False)),
)
# Spark Connect's public methods of the same names (its foreach runs as a
# UDF, its toJSON returns a DataFrame, it has no rdd); a private method that
# a release may rename would break importing its client, so show() is left.
_CONNECT = Patcher(
    "pyspark.sql.connect.dataframe",
    [
        ("DataFrame", name, wrapper)
        for name, wrapper in _READS
        if name in ("collect", "tail", "toLocalIterator", "toPandas", "toArrow")
    ],
)
_CONNECT_SESSION = Patcher(
    "pyspark.sql.connect.session", [("SparkSession", "createDataFrame", _create_data_frame)]
)


# -- labelled values sent to the JVM ---------------------------------------------------------------
#
# A labelled str handed to Spark as a value (F.lit(v), col == v, when(c, v),
# fillna(v), a SQL parameter) becomes a literal in the plan: Python's label
# does not cross. Every argument of a call into the JVM passes py4j's
# get_command_part, which notes the text of each labelled one; a literal of
# that text in a plan is then a source carrying its categories. Bounded:
# the oldest eighth is forgotten past the limit (a literal of a forgotten
# text reads unlabelled, as before it was noted).

_SENT: dict[str, tuple[tuple[str, ...], str | None]] = {}
_SENT_LIMIT = 4096


# Shorter texts are not noted: a plain literal of the same text ('', 'US')
# would read labelled everywhere after.
_SENT_SHORTEST = 3
# The quoted literals of a labelled text that is itself SQL ("SELECT '" +
# address + "'", F.expr(...)): each a literal of its own in the plan.
_QUOTED = re.compile(r"'((?:[^'\\]|\\.|'')*)'|\"((?:[^\"\\]|\\.)*)\"")


def _noting_sent(original: Callable[..., Any]) -> Callable[..., Any]:
    def get_command_part(parameter: Any, *args: Any, **kwargs: Any) -> Any:
        if type(parameter) is not str and isinstance(parameter, str):
            try:
                _note_sent(parameter)
            except Exception:  # noqa: BLE001 - the call goes on; the literal reads unlabelled
                logger.debug("purposeguard could not note a labelled value sent to Spark", exc_info=True)
        return original(parameter, *args, **kwargs)

    return get_command_part


def _note_sent(parameter: str) -> None:
    found = labels_of(parameter)
    if not found:
        return
    entry = (tuple(sorted(found)), tenant_of(parameter))
    text = str.__str__(parameter)
    texts = [text]
    if "'" in text or '"' in text:
        texts += [single if single else double for single, double in _QUOTED.findall(text)]
    for one in texts:
        if len(one.strip()) >= _SENT_SHORTEST and one not in _SENT:
            remember(_SENT, one, entry, _SENT_LIMIT)


_SENT_PATCH = FunctionPatch(
    "get_command_part", ("py4j.protocol", "py4j.java_gateway", "py4j.java_collections"), _noting_sent
)
on_reset("spark literals sent", _SENT.clear)


# -- instrument ------------------------------------------------------------------------------------


class _Patches:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.originals: list[tuple[Any, str, Any]] = []


_PATCHES = _Patches()
_PATH_METHODS = ("save", "parquet", "csv", "json", "orc", "text", "xml")
_TABLE_METHODS = ("saveAsTable", "insertInto")
_V2_METHODS = ("create", "replace", "createOrReplace", "append", "overwrite", "overwritePartitions")


def _patch(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
    original = owner.__dict__[name]
    _PATCHES.originals.append((owner, name, original))
    replacement = make(original)
    functools.update_wrapper(replacement, original)
    setattr(owner, name, replacement)


def _path_writer(name: str) -> Callable[[Any], Any]:
    def make(original: Any) -> Any:
        def write(self: Any, *args: Any, **kwargs: Any) -> Any:
            # A path given as an option (option("path", ...)) is where save() writes.
            path = _path_of(args, kwargs) or getattr(self, "_pg_path", None)
            # A JDBC source's rows go to the database its url option names.
            url = _option_of(kwargs, "url") or getattr(self, "_pg_url", None)
            _check_write(self._df, path=path, method=name, url=url)
            return original(self, *args, **kwargs)

        return write

    return make


def _table_writer(name: str) -> Callable[[Any], Any]:
    def make(original: Any) -> Any:
        def write(self: Any, *args: Any, **kwargs: Any) -> Any:
            table = kwargs.get("name", kwargs.get("tableName", args[0] if args else None))
            # saveAsTable with a path option (set before, or among its own
            # options) writes the table's files there.
            path = None
            if name == "saveAsTable":
                path = _path_of((), kwargs) or getattr(self, "_pg_path", None)
            _check_write(self._df, path=path, table=str(table), method=name)
            return original(self, *args, **kwargs)

        return write

    return make


def _v2_writer(name: str) -> Callable[[Any], Any]:
    def make(original: Any) -> Any:
        def write(self: Any, *args: Any, **kwargs: Any) -> Any:
            _check_write(
                self._df,
                path=getattr(self, "_pg_path", None),
                table=getattr(self, "_pg_table", None) or "",
                method=f"writeTo.{name}",
            )
            return original(self, *args, **kwargs)

        return write

    return make


def _stream_writer(name: str) -> Callable[[Any], Any]:
    """``writeStream.start(path)`` / ``toTable(name)``: each batch the query
    writes is the frame's rows, checked once as the query starts."""

    def make(original: Any) -> Any:
        def write(self: Any, *args: Any, **kwargs: Any) -> Any:
            if name == "toTable":
                table = kwargs.get("tableName", args[0] if args else None)
                path = _path_of((), kwargs) or getattr(self, "_pg_path", None)
                _check_write(self._df, path=path, table=str(table), method=f"writeStream.{name}")
            else:
                path = _path_of(args, kwargs) or getattr(self, "_pg_path", None)
                _check_write(self._df, path=path, method=f"writeStream.{name}")
            return original(self, *args, **kwargs)

        return write

    return make


def _rdd_save(name: str) -> Callable[..., Any]:
    """``rdd.saveAsTextFile(path)`` and its kin: an RDD of a labelled
    frame's rows (or mapped from one) written out."""

    def save(wrapped: Callable[..., Any], rdd: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        found = _rdd_origin(rdd)
        if found is not None:
            labels, tenant = found
            path = _path_of(args, kwargs)
            purpose = _write_purpose(None, _Target((path,) if path is not None else (), ()))
            if purpose is not None:
                _check_written(labels, tenant, purpose, f"pyspark.RDD.{name}")
            if path is not None and labels and name in ("saveAsTextFile", "saveAsSequenceFile"):
                _say_once(
                    f"labels left behind:{path}",
                    "purposeguard: an RDD of columns labelled %s was written to %s: read back, it "
                    "carries no labels (label it where it is read)",
                    ", ".join(sorted(labels)),
                    path,
                )
        return wrapped(*args, **kwargs)

    return save


_RDD_SAVES = (
    "saveAsTextFile",
    "saveAsPickleFile",
    "saveAsSequenceFile",
    "saveAsHadoopFile",
    "saveAsNewAPIHadoopFile",
)


def _writer_init(original: Any) -> Any:
    def __init__(self: Any, df: Any, *args: Any, **kwargs: Any) -> None:
        # What is written says what its columns carry (read back labelled).
        original(self, _persisted(df), *args, **kwargs)
        if args:
            self._pg_table = args[0]

    return __init__


def _noted_destination(key: Any, value: Any, writer: Any) -> None:
    if isinstance(key, str) and value is not None:
        if key.lower() == "path":
            writer._pg_path = str(value)
        elif key.lower() == "url":
            writer._pg_url = str(value)


def _option_of(options: Mapping[str, Any], name: str) -> str | None:
    """An option Spark reads without case (``URL=``) among ``options``."""
    found = None
    for key, value in options.items():
        if isinstance(key, str) and key.lower() == name and value is not None:
            found = str(value)
    return found


def _jdbc_writer(original: Any) -> Any:
    """``df.write.jdbc(url, table)``: the rows go to the database the URL
    names, checked against the destination naming its host, else the
    current purpose."""

    def jdbc(self: Any, url: str, table: str, mode: str | None = None, properties: Any = None) -> Any:
        _check_write(self._df, method="jdbc", url=str(url))
        return original(self, url, table, mode, properties)

    return jdbc


def _option_setter(original: Any) -> Any:
    def option(self: Any, key: Any, value: Any) -> Any:
        result = original(self, key, value)
        _noted_destination(key, value, self)
        return result

    return option


def _options_setter(original: Any) -> Any:
    def options(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        for key, value in kwargs.items():
            _noted_destination(key, value, self)
        return result

    return options


_CREATE_TABLE_FUNCTION = "pyspark.sql.Catalog.createTable"


def _table_creator(original: Any) -> Any:
    """``spark.catalog.createTable(name, path=...)`` (and
    ``createExternalTable``, which calls it): a table pointed at files
    already written, checked as ``CREATE TABLE ... LOCATION`` is."""

    def createTable(
        self: Any,
        tableName: str,
        path: str | None = None,
        source: str | None = None,
        schema: Any = None,
        description: str | None = None,
        **options: str,
    ) -> Any:
        # Spark reads the path among the options without case (PATH=...).
        locations = [path] if path is not None else []
        locations += [v for k, v in options.items() if k.lower() == "path" and v is not None]
        if locations:
            session = self._sparkSession
            provider = source or str(session._jconf.defaultDataSourceName())
            for location in dict.fromkeys(str(at) for at in locations):
                write = _SqlWrite(None, str(tableName), None, "CreateTable", files=(provider, location))
                _check_sql_write(session, write, frozenset(), None, _CREATE_TABLE_FUNCTION)
        return original(self, tableName, path, source, schema, description, **options)

    return createTable


def _checkpointer(original: Any) -> Any:
    def checkpoint(self: Any, *args: Any, **kwargs: Any) -> Any:
        # The checkpoint's relation is made from the schema: put the lineage there.
        return original(_persisted(self), *args, **kwargs)

    return checkpoint


def _transposer(original: Any) -> Any:
    def transpose(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        try:
            found = lineage(self)
            if found.all():
                tenanted = _data_tenant(self, found) == MIXED_TENANT
                output = result._jdf.queryExecution().analyzed().output()
                for k in range(output.size()):
                    expr_id = int(output.apply(k).exprId().id())
                    remember(_MATERIALISED, expr_id, (found.all(), tenanted), _MATERIALISED_LIMIT)
        except Exception:
            # Not noted: the transposed columns carry every category the session labelled.
            logger.debug("purposeguard could not note what a transpose read", exc_info=True)
        return result

    return transpose


def instrument() -> None:
    """Patch PySpark: UDFs keep the purpose current where they were defined
    (in the workers too); DataFrame writes are checked as egress; columns
    taken from a DataFrame remember it; data that reaches the driver is a
    read (checked, learned by the zone, labelled on the rows) and
    ``createDataFrame`` puts labels found in its data on the columns.
    Idempotent."""
    version = int(pyspark.__version__.split(".")[0])
    if version not in SUPPORTED:
        logger.warning(
            "purposeguard's Spark integration is tested with PySpark 4.x, not %s", pyspark.__version__
        )
    from pyspark.sql import readwriter, udf

    with _PATCHES.lock:
        if _PATCHES.originals:
            return

        def udf_init(original: Any) -> Any:
            def __init__(self: Any, func: Any, *args: Any, **kwargs: Any) -> None:
                purpose = PURPOSE.get()
                if purpose is not None and not isinstance(func, _WithPurpose):
                    func = _WithPurpose(func, purpose)
                original(self, func, *args, **kwargs)

            return __init__

        _patch(udf.UserDefinedFunction, "__init__", udf_init)
        for writer in (readwriter.DataFrameWriter, readwriter.DataFrameWriterV2):
            _patch(writer, "__init__", _writer_init)
            _patch(writer, "option", _option_setter)
            _patch(writer, "options", _options_setter)
        for name in _PATH_METHODS:
            if name in readwriter.DataFrameWriter.__dict__:
                _patch(readwriter.DataFrameWriter, name, _path_writer(name))
        for name in _TABLE_METHODS:
            _patch(readwriter.DataFrameWriter, name, _table_writer(name))
        _patch(readwriter.DataFrameWriter, "jdbc", _jdbc_writer)
        for name in _V2_METHODS:
            _patch(readwriter.DataFrameWriterV2, name, _v2_writer(name))
        from pyspark.sql.streaming import readwriter as streaming

        _patch(streaming.DataStreamWriter, "option", _option_setter)
        _patch(streaming.DataStreamWriter, "options", _options_setter)
        for name in ("start", "toTable"):
            _patch(streaming.DataStreamWriter, name, _stream_writer(name))
        from pyspark.sql.classic.dataframe import DataFrame as frame_class

        for name in ("checkpoint", "localCheckpoint"):
            if name in frame_class.__dict__:
                _patch(frame_class, name, _checkpointer)
        if "transpose" in frame_class.__dict__:
            _patch(frame_class, "transpose", _transposer)

        for name in ("__getitem__", "__getattr__"):
            if name in frame_class.__dict__:
                _patch(frame_class, name, _column_getter)
        # Data that reaches Python: the zone learns it, a current purpose reads it.
        for name, wrapper in _READS:
            if name in frame_class.__dict__:
                _patch(frame_class, name, _adapted(wrapper))
        rdd = frame_class.__dict__.get("rdd")
        if rdd is not None and hasattr(rdd, "__get__"):
            # A property (a data descriptor), where PySpark has a cached
            # property: each access is seen, not only the first.
            _PATCHES.originals.append((frame_class, "rdd", rdd))
            frame_class.rdd = property(lambda self: _rdd_of(self, rdd.__get__(self, type(self))))  # type: ignore[method-assign,assignment]
        from pyspark.sql.session import SparkSession

        _patch(SparkSession, "createDataFrame", _adapted(_create_data_frame))
        _patch(SparkSession, "sql", _sql_runner)
        from pyspark.sql.catalog import Catalog

        _patch(Catalog, "createTable", _table_creator)
        from pyspark.core.context import SparkContext

        _patch(SparkContext, "parallelize", _adapted(_parallelize))
        from pyspark.core.rdd import RDD

        for name in _ROW_LISTS:
            _patch(RDD, name, _adapted(_rdd_rows))
        for name in _ROW_KEEPING:
            _patch(RDD, name, _adapted(_rdd_keeping))
        for name in _ONE_ROW:
            _patch(RDD, name, _adapted(_rdd_one_row))
        for name in _ROW_COMBINING:
            _patch(RDD, name, _adapted(_rdd_combining))
        _patch(RDD, "toLocalIterator", _adapted(_rdd_local_iterator))
        for name in _RDD_SAVES:
            if name in RDD.__dict__:
                _patch(RDD, name, _adapted(_rdd_save(name)))
    _SENT_PATCH.install()
    # Spark Connect's classes, when (if) PySpark's Connect client is imported.
    _CONNECT.install()
    _CONNECT_SESSION.install()


def _adapted(wrapper: Callable[..., Any]) -> Callable[[Any], Any]:
    """A wrapt-style wrapper (wrapped, instance, args, kwargs) as a ``_patch`` maker."""

    def make(original: Any) -> Any:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            return wrapper(functools.partial(original, self), self, args, kwargs)

        return method

    return make


def _column_getter(original: Any) -> Any:
    def get(self: Any, item: Any) -> Any:
        result = original(self, item)
        if isinstance(result, Column):
            _remember_origin(self, result)
        return result

    return get


def uninstrument() -> None:
    """Undo :func:`instrument`. Labels are still read (that needs no patch)."""
    with _PATCHES.lock:
        while _PATCHES.originals:
            owner, name, original = _PATCHES.originals.pop()
            setattr(owner, name, original)
    _SENT_PATCH.remove()
    _CONNECT.remove()
    _CONNECT_SESSION.remove()


def is_instrumented() -> bool:
    return bool(_PATCHES.originals)


def _unregister() -> None:
    """Stop reading DataFrame labels (tests of the registry)."""
    unregister_foreign(DataFrame)
    unregister_foreign(Column)
