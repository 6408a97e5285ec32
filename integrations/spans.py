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
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any

from purposeguard._context import FLAGS, ZONE
from purposeguard._errors import PurposeViolation
from purposeguard._labels import EMPTY, WalkLimit, labels_in_values
from purposeguard._runtime import Guard, check_zone, get_guard, require_purpose_key
from purposeguard.otel import OWN_TELEMETRY

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


class _Settings:
    __slots__ = ("purpose",)

    def __init__(self) -> None:
        self.purpose = "service.operations.logs"


_SETTINGS = _Settings()


def _function(scope: Any) -> str:
    # The tracer's name (code chooses it, like a logger's): never the span's
    # name, which is itself a value that may quote content.
    name = getattr(scope, "name", None)
    return f"opentelemetry.trace.{name}" if isinstance(name, str) and name else "opentelemetry.trace"


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
        check_zone(guard, state, purpose, labels, function)
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


def _text(span: Any, value: Any, function: str) -> Any:
    """A name or description as the span may keep it."""
    if type(value) is str and not _zone_open():
        return value
    _, refusal = _judge(span, (value,), True, function)
    return value if refusal is None else _redacted(refusal)


def _pair(span: Any, key: Any, value: Any, function: str) -> tuple[Any, Any]:
    """An attribute as the span may keep it."""
    plain_key = type(key) is str
    if plain_key:
        t = type(value)
        if t in _NUMBERS or (t is str and not _zone_open()):
            return key, value
    _, refusal = _judge(
        span, (value,) if plain_key else (key, value), _holds_text(value) or not plain_key, function
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


def _attributes(span: Any, attributes: Any, function: str) -> Any:
    """``attributes`` as the span may keep them: the same object when nothing changed."""
    items = getattr(attributes, "items", None)
    if not attributes or items is None:
        return attributes  # none, or not a mapping: the SDK deals with it
    pairs = list(items())
    kept: dict[Any, Any] | None = None
    for index, (key, value) in enumerate(pairs):
        new_key, new_value = _pair(span, key, value, function)
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
    key, value = _pair(span, key, value, _function(_scope(span)))
    return original(span, key, value)


def _bind_pair(key: Any, value: Any) -> tuple[Any, Any]:
    return key, value


def _set_attributes(
    original: Callable[..., Any], span: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if _skip(span):
        return original(span, *args, **kwargs)
    (attributes,) = _bind_attributes(*args, **kwargs)
    return original(span, _attributes(span, attributes, _function(_scope(span))))


def _bind_attributes(attributes: Any) -> tuple[Any]:
    return (attributes,)


def _add_event(original: Callable[..., Any], span: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if _skip(span):
        return original(span, *args, **kwargs)
    name, attributes, timestamp = _bind_event(*args, **kwargs)
    function = _function(_scope(span))
    return original(span, _text(span, name, function), _attributes(span, attributes, function), timestamp)


def _bind_event(name: Any, attributes: Any = None, timestamp: Any = None) -> tuple[Any, Any, Any]:
    return name, attributes, timestamp


def _add_link(original: Callable[..., Any], span: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if _skip(span):
        return original(span, *args, **kwargs)
    context, attributes = _bind_link(*args, **kwargs)
    return original(span, context, _attributes(span, attributes, _function(_scope(span))))


def _bind_link(context: Any, attributes: Any = None) -> tuple[Any, Any]:
    return context, attributes


def _update_name(
    original: Callable[..., Any], span: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if _skip(span):
        return original(span, *args, **kwargs)
    (name,) = _bind_name(*args, **kwargs)
    return original(span, _text(span, name, _function(_scope(span))))


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
    _, refusal = _judge(span, (text,), True, _function(_scope(span)), quoted)
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
    function = _function(_scope(span))
    labels, refusal = _judge(span, (exception,), True, function)
    if labels or refusal is not None:
        try:
            text = str(exception)
        except Exception:
            text = ""
        # A status set next that quotes this exception is judged with its labels.
        span.__dict__[_RECORDED] = (text, labels, refusal)
    attributes = _attributes(span, attributes, function)
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
    function = _function(kwargs.get("instrumentation_scope"))
    kwargs["name"] = _text(span, name, function)
    if attributes:
        kwargs["attributes"] = _attributes(span, attributes, function)
    if events:
        kwargs["events"] = [_event(span, event, function) for event in events]
    if links:
        kwargs["links"] = [_link(span, link, function) for link in links]
    return original(span, **kwargs)


def _event(span: Any, event: Any, function: str) -> Any:
    name = _text(span, event.name, function)
    attributes = _attributes(span, event.attributes, function)
    if name is event.name and attributes is event.attributes:
        return event
    return type(event)(name=name, attributes=attributes, timestamp=event.timestamp)


def _link(span: Any, link: Any, function: str) -> Any:
    attributes = _attributes(span, getattr(link, "attributes", None), function)
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


def instrument(purpose: str = "service.operations.logs") -> None:
    """Judge every value set on a span of the OpenTelemetry SDK for ``purpose``, from now on.

    Replaces methods of ``opentelemetry.sdk.trace.Span`` with plain
    functions (a wrapt wrapper's binding costs about as much as
    ``set_attribute`` itself). Calling it again only changes the purpose.
    Raises ImportError naming the extra when the SDK is missing.

    >>> instrument()
    >>> is_instrumented()
    True
    >>> uninstrument()
    """
    from . import require

    sdk: Any = require("opentelemetry.sdk.trace", "otel")
    key = require_purpose_key(purpose)
    with _ACTIVE.lock:
        _SETTINGS.purpose = key
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
    """Restore the SDK's ``Span`` as it was. Safe to call when not instrumented."""
    with _ACTIVE.lock:
        _ACTIVE.on = False
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
