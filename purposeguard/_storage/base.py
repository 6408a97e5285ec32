"""What every storage backend shares: the chain's hash, the entry and grant
types, the error, and the interface the audit log and consent store use.

A backend implements :class:`Storage`. What matters is that
:meth:`Storage.append` runs as one transaction that reads the recorded head
of the chain, links each new entry to it with :func:`link`, applies the
consent change if any, and moves the head, all or nothing, while holding the
database's write lock (``BEGIN IMMEDIATE`` in SQLite, a ``SELECT ... FOR
UPDATE`` of the head row in PostgreSQL): that lock is what lets many
processes share one chain without forks or gaps.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from .._errors import AuditError

__all__ = [
    "FORMAT",
    "GENESIS",
    "VERSION",
    "AuditError",
    "Grant",
    "Pending",
    "Revoke",
    "Storage",
    "StoredEntry",
    "consent_difference",
    "link",
    "replay_consents",
]

# The previous-hash of the first record.
GENESIS = "0" * 64
FORMAT = "purposeguard-audit"
VERSION = "1"


def link(prev_hash: str, seq: int, kind: str, timestamp: float, data: str) -> str:
    """The hash of one entry: it covers its position, content and predecessor."""
    digest = hashlib.sha256()
    digest.update(f"{prev_hash}\n{seq}\n{kind}\n{timestamp!r}\n".encode())
    digest.update(data.encode("utf-8"))
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Pending:
    """An entry to append: its kind, timestamp and JSON text."""

    kind: str
    timestamp: float
    data: str


@dataclass(frozen=True, slots=True)
class StoredEntry:
    seq: int
    kind: str
    timestamp: float
    data: str
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class Grant:
    """One tenant's consent to one purpose for one category."""

    tenant: str
    purpose: str
    category: str
    granted_by: str
    granted_at: float
    expires_at: float | None = None

    def active(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True, slots=True)
class Revoke:
    """Remove ``tenant``'s grants of ``purpose`` for ``categories`` (all when None)."""

    tenant: str
    purpose: str
    categories: tuple[str, ...] | None = None


class Storage(Protocol):
    """What the audit log and the consent store need from a database."""

    location: str
    log_id: str

    def append(
        self, items: Sequence[Pending], *, grants: Sequence[Grant] = (), revoke: Revoke | None = None
    ) -> list[int]:
        """Atomically chain and append ``items`` (and apply a consent change); their seqs."""
        ...

    def entries(self, start: int = 1) -> Iterator[StoredEntry]: ...

    def last(self, n: int) -> list[StoredEntry]: ...

    def head(self) -> tuple[int, str]:
        """The recorded end of the chain: ``(seq, hash)``, ``(0, GENESIS)`` when empty."""
        ...

    def snapshot(self) -> contextlib.AbstractContextManager[tuple[tuple[int, str], Iterator[StoredEntry]]]:
        """The head and every entry as of one moment (one read transaction):
        what verification walks, so a concurrent append is never mistaken
        for a deleted record."""
        ...

    def generation(self) -> object:
        """A token that changes whenever the data changes, by any connection or
        process: equal tokens mean nothing was committed in between."""
        ...

    def grants(self, tenant: str | None = None) -> list[Grant]: ...

    def consent_mismatch(self) -> str | None:
        """How the consent table differs from what the chain's consent records
        grant (None when they agree): verification's check that no grant was
        added, changed or removed by hand."""
        ...

    def cached_grants(self, tenant: str) -> tuple[Grant, ...] | None:
        """``tenant``'s grants from a view the backend keeps current by itself
        (no I/O), or None when the backend keeps no such view and the caller
        reads :meth:`grants` when :meth:`generation` moves. Raises
        :class:`AuditError` when the view may be older than its bound."""
        ...

    def refresh(self) -> None:
        """Bring the view behind :meth:`cached_grants` up to date now (after a
        change this process committed)."""
        ...

    def close(self) -> None: ...




GrantKey = tuple[str, str, str]


def replay_consents(entries: Iterable[StoredEntry], grants: dict[GrantKey, Grant]) -> None:
    """Apply the chain's consent records, in order, to ``grants`` (by tenant,
    purpose, category): what the consent table must hold. A record whose
    hash does not match its content grants nothing (verification names it)."""
    for entry in entries:
        if entry.kind != "consent":
            continue
        if link(entry.prev_hash, entry.seq, entry.kind, entry.timestamp, entry.data) != entry.hash:
            continue
        try:
            data = json.loads(entry.data)
            action, tenant, purpose = str(data["action"]), str(data["tenant"]), str(data["purpose"])
            categories = [str(c) for c in data.get("categories") or ()]
            expires = data.get("expires_at")
            expires_at = None if expires is None else float(expires)
            granted_at = float(data.get("timestamp") or entry.timestamp)
        except (ValueError, KeyError, TypeError):
            continue
        if action == "grant":
            for category in categories:
                grants[(tenant, purpose, category)] = Grant(
                    tenant, purpose, category, str(data.get("actor", "")), granted_at, expires_at
                )
        elif action == "revoke":
            for key in [k for k in grants if k[0] == tenant and k[1] == purpose]:
                if not categories or key[2] in categories:
                    del grants[key]


def consent_difference(table: Iterable[Grant], chained: dict[GrantKey, Grant]) -> str | None:
    """The first way the consent table differs from what the chain's records
    grant (None when they agree), in words."""
    seen: set[GrantKey] = set()
    for grant in sorted(table, key=lambda g: (g.tenant, g.purpose, g.category)):
        key = (grant.tenant, grant.purpose, grant.category)
        seen.add(key)
        recorded = chained.get(key)
        if recorded is None:
            return (
                f"the consent table grants {grant.tenant!r} {grant.purpose} for {grant.category} "
                "with no consent record in the chain (added by hand?)"
            )
        if recorded.expires_at != grant.expires_at:
            return (
                f"the consent table's grant to {grant.tenant!r} of {grant.purpose} for {grant.category} "
                "expires otherwise than its consent record says (changed by hand?)"
            )
    for key in sorted(set(chained) - seen):
        return (
            f"the consent table lacks the grant to {key[0]!r} of {key[1]} for {key[2]} "
            "that the chain records (removed by hand?)"
        )
    return None
