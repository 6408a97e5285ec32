"""Many tenants: the tenant lives on the labelled value, so tenants make no
classes and evict nothing; label sets are evicted a few at a time, locally;
bad tenant ids are refused."""

from __future__ import annotations

import gc
import pickle
import tracemalloc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

import purposeguard as pg
from purposeguard import _kinds, _labels
from purposeguard._shortcut import allowed_classes
from purposeguard._state import STATE

EMAIL = "customer_data.content.email"
PURPOSE = "service.operations"


@pytest.fixture(autouse=True)
def _policy() -> Iterator[None]:
    pg.configure("trust-center")
    yield


def test_tenants_make_no_classes_and_invalidate_nothing() -> None:
    @pg.purpose(PURPOSE)
    def use(value: object) -> object:
        return value

    first = use(pg.label("x", EMAIL, tenant="tenant-00000"))
    allowed = allowed_classes(PURPOSE)
    learnt = set(allowed)
    classes = dict(_labels._CLASSES)
    epoch, because = STATE.flags.epoch, STATE.invalidated_because
    with pg.zone(categories=[EMAIL]) as state:
        use("plain")  # the zone learns its category set is allowed here
        zone_learnt = dict(state.allowed)
    assert zone_learnt
    for n in range(1, 20_000):
        value = use(pg.label("x", EMAIL, tenant=f"tenant-{n:05d}"))
        assert pg.tenant_of(value) == f"tenant-{n:05d}"
    assert _labels._CLASSES == classes
    assert set(allowed) == learnt and type(value) is type(first)
    assert (STATE.flags.epoch, STATE.invalidated_because) == (epoch, because)
    assert pg.tenant_of(first) == "tenant-00000"


def test_every_str_operation_keeps_the_tenant() -> None:
    body = pg.label("  Hello team, numbers attached  ", EMAIL, tenant="contoso")
    results = [
        body.upper(),
        body.lower(),
        body.strip(),
        body.replace("team", "all"),
        body[2:12],
        body[3],
        body + "!",
        "> " + body,
        body * 2,
        "%s." % body,
        body.format(),
        body.join(["a", "b"]),
        body.encode().decode(),
        str(body),
        f"{body}",
        format(body, ">40"),
        repr(body),
        *body.split(),
        *body.partition("team"),
        *list(body)[:3],
    ]
    for result in results:
        assert pg.labels_of(result) == {EMAIL}
        assert pg.tenant_of(result) == "contoso"
    raw = body.encode()
    for piece in (raw.upper(), raw[1:4], raw + b"!", b"> " + raw, *raw.split()):
        assert pg.tenant_of(piece) == "contoso"


def test_values_of_two_tenants_combine_into_data_of_neither() -> None:
    a = pg.label("from contoso", EMAIL, tenant="contoso")
    b = pg.label("from fabrikam", "customer_data", tenant="fabrikam")
    plain_tenant = pg.label("no tenant", EMAIL)
    assert pg.tenant_of(a + b) == _labels.MIXED_TENANT
    assert pg.labels_of(a + b) == {EMAIL, "customer_data"}
    assert pg.tenant_of(a.replace("from", b)) == _labels.MIXED_TENANT
    assert pg.tenant_of(a.join(["x", b])) == _labels.MIXED_TENANT
    assert pg.tenant_of(a + plain_tenant) == "contoso"
    assert pg.tenant_of(plain_tenant + a) == "contoso"
    assert pg.tenant_of(pg.label(a, "customer_data", tenant="fabrikam")) == _labels.MIXED_TENANT


@pytest.mark.parametrize(
    "value", ["text", b"bytes", 42, 0.5, {"k": "v"}, ["a"], ("a",), {"a"}, frozenset({"a"})], ids=repr
)
def test_a_pickled_value_keeps_its_tenant(value: object) -> None:
    labelled = pg.label(value, EMAIL, tenant="contoso")
    restored = pickle.loads(pickle.dumps(labelled))
    assert restored == value
    assert pg.tenant_of(restored) == "contoso" and pg.labels_of(restored) >= {EMAIL}


