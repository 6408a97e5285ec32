"""What every storage backend shares: the chain's hash and how new entries
are linked, the entry and grant types, the consent changes, the error, and the
interface the audit log and consent store use. Each backend keeps its own SQL.

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
import errno
import hashlib
import hmac
import json
import logging
import math
import os
import stat
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .._errors import AuditError
from .._files import TooLarge, read_regular

__all__ = [
    "FORMAT",
    "GENESIS",
    "MIN_KEY_BYTES",
    "VERSION",
    "AuditError",
    "ChainKey",
    "Checkpoint",
    "ConsentReplay",
    "Grant",
    "Head",
    "Pending",
    "Revoke",
    "Storage",
    "StoredEntry",
    "apply_consent",
    "check_key",
    "checkpoint_guard",
    "checkpoint_problem",
    "consent_difference",
    "decide_on",
    "forwarded_from",
    "grant_rows",
    "link",
    "linked_rows",
    "load_key_file",
    "log_table_differs",
    "read_checkpoint",
    "write_checkpoint",
    "replay_consents",
    "revoke_grants",
]

logger = logging.getLogger("purposeguard.audit")

# The previous-hash of the first record.
GENESIS = "0" * 64
FORMAT = "purposeguard-audit"
VERSION = "1"


def link(
    prev_hash: str,
    seq: int,
    kind: str,
    timestamp: float,
    data: str,
    key: ChainKey | None = None,
    log_id: str = "",
) -> str:
    """The hash of one entry: it covers its position, content and predecessor;
    with a key, an HMAC that also covers the log's id (a record copied from
    another log does not fit)."""
    if key is not None:
        return key.link(log_id, prev_hash, seq, kind, timestamp, data)
    digest = hashlib.sha256()
    digest.update(f"{prev_hash}\n{seq}\n{kind}\n{timestamp!r}\n".encode())
    digest.update(data.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def linked_rows(
    items: Iterable[Pending], seq: int, prev: str, key: ChainKey | None, log_id: str
) -> list[tuple[int, str, float, str, str, str]]:
    """The audit rows ``(seq, kind, timestamp, data, prev_hash, hash)`` that
    chain ``items`` after the entry ``seq`` whose hash is ``prev``."""
    rows = []
    for item in items:
        seq += 1
        digest = link(prev, seq, item.kind, item.timestamp, item.data, key, log_id)
        rows.append((seq, item.kind, item.timestamp, item.data, prev, digest))
        prev = digest
    return rows


# Shorter keys are refused: 32 bytes is the HMAC-SHA256 block's half, and what
# `secrets.token_hex(16)` gives.
MIN_KEY_BYTES = 32


class ChainKey:
    """The secret that keys the audit chain (HMAC-SHA256).

    Built from text or bytes of at least 32 bytes. ``key_id`` names it
    without revealing it (stored in the log, so a wrong key is told apart
    from a tampered record).
    """

    __slots__ = ("_key", "key_id")

    def __init__(self, key: str | bytes) -> None:
        if isinstance(key, str):
            material = key.encode("utf-8", "surrogatepass")
        elif isinstance(key, (bytes, bytearray)):
            material = bytes(key)
        else:
            raise AuditError(f"an audit key is text or bytes, not {type(key).__name__}")
        if len(material) < MIN_KEY_BYTES:
            raise AuditError(
                f"the audit key is too short ({len(material)} bytes; at least {MIN_KEY_BYTES}, e.g. "
                "the output of `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        self._key = material
        self.key_id = hmac.new(material, b"purposeguard audit key id", hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"<ChainKey {self.key_id}>"

    def link(self, log_id: str, prev_hash: str, seq: int, kind: str, timestamp: float, data: str) -> str:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        mac.update(f"{log_id}\n{prev_hash}\n{seq}\n{kind}\n{timestamp!r}\n".encode())
        mac.update(data.encode("utf-8", "surrogatepass"))
        return mac.hexdigest()

    # The recorded end (in the database) and the checkpoint file (beside an
    # SQLite file) sign the same facts for different purposes, so each over a
    # message of its own: a checkpoint's signature pasted into the recorded
    # end (or the end's into the checkpoint file) never checks. The end's
    # first line is the one every keyed log has used from the start, so
    # existing heads stay valid; checkpoint files got a line of their own.
    _HEAD = "purposeguard checkpoint"
    _CHECKPOINT = "purposeguard checkpoint file"

    def _sign(self, purpose: str, log_id: str, seq: int, head_hash: str) -> str:
        text = f"{purpose}\n{log_id}\n{seq}\n{head_hash}"
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def sign_head(self, log_id: str, seq: int, head_hash: str) -> str:
        """The recorded end's signature: the chain of ``log_id`` had ``seq``
        records ending at ``head_hash`` (kept with the chain, in the database)."""
        return self._sign(self._HEAD, log_id, seq, head_hash)

    def checks_head(self, log_id: str, seq: int, head_hash: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign_head(log_id, seq, head_hash), signature)

    def sign_checkpoint(self, log_id: str, seq: int, head_hash: str) -> str:
        """A checkpoint file's signature: the same statement, kept outside the
        database, signed so that it cannot stand in for the recorded end."""
        return self._sign(self._CHECKPOINT, log_id, seq, head_hash)

    def checks_checkpoint(self, log_id: str, seq: int, head_hash: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign_checkpoint(log_id, seq, head_hash), signature)


def load_key_file(path: str) -> ChainKey:
    """The key a key file holds: one line of at least 32 characters (no spaces
    or control characters), a trailing newline allowed."""
    try:
        raw = read_regular(path, 4096)
    except IsADirectoryError:
        raise AuditError(f"the audit key file {path!r} is a directory") from None
    except TooLarge:
        raise AuditError(f"malformed audit key file {path!r}: longer than 4096 bytes") from None
    except OSError as error:
        # A FIFO or a device is refused before it is read: either could block or never end.
        raise AuditError(f"cannot read the audit key file {path!r}: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise AuditError(
            f"malformed audit key file {path!r}: not text (expected one line holding the key)"
        ) from None
    line = text[:-1] if text.endswith("\n") else text
    line = line[:-1] if line.endswith("\r") else line
    if not line:
        raise AuditError(f"malformed audit key file {path!r}: it is empty")
    if any(c.isspace() or not c.isprintable() for c in line):
        raise AuditError(
            f"malformed audit key file {path!r}: expected one line holding the key, "
            "with no spaces, tabs, control characters or further lines"
        )
    try:
        return ChainKey(line)
    except AuditError as error:
        raise AuditError(f"audit key file {path!r}: {error}") from None


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


# What a snapshot reads as the chain's recorded end: its seq, its hash and,
# on a keyed log, the end's signature (None when there is none).
Head = tuple[int, str, "str | None"]


# The key each log this process holds open keyed was opened with, by
# location, beside the writer holding it: a writer that opened the same log
# before it was keyed (a ConsentStore made before configure(audit_key=...)
# keyed the new log) takes it on. Forgotten when that writer closes.
_KEYS_IN_USE: dict[str, tuple[ChainKey, object]] = {}


def remember_key(location: str, key: ChainKey | None, recorded: str | None, writer: object) -> None:
    """Note the key ``writer`` holds for ``location``, once it fits the log."""
    if key is not None and recorded == key.key_id and location != ":memory:":
        _KEYS_IN_USE[location] = (key, writer)


def forget_key(location: str, writer: object) -> None:
    """``writer`` closed: its key is no longer handed on."""
    entry = _KEYS_IN_USE.get(location)
    if entry is not None and entry[1] is writer:
        del _KEYS_IN_USE[location]


def key_keyed_since(location: str, recorded: str) -> ChainKey:
    """The key for a log that was keyed (key id ``recorded``) after a writer
    without a key opened it: the key this process keyed it with. Appending
    unkeyed records to a keyed chain would break it without a word, so
    without that key the append is refused."""
    entry = _KEYS_IN_USE.get(location)
    key = entry[0] if entry is not None else None
    if key is None or key.key_id != recorded:
        raise AuditError(
            f"the log's chain was keyed (key id {recorded}) after this writer opened it without a key: "
            "open it again with its key (make the ConsentStore after configure(audit_key=...), or set "
            "PURPOSEGUARD_AUDIT_KEY_FILE for every process)",
            path=location,
        )
    return key


def check_key(
    recorded: str | None, key: ChainKey | None, *, empty: bool, readonly: bool, location: str
) -> bool:
    """Does ``key`` fit the log whose recorded key id is ``recorded``? Raises
    :class:`AuditError` when not; True when the log is new and the key's id
    must be recorded now."""
    if recorded:
        if key is None:
            if readonly:
                return False  # readable (tail); verifying it needs the key
            raise AuditError(
                f"the audit log's chain is keyed (key id {recorded}): configure its key "
                "(audit_key=, PURPOSEGUARD_AUDIT_KEY or PURPOSEGUARD_AUDIT_KEY_FILE)",
                path=location,
            )
        if key.key_id != recorded:
            raise AuditError(
                f"wrong audit key: the log's chain is keyed with key id {recorded}, the key given has "
                f"id {key.key_id} (or the log was rewritten under another key)",
                path=location,
            )
        return False
    if key is None:
        return False
    if empty and not readonly:
        return True
    raise AuditError(
        "a key was given but the log's chain is not keyed (started without a key, or its key record "
        "was removed): a key applies to a new log",
        path=location,
    )


class Storage(Protocol):
    """What the audit log and the consent store need from a database."""

    location: str
    log_id: str
    # The key that links new records (None: the unkeyed SHA-256 chain), and
    # the key id the log records (None: an unkeyed log).
    key: ChainKey | None
    key_id: str | None

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

    def snapshot(self) -> contextlib.AbstractContextManager[tuple[Head, Iterator[StoredEntry]]]:
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


def grant_rows(grants: Iterable[Grant]) -> list[tuple[str, str, str, str, float, float | None]]:
    """The consent rows ``(tenant, purpose, category, granted_by, granted_at, expires_at)``."""
    return [(g.tenant, g.purpose, g.category, g.granted_by, g.granted_at, g.expires_at) for g in grants]


def revoke_grants(
    execute: Callable[[str, tuple[str, ...]], Any], revoke: Revoke, every: str, each: str
) -> None:
    """Carry out ``revoke`` in the current transaction, with the backend's
    ``DELETE`` statements: ``every`` takes (tenant, purpose), ``each`` also a
    category. Raises :class:`LookupError` when a grant to remove is not held."""
    if revoke.categories is None:
        cursor = execute(every, (revoke.tenant, revoke.purpose))
        if cursor.rowcount == 0:
            raise LookupError(f"tenant {revoke.tenant!r} has no consent to {revoke.purpose}")
        return
    for category in revoke.categories:
        cursor = execute(each, (revoke.tenant, revoke.purpose, category))
        if cursor.rowcount == 0:
            raise LookupError(f"tenant {revoke.tenant!r} has no consent to {revoke.purpose} for {category}")


def log_table_differs(location: str) -> None:
    # Once per storage (the caller keeps the flag): a table edited by hand
    # differs on every read until it is repaired.
    logger.error(
        "purposeguard consent store %s: the consent table differs from the chain's consent records "
        "(edited by hand?); deciding only on grants both hold (run `purposeguard audit verify`)",
        location,
    )


def replay_consents(
    entries: Iterable[StoredEntry],
    grants: dict[GrantKey, Grant],
    key: ChainKey | None = None,
    log_id: str = "",
) -> None:
    """Apply the chain's consent records, in order, to ``grants`` (by tenant,
    purpose, category): what the consent table must hold. A copy of another
    log's consent change grants nothing (see :func:`forwarded_from`).

    Raises :class:`AuditError` at a consent record whose hash does not match
    its content: skipping it could skip a revocation and bring back a
    withdrawn grant, so nothing past it is trusted."""
    for entry in entries:
        if entry.kind != "consent":
            continue
        if (
            link(entry.prev_hash, entry.seq, entry.kind, entry.timestamp, entry.data, key, log_id)
            != entry.hash
        ):
            raise AuditError(
                f"consent record {entry.seq} was altered or moved: its hash does not match its content"
            )
        apply_consent(entry, grants, log_id)


def apply_consent(entry: StoredEntry, grants: dict[GrantKey, Grant], log_id: str) -> None:
    """Apply one consent record, already proven by its hash, to ``grants``."""
    try:
        data = json.loads(entry.data)
        action, tenant, purpose = str(data["action"]), str(data["tenant"]), str(data["purpose"])
        categories = [str(c) for c in data.get("categories") or ()]
        expires = data.get("expires_at")
        expires_at = None if expires is None else float(expires)
        granted_at = float(data.get("timestamp") or entry.timestamp)
    except (ValueError, KeyError, TypeError, OverflowError):
        return  # written with the key, but no consent change this version reads
    if forwarded_from(data, log_id) is not None:
        return  # proven in the store's own log, whose table holds its grants
    if expires_at is not None and not math.isfinite(expires_at):
        return  # never an expiry that does not end (or compare)
    if action == "grant":
        for category in categories:
            grants[(tenant, purpose, category)] = Grant(
                tenant, purpose, category, str(data.get("actor", "")), granted_at, expires_at
            )
    elif action == "revoke":
        for held in [k for k in grants if k[0] == tenant and k[1] == purpose]:
            if not categories or held[2] in categories:
                del grants[held]


class ConsentReplay:
    """The grants a log's consent records make, kept current by walking every
    record appended since the last walk, in order: what a consent store
    decides on.

    Every record is checked, not only consent records: a revocation whose
    kind or content was changed, or that was deleted, would otherwise vanish
    from the view and bring its grant back (with the table row restored by
    hand, nothing else would tell). A record out of place, altered, or
    missing makes the view unusable for good (:attr:`broken`; a new store
    reads the repaired log); the recorded end is checked on every walk, so
    records cut off the tail are missed no more than ``audit verify`` misses
    them. Each record is hashed once per replay object, so the first walk
    costs what verifying the log costs.
    """

    __slots__ = ("broken", "grants", "hash", "key", "key_id", "location", "log_id", "seq")

    def __init__(self, key: ChainKey | None, key_id: str | None, log_id: str, location: str) -> None:
        self.key = key
        self.key_id = key_id
        self.log_id = log_id
        self.location = location
        self.grants: dict[GrantKey, Grant] = {}
        self.seq = 0
        self.hash = GENESIS
        self.broken: str | None = None

    def _fail(self, problem: str) -> AuditError:
        self.broken = (
            f"its consent records cannot be trusted: {problem}; no consent applies "
            "(run `purposeguard audit verify`)"
        )
        return AuditError(self.broken, path=self.location)

    def feed(self, entries: Iterable[StoredEntry]) -> None:
        """Walk ``entries``, the records after :attr:`seq` in order; raises
        :class:`AuditError` at the first one that does not fit."""
        if self.broken is not None:
            raise AuditError(self.broken, path=self.location)
        if self.key_id and self.key is None:
            raise AuditError(
                f"the chain is keyed (key id {self.key_id}): its consents are proven only with its key",
                path=self.location,
            )
        key, log_id = self.key, self.log_id
        for entry in entries:
            expected = self.seq + 1
            if entry.seq != expected:
                if entry.seq > expected:
                    missing = f"{expected}" if entry.seq == expected + 1 else f"{expected}-{entry.seq - 1}"
                    raise self._fail(f"record {missing} is missing (deleted)")
                raise self._fail(f"record {entry.seq} is out of place")
            if entry.prev_hash != self.hash:
                raise self._fail(f"record {entry.seq} does not follow record {self.seq}")
            if (
                link(entry.prev_hash, entry.seq, entry.kind, entry.timestamp, entry.data, key, log_id)
                != entry.hash
            ):
                raise self._fail(
                    f"record {entry.seq} was altered or moved: its hash does not match its content"
                )
            if entry.kind == "consent":
                apply_consent(entry, self.grants, log_id)
            self.seq, self.hash = entry.seq, entry.hash

    def check_end(
        self,
        head: Head | tuple[int, str],
        checkpoint: Checkpoint | None = None,
        *,
        needs_checkpoint: bool = False,
    ) -> None:
        """Does the walk end where the log's recorded end (read in the same
        snapshot) and, for a keyed file, its signed checkpoint (read before
        the snapshot) say it ends? Raises :class:`AuditError` when not; it is
        checked again on the next walk (a checkpoint may be being written)."""
        problem = self._end_problem(head, checkpoint, needs_checkpoint)
        if problem is not None:
            raise AuditError(
                f"its consent records cannot be trusted: {problem}; no consent applies "
                "(run `purposeguard audit verify`)",
                path=self.location,
            )

    def _end_problem(
        self, head: Head | tuple[int, str], checkpoint: Checkpoint | None, needs_checkpoint: bool
    ) -> str | None:
        head_seq, head_hash = head[0], head[1]
        if head_seq > self.seq:
            return f"record {self.seq + 1} is missing (deleted): {head_seq} were written"
        if head_seq < self.seq:
            return f"record {head_seq + 1} was inserted after the recorded end"
        if head_hash != self.hash:
            return f"record {self.seq} was altered: it is not the recorded end"
        key = self.key
        if key is None:
            return None
        signature = head[2] if len(head) > 2 else None
        if (self.seq or signature is not None) and (
            not isinstance(signature, str) or not key.checks_head(self.log_id, head_seq, head_hash, signature)
        ):
            return f"records from {self.seq + 1} on were cut off: the recorded end is not signed with the key"
        if checkpoint is None:
            if needs_checkpoint and self.seq:
                return "its signed checkpoint file is missing"
            return None
        problem = checkpoint_problem(checkpoint, key, self.log_id)
        if problem is not None:
            return f"its checkpoint file {problem}"
        if checkpoint.seq > self.seq:
            return f"records {self.seq + 1}-{checkpoint.seq} are missing: a signed checkpoint says they were written"
        if checkpoint.seq == self.seq and checkpoint.hash != self.hash:
            return f"record {self.seq} is not the one the signed checkpoint names"
        return None


def forwarded_from(data: dict[str, Any], log_id: str) -> str | None:
    """The id of the log a consent record was copied from, or None when the
    record is this log's own consent change.

    A consent store appends each change to its own log, in the transaction
    that changes its consent table, with no ``audit_ref``; an audit sink on
    another log then receives the change with ``audit_ref`` set to
    ``"<store's log id>:<seq>"`` and keeps it as it is. Such a copy is shown
    like any consent record (report, ``audit tail``) but grants nothing in
    this log: its table never held that grant. A record whose reference is
    missing, malformed or names this very log counts as this log's own, so
    a real store's table is always checked against every change it made
    (and with a key, no one can add a reference to those records unnoticed)."""
    ref = data.get("audit_ref")
    if not isinstance(ref, str):
        return None
    origin, sep, _ = ref.partition(":")
    if not sep or not origin or origin == log_id:
        return None
    return origin


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
        if recorded.granted_by != grant.granted_by:
            return (
                f"the consent table's grant to {grant.tenant!r} of {grant.purpose} for {grant.category} "
                "names another grantor than its consent record (changed by hand?)"
            )
        if recorded.granted_at != grant.granted_at:
            return (
                f"the consent table's grant to {grant.tenant!r} of {grant.purpose} for {grant.category} "
                "was made at another time than its consent record says (changed by hand?)"
            )
    for key in sorted(set(chained) - seen):
        return (
            f"the consent table lacks the grant to {key[0]!r} of {key[1]} for {key[2]} "
            "that the chain records (removed by hand?)"
        )
    return None


def decide_on(table: Iterable[Grant], chained: dict[GrantKey, Grant]) -> tuple[list[Grant], bool]:
    """The grants to decide on: those the table holds that the chain's consent
    records also grant, never for longer than the record says, with who
    granted them and when as the record says; and whether the table differed
    (edited by hand). Every backend decides (and lists) with this.

    A row whose expiry is not a finite time (``Infinity``, ``-Infinity``,
    ``NaN`` or text written by hand) is refused, whatever the record says:
    no grant is ever made with one, and which end such a row meant cannot
    be told."""
    kept: list[Grant] = []
    rows = list(table)
    differs = len(rows) != len(chained)
    for grant in rows:
        recorded = chained.get((grant.tenant, grant.purpose, grant.category))
        if recorded is None:
            differs = True
            continue
        expiry: object = grant.expires_at
        if expiry is not None and (
            not isinstance(expiry, (int, float)) or isinstance(expiry, bool) or not math.isfinite(expiry)
        ):
            differs = True  # text written by hand into the column is no time either
            continue
        if (recorded.granted_by, recorded.granted_at, recorded.expires_at) != (
            grant.granted_by,
            grant.granted_at,
            grant.expires_at,
        ):
            differs = True
            # Who granted it and when are the record's (the table's are not
            # proven); the earlier expiry of the two: never longer than the
            # record says.
            ends = [e for e in (recorded.expires_at, grant.expires_at) if e is not None]
            grant = Grant(
                grant.tenant,
                grant.purpose,
                grant.category,
                recorded.granted_by,
                recorded.granted_at,
                min(ends) if ends else None,
            )
        kept.append(grant)
    return kept, differs


CHECKPOINT_FORMAT = "purposeguard-checkpoint"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement, kept outside the database: log ``log_id`` had
    ``seq`` records, the last one's hash ``hash``."""

    log_id: str
    seq: int
    hash: str
    mac: str


