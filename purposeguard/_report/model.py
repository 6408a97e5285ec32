"""What the report says, as frozen dataclasses: one per section, filled by ``build``.

Every field holds names (categories, purposes, rules, functions, tenants),
counts and times, never a value: audit records and scan findings hold
nothing else. :meth:`Report.to_dict` gives the same as plain JSON-able data.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["allowed", "denied", "consent", "unknown"]
IntegrityState = Literal["intact", "broken", "unchecked"]

RECORD_KINDS = ("violation", "declassification", "consent", "disclosure")
DEFAULT_RULE = "(policy default)"
ALL_CATEGORIES = "all (every category granted)"


def when(timestamp: float | None) -> str:
    """A timestamp as the report shows it: UTC, to the second."""
    if timestamp is None:
        return ""
    try:
        return _dt.datetime.fromtimestamp(timestamp, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError, TypeError):
        # Any number a record may hold (1e300, nan, before year 1): shown, not a date.
        return f"{timestamp!r} (not a date)"


@dataclass(frozen=True)
class Entry:
    """One audit record as the report reads it."""

    kind: str
    timestamp: float
    data: Mapping[str, Any]
    seq: int | None = None


@dataclass(frozen=True)
class Integrity:
    """Whether the audit log's hash chain holds, with the one line the summary shows."""

    checked: bool
    ok: bool | None
    text: str
    count: int | None = None
    first_bad: int | None = None
    reason: str = ""
    head: str = ""

    @property
    def state(self) -> IntegrityState:
        if self.ok:
            return "intact"
        return "broken" if self.checked else "unchecked"


@dataclass(frozen=True)
class PolicySummary:
    name: str
    source: str
    default: str


@dataclass(frozen=True)
class AuditSummary:
    """Where the records came from and how many of each kind there are."""

    source: str
    entries: int
    violations: int
    declassifications: int
    consents: int
    disclosures: int
    integrity: Integrity
    other: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ViolationGroup:
    """The violations of one rule (the policy default counts as one)."""

    rule: str
    count: int
    first_seen: float
    last_seen: float
    categories: tuple[str, ...]
    purposes: tuple[str, ...]
    vias: tuple[str, ...]
    modes: tuple[str, ...]
    functions: tuple[str, ...]
    tenants: tuple[str, ...]
    fixes: tuple[str, ...]

    @property
    def first_seen_text(self) -> str:
        return when(self.first_seen)

    @property
    def last_seen_text(self) -> str:
        return when(self.last_seen)


@dataclass(frozen=True)
class DeclassificationGroup:
    """The recorded uses of one transform."""

    transform: str
    count: int
    first_seen: float
    last_seen: float
    from_categories: tuple[str, ...]
    to: str
    purposes: tuple[str, ...]
    functions: tuple[str, ...]
    in_policy: bool

    @property
    def first_seen_text(self) -> str:
        return when(self.first_seen)

    @property
    def last_seen_text(self) -> str:
        return when(self.last_seen)


@dataclass(frozen=True)
class MapCell:
    """One category for one purpose: what the code declares, what runtime recorded, what the policy says."""

    purpose: str
    policy: Verdict
    declared: tuple[str, ...] = ()
    violations: int = 0
    declassifications: int = 0
    grants: int = 0
    revokes: int = 0
    consenting_tenants: tuple[str, ...] = ()
    disclosures: int = 0


@dataclass(frozen=True)
class MapRow:
    category: str
    cells: tuple[MapCell, ...]


@dataclass(frozen=True)
class DataMap:
    """Categories (rows) x purposes (columns), in taxonomy order."""

    purposes: tuple[str, ...]
    rows: tuple[MapRow, ...]


@dataclass(frozen=True)
class RecordRow:
    """A consent change or a disclosure as recorded: its fields as text."""

    seq: int | None
    when: str
    fields: Mapping[str, str]


@dataclass(frozen=True)
class ConsentInForce:
    tenant: str
    purpose: str
    category: str


@dataclass(frozen=True)
class PolicyTransform:
    id: str
    from_categories: tuple[str, ...]
    to: str


@dataclass(frozen=True)
class MatrixCell:
    """The policy's decision for one category and purpose."""

    category: str
    allowed: bool
    rule: str | None
    consentable: bool
    obligations: tuple[str, ...]

    @property
    def verdict(self) -> Verdict:
        return "allowed" if self.allowed else ("consent" if self.consentable else "denied")

    @property
    def text(self) -> str:
        """``yes`` (``yes*`` with obligations), ``consent`` or ``no``."""
        if self.allowed:
            return "yes" + ("*" if self.obligations else "")
        return "consent" if self.consentable else "no"


@dataclass(frozen=True)
class MatrixRow:
    purpose: str
    cells: tuple[MatrixCell, ...]


@dataclass(frozen=True)
class DecisionMatrix:
    """Every purpose (rows) x every category (columns) of the policy's taxonomy."""

    policy: str
    default: str
    categories: tuple[str, ...]
    rows: tuple[MatrixRow, ...]


@dataclass(frozen=True)
class CodeFinding:
    """One use of purposeguard the static scan found."""

    kind: str
    keys: tuple[str, ...]
    dynamic: bool
    function: str
    path: str
    line: int
    form: str


@dataclass(frozen=True)
class UnknownKey:
    key: str
    kind: str
    where: str


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass(frozen=True)
class CodeSection:
    """What the static scan of the source tree found (``scanned`` False: no tree was given)."""

    scanned: bool
    root: str = ""
    files: int = 0
    findings: tuple[CodeFinding, ...] = ()
    skipped: tuple[SkippedFile, ...] = ()
    unknown_keys: tuple[UnknownKey, ...] = ()


@dataclass(frozen=True)
class Report:
    """The whole report; :func:`purposeguard.report.build_report` makes one."""

    title: str
    generated_at: str
    policy: PolicySummary
    audit: AuditSummary
    data_map: DataMap
    violations: tuple[ViolationGroup, ...]
    declassifications: tuple[DeclassificationGroup, ...]
    policy_transforms: tuple[PolicyTransform, ...]
    consents: tuple[RecordRow, ...]
    consents_in_force: tuple[ConsentInForce, ...]
    disclosures: tuple[RecordRow, ...]
    matrix: DecisionMatrix
    code: CodeSection

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (dicts, lists, strings, numbers), ready for ``json.dumps``."""
        plain: dict[str, Any] = _plain(self)
        return plain


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name in ("first_seen_text", "last_seen_text", "state"):
            if hasattr(value, name):
                out[name] = getattr(value, name)
        return out
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
