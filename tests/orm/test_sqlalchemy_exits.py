"""SQLAlchemy: the less common ways out of the database are labelled (or refused) too.

Lambda statements, ``with_expression()``, unions that put a literal where the
tenant column was, textual SQL given the model's columns, writes whose SQL
reads declared columns, and labelled values stored in columns that declare
nothing (said on the ``purposeguard`` logger).
"""

import logging
from typing import Annotated, Any, Optional

import pytest
import sqlalchemy as sa
from sqlalchemy import ForeignKey, delete, func, insert, lambda_stmt, literal, select, text, update
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    load_only,
    mapped_column,
    query_expression,
    relationship,
    with_expression,
)

import purposeguard as pg
from purposeguard._context import MIXED_TENANT

EMAIL = "customer_data.content.email"
CONTOSO_BODY = "Contoso's quarterly numbers attached"
FABRIKAM_BODY = "Fabrikam's mail"


class Base(DeclarativeBase):
    pass


class Letter(Base):
    __tablename__ = "exit_letters"
    __purposeguard_tenant__ = "tenant"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str]
    title: Mapped[str]
    body: Mapped[Annotated[str, pg.Category(EMAIL)]]
    # Filled by with_expression() in the query that loads the letter.
    computed: Mapped[Optional[str]] = query_expression()


class Board(Base):
    """A table that declares nothing: what is stored here reads back unlabelled."""

    __tablename__ = "exit_board"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[Optional[str]]


# SQLAlchemy labelling on for each test, off after it (tests/orm/conftest.py).
pytestmark = pytest.mark.usefixtures("sqlalchemy_instrumented")


@pytest.fixture
def db(engine: Any) -> Any:
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Letter(id=1, tenant="contoso", title="hello", body=CONTOSO_BODY))
        session.add(Letter(id=2, tenant="fabrikam", title="other", body=FABRIKAM_BODY))
        session.add(Board(id=1, text="house ad"))
        session.commit()
    return engine


def _refused(run: Any) -> pg.PurposeViolation:
    """``run()`` under advertising, which may not read the letters' bodies: refused at the source."""
    with pytest.raises(pg.PurposeViolation) as caught, pg.purpose("advertising"):
        run()
    assert {v.via for v in caught.value.violations} == {"source"}
    assert {v.category for v in caught.value.violations} == {EMAIL}
    return caught.value


def _bodies_and_tenants(values: Any) -> list[tuple[Any, frozenset[str], Optional[str]]]:
    return [(value, pg.labels_of(value), pg.tenant_of(value)) for value in values]


# -- lambda statements ----------------------------------------------------------------------


def test_a_lambda_statement_is_labelled_as_the_statement_it_stands_for(db: Any) -> None:
    with Session(db) as session:
        rows = session.execute(
            lambda_stmt(lambda: select(Letter.body, Letter.tenant).order_by(Letter.id))
        ).all()
        assert _bodies_and_tenants(row[0] for row in rows) == [
            (CONTOSO_BODY, {EMAIL}, "contoso"),
            (FABRIKAM_BODY, {EMAIL}, "fabrikam"),
        ]
        scalars = session.scalars(lambda_stmt(lambda: select(Letter.body).order_by(Letter.id))).all()
        assert _bodies_and_tenants(scalars) == [
            (CONTOSO_BODY, {EMAIL}, MIXED_TENANT),
            (FABRIKAM_BODY, {EMAIL}, MIXED_TENANT),
        ]
    with db.connect() as connection:
        row = connection.execute(
            lambda_stmt(lambda: select(Letter.body, Letter.tenant).where(Letter.id == 2))
        ).one()
        assert _bodies_and_tenants([row[0]]) == [(FABRIKAM_BODY, {EMAIL}, "fabrikam")]


def test_a_lambda_statement_under_a_forbidden_purpose_is_refused(db: Any) -> None:
    pg.configure("trust-center", mode="enforce")

    @pg.purpose("advertising")
    def pick_ad(session: Session) -> Any:
        return session.scalars(lambda_stmt(lambda: select(Letter.body))).first()

    with Session(db) as session:
        _refused(lambda: session.execute(lambda_stmt(lambda: select(Letter.body))).all())
        _refused(lambda: session.scalars(lambda_stmt(lambda: select(Letter.body))).all())
        with pytest.raises(pg.PurposeViolation) as caught:
            pick_ad(session)
        assert caught.value.violations[0].via == "source"
    with db.connect() as connection:
        _refused(lambda: connection.execute(lambda_stmt(lambda: select(Letter.body))).all())


