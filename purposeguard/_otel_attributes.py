"""Every OpenTelemetry name purposeguard emits, in one place (docs/telemetry.md lists them).

Span events and log records use namespaced attribute keys
(``purposeguard.category``); metric instruments use bare names
(``category``), which Prometheus exports as labels of the same name.
The counter ``purposeguard.violations`` is exported as
``purposeguard_violations_total``.
"""

from __future__ import annotations

__all__ = [
    "ATTRIBUTE_KEYS",
    "CATEGORY",
    "CHECKS",
    "CODE_FUNCTION",
    "COUNT",
    "DECLASSIFICATIONS",
    "DEFAULT_RULE",
    "DISCLOSURES",
    "EVENT_REPEATS",
    "EVENT_VIOLATION",
    "METER_NAME",
    "METRIC_ATTRIBUTE_KEYS",
    "METRIC_CATEGORY",
    "METRIC_FUNCTION",
    "METRIC_MODE",
    "METRIC_OUTCOME",
    "METRIC_PURPOSE",
    "METRIC_RULE",
    "METRIC_TRANSFORM",
    "METRIC_VIA",
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
# Span events and log records: how many checks the event stands for (an int).
COUNT = "purposeguard.count"

ATTRIBUTE_KEYS = frozenset(
    {CATEGORY, PURPOSE, RULE, MODE, VIA, TENANT, OUTCOME, TRANSFORM, CODE_FUNCTION, COUNT}
)

# Metric attributes are bare names (category, purpose, rule, mode, via), so
# dashboards and alerts stay short: Prometheus labels read
# ``category="..."``; span events and log records keep the namespaced keys.
METRIC_CATEGORY = "category"
METRIC_PURPOSE = "purpose"
METRIC_RULE = "rule"
METRIC_MODE = "mode"
METRIC_VIA = "via"
METRIC_OUTCOME = "outcome"
METRIC_TRANSFORM = "transform"
METRIC_FUNCTION = CODE_FUNCTION

METRIC_ATTRIBUTE_KEYS = frozenset(
    {
        METRIC_CATEGORY,
        METRIC_PURPOSE,
        METRIC_RULE,
        METRIC_MODE,
        METRIC_VIA,
        METRIC_OUTCOME,
        METRIC_TRANSFORM,
        METRIC_FUNCTION,
    }
)

# -- span events -----------------------------------------------------------------------

EVENT_VIOLATION = "purposeguard.violation"
# Within a zone one flow's violation is one event (count 1, at its first
# occurrence); when the zone closes, a flow that recurred gets this event
# with the final count.
EVENT_REPEATS = "purposeguard.violation.repeats"

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
