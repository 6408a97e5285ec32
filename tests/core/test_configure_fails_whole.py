"""configure() either changes everything asked or nothing; policies and
consent lookups that are wrong in shape are refused as such, never met
later as an allow."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard import audit, otel
from purposeguard._files import write_replacing
from purposeguard._runtime import get_guard

LOOSE = pg.Policy.from_toml('[policy]\nname = "loose"\ndefault = "allow"\n')


class RefusingMeters:
    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the meter provider is down")


def test_telemetry_that_cannot_start_leaves_policy_and_telemetry_as_they_were() -> None:
    from opentelemetry.sdk.metrics import MeterProvider

    pg.configure("trust-center", mode="enforce")
    working = MeterProvider()
    otel.instrument(meter_provider=working)
    try:
        with pytest.raises(RuntimeError, match="meter provider is down"):
            otel.instrument(meter_provider=RefusingMeters())  # type: ignore[arg-type]
        assert otel.instrumented()
        with refusing_global_meters(), pytest.raises(RuntimeError, match="meter provider is down"):
            pg.configure(LOOSE, telemetry=True)
        assert get_guard().policy.name == "trust-center"
        assert not pg.decide(["customer_data"], "advertising").allowed
        assert otel.instrumented()
    finally:
        otel.uninstrument()


@contextmanager
def global_meter_provider(provider: Any) -> Iterator[None]:
    """``provider`` is the process's meter provider while inside. OpenTelemetry
    lets the global provider be set once per process, so the test swaps its
    private slot (untyped: the ignores) and puts it back."""
    from opentelemetry import metrics

    previous = metrics._internal._METER_PROVIDER  # type: ignore[attr-defined]
    metrics._internal._METER_PROVIDER = provider  # type: ignore[attr-defined]
    try:
        yield
    finally:
        metrics._internal._METER_PROVIDER = previous  # type: ignore[attr-defined]


def refusing_global_meters() -> Any:
    """The process's meter provider refuses every instrument while inside."""
    return global_meter_provider(RefusingMeters())


def _advertise(value: str) -> None:
    with pg.purpose("advertising"):
        pg.check(value)


def _kinds_in(path: Path) -> list[str]:
    with audit.AuditLog(path, create=False, readonly=True) as log:
        return [entry.kind for entry in log.records()]