def checkpoint_problem(checkpoint: Checkpoint, key: ChainKey, log_id: str) -> str | None:
    """Why ``checkpoint`` (read from a keyed file's checkpoint file) cannot
    be trusted as this log's, to follow "the checkpoint file ..."; None
    when it can."""
    if key.checks_checkpoint(checkpoint.log_id, checkpoint.seq, checkpoint.hash, checkpoint.mac):
        if checkpoint.log_id != log_id:
            return f"is of log {checkpoint.log_id}, not of this log ({log_id}): the file was swapped"
        return None
    if key.checks_head(checkpoint.log_id, checkpoint.seq, checkpoint.hash, checkpoint.mac):
        # Before checkpoints were signed apart from the recorded end, both
        # were signed alike; accepting that here would let a recorded end
        # stand in for a checkpoint (and cut records off with it).
        return (
            "is signed like a recorded end: written by an older purposeguard (the log's next commit "
            "writes a new one) or a recorded end copied into it"
        )
    return "is not signed with the key (forged)"


# One lock per checkpoint file this process writes (each keyed log's one;
# a handful per process, never evicted): the audit sink's writer and a
# consent store on the same file read, compare and replace it in turn, so
# neither removes the other's file in progress nor puts back an older end.
_CHECKPOINT_LOCKS: dict[str, threading.Lock] = {}
_CHECKPOINT_LOCKS_GUARD = threading.Lock()
# The lock files' descriptors open now (one per checkpoint being written),
# so a forked child can let go of its copies; opened and closed under
# _FORK_GUARD, which a fork waits for: never one the child cannot see.
_HELD: set[int] = set()
_FORK_GUARD = threading.Lock()


