"""The report as one self-contained HTML page (inline CSS, no scripts, nothing fetched).

Markup is an :class:`Html`, and only this module makes one: by escaping
text (:func:`text`), by building an element whose content and attribute
values are escaped unless they already are :class:`Html` (:func:`element`),
or from a constant written here (:func:`_trusted`, only ever called with a
string literal; a test holds that). A ``str`` that reaches a renderer is
therefore always text, whatever it holds.
"""

from __future__ import annotations

import html as _html
from collections.abc import Callable, Iterable, Sequence

from .model import (
    CodeSection,
    DataMap,
    DecisionMatrix,
    MapCell,
    RecordRow,
    Report,
)
from .text import Markup, tenants_text, visible

_KEY = object()


class Html(Markup):
    """Markup that is safe to write out as it is."""

    __slots__ = ()
    _made_by = "text(), element() or join()"

    @classmethod
    def _key(cls) -> object:
        return _KEY

    def __add__(self, other: Html) -> Html:
        if not isinstance(other, Html):
            return NotImplemented
        return Html(self._markup + other._markup, _KEY)


class Cell(Html):
    """A ``<td>`` or ``<th>`` element: a table row takes it as it is."""

    __slots__ = ()


# Anything a renderer puts into the page: Html as it is, anything else as escaped text.
Node = object


def _trusted(markup: str) -> Html:
    # Only for this module's own constant markup (string literals: see the module docstring).
    return Html(markup, _KEY)


def _escape(value: object) -> str:
    return _html.escape(visible(value), quote=True)


def text(value: object) -> Html:
    """``value`` as text: every character markup gives a meaning to is escaped."""
    return value if isinstance(value, Html) else Html(_escape(value), _KEY)


def join(parts: Iterable[Node], separator: Node = "") -> Html:
    """The parts one after the other (text escaped), with ``separator`` between them."""
    return Html(str(text(separator)).join(str(text(part)) for part in parts), _KEY)


# The elements and attributes the report is made of: nothing that runs or fetches
# (no script, img, link, event handler or src), whatever a renderer asks for.
_TAGS = frozenset(
    "a b code div em h1 h2 h3 header main nav p section span style table tbody td th thead title tr".split()
)
_ATTRIBUTES = frozenset(
    "class href id role title data-category data-consents-in-force data-count data-integrity data-purpose "
    "data-rule data-seq data-stat data-tenants data-transform".split()
)


def _attributes(attributes: dict[str, object]) -> str:
    out = []
    for key, value in attributes.items():
        # class_ for class, data_count for data-count.
        name = key.rstrip("_").replace("_", "-")
        if name not in _ATTRIBUTES:
            raise ValueError(f"not an attribute of the report: {key!r}")
        if name == "href" and not str(value).startswith("#"):
            raise ValueError(f"the report links only within itself: {value!r}")
        out.append(f' {name}="{text(value)}"')
    return "".join(out)


def element(tag: str, *content: Node, **attributes: object) -> Html:
    """``<tag attributes>content</tag>``, attribute values and text content escaped."""
    if tag not in _TAGS:
        raise ValueError(f"not an element of the report: {tag!r}")
    markup = f"<{tag}{_attributes(attributes)}>{join(content)}</{tag}>"
    return (Cell if tag in ("td", "th") else Html)(markup, _KEY)


def td(*content: Node, **attributes: object) -> Html:
    return element("td", *content, **attributes)


def th(*content: Node, **attributes: object) -> Html:
    return element("th", *content, **attributes)


def table(head: Sequence[str], rows: Iterable[Sequence[Node]], **attributes: object) -> Html:
    """A table: ``head`` as header text; a row's :func:`td`/:func:`th` cells as they are, anything else in a ``<td>``."""
    body = [element("tr", *(cell if isinstance(cell, Cell) else td(cell) for cell in row)) for row in rows]
    return element(
        "table",
        element("thead", element("tr", *(th(h) for h in head))),
        element("tbody", *body),
        **attributes,
    )


_BR = _trusted("<br>")


def lines(values: Iterable[object]) -> Html:
    """Values one per line in a cell."""
    return join((text(v) for v in values), _BR)


# -- one renderer per section ---------------------------------------------------------------


def summary(report: Report) -> Html:
    audit, code, policy = report.audit, report.code, report.policy
    checked = audit.integrity
    stats = [
        ("violations", audit.violations),
        ("violated rules", len(report.violations)),
        ("declassifications", audit.declassifications),
        ("consent changes", audit.consents),
        ("disclosures", audit.disclosures),
        ("files scanned", code.files),
        ("files skipped", len(code.skipped)),
    ]
    grid = element(
        "div",
        *(element("div", element("b", value), name, class_="stat", data_stat=name) for name, value in stats),
        class_="summary-grid",
    )
    inputs = table(
        ["input", "value"],
        [
            ["policy", f"{policy.name} ({policy.source}), default {policy.default}"],
            ["audit log", text(audit.source or "none") + text(f" — {audit.entries} entries")],
            ["source tree", code.root or "not scanned"],
            ["generated", report.generated_at],
        ],
    )
    banner = element("p", checked.text, class_=f"integrity {checked.state}", data_integrity=checked.state)
    return banner + grid + inputs


