"""Bounded memory: classes made at run time that pass through guarded code
are freed with their last instance, and the type caches stay within their bounds."""

from __future__ import annotations

import collections
import gc
import weakref
from typing import Annotated, Any

import purposeguard as pg
from purposeguard import _labels
from purposeguard._state import STATE, TYPE_CACHE_LIMIT, remember, trim_types

PURPOSE = "service.operations"
EMAIL = "customer_data.content.email"


class _Base:
    @pg.purpose(PURPOSE)
    def handle(self, value: Any) -> Any:
        return value


def _fresh_class(n: int) -> type:
    """A class as factories make them: plain, slotted, a named tuple, one
    with an annotated field, or a subclass with a guarded method."""
    # Named tuples and annotated classes cost tens of microseconds to make:
    # fewer of them keep the test short.
    if n % 50 == 0:
        return collections.namedtuple(f"Row{n}", ["name", "size"])
    if n % 50 == 1:
        return type(f"Note{n}", (), {"__annotations__": {"body": Annotated[str, pg.Category(EMAIL)]}})
    shape = n % 3
    if shape == 0:
        return type(f"Model{n}", (), {"__init__": lambda self: setattr(self, "name", "x")})
    if shape == 1:
        return type(f"Slotted{n}", (), {"__slots__": ("name",)})
    return type(f"Handler{n}", (_Base,), {})


def _instance(cls: Any) -> Any:
    if issubclass(cls, tuple):
        return cls("x", 1)
    return cls()


def test_classes_made_at_run_time_are_freed_after_passing_through_guarded_code() -> None:
    pg.configure("trust-center", mode="trace")

    @pg.purpose(PURPOSE)
    def use(value: Any, *rest: Any, **named: Any) -> Any:
        return value

    made = 100_000
    alive: list[weakref.ref[type]] = []
    allowed = pg.label("ticket", "customer_data")
    for n in range(made):
        cls = _fresh_class(n)
        value = _instance(cls)
        use(value)
        use(allowed, other=value)
        if isinstance(value, _Base):
            value.handle(allowed)
            value.handle(allowed)
        alive.append(weakref.ref(cls))
        del cls, value
    gc.collect()
    survivors = sum(1 for ref in alive if ref() is not None)
    assert survivors <= made // 100, survivors
    assert len(STATE.labels.no_labels) <= len(STATE.labels.no_labels_default) + TYPE_CACHE_LIMIT
    assert len(STATE.labels.flat_objects) <= TYPE_CACHE_LIMIT
    assert len(STATE.labels.fields) <= TYPE_CACHE_LIMIT


def test_a_type_set_is_trimmed_by_an_eighth_and_keeps_its_fixed_types() -> None:
    types = [type(f"T{n}", (), {}) for n in range(20)]
    found: set[type] = {int, *types[:16]}
    trim_types(found, frozenset({int}), limit=16)
    assert len(found) == 17  # within the bound: untouched
    found.add(types[16])
    trim_types(found, frozenset({int}), limit=16)
    assert int in found and len(found) == 1 + 17 - 2  # an eighth of the 17 learnt went


def test_a_remembered_entry_pushes_out_the_oldest_eighth_only() -> None:
    cache: dict[int, object] = {}
    for n in range(16):
        remember(cache, n, n, limit=16)
    assert len(cache) == 16
    assert remember(cache, 16, "new", limit=16) == "new"
    assert 0 not in cache and 1 not in cache and 2 in cache and 16 in cache and len(cache) == 15
    remember(cache, 2, "again", limit=16)  # replacing a key evicts nothing
    assert len(cache) == 15 and cache[2] == "again"


def test_a_forgotten_label_free_type_is_learnt_again() -> None:
    class Opaque:
        __slots__ = ()

    pg.configure("trust-center")

    @pg.purpose(PURPOSE)
    def use(value: Any) -> Any:
        return value

    use(Opaque())
    assert Opaque in _labels.NO_LABELS
    _labels.NO_LABELS.discard(Opaque)
    use(Opaque())
    assert Opaque in _labels.NO_LABELS


def test_memoised_decisions_are_bounded_and_stay_right(monkeypatch: Any) -> None:
    import itertools

    from purposeguard import _policy

    monkeypatch.setattr(_policy, "DECISIONS_LIMIT", 16)
    policy = pg.Policy.load("trust-center")
    keys = sorted(policy.taxonomy.categories)
    sets = [frozenset(pair) for pair in itertools.combinations(keys, 2)][:40]
    first = [policy.decide(s, "advertising") for s in sets]
    assert len(policy._decisions["advertising"]) <= 16
    assert [policy.decide(s, "advertising") for s in sets] == first  # decided again, the same
    assert not policy.decide([EMAIL], "advertising").allowed
    assert policy.decide([EMAIL], PURPOSE).allowed
