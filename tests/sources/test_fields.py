"""One declaration per field: ``Annotated[T, pg.Category(...)]`` labels the
field's values where dataclasses, attrs and pydantic build the object."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Optional

import attrs
import pydantic
import pytest

import purposeguard as pg

EMAIL = "customer_data.content.email"
DOC = "customer_data.content.document"
MARKER = "zq-field-91b4"


@pg.purpose("advertising")
def ads(value: Any) -> None:
    raise AssertionError("the guard must stop this call")


@dataclasses.dataclass
class Message:
    id: int
    body: Annotated[str, pg.Category(EMAIL)]
    cc: Annotated[Optional[list[str]], pg.Category(EMAIL)] = None
    title: Annotated[str, pg.Category(DOC)] = "untitled"


@dataclasses.dataclass(frozen=True, slots=True)
class FrozenMessage:
    body: Annotated[str, pg.Category(EMAIL)]
    size: int = 0


@dataclasses.dataclass
class Reply(Message):
    quoted: Annotated[str, pg.Category(DOC)] = ""


@attrs.define
class Note:
    text: Annotated[str, pg.Category(DOC)]
    pinned: bool = False


@attrs.frozen
class FrozenNote:
    text: Annotated[str, pg.Category(DOC)]


class Ticket(pydantic.BaseModel):
    id: int
    body: Annotated[str, pg.Category(EMAIL)]
    tags: Annotated[list[str], pg.Category(DOC)] = []


def test_dataclass_field_values_arrive_labelled() -> None:
    message = Message(1, MARKER, ["a@example.com"])
    assert pg.labels_of(message.body) == {EMAIL}
    assert pg.labels_of(message.cc) == {EMAIL} and message.cc == ["a@example.com"]
    assert pg.labels_of(message.title) == {DOC}, "defaults are labelled too"
    assert pg.labels_of(message.id) == frozenset()
    assert pg.labels_of(message) >= {EMAIL, DOC}


def test_a_field_read_from_a_dataclass_is_checked_on_its_own() -> None:
    with pytest.raises(pg.PurposeViolation) as caught:
        ads(Message(1, MARKER).body)
    assert caught.value.category == EMAIL and MARKER not in str(caught.value)


def test_dataclass_assignment_replace_and_asdict_keep_labels() -> None:
    message = Message(1, "first")
    message.body = "second"
    assert pg.labels_of(message.body) == {EMAIL}
    assert pg.labels_of(dataclasses.replace(message, body="third").body) == {EMAIL}
    dumped = dataclasses.asdict(message)
    assert pg.labels_of(dumped["body"]) == {EMAIL} and json.dumps(dumped)
    assert repr(message) == "Message(id=1, body='second', cc=None, title='untitled')"
    assert message == Message(1, "second")


def test_frozen_slotted_dataclasses_and_subclasses_are_labelled() -> None:
    frozen = FrozenMessage(MARKER)
    assert pg.labels_of(frozen.body) == {EMAIL}
    with pytest.raises(dataclasses.FrozenInstanceError):
        frozen.body = "changed"  # type: ignore[misc]
    reply = Reply(2, "body", quoted="quoted")
    assert pg.labels_of(reply.body) == {EMAIL} and pg.labels_of(reply.quoted) == {DOC}


def test_none_in_an_optional_field_stays_none() -> None:
    assert Message(1, "x").cc is None


def test_reading_a_dataclass_field_costs_a_plain_attribute_read() -> None:
    assert "body" in vars(Message(1, "x")), "the value lives in the instance, read without a descriptor"
    assert not hasattr(type(Message.__dict__["body"]), "__get__")


def test_attrs_field_values_arrive_labelled() -> None:
    note = Note(MARKER)
    assert pg.labels_of(note.text) == {DOC}
    note.text = "again"
    assert pg.labels_of(note.text) == {DOC}
    assert pg.labels_of(FrozenNote(MARKER).text) == {DOC}
    assert attrs.asdict(note) == {"text": "again", "pinned": False}


def test_pydantic_validation_labels_and_keeps_what_the_input_carried() -> None:
    incoming = pg.label(MARKER, DOC, tenant="contoso")
    ticket = Ticket(id=1, body=incoming, tags=["x"])
    assert pg.labels_of(ticket.body) == {EMAIL, DOC}
    assert pg.tenant_of(ticket.body) == "contoso"
    assert pg.labels_of(ticket.tags) == {DOC}
    assert pg.labels_of(Ticket.model_validate_json('{"id": 2, "body": "b"}').body) == {EMAIL}
    assert pg.labels_of(ticket) >= {EMAIL, DOC}


def test_pydantic_dump_and_json_still_work() -> None:
    ticket = Ticket(id=1, body=MARKER, tags=["x"])
    assert ticket.model_dump() == {"id": 1, "body": MARKER, "tags": ["x"]}
    assert json.loads(ticket.model_dump_json()) == {"id": 1, "body": MARKER, "tags": ["x"]}
    assert json.loads(json.dumps(ticket.model_dump())) == {"id": 1, "body": MARKER, "tags": ["x"]}
    assert Ticket.model_validate(ticket.model_dump()) == ticket


def test_an_unknown_key_fails_when_the_class_is_defined_naming_class_and_field() -> None:
    with pytest.raises(pg.UnknownKeyError) as caught:

        class Broken(pydantic.BaseModel):
            body: Annotated[str, pg.Category("customer_data.content.emial")]

    assert "customer_data.content.emial" in str(caught.value)
    assert "Broken.body" in str(caught.value)

    with pytest.raises(pg.UnknownKeyError, match="BrokenData.body"):

        @dataclasses.dataclass
        class BrokenData:
            body: Annotated[str, pg.Category("nope")]


def _load(tmp_path: Path, name: str, source: str) -> Any:
    path = tmp_path / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


POSTPONED = """
from __future__ import annotations
import dataclasses
from typing import Annotated
import attrs
import purposeguard as pg

