"""Many tenants: label classes are evicted a few at a time, locally, and bad tenant ids are refused."""

from __future__ import annotations

import gc
import weakref

import pytest

import purposeguard as pg
from purposeguard import _labels
from purposeguard._shortcut import allowed_classes
from purposeguard._state import STATE

EMAIL = "customer_data.content.email"
PURPOSE = "service.operations"


def test_evicting_tenant_classes_invalidates_nothing_else() -> None:
    pg.configure("trust-center")

    @pg.purpose(PURPOSE)
    def use(value: object) -> object:
        return value

    shared = pg.label("no tenant", EMAIL)
    use(shared)
    first = pg.label("x", EMAIL, tenant="tenant-00000")
    use(first)
    allowed = allowed_classes(PURPOSE)
    assert type(shared) in allowed and type(first) in allowed
    first_class = weakref.ref(type(first))
    epoch, because = STATE.flags.epoch, STATE.invalidated_because
    with pg.zone(categories=[EMAIL]) as state:
        use("plain")  # the zone learns its category set is allowed here
        learnt = dict(state.allowed)
    assert learnt
    for n in range(1, 2 * _labels.TENANT_KINDS_LIMIT):
        value = use(pg.label("x", EMAIL, tenant=f"tenant-{n:05d}"))
        assert pg.tenant_of(value) == f"tenant-{n:05d}"
    assert len(_labels._CLASSES) <= _labels.TENANT_KINDS_LIMIT
    # Nothing was invalidated: the shortcut kept the classes not evicted and
    # the epoch the zones compare did not move.
    assert (STATE.flags.epoch, STATE.invalidated_because) == (epoch, because)
    assert type(shared) in allowed and type(value) in allowed
    # The evicted class left the shortcut set, so it goes with its last value.
    assert type(first) not in allowed
    assert pg.tenant_of(first) == "tenant-00000"
    assert len(allowed) <= _labels.TENANT_KINDS_LIMIT + 2
    del first
    gc.collect()
    assert first_class() is None


def test_eviction_is_partial() -> None:
    pg.configure("trust-center")
    for n in range(_labels.TENANT_KINDS_LIMIT + 1):
        pg.label("x", EMAIL, tenant=f"t{n}")
    # One eviction forgot the oldest eighth, not every tenant's class.
    kept = [key[1] for key in _labels._CLASSES if key[1] is not None]
    assert len(kept) >= _labels.TENANT_KINDS_LIMIT * 7 // 8 - 1
    assert f"t{_labels.TENANT_KINDS_LIMIT}" in kept and "t0" not in kept


@pytest.mark.parametrize("bad", [42, b"contoso", ("a",), "x" * 257])
def test_a_bad_tenant_id_is_refused_at_the_boundary(bad: object) -> None:
    pg.configure("trust-center")
    error = TypeError if not isinstance(bad, str) else ValueError
    with pytest.raises(error, match="tenant"):
        pg.label("x", EMAIL, tenant=bad)  # type: ignore[arg-type]
    with pytest.raises(error, match="tenant"):
        pg.zone(tenant=bad)  # type: ignore[arg-type]
    with pg.zone(), pytest.raises(pg.PolicyError, match="tenant"):
        pg.set_tenant(bad)  # type: ignore[arg-type]
    assert pg.tenant_of(pg.label("x", EMAIL, tenant="x" * 256)) == "x" * 256
