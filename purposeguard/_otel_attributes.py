"""Every OpenTelemetry name purposeguard emits, in one place (DESIGN §7).

Span events, metric instruments and log records use the same attribute keys,
so a query written against one signal reads the same against the others.
Prometheus turns the dots into underscores: ``purposeguard.category`` is the
label ``purposeguard_category`` and the counter ``purposeguard.violations``
is exported as ``purposeguard_violations_total``.
"""

from __future__ import annotations

__all__ = [
    "ATTRIBUTE_KEYS",
    "CATEGORY",
    "CHECKS",
    "CODE_FUNCTION",
    "DECLASSIFICATIONS",
    "DEFAULT_RULE",
    "DISCLOSURES",
    "EVENT_VIOLATION",
    "METER_NAME",
    "MODE",
    "OTHER_FUNCTIONS",
    "OUTCOME",
    "PURPOSE",
    "RULE",
    "TENANT",
    "TRANSFORM",
    "VIA",
    "VIOLATIONS",
    "VIOLATIONS_BY_FUNCTION",
]

# -- attribute keys ------------------------------------------------------------------

CATEGORY = "purposeguard.category"
PURPOSE = "purposeguard.purpose"
RULE = "purposeguard.rule"
MODE = "purposeguard.mode"
VIA = "purposeguard.via"
# Span events and log records only: tenants are unbounded, metrics never carry them.
TENANT = "purposeguard.tenant"
OUTCOME = "purposeguard.outcome"
TRANSFORM = "purposeguard.transform"
CODE_FUNCTION = "code.function"

ATTRIBUTE_KEYS = frozenset(
    {CATEGORY, PURPOSE, RULE, MODE, VIA, TENANT, OUTCOME, TRANSFORM, CODE_FUNCTION}
)

# -- span events -----------------------------------------------------------------------

EVENT_VIOLATION = "purposeguard.violation"

# -- metric instruments ------------------------------------------------------------------

METER_NAME = "purposeguard"
# category, purpose, rule, mode, via
VIOLATIONS = "purposeguard.violations"
# purpose, outcome ("allowed", "denied", "error")
CHECKS = "purposeguard.checks"
# code.function, purpose: the "top functions" panel. Function names come
# from the code, not from data, and are capped all the same.
VIOLATIONS_BY_FUNCTION = "purposeguard.violations.by_function"
# transform, category (the transform's ``to``), purpose
DECLASSIFICATIONS = "purposeguard.declassifications"
# purpose
DISCLOSURES = "purposeguard.disclosures"

# -- values ------------------------------------------------------------------------------

# The rule attribute of a violation decided by the policy's default, not a rule.
DEFAULT_RULE = "default"
# Function names past the cap are counted under this one.
OTHER_FUNCTIONS = "_other"
