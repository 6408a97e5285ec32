"""Keep labelled content out of log records.

>>> from purposeguard.integrations.logging import setup, teardown
>>> guard_filter = setup()   # every logger and handler below the root gets the filter
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
another handler (one filter object on several handlers, or several filters
for one purpose, judge it once; which records were judged is kept by
purposeguard, keyed by the record, never in a record attribute that
``extra=`` could set).

:func:`setup` puts the filter on the logger and on every logger below it
(all of them for the root logger), those that exist and those created
later, so every record made there is judged before any handler sees it:
handlers put in place without ``addHandler`` (``logger.handlers = [h]``),
a child logger that does not propagate, and Python's last-resort handler
(``logging.lastResort``, which prints to stderr when no handler is
configured) all get judged records. The handlers of those loggers get the
filter too, now and as ``addHandler`` adds them, for handlers shared with
loggers outside the tree. Not covered: a record made outside the tree and
handed straight to a handler ``setup()`` never reached (``handler.handle(record)``),
and a logger's filter list replaced by hand (``logger.filters = []``).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from purposeguard._context import FLAGS, REDACTING, ZONE
from purposeguard._errors import PurposeViolation
from purposeguard._labels import NO_LABELS, WalkLimit, labels_in_values
from purposeguard._runtime import check_zone, get_guard, require_purpose_key

from ._patch import Patcher

__all__ = ["PurposeGuardFilter", "setup", "teardown"]

# Set while a record's zone check runs (see PurposeGuardFilter.filter).
_JUDGING: ContextVar[bool] = ContextVar("purposeguard.logging.judging", default=False)
# What a LogRecord holds before any ``extra=`` is merged in.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# The purposes each record was judged for, by the record's id: a record
# attribute would be one ``extra=`` could forge. The weak reference tells a
# reused id apart (its entry is replaced); entries of records that died
# without their id coming back are swept as the table grows.
_JUDGED: dict[int, tuple[weakref.ref[Any], set[str]]] = {}
_SWEEP_AT = [1024]


def _first_judgement(record: logging.LogRecord) -> set[str]:
    """A new entry for a record no filter has judged yet."""
    purposes: set[str] = set()
    try:
        reference = weakref.ref(record)
    except TypeError:  # a record factory's type without weak references: judged every time
        return purposes
    if len(_JUDGED) >= _SWEEP_AT[0]:
        for dead in [key for key, (ref, _) in list(_JUDGED.items()) if ref() is None]:
            _JUDGED.pop(dead, None)
        _SWEEP_AT[0] = max(1024, 2 * len(_JUDGED))
    _JUDGED[id(record)] = (reference, purposes)
    return purposes


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
        entry = _JUDGED.get(id(record))
        if entry is not None and entry[0]() is record:
            checked = entry[1]
            if self.purpose in checked:
                return True
        else:
            checked = _first_judgement(record)
        checked.add(self.purpose)
        fields = record.__dict__
        extras = [] if fields.keys() <= _STANDARD else [key for key in fields if key not in _STANDARD]
        message_labels: frozenset[str] = frozenset()
        error_labels: frozenset[str] = frozenset()
        # Which walk is running: a part whose walk hit the bound is redacted
        # whole (in enforce mode), since what it holds was not looked at.
        walking = "message"
        try:
            args = record.args
            # The usual record (a plain message, plain arguments) has nothing
            # to walk: the walk's own first test, without the walk.
            if (
                extras
                or type(record.msg) not in NO_LABELS
                or not (args is None or (type(args) is tuple and NO_LABELS.issuperset(map(type, args))))
            ):
                message_labels = _labels(
                    (record.msg, args, [fields[key] for key in extras]), self.purpose, record.name
                )
            walking = "exception"
            if _has_exception(record):
                error_labels = _labels(_exception_parts(record), self.purpose, record.name)
            walking = ""
            labels = message_labels | error_labels
            guard = get_guard()
            if labels:
                # A refusal here redacts the record: the traced operation did not fail.
                redacting = REDACTING.set(True)
                try:
                    guard.check_labels(labels, self.purpose, via="egress", function=f"logging.{record.name}")
                finally:
                    REDACTING.reset(redacting)
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
                redacting = REDACTING.set(True)
                try:
                    check_zone(guard, state, self.purpose, labels, f"logging.{record.name}")
                finally:
                    REDACTING.reset(redacting)
                    _JUDGING.reset(token)
        except PurposeViolation as error:
            rebuilt = walking == "zone"
            _redact(
                record,
                error,
                extras,
                bool(message_labels) or walking == "message" or rebuilt,
                bool(error_labels) or walking == "exception" or (rebuilt and _has_exception(record)),
                rebuilt and not message_labels,
            )
        return True


def _own(name: str) -> bool:
    return name == "purposeguard" or name.startswith("purposeguard.")


def _has_exception(record: logging.LogRecord) -> bool:
    return bool(record.exc_info or record.exc_text or record.stack_info)


def _redact(
    record: logging.LogRecord,
    error: PurposeViolation,
    extras: list[str],
    message: bool,
    exception: bool,
    by_zone: bool = False,
) -> None:
    categories = ", ".join(sorted({v.category for v in error.violations}))
    rules = ", ".join(sorted({v.rule or "the policy default" for v in error.violations}))
    if message:
        # Refused through the zone, the message itself carried no label: it
        # was written where that content had been read, and may quote it.
        why = f"written in a zone that had read {categories}" if by_zone else f"it carried {categories}"
        record.msg = (
            f"[purposeguard redacted this message: {why}, "
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


# -- setup: loggers and handlers that exist now and those added later ---------------------

_LOCK = threading.Lock()
_WATCHED: dict[logging.Logger, list[PurposeGuardFilter]] = {}
# The last-resort handler each root setup() gave its filter to, for teardown().
_LAST_RESORT: dict[PurposeGuardFilter, logging.Handler] = {}


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


def _covers(target: logging.Logger, name: str) -> bool:
    """Whether a logger named ``name`` is ``target`` or below it: the
    manager's tree is the tree of dotted names."""
    if target is target.manager.root:
        return True
    if target.manager.loggerDict.get(target.name) is not target:
        return False  # a logger made by hand has no tree below it
    return name == target.name or name.startswith(target.name + ".")


