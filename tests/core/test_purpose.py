"""@purpose as a decorator and a context manager, and the modes it acts in."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Annotated, Any

import pytest

import purposeguard as pg

EMAIL = "customer_data.content.email"
MARKER = "zq-secret-marker-7731"


def test_decorator_sets_and_restores_the_current_purpose() -> None:
    @pg.purpose("service.operations")
    def inner() -> str | None:
        return pg.current_purpose()

    assert pg.current_purpose() is None
    assert inner() == "service.operations"
    assert pg.current_purpose() is None


def test_nesting_makes_the_innermost_purpose_current() -> None:
    seen = []

    @pg.purpose("service.security")
    def inner() -> None:
        seen.append(pg.current_purpose())

    @pg.purpose("service.operations")
    def outer() -> None:
        seen.append(pg.current_purpose())
        inner()
        seen.append(pg.current_purpose())

    outer()
    assert seen == ["service.operations", "service.security", "service.operations"]


def test_context_manager_sync_and_nested() -> None:
    with pg.purpose("service.operations"):
        assert pg.current_purpose() == "service.operations"
        with pg.purpose("service.security"):
            assert pg.current_purpose() == "service.security"
        assert pg.current_purpose() == "service.operations"
    assert pg.current_purpose() is None


async def test_async_context_manager_and_coroutines() -> None:
    @pg.purpose("service.security")
    async def scan() -> str | None:
        await asyncio.sleep(0)
        return pg.current_purpose()

    async with pg.purpose("service.operations"):
        assert await scan() == "service.security"
        assert pg.current_purpose() == "service.operations"
    assert pg.current_purpose() is None


def test_one_purpose_object_reused_as_context_manager() -> None:
    ops = pg.purpose("service.operations")
    with ops:
        with ops:
            assert pg.current_purpose() == "service.operations"
        assert pg.current_purpose() == "service.operations"
    assert pg.current_purpose() is None


def test_leaving_a_purpose_that_was_never_entered_raises() -> None:
    with pytest.raises(pg.PurposeGuardError):
        pg.purpose("service.operations").__exit__(None, None, None)


def test_generator_purpose_does_not_leak_while_suspended() -> None:
    @pg.purpose("service.operations")
    def numbers() -> Any:
        for i in range(3):
            received = yield (i, pg.current_purpose())
            assert received is None or received == "ping"

    outside = []
    gen = numbers()
    for item in gen:
        outside.append(pg.current_purpose())
        assert item[1] == "service.operations"
    assert outside == [None, None, None]


def test_generator_send_throw_and_return_value() -> None:
    @pg.purpose("service.operations")
    def echo() -> Any:
        try:
            got = yield "ready"
            yield (got, pg.current_purpose())
        except KeyError:
            yield ("caught", pg.current_purpose())
        return "done"

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send("hello") == ("hello", "service.operations")
    gen2 = echo()
    next(gen2)
    assert gen2.throw(KeyError("x")) == ("caught", "service.operations")
    with pytest.raises(StopIteration) as stop:
        next(gen2)
    assert stop.value.value == "done"


async def test_async_generator_keeps_its_purpose_across_suspension() -> None:
    @pg.purpose("service.security")
    async def stream() -> Any:
        for _i in range(2):
            await asyncio.sleep(0)
            yield pg.current_purpose()

    got = []
    async for item in stream():
        got.append((item, pg.current_purpose()))
    assert got == [("service.security", None), ("service.security", None)]


def test_methods_classmethods_and_staticmethods() -> None:
    class Service:
        @pg.purpose("service.operations")
        def method(self, x: int) -> tuple[int, str | None]:
            return x, pg.current_purpose()

        @pg.purpose("service.security")
        @classmethod
        def klass(cls, x: int) -> tuple[int, str | None]:
            return x, pg.current_purpose()

        @staticmethod
        @pg.purpose("service.communications")
        def static(x: int) -> tuple[int, str | None]:
            return x, pg.current_purpose()

    service = Service()
    assert service.method(1) == (1, "service.operations")
    assert Service.klass(2) == (2, "service.security")
    assert Service.static(3) == (3, "service.communications")


def test_signature_is_kept_with_defaults_keyword_only_and_varargs() -> None:
    import inspect

    @pg.purpose("service.operations")
    def f(a: int, /, b: int = 2, *args: int, c: int = 3, **kw: int) -> tuple[Any, ...]:
        return a, b, args, c, kw

    assert f(1) == (1, 2, (), 3, {})
    assert f(1, 5, 6, 7, c=8, d=9) == (1, 5, (6, 7), 8, {"d": 9})
    assert str(inspect.signature(f)) == str(inspect.signature(inspect.unwrap(f)))
    assert f.__name__ == "f"


def test_labelled_keyword_and_star_args_are_checked(content: str) -> None:
    @pg.purpose("advertising")
    def ads(*args: Any, **kwargs: Any) -> None:
        pass

    with pytest.raises(pg.PurposeViolation):
        ads(1, content)
    with pytest.raises(pg.PurposeViolation):
        ads(text=content)
    ads(1, text="plain")


def test_enforce_raises_before_the_guarded_code_runs(content: str) -> None:
    ran = []

    @pg.purpose("advertising")
    def ads(text: str) -> None:
        ran.append(text)

    with pytest.raises(pg.PurposeViolation) as caught:
        ads(content)
    assert ran == []
    error = caught.value
    assert isinstance(error, PermissionError)
    (violation,) = error.violations
    assert violation.category == EMAIL
    assert violation.purpose == "advertising"
    assert violation.rule == "no-advertising"
    assert violation.via == "argument"
    assert violation.mode == "enforce"
    assert violation.function.endswith("test_enforce_raises_before_the_guarded_code_runs.<locals>.ads")
    assert violation.timestamp > 0


def test_trace_mode_records_and_proceeds(content: str, trace_guard: pg.Guard) -> None:
    ran = []

    @pg.purpose("advertising")
    def ads(text: str) -> None:
        ran.append(len(text))

    with pg.testing.capture() as violations:
        ads(content)
    assert ran == [len(content)]
    assert [(v.category, v.mode, v.via) for v in violations] == [(EMAIL, "trace", "argument")]


def test_off_mode_does_nothing(content: str) -> None:
    pg.configure("trust-center", mode="off")

    @pg.purpose("advertising")
    def ads(text: str) -> str:
        return "ran"

    with pg.testing.capture() as violations:
        assert ads(content) == "ran"
    assert violations == []


def test_allowed_flow_records_nothing(content: str) -> None:
    @pg.purpose("service.security")
    def spam_filter(text: str) -> bool:
        return "call me" in text

    with pg.testing.assert_no_violations():
        assert spam_filter(content)


def test_containers_one_level_deep_and_annotated_fields_are_checked(content: str) -> None:
    from dataclasses import dataclass

    @dataclass
    class Message:
        subject: str
        body: Annotated[str, pg.Category(EMAIL)]

    @pg.purpose("advertising")
    def ads(thing: Any) -> None:
        pass

    for thing in ([content], (1, content), {"k": content}, {content: 1}, {content}):
        with pytest.raises(pg.PurposeViolation):
            ads(thing)
    with pytest.raises(pg.PurposeViolation) as caught:
        ads(Message(subject="hi", body="plain body"))
    assert caught.value.violations[0].category == EMAIL
    ads([["nested two levels", 1]])


def test_returned_labelled_data_is_checked_against_the_purpose() -> None:
    # Labelled outside: labelling inside the purpose would be a read (via="source").
    line = pg.label("read from a mailbox", EMAIL)

    @pg.purpose("advertising")
    def ads_profile() -> str:
        return line

    with pytest.raises(pg.PurposeViolation) as caught:
        ads_profile()
    assert caught.value.violations[0].via == "return"


def test_generator_yields_are_checked() -> None:
    quoted = pg.label("quoted mail line", EMAIL)

    @pg.purpose("service.communications")
    def notices() -> Any:
        yield "plain notice"
        yield quoted

    gen = notices()
    assert next(gen) == "plain notice"
    with pytest.raises(pg.PurposeViolation) as caught:
        next(gen)
    assert caught.value.violations[0].via == "return"


def test_unknown_purpose_fails_when_decorating() -> None:
    with pytest.raises(pg.UnknownKeyError):
        pg.purpose("advertizing")
    with pytest.raises(pg.UnknownKeyError):

        @pg.purpose("service.nothing")
        def f() -> None:
            pass


def test_disabled_means_not_wrapped() -> None:
    def f() -> None:
        pass

    assert pg.purpose("advertising", enabled=False)(f) is f


def test_violation_never_holds_the_value() -> None:
    secret = pg.label(f"mail body {MARKER}", EMAIL, tenant="contoso")
    pg.configure("trust-center", mode="trace")

    @pg.purpose("advertising")
    def ads(text: str) -> None:
        pass

    with pg.testing.capture() as violations:
        ads(secret)
    (violation,) = violations
    assert MARKER not in repr(violation)
    assert MARKER not in str(violation.to_dict())
    pg.configure("trust-center", mode="enforce")
    with pytest.raises(pg.PurposeViolation) as caught:
        ads(secret)
    assert MARKER not in str(caught.value) and MARKER not in repr(caught.value.violations)
    assert violation.tenant == "contoso"


# -- modes: which setting wins (README, "The policy") ---------------------------------------

POLICY_WITH_RULE_MODE = """
[policy]
name = "modes"
{policy_mode}
[[rules]]
id = "ads-traced"
categories = ["customer_data"]
purposes = ["advertising"]
effect = "deny"
mode = "trace"
[[rules]]
id = "no-marketing"
categories = ["customer_data"]
purposes = ["marketing"]
effect = "deny"
"""


def _mode_of(
    purpose: str, monkeypatch: pytest.MonkeyPatch, *, env: str | None = None, **configure: Any
) -> str:
    if env is not None:
        monkeypatch.setenv("PURPOSEGUARD_MODE", env)
    else:
        monkeypatch.delenv("PURPOSEGUARD_MODE", raising=False)
    pg.configure(**configure)
    with pg.testing.capture() as violations:
        try:
            pg.check(pg.label("x", "customer_data"), purpose)
        except pg.PurposeViolation:
            pass
    return violations[0].mode if violations else "off"


def test_mode_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    with_mode = pg.Policy.from_toml(POLICY_WITH_RULE_MODE.format(policy_mode='mode = "off"'))
    without = pg.Policy.from_toml(POLICY_WITH_RULE_MODE.format(policy_mode=""))
    # 1. the rule's own mode beats everything
    assert _mode_of("advertising", monkeypatch, policy=with_mode, mode="enforce") == "trace"
    # 2. configure(mode=) beats the policy and the environment
    assert _mode_of("marketing.direct", monkeypatch, env="off", policy=with_mode, mode="trace") == "trace"
    # 3. the policy's [policy] mode beats the environment
    assert _mode_of("marketing.direct", monkeypatch, env="enforce", policy=with_mode) == "off"
    # 4. the environment
    assert _mode_of("marketing.direct", monkeypatch, env="trace", policy=without) == "trace"
    # 5. enforce
    assert _mode_of("marketing.direct", monkeypatch, policy=without) == "enforce"


def test_configure_trace_traces_every_rule_of_the_pack(content: str) -> None:
    pg.configure(policy="trust-center", mode="trace")
    with pg.testing.capture() as violations:
        for purpose in (
            "advertising",
            "marketing.direct",
            "disclosure.voluntary",
            "improvement",
            "service.communications",
        ):
            pg.check(content, purpose)
    assert len(violations) == 5 and {v.mode for v in violations} == {"trace"}


def test_invalid_mode_in_configure_is_rejected_and_keeps_the_old_guard() -> None:
    before = pg.get_guard()
    with pytest.raises(pg.PolicyError):
        pg.configure(mode="loud")
    assert pg.get_guard() is before


def test_bad_environment_mode_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PURPOSEGUARD_MODE", "sometimes")
    with pytest.raises(pg.PolicyError, match="PURPOSEGUARD_MODE='sometimes' is not a mode"):
        pg.Guard(pg.Policy.from_toml(POLICY_WITH_RULE_MODE.format(policy_mode="")))


# -- fail closed ------------------------------------------------------------------------------


class BrokenPolicy:
    """Stands in for a policy whose engine fails while deciding."""

    def __init__(self, real: pg.Policy) -> None:
        self._real = real

    def decide(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("engine failure")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_internal_error_denies_in_enforce_mode(content: str) -> None:
    guard = pg.configure("trust-center")
    guard.policy = BrokenPolicy(guard.policy)  # type: ignore[assignment]

    @pg.purpose("service.operations")
    def troubleshoot(text: str) -> str:
        return "ran"

    with pytest.raises(pg.PurposeViolation) as caught:
        troubleshoot(content)
    assert caught.value.violations[0].rule == "purposeguard.internal-error"


def test_internal_error_records_and_proceeds_in_trace_mode(
    content: str, caplog: pytest.LogCaptureFixture
) -> None:
    guard = pg.configure("trust-center", mode="trace")
    guard.policy = BrokenPolicy(guard.policy)  # type: ignore[assignment]

    @pg.purpose("service.operations")
    def troubleshoot(text: str) -> str:
        return "ran"

    with pg.testing.capture() as violations:
        assert troubleshoot(content) == "ran"
    assert violations[0].rule == "purposeguard.internal-error"
    assert "could not check" in caplog.text


# -- check(), on_violation, guards ------------------------------------------------------------


def test_check_uses_the_current_purpose(content: str) -> None:
    with pg.purpose("service.operations"):
        assert pg.check(content).allowed
    with pg.purpose("advertising"):
        with pytest.raises(pg.PurposeViolation):
            pg.check(content)
    with pytest.raises(pg.PurposeGuardError):
        pg.check(content)


def test_check_returns_the_denied_decision_in_trace_mode(content: str, trace_guard: pg.Guard) -> None:
    with pg.testing.capture() as violations:
        decision = pg.check(content, "marketing.direct")
    assert not decision.allowed and decision.rule == "no-direct-marketing"
    assert violations[0].function.endswith("test_check_returns_the_denied_decision_in_trace_mode")


def test_on_violation_callbacks_and_a_failing_callback(
    content: str, trace_guard: pg.Guard, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[pg.Violation] = []

    def broken(_: pg.Violation) -> None:
        raise ValueError("callback bug")

    stop_got = pg.on_violation(got.append)
    stop_broken = pg.on_violation(broken)
    try:
        pg.check(content, "advertising")
        pg.check(content, "advertising")
    finally:
        stop_got()
        stop_broken()
    assert len(got) == 2
    assert caplog.text.count("handler failed") == 1
    pg.check(content, "advertising")
    assert len(got) == 2


def test_own_guard_activated_for_a_block(content: str) -> None:
    guard = pg.Guard(pg.Policy.load("trust-center"), mode="trace")
    with guard.activate():
        with pg.testing.capture() as violations:
            pg.check(content, "advertising")
    assert violations[0].mode == "trace"
    with pytest.raises(pg.PurposeViolation):
        pg.check(content, "advertising")


def test_purpose_follows_threads_started_with_a_copied_context() -> None:
    seen = []

    def work() -> None:
        seen.append(pg.current_purpose())

    with pg.purpose("service.security"):
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(work,))
        thread.start()
        thread.join()
    assert seen == ["service.security"]


def test_a_sink_that_cannot_keep_records_denies_only_in_enforce_mode(content: str) -> None:
    from purposeguard._runtime import SinkFailure

    def lost(_: Any) -> None:
        raise SinkFailure("disk full")

    pg.configure("trust-center", mode="trace")

    @pg.transform("usage-aggregate")
    def size(text: str) -> int:
        return len(text)

    stop = pg.on_record(lost)
    try:
        pg.check(content, "advertising")  # trace: recorded (or not), never raised
        size(content)  # a declassification in trace mode proceeds too
        pg.configure("trust-center", mode="enforce")
        with pytest.raises(pg.PurposeViolation) as caught:  # still a violation (a 403 on the web)...
            pg.check(content, "improvement")
        assert isinstance(caught.value.__cause__, SinkFailure)  # ...caused by the lost record
        with pytest.raises(SinkFailure):
            size(content)  # an unrecorded declassification does not happen
    finally:
        stop()


class _Detached:
    """An object whose annotated field raises when read, like a detached ORM row."""

    body: Annotated[str, pg.Category(EMAIL)]

    @property  # type: ignore[no-redef]
    def body(self) -> str:
        raise RuntimeError("detached instance")


def test_a_failure_while_reading_labels_fails_closed_in_enforce_mode() -> None:
    @pg.purpose("service.operations")
    def troubleshoot(thing: Any) -> str:
        return "ran"

    with pytest.raises(pg.PurposeViolation) as caught:
        troubleshoot(_Detached())
    assert caught.value.violations[0].rule == "purposeguard.internal-error"
    with pytest.raises(pg.PurposeViolation):
        pg.check(_Detached(), "service.operations")


def test_a_failure_while_reading_labels_is_recorded_in_trace_mode(trace_guard: pg.Guard) -> None:
    @pg.purpose("service.operations")
    def troubleshoot(thing: Any) -> str:
        return "ran"

    with pg.testing.capture() as violations:
        assert troubleshoot(_Detached()) == "ran"
    assert [v.rule for v in violations] == ["purposeguard.internal-error"]


def test_a_decorator_below_that_changes_the_signature_is_respected() -> None:
    import functools

    def inject(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return fn("DB", *args, **kwargs)

        return wrapper

    @pg.purpose("service.operations")
    @inject
    def handler(db: str, x: int) -> tuple[str, int, str | None]:
        return db, x, pg.current_purpose()

    assert handler(1) == ("DB", 1, "service.operations")


def test_context_mode_precedence_reaches_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = pg.Policy.from_toml(
        '[[rules]]\nid = "r"\ncategories = ["usage_data"]\npurposes = ["service"]\neffect = "allow"\n'
    )
    monkeypatch.setenv("PURPOSEGUARD_CONTEXT_MODE", "enforce")
    assert pg.Guard(policy).context_mode == "enforce"
    assert pg.Guard(policy, context_mode="off").context_mode == "off"
    monkeypatch.delenv("PURPOSEGUARD_CONTEXT_MODE")
    assert pg.Guard(policy).context_mode == "trace"
    assert pg.Guard(pg.Policy.load("trust-center")).context_mode == "trace"


def test_purposeguard_policy_names_the_default_policy(tmp_path: Any) -> None:
    import subprocess
    import sys

    policy = tmp_path / "custom.toml"
    policy.write_text(
        '[taxonomy.purposes]\n"service.analytics" = "usage analytics"\n'
        '[[rules]]\nid = "analytics"\ncategories = ["usage_data"]\npurposes = ["service.analytics"]\neffect = "allow"\n'
    )
    code = (
        "import purposeguard as pg\n"
        "@pg.purpose('service.analytics')\n"
        "def count(x): return pg.current_purpose()\n"
        "print(count(pg.label(3, 'usage_data')))\n"
    )
    import os

    env = dict(os.environ, PURPOSEGUARD_POLICY=str(policy))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "service.analytics"


def test_with_purpose_in_a_zone_names_the_code_that_entered_it(content: str, trace_guard: pg.Guard) -> None:
    with pg.zone():
        pg.label("mail", EMAIL)
        with pg.testing.capture() as violations:
            with pg.purpose("advertising"):
                pass
    assert violations[0].via == "context"
    assert violations[0].function.endswith("test_with_purpose_in_a_zone_names_the_code_that_entered_it")


def test_an_activated_guard_decides_label_keys_only_for_its_own_context() -> None:
    import threading

    extended = pg.Policy.from_toml(
        '[taxonomy.categories]\n"customer_data.content.fax" = "fax pages"\n'
        '[[rules]]\nid = "r"\ncategories = ["customer_data"]\npurposes = ["service.operations"]\neffect = "allow"\n'
    )
    guard = pg.Guard(extended)
    inside = threading.Event()
    release = threading.Event()
    results: list[object] = []

    def activated() -> None:
        with guard.activate():
            results.append(pg.labels_of(pg.label("page", "customer_data.content.fax")))
            inside.set()
            release.wait(10)
            results.append(pg.labels_of(pg.label("page 2", "customer_data.content.fax")))

    worker = threading.Thread(target=activated)
    worker.start()
    assert inside.wait(10)
    try:
        with pytest.raises(pg.UnknownKeyError):  # this context's guard does not know the key
            pg.label("page", "customer_data.content.fax")
    finally:
        release.set()
        worker.join(10)
    assert results == [{"customer_data.content.fax"}, {"customer_data.content.fax"}]


async def test_a_callable_object_with_an_async_call_keeps_its_purpose() -> None:
    class Job:
        async def __call__(self) -> str | None:
            await asyncio.sleep(0)
            return pg.current_purpose()

    guarded = pg.purpose("service.operations")(Job())
    assert await guarded() == "service.operations"


def test_a_pass_through_records_one_violation_not_two(content: str, trace_guard: pg.Guard) -> None:
    @pg.purpose("advertising")
    def echo(text: str) -> str:
        return text

    @pg.purpose("advertising")
    def shout(text: str) -> str:
        return text.upper()  # a new value derived inside: a flow of its own

    with pg.testing.capture() as violations:
        echo(content)
    assert [v.via for v in violations] == ["argument"]
    with pg.testing.capture() as violations:
        shout(content)
    assert [v.via for v in violations] == ["argument", "return"]
