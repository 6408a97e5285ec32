"""SQLAlchemy: what a red-team pass found, kept found.

A subquery over the row's own table reads other rows (their tenants are
not the row's); a Session's ``RETURNING`` of an expression is labelled as a
Connection's is; a labelled Connection result still answers what the
driver's result answers; textual SQL in a select's columns or FROM is said.
"""

import logging
from collections.abc import Callable
from typing import Annotated, Any, Optional

import pytest
from sqlalchemy import case, column, delete, exists, func, insert, literal_column, select, table, text, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, column_property, mapped_column

import purposeguard as pg
from purposeguard._context import MIXED_TENANT

DOC = "customer_data.content.document"
CONTOSO_BODY = "Contoso merger notes"
FABRIKAM_BODY = "Fabrikam bread recipe"


class Base(DeclarativeBase):
    pass


class Memo(Base):
    __tablename__ = "redteam_memos"
    __purposeguard_tenant__ = "tenant"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str]
    title: Mapped[str]
    body: Mapped[Annotated[str, pg.Category(DOC)]]


class Pinned(Base):
    """A column_property reading another row of its own table."""

    __tablename__ = "redteam_pinned"
    __purposeguard_tenant__ = "tenant"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str]
    body: Mapped[Annotated[str, pg.Category(DOC)]] = mapped_column()
    second_body: Mapped[Optional[str]] = column_property(
        select(body).where(id == 2).correlate(None).scalar_subquery()
    )


# SQLAlchemy labelling on for each test, off after it (tests/orm/conftest.py).
pytestmark = pytest.mark.usefixtures("sqlalchemy_instrumented")


@pytest.fixture
def db(engine: Any) -> Any:
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Memo(id=1, tenant="contoso", title="deal", body=CONTOSO_BODY))
        session.add(Memo(id=2, tenant="fabrikam", title="bread", body=FABRIKAM_BODY))
        session.add(Pinned(id=1, tenant="contoso", body=CONTOSO_BODY))
        session.add(Pinned(id=2, tenant="fabrikam", body=FABRIKAM_BODY))
        session.commit()
    return engine


# -- a subquery over the row's own table ----------------------------------------------------

_FABRIKAMS_BODY = select(Memo.body).where(Memo.id == 2).correlate(None).scalar_subquery()
_OTHER_ROWS = {
    "uncorrelated scalar subquery": _FABRIKAMS_BODY,
    "auto-correlated scalar subquery": select(Memo.body).where(Memo.id == 2).scalar_subquery(),
    "case over it": case((_FABRIKAMS_BODY.contains("bread"), "baker"), else_="none"),
    "lower of it": func.lower(_FABRIKAMS_BODY),
    "case over exists": case(
        (exists().where(Memo.body.contains("bread")).correlate(None), "someone bakes"), else_="none"
    ),
    "case over an IN subquery": case(
        (Memo.id.in_(select(Memo.id).where(Memo.body.contains("merger"))), "merging"), else_="none"
    ),
}


@pytest.mark.parametrize("shape", list(_OTHER_ROWS))
def test_a_subquery_over_the_rows_own_table_is_of_several_tenants(db: Any, shape: str) -> None:
    statement = select(Memo.tenant, _OTHER_ROWS[shape].label("v")).where(Memo.id == 1)
    with Session(db) as session:
        row = session.execute(statement).one()
    with db.connect() as connection:
        core_row = connection.execute(statement).one()
    for found in (row, core_row):
        assert found.tenant == "contoso"
        assert pg.labels_of(found.v) == {DOC}
        # Not contoso's: contoso's consent must not release another tenant's data.
        assert pg.tenant_of(found.v) == MIXED_TENANT


