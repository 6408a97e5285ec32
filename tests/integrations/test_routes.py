"""Route purposes wherever the framework routes: FastAPI's include_router,
mounted apps, class-based endpoints, Flask blueprints and class-based views;
marks the policy does not define fail at startup; pg.set_tenant after
authentication. Served by uvicorn and werkzeug on loopback."""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

import anyio
import flask
import httpx
import pytest
from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Request
from flask.views import MethodView
from purposeguard.integrations import wsgi
from purposeguard.integrations.asgi import (
    PurposeGuardMiddleware,
    marked_routes,
    route_purpose,
)
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.endpoints import HTTPEndpoint
from starlette.exceptions import StarletteDeprecationWarning
from starlette.requests import Request as StarletteRequest
from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Mount, Route

import purposeguard as pg

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

CONTENT = "customer_data.content.email"
MARKER = "zq-route-4e2a"


@pg.purpose("marketing.direct")
def mail_newsletter(body: str) -> None:
    """What the newsletter route does with content: its purpose forbids it."""


def purpose_now() -> dict[str, Any]:
    return {"purpose": pg.current_purpose(), "tenant": pg.current_tenant()}


def fastapi_app(seen: list[dict[str, Any]]) -> FastAPI:
    inner = APIRouter(prefix="/campaigns")

    @inner.post("/send")
    @route_purpose("marketing.direct")
    def send() -> dict[str, Any]:
        # The team's newsletter route: it reads content and mails it.
        pg.check(pg.label(MARKER, CONTENT))
        return {"sent": True}

    @inner.get("/async")
    @route_purpose("marketing.direct")
    async def async_route() -> dict[str, Any]:
        return purpose_now()

    outer = APIRouter(prefix="/news")

    @outer.get("/status")
    @route_purpose("service.operations")
    def status() -> dict[str, Any]:
        return purpose_now()

    @outer.get("/stream")
    @route_purpose("service.communications")
    def stream() -> StreamingResponse:
        def chunks() -> Iterator[bytes]:
            yield (pg.current_purpose() or "none").encode()

        return StreamingResponse(chunks())

    @outer.get("/later")
    @route_purpose("service.communications")
    def later(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(lambda: seen.append(purpose_now()))
        return {"queued": True}

    outer.include_router(inner)
    api = FastAPI()
    api.include_router(outer)

    sub = FastAPI()

    @sub.get("/ping")
    @route_purpose("service.security")
    def ping() -> dict[str, Any]:
        return purpose_now()

    api.mount("/sub", sub)

    async def starlette_ops(request: StarletteRequest) -> JSONResponse:
        return JSONResponse(purpose_now())

    class Items(HTTPEndpoint):
        @route_purpose("service.communications")
        async def get(self, request: StarletteRequest) -> JSONResponse:
            return JSONResponse(purpose_now())

        async def post(self, request: StarletteRequest) -> JSONResponse:
            return JSONResponse(purpose_now())

    admin = Starlette(
        routes=[Route("/ops", route_purpose("service.operations")(starlette_ops)), Route("/items", Items)]
    )
    api.mount("/admin", admin)

    async def whole_app(scope: Any, receive: Any, send: Any) -> None:
        await JSONResponse(purpose_now())(scope, receive, send)

    api.mount("/legacy", route_purpose("service.operations")(whole_app))
    api.add_middleware(PurposeGuardMiddleware)
    return api


@pytest.fixture
def seen() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def fastapi_server(serve_asgi: Callable[[Any], Any], seen: list[dict[str, Any]]) -> Iterator[httpx.Client]:
    server = serve_asgi(fastapi_app(seen))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def test_routes_of_included_routers_get_their_purpose(fastapi_server: httpx.Client) -> None:
    assert fastapi_server.get("/news/status").json()["purpose"] == "service.operations"
    assert fastapi_server.get("/news/campaigns/async").json()["purpose"] == "marketing.direct"


def test_the_newsletter_route_of_an_included_router_is_refused_in_enforce_mode(
    fastapi_server: httpx.Client,
) -> None:
    with pg.testing.capture() as violations:
        response = fastapi_server.post("/news/campaigns/send")
    assert response.status_code == 403
    assert response.json()["purpose"] == "marketing.direct" and MARKER not in response.text
    assert [(v.purpose, v.category) for v in violations] == [("marketing.direct", CONTENT)]


def test_streamed_bodies_and_background_tasks_of_included_routes_keep_the_purpose(
    fastapi_server: httpx.Client, seen: list[dict[str, Any]]
) -> None:
    assert fastapi_server.get("/news/stream").text == "service.communications"
    assert fastapi_server.get("/news/later").json() == {"queued": True}
    assert seen and seen[0]["purpose"] == "service.communications"


def test_routes_of_mounted_apps_and_marked_mounted_apps_get_their_purpose(
    fastapi_server: httpx.Client,
) -> None:
    assert fastapi_server.get("/sub/ping").json()["purpose"] == "service.security"
    assert fastapi_server.get("/admin/ops").json()["purpose"] == "service.operations"
    assert fastapi_server.get("/legacy/anything").json()["purpose"] == "service.operations"


def test_a_class_based_endpoint_is_marked_per_method(fastapi_server: httpx.Client) -> None:
    assert fastapi_server.get("/admin/items").json()["purpose"] == "service.communications"
    assert fastapi_server.post("/admin/items").json()["purpose"] is None


def test_unrouted_requests_run_without_a_route_purpose(fastapi_server: httpx.Client) -> None:
    assert fastapi_server.get("/nowhere").status_code == 404


def test_marked_routes_lists_what_the_route_tables_hold() -> None:
    found = dict(marked_routes(fastapi_app([])))
    assert found["/news/campaigns/send"] == "marketing.direct"
    assert found["/news/status"] == "service.operations"
    assert found["/sub/ping"] == "service.security"
    assert found["/admin/ops"] == "service.operations"
    assert found["/admin/items"] == "service.communications"
    assert found["/legacy"] == "service.operations"


# -- a mark the policy does not define fails at startup -----------------------------------


def policy_with_partner_purpose() -> pg.Policy:
    text = resources.files("purposeguard.packs").joinpath("trust-center.toml").read_text(encoding="utf-8")
    return pg.Policy.from_toml(
        text + '\n[taxonomy.purposes]\n"marketing.partner" = "partner campaigns"\n', source="partner"
    )


def test_a_route_marked_with_a_purpose_the_policy_dropped_fails_at_startup() -> None:
    pg.configure(policy_with_partner_purpose())
    router = APIRouter(prefix="/partner")

    @router.get("/push")
    @route_purpose("marketing.partner")
    def push() -> dict[str, bool]:
        return {"pushed": True}

    api = FastAPI()
    api.include_router(router)
    api.add_middleware(PurposeGuardMiddleware)
    pg.configure("trust-center")  # the key is gone: the route cannot get its purpose
    with pytest.raises(pg.PolicyError, match=r"/partner/push.*marketing\.partner"):
        with TestClient(api):  # runs the lifespan startup
            pass


def test_without_lifespan_the_first_request_fails_loudly_instead(serve_asgi: Callable[[Any], Any]) -> None:
    pg.configure(policy_with_partner_purpose())

    @route_purpose("marketing.partner")
    async def push(request: StarletteRequest) -> JSONResponse:
        return JSONResponse({"pushed": True})

    app = Starlette(routes=[Mount("/partner", routes=[Route("/push", push)])])
    app.add_middleware(PurposeGuardMiddleware)
    pg.configure("trust-center")
    server = serve_asgi(app)
    # A connection of its own per request: uvicorn closes one after an app error.
    assert httpx.get(server.url + "/partner/push", timeout=10).status_code == 500
    assert httpx.get(server.url + "/partner/push", timeout=10).status_code == 500, "never a silent default"


# -- pg.set_tenant after authentication --------------------------------------------------------


def authenticated_app() -> FastAPI:
    api = FastAPI()

    def current_user(request: Request) -> str:
        # The app authenticates, then names the tenant: the middleware could not know it.
        tenant = request.headers.get("authorization", "").removeprefix("Bearer ")
        pg.set_tenant(tenant)
        if request.headers.get("x-switch"):
            pg.set_tenant(request.headers["x-switch"])
        return tenant

    @api.get("/me")
    @route_purpose("service.operations")
    def me(user: str = Depends(current_user)) -> dict[str, Any]:
        return purpose_now()

    @api.post("/ads")
    @route_purpose("advertising")
    def ads(user: str = Depends(current_user)) -> dict[str, bool]:
        pg.check(pg.label(MARKER, CONTENT))
        return {"shown": True}

    api.add_middleware(PurposeGuardMiddleware)
    return api


def test_set_tenant_names_the_zone_tenant_after_authentication(serve_asgi: Callable[[Any], Any]) -> None:
    server = serve_asgi(authenticated_app())
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/me", headers={"authorization": "Bearer contoso"}).json() == {
            "purpose": "service.operations",
            "tenant": "contoso",
        }
        assert client.get("/me", headers={"authorization": "Bearer fabrikam"}).json()["tenant"] == "fabrikam"
        with pg.testing.capture() as violations:
            denied = client.post("/ads", headers={"authorization": "Bearer contoso"})
        assert denied.status_code == 403
        assert [v.tenant for v in violations] == ["contoso"]


