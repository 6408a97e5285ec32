"""A refusal for a value the walk gave up on says which argument, and where inside it, never what it holds."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Collection, Iterator
from typing import Any

import pytest

import purposeguard as pg
from purposeguard._labels import MAX_DEPTH, MAX_ITEMS
from purposeguard._walk_diagnosis import diagnose

SECRET = "alice@example.com"


def _nested(levels: int) -> Any:
    value: Any = "plain"
    for _ in range(levels):
        value = [value]
    return value


class Cache:
    def __init__(self) -> None:
        # Keys are customer data; values are containers, so each one counts against the bound.
        self.entries = {f"{SECRET}-{i}": [f"row of {SECRET}-{i}"] for i in range(MAX_ITEMS + 10)}


class Service:
    def __init__(self) -> None:
        self.cache = Cache()


class Sealed(Collection[Any]):
    """A collection that cannot be iterated, and says so with its content."""

    def __iter__(self) -> Iterator[Any]:
        raise ValueError(f"cannot list the mailbox of {SECRET}")

    def __len__(self) -> int:
        return 1

    def __contains__(self, item: object) -> bool:
        return False


class Hostile:
    """Every attribute read raises, quoting what it guards."""

    def __getattribute__(self, name: str) -> Any:
        raise RuntimeError(f"no access to {SECRET}")


class Box:
    def __init__(self, inner: Any) -> None:
        self.inner = inner


@pg.purpose("service.operations")
def store(*, payload: Any) -> int:
    return 1


@pg.purpose("service.operations")
def warm(service: Service) -> int:
    return 1


@pg.purpose("service.operations")
def count(items: Any) -> int:
    return 1


@pg.purpose("service.operations")
def first(value: Any, /) -> int:
    return 1


def _refusal(call: Any, *args: Any, **kwargs: Any) -> pg.PurposeViolation:
    with pytest.raises(pg.PurposeViolation) as refused:
        call(*args, **kwargs)
    return refused.value


def test_a_nesting_deeper_than_the_bound_names_the_keyword_argument_and_the_nesting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pg.configure("trust-center", mode="enforce")
    with caplog.at_level(logging.ERROR, "purposeguard"):
        refusal = _refusal(store, payload=_nested(MAX_DEPTH + 3))
    message = str(refusal)
    assert refusal.rule == "purposeguard.internal-error" and refusal.category == "unknown"
    assert "payload: list -> " in message and "-> [0]: list" in message
    assert f"nested deeper than {MAX_DEPTH} levels" in message
    assert "policy engine failed" not in message and "fix the policy" not in message
    assert "payload: list" in caplog.text and "nested deeper" in caplog.text


def test_more_values_than_the_bound_names_the_attribute_chain_and_no_key_or_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pg.configure("trust-center", mode="enforce")
    with caplog.at_level(logging.ERROR, "purposeguard"), pg.testing.capture() as recorded:
        refusal = _refusal(warm, Service())
    message = str(refusal)
    assert "service: Service -> .cache: Cache -> .entries: dict -> [...]: list" in message
    assert f"more than the {MAX_ITEMS} values the walk looks into" in message
    assert "pass the function only what it needs" in message
    # Advice a user can follow: nothing private to purposeguard.
    assert "purposeguard._" not in message
    for shown in (message, caplog.text, repr(refusal.violations), *(v.remediation for v in recorded)):
        assert SECRET not in shown and "row of" not in shown
    assert recorded[0].remediation == refusal.violations[0].remediation
    assert "service: Service -> .cache" in recorded[0].remediation


def test_a_collection_that_raises_when_iterated_leaks_nothing_of_its_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pg.configure("trust-center", mode="enforce")
    with caplog.at_level(logging.ERROR, "purposeguard"), pg.testing.capture() as recorded:
        refusal = _refusal(count, Sealed())
    message = str(refusal)
    assert "items: Sealed (could not be iterated: ValueError)" in message
    assert refusal.__context__ is None and refusal.__cause__ is None
    shown_in_traceback = "".join(traceback.format_exception(refusal))
    assert SECRET not in shown_in_traceback and "mailbox" not in shown_in_traceback
    for shown in (message, caplog.text, repr(refusal.violations), *(v.remediation for v in recorded)):
        assert SECRET not in shown and "mailbox" not in shown


def test_a_positional_only_argument_is_named_by_its_position() -> None:
    pg.configure("trust-center", mode="enforce")
    refusal = _refusal(first, _nested(MAX_DEPTH + 3))
    assert "argument 1 (value, positional-only): list" in str(refusal)


def test_an_item_of_star_args_is_named_by_its_position() -> None:
    @pg.purpose("service.operations")
    def many(head: Any, *rest: Any) -> int:
        return 1

    pg.configure("trust-center", mode="enforce")
    assert "argument 3 (in *rest): list" in str(_refusal(many, 1, 2, _nested(MAX_DEPTH + 3)))


def test_a_keyword_that_names_no_parameter_is_never_shown() -> None:
    """``f(**row)``: the keys may be data."""

    @pg.purpose("service.operations")
    async def handle(request: Any, **params: Any) -> int:
        return 1

    pg.configure("trust-center", mode="enforce")
    coroutine = handle(1, **{SECRET: _nested(MAX_DEPTH + 3)})
    with pytest.raises(pg.PurposeViolation) as refused:
        coroutine.send(None)
    assert "a keyword argument in **params: list" in str(refused.value)
    assert SECRET not in str(refused.value)


def test_a_return_value_is_named_as_such() -> None:
    @pg.purpose("service.operations")
    def load() -> Any:
        return Box(_nested(MAX_DEPTH + 3))

    pg.configure("trust-center", mode="enforce")
    assert "the return value: Box -> .inner: list" in str(_refusal(load))


def test_trace_mode_proceeds_and_logs_the_same_chain(caplog: pytest.LogCaptureFixture) -> None:
    pg.configure("trust-center", mode="trace")
    with caplog.at_level(logging.ERROR, "purposeguard"), pg.testing.capture() as recorded:
        assert warm(Service()) == 1
    assert [v.rule for v in recorded] == ["purposeguard.internal-error"]
    chain = "service: Service -> .cache: Cache -> .entries: dict -> [...]: list"
    assert chain in caplog.text and "proceeding (trace mode)" in caplog.text
    assert chain in recorded[0].remediation
    assert SECRET not in caplog.text


def test_an_attribute_that_raises_is_named_and_its_error_not_quoted(caplog: pytest.LogCaptureFixture) -> None:
    """The walk raised (user code), and the second pass raises at the same read: neither escapes."""
    pg.configure("trust-center", mode="enforce")
    with caplog.at_level(logging.ERROR, "purposeguard"):
        refusal = _refusal(count, Box(Hostile()))
    message = str(refusal)
    assert "items: Box -> .inner: Hostile (raised RuntimeError)" in message
    assert "policy engine failed" not in message
    assert SECRET not in message and SECRET not in caplog.text


class Flaky:
    """Its attributes can be read ``allowed`` times; after that, reading them raises."""

    def __init__(self, inner: Any, allowed: int) -> None:
        self._state = {"inner": inner}
        self._left = allowed

    @property  # type: ignore[misc]
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        left = object.__getattribute__(self, "_left")
        if left <= 0:
            raise RuntimeError(f"no access to {SECRET}")
        object.__setattr__(self, "_left", left - 1)
        return object.__getattribute__(self, "_state")


@pytest.mark.parametrize(
    ("allowed", "shown"),
    [
        (1, "items: Flaky (raised RuntimeError)"),  # the second pass's own read raises
        (2, "items: Flaky -> (inside): "),  # naming the attribute raises
    ],
)
def test_a_second_pass_that_meets_a_failing_read_still_names_the_argument(allowed: int, shown: str) -> None:
    pg.configure("trust-center", mode="enforce")
    refusal = _refusal(count, Flaky(_nested(MAX_DEPTH + 3), allowed))
    assert shown in str(refusal) and "the label walk gave up on" in str(refusal)
    assert SECRET not in str(refusal)


def test_the_diagnosis_never_raises() -> None:
    def unnamed(index: int) -> str:
        raise RuntimeError("no name")

    assert (
        diagnose([Box(Hostile())], None, unnamed)
        == "argument 1: Box -> .inner: Hostile (raised RuntimeError)"
    )
    assert diagnose([Hostile()], None, unnamed) == "argument 1: Hostile (raised RuntimeError)"
    assert diagnose(["plain", 1, Box("plain")], None, unnamed) is None


def test_a_genuine_engine_failure_keeps_its_wording() -> None:
    class Broken:
        def __init__(self, real: pg.Policy) -> None:
            self._real = real

        def decide(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("engine failure")

        def __getattr__(self, name: str) -> Any:
            return getattr(self._real, name)

    guard = pg.configure("trust-center", mode="enforce")
    guard.policy = Broken(guard.policy)  # type: ignore[assignment]
    refusal = _refusal(count, pg.label("ticket", "customer_data.content.email"))
    assert "the policy engine failed (RuntimeError); fix the policy or the labels" in str(refusal)
