"""The tamper-evident audit log, and the sink that feeds it.

Every record the runtime produces (violations, declassifications, consent
changes, disclosures) can be kept in an append-only log where each entry
holds the hash of the one before it::

    log = AuditLog("audit.db")          # SQLite, WAL mode; ":memory:" for tests
    seq = log.append(violation)         # stores violation.to_dict() as JSON
    assert log.verify().ok              # or: purposeguard audit verify audit.db

    pg.configure("trust-center", audit="audit.db")   # every record, off the hot path

Entries hold what records hold: categories, purposes, rules, names. A record
field that carries a labelled value is refused, so the log never keeps what
the policy protects.

What the chain proves, and what it does not. Without a key the hashes are
plain SHA-256: altering, deleting, inserting or reordering records is found,
but someone who can write the file can also rewrite the whole chain from
the altered record on (or replace the file) and it verifies again; it
proves integrity against accidents only. With a key
(``configure(audit_key=...)``, ``AuditLog(path, key=...)``, or the
``PURPOSEGUARD_AUDIT_KEY`` / ``PURPOSEGUARD_AUDIT_KEY_FILE`` environment
variables) every link is an HMAC-SHA256 that also binds the log's id, and
the recorded end of the chain is signed at every commit: without the key
no record can be altered, inserted, removed, reordered or cut off the tail,
and no chain rewritten, without ``verify`` naming the first bad record.
Either way, keep the head that ``verify`` reports (``VerifyResult.head``)
somewhere the writer of the log cannot change and pass it back
(``verify(anchor=...)``, ``--anchor``): that also catches the log being
rolled back to an older copy of itself.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import SinkFailure
from ._labels import LabelledProxy, box_kind
from ._records import Record
from ._runtime import get_guard, on_record
from ._state import on_reset, remember
from ._storage import (
    GENESIS,
    AuditError,
    ChainKey,
    Head,
    Pending,
    Storage,
    StoredEntry,
    checkpoint_problem,
    in_memory,
    is_url,
    link,
    load_key_file,
    open_storage,
    read_checkpoint,
    sqlite_path,
)

__all__ = [
    "AuditEntry",
    "AuditError",
    "AuditLog",
    "AuditSink",
    "VerifyResult",
    "attach",
    "attached",
    "detach",
    "set_key",
]

logger = logging.getLogger("purposeguard.audit")

# Records that must be on disk before the code that produced them goes on:
# a consent change or a disclosure that cannot be proven must not happen.
SYNCHRONOUS_KINDS = frozenset({"consent", "disclosure"})


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry of the log: its position, kind, time and the record's fields."""

    seq: int
    kind: str
    timestamp: float
    data: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "kind": self.kind,
            "timestamp": self.timestamp,
            "data": self.data,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of :meth:`AuditLog.verify`.

    ``first_bad`` is the seq of the first record that is altered, missing,
    inserted or out of place (None when ``ok``); ``reason`` says which.
    ``head`` is the hash of the last record of an intact log (the genesis
    hash of an empty one): stored elsewhere, it exposes a rewritten file.
    """

    ok: bool
    count: int
    first_bad: int | None = None
    reason: str = ""
    head: str | None = None
    # True when the chain was checked with its key (proof against tampering,
    # not only accidents).
    keyed: bool = False

    def __bool__(self) -> bool:
        return self.ok


_PLAIN = frozenset({str, int, float, bool, type(None)})


# Containers within containers a record may hold: far past any record
# purposeguard writes, and well within the recursion its writers (and the
# JSON encoder) need, whatever the caller's stack depth.
_DEEPEST = 64


def _too_deep() -> AuditError:
    # Names no field: a caller's keys may be anything.
    return AuditError(
        f"cannot audit a record nested more than {_DEEPEST} containers deep (or holding itself): "
        "audit records hold names, flat"
    )


def _refuse_values(data: Any, where: str, depth: int = 0) -> None:
    # A labelled str/bytes or proxy is a protected value, whatever field it sits in.
    if type(data) in _PLAIN:
        return
    if (
        getattr(type(data), "_pg_kind", None) is not None
        or isinstance(data, LabelledProxy)
        or box_kind(data) is not None
    ):
        raise AuditError(
            f"refusing to store a labelled value in field {where!r}: audit records hold names, never values"
        )
    # Plain members are checked inline: this runs for every record the sink writes.
    if isinstance(data, Mapping):
        if depth >= _DEEPEST:
            raise _too_deep()
        for key, value in data.items():
            if type(value) not in _PLAIN:
                _refuse_values(value, f"{where}.{key}" if where else str(key), depth + 1)
    elif isinstance(data, (list, tuple)):
        if depth >= _DEEPEST:
            raise _too_deep()
        for index, value in enumerate(data):
            if type(value) not in _PLAIN:
                _refuse_values(value, f"{where}[{index}]", depth + 1)


# Record type -> its field names, for records that keep Record.to_dict: the
# writer builds the same dict without dataclasses.asdict's deep copy (~10x).
_FIELDS: dict[type, tuple[str, ...]] = {}


def _record_dict(record: Any) -> dict[str, Any]:
    t = type(record)
    names = _FIELDS.get(t)
    if names is None:
        if getattr(t, "to_dict", None) is not Record.to_dict or not dataclasses.is_dataclass(t):
            return record.to_dict()  # type: ignore[no-any-return]
        names = tuple(f.name for f in dataclasses.fields(t))
        remember(_FIELDS, t, names)
    return {name: getattr(record, name) for name in names}


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


def _escaped(value: Any, where: str, found: list[str]) -> Any:
    """``value`` with what JSON text in UTF-8 cannot hold faithfully made
    plain: a lone surrogate as its ``\\udcxx`` escape, a non-finite number
    as its name, any other object as its type's name (never its repr, which
    could hold anything). ``found`` collects where."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            found.append(where or "(record)")
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        found.append(where or "(record)")
        return repr(value)  # 'nan', 'inf', '-inf': a name, never a number
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value.bit_length() <= _LONGEST_INT_BITS:
            return value
        # Past what Python turns into text by default (4,300 digits): its size, never its digits.
        found.append(where or "(record)")
        return f"<int of {value.bit_length()} bits>"
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            name = _escaped(str(key), f"{where}.{key}" if where else str(key), found)
            out[name] = _escaped(item, f"{where}.{name}" if where else name, found)
        return out
    if isinstance(value, (list, tuple)):
        return [_escaped(item, f"{where}[{i}]", found) for i, item in enumerate(value)]
    found.append(where or "(record)")
    return f"<{type(value).__name__}>"


