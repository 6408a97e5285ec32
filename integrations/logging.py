"""Keep labelled content out of log records.

>>> from purposeguard.integrations.logging import setup, teardown
>>> guard_filter = setup()   # every handler of the root logger gets the filter
>>> teardown(guard_filter)

A log line serves ``service.operations.logs`` (configurable; the built-in
pack keeps content out of it with rule ``no-content-in-logs``). A record whose
message, arguments, ``extra`` fields or exception (its arguments and
attributes, along the ``__cause__``/``__context__`` chain, ``exc_text`` and
``stack_info``) carry categories the policy does not allow for that purpose
is redacted in enforce mode (the message names the categories, the values
are gone; a redacted exception keeps only its type) or passed with a
violation recorded in trace mode. Labels follow values passed as arguments
(``log.info("%s", body)``) and labelled messages; text merged into an
f-string beforehand carries no label and is the zone's concern. Standard
library only.

Each filter decides for its own purpose: a record that passed a filter for
``service.operations`` is judged again by a filter for a stricter purpose on
another handler (one filter object on several handlers judges it once).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from purposeguard._errors import PurposeViolation
from purposeguard._labels import WalkLimit, labels_in_values
from purposeguard._runtime import get_guard, require_purpose_key

from ._patch import Patcher

__all__ = ["PurposeGuardFilter", "setup", "teardown"]

# What a LogRecord holds before any ``extra=`` is merged in.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_CHECKED = "_purposeguard_checked"


def _exception_parts(record: logging.LogRecord) -> list[Any]:
    # The exception itself: the walk looks into its arguments, attributes,
    # __cause__/__context__ chain and an ExceptionGroup's exceptions.
    exc_info = record.exc_info
    error = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) > 1 else None
    return [record.exc_text, record.stack_info, error]


def _labels(values: Any, purpose: str, name: str) -> frozenset[str]:
    """The labels in ``values``; content beyond the walk's bound was not
    looked at, which enforce mode treats as a refusal (the record is redacted)."""
    try:
        return labels_in_values((values,))
    except WalkLimit as error:
        get_guard()._internal_error(
            error, error.labels, purpose, "egress", f"logging.{name}", error.tenant, False
        )
        return error.labels


class PurposeGuardFilter(logging.Filter):
    """A ``logging.Filter`` that redacts (enforce) or reports (trace) labelled records.

    It never drops a record: a redacted one still says that something was
    logged, and which categories were removed.
    """

    def __init__(self, purpose: str = "service.operations.logs", name: str = "") -> None:
        super().__init__(name)
        self.purpose = require_purpose_key(purpose)

    def filter(self, record: logging.LogRecord) -> bool:
        # Judged once per purpose: the same filter on two handlers (or a
        # logger-level and a handler-level filter of one setup()) reports
        # once; a filter for another purpose still decides for itself.
        checked = record.__dict__.get(_CHECKED)
        if checked is None:
            checked = record.__dict__[_CHECKED] = set()
        elif self.purpose in checked:
            return True
        checked.add(self.purpose)
        extras = [key for key in record.__dict__ if key not in _STANDARD and key != _CHECKED]
        message_labels: frozenset[str] = frozenset()
        error_labels: frozenset[str] = frozenset()
        # Which walk is running: a part whose walk hit the bound is redacted
        # whole (in enforce mode), since what it holds was not looked at.
        walking = "message"
        try:
            message_labels = _labels(
                (record.msg, record.args, [record.__dict__[k] for k in extras]), self.purpose, record.name
            )
            walking = "exception"
            if record.exc_info or record.exc_text or record.stack_info:
                error_labels = _labels(_exception_parts(record), self.purpose, record.name)
            walking = ""
            labels = message_labels | error_labels
            if not labels:
                return True
            get_guard().check_labels(labels, self.purpose, via="egress", function=f"logging.{record.name}")
        except PurposeViolation as error:
            _redact(
                record,
                error,
                extras,
                bool(message_labels) or walking == "message",
                bool(error_labels) or walking == "exception",
            )
        return True


def _redact(
    record: logging.LogRecord, error: PurposeViolation, extras: list[str], message: bool, exception: bool
) -> None:
    categories = ", ".join(sorted({v.category for v in error.violations}))
    rules = ", ".join(sorted({v.rule or "the policy default" for v in error.violations}))
    if message:
        record.msg = (
            f"[purposeguard redacted this message: it carried {categories}, "
            f"not allowed for {error.violations[0].purpose} (rule {rules})]"
        )
        record.args = None
        for key in extras:
            try:
                carried = labels_in_values((record.__dict__[key],))
            except WalkLimit:
                carried = frozenset({"beyond the bound"})
            if carried:
                record.__dict__[key] = f"[redacted: {categories}]"
    if exception:
        exc_info = record.exc_info
        kind = (
            type(exc_info[1]).__name__
            if isinstance(exc_info, tuple) and exc_info[1] is not None
            else "exception"
        )
        # Formatter.format renders exc_text when exc_info is gone.
        record.exc_info = None
        record.exc_text = f"[purposeguard redacted a {kind} traceback: it carried {categories}]"
        if record.stack_info:
            record.stack_info = "[purposeguard redacted the stack]"
    # A handler may have formatted the record already.
    record.__dict__.pop("message", None)


# -- setup: handlers that exist now and those added later ---------------------------------

_LOCK = threading.Lock()
_WATCHED: dict[logging.Logger, list[PurposeGuardFilter]] = {}


def _add_handler(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    result = wrapped(*args, **kwargs)
    handler = args[0] if args else kwargs["hdlr"]
    for guard_filter in _WATCHED.get(instance, ()):
        handler.addFilter(guard_filter)
    return result


# Logger.addHandler is the one public door every configuration goes through
# (basicConfig, dictConfig, fileConfig, direct calls); wrapt wraps it in place
# and the last teardown() puts the original back.
_PATCHER = Patcher("logging", [("Logger", "addHandler", _add_handler)])


def _resolve(logger: logging.Logger | str | None) -> logging.Logger:
    return logging.getLogger(logger) if isinstance(logger, str) or logger is None else logger


def setup(
    logger: logging.Logger | str | None = None, *, purpose: str = "service.operations.logs"
) -> PurposeGuardFilter:
    """Add one :class:`PurposeGuardFilter` to every handler of ``logger`` (root by default),
    now and later.

    Handler filters see records propagated from child loggers too, which a
    filter on the logger itself does not. Handlers added to ``logger`` later
    (``logging.basicConfig`` after ``setup()``, ``dictConfig``) get the filter
    as they are added through ``Logger.addHandler``, which purposeguard wraps
    until the last :func:`teardown`. The logger gets the filter too, for its
    own records while it has no handler (Python's last-resort handler).
    Returns the filter.
    """
    target = _resolve(logger)
    guard_filter = PurposeGuardFilter(purpose)
    with _LOCK:
        _WATCHED.setdefault(target, []).append(guard_filter)
        _PATCHER.install()
    for handler in list(target.handlers):
        handler.addFilter(guard_filter)
    target.addFilter(guard_filter)
    return guard_filter


def teardown(guard_filter: PurposeGuardFilter, logger: logging.Logger | str | None = None) -> None:
    """Remove a filter :func:`setup` added."""
    target = _resolve(logger)
    with _LOCK:
        filters = _WATCHED.get(target, [])
        if guard_filter in filters:
            filters.remove(guard_filter)
        if not filters:
            _WATCHED.pop(target, None)
        if not _WATCHED:
            _PATCHER.remove()
    target.removeFilter(guard_filter)
    for handler in target.handlers:
        handler.removeFilter(guard_filter)
