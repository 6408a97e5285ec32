"""The WSGI middleware with Flask: its test client and a real werkzeug server on loopback."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from flask import Blueprint, Flask, Response, jsonify
from purposeguard.integrations.wsgi import PurposeGuardMiddleware, init_app, route_purpose

import purposeguard as pg

from .conftest import Signer, free_port, sign_baggage, wait_for_port

CONTENT = "customer_data.content.email"


def flask_app(state_of: Callable[[], dict[str, Any]], marker: str, testing: bool) -> Flask:
    app = Flask("purposeguard-test")
    app.testing = testing

    @app.get("/ops")
    @route_purpose("service.operations")
    def ops() -> Any:
        return jsonify(state_of())

    @app.get("/guarded/<int:item>")
    @pg.purpose("service.operations")
    def guarded(item: int) -> Any:
        return jsonify({"item": item, **state_of()})

    @app.get("/comms/<item>")
    def comms(item: str) -> Any:
        return jsonify(state_of())

    @app.get("/plain")
    def plain() -> Any:
        return jsonify(state_of())

    @app.get("/leak")
    def leak() -> Any:
        body = pg.label(marker, CONTENT)
        pg.check(body)
        return jsonify({"sent": str(body)})

    @app.get("/boom")
    def boom() -> Any:
        raise ValueError("an ordinary bug")

    @app.get("/stream")
    @route_purpose("service.operations")
    def stream() -> Response:
        def chunks() -> Iterator[str]:
            for _ in range(3):
                yield json.dumps(state_of()) + "\n"

        return Response(chunks(), mimetype="application/x-ndjson")

    init_app(
        app,
        tenant_header="x-tenant",
        purposes={"/comms/*": "service.communications", "/leak": "service.communications"},
    )
    return app


class FlaskClient:
    """The Flask test client and httpx over loopback, behind one small interface."""

    def __init__(self, app: Flask, url: str | None) -> None:
        self.app = app
        self.http = httpx.Client(base_url=url, timeout=10) if url else None

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
        if self.http is not None:
            response = self.http.get(path, headers=headers)
            return response.status_code, response.headers.get("content-type", ""), response.text
        # Closing the response closes the request's zone, as a WSGI server does.
        with self.app.test_client() as test_client, test_client.get(path, headers=headers) as result:
            return result.status_code, result.content_type, result.get_data(as_text=True)


@pytest.fixture(scope="module")
def flask_server(serve_wsgi_module: Callable[[Any], Any], state_of: Any, marker: str) -> tuple[Flask, str]:
    app = flask_app(state_of, marker, testing=False)
    return app, serve_wsgi_module(app).url


@pytest.fixture(params=["test_client", "werkzeug"])
def client(request: pytest.FixtureRequest, state_of: Any, marker: str) -> Iterator[FlaskClient]:
    if request.param == "werkzeug":
        app, url = request.getfixturevalue("flask_server")
        wrapped = FlaskClient(app, url)
    else:
        wrapped = FlaskClient(flask_app(state_of, marker, testing=True), None)
    yield wrapped
    if wrapped.http is not None:
        wrapped.http.close()


def test_route_purpose_and_tenant_header_reach_the_view(client: FlaskClient) -> None:
    status, _, text = client.get("/ops", headers={"x-tenant": "contoso"})
    assert status == 200
    assert json.loads(text) == {"purpose": "service.operations", "tenant": "contoso", "zone": []}


def test_pg_purpose_view_is_found_before_it_runs(client: FlaskClient) -> None:
    _, _, text = client.get("/guarded/3")
    assert json.loads(text) == {"item": 3, "purpose": "service.operations", "tenant": None, "zone": []}


def test_routes_with_path_parameters_are_matched_by_flask_alone(state_of: Any, marker: str) -> None:
    # The route's purpose comes from Flask's own URL match: a path with a new
    # id costs no second match in the middleware (one bind per request).
    app = flask_app(state_of, marker, testing=True)
    binds: list[str] = []
    bind = app.url_map.bind_to_environ

    def counting_bind(environ: Any, *args: Any, **kwargs: Any) -> Any:
        binds.append(environ["PATH_INFO"])
        return bind(environ, *args, **kwargs)

    app.url_map.bind_to_environ = counting_bind  # type: ignore[method-assign]
    with app.test_client() as test_client:
        for item in range(5):
            with test_client.get(f"/guarded/{item}") as response:
                assert response.json == {
                    "item": item,
                    "purpose": "service.operations",
                    "tenant": None,
                    "zone": [],
                }
    assert binds == [f"/guarded/{item}" for item in range(5)]


def test_a_view_replaced_in_view_functions_brings_its_own_purpose(state_of: Any, marker: str) -> None:
    app = flask_app(state_of, marker, testing=True)
    with app.test_client() as test_client, test_client.get("/ops") as response:
        assert (response.json or {}).get("purpose") == "service.operations"

    @route_purpose("service.security")
    def secured() -> Any:
        return jsonify(state_of())

    app.view_functions["ops"] = secured
    with app.test_client() as test_client, test_client.get("/ops") as response:
        assert (response.json or {}).get("purpose") == "service.security"


def test_the_route_mark_applies_under_a_zone_the_app_opened_itself(state_of: Any, marker: str) -> None:
    # A request_started receiver (or a session interface) that opens a zone of
    # its own for the rest of the request does not hide the route's mark.
    from flask import request_started

    app = flask_app(state_of, marker, testing=True)
    opened: list[Any] = []

    def open_zone(sender: Any, **extra: Any) -> None:
        inner = pg.zone(tenant="fabrikam")
        inner.__enter__()
        opened.append(inner)

    request_started.connect(open_zone, app)
    try:
        with app.test_client() as test_client, test_client.get("/ops") as response:
            assert (response.json or {}).get("purpose") == "service.operations"
            assert (response.json or {}).get("tenant") == "fabrikam"
    finally:
        request_started.disconnect(open_zone, app)
    assert len(opened) == 1


def test_route_marks_survive_an_app_replacing_its_url_value_preprocessors(state_of: Any, marker: str) -> None:
    app = flask_app(state_of, marker, testing=True)
    seen: list[str | None] = []
    # After init_app, an app (or extension) sets the list anew: the marks go
    # back first in line before the first request.
    app.url_value_preprocessors[None] = [lambda endpoint, values: seen.append(pg.current_purpose())]
    with app.test_client() as test_client, test_client.get("/ops") as response:
        assert (response.json or {}).get("purpose") == "service.operations"
    assert seen == ["service.operations"]


def _admin_app(state_of: Callable[[], dict[str, Any]]) -> Flask:
    app = Flask("admin")
    app.testing = True
    admin = Blueprint("admin", "admin", url_prefix="/admin")

    @admin.get("/ops")
    @route_purpose("service.operations")
    def ops() -> Any:
        return jsonify(state_of())

    @admin.errorhandler(Exception)
    def everything(error: Exception) -> Any:
        # A blueprint's catch-all, asked before the app's handlers.
        return {"error": "internal", "purpose": pg.current_purpose()}, 500

    @app.get("/ads/<int:item>")
    @route_purpose("advertising")
    def ads(item: int) -> Any:
        return jsonify(state_of())

    @app.get("/forward")
    @route_purpose("service.operations")
    def forward() -> Any:
        # Dispatches another route inside this request, as some apps do.
        before = pg.current_purpose()
        with app.test_request_context("/ads/1"):
            app.full_dispatch_request()
        return {"before": before, "after": pg.current_purpose()}

    app.register_blueprint(admin)
    init_app(app, purposes={"/admin/**": "service.communications"})
    return app


@pytest.mark.parametrize("mode", ["enforce", "trace"])
def test_a_marked_route_replaces_the_pattern_purpose_which_is_never_checked(
    state_of: Any, signed: Signer, mode: str
) -> None:
    # service.communications (the pattern) refuses content the caller's zone
    # holds; the route's mark, service.operations, allows it.
    pg.configure("trust-center", mode=mode, context_mode="enforce")
    app = _admin_app(state_of)
    with pg.testing.capture() as violations, app.test_client() as test_client:
        with test_client.get("/admin/ops", headers={"baggage": signed(zone=[CONTENT])}) as response:
            assert response.status_code == 200
            assert (response.json or {}).get("purpose") == "service.operations"
    assert violations == []


def test_the_middleware_checks_the_purposes_it_sets_not_the_callers(state_of: Any, signed: Signer) -> None:
    # Called inside the caller's own purpose (a test, an app dispatching to
    # another), the request runs under it; the zone's categories are checked
    # against it where guarded code runs, not by the middleware.
    pg.configure("trust-center", context_mode="enforce")
    app = _admin_app(state_of)

    @app.get("/open")
    def open_view() -> Any:
        return jsonify(state_of())

    with pg.purpose("advertising"), app.test_client() as test_client:
        with test_client.get("/open", headers={"baggage": signed(zone=[CONTENT])}) as response:
            assert response.status_code == 200
            assert response.json == {"purpose": "advertising", "tenant": None, "zone": [CONTENT]}


def test_a_violation_at_the_route_mark_is_a_403_past_a_blueprint_catch_all(
    state_of: Any, signed: Signer
) -> None:
    pg.configure("trust-center", context_mode="enforce")
    app = _admin_app(state_of)
    app.view_functions["admin.ops"] = route_purpose("advertising")(lambda: jsonify(state_of()))
    with app.test_client() as test_client:
        with test_client.get("/admin/ops", headers={"baggage": signed(zone=[CONTENT])}) as response:
            assert response.status_code == 403
            assert (response.json or {}).get("purpose") == "advertising"
            assert (response.json or {}).get("category") == CONTENT


def test_a_request_dispatched_inside_a_view_leaves_the_views_purpose_alone(state_of: Any) -> None:
    app = _admin_app(state_of)
    with app.test_client() as test_client, test_client.get("/forward") as response:
        assert response.json == {"before": "service.operations", "after": "service.operations"}


def test_a_request_kept_after_it_ended_sets_no_purpose_in_the_callers_context(state_of: Any) -> None:
    app = _admin_app(state_of)
    with pg.zone(tenant="contoso"), app.test_client() as test_client:
        with test_client.get("/admin/ops") as response:
            assert response.status_code == 200
        # The test client keeps the request; running its hooks again here is
        # the caller's context (and zone), not the request's.
        assert app.preprocess_request() is None
        assert pg.current_purpose() is None
    assert pg.current_purpose() is None


def test_route_marks_stay_first_when_the_preprocessors_are_replaced_later(state_of: Any) -> None:
    app = _admin_app(state_of)
    with app.test_client() as test_client:
        assert test_client.get("/admin/ops").json == {
            "purpose": "service.operations",
            "tenant": None,
            "zone": [],
        }
        # A tuple, after the first request: the marks run before the
        # preprocessors whatever the app keeps there.
        seen: list[str | None] = []
        app.url_value_preprocessors[None] = (lambda endpoint, values: seen.append(pg.current_purpose()),)  # type: ignore[assignment]
        assert test_client.get("/admin/ops").json == {
            "purpose": "service.operations",
            "tenant": None,
            "zone": [],
        }
    assert seen == ["service.operations"]


def test_route_marks_go_back_in_front_when_the_app_replaces_preprocess_request(state_of: Any) -> None:
    app = _admin_app(state_of)
    original = type(app).preprocess_request.__get__(app)
    seen: list[str | None] = []

    def replacement() -> Any:
        # An extension's own hook, set after init_app and the first request.
        seen.append(pg.current_purpose())
        return original()

    with app.test_client() as test_client:
        assert (test_client.get("/admin/ops").json or {}).get("purpose") == "service.operations"
        app.preprocess_request = replacement  # type: ignore[method-assign]
        for _ in range(2):
            assert (test_client.get("/admin/ops").json or {}).get("purpose") == "service.operations"
    # The replacement ran behind the marks, under the route's purpose, and
    # the marks were put in front of it once, not once per request.
    assert seen == ["service.operations", "service.operations"]
    assert app.preprocess_request.__self__.inner is replacement  # type: ignore[attr-defined]


def test_route_marks_go_back_in_front_when_the_app_deletes_preprocess_request(state_of: Any) -> None:
    app = _admin_app(state_of)
    with app.test_client() as test_client:
        assert (test_client.get("/admin/ops").json or {}).get("purpose") == "service.operations"
        # Back to Flask's own method: the marks are no longer on the app.
        del app.preprocess_request
        assert "preprocess_request" not in vars(app)
        assert (test_client.get("/admin/ops").json or {}).get("purpose") == "service.operations"
    assert "preprocess_request" in vars(app)


def test_init_app_twice_leaves_preprocess_request_alone_between_requests(state_of: Any) -> None:
    app = Flask("twice")

    @app.get("/ops")
    @route_purpose("service.operations")
    def ops() -> Any:
        return jsonify(state_of())

    init_app(app)
    init_app(app)
    head = app.preprocess_request
    with app.test_client() as test_client:
        for _ in range(3):
            assert (test_client.get("/ops").json or {}).get("purpose") == "service.operations"
    # Both middlewares' marks run in front of Flask's own; neither
    # re-installed itself per request.
    assert app.preprocess_request is head
    chain = []
    current: Any = head
    # Each link is installed as its bound run(): its __self__ holds the rest.
    while hasattr(getattr(current, "__self__", None), "inner"):
        chain.append(current)
        current = current.__self__.inner
    # Behind both: Flask's own, looked up on the class per request.
    assert len(chain) == 2 and current is None


def test_an_extension_that_wraps_preprocess_request_after_init_app_keeps_the_marks(state_of: Any) -> None:
    app = _admin_app(state_of)
    # The usual monkeypatch: save what is there (the marks), call it from
    # the replacement.
    saved = app.preprocess_request
    calls: list[str | None] = []

    def wrapped() -> Any:
        calls.append(pg.current_purpose())
        return saved()

    app.preprocess_request = wrapped  # type: ignore[method-assign]
    with app.test_client() as test_client:
        for _ in range(3):
            with test_client.get("/admin/ops") as response:
                assert response.status_code == 200
                assert (response.json or {}).get("purpose") == "service.operations"
    assert calls == ["service.operations"] * 3


def test_a_patch_of_the_flask_class_after_init_app_still_runs(state_of: Any) -> None:
    app = _admin_app(state_of)
    seen: list[str | None] = []
    original = Flask.preprocess_request

    def traced(self: Flask) -> Any:
        # An APM patching the class once the app is built.
        seen.append(pg.current_purpose())
        return original(self)

    Flask.preprocess_request = traced  # type: ignore[method-assign]
    try:
        with app.test_client() as test_client:
            assert (test_client.get("/admin/ops").json or {}).get("purpose") == "service.operations"
    finally:
        Flask.preprocess_request = original  # type: ignore[method-assign]
    assert seen == ["service.operations"]


def test_a_mark_on_a_plain_views_dispatch_request_is_read(state_of: Any) -> None:
    from flask.views import View

    class Report(View):
        @route_purpose("service.operations")
        def dispatch_request(self) -> Any:
            return jsonify(state_of())

    app = Flask("views")
    app.add_url_rule("/report", view_func=Report.as_view("report"))
    init_app(app)
    with app.test_client() as test_client, test_client.get("/report") as response:
        assert (response.json or {}).get("purpose") == "service.operations"


def test_preprocessing_a_request_outside_the_middleware_sets_no_purpose(state_of: Any, marker: str) -> None:
    # A unit test that runs Flask's request hooks itself has no request zone:
    # the route mark is not made current in (and never leaks into) its context.
    app = flask_app(state_of, marker, testing=True)
    with app.test_request_context("/ops"):
        assert app.preprocess_request() is None
        assert pg.current_purpose() is None
    assert pg.current_purpose() is None


def test_path_pattern_sets_the_purpose(client: FlaskClient) -> None:
    assert json.loads(client.get("/comms/x")[2])["purpose"] == "service.communications"


def test_request_without_tenant_header_runs_under_defaults(client: FlaskClient) -> None:
    status, _, text = client.get("/plain")
    assert status == 200
    assert json.loads(text) == {"purpose": None, "tenant": None, "zone": []}


def test_violation_becomes_403_json_without_data(client: FlaskClient, marker: str) -> None:
    status, content_type, text = client.get("/leak", headers={"x-tenant": "contoso"})
    assert status == 403
    assert content_type == "application/json"
    body = json.loads(text)
    assert (body["rule"], body["purpose"], body["category"]) == (
        "no-content-in-service-communications",
        "service.communications",
        CONTENT,
    )
    assert marker not in text


def test_other_exceptions_pass_through(state_of: Any, marker: str) -> None:
    app = flask_app(state_of, marker, testing=True)
    with app.test_client() as test_client, pytest.raises(ValueError, match="an ordinary bug"):
        test_client.get("/boom")


def test_other_exceptions_stay_a_500_over_loopback(
    state_of: Any, marker: str, serve_wsgi: Callable[[Any], Any], caplog: pytest.LogCaptureFixture
) -> None:
    server = serve_wsgi(flask_app(state_of, marker, testing=False))
    with caplog.at_level(logging.CRITICAL):  # Flask logs the traceback of the bug
        response = httpx.get(server.url + "/boom", timeout=10)
    assert response.status_code == 500
    assert "purpose_violation" not in response.text


def test_streamed_body_keeps_purpose_tenant_and_zone(client: FlaskClient, signed: Signer) -> None:
    headers = {"x-tenant": "fabrikam", "baggage": signed(zone=CONTENT)}
    status, _, text = client.get("/stream", headers=headers)
    lines = [json.loads(line) for line in text.splitlines() if line]
    assert status == 200 and len(lines) == 3
    assert all(
        line == {"purpose": "service.operations", "tenant": "fabrikam", "zone": [CONTENT]} for line in lines
    )


def test_zone_from_baggage_is_checked_against_the_route_purpose(client: FlaskClient, signed: Signer) -> None:
    pg.configure("trust-center", context_mode="enforce")
    status, _, text = client.get("/comms/1", headers={"baggage": signed(zone=["bogus.key", CONTENT])})
    assert status == 403
    assert json.loads(text)["via"] == "context"


def _signature() -> str:
    return "," + sign_baggage(tenant="someone").split(",")[-1]


@pytest.mark.parametrize(
    "make",
    [
        lambda: "purposeguard.zone=%C3%28" + _signature(),
        lambda: "purposeguard.unknown=1",
        lambda: "purposeguard.purpose=" + "a" * 500 + _signature(),
        lambda: sign_baggage(zone="no.such"),
    ],
    ids=["bad utf-8", "unknown key", "oversized", "unknown category"],
)
def test_bad_baggage_is_ignored_with_a_warning(
    client: FlaskClient, make: Callable[[], str], caplog: pytest.LogCaptureFixture, signed: Signer
) -> None:
    raw = make()
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        status, _, text = client.get("/plain", headers={"baggage": raw})
    assert status == 200
    assert json.loads(text) == {"purpose": None, "tenant": None, "zone": []}
    assert any(r.name == "purposeguard" and r.levelno == logging.WARNING for r in caplog.records)


def test_plain_wsgi_app_violation_is_a_403_from_the_middleware(
    serve_wsgi: Callable[[Any], Any], marker: str
) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        pg.check(pg.label(marker, CONTENT))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"sent"]

    server = serve_wsgi(
        PurposeGuardMiddleware(app, tenant_header="x-tenant", purposes={"/**": "advertising"})
    )
    response = httpx.get(server.url + "/anything/at/all", timeout=10)
    assert response.status_code == 403
    assert response.json()["rule"] == "no-advertising"
    assert marker not in response.text


def test_a_violation_after_the_app_set_its_headers_replaces_them(
    serve_wsgi: Callable[[Any], Any], marker: str
) -> None:
    # The app called start_response before the violation: the 403 replaces
    # its headers (PEP 3333's exc_info), on a real server and on wsgiref's
    # strict reference handler alike.
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-From-App", "yes")])
        pg.check(pg.label(marker, CONTENT))
        return [b"sent"]

    guarded = PurposeGuardMiddleware(app, purposes={"/**": "advertising"})
    response = httpx.get(serve_wsgi(guarded).url + "/x", timeout=10)
    assert response.status_code == 403 and "x-from-app" not in response.headers
    assert response.json()["rule"] == "no-advertising" and marker not in response.text

    from wsgiref.handlers import SimpleHandler
    from wsgiref.util import setup_testing_defaults

    def raises_first(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        pg.check(pg.label(marker, CONTENT))
        return [b""]

    for sets_headers_first in (True, False):
        environ: dict[str, Any] = {}
        setup_testing_defaults(environ)
        out, errors = io.BytesIO(), io.StringIO()
        inner = app if sets_headers_first else raises_first
        handler = SimpleHandler(io.BytesIO(), out, errors, environ)
        handler.run(PurposeGuardMiddleware(inner, purposes={"/**": "advertising"}))
        assert out.getvalue().startswith(b"HTTP/1.0 403 Forbidden"), (sets_headers_first, errors.getvalue())
        assert b"X-From-App" not in out.getvalue() and marker.encode() not in out.getvalue()


def test_plain_wsgi_app_other_exceptions_pass_through() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        raise KeyError("not ours")

    middleware = PurposeGuardMiddleware(app, tenant_header="x-tenant")
    with pytest.raises(KeyError, match="not ours"):
        middleware({"PATH_INFO": "/", "REQUEST_METHOD": "GET"}, lambda *a: None)


def test_violation_in_a_started_stream_is_cut_off_and_said_without_data(
    marker: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A streamed body's status is sent with its first chunk: a violation in
    a later chunk cuts the response off, and purposeguard says why, naming
    the method and the policy's rule, never the path or the value."""
    app = Flask("purposeguard-cut-off")

    @app.get("/digest/<who>")
    @route_purpose("service.communications")
    def digest(who: str) -> Response:
        def chunks() -> Iterator[str]:
            yield "first line\n"
            pg.check(pg.label(marker, CONTENT))
            yield "never sent\n"

        return Response(chunks(), mimetype="text/plain")

    init_app(app)
    caplog.set_level(logging.WARNING, logger="purposeguard")
    response = app.test_client().get("/digest/someone-secret", buffered=False)
    chunks = iter(response.response)
    assert next(chunks) == b"first line\n"
    with pytest.raises(pg.PurposeViolation):
        next(chunks)
    said = [r.getMessage() for r in caplog.records if "cut off" in r.getMessage()]
    assert len(said) == 1
    # Flask's request (and its rule) is gone once the view returned.
    assert "response to GET had started" in said[0]
    assert "no-content-in-service-communications" in said[0]
    assert "someone-secret" not in said[0] and marker not in said[0]