def _configured_with_an_old_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The guard configured (trace mode) with an unkeyed log at old.db, no
    audit key from the environment; new.db, not made yet, for the next configure."""
    monkeypatch.delenv("PURPOSEGUARD_AUDIT_KEY", raising=False)
    monkeypatch.delenv("PURPOSEGUARD_AUDIT_KEY_FILE", raising=False)
    old_log, new_log = tmp_path / "old.db", tmp_path / "new.db"
    pg.configure("trust-center", mode="trace", audit=old_log)
    return old_log, new_log


def _files_of(log: Path) -> list[str]:
    return sorted(p.name for p in log.parent.iterdir() if p.name.startswith(log.name))


@pytest.mark.parametrize("form", ["path", "url"])
def test_telemetry_that_cannot_start_leaves_the_audit_sink_and_key_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    old_log, new_log = _configured_with_an_old_log(tmp_path, monkeypatch)
    before = audit.attached()
    target: str | Path = new_log if form == "path" else f"sqlite:///{new_log}"
    with refusing_global_meters(), pytest.raises(RuntimeError, match="meter provider is down"):
        pg.configure("trust-center", mode="trace", audit=target, audit_key="k" * 40, telemetry=True)
    assert audit.attached() is before
    assert audit.default_key() is None
    assert not otel.instrumented()
    # The log opened for the failed configure was closed and its files
    # (the database, its checkpoint and the checkpoint's lock) removed.
    assert _files_of(new_log) == []
    _advertise(pg.label("sample", "customer_data.content.email"))
    assert before is not None
    before.flush()
    assert _kinds_in(old_log) == ["violation"]
    audit.detach()


def test_telemetry_that_cannot_start_leaves_an_existing_log_it_was_to_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_log, new_log = _configured_with_an_old_log(tmp_path, monkeypatch)
    with audit.AuditLog(new_log) as existing:
        existing.append({"kind": "note"})
    files = _files_of(new_log)
    with refusing_global_meters(), pytest.raises(RuntimeError, match="meter provider is down"):
        pg.configure("trust-center", mode="trace", audit=new_log, telemetry=True)
    assert _files_of(new_log) == files
    assert _kinds_in(new_log) == ["note"]
    audit.detach()


def test_telemetry_that_cannot_start_leaves_the_audit_sink_attached_when_asked_to_detach(
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "audit.db"
    pg.configure("trust-center", mode="trace", audit=log_path)
    before = audit.attached()
    with refusing_global_meters(), pytest.raises(RuntimeError, match="meter provider is down"):
        pg.configure("trust-center", audit=False, telemetry=True)
    assert audit.attached() is before
    _advertise(pg.label("sample", "customer_data.content.email"))
    assert before is not None
    before.flush()
    assert _kinds_in(log_path) == ["violation"]
    audit.detach()


def test_a_configure_that_succeeds_moves_the_audit_sink_and_sets_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.sdk.metrics import MeterProvider

    old_log, new_log = _configured_with_an_old_log(tmp_path, monkeypatch)
    with global_meter_provider(MeterProvider()):
        try:
            pg.configure("trust-center", mode="trace", audit=new_log, audit_key="k" * 40, telemetry=True)
            assert otel.instrumented()
        finally:
            otel.uninstrument()
    sink = audit.attached()
    assert sink is not None and Path(sink.log.path) == new_log
    assert sink.log.storage.key is not None
    assert audit.default_key() is not None
    _advertise(pg.label("sample", "customer_data.content.email"))
    pg.configure("trust-center", audit=False)
    assert audit.attached() is None
    with audit.AuditLog(new_log, create=False, readonly=True) as log:
        assert [entry.kind for entry in log.records()] == ["violation"]
    audit.set_key(None)  # the old log is unkeyed
    assert _kinds_in(old_log) == []


@pytest.mark.parametrize(
    "target",
    [":memory:", Path(":memory:"), "sqlite://", "sqlite:///:memory:", "SQLite:///:memory:"],
    ids=["memory", "memory-path", "sqlite-url", "sqlite-memory-url", "sqlite-memory-url-upper"],
)
def test_an_in_memory_audit_log_is_refused_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str | Path
) -> None:
    old_log, _ = _configured_with_an_old_log(tmp_path, monkeypatch)
    before = audit.attached()
    with pytest.raises(pg.AuditError, match="in-memory log") as refused:
        pg.configure(LOOSE, mode="enforce", audit=target, audit_key="k" * 40)
    assert isinstance(refused.value, pg.PurposeGuardError)
    assert "outlives the process" in str(refused.value)
    assert audit.attached() is before
    assert audit.default_key() is None
    assert get_guard().policy.name == "trust-center"
    with pytest.raises(pg.AuditError, match="in-memory log"):
        audit.attach(target)
    assert audit.attached() is before
    # An in-memory log opened on purpose (to read back in this process) is taken.
    kept = audit.AuditLog(":memory:")
    pg.configure("trust-center", mode="trace", audit=kept)
    _advertise(pg.label("sample", "customer_data.content.email"))
    pg.configure("trust-center", audit=False)
    assert [entry.kind for entry in kept.records()] == ["violation"]
    kept.close()
    assert _kinds_in(old_log) == []


def test_telemetry_without_opentelemetry_leaves_the_previous_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    pg.configure("trust-center", mode="enforce")
    # As without OpenTelemetry installed: the module cannot be imported.
    monkeypatch.delattr(pg, "otel", raising=False)
    monkeypatch.delitem(sys.modules, "purposeguard.otel", raising=False)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError):
        pg.configure(LOOSE, telemetry=True)
    assert get_guard().policy.name == "trust-center"
    assert not pg.decide(["customer_data"], "advertising").allowed


class AsyncLookup:
    async def has_consent(self, tenant: str, purpose: str, category: str) -> bool:
        return False


class AnswersText:
    def has_consent(self, tenant: str, purpose: str, category: str) -> Any:
        return "no"


@pg.purpose("improvement")
def train(text: str) -> int:
    return len(text)


@pytest.mark.parametrize("consents", [AsyncLookup(), 5, object()], ids=["async", "int", "no-method"])
def test_a_consent_lookup_of_the_wrong_shape_is_refused_at_configure(consents: Any) -> None:
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(TypeError, match="has_consent"):
        pg.configure("trust-center", mode="enforce", consents=consents)
    with pytest.raises(TypeError, match="has_consent"):
        pg.Guard(pg.Policy.load("trust-center"), consents=consents)


def test_a_consent_answer_that_is_not_a_bool_is_no_consent() -> None:
    pg.configure("trust-center", mode="enforce", consents=AnswersText())
    with pytest.raises(pg.PurposeViolation) as refused:
        train(pg.label("spam sample", "customer_data.content.email", tenant="contoso"))
    assert refused.value.rule == "purposeguard.internal-error"


def test_a_long_extends_chain_is_a_policy_error_not_a_recursion_error(tmp_path: Path) -> None:
    from purposeguard._policy import MAX_EXTENDS

    depth = MAX_EXTENDS + 5
    (tmp_path / f"p{depth}.toml").write_text('[policy]\nname = "base"\nextends = "trust-center"\n')
    for level in range(depth):
        (tmp_path / f"p{level}.toml").write_text(
            f'[policy]\nname = "p{level}"\nextends = "p{level + 1}.toml"\n'
        )
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PolicyError, match="extends goes deeper"):
        pg.configure(tmp_path / "p0.toml")
    assert get_guard().policy.name == "trust-center"
    # A chain within the bound loads.
    assert pg.Policy.load(tmp_path / f"p{depth - MAX_EXTENDS + 2}.toml").name.startswith("p")


@pytest.mark.parametrize(
    ("data", "said"),
    [
        ({"taxonomy": {"categories": {1: "x"}}}, "not text"),
        ({"taxonomy": {"purposes": {("a",): "x"}}}, "not text"),
        ({1: "x"}, "unknown section"),
    ],
    ids=["category-key", "purpose-key", "top-level-key"],
)
def test_a_dict_policy_with_keys_that_are_not_text_is_a_policy_error(data: dict[Any, Any], said: str) -> None:
    with pytest.raises(pg.PolicyError, match=said):
        pg.Policy.from_dict(data)


def test_a_directory_given_as_a_policy_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(pg.PolicyError, match="not a regular file"):
        pg.Policy.load(tmp_path)


def test_a_file_written_in_place_keeps_the_previous_one_when_the_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "manifest.yaml"
    target.write_text("previous: manifest\n")
    with pytest.raises(UnicodeEncodeError):
        write_replacing(target, "cut \ud800 off")
    assert target.read_text() == "previous: manifest\n"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.yaml"]
    write_replacing(target, "new: manifest\n")
    assert target.read_text() == "new: manifest\n"