def test_a_second_different_tenant_in_one_request_is_an_error(serve_asgi: Callable[[Any], Any]) -> None:
    server = serve_asgi(authenticated_app())
    # A connection of its own per request: uvicorn closes one after an app error.
    response = httpx.get(
        server.url + "/me", headers={"authorization": "Bearer contoso", "x-switch": "fabrikam"}, timeout=10
    )
    assert response.status_code == 500
    same = httpx.get(
        server.url + "/me", headers={"authorization": "Bearer contoso", "x-switch": "contoso"}, timeout=10
    )
    assert same.json()["tenant"] == "contoso"


def test_set_tenant_sets_once_and_refuses_a_different_one() -> None:
    with pg.zone() as state:
        pg.set_tenant("contoso")
        pg.set_tenant("contoso")
        assert state.tenant == "contoso" and pg.current_tenant() == "contoso"
        with pytest.raises(pg.PolicyError, match="already 'contoso', not 'fabrikam'"):
            pg.set_tenant("fabrikam")
        assert pg.current_tenant() == "contoso"
    with pg.zone(tenant="fabrikam"), pytest.raises(pg.PolicyError):
        pg.set_tenant("contoso")


@pytest.mark.parametrize(
    "bad",
    ["", " contoso", "x" * 257, "tab\there", 42, None, b"contoso"],
    ids=["empty", "spaces", "too long", "control character", "int", "None", "bytes"],
)
def test_set_tenant_refuses_bad_ids(bad: Any) -> None:
    with pg.zone() as state:
        with pytest.raises(pg.PolicyError):
            pg.set_tenant(bad)
        assert state.tenant is None


