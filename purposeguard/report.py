"""The data-use report: what the code declares, what runtime observed, what the policy says.

A record of processing activities a privacy office can read, built from an
audit log, a static scan of the source tree (never imported) and the
policy, and written as one self-contained HTML file (inline CSS, no scripts,
nothing fetched) and its Markdown twin::

    from purposeguard.report import write_report
    html, markdown = write_report("out/", audit="audit.db", source="src/")

Audit records and scan findings hold names (categories, purposes, rules,
functions), never values, and the report shows nothing else.

:func:`build_report` returns a :class:`Report` (frozen dataclasses, one per
section; ``to_dict()`` for JSON); :func:`render_html` and
:func:`render_markdown` turn it into pages, escaping every name for their
format (control and bidirectional characters shown as escapes), so a name
never becomes markup.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._policy import Policy
from ._report.build import build_report, entries, integrity, read_audit, read_verified_audit
from ._report.html import render_html
from ._report.markdown import render_markdown
from ._report.model import (
    AuditSummary,
    CodeFinding,
    CodeSection,
    ConsentInForce,
    DataMap,
    DecisionMatrix,
    DeclassificationGroup,
    Entry,
    Integrity,
    MapCell,
    MapRow,
    MatrixCell,
    MatrixRow,
    PolicySummary,
    PolicyTransform,
    RecordRow,
    Report,
    SkippedFile,
    UnknownKey,
    ViolationGroup,
)
from ._scan import ScanResult, scan

__all__ = [
    "AuditSummary",
    "CodeFinding",
    "CodeSection",
    "ConsentInForce",
    "DataMap",
    "DeclassificationGroup",
    "DecisionMatrix",
    "Entry",
    "Integrity",
    "MapCell",
    "MapRow",
    "MatrixCell",
    "MatrixRow",
    "PolicySummary",
    "PolicyTransform",
    "RecordRow",
    "Report",
    "SkippedFile",
    "UnknownKey",
    "ViolationGroup",
    "build_report",
    "entries",
    "integrity",
    "read_audit",
    "read_verified_audit",
    "render_html",
    "render_markdown",
    "write_files",
    "write_report",
]


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
    loaded = (
        policy
        if isinstance(policy, Policy)
        else Policy.load(policy if isinstance(policy, str) else Path(policy))
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


def write_files(out: str | os.PathLike[str], report: Report) -> tuple[Path, Path]:
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
            # Created afresh under a name no one could prepare (a FIFO put
            # at a predictable name would block the write).
            descriptor, name = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".part")
            part = Path(name)
            temporary.append(part)
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(text)
            part.chmod(0o644)  # mkstemp's 0600 would keep the report from its readers
        for (target, _), part in zip(targets, temporary, strict=True):
            os.replace(part, target)
    finally:
        for part in temporary:
            part.unlink(missing_ok=True)
    return targets[0][0], targets[1][0]
