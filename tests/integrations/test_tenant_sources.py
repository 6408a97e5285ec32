"""Who the tenant is: the application says so (``tenant_from``, ``pg.set_tenant``);
a client header counts only where the application names it."""

from __future__ import annotations

import asyncio
import logging
import warnings
from typing import Any

import pytest
from purposeguard.integrations import asgi, wsgi
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import purposeguard as pg

with warnings.catch_warnings():
    # As in test_asgi: Starlette's test client warns when it falls back to httpx.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"tenant": pg.current_tenant()})


def _asgi(**options: Any) -> TestClient:
    app = Starlette(routes=[Route("/whoami", whoami)])
    app.add_middleware(asgi.PurposeGuardMiddleware, **options)
    return TestClient(app)


def _wsgi_tenant(headers: dict[str, str], **options: Any) -> Any:
    seen: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(pg.current_tenant())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    middleware = wsgi.PurposeGuardMiddleware(app, **options)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/whoami",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
    }
    environ.update({"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()})
    # As a WSGI server does: iterate the body, then close it (which closes the request's zone).
    body = middleware(environ, lambda status, headers, exc_info=None: None)
    try:
        list(body)
    finally:
        body.close()  # type: ignore[attr-defined]
    return seen[0]


def test_a_header_the_application_did_not_name_is_no_tenant() -> None:
    assert _asgi().get("/whoami", headers={"x-tenant": "contoso"}).json() == {"tenant": None}
    assert _wsgi_tenant({"x-tenant": "contoso"}) is None


def test_a_header_the_application_names_is_the_tenant() -> None:
    client = _asgi(tenant_header="x-tenant")
    assert client.get("/whoami", headers={"x-tenant": "contoso"}).json() == {"tenant": "contoso"}
    assert _wsgi_tenant({"x-tenant": "contoso"}, tenant_header="x-tenant") == "contoso"


def test_a_tenant_header_named_after_the_asgi_middleware_was_built_is_read() -> None:
    # The scan for the headers the middleware reads follows its attribute.
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"x-other", b"contoso"), (b"x-tenant", b"fabrikam"), (b"accept", b"*/*")],
    }
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(pg.current_tenant())

    async def receive() -> Any:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        return None

    middleware = asgi.PurposeGuardMiddleware(app, tenant_header="x-tenant")
    asyncio.run(middleware(scope, receive, send))
    middleware.tenant_header = b"x-other"
    asyncio.run(middleware(scope, receive, send))
    assert seen == ["fabrikam", "contoso"]


def test_the_applications_identity_wins_over_a_named_header() -> None:
    client = _asgi(tenant_header="x-tenant", tenant_from=lambda scope: "fabrikam")
    assert client.get("/whoami", headers={"x-tenant": "contoso"}).json() == {"tenant": "fabrikam"}
    assert _wsgi_tenant(
        {"x-tenant": "contoso"}, tenant_header="x-tenant", tenant_from=lambda environ: "fabrikam"
    ) == ("fabrikam")


def test_an_anonymous_caller_with_no_identity_has_no_tenant() -> None:
    client = _asgi(tenant_from=lambda scope: None)
    assert client.get("/whoami", headers={"x-tenant": "contoso"}).json() == {"tenant": None}


@pytest.mark.parametrize("name", ["", 42])
def test_a_tenant_header_must_be_a_name(name: Any) -> None:
    with pytest.raises(ValueError, match="tenant_header must be a header name"):
        asgi.PurposeGuardMiddleware(Starlette(), tenant_header=name)


def test_a_labelled_value_from_tenant_from_is_never_the_tenant(caplog: pytest.LogCaptureFixture) -> None:
    # Tenant ids are kept in records and sent in baggage: an application
    # that hands back the caller's labelled e-mail address gets no tenant
    # and a warning, on both middlewares, instead of that address travelling on.
    email = pg.label("alice@example.com", "customer_data.content.email")
    with caplog.at_level("WARNING", logger="purposeguard"):
        asgi_tenant = _asgi(tenant_from=lambda scope: email).get("/whoami").json()["tenant"]
        wsgi_tenant = _wsgi_tenant({}, tenant_from=lambda environ: email)
    assert asgi_tenant is None and wsgi_tenant is None
    warned = [r.getMessage() for r in caplog.records if "labelled value" in r.getMessage()]
    assert len(warned) == 2 and "alice" not in " ".join(warned)


