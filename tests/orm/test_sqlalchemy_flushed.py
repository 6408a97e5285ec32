"""SQLAlchemy: what a flush wrote is labelled on the instance that holds it.

The identity map hands a later ``select(Model)`` in the same session the
very instance the application created or changed, and does not load it
again: once the flush has written it, its declared values are what the
database stores, labelled as a load would label them.
"""

import asyncio
import warnings
from collections.abc import Iterator
from typing import Annotated, Any, Optional

import pytest
import sqlalchemy as sa
from purposeguard.integrations import sqlalchemy as pg_sqlalchemy
from sqlalchemy import event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, defer, mapped_column

import purposeguard as pg
from purposeguard._context import MIXED_TENANT

CONTENT = "customer_data.content.document"
SUBJECT = "Printer on fire, again"


class Base(DeclarativeBase):
    pass


class Ticket(Base):
    __tablename__ = "flushed_tickets"
    __purposeguard_tenant__ = "tenant"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str]
    subject: Mapped[Annotated[str, pg.Category(CONTENT)]]
    requester: Mapped[Optional[str]] = mapped_column(info={"purposeguard": "customer_data"})
    status: Mapped[str] = mapped_column(default="open")  # declares nothing


class Counter(Base):
    """A model that declares nothing."""

    __tablename__ = "flushed_counters"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


# SQLAlchemy labelling on for each test, off after it (tests/orm/conftest.py).
pytestmark = pytest.mark.usefixtures("sqlalchemy_instrumented")


@pytest.fixture
def db(engine: Any) -> Any:
    Base.metadata.create_all(engine)
    return engine


@pytest.fixture
def statements(db: Any) -> Iterator[list[str]]:
    """The SQL the engine runs from now on."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement.lstrip().upper())

    event.listen(db, "before_cursor_execute", record)
    yield seen
    event.remove(db, "before_cursor_execute", record)


def _labelled(
    value: Any, tenant: Optional[str] = "contoso", categories: frozenset[str] = frozenset({CONTENT})
) -> bool:
    return pg.labels_of(value) == categories and pg.tenant_of(value) == tenant


def _written(session: Session, how: str) -> None:
    if how == "flush":
        session.flush()
    else:
        session.commit()


# -- read back in the same session ----------------------------------------------------------


@pytest.mark.parametrize("how", ["flush", "commit"])
def test_an_instance_read_back_in_the_session_that_wrote_it_is_labelled(
    db: Any, statements: list[str], how: str
) -> None:
    with Session(db, expire_on_commit=False) as session:
        created = Ticket(id=1, tenant="contoso", subject=SUBJECT, requester="ada@contoso.example")
        session.add(created)
        _written(session, how)
        found = session.scalars(select(Ticket).where(Ticket.id == 1)).one()
        assert found is created  # the identity map's instance, not loaded again
        assert found.subject == SUBJECT
        assert _labelled(found.subject)
        assert _labelled(found.requester, categories=frozenset({"customer_data"}))
        assert type(found.status) is str and type(found.tenant) is str  # declare nothing
        assert not session.dirty
        del statements[:]
        session.commit()
    assert not any(s.startswith(("UPDATE", "INSERT")) for s in statements)


def test_a_guarded_function_refuses_what_the_session_wrote(db: Any) -> None:
    pg.configure("trust-center", mode="enforce")

    @pg.purpose("service.communications")  # may not hold content
    def send_notice(text: str) -> str:
        return "sent"

    with Session(db, expire_on_commit=False) as session:
        with pg.purpose("service.operations"):
            created = Ticket(id=1, tenant="contoso", subject=SUBJECT)
            session.add(created)  # kept (to be returned, say): the identity map hands it back
            session.commit()
        found = session.scalars(select(Ticket)).one()
        assert found is created
        subject = found.subject
        with pytest.raises(pg.PurposeViolation) as caught:
            send_notice(subject)
    violation = caught.value.violations[0]
    assert (violation.via, violation.category, violation.tenant) == ("argument", CONTENT, "contoso")


def test_writing_is_not_a_read_under_the_current_purpose(db: Any) -> None:
    """A purpose that may not read content may still store it: the flush labels what
    it wrote without the check a load makes, and leaves the request's zone as it was."""
    pg.configure("trust-center", mode="enforce", context_mode="enforce")
    with pg.testing.assert_no_violations(), pg.zone(tenant="contoso") as zone:
        with Session(db, expire_on_commit=False) as session, pg.purpose("service.communications"):
            created = Ticket(id=1, tenant="contoso", subject=SUBJECT)
            session.add(created)
            session.commit()
        assert _labelled(created.__dict__["subject"])
        assert zone.categories == frozenset()


def test_an_updated_value_is_labelled_once_flushed(db: Any, statements: list[str]) -> None:
    with Session(db, expire_on_commit=False) as session:
        kept, dropped = (
            Ticket(id=1, tenant="contoso", subject=SUBJECT),
            Ticket(id=2, tenant="contoso", subject="x"),
        )
        session.add_all([kept, dropped])
        session.commit()
        kept.subject = "Printer fixed"
        dropped.subject = "changed, then deleted"
        assert type(kept.subject) is str
        session.delete(dropped)
        session.flush()
        assert session.scalars(select(Ticket)).all() == [kept]
        assert kept.subject == "Printer fixed" and _labelled(kept.subject)
        assert type(dropped.__dict__["subject"]) is str  # deleted: left alone
        assert not session.dirty
        del statements[:]
        session.commit()
    assert not any(s.startswith("UPDATE") for s in statements)


