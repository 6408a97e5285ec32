"""The audit log and consent grants in PostgreSQL: one chain, many replicas.

Every append locks the chain's head row (``SELECT ... FOR UPDATE``), links
the new entries to it and moves it in the same transaction, so any number of
processes append to one chain without forks or gaps. Consent changes send a
``NOTIFY``; each process that reads consents keeps the grants in memory and a
watcher thread reloads them when notified, so a decision never waits on the
database. The watcher also proves every ``heartbeat`` seconds that it is in
contact: a view that has not been confirmed for ``stale_after`` seconds is
refused (no consent), which bounds how long a revocation can take to bite on
any replica, even one cut off from the database.

Needs ``pip install 'purposeguard[postgres]'`` (psycopg 3).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from . import redact
from .base import (
    FORMAT,
    GENESIS,
    AuditError,
    ChainKey,
    ConsentReplay,
    Grant,
    Head,
    Pending,
    Revoke,
    StoredEntry,
    check_key,
    consent_difference,
    decide_on,
    forget_key,
    grant_rows,
    key_keyed_since,
    linked_rows,
    log_table_differs,
    remember_key,
    replay_consents,
    revoke_grants,
)

__all__ = ["CHANNEL", "SCHEMA_VERSION", "PostgresStorage", "upgrade"]

logger = logging.getLogger("purposeguard.audit")

# The schema this purposeguard reads and writes; upgrade() moves older ones here.
SCHEMA_VERSION = 1
CHANNEL = "purposeguard_consent"
# Serialises schema creation and upgrades between processes (any constant no
# other application is likely to use: "pgua" in ASCII).
_SCHEMA_LOCK = 0x70677561

_TABLES: dict[str, tuple[str, ...]] = {
    "purposeguard_schema_version": ("version", "applied_at"),
    "purposeguard_meta": ("key", "value"),
    "purposeguard_head": ("id", "seq", "hash"),
    "purposeguard_audit": ("seq", "kind", "timestamp", "data", "prev_hash", "hash"),
    "purposeguard_consent": ("tenant", "purpose", "category", "granted_by", "granted_at", "expires_at"),
}

_SCHEMA = (
    """CREATE TABLE purposeguard_schema_version (
        version INTEGER NOT NULL, applied_at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE purposeguard_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE purposeguard_head (
        id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL, hash TEXT NOT NULL)""",
    """CREATE TABLE purposeguard_audit (
        seq BIGINT PRIMARY KEY,
        kind TEXT NOT NULL,
        timestamp DOUBLE PRECISION NOT NULL,
        data TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL)""",
    """CREATE TABLE purposeguard_consent (
        tenant TEXT NOT NULL,
        purpose TEXT NOT NULL,
        category TEXT NOT NULL,
        granted_by TEXT NOT NULL,
        granted_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION,
        PRIMARY KEY (tenant, purpose, category))""",
)

# Statements that take a database from version N to N + 1, applied by
# upgrade() in one transaction each. Empty while there is only version 1.
_MIGRATIONS: dict[int, tuple[str, ...]] = {}

_COLUMNS = "seq, kind, timestamp, data, prev_hash, hash"
_REVOKE_EVERY = "DELETE FROM purposeguard_consent WHERE tenant = %s AND purpose = %s"
_REVOKE_EACH = "DELETE FROM purposeguard_consent WHERE tenant = %s AND purpose = %s AND category = %s"


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ImportError(
            "PostgreSQL storage needs psycopg 3: pip install 'purposeguard[postgres]'"
        ) from None
    return psycopg


def _line(error: BaseException, url: str) -> str:
    """One line of a psycopg/libpq message (they span several), never
    showing any of the password ``url`` holds (see :func:`_scrub`)."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    for prefix in ("connection failed: ",):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    shown = _scrub(text or type(error).__name__, url)
    if shown is None:
        return f"{type(error).__name__}, its text withheld as it could quote part of the password: {_unclear(url)}"
    return shown


def _unclear(url: str) -> str:
    """Why the password of ``url`` cannot be told apart, for a message."""
    try:
        _psycopg().conninfo.conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - any failure to read it
        return "libpq cannot read the URL (percent-encode any '%', space, '@' or '/' in the password)"
    return (
        "the URL does not say unambiguously where its password ends (an '@' or '/' in a password "
        "must be percent-encoded: %40, %2F)"
    )


def _passwords(url: str) -> list[str] | None:
    """Every text that is the password of ``url``, however it is read; None
    when libpq cannot read the URL, or reads its user and password
    otherwise than a URL parser does: libpq's end at the first ``@`` or
    ``/``, a URL parser's at the last ``@``, so with an unencoded ``@`` or
    ``/`` in the password libpq takes part of it for the host, port or
    database, and quotes it in its messages."""
    from urllib.parse import unquote

    try:
        params: dict[str, Any] = _psycopg().conninfo.conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - malformed: libpq's reading is unknown
        return None
    found: list[str] = []
    userinfo, at, _ = url.partition("://")[2].rpartition("@")
    if at:
        if "@" in userinfo or "/" in userinfo:
            return None
        written = userinfo.partition(":")[2]
        found += [written, unquote(written)]
    found += [str(params[name]) for name in ("password", "sslpassword") if params.get(name)]
    for part in url.partition("?")[2].split("&"):
        name, equals, value = part.partition("=")
        if equals and name in ("password", "sslpassword") and value:
            found += [value, unquote(value)]
    return sorted({text for text in found if text}, key=len, reverse=True)


def _scrub(text: str, url: str) -> str | None:
    """``text`` with the password of ``url`` replaced by ``***`` wherever it
    occurs (a short one only where it stands apart, not inside a word); None
    when the password cannot be told apart (see :func:`_passwords`)."""
    passwords = _passwords(url)
    if passwords is None:
        return None
    for password in passwords:
        if len(password) >= 4:
            text = text.replace(password, "***")
        else:
            text = re.sub(rf"(?<![0-9A-Za-z]){re.escape(password)}(?![0-9A-Za-z])", "***", text)
    return text


def _entry(row: Sequence[Any]) -> StoredEntry:
    seq, kind, timestamp, data, prev_hash, digest = row
    return StoredEntry(int(seq), str(kind), float(timestamp), str(data), str(prev_hash), str(digest))


@dataclass(frozen=True)
class _View:
    """Every grant, by tenant, as of ``fresh_at`` (time.monotonic)."""

    by_tenant: dict[str, tuple[Grant, ...]]
    fresh_at: float


_OPEN: weakref.WeakSet[PostgresStorage] = weakref.WeakSet()


class PostgresStorage:
    """The audit log and consent grants in one PostgreSQL database.

    ``url`` is a libpq URL (``postgresql://user:password@host:port/dbname``).
    A database without purposeguard's tables gets them (unless ``create`` is
    false or ``readonly``); one with another schema version, a missing table
    or column, or other data under purposeguard's table names is refused
    with :class:`AuditError` and left untouched. Threads share one
    connection under a lock; it is re-opened after the database comes back.
    """

    def __init__(
        self,
        url: str,
        *,
        create: bool = True,
        readonly: bool = False,
        connect_timeout: float = 5.0,
        stale_after: float = 1.0,
        heartbeat: float = 0.2,
        key: ChainKey | None = None,
    ) -> None:
        psycopg = _psycopg()
        self.key = key
        self.key_id: str | None = None
        self._psycopg = psycopg
        self._url = url
        self.location = redact(url)
        self.readonly = readonly
        if not heartbeat > 0 or not stale_after > heartbeat:
            raise AuditError("stale_after must be longer than heartbeat, both positive", path=self.location)
        self.stale_after = float(stale_after)
        self.heartbeat = float(heartbeat)
        try:
            params = psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.Error as error:
            raise AuditError(
                f"malformed PostgreSQL URL ({_line(error, self._url)})", path=self.location
            ) from None
        for port in str(params.get("port", "")).split(","):
            if port and not port.isdigit():
                # libpq may have read part of the password as the port.
                said = _scrub(f"port {port!r}", url)
                raise AuditError(
                    f"malformed PostgreSQL URL: {said} is not a number"
                    if said is not None
                    else f"malformed PostgreSQL URL: its port is not a number; {_unclear(url)}",
                    path=self.location,
                )
        self._connect_args: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in params:
            # libpq counts whole seconds and treats less than 2 as 2.
            self._connect_args["connect_timeout"] = max(2, round(connect_timeout))
        if "application_name" not in params:
            self._connect_args["application_name"] = "purposeguard"
        self._lock = threading.RLock()
        self._conn: Any = None
        self._commits = 0
        self._view: _View | None = None
        self._view_lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self._watch_error: str | None = None
        self._pid = os.getpid()
        # The grants the chain's consent records make, replayed over every record.
        self._replay_lock = threading.Lock()
        self._replayer: ConsentReplay | None = None
        # Why the last load found the consent records untrustworthy (None: it did not).
        self._untrusted: str | None = None
        self._untrusted_reported = False
        self._mismatch_reported = False
        with self._lock:
            self._conn = self._connect()
            try:
                self.log_id = self._open(create)
            except BaseException:
                self._conn.close()
                raise
        _OPEN.add(self)

    def __repr__(self) -> str:
        return f"<PostgresStorage {self.location!r}>"

    # -- connecting -----------------------------------------------------------------

    def _connect(self) -> Any:
        psycopg = self._psycopg
        try:
            connection = psycopg.connect(self._url, **self._connect_args)
        except psycopg.Error as error:
            raise AuditError(f"cannot connect: {_line(error, self._url)}", path=self.location) from None
        if self.readonly:
            connection.execute("SET default_transaction_read_only = on")
        return connection

    def _connection(self) -> Any:
        # Called with self._lock held: the shared connection, re-opened after
        # the database went away (a restart, a network cut).
        if os.getpid() != self._pid:
            self._after_fork()
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            self._conn = None
            try:
                self._conn = self._connect()
            except AuditError as error:
                raise AuditError(f"database unreachable ({error.reason})", path=self.location) from None
        return self._conn

    def _after_fork(self) -> None:
        # The parent's connection and watcher belong to the parent: never
        # touch its socket, open our own.
        self._pid = os.getpid()
        self._conn = None
        self._watcher = None
        self._stop = threading.Event()
        self._view = None
        # A parent thread may have held them at the fork.
        self._lock = threading.RLock()
        self._view_lock = threading.Lock()
        self._replay_lock = threading.Lock()

    def _failed(self, error: BaseException, doing: str) -> AuditError:
        psycopg = self._psycopg
        if isinstance(error, psycopg.OperationalError) or (self._conn is not None and self._conn.broken):
            with contextlib.suppress(Exception):
                if self._conn is not None:
                    self._conn.close()
            self._conn = None
            return AuditError(
                f"cannot {doing}: database unreachable ({_line(error, self._url)})", path=self.location
            )
        return AuditError(f"cannot {doing}: {_line(error, self._url)}", path=self.location)

    # -- opening -----------------------------------------------------------------------

    def _tables(self, conn: Any) -> set[str]:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name LIKE 'purposeguard%%'"
        ).fetchall()
        return {str(row[0]) for row in rows}

    def _open(self, create: bool) -> str:
        conn = self._conn
        psycopg = self._psycopg
        try:
            tables = self._tables(conn)
            if not tables:
                if self.readonly or not create:
                    raise AuditError(
                        "not a purposeguard audit log: the database has no purposeguard tables "
                        "(create them with `purposeguard audit init URL`)",
                        path=self.location,
                    )
                self._create(conn)
                tables = self._tables(conn)
            log_id = check_schema(conn, tables, self.location)
            self.log_id = log_id  # what the key binds records to
            self._bind_key(conn)
            return log_id
        except psycopg.Error as error:
            raise AuditError(f"cannot open: {_line(error, self._url)}", path=self.location) from None

    def _bind_key(self, conn: Any) -> None:
        row = conn.execute("SELECT value FROM purposeguard_meta WHERE key = 'key_id'").fetchone()
        self.key_id = str(row[0]) if row else None
        head = conn.execute("SELECT seq FROM purposeguard_head WHERE id = 1").fetchone()
        empty = head is None or int(head[0]) == 0
        if check_key(self.key_id, self.key, empty=empty, readonly=self.readonly, location=self.location):
            assert self.key is not None
            # Replicas starting together on a new log: the first one's key id stays.
            conn.execute(
                "INSERT INTO purposeguard_meta (key, value) VALUES ('key_id', %s) ON CONFLICT (key) DO NOTHING",
                (self.key.key_id,),
            )
            row = conn.execute("SELECT value FROM purposeguard_meta WHERE key = 'key_id'").fetchone()
            self.key_id = str(row[0]) if row else None
            check_key(self.key_id, self.key, empty=True, readonly=True, location=self.location)
        if not self.readonly:
            remember_key(self.location, self.key, self.key_id, self)

    def _create(self, conn: Any) -> None:
        with conn.transaction():
            # Replicas starting together: one creates, the others wait and find it done.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            if self._tables(conn):
                return
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO purposeguard_schema_version (version, applied_at) VALUES (%s, %s)",
                (SCHEMA_VERSION, time.time()),
            )
            conn.cursor().executemany(
                "INSERT INTO purposeguard_meta (key, value) VALUES (%s, %s)",
                [("format", FORMAT), ("log_id", uuid.uuid4().hex)],
            )
            conn.execute("INSERT INTO purposeguard_head (id, seq, hash) VALUES (1, 0, %s)", (GENESIS,))

    # -- writing -----------------------------------------------------------------

    def append(
        self, items: Sequence[Pending], *, grants: Sequence[Grant] = (), revoke: Revoke | None = None
    ) -> list[int]:
        if self.readonly:
            raise AuditError("opened read-only: cannot append", path=self.location)
        psycopg = self._psycopg
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    row = conn.execute(
                        "SELECT seq, hash FROM purposeguard_head WHERE id = 1 FOR UPDATE"
                    ).fetchone()
                    if row is None:
                        raise AuditError(
                            "damaged audit log: its recorded head is missing", path=self.location
                        )
                    seq, prev = int(row[0]), str(row[1])
                    if self.key is None:
                        # Another writer may have keyed the log since this one opened it.
                        keyed = conn.execute(
                            "SELECT value FROM purposeguard_meta WHERE key = 'key_id'"
                        ).fetchone()
                        if keyed and keyed[0]:
                            self.key = key_keyed_since(self.location, str(keyed[0]))
                            self.key_id = self.key.key_id
                            self._replayer = None
                    if revoke is not None:
                        revoke_grants(conn.execute, revoke, _REVOKE_EVERY, _REVOKE_EACH)
                    if grants:
                        conn.cursor().executemany(
                            "INSERT INTO purposeguard_consent "
                            "(tenant, purpose, category, granted_by, granted_at, expires_at) "
                            "VALUES (%s, %s, %s, %s, %s, %s) "
                            "ON CONFLICT (tenant, purpose, category) DO UPDATE SET "
                            "granted_by = EXCLUDED.granted_by, granted_at = EXCLUDED.granted_at, "
                            "expires_at = EXCLUDED.expires_at",
                            grant_rows(grants),
                        )
                    key, log_id = self.key, self.log_id
                    rows = linked_rows(items, seq, prev, key, log_id)
                    seqs = [row[0] for row in rows]
                    if rows:
                        seq, prev = rows[-1][0], rows[-1][5]
                        conn.cursor().executemany(
                            f"INSERT INTO purposeguard_audit ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)",
                            rows,
                        )
                        conn.execute(
                            "UPDATE purposeguard_head SET seq = %s, hash = %s WHERE id = 1", (seq, prev)
                        )
                        if key is not None:
                            # The signed end: cutting records off the tail needs the key.
                            conn.execute(
                                "INSERT INTO purposeguard_meta (key, value) VALUES ('head_mac', %s) "
                                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                                (key.sign_head(log_id, seq, prev),),
                            )
                    if grants or revoke is not None:
                        # Delivered at commit, to every replica's watcher.
                        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.log_id))
            except psycopg.errors.UniqueViolation:
                raise AuditError(
                    "the log was altered: a record exists beyond its recorded end "
                    "(run `purposeguard audit verify`)",
                    path=self.location,
                ) from None
            except psycopg.Error as error:
                raise self._failed(error, "write") from None
            self._commits += 1
            return seqs

    def import_chain(
        self, entries: Iterable[StoredEntry], grants: Sequence[Grant], *, log_id: str | None = None
    ) -> int:
        """Copy a chain as it is (same seqs and hashes) and its grants into this
        empty log, in one transaction: all of it or nothing. Returns the count."""
        if self.readonly:
            raise AuditError("opened read-only: cannot import", path=self.location)
        psycopg = self._psycopg
        with self._lock:
            conn = self._connection()
            count = 0
            try:
                with conn.transaction():
                    head = conn.execute(
                        "SELECT seq FROM purposeguard_head WHERE id = 1 FOR UPDATE"
                    ).fetchone()
                    existing = conn.execute("SELECT count(*) FROM purposeguard_consent").fetchone()
                    if head is None or int(head[0]) != 0 or int(existing[0]) != 0:
                        raise AuditError(
                            "the destination already holds records or grants: migrate into an empty database",
                            path=self.location,
                        )
                    last = (0, GENESIS)
                    batch: list[tuple[Any, ...]] = []
                    cursor = conn.cursor()
                    for entry in entries:
                        batch.append(
                            (entry.seq, entry.kind, entry.timestamp, entry.data, entry.prev_hash, entry.hash)
                        )
                        last = (entry.seq, entry.hash)
                        count += 1
                        if len(batch) >= 1000:
                            cursor.executemany(
                                f"INSERT INTO purposeguard_audit ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)",
                                batch,
                            )
                            batch = []
                    if batch:
                        cursor.executemany(
                            f"INSERT INTO purposeguard_audit ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)",
                            batch,
                        )
                    if grants:
                        cursor.executemany(
                            "INSERT INTO purposeguard_consent "
                            "(tenant, purpose, category, granted_by, granted_at, expires_at) "
                            "VALUES (%s, %s, %s, %s, %s, %s)",
                            grant_rows(grants),
                        )
                    conn.execute("UPDATE purposeguard_head SET seq = %s, hash = %s WHERE id = 1", last)
                    if log_id:
                        # The same log in a new place: records that name it stay valid.
                        conn.execute(
                            "UPDATE purposeguard_meta SET value = %s WHERE key = 'log_id'", (log_id,)
                        )
                    if self.key is not None and last[0]:
                        # A keyed chain keeps its signed end, under the id its records bind.
                        conn.execute(
                            "INSERT INTO purposeguard_meta (key, value) VALUES ('head_mac', %s) "
                            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                            (self.key.sign_head(log_id or self.log_id, *last),),
                        )
                    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, log_id or self.log_id))
            except psycopg.Error as error:
                raise self._failed(error, "import") from None
            if log_id:
                self.log_id = log_id
            self._commits += 1
            return count

    # -- reading -----------------------------------------------------------------

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        psycopg = self._psycopg
        with self._lock:
            try:
                conn = self._connection()
                return list(conn.execute(sql, params).fetchall())
            except psycopg.Error as error:
                raise self._failed(error, "read") from None

    def entries(self, start: int = 1) -> Iterator[StoredEntry]:
        after = start - 1
        while True:
            rows = self._query(
                f"SELECT {_COLUMNS} FROM purposeguard_audit WHERE seq > %s ORDER BY seq LIMIT 1000", (after,)
            )
            if not rows:
                return
            for row in rows:
                yield _entry(row)
            after = int(rows[-1][0])

    def last(self, n: int) -> list[StoredEntry]:
        rows = self._query(
            f"SELECT {_COLUMNS} FROM purposeguard_audit ORDER BY seq DESC LIMIT %s",
            (min(max(n, 0), 2**63 - 1),),
        )
        return [_entry(row) for row in reversed(rows)]

    def head(self) -> tuple[int, str]:
        rows = self._query("SELECT seq, hash FROM purposeguard_head WHERE id = 1")
        if not rows:
            raise AuditError("damaged audit log: its recorded head is missing", path=self.location)
        return int(rows[0][0]), str(rows[0][1])

    def grants(self, tenant: str | None = None) -> list[Grant]:
        """The grants decisions use (as the SQLite backend lists them): those
        the table holds that the chain's consent records also grant, so that
        a listing never shows a grant added by hand that no decision honours."""
        psycopg = self._psycopg
        with self._lock:
            try:
                kept = self._load(self._connection())
            except psycopg.Error as error:
                raise self._failed(error, "read consents") from None
        if tenant is not None:
            kept = [grant for grant in kept if grant.tenant == tenant]
        # Code-point order, as SQLite's binary collation sorts (not the database's locale).
        return sorted(kept, key=lambda grant: (grant.tenant, grant.purpose, grant.category))

    def generation(self) -> tuple[int, int]:
        # Only meaningful beside cached_grants(): changes arrive by NOTIFY.
        view = self._view
        return (id(view), self._commits)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[tuple[Head, Iterator[StoredEntry]]]:
        # A connection of its own and one REPEATABLE READ transaction: the head
        # and the walk see the same moment while replicas go on appending.
        psycopg = self._psycopg
        try:
            reader = psycopg.connect(self._url, **self._connect_args)
        except psycopg.Error as error:
            raise AuditError(f"cannot connect: {_line(error, self._url)}", path=self.location) from None
        cursor: Any = None
        try:
            try:
                reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                row = reader.execute("SELECT seq, hash FROM purposeguard_head WHERE id = 1").fetchone()
                if row is None:
                    raise AuditError("damaged audit log: its recorded head is missing", path=self.location)
                mac = reader.execute("SELECT value FROM purposeguard_meta WHERE key = 'head_mac'").fetchone()
                cursor = reader.cursor(name="purposeguard_walk")
                cursor.execute(f"SELECT {_COLUMNS} FROM purposeguard_audit ORDER BY seq")
            except psycopg.Error as error:
                raise AuditError(f"cannot read: {_line(error, self._url)}", path=self.location) from None

            def walk() -> Iterator[StoredEntry]:
                while True:
                    try:
                        rows = cursor.fetchmany(1000)
                    except psycopg.Error as error:
                        raise AuditError(
                            f"cannot read: {_line(error, self._url)}", path=self.location
                        ) from None
                    if not rows:
                        return
                    for found in rows:
                        yield _entry(found)

            yield (int(row[0]), str(row[1]), str(mac[0]) if mac else None), walk()
        finally:
            if cursor is not None:
                with contextlib.suppress(Exception):
                    cursor.close()
            with contextlib.suppress(Exception):
                reader.close()

    # -- the consent view ---------------------------------------------------------

    def cached_grants(self, tenant: str) -> tuple[Grant, ...] | None:
        watcher = self._watcher
        if watcher is None or not watcher.is_alive():
            self._start_watcher()
        untrusted = self._untrusted
        if untrusted is not None:
            raise AuditError(untrusted, path=self.location)
        view = self._view
        if view is None:
            raise AuditError(
                f"consents not loaded yet ({self._watch_error or 'connecting'})", path=self.location
            )
        age = time.monotonic() - view.fresh_at
        if age > self.stale_after:
            raise AuditError(
                f"consents not confirmed for {age:.1f}s (bound {self.stale_after:g}s): "
                f"{self._watch_error or 'no contact with the database'}",
                path=self.location,
            )
        return view.by_tenant.get(tenant, ())

    def refresh(self) -> None:
        """Reload every grant now (on this thread), and keep a watcher running."""
        psycopg = self._psycopg
        started = time.monotonic()
        with self._lock:
            try:
                grants = self._load(self._connection())
            except psycopg.Error as error:
                raise self._failed(error, "read consents") from None
        self._publish(grants, started)
        watcher = self._watcher
        if watcher is None or not watcher.is_alive():
            self._start_watcher()

    def _publish(self, grants: Iterable[Grant], started: float) -> None:
        by_tenant: dict[str, list[Grant]] = {}
        for grant in grants:
            by_tenant.setdefault(grant.tenant, []).append(grant)
        with self._view_lock:
            current = self._view
            # A slower load that started earlier never replaces a newer one.
            if current is None or started >= current.fresh_at:
                self._view = _View({k: tuple(v) for k, v in by_tenant.items()}, started)

    def _confirm(self, started: float) -> None:
        with self._view_lock:
            current = self._view
            if current is not None and started > current.fresh_at:
                self._view = _View(current.by_tenant, started)

    def _start_watcher(self) -> None:
        with self._view_lock:
            if self._watcher is not None and self._watcher.is_alive():
                return
            self._stop = threading.Event()
            thread = threading.Thread(
                target=self._watch, args=(self._stop,), name="purposeguard-consent-watch", daemon=True
            )
            self._watcher = thread
        thread.start()

    def _watch(self, stop: threading.Event) -> None:
        psycopg = self._psycopg
        conn: Any = None
        reported = False
        while not stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self._url, **self._connect_args)
                    conn.execute(f"LISTEN {CHANNEL}")
                    started = time.monotonic()
                    self._publish(self._load(conn), started)
                    if reported:
                        logger.warning("purposeguard consent store %s: in contact again", self.location)
                    reported = False
                    self._watch_error = None
                changed = False
                for _ in conn.notifies(timeout=self.heartbeat, stop_after=1):
                    changed = True
                # Every change committed before this query has been notified
                # by the time it returns (PostgreSQL delivers notifications
                # before it reports the query done).
                started = time.monotonic()
                conn.execute("SELECT 1")
                for _ in conn.notifies(timeout=0):
                    changed = True
                if changed or self._untrusted is not None:
                    self._publish(self._load(conn), started)
                else:
                    self._confirm(started)
            except AuditError as error:
                # The consent records do not hold together: cached_grants
                # refuses every consent until a load succeeds.
                if not self._untrusted_reported:
                    self._untrusted_reported = True
                    logger.error("purposeguard consent store %s: %s", self.location, error.reason)
                stop.wait(self.heartbeat)
            except psycopg.Error as error:
                self._watch_error = f"database unreachable ({_line(error, self._url)})"
                if not reported:
                    logger.error(
                        "purposeguard consent store %s: %s; consents are refused after %gs without contact",
                        self.location,
                        self._watch_error,
                        self.stale_after,
                    )
                    reported = True
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
                stop.wait(self.heartbeat)
            except Exception:  # pragma: no cover - the watcher must never die silently
                logger.exception("purposeguard consent watcher failed")
                stop.wait(self.heartbeat)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _load(self, conn: Any) -> list[Grant]:
        """The grants to decide on: those the table holds and the chain's
        consent records also grant. A grant added to (or widened in) the
        table by hand, without its record, is never used."""
        # One snapshot for both, so a change committed in between is not
        # taken for an edit by hand.
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                table = _consent_table(conn)
                chained = self._replay(conn)
        except AuditError as error:
            self._untrusted = error.reason
            raise
        if self._untrusted is not None:
            self._untrusted = None
            self._untrusted_reported = False
        kept, differs = decide_on(table, chained)
        if differs and not self._mismatch_reported:
            self._mismatch_reported = True
            log_table_differs(self.location)
        return kept

    def _replay(self, conn: Any) -> dict[tuple[str, str, str], Grant]:
        # Incremental: every record appended since the last replay, read in
        # pages by the seq index, in the caller's one snapshot with the head.
        with self._replay_lock:
            replay = self._replayer
            if replay is None:
                replay = self._replayer = ConsentReplay(self.key, self.key_id, self.log_id, self.location)
            row = conn.execute("SELECT seq, hash FROM purposeguard_head WHERE id = 1").fetchone()
            if row is None:
                raise AuditError("damaged audit log: its recorded head is missing", path=self.location)
            mac = conn.execute("SELECT value FROM purposeguard_meta WHERE key = 'head_mac'").fetchone()
            while True:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM purposeguard_audit WHERE seq > %s ORDER BY seq LIMIT 1000",
                    (replay.seq,),
                ).fetchall()
                if not rows:
                    break
                replay.feed(_entry(found) for found in rows)
            replay.check_end((int(row[0]), str(row[1]), str(mac[0]) if mac else None))
            return dict(replay.grants)

    def consent_mismatch(self) -> str | None:
        """How the consent table differs from the chain's consent records, read
        in one snapshot; None when they agree."""
        psycopg = self._psycopg
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    table = _consent_table(conn)
                    rows = conn.execute(
                        f"SELECT {_COLUMNS} FROM purposeguard_audit WHERE kind = 'consent' ORDER BY seq"
                    ).fetchall()
            except psycopg.Error as error:
                raise self._failed(error, "read consents") from None
        chained: dict[tuple[str, str, str], Grant] = {}
        try:
            replay_consents((_entry(row) for row in rows), chained, self.key, self.log_id)
        except AuditError as error:
            return error.reason
        return consent_difference(table, chained)

    def close(self) -> None:
        self._stop.set()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout=5)
        with self._lock:
            if self._conn is not None and os.getpid() == self._pid:
                with contextlib.suppress(Exception):
                    self._conn.close()
            self._conn = None
        _OPEN.discard(self)
        forget_key(self.location, self)


