"""Label sets and tenants: the kinds that labelled values carry.

A kind (:class:`_Kind`) is one label set, validated against the taxonomy,
and, when a value names one, whose data it is. This module makes kinds,
merges them (:func:`_union`, :func:`_join`, :func:`merge_tenants`), bounds
their caches (``LABEL_SETS_LIMIT``) and remembers which kinds a purpose may
read (:data:`SOURCE`). It is apart from the labelled types (``_labelled``)
so that the caches, their bounds and their eviction read in one place; the
labelled classes a kind subclasses are handed in by ``_labelled``
(:data:`PARENTS`), which builds on this module.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from ._context import ACTIVE_GUARD, FLAGS, MIXED_TENANT, PURPOSE
from ._errors import UnknownKeyError
from ._shortcut import forget_classes
from ._state import STATE, remember
from ._taxonomy import Taxonomy

if TYPE_CHECKING:
    from ._labelled import LabelledBytes, LabelledStr

EMPTY: frozenset[str] = frozenset()


# The registries and caches below belong to the process state; these names
# are bound to its containers, which a reset clears in place.
_STATE = STATE.labels
_STATE.default_taxonomy = Taxonomy.builtin()
if _STATE.taxonomy is None:
    _STATE.taxonomy = _STATE.default_taxonomy


class _Keys:
    """The taxonomy that label keys are validated against: the process-wide
    policy's, or, while a guard is activated for one context, that guard's."""

    __slots__ = ()

    @property
    def taxonomy(self) -> Taxonomy:
        return _STATE.taxonomy  # type: ignore[no-any-return]

    def current(self) -> Taxonomy:
        if FLAGS.activations:
            active = ACTIVE_GUARD.get()
            if active is not None:
                return active.policy.taxonomy  # type: ignore[no-any-return]
        return _STATE.taxonomy  # type: ignore[no-any-return]


KEYS = _Keys()


def set_taxonomy(taxonomy: Taxonomy) -> None:
    if taxonomy is not _STATE.taxonomy:
        _STATE.taxonomy = taxonomy
        _KINDS_NO_TENANT.clear()
        _STR_FAST.clear()


# The classes a label set's labelled classes subclass, by the plain type they
# stand for and whether their instances carry a tenant (str has a slot for it;
# bytes, numbers and containers an instance __dict__: their C layout admits no
# slot). They are defined in _labelled, which builds on this module and fills
# this in when it loads.
PARENTS: dict[tuple[type, bool], type] = {}


class _Kind:
    """A label set, and with ``tenant`` whose data it is.

    The kind of a label set alone (``tenant`` None) is made once per label
    set and owns its labelled classes: with and without a tenant slot, for
    str, bytes, numbers and containers. Tenants live on the labelled
    instances, never in a class, so a million tenants make no class and
    evict nothing. A kind with a tenant is a light pair made as needed (for
    side-table objects and proxies), pointing at its label set's kind
    (``base``); it owns no class."""

    __slots__ = (
        "labels",
        "tenant",
        "base",
        "evicted",
        "str_cls",
        "bytes_cls",
        "tstr_cls",
        "tbytes_cls",
        "_numbers",
    )

    def __init__(self, labels: frozenset[str], tenant: str | None = None, base: _Kind | None = None) -> None:
        self.labels = labels
        self.tenant = tenant
        # Set when the label set is forgotten (LABEL_SETS_LIMIT): a live
        # value of it still works, but no shortcut or memo learns it again.
        self.evicted = False
        if base is not None:
            self.base = base
            return
        self.base = self
        self.str_cls: type[LabelledStr] = self._subclass(PARENTS[str, False], "_pg_kind")
        self.tstr_cls: type[LabelledStr] = self._subclass(PARENTS[str, True], "_pg_kind")
        self.bytes_cls: type[LabelledBytes] = self._subclass(PARENTS[bytes, False], "_pg_kind")
        self.tbytes_cls: type[LabelledBytes] = self._subclass(PARENTS[bytes, True], "_pg_kind")
        self._numbers: dict[tuple[type, bool], type] = {}

    def _subclass(self, parent: type, attribute: str) -> Any:
        # Every one is named as the public class it stands for, in its module.
        name = parent.__name__.lstrip("_").replace("Tenant", "Labelled")
        namespace: dict[str, Any] = {
            "__slots__": (),
            attribute: self,
            "__module__": parent.__module__,
            "__qualname__": name,
        }
        if attribute == "_pg_kind":
            namespace["_pg_labels"] = self.labels
        return type(name, (parent,), namespace)

    def number_cls(self, base: type, tenant: bool = False) -> type:
        """The labelled subclass of ``int`` or ``float`` (with a tenant
        attribute when ``tenant``), built on first use."""
        found = self._numbers.get((base, tenant))
        if found is None:
            found = self._subclass(PARENTS[base, tenant], "_pg_kind")
            self._numbers[base, tenant] = found
        return found

    def container_cls(self, base: type, tenant: bool = False) -> type:
        """The labelled subclass of ``dict``, ``list``, ``tuple``, ``set`` or
        ``frozenset``, built on first use.

        It carries the kind as ``_pg_box``, not ``_pg_kind``: ``_pg_kind`` tells
        the hot path a value's labels are all on its class, while a
        container's items may carry labels of their own."""
        found = self._numbers.get((base, tenant))
        if found is None:
            found = self._subclass(PARENTS[base, tenant], "_pg_box")
            self._numbers[base, tenant] = found
        return found


