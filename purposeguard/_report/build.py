"""Filling the report's model: read the audit log, then one small aggregation per section."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._policy import Policy
from .._scan import ScanResult
from .._table import cells
from .model import (
    ALL_CATEGORIES,
    DEFAULT_RULE,
    RECORD_KINDS,
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
    Verdict,
    ViolationGroup,
    when,
)

# -- reading ------------------------------------------------------------------------


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


def read_verified_audit(path: str | os.PathLike[str], *, key: Any = None) -> tuple[list[Entry], Integrity]:
    """Every entry of an audit log file and the verification of its hash
    chain, read as of one moment (see :func:`integrity`); raises as
    :func:`read_audit` does. ``key`` is the audit key of a keyed log (by
    default the configured or the environment's)."""
    from .._storage import is_url
    from ..audit import AuditLog

    if isinstance(path, str) and is_url(path):
        with AuditLog(path, create=False, readonly=True, key=key) as log:
            found, result = log.verified_records()
        return entries(found), integrity(result)
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(2, "no such audit log", str(file))
    if file.is_dir():
        raise IsADirectoryError(21, "is a directory, not an audit log", str(file))
    if not os.access(file, os.R_OK):
        raise PermissionError(13, "cannot read the audit log", str(file))
    with AuditLog(file, create=False, readonly=True, key=key) as log:
        found, result = log.verified_records()
    return entries(found), integrity(result)


def integrity(result: Any) -> Integrity:
    """The report's view of a :class:`purposeguard.audit.VerifyResult`."""
    if result.ok:
        text = f"audit chain: intact ({result.count} records)"
    else:
        text = f"audit chain: NOT intact: {result.reason}"
    return Integrity(
        checked=True,
        ok=bool(result.ok),
        text=text,
        count=result.count,
        first_bad=result.first_bad,
        reason=result.reason,
        head=result.head,
    )


def unchecked(audit_source: str | None) -> Integrity:
    """The summary line when no hash chain was verified."""
    text = (
        "audit chain: not checked (no audit log file)" if audit_source is None else "audit chain: not checked"
    )
    return Integrity(checked=False, ok=None, text=text)


# -- one aggregation per section ------------------------------------------------------------


def by_kind(records: Sequence[Entry]) -> tuple[dict[str, list[Entry]], dict[str, int]]:
    """The records of each kind the report shows, and a count of every other kind."""
    kinds: dict[str, list[Entry]] = {k: [] for k in RECORD_KINDS}
    other: dict[str, int] = {}
    for entry in records:
        if entry.kind in kinds:
            kinds[entry.kind].append(entry)
        else:
            other[entry.kind] = other.get(entry.kind, 0) + 1
    return kinds, other


def _order(entry: Entry) -> tuple[float, int]:
    return (entry.timestamp, entry.seq if entry.seq is not None else 0)


_VIOLATION_FIELDS = (
    ("categories", "category"),
    ("purposes", "purpose"),
    ("vias", "via"),
    ("modes", "mode"),
    ("functions", "function"),
    ("tenants", "tenant"),
    ("fixes", "remediation"),
)


def violation_groups(violations: Iterable[Entry]) -> tuple[ViolationGroup, ...]:
    """Violations grouped by rule, the most frequent first."""
    grouped: dict[str, list[Entry]] = {}
    for entry in violations:
        grouped.setdefault(str(entry.data.get("rule") or DEFAULT_RULE), []).append(entry)
    groups = []
    for rule, group in grouped.items():
        seen = [e.timestamp for e in group]
        values = {
            name: tuple(sorted({str(e.data[key]) for e in group if e.data.get(key)}))
            for name, key in _VIOLATION_FIELDS
        }
        groups.append(
            ViolationGroup(rule=rule, count=len(group), first_seen=min(seen), last_seen=max(seen), **values)
        )
    return tuple(sorted(groups, key=lambda g: (-g.count, g.rule)))


def declassification_groups(
    declassifications: Iterable[Entry], policy: Policy
) -> tuple[DeclassificationGroup, ...]:
    """Declassifications grouped by transform, by name."""
    grouped: dict[str, list[Entry]] = {}
    for entry in declassifications:
        grouped.setdefault(str(entry.data.get("transform") or "?"), []).append(entry)
    groups = []
    for name, group in grouped.items():
        spec = policy.transforms.get(name)
        seen = [e.timestamp for e in group]
        groups.append(
            DeclassificationGroup(
                transform=name,
                count=len(group),
                first_seen=min(seen),
                last_seen=max(seen),
                from_categories=tuple(
                    sorted({c for e in group for c in _names(e.data.get("from_categories")) or ()})
                ),
                # The first record names the target; the policy's transform when it does not.
                to=str(group[0].data.get("to") or (spec.to if spec else "")),
                purposes=tuple(sorted({str(e.data["purpose"]) for e in group if e.data.get("purpose")})),
                functions=tuple(sorted({str(e.data["function"]) for e in group if e.data.get("function")})),
                in_policy=spec is not None,
            )
        )
    return tuple(sorted(groups, key=lambda g: g.transform))


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_scalar(v)}" for k, v in sorted(value.items()))
    return str(value)


