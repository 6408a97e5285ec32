"""Tenants' consent: "unless the customer says otherwise", made executable.

A :class:`ConsentStore` records, per tenant, grants of a purpose for
categories, with who granted them, when, and an optional expiry. The guard
consults it only for denials decided by a ``consentable`` rule, the last
step of a decision::

    store = ConsentStore("consent.db")
    store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    pg.configure("trust-center", consents=store)

Every change is appended to the store's audit log in the same transaction
(all or nothing) and dispatched as a :class:`ConsentChange` record, so an
attached audit sink and telemetry see it too. A revocation or an expiry
applies to the very next decision in this process: the policy memoises base
decisions, never consent outcomes. On SQLite the store re-reads its grants
whenever anything (this store, another store on the same log, another
process) has committed to the file since it last read them. On PostgreSQL
(``ConsentStore("postgresql://...")``) every replica keeps the grants in
memory, reloaded when the database notifies a change, so a change on one
replica applies on all of them within ``stale_after`` (one second) and a
decision never waits on the database (see docs/storage.md).
"""

from __future__ import annotations

import builtins
import dataclasses
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ._errors import PolicyError, SinkFailure, UnknownKeyError, shown
from ._labels import _exact_tenant
from ._policy import Policy
from ._records import Record
from ._runtime import get_guard, logger
from ._state import remember
from ._storage import AuditError, Grant, Revoke
from ._taxonomy import ancestors
from .audit import AuditLog, encode

__all__ = ["ConsentChange", "ConsentStore", "Grant", "actor_name"]

_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}\Z")


# Not frozen, like the core's records (a frozen subclass of a non-frozen
# Record is not allowed); sinks treat records as read-only.
@dataclass(slots=True)
class ConsentChange(Record):
    """A consent granted or revoked (``action``), by whom (``actor``), for what.

    ``audit_ref`` is ``"<log id>:<seq>"`` of the entry that already holds
    this change, so a sink writing to that same log does not write it twice.
    A sink on another log keeps it in its copy: that is how the other log's
    verification knows the copy grants nothing there (its consent table
    never held the grant), while the store's own entry, written without a
    reference, is checked against the store's table.
    """

    action: str
    tenant: str
    purpose: str
    categories: tuple[str, ...]
    actor: str
    rules: tuple[str, ...]
    expires_at: float | None
    timestamp: float
    audit_ref: str | None = None

    @property
    def kind(self) -> str:
        return "consent"


