"""The data-use report: what the code declares, what runtime observed, what the policy says.

A record of processing activities a privacy office can read, built from an
audit log, a static scan of the source tree (never imported) and the
policy, and written as one self-contained HTML file (inline CSS, no scripts,
nothing fetched) and its Markdown twin::

    from purposeguard.report import write_report
    html, markdown = write_report("out/", audit="audit.db", source="src/")

Audit records and scan findings hold names (categories, purposes, rules,
functions), never values, and the report shows nothing else.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._policy import Policy
from ._scan import ScanResult, scan

__all__ = [
    "Entry",
    "build_report",
    "integrity",
    "read_audit",
    "read_verified_audit",
    "render_html",
    "render_markdown",
    "write_report",
]

SECTIONS = (
    ("summary", "Summary"),
    ("data-map", "Data map"),
    ("violations", "Violations by rule"),
    ("declassifications", "Declassifications"),
    ("consents", "Consents"),
    ("disclosures", "Disclosures"),
    ("decision-matrix", "Decision matrix"),
    ("code", "Declared in code"),
)
RECORD_KINDS = ("violation", "declassification", "consent", "disclosure")
_DEFAULT_RULE = "(policy default)"


@dataclass(frozen=True)
class Entry:
    """One audit record as the report reads it."""

    kind: str
    timestamp: float
    data: Mapping[str, Any]
    seq: int | None = None


def entries(items: Iterable[Any]) -> list[Entry]:
    """Normalise audit entries: objects with ``kind``/``timestamp``/``data``
    (``AuditLog.records()``) or ``(kind, timestamp, data)`` tuples."""
    out: list[Entry] = []
    for item in items:
        if isinstance(item, Entry):
            out.append(item)
        elif isinstance(item, tuple):
            kind, timestamp, data = item
            out.append(Entry(str(kind), float(timestamp), dict(data)))
        else:
            out.append(
                Entry(str(item.kind), float(item.timestamp), dict(item.data), getattr(item, "seq", None))
            )
    return out


def read_audit(path: str | os.PathLike[str]) -> list[Entry]:
    """Every entry of an audit log file, opened read-only.

    Raises ``FileNotFoundError``/``PermissionError`` for a path that cannot
    be read and :class:`purposeguard.audit.AuditError` for a file that is
    not an audit log; never creates a file. Does not say whether the hash
    chain holds: :func:`read_verified_audit` does.
    """
    return read_verified_audit(path)[0]


def read_verified_audit(path: str | os.PathLike[str]) -> tuple[list[Entry], dict[str, Any]]:
    """Every entry of an audit log file and the verification of its hash
    chain, read as of one moment (see :func:`integrity`); raises as
    :func:`read_audit` does."""
    from ._storage import is_url
    from .audit import AuditLog

    if isinstance(path, str) and is_url(path):
        with AuditLog(path, create=False, readonly=True) as log:
            found, result = log.verified_records()
        return entries(found), integrity(result)
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(2, "no such audit log", str(file))
    if file.is_dir():
        raise IsADirectoryError(21, "is a directory, not an audit log", str(file))
    if not os.access(file, os.R_OK):
        raise PermissionError(13, "cannot read the audit log", str(file))
    with AuditLog(file, create=False, readonly=True) as log:
        found, result = log.verified_records()
    return entries(found), integrity(result)


def integrity(result: Any) -> dict[str, Any]:
    """The report's view of a :class:`purposeguard.audit.VerifyResult`,
    with the one line the summary shows."""
    if result.ok:
        text = f"audit chain: intact ({result.count} records)"
    else:
        text = f"audit chain: NOT intact: {result.reason}"
    return {
        "checked": True,
        "ok": bool(result.ok),
        "count": result.count,
        "first_bad": result.first_bad,
        "reason": result.reason,
        "head": result.head,
        "text": text,
    }


# -- building -----------------------------------------------------------------------


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return _dt.datetime.fromtimestamp(timestamp, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _categories_of(data: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for field in ("category", "categories", "from_categories"):
        value = data.get(field)
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(str(v) for v in value)
    return found


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_scalar(v)}" for k, v in sorted(value.items()))
    return str(value)


_ALL_CATEGORIES = "all (every category granted)"


def _order(entry: Entry) -> tuple[float, int]:
    return (entry.timestamp, entry.seq if entry.seq is not None else 0)


def _consent_state(
    changes: list[Entry], now: float
) -> tuple[dict[tuple[str, str], set[str]], dict[tuple[str, str], tuple[int, int]]]:
    """Replay grants and revocations in order: (category, purpose) -> the
    tenants whose consent is in force at ``now``, and -> (grants, revokes)."""
    state: dict[tuple[str, str, str], float | None] = {}  # (tenant, purpose, category) -> expiry
    counted: dict[tuple[str, str], list[int]] = {}
    for entry in sorted(changes, key=_order):
        data = entry.data
        tenant, purpose = str(data.get("tenant") or ""), data.get("purpose")
        if not isinstance(purpose, str) or not purpose:
            continue
        categories = [str(c) for c in data.get("categories") or ()]
        if data.get("action") == "grant":
            expiry = data.get("expires_at")
            for category in categories:
                state[(tenant, purpose, category)] = float(expiry) if isinstance(expiry, (int, float)) else None
                counted.setdefault((category, purpose), [0, 0])[0] += 1
        elif data.get("action") == "revoke":
            if not categories:  # revoked for every category granted
                categories = sorted({c for (t, p, c) in state if t == tenant and p == purpose})
            for category in categories:
                state.pop((tenant, purpose, category), None)
                counted.setdefault((category, purpose), [0, 0])[1] += 1
    in_force: dict[tuple[str, str], set[str]] = {}
    for (tenant, purpose, category), expiry in state.items():
        if expiry is None or expiry > now:
            in_force.setdefault((category, purpose), set()).add(tenant)
    return in_force, {key: (grants, revokes) for key, (grants, revokes) in counted.items()}


def build_report(
    audit: Iterable[Any] = (),
    scanned: ScanResult | None = None,
    policy: Policy | None = None,
    *,
    title: str = "Data-use report",
    audit_source: str | None = None,
    audit_integrity: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The report's data: a JSON-able dict the renderers turn into HTML and Markdown.

    ``audit_integrity`` is :func:`integrity` of the log the entries came
    from; without it the summary says the chain was not checked.
    """
    import time

    from ._cli.policy import matrix_data

    now = now if now is not None else time.time()
    policy = policy or Policy.load("trust-center")
    records = entries(audit)
    by_kind: dict[str, list[Entry]] = {k: [] for k in RECORD_KINDS}
    other: dict[str, int] = {}
    for entry in records:
        if entry.kind in by_kind:
            by_kind[entry.kind].append(entry)
        else:
            other[entry.kind] = other.get(entry.kind, 0) + 1

    # -- violations grouped by rule
    groups: dict[str, dict[str, Any]] = {}
    for entry in by_kind["violation"]:
        data = entry.data
        rule = data.get("rule") or _DEFAULT_RULE
        group = groups.setdefault(
            rule,
            {
                "rule": rule,
                "count": 0,
                "first_seen": entry.timestamp,
                "last_seen": entry.timestamp,
                "categories": set(),
                "purposes": set(),
                "vias": set(),
                "modes": set(),
                "functions": set(),
                "tenants": set(),
                "fixes": set(),
            },
        )
        group["count"] += 1
        group["first_seen"] = min(group["first_seen"], entry.timestamp)
        group["last_seen"] = max(group["last_seen"], entry.timestamp)
        for field, key in (
            ("categories", "category"),
            ("purposes", "purpose"),
            ("vias", "via"),
            ("modes", "mode"),
            ("functions", "function"),
            ("tenants", "tenant"),
            ("fixes", "remediation"),
        ):
            if data.get(key):
                group[field].add(str(data[key]))
    violations = sorted(groups.values(), key=lambda g: (-g["count"], g["rule"]))
    for group in violations:
        for field in ("categories", "purposes", "vias", "modes", "functions", "tenants", "fixes"):
            group[field] = sorted(group[field])
        group["first_seen_text"] = _when(group["first_seen"])
        group["last_seen_text"] = _when(group["last_seen"])

    # -- declassifications grouped by transform
    transforms: dict[str, dict[str, Any]] = {}
    for entry in by_kind["declassification"]:
        data = entry.data
        name = str(data.get("transform") or "?")
        spec = policy.transforms.get(name)
        group = transforms.setdefault(
            name,
            {
                "transform": name,
                "count": 0,
                "first_seen": entry.timestamp,
                "last_seen": entry.timestamp,
                "from": set(),
                "to": str(data.get("to") or (spec.to if spec else "")),
                "purposes": set(),
                "functions": set(),
                "in_policy": spec is not None,
            },
        )
        group["count"] += 1
        group["first_seen"] = min(group["first_seen"], entry.timestamp)
        group["last_seen"] = max(group["last_seen"], entry.timestamp)
        group["from"].update(str(c) for c in data.get("from_categories") or ())
        if data.get("purpose"):
            group["purposes"].add(str(data["purpose"]))
        if data.get("function"):
            group["functions"].add(str(data["function"]))
    declassifications = sorted(transforms.values(), key=lambda g: g["transform"])
    for group in declassifications:
        for field in ("from", "purposes", "functions"):
            group[field] = sorted(group[field])
        group["first_seen_text"] = _when(group["first_seen"])
        group["last_seen_text"] = _when(group["last_seen"])

    # -- consents and disclosures, as recorded
    def listed(kind: str) -> list[dict[str, Any]]:
        rows = []
        for entry in sorted(by_kind[kind], key=_order):
            fields = {
                k: _scalar(v)
                for k, v in sorted(entry.data.items())
                if k not in ("kind", "timestamp", "audit_ref") and v not in (None, "", [], ())
            }
            if kind == "consent" and entry.data.get("action") == "revoke" and not entry.data.get("categories"):
                fields["categories"] = _ALL_CATEGORIES
            if kind == "consent" and isinstance(entry.data.get("expires_at"), (int, float)):
                fields["expires_at"] = _when(float(entry.data["expires_at"]))
            rows.append({"seq": entry.seq, "when": _when(entry.timestamp), "fields": fields})
        return rows

    in_force, consent_changes = _consent_state(by_kind["consent"], now)

    # -- the data map: category x purpose, declared and observed
    cells: dict[tuple[str, str], dict[str, Any]] = {}

    def cell(category: str, purpose: str) -> dict[str, Any]:
        return cells.setdefault(
            (category, purpose),
            {
                "declared": [],
                "violations": 0,
                "declassifications": 0,
                "grants": 0,
                "revokes": 0,
                "consenting_tenants": [],
                "disclosures": 0,
            },
        )

    flows = scanned.flows() if scanned is not None else {}
    for (category, purpose), functions in flows.items():
        cell(category, purpose)["declared"] = sorted(set(functions))
    # Consents as their net state: grants and revocations counted apart, and
    # the tenants whose consent is in force now (a grant then its revocation
    # is no consent).
    for (category, purpose), (grants, revokes) in consent_changes.items():
        changed = cell(category, purpose)
        changed["grants"] += grants
        changed["revokes"] += revokes
    for (category, purpose), tenants in in_force.items():
        cell(category, purpose)["consenting_tenants"] = sorted(tenants)
    for kind, counter in (
        ("violation", "violations"),
        ("declassification", "declassifications"),
        ("disclosure", "disclosures"),
    ):
        for entry in by_kind[kind]:
            seen_for = entry.data.get("purpose")
            if not isinstance(seen_for, str) or not seen_for:
                continue
            categories = list(_categories_of(entry.data))
            if kind == "declassification" and entry.data.get("to"):
                categories.append(str(entry.data["to"]))
            for category in dict.fromkeys(categories):
                cell(category, seen_for)[counter] += 1
    taxonomy = policy.taxonomy
    order_c = {k: i for i, k in enumerate(taxonomy.categories)}
    order_p = {k: i for i, k in enumerate(taxonomy.purposes)}
    map_categories = sorted({c for c, _ in cells}, key=lambda k: (order_c.get(k, len(order_c)), k))
    map_purposes = sorted({p for _, p in cells}, key=lambda k: (order_p.get(k, len(order_p)), k))
    data_map_rows = []
    for category in map_categories:
        row_cells = []
        for purpose in map_purposes:
            found = cells.get((category, purpose))
            verdict = "unknown"
            if category in taxonomy.categories and purpose in taxonomy.purposes:
                allowed, rule, consentable = policy.cell(category, purpose)
                verdict = "allowed" if allowed else ("consent" if consentable else "denied")
            row_cells.append({"purpose": purpose, "policy": verdict, **(found or {"empty": True})})
        data_map_rows.append({"category": category, "cells": row_cells})

    # -- what the code declares
    code: dict[str, Any] = {"scanned": scanned is not None}
    unknown_keys: list[dict[str, Any]] = []
    if scanned is not None:
        code.update(
            root=scanned.root,
            files=scanned.files,
            skipped=[{"path": p, "reason": r} for p, r in scanned.skipped],
            findings=[f.to_dict() for f in scanned.findings],
        )
        for finding in scanned.findings:
            for key in finding.keys:
                if finding.kind == "purpose":
                    known = key in taxonomy.purposes
                elif finding.kind == "transform":
                    known = key in policy.transforms
                else:
                    known = key in taxonomy.categories
                if not known:
                    unknown_keys.append(
                        {"key": key, "kind": finding.kind, "where": f"{finding.path}:{finding.line}"}
                    )
    code["unknown_keys"] = unknown_keys

    counts = {kind: len(by_kind[kind]) for kind in RECORD_KINDS}
    if audit_integrity is None:
        checked: dict[str, Any] = {
            "checked": False,
            "ok": None,
            "text": "audit chain: not checked (no audit log file)"
            if audit_source is None
            else "audit chain: not checked",
        }
    else:
        checked = dict(audit_integrity)
    return {
        "title": title,
        "generated_at": _when(now),
        "policy": {"name": policy.name, "source": policy.source or "", "default": policy.default},
        "audit": {
            "source": audit_source or "",
            "entries": len(records),
            "counts": counts,
            "other": other,
            "integrity": checked,
        },
        "data_map": {"purposes": map_purposes, "rows": data_map_rows},
        "violations": violations,
        "declassifications": declassifications,
        "policy_transforms": [
            {"id": t.id, "from": list(t.from_categories), "to": t.to} for t in policy.transforms.values()
        ],
        "consents": listed("consent"),
        "consents_in_force": [
            {"tenant": tenant, "purpose": purpose, "category": category}
            for (category, purpose), tenants in sorted(in_force.items())
            for tenant in sorted(tenants)
        ],
        "disclosures": listed("disclosure"),
        "matrix": matrix_data(policy),
        "code": code,
    }