def _refused_at_first_chunk(marker: str) -> Flask:
    app = Flask("purposeguard-first-chunk")

    @app.get("/digest")
    @route_purpose("service.communications")
    def digest() -> Response:
        def chunks() -> Iterator[str]:
            pg.check(pg.label(marker, CONTENT))
            yield "never sent\n"

        return Response(chunks(), mimetype="text/plain", headers={"X-From-App": "1"})

    @app.get("/ok")
    def ok() -> str:
        return "fine"

    init_app(app)
    return app


def test_a_stream_refused_before_its_first_byte_is_a_403(
    marker: str, serve_wsgi: Callable[[Any], Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The server has sent nothing before the first non-empty chunk (PEP
    3333): the refusal is the 403, not a broken 200 or the server's 500."""
    caplog.set_level(logging.WARNING, logger="purposeguard")
    server = serve_wsgi(_refused_at_first_chunk(marker))
    with httpx.Client(base_url=server.url) as client:
        response = client.get("/digest")
        assert response.status_code == 403
        assert response.json()["purpose"] == "service.communications"
        assert marker not in response.text and "never sent" not in response.text
        # The connection and the server go on.
        assert client.get("/ok").text == "fine"
    assert not [r for r in caplog.records if "cut off" in r.getMessage()]


def test_a_partial_of_a_marked_view_runs_under_its_purpose(state_of: Any) -> None:
    import functools

    app = Flask("purposeguard-partial")

    @route_purpose("service.operations")
    def report(kind: str) -> Any:
        return jsonify({"kind": kind, **state_of()})

    app.add_url_rule("/report", "report", functools.partial(report, "weekly"))
    init_app(app)
    with app.test_client() as test_client:
        body = test_client.get("/report").json or {}
    assert body["kind"] == "weekly" and body["purpose"] == "service.operations"


_REFUSED_APP = """
import purposeguard as pg
from purposeguard.integrations.wsgi import PurposeGuardMiddleware

pg.configure("trust-center", mode="enforce")


@pg.purpose("advertising")
def ad(body):
    return b"an ad"


def app(environ, start_response):
    start_response(
        "200 OK",
        [("Content-Type", "text/html"), ("Content-Length", "5"), ("Set-Cookie", "session=abc"), ("X-App", "1")],
    )

    def body():
        if environ["PATH_INFO"] == "/empty-first":
            yield b""
        yield ad(pg.label("{marker}", "customer_data.content.email"))

    return body()


app = PurposeGuardMiddleware(app)
"""


@pytest.mark.parametrize("path", ["/first", "/empty-first"])
def test_under_gunicorn_the_403_replaces_the_apps_headers(tmp_path: Any, marker: str, path: str) -> None:
    """gunicorn adds the headers of a second start_response call to the
    first's: the refusal must be the only call it sees, or the response
    carries two Content-Lengths (which proxies reject) and the app's cookie."""
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "refused_app.py").write_text(_REFUSED_APP.replace("{marker}", marker))
    port = free_port()
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    server = subprocess.Popen(
        [
            gunicorn,
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "1",
            "-k",
            "gthread",
            "--threads",
            "2",
            "refused_app:app",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            response = client.get(path)
        assert response.status_code == 403
        assert response.headers.get_list("content-length") == [str(len(response.content))]
        assert response.headers.get_list("content-type") == ["application/json"]
        assert "set-cookie" not in response.headers and "x-app" not in response.headers
        assert marker not in response.text and response.json()["rule"] == "no-advertising"
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_a_response_body_dropped_unclosed_closes_its_zone() -> None:
    """Servers always call close() (PEP 3333); a test client's response
    that is never closed, or read only in part, does not: the zone closes
    when the body is collected (and the app's own close() runs)."""
    import gc

    from purposeguard._state import STATE

    closed: list[bool] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            yield b"fine"
            yield b" and more"
        finally:
            closed.append(True)

    def still_open() -> int:
        return int(STATE.flags.opened.value() - STATE.flags.closed.value())

    middleware = PurposeGuardMiddleware(app)
    gc.collect()
    open_before = still_open()
    body = iter(middleware({"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, lambda *args: None))
    assert next(body) == b"fine"
    assert still_open() == open_before + 1 and not closed
    del body
    gc.collect()
    assert still_open() == open_before and closed == [True]


def test_a_response_body_read_to_its_end_ends_the_zone_and_leaves_close_to_the_server() -> None:
    """The zone ends with the body; the app's close() runs at the server's
    close(), after the end of the response went out (PEP 3333): a close()
    that raises or takes long must not cut off or delay a response the
    server has not finished writing."""
    from purposeguard._state import STATE

    closes: list[str | None] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            return iter([b"fine"])

        def close(self) -> None:
            # In the request's context, under its purpose.
            closes.append(pg.current_purpose())
            raise RuntimeError("the app's close() failed")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    def still_open() -> int:
        return int(STATE.flags.opened.value() - STATE.flags.closed.value())

    pg.configure("trust-center")
    middleware = PurposeGuardMiddleware(app, purposes={"/**": "service.operations"})
    open_before = still_open()
    body = middleware({"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, lambda *args: None)
    # Read to the end without the app's close() failing the iteration.
    assert list(body) == [b"fine"]
    assert closes == [] and still_open() == open_before
    close = getattr(body, "close", None)
    assert close is not None
    with pytest.raises(RuntimeError, match="close"):
        close()
    assert closes == ["service.operations"] and still_open() == open_before
    close()
    assert closes == ["service.operations"]


def test_a_refusal_on_the_first_chunk_stays_a_403_when_the_apps_close_fails() -> None:
    from werkzeug.test import Client

    pg.configure("trust-center", mode="enforce")

    @pg.purpose("advertising")
    def advertise(body: Any) -> None:
        pass

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            advertise(pg.label("the body of a note", "customer_data"))
            yield b"sent"

        def close(self) -> None:
            raise RuntimeError("the app's close() failed")

    def app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [])
        return Body()

    response = Client(PurposeGuardMiddleware(app)).get("/", buffered=False)
    assert response.status_code == 403
    assert response.get_json()["error"] == "purpose_violation"
    # The app's close() is the server's to run, after the 403 went out.
    with pytest.raises(RuntimeError, match="close"):
        response.close()


def test_a_dropped_body_whose_close_fails_says_it_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    import gc
    import sys

    from purposeguard._state import STATE

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            return iter([b"fine", b" and more"])

        def close(self) -> None:
            raise RuntimeError("the app's close() failed")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    unraisable: list[Any] = []
    hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        open_before = int(STATE.flags.opened.value() - STATE.flags.closed.value())
        with caplog.at_level("DEBUG", logger="purposeguard"):
            body = iter(
                PurposeGuardMiddleware(app)({"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, lambda *a: None)
            )
            assert next(body) == b"fine"
            del body
            gc.collect()
    finally:
        sys.unraisablehook = hook
    assert unraisable == []
    assert [r for r in caplog.records if "could not close a dropped response body" in r.getMessage()]
    assert int(STATE.flags.opened.value() - STATE.flags.closed.value()) == open_before


def test_route_marks_go_back_in_front_of_a_wrapt_wrapper_of_preprocess_request(state_of: Any) -> None:
    import wrapt

    app = _admin_app(state_of)
    seen: list[str | None] = []

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        # An extension's hook, wrapped around whatever preprocess_request was.
        seen.append(pg.current_purpose())
        return wrapped(*args, **kwargs)

    with app.test_client() as test_client:
        assert (test_client.get("/admin/ops").json or {}).get("purpose") == "service.operations"
        app.preprocess_request = wrapt.FunctionWrapper(app.preprocess_request, wrapper)  # type: ignore[method-assign]
        for _ in range(2):
            assert (test_client.get("/admin/ops").json or {}).get("purpose") == "service.operations"
    # Behind the marks: the wrapper ran under the route's purpose.
    assert seen == ["service.operations", "service.operations"]


def test_a_refusal_before_start_response_closes_its_zone_once(caplog: pytest.LogCaptureFixture) -> None:
    import gc

    from werkzeug.test import Client

    from purposeguard._state import STATE

    pg.configure("trust-center", mode="enforce")

    @pg.purpose("advertising")
    def advertise(body: Any) -> None:
        pass

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        advertise(pg.label("the body of a note", "customer_data"))
        start_response("200 OK", [])
        return [b"sent"]

    def still_open() -> int:
        return int(STATE.flags.opened.value() - STATE.flags.closed.value())

    before = still_open()
    with caplog.at_level("DEBUG", logger="purposeguard"):
        response = Client(PurposeGuardMiddleware(app)).get("/")
        assert response.status_code == 403
        response.close()
        del response
        # The body is dropped with the refusal's traceback: finalised here.
        gc.collect()
    assert still_open() == before
    assert not [r for r in caplog.records if "could not close" in r.getMessage()]