class ConsentStore:
    """Consent grants per tenant, kept beside an audit log.

    ``path_or_audit`` is a file path (``":memory:"`` for tests), a URL
    (``sqlite:///PATH``, or ``postgresql://...`` shared by every replica:
    a change on one is seen by all within a second), or an
    :class:`~purposeguard.audit.AuditLog` whose storage also holds the grants.
    ``policy`` decides which grants are acceptable (default: the active
    guard's policy at the time of each change). ``tenants`` lists the known
    tenants (or is a predicate); without it any well-formed tenant id is
    accepted. ``clock`` returns the current time in seconds (tests pass
    their own to move time).

    >>> store = ConsentStore(":memory:")
    >>> _ = store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    >>> store.has_consent("contoso", "improvement", "customer_data.content.email")
    True
    """

    #: Tenants whose grants are kept in memory between commits (those with
    #: none too: most lookups are for tenants that never consented); past
    #: it the oldest eighth is read again when next asked about.
    TENANTS_LIMIT = 4096

    def __init__(
        self,
        path_or_audit: str | Path | AuditLog = ":memory:",
        *,
        policy: Policy | None = None,
        tenants: Iterable[str] | Callable[[str], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(path_or_audit, AuditLog):
            self.audit = path_or_audit
            self._owns_log = False
        else:
            self.audit = AuditLog(path_or_audit)
            self._owns_log = True
        self.policy = policy
        if tenants is None or callable(tenants):
            self._is_tenant: Callable[[str], bool] | None = tenants
        else:
            known = frozenset(tenants)
            self._is_tenant = known.__contains__
        self.clock = clock
        self._lock = threading.Lock()
        self._by_tenant: dict[str, tuple[Grant, ...]] = {}
        # The storage's generation when _by_tenant was last known good: any
        # commit since (this store, another store on the same log, another
        # process) clears the cache before the next decision.
        self._generation: object = None
        self._reported = False
        try:
            # Load every grant now and keep the view current from here on
            # (a no-op where the backend re-reads on demand).
            self.audit.storage.refresh()
        except AuditError as error:
            self._unreadable(error)

    def __repr__(self) -> str:
        return f"<ConsentStore {self.audit.path!r}>"

    # -- changes ------------------------------------------------------------------

    def grant(
        self,
        tenant: str,
        purpose: str,
        categories: str | Iterable[str],
        *,
        granted_by: str,
        expires_at: float | datetime | None = None,
    ) -> ConsentChange:
        """Record that ``tenant`` consents to ``purpose`` for ``categories``.

        Accepted only where the rule deciding each category for ``purpose`` is
        ``consentable``; otherwise :class:`PolicyError` names the rule.
        Granting again replaces the earlier grant (and its expiry).
        """
        policy = self._policy()
        tenant = self._tenant(tenant)
        purpose = policy.taxonomy.require_purpose(purpose)
        keys = self._categories(policy, categories)
        actor = _actor(granted_by, "granted_by")
        now = float(self.clock())
        expiry = _expiry(expires_at, now)
        rules = []
        for category in keys:
            allowed, rule, consentable = policy.cell(category, purpose)
            decided_by = f"rule {rule.id!r}" if rule else "the policy default"
            if allowed:
                raise PolicyError(
                    f"{category} is already allowed for {purpose} by {decided_by}: consent is not needed",
                    rule=rule.id if rule else None,
                    field="purpose",
                )
            if not consentable:
                raise PolicyError(
                    f"consent cannot allow {category} for {purpose}: {decided_by} is not consentable",
                    rule=rule.id if rule else None,
                    field="purpose",
                )
            assert rule is not None  # a consentable cell always has its rule
            if rule.id not in rules:
                rules.append(rule.id)
        change = ConsentChange(
            action="grant",
            tenant=tenant,
            purpose=purpose,
            categories=keys,
            actor=actor,
            rules=tuple(rules),
            expires_at=expiry,
            timestamp=now,
        )
        grants = [Grant(tenant, purpose, category, actor, now, expiry) for category in keys]
        return self._commit(change, grants=grants)

    def revoke(
        self,
        tenant: str,
        purpose: str,
        categories: str | Iterable[str] | None = None,
        *,
        revoked_by: str,
    ) -> ConsentChange:
        """Withdraw ``tenant``'s consent to ``purpose`` (for ``categories``, or
        all of them); applies to the next decision. Revoking a consent that
        was never granted raises :class:`PolicyError` and records nothing."""
        policy = self._policy()
        tenant = self._tenant(tenant)
        purpose = policy.taxonomy.require_purpose(purpose)
        keys = None if categories is None else self._categories(policy, categories)
        actor = _actor(revoked_by, "revoked_by")
        change = ConsentChange(
            action="revoke",
            tenant=tenant,
            purpose=purpose,
            categories=keys or (),
            actor=actor,
            rules=(),
            expires_at=None,
            timestamp=float(self.clock()),
        )
        return self._commit(change, revoke=Revoke(tenant, purpose, keys))

    def _commit(
        self,
        change: ConsentChange,
        *,
        grants: builtins.list[Grant] | None = None,
        revoke: Revoke | None = None,
    ) -> ConsentChange:
        try:
            seq = self.audit.storage.append([encode(change)], grants=grants or (), revoke=revoke)[0]
        except LookupError as error:
            raise PolicyError(str(error), field="categories") from None
        with self._lock:
            # Re-read at the next decision, whoever committed what meanwhile.
            self._by_tenant.clear()
            self._generation = None
        try:
            # This process sees its own change at once; other replicas when notified.
            self.audit.storage.refresh()
        except AuditError as error:
            self._unreadable(error)
        recorded = dataclasses.replace(change, audit_ref=f"{self.audit.log_id}:{seq}")
        try:
            get_guard().dispatch(recorded)
        except SinkFailure as failure:
            # The change is committed and proven in this store's own log; an
            # attached sink elsewhere that failed has logged why.
            logger.error(
                "consent change kept in %s but not in the attached audit sink: %s", self.audit.path, failure
            )
        return recorded

    # -- reading ----------------------------------------------------------------

    def list(self, tenant: str | None = None, *, include_expired: bool = False) -> builtins.list[Grant]:
        """The grants recorded (for one tenant, or all), one per category, as
        the log's consent records make them: who granted each, when and until
        when are the record's, whatever the consent table was changed to."""
        if tenant is not None:
            tenant = self._tenant(tenant)
        grants = self.audit.storage.grants(tenant)
        if include_expired:
            return grants
        now = float(self.clock())
        return [g for g in grants if g.active(now)]

    def has_consent(self, tenant: str, purpose: str, category: str) -> bool:
        """Has ``tenant`` an unexpired grant of ``purpose`` (or an ancestor) for
        ``category`` (or an ancestor)? The guard's :class:`ConsentLookup`.

        ``tenant`` is a tenant id as a zone or label takes it (1 to 256
        printable characters without surrounding spaces, not a labelled
        value); anything else raises :class:`PolicyError`, as grant() and
        revoke() do. The guard only asks about tenants a zone, label or
        baggage accepted, so that error never reaches a request; should a
        lookup raise there all the same, the check fails closed. A
        well-formed id no grant can name ("Acme Corp") has no consent."""
        tenant = _asked_tenant(tenant)
        storage = self.audit.storage
        try:
            # A backend that keeps its own current view (PostgreSQL, told of
            # every change by the database) answers from memory.
            pushed = storage.cached_grants(tenant)
        except AuditError as error:
            self._unreadable(error)
            return False
        if pushed is not None:
            if self._reported:
                self._reported = False
                logger.warning("consent store %s: readable again", self.audit.path)
            return self._matches(pushed, purpose, category)
        with self._lock:
            try:
                generation = self.audit.storage.generation()
                if generation != self._generation:
                    self._by_tenant.clear()
                    self._generation = generation
            except AuditError as error:
                # Deciding on a store that cannot be read: no consent (the deny stands).
                self._unreadable(error)
                return False
            grants = self._by_tenant.get(tenant)
            if grants is None:
                loaded = self._load(tenant)
                if loaded is None:
                    return False
                grants = loaded
        return self._matches(grants, purpose, category)

    def _matches(self, grants: tuple[Grant, ...], purpose: str, category: str) -> bool:
        if not grants:
            return False
        purposes = ancestors(purpose)
        categories = ancestors(category)
        now = self.clock()
        for grant in grants:
            if grant.purpose in purposes and grant.category in categories and grant.active(now):
                return True
        return False

    def _unreadable(self, error: AuditError) -> None:
        # Deciding without a current view: no consent (the deny stands), said
        # once per outage rather than once per decision.
        if not self._reported:
            self._reported = True
            logger.error(
                "consent store %s unreadable, treating as no consent: %s", self.audit.path, error.reason
            )

    def _load(self, tenant: str) -> tuple[Grant, ...] | None:
        """``tenant``'s grants, or None when the store cannot be read or its
        consent records cannot be trusted (no consent, said once)."""
        try:
            grants = tuple(self.audit.storage.grants(tenant))
        except AuditError as error:
            self._unreadable(error)
            return None
        if self._reported:
            self._reported = False
            logger.warning("consent store %s: readable again", self.audit.path)
        # Bounded: the tenant reaching a decision can come from a request.
        remember(self._by_tenant, tenant, grants, self.TENANTS_LIMIT)
        return grants

    def close(self) -> None:
        if self._owns_log:
            self.audit.close()

    def __enter__(self) -> ConsentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- validation ---------------------------------------------------------------

    def _policy(self) -> Policy:
        return self.policy if self.policy is not None else get_guard().policy

    def _tenant(self, tenant: object) -> str:
        if not isinstance(tenant, str) or not _TENANT.match(tenant):
            raise PolicyError(
                f"malformed tenant id: {shown(tenant)} (letters, digits and _.:@- , at most 200)",
                field="tenant",
            )
        if self._is_tenant is not None and not self._is_tenant(tenant):
            raise UnknownKeyError(tenant, "tenant", field="tenant")
        return tenant

    @staticmethod
    def _categories(policy: Policy, categories: str | Iterable[str]) -> tuple[str, ...]:
        if isinstance(categories, str):
            categories = (categories,)
        try:
            keys = tuple(dict.fromkeys(categories))
        except TypeError:
            raise PolicyError(
                "categories must be a category key or a list of them", field="categories"
            ) from None
        if not keys:
            raise PolicyError("name at least one category", field="categories")
        for key in keys:
            policy.taxonomy.require_category(key)
        return tuple(sorted(keys))


def _asked_tenant(tenant: object) -> str:
    """``tenant`` as the plain ``str`` has_consent looks up (a ``str``
    subclass could compare or hash as another tenant in the cache). The
    error names the rule, never the value: a lookup's tenant can come from
    a request."""
    try:
        return _exact_tenant(tenant)
    except TypeError:
        raise PolicyError(f"a tenant id is a string, not {type(tenant).__name__}", field="tenant") from None
    except ValueError as error:
        raise PolicyError(str(error), field="tenant") from None


def _actor(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PolicyError(f"{name} must name who made the change", field=name)
    if getattr(type(value), "_pg_kind", None) is not None:
        raise PolicyError(
            f"{name} must not be a labelled value: pass consent.actor_name(value) to record a labelled "
            "name (checked and audited)",
            field=name,
        )
    if len(value) > MAX_ACTOR_LENGTH or not value.isprintable() or value != value.strip():
        # Actor names go into the audit chain, reports and logs: no line
        # breaks or terminal escapes, and a bound.
        raise PolicyError(
            f"{name} is 1 to {MAX_ACTOR_LENGTH} printable characters without surrounding spaces",
            field=name,
        )
    return value


MAX_ACTOR_LENGTH = 256


ACTOR_TRANSFORM = "actor-name"


def actor_name(value: str, *, purpose: str = "service.security") -> str:
    """The plain name of who made a change, from a labelled one (a signed-in
    user's email read from the database), for ``granted_by``/``revoked_by``.

    >>> import purposeguard as pg
    >>> email = pg.label("admin@contoso.example", "customer_data")
    >>> store_actor = actor_name(email)

    Keeping who acted is a use of that name: its categories are checked for
    ``purpose`` (``service.security`` by default: the record of who changed
    what), raising or recording per mode like any check, and every call is
    recorded as a :class:`~purposeguard.Declassification` with transform
    ``"actor-name"``, so the audit log and telemetry show that a labelled
    name was kept, by which function, for which tenant. A plain string
    passes through unchanged and records nothing.
    """
    from ._labels import labels_of, strip_labels, tenant_of
    from ._records import Declassification
    from ._runtime import caller_name, check, current_purpose, current_tenant

    if not isinstance(value, str):
        raise PolicyError("an actor name must be a string", field="actor")
    labels = labels_of(value)
    if not labels:
        return value
    check(value, purpose)
    plain = strip_labels(value)
    get_guard().dispatch(
        Declassification(
            transform=ACTOR_TRANSFORM,
            from_categories=tuple(sorted(labels)),
            to="",
            function=caller_name(1),
            purpose=current_purpose() or purpose,
            tenant=tenant_of(value) or current_tenant(),
            timestamp=time.time(),
            extra={"checked_for": purpose},
        )
    )
    if not plain.strip():
        raise PolicyError("an actor name must name who made the change", field="actor")
    return plain


def _expiry(value: float | datetime | None, now: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise PolicyError("expires_at must be timezone-aware", field="expires_at")
        stamp = value.timestamp()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            stamp = float(value)
        except OverflowError:
            raise PolicyError(
                f"expires_at is past the latest expiry ({LATEST_EXPIRY_TEXT})", field="expires_at"
            ) from None
    else:
        raise PolicyError("expires_at must be a datetime or seconds since the epoch", field="expires_at")
    if not math.isfinite(stamp):
        # inf would never end and nan compares false both ways: neither is a time.
        raise PolicyError(f"expires_at must be a finite time, not {stamp!r}", field="expires_at")
    if stamp > LATEST_EXPIRY:
        # A time no calendar shows (reports, `audit tail`): no expiry is meant that far.
        raise PolicyError(
            f"expires_at is past the latest expiry ({LATEST_EXPIRY_TEXT}); omit it for a grant that "
            "does not expire",
            field="expires_at",
        )
    if stamp <= now:
        raise PolicyError("expires_at is already past", field="expires_at")
    return stamp


# The last second of the year 9999 (UTC): the latest time a date shows.
LATEST_EXPIRY = 253402300799.0
LATEST_EXPIRY_TEXT = "9999-12-31T23:59:59Z"
