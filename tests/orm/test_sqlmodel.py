"""SQLModel models are SQLAlchemy models: the same annotation labels what they load."""

from collections.abc import Iterator
from typing import Annotated, Any, Optional

import pytest
from purposeguard.integrations import sqlalchemy as pg_sqlalchemy
from sqlmodel import Field, Session, SQLModel, create_engine, select

import purposeguard as pg

EMAIL = "customer_data.content.email"


class Hero(SQLModel, table=True):
    __purposeguard_tenant__ = "team"
    id: Optional[int] = Field(default=None, primary_key=True)
    team: str
    name: str
    secret: Annotated[str, pg.Category(EMAIL)]
    nickname: Optional[str] = Field(
        default=None, sa_column_kwargs={"info": {"purposeguard": "customer_data"}}
    )


@pytest.fixture
def db(database_url: str) -> Iterator[Any]:
    pg_sqlalchemy.instrument()
    engine = create_engine(database_url)
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Hero(team="contoso", name="Deadpond", secret="Dive Wilson", nickname="Dee"))
        session.commit()
    yield engine
    engine.dispose()
    pg_sqlalchemy.uninstrument()


def test_a_loaded_model_has_labelled_fields(db: Any) -> None:
    with Session(db) as session:
        hero = session.exec(select(Hero)).one()
        assert hero.secret == "Dive Wilson"
        assert (pg.labels_of(hero.secret), pg.tenant_of(hero.secret)) == ({EMAIL}, "contoso")
        assert pg.labels_of(hero.nickname) == {"customer_data"}
        assert pg.labels_of(hero.name) == frozenset()


def test_selected_columns_of_a_model_are_labelled(db: Any) -> None:
    with Session(db) as session:
        secret, team = session.exec(select(Hero.secret, Hero.team)).one()
        assert (pg.labels_of(secret), pg.tenant_of(secret)) == ({EMAIL}, "contoso")


def test_model_dump_of_a_loaded_model_still_works(db: Any) -> None:
    with Session(db) as session:
        hero = session.exec(select(Hero)).one()
        assert hero.model_dump()["secret"] == "Dive Wilson"
        assert '"secret":"Dive Wilson"' in hero.model_dump_json()
