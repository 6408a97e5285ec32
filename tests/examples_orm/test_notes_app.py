"""The notes example (Flask + SQLAlchemy + Flask-Login, a tenant per user): tried as a new user would.

Its features run on values nobody labelled by hand; what the promise forbids
is refused in enforce mode and recorded in trace mode."""

from __future__ import annotations

import gc
import http.cookiejar
import json
import re
import sqlite3
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from purposeguard.integrations import sqlalchemy as pg_sqlalchemy
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

import purposeguard as pg
from purposeguard._scan import scan
from purposeguard._state import STATE

from .conftest import EXAMPLES

CONTENT = "customer_data.content.document"
SECRET = "Flight to Lisbon on Friday; the money for the deposit is in the blue envelope"


@pytest.fixture(autouse=True)
def clean(notes_app_module: Any) -> Iterator[None]:
    from notes_app import features

    features.OUTBOX.sent.clear()
    features.USAGE.clear()
    # Zones another test file left open on purpose (an app that never closes
    # the zone it opened) are not this test's.
    open_before = STATE.flags.opened.value() - STATE.flags.closed.value()
    yield
    pg_sqlalchemy.uninstrument()
    pg.testing.reset()
    # Every request's zone was closed (a response body dropped unclosed
    # closes its zone when it is collected): nothing leaks into the next test.
    gc.collect()
    still_open = STATE.flags.opened.value() - STATE.flags.closed.value()
    assert still_open == open_before, "a request left its zone open"