def test_a_lambda_statement_through_an_async_session(tmp_path: Any) -> None:
    pytest.importorskip("aiosqlite")
    import asyncio

    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'async.db'}")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Letter(id=1, tenant="contoso", title="hello", body=CONTOSO_BODY))
        session.commit()
    engine.dispose()
    pg.configure("trust-center", mode="enforce")

    async def read(purpose: Optional[str]) -> Any:
        async_engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'async.db'}")
        try:
            async with AsyncSession(async_engine) as session:
                statement = lambda_stmt(lambda: select(Letter.body, Letter.tenant))
                if purpose is None:
                    return (await session.execute(statement)).one()[0]
                with pg.purpose(purpose):
                    return (await session.execute(statement)).one()[0]
        finally:
            await async_engine.dispose()

    body = asyncio.run(read(None))
    assert _bodies_and_tenants([body]) == [(CONTOSO_BODY, {EMAIL}, "contoso")]
    with pytest.raises(pg.PurposeViolation) as caught:
        asyncio.run(read("advertising"))
    assert caught.value.violations[0].via == "source"


# -- with_expression() -----------------------------------------------------------------------


def test_an_expression_of_the_rows_own_column_is_labelled_with_its_tenant(db: Any) -> None:
    with Session(db) as session:
        letters = session.scalars(
            select(Letter)
            .options(
                load_only(Letter.id, Letter.tenant), with_expression(Letter.computed, func.lower(Letter.body))
            )
            .order_by(Letter.id)
        ).all()
        assert _bodies_and_tenants(letter.computed for letter in letters) == [
            (CONTOSO_BODY.lower(), {EMAIL}, "contoso"),
            (FABRIKAM_BODY.lower(), {EMAIL}, "fabrikam"),
        ]


def test_an_expression_of_other_rows_is_several_tenants(db: Any) -> None:
    other = sa.orm.aliased(Letter)
    first_body = select(other.body).where(other.id == 2).scalar_subquery()
    with Session(db) as session:
        letter = session.scalars(
            select(Letter).options(with_expression(Letter.computed, first_body)).where(Letter.id == 1)
        ).one()
        assert _bodies_and_tenants([letter.computed]) == [(FABRIKAM_BODY, {EMAIL}, MIXED_TENANT)]
        session.expunge_all()
        # The legacy Query says the same.
        letter = (
            session.query(Letter)
            .options(with_expression(Letter.computed, func.count(Letter.body).over()))
            .filter(Letter.id == 1)
            .one()
        )
        assert pg.tenant_of(letter.computed) == MIXED_TENANT


def test_an_expression_loaded_under_a_forbidden_purpose_is_refused(db: Any) -> None:
    pg.configure("trust-center", mode="enforce")
    only_the_expression = (
        select(Letter)
        .options(load_only(Letter.id), with_expression(Letter.computed, func.lower(Letter.body)))
        .where(Letter.id == 1)
    )
    with Session(db) as session:
        _refused(lambda: session.scalars(only_the_expression).one())
        session.expunge_all()
        # Refreshed into instances already loaded: the same.
        session.get_one(Letter, 1)
        _refused(lambda: session.scalars(only_the_expression.execution_options(populate_existing=True)).one())


def test_a_model_mapped_later_may_name_a_class_not_defined_yet() -> None:
    """Finding a model's query_expression() attributes configures no mapper early."""

    class Later(DeclarativeBase):
        pass

    class Shelf(Later):
        __tablename__ = "exit_shelves"
        id: Mapped[int] = mapped_column(primary_key=True)
        books: Mapped[list["Book"]] = relationship()

    class Book(Later):
        __tablename__ = "exit_books"
        id: Mapped[int] = mapped_column(primary_key=True)
        shelf_id: Mapped[int] = mapped_column(ForeignKey("exit_shelves.id"))
        summary: Mapped[Optional[str]] = query_expression()

    assert Shelf.books.property.mapper.class_ is Book


