"""Every cache the input of a request can grow stays within its documented
bound, and leaves by its oldest eighth, never all at once (docs/performance.md,
"Memory: every cache and its bound")."""

from __future__ import annotations

import gc
import itertools
import linecache
from pathlib import Path
from typing import Any

import pytest
from purposeguard.integrations import baggage

import purposeguard as pg
from purposeguard import _kinds, _labels
from purposeguard._shortcut import allowed_classes
from purposeguard._state import STATE
from purposeguard.consent import ConsentStore

PURPOSE = "service.operations"
KEY = "k1:" + "a" * 64
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_consent_lookups_for_many_tenants_keep_a_bounded_memory(tmp_path: Path, monkeypatch: Any) -> None:
    pg.configure("trust-center")
    monkeypatch.setattr(ConsentStore, "TENANTS_LIMIT", 64)
    with ConsentStore(tmp_path / "consent.db") as store:
        store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
        assert store.has_consent("contoso", "improvement", "customer_data.content.email")
        # Tenant ids a request can bring, none of which ever consented.
        sizes = []
        for number in range(500):
            assert not store.has_consent(f"tenant-{number}", "improvement", "customer_data")
            sizes.append(len(store._by_tenant))
        assert max(sizes) <= 64
        assert min(sizes[100:]) >= 64 - 64 // 8  # the oldest eighth leaves, not all
        # Forgotten, read again: the answer is the same.
        assert store.has_consent("contoso", "improvement", "customer_data.content.email")


def test_a_function_decorated_per_call_leaves_no_source_behind() -> None:
    pg.configure("trust-center")

    def handler(value: str) -> str:
        @pg.purpose(PURPOSE)
        def inner(text: str) -> str:
            return text

        return inner(value)

    handler("warm")
    gc.collect()
    before = sum(1 for name in linecache.cache if name.startswith("<purposeguard wrapper"))
    for number in range(300):
        handler(str(number))
    gc.collect()
    after = sum(1 for name in linecache.cache if name.startswith("<purposeguard wrapper"))
    assert after <= before + 1


def test_a_live_wrapper_keeps_its_source_for_tracebacks() -> None:
    pg.configure("trust-center")

    @pg.purpose(PURPOSE)
    def ticket(text: str) -> str:
        return text

    names = [name for name in linecache.cache if "wrapper of" in name and "ticket" in name]
    assert names and all(linecache.getline(name, 1) for name in names)
    del ticket


def _many_label_sets(limit: int) -> list[tuple[str, ...]]:
    extra = "\n".join(f'"customer_data.content.c{i}" = "c{i}"' for i in range(12))
    pg.configure(pg.Policy.from_toml(f'[policy]\ndefault = "allow"\n[taxonomy.categories]\n{extra}\n'))
    categories = [f"customer_data.content.c{i}" for i in range(12)]
    sets: list[tuple[str, ...]] = list(itertools.combinations(categories, 3))
    assert len(sets) > 3 * limit
    return sets


def test_label_sets_read_under_a_purpose_stay_within_the_label_set_bound(monkeypatch: Any) -> None:
    monkeypatch.setattr(_kinds, "LABEL_SETS_LIMIT", 32)
    sets = _many_label_sets(32)
    purpose = sorted(pg.get_guard().policy.taxonomy.purposes)[0]
    with pg.purpose(purpose):
        for categories in sets:
            pg.label("x", *categories)
            pg.label("y", *categories, tenant="contoso")  # a kind with a tenant is made per value
    remembered = [kind for kinds in _labels.SOURCE.allowed.values() for kind in kinds]
    assert 0 < len(remembered) <= 32
    kept = set(_labels._CLASSES.values())
    assert all(kind in kept and not kind.evicted for kind in remembered)


def test_a_value_outliving_its_label_set_is_not_learnt_again_by_the_shortcut(monkeypatch: Any) -> None:
    monkeypatch.setattr(_kinds, "LABEL_SETS_LIMIT", 32)
    sets = _many_label_sets(32)
    purpose = sorted(pg.get_guard().policy.taxonomy.purposes)[0]

    @pg.purpose(purpose)
    def use(value: Any) -> Any:
        return None

    kept_alive = [pg.label("x", *categories) for categories in sets]
    for value in kept_alive:
        use(value)
        use(value)
    # Every value is passed again after most of their label sets were forgotten.
    for value in kept_alive:
        use(value)
    learnt = allowed_classes(purpose)
    assert learnt, "the shortcut learnt nothing: the check above proves nothing"
    kinds: list[Any] = [vars(cls).get("_pg_kind") for cls in learnt]
    assert all(kind is not None and not kind.evicted for kind in kinds)
    assert len(learnt) <= 32


def test_verified_baggage_headers_are_forgotten_by_the_oldest_eighth(monkeypatch: Any) -> None:
    pg.configure("trust-center", baggage_keys=[KEY])
    monkeypatch.setattr(baggage, "MAX_REMEMBERED", 64)
    with pg.purpose(PURPOSE):
        header = baggage.header_value(traceparent=TRACEPARENT)
    sizes = []
    for number in range(300):
        # Members of others travel beside ours: each header is a new key.
        incoming = baggage.parse(f"{header},other{number}=1", traceparent=TRACEPARENT)
        assert incoming.purpose == PURPOSE
        sizes.append(len(STATE.baggage_seen))
    assert max(sizes) <= 64
    assert min(sizes[80:]) >= 64 - 64 // 8


def test_task_headers_are_not_remembered() -> None:
    pg.configure("trust-center", baggage_keys=[KEY])
    before = len(STATE.baggage_seen)
    for number in range(20):
        channel = baggage.task_channel("celery", f"task-{number}", "send_mail")
        with pg.purpose(PURPOSE):
            header = baggage.header_value(channel=channel)
        assert baggage.parse(header, channel=channel).purpose == PURPOSE
    assert len(STATE.baggage_seen) == before


def test_an_unsubscribed_failing_handler_is_forgotten(caplog: pytest.LogCaptureFixture) -> None:
    pg.configure("trust-center", mode="trace")

    def failing(_violation: Any) -> None:
        raise RuntimeError("handler bug")

    @pg.purpose("advertising")
    def advertise(address: str) -> None:
        return None

    unsubscribe = pg.on_violation(failing)
    advertise(pg.label("a@contoso.example", "customer_data.content.email"))
    assert id(failing) in STATE.handlers.failed
    assert "handler failed" in caplog.text
    unsubscribe()
    assert id(failing) not in STATE.handlers.failed


def test_task_result_headers_verified_for_many_tasks_keep_a_bounded_memory(monkeypatch: Any) -> None:
    from purposeguard.integrations import _tasks

    pg.configure("trust-center")
    monkeypatch.setattr(_tasks, "_VERIFIED_LIMIT", 64)
    _tasks._VERIFIED.clear()
    sizes = []
    for number in range(500):
        # Headers a result backend can hand back (here unsigned: ignored, no labels).
        assert _tasks.read_result("celery", f"task-{number}", "purpose=x", "value") == "value"
        sizes.append(len(_tasks._VERIFIED))
    assert max(sizes) <= 64
    assert min(sizes[100:]) >= 64 - 64 // 8