class _Client(FlaskClient):
    """Flask's test client, closing every response: the request's zone closes
    when the server closes the body, as a real server does."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["buffered"] = True
        return super().open(*args, **kwargs)


def _app(tmp_path: Path, mode: str = "enforce", context_mode: str | None = None) -> Any:
    from notes_app import create_app

    app = create_app(
        f"sqlite:///{tmp_path / 'notes.db'}",
        mode=mode,
        context_mode=context_mode,
        consents=str(tmp_path / "consent.db"),
        secret_key="tests",
    )
    app.testing = True
    app.test_client_class = _Client
    return app


def _signed_in(app: Any, username: str = "alice", email: str = "alice@example.org") -> Any:
    client = app.test_client()
    assert (
        client.post(
            "/signup", json={"username": username, "password": "correct horse", "email": email}
        ).status_code
        == 201
    )
    assert client.post("/login", json={"username": username, "password": "correct horse"}).status_code == 200
    return client


def _with_note(app: Any) -> tuple[Any, int]:
    client = _signed_in(app)
    created = client.post("/notes", json={"title": "trip", "body": SECRET})
    assert created.status_code == 201
    return client, created.get_json()["id"]


# -- the service works --------------------------------------------------------------------


def test_notes_are_written_read_listed_and_searched_without_a_violation(tmp_path: Path) -> None:
    app = _app(tmp_path)
    with pg.testing.assert_no_violations():
        client, note_id = _with_note(app)
        assert client.get("/notes").get_json() == [{"id": note_id, "title": "trip", "preview": SECRET[:60]}]
        assert client.get(f"/notes/{note_id}").get_json()["body"] == SECRET
        assert client.get("/search?q=lisbon+envelope").get_json() == [note_id]
        assert client.get("/search?q=paris").get_json() == []


def test_what_is_loaded_is_labelled_with_the_users_tenant(tmp_path: Path) -> None:
    from notes_app.models import Note, User

    app = _app(tmp_path)
    _with_note(app)
    with Session(app.extensions["notes.engine"]) as session:
        note = session.scalars(select(Note)).one()
        user = session.scalars(select(User)).one()
        assert pg.labels_of(note.body) == {CONTENT} and pg.tenant_of(note.body) == user.tenant
        assert pg.labels_of(user.email) == {"customer_data"}
        assert pg.labels_of(note.title) == frozenset()


def test_the_database_holds_the_plain_text(tmp_path: Path) -> None:
    _with_note(_app(tmp_path))
    with sqlite3.connect(tmp_path / "notes.db") as connection:
        assert connection.execute("select body, typeof(body) from notes").fetchall() == [(SECRET, "text")]


def test_users_see_only_their_own_notes(tmp_path: Path) -> None:
    app = _app(tmp_path)
    _alice, note_id = _with_note(app)
    bob = _signed_in(app, "bob", "bob@example.org")
    assert bob.get(f"/notes/{note_id}").status_code == 404
    assert bob.get("/notes").get_json() == []


def test_bad_request_bodies_are_400s(tmp_path: Path) -> None:
    client = _signed_in(_app(tmp_path))
    answer = client.post("/notes", json={"title": ""})
    assert answer.status_code == 400 and answer.get_json()["fields"] == ["body", "title"]


# -- what the promise forbids ------------------------------------------------------------------


def test_enforce_mode_refuses_ads_chosen_from_a_note(tmp_path: Path) -> None:
    client, note_id = _with_note(_app(tmp_path))
    answer = client.get(f"/notes/{note_id}/ad")
    assert answer.status_code == 403
    assert (answer.get_json()["rule"], answer.get_json()["purpose"]) == ("no-advertising", "advertising")
    assert SECRET not in answer.get_data(as_text=True)


def test_enforce_mode_refuses_the_newsletter_and_nothing_is_sent(tmp_path: Path) -> None:
    from notes_app import features

    client, _ = _with_note(_app(tmp_path))
    answer = client.post("/newsletter")
    assert answer.status_code == 403 and answer.get_json()["purpose"] == "marketing.direct"
    assert features.OUTBOX.sent == []


def test_analytics_over_notes_needs_the_tenants_consent(tmp_path: Path) -> None:
    from notes_app import features

    client, _ = _with_note(_app(tmp_path))
    refused = client.post("/insights")
    assert refused.status_code == 403 and refused.get_json()["purpose"] == "improvement"
    assert not features.USAGE
    assert client.post("/settings/analytics").status_code == 200
    with pg.testing.assert_no_violations():
        allowed = client.post("/insights")
    assert allowed.status_code == 200 and allowed.get_json()["words"] > 5


def test_one_tenants_consent_does_not_cover_another(tmp_path: Path) -> None:
    app = _app(tmp_path)
    alice, _ = _with_note(app)
    assert alice.post("/settings/analytics").status_code == 200
    bob = _signed_in(app, "bob", "bob@example.org")
    assert bob.post("/notes", json={"title": "b", "body": "bob's words here"}).status_code == 201
    assert bob.post("/insights").status_code == 403


def test_trace_mode_runs_every_feature_and_records_every_violation(tmp_path: Path) -> None:
    from notes_app import features
    from notes_app.models import User

    app = _app(tmp_path, mode="trace")
    client, note_id = _with_note(app)
    with pg.testing.capture() as violations:
        assert client.get(f"/notes/{note_id}/ad").get_json() == {"ad": features.ADS["money"]}
        assert client.post("/newsletter").get_json() == {"sent": 1}
        assert client.post("/insights").status_code == 200
    with Session(app.extensions["notes.engine"]) as session:
        tenant = session.scalars(select(User.tenant)).one()
    assert {(v.purpose, v.category, v.mode, v.tenant) for v in violations} >= {
        ("advertising", CONTENT, "trace", tenant),
        ("marketing.direct", "customer_data", "trace", tenant),
        ("improvement", CONTENT, "trace", tenant),
    }
    assert all(SECRET not in repr(v) and "alice@example.org" not in repr(v) for v in violations)


# -- every zone flow enforced ------------------------------------------------------------------

# (feature, method, path, body, expected status); run in this order by one signed-in user.
ALLOWED = [
    ("add a note", "POST", "/notes", {"title": "trip", "body": SECRET}, 201),
    ("list notes", "GET", "/notes", None, 200),
    ("show a note", "GET", "/notes/1", None, 200),
    ("search notes", "GET", "/search?q=lisbon", None, 200),
    ("house ad", "GET", "/promotion", None, 200),
    ("consent to analytics", "POST", "/settings/analytics", None, 200),
    ("analytics with consent", "POST", "/insights", None, 200),
    ("sign out", "POST", "/logout", None, 200),
]
FORBIDDEN = [
    ("ad chosen from a note", "GET", "/notes/1/ad", "no-advertising"),
    ("newsletter", "POST", "/newsletter", "no-direct-marketing"),
    ("analytics without consent", "POST", "/insights", "improvement-only-with-consent"),
]


def _laundering_routes(app: Any) -> None:
    """Views an attacker inside the app could add: each rebuilds the data
    without its label (an f-string, ``format``) before a
    forbidden use, so only the request's zone can see the flow."""
    from flask_login import current_user, login_required
    from notes_app import features
    from notes_app.models import Note

    def first_note() -> Any:
        with Session(app.extensions["notes.engine"]) as session:
            return session.scalars(select(Note).where(Note.owner_id == current_user.id)).first()

    views = {
        "ad-from-note": lambda: features.pick_ad(f"about: {first_note().body}"),
        "ad-from-email": lambda: features.pick_ad("{} likes travel".format(current_user.email)),
        "newsletter-to-email": lambda: features.send_newsletter(f" {current_user.email}".strip()) or "",
        "analytics-over-note": lambda: str(features.count_words(f"{first_note().body} ")),
    }
    for name, view in views.items():
        app.add_url_rule(f"/launder/{name}", name, login_required(view))


