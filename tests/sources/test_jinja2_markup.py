"""Jinja2: ``Markup`` and ``escape`` carry labels while the integration is
instrumented. Application code that marks stored HTML safe
(``Markup(note.body)``) or escapes it before the template sees it keeps its
labels, and every Markup operation that mixes a labelled value in keeps them
too; values without labels come out exactly as markupsafe makes them."""

from __future__ import annotations

import copy
import pickle
import sys
from collections.abc import Callable, Iterator
from typing import Any

import jinja2
import markupsafe
import pytest
from markupsafe import Markup, escape, escape_silent
from purposeguard.integrations.jinja2 import Environment, instrument, is_instrumented, uninstrument

import purposeguard as pg

EMAIL = "customer_data.content.email"
DOC = "customer_data.content.document"
STORED = "<p>Quarterly <b>numbers</b> &amp; notes</p>"


@pytest.fixture(autouse=True)
def _instrumented() -> Iterator[None]:
    pg.configure("trust-center")
    instrument(jinja2.Environment())
    yield
    instrument(jinja2.Environment())  # a test that uninstrumented leaves it as the others found it


def stored() -> str:
    return pg.label(STORED, EMAIL, tenant="contoso")


def _escape_taken_before_instrument() -> Callable[[Any], Markup]:
    """``from markupsafe import escape`` run while markupsafe was plain."""
    uninstrument()
    early: Callable[[Any], Markup] = markupsafe.escape
    instrument(jinja2.Environment())
    return early


# Each builds a result from a value the way application code does; the same
# operation on the same text without labels is the reference.
OPERATIONS: dict[str, Callable[[str], Any]] = {
    "Markup(v)": Markup,
    "escape(v)": escape,
    "escape_silent(v)": escape_silent,
    "Markup.escape(v)": Markup.escape,
    "markupsafe.escape(v)": lambda v: markupsafe.escape(v),
    "escape(Markup(v))": lambda v: escape(Markup(v)),
    "Markup % v": lambda v: Markup("<li>%s</li>") % v,
    "Markup % (v, x)": lambda v: Markup("<li>%s %s</li>") % (v, "<x>"),
    "Markup % {k: v}": lambda v: Markup("<li>%(k)s</li>") % {"k": v},
    "Markup % Markup(v)": lambda v: Markup("<li>%s</li>") % Markup(v),
    "Markup.format(v)": lambda v: Markup("<li>{}</li>").format(v),
    "Markup.format(k=v)": lambda v: Markup("<li>{k}</li>").format(k=v),
    "Markup.format_map": lambda v: Markup("<li>{k}</li>").format_map({"k": v}),
    "Markup + v": lambda v: Markup("<hr>") + v,
    "Markup + Markup(v)": lambda v: Markup("<hr>") + Markup(v),
    "str + Markup(v)": lambda v: "<hr>" + Markup(v),
    "Markup(v) + str": lambda v: Markup(v) + "<hr>",
    "Markup.join([v])": lambda v: Markup("<br>").join(["a & b", v]),
    "Markup.join(generator)": lambda v: Markup("<br>").join(x for x in ("a", v)),
    "Markup.replace(v)": lambda v: Markup("<i>N</i>").replace("N", v),
    "Markup(v).unescape()": lambda v: Markup(v).unescape(),
    "Markup(v).striptags()": lambda v: Markup(v).striptags(),
    "escape(v).unescape()": lambda v: escape(v).unescape(),
    "Markup(v).upper()": lambda v: Markup(v).upper(),
    "Markup(v)[3:20]": lambda v: Markup(v)[3:20],
    "Markup(v).split()": lambda v: Markup(v).split(),
    "Markup(v).partition": lambda v: Markup(v).partition("<b>"),
    "Markup(v) * 2": lambda v: Markup(v) * 2,
    "str(Markup(v))": lambda v: str(Markup(v)),
    "Markup(v) in f-string": lambda v: f"{Markup(v)}",
    "'%s' % Markup(v)": lambda v: "<%s>" % Markup(v),
    "escape taken before instrument()": lambda v: _escape_taken_before_instrument()(v),
}


