"""Tables: each personal field declared once, where it is declared."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from flask_login import UserMixin
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

import purposeguard as pg

CONTENT = "customer_data.content.document"


class Base(DeclarativeBase):
    pass


class User(UserMixin, Base):
    __tablename__ = "users"
    __purposeguard_tenant__ = "tenant"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), unique=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    email: Mapped[Annotated[str, pg.Category("customer_data")]] = mapped_column(String(254))
    newsletter: Mapped[bool] = mapped_column(default=True)
    notes: Mapped[list[Note]] = relationship(back_populates="owner", order_by="Note.id")


class Note(Base):
    __tablename__ = "notes"
    __purposeguard_tenant__ = "tenant"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[Annotated[str, pg.Category(CONTENT)]]
    created: Mapped[datetime] = mapped_column(default=lambda: datetime.now(timezone.utc))
    owner: Mapped[User] = relationship(back_populates="notes")
