"""Escaping by construction: whatever a name holds, it shows as text in both formats."""

from __future__ import annotations

import ast
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from purposeguard import Policy
from purposeguard._report import html as report_html
from purposeguard._report import markdown as report_markdown
from purposeguard._report.text import visible
from purposeguard._scan import scan
from purposeguard.report import Report, build_report, render_html, render_markdown

T0 = 1_790_000_000.0
SCRIPT = "<script>alert(1)</script>"
# Markup of both formats, a table border, and characters that act instead of showing:
# NUL, BEL, an ANSI escape sequence, a right-to-left override, a zero-width space, DEL.
HOSTILE = (
    f"{SCRIPT}<img src=x onerror=alert(1)>\"'&amp;|a|b| `tick` *star* _u_ [l](javascript:x) # \\ \n\r"
    "\x00\x07\x1b[31mred\u202eevil\u200b\x7f"
)
ACTING = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def hostile_report(tmp_path: Path) -> Report:
    name = HOSTILE
    entries = [
        (
            "violation",
            T0,
            {
                "rule": name,
                "category": name,
                "purpose": name,
                "via": name,
                "mode": name,
                "function": name,
                "tenant": name,
                "remediation": name,
            },
        ),
        (
            "violation",
            T0 + 1,
            {
                "rule": "no-advertising",
                "category": "customer_data",
                "purpose": "advertising",
                "function": name,
                "tenant": name,
            },
        ),
        (
            "declassification",
            T0 + 2,
            {
                "transform": name,
                "from_categories": [name],
                "to": name,
                "function": name,
                "purpose": name,
                "tenant": name,
            },
        ),
        (
            "consent",
            T0 + 3,
            {"action": "grant", "tenant": name, "purpose": name, "categories": [name], "actor": name},
        ),
        (
            "disclosure",
            T0 + 4,
            {
                "case": name,
                name: name,
                "tenant": name,
                "purpose": "disclosure.compelled",
                "categories": [name],
            },
        ),
    ]
    tree = tmp_path / "src"
    tree.mkdir()
    # A key the policy does not define, as the scan reads it from the source.
    (tree / "svc.py").write_text(
        f"import purposeguard as pg\n@pg.purpose({'<script>|x|' + chr(0x202E)!r})\ndef f(): pass\n",
        encoding="utf-8",
    )
    return build_report(
        entries, scan(tree), Policy.load("trust-center"), title=name, audit_source=name, now=T0 + 10
    )


class _Page(HTMLParser):
    """The elements of a page and the text inside each."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += attrs

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


def test_html_shows_hostile_names_as_text(tmp_path: Path) -> None:
    page = render_html(hostile_report(tmp_path))
    parsed = _Page()
    parsed.feed(page)
    # Only the renderer's own elements and attributes; the names became text.
    assert set(parsed.tags) <= {
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "header",
        "h1",
        "p",
        "nav",
        "a",
        "main",
        "section",
        "h2",
        "h3",
        "div",
        "b",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "span",
        "br",
        "code",
        "em",
    }
    assert "script" not in parsed.tags and "img" not in parsed.tags
    assert {name for name, _ in parsed.attributes} <= {
        "lang",
        "charset",
        "name",
        "content",
        "http-equiv",
        "href",
        "id",
        "class",
        "title",
        "role",
        "data-integrity",
        "data-stat",
        "data-category",
        "data-purpose",
        "data-consents-in-force",
        "data-rule",
        "data-count",
        "data-tenants",
        "data-transform",
        "data-seq",
    }
    assert "onerror" not in {name for name, _ in parsed.attributes}
    assert "<script" not in page.lower() and "<img" not in page.lower()
    shown = visible(HOSTILE)
    text = "".join(parsed.texts)
    assert shown in text  # the whole name, as written (acting characters as escapes)
    assert any(value == shown for _, value in parsed.attributes)  # data-rule, title, ...
    assert "\\x1b[31mred\\u202eevil\\u200b\\x7f" in text
    assert not ACTING.search(page)


def test_markdown_shows_hostile_names_as_text(tmp_path: Path) -> None:
    text = render_markdown(hostile_report(tmp_path))
    assert not ACTING.search(text)
    assert SCRIPT not in text
    assert not re.search(
        r"(?<!\\)[<>]", text
    )  # every angle bracket escaped: no HTML reaches a Markdown viewer
    assert r"\<script\>alert(1)\</script\>" in text
    # Every row of every table keeps its columns: no | in a name ends a cell, no line break ends a row.
    for block in re.findall(r"(?:^\|.*\|$\n?)+", text, re.M):
        rows = block.strip().splitlines()
        borders = {len(re.findall(r"(?<!\\)\|", row)) for row in rows}
        assert len(borders) == 1, rows
    violations = text.split("## Violations by rule", 1)[1].split("##", 1)[0]
    row = next(line for line in violations.splitlines() if "alert" in line)
    assert len(re.findall(r"(?<!\\)\|", row)) == 11
    assert r"\|a\|b\|" in row and r"\`tick\`" in row and r"\*star\*" in row and r"\_u\_" in row
    assert r"\\x1b\[31mred\\u202eevil\\u200b\\x7f" in row
    # The title is one heading line, whatever line breaks the name held.
    assert text.splitlines()[0].startswith(r"# \<script\>") and "\n\n## Summary" in text


def test_markup_is_made_only_by_escaping() -> None:
    with pytest.raises(TypeError):
        report_html.Html("<b>bold</b>", object())
    with pytest.raises(TypeError):
        report_markdown.Md("**bold**", object())
    with pytest.raises(TypeError):
        "<b>" + report_html.text("x")  # type: ignore[operator]
    with pytest.raises(TypeError):
        report_html.text("x") + "<b>"  # type: ignore[operator]
    assert str(report_html.text(SCRIPT)) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    cell = report_html.element("td", SCRIPT, report_html.text("&"), title='"><script>', class_="x")
    assert (
        str(cell)
        == '<td title="&quot;&gt;&lt;script&gt;" class="x">&lt;script&gt;alert(1)&lt;/script&gt;&amp;</td>'
    )
    for bad in ("td onclick=x", "script>", ""):
        with pytest.raises(ValueError):
            report_html.element(bad)
    with pytest.raises(ValueError):
        report_html.element("td", **{"onclick=x y": "1"})
    assert str(report_markdown.text("a|b\nc")) == r"a\|b c"
    assert str(report_markdown.code("x `y` z")) == "``x `y` z``"
    assert str(report_markdown.table(["h|"], [["<b>"]])) == "| h\\| |\n|---|\n| \\<b\\> |"


@pytest.mark.parametrize("module", [report_html, report_markdown], ids=["html", "markdown"])
def test_constant_markup_is_only_ever_a_string_literal(module: object) -> None:
    """The one way around escaping, ``_trusted``, takes literals written in the renderer, never a value."""
    source = Path(module.__file__).read_text(encoding="utf-8")  # type: ignore[attr-defined]
    calls = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("_trusted", "Html", "Md", "Cell")
    ]
    assert calls
    for call in calls:
        if isinstance(call.func, ast.Name) and call.func.id in ("Html", "Md", "Cell"):
            # The constructors are called by the module's own helpers with the module's key.
            assert [k.id for k in call.args[1:] if isinstance(k, ast.Name)] == ["_KEY"], ast.unparse(call)
            continue
        (argument,) = call.args
        assert isinstance(argument, ast.Constant) and isinstance(argument.value, str), ast.unparse(call)
