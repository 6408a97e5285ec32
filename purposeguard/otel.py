"""OpenTelemetry for purposeguard: violations on traces, counters on dashboards.

>>> from purposeguard import otel
>>> otel.instrument()        # the global tracer and meter providers
>>> otel.uninstrument()

``pg.configure(telemetry=True)`` is the same as :func:`instrument`. Once on:

* every violation becomes a span event ``purposeguard.violation`` on the
  *current* span (no span is ever created); in enforce mode the span also
  records the exception and its status becomes ERROR, in trace mode the
  status is left alone;
* counters ``purposeguard.violations`` (category, purpose, rule, mode, via),
  ``purposeguard.checks`` (purpose, outcome),
  ``purposeguard.violations.by_function`` (code.function, purpose),
  ``purposeguard.declassifications`` (transform, category, purpose) and
  ``purposeguard.disclosures`` (purpose). They are counted in process and
  reported through observable instruments, so the guarded code never calls
  the metrics SDK: a check costs a dictionary update, and the SDK reads the
  totals when its reader collects. Tenants never become metric attributes;
* every violation is logged on the ``purposeguard`` logger at INFO with the
  same attributes in ``extra`` (so the OpenTelemetry logging handler carries
  them to a logs backend). INFO, not WARNING: an application that has not
  configured logging would otherwise print every trace-mode violation to
  stderr through :data:`logging.lastResort`. Turn them on with
  ``logging.getLogger("purposeguard").setLevel(logging.INFO)``.

Attribute and instrument names live in :mod:`purposeguard._otel_attributes`.
Only ``opentelemetry-api`` is needed to import this module (everything is a
no-op until an SDK is installed); ``pip install 'purposeguard[otel]'``
brings the SDK and the Prometheus exporter.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import Status, StatusCode, TracerProvider

from . import _otel_attributes as names
from ._context import REDACTING
from ._errors import PurposeViolation
from ._runtime import COUNTERS, subscribe_scoped
from ._state import on_reset, remember

__all__ = ["LOG_LEVEL", "instrument", "instrumented", "uninstrument"]

logger = logging.getLogger("purposeguard")

#: The level of the per-violation log records (see the module docstring).
LOG_LEVEL = logging.INFO

# Distinct function names counted in ``purposeguard.violations.by_function``
# before the rest are counted as ``_other``: names come from code, but a
# caller passing a computed ``function=`` must not blow up a metrics backend.
MAX_FUNCTIONS = 1000

# Set while a violation's own telemetry is put on the current span: an exit
# that judges what reaches spans (purposeguard.integrations.spans) lets it
# pass, as it names categories and rules, never values.
OWN_TELEMETRY: ContextVar[bool] = ContextVar("purposeguard.otel.own_telemetry", default=False)

_LOG_MESSAGE = "purpose violation: %s may not be used for %s (rule %s, via %s, in %s, %s mode)"
_REPEATS_MESSAGE = (
    "purpose violation repeated: %s for %s occurred %d times in the zone (rule %s, via %s, in %s)"
)


def _text(value: object) -> str:
    # A plain str for OpenTelemetry attributes, whatever subclass arrived
    # (records hold plain keys; the type test keeps that case cheap).
    if type(value) is str:
        return value
    return str.__str__(value) if isinstance(value, str) else str(value)


def _checks_now() -> dict[tuple[str, str], int]:
    # Counted checks plus the wrappers' shortcut hits for allowed labels.
    # Another thread may add a purpose while the snapshot iterates; the
    # second try then sees a settled dictionary.
    try:
        return COUNTERS.snapshot()
    except RuntimeError:
        return COUNTERS.snapshot()


class _Session:
    """One ``instrument()`` call: its providers, and the counts since then."""

    def __init__(self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.lock = threading.Lock()
        self.violations: dict[tuple[str, str, str, str, str], int] = {}
        self.functions: dict[tuple[str, str], int] = {}
        self.declassifications: dict[tuple[str, str, str | None], int] = {}
        self.disclosures: dict[str, int] = {}
        # The check counts are process-wide; report what was counted since now.
        self.checks_base: dict[tuple[str, str], int] = _checks_now()
        self.failed: set[str] = set()
        self.unsubscribe: Callable[[], None] | None = None

    # -- records (called on the guarded code's thread, only on records) ------------------

    def on_record(self, record: Any) -> None:
        kind = getattr(record, "kind", None)
        if kind == "violation" or kind == "repeats":
            token = OWN_TELEMETRY.set(True)
            try:
                if kind == "violation":
                    self._violation(record)
                else:
                    self._repeats(record)
            finally:
                OWN_TELEMETRY.reset(token)
        elif kind == "declassification":
            key = (
                _text(record.transform),
                _text(record.to),
                None if record.purpose is None else _text(record.purpose),
            )
            with self.lock:
                self.declassifications[key] = self.declassifications.get(key, 0) + 1
        elif kind == "disclosure":
            purpose = _text(getattr(record, "purpose", None) or "disclosure.compelled")
            with self.lock:
                self.disclosures[purpose] = self.disclosures.get(purpose, 0) + 1

    def _count(self, record: Any, checks: int) -> dict[str, str | int]:
        """Add ``checks`` to the violation counters for ``record``'s flow;
        the span event's and log record's attributes."""
        category = _text(record.category)
        purpose = _text(record.purpose)
        rule = names.DEFAULT_RULE if record.rule is None else _text(record.rule)
        mode = _text(record.mode)
        via = _text(record.via)
        function = _text(record.function)
        key = (category, purpose, rule, mode, via)
        with self.lock:
            self.violations[key] = self.violations.get(key, 0) + checks
            fkey = (function, purpose)
            if fkey not in self.functions and len(self.functions) >= MAX_FUNCTIONS:
                fkey = (names.OTHER_FUNCTIONS, purpose)
            self.functions[fkey] = self.functions.get(fkey, 0) + checks
        attributes: dict[str, str | int] = {
            names.CATEGORY: category,
            names.PURPOSE: purpose,
            names.RULE: rule,
            names.MODE: mode,
            names.VIA: via,
            names.CODE_FUNCTION: function,
        }
        if record.tenant is not None:
            attributes[names.TENANT] = _text(record.tenant)
        return attributes

    def _repeats(self, record: Any) -> None:
        # The flow's first occurrence was counted and sent as it happened;
        # the counters get the rest, the span the final count.
        count = record.count if type(record.count) is int and record.count > 1 else 1
        attributes = self._count(record, count - 1)
        attributes[names.COUNT] = count
        try:
            span = trace.get_current_span()
            if span.is_recording():
                timestamp = int(record.timestamp * 1e9) if record.timestamp else None
                span.add_event(names.EVENT_REPEATS, attributes, timestamp)
        except Exception:
            self._failure("span")
        try:
            if logger.isEnabledFor(LOG_LEVEL):
                logger.log(
                    LOG_LEVEL,
                    _REPEATS_MESSAGE,
                    attributes[names.CATEGORY],
                    attributes[names.PURPOSE],
                    count,
                    attributes[names.RULE],
                    attributes[names.VIA],
                    attributes[names.CODE_FUNCTION],
                    extra=attributes,
                )
        except Exception:
            self._failure("log")

    def _violation(self, violation: Any) -> None:
        attributes = self._count(violation, 1)
        count = violation.count if type(violation.count) is int else 1
        found = attributes.pop(names.TENANT, None)
        tenant = None if found is None else str(found)
        attributes[names.COUNT] = count
        category, purpose, rule, mode, via, function = (
            str(attributes[names.CATEGORY]),
            str(attributes[names.PURPOSE]),
            str(attributes[names.RULE]),
            str(attributes[names.MODE]),
            str(attributes[names.VIA]),
            str(attributes[names.CODE_FUNCTION]),
        )
        # Without the tenant: that is the part the event cache keys on; the
        # tenant goes last, into each event's own copy.
        event_key = (category, purpose, rule, mode, via, function, count)
        if tenant is not None:
            attributes[names.TENANT] = tenant
        # Each signal on its own: a broken tracing setup must not stop the
        # counting or the log record, and none of it may reach the host.
        try:
            span = trace.get_current_span()
            if span.is_recording():
                timestamp = int(violation.timestamp * 1e9) if violation.timestamp else None
                _add_event(span, event_key, attributes, tenant, timestamp)
                if mode == "enforce":
                    error = PurposeViolation([violation])
                    span.record_exception(error, attributes, timestamp)
                    # A value an exit redacted (a log line, a span attribute)
                    # failed nothing: the request it belongs to goes on.
                    if not REDACTING.get():
                        span.set_status(Status(StatusCode.ERROR, str(error)))
        except Exception:
            self._failure("span")
        try:
            if logger.isEnabledFor(LOG_LEVEL):
                logger.log(
                    LOG_LEVEL, _LOG_MESSAGE, category, purpose, rule, via, function, mode, extra=attributes
                )
        except Exception:
            self._failure("log")

    def _failure(self, what: str) -> None:
        # Logged once per signal: a broken exporter or SDK would otherwise log
        # on every violation, and the log itself could become the outage.
        if what in self.failed:
            return
        self.failed.add(what)
        try:
            logger.exception(
                "purposeguard telemetry could not emit a violation on the %s signal; the guarded "
                "code goes on, counting continues, and further failures of it are not logged",
                what,
            )
        except Exception:  # noqa: S110 - the logging setup itself is what failed
            pass

    # -- observable callbacks (called by the SDK's reader, off the hot path) ------------

    def observe_violations(self) -> Iterable[Observation]:
        with self.lock:
            items = list(self.violations.items())
        for (category, purpose, rule, mode, via), count in items:
            yield Observation(
                count,
                {
                    names.METRIC_CATEGORY: category,
                    names.METRIC_PURPOSE: purpose,
                    names.METRIC_RULE: rule,
                    names.METRIC_MODE: mode,
                    names.METRIC_VIA: via,
                },
            )

    def observe_functions(self) -> Iterable[Observation]:
        with self.lock:
            items = list(self.functions.items())
        for (function, purpose), count in items:
            yield Observation(count, {names.METRIC_FUNCTION: function, names.METRIC_PURPOSE: purpose})

    def observe_checks(self) -> Iterable[Observation]:
        current = _checks_now()
        base = self.checks_base
        for (purpose, outcome), count in current.items():
            count -= base.get((purpose, outcome), 0)
            if count > 0:
                yield Observation(count, {names.METRIC_PURPOSE: purpose, names.METRIC_OUTCOME: outcome})

    def observe_declassifications(self) -> Iterable[Observation]:
        with self.lock:
            items = list(self.declassifications.items())
        for (transform, to, purpose), count in items:
            attributes = {names.METRIC_TRANSFORM: transform, names.METRIC_CATEGORY: to}
            if purpose is not None:
                attributes[names.METRIC_PURPOSE] = purpose
            yield Observation(count, attributes)

    def observe_disclosures(self) -> Iterable[Observation]:
        with self.lock:
            items = list(self.disclosures.items())
        for purpose, count in items:
            yield Observation(count, {names.METRIC_PURPOSE: purpose})


class _State:
    __slots__ = ("session", "lock")

    def __init__(self) -> None:
        self.session: _Session | None = None
        self.lock = threading.Lock()


_STATE = _State()


def _callback(
    meter_provider: object, read: Callable[[_Session], Iterable[Observation]]
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    # The SDK keeps the first callbacks registered for an instrument name on
    # a meter and ignores later ones, so callbacks read the *current* session
    # and report only while it uses the provider they were registered with.
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        session = _STATE.session
        if session is None or session.meter_provider is not meter_provider:
            return []
        return list(read(session))

    return callback


def _register_instruments(meter_provider: MeterProvider) -> None:
    from ._version import __version__

    meter = meter_provider.get_meter(names.METER_NAME, __version__)
    for name, observe, unit, description in (
        (
            names.VIOLATIONS,
            _Session.observe_violations,
            "{violation}",
            "Purpose violations recorded (enforce and trace mode).",
        ),
        (
            names.CHECKS,
            _Session.observe_checks,
            "{check}",
            "Checks of labelled data against a purpose, by outcome.",
        ),
        (
            names.VIOLATIONS_BY_FUNCTION,
            _Session.observe_functions,
            "{violation}",
            "Purpose violations by the function where they were found.",
        ),
        (
            names.DECLASSIFICATIONS,
            _Session.observe_declassifications,
            "{declassification}",
            "Uses of policy transforms that removed labels.",
        ),
        (names.DISCLOSURES, _Session.observe_disclosures, "{disclosure}", "Compelled disclosures made."),
    ):
        meter.create_observable_counter(
            name, [_callback(meter_provider, observe)], unit=unit, description=description
        )


def instrument(
    tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
) -> None:
    """Report violations, checks, declassifications and disclosures through
    OpenTelemetry.

    ``meter_provider`` defaults to the global one. Span events go on whatever
    span is current when the violation happens, whichever provider made it;
    ``tracer_provider`` (default: the global one) is kept for reference and
    never used to start spans. Calling it again with the same providers
    changes nothing; with other providers it replaces the previous setup, and
    counts start from zero for the new ones.

    >>> from opentelemetry.sdk.metrics import MeterProvider
    >>> instrument(meter_provider=MeterProvider())
    >>> uninstrument()
    """
    if tracer_provider is not None and not hasattr(tracer_provider, "get_tracer"):
        raise TypeError("tracer_provider must be an OpenTelemetry TracerProvider")
    if meter_provider is not None and not hasattr(meter_provider, "get_meter"):
        raise TypeError("meter_provider must be an OpenTelemetry MeterProvider")
    if tracer_provider is None and meter_provider is None and not _sdk_installed():
        # The API alone is a no-op: say so once instead of reporting into nothing.
        logger.warning(
            "purposeguard telemetry is on but the OpenTelemetry SDK is not installed, so spans and "
            "metrics go nowhere: pip install 'purposeguard[otel]' and set up providers"
        )
    with _STATE.lock:
        meters = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        tracers = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        current = _STATE.session
        if current is not None and current.meter_provider is meters and current.tracer_provider is tracers:
            # configure(telemetry=True) on every reload must not reset the counters.
            return
        session = _Session(tracers, meters)
        # Before the previous setup stops: providers that refuse the
        # instruments leave it in force.
        _register_instruments(meters)
        _stop()
        session.unsubscribe = subscribe_scoped("records", session.on_record)
        _STATE.session = session
        COUNTERS.enabled = True


def uninstrument() -> None:
    """Stop reporting: no more span events, log records or counting.

    Instruments already registered with a meter provider report nothing
    from now on. Safe to call when not instrumented.
    """
    with _STATE.lock:
        _stop()


# pg.testing.reset() turns telemetry off like a fresh process has it.
on_reset("telemetry", uninstrument)


# Validated event attributes, reused: the SDK's add_event validates every
# attribute again on each call (about 8 µs of a 20 µs budget here), while a
# violation's attributes repeat. Kept without the tenant, which is unbounded
# (a million tenants must not each take an entry, nor make the entries of the
# others fall out): an event without a tenant shares the validated object,
# one with a tenant gets its own copy with the tenant (a plain str the SDK
# would keep as it is) added. Bounded (rules x functions): past the limit the
# oldest eighth is validated again when next met, never all at once.
_FROZEN: dict[tuple[Any, ...], Any] = {}
_FROZEN_LIMIT = 4096

#: The opentelemetry-sdk releases whose span internals the fast path was tried
#: with (``Span._add_event``, ``Span._limits``, ``Event``, ``BoundedAttributes``
#: and its ``_dict``), as (major, minor) bounds, both included. Any other
#: release, any other span class, and any error on the way get the public
#: ``span.add_event``.
FAST_PATH_SDK_VERSIONS = ((1, 24), (1, 45))


def _add_event(
    span: Any,
    key: tuple[str | int, ...],
    attributes: dict[str, str | int],
    tenant: str | None,
    timestamp: int | None,
) -> None:
    """``span.add_event`` for the violation event, without re-validating
    attributes already validated once, on a span of a tested SDK release;
    every other span, what the SDK would have to cut or drop, and any failure
    of the fast path get the public call. ``key`` names ``attributes`` but
    the tenant, which is ``attributes``' last entry when it is not ``None``."""
    sdk = _FAST_PATH.sdk
    if sdk is not None and type(span) in sdk.span_types:
        try:
            limits = span._limits
            maxlen = limits.max_event_attributes
            max_value_len = limits.max_attribute_length
            if (maxlen is None or len(attributes) <= maxlen) and (
                tenant is None or max_value_len is None or len(tenant) <= max_value_len
            ):
                cached = _FROZEN.get((maxlen, max_value_len, key))
                if cached is None:
                    base = {name: value for name, value in attributes.items() if name != names.TENANT}
                    cached = sdk.bounded(maxlen, base, max_value_len=max_value_len, immutable=True)
                    with _FROZEN_LOCK:
                        remember(_FROZEN, (maxlen, max_value_len, key), cached, _FROZEN_LIMIT)
                if tenant is None:
                    frozen = cached  # immutable: shared by every event of this flow
                else:
                    frozen = sdk.bounded(maxlen, None, max_value_len=max_value_len, immutable=True)
                    # What the SDK's own deepcopy does: values already clean, set directly.
                    own = type(frozen._dict)(cached._dict)
                    own[names.TENANT] = tenant
                    frozen._dict = own
                span._add_event(sdk.event(name=names.EVENT_VIOLATION, attributes=frozen, timestamp=timestamp))
                return
        except Exception:
            # The SDK's internals are not what they were when tried: public
            # calls only from now on (said once, at debug: nothing is lost).
            _FAST_PATH.sdk = None
            logger.debug("purposeguard: the OpenTelemetry SDK span's fast path failed; using span.add_event")
    span.add_event(names.EVENT_VIOLATION, attributes, timestamp)


