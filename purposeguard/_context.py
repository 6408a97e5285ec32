"""The context variables purposeguard keeps, and the zone state they hold.

Kept apart from the runtime so the labels layer can report new labels to the
current zone without importing the runtime.
"""

from __future__ import annotations

from _thread import allocate_lock as _allocate_lock
from _thread import get_ident as _get_ident
from collections.abc import Iterable, Mapping
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import Any

from ._state import STATE

# The tenant of data built from several tenants' data: no tenant's consent
# covers it, so consent never widens what it may be used for.
MIXED_TENANT = "(several tenants)"
_NONE: frozenset[str] = frozenset()

__all__ = ["ACTIVE_GUARD", "PURPOSE", "REDACTING", "ZONE", "ZoneState", "zones_in_use", "note_labels"]

PURPOSE: ContextVar[str | None] = ContextVar("purposeguard.purpose", default=None)
ZONE: ContextVar[ZoneState | None] = ContextVar("purposeguard.zone", default=None)
# A guard activated for one context (tests, embedded use) wins over the
# process-wide one. Kept here, below the labels layer, so labels validate keys
# against that guard's taxonomy by reading ``.policy.taxonomy`` off it,
# without knowing the runtime that sets it.
ACTIVE_GUARD: ContextVar[Any] = ContextVar("purposeguard.guard", default=None)
# Set by an exit that judges a value it replaces rather than refuses (a log
# record, a span attribute): an enforce-mode violation there is caught by the
# exit, so it is not the failure of the operation the current span traces.
REDACTING: ContextVar[bool] = ContextVar("purposeguard.redacting", default=False)
# The obligation procedure under way in this context (a compelled
# disclosure's block): a rule that allows only with obligations allows
# nothing outside one.
PROCEDURE: ContextVar[Any] = ContextVar("purposeguard.procedure", default=None)


# The switches the generated wrappers read; owned by the process state.
FLAGS = STATE.flags


def zones_in_use() -> bool:
    return FLAGS.zones


