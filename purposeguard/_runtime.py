"""The runtime: the active guard, checks, violation dispatch and modes.

The decorator and zone live in their own modules; both call into the guard
here only when something labelled is in play, so the allowed path without
labels never reaches this module.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import time
import weakref
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from pathlib import Path
from typing import Any, NamedTuple

from ._context import ACTIVE_GUARD, FLAGS, MIXED_TENANT, PROCEDURE, PURPOSE, ZONE
from ._errors import PolicyError, PurposeGuardError, PurposeViolation, SinkFailure, UnknownKeyError
from ._labels import WalkLimit, labels_in_values, require_tenant, set_taxonomy, tenant_of_values
from ._policy import MODES, STRICTNESS, ConsentLookup, Decision, Policy, effective_mode, environment_mode
from ._records import Record, Repeats, Violation
from ._shortcut import invalidate
from ._state import STATE, remember
from ._state import reset as reset_state

__all__ = [
    "Denial",
    "Guard",
    "install",
    "current_purpose",
    "current_tenant",
    "decide",
    "explain",
    "check",
    "get_guard",
    "on_violation",
    "on_record",
    "reset",
    "subscribe_scoped",
]

logger = logging.getLogger("purposeguard")

INTERNAL_ERROR_RULE = "purposeguard.internal-error"
Handler = Callable[[Any], None]


# Checks counted in process (telemetry reads them) and subscribers: both
# owned by the process state.
COUNTERS = STATE.counters
HANDLERS = STATE.handlers


# Records that no mode may lose: the action they record must not happen without them.
MUST_KEEP_KINDS = frozenset({"consent", "disclosure"})


def _subscribe(bucket: list[Handler], callback: Handler, *, scoped: bool = False) -> Callable[[], None]:
    if not callable(callback):
        raise TypeError("the callback must be callable")
    with HANDLERS.lock:
        bucket.append(callback)
        if scoped:
            HANDLERS.scoped.add(id(callback))

    def unsubscribe() -> None:
        with HANDLERS.lock:
            try:
                bucket.remove(callback)
            except ValueError:
                pass
            if scoped and callback not in bucket:
                HANDLERS.scoped.discard(id(callback))
            if callback not in HANDLERS.violations and callback not in HANDLERS.records:
                # Its id may be reused by a new handler, whose failures must be said.
                HANDLERS.failed.discard(id(callback))

    return unsubscribe


def subscribe_scoped(kind: str, callback: Handler) -> Callable[[], None]:
    """Like :func:`on_violation` (``kind="violations"``) or :func:`on_record`
    (``"records"``), for a subscriber whose owner unsubscribes it when its
    scope ends (a capture block, a telemetry session): ``pg.testing.reset()``
    leaves it to that owner."""
    bucket = HANDLERS.violations if kind == "violations" else HANDLERS.records
    return _subscribe(bucket, callback, scoped=True)


def on_violation(callback: Callable[[Violation], None]) -> Callable[[], None]:
    """Call ``callback(violation)`` for every violation recorded (enforce or trace).

    Returns a function that unsubscribes it. A callback that raises is logged
    once and never breaks the guarded code.
    """
    return _subscribe(HANDLERS.violations, callback)


def on_record(callback: Callable[[Record], None]) -> Callable[[], None]:
    """Call ``callback(record)`` for every record: violations, declassifications,
    consent changes and disclosures. Sinks (telemetry, audit) subscribe here."""
    return _subscribe(HANDLERS.records, callback)


def _check_mode(value: str | None, name: str) -> str | None:
    if value is not None and value not in MODES:
        raise PolicyError(f"unknown {name} {value!r} (expected enforce, trace or off)", field=name)
    return value


class Denial(NamedTuple):
    """One denied category at one checkpoint, as :meth:`Guard.violate` records it.

    ``rule`` is the id of what decided (a rule, a transform, the transport
    requirement); ``mode`` the mode it runs in (None: the guard's);
    ``remediation`` and ``fix`` what to do about it (None: the policy's
    advice for the category and purpose).
    """

    category: str
    rule: str | None
    mode: str | None = None
    remediation: str | None = None
    fix: str = "block"


def _procedure_denials(decision: Decision, labels: frozenset[str]) -> list[Denial]:
    """An allow with obligations met outside their procedure: each category
    refused under the rule that carries them."""
    advice = (
        f"{decision.purpose} allows this only with its obligations met "
        f"({', '.join(decision.obligations)}): release the fields through "
        "pg.compelled_disclosure(...).release()"
    )
    return [Denial(category, decision.rule, None, advice) for category in sorted(labels)]


class Guard:
    """A policy, the modes it runs in, and where its records go.

    ``pg.configure()`` builds one and makes it the process's guard. Tests and
    libraries can build their own and activate it for a block::

        guard = Guard(Policy.load("trust-center"), mode="trace")
        with guard.activate():
            ...
    """

    def __init__(
        self,
        policy: Policy,
        *,
        mode: str | None = None,
        context_mode: str | None = None,
        consents: ConsentLookup | None = None,
    ) -> None:
        self._policy = policy
        self.mode_setting = _check_mode(mode, "mode")
        self.context_mode_setting = _check_mode(context_mode, "context_mode")
        self.consents = _check_consents(consents)
        # True only for the guard get_guard() loads before anything is
        # configured: replacing it loosens nothing anyone chose.
        self.implicit = False
        # Guards this one was already said to loosen when activated over
        # them, by id (the weak reference tells a reused id apart).
        self._said_looser: dict[int, weakref.ref[Guard]] = {}
        # Read once, here: an invalid value fails configure(), not a later check.
        self.environment_mode = environment_mode("PURPOSEGUARD_MODE", os.environ)
        self.environment_context_mode = environment_mode("PURPOSEGUARD_CONTEXT_MODE", os.environ)
        self._resolve_modes()
        self.handlers: list[Handler] = []
        self.records: list[Handler] = []
        self._denial_memo: dict[tuple[str, tuple[str, ...], bool], list[Denial]] = {}

    @property
    def policy(self) -> Policy:
        return self._policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        before = (self.mode, self.context_mode)
        self._policy = policy
        self._denial_memo = {}
        self._resolve_modes()
        _say_if_looser(before, self, "reloading the policy")
        # Wrappers' shortcuts were learnt from the old policy.
        invalidate("policy replaced")

    # -- public helpers -------------------------------------------------------

    def decide(self, categories: Iterable[str], purpose: str, *, tenant: str | None = None) -> Decision:
        return self.policy.decide(categories, purpose, tenant=tenant, consents=self.consents)

    def explain(self, category: str, purpose: str, *, tenant: str | None = None) -> str:
        return self.policy.explain(category, purpose, tenant=tenant, consents=self.consents)

    def activate(self) -> _Activation:
        """Make this guard the active one for the current context (a ``with`` block)."""
        return _Activation(self)

    def on_violation(self, callback: Callable[[Violation], None]) -> Callable[[], None]:
        return _subscribe(self.handlers, callback)

    def on_record(self, callback: Callable[[Record], None]) -> Callable[[], None]:
        return _subscribe(self.records, callback)

    def _resolve_modes(self) -> None:
        # The modes of flows no rule's own mode decides (the default rule,
        # transport, engine failures), resolved once per policy.
        self.mode: str = self.mode_for(None)
        self.context_mode: str = self.mode_for(None, context=True)
        self._strictness = (STRICTNESS[self.mode], STRICTNESS[self.context_mode])
        # Engine failures' modes, per (purpose, context): see failure_mode().
        self._failure_modes: dict[tuple[str, bool], str] = {}
        self._say_overridden()

    def _say_overridden(self) -> None:
        """An operator's environment variable that the policy's own setting
        outranks does nothing: said once per guard and policy, not silently.
        Not for the guard loaded before anything is configured (an
        integration instrumented first): the policy it names is rarely the
        one the application then configures, where it is said."""
        if _BUILDING_IMPLICIT[0]:
            return
        policy = self._policy
        for variable, from_environment, from_policy, setting in (
            ("PURPOSEGUARD_MODE", self.environment_mode, policy.mode, self.mode_setting),
            (
                "PURPOSEGUARD_CONTEXT_MODE",
                self.environment_context_mode,
                policy.context_mode,
                self.context_mode_setting,
            ),
        ):
            if (
                setting is None
                and from_environment is not None
                and from_policy not in (None, from_environment)
            ):
                logger.warning(
                    "purposeguard: %s=%s has no effect: the policy %r sets %s = %r, which comes first; "
                    "pass configure(%s=...) to decide it, or drop it from the policy",
                    variable,
                    from_environment,
                    policy.name,
                    "mode" if variable == "PURPOSEGUARD_MODE" else "context_mode",
                    from_policy,
                    "mode" if variable == "PURPOSEGUARD_MODE" else "context_mode",
                )

    def mode_for(self, rule_mode: str | None, *, context: bool = False) -> str:
        """The mode of a flow decided by a rule whose own mode (``context_mode``
        for zone-only flows) is ``rule_mode``."""
        if context:
            return effective_mode(
                rule_mode,
                self.context_mode_setting,
                self._policy.context_mode,
                self.environment_context_mode,
                fallback="trace",
                also_capped_by=self.mode_setting,
            )
        return effective_mode(rule_mode, self.mode_setting, self._policy.mode, self.environment_mode)

    def failure_mode(self, purpose: object, *, context: bool = False) -> str:
        """The mode of an engine failure while checking for ``purpose``.

        The failure leaves unknown which rule would have decided, so it takes
        the strictest mode of any deny rule that could (one naming ``purpose``
        or an ancestor), and never less than the guard's own: a rule that
        says enforce in a policy rolled out in trace still fails closed.
        Allow rules are left out, as their mode never applies to anything.
        Memoised per purpose; a purpose the taxonomy lacks has no rule, so
        the guard's mode.
        """
        policy = self._policy
        if not isinstance(purpose, str) or purpose not in policy.taxonomy.purposes:
            return self.context_mode if context else self.mode
        # An exact str: the memo never holds a caller's str subclass.
        key = (str.__str__(purpose), context)
        found = self._failure_modes.get(key)
        if found is None:
            chain = frozenset(policy.taxonomy.purpose_ancestors(key[0]))
            found = self.mode_for(None, context=context)
            for rule in policy.rules:
                if rule.effect != "deny" or chain.isdisjoint(rule.purposes):
                    continue
                mode = self.mode_for(rule.context_mode if context else rule.mode, context=context)
                if STRICTNESS[mode] > STRICTNESS[found]:
                    found = mode
            # Bounded by the taxonomy: two entries per purpose key at most.
            self._failure_modes[key] = found
        return found

    def reload(self, path_or_pack: str | Path | None = None) -> Policy:
        """Load the policy again (or another one); on any error keep the old one."""
        source = path_or_pack
        if source is None:
            current = self.policy.source or "pack:trust-center"
            source = current[5:] if current.startswith("pack:") else current
        policy = Policy.load(source)
        self.policy = policy
        if STATE.guard is self:
            set_taxonomy(policy.taxonomy)
        return policy

    # -- checking ---------------------------------------------------------------

    def allowed_without_consent(self, labels: frozenset[str], purpose: str, *, count: bool = True) -> bool:
        """True when the memoised decision for ``labels`` allows ``purpose``.

        The hot path's shortcut: an allowed base decision needs no tenant and
        no consent lookup. Anything else (unseen set, denial) returns False and
        goes through :meth:`check_labels`.
        """
        memo = self.policy._decisions.get(purpose)
        if memo is None:
            return False
        decision = memo.get(labels)
        if decision is None or not decision.allowed:
            return False
        if count and COUNTERS.enabled:  # count=False: a re-ask after check_labels counted it
            COUNTERS.count(purpose, "allowed")
        return True

    def check_labels(
        self,
        labels: frozenset[str],
        purpose: str,
        *,
        via: str,
        function: str | Callable[[], str],
        tenant: str | None = None,
        context: bool = False,
    ) -> Decision:
        """Decide ``labels`` for ``purpose`` and act on a denial per mode.

        Raises :class:`PurposeViolation` in enforce mode; fails closed when the
        engine itself fails.
        """
        try:
            decision = self.policy.decide(labels, purpose, tenant=tenant, consents=self.consents)
            if COUNTERS.enabled:
                COUNTERS.count(purpose, "allowed" if decision.allowed else "denied")
            if decision.allowed:
                if decision.obligations and via != "source" and PROCEDURE.get() is None:
                    # Allowed only through the procedure that meets the
                    # rule's obligations (pg.compelled_disclosure): naming
                    # the purpose is not following it. Reading the data
                    # (at its source) to prepare the procedure is no use
                    # of it yet.
                    self.violate(
                        decision.purpose,
                        _procedure_denials(decision, labels),
                        via="obligation",
                        function=function,
                        tenant=tenant,
                        context=context,
                    )
                return decision
            self.violate(
                decision.purpose,
                self._denials(decision, context),
                via=via,
                function=function,
                tenant=tenant,
                context=context,
            )
            return decision
        except PurposeViolation:
            raise
        except Exception as error:
            if COUNTERS.enabled:
                COUNTERS.count(str(purpose), "error")
            return self._internal_error(error, labels, purpose, via, function, tenant, context)

    def violate(
        self,
        purpose: str,
        denials: Iterable[Denial],
        *,
        via: str,
        function: str | Callable[[], str],
        tenant: str | None = None,
        context: bool = False,
    ) -> list[Violation]:
        """Record a violation for each of ``denials`` and act per mode: the
        one path every violation takes (arguments, returns, zones,
        transforms, egress, transport, logging, obligations).

        A denial's mode is its rule's (``None``: this guard's ``mode``, or
        ``context_mode`` for a flow seen only through the zone); a denial
        without remediation gets the policy's advice for its category and
        purpose. ``off`` records nothing. Every record goes to the
        subscribers; if any is in enforce mode, :class:`PurposeViolation`
        is raised (chained to a sink's failure to keep a record, if any, and
        to nothing else): a lost record never turns a violation into another
        error.
        Returns what was recorded.
        """
        name: str | None = None
        now = time.time()
        recorded: list[Violation] = []
        enforce = False
        for category, rule, rule_mode, remediation, fix in denials:
            mode = rule_mode or self.mode_for(None, context=context)
            if mode == "off":
                continue
            if remediation is None:
                advice = self.policy.remediation(category, purpose)
                remediation, fix = advice.text, advice.kind
            if via == "source" or tenant == MIXED_TENANT:
                remediation = _in_context(remediation, fix, category, purpose, via, tenant)
            if name is None:
                name = printable_name(function() if callable(function) else function)
            recorded.append(
                Violation(category, purpose, rule, via, name, tenant, mode, now, remediation, fix)
            )
            enforce = enforce or mode == "enforce"
        if not recorded:
            return recorded
        lost: SinkFailure | None = None
        for violation in recorded if enforce else _first_in_zone(recorded):
            try:
                self.dispatch(violation)
            except SinkFailure as failure:
                lost = failure
        if enforce:
            # Still a violation to the caller (a 403 to a web client), whatever
            # the sink did; the sink's failure rides along as the cause.
            raise PurposeViolation(recorded) from lost
        return recorded

    def _denials(self, decision: Decision, context: bool) -> list[Denial]:
        """What each denied category of ``decision`` records, memoised: the
        violation path then only builds the records."""
        key = (decision.purpose, decision.denied, context)
        found = self._denial_memo.get(key)
        if found is None:
            policy = self.policy
            found = []
            for category in decision.denied:
                _, rule, _ = policy.cell(category, decision.purpose)
                rule_mode = (rule.context_mode if context else rule.mode) if rule else None
                mode = self.mode_for(rule_mode, context=context)
                if mode == "off":
                    continue
                remediation = policy.remediation(category, decision.purpose)
                found.append(
                    Denial(category, rule.id if rule else None, mode, remediation.text, remediation.kind)
                )
            remember(self._denial_memo, key, found, 4096)
        return found

    def _internal_error(
        self,
        error: Exception,
        labels: frozenset[str],
        purpose: str,
        via: str,
        function: str | Callable[[], str],
        tenant: str | None,
        context: bool,
        *,
        where: str | None = None,
    ) -> Decision:
        """The engine failed while checking: enforce mode denies (fail
        closed), trace mode records the failure and the call proceeds; the
        mode is the strictest any rule for ``purpose`` carries
        (:meth:`failure_mode`), not only the guard's.

        ``where`` is set when reading the labels failed rather than the
        policy: which value, and where inside it (type and attribute names
        only, see ``_walk_diagnosis``)."""
        try:
            mode = self.failure_mode(purpose, context=context)
        except Exception:  # pragma: no cover - the failure path itself must not fail
            mode = self.context_mode if context else self.mode
        failed = type(error).__name__
        if isinstance(error, WalkLimit):
            # Not a fault of the policy: the value is too big or too deep to
            # look through. Labelling it would not help (the walk looks
            # inside a labelled object too).
            smaller = {
                "argument": "pass the function only what it needs",
                "return": "return or yield only what is needed",
            }.get(via, "hand on only what is needed")
            reason = (
                f"the label walk gave up on {where or 'a value nested too deep or too large to look through'}; "
                f"{smaller}, not the whole object that holds it"
            )
        elif where is not None:
            # The application's code raised while its labels were read (a
            # property, an __iter__); ``where`` names the error's type, never
            # its message, which may quote the value.
            reason = (
                f"reading the labels of {where} failed; fix what raised, "
                "or pass the function only what it needs"
            )
        else:
            reason = f"the policy engine failed ({failed}); fix the policy or the labels"
        logger.error(
            "purposeguard could not check %s for %s (%s): %s; %s",
            ", ".join(sorted(labels)) or "a value",
            purpose,
            failed,
            reason,
            "denying (enforce mode)" if mode == "enforce" else f"proceeding ({mode} mode)",
        )
        categories = sorted(str(c) for c in labels) or ["unknown"]
        denial = Denial(categories[0], INTERNAL_ERROR_RULE, mode, reason, "block")
        # Not chained to ``error``, not even as the exception being handled
        # (``__context__``): its message may quote what was being checked (a
        # property that fails on the value it parses), and a violation's
        # traceback ends up in logs and error trackers. Its type is named above.
        try:
            self.violate(str(purpose), (denial,), via=via, function=function, tenant=tenant, context=context)
        except PurposeViolation as refusal:
            if refusal.__context__ is error:
                refusal.__context__ = None
            raise
        return Decision(False, categories[0], str(purpose), INTERNAL_ERROR_RULE, denied=tuple(categories))

    def dispatch(self, record: Record) -> None:
        """Hand a record to every subscriber; a failing subscriber never breaks the caller."""
        is_violation = isinstance(record, Violation)
        must_keep: SinkFailure | None = None
        for bucket in ((HANDLERS.violations, self.handlers) if is_violation else ()) + (
            HANDLERS.records,
            self.records,
        ):
            for handler in tuple(bucket):
                try:
                    handler(record)
                except SinkFailure as failure:
                    logger.error("purposeguard could not keep a record: %s", failure)
                    # Consent changes and disclosures are obligations in
                    # themselves: losing their record stops them in any mode.
                    if record.kind in MUST_KEEP_KINDS or getattr(record, "mode", self.mode) == "enforce":
                        must_keep = failure
                except Exception:
                    key = id(handler)
                    if key not in HANDLERS.failed:
                        HANDLERS.failed.add(key)
                        logger.exception(
                            "a purposeguard handler failed; it stays subscribed and "
                            "further failures of it are not logged"
                        )
        if must_keep is not None:
            # Fail closed: a record that enforce mode must keep was lost.
            raise must_keep


# Distinct flows a zone aggregates; past this, each further flow is recorded
# as it happens, so a zone that sees ever new flows holds no growing table.
ZONE_FLOWS_LIMIT = 10_000


def _first_in_zone(recorded: list[Violation]) -> list[Violation]:
    """Within a zone, one record per flow (rule, purpose, category, via,
    function; tenant and mode too): the first occurrence is dispatched at
    once, later ones only raise its ``count``; :func:`report_repeats` sends
    the final counts when the zone closes. Enforce mode is never aggregated:
    each refusal is recorded as it happens."""
    state = ZONE.get() if FLAGS.zones else None
    if state is None:
        return recorded
    fresh: list[Violation] = []
    with state._lock:
        flows = state.flows
        if flows is None:
            flows = state.flows = {}
        for violation in recorded:
            key = (
                violation.rule,
                violation.purpose,
                violation.category,
                violation.via,
                violation.function,
                violation.tenant,
                violation.mode,
            )
            first = flows.get(key)
            if first is None:
                if len(flows) < ZONE_FLOWS_LIMIT:
                    flows[key] = violation
                fresh.append(violation)
            else:
                first.count += 1
    return fresh


def report_repeats(guard: Guard, state: Any) -> None:
    """Send a :class:`Repeats` record for every flow of a closing zone that
    occurred more than once."""
    with state._lock:
        repeated = [v for v in (state.flows or {}).values() if v.count > 1]
        state.flows = None
    now = time.time()
    for violation in repeated:
        record = Repeats(
            violation.category,
            violation.purpose,
            violation.rule,
            violation.via,
            violation.function,
            violation.tenant,
            violation.mode,
            violation.count,
            now,
        )
        try:
            guard.dispatch(record)
        except SinkFailure:
            pass  # logged by dispatch; the violation itself was kept at its first occurrence


def _say_if_looser(before: tuple[str, str], guard: Guard, how: str) -> None:
    """Log a warning when ``guard``'s modes are looser than ``before`` (the
    modes of what it replaces): a second configure() from a library or a
    setup script must not switch enforcement off without a word, and ``off``
    records nothing else. Names modes only, never values."""
    changes = [
        f"{name} {old} -> {new}"
        for name, old, new in (
            ("mode", before[0], guard.mode),
            ("context_mode", before[1], guard.context_mode),
        )
        if STRICTNESS[new] < STRICTNESS[old]
    ]
    if not changes:
        return
    off = any(change.endswith("-> off") for change in changes)
    logger.warning(
        "purposeguard: %s loosens enforcement: %s; what was refused until now %s",
        how,
        ", ".join(changes),
        "passes unrecorded" if off else "is only traced",
    )


def _say_looser_once(guard: Guard, previous: Guard) -> None:
    """:func:`_say_if_looser` for an activation, once per pair of guards: a
    guard activated per request would otherwise say it on every request."""
    new, old = guard._strictness, previous._strictness
    if previous.implicit or not (new[0] < old[0] or new[1] < old[1]):
        return
    said = guard._said_looser
    known = said.get(id(previous))
    if known is not None and known() is previous:
        return
    if len(said) >= 64:  # guards come and go (tests, reloads): forget the old ones
        said.clear()
    said[id(previous)] = weakref.ref(previous)
    _say_if_looser((previous.mode, previous.context_mode), guard, "Guard.activate()")


_lock_flags = FLAGS.lock.acquire
_unlock_flags = FLAGS.lock.release


class _Activation:
    __slots__ = ("guard", "token")

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.token: Any = None

    def __enter__(self) -> Guard:
        guard = self.guard
        previous = _ACTIVE.get() or STATE.guard
        # Guards in the same modes (the usual case) cost one comparison.
        if previous is not None and previous._strictness != guard._strictness:
            _say_looser_once(guard, previous)
        # Under the flags' lock: `activations += 1` is a read and a write, and
        # a lost update between threads would let the shortcut decide while a
        # guard is activated. The hot path only reads the flags. (Bound
        # acquire/release: a `with` block costs twice as much here.)
        _lock_flags()
        try:
            FLAGS.activations += 1
            FLAGS.refresh()
        finally:
            _unlock_flags()
        self.token = _ACTIVE.set(guard)
        return guard

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.reset(self.token)
        _lock_flags()
        try:
            FLAGS.activations -= 1
            FLAGS.refresh()
        finally:
            _unlock_flags()


# A guard activated for one context (tests, embedded use) wins over the global one.
_ACTIVE: ContextVar[Guard | None] = ACTIVE_GUARD


def get_guard() -> Guard:
    """The guard in force here: an activated one, else the configured one,
    else the policy named by ``PURPOSEGUARD_POLICY`` (the built-in
    ``trust-center`` pack when unset) with default modes."""
    active = _ACTIVE.get()
    if active is not None:
        return active
    guard: Guard | None = STATE.guard
    if guard is None:
        with STATE.guard_lock:
            guard = STATE.guard
            if guard is None:
                # PURPOSEGUARD_POLICY lets modules decorated at import time use a
                # policy's own keys before configure() runs.
                _BUILDING_IMPLICIT[0] = True
                try:
                    guard = Guard(Policy.load(os.environ.get("PURPOSEGUARD_POLICY") or "trust-center"))
                finally:
                    _BUILDING_IMPLICIT[0] = False
                guard.implicit = True
                STATE.guard = guard
                set_taxonomy(guard.policy.taxonomy)
    return guard


# Set while get_guard() builds the guard used before anything is configured
# (under the state's guard lock).
_BUILDING_IMPLICIT = [False]


def install(guard: Guard) -> Guard:
    """Make ``guard`` the process's guard. Consents carry over from the
    previous one unless ``guard`` has its own; wrappers' shortcuts and label
    caches learnt under the old policy are dropped."""
    with STATE.guard_lock:
        previous = STATE.guard
        if previous is not None and guard.consents is None:
            guard.consents = previous.consents
        if previous is not None and previous is not guard and not previous.implicit:
            _say_if_looser((previous.mode, previous.context_mode), guard, "configure()")
        STATE.guard = guard
        invalidate("guard configured")
        set_taxonomy(guard.policy.taxonomy)
    return guard


def reset(*, keep_telemetry: bool = False) -> None:
    """Put every piece of process state back as a fresh import has it, then
    load the default guard (``pg.testing.reset()``; see :mod:`._state`)."""
    reset_state(keep_telemetry=keep_telemetry)
    get_guard()


def current_purpose() -> str | None:
    """The purpose the running code declared, innermost first; None outside any."""
    return PURPOSE.get()


def current_tenant() -> str | None:
    """The tenant of the current zone, if any."""
    state = ZONE.get() if FLAGS.zones else None
    return state.tenant if state is not None else None


def decide(categories: Iterable[str] | str, purpose: str, *, tenant: str | None = None) -> Decision:
    """Decide categories for a purpose under the active policy; pure, no side effects.

    >>> decide(["customer_data.content"], "service.communications").allowed
    False
    """
    guard = _active() or STATE.guard or get_guard()
    # The memoised decision read directly: the public call then costs about
    # what the wrappers' own lookup does (the guard's methods add nothing
    # when no tenant's consent can change the answer).
    given: Any = categories  # dispatched on its exact type below
    kind = type(given)
    key: frozenset[str]
    if kind is frozenset:
        key = given
    elif kind is str:
        key = _SINGLE_SETS.get(given) or _single_set(given)
    elif (kind is list or kind is tuple) and len(given) == 1:
        only = given[0]
        key = _SINGLE_SETS.get(only) or _single_set(only)
    else:
        key = frozenset(given)
    try:
        decision = guard._policy._decisions[purpose][key]
    except (KeyError, TypeError):
        pass
    else:
        if tenant is None:
            return decision
        # A tenant is a bounded printable string wherever it is given.
        require_tenant(tenant)
        if decision.allowed:
            return decision
        return guard.decide(key, purpose, tenant=tenant)
    if tenant is not None:
        require_tenant(tenant)
    return guard.decide(key, purpose, tenant=tenant)


_SINGLE_SETS = STATE.single_sets
_active = _ACTIVE.get
_SINGLE_SETS_LIMIT = 4096


def _single_set(category: str) -> frozenset[str]:
    # One category's set, reused rather than built per call; bounded, the
    # oldest entry goes first (the sets carry no decision, so nothing else
    # is invalidated).
    found = _SINGLE_SETS.get(category)
    if found is None:
        found = frozenset((category,))
        if type(category) is str and len(category) <= 256:
            if len(_SINGLE_SETS) >= _SINGLE_SETS_LIMIT:
                del _SINGLE_SETS[next(iter(_SINGLE_SETS))]  # the oldest, only
            _SINGLE_SETS[category] = found
    return found


def explain(category: str, purpose: str, *, tenant: str | None = None) -> str:
    """Which rule decides ``category`` for ``purpose``, and why."""
    if tenant is not None:
        require_tenant(tenant)
    return get_guard().explain(category, purpose, tenant=tenant)


def caller_name(depth: int) -> str:
    try:
        frame = sys._getframe(depth + 1)
    except ValueError:  # pragma: no cover - no such frame
        return "<unknown>"
    return frame_name(frame)


def _check_consents(consents: Any) -> Any:
    """A consent lookup answers ``has_consent(tenant, purpose, category)``
    with a bool, at once: anything else is refused here rather than met at
    a decision (a coroutine would read as a grant)."""
    if consents is None:
        return None
    has_consent = getattr(consents, "has_consent", None)
    if not callable(has_consent):
        raise TypeError(
            f"consents must have a has_consent(tenant, purpose, category) method; got {type(consents).__name__}"
        )
    if inspect.iscoroutinefunction(has_consent):
        raise TypeError("consents.has_consent must answer at once (a bool), not be a coroutine function")
    return consents


def printable_name(name: str) -> str:
    """A function's name as records, logs and exports show it: a name given
    by hostile code (a logger or tracer name, a ``__qualname__`` set at run
    time) carries no line breaks or escapes there, and is bounded."""
    if not name.isprintable():
        name = name.encode("unicode_escape").decode("ascii")
    return name if len(name) <= 300 else name[:297] + "..."


def frame_name(frame: Any) -> str:
    code = frame.f_code
    module = frame.f_globals.get("__name__", "?")
    return f"{module}.{getattr(code, 'co_qualname', code.co_name)}"


def _in_context(text: str, fix: str | None, category: str, purpose: str, via: str, tenant: str | None) -> str:
    """The policy's advice for ``category`` and ``purpose``, said for how the
    flow was met: a read is refused before any transform sees the value, and
    data of several tenants is no one tenant's to consent for."""
    if via == "source":
        text = (
            f"{category} was read while {purpose} was current, and reading is a use: load only "
            f"what {purpose} may read (a narrower select, SQLAlchemy load_only()/defer(), Django "
            f"only()/defer()), or read it under a purpose that may; policy: {text}"
        )
    if fix == "consent" and tenant == MIXED_TENANT:
        text += (
            "; this data is of several tenants (or of rows that do not name their tenant), which "
            "no one tenant's consent covers: select the tenant column, or work one tenant at a time"
        )
    return text


