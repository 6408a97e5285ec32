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


def _automapped(engine: Any, table: str) -> Any:
    """The class automap makes for ``table`` of the database behind ``engine``."""
    from sqlalchemy.ext.automap import automap_base

    mapped = automap_base()
    mapped.prepare(autoload_with=engine)
    return getattr(mapped.classes, table)


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
    letter_class = _automapped(letters, "reflected_letters")
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


class Memo(Base):
    """No tenant column: an automapped class of its table must still load."""

    __tablename__ = "reflected_memos"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[Annotated[str, pg.Category(EMAIL)]]


def test_automapping_a_table_whose_model_has_no_tenant_loads_labelled(letters: Any) -> None:
    from purposeguard._context import MIXED_TENANT

    with Session(letters) as session:
        session.add(Memo(id=1, text=BODY))
        session.commit()
    memo_class = _automapped(letters, "reflected_memos")
    with Session(letters) as session:
        memo = session.scalars(select(memo_class)).one()
        assert pg.labels_of(memo.text) == {EMAIL}
        # As the model's own values: rows that name no tenant are several tenants'.
        assert pg.tenant_of(memo.text) == MIXED_TENANT


def test_a_table_object_without_the_tenant_column_reads_several_tenants_data(letters: Any) -> None:
    from purposeguard._context import MIXED_TENANT

    without_tenant = Table(
        "reflected_letters", MetaData(), Column("id", Integer, primary_key=True), Column("body", String)
    )
    reflected = Table("reflected_letters", MetaData(), autoload_with=letters, include_columns=["id", "body"])
    with letters.connect() as connection:
        for table in (without_tenant, reflected):
            body = connection.execute(select(table.c.body)).scalar_one()
            assert pg.labels_of(body) == {EMAIL}
            # Never no one's: no one tenant's consent may widen its use.
            assert pg.tenant_of(body) == MIXED_TENANT


def test_names_compare_without_case_and_a_table_s_own_declarations_only_add(letters: Any) -> None:
    shouted = Table(
        "REFLECTED_LETTERS", MetaData(), Column("ID", Integer, primary_key=True), Column("BODY", String)
    )
    own = Table(
        "reflected_letters",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("title", String, info={"purposeguard": "customer_data"}),
        Column("body", String),
    )
    with letters.connect() as connection:
        if letters.dialect.name == "sqlite":
            # (PostgreSQL quotes a name in capitals: another table there.)
            assert pg.labels_of(connection.execute(select(shouted.c.BODY)).scalar_one()) == {EMAIL}
        row = connection.execute(select(own.c.title, own.c.body)).one()
    assert pg.labels_of(row.title) == {"customer_data"}
    assert pg.labels_of(row.body) == {EMAIL}


def test_a_class_automapped_before_its_model_is_declared_takes_the_declarations_then(
    engine: Any, sqlalchemy_instrumented: None
) -> None:
    # A name of this run's own: the model made in another run is declared too.
    name = f"late_letters_{engine.dialect.name}"
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, body VARCHAR)")
        connection.exec_driver_sql(f"INSERT INTO {name} VALUES (1, '{BODY}')")
    late_class = _automapped(engine, name)
    with Session(engine) as session:
        assert pg.labels_of(session.scalars(select(late_class)).one().body) == frozenset()

    class LateBase(DeclarativeBase):
        pass

    class LateLetter(LateBase):
        # Imported late (a module loaded on first use): declared after the automap.
        __tablename__ = name
        id: Mapped[int] = mapped_column(primary_key=True)
        body: Mapped[Annotated[str, pg.Category(EMAIL)]]

    with Session(engine) as session:
        session.scalars(select(LateLetter)).one()
    with Session(engine) as session:
        assert pg.labels_of(session.scalars(select(late_class)).one().body) == {EMAIL}


def test_a_model_s_schema_is_preferred_to_a_namesake_without_one(
    engine: Any, sqlalchemy_instrumented: None
) -> None:
    from purposeguard.integrations.sqlalchemy._declarations import _namesake

    class SchemaBase(DeclarativeBase):
        pass

    class PlainNote(SchemaBase):
        __tablename__ = "schema_notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        body: Mapped[Annotated[str, pg.Category(EMAIL)]]

    class StaffNote(SchemaBase):
        __tablename__ = "schema_notes"
        __table_args__ = {"schema": "hr"}
        id: Mapped[int] = mapped_column(primary_key=True)
        ssn: Mapped[Annotated[str, pg.Category("customer_data")]]

    with Session(engine) as session:
        # Declared as they are first loaded.
        for model in (PlainNote, StaffNote):
            try:
                session.scalars(select(model)).all()
            except sa.exc.DBAPIError:
                session.rollback()
    in_hr = _namesake(Table("schema_notes", MetaData(), Column("ssn", String), schema="hr"))
    unnamed = _namesake(Table("schema_notes", MetaData(), Column("ssn", String)))
    assert in_hr is not None and unnamed is not None
    assert in_hr.columns == {"ssn": ("customer_data",)}
    # A table that names no schema may be either: both declarations hold.
    assert unnamed.columns == {"body": (EMAIL,), "ssn": ("customer_data",)}