class ZoneState:
    """What one zone (a request, a job) has seen: its categories and tenant.

    Shared by every task and thread that copies the context the zone was
    opened in, so what they see flows back to the zone. ``categories`` only
    grows: nothing, not even a transform, removes a category from a zone.
    """

    __slots__ = (
        "categories",
        "tenant",
        "owners",
        "parent",
        "_own_lock",
        "owner",
        "opener",
        "token",
        "closed",
        "allowed",
        "flows",
        "saw",
    )

    def __init__(
        self,
        tenant: str | None,
        parent: ZoneState | None,
        categories: Iterable[str] = _NONE,
    ) -> None:
        # Every request's zone is built here: plain stores, no calls beyond
        # the thread id (a frozenset passed in is kept as is).
        start = categories if type(categories) is frozenset else frozenset(categories)
        if parent is None:
            self.owners: frozenset[str] = _NONE
        else:
            start = start | parent.categories
            # Tenants that labelled data seen in the zone names (which may not be
            # the zone's own): see data_tenant().
            self.owners = parent.owners
            if tenant is None:
                tenant = parent.tenant
            elif parent.tenant is not None and tenant != parent.tenant and parent.categories:
                # What the enclosing zone saw was its tenant's data: a zone
                # nested for another tenant carries it as theirs, so the new
                # tenant's consent never covers it.
                self.owners = self.owners | {parent.tenant}
        self.categories: frozenset[str] = start
        self.tenant: str | None = tenant
        self.parent = parent
        self.owner = _get_ident()
        # The zone object that opened this state and the token that closes
        # it: kept on the state (not the zone object) so one zone object can
        # be entered by many tasks at once without mixing their tokens.
        self.opener: Any = None
        self.token: Token[ZoneState | None] | None = None
        self.closed = False
        # (rule, purpose, category, via, function, tenant, mode) -> the
        # violation recorded for that flow in this zone: repeats count on it.
        # None until the zone records one.
        self.flows: dict[tuple[Any, ...], Any] | None = None
        # Whether labelled data reached this zone itself (not only what it
        # started from): then what it knows is its tenant's to the parent.
        self.saw = False
        # Made on first use: most requests' zones never need a lock or a
        # memo, and a server pays for every allocation. (Not with
        # __getattr__: a class that has one loses CPython's fast attribute
        # reads for every attribute of every instance.)
        self._own_lock: Any = None
        # purpose -> (categories, policy epoch) the process-wide guard
        # allowed: a guarded call seeing the same category set again skips
        # the check. Read-only and shared until the first write (memo()).
        self.allowed: Mapping[str, tuple[frozenset[str], int]] = NO_MEMO

    @property
    def _lock(self) -> Any:
        """Guards categories, owners, tenant and the tables the zone keeps."""
        lock = self._own_lock
        if lock is None:
            # One lock per zone, whichever of its threads comes first.
            with _MAKING:
                lock = self._own_lock
                if lock is None:
                    lock = self._own_lock = _allocate_lock()
        return lock

    def memo(self) -> dict[str, tuple[frozenset[str], int]]:
        """The zone's memo of allowed category sets, to write to."""
        allowed = self.allowed
        if not isinstance(allowed, dict):
            with self._lock:
                allowed = self.allowed
                if not isinstance(allowed, dict):
                    allowed = self.allowed = {}
        return allowed

    def add(self, labels: frozenset[str], tenant: str | None = None) -> None:
        if labels:
            self.saw = True
        if labels <= self.categories and (tenant is None or tenant in self.owners):
            return
        # Threads in one zone may add at once; a lost update would hide a flow.
        with self._lock:
            self.categories = self.categories | labels
            if tenant is not None and tenant not in self.owners:
                self.owners = self.owners | {tenant}
            closed = self.closed
        if closed and self.parent is not None:
            # Work that outlives a nested zone (a task it started) still
            # reports to the enclosing zone, which is the one still open.
            self.parent.add(labels, tenant)

    def scratch(self) -> ZoneState:
        """A zone that decides and records flows as this one does (same
        tenant, owners, memo and flow records) but whose new categories stay
        its own. An ORM labels what it loads in one: loading a row is not
        yet a flow; reading an attribute of it tells this zone."""
        scratch = ZoneState(self.tenant, None, self.categories)
        scratch.owners = self.owners
        with self._lock:
            if self.flows is None:
                self.flows = {}
        scratch.flows = self.flows
        scratch.allowed = self.memo()
        scratch._own_lock = self._lock
        return scratch

    def data_tenant(self) -> str | None:
        """Whose data the zone holds, for consent on its flows: the zone's
        tenant and every tenant its labelled data names. Data of several
        tenants belongs to none (``MIXED_TENANT``): one tenant's consent
        never covers another's data read in its zone."""
        owners = self.owners
        if not owners:
            return self.tenant
        found = self.tenant
        for owner in owners:
            if found is None or found == owner:
                found = owner
            else:
                return MIXED_TENANT
        return found

    def close(self) -> None:
        """Mark the zone closed and hand what it learned to its parent."""
        if self.parent is None:
            # Nothing to hand over: a thread adding meanwhile finds the zone
            # open or closed, and with no parent either way is the same.
            self.closed = True
            return
        with self._lock:
            self.closed = True
            learned = self.categories
            owners = self.owners
        self.parent.add(learned)
        for owner in owners:
            self.parent.add(learned, owner)
        if self.saw and self.tenant is not None and learned and self.tenant != self.parent.tenant:
            # Seen in this tenant's zone, it is this tenant's data in the
            # enclosing one too (a batch job's zone per tenant in turn).
            self.parent.add(learned, self.tenant)

    def __reduce__(self) -> tuple[Any, ...]:
        # A copy for another process: what the zone knew, detached from it.
        return (_detached, (self.tenant, tuple(sorted(self.categories)), self.closed))

    def __repr__(self) -> str:
        return (
            f"<ZoneState tenant={self.tenant!r} categories={sorted(self.categories)!r}"
            f"{' closed' if self.closed else ''}>"
        )


# The memo of a zone that has allowed nothing yet: shared, read-only.
NO_MEMO: Mapping[str, tuple[frozenset[str], int]] = MappingProxyType({})
# Held while a zone's lock is made (see ZoneState._lock).
_MAKING = _allocate_lock()


def _detached(tenant: str | None, categories: tuple[str, ...], closed: bool) -> ZoneState:
    state = ZoneState(tenant, None, categories)
    state.closed = closed
    return state


def note_labels(labels: frozenset[str]) -> None:
    """Tell the current zone, if any, that values with ``labels`` exist in it."""
    if FLAGS.zones and labels:
        state = ZONE.get()
        if state is not None:
            state.add(labels)
