"""Django ORM values arrive labelled, from the ``Category`` annotations on
model fields. What is and is not labelled, and with which tenant, is listed
in the package docstring; the work is split in three modules:

* ``_declared``: what each model declares (checked by :func:`instrument`, or
  on a model's first load) and the reading descriptors of declared fields,
  which tell the request's zone what a read hands out;
* ``_instances``: instances loaded, refreshed and saved (``from_db``,
  ``refresh_from_db``, values the database makes on INSERT);
* ``_queries``: what each column of a queryset's SQL is computed from:
  ``values()``/``values_list()`` rows, annotations, combined queries,
  ``aggregate()`` results.

This module patches Django's methods with them and switches labelling on and off."""

from __future__ import annotations

from .. import require
from .._patch import Patcher
from . import _instances, _queries
from ._declared import STATE, declare, read_through

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
    # values()/values_list() rows, bulk_create()'s instances.
    Patcher(
        "django.db.models.query",
        [
            ("ModelIterable", "__iter__", _queries.model_iter),
            ("ValuesIterable", "__iter__", _queries.values_iter),
            ("ValuesListIterable", "__iter__", _queries.values_list_iter),
            ("FlatValuesListIterable", "__iter__", _queries.flat_values_iter),
            ("QuerySet", "bulk_create", _instances.bulk_create),
        ],
    ),
    Patcher("django.db.models.sql.query", [("Query", "get_aggregation", _queries.get_aggregation)]),
)


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
    for patcher in _PATCHERS:
        patcher.install()


def uninstrument() -> None:
    """Stop labelling (idempotent); values labelled already keep their labels,
    declared fields get Django's own descriptor class back."""
    with STATE.lock:
        STATE.instrumented = False
        STATE.forget()
    for patcher in _PATCHERS:
        patcher.remove()


def is_instrumented() -> bool:
    return STATE.instrumented