# Integers longer than this are escaped: well within the digits Python
# converts to text by default.
_LONGEST_INT_BITS = 4096

# One encoder for every record: json.dumps with options builds a new one per call.
_JSON = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_not_json
)


def encode(record: Record | Mapping[str, Any]) -> Pending:
    """The entry to append for ``record``: its kind, time and JSON fields."""
    if isinstance(record, Mapping):
        data = dict(record)
        kind = data.get("kind")
    elif hasattr(record, "to_dict"):
        data = _record_dict(record)
        kind = getattr(record, "kind", None)
    else:
        raise AuditError(f"cannot audit a {type(record).__name__}: expected a purposeguard record")
    if not isinstance(kind, str) or not kind:
        raise AuditError("an audit record needs a kind")
    try:
        return _encoded(kind, data)
    except RecursionError:
        # Called with most of the stack already used: the library's error, never Python's.
        raise _too_deep() from None


def _encoded(kind: str, data: dict[str, Any]) -> Pending:
    _refuse_values(data, "")
    data["kind"] = kind
    stamp = data.get("timestamp")
    try:
        timestamp = (
            float(stamp) if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) else time.time()
        )
    except OverflowError:
        timestamp = math.inf  # an int past any float: handled as a non-finite time
    if not math.isfinite(timestamp):
        timestamp = time.time()  # the entry's own time; the record's stays in its fields, escaped
    try:
        text = _JSON.encode(data)
        # Lone surrogates pass JSON but not UTF-8: found here, not in the
        # database's driver, where they would fail the whole batch.
        text.encode("utf-8")
    except (TypeError, ValueError):
        # Escaped, kept and flagged: a record is never lost for what it holds.
        found: list[str] = []
        data = _escaped(data, "", found)
        data["escaped"] = found
        text = _JSON.encode(data)
    return Pending(kind, timestamp, text)


class _KeySetting:
    __slots__ = ("key",)

    def __init__(self) -> None:
        self.key: ChainKey | None = None


_KEY = _KeySetting()

KeyLike = str | bytes | Path | ChainKey


def as_key(key: KeyLike) -> ChainKey:
    """``key`` as a :class:`ChainKey`: text or bytes are the key itself, a
    :class:`~pathlib.Path` names a key file."""
    if isinstance(key, ChainKey):
        return key
    if isinstance(key, Path):
        return load_key_file(str(key))
    return ChainKey(key)


def set_key(key: KeyLike | None) -> None:
    """The key every audit log opened from now on keys its chain with
    (``configure(audit_key=...)``); None falls back to the environment."""
    _KEY.key = None if key is None else as_key(key)


