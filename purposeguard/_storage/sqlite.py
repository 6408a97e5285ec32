"""The audit log and consent grants in one SQLite file (WAL mode): the embedded default."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from .._files import not_regular
from .base import (
    FORMAT,
    GENESIS,
    VERSION,
    AuditError,
    ChainKey,
    Checkpoint,
    ConsentReplay,
    Grant,
    Head,
    Pending,
    Revoke,
    StoredEntry,
    check_key,
    checkpoint_guard,
    consent_difference,
    decide_on,
    forget_key,
    grant_rows,
    key_keyed_since,
    linked_rows,
    log_table_differs,
    read_checkpoint,
    remember_key,
    replay_consents,
    revoke_grants,
    write_checkpoint,
)

__all__ = ["SQLiteStorage", "SYNCHRONOUS"]

logger = logging.getLogger("purposeguard.audit")

SYNCHRONOUS = ("full", "normal", "extra")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS purposeguard_meta (
        key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS purposeguard_audit (
        seq INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        timestamp REAL NOT NULL,
        data TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS purposeguard_consent (
        tenant TEXT NOT NULL,
        purpose TEXT NOT NULL,
        category TEXT NOT NULL,
        granted_by TEXT NOT NULL,
        granted_at REAL NOT NULL,
        expires_at REAL,
        PRIMARY KEY (tenant, purpose, category))""",
)
_TABLES = {"purposeguard_meta", "purposeguard_audit", "purposeguard_consent"}
_REVOKE_EVERY = "DELETE FROM purposeguard_consent WHERE tenant = ? AND purpose = ?"
_REVOKE_EACH = "DELETE FROM purposeguard_consent WHERE tenant = ? AND purpose = ? AND category = ?"


# What SQLite raises on a damaged file. A message quoting a name from a
# damaged schema may not be UTF-8, and Python's sqlite3 then raises
# UnicodeDecodeError in place of the error itself.
_SQLITE_ERRORS = (sqlite3.Error, UnicodeDecodeError)

_NOT_UTF8 = re.compile(r"Could not decode to UTF-8 column ('[^']*')")


def _describe(error: sqlite3.Error | UnicodeDecodeError) -> str:
    if isinstance(error, UnicodeDecodeError):
        quoted = bytes(error.object).decode("utf-8", "replace")
        return f"corrupted SQLite file ({quoted})"
    text = str(error)
    undecodable = _NOT_UTF8.match(text)
    if undecodable is not None:
        # Named by column, without the text: it is a record's content.
        return f"corrupted SQLite file (column {undecodable[1]} holds text that is not UTF-8)"
    if text == "file is not a database":
        return "not a purposeguard audit log: not an SQLite database (file is not a database)"
    if "malformed" in text:
        return f"corrupted SQLite file ({text})"
    if text in ("database is locked", "database table is locked"):
        # Busy, not broken: another process holds a lock longer than the timeout.
        return "the database is locked by another connection (busy); try again once it is released"
    return text


# Longest LIMIT SQLite takes (a 64-bit integer).
_MOST = 2**63 - 1


def _read_only_uri(path: str) -> str:
    """The URI that opens ``path`` for reading, writing nothing beside it when
    it can: a file no one may write (mode without write bits) and with no
    write-ahead log or journal beside it holds every record in itself and
    cannot change, so SQLite is told it is immutable and creates no -wal or
    -shm files. Any other file is opened read-only the usual way: its
    write-ahead log may hold committed records, and reading those needs
    the shared-memory index."""
    # SQLite keeps the -wal beside the file the path resolves to.
    resolved = Path(path).resolve()
    uri = f"{resolved.as_uri()}?mode=ro"
    try:
        writable = os.stat(resolved).st_mode & 0o222
    except OSError:
        return uri
    # A -journal left by a crash must be rolled back before the file is read.
    if not writable and not any(os.path.lexists(f"{resolved}{s}") for s in ("-wal", "-journal")):
        return uri + "&immutable=1"
    return uri


