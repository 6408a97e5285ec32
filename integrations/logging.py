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

A redacted record keeps the shape of its arguments, as formatters take
``record.args`` apart themselves (uvicorn's access formatter unpacks five
and calls ``int()`` on the status): a tuple stays a tuple of the same length,
a mapping keeps the keys its message names, each value becomes
``[redacted: <categories>]`` (bytes stay bytes) but a plain number, a
boolean or None, which quotes no text and carries no label (a labelled
number becomes the text: any number in its place would read as data). The
message consumes the arguments without showing them, so ``getMessage()``
gives the redaction note alone. Inside a refusing zone, text in ``extra=``
fields is redacted too.

Trusted loggers. A server's access logger (``uvicorn.access``,
``gunicorn.access``) writes the request line, the status and the client's
address, nothing the application's zone put there; in a zone that read
content each line would record a flow, and ``context_mode="enforce"`` would
redact it. ``setup(trusted_loggers=["uvicorn.access"])`` names loggers (each
covering the loggers below it) whose records skip the zone check, when the
code making the record lives in the package the logger is named after
(``uvicorn.protocols.http.h11_impl`` for ``uvicorn.access``): an application
logging its own lines through ``getLogger("uvicorn.error")`` is held to the
zone like anywhere else. A labelled value through a trusted logger is judged
as anywhere else, and so is an exception (the application's text), against
the zone too. Nothing is trusted by default (see docs/telemetry.md).

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
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any

from purposeguard._context import FLAGS, REDACTING, ZONE
from purposeguard._errors import PurposeViolation
from purposeguard._labels import NO_LABELS, WalkLimit, labels_in_values
from purposeguard._runtime import check_zone, get_guard, require_purpose_key

from ._options import calling_module, name_list
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


# -- trusted loggers: a server's own records skip the zone check -----------------------

# Logger names resolved per filter: past this many (loggers named at run
# time), the rest are resolved on each record instead of kept.
_MAX_LOGGERS = 1024


class _Trusted:
    """The trusted loggers of one filter, and per logger name whether it is one of them or below one."""

    __slots__ = ("names", "resolved")

    def __init__(self, names: frozenset[str] = frozenset()) -> None:
        self.names = names
        self.resolved: dict[str, bool] = {}

    def covers(self, name: str) -> bool:
        found = self.resolved.get(name)
        if found is None:
            found = any(name == trusted or name.startswith(trusted + ".") for trusted in self.names)
            if len(self.resolved) < _MAX_LOGGERS:
                self.resolved[name] = found
        return found


def _trusted(loggers: Iterable[str] | None) -> _Trusted:
    """``trusted_loggers`` checked: logger names, each covering the loggers below it."""
    if loggers is None:
        return _Trusted()
    names: set[str] = set()
    for name in name_list(loggers, "trusted_loggers", "logger"):
        if "*" in name:
            raise ValueError(
                f"trusted_loggers entry {name!r}: a logger name covers the loggers below it,"
                " no '*' is needed (nor taken)"
            )
        if name != name.strip() or "" in name.split("."):
            raise ValueError(f"trusted_loggers entry {name!r} is not a logger name")
        if name == "root":
            raise ValueError(
                "trusted_loggers entry 'root' trusts the root logger's records, the application's"
                " own: name the server's loggers"
            )
        names.add(name)
    return _Trusted(frozenset(names))


def _made_by_its_package(name: str) -> bool:
    """Whether the code making the record lives in the package the logger
    is named after (``uvicorn.access`` and ``uvicorn.protocols``): an
    application that logs through a server's logger (``getLogger("uvicorn.error")``
    for its own lines) is held to the zone like anywhere else."""
    package = name.partition(".")[0]
    # The filter's caller is the logging module (Filterer.filter); the code
    # that made the record is the first frame outside it and this module.
    module = calling_module(2, _in_logging)
    return module is not None and (module == package or module.startswith(package + "."))


def _in_logging(module: str) -> bool:
    return module == "logging" or module.startswith("logging.") or module == __name__


class PurposeGuardFilter(logging.Filter):
    """A ``logging.Filter`` that redacts (enforce) or reports (trace) labelled records.

    It never drops a record: a redacted one still says that something was
    logged, and which categories were removed.
    """

    def __init__(
        self,
        purpose: str = "service.operations.logs",
        name: str = "",
        *,
        trusted_loggers: Iterable[str] | None = None,
    ) -> None:
        super().__init__(name)
        self.purpose = require_purpose_key(purpose)
        self._trusted = _trusted(trusted_loggers)

    @property
    def trusted_loggers(self) -> frozenset[str]:
        """The loggers whose records skip the zone check (see :func:`setup`)."""
        return self._trusted.names

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
                # A trusted logger's message is the server's own (a request
                # line, a status): only an exception, the application's
                # text, is held to the zone there.
                walking = "zone"
                if (
                    self._trusted.names
                    and self._trusted.covers(record.name)
                    and _made_by_its_package(record.name)
                ):
                    walking = "zone exception" if _has_exception(record) else ""
                if not walking:
                    return True
                # A violation callback that logs must not be judged again
                # from inside this check (it would report itself, endlessly).
                token = _JUDGING.set(True)
                redacting = REDACTING.set(True)
                try:
                    check_zone(guard, state, self.purpose, labels, f"logging.{record.name}", judged_for=None)
                finally:
                    REDACTING.reset(redacting)
                    _JUDGING.reset(token)
        except PurposeViolation as error:
            rebuilt = walking == "zone"
            # A trusted logger's exception refused by the zone: its message stays.
            exception_only = walking == "zone exception"
            _redact(
                record,
                error,
                extras,
                not exception_only and (bool(message_labels) or walking == "message" or rebuilt),
                exception_only
                or bool(error_labels)
                or walking == "exception"
                or (rebuilt and _has_exception(record)),
                by_zone=rebuilt and not message_labels,
                zone=rebuilt,
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
    *,
    by_zone: bool = False,
    zone: bool = False,
) -> None:
    """Redact the record in place. ``by_zone``: refused through the zone
    alone (the message carried no label); ``zone``: refused through the zone."""
    categories = ", ".join(sorted({v.category for v in error.violations}))
    rules = ", ".join(sorted({v.rule or "the policy default" for v in error.violations}))
    mark = f"[redacted: {categories}]"
    if message:
        # Refused through the zone, the message itself carried no label: it
        # was written where that content had been read, and may quote it.
        why = f"written in a zone that had read {categories}" if by_zone else f"it carried {categories}"
        text = (
            f"[purposeguard redacted this message: {why}, "
            f"not allowed for {error.violations[0].purpose} (rule {rules})]"
        )
        record.msg, record.args = _reshaped(text, record.msg, record.args, mark, zone)
        for key in extras:
            value = record.__dict__[key]
            if zone:
                # What was rebuilt from what the zone read carries no label,
                # at any depth of an extra (a JSON formatter prints it
                # whole): the zone that refused the message refuses what
                # was put beside it too.
                record.__dict__[key] = _stand_in(value, mark, zone)
                continue
            try:
                carried = labels_in_values((value,))
            except WalkLimit:
                carried = frozenset({"beyond the bound"})
            if carried:
                record.__dict__[key] = _stand_in(value, mark)
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


# What a redacted argument keeps: a plain number or None quotes no text and
# carries no label (a labelled number is a subclass), as on spans.
_PLAIN = frozenset({int, float, bool, type(None)})
# Integers below this stay in a record the zone refused: no card, account or
# phone number is this short, and status codes and ports are.
_SMALL = 65_536
# The names a message's template gives its mapping argument: ``%(name)s``.
_NAMED = re.compile(r"%\(([^()]*)\)")


def _stand_in(value: Any, mark: str, zone: bool = False) -> Any:
    """What a redacted value becomes: a plain number stays; text of the
    value's own kind says what was removed. A number that carried a refused
    label gets the text too: any number put in its place would read as data.

    ``zone``: refused through the zone, which read data a number may have
    been rebuilt from (``int(card)``, an amount): only None, truth values and
    small integers stay (a status code, a port, a count, which formatters
    such as uvicorn's take apart with ``int()``)."""
    kind = type(value)
    if kind in _PLAIN:
        if not zone or value is None or kind is bool or (kind is int and -_SMALL < value < _SMALL):
            return value
    if isinstance(value, bytearray):
        return bytearray(mark.encode())
    if isinstance(value, bytes):
        return mark.encode()
    return mark


def _reshaped(text: str, template: Any, args: Any, mark: str, zone: bool = False) -> tuple[str, Any]:
    """The redacted message and arguments of the original arguments' shape.

    Formatters take ``record.args`` apart themselves (uvicorn's access
    formatter unpacks five and calls ``int()`` on the status), so a tuple
    stays a tuple of the same length and a mapping keeps the keys its
    template names; each ``%.0s`` added to the message consumes an argument
    and shows nothing of it, so ``getMessage()`` gives ``text``."""
    if not args:
        return text, args  # getMessage() does not format: the text stays as it is
    escaped = text.replace("%", "%%")
    if isinstance(args, tuple):
        return escaped + "%.0s" * len(args), tuple(_stand_in(value, mark, zone) for value in args)
    # A single argument that is not a tuple (a mapping, a list, any object)
    # is one argument to the % operator.
    if isinstance(args, Mapping):
        kept: dict[str, Any] = {}
        # Only the keys the template names (names the code wrote): a mapping
        # logged whole (``log.info("%s", mapping)``) may have content as keys.
        for name in _NAMED.findall(template) if isinstance(template, str) else ():
            try:
                if name not in kept:
                    kept[name] = _stand_in(args[name], mark, zone)
            except Exception:  # a key the mapping does not have: left out, as a dict would
                continue
        # An empty mapping is not formatted at all: the text must not be escaped then.
        return (escaped + "%.0s", kept) if kept else (text, kept)
    if isinstance(args, list):
        return escaped + "%.0s", [_stand_in(value, mark, zone) for value in args]
    return escaped + "%.0s", _stand_in(args, mark, zone)


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
    logger: logging.Logger | str | None = None,
    *,
    purpose: str = "service.operations.logs",
    trusted_loggers: Iterable[str] | None = None,
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

    ``trusted_loggers`` names loggers (each covering the loggers below it)
    whose records, made by code of the package the logger is named after,
    skip the zone check: a server's access lines hold the request line, the
    status and the client's address, nothing the application's zone put
    there. Their labelled values and their exceptions are judged still. None
    (the default) trusts no logger; an entry that is not a logger name
    raises TypeError or ValueError before anything is set up.

    >>> guard_filter = setup(trusted_loggers=["uvicorn.access", "gunicorn.access"])
    >>> teardown(guard_filter)
    """
    target = _resolve(logger)
    guard_filter = PurposeGuardFilter(purpose, trusted_loggers=trusted_loggers)
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
