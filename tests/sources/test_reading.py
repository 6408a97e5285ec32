"""Reading is a use: data labelled, produced or loaded while a purpose is
current that may not hold its category is a violation ``via="source"``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Annotated, Any

import pydantic
import pytest
import sqlalchemy as sa
from purposeguard.integrations import sqlalchemy as pg_sqlalchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import purposeguard as pg
from purposeguard import _labels

EMAIL = "customer_data.content.email"
ADDRESS = "customer_data"
MARKER = "zq-read-a17c"


@pg.produces(ADDRESS)
def load_addresses() -> list[str]:
    return ["megan@contoso.example", "alex@contoso.example"]


@pg.purpose("marketing.direct")
def send_newsletter() -> int:
    """The team's newsletter job: it loads the users' addresses itself."""
    return len(load_addresses())


def test_labelling_inside_a_purpose_that_may_not_hold_it_is_a_violation_via_source() -> None:
    with pg.purpose("advertising"), pytest.raises(pg.PurposeViolation) as caught:
        pg.label(MARKER, EMAIL)
    (violation,) = caught.value.violations
    assert (violation.via, violation.category, violation.purpose, violation.rule) == (
        "source",
        EMAIL,
        "advertising",
        "no-advertising",
    )
    assert violation.function.endswith(
        "test_labelling_inside_a_purpose_that_may_not_hold_it_is_a_violation_via_source"
    )
    assert MARKER not in str(caught.value)


def test_a_purpose_that_loads_data_itself_is_refused_in_enforce_mode() -> None:
    with pg.testing.capture() as seen, pytest.raises(pg.PurposeViolation):
        send_newsletter()
    assert [(v.via, v.purpose, v.category) for v in seen] == [("source", "marketing.direct", ADDRESS)]


def test_trace_mode_records_the_read_and_goes_on_with_the_labelled_value() -> None:
    pg.configure("trust-center", mode="trace")
    with pg.testing.capture() as seen:
        assert send_newsletter() == 2
        with pg.purpose("advertising"):
            value = pg.label(MARKER, EMAIL)
    assert pg.labels_of(value) == {EMAIL}
    assert [(v.via, v.mode) for v in seen] == [("source", "trace"), ("source", "trace")]


def test_off_mode_and_allowed_reads_record_nothing() -> None:
    with pg.testing.assert_no_violations():
        with pg.purpose("service.operations"):
            assert pg.labels_of(pg.label(MARKER, EMAIL)) == {EMAIL}
            assert len(load_addresses()) == 2
        pg.configure("trust-center", mode="off")
        send_newsletter()


def test_no_purpose_no_check(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(_labels.SOURCE, "check", lambda *args: calls.append(args) or True)  # type: ignore[func-returns-value]
    pg.label(MARKER, EMAIL)
    pg.label(b"bytes", EMAIL, tenant="contoso")
    pg.label({"a": 1}, EMAIL)
    assert calls == []
    with pg.purpose("service.operations"):
        pg.label(MARKER, EMAIL)
    assert calls == [(frozenset({EMAIL}), "service.operations", None)]


def test_an_allowed_read_is_remembered_until_the_policy_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = _labels.SOURCE.check
    assert real is not None

    def counting(*args: Any) -> bool:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(_labels.SOURCE, "check", counting)
    with pg.purpose("service.operations"):
        for _ in range(5):
            pg.label(MARKER, EMAIL)
    assert len(calls) == 1
    pg.configure("trust-center", mode="trace")
    with pg.purpose("service.operations"):
        pg.label(MARKER, EMAIL)
    assert len(calls) == 2


def test_a_consented_read_is_allowed_for_that_tenant_only() -> None:
    from purposeguard.consent import ConsentStore

    store = ConsentStore(":memory:")
    try:
        store.grant("contoso", "improvement", [EMAIL], granted_by="admin@contoso")
        pg.configure("trust-center", consents=store)
        with pg.purpose("improvement"):
            pg.label(MARKER, EMAIL, tenant="contoso")
            with pg.zone(tenant="contoso"):
                pg.label(MARKER, EMAIL)
            with pytest.raises(pg.PurposeViolation) as caught:
                pg.label(MARKER, EMAIL, tenant="fabrikam")
        assert caught.value.violations[0].tenant == "fabrikam"
    finally:
        store.close()


@dataclasses.dataclass
class Message:
    body: Annotated[str, pg.Category(EMAIL)]


class Ticket(pydantic.BaseModel):
    body: Annotated[str, pg.Category(EMAIL)]


def test_building_annotated_objects_inside_a_forbidden_purpose_is_a_read() -> None:
    with pg.purpose("advertising"):
        with pytest.raises(pg.PurposeViolation) as from_dataclass:
            Message(MARKER)
        with pytest.raises(pg.PurposeViolation) as from_pydantic:
            Ticket(body=MARKER)
    assert from_dataclass.value.violations[0].via == "source"
    assert from_pydantic.value.violations[0].via == "source"


def test_what_is_built_from_read_data_is_not_read_again() -> None:
    @pg.transform("usage-aggregate")
    def count(messages: list[str]) -> int:
        return len(messages)

    bodies = [pg.label(MARKER, EMAIL)]
    with pg.testing.assert_no_violations(), pg.purpose("service.operations"):
        assert pg.labels_of(count(bodies)) == {"usage_data"}
    incoming = pg.label(MARKER, "customer_data.content.document")
    with pg.purpose("service.operations"), pg.testing.assert_no_violations():
        assert pg.labels_of(Ticket(body=incoming).body) == {EMAIL, "customer_data.content.document"}


# -- an ORM load is a read ---------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "pg_read_users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[Annotated[str, pg.Category(ADDRESS)]]


@pytest.fixture
def session() -> Iterator[Session]:
    pg_sqlalchemy.instrument()
    engine = sa.create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as db:
        db.add_all([User(id=1, email="megan@contoso.example"), User(id=2, email="alex@contoso.example")])
        db.commit()
        db.expunge_all()
        yield db
    engine.dispose()
    pg_sqlalchemy.uninstrument()


def test_an_orm_load_inside_a_forbidden_purpose_is_refused(session: Session) -> None:
    @pg.purpose("marketing.direct")
    def newsletter() -> list[str]:
        return [user.email for user in session.scalars(sa.select(User))]

    with pg.testing.capture() as seen, pytest.raises(pg.PurposeViolation):
        newsletter()
    assert {(v.via, v.category) for v in seen} == {("source", ADDRESS)}


def test_an_orm_load_for_an_allowed_purpose_reads_labelled_values(session: Session) -> None:
    with pg.purpose("service.operations"), pg.testing.assert_no_violations():
        emails = [user.email for user in session.scalars(sa.select(User))]
    assert {pg.labels_of(e) for e in emails} == {frozenset({ADDRESS})}
