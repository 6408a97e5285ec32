"""Jinja2: every path by which a labelled value reaches the rendered text
labels it: concatenation (``~``), ``set`` and namespaces, calls, attribute
reads, loops, macros, includes, sandboxes, async rendering and streaming."""

from __future__ import annotations

import asyncio
import codecs
import io
from collections.abc import Callable
from typing import Any

import jinja2
import jinja2.sandbox
import pytest
from markupsafe import Markup, escape
from purposeguard.integrations.jinja2 import Environment, instrument

import purposeguard as pg

EMAIL = "customer_data.content.email"
DOC = "customer_data.content.document"


@pytest.fixture(autouse=True)
def _trust_center() -> None:
    pg.configure("trust-center")


def body() -> str:
    return pg.label("Quarterly numbers", EMAIL, tenant="contoso")


class User:
    def __init__(self) -> None:
        self.name = "Megan"


ENVIRONMENTS: dict[str, Callable[..., jinja2.Environment]] = {
    "environment": Environment,
    "instrumented": lambda **kw: instrument(jinja2.Environment(**kw)),
    "sandboxed": lambda **kw: instrument(jinja2.sandbox.SandboxedEnvironment(**kw)),
    "immutable-sandbox": lambda **kw: instrument(jinja2.sandbox.ImmutableSandboxedEnvironment(**kw)),
}

SOURCES = [
    "{{ 'Hi ' ~ body }}",
    "{{ body ~ '!' }}",
    "{% set x = 'Hi ' ~ body %}{{ x }}",
    "{% set ns = namespace(s='') %}{% set ns.s = ns.s ~ body %}{{ ns.s }}",
    "{% set ns = namespace(s='') %}{% for x in items %}{% set ns.s = ns.s ~ x %}{% endfor %}{{ ns.s }}",
    "{% for x in items %}{{ '- ' ~ x }}{% endfor %}",
    "{% for x in items %}{% set y = x ~ '.' %}{{ y }}{% endfor %}",
    "{{ ''.join(items) }}",
    "{{ ', '.join([body, 'x']) }}",
    "{{ '{}!'.format(body) }}",
    "{{ 'to ' ~ user.name }}",
    "{{ user.name }}",
    "{{ 'Re: ' ~ message['body'] }}",
    "{% macro quote(v) %}{{ '> ' ~ v }}{% endmacro %}{{ quote(body) }}",
    "{% macro box() %}[{{ caller() }}]{% endmacro %}{% call box() %}{{ 'x' ~ body }}{% endcall %}",
    "{% set x %}Hi {{ body }}{% endset %}{{ x ~ '' }}",
    "{{ body|upper }}",
    "{{ items|join(', ') }}",
    "{{ '%s!'|format(body) }}",
    "{{ body|replace('Q', 'q') }}",
    "{{ body|truncate(12) }}",
    "{{ body|e }}",
    "{{ ('Hi ' ~ body)|e }}",
    # a dict or list formatted whole
    "{{ '<%(body)s>' % message }}",
    "{{ 'all: %s' % items }}",
]


@pytest.mark.parametrize("autoescape", [True, False], ids=["autoescape", "no-autoescape"])
@pytest.mark.parametrize("make", ENVIRONMENTS.values(), ids=ENVIRONMENTS.keys())
@pytest.mark.parametrize("source", SOURCES)
def test_every_path_to_the_output_labels_it(
    make: Callable[..., jinja2.Environment], autoescape: bool, source: str
) -> None:
    env = make(autoescape=autoescape)
    context = {
        "body": body(),
        "items": [body()],
        "user": pg.label(User(), EMAIL, tenant="contoso"),
        "message": {"body": body()},
    }
    page = env.from_string(source).render(**context)
    assert pg.labels_of(page) == {EMAIL}
    assert pg.tenant_of(page) == "contoso"

    @pg.purpose("advertising")
    def advertise(text: str) -> None:
        raise AssertionError("the guard must stop this call")

    with pytest.raises(pg.PurposeViolation):
        advertise(page)