# label set -> kind: every labelled class made.
_CLASSES: dict[frozenset[str], _Kind] = _STATE.classes
_CLASSES_LOCK = _STATE.classes_lock
# categories as given -> kind, for keys already validated.
_KINDS_NO_TENANT: dict[tuple[str, ...], _Kind] = _STATE.kinds_no_tenant
# categories as given -> labelled str class: label()'s first and cheapest test.
_STR_FAST: dict[tuple[str, ...], type[LabelledStr]] = _STATE.str_fast
_UNIONS: dict[tuple[_Kind, _Kind], _Kind] = _STATE.unions


# Label sets are bounded by the taxonomy (tenants no longer make classes),
# but a program may combine categories in many ways: past this many label
# sets the oldest eighth is forgotten. Live values keep their classes; a
# forgotten class is freed with its last value.
LABEL_SETS_LIMIT = 4096


def _kind_for(labels: frozenset[str], tenant: str | None = None) -> _Kind:
    kind = _CLASSES.get(labels)
    if kind is None:
        with _CLASSES_LOCK:
            kind = _CLASSES.get(labels)
            if kind is None:
                if len(_CLASSES) >= LABEL_SETS_LIMIT:
                    _forget_oldest_label_sets()
                kind = _Kind(labels)
                _CLASSES[labels] = kind
    return kind if tenant is None else _Kind(labels, tenant, kind)


def _with_tenant(kind: _Kind, tenant: str | None) -> _Kind:
    # ``kind`` is a label set's own kind (no tenant).
    return kind if tenant is None else _Kind(kind.labels, tenant, kind)