def record_rows(records: Iterable[Entry], kind: str) -> tuple[RecordRow, ...]:
    """Consent changes or disclosures in the order they were recorded, their fields as text."""
    rows = []
    for entry in sorted(records, key=_order):
        fields = {
            k: _scalar(v)
            for k, v in sorted(entry.data.items())
            if k not in ("kind", "timestamp", "audit_ref") and v not in (None, "", [], ())
        }
        if kind == "consent" and entry.data.get("action") == "revoke" and not entry.data.get("categories"):
            fields["categories"] = ALL_CATEGORIES
        if kind == "consent" and isinstance(entry.data.get("expires_at"), (int, float)):
            fields["expires_at"] = when(float(entry.data["expires_at"]))
        rows.append(RecordRow(seq=entry.seq, when=when(entry.timestamp), fields=fields))
    return tuple(rows)


ConsentKey = tuple[str, str]  # (category, purpose)


def consent_state(
    changes: Iterable[Entry], now: float
) -> tuple[dict[ConsentKey, set[str]], dict[ConsentKey, tuple[int, int]]]:
    """Replay grants and revocations in order: (category, purpose) -> the
    tenants whose consent is in force at ``now``, and -> (grants, revokes)."""
    state: dict[tuple[str, str, str], float | None] = {}  # (tenant, purpose, category) -> expiry
    counted: dict[ConsentKey, list[int]] = {}
    for entry in sorted(changes, key=_order):
        data = entry.data
        tenant, purpose = str(data.get("tenant") or ""), data.get("purpose")
        if not isinstance(purpose, str) or not purpose:
            continue
        categories = _names(data.get("categories"))
        if categories is None:
            continue  # not a consent change this report can read (written by hand?)
        if data.get("action") == "grant":
            expiry = data.get("expires_at")
            for category in categories:
                state[(tenant, purpose, category)] = (
                    float(expiry) if isinstance(expiry, (int, float)) else None
                )
                counted.setdefault((category, purpose), [0, 0])[0] += 1
        elif data.get("action") == "revoke":
            if not categories:  # revoked for every category granted
                categories = sorted({c for (t, p, c) in state if t == tenant and p == purpose})
            for category in categories:
                state.pop((tenant, purpose, category), None)
                counted.setdefault((category, purpose), [0, 0])[1] += 1
    in_force: dict[ConsentKey, set[str]] = {}
    for (tenant, purpose, category), expiry in state.items():
        if expiry is None or expiry > now:
            in_force.setdefault((category, purpose), set()).add(tenant)
    return in_force, {key: (grants, revokes) for key, (grants, revokes) in counted.items()}