def test_a_concatenation_set_as_a_module_variable_is_labelled() -> None:
    module = Environment().from_string("{% set x = 'Hi ' ~ body %}").make_module({"body": body()})
    assert pg.labels_of(getattr(module, "x")) == {EMAIL}  # noqa: B009 - a template variable


def test_values_concatenated_add_their_labels() -> None:
    page = (
        Environment()
        .from_string("{{ a ~ ' / ' ~ b }}")
        .render(a=body(), b=pg.label("doc", DOC, tenant="fabrikam"))
    )
    assert pg.labels_of(page) == {EMAIL, DOC}
    assert pg.tenant_of(page) == "(several tenants)"


def test_without_labelled_values_the_output_is_a_plain_str() -> None:
    env = Environment(autoescape=True)
    source = "{% set x = 'Hi ' ~ name %}{{ x }}{{ ''.join(['a']) }}{{ user.name }}{% for c in name %}{{ c ~ '' }}{% endfor %}"
    page = env.from_string(source).render(name="Megan", user=User(), unused=body())
    assert type(page) is str and pg.labels_of(page) == frozenset()
    chunks = list(env.from_string(source).generate(name="Megan", user=User()))
    assert all(type(chunk) in (str, Markup) for chunk in chunks)


@pytest.mark.parametrize("include", ["include", "extends"])
def test_loader_templates_include_and_extend_concatenations(include: str) -> None:
    templates = {
        "quote.html": "<q>{{ 'Hi ' ~ body }}</q>",
        "base.html": "<main>{% block content %}{% endblock %}</main>",
        "include": '{% include "quote.html" %}',
        "extends": '{% extends "base.html" %}{% block content %}{% set x = "Hi " ~ body %}{{ x }}{% endblock %}',
    }
    env = Environment(loader=jinja2.DictLoader(templates), autoescape=True)
    page = env.get_template(include).render(body=body())
    assert "Hi Quarterly numbers" in page and pg.labels_of(page) == {EMAIL}


def test_async_rendering_labels_concatenations() -> None:
    env = Environment(enable_async=True)
    template = env.from_string("{% set x = 'Hi ' ~ body %}{{ x }}")
    assert pg.labels_of(asyncio.run(template.render_async(body=body()))) == {EMAIL}
    assert pg.labels_of(template.render(body=body())) == {EMAIL}

    async def chunks() -> list[str]:
        return [chunk async for chunk in template.generate_async(body=body())]

    assert [pg.labels_of(chunk) for chunk in asyncio.run(chunks())] == [{EMAIL}]
    assert [pg.labels_of(chunk) for chunk in template.generate(body=body())] == [{EMAIL}]


def test_generated_and_streamed_chunks_are_labelled() -> None:
    template = Environment().from_string("{% for x in items %}{{ '- ' ~ x }}\n{% endfor %}")
    items = ["plain", body(), "after"]
    assert [pg.labels_of(chunk) for chunk in template.generate(items=items)] == [
        set(),
        set(),
        {EMAIL},
        {EMAIL},
        {EMAIL},
        {EMAIL},
    ]
    assert pg.labels_of(list(template.stream(items=items))[-1]) == {EMAIL}

    stream = template.stream(items=items)
    stream.enable_buffering(2)
    assert [pg.labels_of(chunk) for chunk in stream] == [set(), {EMAIL}, {EMAIL}]


@pytest.mark.parametrize(
    "source",
    [
        "{% for x in items %}{% if x == 'Quarterly numbers' %}yes{% endif %}{% endfor %}",
        "{% for x in items %}{{ x|length }}{% endfor %}",
        "{% for x in items if x %}{{ loop.index }}{% endfor %}",
        "{% for k, v in pairs.items() %}{% if v %}1{% endif %}{% endfor %}",
    ],
)
def test_a_loop_item_read_only_to_decide_labels_the_page(source: str) -> None:
    for env in (
        Environment(),
        Environment(enable_async=True),
        instrument(jinja2.sandbox.SandboxedEnvironment()),
    ):
        template = env.from_string(source)
        values = {"items": [body()], "pairs": {"k": body()}}
        page = asyncio.run(template.render_async(**values)) if env.is_async else template.render(**values)
        assert page and pg.labels_of(page) == {EMAIL}


