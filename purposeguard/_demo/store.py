"""Where the mail service keeps its tenants' data: SQLite, in memory or in a file.

SQLite stores plain text, so the categories live in the schema: every read
labels what it returns (a message body is ``customer_data.content.email``, a
mailbox owner's address is ``customer_data``, a per-user storage figure is
``usage_data.end_user``), with the tenant it belongs to. Administrators'
addresses are kept apart and never enter a guarded path.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import purposeguard as pg

EMAIL = "customer_data.content.email"
DOCUMENT = "customer_data.content.document"
CUSTOMER = "customer_data"
END_USER_USAGE = "usage_data.end_user"
ADMINISTRATOR = "administrator_data"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    tenant TEXT NOT NULL, address TEXT NOT NULL, name TEXT NOT NULL, quota INTEGER NOT NULL,
    PRIMARY KEY (tenant, address));
CREATE TABLE IF NOT EXISTS administrators (
    tenant TEXT NOT NULL, address TEXT NOT NULL, PRIMARY KEY (tenant, address));
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, mailbox TEXT NOT NULL,
    sender TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL, spam INTEGER NOT NULL,
    received REAL NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    tenant TEXT NOT NULL, name TEXT NOT NULL, owner TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (tenant, name));
CREATE TABLE IF NOT EXISTS storage_used (
    tenant TEXT NOT NULL, mailbox TEXT NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (tenant, mailbox));
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, recipient TEXT NOT NULL,
    kind TEXT NOT NULL, text TEXT NOT NULL, sent REAL NOT NULL);
"""


# Literal keys in the annotations: the static scan of `purposeguard report` reads them.
@dataclass
class Message:
    """A mail in a mailbox: subject and body are content, the sender is customer data."""

    id: int
    mailbox: str
    sender: Annotated[str, pg.Category("customer_data")]
    subject: Annotated[str, pg.Category("customer_data.content.email")]
    body: Annotated[str, pg.Category("customer_data.content.email")]
    spam: bool


@dataclass
class Document:
    """A file in the tenant's document library: its body is content."""

    name: str
    owner: Annotated[str, pg.Category("customer_data")]
    body: Annotated[str, pg.Category("customer_data.content.document")]


@dataclass
class User:
    """An end user of a tenant; the directory entry is customer data."""

    address: Annotated[str, pg.Category("customer_data")]
    name: Annotated[str, pg.Category("customer_data")]
    quota: int


class Store:
    """The mail service's tenants, mailboxes, documents and outbox.

    ``path`` is a SQLite file or ``":memory:"``. One connection, shared by the
    server's threads under a lock: the service is small and SQLite is quick.
    """

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    def _write(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self._lock:
            cursor = self._db.execute(sql, args)
            return int(cursor.lastrowid or 0)

    # -- tenants ------------------------------------------------------------------

    def add_user(self, tenant: str, address: str, name: str, quota: int) -> None:
        self._write(
            "INSERT OR REPLACE INTO users (tenant, address, name, quota) VALUES (?, ?, ?, ?)",
            (tenant, address, name, quota),
        )

    def add_administrator(self, tenant: str, address: str) -> None:
        self._write(
            "INSERT OR REPLACE INTO administrators (tenant, address) VALUES (?, ?)", (tenant, address)
        )

    def users(self, tenant: str) -> list[User]:
        return [
            User(pg.label(a, CUSTOMER, tenant=tenant), pg.label(n, CUSTOMER, tenant=tenant), q)
            for a, n, q in self._rows(
                "SELECT address, name, quota FROM users WHERE tenant = ? ORDER BY address", (tenant,)
            )
        ]

    def user(self, tenant: str, address: str) -> User | None:
        for user in self.users(tenant):
            if user.address == address:
                return user
        return None

    def administrators(self, tenant: str) -> list[str]:
        return [
            pg.label(a, ADMINISTRATOR, tenant=tenant)
            for (a,) in self._rows(
                "SELECT address FROM administrators WHERE tenant = ? ORDER BY address", (tenant,)
            )
        ]

    # -- mail ------------------------------------------------------------------------

    def add_message(self, tenant: str, mailbox: str, sender: str, subject: str, body: str, spam: bool) -> int:
        return self._write(
            "INSERT INTO messages (tenant, mailbox, sender, subject, body, spam, received) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (tenant, mailbox, sender, subject, body, int(spam), time.time()),
        )

    def messages(self, tenant: str, mailbox: str | None = None) -> list[Message]:
        sql = "SELECT id, mailbox, sender, subject, body, spam FROM messages WHERE tenant = ?"
        args: tuple[Any, ...] = (tenant,)
        if mailbox is not None:
            sql += " AND mailbox = ?"
            args += (mailbox,)
        return [
            Message(
                i,
                m,
                pg.label(s, CUSTOMER, tenant=tenant),
                pg.label(subj, EMAIL, tenant=tenant),
                pg.label(b, EMAIL, tenant=tenant),
                bool(spam),
            )
            for i, m, s, subj, b, spam in self._rows(sql + " ORDER BY id", args)
        ]

    # -- documents -----------------------------------------------------------------

    def put_document(self, tenant: str, name: str, owner: str, body: str) -> None:
        self._write(
            "INSERT OR REPLACE INTO documents (tenant, name, owner, body) VALUES (?, ?, ?, ?)",
            (tenant, name, owner, body),
        )

    def documents(self, tenant: str) -> list[Document]:
        return [
            Document(n, pg.label(o, CUSTOMER, tenant=tenant), pg.label(b, DOCUMENT, tenant=tenant))
            for n, o, b in self._rows(
                "SELECT name, owner, body FROM documents WHERE tenant = ? ORDER BY name", (tenant,)
            )
        ]

    # -- usage -------------------------------------------------------------------------

    def set_storage_used(self, tenant: str, mailbox: str, used: int) -> None:
        self._write(
            "INSERT OR REPLACE INTO storage_used (tenant, mailbox, bytes) VALUES (?, ?, ?)",
            (tenant, mailbox, int(used)),
        )

    def storage_used(self, tenant: str) -> dict[str, int]:
        """Bytes used per mailbox: per-user usage data, labelled as such."""
        return {
            mailbox: pg.label(used, END_USER_USAGE, tenant=tenant)
            for mailbox, used in self._rows(
                "SELECT mailbox, bytes FROM storage_used WHERE tenant = ?", (tenant,)
            )
        }

    # -- outbox ------------------------------------------------------------------------

    def send(self, tenant: str, recipient: str, kind: str, text: str) -> None:
        self._write(
            "INSERT INTO outbox (tenant, recipient, kind, text, sent) VALUES (?, ?, ?, ?, ?)",
            (tenant, recipient, kind, str(text), time.time()),
        )

    def outbox(self, tenant: str) -> list[dict[str, Any]]:
        return [
            {"recipient": r, "kind": k, "text": t}
            for r, k, t in self._rows(
                "SELECT recipient, kind, text FROM outbox WHERE tenant = ? ORDER BY id", (tenant,)
            )
        ]