def test_a_wsgi_tenant_header_latin_1_cannot_hold_is_refused_not_turned_into_question_marks() -> None:
    # PEP 3333 hands headers over as latin-1 text; text outside latin-1 came
    # from no wire (a non-conforming server or test client).
    assert _wsgi_tenant({"x-tenant": "acme\u0100"}, tenant_header="x-tenant") is None
    assert _wsgi_tenant({"x-tenant": "acme\u0141"}, tenant_header="x-tenant") is None
    assert _wsgi_tenant({"x-tenant": "acme\xe9"}, tenant_header="x-tenant") is None  # latin-1, not ASCII


def test_a_labelled_tenant_header_equal_to_a_known_tenant_is_refused() -> None:
    seen: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(pg.current_tenant())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    middleware = wsgi.PurposeGuardMiddleware(app, tenant_header="x-tenant")
    for value in ("contoso", pg.label("contoso", "customer_data.content.email")):
        body: Any = middleware(
            {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_X_TENANT": value},
            lambda status, headers, exc_info=None: None,
        )
        list(body)
        body.close()
    assert seen == ["contoso", None]


def test_a_tenant_header_sent_twice_names_no_tenant(caplog: pytest.LogCaptureFixture) -> None:
    """A gateway that adds its header beside the client's own: the WSGI
    servers join the two with a comma, ASGI hands both over. Neither the
    joined text nor either value is taken."""
    from purposeguard.integrations.asgi import PurposeGuardMiddleware as ASGIMiddleware
    from purposeguard.integrations.wsgi import PurposeGuardMiddleware as WSGIMiddleware

    seen: list[str | None] = []

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(pg.current_tenant())
        start_response("200 OK", [])
        return [b""]

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(pg.current_tenant())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    caplog.set_level(logging.WARNING, logger="purposeguard")
    body = WSGIMiddleware(wsgi_app, tenant_header="x-tenant")(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_X_TENANT": "gateway, client"}, lambda *a: None
    )
    body.close()  # type: ignore[attr-defined]

    async def call() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: Any) -> None:
            pass

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "headers": [(b"x-tenant", b"gateway"), (b"x-tenant", b"client")],
        }
        await ASGIMiddleware(asgi_app, tenant_header="x-tenant")(scope, receive, send)

    asyncio.run(call())
    assert seen == [None, None]
    assert sum("came more than once" in r.getMessage() for r in caplog.records) == 2
    # Said once per middleware: a client can send it on every request.
    again = WSGIMiddleware(wsgi_app, tenant_header="x-tenant")
    for _ in range(3):
        again({"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_X_TENANT": "a, b"}, lambda *a: None).close()  # type: ignore[attr-defined]
    assert seen[2:] == [None, None, None]
    assert sum("came more than once" in r.getMessage() for r in caplog.records) == 3


def test_the_marker_of_several_tenants_data_is_never_a_tenant(caplog: pytest.LogCaptureFixture) -> None:
    # Records would read a zone of that tenant as data of several tenants:
    # a gateway's header, tenant_from and set_tenant refuse it, as signed
    # baggage does.
    marker = "(several tenants)"
    with caplog.at_level("WARNING", logger="purposeguard"):
        header = _asgi(tenant_header="x-tenant").get("/whoami", headers={"x-tenant": marker}).json()
        wsgi_header = _wsgi_tenant({"x-tenant": marker}, tenant_header="x-tenant")
        from_app = _wsgi_tenant({}, tenant_from=lambda environ: marker)
    assert header == {"tenant": None} and wsgi_header is None and from_app is None
    assert len([r for r in caplog.records if "several tenants' data" in r.getMessage()]) == 3
    with pg.zone(), pytest.raises(pg.PolicyError, match="never a tenant id"):
        pg.set_tenant(marker)
