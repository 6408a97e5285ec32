"""In production (exceptions do not propagate), a violation is the 403
wherever Flask would otherwise answer it: in a blueprint with a catch-all
handler of its own, in an ``after_request`` hook, inside one of the app's
error handlers, behind pydantic's wrapped refusal. An app that answers
server errors itself keeps its answer; other errors stay Flask's 500."""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
import pytest
from flask import Blueprint, Flask, request
from purposeguard.integrations.wsgi import init_app, route_purpose

import purposeguard as pg

EMAIL = "customer_data.content.email"


class Contact(pydantic.BaseModel):
    email: Annotated[str, pg.Category(EMAIL)]


class Boom(Exception):
    pass


@pg.purpose("advertising")
def choose_ad(value: object) -> str:
    return "ad"


def _app(answers_500: bool = False) -> Flask:
    app = Flask("violations-answered")
    app.testing = False
    cached = Contact(email="someone@contoso.example")  # validated earlier: a cache
    kept = pg.label("someone@contoso.example", EMAIL)
    shop = Blueprint("shop", "shop", url_prefix="/shop")

    @shop.get("/view")
    @route_purpose("service.operations")
    def view() -> str:
        return choose_ad(kept)

    @shop.errorhandler(Exception)
    def everything(error: Exception) -> Any:
        return "the shop's own error page", 500

    @app.get("/json")
    @route_purpose("advertising")
    def as_json() -> Any:
        return cached.model_dump_json(), 200, {"Content-Type": "application/json"}

    @app.get("/after")
    @route_purpose("service.operations")
    def after_route() -> str:
        return "fine"

    @app.after_request
    def after(response: Any) -> Any:
        if request.path == "/after" and response.status_code == 200:
            choose_ad(kept)
        return response

    @app.get("/handler")
    @route_purpose("service.operations")
    def handler_route() -> str:
        raise Boom()

    @app.errorhandler(Boom)
    def on_boom(error: Exception) -> Any:
        return choose_ad(kept), 418

    @app.get("/broken")
    def broken() -> str:
        raise RuntimeError("a bug, not a violation")

    if answers_500:

        @app.errorhandler(500)
        def server_error(error: Exception) -> Any:
            return "the app's own 500", 500

    app.register_blueprint(shop)
    init_app(app)
    return app


@pytest.mark.parametrize("path", ["/shop/view", "/json", "/after", "/handler"])
def test_a_violation_flask_would_answer_with_something_else_is_the_403(path: str) -> None:
    pg.configure("trust-center", mode="enforce")
    with _app().test_client() as client:
        response = client.get(path)
    assert response.status_code == 403, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == "purpose_violation" and body["purpose"] == "advertising"
    assert "someone@contoso.example" not in response.get_data(as_text=True)


def test_other_errors_stay_flasks_500() -> None:
    pg.configure("trust-center", mode="enforce")
    with _app().test_client() as client:
        assert client.get("/broken").status_code == 500


def test_an_app_that_answers_server_errors_itself_keeps_its_answer() -> None:
    pg.configure("trust-center", mode="enforce")
    with _app(answers_500=True).test_client() as client:
        response = client.get("/after")
        assert (response.status_code, response.get_data(as_text=True)) == (500, "the app's own 500")
        # Its blueprint's violation is still the 403: the 403 handler is the blueprint's too.
        assert client.get("/shop/view").status_code == 403
