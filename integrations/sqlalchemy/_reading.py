"""The attribute class of labelled columns: reading ``post.body`` tells the
request's zone what the read hands out (loading the row did not)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from purposeguard._context import FLAGS, MIXED_TENANT, ZONE, ZoneState
from purposeguard._kinds import _checked_tenant
from purposeguard._labels import _resolve, _tenant_on

if TYPE_CHECKING:
    from ._declarations import _Model


logger = logging.getLogger("purposeguard")
# Said once per process: a damaged tenant column is read on every row.
_SAID_BAD_TENANT: list[bool] = []


def _tenant(value: Any) -> str | None:
    """The tenant of a row, from its tenant column's value. A value that is
    no tenant id (blank, too long, surrounded by spaces) makes the row
    several tenants' data, as a flush of such a row labels it: no one
    tenant's consent releases it, and reading the row never fails on it."""
    if value is None:
        return None
    text = value if type(value) is str else str(value)
    try:
        return _checked_tenant(text)
    except (TypeError, ValueError):
        if not _SAID_BAD_TENANT:
            _SAID_BAD_TENANT.append(True)
            # Names the problem, never the column's value.
            logger.warning(
                "purposeguard: a tenant column holds a value that is not a tenant id; "
                "its row's values are labelled as several tenants' data"
            )
        return MIXED_TENANT


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
        # The tenant of its values where the model names no tenant column.
        _pg_owner: str | None = None

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
                        _note_read(zone, type(self), values, value)
            return value

    _READER.append(ReadingAttribute)
    return ReadingAttribute


def _note_read(zone: ZoneState, reader: Any, values: dict[str, Any], value: Any) -> None:
    """Tell ``zone`` what reading ``value`` of an instance (whose ``__dict__``
    is ``values``) through the attribute class ``reader`` hands out."""
    kind = getattr(type(value), "_pg_kind", None) or getattr(type(value), "_pg_box", None)
    if kind is not None:
        zone.add(kind.labels, _tenant_on(value))
        return
    # None, a truth value, a proxy: the column's categories with the row's tenant.
    tenant = values.get(reader._pg_tenant) if reader._pg_tenant is not None else reader._pg_owner
    zone.add(reader._pg_labels, _tenant(tenant))


def note_wholesale(values: dict[str, Any], include: Any = None, exclude: Any = None) -> None:
    """Tell the request's zone what reading a loaded instance's ``__dict__``
    (``values``) wholesale hands out: each declared attribute it holds, as a
    read of that attribute would (less the keys ``exclude`` names, and those
    ``include`` leaves out, when given). ``values`` that are not an
    instance's ``__dict__`` tell nothing."""
    if not FLAGS.zones:
        return
    zone = ZONE.get()
    state = values.get("_sa_instance_state")
    manager = getattr(state, "manager", None)
    if zone is None or manager is None:
        return
    base = _reader_base()
    for key, value in list(values.items()):
        if (
            value is None
            or (include is not None and key not in include)
            or (exclude is not None and key in exclude)
        ):
            continue
        attribute = manager.get(key)
        if isinstance(attribute, base):
            _note_read(zone, type(attribute), values, value)


def _read_through(mapper: Any, model: _Model, readers: list[tuple[Any, type]]) -> None:
    """Give each labelled column attribute of ``mapper``'s class the reading
    class. An attribute of a class of its own (a custom instrumentation)
    keeps it, and its model's loads tell the zone at once instead. Each
    swapped attribute is added to ``readers`` with its class before."""
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
                "_pg_owner": MIXED_TENANT if model.tenantless else None,
            },
        )
        attribute.__class__ = reader
        readers.append((attribute, original))
