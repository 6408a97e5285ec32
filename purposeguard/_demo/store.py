"""Where the mail service keeps its tenants' data: SQLite through SQLAlchemy, in memory or in a file.

Each personal column is declared once, in its model's annotation (a message
body is ``customer_data.content.email``, a mailbox owner's address is
``customer_data``, a per-user storage figure is ``usage_data.end_user``, an
administrator's address is ``administrator_data``), and each model names the
column holding its tenant. With ``purposeguard.integrations.sqlalchemy``
instrumented (:func:`purposeguard._demo.running` does it), what the store
reads comes back labelled with the row's tenant: nothing here labels a
value by hand, and the database holds the plain text.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated, Any

from sqlalchemy import create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

import purposeguard as pg

EMAIL = "customer_data.content.email"
DOCUMENT = "customer_data.content.document"
CUSTOMER = "customer_data"
END_USER_USAGE = "usage_data.end_user"
ADMINISTRATOR = "administrator_data"


class Base(DeclarativeBase):
    pass


# Literal keys in the annotations: the static scan of `purposeguard report` reads them.
class User(Base):
    """An end user of a tenant; the directory entry is customer data."""

    __tablename__ = "users"
    __purposeguard_tenant__ = "tenant"

    tenant: Mapped[str] = mapped_column(primary_key=True)
    address: Mapped[Annotated[str, pg.Category("customer_data")]] = mapped_column(primary_key=True)
    name: Mapped[Annotated[str, pg.Category("customer_data")]]
    quota: Mapped[int]


class Administrator(Base):
    """An administrator of a tenant: told about limits and compelled disclosures."""

    __tablename__ = "administrators"
    __purposeguard_tenant__ = "tenant"

    tenant: Mapped[str] = mapped_column(primary_key=True)
    address: Mapped[Annotated[str, pg.Category("administrator_data")]] = mapped_column(primary_key=True)


class Message(Base):
    """A mail in a mailbox: subject and body are content, the sender is customer data."""

    __tablename__ = "messages"
    __purposeguard_tenant__ = "tenant"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(index=True)
    mailbox: Mapped[str]
    sender: Mapped[Annotated[str, pg.Category("customer_data")]]
    subject: Mapped[Annotated[str, pg.Category("customer_data.content.email")]]
    body: Mapped[Annotated[str, pg.Category("customer_data.content.email")]]
    spam: Mapped[bool]
    received: Mapped[float]


class Document(Base):
    """A file in the tenant's document library: its body is content."""

    __tablename__ = "documents"
    __purposeguard_tenant__ = "tenant"

    tenant: Mapped[str] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(primary_key=True)
    owner: Mapped[Annotated[str, pg.Category("customer_data")]]
    body: Mapped[Annotated[str, pg.Category("customer_data.content.document")]]


class StorageUsed(Base):
    """Bytes one mailbox takes: per-user usage data, not content."""

    __tablename__ = "storage_used"
    __purposeguard_tenant__ = "tenant"

    tenant: Mapped[str] = mapped_column(primary_key=True)
    mailbox: Mapped[str] = mapped_column(primary_key=True)
    bytes: Mapped[Annotated[int, pg.Category("usage_data.end_user")]]


# A name for the annotation: SQLAlchemy reads a string annotation's
# arguments by splitting it at commas, so two categories inline would not load.
NoticeText = Annotated[str, pg.Category("customer_data", "usage_data.end_user")]


class Sent(Base):
    """A notice that left for an administrator's inbox: the administrator's
    address, and a text made from the tenant's data (usage figures, and a
    mail's subject where a notice quotes one)."""

    __tablename__ = "outbox"
    __purposeguard_tenant__ = "tenant"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(index=True)
    recipient: Mapped[Annotated[str, pg.Category("administrator_data")]]
    kind: Mapped[str]
    text: Mapped[NoticeText]
    sent: Mapped[float]


class Store:
    """The mail service's tenants, mailboxes, documents and outbox.

    ``path`` is a SQLite file or ``":memory:"``. One connection, shared by the
    server's threads under a lock: the service is small and SQLite is quick.
    What the read methods return are the models' instances (or their labelled
    values), detached from the session that loaded them.
    """

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        url = "sqlite://" if self.path == ":memory:" else f"sqlite:///{self.path}"
        self._engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._lock = threading.Lock()
        Base.metadata.create_all(self._engine)

    def close(self) -> None:
        with self._lock:
            self._engine.dispose()

    def _read(self, statement: Any) -> list[Any]:
        with self._lock, self._sessions() as session:
            return list(session.scalars(statement))

    def _write(self, *rows: Base) -> None:
        with self._lock, self._sessions() as session:
            for row in rows:
                session.merge(row)
            session.commit()

    # -- tenants ------------------------------------------------------------------

    def add_user(self, tenant: str, address: str, name: str, quota: int) -> None:
        self._write(User(tenant=tenant, address=address, name=name, quota=quota))

    def add_administrator(self, tenant: str, address: str) -> None:
        self._write(Administrator(tenant=tenant, address=address))

    def users(self, tenant: str) -> list[User]:
        return self._read(select(User).where(User.tenant == tenant).order_by(User.address))

    def user(self, tenant: str, address: str) -> User | None:
        found = self._read(select(User).where(User.tenant == tenant, User.address == address))
        return found[0] if found else None

    def administrators(self, tenant: str) -> list[str]:
        found = self._read(
            select(Administrator).where(Administrator.tenant == tenant).order_by(Administrator.address)
        )
        return [administrator.address for administrator in found]

    # -- mail ------------------------------------------------------------------------

    def add_message(self, tenant: str, mailbox: str, sender: str, subject: str, body: str, spam: bool) -> int:
        message = Message(
            tenant=tenant,
            mailbox=mailbox,
            sender=sender,
            subject=subject,
            body=body,
            spam=spam,
            received=time.time(),
        )
        with self._lock, self._sessions() as session:
            session.add(message)
            session.commit()
            return int(message.id)

    def messages(self, tenant: str, mailbox: str | None = None) -> list[Message]:
        statement = select(Message).where(Message.tenant == tenant)
        if mailbox is not None:
            statement = statement.where(Message.mailbox == mailbox)
        return self._read(statement.order_by(Message.id))

    # -- documents -----------------------------------------------------------------

    def put_document(self, tenant: str, name: str, owner: str, body: str) -> None:
        self._write(Document(tenant=tenant, name=name, owner=owner, body=body))

    def documents(self, tenant: str) -> list[Document]:
        return self._read(select(Document).where(Document.tenant == tenant).order_by(Document.name))

    # -- usage -------------------------------------------------------------------------

    def set_storage_used(self, tenant: str, mailbox: str, used: int) -> None:
        self._write(StorageUsed(tenant=tenant, mailbox=mailbox, bytes=int(used)))

    def storage_used(self, tenant: str) -> dict[str, int]:
        """Bytes used per mailbox: per-user usage data, labelled as such."""
        return {
            row.mailbox: row.bytes
            for row in self._read(select(StorageUsed).where(StorageUsed.tenant == tenant))
        }

    # -- outbox ------------------------------------------------------------------------

    def send(self, tenant: str, recipient: str, kind: str, text: str) -> None:
        self._write(Sent(tenant=tenant, recipient=recipient, kind=kind, text=str(text), sent=time.time()))

    def outbox(self, tenant: str) -> list[dict[str, Any]]:
        return [
            {"recipient": sent.recipient, "kind": sent.kind, "text": sent.text}
            for sent in self._read(select(Sent).where(Sent.tenant == tenant).order_by(Sent.id))
        ]