def test_set_tenant_refuses_labelled_ids_and_use_outside_a_zone() -> None:
    with pg.zone(), pytest.raises(pg.PolicyError, match="labelled"):
        pg.set_tenant(pg.label("contoso", CONTENT))
    with pytest.raises(pg.PolicyError, match="outside a zone"):
        pg.set_tenant("contoso")
    assert "set_tenant" in pg.__all__


# -- Flask: blueprints, class-based views, marks checked at init_app ---------------------------------


def flask_app() -> flask.Flask:
    news = flask.Blueprint("news", __name__, url_prefix="/news")

    @news.post("/send")
    @wsgi.route_purpose("marketing.direct")
    def send() -> Any:
        mail_newsletter(pg.label(MARKER, CONTENT))
        return {"sent": True}

    class Item(MethodView):
        @wsgi.route_purpose("service.operations")
        def get(self) -> Any:
            return purpose_now()

        def post(self) -> Any:
            return purpose_now()

    news.add_url_rule("/item", view_func=Item.as_view("item"))
    app = flask.Flask("routes")
    wsgi.init_app(app)
    app.register_blueprint(news)  # after init_app, as apps often do
    return app


def test_flask_blueprint_and_method_view_routes_get_their_purpose(serve_wsgi: Callable[[Any], Any]) -> None:
    server = serve_wsgi(flask_app())
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/news/item").json()["purpose"] == "service.operations"
        assert client.post("/news/item").json()["purpose"] is None
        denied = client.post("/news/send")
    assert denied.status_code == 403 and denied.json()["purpose"] == "marketing.direct"
    assert MARKER not in denied.text