class SQLiteStorage:
    """The audit log and consent grants in one SQLite file (WAL mode).

    One connection per instance, shared by its threads under a lock; several
    processes may each open their own. ``synchronous="full"`` makes every
    acknowledged append survive a power cut, not only a killed process.
    ``max_bytes`` caps the file: an append that would grow it further fails
    as a full disk does.
    """

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        create: bool = True,
        readonly: bool = False,
        synchronous: str = "full",
        max_bytes: int | None = None,
        timeout: float = 30.0,
        key: ChainKey | None = None,
        checkpoint_every: int = 256,
    ) -> None:
        if synchronous not in SYNCHRONOUS:
            raise AuditError(f"unknown synchronous setting {synchronous!r} (expected full, normal or extra)")
        if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes <= 0):
            raise AuditError("max_bytes must be a positive number of bytes")
        self.location = str(path)
        # The file however its path was written: what other writers of it are known by.
        self._file = self.location if self.location == ":memory:" else str(Path(path).resolve())
        self.readonly = readonly
        self.key = key
        if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
            raise AuditError("checkpoint_every must be a positive number of records")
        self.checkpoint_every = checkpoint_every
        # A keyed file log also signs its end into a file beside it, outside
        # SQLite's write-ahead log: records a corrupted or truncated WAL
        # loses (which SQLite drops without a word) are then still missed.
        self.checkpoint_path: str | None = (
            None if self.location == ":memory:" else self.location + "-checkpoint"
        )
        self._checkpointed = 0
        self._checkpoint_failed = False
        self.key_id: str | None = None
        # The grants the chain's consent records make, replayed over every
        # record (set once the log id and key id are known).
        self._replay: ConsentReplay | None = None
        self._mismatch_reported = False
        self._lock = threading.RLock()
        self._timeout = timeout
        # Commits made through this connection: PRAGMA data_version only
        # moves for other connections' commits, so generation() needs both.
        self._commits = 0
        # The chain's head as this connection last wrote or read it, and the
        # PRAGMA data_version it was read at: an append re-reads the head only
        # when another connection (or process) has committed since, which
        # data_version reports without reading any table.
        self._known_head: tuple[int, str] | None = None
        self._known_version: int | None = None
        memory = self.location == ":memory:"
        if memory:
            if readonly:
                raise AuditError("an in-memory log cannot be opened read-only", path=self.location)
            connection = sqlite3.connect(
                ":memory:", isolation_level=None, check_same_thread=False, timeout=timeout
            )
        else:
            file = Path(path)
            if file.is_dir():
                raise AuditError("is a directory, not an audit log", path=self.location)
            if (readonly or not create) and not file.exists():
                raise AuditError("no such audit log", path=self.location)
            if not file.parent.is_dir():
                raise AuditError(f"no such directory {str(file.parent)!r}", path=self.location)
            # SQLite would open a FIFO (or a link to a device) and wait on it forever.
            resolved = str(file.resolve())
            odd = not_regular([self.location] + [resolved + s for s in ("-wal", "-shm", "-journal")])
            if odd is not None:
                what = odd[1] if odd[1].startswith("not ") else f"{odd[1]}, not a regular file"
                if odd[0] == self.location:
                    raise AuditError(f"not a purposeguard audit log: {what}", path=self.location)
                raise AuditError(f"damaged audit log: {odd[0]} beside it is {what}", path=self.location)
            uri = (
                _read_only_uri(self.location)
                if readonly
                else f"{file.resolve().as_uri()}?mode={'rwc' if create else 'rw'}"
            )
            try:
                connection = sqlite3.connect(
                    uri,
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=timeout,
                )
            except _SQLITE_ERRORS as error:
                raise AuditError(f"cannot open: {_describe(error)}", path=self.location) from None
        self._connection = connection
        try:
            self.log_id = self._open(memory, synchronous, max_bytes)
        except BaseException:
            connection.close()
            raise

    # -- opening -------------------------------------------------------------

    def _open(self, memory: bool, synchronous: str, max_bytes: int | None) -> str:
        connection = self._connection
        try:
            tables = self._tables()
            if not tables:
                if self.readonly:
                    raise AuditError("not a purposeguard audit log: an empty database", path=self.location)
                # Only a file that is empty (or new) is turned into a log:
                # a foreign database is never written to.
                if not memory:
                    connection.execute("PRAGMA journal_mode=WAL")
                self._create()
                tables = self._tables()
            if "purposeguard_meta" not in tables:
                shown = ", ".join(sorted(tables)[:5])
                raise AuditError(
                    f"not a purposeguard audit log: an SQLite database with other tables ({shown})",
                    path=self.location,
                )
            meta = dict(connection.execute("SELECT key, value FROM purposeguard_meta").fetchall())
            if meta.get("format") != FORMAT:
                raise AuditError(
                    "not a purposeguard audit log: its format marker is missing", path=self.location
                )
            if meta.get("version") != VERSION:
                raise AuditError(
                    f"unsupported audit log version {meta.get('version')!r} (this purposeguard reads {VERSION})",
                    path=self.location,
                )
            missing = _TABLES - tables
            if missing:
                raise AuditError(
                    f"damaged audit log: table {sorted(missing)[0]} is missing", path=self.location
                )
            if not self.readonly:
                if not memory:
                    mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
                    if mode != "wal":
                        connection.execute("PRAGMA journal_mode=WAL")
                connection.execute(f"PRAGMA synchronous={synchronous.upper()}")
                if max_bytes is not None:
                    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
                    connection.execute(f"PRAGMA max_page_count={max(1, max_bytes // page_size)}")
            # A quick structural check: a damaged file fails here, not mid-append.
            connection.execute("SELECT count(*) FROM purposeguard_audit").fetchone()
            log_id = str(meta.get("log_id", ""))
            self.key_id = meta.get("key_id") or None
            empty = meta.get("head_seq", "0") == "0"
            if check_key(self.key_id, self.key, empty=empty, readonly=self.readonly, location=self.location):
                self.key_id = self._record_key()
                check_key(self.key_id, self.key, empty=True, readonly=True, location=self.location)
            if not memory and not self.readonly:
                remember_key(self._file, self.key, self.key_id, self)
            return log_id
        except _SQLITE_ERRORS as error:
            raise AuditError(_describe(error), path=self.location) from None

    def _record_key(self) -> str | None:
        # Under the write lock: two processes opening a new log at once
        # agree on one key id (the second one finds the first's).
        assert self.key is not None
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(
                "INSERT OR IGNORE INTO purposeguard_meta (key, value) VALUES ('key_id', ?)",
                (self.key.key_id,),
            )
            row = connection.execute("SELECT value FROM purposeguard_meta WHERE key = 'key_id'").fetchone()
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return str(row[0]) if row else None

    def _tables(self) -> set[str]:
        rows = self._connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {row[0] for row in rows}

    def _create(self) -> None:
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have created it while we waited for the lock.
            if not self._tables():
                log_id = uuid.uuid4().hex
                for statement in _SCHEMA:
                    connection.execute(statement)
                connection.executemany(
                    "INSERT INTO purposeguard_meta (key, value) VALUES (?, ?)",
                    [
                        ("format", FORMAT),
                        ("version", VERSION),
                        ("log_id", log_id),
                        ("head_seq", "0"),
                        ("head_hash", GENESIS),
                    ],
                )
                if self.key is not None and self.checkpoint_path is not None:
                    # Signed for the empty chain before anyone can append:
                    # between the first commit and its checkpoint, another
                    # process reading consents would otherwise find none and
                    # take the log for cut off. Under this transaction's
                    # lock, so no newer checkpoint can be overwritten.
                    try:
                        with checkpoint_guard(self.checkpoint_path):
                            write_checkpoint(self.checkpoint_path, self.key, log_id, 0, GENESIS)
                    except OSError as error:
                        logger.warning(
                            "purposeguard audit log %s: cannot write its first checkpoint file (%s)",
                            self.location,
                            error.strerror or type(error).__name__,
                        )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    # -- writing ---------------------------------------------------------------

    def append(
        self, items: Sequence[Pending], *, grants: Sequence[Grant] = (), revoke: Revoke | None = None
    ) -> list[int]:
        if self.readonly:
            raise AuditError("opened read-only: cannot append", path=self.location)
        connection = self._connection
        with self._lock:
            try:
                connection.execute("BEGIN IMMEDIATE")
            except _SQLITE_ERRORS as error:
                raise AuditError(f"cannot write: {_describe(error)}", path=self.location) from None
            try:
                seq, prev = self._write_head()
                if revoke is not None:
                    revoke_grants(connection.execute, revoke, _REVOKE_EVERY, _REVOKE_EACH)
                if grants:
                    connection.executemany(
                        "INSERT OR REPLACE INTO purposeguard_consent "
                        "(tenant, purpose, category, granted_by, granted_at, expires_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        grant_rows(grants),
                    )
                key, log_id = self.key, self.log_id
                rows = linked_rows(items, seq, prev, key, log_id)
                seqs = [row[0] for row in rows]
                if rows:
                    seq, prev = rows[-1][0], rows[-1][5]
                    connection.executemany(
                        "INSERT INTO purposeguard_audit (seq, kind, timestamp, data, prev_hash, hash) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                    if key is None:
                        connection.execute(
                            "INSERT OR REPLACE INTO purposeguard_meta (key, value) "
                            "VALUES ('head_seq', ?), ('head_hash', ?)",
                            (str(seq), prev),
                        )
                    else:
                        # The signed end: cutting records off the tail needs the key.
                        connection.execute(
                            "INSERT OR REPLACE INTO purposeguard_meta (key, value) "
                            "VALUES ('head_seq', ?), ('head_hash', ?), ('head_mac', ?)",
                            (str(seq), prev, key.sign_head(log_id, seq, prev)),
                        )
                connection.execute("COMMIT")
                self._commits += 1
                self._known_head = (seq, prev)
                if (
                    key is not None
                    and rows
                    and (
                        self._checkpointed == 0
                        or seq - self._checkpointed >= self.checkpoint_every
                        # A consent change is signed outside the file at once:
                        # cutting a revocation off then means rolling back the
                        # checkpoint file too (see docs/storage.md).
                        or grants
                        or revoke is not None
                        or any(item.kind == "consent" for item in items)
                    )
                ):
                    self._checkpoint(seq, prev)
            except BaseException as error:
                self._known_head = None
                try:
                    connection.execute("ROLLBACK")
                except _SQLITE_ERRORS:
                    pass  # SQLite already rolled back (e.g. after SQLITE_FULL)
                if isinstance(error, sqlite3.IntegrityError):
                    raise AuditError(
                        "the log was altered: a record exists beyond its recorded end "
                        "(run `purposeguard audit verify`)",
                        path=self.location,
                    ) from None
                if isinstance(error, _SQLITE_ERRORS):
                    raise AuditError(f"cannot write: {_describe(error)}", path=self.location) from None
                raise
            return seqs

    def _checkpoint(self, seq: int, head_hash: str) -> None:
        if self.key is None or self.checkpoint_path is None:
            return
        try:
            # Every process's writers in turn: see checkpoint_guard.
            with checkpoint_guard(self.checkpoint_path):
                self._checkpoint_locked(self.checkpoint_path, self.key, seq, head_hash)
        except OSError as error:
            # The records are committed; the next commit tries again.
            if not self._checkpoint_failed:
                self._checkpoint_failed = True
                logger.error(
                    "purposeguard audit log %s: cannot write its checkpoint file (%s)",
                    self.location,
                    error.strerror or error,
                )

    def _checkpoint_locked(self, checkpoint_path: str, key: ChainKey, seq: int, head_hash: str) -> None:
        try:
            current = read_checkpoint(checkpoint_path)
        except AuditError:
            current = None  # damaged: replaced by a good one
        if current is not None and current.log_id != self.log_id:
            # Evidence that the file was swapped: kept for verify, never overwritten.
            if not self._checkpoint_failed:
                self._checkpoint_failed = True
                logger.error(
                    "purposeguard audit log %s: its checkpoint file is of another log (%s); "
                    "the file was swapped? (run `purposeguard audit verify`)",
                    self.location,
                    current.log_id,
                )
            return
        # Another writer (of this process or another) may have signed a later end already.
        if current is None or current.seq < seq:
            write_checkpoint(checkpoint_path, key, self.log_id, seq, head_hash)
        self._checkpointed = seq
        if self._checkpoint_failed:
            self._checkpoint_failed = False
            logger.warning("purposeguard audit log %s: checkpoint file written again", self.location)

    def _head(self) -> Head:
        return _read_head(self._connection, self.location)

    def _write_head(self) -> tuple[int, str]:
        """The head to append after, inside the write transaction: the one
        this connection knows unless another has committed since."""
        version = self._connection.execute("PRAGMA data_version").fetchone()[0]
        known = self._known_head
        if known is not None and version == self._known_version:
            return known
        seq, prev, _ = self._head()
        if self.key is None and self.location != ":memory:":
            # Another writer may have keyed the log since this one opened it.
            row = self._connection.execute(
                "SELECT value FROM purposeguard_meta WHERE key = 'key_id'"
            ).fetchone()
            if row and row[0]:
                self.key = key_keyed_since(self._file, str(row[0]))
                self.key_id = self.key.key_id
                self._replay = None
        self._known_head, self._known_version = (seq, prev), version
        return seq, prev

    # -- reading ---------------------------------------------------------------

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            try:
                return self._connection.execute(sql, params).fetchall()
            except _SQLITE_ERRORS as error:
                raise AuditError(_describe(error), path=self.location) from None

    def entries(self, start: int = 1) -> Iterator[StoredEntry]:
        # Pages, so other threads can write between them and memory stays flat.
        after = start - 1
        while True:
            rows = self._query(
                "SELECT seq, kind, timestamp, data, prev_hash, hash FROM purposeguard_audit "
                "WHERE seq > ? ORDER BY seq LIMIT 1000",
                (after,),
            )
            if not rows:
                return
            for row in rows:
                yield _entry(row)
            after = int(rows[-1][0])  # type: ignore[call-overload]

    def last(self, n: int) -> list[StoredEntry]:
        rows = self._query(
            "SELECT seq, kind, timestamp, data, prev_hash, hash FROM purposeguard_audit "
            "ORDER BY seq DESC LIMIT ?",
            (min(max(n, 0), _MOST),),
        )
        return [_entry(row) for row in reversed(rows)]

    def head(self) -> tuple[int, str]:
        with self._lock:
            try:
                return self._head()[:2]
            except _SQLITE_ERRORS as error:
                raise AuditError(_describe(error), path=self.location) from None

    def grants(self, tenant: str | None = None) -> list[Grant]:
        """The grants to decide on: those the consent table holds that the
        chain's consent records also grant. A grant added to (or widened in)
        the table by hand, without its record, is never used; a log whose
        records do not hold together (see :class:`ConsentReplay`) raises
        :class:`AuditError`: no grant is used."""
        with self._lock:
            rows, chained = self._consents(tenant, table=True)
            kept, differs = decide_on((Grant(*row) for row in rows), chained)  # type: ignore[arg-type]
        if differs and not self._mismatch_reported:
            self._mismatch_reported = True
            log_table_differs(self.location)
        return kept

    def _consents(
        self, tenant: str | None, *, table: bool
    ) -> tuple[list[tuple[object, ...]], dict[tuple[str, str, str], Grant]]:
        """The consent table's rows (for ``tenant``, or all; none unless
        ``table``) and the grants the chain's records make, read in one
        transaction after walking the records appended since the last walk."""
        sql = "SELECT tenant, purpose, category, granted_by, granted_at, expires_at FROM purposeguard_consent"
        replay = self._replay
        if replay is None:
            replay = self._replay = ConsentReplay(self.key, self.key_id, self.log_id, self.location)
        checkpoint = self._signed_end()
        rows: list[tuple[object, ...]] = []
        # One read transaction for the table, the records and the end, so a
        # change committed in between is not taken for an edit by hand (in
        # memory this lock suffices).
        own = self._connection.in_transaction
        try:
            if not own:
                self._connection.execute("BEGIN")
            try:
                if table and tenant is None:
                    rows = self._connection.execute(sql + " ORDER BY tenant, purpose, category").fetchall()
                elif table:
                    rows = self._connection.execute(
                        sql + " WHERE tenant = ? ORDER BY purpose, category", (tenant,)
                    ).fetchall()
                head = self._head()
                cursor = self._connection.execute(
                    "SELECT seq, kind, timestamp, data, prev_hash, hash FROM purposeguard_audit "
                    "WHERE seq > ? ORDER BY seq",
                    (replay.seq,),
                )
                replay.feed(_rows(cursor, self.location))
            finally:
                if not own:
                    self._connection.execute("ROLLBACK")
        except _SQLITE_ERRORS as error:
            raise AuditError(_describe(error), path=self.location) from None
        replay.check_end(head, checkpoint, needs_checkpoint=self.checkpoint_path is not None)
        chained = replay.grants
        if tenant is not None:
            chained = {k: g for k, g in chained.items() if k[0] == tenant}
        return rows, chained

    def _signed_end(self) -> Checkpoint | None:
        """A keyed file's checkpoint, read before the records it must be
        checked against (it is written after its commit)."""
        if self.key is None or self.checkpoint_path is None:
            return None
        return read_checkpoint(self.checkpoint_path)

    def generation(self) -> tuple[int, int]:
        # data_version moves when another connection (or process) commits,
        # _commits when this one does: together, any change to the file.
        with self._lock:
            version = self._query("PRAGMA data_version")[0][0]
            return int(version), self._commits  # type: ignore[call-overload]

    def _reader(self) -> sqlite3.Connection:
        """A read-only connection of its own to the file."""
        try:
            return sqlite3.connect(
                _read_only_uri(self.location),
                uri=True,
                isolation_level=None,
                timeout=self._timeout,
            )
        except _SQLITE_ERRORS as error:
            raise AuditError(f"cannot open: {_describe(error)}", path=self.location) from None

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[tuple[Head, Iterator[StoredEntry]]]:
        if self.location == ":memory:":
            # Only this connection can write an in-memory log: holding its
            # lock is the snapshot.
            with self._lock:
                try:
                    head = self._head()
                    cursor = self._connection.execute(_SELECT_ALL)
                except _SQLITE_ERRORS as error:
                    raise AuditError(_describe(error), path=self.location) from None
                yield head, _rows(cursor, self.location)
            return
        # A connection of its own, so one read transaction can span the walk
        # while this storage's connection goes on writing; in WAL mode the
        # reader sees the file as of its first read and blocks no writer.
        reader = self._reader()
        try:
            try:
                reader.execute("BEGIN")
                head = _read_head(reader, self.location)
                cursor = reader.execute(_SELECT_ALL)
            except _SQLITE_ERRORS as error:
                raise AuditError(_describe(error), path=self.location) from None
            yield head, _rows(cursor, self.location)
        finally:
            try:
                reader.execute("ROLLBACK")
            except _SQLITE_ERRORS:
                pass
            reader.close()

    def consent_mismatch(self) -> str | None:
        """How the consent table differs from the chain's consent records, read
        in one snapshot; None when they agree."""
        records = (
            "SELECT seq, kind, timestamp, data, prev_hash, hash FROM purposeguard_audit "
            "WHERE kind = 'consent' ORDER BY seq"
        )
        grants = (
            "SELECT tenant, purpose, category, granted_by, granted_at, expires_at FROM purposeguard_consent"
        )
        if self.location == ":memory:":
            with self._lock:
                rows, table = self._query(records), self._query(grants)
        else:
            reader = self._reader()
            try:
                reader.execute("BEGIN")  # one read transaction: one moment of the file
                rows = reader.execute(records).fetchall()
                table = reader.execute(grants).fetchall()
                reader.execute("ROLLBACK")
            except _SQLITE_ERRORS as error:
                raise AuditError(_describe(error), path=self.location) from None
            finally:
                reader.close()
        chained: dict[tuple[str, str, str], Grant] = {}
        try:
            replay_consents((_entry(row) for row in rows), chained, self.key, self.log_id)
        except AuditError as error:
            return error.reason
        return consent_difference([Grant(*row) for row in table], chained)  # type: ignore[arg-type]

    def cached_grants(self, tenant: str) -> tuple[Grant, ...] | None:
        # No pushed view: the consent store re-reads when generation() moves.
        return None

    def refresh(self) -> None:
        """Walk the records appended since the last walk. The consent store
        calls it as it starts, so the first walk (as long as verifying the
        log) happens then rather than in its first decision."""
        with self._lock:
            self._consents(None, table=False)

    def trace(self, callback: object) -> None:
        """Install an SQLite trace callback (tests: which threads run statements)."""
        with self._lock:
            self._connection.set_trace_callback(callback)  # type: ignore[arg-type]

    def close(self) -> None:
        with self._lock:
            if self.key is not None and not self.readonly and self.key_id:
                try:
                    seq, head_hash, _ = self._head()
                except _SQLITE_ERRORS:
                    seq = 0
                if seq and seq != self._checkpointed:
                    self._checkpoint(seq, head_hash)
            self._connection.close()
            forget_key(self._file, self)


_SELECT_ALL = "SELECT seq, kind, timestamp, data, prev_hash, hash FROM purposeguard_audit ORDER BY seq"


def _read_head(connection: sqlite3.Connection, location: str) -> Head:
    meta = dict(
        connection.execute(
            "SELECT key, value FROM purposeguard_meta WHERE key IN ('head_seq', 'head_hash', 'head_mac')"
        ).fetchall()
    )
    try:
        return int(meta["head_seq"]), str(meta["head_hash"]), meta.get("head_mac")
    except (KeyError, ValueError):
        raise AuditError("damaged audit log: its recorded head is missing", path=location) from None


def _rows(cursor: sqlite3.Cursor, location: str) -> Iterator[StoredEntry]:
    # In pages, so memory stays flat however long the log is.
    while True:
        try:
            rows = cursor.fetchmany(1000)
        except _SQLITE_ERRORS as error:
            raise AuditError(_describe(error), path=location) from None
        if not rows:
            return
        for row in rows:
            yield _entry(row)


def _entry(row: tuple[object, ...]) -> StoredEntry:
    seq, kind, timestamp, data, prev_hash, digest = row
    try:
        stamp = float(timestamp)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        # Text or bytes written by hand into the REAL column: an altered
        # record (its hash no longer matches), never a crash of the reader.
        stamp = math.nan
    return StoredEntry(int(seq), str(kind), stamp, str(data), str(prev_hash), str(digest))  # type: ignore[call-overload]
