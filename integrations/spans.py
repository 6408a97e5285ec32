"""Keep labelled content out of OpenTelemetry spans.

>>> from purposeguard.integrations import spans
>>> spans.instrument()     # every span of the OpenTelemetry SDK, from now on
>>> spans.uninstrument()

A span serves ``service.operations.logs``, like a log line (configurable;
the built-in pack's purpose for "logs, traces and diagnostics", which its
rule ``no-content-in-logs`` keeps content out of). Every value set on a span
of the SDK (``opentelemetry.sdk.trace.Span``) is judged before the span
keeps it: its name (``tracer.start_span``, ``start_as_current_span``,
``update_name``), its attributes (given at start, ``set_attribute``,
``set_attributes``), events (``add_event``: name and attributes), link
attributes, recorded exceptions (``record_exception``: the exception's
arguments and attributes along the ``__cause__``/``__context__`` chain, as
the logging filter walks them) and status descriptions (``set_status``). A
value that carries categories the policy does not allow for that purpose is
replaced in enforce mode (by ``[redacted: <categories>]``, never the value; a
recorded exception keeps only its type) or passed with a violation recorded
in trace mode. Labels follow the values themselves; text merged into an
f-string beforehand carries no label, so inside a zone (a request, a job)
the zone's categories are checked too (``via="context"``, under the
policy's ``context_mode``: the built-in pack records such a flow, and
``context_mode="enforce"`` redacts the text). The zone holds text to
account: strings, bytes, sequences holding them, names, descriptions and
exceptions; a number or a boolean quotes no text and answers for its own
labels only. A status description that quotes an exception recorded on the
same span (as the SDK writes one when an exception leaves the span's
``with`` block) is judged with that exception's labels.

The zone is checked once per span (for each set of categories the zone has
reached): the first value decides, and its violation is the one recorded;
the span's later values get the same answer without another record, so a
span with fifty attributes in a refused zone records one flow, not fifty.
Across spans, trace mode records a flow once per tracer per zone and
counts the repeats: a record's ``function`` is
``opentelemetry.trace.<tracer name>``, as ``logging.<logger name>`` is for
log records (never the span's name, which may itself quote content).

purposeguard's own telemetry (the violation events, exceptions and status
that :mod:`purposeguard.otel` puts on the current span) is not judged, and
neither is what reaches a span while a value is being judged (a violation
callback, the telemetry of the violation just found), so a violation never
reports itself again. Nothing raises into the application from a span
call, but what the logging filter would let through (a failure of the
application's own objects while they are looked into). Spans of other
``Span`` implementations, and SDK subclasses that override these methods,
are not covered. Needs the SDK: ``pip install 'purposeguard[otel]'``.

Trusted tracers. Library instrumentations (an ASGI or FastAPI server, an
HTTP client) make their own spans with fixed attributes (``http.route``,
``http.request.method``, ``server.address``); in a zone that read content
each of them would record a flow, and ``context_mode="enforce"`` would
redact them. ``instrument(trusted_tracers=...)`` names the tracers (the name
given to ``trace.get_tracer(name)``, or a prefix ending in ``*``) whose
spans skip the zone check::

    spans.instrument(trusted_tracers=["opentelemetry.instrumentation.*"])

is the recommended setting for the OpenTelemetry contrib instrumentations,
whose tracers are named after their modules
(``opentelemetry.instrumentation.asgi``, ``...fastapi``, ``...httpx``).
``"a.b.*"`` trusts the names that start with ``a.b.`` (not ``a.b`` itself,
nor ``a.bx``); ``"a.b*"`` those that start with ``a.b``. Nothing is trusted
by default. Trust covers the zone check only: a labelled value on a trusted
span is judged by its labels as anywhere else, and so is a recorded
exception or an error status description, text that comes from the
application, checked against the zone too. Trust needs both the span's
tracer and the code setting the value to be trusted (the contrib
instrumentations' tracers are named after their modules, so the same names
serve): text the application itself puts on a trusted span
(``trace.get_current_span()`` in a handler whose current span is the server
instrumentation's, the instrumentations' request and response hooks, which
are the application's functions) is held to the zone like any other.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Iterable
from typing import Any

from purposeguard._context import FLAGS, REDACTING, ZONE
from purposeguard._errors import PurposeViolation
from purposeguard._labels import EMPTY, WalkLimit, labels_in_values
from purposeguard._runtime import Guard, check_zone, get_guard, require_purpose_key
from purposeguard.otel import OWN_TELEMETRY

from ._options import calling_module, name_list

__all__ = ["instrument", "is_instrumented", "uninstrument"]

# Set while a value is judged, and (by purposeguard.otel itself) while a
# violation's own telemetry is emitted: whatever reaches a span meanwhile is
# purposeguard's own or a violation callback's.
_JUDGING = OWN_TELEMETRY
# On the span: (guard, zone state, categories, purpose, the refusal or None)
# of its last zone check.
_ZONE_MEMO = "_purposeguard_zone"
# On the span: (text, labels, refusal or None) of the last exception it recorded.
_RECORDED = "_purposeguard_exception"
# What a plain attribute value is, the usual case: no label, no text to quote.
_NUMBERS = frozenset({int, float, bool, type(None)})


# Tracers resolved per _Tracers: past this many names (tracers named at
# run time), the rest are resolved on each call instead of kept.
_MAX_TRACERS = 1024
# A tracer without a usable name: recorded under the bare prefix, never trusted.
_NAMELESS = ("opentelemetry.trace", False)


class _Tracers:
    """The trusted tracers, and per tracer name what it resolved to: the
    ``function`` its records carry and whether its spans skip the zone check.

    Replaced whole by instrument() and uninstrument(), so a span call holds
    one consistent answer and a new setting starts from an empty cache."""

    __slots__ = ("names", "prefixes", "resolved", "modules")

    def __init__(self, names: frozenset[str] = frozenset(), prefixes: tuple[str, ...] = ()) -> None:
        self.names = names
        self.prefixes = prefixes
        self.resolved: dict[str, tuple[str, bool]] = {}
        # Module name -> whether code there is trusted to set values (see _set_by_trusted).
        self.modules: dict[str, bool] = {}

    def trusts_module(self, module: str) -> bool:
        found = self.modules.get(module)
        if found is None:
            found = module in self.names or module.startswith(self.prefixes)
            if len(self.modules) < _MAX_TRACERS:
                self.modules[module] = found
        return found

    def resolve(self, scope: Any) -> tuple[str, bool]:
        # The tracer's name (code chooses it, like a logger's): never the
        # span's name, which is itself a value that may quote content.
        name = getattr(scope, "name", None)
        if not isinstance(name, str) or not name:
            return _NAMELESS
        found = self.resolved.get(name)
        if found is None:
            found = (f"opentelemetry.trace.{name}", name in self.names or name.startswith(self.prefixes))
            if len(self.resolved) < _MAX_TRACERS:
                self.resolved[name] = found
        return found


class _Settings:
    __slots__ = ("purpose", "tracers")

    def __init__(self) -> None:
        self.purpose = "service.operations.logs"
        self.tracers = _Tracers()


_SETTINGS = _Settings()


def _tracer(scope: Any) -> tuple[str, bool]:
    """(the ``function`` of the tracer's records, whether it is trusted)."""
    tracers = _SETTINGS.tracers
    function, trusted = tracers.resolve(scope)
    # Trust matters only where the zone would be checked; there it also
    # needs the code setting the value to be trusted (see _set_by_trusted).
    if trusted and _zone_open() and not _set_by_trusted(tracers):
        return function, False
    return function, trusted


# Frames between the code that sets a value and this module's hooks: the
# OpenTelemetry API and SDK, context managers, and this module itself.
_PASSING_THROUGH = (
    "opentelemetry.sdk.",
    "opentelemetry.trace",
    "opentelemetry.util.",
    "opentelemetry.context",
    "contextlib",
    "functools",
    __name__,
)


def _set_by_trusted(tracers: _Tracers) -> bool:
    """Whether the code that set the value lives in a trusted module (the
    tracers' names are their modules' names): the application's own code
    putting text on a trusted tracer's span (``get_current_span()`` in a
    handler, an instrumentation's request hook) is held to the zone."""
    module = calling_module(2, lambda name: name.startswith(_PASSING_THROUGH))
    return module is not None and tracers.trusts_module(module)


def _trusted(tracers: Iterable[str] | None) -> _Tracers:
    """``trusted_tracers`` checked: exact names and prefixes (a trailing ``*``)."""
    if tracers is None:
        return _Tracers()
    names: set[str] = set()
    prefixes: set[str] = set()
    for name in name_list(tracers, "trusted_tracers", "tracer"):
        pattern = name.endswith("*")
        stem = name[:-1] if pattern else name
        if "*" in stem:
            raise ValueError(f"trusted_tracers entry {name!r}: only a trailing '*' makes a prefix")
        if not pattern:
            names.add(name)
        elif not stem.strip("."):
            raise ValueError(
                f"trusted_tracers entry {name!r} trusts every tracer, the application's own too:"
                " name the tracers, or a prefix"
            )
        else:
            prefixes.add(stem)
    return _Tracers(frozenset(names), tuple(sorted(prefixes)))


def _labels(values: tuple[Any, ...], purpose: str, function: str) -> frozenset[str]:
    """The labels in ``values``; content beyond the walk's bound was not
    looked at, which enforce mode treats as a refusal (the value is redacted)."""
    try:
        return labels_in_values(values)
    except WalkLimit as error:
        get_guard()._internal_error(error, error.labels, purpose, "egress", function, error.tenant, False)
        return error.labels


def _zone_open() -> bool:
    if not FLAGS.zones:
        return False
    state = ZONE.get()
    return state is not None and bool(state.categories)


def _holds_text(value: Any) -> bool:
    if isinstance(value, (int, float)) or value is None:
        return False
    if isinstance(value, (list, tuple)):
        return not all(isinstance(item, (int, float)) or item is None for item in value)
    return True


def _judge(
    span: Any, values: tuple[Any, ...], text: bool, function: str, quoted: frozenset[str] = EMPTY
) -> tuple[frozenset[str], PurposeViolation | None]:
    """The labels of ``values`` (plus ``quoted``, those of what they quote) and
    the violation that refuses them (enforce mode), else None."""
    purpose = _SETTINGS.purpose
    if not quoted and text and FLAGS.zones and all(type(value) is str for value in values):
        # Plain text in a zone the span was judged in already: the memo answers.
        state = ZONE.get()
        if state is not None:
            memo = _memo(span, get_guard(), state, purpose, state.categories)
            if memo is not None:
                return EMPTY, memo[4]
    token = _JUDGING.set(True)
    # A refusal here redacts a value: the traced operation did not fail.
    redacting = REDACTING.set(True)
    labels: frozenset[str] = quoted
    try:
        labels = _labels(values, purpose, function) | quoted
        guard = get_guard()
        if labels:
            guard.check_labels(labels, purpose, via="egress", function=function)
        state = ZONE.get() if text and FLAGS.zones else None
        if state is not None and state.categories:
            return labels, _zone(span, guard, state, purpose, labels, function)
    except PurposeViolation as error:
        return labels, error
    finally:
        REDACTING.reset(redacting)
        _JUDGING.reset(token)
    return labels, None


def _zone(
    span: Any, guard: Guard, state: Any, purpose: str, labels: frozenset[str], function: str
) -> PurposeViolation | None:
    categories = state.categories - labels if labels else state.categories
    memo = _memo(span, guard, state, purpose, categories)
    if memo is not None:
        return memo[4]  # type: ignore[no-any-return]
    refusal: PurposeViolation | None = None
    try:
        # Text rebuilt from what the zone saw (an f-string, a traceback
        # quoting a value) carries no label of its own.
        check_zone(guard, state, purpose, labels, function, judged_for=None)
    except PurposeViolation as error:
        refusal = error
    span.__dict__[_ZONE_MEMO] = (guard, state, categories, purpose, refusal)
    return refusal


def _memo(span: Any, guard: Guard, state: Any, purpose: str, categories: frozenset[str]) -> Any:
    """The span's zone memo, if it answers for this guard, zone, purpose and categories."""
    memo = span.__dict__.get(_ZONE_MEMO)
    if (
        memo is not None
        and memo[0] is guard
        and memo[1] is state
        and memo[3] == purpose
        and (memo[2] is categories or memo[2] == categories)
    ):
        return memo
    return None


def _categories(error: PurposeViolation) -> str:
    return ", ".join(sorted({v.category for v in error.violations}))


def _redacted(error: PurposeViolation) -> str:
    return f"[redacted: {_categories(error)}]"


def _text(span: Any, value: Any, function: str, trusted: bool) -> Any:
    """A name or description as the span may keep it (``trusted``: the
    tracer's own, judged by its labels only)."""
    if type(value) is str and (trusted or not _zone_open()):
        return value
    _, refusal = _judge(span, (value,), not trusted, function)
    return value if refusal is None else _redacted(refusal)


def _pair(span: Any, key: Any, value: Any, function: str, trusted: bool) -> tuple[Any, Any]:
    """An attribute as the span may keep it."""
    plain_key = type(key) is str
    if plain_key:
        t = type(value)
        if t in _NUMBERS or (t is str and (trusted or not _zone_open())):
            return key, value
    _, refusal = _judge(
        span,
        (value,) if plain_key else (key, value),
        not trusted and (_holds_text(value) or not plain_key),
        function,
    )
    if refusal is None:
        return key, value
    if not plain_key and _carries(key):
        key = _redacted(refusal)
    return key, _redacted(refusal)


def _carries(value: Any) -> bool:
    try:
        return bool(labels_in_values((value,)))
    except WalkLimit:
        return True


def _attributes(span: Any, attributes: Any, function: str, trusted: bool) -> Any:
    """``attributes`` as the span may keep them: the same object when nothing changed."""
    items = getattr(attributes, "items", None)
    if not attributes or items is None:
        return attributes  # none, or not a mapping: the SDK deals with it
    pairs = list(items())
    kept: dict[Any, Any] | None = None
    for index, (key, value) in enumerate(pairs):
        new_key, new_value = _pair(span, key, value, function, trusted)
        if kept is None and (new_key is not key or new_value is not value):
            kept = dict(pairs[:index])
        if kept is not None:
            kept[new_key] = new_value
    return attributes if kept is None else kept


def _scope(span: Any) -> Any:
    return getattr(span, "_instrumentation_scope", None)


def _recording(span: Any) -> bool:
    # An ended span drops what it is given (the SDK warns): nothing leaves.
    try:
        return bool(span.is_recording())
    except Exception:
        return True


# -- the span's methods -------------------------------------------------------------------
#
# Each hook gets the SDK's own function, the span and the call's arguments.
# They pass everything through while purposeguard judges (or emits), and
# once uninstrument() ran (another patch may still hold them in its chain).

Hook = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


def _skip(span: Any) -> bool:
    return not _ACTIVE.on or _JUDGING.get() or not _recording(span)


def _set_attribute(
    original: Callable[..., Any], span: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if _skip(span):
        return original(span, *args, **kwargs)
    key, value = _bind_pair(*args, **kwargs)
    key, value = _pair(span, key, value, *_tracer(_scope(span)))
    return original(span, key, value)


def _bind_pair(key: Any, value: Any) -> tuple[Any, Any]:
    return key, value


def _set_attributes(
    original: Callable[..., Any], span: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if _skip(span):
        return original(span, *args, **kwargs)
    (attributes,) = _bind_attributes(*args, **kwargs)
    return original(span, _attributes(span, attributes, *_tracer(_scope(span))))


def _bind_attributes(attributes: Any) -> tuple[Any]:
    return (attributes,)


def _add_event(original: Callable[..., Any], span: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if _skip(span):
        return original(span, *args, **kwargs)
    name, attributes, timestamp = _bind_event(*args, **kwargs)
    function, trusted = _tracer(_scope(span))
    return original(
        span,
        _text(span, name, function, trusted),
        _attributes(span, attributes, function, trusted),
        timestamp,
    )


def _bind_event(name: Any, attributes: Any = None, timestamp: Any = None) -> tuple[Any, Any, Any]:
    return name, attributes, timestamp


def _add_link(original: Callable[..., Any], span: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if _skip(span):
        return original(span, *args, **kwargs)
    context, attributes = _bind_link(*args, **kwargs)
    return original(span, context, _attributes(span, attributes, *_tracer(_scope(span))))


def _bind_link(context: Any, attributes: Any = None) -> tuple[Any, Any]:
    return context, attributes


def _update_name(
    original: Callable[..., Any], span: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if _skip(span):
        return original(span, *args, **kwargs)
    (name,) = _bind_name(*args, **kwargs)
    return original(span, _text(span, name, *_tracer(_scope(span))))


def _bind_name(name: Any) -> tuple[Any]:
    return (name,)


def _set_status(
    original: Callable[..., Any], span: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if _skip(span):
        return original(span, *args, **kwargs)
    from opentelemetry.trace import Status, StatusCode

    status, description = _bind_status(*args, **kwargs)
    # Only an ERROR status keeps a description (the SDK drops the others).
    if isinstance(status, Status):
        text = status.description if status.status_code is StatusCode.ERROR else None
    else:
        text = description if status is StatusCode.ERROR else None
    if text is None:
        return original(span, *args, **kwargs)
    quoted: frozenset[str] = EMPTY
    recorded = span.__dict__.get(_RECORDED)
    if recorded is not None and recorded[0] and isinstance(text, str) and recorded[0] in text:
        if recorded[2] is not None:
            # It quotes an exception already refused: the same answer, no second record.
            return original(span, *_status_with(status, _redacted(recorded[2])))
        quoted = recorded[1]
    if not quoted and type(text) is str and not _zone_open():
        return original(span, *args, **kwargs)
    # An error's description quotes the application's exception, on a
    # trusted tracer's span too: held to the zone.
    function, _ = _tracer(_scope(span))
    _, refusal = _judge(span, (text,), True, function, quoted)
    if refusal is None:
        return original(span, *args, **kwargs)
    return original(span, *_status_with(status, _redacted(refusal)))


def _bind_status(status: Any, description: Any = None) -> tuple[Any, Any]:
    return status, description


def _status_with(status: Any, text: str) -> tuple[Any, ...]:
    from opentelemetry.trace import Status

    if isinstance(status, Status):
        return (Status(status.status_code, text),)
    return (status, text)


def _record_exception(
    original: Callable[..., Any], span: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if _skip(span):
        return original(span, *args, **kwargs)
    exception, attributes, timestamp, escaped = _bind_exception(*args, **kwargs)
    function, trusted = _tracer(_scope(span))
    # The exception is the application's, whatever tracer records it: held to the zone.
    labels, refusal = _judge(span, (exception,), True, function)
    if labels or refusal is not None:
        try:
            text = str(exception)
        except Exception:
            text = ""
        # A status set next that quotes this exception is judged with its labels.
        span.__dict__[_RECORDED] = (text, labels, refusal)
    attributes = _attributes(span, attributes, function, trusted)
    # The SDK's own add_event carries what was just judged: not judged again.
    token = _JUDGING.set(True)
    try:
        if refusal is None:
            return original(span, exception, attributes, timestamp, escaped)
        kind = type(exception)
        module = kind.__module__
        name = f"{module}.{kind.__qualname__}" if module and module != "builtins" else kind.__qualname__
        redacted: dict[Any, Any] = {
            "exception.type": name,
            "exception.message": f"[purposeguard redacted a {kind.__name__}: it carried {_categories(refusal)}]",
            "exception.escaped": str(escaped),
        }
        if attributes:
            redacted.update(attributes)
        return span.add_event("exception", redacted, timestamp)
    finally:
        _JUDGING.reset(token)


def _bind_exception(
    exception: Any, attributes: Any = None, timestamp: Any = None, escaped: Any = False
) -> tuple[Any, Any, Any, Any]:
    return exception, attributes, timestamp, escaped


def _init(original: Callable[..., Any], span: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # The name, attributes, events and links a span starts with
    # (tracer.start_span and start_as_current_span pass them here).
    if not _ACTIVE.on or _JUDGING.get():
        return original(span, *args, **kwargs)
    if args:
        bound = inspect.signature(original).bind(span, *args, **kwargs).arguments
        kwargs = {name: value for name, value in bound.items() if name != "self"}
    name = kwargs.get("name")
    attributes = kwargs.get("attributes")
    events = kwargs.get("events")
    links = kwargs.get("links")
    if type(name) is str and not attributes and not events and not links and not _zone_open():
        return original(span, **kwargs)
    function, trusted = _tracer(kwargs.get("instrumentation_scope"))
    kwargs["name"] = _text(span, name, function, trusted)
    if attributes:
        kwargs["attributes"] = _attributes(span, attributes, function, trusted)
    if events:
        kwargs["events"] = [_event(span, event, function, trusted) for event in events]
    if links:
        kwargs["links"] = [_link(span, link, function, trusted) for link in links]
    return original(span, **kwargs)


def _event(span: Any, event: Any, function: str, trusted: bool) -> Any:
    name = _text(span, event.name, function, trusted)
    attributes = _attributes(span, event.attributes, function, trusted)
    if name is event.name and attributes is event.attributes:
        return event
    return type(event)(name=name, attributes=attributes, timestamp=event.timestamp)


def _link(span: Any, link: Any, function: str, trusted: bool) -> Any:
    attributes = _attributes(span, getattr(link, "attributes", None), function, trusted)
    if attributes is getattr(link, "attributes", None):
        return link
    return type(link)(context=link.context, attributes=attributes)


def _hooked(original: Callable[..., Any], hook: Hook) -> Callable[..., Any]:
    @functools.wraps(original)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return hook(original, self, args, kwargs)

    return method


def _hooked_set_attribute(original: Callable[..., Any], hook: Hook) -> Callable[..., Any]:
    # The hot path: a plain value outside a zone costs type tests and one
    # flag read before the SDK's own method.
    numbers = _NUMBERS
    flags = FLAGS

    @functools.wraps(original)
    def set_attribute(self: Any, key: Any, value: Any) -> Any:
        t = type(value)
        if type(key) is str and (t in numbers or (t is str and not (flags.zones and _zone_open()))):
            return original(self, key, value)
        return hook(original, self, (key, value), {})

    return set_attribute


_HOOKS: tuple[tuple[str, Hook, Callable[[Callable[..., Any], Hook], Callable[..., Any]]], ...] = (
    ("__init__", _init, _hooked),
    ("set_attribute", _set_attribute, _hooked_set_attribute),
    ("set_attributes", _set_attributes, _hooked),
    ("add_event", _add_event, _hooked),
    ("add_link", _add_link, _hooked),
    ("update_name", _update_name, _hooked),
    ("set_status", _set_status, _hooked),
    ("record_exception", _record_exception, _hooked),
)


class _Active:
    """The span class patched, with its own methods as they were."""

    __slots__ = ("on", "span_class", "originals", "lock")

    def __init__(self) -> None:
        self.on = False
        self.span_class: type | None = None
        # method name -> (the class's own function or None when inherited, ours)
        self.originals: dict[str, tuple[Any, Any]] = {}
        self.lock = threading.Lock()


_ACTIVE = _Active()


def instrument(
    purpose: str = "service.operations.logs", *, trusted_tracers: Iterable[str] | None = None
) -> None:
    """Judge every value set on a span of the OpenTelemetry SDK for ``purpose``, from now on.

    ``trusted_tracers`` names tracers (``trace.get_tracer(name)``'s name, or
    a prefix ending in ``*``) whose spans skip the zone check; their labelled
    values, recorded exceptions and error descriptions are judged still.
    None (the default) trusts no tracer.

    Replaces methods of ``opentelemetry.sdk.trace.Span`` with plain
    functions (a wrapt wrapper's binding costs about as much as
    ``set_attribute`` itself). Calling it again sets the purpose and the
    trusted tracers anew (a call without ``trusted_tracers`` trusts none);
    the span class is patched once. Raises ImportError naming the extra when
    the SDK is missing, TypeError or ValueError for a ``trusted_tracers``
    entry that is not a tracer name, leaving the previous setting in force.

    >>> instrument(trusted_tracers=["opentelemetry.instrumentation.*"])
    >>> is_instrumented()
    True
    >>> uninstrument()
    """
    from . import require

    sdk: Any = require("opentelemetry.sdk.trace", "otel")
    key = require_purpose_key(purpose)
    tracers = _trusted(trusted_tracers)
    with _ACTIVE.lock:
        _SETTINGS.purpose = key
        _SETTINGS.tracers = tracers
        if _ACTIVE.span_class is None:
            span_class: type = sdk.Span
            for name, hook, make in _HOOKS:
                own = vars(span_class).get(name)
                ours = make(getattr(span_class, name), hook)
                _ACTIVE.originals[name] = (own, ours)
                setattr(span_class, name, ours)
            _ACTIVE.span_class = span_class
        _ACTIVE.on = True


def uninstrument() -> None:
    """Restore the SDK's ``Span`` as it was, trusting no tracer. Safe to call when not instrumented."""
    with _ACTIVE.lock:
        _ACTIVE.on = False
        _SETTINGS.tracers = _Tracers()
        span_class = _ACTIVE.span_class
        if span_class is not None:
            for name, (own, ours) in _ACTIVE.originals.items():
                if vars(span_class).get(name) is not ours:
                    continue  # patched again over ours: left to its owner, ours passes through
                if own is None:
                    delattr(span_class, name)  # it was inherited: let the base class answer again
                else:
                    setattr(span_class, name, own)
            _ACTIVE.originals.clear()
            _ACTIVE.span_class = None


def is_instrumented() -> bool:
    """Whether :func:`instrument` is in force."""
    return _ACTIVE.on
