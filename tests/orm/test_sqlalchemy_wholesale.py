"""SQLAlchemy: reading a loaded instance wholesale tells the request's zone too.

FastAPI's ``jsonable_encoder(note)`` (and a route returning an instance with
no response model) reads the instance's ``__dict__``, not its attributes:
the zone must still learn what it hands out, or the JSON text made from it
(which carries no label) reaches advertising, an ad host or a log line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Annotated, Any

import fastapi.encoders
import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI

# Bound before instrument(), as an application importing it at the top of a module does.
from fastapi.encoders import jsonable_encoder
from purposeguard.integrations.asgi import PurposeGuardMiddleware
from pydantic import BaseModel, ConfigDict
from sqlalchemy import ForeignKey
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

import purposeguard as pg

from ..integrations.conftest import UvicornThread

DOCUMENT = "customer_data.content.document"
BODY = "secret merger plans"


class Base(DeclarativeBase):
    pass


class Folder(Base):
    __tablename__ = "wholesale_folders"
    __purposeguard_tenant__ = "tenant"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str]
    documents: Mapped[list[Document]] = relationship(lazy="selectin")


class Document(Base):
    __tablename__ = "wholesale_documents"
    __purposeguard_tenant__ = "tenant"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str]
    folder_id: Mapped[int] = mapped_column(ForeignKey("wholesale_folders.id"))
    title: Mapped[str]
    body: Mapped[Annotated[str, pg.Category(DOCUMENT)]]


class DocumentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    body: str


pytestmark = pytest.mark.usefixtures("sqlalchemy_instrumented")


@pytest.fixture
def db(engine: Any) -> Any:
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Folder(id=1, tenant="contoso"), Folder(id=2, tenant="fabrikam")])
        session.add(Document(id=1, tenant="contoso", folder_id=1, title="t1", body=BODY))
        session.add(Document(id=2, tenant="fabrikam", folder_id=2, title="t2", body="fabrikam's plans"))
        session.commit()
    return engine


@pg.purpose("advertising")
def pick_ad(profile: str) -> str:
    return "house ad"


def _zone() -> Any:
    zone = pg.current_zone()
    assert zone is not None
    return zone


def test_jsonable_encoder_of_an_instance_tells_the_zone_its_categories_and_tenant(db: Any) -> None:
    with Session(db) as session, pg.zone(tenant="contoso"), pg.purpose("service.operations"):
        document = session.get_one(Document, 1)
        assert DOCUMENT not in _zone().categories  # loading is not reading
        payload = json.dumps(jsonable_encoder(document))
        assert BODY in payload and not pg.labels_of(payload)
        assert DOCUMENT in _zone().categories and _zone().owners == frozenset({"contoso"})
        with pytest.raises(pg.PurposeViolation) as caught:
            pick_ad(payload)
    assert {(v.category, v.via) for v in caught.value.violations} == {(DOCUMENT, "context")}


def test_instances_reached_through_a_list_or_a_relationship_tell_their_own_tenant(db: Any) -> None:
    with Session(db) as session, pg.zone(tenant="contoso"), pg.purpose("service.operations"):
        folders = session.query(Folder).order_by(Folder.id).all()
        jsonable_encoder(folders)
        assert DOCUMENT in _zone().categories
        assert _zone().owners == frozenset({"contoso", "fabrikam"})


def test_what_the_encoder_leaves_out_is_not_told(db: Any) -> None:
    with Session(db) as session, pg.zone(tenant="contoso"), pg.purpose("service.operations"):
        document = session.get_one(Document, 1)
        assert "body" not in jsonable_encoder(document, exclude={"body"})
        assert "body" not in jsonable_encoder(document, include={"id", "title"})
        assert DOCUMENT not in _zone().categories
        pick_ad("no content here")


def test_a_response_model_reading_attributes_tells_the_zone(db: Any) -> None:
    with Session(db) as session, pg.zone(tenant="contoso"), pg.purpose("service.operations"):
        DocumentOut.model_validate(session.get_one(Document, 1))
        assert DOCUMENT in _zone().categories


def test_uninstrument_puts_fastapis_encoder_back() -> None:
    from purposeguard.integrations import sqlalchemy as pg_sqlalchemy

    wrapped = fastapi.encoders.jsonable_encoder
    assert wrapped is not jsonable_encoder and fastapi.routing.jsonable_encoder is wrapped
    pg_sqlalchemy.uninstrument()
    try:
        assert fastapi.encoders.jsonable_encoder is jsonable_encoder
        assert fastapi.routing.jsonable_encoder is jsonable_encoder
    finally:
        pg_sqlalchemy.instrument()
    assert fastapi.encoders.jsonable_encoder is not jsonable_encoder


# -- a route returning an instance, served by uvicorn on loopback ----------------------------


@pytest.fixture
def served(db: Any) -> Iterator[tuple[str, list[tuple[list[str], list[str]]]]]:
    api = FastAPI()

    @api.get("/documents/{document_id}", response_model=None)
    def read_document(document_id: int) -> Any:  # FastAPI encodes vars(document)
        with Session(db) as session:
            return session.get_one(Document, document_id)

    # What the request's zone holds once FastAPI has written the response.
    seen: list[tuple[list[str], list[str]]] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        await api(scope, receive, send)
        if scope["type"] == "http":
            seen.append((sorted(_zone().categories), sorted(_zone().owners)))

    app = PurposeGuardMiddleware(recording, tenant_from=lambda scope: "contoso")
    with UvicornThread(app) as server:
        yield server.url, seen


def test_a_route_returning_an_instance_tells_the_requests_zone(
    served: tuple[str, list[tuple[list[str], list[str]]]],
) -> None:
    url, seen = served
    response = httpx.get(url + "/documents/1", timeout=10)
    assert response.status_code == 200 and response.json()["body"] == BODY
    # The server notes the zone once the response has gone out: the client
    # can read it first (bounded wait, not a timing assertion).
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [([DOCUMENT], ["contoso"])]