def test_another_rows_value_is_not_released_by_the_rows_tenants_consent(db: Any, consents: Any) -> None:
    pg.configure("trust-center", consents=consents, mode="enforce")
    consents.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    statement = select(Memo.tenant, _FABRIKAMS_BODY.label("v")).where(Memo.id == 1)
    with Session(db) as session:
        row = session.execute(statement).one()
    assert row.v == FABRIKAM_BODY
    with pg.zone(tenant="contoso"), pytest.raises(pg.PurposeViolation):
        pg.check(row.v, "improvement")
    with pg.zone(tenant="contoso") as zone, Session(db) as session:
        session.execute(statement).one()
    assert zone.owners == {MIXED_TENANT}


def test_an_explicitly_correlated_reference_is_the_rows_own(db: Any) -> None:
    own_lowered = select(func.lower(Memo.body)).correlate(Memo).scalar_subquery()
    with Session(db) as session:
        rows = session.execute(select(Memo.tenant, own_lowered.label("v")).order_by(Memo.id)).all()
    assert [(row.v, pg.tenant_of(row.v)) for row in rows] == [
        (CONTOSO_BODY.lower(), "contoso"),
        (FABRIKAM_BODY.lower(), "fabrikam"),
    ]


def test_a_column_property_reading_another_row_of_its_table_is_of_several_tenants(db: Any) -> None:
    with Session(db) as session:
        pinned = session.get_one(Pinned, 1)
        assert pinned.second_body == FABRIKAM_BODY
        assert pg.labels_of(pinned.second_body) == {DOC}
        assert pg.tenant_of(pinned.second_body) == MIXED_TENANT
        row = session.execute(select(Pinned.tenant, Pinned.second_body).where(Pinned.id == 1)).one()
        assert pg.tenant_of(row.second_body) == MIXED_TENANT


# -- a Session's RETURNING of an expression -------------------------------------------------

_RETURNED = {
    "label": Memo.body.label("x"),
    "lower": func.lower(Memo.body),
    "case": case((Memo.body.contains("merger"), "m&a"), else_="other"),
}


@pytest.mark.parametrize("shape", list(_RETURNED))
def test_a_sessions_update_returning_an_expression_is_labelled(db: Any, shape: str) -> None:
    with Session(db) as session:
        row = session.execute(
            update(Memo).where(Memo.id == 1).values(title="t").returning(_RETURNED[shape], Memo.tenant)
        ).one()
        session.rollback()
    assert pg.labels_of(row[0]) == {DOC}
    assert pg.tenant_of(row[0]) == "contoso"


def test_a_sessions_insert_and_delete_returning_an_expression_are_labelled(db: Any) -> None:
    with Session(db) as session:
        shouted = session.execute(
            insert(Memo)
            .values(id=5, tenant="contoso", title="x", body="hello")
            .returning(func.upper(Memo.body))
        ).scalar_one()
        lowered = session.execute(
            delete(Memo).where(Memo.id == 2).returning(func.lower(Memo.body))
        ).scalar_one()
        session.rollback()
    assert (shouted, pg.labels_of(shouted), pg.tenant_of(shouted)) == ("HELLO", {DOC}, MIXED_TENANT)
    assert (lowered, pg.labels_of(lowered)) == (FABRIKAM_BODY.lower(), {DOC})


def test_returning_an_instance_beside_an_expression_labels_both(db: Any) -> None:
    with Session(db) as session:
        memo, lowered = session.execute(
            update(Memo).where(Memo.id == 1).values(title="t").returning(Memo, func.lower(Memo.body))
        ).one()
        assert pg.labels_of(memo.body) == {DOC} and pg.tenant_of(memo.body) == "contoso"
        assert pg.labels_of(lowered) == {DOC}
        session.rollback()


# -- a labelled Connection result -----------------------------------------------------------


def _answer(result: Any, name: str) -> tuple[str, type]:
    try:
        return "answers", type(getattr(result, name))
    except Exception as error:  # noqa: BLE001 - raising is an answer too, to be the same
        return "raises", type(error)


_CURSOR_RESULT = ("returns_rows", "is_insert", "cursor", "lastrowid", "supports_sane_rowcount", "rowcount")