def test_an_expression_inside_a_zone_is_told_as_it_loads(db: Any) -> None:
    with pg.zone(tenant="contoso") as zone, Session(db) as session:
        session.scalars(
            select(Letter).options(load_only(Letter.id), with_expression(Letter.computed, Letter.body))
        ).all()
        assert EMAIL in zone.categories


# -- unions ----------------------------------------------------------------------------------


def test_a_literal_where_another_select_has_the_tenant_column_is_no_tenant(db: Any) -> None:
    """Fabrikam's body never takes contoso's tenant from a literal beside it."""
    forged = sa.union_all(
        select(Letter.body, Letter.tenant).where(Letter.tenant == "nobody"),
        select(Letter.body, literal("contoso")).where(Letter.tenant == "fabrikam"),
    )
    subquery = forged.subquery()
    with Session(db) as session:
        direct = session.execute(forged).one()[0]
        through_subquery = session.execute(select(subquery.c.body, subquery.c.tenant)).one()[0]
    with db.connect() as connection:
        on_a_connection = connection.execute(forged).one()[0]
    for body in (direct, through_subquery, on_a_connection):
        assert _bodies_and_tenants([body]) == [(FABRIKAM_BODY, {EMAIL}, MIXED_TENANT)]


def test_a_union_whose_every_select_has_the_tenant_column_keeps_each_rows_tenant(db: Any) -> None:
    both = sa.union_all(
        select(Letter.body, Letter.tenant).where(Letter.id == 1),
        select(Letter.body, Letter.tenant).where(Letter.id == 2),
    )
    with Session(db) as session:
        rows = session.execute(both).all()
    assert sorted(_bodies_and_tenants(row[0] for row in rows)) == [
        (CONTOSO_BODY, {EMAIL}, "contoso"),
        (FABRIKAM_BODY, {EMAIL}, "fabrikam"),
    ]


# -- textual SQL given the model's columns --------------------------------------------------


def test_textual_sql_given_declared_columns_is_labelled_as_they_are(db: Any) -> None:
    textual = text("SELECT body, tenant FROM exit_letters ORDER BY id").columns(Letter.body, Letter.tenant)
    expected = [(CONTOSO_BODY, {EMAIL}, "contoso"), (FABRIKAM_BODY, {EMAIL}, "fabrikam")]
    with Session(db) as session:
        assert _bodies_and_tenants(row[0] for row in session.execute(textual)) == expected
        from_statement = select(Letter.body, Letter.tenant).from_statement(textual)
        assert _bodies_and_tenants(row[0] for row in session.execute(from_statement)) == expected
    with db.connect() as connection:
        assert _bodies_and_tenants(row[0] for row in connection.execute(textual)) == expected


def test_textual_sql_given_declared_columns_under_a_forbidden_purpose_is_refused(db: Any) -> None:
    pg.configure("trust-center", mode="enforce")
    textual = text("SELECT body FROM exit_letters").columns(Letter.body)
    with Session(db) as session:
        _refused(lambda: session.execute(textual).all())
        _refused(lambda: session.scalars(select(Letter.body).from_statement(textual)).all())
    with db.connect() as connection:
        _refused(lambda: connection.execute(textual).all())


# -- writes whose SQL reads declared columns ------------------------------------------------


def _board(engine: Any) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(select(Board.id, Board.text).order_by(Board.id)).all())


def test_a_write_that_reads_declared_columns_is_refused_before_it_runs(db: Any) -> None:
    pg.configure("trust-center", mode="enforce")
    before = _board(db)
    body_of_one = select(Letter.body).where(Letter.id == 1).scalar_subquery()
    writes = {
        "insert from select": insert(Board).from_select(["id", "text"], select(Letter.id + 100, Letter.body)),
        "update set from a subquery": update(Board).values(text=body_of_one),
        "update returning a declared column": update(Letter)
        .where(Letter.id == 1)
        .values(title="x")
        .returning(Letter.body),
    }
    for name, statement in writes.items():
        with Session(db) as session:
            _refused(lambda statement=statement, session=session: session.execute(statement))
            session.commit()
        with db.begin() as connection:
            _refused(lambda statement=statement, connection=connection: connection.execute(statement))
        assert _board(db) == before, name

    @pg.purpose("advertising")
    def copy_bodies(session: Session) -> None:
        session.execute(writes["insert from select"])

    with Session(db) as session, pytest.raises(pg.PurposeViolation) as caught:
        copy_bodies(session)
    assert caught.value.violations[0].via == "source"
    assert _board(db) == before