def consents_in_force(in_force: Mapping[ConsentKey, set[str]]) -> tuple[ConsentInForce, ...]:
    return tuple(
        ConsentInForce(tenant=tenant, purpose=purpose, category=category)
        for (category, purpose), tenants in sorted(in_force.items())
        for tenant in sorted(tenants)
    )


def _names(value: Any) -> list[str] | None:
    """A record's list of names (categories) as text: a name alone counts as
    a list of one, a missing one as none; None for anything else (a number,
    a mapping), which no purposeguard record holds there."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return None


def _categories_of(data: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for name in ("category", "categories", "from_categories"):
        value = data.get(name)
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(str(v) for v in value)
    return found


def _observed(kinds: Mapping[str, list[Entry]]) -> dict[ConsentKey, dict[str, int]]:
    """How often each (category, purpose) was seen in violations, declassifications and disclosures."""
    counts: dict[ConsentKey, dict[str, int]] = {}
    for kind, counter in (
        ("violation", "violations"),
        ("declassification", "declassifications"),
        ("disclosure", "disclosures"),
    ):
        for entry in kinds[kind]:
            seen_for = entry.data.get("purpose")
            if not isinstance(seen_for, str) or not seen_for:
                continue
            categories = _categories_of(entry.data)
            if kind == "declassification" and entry.data.get("to"):
                categories.append(str(entry.data["to"]))
            for category in dict.fromkeys(categories):
                per_kind = counts.setdefault((category, seen_for), {})
                per_kind[counter] = per_kind.get(counter, 0) + 1
    return counts


def data_map(
    policy: Policy,
    scanned: ScanResult | None,
    kinds: Mapping[str, list[Entry]],
    in_force: Mapping[ConsentKey, set[str]],
    consent_changes: Mapping[ConsentKey, tuple[int, int]],
) -> DataMap:
    """Category x purpose: declared in code, recorded at runtime, and the policy's verdict."""
    declared = {
        key: tuple(sorted(set(functions))) for key, functions in (scanned.flows() if scanned else {}).items()
    }
    observed = _observed(kinds)
    keys = set(declared) | set(consent_changes) | set(in_force) | set(observed)
    taxonomy = policy.taxonomy
    order_c = {k: i for i, k in enumerate(taxonomy.categories)}
    order_p = {k: i for i, k in enumerate(taxonomy.purposes)}
    categories = sorted({c for c, _ in keys}, key=lambda k: (order_c.get(k, len(order_c)), k))
    purposes = sorted({p for _, p in keys}, key=lambda k: (order_p.get(k, len(order_p)), k))

    def verdict(category: str, purpose: str) -> Verdict:
        if category not in taxonomy.categories or purpose not in taxonomy.purposes:
            return "unknown"
        allowed, _, consentable = policy.cell(category, purpose)
        return "allowed" if allowed else ("consent" if consentable else "denied")

    def cell(category: str, purpose: str) -> MapCell:
        key = (category, purpose)
        grants, revokes = consent_changes.get(key, (0, 0))
        return MapCell(
            purpose=purpose,
            policy=verdict(category, purpose),
            declared=declared.get(key, ()),
            grants=grants,
            revokes=revokes,
            consenting_tenants=tuple(sorted(in_force.get(key, ()))),
            **observed.get(key, {}),
        )

    rows = tuple(
        MapRow(category, tuple(cell(category, purpose) for purpose in purposes)) for category in categories
    )
    return DataMap(purposes=tuple(purposes), rows=rows)