def _forget_oldest_label_sets() -> None:
    # Partial and local: only the forgotten kinds leave the caches and the
    # wrappers' shortcut sets. Nothing is invalidated, since the policy did
    # not change: the classes of other label sets stay allowed, and zones
    # keep what they learnt. (Dicts keep insertion order: the first are the oldest.)
    keys = list(itertools.islice(_CLASSES, max(1, len(_CLASSES) // 8)))
    gone: set[_Kind] = {_CLASSES.pop(k) for k in keys}
    for kind_key in [k for k, kind in _KINDS_NO_TENANT.items() if kind in gone]:
        del _KINDS_NO_TENANT[kind_key]
        _STR_FAST.pop(kind_key, None)
    for union_key in [k for k, kind in _UNIONS.items() if kind in gone or k[0] in gone or k[1] in gone]:
        del _UNIONS[union_key]
    for allowed in SOURCE.allowed.values():
        allowed.difference_update(gone)
    classes: set[type] = set()
    for kind in gone:
        kind.evicted = True
        classes.update(
            (kind.str_cls, kind.tstr_cls, kind.bytes_cls, kind.tbytes_cls, *kind._numbers.values())
        )
    forget_classes(classes)


def merge_tenants(a: str | None, b: str | None) -> str | None:
    if a == b or b is None:
        return a
    if a is None:
        return b
    return MIXED_TENANT


def _union(a: _Kind, b: _Kind) -> _Kind:
    """The kind of both label sets (kinds without a tenant)."""
    if a is b:
        return a
    kind = _UNIONS.get((a, b))
    if kind is None:
        kind = _kind_for(a.labels | b.labels)
        remember(_UNIONS, (a, b), kind, 4 * LABEL_SETS_LIMIT)
    return kind


def _join(a: _Kind, b: _Kind) -> _Kind:
    """:func:`_union` for kinds that may carry a tenant (tenants merged)."""
    if a is b:
        return a
    return _with_tenant(_union(a.base, b.base), merge_tenants(a.tenant, b.tenant))


# -- validating categories and tenants -----------------------------------------


# The longest tenant id accepted anywhere (zones, labels, baggage).
MAX_TENANT_LENGTH = 256


def _unhashable(categories: tuple[Any, ...], tenant: object = None) -> NoReturn:
    """A category (or tenant) that cannot even be looked up (a dict, a list): name it by type."""
    if tenant is not None:
        require_tenant(tenant)
    for category in categories:
        if not isinstance(category, str):
            raise UnknownKeyError(category, "category")
    raise TypeError("categories must be strings")


def _resolve(categories: tuple[str, ...], tenant: str | None = None) -> _Kind:
    """The kind of ``categories`` (validated) with ``tenant`` (validated)."""
    if FLAGS.activations:
        # Another context may run under another taxonomy: validate against this
        # context's, and keep the caches for the process-wide one.
        taxonomy = KEYS.current()
        for category in categories:
            if not isinstance(category, str) or category not in taxonomy.categories:
                raise UnknownKeyError(category, "category")
        return _kind_for(frozenset(categories), None if tenant is None else _checked_tenant(tenant))
    try:
        kind = _KINDS_NO_TENANT.get(categories)
    except TypeError:
        _unhashable(categories, tenant)
    if kind is None:
        taxonomy = KEYS.taxonomy
        for category in categories:
            if not isinstance(category, str) or category not in taxonomy.categories:
                raise UnknownKeyError(category, "category")
        kind = _kind_for(frozenset(categories))
        if len(_KINDS_NO_TENANT) >= LABEL_SETS_LIMIT:
            # Partial and local: the oldest eighth of these lookups goes.
            for old in list(itertools.islice(_KINDS_NO_TENANT, LABEL_SETS_LIMIT // 8)):
                del _KINDS_NO_TENANT[old]
                _STR_FAST.pop(old, None)
        _KINDS_NO_TENANT[categories] = kind
        _STR_FAST[categories] = kind.str_cls
    return kind if tenant is None else _Kind(kind.labels, _checked_tenant(tenant), kind)


def _checked_tenant(tenant: object) -> str:
    # The common case in one expression; anything else gets require_tenant's
    # full test and its error.
    if (
        type(tenant) is str
        and 0 < len(tenant) <= MAX_TENANT_LENGTH
        and tenant.isprintable()
        and tenant[0] != " "
        and tenant[-1] != " "
    ):
        return tenant
    return require_tenant(tenant)


def require_tenant(tenant: object) -> str:
    """A tenant id as records, logs and baggage may carry it: a printable
    string of 1 to 256 characters without surrounding spaces, not a
    labelled value. The error names the rule, never the value."""
    if not isinstance(tenant, str):
        raise TypeError(f"tenant must be a string or None, not {type(tenant).__name__}")
    if getattr(type(tenant), "_pg_kind", None) is not None:
        raise ValueError("a tenant id must not be a labelled value: it is kept in records and baggage")
    if not tenant or tenant != tenant.strip() or len(tenant) > MAX_TENANT_LENGTH or not tenant.isprintable():
        raise ValueError(
            f"a tenant id is 1 to {MAX_TENANT_LENGTH} printable characters without surrounding spaces"
        )
    return tenant


# -- reading is a use ----------------------------------------------------------


class _Source:
    """Reading is a use: labelling a value while a purpose is current checks
    its categories against that purpose (``via="source"``). ``check`` is
    installed by the runtime (this layer does not import it); it returns True
    when the policy allows the categories without consent, which is
    remembered per purpose (as the labelled kinds seen) until the policy
    changes (``epoch``)."""

    __slots__ = ("check", "allowed", "epoch")

    def __init__(self) -> None:
        self.check: Callable[[frozenset[str], str, str | None], bool] | None = None
        # purpose -> kinds whose categories it may read without consent
        self.allowed: dict[str, set[_Kind]] = {}
        self.epoch = -1


SOURCE = _Source()
_NOTHING_ALLOWED: frozenset[_Kind] = frozenset()
_current_purpose = PURPOSE.get


def _read_in_purpose(kind: _Kind, tenant: str | None, purpose: str) -> None:
    """Check a read of ``kind``'s categories under ``purpose`` (the caller
    found it not remembered as allowed)."""
    check = SOURCE.check
    if check is None:
        return
    epoch = FLAGS.epoch  # before the check: a policy change meanwhile invalidates it
    if SOURCE.epoch != epoch:
        SOURCE.allowed = {}
        SOURCE.epoch = epoch
    if check(kind.labels, purpose, tenant) and not FLAGS.activations and SOURCE.epoch == epoch:
        # The label set's own kind: a kind with a tenant is made per value.
        base = kind.base
        if not base.evicted:
            SOURCE.allowed.setdefault(purpose, set()).add(base)


def _read_allowed(kind: _Kind, purpose: str) -> bool:
    return (
        kind.base in SOURCE.allowed.get(purpose, _NOTHING_ALLOWED)
        and SOURCE.epoch == FLAGS.epoch
        and not FLAGS.activations
    )