def _let_go_in_child() -> None:
    # A child forked while one of the parent's threads wrote a checkpoint has
    # no such thread: its copy of the descriptor would keep the flock (shared
    # with the parent's) held until the child exits, stopping every writer of
    # the log, and its copy of the thread lock would stay locked. Closing the
    # copies releases nothing of the parent's.
    global _CHECKPOINT_LOCKS_GUARD, _FORK_GUARD
    for descriptor in _HELD:
        with contextlib.suppress(OSError):
            os.close(descriptor)
    _HELD.clear()
    _CHECKPOINT_LOCKS.clear()
    _CHECKPOINT_LOCKS_GUARD = threading.Lock()
    _FORK_GUARD = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=lambda: _FORK_GUARD.acquire(),
        after_in_parent=lambda: _FORK_GUARD.release(),
        after_in_child=_let_go_in_child,
    )


def checkpoint_lock(path: str) -> threading.Lock:
    """This process's lock on the checkpoint file at ``path`` (its threads
    only: :func:`checkpoint_guard` also keeps other processes out)."""
    key = os.path.abspath(path)
    with _CHECKPOINT_LOCKS_GUARD:
        lock = _CHECKPOINT_LOCKS.get(key)
        if lock is None:
            lock = _CHECKPOINT_LOCKS[key] = threading.Lock()
        return lock