def test_a_model_that_declares_nothing_stays_plain(db: Any) -> None:
    with Session(db, expire_on_commit=False) as session:
        counter, ticket = Counter(id=1, name="tickets"), Ticket(id=1, tenant="contoso", subject=SUBJECT)
        session.add_all([counter, ticket])
        session.commit()
        assert session.scalars(select(Counter)).one() is counter
        assert type(counter.name) is str and pg.labels_of(counter) == frozenset()
        assert _labelled(ticket.subject)


def test_values_labelled_already_keep_their_labels(db: Any) -> None:
    """Not labelled again with the row's tenant: the application's label stays."""
    with Session(db, expire_on_commit=False) as session:
        given = pg.label(SUBJECT, CONTENT, tenant="fabrikam")
        ticket = Ticket(id=1, tenant="contoso", subject=given, requester="ada@contoso.example")
        session.add(ticket)
        session.commit()
        assert ticket.subject is given and pg.tenant_of(ticket.subject) == "fabrikam"
        assert _labelled(ticket.requester, categories=frozenset({"customer_data"}))


def test_a_tenant_that_is_not_loaded_makes_the_value_several_tenants(db: Any) -> None:
    with Session(db) as session:
        session.add(Ticket(id=1, tenant="contoso", subject=SUBJECT))
        session.commit()
    with Session(db, expire_on_commit=False) as session:
        ticket = session.scalars(select(Ticket).options(defer(Ticket.tenant))).one()
        ticket.subject = "Printer fixed"
        session.flush()
        assert "tenant" not in ticket.__dict__  # not loaded to label it
        assert _labelled(ticket.__dict__["subject"], tenant=MIXED_TENANT)


def test_an_instance_left_out_of_the_flush_is_not_labelled(db: Any) -> None:
    with Session(db, expire_on_commit=False) as session:
        written, pending = (
            Ticket(id=1, tenant="contoso", subject=SUBJECT),
            Ticket(id=2, tenant="contoso", subject="x"),
        )
        session.add_all([written, pending])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sa.exc.SADeprecationWarning)  # deprecated in 2.1, still there
            session.flush([written])
        assert _labelled(written.subject)
        assert pending in session.new and type(pending.__dict__["subject"]) is str


def test_after_uninstrument_nothing_written_is_labelled(db: Any) -> None:
    with Session(db, expire_on_commit=False) as session:
        before = Ticket(id=1, tenant="contoso", subject=SUBJECT)
        session.add(before)
        session.commit()
        assert _labelled(before.subject)
        pg_sqlalchemy.uninstrument()
        after = Ticket(id=2, tenant="contoso", subject="written after")
        session.add(after)
        session.commit()
        assert session.get(Ticket, 2) is after
        assert type(after.subject) is str and pg.labels_of(after.subject) == frozenset()


# -- async sessions (expire_on_commit=False is their usual setting) -------------------------


@pytest.mark.parametrize("how", ["flush", "commit"])
def test_an_async_session_reads_back_what_it_wrote_labelled(tmp_path: Any, how: str) -> None:
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    pg.configure("trust-center", mode="enforce")

    @pg.purpose("service.communications")
    def send_notice(text: str) -> str:
        return "sent"

    async def run() -> tuple[Any, list[str], bool]:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'async.db'}")
        seen: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
        try:
            async with engine.begin() as connection:
                await connection.run_sync(Base.metadata.create_all)
            sessions = async_sessionmaker(engine, expire_on_commit=False)
            async with sessions() as session:
                created = Ticket(id=1, tenant="contoso", subject=SUBJECT)
                session.add(created)
                await (session.flush() if how == "flush" else session.commit())
                found = (await session.scalars(select(Ticket).where(Ticket.id == 1))).one()
                assert found is created
                clean = not session.dirty
                del seen[:]
                await session.commit()
                return found.subject, seen, clean
        finally:
            await engine.dispose()

    subject, seen, clean = asyncio.run(run())
    assert _labelled(subject) and clean
    assert not any(s.lstrip().upper().startswith("UPDATE") for s in seen)
    with pytest.raises(pg.PurposeViolation):
        send_notice(subject)


def test_no_purposeguard_type_enters_what_is_stored(db: Any) -> None:
    with Session(db, expire_on_commit=False) as session:
        ticket = Ticket(id=1, tenant="contoso", subject=SUBJECT)
        session.add(ticket)
        session.commit()
        assert _labelled(ticket.subject)
        ticket.subject = ticket.subject + " (edited)"
        session.commit()
    with db.connect() as connection:
        stored = connection.execute(sa.text("select subject from flushed_tickets")).scalar_one()
    assert stored == SUBJECT + " (edited)" and type(stored) is str