_DATA_MAP_LEGEND = _trusted(
    "<p>Rows are categories, columns purposes. <em>declared</em>: code serving the purpose "
    "handles the category (static scan); counts: what the audit log recorded at runtime "
    "(violations, declassifications, consents in force with the grants and revocations behind "
    "them, disclosures; allowed uses are not audited). "
    "Cell colour: the policy's verdict (green allowed, red denied, amber consent).</p>"
)
_NOTHING = _trusted('<span class="muted">·</span>')


def _map_cell(category: str, cell: MapCell) -> Html:
    tags = []
    if cell.declared:
        tags.append(element("span", "declared", class_="tag declared", title=", ".join(cell.declared)))
    if cell.violations:
        tags.append(element("span", f"{cell.violations} violations", class_="tag viol"))
    if cell.declassifications:
        tags.append(element("span", f"{cell.declassifications} declassified", class_="tag decl"))
    if cell.grants or cell.revokes:
        changes = f"granted {cell.grants}, revoked {cell.revokes}"
        consenting = len(cell.consenting_tenants)
        state = (
            f"consent in force: {consenting} tenant{'s' if consenting != 1 else ''}"
            if consenting
            else "no consent in force"
        )
        tags.append(
            element(
                "span",
                f"{state} ({changes})",
                class_="tag cons",
                data_consents_in_force=consenting,
                title=changes,
            )
        )
    if cell.disclosures:
        tags.append(element("span", f"{cell.disclosures} disclosed", class_="tag disc"))
    return td(
        join(tags, " ") if tags else _NOTHING,
        class_=cell.policy,
        data_category=category,
        data_purpose=cell.purpose,
        title=f"policy: {cell.policy}",
    )


def data_map(data: DataMap) -> Html:
    if not data.rows:
        return _trusted("<p>Nothing declared in code or observed at runtime.</p>")
    rows = [[th(row.category), *(_map_cell(row.category, cell) for cell in row.cells)] for row in data.rows]
    return _DATA_MAP_LEGEND + table(["category \\ purpose", *data.purposes], rows, class_="data-map")


def violations(report: Report) -> Html:
    if not report.violations:
        return _trusted("<p>No violation recorded.</p>")
    rows = [
        [
            td(g.rule, data_rule=g.rule),
            td(g.count, class_="count", data_count=g.count),
            td(g.first_seen_text, class_="when"),
            td(g.last_seen_text, class_="when"),
            lines(g.categories),
            lines(g.purposes),
            lines(g.vias),
            lines(g.modes),
            lines(g.functions),
            td(tenants_text(g.tenants), data_tenants=len(g.tenants)),
            lines(g.fixes),
        ]
        for g in report.violations
    ]
    head = [
        "rule",
        "count",
        "first seen",
        "last seen",
        "categories",
        "purposes",
        "via",
        "mode",
        "functions",
        "tenants affected",
        "how to fix",
    ]
    return table(head, rows, class_="violations")


_NOT_IN_POLICY = _trusted(' <span class="muted">(not in this policy)</span>')


def declassifications(report: Report) -> Html:
    if report.declassifications:
        rows = [
            [
                td(g.transform, *([] if g.in_policy else [_NOT_IN_POLICY]), data_transform=g.transform),
                td(g.count, class_="count", data_count=g.count),
                td(g.first_seen_text, class_="when"),
                td(g.last_seen_text, class_="when"),
                lines(g.from_categories),
                g.to,
                lines(g.purposes),
                lines(g.functions),
            ]
            for g in report.declassifications
        ]
        head = ["transform", "count", "first seen", "last seen", "from", "to", "purposes", "functions"]
        body = table(head, rows, class_="declassifications")
    else:
        body = _trusted("<p>No declassification recorded.</p>")
    if report.policy_transforms:
        permitted = join(
            (
                element("code", t.id) + text(f" ({', '.join(t.from_categories)} → {t.to})")
                for t in report.policy_transforms
            ),
            ", ",
        )
        body += element("p", "Transforms the policy permits: ", permitted)
    return body


def _records(rows: Sequence[RecordRow], key: str, kind: str) -> Html:
    if not rows:
        return element("p", f"No {kind} recorded.")
    names = sorted({name for row in rows for name in row.fields})
    cells = [
        [td(row.when, class_="when", data_seq=row.seq or ""), *(row.fields.get(name, "") for name in names)]
        for row in rows
    ]
    return table(["when", *names], cells, class_=key, data_count=len(rows))


def consents(report: Report) -> Html:
    body = _records(report.consents, "consents", "consent")
    if not report.consents:
        return body
    in_force = report.consents_in_force
    body += element("h3", f"In force now ({len(in_force)})", id="consents-in-force")
    if not in_force:
        return body + _trusted("<p>No consent is in force: every grant was revoked or has expired.</p>")
    rows = [[c.tenant, c.purpose, c.category] for c in in_force]
    return body + table(
        ["tenant", "purpose", "category"], rows, class_="consents-in-force", data_count=len(in_force)
    )


