"""Django ORM values arrive labelled, from the ``Category`` annotations on
model fields. What is and is not labelled, and with which tenant, is listed
in the package docstring; the work is split in four modules:

* ``_declared``: what each model declares (checked by :func:`instrument`, or
  on a model's first load) and the reading descriptors of declared fields,
  which tell the request's zone what a read hands out;
* ``_instances``: instances loaded, refreshed and written (``from_db``,
  ``refresh_from_db``, ``save()`` and the bulk writes, values the database
  makes on INSERT), and serialized;
* ``_queries``: what each column of a queryset's SQL is computed from:
  ``values()``/``values_list()`` rows, annotations, combined queries,
  ``aggregate()`` results;
* ``_writes``: what ``UPDATE`` and ``INSERT`` statements read in SQL and
  write into fields that declare no category.

This module patches Django's methods with them and switches labelling on and off."""

from __future__ import annotations

from typing import Any

from purposeguard._context import MIXED_TENANT
from purposeguard._labels import EMPTY, register_foreign, unregister_foreign
from purposeguard._walk import _walk

from .. import require
from .._patch import Patcher
from . import _instances, _queries, _requests, _writes
from ._declared import STATE, declaration_of, declare, read_through

__all__ = ["instrument", "is_instrumented", "uninstrument"]

_PATCHERS = (
    # Model methods: instances loaded, refreshed and saved.
    Patcher(
        "django.db.models.base",
        [
            ("Model", "from_db", _instances.from_db),
            ("Model", "refresh_from_db", _instances.refresh_from_db),
            ("Model", "_save_table", _instances.save_table),
        ],
    ),
    # What a queryset hands back: instances with their annotations,
    # values()/values_list() rows; the instances bulk_create() and bulk_update() wrote.
    Patcher(
        "django.db.models.query",
        [
            ("ModelIterable", "__iter__", _queries.model_iter),
            ("ValuesIterable", "__iter__", _queries.values_iter),
            ("ValuesListIterable", "__iter__", _queries.values_list_iter),
            ("FlatValuesListIterable", "__iter__", _queries.flat_values_iter),
            ("QuerySet", "bulk_create", _instances.bulk_create),
            ("QuerySet", "bulk_update", _instances.bulk_update),
        ],
    ),
    Patcher("django.db.models.sql.query", [("Query", "get_aggregation", _queries.get_aggregation)]),
    # Serialized text (JSON, XML, YAML) keeps no label: the serializer labels it.
    Patcher(
        "django.core.serializers.base",
        [
            ("Serializer", "serialize", _instances.serialize),
            ("Serializer", "getvalue", _instances.getvalue),
        ],
    ),
    # What UPDATE and INSERT statements write, as they run.
    Patcher(
        "django.db.models.sql.compiler",
        [
            ("SQLUpdateCompiler", "execute_sql", _writes.update_sql),
            ("SQLInsertCompiler", "execute_sql", _writes.insert_sql),
        ],
    ),
)


class _Lazy:
    """Label reading for Django's lazy objects (``request.user`` is a
    ``SimpleLazyObject``): what they hold once set up, without setting them
    up. A check must not run a database query or a session read, nor change
    the request it looks into."""

    def labels(self, value: Any, purpose: str | None) -> frozenset[str]:
        wrapped = self._wrapped(value)
        return EMPTY if wrapped is None else _walk((wrapped,), purpose, strict=False)[0]

    def tenant(self, value: Any) -> str | None:
        wrapped = self._wrapped(value)
        return None if wrapped is None else _walk((wrapped,), strict=False)[1]

    @staticmethod
    def _wrapped(value: Any) -> Any:
        from django.utils.functional import empty

        wrapped = object.__getattribute__(value, "__dict__").get("_wrapped", empty)
        return None if wrapped is empty else wrapped

    def label(self, value: Any, categories: frozenset[str], tenant: str | None) -> Any:
        raise TypeError("a Django lazy object is not data: label what it wraps")

    def strip(self, value: Any) -> Any:
        return value


_LAZY = _Lazy()


class _QuerySets:
    """Label reading for querysets: what they hold once evaluated (their
    result cache), else what they would yield: the categories of the columns
    their rows read (``values()``/``values_list()``) or the model's declared
    fields, of no one tenant (the query has not run). Read, not walked: a
    filtered queryset's ``Query`` (where nodes, joins, the model's options)
    goes far past the walk's bounds."""

    def labels(self, value: Any, purpose: str | None) -> frozenset[str]:
        return self._read(value, purpose)[0]

    def tenant(self, value: Any) -> str | None:
        return self._read(value, None)[1]

    @staticmethod
    def _read(queryset: Any, purpose: str | None) -> tuple[frozenset[str], str | None]:
        cache = queryset.__dict__.get("_result_cache")
        if cache is not None:
            return _walk((cache,), purpose, strict=False)
        categories: set[str] = set()
        planned = _queries._plan(queryset) if queryset._fields is not None else None
        if planned is not None:
            for entry in planned[1]:
                if entry is not None:
                    categories.update(entry[0])
        elif queryset._fields is None:
            for found in declaration_of(queryset.model).by_name.values():
                categories.update(found)
        return (frozenset(categories), MIXED_TENANT) if categories else (EMPTY, None)

    def label(self, value: Any, categories: frozenset[str], tenant: str | None) -> Any:
        raise TypeError("a queryset is not data: label what it loads")

    def strip(self, value: Any) -> Any:
        return value


_QUERYSETS = _QuerySets()


def instrument() -> None:
    """Label what the Django ORM loads (idempotent); checks every installed model first."""
    require("django", "django")
    from django.apps import apps

    with STATE.lock:
        if STATE.instrumented:
            return
        STATE.forget()
        declared = [(model, declare(model)) for model in apps.get_models(include_auto_created=True)]
        # Every model checked (a check raises before anything is switched on):
        # declared fields read through.
        for model, found in declared:
            read_through(model, found)
        STATE.instrumented = True
    from django.db.models.query import QuerySet
    from django.utils.functional import LazyObject

    register_foreign(LazyObject, _LAZY)
    register_foreign(QuerySet, _QUERYSETS)
    _requests.read()
    for patcher in _PATCHERS:
        patcher.install()


def uninstrument() -> None:
    """Stop labelling (idempotent); values labelled already keep their labels,
    declared fields get Django's own descriptor class back."""
    with STATE.lock:
        STATE.instrumented = False
        STATE.forget()
    from django.db.models.query import QuerySet
    from django.utils.functional import LazyObject

    unregister_foreign(LazyObject)
    unregister_foreign(QuerySet)
    _requests.unread()
    for patcher in _PATCHERS:
        patcher.remove()


def is_instrumented() -> bool:
    return STATE.instrumented
