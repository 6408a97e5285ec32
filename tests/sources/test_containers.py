"""Labelled containers and scalars work where the plain value does: json,
web frameworks' JSON responses, HTTP clients, database drivers, `is None`."""

from __future__ import annotations

import copy
import json
import pickle
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard import audit
from purposeguard.audit import AuditLog
from purposeguard.consent import ConsentStore, actor_name

EMAIL = "customer_data.content.email"
DOC = "customer_data.content.document"
MARKER = "zq-container-5d1e"


def starlette_test_client() -> type:
    from starlette.exceptions import StarletteDeprecationWarning

    with warnings.catch_warnings():
        # Starlette 1.x prefers httpx2 for its test client and warns when it
        # falls back to httpx; either drives the app the same way.
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from starlette.testclient import TestClient
    return TestClient


def profile() -> dict[str, Any]:
    return pg.label({"name": "Megan", "note": pg.label(MARKER, DOC), "tags": ["a"]}, EMAIL)


@pytest.mark.parametrize(
    "value",
    [{"a": 1}, [1, 2], (1, 2), {1, 2}, frozenset({1, 2})],
    ids=["dict", "list", "tuple", "set", "frozenset"],
)
def test_labelled_containers_are_instances_of_their_type(value: object) -> None:
    labelled = pg.label(value, EMAIL)
    assert isinstance(labelled, type(value)) and labelled == value
    assert pg.labels_of(labelled) == {EMAIL}
    assert pg.labels_of(pickle.loads(pickle.dumps(labelled))) == {EMAIL}
    assert pg.labels_of(copy.deepcopy(labelled)) == {EMAIL}


def test_json_dumps_takes_a_labelled_dict_and_list() -> None:
    data = profile()
    assert json.loads(json.dumps(data)) == {"name": "Megan", "note": MARKER, "tags": ["a"]}
    assert json.dumps(pg.label([1, "x"], EMAIL)) == '[1, "x"]'


def test_a_labelled_container_carries_its_items_labels_too() -> None:
    assert pg.labels_of(profile()) == {EMAIL, DOC}
    assert pg.labels_of(pg.label(profile(), "payment_data")) == {EMAIL, DOC, "payment_data"}


def test_a_labelled_dict_is_still_checked_at_a_guarded_entry() -> None:
    @pg.purpose("advertising")
    def ads(data: object) -> None:
        raise AssertionError("must not run")

    with pytest.raises(pg.PurposeViolation) as caught:
        ads(profile())
    assert {v.category for v in caught.value.violations} == {EMAIL, DOC}


def test_removing_the_label_is_a_transform_not_a_copy() -> None:
    @pg.transform("usage-aggregate")
    def count(data: dict[str, object]) -> dict[str, int]:
        return {"fields": len(data)}

    out = count(pg.label({"a": "b"}, EMAIL))
    assert pg.labels_of(out) == {"usage_data"} and json.dumps(out) == '{"fields": 1}'


def test_flask_jsonifies_a_labelled_dict() -> None:
    import flask

    app = flask.Flask(__name__)

    @app.get("/me")
    def me() -> Any:
        return profile()

    @app.get("/list")
    def listing() -> Any:
        return flask.jsonify(pg.label([pg.label(MARKER, EMAIL)], EMAIL))

    client = app.test_client()
    assert client.get("/me").get_json()["note"] == MARKER
    assert client.get("/list").get_json() == [MARKER]


def test_starlette_and_fastapi_answer_with_a_labelled_dict() -> None:
    from fastapi import FastAPI
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    TestClient = starlette_test_client()

    async def me(request: Request) -> JSONResponse:
        return JSONResponse(profile())

    starlette_app = Starlette(routes=[Route("/me", me)])
    with TestClient(starlette_app) as client:
        assert client.get("/me").json()["note"] == MARKER

    api = FastAPI()

    @api.get("/me")
    def fast_me() -> object:
        return profile()

    with TestClient(api) as client:
        assert client.get("/me").json() == {"name": "Megan", "note": MARKER, "tags": ["a"]}


def test_http_clients_send_a_labelled_dict_as_json() -> None:
    import httpx
    import requests

    request = httpx.Request("POST", "http://127.0.0.1:9/x", json=profile())
    assert json.loads(request.content)["note"] == MARKER
    prepared = requests.Request("POST", "http://127.0.0.1:9/x", json=profile()).prepare()
    assert isinstance(prepared.body, bytes)
    assert json.loads(prepared.body)["note"] == MARKER


@pytest.mark.parametrize("value", [None, True, False], ids=["None", "True", "False"])
def test_none_and_bools_stay_singletons_and_tell_the_zone(value: object) -> None:
    with pg.zone() as state:
        labelled = pg.label(value, EMAIL)
        assert labelled is value
        assert EMAIL in state.categories
    db = sqlite3.connect(":memory:")
    assert db.execute("select ?", (pg.label(value, EMAIL),)).fetchone() == (value,)
    db.close()


def test_a_flag_read_inside_a_request_is_checked_where_the_request_leaves() -> None:
    @pg.purpose("advertising")
    def ads(flag: object) -> None:
        raise AssertionError("must not run")

    pg.configure("trust-center", context_mode="enforce")
    with pg.zone(), pytest.raises(pg.PurposeViolation) as caught:
        ads(pg.label(True, EMAIL))
    assert [v.via for v in caught.value.violations] == ["context"]


def test_the_audit_log_refuses_a_labelled_container(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.db") as log, pytest.raises(audit.AuditError):
        log.append({"kind": "note", "value": pg.label({"a": 1}, EMAIL)})


def test_a_labelled_actor_name_is_kept_through_actor_name_and_audited(tmp_path: Path) -> None:
    pg.configure("trust-center", mode="enforce", audit=tmp_path / "audit.db")
    store = ConsentStore(tmp_path / "consent.db")
    try:
        email = pg.label("megan@contoso.example", "customer_data", tenant="contoso")
        with pytest.raises(pg.PolicyError, match="actor_name"):
            store.grant("contoso", "improvement", ["customer_data"], granted_by=email)
        change = store.grant("contoso", "improvement", ["customer_data"], granted_by=actor_name(email))
        assert change.actor == "megan@contoso.example" and type(change.actor) is str
        sink = audit.attached()
        assert sink is not None
        sink.flush()
        with AuditLog(tmp_path / "audit.db", readonly=True) as log:
            kept = [e.data for e in log.records() if e.kind == "declassification"]
        assert [(d["transform"], d["from_categories"], d["tenant"]) for d in kept] == [
            ("actor-name", ["customer_data"], "contoso")
        ]
        assert "megan" not in json.dumps(kept)
    finally:
        store.close()
        pg.configure("trust-center", audit=False)


def test_actor_name_checks_the_name_like_any_use() -> None:
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PurposeViolation):
        actor_name(pg.label("megan@contoso.example", "payment_data"))
    assert actor_name("plain-admin") == "plain-admin"