LAUNDERED = ["ad-from-note", "ad-from-email", "newsletter-to-email", "analytics-over-note"]


def test_every_allowed_feature_runs_with_every_zone_flow_enforced(tmp_path: Path) -> None:
    """No false positive: signing in loads the user (customer data) into no
    zone until a personal field is read, so a house ad in a signed-in request is served."""
    app = _app(tmp_path, context_mode="enforce")
    client = _signed_in(app)
    refused = []
    with pg.testing.capture() as violations:
        for feature, method, path, payload, status in ALLOWED:
            answer = client.open(path, method=method, json=payload)
            if answer.status_code != status:
                refused.append((feature, answer.status_code, answer.get_json()))
    assert refused == [] and violations == []


@pytest.mark.parametrize(("feature", "method", "path", "rule"), FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_every_forbidden_feature_is_refused_with_every_zone_flow_enforced(
    tmp_path: Path, feature: str, method: str, path: str, rule: str
) -> None:
    from notes_app import features

    client, note_id = _with_note(_app(tmp_path, context_mode="enforce"))
    assert note_id == 1
    answer = client.open(path, method=method)
    assert answer.status_code == 403 and answer.get_json()["rule"] == rule
    assert features.OUTBOX.sent == [] and not features.USAGE


@pytest.mark.parametrize("name", LAUNDERED)
def test_every_laundered_forbidden_flow_is_refused_through_the_zone(tmp_path: Path, name: str) -> None:
    """Secure: a personal field read in the request and rebuilt without its label still cannot reach a forbidden use."""
    from notes_app import features

    app = _app(tmp_path, context_mode="enforce")
    _laundering_routes(app)
    client, _ = _with_note(app)
    with pg.testing.capture() as violations:
        answer = client.get(f"/launder/{name}")
    assert answer.status_code == 403, answer.get_data(as_text=True)
    assert [v.via for v in violations] == ["context"]
    assert features.OUTBOX.sent == [] and not features.USAGE
    body = answer.get_data(as_text=True)
    assert SECRET not in body and "alice@example.org" not in body


def test_a_house_ad_after_reading_the_users_email_is_refused(tmp_path: Path) -> None:
    """The zone learns the user's categories when a personal field is read, not never."""
    app = _app(tmp_path, context_mode="enforce")
    from flask_login import current_user, login_required
    from notes_app import features

    def greet_then_promote() -> Any:
        greeting = f"Hello {current_user.email}"  # read: the zone now holds customer data
        return {"greeting": greeting[:0], "ad": features.house_ad()}

    app.add_url_rule("/greet-and-promote", "greet", login_required(greet_then_promote))
    client = _signed_in(app)
    assert client.get("/promotion").status_code == 200
    answer = client.get("/greet-and-promote")
    assert answer.status_code == 403 and answer.get_json()["rule"] == "no-advertising"


# -- served on loopback -------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, _app(tmp_path), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_served_over_loopback(served: str) -> None:
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def call(method: str, path: str, payload: Any = None) -> tuple[int, Any]:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(
            served + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with opener.open(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    assert (
        call("POST", "/signup", {"username": "carol", "password": "correct horse", "email": "c@example.org"})[
            0
        ]
        == 201
    )
    assert call("POST", "/login", {"username": "carol", "password": "correct horse"})[0] == 200
    status, created = call("POST", "/notes", {"title": "t", "body": SECRET})
    assert status == 201
    assert call("GET", "/notes")[0] == 200
    status, refused = call("GET", f"/notes/{created['id']}/ad")
    assert status == 403 and refused["rule"] == "no-advertising"


# -- how much purposeguard it needed -----------------------------------------------------------


def _glue_lines() -> list[str]:
    lines = []
    for path in sorted((EXAMPLES / "notes_app").glob("*.py")):
        for line in path.read_text(encoding="utf-8").splitlines():
            code = line.split("#", 1)[0]
            if re.search(
                r"\bpg[._]|purposeguard|ConsentStore|\bstore\b|name_the_tenant|_request$|is_authenticated:",
                code,
            ) and not code.lstrip().startswith(('"', "'")):
                lines.append(f"{path.name}: {line.strip()}")
    return lines


def test_no_application_line_labels_a_value_by_hand() -> None:
    found = scan(EXAMPLES / "notes_app")
    assert found.of_kind("label") == []
    assert not [line for line in _glue_lines() if "label(" in line]


def test_the_readme_states_the_glue_it_needed() -> None:
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    stated = re.search(r"notes app[^\n]*?needed (\d+) lines of purposeguard glue", readme)
    assert stated is not None, "README says how many lines of purposeguard glue the notes app needed"
    assert int(stated.group(1)) == len(_glue_lines()), "\n".join(_glue_lines())