def test_consent_is_decided_per_tenant_of_the_value(tmp_path: Path) -> None:
    from purposeguard.consent import ConsentStore

    store = ConsentStore(tmp_path / "consent.db", tenants=["contoso", "fabrikam"])
    try:
        store.grant("contoso", "improvement", "customer_data", granted_by="admin@contoso")
        pg.configure("trust-center", mode="enforce", consents=store)

        @pg.purpose("improvement")
        def improve(value: object) -> object:
            return value

        for _ in range(3):  # the consent is asked every time, never learnt as a shortcut
            improve(pg.label("ok", EMAIL, tenant="contoso"))
            with pytest.raises(pg.PurposeViolation):
                improve(pg.label("no consent", EMAIL, tenant="fabrikam"))
    finally:
        store.close()


def test_a_live_labelled_string_with_a_tenant_costs_at_most_twice_the_plain_one() -> None:
    count = 20_000
    tenants = [f"tenant-{n:07d}" for n in range(count)]

    def measure(make: object) -> float:
        gc.collect()
        tracemalloc.start()
        try:
            kept: list[object] = [None] * count
            before = tracemalloc.get_traced_memory()[0]
            for n in range(count):
                kept[n] = make(n)  # type: ignore[operator]
            return (tracemalloc.get_traced_memory()[0] - before) / count
        finally:
            tracemalloc.stop()

    plain = measure(lambda n: f"message body {n:012d}")  # 25 characters
    labelled = measure(lambda n: pg.label(f"message body {n:012d}", EMAIL, tenant=tenants[n]))
    assert len(f"message body {0:012d}") == 25
    assert labelled <= 2 * plain, (plain, labelled)


def test_label_sets_are_evicted_an_eighth_at_a_time_and_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_kinds, "LABEL_SETS_LIMIT", 16)
    monkeypatch.setattr(_kinds, "_CLASSES", _kinds._CLASSES)
    _labels._CLASSES.clear()
    _labels._KINDS_NO_TENANT.clear()
    _labels._STR_FAST.clear()
    _labels._UNIONS.clear()

    @pg.purpose(PURPOSE)
    def use(value: object) -> object:
        return value

    keys = sorted(STATE.labels.taxonomy.categories)
    first = use(pg.label("x", keys[0]))
    first_class = weakref.ref(type(first))
    allowed = allowed_classes(PURPOSE)
    epoch = STATE.flags.epoch
    assert type(first) in allowed
    pairs = [(a, b) for a in keys for b in keys if a < b][:20]
    for a, b in pairs:
        pg.label("x", a, b)
    assert len(_labels._CLASSES) <= 16
    assert frozenset(pairs[-1]) in _labels._CLASSES  # the newest stay
    assert frozenset([keys[0]]) not in _labels._CLASSES  # the oldest went
    assert len(_labels._CLASSES) >= 16 * 7 // 8 - 1  # not all of them
    assert type(first) not in allowed  # the evicted class left the shortcut
    assert STATE.flags.epoch == epoch  # and nothing else was invalidated
    assert pg.labels_of(first) == {keys[0]}
    del first
    gc.collect()
    assert first_class() is None


@pytest.mark.parametrize("bad", [42, b"contoso", ("a",), "x" * 257, " padded", "line\nbreak", ""])
def test_a_bad_tenant_id_is_refused_at_the_boundary(bad: object) -> None:
    error = TypeError if not isinstance(bad, str) else ValueError
    with pytest.raises(error, match="tenant"):
        pg.label("x", EMAIL, tenant=bad)  # type: ignore[arg-type]
    with pytest.raises(error, match="tenant"):
        pg.label(b"x", EMAIL, tenant=bad)  # type: ignore[arg-type]
    with pytest.raises(error, match="tenant"):
        pg.zone(tenant=bad)  # type: ignore[arg-type]
    with pg.zone(), pytest.raises(pg.PolicyError, match="tenant"):
        pg.set_tenant(bad)  # type: ignore[arg-type]
    assert pg.tenant_of(pg.label("x", EMAIL, tenant="x" * 256)) == "x" * 256


def test_a_labelled_tenant_id_is_refused() -> None:
    with pytest.raises(ValueError, match="tenant"):
        pg.label("x", EMAIL, tenant=pg.label("contoso", EMAIL))