_FROZEN_LOCK = threading.Lock()


class _SdkInternals:
    __slots__ = ("span_types", "event", "bounded")

    def __init__(self, span_types: tuple[type, ...], event: Any, bounded: Any) -> None:
        self.span_types = span_types
        self.event = event
        self.bounded = bounded


class _FastPath:
    __slots__ = ("sdk",)

    def __init__(self) -> None:
        self.sdk: _SdkInternals | None = _sdk_internals()


def _sdk_version() -> tuple[int, int] | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("opentelemetry-sdk")
    except PackageNotFoundError:
        return None
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def _sdk_internals() -> _SdkInternals | None:
    found = _sdk_version()
    low, high = FAST_PATH_SDK_VERSIONS
    if found is None or not low <= found <= high:
        return None
    try:
        from opentelemetry.attributes import BoundedAttributes
        from opentelemetry.sdk.trace import Event, Span, _Span
    except ImportError:
        return None
    # Exactly the SDK's own classes: a subclass may override what the fast path skips.
    return _SdkInternals((Span, _Span), Event, BoundedAttributes)


_FAST_PATH = _FastPath()


def _sdk_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("opentelemetry.sdk") is not None


def instrumented() -> bool:
    """Whether :func:`instrument` is in force."""
    return _STATE.session is not None


def _stop() -> None:
    session = _STATE.session
    if session is None:
        return
    COUNTERS.enabled = False
    if session.unsubscribe is not None:
        session.unsubscribe()
    _STATE.session = None