def default_key() -> ChainKey | None:
    """The configured key, else ``PURPOSEGUARD_AUDIT_KEY``, else the file
    ``PURPOSEGUARD_AUDIT_KEY_FILE`` names; None when none is set."""
    if _KEY.key is not None:
        return _KEY.key
    text = os.environ.get("PURPOSEGUARD_AUDIT_KEY")
    if text:
        try:
            return ChainKey(text)
        except AuditError as error:
            raise AuditError(f"PURPOSEGUARD_AUDIT_KEY: {error}") from None
    file = os.environ.get("PURPOSEGUARD_AUDIT_KEY_FILE")
    if file:
        return load_key_file(file)
    return None


def _as_entry(stored: StoredEntry) -> AuditEntry:
    try:
        data = json.loads(stored.data)
    except (ValueError, RecursionError):
        # purposeguard writes only JSON it can read back: text that is not,
        # or is nested past what the reader takes, was put there by hand.
        # Shown as such (the chain's check names it too), never a crash of
        # whoever reads the log.
        data = {"unreadable": f"record {stored.seq} was altered: its data is not readable JSON"}
    if not isinstance(data, dict):
        data = {"value": data}
    return AuditEntry(stored.seq, stored.kind, stored.timestamp, data, stored.prev_hash, stored.hash)