def test_a_filter_added_after_instrument_is_watched() -> None:
    env = jinja2.Environment()
    instrument(env)
    # As Flask's @app.template_filter adds one: an f-string drops the labels.
    env.filters["shout"] = lambda value: f"* {value} *"
    env.filters.update({"rot": lambda value: codecs.encode(str(value), "rot13")})
    for source in ("{{ body|shout }}", "{% for x in items %}{{ x|rot }}{% endfor %}"):
        page = env.from_string(source).render(body=body(), items=[body()])
        assert pg.labels_of(page) == {EMAIL}
    assert env.filters["shout"].__purposeguard_filter__ is not None


def test_a_macro_called_from_python_labels_what_it_returns() -> None:
    # Flask's get_template_attribute and template.module.<macro>() call a
    # macro outside any render.
    env = Environment(
        loader=jinja2.DictLoader(
            {"macros.html": "{% macro mail(x) %}Dear customer, {{ x|upper }}{% endmacro %}"}
        ),
        autoescape=True,
    )
    macros: Any = env.get_template("macros.html").module
    made = macros.mail(body())
    assert "QUARTERLY NUMBERS" in made and pg.labels_of(made) == {EMAIL}
    assert isinstance(made, Markup)
    # Plain arguments: plain text, the macro's own kind.
    plain = macros.mail("hello")
    assert pg.labels_of(plain) == set() and isinstance(plain, Markup)


