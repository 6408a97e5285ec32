"""The report as Markdown, the HTML page's twin.

As in the HTML renderer, markup is an :class:`Md` that only this module
makes: from escaped text (:func:`text`: every character Markdown gives a
meaning to inside a line is backslash-escaped, line breaks become spaces),
from an inline code span (:func:`code`), from a table of escaped cells
(:func:`table`), or from a constant written here (:func:`_trusted`, only
ever called with a string literal).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from .model import CodeSection, DataMap, DecisionMatrix, RecordRow, Report
from .text import Markup, tenants_text, visible

_KEY = object()


class Md(Markup):
    """Markdown that is safe to write out as it is."""

    __slots__ = ()
    _made_by = "text(), code() or table()"

    @classmethod
    def _key(cls) -> object:
        return _KEY

    def __add__(self, other: Md) -> Md:
        if not isinstance(other, Md):
            return NotImplemented
        return Md(self._markup + other._markup, _KEY)


def _trusted(markup: str) -> Md:
    # Only for this module's own constant Markdown (string literals).
    return Md(markup, _KEY)


# Characters Markdown gives a meaning to, inside a line: escaped with a
# backslash (CommonMark escapes any ASCII punctuation) so that a name such as
# __main__.ads or <module> shows as written, and | cannot end a table cell.
_SPECIAL = {c: "\\" + c for c in "\\`*_<>|[]~#!"}
_INLINE = str.maketrans({**_SPECIAL, "\n": " ", "\r": " "})


def text(value: object) -> Md:
    """``value`` as text on one line, shown literally."""
    return value if isinstance(value, Md) else Md(visible(value).translate(_INLINE), _KEY)


def code(value: object) -> Md:
    """``value`` as an inline code span, whatever backticks it holds."""
    content = visible(value).replace("\n", " ").replace("\r", " ")
    longest = max((len(run) for run in re.findall("`+", content)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if content.startswith("`") or content.endswith("`") else ""
    return Md(f"{fence}{pad}{content}{pad}{fence}", _KEY)


def table(head: Sequence[object], rows: Iterable[Sequence[object]]) -> Md:
    """A table of text cells: a ``|`` in a cell is escaped, so it cannot end the cell."""
    lines = ["| " + " | ".join(str(text(h)) for h in head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(text(c)) for c in row) + " |" for row in rows]
    return Md("\n".join(lines), _KEY)


# -- one renderer per section: its lines after the heading ---------------------------------------


def summary(report: Report) -> list[Md]:
    audit, code_section, policy = report.audit, report.code, report.policy
    checked = audit.integrity
    banner = text(checked.text)
    if checked.state == "broken":
        banner = _trusted("**WARNING: ") + banner + _trusted("**")
    elif checked.state == "intact":
        banner = _trusted("**") + banner + _trusted("**")
    inputs = table(
        ["", ""],
        [
            ["policy", f"{policy.name} ({policy.source}), default {policy.default}"],
            ["audit log", f"{audit.source or 'none'} ({audit.entries} entries)"],
            ["audit chain", checked.text.removeprefix("audit chain: ")],
            ["source tree", code_section.root or "not scanned"],
            ["generated", report.generated_at],
            ["violations", f"{audit.violations} in {len(report.violations)} rules"],
            ["declassifications", audit.declassifications],
            ["consent changes", audit.consents],
            ["disclosures", audit.disclosures],
            ["files scanned / skipped", f"{code_section.files} / {len(code_section.skipped)}"],
        ],
    )
    return [banner, _trusted(""), inputs]


_DATA_MAP_LEGEND = _trusted(
    "Rows are categories, columns purposes. `D` declared in code; recorded at runtime (allowed "
    "uses are not audited): `V` violations, `T` declassifications, `X` disclosures, `G` consent "
    "grants and `R` revocations, `C` tenants whose consent is in force now (no `C`: none is); "
    "the policy's verdict in parentheses."
)


def data_map(data: DataMap) -> list[Md]:
    if not data.rows:
        return [_trusted("Nothing declared in code or observed at runtime.")]
    rows = []
    for row in data.rows:
        cells = [row.category]
        for c in row.cells:
            marks = ["D"] if c.declared else []
            for count, letter in (
                (c.violations, "V"),
                (c.declassifications, "T"),
                (c.disclosures, "X"),
                (c.grants, "G"),
                (c.revokes, "R"),
                (len(c.consenting_tenants), "C"),
            ):
                if count:
                    marks.append(f"{letter}{count}")
            cells.append((" ".join(marks) or "·") + f" ({c.policy})")
        rows.append(cells)
    return [_DATA_MAP_LEGEND, _trusted(""), table(["category \\ purpose", *data.purposes], rows)]


def violations(report: Report) -> list[Md]:
    if not report.violations:
        return [_trusted("No violation recorded.")]
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
    ]
    rows = [
        [
            g.rule,
            g.count,
            g.first_seen_text,
            g.last_seen_text,
            ", ".join(g.categories),
            ", ".join(g.purposes),
            ", ".join(g.vias),
            ", ".join(g.modes),
            ", ".join(g.functions),
            tenants_text(g.tenants),
        ]
        for g in report.violations
    ]
    return [table(head, rows)]


def declassifications(report: Report) -> list[Md]:
    if not report.declassifications:
        return [_trusted("No declassification recorded.")]
    head = ["transform", "count", "first seen", "last seen", "from", "to", "purposes", "functions"]
    rows = [
        [
            g.transform,
            g.count,
            g.first_seen_text,
            g.last_seen_text,
            ", ".join(g.from_categories),
            g.to,
            ", ".join(g.purposes),
            ", ".join(g.functions),
        ]
        for g in report.declassifications
    ]
    return [table(head, rows)]


def _records(rows: Sequence[RecordRow]) -> Md:
    names = sorted({name for row in rows for name in row.fields})
    return table(
        ["when", *names], [[row.when, *(row.fields.get(name, "") for name in names)] for row in rows]
    )


def consents(report: Report) -> list[Md]:
    if not report.consents:
        return [_trusted("No consent recorded.")]
    in_force = report.consents_in_force
    return [
        _records(report.consents),
        _trusted(""),
        _trusted("### In force now (") + text(len(in_force)) + _trusted(")"),
        _trusted(""),
        table(["tenant", "purpose", "category"], [[c.tenant, c.purpose, c.category] for c in in_force])
        if in_force
        else _trusted("No consent is in force: every grant was revoked or has expired."),
    ]


def disclosures(report: Report) -> list[Md]:
    if not report.disclosures:
        return [_trusted("No disclosure recorded.")]
    return [_records(report.disclosures)]


def decision_matrix(matrix: DecisionMatrix) -> list[Md]:
    legend = (
        _trusted("Policy ")
        + code(matrix.policy)
        + _trusted(", default ")
        + text(matrix.default)
        + _trusted(". yes\\* = allowed with obligations; consent = denied unless the tenant consents.")
    )
    rows = [[row.purpose, *(cell.text for cell in row.cells)] for row in matrix.rows]
    return [legend, _trusted(""), table(["purpose \\ category", *matrix.categories], rows)]


def declared_in_code(section: CodeSection) -> list[Md]:
    if not section.scanned:
        return [_trusted("No source tree was scanned.")]
    out = [
        text(f"{section.files} Python files parsed under ")
        + code(section.root)
        + _trusted(", without importing them."),
        _trusted(""),
    ]
    if section.findings:
        rows = [
            [
                f.kind,
                ", ".join(f.keys) + (" (+ non-literal)" if f.dynamic else ""),
                f.function,
                f"{f.path}:{f.line}",
                f.form,
            ]
            for f in section.findings
        ]
        out.append(table(["use", "keys", "function", "where", "form"], rows))
    else:
        out.append(_trusted("No purposeguard use found."))
    if section.unknown_keys:
        out += [_trusted(""), _trusted("### Keys the policy does not define"), _trusted("")]
        out.append(table(["key", "use", "where"], [[u.key, u.kind, u.where] for u in section.unknown_keys]))
    if section.skipped:
        out += [_trusted(""), _trusted("### Files skipped"), _trusted("")]
        out.append(table(["file", "reason"], [[s.path, s.reason] for s in section.skipped]))
    return out


SECTIONS: tuple[tuple[str, Callable[[Report], list[Md]]], ...] = (
    ("Summary", summary),
    ("Data map", lambda report: data_map(report.data_map)),
    ("Violations by rule", violations),
    ("Declassifications", declassifications),
    ("Consents", consents),
    ("Disclosures", disclosures),
    ("Decision matrix", lambda report: decision_matrix(report.matrix)),
    ("Declared in code", lambda report: declared_in_code(report.code)),
)


def render_markdown(report: Report) -> str:
    """The report as Markdown: the HTML page's sections, in the same order."""
    out: list[Md] = [_trusted("# ") + text(report.title)]
    for title, render in SECTIONS:
        out += [_trusted(""), _trusted("## ") + text(title), _trusted(""), *render(report)]
    out.append(_trusted(""))
    return "\n".join(str(line) for line in out)