def decision_matrix(policy: Policy) -> DecisionMatrix:
    """The policy's decision for every purpose and category of its taxonomy."""
    by_purpose: dict[str, list[MatrixCell]] = {purpose: [] for purpose in policy.taxonomy.purposes}
    for cell in cells(policy):
        by_purpose[cell.purpose].append(
            MatrixCell(
                category=cell.category,
                allowed=cell.allowed,
                rule=cell.rule,
                consentable=cell.consentable,
                obligations=cell.obligations,
            )
        )
    rows = tuple(MatrixRow(purpose, tuple(row)) for purpose, row in by_purpose.items())
    return DecisionMatrix(
        policy=policy.name, default=policy.default, categories=tuple(policy.taxonomy.categories), rows=rows
    )


def code_section(scanned: ScanResult | None, policy: Policy) -> CodeSection:
    """What the scan found, and the keys it found that the policy does not define."""
    if scanned is None:
        return CodeSection(scanned=False)
    taxonomy = policy.taxonomy
    unknown = []
    for finding in scanned.findings:
        for key in finding.keys:
            if finding.kind == "purpose":
                known = key in taxonomy.purposes
            elif finding.kind == "transform":
                known = key in policy.transforms
            else:
                known = key in taxonomy.categories
            if not known:
                unknown.append(UnknownKey(key=key, kind=finding.kind, where=f"{finding.path}:{finding.line}"))
    return CodeSection(
        scanned=True,
        root=scanned.root,
        files=scanned.files,
        findings=tuple(
            CodeFinding(
                kind=f.kind,
                keys=tuple(f.keys),
                dynamic=f.dynamic,
                function=f.function,
                path=f.path,
                line=f.line,
                form=f.form,
            )
            for f in scanned.findings
        ),
        skipped=tuple(SkippedFile(path=p, reason=r) for p, r in scanned.skipped),
        unknown_keys=tuple(unknown),
    )


def build_report(
    audit: Iterable[Any] | str | os.PathLike[str] = (),
    scanned: ScanResult | None = None,
    policy: Policy | None = None,
    *,
    title: str = "Data-use report",
    audit_source: str | None = None,
    audit_integrity: Integrity | None = None,
    now: float | None = None,
) -> Report:
    """The report's model, which :func:`render_html` and :func:`render_markdown` turn into pages.

    ``audit`` is the log's entries (:func:`read_audit`) or the log's path,
    whose chain is then verified as :func:`read_verified_audit` verifies it
    (an unkeyed check). ``audit_integrity`` is :func:`integrity` of the log
    the entries came from; without it the summary says the chain was not
    checked.
    """
    if isinstance(audit, (str, os.PathLike)):
        # A path (as write_report takes): a str would otherwise be read as its characters.
        audit_source = audit_source or os.fspath(audit)
        audit, checked = read_verified_audit(audit)
        audit_integrity = audit_integrity or checked
    now = now if now is not None else time.time()
    policy = policy or Policy.load("trust-center")
    records = entries(audit)
    kinds, other = by_kind(records)
    in_force, consent_changes = consent_state(kinds["consent"], now)
    return Report(
        title=title,
        generated_at=when(now),
        policy=PolicySummary(name=policy.name, source=policy.source or "", default=policy.default),
        audit=AuditSummary(
            source=audit_source or "",
            entries=len(records),
            violations=len(kinds["violation"]),
            declassifications=len(kinds["declassification"]),
            consents=len(kinds["consent"]),
            disclosures=len(kinds["disclosure"]),
            integrity=audit_integrity if audit_integrity is not None else unchecked(audit_source),
            other=other,
        ),
        data_map=data_map(policy, scanned, kinds, in_force, consent_changes),
        violations=violation_groups(kinds["violation"]),
        declassifications=declassification_groups(kinds["declassification"], policy),
        policy_transforms=tuple(
            PolicyTransform(id=t.id, from_categories=tuple(t.from_categories), to=t.to)
            for t in policy.transforms.values()
        ),
        consents=record_rows(kinds["consent"], "consent"),
        consents_in_force=consents_in_force(in_force),
        disclosures=record_rows(kinds["disclosure"], "disclosure"),
        matrix=decision_matrix(policy),
        code=code_section(scanned, policy),
    )
