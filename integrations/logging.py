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

Formatting. An argument's text may be made only when the record is
formatted (a Django model whose ``__str__`` follows a ForeignKey to a
declared field): a record with arguments other than plain text and numbers
is formatted by the filter, and what formatting read (told to a zone of
the record's own, then to the current zone) is judged with the record's
own labels. The record then holds the judged text as its message, with no
arguments, so every handler writes that text and ``__str__`` runs once.

Beside the message. A refused record has every ``extra=`` field redacted,
not only those carrying labels: Django's query log puts the statement with
its parameters interpolated in ``extra={"sql": ...}``, plain text rebuilt
from the refused value. Attributes a handler's filter sets after the
record was judged (request context set through ``dictConfig``), added or
put in place of a value the record had, are judged when that handler's
copy of the filter meets the record, and redacted with a refused record.
A filter added to a logger or a handler after :func:`setup` runs before
purposeguard's (``addFilter`` keeps purposeguard's last).

What the handler writes. After the handler's formatter made the line,
what it set on the record (the current user, added or replaced), the
line's own labels and, inside a zone, the labelled values formatting made
text (an f-string of the current user) are judged too: refused values on
the record are redacted and the line is made again; a line that still
carries them (a formatter that sets them on every line, or writes them
into the line itself) is replaced by a note naming the categories. A
refused record's plain attributes that a formatter sets stay: it sets them
again on every line, from what it was given, not from the record's content.

