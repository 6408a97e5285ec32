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
  ``__purposeguard_tenant__`` names); the instance itself carries the union.
  A model that names no tenant column holds, as far as anyone can tell,
  every tenant's rows: its values are several tenants'
  (``"(several tenants)"``) unless it says ``__purposeguard_tenant__ =
  None`` (its rows are one tenant's, whichever zone reads them: the zone's;
  a Core table: ``info={"purposeguard_tenant": None}``);
- rows of ``select(Post.id, Post.body)`` (through a ``Session`` or a Core
  ``Connection``, also as a ``lambda_stmt``) carry the same labels in the positions of labelled
  columns, and so do SQL expressions computed from a labelled column
  (``func.lower(Post.body)``): derived in SQL from content is still content.
  The tenant of such a row comes from the tenant column when the row
  selects it (through the same table, alias or subquery); otherwise, and
  for a value computed from two rows, its tenant is several tenants'
  (``"(several tenants)"``), so no one tenant's consent, not the request's
  either, can widen its use: select the tenant column where consent should
  apply (in a union, it counts only where every select puts it in that
  position). A column of a subquery, alias, CTE, union or table-valued
  function is labelled as the table columns it was selected from (also
  through expressions inside the subquery), and so are rows of
  ``INSERT``/``UPDATE``/``DELETE ... RETURNING`` and ``Connection.scalar``;
  a statement nested too deep to follow is refused before it runs. Rows of
  such selects are read in full before they are returned (``yield_per``
  and async ``stream`` buffer);
- a ``column_property`` is labelled with the categories declared on it
  (``info=`` or its annotation), else with those of the columns its
  expression reads (``func.lower(body)``, a correlated subquery), else,
  written in SQL text (``literal_column("posts.body")``), with those of the
  declared columns its text names, as several tenants' data, and said once
  on the ``purposeguard`` logger; a
  ``query_expression()`` filled by ``with_expression()`` with those of the
  columns that expression reads (of several tenants unless it reads only
  its own row), told to the zone as it loads;
- textual SQL given the model's columns (``text(...).columns(Post.body)``,
  ``select(Post.body).from_statement(...)``) is labelled as those columns;
- an ``INSERT``/``UPDATE``/``DELETE`` whose SQL reads a declared column
  (``from_select``, a subquery in its values, its ``WHERE``, ``RETURNING``)
  is a read of several tenants' rows: checked under the current purpose
  before it runs, and told to the zone. A labelled value stored in a column
  that declares no category reads back unlabelled: said once per column and
  categories on the ``purposeguard`` logger;
- textual SQL that stores rows (``INSERT``, ``UPDATE``, ``CREATE ... AS``)
  naming a declared table and one of its declared columns is said once per
  table: what it copies is not checked;
- not labelled: textual SQL (``text()``, ``exec_driver_sql``, and
  ``literal_column``/``column()`` names, which name no declared column),
  lightweight ``table()`` constructs, and the members of a composite
  selected as one column (select its columns instead); a ``Bundle``'s
  members are labelled each as its column;
- values the database makes during a flush (server defaults, computed
  columns) are labelled as they are fetched;
- once a flush has inserted or updated an instance, the values of its
  declared columns it holds are what the database stores: labelled as a
  load labels them (with the row's tenant), so the instance the identity
  map hands back to a later query in the same session carries them. Not a
  read (the application had the values): no check under the current
  purpose, and the zone learns them when they are read. Values it holds
  labelled already stay as they are; nothing is loaded to label it;
- labelling goes through :func:`purposeguard.label`, so a value loaded while
  a purpose is current is checked like any other labelled value;
- a request's zone learns a loaded instance's categories when a labelled
  attribute is read (``post.body``), not when the row is loaded: the login
  layer loading the user does not taint a request that never reads the
  user's personal fields. Rows of ``select(Post.body)`` are reads: their
  categories reach the zone as they are returned. FastAPI's
  ``jsonable_encoder(post)`` (a route returning an instance with no
  response model) reads the instance's ``__dict__``: the encoder is wrapped
  once FastAPI is imported, so it tells the zone what it encodes. Reading
  ``__dict__`` anywhere else hands out the labelled values without telling
  the zone.

Labelled values bound as parameters (writes, WHERE clauses) are ``str``,
``bytes``, ``int`` or ``float`` subclasses: the database stores the plain
value. A ``Category`` with a key the taxonomy does not define, and a model
whose ``__purposeguard_tenant__`` names no column, fail in
:func:`instrument` (or when a model defined later is mapped), naming the
class and the field. Needs ``pip install 'purposeguard[sqlalchemy]'``.
"""

from __future__ import annotations

import warnings
from typing import Any

from purposeguard._labels import register_foreign, unregister_foreign

from .. import require

# The parts, each importing only those listed before it: _lineage (which table
# columns an expression reads), _reading (the attribute class that tells the
# zone on read), _declarations (what models and tables declare, and the one
# store), _plans (per statement, what each row position carries), _writes
# (what an INSERT, UPDATE or DELETE reads and where it stores) and _loading
# (the ORM's events and the Connection patches that label what is loaded and
# check what is written).
from ._declarations import _STATE as _STATE
from ._declarations import INFO_KEY as INFO_KEY
from ._declarations import TABLE_TENANT_KEY as TABLE_TENANT_KEY
from ._declarations import TABLES_LIMIT as TABLES_LIMIT
from ._declarations import _declare
from ._encoders import _ENCODER
from ._lineage import MAX_NESTING as MAX_NESTING
from ._loading import (
    _MACHINERY,
    _PATCHER,
    _on_after_flush,
    _on_flushed,
    _on_load,
    _on_mapper,
    _on_orm_execute,
    _on_refresh,
    _on_refresh_flush,
    machinery_types,
)
from ._plans import PLANS_LIMIT as PLANS_LIMIT

__all__ = ["SUPPORTED", "instrument", "is_instrumented", "uninstrument"]

# The SQLAlchemy releases this integration was tried against (major, minor).
SUPPORTED = ((2, 0), (2, 1))


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
    from sqlalchemy.orm import Mapper, Session

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
        event.listen(Session, "after_flush", _on_after_flush)
        event.listen(Session, "after_flush_postexec", _on_flushed)
        for machinery in machinery_types():
            register_foreign(machinery, _MACHINERY)
        _STATE.instrumented = True
    _PATCHER.install()
    _ENCODER.install()


def uninstrument() -> None:
    """Stop labelling loaded values (idempotent); values labelled already keep their labels."""
    with _STATE.lock:
        if not _STATE.instrumented:
            return
        from sqlalchemy import event
        from sqlalchemy.orm import Mapper, Session

        for machinery in machinery_types():
            unregister_foreign(machinery)
        event.remove(Mapper, "load", _on_load)
        event.remove(Mapper, "refresh", _on_refresh)
        event.remove(Mapper, "refresh_flush", _on_refresh_flush)
        event.remove(Mapper, "after_mapper_constructed", _on_mapper)
        event.remove(Session, "do_orm_execute", _on_orm_execute)
        event.remove(Session, "after_flush", _on_after_flush)
        event.remove(Session, "after_flush_postexec", _on_flushed)
        _STATE.instrumented = False
        _STATE.forget()
    _PATCHER.remove()
    _ENCODER.remove()


def is_instrumented() -> bool:
    return _STATE.instrumented
