"""The hot path's shortcut, all of it in one place.

Two memories let a guarded call skip the guard: per purpose, the labelled
classes the process-wide guard allowed without consent (their labels live
on the class, so the class decides); and per zone, the category set last
allowed for a purpose. Both are only valid for the policy, guard and
taxonomy they were learnt under: whatever changes one of those calls
:func:`invalidate`, which empties the class sets in place (generated
wrappers hold them) and moves the epoch on (zones compare it).

The shortcut is taken only while no guard is activated for one context
(the process-wide guard then decides everything), see ``Flags``.
"""

from __future__ import annotations

from typing import Any

from ._context import ACTIVE_GUARD
from ._state import STATE, Counter

__all__ = ["allowed_classes", "forget_classes", "hits", "invalidate", "learn", "remember_zone", "zone_allows"]

FLAGS = STATE.flags
COUNTERS = STATE.counters
_ALLOWED = STATE.fast_allowed


def allowed_classes(purpose: str) -> set[type]:
    """The labelled classes known to be allowed for ``purpose`` (a live set)."""
    found = _ALLOWED.get(purpose)
    if found is None:
        found = _ALLOWED.setdefault(purpose, set())
        COUNTERS.hits_for(purpose)
    return found


def hits(purpose: str) -> Counter:
    """Calls allowed for ``purpose`` through the shortcut (counted for telemetry)."""
    return COUNTERS.hits_for(purpose)


def invalidate(reason: str) -> None:
    """Forget everything the shortcut learnt; ``reason`` says which change
    (kept for whoever debugs a miss)."""
    FLAGS.epoch += 1
    STATE.invalidated_because = reason
    for allowed in tuple(_ALLOWED.values()):
        allowed.clear()


def forget_classes(classes: set[type]) -> None:
    """Drop ``classes`` from every purpose's set (the labels layer evicted
    them from its caches). Only memory: the policy did not change, so the
    epoch stays and zones keep what they learnt."""
    for allowed in tuple(_ALLOWED.values()):
        allowed.difference_update(classes)


def learn(purpose: str, values: tuple[Any, ...]) -> None:
    """Remember labelled classes among ``values`` as allowed for ``purpose``.

    Only while no guard is activated for one context, and only for classes
    that carry their labels themselves (labelled str, bytes and numbers).
    Every label set of an allowed union is allowed on its own.
    """
    if not FLAGS.fast_unzoned or ACTIVE_GUARD.get() is not None:
        return
    allowed = allowed_classes(purpose)
    for value in values:
        t = type(value)
        kind = getattr(t, "_pg_kind", None)
        # Not a class whose label set was forgotten (a value of it outlived
        # the eviction): learnt again, it would be kept after its last value.
        if kind is not None and not kind.evicted:
            allowed.add(t)


def zone_allows(state: Any, purpose: str) -> bool:
    """The zone's whole category set was allowed for ``purpose`` under the
    process-wide guard, and nothing was invalidated since."""
    seen = state.allowed.get(purpose)
    if seen is not None and seen[0] is state.categories and seen[1] == FLAGS.epoch and FLAGS.fast_unzoned:
        counter = COUNTERS.hits.get(purpose)
        if counter is not None:
            next(counter.steps)
        return True
    return False


def remember_zone(guard: Any, state: Any, purpose: str, categories: frozenset[str], epoch: int) -> None:
    """Note that ``categories`` were allowed for ``purpose`` in this zone,
    as of ``epoch`` (read before the guard decided)."""
    if categories and FLAGS.fast_unzoned and guard.allowed_without_consent(categories, purpose, count=False):
        state.memo()[purpose] = (categories, epoch)