def disclosures(report: Report) -> Html:
    return _records(report.disclosures, "disclosures", "disclosure")


_MATRIX_LEGEND = _trusted(
    ". yes* = allowed with obligations; consent = denied unless the tenant consents. "
    "Hover a cell for the deciding rule."
)


def decision_matrix(matrix: DecisionMatrix) -> Html:
    rows = [
        [
            th(row.purpose),
            *(
                td(cell.text, class_=cell.verdict, title=f"rule: {cell.rule or 'default'}")
                for cell in row.cells
            ),
        ]
        for row in matrix.rows
    ]
    legend = element(
        "p",
        "Policy ",
        element("code", matrix.policy),
        ", default ",
        element("b", matrix.default),
        _MATRIX_LEGEND,
    )
    return legend + table(["purpose \\ category", *matrix.categories], rows, class_="decision-matrix")


def code(section: CodeSection) -> Html:
    if not section.scanned:
        return _trusted("<p>No source tree was scanned (pass <code>--source</code>).</p>")
    body = element(
        "p",
        f"{section.files} Python files parsed under ",
        element("code", section.root),
        ", without importing them.",
    )
    if section.findings:
        rows = [
            [
                f.kind,
                ", ".join(f.keys) + (" (+ non-literal)" if f.dynamic else ""),
                element("code", f.function),
                element("code", f"{f.path}:{f.line}"),
                f.form,
            ]
            for f in section.findings
        ]
        body += table(["use", "keys", "function", "where", "form"], rows, class_="findings")
    else:
        body += _trusted("<p>No purposeguard use found.</p>")
    if section.unknown_keys:
        body += element("h3", "Keys the policy does not define") + table(
            ["key", "use", "where"],
            [[u.key, u.kind, element("code", u.where)] for u in section.unknown_keys],
            class_="unknown-keys",
        )
    if section.skipped:
        body += element("h3", "Files skipped", id="skipped") + table(
            ["file", "reason"],
            [[element("code", s.path), s.reason] for s in section.skipped],
            class_="skipped",
        )
    return body


SECTIONS: tuple[tuple[str, str, Callable[[Report], Html]], ...] = (
    ("summary", "Summary", summary),
    ("data-map", "Data map", lambda report: data_map(report.data_map)),
    ("violations", "Violations by rule", violations),
    ("declassifications", "Declassifications", declassifications),
    ("consents", "Consents", consents),
    ("disclosures", "Disclosures", disclosures),
    ("decision-matrix", "Decision matrix", lambda report: decision_matrix(report.matrix)),
    ("code", "Declared in code", lambda report: code(report.code)),
)

_CSS = _trusted("""
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2a44;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:#c9d3e6}
nav{padding:8px 28px;background:#e9edf3;font-size:13px}
nav a{margin-right:14px;color:#1d2a44}
main{padding:8px 28px 40px}
section{background:#fff;border:1px solid #dde2ea;border-radius:6px;padding:6px 18px 14px;margin:16px 0;overflow-x:auto}
td.when{white-space:nowrap}
h2{font-size:18px;margin:12px 0 8px}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
th,td{border:1px solid #dde2ea;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f7}
td.count,td.num{text-align:right;font-variant-numeric:tabular-nums}
.allowed{background:#e6f4ea}.denied{background:#fde8e8}.consent{background:#fff4d6}.unknown{background:#eee}
.muted{color:#6b7485}.tag{display:inline-block;padding:0 6px;border-radius:3px;font-size:12px}
.tag.declared{background:#dbe7ff}.tag.viol{background:#f8c9c9}.tag.decl{background:#d6f0e0}
.tag.cons{background:#fbe7b0}.tag.disc{background:#e4d6f5}
.summary-grid{display:flex;gap:12px;flex-wrap:wrap}
.stat{border:1px solid #dde2ea;border-radius:6px;padding:8px 14px;min-width:120px}
.stat b{display:block;font-size:22px}
code{font-size:12px}
.integrity{font-weight:600;padding:8px 12px;border-radius:4px;margin:10px 0}
.integrity.intact{background:#e6f4ea;color:#14532d}
.integrity.broken{background:#b91c1c;color:#fff;font-size:16px}
.integrity.unchecked{background:#eee;color:#444}
""")

# No network: everything the page needs is in this file.
_HEAD = _trusted(
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
)


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page (inline CSS, no scripts, no fetches)."""
    sections = join(
        element("section", element("h2", title), render(report), id=key) for key, title, render in SECTIONS
    )
    nav = join(element("a", title, href=f"#{key}") for key, title, _ in SECTIONS)
    checked = report.audit.integrity
    broken = (
        element("p", checked.text, class_="integrity broken", role="alert")
        if checked.state == "broken"
        else ""
    )
    header = element(
        "header",
        element("h1", report.title),
        element(
            "p",
            f"Record of processing activities: policy {report.policy.name}, generated {report.generated_at}",
        ),
        broken,
    )
    page = (
        _HEAD
        + element("title", report.title)
        + element("style", _CSS)
        + _trusted("</head><body>")
        + header
        + element("nav", nav)
        + element("main", sections)
        + _trusted("</body></html>\n")
    )
    return str(page)
