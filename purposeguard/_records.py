"""What the runtime records: violations and declassifications.

Records name categories, purposes, rules and functions, never values: they
are what telemetry and the audit log carry, and neither may leak what the
policy protects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from . import _errors

__all__ = ["Declassification", "Record", "Repeats", "Violation", "VIAS"]

VIAS = ("argument", "return", "context", "egress", "transport", "obligation", "source")


@dataclass(slots=True)
class Record:
    """Base of every record the runtime hands to sinks."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind
        return data

    @property
    def kind(self) -> str:
        return type(self).__name__.lower()


# Not frozen: a frozen dataclass pays object.__setattr__ per field (about
# 1.5 µs for a Violation here), and the violation path has a 20 µs budget that
# includes the OpenTelemetry SDK. Sinks must treat records as read-only.
@dataclass(slots=True)
class Violation(Record):
    """Labelled data reached a use the policy denies.

    ``via`` is the path: ``argument`` and ``return`` of guarded code,
    ``context`` (the zone), ``egress`` and ``transport`` (data leaving),
    ``obligation``, or ``source`` (data labelled, produced or loaded while a
    purpose that may not hold it was current: reading is a use).
    ``remediation`` says how the flow can be fixed (``fix`` is one of
    ``transform``, ``consent``, ``label-sink``, ``block``); neither holds any
    part of the value.
    """

    category: str
    purpose: str
    rule: str | None
    via: str
    function: str
    tenant: str | None
    mode: str
    timestamp: float
    remediation: str = ""
    fix: str = "block"
    # Checks this record stands for: within a zone, one record per flow
    # (rule, purpose, category, via, function); repeats raise the count.
    count: int = 1

    @property
    def kind(self) -> str:
        return "violation"


@dataclass(slots=True)
class Repeats(Record):
    """How many times one flow's violation occurred in a zone, sent when the
    zone closes if it occurred more than once. The violation itself was
    recorded at its first occurrence (nothing waits for the zone to close);
    this record gives sinks the final count."""

    category: str
    purpose: str
    rule: str | None
    via: str
    function: str
    tenant: str | None
    mode: str
    count: int
    timestamp: float

    @property
    def kind(self) -> str:
        return "repeats"


@dataclass(slots=True)
class Declassification(Record):
    """A policy transform removed labels from a value (and put its own on)."""

    transform: str
    from_categories: tuple[str, ...]
    to: str
    function: str
    purpose: str | None
    tenant: str | None
    timestamp: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "declassification"


# PurposeViolation rebuilds its records from plain mappings (a task queue's
# JSON result) with this type.
_errors._VIOLATION_TYPE[:] = [Violation]
