"""A declared table read through another object for it (reflected, automapped,
defined again in another MetaData): labelled as the model declares it."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Column, Integer, MetaData, String, Table, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import purposeguard as pg

EMAIL = "customer_data.content.email"
BODY = "Quarterly numbers attached, call me"


class Base(DeclarativeBase):
    pass


class Letter(Base):
    __tablename__ = "reflected_letters"
    __purposeguard_tenant__ = "tenant"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str]
    title: Mapped[str]
    body: Mapped[Annotated[str, pg.Category(EMAIL)]]


@pytest.fixture
def letters(engine: Any, sqlalchemy_instrumented: None) -> Any:
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Letter(id=1, tenant="contoso", title="Q3", body=BODY))
        session.commit()
    return engine


def test_a_reflected_table_reads_as_the_model_declares_it(letters: Any) -> None:
    reflected = Table("reflected_letters", MetaData(), autoload_with=letters)
    with letters.connect() as connection:
        row = connection.execute(select(reflected.c.tenant, reflected.c.title, reflected.c.body)).one()
    assert pg.labels_of(row.body) == {EMAIL}
    assert pg.tenant_of(row.body) == "contoso"
    assert pg.labels_of(row.title) == frozenset()


def test_a_whole_reflected_schema_and_a_table_defined_again_read_so_too(letters: Any) -> None:
    everything = MetaData()
    everything.reflect(bind=letters)
    again = Table(
        "reflected_letters",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("tenant", String),
        Column("body", String),
    )
    with letters.connect() as connection:
        for table in (everything.tables["reflected_letters"], again):
            body = connection.execute(select(table.c.body)).scalar_one()
            assert pg.labels_of(body) == {EMAIL}, table
            # Derived in SQL from it: still labelled.
            lowered = connection.execute(select(sa.func.lower(table.c.body))).scalar_one()
            assert pg.labels_of(lowered) == {EMAIL}


def test_an_automapped_class_loads_labelled_instances(letters: Any) -> None:
    from sqlalchemy.ext.automap import automap_base

    mapped = automap_base()
    mapped.prepare(autoload_with=letters)
    letter_class: Any = mapped.classes.reflected_letters
    with Session(letters) as session:
        letter = session.scalars(select(letter_class)).one()
        assert pg.labels_of(letter.body) == {EMAIL}
        assert pg.tenant_of(letter.body) == "contoso"

        @pg.purpose("advertising")
        def advertise(text: str) -> None:
            """Refused: the reflected column's value is labelled."""

        pg.configure("trust-center", mode="enforce")
        with pytest.raises(pg.PurposeViolation):
            advertise(letter.body)


def test_a_model_that_declares_its_own_columns_is_not_relabelled_by_a_namesake(letters: Any) -> None:
    class OtherBase(DeclarativeBase):
        pass

    class Summary(OtherBase):
        # The same table, mapped by a model that declares it otherwise: its
        # own declarations hold.
        __tablename__ = "reflected_letters"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[Annotated[str, pg.Category("customer_data")]]
        body: Mapped[str]

    with Session(letters) as session:
        summary = session.scalars(select(Summary)).one()
        assert pg.labels_of(summary.title) == {"customer_data"}
        assert pg.labels_of(summary.body) == frozenset()