def checkpoint_lock_path(path: str) -> str:
    """The file beside the checkpoint file at ``path`` whose advisory lock
    writers in every process take: the checkpoint file itself is replaced
    by a rename, so a lock on it would be a lock on a file already gone."""
    return path + ".lock"


@contextlib.contextmanager
def checkpoint_guard(path: str) -> Iterator[None]:
    """Held while reading the checkpoint file at ``path``, comparing and
    replacing it: this process's lock for its threads, then an exclusive
    advisory lock (``flock``) on :func:`checkpoint_lock_path` for other
    processes, so two writers never both find an older end and the later
    rename put back the older of theirs. Raises ``OSError`` when the lock
    file cannot be opened (the checkpoint could not be written either)."""
    with checkpoint_lock(path):
        if sys.platform == "win32":  # no flock: the processes' race stays (docs/storage.md)
            yield
            return
        import fcntl

        # Opened afresh each time, never kept: a descriptor inherited by a
        # forked child would share its lock, and the lock would then keep no
        # one out. Read-only is enough for flock, so a lock file another
        # user created (readable) still serves; never through a link, and
        # without blocking on a FIFO put in its place.
        with _FORK_GUARD:
            descriptor = os.open(
                checkpoint_lock_path(path),
                os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW,
                0o666,
            )
            _HELD.add(descriptor)
        try:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                raise OSError(
                    errno.EINVAL, f"its lock file {checkpoint_lock_path(path)} is not a regular file"
                )
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            with _FORK_GUARD:
                _HELD.discard(descriptor)
                os.close(descriptor)  # releases the lock


