"""A FastAPI handler or service decorated with ``@pg.purpose`` that takes the request.

The request reaches the app, its routes and (for FastAPI) pydantic's schema
objects, far past the label walk's bounds: walked, every such call was
refused as an internal error. It is read for what the request carries instead:
what the app put in ``request.state``, the scope's own values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI, Request
from purposeguard.integrations.asgi import PurposeGuardMiddleware

import purposeguard as pg

EMAIL = "customer_data.content.email"


@pg.purpose("service.operations")
def describe(request: Request) -> str:
    return request.url.path


@pg.purpose("advertising")
def target(request: Request) -> str:
    return request.url.path


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int, request: Request) -> dict[str, Any]:
        return {"path": describe(request), "app": describe_app(request)}

    @app.get("/ads")
    async def ads(request: Request) -> dict[str, Any]:
        request.state.mail = pg.label("Quarterly numbers", EMAIL)
        return {"path": target(request)}

    app.add_middleware(PurposeGuardMiddleware)
    return app


@pg.purpose("service.operations")
def describe_app(request: Request) -> str:
    return type(request.app).__name__


def test_a_request_handed_to_guarded_code_is_read_not_walked(serve_asgi: Callable[[Any], Any]) -> None:
    pg.configure("trust-center", mode="enforce")
    server = serve_asgi(_app())
    with pg.testing.assert_no_violations():
        response = httpx.get(f"{server.url}/items/7", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == {"path": "/items/7", "app": "FastAPI"}


def test_what_the_app_put_on_the_request_is_still_checked(serve_asgi: Callable[[Any], Any]) -> None:
    pg.configure("trust-center", mode="enforce")
    server = serve_asgi(_app())
    response = httpx.get(f"{server.url}/ads", timeout=10)
    assert response.status_code == 403
    assert response.json()["category"] == EMAIL
