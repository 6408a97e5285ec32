"""The exception tree of purposeguard.

::

    PurposeGuardError                 every error the library raises
    ├── PurposeViolation              data reached a use the policy forbids (also PermissionError)
    ├── PolicyError                   a policy that cannot be loaded, or a misuse of one
    │   └── UnknownKeyError           a category or purpose no taxonomy defines
    ├── ObligationError               a rule's obligation was not met
    ├── AuditError                    the audit log or consent store cannot be opened, read or written
    ├── ConfigurationError            a setting that cannot be used (a baggage key too short)
    └── SinkFailure                   a sink could not keep a record it must keep (fail closed)

Errors carry their context as attributes so callers never parse messages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._records import Violation

__all__ = [
    "AuditError",
    "ConfigurationError",
    "ObligationError",
    "PolicyError",
    "PurposeGuardError",
    "PurposeViolation",
    "SinkFailure",
    "UnknownKeyError",
]


class PurposeGuardError(Exception):
    """Root of every error purposeguard raises."""


class PurposeViolation(PurposeGuardError, PermissionError):
    """Labelled data reached a purpose the policy denies (enforce mode).

    ``violations`` lists every :class:`~purposeguard.Violation` found at the
    checkpoint; none of them holds the value itself.
    """

    def __init__(self, violations: Sequence[Violation] | str, records: Sequence[Any] = ()) -> None:
        if isinstance(violations, str):
            # Rebuilt by a serializer that keeps only the arguments (Celery's
            # JSON results call ``cls(*args)``): the message and the records
            # as plain mappings, so ``except PurposeViolation`` still matches
            # where the task's result is read.
            self.violations = _violations_from(records)
            message = violations
        else:
            self.violations = list(violations)
            message = _message_of(self.violations)
        super().__init__(message)
        self.args = (message, [_mapping_of(v) for v in self.violations])

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "purpose violation"

    def __reduce__(self) -> tuple[object, ...]:
        # Rebuilt from the records, not the message, so a violation raised in
        # a worker process (process pools, task queues) arrives whole.
        return (type(self), (self.violations,))

    @property
    def purpose(self) -> str | None:
        return self.violations[0].purpose if self.violations else None

    @property
    def category(self) -> str | None:
        return self.violations[0].category if self.violations else None

    @property
    def rule(self) -> str | None:
        return self.violations[0].rule if self.violations else None


def _message_of(violations: Sequence[Violation]) -> str:
    first = violations[0] if violations else None
    if first is None:
        return "purpose violation"
    rule = first.rule or "the policy default"
    message = f"{first.category} may not be used for {first.purpose} (rule {rule}, via {first.via}, in {first.function})"
    if len(violations) > 1:
        message += f" and {len(violations) - 1} more"
    # The fix travels with the exception, so a traceback says it too.
    remediation = getattr(first, "remediation", "")
    if remediation:
        message += f"; fix: {remediation}"
    return message


def _mapping_of(violation: Any) -> dict[str, Any]:
    fields = getattr(type(violation), "__dataclass_fields__", None)
    if fields is None:
        return {}
    return {name: getattr(violation, name) for name in fields}


# The record type, set by the records module when it loads (it sits above
# this one: errors import nothing of the library).
_VIOLATION_TYPE: list[Any] = []


def _violations_from(records: Any) -> list[Violation]:
    """Violations from the mappings :class:`PurposeViolation` keeps in its
    arguments; what does not rebuild into one is left out (the message stays)."""
    found: list[Violation] = []
    violation_type = _VIOLATION_TYPE[0] if _VIOLATION_TYPE else None
    if violation_type is None or not isinstance(records, (list, tuple)):
        return found
    fields = violation_type.__dataclass_fields__
    for record in records[:1000]:
        if not isinstance(record, dict):
            continue
        try:
            found.append(violation_type(**{name: record[name] for name in fields if name in record}))
        except (TypeError, ValueError):
            continue
    return found


class PolicyError(PurposeGuardError):
    """A policy that cannot be loaded, or an operation the policy forbids.

    ``path``, ``rule``, ``field`` and ``line`` say where, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        rule: str | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        self.path = path
        self.rule = rule
        self.field = field
        self.line = line
        self.reason = message
        parts = []
        if path is not None:
            parts.append(f"{path}:{line}" if line is not None else path)
        if rule is not None:
            parts.append(f"rule {rule!r}")
        if field is not None:
            parts.append(f"field {field!r}")
        parts.append(message)
        super().__init__(": ".join(parts))


# What a taxonomy key looks like: dotted words, bounded. Anything else is
# not echoed in messages.
_KEY_SHAPE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,79}")


def key_shaped(value: object) -> bool:
    """A plain ``str`` shaped like a key (a labelled value never is)."""
    return type(value) is str and _KEY_SHAPE.fullmatch(value) is not None


def shown(value: object) -> str:
    """How an error names a value a caller passed where a key or id was
    expected: quoted when it is :func:`key_shaped`, else by its type (a
    labelled value, or data passed by mistake, is never printed)."""
    if key_shaped(value):
        return repr(value)
    return f"a {type(value).__name__} (not shown: it may be data)"


class UnknownKeyError(PolicyError):
    """A category or purpose key that no loaded taxonomy defines."""

    def __init__(self, key: object, kind: str, *, hint: str = "", **where: str | int | None) -> None:
        # A key that does not look like one may be a value passed by mistake
        # (swapped arguments): it is named by its type, never printed.
        shown = key if type(key) is str and _KEY_SHAPE.fullmatch(key) else None
        self.key = shown if shown is not None else f"<{type(key).__name__}>"
        self.kind = kind
        text = (
            f"unknown {kind} {shown!r}"
            if shown is not None
            else f"unknown {kind}: a {type(key).__name__} that is not a {kind} key (not shown: it may be data)"
        )
        super().__init__(text + (f"; {hint}" if hint else ""), **where)  # type: ignore[arg-type]


class ObligationError(PurposeGuardError):
    """An obligation attached to a rule (redirect first, minimise, notify) was not met."""

    def __init__(self, message: str, *, obligation: str, rule: str | None = None) -> None:
        self.obligation = obligation
        self.rule = rule
        super().__init__(message)


class AuditError(PurposeGuardError):
    """The audit log (or consent store) cannot be opened, read or written.

    ``path`` names the file and ``reason`` the problem, e.g. ``not an SQLite
    database``, ``database or disk is full``.
    """

    def __init__(self, reason: str, *, path: str | None = None) -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)


class ConfigurationError(PurposeGuardError, ValueError):
    """A setting purposeguard cannot use, e.g. a baggage key that is too short.

    ``setting`` names it (``baggage_keys``, ``PURPOSEGUARD_BAGGAGE_KEYS``);
    the message never holds a key.
    """

    def __init__(self, message: str, *, setting: str) -> None:
        self.setting = setting
        self.reason = message
        super().__init__(f"{setting}: {message}")


class SinkFailure(PurposeGuardError):
    """A sink (the audit log) could not keep a record it must keep.

    Violations in enforce mode, consent changes and disclosures must not
    happen without their record: the guard stops them (fail closed). Any
    other record that is lost is logged and the guarded code goes on.
    """


# Named where users import them: tracebacks, span events (``exception.type``)
# and pickles say ``purposeguard.PurposeViolation``, not this private module.
for _public in (
    PurposeGuardError,
    PurposeViolation,
    PolicyError,
    UnknownKeyError,
    ObligationError,
    AuditError,
    ConfigurationError,
    SinkFailure,
):
    _public.__module__ = "purposeguard"
del _public
