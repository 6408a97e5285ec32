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
f-string beforehand carries no label, so inside a zone (a request, a job)
the zone's categories are checked too (``via="context"``, under the
policy's ``context_mode``: the built-in pack records such a flow, and
``context_mode="enforce"`` redacts the record's message and exception).
Standard library only.

Each filter decides for its own purpose: a record that passed a filter for
``service.operations`` is judged again by a filter for a stricter purpose on
another handler (one filter object on several handlers judges it once).
:func:`setup` covers the handlers of the logger and of every logger below
it (all of them for the root logger), those that exist and those added
later: a child logger's own handler sees its records before the parent's
does, and one that does not propagate never reaches the parent's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from purposeguard._context import FLAGS, ZONE
from purposeguard._errors import PurposeViolation
from purposeguard._labels import WalkLimit, labels_in_values
from purposeguard._runtime import check_zone, get_guard, require_purpose_key

from ._patch import Patcher

__all__ = ["PurposeGuardFilter", "setup", "teardown"]

# What a LogRecord holds before any ``extra=`` is merged in.
# Set while a record's zone check runs (see PurposeGuardFilter.filter).
_JUDGING: ContextVar[bool] = ContextVar("purposeguard.logging.judging", default=False)
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
            if _has_exception(record):
                error_labels = _labels(_exception_parts(record), self.purpose, record.name)
            walking = ""
            labels = message_labels | error_labels
            guard = get_guard()
            if labels:
                guard.check_labels(labels, self.purpose, via="egress", function=f"logging.{record.name}")
            state = ZONE.get() if FLAGS.zones else None
            # purposeguard's own records name categories and rules, never
            # values (and one about a violation must not report another).
            if state is not None and state.categories and not _own(record.name) and not _JUDGING.get():
                # Text rebuilt from what the zone saw (an f-string, a
                # traceback quoting a value) carries no label of its own.
                walking = "zone"
                # A violation callback that logs must not be judged again
                # from inside this check (it would report itself, endlessly).
                token = _JUDGING.set(True)
                try:
                    check_zone(guard, state, self.purpose, labels, f"logging.{record.name}")
                finally:
                    _JUDGING.reset(token)
        except PurposeViolation as error:
            rebuilt = walking == "zone"
            _redact(
                record,
                error,
                extras,
                bool(message_labels) or walking == "message" or rebuilt,
                bool(error_labels) or walking == "exception" or (rebuilt and _has_exception(record)),
            )
        return True


def _own(name: str) -> bool:
    return name == "purposeguard" or name.startswith("purposeguard.")


def _has_exception(record: logging.LogRecord) -> bool:
    return bool(record.exc_info or record.exc_text or record.stack_info)


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
    # The filters of this logger's setup() and of every logger above it.
    logger: Any = instance
    while logger is not None:
        for guard_filter in _WATCHED.get(logger, ()):
            handler.addFilter(guard_filter)
        logger = logger.parent
    return result


def _below(target: logging.Logger) -> list[logging.Logger]:
    """``target`` and every logger that exists below it."""
    found = [target]
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if not isinstance(logger, logging.Logger):
            continue  # a placeholder for a name no logger has taken yet
        parent = logger.parent
        while parent is not None and parent is not target:
            parent = parent.parent
        if parent is target and logger is not target:
            found.append(logger)
    return found


# Logger.addHandler is the one public door every configuration goes through
# (basicConfig, dictConfig, fileConfig, direct calls); wrapt wraps it in place
# and the last teardown() puts the original back.
_PATCHER = Patcher("logging", [("Logger", "addHandler", _add_handler)])


def _resolve(logger: logging.Logger | str | None) -> logging.Logger:
    return logging.getLogger(logger) if isinstance(logger, str) or logger is None else logger


def setup(
    logger: logging.Logger | str | None = None, *, purpose: str = "service.operations.logs"
) -> PurposeGuardFilter:
    """Add one :class:`PurposeGuardFilter` to every handler of ``logger`` (root by default)
    and of every logger below it, now and later.

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
    for logger in _below(target):
        for handler in list(logger.handlers):
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
    for logger in _below(target):
        for handler in list(logger.handlers):
            handler.removeFilter(guard_filter)
