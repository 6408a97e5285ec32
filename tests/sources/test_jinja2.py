"""Jinja2: a rendered template carries the labels of the labelled values it
interpolated, autoescape on or off; real Jinja2, a real Starlette
TemplateResponse and a real Flask render_template."""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path
from typing import Any

import flask
import jinja2
import pytest
from markupsafe import Markup
from purposeguard.integrations.jinja2 import Environment, instrument

import purposeguard as pg

EMAIL = "customer_data.content.email"
DOC = "customer_data.content.document"
MARKER = "<b>zq-jinja-6b0d</b>"


def body() -> str:
    return pg.label(MARKER, EMAIL, tenant="contoso")


@pytest.mark.parametrize("autoescape", [True, False], ids=["autoescape", "no-autoescape"])
@pytest.mark.parametrize(
    "source",
    [
        "<p>{{ body }}</p>",
        "{{ body|e }}",
        "{{ body|safe }}",
        "{{ body|upper }}",
        '{{ "quoted: %s"|format(body) }}',
        "{{ message.body }}",
        "{% for item in items %}{{ item }}{% endfor %}",
        "{% macro quote(v) %}> {{ v }}{% endmacro %}{{ quote(body) }}",
        "{% set copy = body %}{{ copy }}",
    ],
)
def test_an_interpolated_labelled_value_labels_the_page(autoescape: bool, source: str) -> None:
    env = Environment(autoescape=autoescape)
    page = env.from_string(source).render(body=body(), message={"body": body()}, items=[body()])
    assert "zq-jinja-6b0d" in page.lower()
    assert pg.labels_of(page) == {EMAIL}
    assert pg.tenant_of(page) == "contoso"


def test_only_what_is_output_counts() -> None:
    env = Environment(autoescape=True)
    page = env.from_string("Hello {{ name }}").render(name="Megan", unused=body())
    assert page == "Hello Megan" and pg.labels_of(page) == frozenset()
    assert type(page) is str


def test_labels_of_several_values_and_tenants_add_up() -> None:
    env = Environment()
    page = env.from_string("{{ a }} / {{ b }}").render(a=body(), b=pg.label("doc", DOC, tenant="fabrikam"))
    assert pg.labels_of(page) == {EMAIL, DOC}
    assert pg.tenant_of(page) == "(several tenants)"


def test_includes_and_template_inheritance_carry_labels(tmp_path: Path) -> None:
    (tmp_path / "base.html").write_text("<main>{% block content %}{% endblock %}</main>", encoding="utf-8")
    (tmp_path / "quote.html").write_text("<blockquote>{{ body }}</blockquote>", encoding="utf-8")
    (tmp_path / "page.html").write_text(
        '{% extends "base.html" %}{% block content %}{% include "quote.html" %}{% endblock %}',
        encoding="utf-8",
    )
    env = Environment(loader=jinja2.FileSystemLoader(tmp_path), autoescape=True)
    page = env.get_template("page.html").render(body=body())
    assert page.startswith("<main><blockquote>&lt;b&gt;") and pg.labels_of(page) == {EMAIL}


def test_async_rendering_and_streaming_carry_labels() -> None:
    env = Environment(enable_async=True)
    template = env.from_string("{{ greeting }} {{ body }}")
    page = asyncio.run(template.render_async(greeting="hi", body=body()))
    assert pg.labels_of(page) == {EMAIL}

    sync_env = Environment()
    chunks = list(sync_env.from_string("{% for x in xs %}{{ x }}{% endfor %}").generate(xs=["plain", body()]))
    assert pg.labels_of(chunks[0]) == frozenset() and pg.labels_of(chunks[1]) == {EMAIL}


def test_instrument_an_existing_environment_keeps_its_finalize_and_filters() -> None:
    @jinja2.pass_context
    def shout(context: Any, value: str) -> str:
        return value.upper() + "!"

    env = jinja2.Environment(finalize=lambda v: "" if v is None else v)
    env.filters["shout"] = shout
    instrument(env)
    assert instrument(env) is env
    page = env.from_string("{{ nothing }}{{ body|shout }}").render(nothing=None, body=pg.label("hey", EMAIL))
    assert page == "HEY!" and pg.labels_of(page) == {EMAIL}
    with pytest.raises(TypeError, match="jinja2.Environment"):
        instrument(object())


def test_a_mail_built_from_content_is_checked_where_it_leaves() -> None:
    @pg.purpose("marketing.direct")
    def send_newsletter(html: str) -> None:
        raise AssertionError("the guard must stop this call")

    env = Environment(autoescape=True)
    page = env.from_string("<h1>News</h1><p>From your mail: {{ body }}</p>").render(body=body())
    with pytest.raises(pg.PurposeViolation) as caught:
        send_newsletter(page)
    assert caught.value.category == EMAIL
    assert "zq-jinja" not in str(caught.value)