def _grant(row: Sequence[Any]) -> Grant:
    tenant, purpose, category, granted_by, granted_at, expires_at = row
    return Grant(
        str(tenant),
        str(purpose),
        str(category),
        str(granted_by),
        float(granted_at),
        None if expires_at is None else float(expires_at),
    )


def _consent_table(conn: Any) -> list[Grant]:
    rows = conn.execute(
        "SELECT tenant, purpose, category, granted_by, granted_at, expires_at FROM purposeguard_consent"
    ).fetchall()
    return [_grant(row) for row in rows]


def check_schema(conn: Any, tables: set[str], location: str) -> str:
    """Refuse a database whose purposeguard tables are not this version's; the log id."""
    if "purposeguard_schema_version" not in tables:
        shown = ", ".join(sorted(tables)[:5])
        raise AuditError(
            f"not a purposeguard audit log: no purposeguard_schema_version table (found {shown})",
            path=location,
        )
    row = conn.execute("SELECT max(version) FROM purposeguard_schema_version").fetchone()
    version = row[0] if row else None
    if version is None:
        raise AuditError("damaged audit log: purposeguard_schema_version is empty", path=location)
    if version < SCHEMA_VERSION:
        raise AuditError(
            f"the database has schema version {version}, this purposeguard uses {SCHEMA_VERSION}: "
            "run `purposeguard audit upgrade URL`",
            path=location,
        )
    if version > SCHEMA_VERSION:
        raise AuditError(
            f"the database has schema version {version}, newer than this purposeguard's "
            f"({SCHEMA_VERSION}): upgrade purposeguard",
            path=location,
        )
    for table, columns in _TABLES.items():
        if table not in tables:
            raise AuditError(f"damaged audit log: table {table} is missing", path=location)
        found = {
            str(r[0])
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s",
                (table,),
            ).fetchall()
        }
        lacking = [c for c in columns if c not in found]
        if lacking:
            raise AuditError(
                f"damaged audit log: table {table} has no column {lacking[0]} (altered by hand?)",
                path=location,
            )
    meta = dict(conn.execute("SELECT key, value FROM purposeguard_meta").fetchall())
    if meta.get("format") != FORMAT:
        raise AuditError("not a purposeguard audit log: its format marker is missing", path=location)
    head = conn.execute("SELECT count(*) FROM purposeguard_head WHERE id = 1").fetchone()
    if not head or int(head[0]) != 1:
        raise AuditError("damaged audit log: its recorded head is missing", path=location)
    return str(meta.get("log_id", ""))


