"""SQLAlchemy: values of a table that names no tenant column are no one tenant's.

A declared child table whose rows' tenant lives on a parent (the usual
normalised schema) holds every tenant's rows: the requesting tenant's
consent must not release another tenant's data from it. Only a model (or
Core table) the application says is one tenant's, whichever zone reads it
(``__purposeguard_tenant__ = None``), gives its values the zone's tenant.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Any, cast

import pytest
import sqlalchemy as sa
from purposeguard.integrations.sqlalchemy import _reading
from sqlalchemy import ForeignKey, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import purposeguard as pg
from purposeguard._context import MIXED_TENANT
from purposeguard.consent import ConsentStore

EMAIL = "customer_data.content.email"


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "tenantless_accounts"
    __purposeguard_tenant__ = "tenant"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str]


class Message(Base):
    """No tenant column of its own: each row belongs to its account's tenant."""

    __tablename__ = "tenantless_messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("tenantless_accounts.id"))
    body: Mapped[Annotated[str, pg.Category(EMAIL)]]


class Memo(Base):
    """Said to be one tenant's, whichever zone reads it (a database per tenant)."""

    __tablename__ = "tenantless_memos"
    __purposeguard_tenant__ = None
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[Annotated[str, pg.Category(EMAIL)]]


core = sa.MetaData()
core_mail = sa.Table(
    "tenantless_core_mail",
    core,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("body", sa.String, info={"purposeguard": EMAIL}),
)
core_memos = sa.Table(
    "tenantless_core_memos",
    core,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("body", sa.String, info={"purposeguard": EMAIL}),
    info={"purposeguard_tenant": None},
)

pytestmark = pytest.mark.usefixtures("sqlalchemy_instrumented")


@pytest.fixture
def db(engine: Any) -> Any:
    Base.metadata.create_all(engine)
    core.create_all(engine)
    with Session(engine) as session:
        session.add_all([Account(id=1, tenant="contoso"), Account(id=2, tenant="fabrikam")])
        session.add_all(
            [
                Message(id=1, account_id=1, body="contoso mail"),
                Message(id=2, account_id=2, body="fabrikam private mail"),
                Memo(id=1, body="our memo"),
            ]
        )
        session.commit()
    with engine.begin() as connection:
        connection.execute(sa.insert(core_mail), [{"id": 1, "body": "a"}, {"id": 2, "body": "b"}])
        connection.execute(sa.insert(core_memos), [{"id": 1, "body": "our core memo"}])
    return engine


@pytest.fixture
def contoso_consents(tmp_path: Any) -> Iterator[ConsentStore]:
    """contoso consented to improvement for its customer data."""
    with ConsentStore(tmp_path / "consent.db") as store:
        pg.configure("trust-center", consents=store)
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
        yield store


def test_values_of_a_model_naming_no_tenant_column_are_several_tenants(db: Any) -> None:
    with Session(db) as session:
        bodies = session.scalars(select(Message.body).order_by(Message.id)).all()
        assert [pg.tenant_of(body) for body in bodies] == [MIXED_TENANT, MIXED_TENANT]
        longest = session.scalar(select(func.max(func.length(Message.body))))
        assert pg.tenant_of(longest) == MIXED_TENANT
        messages = session.scalars(select(Message).order_by(Message.id)).all()
        assert [pg.tenant_of(m.body) for m in messages] == [MIXED_TENANT, MIXED_TENANT]
    with db.connect() as connection:
        rows = connection.execute(select(core_mail.c.body)).all()
        assert {pg.tenant_of(row.body) for row in rows} == {MIXED_TENANT}


def test_one_tenants_consent_does_not_release_a_tenantless_models_rows(
    db: Any, contoso_consents: ConsentStore
) -> None:
    with pg.zone(tenant="contoso"), Session(db) as session:
        with pytest.raises(pg.PurposeViolation) as caught, pg.purpose("improvement"):
            session.scalars(select(Message.body)).all()
        assert {v.tenant for v in caught.value.violations} == {MIXED_TENANT}
        with pytest.raises(pg.PurposeViolation), pg.purpose("improvement"):
            session.get_one(Message, 2)
        with pytest.raises(pg.PurposeViolation), pg.purpose("improvement"), db.connect() as connection:
            connection.execute(select(core_mail.c.body)).all()


