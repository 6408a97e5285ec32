"""Keep labelled content out of log records.

>>> from purposeguard.integrations.logging import setup
>>> setup()          # every handler of the root logger gets the filter

A log line serves ``service.operations`` (configurable). A record whose
message, arguments or ``extra`` fields carry categories the policy does not
allow for that purpose is redacted in enforce mode (the message names the
categories, the values are gone) or passed with a violation recorded in
trace mode. Labels follow values passed as arguments (``log.info("%s", body)``)
and labelled messages; text merged into an f-string beforehand carries no
label and is the zone's concern. Standard library only.
"""

from __future__ import annotations

import logging

from purposeguard._errors import PurposeViolation
from purposeguard._runtime import get_guard, require_purpose_key

from ._egress import deep_labels

__all__ = ["PurposeGuardFilter", "setup", "teardown"]

# What a LogRecord holds before any ``extra=`` is merged in.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_CHECKED = "_purposeguard_checked"


class PurposeGuardFilter(logging.Filter):
    """A ``logging.Filter`` that redacts (enforce) or reports (trace) labelled records.

    It never drops a record: a redacted one still says that something was
    logged, and which categories were removed.
    """

    def __init__(self, purpose: str = "service.operations", name: str = "") -> None:
        super().__init__(name)
        self.purpose = require_purpose_key(purpose)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _CHECKED, False):
            return True  # a second handler: judged once, not twice
        record.__dict__[_CHECKED] = True
        extras = [key for key in record.__dict__ if key not in _STANDARD and key != _CHECKED]
        labels = deep_labels((record.msg, record.args, [record.__dict__[k] for k in extras]), depth=4)
        if not labels:
            return True
        try:
            get_guard().check_labels(
                labels, self.purpose, via="egress", function=f"logging.{record.name}"
            )
        except PurposeViolation as error:
            _redact(record, error, extras)
        return True


def _redact(record: logging.LogRecord, error: PurposeViolation, extras: list[str]) -> None:
    categories = ", ".join(sorted({v.category for v in error.violations}))
    rules = ", ".join(sorted({v.rule or "the policy default" for v in error.violations}))
    record.msg = (
        f"[purposeguard redacted this message: it carried {categories}, "
        f"not allowed for {error.violations[0].purpose} (rule {rules})]"
    )
    record.args = None
    for key in extras:
        if deep_labels(record.__dict__[key], depth=4):
            record.__dict__[key] = f"[redacted: {categories}]"
    # A handler may have formatted the record already.
    record.__dict__.pop("message", None)


def setup(
    logger: logging.Logger | str | None = None, *, purpose: str = "service.operations"
) -> PurposeGuardFilter:
    """Add one :class:`PurposeGuardFilter` to every handler of ``logger`` (root by default).

    Handler filters see records propagated from child loggers too. A logger
    without handlers gets the filter itself. Returns the filter.
    """
    target = logging.getLogger(logger) if isinstance(logger, str) or logger is None else logger
    guard_filter = PurposeGuardFilter(purpose)
    if target.handlers:
        for handler in target.handlers:
            handler.addFilter(guard_filter)
    else:
        target.addFilter(guard_filter)
    return guard_filter


def teardown(guard_filter: PurposeGuardFilter, logger: logging.Logger | str | None = None) -> None:
    """Remove a filter :func:`setup` added."""
    target = logging.getLogger(logger) if isinstance(logger, str) or logger is None else logger
    target.removeFilter(guard_filter)
    for handler in target.handlers:
        handler.removeFilter(guard_filter)