def test_flask_marks_the_policy_does_not_define_fail_at_init_app_and_first_request() -> None:
    pg.configure(policy_with_partner_purpose())
    app = flask.Flask("partner")

    @app.get("/push")
    @wsgi.route_purpose("marketing.partner")
    def push() -> Any:
        return {"pushed": True}

    late = flask.Blueprint("late", __name__)

    @late.get("/late")
    @wsgi.route_purpose("marketing.partner")
    def late_push() -> Any:
        return {"pushed": True}

    pg.configure("trust-center")
    with pytest.raises(pg.PolicyError, match=r"/push.*marketing\.partner"):
        wsgi.init_app(app)

    other = flask.Flask("partner-late")
    wsgi.init_app(other)
    other.register_blueprint(late)
    other.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(pg.PolicyError, match=r"/late"):
        other.test_client().get("/late")


def test_flask_apps_name_the_tenant_after_authentication(serve_wsgi: Callable[[Any], Any]) -> None:
    app = flask.Flask("tenants")
    wsgi.init_app(app)

    @app.before_request
    def authenticate() -> None:
        tenant = flask.request.headers.get("authorization", "").removeprefix("Bearer ")
        if tenant:
            pg.set_tenant(tenant)

    @app.get("/me")
    @wsgi.route_purpose("service.operations")
    def me() -> Any:
        return purpose_now()

    @app.post("/ads")
    @wsgi.route_purpose("advertising")
    def ads() -> Any:
        pg.check(pg.label(MARKER, CONTENT))
        return {"shown": True}

    server = serve_wsgi(app)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/me", headers={"authorization": "Bearer contoso"}).json() == {
            "purpose": "service.operations",
            "tenant": "contoso",
        }
        assert client.get("/me").json()["tenant"] is None
        with pg.testing.capture() as violations:
            assert client.post("/ads", headers={"authorization": "Bearer fabrikam"}).status_code == 403
    assert [v.tenant for v in violations] == ["fabrikam"]


# -- a router that writes its match some other way ---------------------------------------------