def _shape(value: Any) -> Any:
    """Text and safety: what markupsafe's result means on a page."""
    if isinstance(value, (list, tuple)):
        return [_shape(item) for item in value]
    return (str.__str__(value), isinstance(value, Markup))


@pytest.mark.parametrize("operation", OPERATIONS.values(), ids=OPERATIONS.keys())
def test_a_markup_operation_carries_the_labels_of_what_it_mixes_in(operation: Callable[[str], Any]) -> None:
    made = operation(stored())
    assert _shape(made) == _shape(operation(STORED))  # the same text, escaped or safe alike
    for part in made if isinstance(made, (list, tuple)) else [made]:
        assert pg.labels_of(part) == {EMAIL}
        assert pg.tenant_of(part) == "contoso"


@pytest.mark.parametrize("operation", OPERATIONS.values(), ids=OPERATIONS.keys())
def test_without_labels_markup_is_what_markupsafe_makes(operation: Callable[[str], Any]) -> None:
    made = operation(STORED)
    for part in made if isinstance(made, (list, tuple)) else [made]:
        assert not pg.labels_of(part)
        assert type(part) in (str, Markup)


def test_the_labels_and_tenants_of_every_operand_add_up() -> None:
    doc = pg.label("<i>draft</i>", DOC, tenant="fabrikam")
    made = Markup("<td>%s</td><td>%s</td>") % (stored(), doc)
    assert pg.labels_of(made) == {EMAIL, DOC}
    assert pg.tenant_of(made) == "(several tenants)"
    joined = Markup(stored()) + Markup(doc)
    assert pg.labels_of(joined) == {EMAIL, DOC} and isinstance(joined, Markup)


def test_a_labelled_markup_is_safe_where_markup_is() -> None:
    safe = Markup(stored())
    assert safe.__html__() is safe
    assert escape(safe) == STORED  # not escaped a second time
    # str() gives text, no longer safe: forceescape escapes it, as for any Markup.
    page = Environment(autoescape=True).from_string("{{ x }}|{{ x|forceescape }}").render(x=safe)
    plain = (
        jinja2.Environment(autoescape=True)
        .from_string("{{ x }}|{{ x|forceescape }}")
        .render(x=Markup(STORED))
    )
    assert page == plain and pg.labels_of(page) == {EMAIL}


def test_a_labelled_markup_survives_copy_and_pickle() -> None:
    safe = Markup(stored())
    for made in (copy.copy(safe), copy.deepcopy(safe), pickle.loads(pickle.dumps(safe))):
        assert isinstance(made, Markup) and made == STORED
        assert pg.labels_of(made) == {EMAIL} and pg.tenant_of(made) == "contoso"


def test_a_markup_subclass_stays_itself() -> None:
    class Html(Markup):
        pass

    made = Html(stored())
    assert isinstance(made, Html) and made == STORED and pg.labels_of(made) == {EMAIL}
    assert isinstance(Html.escape(stored()), Html) and pg.labels_of(Html.escape(stored())) == {EMAIL}
    assert type(Html(STORED)) is Html


def test_a_labelled_object_with_html_labels_its_markup() -> None:
    class Note:
        def __init__(self, body: str) -> None:
            self.body = body

        def __html__(self) -> str:
            return self.body

    assert pg.labels_of(Markup(Note(stored()))) == {EMAIL}
    assert pg.labels_of(escape(Note(stored()))) == {EMAIL}
    assert pg.labels_of(Markup(pg.label(Note("x"), EMAIL))) == {EMAIL}
    assert not pg.labels_of(Markup(Note("x")))