def test_a_writes_where_picks_rows_and_is_not_a_read(db: Any) -> None:
    # As a select's WHERE: it reads into nothing stored or handed back (the
    # ORM's own UPDATE and DELETE find rows by a key that may be declared).
    pg.configure("trust-center", mode="enforce")
    picks = [
        update(Board)
        .where(Board.id.in_(select(Letter.id).where(Letter.body.like("Nobody%"))))
        .values(text="x"),
        delete(Board).where(Board.id.in_(select(Letter.id).where(Letter.body.like("Nobody%")))),
        update(Letter).where(Letter.body.like("Nobody%")).values(title="x"),
    ]
    with pg.testing.assert_no_violations(), pg.purpose("advertising"), db.begin() as connection:
        for statement in picks:
            connection.execute(statement)


def test_writes_that_read_no_declared_column_run_under_any_purpose(db: Any) -> None:
    pg.configure("trust-center", mode="enforce")
    with pg.testing.assert_no_violations(), pg.purpose("advertising"):
        with Session(db) as session:
            session.execute(update(Board).where(Board.id == 1).values(text="new ad"))
            session.execute(insert(Board).from_select(["id", "text"], select(Letter.id + 100, Letter.title)))
            session.add(Board(id=7, text="another ad"))
            session.commit()
        with db.begin() as connection:
            connection.execute(delete(Board).where(Board.id == 7))
            # Writing a letter's body is not reading it.
            connection.execute(update(Letter).where(Letter.id == 1).values(body="replaced"))
    assert [row.text for row in _board(db)] == ["new ad", "hello", "other"]