# -- HTML ---------------------------------------------------------------------------

_CSS = """
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
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _html_table(head: list[str], rows: list[list[str]], attrs: str = "") -> str:
    # Cells arrive already escaped (some carry markup), head cells do not.
    out = [f"<table{attrs}><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(c if c.startswith(("<td", "<th")) else f"<td>{c}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _tenants(tenants: list[str]) -> str:
    # A count alone says nothing about whom; a long list says too much to read.
    if not tenants:
        return "none recorded"
    shown = ", ".join(tenants[:5])
    more = f" and {len(tenants) - 5} more" if len(tenants) > 5 else ""
    return f"{len(tenants)}: {shown}{more}"


def _list(values: Iterable[Any]) -> str:
    return "<br>".join(_e(v) for v in values)


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page (inline CSS, no scripts, no fetches)."""
    parts: list[str] = []
    audit = report["audit"]
    counts = audit["counts"]
    code = report["code"]

    def section(key: str, body: str) -> None:
        title = dict(SECTIONS)[key]
        parts.append(f'<section id="{key}"><h2>{_e(title)}</h2>{body}</section>')

    stats = [
        ("violations", counts["violation"]),
        ("violated rules", len(report["violations"])),
        ("declassifications", counts["declassification"]),
        ("consent changes", counts["consent"]),
        ("disclosures", counts["disclosure"]),
        ("files scanned", code.get("files", 0)),
        ("files skipped", len(code.get("skipped", []))),
    ]
    checked = audit.get("integrity") or {"checked": False, "ok": None, "text": "audit chain: not checked"}
    state = "intact" if checked.get("ok") else ("broken" if checked.get("checked") else "unchecked")
    summary = f'<p class="integrity {state}" data-integrity="{state}">{_e(checked["text"])}</p>'
    summary += '<div class="summary-grid">' + "".join(
        f'<div class="stat" data-stat="{_e(name)}"><b>{value}</b>{_e(name)}</div>' for name, value in stats
    ) + "</div>"
    summary += _html_table(
        ["input", "value"],
        [
            ["policy", _e(f"{report['policy']['name']} ({report['policy']['source']}), default {report['policy']['default']}")],
            ["audit log", _e(audit["source"] or "none") + f" — {audit['entries']} entries"],
            ["source tree", _e(code.get("root") or "not scanned")],
            ["generated", _e(report["generated_at"])],
        ],
    )
    section("summary", summary)

    data_map = report["data_map"]
    if data_map["rows"]:
        head = ["category \\ purpose"] + data_map["purposes"]
        rows = []
        for row in data_map["rows"]:
            cells = [f"<th>{_e(row['category'])}</th>"]
            for c in row["cells"]:
                tags = []
                if c.get("declared"):
                    tags.append(
                        f'<span class="tag declared" title="{_e(", ".join(c["declared"]))}">declared</span>'
                    )
                for field, css, word in (
                    ("violations", "viol", "violations"),
                    ("declassifications", "decl", "declassified"),
                ):
                    if c.get(field):
                        tags.append(f'<span class="tag {css}">{c[field]} {word}</span>')
                consenting = c.get("consenting_tenants") or []
                if c.get("grants") or c.get("revokes"):
                    changes = f"granted {c.get('grants', 0)}, revoked {c.get('revokes', 0)}"
                    tags.append(
                        f'<span class="tag cons" data-consents-in-force="{len(consenting)}" '
                        f'title="{_e(changes)}">'
                        + (f"consent in force: {len(consenting)} tenant{'s' if len(consenting) != 1 else ''}"
                           if consenting else "no consent in force")
                        + f" ({_e(changes)})</span>"
                    )
                if c.get("disclosures"):
                    tags.append(f'<span class="tag disc">{c["disclosures"]} disclosed</span>')
                body = " ".join(tags) or '<span class="muted">·</span>'
                cells.append(
                    f'<td class="{c["policy"]}" data-category="{_e(row["category"])}" '
                    f'data-purpose="{_e(c["purpose"])}" title="policy: {c["policy"]}">{body}</td>'
                )
            rows.append(cells)
        body = (
            "<p>Rows are categories, columns purposes. <em>declared</em>: code serving the purpose "
            "handles the category (static scan); counts: what the audit log recorded at runtime "
            "(violations, declassifications, consents in force with the grants and revocations behind "
            "them, disclosures; allowed uses are not audited). "
            "Cell colour: the policy's verdict (green allowed, red denied, amber consent).</p>"
        )
        body += _html_table(head, rows, ' class="data-map"')
    else:
        body = "<p>Nothing declared in code or observed at runtime.</p>"
    section("data-map", body)

    if report["violations"]:
        rows = [
            [
                f'<td data-rule="{_e(g["rule"])}">{_e(g["rule"])}</td>',
                f'<td class="count" data-count="{g["count"]}">{g["count"]}</td>',
                f'<td class="when">{_e(g["first_seen_text"])}</td>',
                f'<td class="when">{_e(g["last_seen_text"])}</td>',
                _list(g["categories"]),
                _list(g["purposes"]),
                _list(g["vias"]),
                _list(g["modes"]),
                _list(g["functions"]),
                f'<td data-tenants="{len(g["tenants"])}">{_e(_tenants(g["tenants"]))}</td>',
                _list(g["fixes"]),
            ]
            for g in report["violations"]
        ]
        body = _html_table(
            ["rule", "count", "first seen", "last seen", "categories", "purposes", "via", "mode",
             "functions", "tenants affected", "how to fix"],
            rows,
            ' class="violations"',
        )
    else:
        body = "<p>No violation recorded.</p>"
    section("violations", body)

    if report["declassifications"]:
        rows = [
            [
                f'<td data-transform="{_e(g["transform"])}">{_e(g["transform"])}'
                + ("" if g["in_policy"] else ' <span class="muted">(not in this policy)</span>')
                + "</td>",
                f'<td class="count" data-count="{g["count"]}">{g["count"]}</td>',
                f'<td class="when">{_e(g["first_seen_text"])}</td>',
                f'<td class="when">{_e(g["last_seen_text"])}</td>',
                _list(g["from"]),
                _e(g["to"]),
                _list(g["purposes"]),
                _list(g["functions"]),
            ]
            for g in report["declassifications"]
        ]
        body = _html_table(
            ["transform", "count", "first seen", "last seen", "from", "to", "purposes", "functions"],
            rows,
            ' class="declassifications"',
        )
    else:
        body = "<p>No declassification recorded.</p>"
    if report["policy_transforms"]:
        body += "<p>Transforms the policy permits: " + ", ".join(
            f"<code>{_e(t['id'])}</code> ({_e(', '.join(t['from']))} → {_e(t['to'])})"
            for t in report["policy_transforms"]
        ) + "</p>"
    section("declassifications", body)

    for key, kind in (("consents", "consent"), ("disclosures", "disclosure")):
        listed = report[key]
        if listed:
            names = sorted({f for row in listed for f in row["fields"]})
            rows = [
                [f'<td class="when" data-seq="{_e(row["seq"] or "")}">{_e(row["when"])}</td>']
                + [_e(row["fields"].get(n, "")) for n in names]
                for row in listed
            ]
            body = _html_table(["when"] + names, rows, f' class="{key}" data-count="{len(listed)}"')
        else:
            body = f"<p>No {kind} recorded.</p>"
        if key == "consents" and listed:
            in_force = report.get("consents_in_force", [])
            body += f'<h3 id="consents-in-force">In force now ({len(in_force)})</h3>'
            body += (
                _html_table(
                    ["tenant", "purpose", "category"],
                    [[_e(c["tenant"]), _e(c["purpose"]), _e(c["category"])] for c in in_force],
                    f' class="consents-in-force" data-count="{len(in_force)}"',
                )
                if in_force
                else "<p>No consent is in force: every grant was revoked or has expired.</p>"
            )
        section(key, body)

    matrix = report["matrix"]
    categories = list(next(iter(matrix["matrix"].values()), {}).keys()) if matrix["matrix"] else []
    rows = []
    for purpose, by_category in matrix["matrix"].items():
        row = [f"<th>{_e(purpose)}</th>"]
        for category in categories:
            entry = by_category[category]
            css = "allowed" if entry["allowed"] else ("consent" if entry["consentable"] else "denied")
            text = "yes" + ("*" if entry["obligations"] else "") if entry["allowed"] else (
                "consent" if entry["consentable"] else "no"
            )
            rule = entry["rule"] or "default"
            row.append(f'<td class="{css}" title="rule: {_e(rule)}">{text}</td>')
        rows.append(row)
    body = (
        f"<p>Policy <code>{_e(matrix['policy'])}</code>, default <b>{_e(matrix['default'])}</b>. "
        "yes* = allowed with obligations; consent = denied unless the tenant consents. "
        "Hover a cell for the deciding rule.</p>"
    )
    body += _html_table(["purpose \\ category"] + categories, rows, ' class="decision-matrix"')
    section("decision-matrix", body)

    if code.get("scanned"):
        findings = code["findings"]
        rows = [
            [
                _e(f["kind"]),
                _e(", ".join(f["keys"]) + (" (+ non-literal)" if f["dynamic"] else "")),
                f"<code>{_e(f['function'])}</code>",
                f"<code>{_e(f['path'])}:{f['line']}</code>",
                _e(f["form"]),
            ]
            for f in findings
        ]
        body = f"<p>{code['files']} Python files parsed under <code>{_e(code['root'])}</code>, without importing them.</p>"
        body += (
            _html_table(["use", "keys", "function", "where", "form"], rows, ' class="findings"')
            if rows
            else "<p>No purposeguard use found.</p>"
        )
        if code["unknown_keys"]:
            body += "<h3>Keys the policy does not define</h3>" + _html_table(
                ["key", "use", "where"],
                [[_e(u["key"]), _e(u["kind"]), f"<code>{_e(u['where'])}</code>"] for u in code["unknown_keys"]],
                ' class="unknown-keys"',
            )
        if code["skipped"]:
            body += '<h3 id="skipped">Files skipped</h3>' + _html_table(
                ["file", "reason"],
                [[f"<code>{_e(s['path'])}</code>", _e(s["reason"])] for s in code["skipped"]],
                ' class="skipped"',
            )
    else:
        body = "<p>No source tree was scanned (pass <code>--source</code>).</p>"
    section("code", body)

    nav = "".join(f'<a href="#{key}">{_e(title)}</a>' for key, title in SECTIONS)
    broken = (
        f'<p class="integrity broken" role="alert">{_e(checked["text"])}</p>' if state == "broken" else ""
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No network: everything the page needs is in this file.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>{_e(report['title'])}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(report['title'])}</h1><p>Record of processing activities: policy "
        f"{_e(report['policy']['name'])}, generated {_e(report['generated_at'])}</p>{broken}</header>"
        f"<nav>{nav}</nav><main>{''.join(parts)}</main></body></html>\n"
    )