class AuditLog:
    """An append-only, hash-chained log of records, on SQLite by default.

    ``key`` keys the chain (HMAC-SHA256; text or bytes of at least 32
    bytes, a :class:`~pathlib.Path` of a key file, or a :class:`ChainKey`);
    by default the configured key or the environment's, if any. A log
    started with a key needs that key to be written to or verified; a log
    started without one cannot take one later. A keyed SQLite file also
    signs its end into ``PATH-checkpoint`` (at every consent change, every
    ``checkpoint_every`` records, default 256, and at close): keep and copy
    it with the file.

    ``path`` is a file (created when missing, unless ``create=False``),
    ``":memory:"``, or a URL: ``sqlite:///PATH`` or ``postgresql://...``
    (``pip install 'purposeguard[postgres]'``; many replicas share one
    chain). Several threads may share one log and several processes may each
    open the same file or database. Storage that is not an audit log
    (another database, a damaged one, another schema version) raises
    :class:`AuditError` and is left untouched. ``storage_options`` go to
    the backend: for PostgreSQL ``connect_timeout`` (seconds, default 5),
    ``stale_after`` (how long a replica's consent view may go unconfirmed,
    default 1 s) and ``heartbeat`` (default 0.2 s). ``storage=`` takes any
    :class:`purposeguard._storage.Storage` instead.

    >>> log = AuditLog(":memory:")
    >>> log.append({"kind": "note", "text": "hello"})
    1
    >>> log.verify().ok
    True
    """

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        create: bool = True,
        readonly: bool = False,
        synchronous: str = "full",
        max_bytes: int | None = None,
        storage: Storage | None = None,
        key: KeyLike | None = None,
        checkpoint_every: int | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        if storage is None:
            if not isinstance(path, (str, Path)) or not str(path):
                raise AuditError(f"an audit log needs a file path, a URL or ':memory:', not {path!r}")
            chain_key = default_key() if key is None else as_key(key)
            # SQLite only: how often a keyed log signs its end into its checkpoint file.
            options = {} if checkpoint_every is None else {"checkpoint_every": checkpoint_every}
            storage = open_storage(
                path,
                create=create,
                readonly=readonly,
                synchronous=synchronous,
                max_bytes=max_bytes,
                key=chain_key,
                **options,
                **dict(storage_options or {}),
            )
            # What opens the same log again (a forked worker); path may be redacted.
            self.target: str | Path = path
        else:
            self.target = storage.location
        self.storage = storage
        self.path = storage.location
        self.log_id = storage.log_id
        self.closed = False

    @property
    def keyed(self) -> bool:
        """Is the chain keyed (whether or not this log holds the key)?"""
        return bool(self.storage.key_id)

    def __repr__(self) -> str:
        return f"<AuditLog {self.path!r}>"

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, record: Record | Mapping[str, Any]) -> int:
        """Append one record (stored as ``record.to_dict()``); returns its seq once it is committed."""
        return self.append_many([record])[0]

    def append_many(self, records: Sequence[Record | Mapping[str, Any]]) -> list[int]:
        """Append records in one transaction: all of them or none."""
        return self.storage.append([encode(r) for r in records])

    def records(self, start: int = 1) -> Iterator[AuditEntry]:
        """Every entry from seq ``start`` on, in order."""
        for stored in self.storage.entries(start):
            yield _as_entry(stored)

    def tail(self, n: int = 10) -> list[AuditEntry]:
        """The last ``n`` entries, oldest first."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise AuditError(f"tail takes a number of entries (0 or more), not {n!r}")
        return [_as_entry(s) for s in self.storage.last(n)] if n else []

    def __len__(self) -> int:
        return self.storage.head()[0]

    def verify(self, *, anchor: str | None = None) -> VerifyResult:
        """Walk the chain: every record present, in place, unaltered, up to the recorded end.

        The walk and the recorded end are read as of one moment, so records
        other threads or processes append meanwhile are neither missed nor
        taken for deleted ones. ``VerifyResult.head`` is the hash of the last
        record: keep it elsewhere and pass it back as ``anchor`` later, and
        a rewrite of the whole chain (which an unkeyed hash chain cannot
        reveal by itself) that lost or changed that record fails.

        The consent table must then hold exactly the grants the log's own
        consent records make (those a consent store wrote with its changes).
        Copies of another store's changes, which an attached sink keeps
        with their ``audit_ref``, make none: the log that only receives
        them verifies with its table empty, and the store's own log is the
        one that proves its grants.
        """
        if anchor is not None and (not isinstance(anchor, str) or len(anchor) != 64):
            raise AuditError(f"an anchor is a head hash (64 hex digits), not {anchor!r}")
        storage = self.storage
        if storage.key_id and storage.key is None:
            return VerifyResult(
                False,
                0,
                None,
                f"the chain is keyed (key id {storage.key_id}): verifying it needs its key",
            )
        # Read before the snapshot: a checkpoint is written after its commit,
        # so the snapshot holds every record it names.
        key = storage.key
        checkpoint_path = getattr(storage, "checkpoint_path", None) if key is not None else None
        must_hold: tuple[int, str] | None = None
        if key is not None and checkpoint_path is not None:
            try:
                checkpoint = read_checkpoint(checkpoint_path)
            except AuditError as error:
                return VerifyResult(False, 0, None, error.reason)
            if checkpoint is not None:
                problem = checkpoint_problem(checkpoint, key, self.log_id)
                if problem is not None:
                    return VerifyResult(False, 0, None, f"the checkpoint file {checkpoint_path} {problem}")
                must_hold = (checkpoint.seq, checkpoint.hash)
        with storage.snapshot() as (head, stored):
            result = _verify_chain(
                stored, head, anchor.lower() if anchor else None, storage.key, self.log_id, must_hold
            )
        if result.ok and checkpoint_path is not None and must_hold is None and result.count:
            return VerifyResult(
                False,
                result.count,
                None,
                f"the signed checkpoint file {checkpoint_path} is missing (deleted, or the log copied "
                "without it): records lost from its write-ahead log could not be detected",
            )
        return self._and_consents(result)

    def _and_consents(self, result: VerifyResult) -> VerifyResult:
        """``result``, unless the chain holds and the consent table does not
        hold exactly the grants its records make (a row that cannot be read
        raises :class:`AuditError`)."""
        if result.ok:
            # The grants decisions use must be the ones the chain records.
            mismatch = self.storage.consent_mismatch()
            if mismatch is not None:
                return VerifyResult(False, result.count, None, mismatch)
        return result

    def verified_records(self) -> tuple[list[AuditEntry], VerifyResult]:
        """Every entry and the chain's verification, read as of one moment:
        what a report shows is what was verified. Entries after the first
        bad one are returned too (the result says where the chain breaks).
        The consent table is checked against the records as :meth:`verify`
        checks it; one that cannot be read raises :class:`AuditError`."""
        kept: list[StoredEntry] = []
        if self.storage.key_id and self.storage.key is None:
            # Readable, but only its key can prove it.
            entries = [_as_entry(s) for s in self.storage.entries()]
            reason = f"the chain is keyed (key id {self.storage.key_id}): verifying it needs its key"
            return entries, VerifyResult(False, len(entries), None, reason)
        with self.storage.snapshot() as (head, stored):

            def collect() -> Iterator[StoredEntry]:
                for entry in stored:
                    kept.append(entry)
                    yield entry

            result = _verify_chain(collect(), head, None, self.storage.key, self.log_id)
            kept.extend(stored)  # the rest, when the walk stopped early
        return [_as_entry(s) for s in kept], self._and_consents(result)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.storage.close()


def _verify_chain(
    stored: Iterable[StoredEntry],
    head: Head | tuple[int, str],
    anchor: str | None,
    key: ChainKey | None = None,
    log_id: str = "",
    must_hold: tuple[int, str] | None = None,
) -> VerifyResult:
    expected = 1
    prev = GENESIS
    # hash -> seq of every good record, to tell an insertion from an alteration.
    seen: dict[str, int] = {GENESIS: 0}
    for entry in stored:
        if entry.seq > expected:
            missing = f"{expected}" if entry.seq == expected + 1 else f"{expected}-{entry.seq - 1}"
            return VerifyResult(False, expected - 1, expected, f"record {missing} is missing (deleted)")
        own = link(entry.prev_hash, entry.seq, entry.kind, entry.timestamp, entry.data, key, log_id)
        follows = seen.get(entry.prev_hash)
        if entry.prev_hash != prev and follows is not None and follows < expected - 1:
            first = follows + 1
            return VerifyResult(
                False,
                expected - 1,
                first,
                f"record {first} was inserted or moved: record {entry.seq}'s content "
                f"follows record {follows}",
            )
        if own != entry.hash:
            return VerifyResult(
                False,
                expected - 1,
                entry.seq,
                f"record {entry.seq} was altered or moved: its hash does not match its content",
            )
        if entry.prev_hash != prev:
            if entry.seq == 1:
                return VerifyResult(False, 0, 1, "record 1 does not start the chain")
            return VerifyResult(
                False,
                expected - 1,
                entry.seq - 1,
                f"record {entry.seq - 1} was altered: record {entry.seq} does not follow it",
            )
        if not math.isfinite(entry.timestamp):
            # purposeguard writes the entry's own time when a record's is not
            # a number: such a time was written by hand (with the hash made
            # to match), and a report could not place the record.
            return VerifyResult(
                False,
                expected - 1,
                entry.seq,
                f"record {entry.seq} was altered: its time is not a finite number (written by hand?)",
            )
        seen[entry.hash] = entry.seq
        prev = entry.hash
        expected += 1
    count = expected - 1
    head_seq, head_hash = head[0], head[1]
    if head_seq > count:
        return VerifyResult(
            False,
            count,
            count + 1,
            f"record {count + 1} is missing (deleted): the log ends at record {count} "
            f"but {head_seq} were written",
        )
    if head_seq < count:
        return VerifyResult(
            False, count, head_seq + 1, f"record {head_seq + 1} was inserted after the recorded end"
        )
    if head_hash != prev:
        return VerifyResult(False, count, count, f"record {count} was altered: it is not the recorded end")
    if key is not None:
        signature = head[2] if len(head) > 2 else None
        if (count or signature is not None) and (
            not isinstance(signature, str) or not key.checks_head(log_id, head_seq, head_hash, signature)
        ):
            return VerifyResult(
                False,
                count,
                count + 1,
                f"records from {count + 1} on were cut off: the recorded end (record {count}) "
                "is not signed with the key",
            )
    if must_hold is not None:
        held_seq, held_hash = must_hold
        if held_seq > count:
            missing = f"{count + 1}" if held_seq == count + 1 else f"{count + 1}-{held_seq}"
            return VerifyResult(
                False,
                count,
                count + 1,
                f"records {missing} are missing: the chain ends at record {count} but a signed checkpoint "
                f"says {held_seq} were written (a corrupted or truncated write-ahead log, or an older copy "
                "of the file)",
            )
        if seen.get(held_hash) != held_seq:
            return VerifyResult(
                False,
                count,
                held_seq,
                f"record {held_seq} is not the one the signed checkpoint names: the log was rewritten or replaced",
            )
    if anchor is not None and anchor not in seen:
        return VerifyResult(
            False,
            count,
            None,
            f"the anchor {anchor[:12]}... is not in the chain: the log was rewritten or replaced",
        )
    return VerifyResult(True, count, head=prev, keyed=key is not None)


# -- the sink --------------------------------------------------------------------


class AuditGap(Record):
    """Records the sink had to drop while the log could not keep them and its
    buffer was full: written in their place once the log is back, so the
    chain says how many are missing and when."""

    __slots__ = ("dropped", "first", "last", "reason")

    def __init__(self, first: float, reason: str) -> None:
        self.dropped = 0
        self.first = first
        self.last = first
        self.reason = reason

    @property
    def kind(self) -> str:
        return "audit.gap"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dropped": self.dropped,
            "first_dropped_at": self.first,
            "last_dropped_at": self.last,
            "reason": self.reason,
            "timestamp": self.last,
        }


DURABILITY = ("batch", "sync")


class AuditSink:
    """Writes records to an :class:`AuditLog` off the caller's thread, in batches.

    A handler for :func:`purposeguard.on_record`: calling it appends the record
    to an in-memory queue (no I/O) that a writer thread commits every
    ``interval`` seconds or every ``batch_size`` records. Consent changes and
    disclosures are written before the call returns.

    ``durability`` says what a killed process may lose: ``"batch"`` (the
    default) loses at most the records queued since the last commit (about
    ``interval`` seconds' worth); ``"sync"`` commits every record before the
    call returns, so a record the caller saw handed over is never lost, at
    the cost of one commit per record on the caller's thread. The
    ``PURPOSEGUARD_AUDIT_DURABILITY`` environment variable sets the default.

    When the log cannot keep records (a full disk, a read-only file, a
    database that is down), the writer logs the failure once, keeps the
    records and retries, and logs once more when it writes them again, in
    order; until then every enforce-mode record handed to the sink raises
    :class:`purposeguard.SinkFailure`, which the runtime turns into
    a denial (fail closed), while trace-mode records wait in the queue. The
    queue holds at most ``max_pending`` records: while the log is down, a
    record beyond that is dropped and counted in an ``audit.gap`` record
    written in its place when the log is back (``dropped`` counts them
    too). While the log works, a full queue makes the caller write a batch
    itself rather than drop any. ``written`` counts the records committed,
    not those skipped as impossible to store.
    """

    def __init__(
        self,
        log: AuditLog,
        *,
        batch_size: int = 512,
        interval: float = 0.05,
        max_pending: int = 100_000,
        owns_log: bool = False,
        durability: str | None = None,
    ) -> None:
        if durability is None:
            durability = os.environ.get("PURPOSEGUARD_AUDIT_DURABILITY", "").strip().lower() or "batch"
        if durability not in DURABILITY:
            raise AuditError(f"unknown durability {durability!r} (expected batch or sync)")
        if not isinstance(max_pending, int) or max_pending < 1:
            raise AuditError("max_pending must be a positive number of records")
        self.log = log
        self.batch_size = batch_size
        self.interval = interval
        self.max_pending = max_pending
        self.owns_log = owns_log
        self.durability = durability
        self.error: AuditError | None = None
        self.written = 0
        self.dropped = 0
        # The files opening its log from a new path created (see sink_for):
        # what abandon() removes again.
        self._created: tuple[str, ...] = ()
        self._pending: collections.deque[Record] = collections.deque()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="purposeguard-audit", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<AuditSink {self.log.path!r} pending={len(self._pending)}>"

    def __call__(self, record: Record) -> None:
        ref = getattr(record, "audit_ref", None)
        if isinstance(ref, str) and ref.partition(":")[0] == self.log.log_id:
            return  # already appended to this very log by its producer
        # Otherwise written with its audit_ref: a consent change copied from
        # another log backs no grant here, and verify does not ask this
        # log's consent table for it (_storage.base.forwarded_from).
        if getattr(record, "kind", None) in SYNCHRONOUS_KINDS:
            self._write_now(record)
            return
        error = self.error
        if self.durability == "sync" and error is None:
            try:
                self._write_now(record)
                return
            except SinkFailure:
                if _must_keep(record):
                    raise
                error = self.error  # a trace record: buffered below
        pending = len(self._pending)
        if error is not None and pending >= self.max_pending:
            self._drop(record, error)
        else:
            self._pending.append(record)
            pending += 1
        if error is not None and _must_keep(record):
            # Kept for the retry; only a record enforce mode must keep fails
            # the caller. The rest were reported once for this episode, not
            # once per record while the disk stays full.
            raise SinkFailure(f"audit log {self.log.path} cannot keep records: {error.reason}")
        if pending >= self.batch_size:
            self._wake.set()
            if pending >= self.max_pending and error is None:
                self._drain()  # back-pressure on the producer, not a lost record

    def _drop(self, record: Record, error: AuditError) -> None:
        now = time.time()
        pending = self._pending
        gap = pending[-1] if pending else None
        if not isinstance(gap, AuditGap):
            gap = AuditGap(now, error.reason)
            pending.append(gap)
            logger.error(
                "purposeguard audit log %s: %d records buffered, dropping further records "
                "(counted in an audit.gap record) until it recovers",
                self.log.path,
                self.max_pending,
            )
        gap.dropped += 1
        gap.last = now
        self.dropped += 1

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        """Write everything queued so far; raises :class:`AuditError` if the log cannot keep it."""
        self._drain()
        if self._pending and self.error is not None:
            raise self.error

    def close(self) -> None:
        """Stop the writer after a last flush (failures are logged), and close an owned log."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=10)
        try:
            self._drain()
        finally:
            if self._pending:
                logger.error(
                    "purposeguard audit log %s: %d records could not be written before closing (%s)",
                    self.log.path,
                    len(self._pending),
                    self.error.reason if self.error else "unknown error",
                )
            if self.owns_log:
                self.log.close()

    # -- writing ----------------------------------------------------------------

    def _write_now(self, record: Record) -> None:
        try:
            item = encode(record)
        except AuditError as error:
            # This record cannot be stored anywhere; the log itself is fine.
            raise SinkFailure(
                f"audit log {self.log.path} cannot keep a {record.kind} record: {error}"
            ) from None
        with self._write_lock:
            self._drain_locked()
            if self._pending and self.error is not None:
                # Never ahead of records queued before it: the chain keeps their order.
                raise SinkFailure(f"audit log {self.log.path} cannot keep records: {self.error.reason}")
            try:
                self.log.storage.append([item])
            except AuditError as error:
                self._failed(error)
                raise SinkFailure(f"audit log {self.log.path} cannot keep records: {error.reason}") from None
            self.written += 1
            self._recovered()

    def _recovered(self) -> None:
        if self.error is not None:
            logger.warning("purposeguard audit log %s: writing again", self.log.path)
            self.error = None

    def _drain(self) -> None:
        with self._write_lock:
            self._drain_locked()

    def _drain_locked(self) -> None:
        pending = self._pending
        while pending:
            batch: list[Record] = []
            while pending and len(batch) < self.batch_size:
                batch.append(pending.popleft())
            kept: list[Record] = []
            items: list[Pending] = []
            for record in batch:
                try:
                    items.append(encode(record))
                    kept.append(record)
                except AuditError as error:
                    # Only a labelled value (or no kind at all) gets here: what
                    # the log must never hold. Everything else is escaped.
                    logger.error(
                        "purposeguard audit: skipping a %s record: %s", getattr(record, "kind", "?"), error
                    )
            done, failure = self._append_pieces(items)
            self.written += done
            if failure is not None:
                pending.extendleft(reversed(kept[done:]))
                self._failed(failure)
                return
            self._recovered()

    def _append_pieces(self, items: list[Pending]) -> tuple[int, AuditError | None]:
        """Append ``items`` in order; when the batch fails, in smaller pieces
        (a nearly full disk may still take them). How many were written, and
        the error that stopped the rest."""
        storage = self.log.storage
        done = 0
        size = len(items)
        while done < len(items):
            piece = items[done : done + size]
            try:
                try:
                    storage.append(piece)
                except AuditError:
                    if size == 1:
                        raise
                    # One record first: a log that takes nothing (a database
                    # that is down) costs two attempts, not one per halving.
                    storage.append(piece[:1])
                    done += 1
                    size = max(1, size // 2)
                    continue
            except AuditError as error:
                return done, error
            except Exception as error:  # noqa: BLE001 - an unexpected failure still fails closed
                return done, AuditError(f"cannot write: {type(error).__name__}: {error}", path=self.log.path)
            done += len(piece)
        return done, None

    def _failed(self, error: AuditError) -> None:
        if self.error is None:
            logger.error(
                "purposeguard audit log %s cannot keep records (%s); %d pending, retrying; "
                "enforce mode denies until it recovers",
                self.log.path,
                error.reason,
                len(self._pending),
            )
        self.error = error

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stopping:
                return
            if self._pending:
                try:
                    self._drain()
                except Exception:  # pragma: no cover - the writer must never die silently
                    logger.exception("purposeguard audit writer failed")


def _must_keep(record: Record) -> bool:
    # What Guard.dispatch fails closed on: enforce-mode records, and the
    # kinds that are obligations in themselves.
    if getattr(record, "kind", None) in SYNCHRONOUS_KINDS:
        return True
    mode = getattr(record, "mode", None)
    if not isinstance(mode, str):
        mode = get_guard().mode
    return mode == "enforce"


class _Attached:
    __slots__ = ("sink", "unsubscribe", "lock")

    def __init__(self) -> None:
        self.sink: AuditSink | None = None
        self.unsubscribe: Callable[[], None] | None = None
        self.lock = threading.Lock()


_ATTACHED = _Attached()


def attach(
    audit: str | Path | AuditLog | AuditSink, *, key: KeyLike | None = None, **options: Any
) -> AuditSink:
    """Send every record (violations, declassifications, consent changes,
    disclosures) to an audit log: a path, an :class:`AuditLog` or an
    :class:`AuditSink`. Replaces a sink attached before. ``options`` go to
    :class:`AuditSink` (``batch_size``, ``interval``, ``max_pending``);
    ``key`` keys a log opened from a path (default: the configured key).

    ``pg.configure(audit=path)`` calls this; ``pg.configure(audit=False)``
    calls :func:`detach`.
    """
    sink = sink_for(audit, key=key, **options)
    detach()
    with _ATTACHED.lock:
        _ATTACHED.sink = sink
        _ATTACHED.unsubscribe = on_record(sink)
    return sink


def sink_for(
    audit: str | Path | AuditLog | AuditSink, *, key: KeyLike | None = None, **options: Any
) -> AuditSink:
    """The sink :func:`attach` would install, opened but not attached: what
    can fail (a log that cannot be opened) fails here, before anything
    changes. One made here and not attached after all is the caller's to
    close (``sink.close()`` also closes a log it opened from a path).

    A path or URL naming an in-memory log (``":memory:"``, ``sqlite://``) is
    refused: nothing it records outlives the process, so it would pass for
    an audit trail that no one can read afterwards. An
    :class:`AuditLog` opened in memory on purpose (a test reading it back)
    is taken."""
    if isinstance(audit, AuditSink):
        return audit
    if isinstance(audit, AuditLog):
        return AuditSink(audit, **options)
    if in_memory(audit):
        raise AuditError(
            "audit= names an in-memory log (':memory:' or sqlite://): nothing it records outlives the "
            "process, so it is no audit trail; give a file path or a URL (or an AuditLog(':memory:') "
            "opened on purpose, to read back in this process)"
        )
    if isinstance(audit, (str, Path)) and str(audit):
        created = _new_files(audit)
        log = AuditLog(audit, key=key)
        try:
            sink = AuditSink(log, owns_log=True, **options)
        except BaseException:
            log.close()
            _remove(created)
            raise
        sink._created = created
        return sink
    raise AuditError(f"audit= takes a path, an AuditLog or False, not {audit!r}")


def abandon(sink: AuditSink) -> None:
    """Close a sink :func:`sink_for` made that is not attached after all
    (``configure()`` failing later): a log file it created, still empty, is
    removed again with the files beside it, so what failed leaves no file."""
    created = sink._created
    try:
        # Another process that opened the same new file meanwhile may have
        # written to it: kept then.
        empty = bool(created) and len(sink.log) == 0
    except AuditError:
        empty = False
    sink.close()
    if empty:
        _remove(created)


# What opening a new SQLite log at PATH creates beside it (SQLite's own files,
# which a closed log may leave, and a keyed log's checkpoint and its lock).
_BESIDE = ("-wal", "-shm", "-journal", "-checkpoint", "-checkpoint.lock")


def _new_files(audit: str | Path) -> tuple[str, ...]:
    """The files opening ``audit`` would create, when it names an SQLite file
    that does not exist yet (none for anything else)."""
    if isinstance(audit, str) and is_url(audit):
        if not audit.lower().startswith("sqlite:"):
            return ()
        try:
            path = sqlite_path(audit)
        except AuditError:
            return ()  # malformed: opening it says why
    else:
        path = str(audit)
    if path == ":memory:" or os.path.lexists(path):
        return ()
    return tuple(path + suffix for suffix in ("", *_BESIDE) if not os.path.lexists(path + suffix))


def _remove(paths: Iterable[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


def attached() -> AuditSink | None:
    """The sink :func:`attach` installed, if any."""
    return _ATTACHED.sink


def detach() -> None:
    """Stop sending records to the audit log, after writing those queued."""
    with _ATTACHED.lock:
        sink, unsubscribe = _ATTACHED.sink, _ATTACHED.unsubscribe
        _ATTACHED.sink = _ATTACHED.unsubscribe = None
    if unsubscribe is not None:
        unsubscribe()
    if sink is not None:
        sink.close()


# pg.testing.reset() detaches the sink like a fresh process has none.
on_reset("audit", detach)
on_reset("audit key", lambda: set_key(None))


_INHERITED: list[AuditSink] = []


def _after_fork_in_child() -> None:
    # A forked worker (gunicorn, Celery prefork) inherits the sink but not its
    # writer thread, and must not share the parent's SQLite connection: give
    # it its own sink on the same file. The parent writes what it had queued.
    sink = _ATTACHED.sink
    if sink is None:
        return
    _ATTACHED.lock = threading.Lock()  # another parent thread may have held it
    unsubscribe = _ATTACHED.unsubscribe
    _ATTACHED.sink = _ATTACHED.unsubscribe = None
    if unsubscribe is not None:
        unsubscribe()
    # Never closed here: closing the parent's connection in the child is unsafe.
    _INHERITED.append(sink)
    if sink.owns_log and sink.log.path != ":memory:":
        try:
            attach(
                sink.log.target,
                key=sink.log.storage.key,  # the child writes the same keyed chain
                durability=sink.durability,
                batch_size=sink.batch_size,
                interval=sink.interval,
                max_pending=sink.max_pending,
            )
        except AuditError as error:
            logger.error("purposeguard audit: the forked process has no audit sink: %s", error)
    else:
        logger.warning(
            "purposeguard audit: a forked process does not inherit an audit sink built on an "
            "AuditLog object; call attach() in the child"
        )


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _flush_at_exit() -> None:
    sink = _ATTACHED.sink
    if sink is not None:
        try:
            sink.flush()
        except Exception as error:  # noqa: BLE001 - exiting: report, never raise
            logger.error("purposeguard audit: records lost at exit: %s", error)
        try:
            # Closing the last connection folds the write-ahead log into the
            # main file, so the file alone (copied, attached to a ticket) holds
            # every record.
            sink.close()
            sink.log.close()
        except Exception as error:  # noqa: BLE001 - exiting: report, never raise
            logger.warning("purposeguard audit: could not close the log at exit: %s", error)