class _Writes(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[Any] = []

    def writelines(self, lines: Any) -> None:
        self.chunks.extend(lines)


@pytest.mark.parametrize("encoding", [None, "utf-8"])
def test_what_a_stream_dumps_is_labelled(encoding: str | None) -> None:
    out: Any = _Writes()
    Environment().from_string("{{ 'Hi ' ~ body }}").stream(body=body()).dump(out, encoding=encoding)
    assert out.chunks and all(pg.labels_of(chunk) == {EMAIL} for chunk in out.chunks)


@pytest.mark.parametrize("wrap", [Markup, escape], ids=["Markup", "escape"])
def test_markup_made_from_a_labelled_value(wrap: Callable[[Any], Markup]) -> None:
    page = Environment(autoescape=True).from_string("{{ x }}").render(x=wrap(body()))
    assert pg.labels_of(page) == {EMAIL}


class _Cache(jinja2.BytecodeCache):
    """In memory, shared by two environments."""

    def __init__(self) -> None:
        self.stored: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if bucket.key in self.stored:
            bucket.bytecode_from_string(self.stored[bucket.key])

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.stored[bucket.key] = bucket.bytecode_to_string()


def test_a_template_compiled_by_a_plain_environment_labels_what_it_escapes() -> None:
    # Compiled without the instrumented finalize; the value comes from a
    # call with no labelled argument, so only its escaping sees it.
    cache = _Cache()
    loader = jinja2.DictLoader({"page.html": "<p>{{ latest() }}</p>"})
    jinja2.Environment(loader=loader, autoescape=True, bytecode_cache=cache).get_template("page.html")
    assert cache.stored
    env = Environment(loader=loader, autoescape=True, bytecode_cache=cache)
    page = env.get_template("page.html").render(latest=body)
    assert page == "<p>Quarterly numbers</p>" and pg.labels_of(page) == {EMAIL}


def test_a_sandbox_that_intercepts_modulo_still_does() -> None:
    class Strict(jinja2.sandbox.SandboxedEnvironment):
        intercepted_binops = frozenset({"%"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            return "refused"

    env = instrument(Strict())
    page = env.from_string("{{ '<%(k)s>' % d }}").render(d={"k": body()})
    assert page == "refused" and pg.labels_of(page) == {EMAIL}


IMPORTED = {
    "helpers.html": (
        "{% set banner %}[{{ motto }}]{% endset %}{% set size = motto|length %}"
        "{% macro quote(v) %}> {{ v }}{% endmacro %}"
    ),
    "module": '{% import "helpers.html" as h %}{{ h.banner }}',
    "names": '{% from "helpers.html" import banner, size %}{{ banner }} {{ size }}',
    "macro": '{% from "helpers.html" import quote %}{{ quote("plain") }}',
}


@pytest.mark.parametrize("name", ["module", "names", "macro"])
@pytest.mark.parametrize("enable_async", [False, True], ids=["sync", "async"])
def test_a_cached_imported_module_labels_every_page_that_imports_it(name: str, enable_async: bool) -> None:
    env = Environment(loader=jinja2.DictLoader(IMPORTED), autoescape=True, enable_async=enable_async)
    env.globals["motto"] = body()
    template = env.get_template(name)
    # The first render makes the module (and jinja caches it on its template).
    for _ in range(3):
        page = asyncio.run(template.render_async()) if enable_async else template.render()
        assert pg.labels_of(page) == {EMAIL}
        assert pg.tenant_of(page) == "contoso"


def test_an_imported_module_without_labelled_reads_stays_plain() -> None:
    env = Environment(loader=jinja2.DictLoader(IMPORTED), autoescape=True)
    env.globals["motto"] = "plain"
    for _ in range(2):
        page = env.get_template("names").render()
        assert page == "[plain] 5" and type(page) is str and not pg.labels_of(page)
    assert not pg.labels_of(env.get_template("helpers.html").module)


def test_a_value_read_only_to_decide_labels_the_page() -> None:
    # Over-labelling, by design: the branch taken tells something about the value.
    page = Environment().from_string("{% if 'Quarterly' in body %}yes{% endif %}").render(body=body())
    assert page == "yes" and pg.labels_of(page) == {EMAIL}


# -- values read from plain containers and objects reach the page by any path --------------


class Order:
    def __init__(self) -> None:
        self.email = body()


@pytest.mark.parametrize(
    "source",
    [
        "{{ '%s!' % (order.email,) }}",
        "{{ '%s!' % (d.k,) }}",
        "{% if d.k == 'Quarterly numbers' %}yes{% endif %}",
        "{% if 'Quarterly' in order.email %}yes{% endif %}",
        "{{ d.k|plain }}",
        "{{ order.email|plain }}",
    ],
)
def test_a_labelled_value_read_from_a_plain_dict_or_object_labels_the_page(source: str) -> None:
    env = Environment()
    env.filters["plain"] = lambda value: "".join(value)  # registered after instrument()
    page = env.from_string(source).render(order=Order(), d={"k": body()})
    assert page and pg.labels_of(page) == {EMAIL}


def test_a_finalize_replaced_after_instrument_still_labels_the_page() -> None:
    env = Environment().overlay(finalize=lambda value: "".join(value) if isinstance(value, str) else value)
    page = env.from_string("<td>{{ d.k }}</td>").render(d={"k": body()})
    assert pg.labels_of(page) == {EMAIL}


def test_buffered_chunks_are_cut_where_jinja_cuts_them() -> None:
    source = "{% for x in xs %}{{ x }}{{ e }}{% endfor %}{{ e }}{{ e }}"
    plain = jinja2.Environment().from_string(source).stream(xs="abc", e="")
    plain.enable_buffering(2)
    guarded = Environment().from_string(source).stream(xs="abc", e="")
    guarded.enable_buffering(2)
    assert list(guarded) == list(plain)


def test_a_lazy_collection_passed_to_a_call_is_not_run() -> None:
    class Lazy:
        runs = 0

        def __iter__(self) -> Any:
            Lazy.runs += 1
            return iter(["a", "b"])

        def __len__(self) -> int:
            return 2

        def __contains__(self, item: object) -> bool:
            return False

    page = Environment().from_string("{{ count(items) }}").render(items=Lazy(), count=lambda items: "n")
    assert page == "n" and Lazy.runs == 0
