"""The one owner of purposeguard's process state.

Every flag, counter, registry and cache the library keeps for the whole
process hangs off :data:`STATE`, and :func:`reset` puts all of it back as a
fresh import has it (``pg.testing.reset()`` calls it). Modules on the hot
path bind the containers to local names for speed; that is why a reset
clears them in place and never swaps in new ones: generated wrappers hold
the very sets and counters they were built with.

Sinks above the runtime (telemetry, the audit log) register what resetting
them means with :func:`on_reset`; this module imports none of them.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "STATE",
    "TYPE_CACHE_LIMIT",
    "Counter",
    "Counters",
    "Flags",
    "Handlers",
    "on_reset",
    "remember",
    "reset",
    "trim_types",
]

logger = logging.getLogger("purposeguard")

Handler = Callable[[Any], None]


# How many types each type-keyed cache keeps. Programs make classes at run
# time (model factories, named tuples): a cache that kept every type it saw
# would keep them all alive. The caches are filled in the order types are
# met and forget their oldest eighth when full, so together they keep about
# the last few hundred types, whatever passed through before.
TYPE_CACHE_LIMIT = 512


def remember(cache: dict[Any, Any], key: Any, value: Any, limit: int = TYPE_CACHE_LIMIT) -> Any:
    """Store ``value`` under ``key`` in ``cache`` (a plain dict, so lookups
    stay the dict's own), forgetting the oldest eighth first when ``cache``
    holds ``limit`` keys. Partial and local: it drops memory, nothing else."""
    if len(cache) >= limit and key not in cache:
        for old in list(itertools.islice(cache, max(1, limit // 8))):
            cache.pop(old, None)
    cache[key] = value
    return value


def trim_types(found: set[type], keep: frozenset[type] = frozenset(), limit: int = TYPE_CACHE_LIMIT) -> None:
    """Keep at most ``limit`` types in ``found`` besides ``keep``: past it, an
    eighth of the others is forgotten (a set has no order: which eighth is
    arbitrary). ``found`` stays a plain set, so the hot path's ``type(x) in
    found`` costs what it did (a set subclass measured 15 ns slower here)."""
    if len(found) - len(keep) <= limit:
        return
    extra = [t for t in found if t not in keep]
    for t in extra[: max(1, len(extra) // 8)]:
        found.discard(t)


class Counter:
    """A count that threads bump without a lock: ``next(counter.steps)`` is
    one atomic step of an ``itertools.count`` (``n += 1`` could lose an update
    between threads). Reading takes a step too, which :meth:`value` subtracts."""

    __slots__ = ("steps", "_reads", "_zero", "_lock")

    def __init__(self) -> None:
        self.steps = itertools.count()
        self._reads = 0
        self._zero = 0
        self._lock = threading.Lock()

    def _raw(self) -> int:
        # Under the lock: every step so far, bumps and earlier reads alike.
        taken = next(self.steps) - self._reads
        self._reads += 1
        return taken

    def value(self) -> int:
        """How many times the counter was bumped since it was made or reset."""
        with self._lock:
            return self._raw() - self._zero

    def reset(self) -> None:
        with self._lock:
            self._zero = self._raw()


class Flags:
    """Process-wide switches read by the generated wrappers.

    ``zones`` turns on when the first zone opens: until then the hot path
    skips the zone lookup, so code that never uses zones pays nothing for
    them. ``fast`` allows the labelled shortcut (a labelled class already
    known to be allowed for a purpose): only while no zone was ever opened and
    no guard is activated for one context, because then the process-wide
    guard decides everything. ``fast_unzoned`` allows it once zones are in
    use, where no zone is current (the wrapper then looks the zone up), so
    guarded calls outside a zone keep the shortcut.
    """

    __slots__ = ("zones", "fast", "fast_unzoned", "activations", "opened", "closed", "epoch", "lock")

    def __init__(self) -> None:
        self.zones = False
        self.fast = True
        self.fast_unzoned = True
        # Guards activated for one context right now; zones opened and closed
        # so far (counted without a lock: a zone opens per request).
        self.activations = 0
        self.opened = Counter()
        self.closed = Counter()
        # Bumped whenever the shortcut is invalidated: zones remember "allowed
        # for this purpose" only for the epoch they learnt it in.
        self.epoch = 0
        self.lock = threading.Lock()

    def refresh(self) -> None:
        self.fast_unzoned = self.activations == 0
        self.fast = not self.zones and self.fast_unzoned

    def reset(self) -> None:
        # Live activations and open zones are not configuration: forgetting
        # them would let the shortcut skip a check they need. The zones flag
        # goes off only when no zone is open.
        with self.lock:
            self.zones = self.opened.value() > self.closed.value()
            self.epoch += 1
            self.refresh()


class Counters:
    """Checks counted in process; telemetry reports them through observable
    instruments, so the hot path never calls a metrics SDK."""

    __slots__ = ("enabled", "checks", "hits", "lock")

    def __init__(self) -> None:
        self.enabled = False
        self.lock = threading.Lock()
        # (purpose, outcome) -> count; outcome is "allowed", "denied" or "error".
        self.checks: dict[tuple[str, str], int] = {}
        # purpose -> checks allowed through the wrappers' shortcut.
        self.hits: dict[str, Counter] = {}

    def count(self, purpose: str, outcome: str) -> None:
        key = (purpose, outcome)
        # A lost update would make the exported counter go backwards, which
        # a metrics backend reads as a reset.
        with self.lock:
            self.checks[key] = self.checks.get(key, 0) + 1

    def hits_for(self, purpose: str) -> Counter:
        found = self.hits.get(purpose)
        if found is None:
            with self.lock:
                found = self.hits.setdefault(purpose, Counter())
        return found

    def snapshot(self) -> dict[tuple[str, str], int]:
        """Every check so far: counted ones plus the wrappers' shortcut hits."""
        with self.lock:
            out = dict(self.checks)
            hits = list(self.hits.items())
        for purpose, counter in hits:
            taken = counter.value()
            if taken:
                key = (purpose, "allowed")
                out[key] = out.get(key, 0) + taken
        return out

    def reset(self) -> None:
        with self.lock:
            self.enabled = False
            self.checks.clear()
            hits = list(self.hits.values())
        for counter in hits:
            counter.reset()


class Handlers:
    """Process-wide subscribers; they outlive ``configure()`` calls.

    ``scoped`` holds the ids of subscriptions whose owner removes them when
    its scope ends (``pg.testing.capture()``, the pytest plugin, a telemetry
    session): a reset leaves those to their owner.
    """

    __slots__ = ("violations", "records", "failed", "scoped", "lock")

    def __init__(self) -> None:
        self.violations: list[Handler] = []
        self.records: list[Handler] = []
        self.failed: set[int] = set()
        self.scoped: set[int] = set()
        self.lock = threading.Lock()

    def reset(self) -> None:
        with self.lock:
            self.violations[:] = [h for h in self.violations if id(h) in self.scoped]
            self.records[:] = [h for h in self.records if id(h) in self.scoped]
            self.failed.clear()


class Labels:
    """The labels layer's registries and caches (the labels module binds
    these containers to its own names).

    ``taxonomy`` validates label keys (the process-wide policy's); ``classes``
    and the other caches map label sets to labelled classes (tenants live on
    the labelled instances);
    ``no_labels`` holds the types whose instances are known to carry no
    labels (the hot path's one test); ``foreign`` the label readers that
    integrations registered; ``objects``/``object_refs`` are the
    side table of labelled objects, which a reset keeps (labels on live
    values are their data), and so ``side_table_types`` too.
    """

    __slots__ = (
        "taxonomy",
        "default_taxonomy",
        "classes",
        "classes_lock",
        "kinds_no_tenant",
        "str_fast",
        "unions",
        "fields",
        "weakrefable",
        "no_labels",
        "no_labels_default",
        "flat_objects",
        "side_table_types",
        "objects",
        "object_refs",
        "foreign",
        "foreign_found",
    )

    def __init__(self) -> None:
        self.taxonomy: Any = None
        self.default_taxonomy: Any = None
        self.classes: dict[Any, Any] = {}
        self.classes_lock = threading.Lock()
        self.kinds_no_tenant: dict[Any, Any] = {}
        self.str_fast: dict[Any, Any] = {}
        self.unions: dict[Any, Any] = {}
        self.fields: dict[type, Any] = {}
        self.weakrefable: dict[type, bool] = {}
        self.no_labels_default: frozenset[type] = frozenset(
            {type(None), bool, int, float, complex, str, bytes, bytearray, range, type}
        )
        self.no_labels: set[type] = set(self.no_labels_default)
        # Types of plain objects (attributes in a __dict__, nothing else that
        # can hold labels): guarded methods test their self's attribute types.
        self.flat_objects: set[type] = set()
        self.side_table_types: set[type] = set()
        self.objects: dict[int, Any] = {}
        self.object_refs: dict[int, Any] = {}
        # Label readers integrations registered for types this layer does not
        # know (code wiring, kept by a reset), and the lookups through the MRO.
        self.foreign: dict[type, Any] = {}
        self.foreign_found: dict[type, Any] = {}

    def clear_caches(self) -> None:
        """Forget the label-set caches (the taxonomy they were validated against changed)."""
        with self.classes_lock:
            self.classes.clear()
            self.kinds_no_tenant.clear()
            self.str_fast.clear()
            self.unions.clear()

    def reset(self) -> None:
        self.clear_caches()
        self.taxonomy = self.default_taxonomy
        self.fields.clear()
        self.weakrefable.clear()
        self.foreign_found.clear()
        # Types that had an instance labelled in the side table stay out:
        # those labels are still there.
        self.no_labels.clear()
        self.no_labels.update(self.no_labels_default - self.side_table_types)
        self.flat_objects.clear()


class State:
    """Everything purposeguard keeps for the process (see the module docstring)."""

    def __init__(self) -> None:
        self.flags = Flags()
        self.counters = Counters()
        self.handlers = Handlers()
        self.labels = Labels()
        # The hot-path shortcut: purpose -> labelled classes the process-wide
        # guard allows for it without consent (see _shortcut).
        self.fast_allowed: dict[str, set[type]] = {}
        # The process-wide guard (the runtime's), and its lock.
        self.guard: Any = None
        self.guard_lock = threading.Lock()
        # Why the shortcut was last invalidated: for whoever debugs a miss.
        self.invalidated_because = "start"
        # What resetting a sink means, by sink name ("telemetry", "audit").
        self.sinks: dict[str, Callable[[], None]] = {}
        # pg.decide()'s one-category sets, reused instead of built per call
        # (bounded by the runtime; they carry no decision).
        self.single_sets: dict[str, frozenset[str]] = {}
        # The keys that sign and verify purposeguard's baggage members
        # (configure(baggage_keys=...)); None: PURPOSEGUARD_BAGGAGE_KEYS decides.
        self.baggage_keys: tuple[Any, ...] | None = None
        # Baggage problems that are said once per process, not per request.
        self.baggage_said: set[str] = set()
        # Baggage headers verified lately (header, channel, trace) -> what was
        # read, when it was signed, and the keys and taxonomy it was read with:
        # a peer sends the same header for every call within a second.
        self.baggage_seen: dict[Any, tuple[Any, int, Any, Any]] = {}


STATE = State()


def on_reset(sink: str, callback: Callable[[], None]) -> None:
    """Run ``callback`` on every :func:`reset`: how the sink named ``sink``
    (``"telemetry"``, ``"audit"``) detaches itself."""
    STATE.sinks[sink] = callback


def reset(*, keep_telemetry: bool = False) -> None:
    """Put the process state back as a fresh import has it.

    Sinks detach first (so what they queued is written), then subscribers,
    the configured guard, counters, shortcut sets and label caches go; the
    zones flag goes off unless a zone is open. Labels already on values stay:
    they are the values' data, not configuration. ``keep_telemetry`` leaves
    OpenTelemetry instrumentation and the counts it reports (a test module
    that shares one instrumentation across its tests).
    """
    for name, callback in tuple(STATE.sinks.items()):
        if keep_telemetry and name == "telemetry":
            continue
        try:
            callback()
        except Exception:
            logger.exception("purposeguard could not reset its %s sink", name)
    STATE.handlers.reset()
    with STATE.guard_lock:
        STATE.guard = None
    if not keep_telemetry:
        STATE.counters.reset()
    for allowed in tuple(STATE.fast_allowed.values()):
        allowed.clear()
    STATE.labels.reset()
    STATE.single_sets.clear()
    STATE.baggage_keys = None
    STATE.baggage_said.clear()
    STATE.baggage_seen.clear()
    STATE.flags.reset()
    STATE.invalidated_because = "reset"
