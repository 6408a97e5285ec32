"""SQLAlchemy: values of a table that names no tenant column are no one tenant's.

A declared child table whose rows' tenant lives on a parent (the usual
normalised schema) holds every tenant's rows: the requesting tenant's
consent must not release another tenant's data from it. Only a model (or
Core table) the application says is one tenant's, whichever zone reads it
(``__purposeguard_tenant__ = None``), gives its values the zone's tenant.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import pytest
import sqlalchemy as sa
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
