"""SQLAlchemy: SQL text that reads a declared column is labelled or said, never silent.

A ``column_property`` written with ``literal_column``/``text`` reads a
declared column that no expression can follow: labelled with the categories
it names (of several tenants) and said once. A textual ``INSERT``/``UPDATE``/
``CREATE ... AS`` (a migration's ``op.execute``) that copies a declared column
is said once per table, as a textual ``SELECT`` is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Any, Optional

import pytest
from sqlalchemy import func, literal_column, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, column_property, defer, mapped_column

import purposeguard as pg
from purposeguard._context import MIXED_TENANT

DOCUMENT = "customer_data.content.document"
BODY = "secret merger plans"


class Base(DeclarativeBase):
    pass


class Draft(Base):
    __tablename__ = "textual_drafts"
    __purposeguard_tenant__ = "tenant"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str]
    title: Mapped[Optional[str]]
    body: Mapped[Annotated[str, pg.Category(DOCUMENT)]]
    teaser = column_property(func.substr(literal_column("textual_drafts.body"), 1, 6))
    # Names no declared column: nothing to label, nothing to say.
    one: Mapped[int] = column_property(literal_column("1"))


class Copy(Base):
    """Declares nothing: what is copied here reads back unlabelled."""

    __tablename__ = "textual_copies"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[Optional[str]]


pytestmark = pytest.mark.usefixtures("sqlalchemy_instrumented")


@pytest.fixture(autouse=True)
def _hear_purposeguard(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """What the integration says while the instrumenting fixture runs is
    captured whatever an earlier test left the logger at (autouse: set up
    before the instrumenting fixture)."""
    logger = logging.getLogger("purposeguard")
    # A logging set-up of another test (a dictConfig) may have disabled it.
    propagate, disabled = logger.propagate, logger.disabled
    logger.propagate, logger.disabled = True, False
    caplog.set_level(logging.DEBUG, logger="purposeguard")
    yield
    logger.propagate, logger.disabled = propagate, disabled


@pytest.fixture
def db(engine: Any) -> Any:
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Draft(id=1, tenant="contoso", title="t", body=BODY))
        session.commit()
    return engine


def _said(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "purposeguard" and words in r.getMessage()]


# -- a column_property written in SQL text --------------------------------------------------


def test_a_textual_column_property_is_labelled_with_the_columns_it_names(db: Any) -> None:
    with Session(db) as session:
        draft = session.scalars(select(Draft).options(defer(Draft.body))).one()
        assert draft.teaser == BODY[:6]
        assert pg.labels_of(draft.teaser) == {DOCUMENT} and pg.tenant_of(draft.teaser) == MIXED_TENANT
        assert not pg.labels_of(draft.one)
        teaser = session.execute(select(Draft.teaser, Draft.tenant)).one().teaser
        assert pg.labels_of(teaser) == {DOCUMENT} and pg.tenant_of(teaser) == MIXED_TENANT


def test_a_textual_column_property_read_for_advertising_is_refused(db: Any) -> None:
    with Session(db) as session, pytest.raises(pg.PurposeViolation) as caught, pg.purpose("advertising"):
        session.scalars(select(Draft).options(defer(Draft.body))).one()
    assert {(v.category, v.via) for v in caught.value.violations} == {(DOCUMENT, "source")}


def test_a_textual_column_property_is_said_once_naming_table_and_categories(
    db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Said as instrument() (this test's setup) declares the model; loading says nothing more.
    with Session(db) as session:
        session.scalars(select(Draft)).all()
    records = [*caplog.get_records("setup"), *caplog.get_records("call")]
    said = [
        r.getMessage() for r in records if r.name == "purposeguard" and "column_property" in r.getMessage()
    ]
    assert len(said) == 1
    assert "Draft.teaser" in said[0] and "textual_drafts" in said[0] and DOCUMENT in said[0]
    assert "substr" not in said[0] and "Draft.one" not in said[0]


# -- textual SQL that stores rows -----------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE textual_drafts SET title = body",
        "INSERT INTO textual_copies (id, text) SELECT id, body FROM textual_drafts",
        "CREATE TABLE textual_archive AS SELECT * FROM textual_drafts",
    ],
)
def test_textual_sql_copying_a_declared_column_is_said_once_per_table(
    db: Any, statement: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="purposeguard")
    with Session(db) as session:
        session.execute(text(statement))
        # Another copy from the same table: said already.
        session.execute(text("UPDATE textual_drafts SET title = body || '!'"))
        session.commit()
    said = _said(caplog, "stores rows")
    assert len(said) == 1 and "textual_drafts" in said[0]
    assert BODY not in said[0] and statement not in said[0]


def test_textual_sql_storing_only_undeclared_columns_is_not_said(
    db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="purposeguard")
    with db.begin() as connection:
        connection.execute(text("UPDATE textual_drafts SET title = upper(title)"))
        connection.exec_driver_sql("CREATE INDEX ix_textual_drafts_body ON textual_drafts (body)")
        connection.exec_driver_sql("INSERT INTO textual_copies (id, text) VALUES (7, 'house ad')")
    assert _said(caplog, "stores rows") == []
    with db.begin() as connection:
        connection.exec_driver_sql("UPDATE textual_drafts SET title = body WHERE id = 1")
    assert len(_said(caplog, "stores rows")) == 1