def test_an_upsert_reads_only_what_it_reads_of_the_stored_row(db: Any) -> None:
    """``excluded.body`` is the value being written; ``Letter.body`` is the stored one."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect_insert = postgresql.insert if db.dialect.name == "postgresql" else sqlite.insert
    pg.configure("trust-center", mode="enforce")

    def upsert(body: Any) -> Any:
        statement = dialect_insert(Letter).values(id=1, tenant="contoso", title="hello", body="replaced")
        return statement.on_conflict_do_update(index_elements=[Letter.id], set_={"body": body(statement)})

    with Session(db) as session:
        with pg.testing.assert_no_violations(), pg.purpose("advertising"):
            session.execute(upsert(lambda statement: statement.excluded.body))
        _refused(lambda: session.execute(upsert(lambda statement: Letter.body + statement.excluded.body)))
        session.commit()
        assert session.get_one(Letter, 1).body == "replaced"


def test_a_zone_learns_what_a_write_reads(db: Any) -> None:
    with pg.zone(tenant="contoso") as zone, Session(db) as session:
        session.execute(
            update(Board).values(text=select(Letter.body).where(Letter.id == 1).scalar_subquery())
        )
        assert EMAIL in zone.categories
        session.rollback()


# -- labelled values stored where nothing is declared ---------------------------------------


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "purposeguard" and "exit_board" in r.getMessage()
    ]


def test_a_labelled_value_stored_in_an_undeclared_column_is_said_once(
    db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="purposeguard")
    with Session(db) as session:
        body = session.get_one(Letter, 1).body
        session.add(Board(id=2, text="copy: " + body))
        session.commit()
        session.add(Board(id=3, text=body))  # the same column and categories: said already
        session.commit()
    said = _said(caplog)
    assert len(said) == 1
    assert "exit_board.text" in said[0] and EMAIL in said[0] and "unlabelled" in said[0]
    assert CONTOSO_BODY not in said[0] and "contoso" not in said[0]
    # Stored all the same: no rule covers storage.
    with Session(db) as session:
        assert session.get_one(Board, 2).text == "copy: " + CONTOSO_BODY


def test_statement_parameters_and_values_are_said_too(db: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="purposeguard")
    body = pg.label("a body", EMAIL, tenant="contoso")
    note = pg.label("a note", "customer_data", tenant="contoso")
    with db.begin() as connection:
        connection.execute(insert(Board), [{"id": 10, "text": body}])
        connection.execute(insert(Board).values(id=11, text=note))
        connection.execute(update(Board).where(Board.id == 11).values(text=sa.bindparam("t")), {"t": body})
    said = _said(caplog)
    assert len(said) == 2
    assert any(EMAIL in line for line in said) and any(
        "customer_data" in line and EMAIL not in line for line in said
    )


def test_an_update_of_a_loaded_instance_is_said(db: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="purposeguard")
    with Session(db) as session:
        letter = session.get_one(Letter, 2)
        board = session.get_one(Board, 1)
        board.text = letter.body.upper()
        session.commit()
    said = _said(caplog)
    assert len(said) == 1 and EMAIL in said[0]


def test_a_copy_in_sql_into_an_undeclared_column_is_said(db: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="purposeguard")
    with Session(db) as session:
        session.execute(insert(Board).from_select(["id", "text"], select(Letter.id + 100, Letter.body)))
        session.commit()
    said = _said(caplog)
    assert len(said) == 1 and EMAIL in said[0]


def test_values_stored_in_declared_columns_or_unlabelled_are_not_said(
    db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="purposeguard")
    with Session(db) as session:
        letter = session.get_one(Letter, 1)
        letter.body = letter.body + " (read)"
        session.add(Letter(id=3, tenant="contoso", title="new", body=pg.label("new body", EMAIL)))
        session.add(Board(id=4, text="plain text"))
        session.commit()
    assert [r for r in caplog.records if r.name == "purposeguard"] == []


def test_textual_sql_naming_a_declared_table_is_said_once_per_table(
    db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from sqlalchemy import text

    caplog.set_level(logging.WARNING, logger="purposeguard")
    with db.connect() as connection:
        # Unlabelled, as documented; said, naming the table, never the statement.
        rows = connection.execute(text("select body from exit_letters where body like 'Contoso%'")).all()
        assert rows and not pg.labels_of(rows[0][0])
        connection.execute(text('SELECT "body" FROM "exit_letters"')).all()
        connection.exec_driver_sql("select title from exit_letters").all()
        connection.execute(text("select 1")).all()
        # Not reads: a migration's statements, the dialect's schema queries.
        connection.execute(text("update exit_letters set title = title where id = 0"))
        if db.dialect.name == "sqlite":
            connection.exec_driver_sql('PRAGMA main.table_info("exit_letters")').all()
    said = [r.getMessage() for r in caplog.records if "textual SQL" in r.getMessage()]
    assert len(said) == 1 and "exit_letters" in said[0]
    assert "Contoso" not in said[0] and "select" not in said[0].lower().split("textual sql")[1][:20]


@pytest.mark.parametrize("kind", ["table", "view"])
def test_a_table_or_view_made_from_a_select_of_declared_columns_reads_them(
    db: Any, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    from sqlalchemy.schema import CreateTableAs, CreateView

    def make(name: str) -> Any:
        selected = select(Letter.id, Letter.body)
        return CreateTableAs(selected, name) if kind == "table" else CreateView(selected, name)

    pg.configure("trust-center", mode="enforce")
    # Under a purpose that may not read the bodies: refused before it runs.
    with db.begin() as connection:
        _refused(lambda: connection.execute(make("exit_copied_refused")))
    assert "exit_copied_refused" not in sa.inspect(db).get_table_names() + sa.inspect(db).get_view_names()
    # Elsewhere it runs, and is said: what it holds reads back unlabelled.
    caplog.set_level(logging.WARNING, logger="purposeguard")
    with db.begin() as connection:
        connection.execute(make("exit_copied"))
        copied = connection.execute(sa.text("select body from exit_copied")).scalars().all()
    assert copied and not pg.labels_of(copied[0])
    said = [r.getMessage() for r in caplog.records if "exit_copied (made from a select)" in r.getMessage()]
    assert len(said) == 1 and EMAIL in said[0] and CONTOSO_BODY not in said[0]