Frames. The local values of the frames of a logged exception's traceback
(and of the exceptions it was raised from or during) are looked at, as far
as a bounded look goes (``FRAME_BUDGET`` values; what lies beyond is not
looked at, and is no reason to refuse): Django's ``AdminEmailHandler``
(``include_html=True``) and error trackers show them. Labelled values there
that the policy refuses take the frames out: the record keeps its
traceback as the text a formatter prints, with a note naming the
categories, and no ``exc_info`` to read frames from.

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
a logger's filter list replaced by hand (``logger.filters = []``), and a
filter put in a handler's list by hand after purposeguard's
(``handler.filters.append(f)``) on a handler that writes no formatted line
(``HTTPHandler`` sends the record's attributes).
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from functools import partial
from itertools import compress
from operator import is_not
from types import TracebackType
from typing import Any, TypeVar

from purposeguard._context import FLAGS, REDACTING, ZONE, ZoneState
from purposeguard._errors import PurposeViolation
from purposeguard._kinds import EMPTY
from purposeguard._labels import NO_LABELS, WalkLimit, labels_in_values
from purposeguard._runtime import check_zone, get_guard, require_purpose_key
from purposeguard._walk import FRAME_BUDGET, MAX_DEPTH, _Walk

from ._options import calling_module, name_list
from ._patch import Patcher

__all__ = ["PurposeGuardFilter", "setup", "teardown"]

_T = TypeVar("_T")

# Set while a record's zone check runs (see PurposeGuardFilter.filter).
_JUDGING: ContextVar[bool] = ContextVar("purposeguard.logging.judging", default=False)
# What a LogRecord holds before any ``extra=`` is merged in.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# What a formatter sets from what was judged, as plain text: a later check
# finding them has nothing new to judge.
_FORMATTED = frozenset({"message", "asctime"})
# The attributes whose change redacts a refused record's message, or its exception.
_MESSAGE = frozenset({"msg", "args"})
_EXCEPTION = frozenset({"exc_info", "exc_text", "stack_info"})


class _Verdict:
    """One purpose's judgment of one record: the record's values when it was
    last judged, the labels judged and let through, and the refusal, if
    any, that redacted it."""

    __slots__ = ("passed", "refusal", "refused", "seen", "zone")

    def __init__(self) -> None:
        # None while the judgment runs: a record met again meanwhile (from
        # code the judgment calls) is not judged inside its own judgment.
        self.seen: tuple[Any, ...] | None = None
        # Reported once: trace mode lets a refused label through, and a
        # formatter writing it again is no new flow.
        self.passed: frozenset[str] = EMPTY
        # The refusal of each category refused, redacted again without a new report.
        self.refused: dict[str, PurposeViolation] = {}
        self.refusal: PurposeViolation | None = None
        self.zone = False


class _Judged:
    """The judgments of one record, by purpose, and the labels its message
    carried before it was replaced by its formatted text."""

    __slots__ = ("ref", "verdicts", "carried")

    def __init__(self, ref: weakref.ref[Any] | None) -> None:
        self.ref = ref
        self.verdicts: dict[str, _Verdict] = {}
        self.carried: frozenset[str] = EMPTY


# The judgments of each record, by the record's id: a record attribute would
# be one ``extra=`` could forge. The weak reference tells a reused id apart
# (its entry is replaced); entries of records that died without their id
# coming back are swept as the table grows.
_JUDGED: dict[int, _Judged] = {}
_SWEEP_AT = [1024]


def _first_judgement(record: logging.LogRecord) -> _Judged:
    """A new entry for a record no filter has judged yet."""
    try:
        reference = weakref.ref(record)
    except TypeError:  # a record factory's type without weak references: judged every time
        return _Judged(None)
    if len(_JUDGED) >= _SWEEP_AT[0]:
        for dead in [key for key, entry in list(_JUDGED.items()) if entry.ref is None or entry.ref() is None]:
            _JUDGED.pop(dead, None)
        _SWEEP_AT[0] = max(1024, 2 * len(_JUDGED))
    judged = _Judged(reference)
    _JUDGED[id(record)] = judged
    return judged


def _moved(fields: dict[str, Any], values: tuple[Any, ...], seen: tuple[Any, ...]) -> list[str]:
    """The attributes set on the record, or put in place of what it held,
    since it held the values ``seen`` (in the order a dict keeps; ``values``
    are those it holds now): a handler's filter adding request context or
    replacing an ``extra=`` value, a formatter setting its own. A value is
    told by its identity; a removed attribute shifts the rest, which are
    then judged again, as changed."""
    moved = list(compress(fields, map(is_not, values, seen)))
    if len(values) > len(seen):
        moved += list(fields)[len(seen) :]
    return moved


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


# -- what formatting reads: arguments whose text is made when the record is formatted ----


class _Told(ZoneState):
    """The zone a record is formatted in: what formatting reads tells it (a
    labelled value made text, a model's field a ``__str__`` loads), and
    ``told`` keeps those categories apart from what the zone knew before.
    It starts from the current zone's categories and tenant, so checks made
    while formatting decide as they would in the zone itself."""

    __slots__ = ("told",)

    def __init__(self, outer: ZoneState | None) -> None:
        super().__init__(None, outer)
        self.told: set[str] = set()

    def add(self, labels: frozenset[str], tenant: str | None = None) -> None:
        self.told.update(labels)
        super().add(labels, tenant)


def _in_own_zone(
    call: Callable[[logging.LogRecord], _T], record: logging.LogRecord
) -> tuple[_T, frozenset[str]]:
    """``call(record)`` in a zone of its own, and the categories of the
    labelled values it made text. The current zone learns them too: what
    formatting read, the zone read. With no zone in use in the process
    nothing listens, and nothing is found."""
    if not FLAGS.zones:
        return call(record), EMPTY
    outer = ZONE.get()
    told = _Told(outer)
    token = ZONE.set(told)
    try:
        result = call(record)
    finally:
        ZONE.reset(token)
        if outer is not None and told.told:
            learned = frozenset(told.told)
            outer.add(learned)
            for owner in told.owners - outer.owners:
                outer.add(learned, owner)
    return result, frozenset(told.told)


def _message(record: logging.LogRecord) -> str:
    return record.getMessage()


def _formatted(record: logging.LogRecord) -> tuple[str | None, frozenset[str]]:
    """The record's message as a handler would format it, and the categories
    formatting read. A ``__str__`` of an argument runs here, once, where it
    is judged: the handler then writes this text, not text made anew.

    Labelled values tell the current zone when made text; with no zone in
    use in the process only the labels of the text itself are found. None
    for a message that does not format (the handler reports that itself,
    as it would have)."""
    try:
        text, told = _in_own_zone(_message, record)
    except PurposeViolation:
        raise
    except Exception:
        return None, EMPTY
    return text, told | labels_in_values((text,))


# -- a traceback's frames: handlers that render their local values ----------------------

# Exceptions along a record's cause/context chain whose frames are looked at.
_MAX_CHAIN = 16


def _frame_values(exc_info: Any) -> list[Any]:
    """The local values of the frames of the record's exception and of the
    exceptions it was raised from or during, innermost frames first:
    Django's AdminEmailHandler (``include_html``) and error trackers show
    them. Values that carry their own labels come first, as they cost the
    bounded walk nothing."""
    if not isinstance(exc_info, tuple) or len(exc_info) < 3:
        return []
    error = exc_info[1]
    tracebacks: list[TracebackType | None] = [exc_info[2]]
    seen = {id(error)}
    while isinstance(error, BaseException) and len(seen) <= _MAX_CHAIN:
        error = error.__cause__ or error.__context__
        if error is None or id(error) in seen:
            break
        seen.add(id(error))
        tracebacks.append(error.__traceback__)
    labelled: list[Any] = []
    rest: list[Any] = []
    for tb in tracebacks:
        frames = []
        while isinstance(tb, TracebackType):
            frames.append(tb.tb_frame)
            tb = tb.tb_next
        for frame in reversed(frames):
            for value in frame.f_locals.values():
                kind = type(value)
                if kind in NO_LABELS:
                    continue
                if getattr(kind, "_pg_kind", None) is not None:
                    labelled.append(value)
                else:
                    rest.append(value)
    return labelled + rest


def _frames_hold_labels(record: logging.LogRecord) -> bool:
    """Whether the frames of a refused record's traceback hold labelled
    values (a refused message's record keeps no frames holding content)."""
    if not isinstance(record.exc_info, tuple):
        return False
    try:
        return bool(_frame_labels(record))
    except Exception:  # not looked at: refused with the record
        return True


def _frame_labels(record: logging.LogRecord) -> frozenset[str]:
    """The labels held by the frames' local values, as far as a bounded look
    goes (``FRAME_BUDGET`` values in all): a frame also holds the request,
    the settings, the ORM's machinery, far past the walk's bounds, and what
    lies beyond the budget is not looked at rather than refused."""
    values = _frame_values(record.exc_info)
    if not values:
        return EMPTY
    walk = _Walk(None, strict=False)
    walk.glance(values, MAX_DEPTH, FRAME_BUDGET)
    return frozenset(walk.labels)


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
        # once; a filter for another purpose still decides for itself. What
        # was set on the record after its judgment (a handler's filter
        # adding request context, or putting a value in place of one the
        # record had) is judged when a handler's copy meets it.
        judged = _JUDGED.get(id(record))
        if judged is not None and judged.ref is not None and judged.ref() is record:
            verdict = judged.verdicts.get(self.purpose)
            if verdict is not None:
                self._judge_again(record, verdict)
                return True
        else:
            judged = _first_judgement(record)
        verdict = judged.verdicts[self.purpose] = _Verdict()
        try:
            self._judge(record, judged, verdict)
        finally:
            verdict.seen = tuple(record.__dict__.values())
        return True

    def _verdict(self, record: logging.LogRecord) -> _Verdict | None:
        judged = _JUDGED.get(id(record))
        if judged is None or judged.ref is None or judged.ref() is not record:
            return None
        return judged.verdicts.get(self.purpose)

    def _judge(self, record: logging.LogRecord, judged: _Judged, verdict: _Verdict) -> None:
        fields = record.__dict__
        extras = [] if fields.keys() <= _STANDARD else [key for key in fields if key not in _STANDARD]
        # A message replaced by its formatted text (below) for another
        # purpose's filter carried these.
        message_labels: frozenset[str] = judged.carried
        error_labels: frozenset[str] = EMPTY
        frame_labels: frozenset[str] = EMPTY
        text: str | None = None
        # Which walk is running: a part whose walk hit the bound is redacted
        # whole (in enforce mode), since what it holds was not looked at.
        walking = "message"
        try:
            args = record.args
            # The usual record (a plain message, plain arguments) has nothing
            # to walk or to format: the walk's own first test, without the walk.
            plain = type(record.msg) in NO_LABELS and (
                args is None or (type(args) is tuple and NO_LABELS.issuperset(map(type, args)))
            )
            if not plain:
                # An argument's text may be made only when it is formatted
                # (a model's __str__ loading a related row): formatted here,
                # what it read is judged with the rest.
                text, told = _formatted(record)
                message_labels = message_labels | told
            if extras or not plain:
                message_labels = message_labels | _labels(
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
                verdict.passed = labels
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
                if walking:
                    # A violation callback that logs must not be judged again
                    # from inside this check (it would report itself, endlessly).
                    token = _JUDGING.set(True)
                    redacting = REDACTING.set(True)
                    try:
                        check_zone(
                            guard, state, self.purpose, labels, f"logging.{record.name}", judged_for=None
                        )
                    finally:
                        REDACTING.reset(redacting)
                        _JUDGING.reset(token)
            # Last, so that the zone still judges the traceback's text: the
            # values the traceback's frames hold, for their own labels but
            # those already allowed above.
            walking = "frames"
            if isinstance(record.exc_info, tuple):
                frame_labels = self._frame_labels(record) - labels
                if frame_labels:
                    redacting = REDACTING.set(True)
                    try:
                        guard.check_labels(
                            frame_labels, self.purpose, via="egress", function=f"logging.{record.name}"
                        )
                    finally:
                        REDACTING.reset(redacting)
                    verdict.passed = verdict.passed | frame_labels
        except PurposeViolation as error:
            verdict.refused.update(dict.fromkeys((v.category for v in error.violations), error))
            rebuilt = walking == "zone"
            # A trusted logger's exception refused by the zone: its message stays.
            exception_only = walking == "zone exception"
            # Refused for the values the traceback's frames hold alone: the
            # frames go, the traceback's text stays.
            frames_only = walking == "frames"
            message = (
                not exception_only
                and not frames_only
                and (bool(message_labels) or walking == "message" or rebuilt)
            )
            exception = not frames_only and (
                exception_only
                or bool(error_labels)
                or walking == "exception"
                or (rebuilt and _has_exception(record))
            )
            frames = frames_only or (not exception and _frames_hold_labels(record))
            every_extra = message or exception
            if every_extra and not exception_only:
                # What a handler's filter sets on the record later is redacted too.
                verdict.refusal, verdict.zone = error, rebuilt
            _redact(
                record,
                error,
                [] if exception_only else extras,
                message,
                exception,
                # A refused message or exception: what was put beside it may
                # be rebuilt from the same value (Django's query log puts the
                # statement with its parameters in ``extra={"sql": ...}``).
                every_extra=every_extra,
                frames=frames,
                by_zone=rebuilt and not message_labels,
                zone=rebuilt,
            )
            return
        if text is not None and type(record).getMessage is _GET_MESSAGE:
            # The handler writes the text that was judged, not text made
            # anew (an argument's __str__ may read something else the next
            # time); a filter for another purpose still finds the labels.
            # A record factory's own getMessage (str.format style) would
            # read the text as a template again: its record keeps its own.
            record.msg, record.args = text, ()
            judged.carried = message_labels

    def _frame_labels(self, record: logging.LogRecord) -> frozenset[str]:
        try:
            return _frame_labels(record)
        except Exception as error:
            # Frames that could not be looked at: enforce mode refuses them.
            get_guard()._internal_error(
                error, EMPTY, self.purpose, "egress", f"logging.{record.name}", None, False
            )
            return EMPTY

    def _judge_again(
        self,
        record: logging.LogRecord,
        verdict: _Verdict,
        text: Any = None,
        told: frozenset[str] = EMPTY,
    ) -> PurposeViolation | None:
        """Judge what was set on the record, or put in place of what it
        held, since ``verdict`` last saw it; after formatting, the line's own
        labels and what formatting made text too. The refusal that redacted
        the record now, if any.

        Before formatting (a handler's filter), a record refused then has
        every changed attribute redacted, as every extra was; one that
        passed has them judged for their own labels (the zone's verdict on
        the record stands: it was made in the same zone). After formatting,
        only what carries a refused label is redacted: a formatter sets its
        attributes again on every line, and its plain ones were not built
        from the record's content."""
        seen = verdict.seen
        if seen is None:
            return None  # met again while its judgment runs
        fields = record.__dict__
        values = tuple(fields.values())
        plain_line = text is None or type(text) is str
        # The usual record changed nothing, or only had a formatter's
        # message and time added: one comparison of tuples in C says so (a
        # value the same object or equal to the one before: a line
        # formatted again, the same text).
        count = len(seen)
        try:
            same = (values if len(values) == count else values[:count]) == seen
        except Exception:  # an __eq__ that raises (an array's): told by identity
            same = False
        if not same:
            moved = _moved(fields, values, seen)
        elif len(values) > count:
            moved = list(fields)[count:]
        elif not told and plain_line:
            return None
        else:
            moved = []
        verdict.seen = values
        if _FORMATTED.issuperset(moved) and str is type(fields.get("message", "")) is type(
            fields.get("asctime", "")
        ):
            changed = []  # the usual line: a formatter's message and time, plain text from what was judged
        else:
            changed = [key for key in moved if key not in _FORMATTED or type(fields[key]) is not str]
        unseen = told - verdict.passed if told else EMPTY
        if not changed and not unseen and plain_line:
            return None
        formatted = text is not None
        refusal: PurposeViolation | None = None
        try:
            parts = [fields[key] for key in changed]
            if not plain_line:
                parts.append(text)
            labels = (_labels(parts, self.purpose, record.name) if parts else EMPTY) | unseen
            fresh = labels - verdict.passed - verdict.refused.keys()
            if fresh:
                redacting = REDACTING.set(True)
                try:
                    get_guard().check_labels(
                        fresh, self.purpose, via="egress", function=f"logging.{record.name}"
                    )
                finally:
                    REDACTING.reset(redacting)
                verdict.passed = verdict.passed | fresh
            for label in labels & verdict.refused.keys():
                refusal = verdict.refused[label]
        except PurposeViolation as error:
            refusal = error
            verdict.refused.update(dict.fromkeys((v.category for v in error.violations), error))
            if verdict.refusal is None:
                verdict.refusal, verdict.zone = error, False
        if formatted:
            if refusal is None:
                return None
        elif verdict.refusal is None or not changed:
            return None
        else:
            refusal = verdict.refusal
        _redact(
            record,
            refusal,
            [key for key in changed if key not in _MESSAGE and key not in _EXCEPTION],
            not _MESSAGE.isdisjoint(changed),
            not _EXCEPTION.isdisjoint(changed),
            every_extra=not formatted,
            by_zone=verdict.zone and not formatted,
            zone=verdict.zone and not formatted,
        )
        verdict.seen = tuple(fields.values())
        return refusal


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
    every_extra: bool = True,
    frames: bool = False,
    by_zone: bool = False,
    zone: bool = False,
) -> None:
    """Redact the record in place. ``extras``: the fields to redact, every
    one of them or (not ``every_extra``) those carrying labels; ``frames``:
    the traceback's frames go, its text stays; ``by_zone``: refused through
    the zone alone (the message carried no label); ``zone``: refused
    through the zone."""
    categories, rules = _why(error)
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
        if not every_extra:
            # Refused for what the traceback's frames held: an extra answers
            # for its own labels.
            try:
                carried = labels_in_values((value,))
            except WalkLimit:
                carried = frozenset({"beyond the bound"})
            if not carried:
                continue
        # What was rebuilt from the refused value carries no label, at any
        # depth of an extra (a JSON formatter prints it whole).
        record.__dict__[key] = _stand_in(value, mark, zone)
    exc_info = record.exc_info
    kind = (
        type(exc_info[1]).__name__
        if isinstance(exc_info, tuple) and len(exc_info) > 1 and exc_info[1] is not None
        else "exception"
    )
    if exception:
        # Formatter.format renders exc_text when exc_info is gone.
        record.exc_info = None
        record.exc_text = f"[purposeguard redacted a {kind} traceback: it carried {categories}]"
        if record.stack_info:
            record.stack_info = "[purposeguard redacted the stack]"
    elif frames and isinstance(exc_info, tuple):
        # Handlers that show the frames' local values (Django's
        # AdminEmailHandler, error trackers) read them from exc_info: the
        # record keeps the traceback's text only, as a formatter prints it.
        shown = record.exc_text or _TRACEBACK.formatException(exc_info)
        record.exc_info = None
        record.exc_text = (
            f"{shown}\n[purposeguard removed this {kind} traceback's frames: their local values"
            f" held {categories}]"
        )
    # A handler may have formatted the record already.
    record.__dict__.pop("message", None)


def _why(error: PurposeViolation) -> tuple[str, str]:
    """The categories and the rules of a refusal, as a redaction names them."""
    categories = ", ".join(sorted({v.category for v in error.violations}))
    rules = ", ".join(sorted({v.rule or "the policy default" for v in error.violations}))
    return categories, rules


def _refused_line(error: PurposeViolation) -> str:
    """What a handler writes in place of a line its formatter wrote with a
    refused value again after the record was redacted (a formatter that
    sets it on every line, or writes it into the line itself)."""
    categories, rules = _why(error)
    return (
        f"[purposeguard redacted a line its formatter wrote: it carried {categories},"
        f" not allowed for {error.violations[0].purpose} (rule {rules})]"
    )


# Formats a traceback as logging.Formatter does by default.
_TRACEBACK = logging.Formatter()
_GET_MESSAGE = logging.LogRecord.getMessage


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


def _add_filter(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # A filter added after setup() (request context on a handler or a
    # logger) runs before purposeguard's: what it sets is judged where the
    # record is, before a handler outside the tree gets it.
    result = wrapped(*args, **kwargs)
    filters = instance.filters
    ours = [f for f in filters if isinstance(f, PurposeGuardFilter)]
    if ours and filters[len(filters) - len(ours) :] != ours:
        # A new list, not one changed in place: a thread may be going through the old one.
        instance.filters = [f for f in filters if not isinstance(f, PurposeGuardFilter)] + ours
    return result


def _format(handler: logging.Handler, record: logging.LogRecord) -> str:
    """``Handler.format`` while :func:`setup` is in effect: what the handler
    writes is judged. A formatter may set attributes on the record (the
    current user) or write values into the line itself."""
    original = _FORMAT[0]
    filters = handler.filters
    for guard in filters:
        if isinstance(guard, PurposeGuardFilter):
            break
    else:
        return original(handler, record)
    formatter = handler.formatter
    if (
        (formatter is None or type(formatter) is logging.Formatter)
        and guard is filters[-1]
        and guard._verdict(record) is not None
    ):
        # The standard formatter sets only the message, the time and the
        # traceback's text, from what the handler's filter judged: it is the
        # handler's last, and its only purposeguard filter, so no filter
        # ran after it.
        return original(handler, record)
    text, told = (
        _in_own_zone(partial(original, handler), record)
        if FLAGS.zones
        else (original(handler, record), EMPTY)
    )
    if _line_refusal(filters, record, text, told) is None:
        return text
    # Written again from the redacted record.
    text, told = _in_own_zone(partial(original, handler), record)
    refusal = _line_refusal(filters, record, text, told)
    # Refused again: the formatter sets the value on every line, or writes
    # it into the line itself.
    return text if refusal is None else _refused_line(refusal)


def _line_refusal(
    filters: list[Any], record: logging.LogRecord, text: Any, told: frozenset[str]
) -> PurposeViolation | None:
    """What the handler's purposeguard filters say of a line its formatter
    made: the refusal that redacted the record, if any."""
    refusal = None
    for guard in filters:
        if not isinstance(guard, PurposeGuardFilter):
            continue
        verdict = guard._verdict(record)
        if verdict is None:
            # The record reached the formatter unjudged (a handler's emit()
            # called directly, a record a filter returned in place of the
            # one it was given): judged now.
            guard.filter(record)
            verdict = guard._verdict(record)
            if verdict is None:
                continue  # a record without weak references: judged, and not kept
            if verdict.refused:
                refusal = next(iter(verdict.refused.values()))
                continue
        refusal = guard._judge_again(record, verdict, text, told) or refusal
    return refusal


# ``Handler.format`` as it was before setup() put _format in its place: a
# plain function there, not a wrapper, as every line a handler writes pays
# for it. The last teardown() puts it back, if nothing was put over it.
_FORMAT: list[Callable[[logging.Handler, logging.LogRecord], str]] = [logging.Handler.format]


def _install_format() -> None:
    current = logging.Handler.format
    if current is not _format:
        _FORMAT[0] = current
        setattr(logging.Handler, "format", _format)  # noqa: B010 - mypy refuses a method assigned


def _remove_format() -> None:
    if vars(logging.Handler).get("format") is _format:
        setattr(logging.Handler, "format", _FORMAT[0])  # noqa: B010 - mypy refuses a method assigned


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
# one every new logger goes through, addFilter the one every filter goes
# through; wrapt wraps them in place and the last teardown() puts the
# originals back. Handler.format, the door every line a handler writes goes
# through, is replaced by _format (above).
_PATCHER = Patcher(
    "logging",
    [
        ("Logger", "addHandler", _add_handler),
        ("Logger", "__init__", _new_logger),
        ("Filterer", "addFilter", _add_filter),
    ],
)


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
    ``setup()``, ``dictConfig``). Filters added later run before
    purposeguard's, and what a handler's formatter sets or writes is
    judged before the handler writes the line. purposeguard wraps
    ``Logger.__init__``, ``addHandler``, ``addFilter`` and
    ``Handler.format`` until the last :func:`teardown`. For the root logger, ``logging.lastResort`` gets the
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
        _install_format()
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
            _remove_format()
    for below in _below(target):
        below.removeFilter(guard_filter)
        for handler in list(below.handlers):
            handler.removeFilter(guard_filter)
    last_resort = _LAST_RESORT.pop(guard_filter, None)
    if last_resort is not None:
        last_resort.removeFilter(guard_filter)