@pytest.mark.parametrize("autoescape", [True, False], ids=["autoescape", "no-autoescape"])
@pytest.mark.parametrize(
    "source",
    [
        "{{ note }}",
        "{{ note|safe }}",
        "<div>{{ note ~ '' }}</div>",
        "{% set x = note %}{{ x }}",
        "{{ note|e }}",
    ],
)
def test_a_page_showing_stored_html_is_labelled(autoescape: bool, source: str) -> None:
    # The common pattern: the application marks the stored HTML safe.
    env = Environment(autoescape=autoescape)
    page = env.from_string(source).render(note=Markup(stored()))
    assert "<b>numbers</b>" in page or "&lt;b&gt;" in page
    assert pg.labels_of(page) == {EMAIL} and pg.tenant_of(page) == "contoso"


def test_a_concatenation_with_a_labelled_markup_stays_markup_and_labelled() -> None:
    module = (
        Environment(autoescape=True)
        .from_string("{% set x = 'Re: ' ~ note %}")
        .make_module({"note": Markup(stored())})
    )
    x = getattr(module, "x")  # noqa: B009 - a template variable
    assert isinstance(x, Markup) and x == "Re: " + STORED and pg.labels_of(x) == {EMAIL}


def test_a_guarded_mailer_refuses_a_page_built_from_marked_safe_content() -> None:
    pg.configure("trust-center", mode="enforce")

    @pg.purpose("marketing.direct")
    def send_newsletter(html: str) -> None:
        raise AssertionError("the guard must stop this call")

    env = Environment(autoescape=True)
    page = env.from_string("<h1>News</h1>{{ highlight }}").render(highlight=Markup(stored()))
    with pytest.raises(pg.PurposeViolation) as caught:
        send_newsletter(page)
    assert caught.value.category == EMAIL
    assert "numbers" not in str(caught.value)


def test_a_markup_built_while_rendering_labels_the_page() -> None:
    # A global function builds the Markup itself from stored content: no
    # labelled argument, no read the template makes.
    env = Environment(autoescape=True)
    env.globals["latest"] = lambda: Markup("<section>%s</section>") % stored()
    page = env.from_string("{% if latest() %}news{% endif %}").render()
    assert page == "news" and pg.labels_of(page) == {EMAIL}
    env.globals["latest"] = lambda: Markup("<section>%s</section>") % STORED
    assert not pg.labels_of(env.from_string("{% if latest() %}news{% endif %}").render())


def _markupsafe_names() -> dict[tuple[str, str], Any]:
    found: dict[tuple[str, str], Any] = {("Markup", name): value for name, value in vars(Markup).items()}
    for name in ("escape", "escape_silent", "_escape_inner"):
        found[("markupsafe", name)] = vars(markupsafe).get(name)
    for module_name, module in sys.modules.items():
        if module is not None and module_name.split(".")[0] == "jinja2" and "escape" in vars(module):
            found[(module_name, "escape")] = vars(module)["escape"]
    return found


def test_uninstrument_restores_markupsafe_exactly() -> None:
    uninstrument()
    assert not is_instrumented()
    before = _markupsafe_names()
    assert before[("markupsafe", "escape")].__module__ == "markupsafe"
    instrument(jinja2.Environment())
    assert is_instrumented()
    patched = _markupsafe_names()
    assert patched != before
    assert patched[("jinja2.runtime", "escape")] is markupsafe.escape
    labelled = Markup(stored())
    uninstrument()
    after = _markupsafe_names()
    assert after.keys() == before.keys()
    assert all(after[key] is before[key] for key in before)
    # Markup made now is plain again; one made before keeps its labels.
    assert type(Markup(stored())) is Markup and not pg.labels_of(escape(stored()))
    assert pg.labels_of(labelled) == {EMAIL} and isinstance(labelled, Markup)
    uninstrument()  # idempotent
    assert _markupsafe_names() == after


def test_an_environment_instrumented_again_instruments_markupsafe_again() -> None:
    env = Environment(autoescape=True)
    uninstrument()
    assert instrument(env) is env and is_instrumented()
    assert pg.labels_of(env.from_string("{{ x }}").render(x=Markup(stored()))) == {EMAIL}