def _item_writing_router(endpoint: Any) -> Any:
    """A minimal ASGI router that writes the endpoint it picked with item
    assignment, not ``scope.update`` (Starlette's and FastAPI's use update)."""

    async def router(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        scope["endpoint"] = endpoint
        await endpoint(scope, receive, send)

    return router


def test_an_endpoint_no_route_table_reaches_is_reported_once_not_silently_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @route_purpose("service.operations")
    async def ops(scope: Any, receive: Any, send: Any) -> None:
        await JSONResponse(purpose_now())(scope, receive, send)

    client = TestClient(PurposeGuardMiddleware(_item_writing_router(ops)))
    with caplog.at_level("WARNING", logger="purposeguard"):
        first = client.get("/ops").json()
        second = client.get("/ops").json()
    # The mark was not applied (no Starlette route table leads to it), and
    # that is said once, naming what to do instead.
    assert first["purpose"] is None and second["purpose"] is None
    reports = [r.getMessage() for r in caplog.records if "route tables" in r.getMessage()]
    assert len(reports) == 1 and "purposes= path patterns" in reports[0]
    assert "cannot read" in reports[0]
    # Never the path: it can quote what a client typed.
    assert "/ops" not in reports[0]


def test_a_route_added_after_the_first_request_gets_its_purpose_from_the_next_one_and_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @route_purpose("service.operations")
    async def ops(request: StarletteRequest) -> JSONResponse:
        return JSONResponse(purpose_now())

    app = Starlette(routes=[Route("/health", lambda request: JSONResponse({}))])
    client = TestClient(PurposeGuardMiddleware(app))
    with caplog.at_level("WARNING", logger="purposeguard"):
        assert client.get("/health").status_code == 200
        app.add_route("/ops", ops)
        first = client.get("/ops").json()
        later = [client.get("/ops").json()["purpose"] for _ in range(3)]
    assert first["purpose"] is None and later == ["service.operations"] * 3
    reports = [r.getMessage() for r in caplog.records if "route tables" in r.getMessage()]
    assert len(reports) == 1 and "after its routes were read" in reports[0]


def test_starlette_and_fastapi_routes_report_nothing(caplog: pytest.LogCaptureFixture) -> None:
    client = TestClient(fastapi_app([]))
    with caplog.at_level("WARNING", logger="purposeguard"):
        for path in ("/news/status", "/news/campaigns/async", "/sub/ping", "/admin/ops", "/admin/items"):
            assert client.get(path).json()["purpose"] is not None
    assert not [r for r in caplog.records if "route tables" in r.getMessage()]


def test_head_to_a_class_endpoint_runs_get_under_gets_mark() -> None:
    # Starlette answers a HEAD with the endpoint's get(): its mark applies.
    seen: list[tuple[str, Any]] = []

    class Newsletter(HTTPEndpoint):
        @route_purpose("marketing.direct")
        async def get(self, request: StarletteRequest) -> JSONResponse:
            seen.append((request.method, pg.current_purpose()))
            return JSONResponse({})

    client = TestClient(PurposeGuardMiddleware(Starlette(routes=[Route("/n", Newsletter)])))
    assert client.get("/n").status_code == 200 and client.head("/n").status_code == 200
    assert seen == [("GET", "marketing.direct"), ("HEAD", "marketing.direct")]


def test_a_partial_endpoint_keeps_the_mark_of_its_function() -> None:
    @route_purpose("marketing.direct")
    async def newsletter(request: StarletteRequest, edition: str) -> JSONResponse:
        return JSONResponse({**purpose_now(), "edition": edition})

    app = Starlette(routes=[Route("/partial", functools.partial(newsletter, edition="june"))])
    assert marked_routes(app) == [("/partial", "marketing.direct")]
    body = TestClient(PurposeGuardMiddleware(app)).get("/partial").json()
    assert body["purpose"] == "marketing.direct" and body["edition"] == "june"


def test_flask_url_value_preprocessors_run_under_the_routes_purpose() -> None:
    # Flask runs them (and opens the session, and sends request_started)
    # before any before_request hook: the purpose is set before Flask starts.
    app = flask.Flask("preprocessed")
    seen: list[Any] = []

    @app.url_value_preprocessor
    def load(endpoint: str | None, values: dict[str, Any] | None) -> None:
        seen.append(pg.current_purpose())

    @app.get("/news/<edition>")
    @route_purpose("marketing.direct")
    def news(edition: str) -> str:
        return edition

    wsgi.init_app(app, purposes={"/news/*": "service.operations"})
    with app.test_client() as client, client.get("/news/june") as response:
        assert response.status_code == 200
    # The route's mark, not the path pattern: marks win.
    assert seen == ["marketing.direct"]


def test_routes_behind_a_scope_copying_middleware_get_their_purpose(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A middleware between purposeguard's and the router that hands on a
    # copy of the scope: the route still makes its purpose current.
    @route_purpose("service.operations")
    async def ops(request: StarletteRequest) -> JSONResponse:
        return JSONResponse(purpose_now())

    class CopyingMiddleware:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await self.app({**scope}, receive, send)

    app = Starlette(routes=[Route("/ops", ops)])
    app.add_middleware(CopyingMiddleware)
    app.add_middleware(PurposeGuardMiddleware)  # outermost: the copy is made inside it
    client = TestClient(app)
    with caplog.at_level("WARNING", logger="purposeguard"):
        purposes = {client.get("/ops").json()["purpose"] for _ in range(5)}
    assert purposes == {"service.operations"}
    assert not [r for r in caplog.records if r.name == "purposeguard"]


def test_marked_routes_see_a_plain_scope_and_still_get_their_purpose() -> None:
    # The purpose is made current by each marked route's handle: the app
    # reads a plain dict copy of the server's scope (a subclass would cost every
    # read of the scope), in Starlette apps and FastAPI included routers alike.
    seen: list[tuple[type, str | None]] = []

    @route_purpose("service.operations")
    async def ops(request: StarletteRequest) -> JSONResponse:
        seen.append((type(request.scope), pg.current_purpose()))
        return JSONResponse({})

    starlette_app = Starlette(routes=[Mount("/api", routes=[Route("/ops", ops)])])
    router = APIRouter(prefix="/news")

    @router.get("/status")
    @route_purpose("service.communications")
    def status(request: Request) -> dict[str, Any]:
        seen.append((type(request.scope), pg.current_purpose()))
        return {}

    api = FastAPI()
    api.include_router(router)
    for app, path in ((starlette_app, "/api/ops"), (api, "/news/status")):
        assert TestClient(PurposeGuardMiddleware(app)).get(path).status_code == 200
    assert seen == [(dict, "service.operations"), (dict, "service.communications")]


def test_a_starlette_route_in_a_fastapi_included_router_gets_its_purpose_from_the_first_request() -> None:
    # FastAPI runs a Starlette route of an included router through a copy
    # of it, never through its handle: the scope then watches for the match.
    @route_purpose("service.operations")
    async def ops(request: StarletteRequest) -> JSONResponse:
        return JSONResponse(purpose_now())

    router = APIRouter(prefix="/r")
    router.add_route("/ops", ops)
    inner = APIRouter(prefix="/inner")
    inner.add_route("/deep", ops)
    router.include_router(inner)
    api = FastAPI()
    api.include_router(router)
    client = TestClient(PurposeGuardMiddleware(api))
    for path in ("/ops", "/deep"):
        # Where FastAPI serves a Starlette route of an included router
        # depends on its release: the one prefix that answers is the route.
        answered = [client.get(prefix + path) for prefix in ("", "/r", "/r/inner")]
        served = [response for response in answered if response.status_code == 200]
        assert len(served) == 1 and served[0].json()["purpose"] == "service.operations"


def test_a_router_seen_once_is_never_reported(caplog: pytest.LogCaptureFixture) -> None:
    client = TestClient(fastapi_app([]))
    with caplog.at_level("WARNING", logger="purposeguard"):
        assert client.get("/news/status").json()["purpose"] == "service.operations"
        for _ in range(25):
            assert client.get("/nowhere").status_code == 404
    assert not [r for r in caplog.records if "route tables" in r.getMessage()]


def test_the_route_behind_plain_middlewares_wrapping_the_app_from_outside_gets_its_purpose() -> None:
    @route_purpose("service.operations")
    async def ops(request: StarletteRequest) -> JSONResponse:
        return JSONResponse(purpose_now())

    class Passing:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await self.app(scope, receive, send)

    client = TestClient(PurposeGuardMiddleware(Passing(Passing(Starlette(routes=[Route("/ops", ops)])))))
    assert client.get("/ops").json()["purpose"] == "service.operations"


def test_flask_views_added_after_a_first_request_that_never_reached_flask_are_still_checked() -> None:
    pg.configure(policy_with_partner_purpose())
    app = flask.Flask("late-after-refusal")
    failures = [RuntimeError("the identity service is down")]

    def tenant_from(environ: dict[str, Any]) -> str | None:
        if failures:
            raise failures.pop()
        return None

    @wsgi.route_purpose("marketing.partner")
    def push() -> Any:
        return {"pushed": True}

    pg.configure("trust-center")  # the key is gone
    wsgi.init_app(app, tenant_from=tenant_from)
    app.config["PROPAGATE_EXCEPTIONS"] = True
    client = app.test_client()
    # The first request fails in the middleware, before Flask: Flask still
    # takes new views after it, and so they must still be checked.
    with pytest.raises(RuntimeError, match="identity service"):
        client.get("/early")
    app.add_url_rule("/push", view_func=push)
    with pytest.raises(pg.PolicyError, match=r"/push"):
        client.get("/push")


# -- wrapped from outside: the app's own error middleware answers first -------------------


def _outside_apps() -> dict[str, Any]:
    @route_purpose("marketing.direct")
    async def send(request: StarletteRequest) -> JSONResponse:
        pg.check(pg.label(MARKER, CONTENT))
        return JSONResponse({"sent": True})

    async def broken(request: StarletteRequest) -> JSONResponse:
        raise ValueError("an ordinary bug")

    async def own_500(request: StarletteRequest) -> JSONResponse:
        return JSONResponse({"down": "for maintenance"}, status_code=500)

    async def long_500(request: StarletteRequest) -> StreamingResponse:
        async def chunks() -> Any:
            for _ in range(100):
                yield b"x" * 1024

        return StreamingResponse(chunks(), status_code=500)

    routes = [
        Route("/send", send),
        Route("/broken", broken),
        Route("/own-500", own_500),
        Route("/long-500", long_500),
    ]
    api = FastAPI()

    @api.get("/send")
    @route_purpose("marketing.direct")
    async def fastapi_send() -> dict[str, Any]:
        pg.check(pg.label(MARKER, CONTENT))
        return {"sent": True}

    return {"starlette": Starlette(routes=routes), "fastapi": api}


@pytest.mark.parametrize("kind", ["starlette", "fastapi"])
def test_a_violation_is_a_403_when_the_middleware_wraps_the_app_from_outside(
    kind: str, serve_asgi: Callable[[Any], Any]
) -> None:
    # The app's ServerErrorMiddleware catches the violation first and sends a
    # 500 before re-raising it: that 500 is held back and replaced.
    server = serve_asgi(PurposeGuardMiddleware(_outside_apps()[kind]))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        denied = client.get("/send")
    assert denied.status_code == 403
    assert denied.json()["purpose"] == "marketing.direct" and denied.json()["category"] == CONTENT
    assert MARKER not in denied.text


def test_other_500s_pass_through_a_middleware_wrapping_from_outside(serve_asgi: Callable[[Any], Any]) -> None:
    server = serve_asgi(PurposeGuardMiddleware(_outside_apps()["starlette"]))

    def get(path: str) -> httpx.Response:
        # A connection of its own each: the server closes one after an error.
        with httpx.Client(base_url=server.url, timeout=10) as client:
            return client.get(path)

    broken, own, long = get("/broken"), get("/own-500"), get("/long-500")
    assert broken.status_code == 500 and broken.text == "Internal Server Error"
    assert own.status_code == 500 and own.json() == {"down": "for maintenance"}
    # A streamed 500 goes on as it comes, whole.
    assert long.status_code == 500 and long.content == b"x" * 1024 * 100


def test_an_ordinary_error_still_reaches_the_test_client_from_outside() -> None:
    client = TestClient(PurposeGuardMiddleware(_outside_apps()["starlette"]))
    with pytest.raises(ValueError, match="an ordinary bug"):
        client.get("/broken")
    assert client.get("/send").status_code == 403


def _slow_500s(released: threading.Event) -> list[Route]:
    """500s the app sends on purpose, whose app keeps running after them
    until the test, having read the response, lets it go on."""

    def background() -> None:
        released.wait(timeout=30)

    async def with_background(request: StarletteRequest) -> JSONResponse:
        return JSONResponse({"incident": "INC-42"}, status_code=500, background=BackgroundTask(background))

    async def streamed(request: StarletteRequest) -> StreamingResponse:
        async def chunks() -> Any:
            yield b"first "
            await anyio.to_thread.run_sync(released.wait, 30)
            yield b"second"

        return StreamingResponse(chunks(), status_code=500)

    return [Route("/background-500", with_background), Route("/streamed-500", streamed)]


def test_a_500_the_app_sends_on_purpose_is_not_held_with_the_middleware_inside(
    serve_asgi: Callable[[Any], Any],
) -> None:
    # Inside (add_middleware) nothing answers a violation with a 500 before
    # this middleware: no response waits for the app to finish.
    released = threading.Event()
    app = Starlette(routes=_slow_500s(released))
    app.add_middleware(PurposeGuardMiddleware)
    server = serve_asgi(app)
    try:
        with httpx.Client(base_url=server.url, timeout=20) as client:
            response = client.get("/background-500")
            assert not released.is_set()  # answered while the background task still waits
            assert response.status_code == 500 and response.json() == {"incident": "INC-42"}
    finally:
        released.set()


def test_a_streamed_500_goes_on_as_it_comes_when_wrapped_from_outside(
    serve_asgi: Callable[[Any], Any],
) -> None:
    released = threading.Event()
    server = serve_asgi(PurposeGuardMiddleware(Starlette(routes=_slow_500s(released))))
    try:
        with (
            httpx.Client(base_url=server.url, timeout=20) as client,
            client.stream("GET", "/streamed-500") as response,
        ):
            chunks = response.iter_raw()
            assert response.status_code == 500 and next(chunks) == b"first "
            assert not released.is_set()  # the first chunk came before the app went on
            released.set()
            assert b"".join(chunks) == b"second"
    finally:
        released.set()


def test_a_violation_is_a_403_past_a_large_500_page_when_wrapped_from_outside(
    serve_asgi: Callable[[Any], Any],
) -> None:
    # The app's own 500 page (a handler for every exception) is larger than
    # any streaming chunk; held whole, it is still replaced by the 403.
    @route_purpose("marketing.direct")
    async def send(request: StarletteRequest) -> JSONResponse:
        pg.check(pg.label(MARKER, CONTENT))
        return JSONResponse({"sent": True})

    async def page(request: StarletteRequest, error: Exception) -> HTMLResponse:
        return HTMLResponse("<p>" + "sorry " * 20_000 + "</p>", status_code=500)

    app = Starlette(routes=[Route("/send", send)], exception_handlers={Exception: page})
    server = serve_asgi(PurposeGuardMiddleware(app))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        denied = client.get("/send")
    assert denied.status_code == 403 and denied.json()["purpose"] == "marketing.direct"
    assert MARKER not in denied.text


@pytest.mark.parametrize("framework", ["asgi", "flask"])
def test_a_typo_in_a_path_patterns_purpose_names_the_pattern(framework: str) -> None:
    from purposeguard.integrations import asgi, wsgi

    pg.configure("trust-center")
    with pytest.raises(pg.UnknownKeyError) as refused:
        if framework == "asgi":
            asgi.PurposeGuardMiddleware(Starlette(), purposes={"/ads/{id}": "advertsing"})
        else:
            wsgi.init_app(flask.Flask("typo"), purposes={"/ads/{id}": "advertsing"})
    assert str(refused.value) == "unknown purpose 'advertsing'; given for the path pattern '/ads/{id}'"


def test_what_the_app_writes_into_its_scope_never_reaches_the_server_s() -> None:
    # A server writes its access log line from its own scope; a trusted
    # access logger's line skips the zone check, so the app must not be able
    # to put text there (a laundered value as the path).
    @route_purpose("service.operations")
    async def ops(request: StarletteRequest) -> JSONResponse:
        request.scope["path"] = "/rewritten-by-the-app"
        return JSONResponse(purpose_now())

    middleware = PurposeGuardMiddleware(Starlette(routes=[Route("/ops", ops)]))
    server_scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/ops",
        "raw_path": b"/ops",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    async def serve() -> None:
        await middleware(server_scope, receive, send)

    anyio.run(serve)
    assert sent[0]["status"] == 200 and b"service.operations" in sent[1]["body"]
    assert server_scope["path"] == "/ops" and "endpoint" not in server_scope


@pytest.mark.parametrize("framework", ["asgi", "flask"])
def test_a_path_pattern_covers_its_base_path_and_a_trailing_slash(
    framework: str,
    serve_asgi: Callable[[Any], Any],
    serve_wsgi: Callable[[Any], Any],
) -> None:
    """``/admin/**`` covers ``/admin`` itself, and ``/reports/{id}`` covers
    ``/reports/7/``: a client leaving off or adding a slash must not reach a
    route with no purpose (egress to a host that is not a destination is
    then judged by none)."""
    from purposeguard.integrations import asgi

    pg.configure("trust-center")
    patterns = {"/admin/**": "service.operations", "/reports/{id}": "service.communications"}
    if framework == "asgi":

        async def answer(request: StarletteRequest) -> JSONResponse:
            return JSONResponse(purpose_now())

        routes = ["/admin", "/admin/{rest:path}", "/administrator", "/reports/{id}/"]
        app = Starlette(routes=[Route(path, answer) for path in routes])
        server = serve_asgi(asgi.PurposeGuardMiddleware(app, purposes=patterns))
    else:
        flask_app = flask.Flask("patterns")

        def answer_flask(**_: str) -> Any:
            return purpose_now()

        for number, path in enumerate(["/admin", "/admin/<path:rest>", "/administrator", "/reports/<id>/"]):
            flask_app.add_url_rule(path, f"route{number}", answer_flask)
        wsgi.init_app(flask_app, purposes=patterns)
        server = serve_wsgi(flask_app)
    with httpx.Client(base_url=server.url, timeout=10, follow_redirects=False) as client:
        seen = {
            path: client.get(path).json()["purpose"] for path in ("/admin", "/admin/users", "/reports/7/")
        }
        assert client.get("/administrator").json()["purpose"] is None
    assert seen == {
        "/admin": "service.operations",
        "/admin/users": "service.operations",
        "/reports/7/": "service.communications",
    }