def test_a_labelled_connection_result_answers_what_the_drivers_result_answers(db: Any) -> None:
    with db.connect() as connection:
        plain = connection.execute(select(Memo.title).order_by(Memo.id))
        plain.all()
        result = connection.execute(select(Memo.body).order_by(Memo.id))
        assert [_answer(result, name) for name in _CURSOR_RESULT] == [
            _answer(plain, name) for name in _CURSOR_RESULT
        ]
        assert result.returns_rows is True and result.is_insert is False
        assert list(result.keys()) == ["body"]
        bodies = result.scalars().all()
    assert bodies == [CONTOSO_BODY, FABRIKAM_BODY] and pg.labels_of(bodies[0]) == {DOC}
    with pytest.raises(AttributeError):
        result.no_such_attribute  # noqa: B018 - answered by neither result


# -- textual SQL is said --------------------------------------------------------------------

_TEXTUAL: dict[str, Callable[[], Any]] = {
    "text": lambda: text("select body from redteam_memos where id = 1"),
    "text.columns(column())": lambda: text("select body from redteam_memos where id = 1").columns(
        column("body")
    ),
    "text.columns(undeclared column)": lambda: text(
        "select body as title from redteam_memos where id = 1"
    ).columns(Memo.title),
    "from_statement": lambda: select(Memo.title).from_statement(
        text("select id, body as title from redteam_memos where id = 1")
    ),
    "literal_column": lambda: select(literal_column("body")).select_from(Memo).where(Memo.id == 1),
    "lightweight table()": lambda: select(column("body")).select_from(table("redteam_memos")).limit(1),
}


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "purposeguard" and "textual SQL" in r.getMessage()
    ]


@pytest.mark.parametrize("shape", list(_TEXTUAL))
def test_a_textual_read_of_a_declared_table_is_said_once(
    db: Any, shape: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="purposeguard")
    with Session(db) as session:
        value = session.execute(_TEXTUAL[shape]()).scalar()
        session.execute(_TEXTUAL[shape]()).scalar()
    assert value == CONTOSO_BODY and not pg.labels_of(value)
    said = _said(caplog)
    assert len(said) == 1 and "redteam_memos" in said[0] and "Contoso" not in said[0]


def test_a_textual_read_through_a_core_connection_is_said(db: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="purposeguard")
    with db.connect() as connection:
        connection.scalar(select(literal_column("body")).select_from(Memo.__table__).limit(1))
    assert len(_said(caplog)) == 1


def test_selects_that_label_what_they_read_are_not_said(db: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="purposeguard")
    with Session(db) as session:
        session.execute(select(Memo.body)).all()
        session.execute(text("select id, body from redteam_memos").columns(Memo.id, Memo.body)).all()
        session.execute(select(Memo.body).from_statement(text("select body from redteam_memos"))).all()
        # Instances are labelled as they load.
        session.scalars(select(Memo).from_statement(text("select * from redteam_memos"))).all()
        session.scalars(select(Memo).where(text("id = 1"))).all()
        # Nothing textual returned: count(*), EXISTS (SELECT * ...), a textual WHERE.
        session.execute(select(func.count()).select_from(Memo)).scalar()
        session.execute(select(exists().where(Memo.id == 1))).scalar()
        session.execute(select(Memo.title).where(text("id = 1"))).all()
    assert _said(caplog) == []


# -- a NULL read from a declared column ----------------------------------------------------------


def test_a_null_computed_from_a_declared_column_is_a_read_too(db: Any) -> None:
    """No match is an answer too ("no note mentions layoffs"): the NULL stays
    None, the zone learns it, and it is refused where the column is."""
    pg.configure("trust-center", mode="enforce")
    found = case((Memo.body.contains("layoffs"), "yes"))
    statement = select(Memo.tenant, found.label("v")).where(Memo.id == 1)
    with pg.zone() as zone, Session(db) as session:
        assert session.execute(statement).one().v is None
    assert zone.categories == {DOC}
    with pg.purpose("advertising"), Session(db) as session, pytest.raises(pg.PurposeViolation):
        session.execute(statement).one()