def upgrade(url: str) -> tuple[int, int]:
    """Bring a database's purposeguard schema to this version, one
    transaction per step; ``(from_version, to_version)``."""
    psycopg = _psycopg()
    location = redact(url)
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.Error as error:
        raise AuditError(f"cannot connect: {_line(error, url)}", path=location) from None
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            tables = {
                str(r[0])
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema() AND table_name LIKE 'purposeguard%%'"
                ).fetchall()
            }
            if "purposeguard_schema_version" not in tables:
                raise AuditError(
                    "not a purposeguard audit log: no purposeguard_schema_version table "
                    "(create one with `purposeguard audit init URL`)",
                    path=location,
                )
            row = conn.execute("SELECT max(version) FROM purposeguard_schema_version").fetchone()
            start = int(row[0]) if row and row[0] is not None else 0
            if start > SCHEMA_VERSION:
                raise AuditError(
                    f"the database has schema version {start}, newer than this purposeguard's "
                    f"({SCHEMA_VERSION}): upgrade purposeguard",
                    path=location,
                )
            version = start
            while version < SCHEMA_VERSION:
                steps = _MIGRATIONS.get(version)
                if steps is None:
                    raise AuditError(f"no upgrade from schema version {version}", path=location)
                for statement in steps:
                    conn.execute(statement)
                version += 1
                conn.execute(
                    "INSERT INTO purposeguard_schema_version (version, applied_at) VALUES (%s, %s)",
                    (version, time.time()),
                )
            check_schema(conn, tables, location)
    except psycopg.Error as error:
        raise AuditError(f"cannot upgrade: {_line(error, url)}", path=location) from None
    finally:
        conn.close()
    return start, SCHEMA_VERSION


def _after_fork_in_child() -> None:
    for storage in list(_OPEN):
        storage._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