@pytest.mark.parametrize("autoescape", [True, False], ids=["autoescape", "no-autoescape"])
def test_a_template_made_directly_labels_what_it_renders(autoescape: bool) -> None:
    # jinja2.Template(source) compiles in a shared environment of Jinja's
    # own making, which no instrument() call ever saw.
    instrument(jinja2.Environment())

    class Letter(jinja2.Template):
        pass

    for template in (
        jinja2.Template("<p>{{ body }}</p>", autoescape=autoescape),
        Letter("<p>{{ body|upper }}</p>", autoescape=autoescape),
        Environment().from_string("<p>{{ body }}</p>", template_class=jinja2.Template),
    ):
        page = template.render(body=body())
        assert "zq-jinja-6b0d" in page.lower()
        assert pg.labels_of(page) == {EMAIL}
        assert pg.tenant_of(page) == "contoso"

    @pg.purpose("marketing.direct")
    def send_newsletter(html: str) -> None:
        raise AssertionError("the guard must stop this call")

    with pytest.raises(pg.PurposeViolation):
        send_newsletter(jinja2.Template("News: {{ body }}").render(body=body()))


@pytest.mark.parametrize("autoescape", [True, False], ids=["autoescape", "no-autoescape"])
def test_the_text_of_a_template_module_is_labelled(autoescape: bool) -> None:
    # make_module() (and {% import %}) keep the body's chunks and join them
    # with a plain join in str() and __html__().
    env = Environment(autoescape=autoescape)
    module = env.from_string("<p>{{ body }}</p>").make_module({"body": body()})
    for text in (str(module), module.__html__()):
        assert "zq-jinja-6b0d" in text.lower()
        assert pg.labels_of(text) == {EMAIL} and pg.tenant_of(text) == "contoso"
    assert isinstance(module.__html__(), Markup)
    plain = env.from_string("<p>{{ body }}</p>").make_module({"body": "plain words"})
    assert type(str(plain)) is str and type(plain.__html__()) is Markup


def test_uninstrument_gives_templates_made_directly_jinjas_own_environment() -> None:
    from purposeguard.integrations.jinja2 import uninstrument

    instrument(jinja2.Environment())
    uninstrument()
    try:
        assert jinja2.Template.environment_class is jinja2.Environment
        assert "__wrapped__" not in vars(vars(jinja2.environment.TemplateModule)["__str__"])
        assert pg.labels_of(jinja2.Template("{{ body }}").render(body=body())) == frozenset()
    finally:
        instrument(jinja2.Environment())


def test_rendering_is_not_a_new_read() -> None:
    env = Environment()
    content = body()
    with pg.purpose("service.operations"), pg.testing.assert_no_violations():
        assert pg.labels_of(env.from_string("{{ b }}").render(b=content)) == {EMAIL}


def test_a_starlette_template_response_body_is_labelled(tmp_path: Path) -> None:
    from starlette.applications import Starlette
    from starlette.exceptions import StarletteDeprecationWarning
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route
    from starlette.templating import Jinja2Templates

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from starlette.testclient import TestClient

    (tmp_path / "mail.html").write_text("<p>{{ body }}</p>", encoding="utf-8")
    templates = Jinja2Templates(env=Environment(loader=jinja2.FileSystemLoader(tmp_path), autoescape=True))
    bodies: list[Any] = []

    async def page(request: Request) -> Response:
        response = templates.TemplateResponse(request, "mail.html", {"body": body()})
        bodies.append(response.body)
        return response

    with TestClient(Starlette(routes=[Route("/page", page)])) as client:
        assert "zq-jinja-6b0d" in client.get("/page").text
    assert pg.labels_of(bodies[0]) == {EMAIL}


def test_a_flask_rendered_page_is_labelled(tmp_path: Path) -> None:
    (tmp_path / "mail.html").write_text("<p>{{ body }}</p>", encoding="utf-8")
    app = flask.Flask("pages", template_folder=str(tmp_path))
    instrument(app.jinja_env)
    pages: list[str] = []

    @app.get("/page")
    def page() -> str:
        pages.append(flask.render_template("mail.html", body=body()))
        return pages[-1]

    response = app.test_client().get("/page")
    assert "zq-jinja-6b0d" in response.get_data(as_text=True)
    assert pg.labels_of(pages[0]) == {EMAIL}
    assert isinstance(Markup.escape(pages[0]), Markup)