def test_a_model_said_to_be_one_tenants_gives_its_values_the_zones_tenant(
    db: Any, contoso_consents: ConsentStore
) -> None:
    with pg.zone(tenant="contoso"), pg.purpose("improvement"), Session(db) as session:
        memo = session.get_one(Memo, 1)
        assert memo.body == "our memo" and pg.tenant_of(memo.body) is None
        assert [pg.tenant_of(b) for b in session.scalars(select(Memo.body)).all()] == [None]
        with db.connect() as connection:
            row = connection.execute(select(core_memos.c.body)).one()
            assert pg.labels_of(row.body) == {EMAIL} and pg.tenant_of(row.body) is None
    # Without consent, still refused: saying whose the rows are widens nothing by itself.
    with pg.zone(tenant="fabrikam"), Session(db) as session:
        with pytest.raises(pg.PurposeViolation), pg.purpose("improvement"):
            session.scalars(select(Memo.body)).all()


def test_a_reflected_table_reads_as_its_model_says_whose_rows_are(db: Any) -> None:
    reflected = sa.MetaData()
    memos = sa.Table("tenantless_memos", reflected, autoload_with=db)
    messages = sa.Table("tenantless_messages", reflected, autoload_with=db)
    with db.connect() as connection:
        memo = connection.execute(select(memos.c.body)).one().body
        message = connection.execute(select(messages.c.body).limit(1)).one().body
    assert pg.labels_of(memo) == {EMAIL} and pg.tenant_of(memo) is None
    assert pg.labels_of(message) == {EMAIL} and pg.tenant_of(message) == MIXED_TENANT


class Ticket(Base):
    """A model with a tenant column, one row of which holds no tenant id."""

    __tablename__ = "tenantless_tickets"
    __purposeguard_tenant__ = "tenant"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str]
    body: Mapped[Annotated[str, pg.Category(EMAIL)]]


DAMAGED_TENANT = " not-a-tenant id "


@pytest.fixture
def damaged(engine: Any) -> Any:
    Base.metadata.create_all(engine)
    # Written past the ORM (an import, another service): the tenant column
    # holds text that is no tenant id.
    with engine.begin() as connection:
        connection.execute(
            sa.insert(cast(sa.Table, Ticket.__table__)),
            [
                {"id": 1, "tenant": DAMAGED_TENANT, "body": "damaged row's mail"},
                {"id": 2, "tenant": "contoso", "body": "ok"},
            ],
        )
    return engine


def test_a_row_whose_tenant_column_holds_no_tenant_id_reads_as_several_tenants(
    damaged: Any,
    contoso_consents: ConsentStore,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every way of reading the row: never an error of the app's read, the
    # values several tenants' (as a flush of such a row labels them), and no
    # tenant's consent releases them.
    caplog.set_level(logging.WARNING, logger="purposeguard")
    # Said once per process: as if for the first time here.
    monkeypatch.setattr(_reading, "_SAID_BAD_TENANT", [])
    with Session(damaged) as session:
        ticket = session.get_one(Ticket, 1)
        assert pg.tenant_of(ticket.body) == MIXED_TENANT
        assert pg.tenant_of(session.get_one(Ticket, 2).body) == "contoso"
        row = session.execute(select(Ticket.body, Ticket.tenant).where(Ticket.id == 1)).one()
        assert pg.tenant_of(row.body) == MIXED_TENANT
    with damaged.connect() as connection:
        table = Ticket.__table__
        row = connection.execute(select(table.c.body, table.c.tenant).where(table.c.id == 1)).one()
        assert pg.tenant_of(row.body) == MIXED_TENANT
    with pg.zone(tenant="contoso"), Session(damaged) as session:
        with pytest.raises(pg.PurposeViolation), pg.purpose("improvement"):
            session.get_one(Ticket, 1)
    # Said on the purposeguard logger once, never with the column's value.
    said = [r for r in caplog.records if "not a tenant id" in r.getMessage()]
    assert len(said) == 1
    assert all(DAMAGED_TENANT.strip() not in record.getMessage() for record in caplog.records)