def write_checkpoint(path: str, key: ChainKey, log_id: str, seq: int, head_hash: str) -> None:
    """Replace the checkpoint file at ``path`` (written whole, then renamed:
    a crash leaves the old one or the new one, never half of either). Hold
    :func:`checkpoint_guard` around reading the current one and this."""
    text = json.dumps(
        {
            "format": CHECKPOINT_FORMAT,
            "log_id": log_id,
            "seq": seq,
            "hash": head_hash,
            "mac": key.sign_checkpoint(log_id, seq, head_hash),
        },
        sort_keys=True,
    )
    # Named for this process and thread: no other writer's file in progress.
    temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)  # whatever was left there (a FIFO would block the open)
    try:
        # Created afresh: never opened through a link or a FIFO put in its place.
        descriptor = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666
        )
        with open(descriptor, "w", encoding="ascii") as file:
            file.write(text + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_checkpoint(path: str) -> Checkpoint | None:
    """The checkpoint file at ``path``; None when there is none. A damaged
    one raises :class:`AuditError`."""
    try:
        # Never a wait: the application's writer reads it before each checkpoint.
        raw = read_regular(path, 4096)
    except FileNotFoundError:
        return None
    except TooLarge:
        raise AuditError(f"the checkpoint file {path} is damaged (not a purposeguard checkpoint)") from None
    except OSError as error:
        raise AuditError(f"cannot read the checkpoint file {path}: {error.strerror or error}") from None
    try:
        data = json.loads(raw.decode("ascii"))
        if data.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("format")
        checkpoint = Checkpoint(str(data["log_id"]), int(data["seq"]), str(data["hash"]), str(data["mac"]))
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise AuditError(f"the checkpoint file {path} is damaged (not a purposeguard checkpoint)") from None
    # Seq 0 is the empty chain's, written when a keyed log is created.
    if checkpoint.seq < 0 or (checkpoint.seq == 0 and checkpoint.hash != GENESIS):
        raise AuditError(f"the checkpoint file {path} is damaged (not a purposeguard checkpoint)")
    return checkpoint