# -- Markdown -----------------------------------------------------------------------


# Characters Markdown gives a meaning to, inside a line: escaped with a
# backslash (CommonMark escapes any ASCII punctuation) so that a name such as
# __main__.ads or <module> shows as written, and | cannot end a table cell.
_MD_SPECIAL = {c: "\\" + c for c in "\\`*_<>|[]~#!"}
_MD_TABLE = str.maketrans({**_MD_SPECIAL, "\n": " ", "\r": " "})


def _md(value: Any) -> str:
    return str(value).translate(_MD_TABLE)


def _md_code(value: Any) -> str:
    """``value`` as an inline code span, whatever backticks it holds."""
    text = str(value).replace("\n", " ").replace("\r", " ")
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _md_table(head: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(_md(h) for h in head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report: Mapping[str, Any]) -> str:
    """The same report as Markdown."""
    audit = report["audit"]
    counts = audit["counts"]
    code = report["code"]
    checked = audit.get("integrity") or {"checked": False, "ok": None, "text": "audit chain: not checked"}
    banner = _md(checked["text"])
    if checked.get("checked") and not checked.get("ok"):
        banner = f"**WARNING: {banner}**"
    elif checked.get("ok"):
        banner = f"**{banner}**"
    out = [f"# {_md(report['title'])}", ""]
    out += [
        "## Summary",
        "",
        banner,
        "",
        _md_table(
            ["", ""],
            [
                ["policy", f"{report['policy']['name']} ({report['policy']['source']}), default {report['policy']['default']}"],
                ["audit log", f"{audit['source'] or 'none'} ({audit['entries']} entries)"],
                ["audit chain", checked["text"].removeprefix("audit chain: ")],
                ["source tree", code.get("root") or "not scanned"],
                ["generated", report["generated_at"]],
                ["violations", f"{counts['violation']} in {len(report['violations'])} rules"],
                ["declassifications", counts["declassification"]],
                ["consent changes", counts["consent"]],
                ["disclosures", counts["disclosure"]],
                ["files scanned / skipped", f"{code.get('files', 0)} / {len(code.get('skipped', []))}"],
            ],
        ),
        "",
        "## Data map",
        "",
    ]
    data_map = report["data_map"]
    if data_map["rows"]:
        out.append(
            "Rows are categories, columns purposes. `D` declared in code; recorded at runtime (allowed "
            "uses are not audited): `V` violations, `T` declassifications, `X` disclosures, `G` consent "
            "grants and `R` revocations, `C` tenants whose consent is in force now (no `C`: none is); "
            "the policy's verdict in parentheses."
        )
        out.append("")
        rows = []
        for row in data_map["rows"]:
            cells = [row["category"]]
            for c in row["cells"]:
                marks = []
                if c.get("declared"):
                    marks.append("D")
                for field, letter in (("violations", "V"), ("declassifications", "T"), ("disclosures", "X"),
                                      ("grants", "G"), ("revokes", "R")):
                    if c.get(field):
                        marks.append(f"{letter}{c[field]}")
                if c.get("consenting_tenants"):
                    marks.append(f"C{len(c['consenting_tenants'])}")
                cells.append((" ".join(marks) or "·") + f" ({c['policy']})")
            rows.append(cells)
        out += [_md_table(["category \\ purpose"] + data_map["purposes"], rows), ""]
    else:
        out += ["Nothing declared in code or observed at runtime.", ""]

    out += ["## Violations by rule", ""]
    if report["violations"]:
        out.append(
            _md_table(
                ["rule", "count", "first seen", "last seen", "categories", "purposes", "via", "mode", "functions",
                 "tenants affected"],
                [
                    [g["rule"], g["count"], g["first_seen_text"], g["last_seen_text"], ", ".join(g["categories"]),
                     ", ".join(g["purposes"]), ", ".join(g["vias"]), ", ".join(g["modes"]),
                     ", ".join(g["functions"]), _tenants(g["tenants"])]
                    for g in report["violations"]
                ],
            )
        )
    else:
        out.append("No violation recorded.")
    out += ["", "## Declassifications", ""]
    if report["declassifications"]:
        out.append(
            _md_table(
                ["transform", "count", "first seen", "last seen", "from", "to", "purposes", "functions"],
                [
                    [g["transform"], g["count"], g["first_seen_text"], g["last_seen_text"], ", ".join(g["from"]),
                     g["to"], ", ".join(g["purposes"]), ", ".join(g["functions"])]
                    for g in report["declassifications"]
                ],
            )
        )
    else:
        out.append("No declassification recorded.")
    for key, title, kind in (("consents", "Consents", "consent"), ("disclosures", "Disclosures", "disclosure")):
        out += ["", f"## {title}", ""]
        listed = report[key]
        if listed:
            names = sorted({f for row in listed for f in row["fields"]})
            out.append(_md_table(["when"] + names, [[row["when"]] + [row["fields"].get(n, "") for n in names] for row in listed]))
            if key == "consents":
                in_force = report.get("consents_in_force", [])
                out += ["", f"### In force now ({len(in_force)})", ""]
                out.append(
                    _md_table(
                        ["tenant", "purpose", "category"],
                        [[c["tenant"], c["purpose"], c["category"]] for c in in_force],
                    )
                    if in_force
                    else "No consent is in force: every grant was revoked or has expired."
                )
        else:
            out.append(f"No {kind} recorded.")

    matrix = report["matrix"]
    categories = list(next(iter(matrix["matrix"].values()), {}).keys()) if matrix["matrix"] else []
    rows = []
    for purpose, by_category in matrix["matrix"].items():
        row = [purpose]
        for category in categories:
            entry = by_category[category]
            row.append(
                ("yes" + ("*" if entry["obligations"] else ""))
                if entry["allowed"]
                else ("consent" if entry["consentable"] else "no")
            )
        rows.append(row)
    out += [
        "",
        "## Decision matrix",
        "",
        f"Policy {_md_code(matrix['policy'])}, default {_md(matrix['default'])}. yes\\* = allowed with obligations; "
        "consent = denied unless the tenant consents.",
        "",
        _md_table(["purpose \\ category"] + categories, rows),
        "",
        "## Declared in code",
        "",
    ]
    if code.get("scanned"):
        out.append(f"{code['files']} Python files parsed under {_md_code(code['root'])}, without importing them.")
        out.append("")
        if code["findings"]:
            out.append(
                _md_table(
                    ["use", "keys", "function", "where", "form"],
                    [
                        [f["kind"], ", ".join(f["keys"]) + (" (+ non-literal)" if f["dynamic"] else ""),
                         f["function"], f"{f['path']}:{f['line']}", f["form"]]
                        for f in code["findings"]
                    ],
                )
            )
        else:
            out.append("No purposeguard use found.")
        if code["unknown_keys"]:
            out += ["", "### Keys the policy does not define", ""]
            out.append(_md_table(["key", "use", "where"], [[u["key"], u["kind"], u["where"]] for u in code["unknown_keys"]]))
        if code["skipped"]:
            out += ["", "### Files skipped", ""]
            out.append(_md_table(["file", "reason"], [[s["path"], s["reason"]] for s in code["skipped"]]))
    else:
        out.append("No source tree was scanned.")
    out.append("")
    return "\n".join(out)


# -- writing ------------------------------------------------------------------------


def write_report(
    out: str | os.PathLike[str],
    *,
    audit: str | os.PathLike[str] | Iterable[Any] | None = None,
    source: str | os.PathLike[str] | ScanResult | None = None,
    policy: str | os.PathLike[str] | Policy = "trust-center",
    title: str = "Data-use report",
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` into directory ``out``.

    ``audit`` is an audit log path (its hash chain is verified and the
    summary says whether it holds) or entries already read; ``source`` a
    directory to scan or a :class:`ScanResult`. Returns the two paths.
    """
    loaded = policy if isinstance(policy, Policy) else Policy.load(
        policy if isinstance(policy, str) else Path(policy)
    )
    audit_source = None
    checked = None
    if audit is None:
        records: list[Entry] = []
    elif isinstance(audit, (str, os.PathLike)):
        audit_source = str(audit)
        records, checked = read_verified_audit(audit)
    else:
        records = entries(audit)
    scanned = source if isinstance(source, ScanResult) or source is None else scan(source)
    data = build_report(
        records, scanned, loaded, title=title, audit_source=audit_source, audit_integrity=checked
    )
    return write_files(out, data)


def write_files(out: str | os.PathLike[str], report: Mapping[str, Any]) -> tuple[Path, Path]:
    """Render ``report`` into ``out/report.html`` and ``out/report.md``.

    Both are rendered before anything is written, and each file is written
    beside its final name and then renamed: a failure leaves the previous
    report (or none), never half of one.
    """
    html_text = render_html(report)
    md_text = render_markdown(report)
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    targets = [(directory / "report.html", html_text), (directory / "report.md", md_text)]
    temporary: list[Path] = []
    try:
        for target, text in targets:
            part = target.with_name(f".{target.name}.{os.getpid()}.part")
            temporary.append(part)
            part.write_text(text, encoding="utf-8")
        for (target, _), part in zip(targets, temporary, strict=True):
            os.replace(part, target)
    finally:
        for part in temporary:
            part.unlink(missing_ok=True)
    return targets[0][0], targets[1][0]