def _new_logger(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # A logger created after setup(): its records are judged where they are
    # made, whatever handlers it is given later and however.
    result = wrapped(*args, **kwargs)
    name = args[0] if args else kwargs.get("name")
    if isinstance(name, str):
        with _LOCK:
            watched = [(t, list(f)) for t, f in _WATCHED.items()]
        for target, filters in watched:
            if _covers(target, name):
                for guard_filter in filters:
                    instance.addFilter(guard_filter)
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


# Logger.addHandler is the public door every configuration goes through
# (basicConfig, dictConfig, fileConfig, direct calls), Logger.__init__ the
# one every new logger goes through; wrapt wraps them in place and the last
# teardown() puts the originals back.
_PATCHER = Patcher("logging", [("Logger", "addHandler", _add_handler), ("Logger", "__init__", _new_logger)])


def _resolve(logger: logging.Logger | str | None) -> logging.Logger:
    return logging.getLogger(logger) if isinstance(logger, str) or logger is None else logger


def setup(
    logger: logging.Logger | str | None = None, *, purpose: str = "service.operations.logs"
) -> PurposeGuardFilter:
    """Add one :class:`PurposeGuardFilter` to ``logger`` (root by default), to
    every logger below it and to all their handlers, now and later.

    The loggers' filter judges each record where it is made, before any
    handler: a handler set without ``addHandler`` (``logger.handlers =
    [h]``) or Python's last-resort handler gets a judged record. Loggers
    created later get the filter as they are created, handlers added later
    as ``Logger.addHandler`` adds them (``logging.basicConfig`` after
    ``setup()``, ``dictConfig``); purposeguard wraps both until the last
    :func:`teardown`. For the root logger, ``logging.lastResort`` gets the
    filter too, for records of loggers made outside the tree. Returns the
    filter.
    """
    target = _resolve(logger)
    guard_filter = PurposeGuardFilter(purpose)
    with _LOCK:
        _WATCHED.setdefault(target, []).append(guard_filter)
        _PATCHER.install()
    for below in _below(target):
        below.addFilter(guard_filter)
        for handler in list(below.handlers):
            handler.addFilter(guard_filter)
    last_resort = logging.lastResort
    if target is target.manager.root and last_resort is not None:
        last_resort.addFilter(guard_filter)
        _LAST_RESORT[guard_filter] = last_resort
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
    for below in _below(target):
        below.removeFilter(guard_filter)
        for handler in list(below.handlers):
            handler.removeFilter(guard_filter)
    last_resort = _LAST_RESORT.pop(guard_filter, None)
    if last_resort is not None:
        last_resort.removeFilter(guard_filter)