@dataclasses.dataclass
class Letter:
    body: Annotated[str, pg.Category({key!r})]

@attrs.define
class Card:
    text: Annotated[str, pg.Category({key!r})]
"""


def test_postponed_annotations_are_read_when_the_class_is_built(tmp_path: Path) -> None:
    module = _load(tmp_path, "pg_postponed_ok", POSTPONED.format(key=EMAIL))
    assert pg.labels_of(module.Letter("x").body) == {EMAIL}
    assert pg.labels_of(module.Card("x").text) == {EMAIL}
    with pytest.raises(pg.UnknownKeyError, match="Letter.body"):
        _load(tmp_path, "pg_postponed_bad", POSTPONED.format(key="customer_data.nope"))


def test_a_fastapi_request_body_arrives_labelled() -> None:
    from fastapi import FastAPI
    from purposeguard.integrations.asgi import PurposeGuardMiddleware
    from starlette.exceptions import StarletteDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from starlette.testclient import TestClient

    api = FastAPI()
    api.add_middleware(PurposeGuardMiddleware)
    seen: list[frozenset[str]] = []

    @api.post("/tickets")
    def create(ticket: Ticket) -> dict[str, int]:
        seen.append(pg.labels_of(ticket.body))
        return {"id": ticket.id}

    @api.post("/ads")
    def to_ads(ticket: Ticket) -> dict[str, int]:
        ads(ticket.body)
        return {"id": ticket.id}

    with TestClient(api) as client:
        assert client.post("/tickets", json={"id": 3, "body": MARKER}).json() == {"id": 3}
        denied = client.post("/ads", json={"id": 4, "body": MARKER})
    assert seen == [frozenset({EMAIL})]
    assert denied.status_code == 403 and denied.json()["category"] == EMAIL
    assert MARKER not in denied.text