def check(value: Any, purpose: str | None = None, *, via: str = "argument") -> Decision:
    """An explicit checkpoint: may ``value`` be used for ``purpose`` (default:
    the current purpose)? Raises or records per mode, and returns the decision.

    >>> check("plain text", "advertising").allowed
    True
    """
    guard = get_guard()
    if purpose is None:
        purpose = PURPOSE.get()
        if purpose is None:
            raise PurposeGuardError(
                "check() outside any purpose: pass purpose= or call it inside @purpose/with purpose"
            )
    guard.policy.taxonomy.require_purpose(purpose)
    caller = sys._getframe(1)
    try:
        labels = labels_in_values((value,), purpose)
    except WalkLimit as error:  # content beyond the walk's bound: fail closed
        return guard._internal_error(
            error, error.labels, purpose, via, lambda: frame_name(caller), error.tenant, False
        )
    except Exception as error:  # reading labels ran user code that failed: fail closed
        return guard._internal_error(
            error, frozenset(), purpose, via, lambda: frame_name(caller), None, False
        )
    state = ZONE.get() if FLAGS.zones else None
    tenant = tenant_of_values((value,)) or (state.tenant if state is not None else None)
    function = lambda: frame_name(caller)  # noqa: E731 - named only on a violation
    if state is not None:
        state.add(labels, tenant_of_values((value,)) if labels else None)
    if labels:
        decision = guard.check_labels(labels, purpose, via=via, function=function, tenant=tenant)
    else:
        decision = Decision(True, None, purpose, None)
    if state is not None:
        check_zone(guard, state, purpose, labels, function, judged_for=tenant if labels else None)
    return decision


def check_zone(
    guard: Guard,
    state: Any,
    purpose: str,
    already: frozenset[str],
    function: str | Callable[[], str],
    *,
    judged_for: str | None,
) -> None:
    """Check the zone's categories (via=context) but those ``already``
    checked as arguments for ``judged_for``'s data. Those are left out only
    when that tenant's consent could not have allowed them (no tenant) or
    the zone's data is that tenant's too: one tenant's consented argument
    never clears another tenant's data the zone holds."""
    if already and (judged_for is None or judged_for == state.data_tenant()):
        rest = state.categories - already
    else:
        rest = state.categories
    if rest:
        # Every guarded call in a request lands here: a zone already allowed
        # for this purpose costs one memo lookup.
        if guard.allowed_without_consent(rest, purpose):
            return
        # Whose data the zone holds: one tenant's consent never covers
        # another tenant's data read in its zone.
        guard.check_labels(
            rest, purpose, via="context", function=function, tenant=state.data_tenant(), context=True
        )


def require_purpose_key(key: object) -> str:
    if not isinstance(key, str):
        raise UnknownKeyError(key, "purpose")
    return get_guard().policy.taxonomy.require_purpose(key)
