"""The purposeguard pytest plugin: a fixture, a marker and a strict mode.

pytest loads it through the ``pytest11`` entry point whenever purposeguard
is installed (with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``, load it with
``-p purposeguard``). Loading it changes nothing by itself:

- the ``purposeguard`` fixture acts only in the tests that request it: an
  isolated :class:`~purposeguard.Guard` in enforce mode, active for the test,
  with every violation and record captured::

      def test_ads_never_see_mail(purposeguard):
          with pytest.raises(pg.PurposeViolation):
              recommend_ads(pg.label("hi", "customer_data.content.email"))
          purposeguard.assert_violation(purpose="advertising")

  The guard is active in the test's context: asyncio tasks the test starts
  and threads started with a copied context (``contextvars.copy_context()``,
  ``pg.wrap_executor``) use it; a bare ``threading.Thread`` runs under the
  process-wide guard instead. Its violations are still captured.

- ``@pytest.mark.purpose("service.operations")`` runs one test under a purpose;
- strict mode fails every test during which a violation was recorded, in any
  mode (a trace-mode violation raises nothing, so it would otherwise pass).
  It is off unless ``--purposeguard-strict`` is given or the ini file sets
  ``purposeguard_strict = true``; ``@pytest.mark.purposeguard_allow_violations``
  exempts a test that records violations on purpose.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._policy import Policy
    from ._records import Record, Violation
    from ._runtime import Guard

__all__ = ["PurposeGuardFixture"]

_STRICT_PLUGIN = "purposeguard-strict"
_ALLOW_MARKER = "purposeguard_allow_violations"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("purposeguard", "purposeguard: runtime purpose enforcement")
    group.addoption(
        "--purposeguard-strict",
        action="store_true",
        default=False,
        dest="purposeguard_strict",
        help="fail any test during which a purpose violation was recorded (in any mode)",
    )
    parser.addini(
        "purposeguard_strict",
        type="bool",
        default=False,
        help="same as --purposeguard-strict",
    )
    parser.addini(
        "purposeguard_policy",
        default="trust-center",
        help="policy (pack name or TOML path) the purposeguard fixture loads (default: trust-center)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "purpose(key): run the test under this purposeguard purpose (pg.purpose)"
    )
    config.addinivalue_line(
        "markers",
        f"{_ALLOW_MARKER}: purposeguard strict mode does not fail this test for violations it records",
    )
    if config.getoption("purposeguard_strict") or config.getini("purposeguard_strict"):
        config.pluginmanager.register(_StrictMode(), _STRICT_PLUGIN)


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.pluginmanager.has_plugin(_STRICT_PLUGIN):
        return "purposeguard: strict (a test that records a purpose violation fails)"
    return None


# -- the marker ------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    marker = item.get_closest_marker("purpose")
    if marker is None:
        return (yield)
    if len(marker.args) != 1 or marker.kwargs or not isinstance(marker.args[0], str):
        pytest.fail('use @pytest.mark.purpose("purpose.key") with exactly one key', pytrace=False)
    from ._errors import UnknownKeyError
    from ._guarded import purpose

    try:
        declared = purpose(marker.args[0])
    except UnknownKeyError as error:
        pytest.fail(f"@pytest.mark.purpose: {error}", pytrace=False)
    # Entered here, in the thread and context the test body runs in; an async
    # test's task copies this context, so it sees the purpose too.
    with declared:
        return (yield)


# -- the fixture -----------------------------------------------------------------------


class PurposeGuardFixture:
    """What the ``purposeguard`` fixture gives a test.

    ``guard`` is active for the test (it wins over any ``pg.configure()``),
    in enforce mode; ``violations`` and ``records`` receive everything
    recorded while the test runs, from any thread or task.
    """

    def __init__(self, policy: str | Policy) -> None:
        self.violations: list[Violation] = []
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._activation: Any = None
        self._unsubscribe: list[Any] = []
        self.guard: Guard = self.configure(policy)

    def configure(
        self,
        policy: str | Policy | None = None,
        *,
        mode: str = "enforce",
        context_mode: str | None = None,
        consents: Any = None,
    ) -> Guard:
        """Replace the test's guard (another policy, mode or consent store)."""
        from ._policy import Policy
        from ._runtime import Guard

        if policy is None:
            loaded = self.guard.policy
        elif isinstance(policy, Policy):
            loaded = policy
        else:
            loaded = Policy.load(policy)
        guard = Guard(loaded, mode=mode, context_mode=context_mode, consents=consents)
        self._deactivate()
        activation = guard.activate()
        activation.__enter__()
        self._activation = activation
        self.guard = guard
        return guard

    @property
    def policy(self) -> Policy:
        return self.guard.policy

    def clear(self) -> None:
        """Forget what was captured so far."""
        with self._lock:
            self.violations.clear()
            self.records.clear()

    def assert_no_violations(self) -> None:
        """Fail listing them if any violation was recorded."""
        if self.violations:
            raise AssertionError(_describe(self.violations))

    def assert_violation(
        self,
        *,
        category: str | None = None,
        purpose: str | None = None,
        rule: str | None = None,
        via: str | None = None,
    ) -> Violation:
        """Return the first recorded violation matching every given field, or fail."""
        wanted = {"category": category, "purpose": purpose, "rule": rule, "via": via}
        for violation in list(self.violations):
            if all(v is None or getattr(violation, k) == v for k, v in wanted.items()):
                return violation
        shown = ", ".join(f"{k}={v!r}" for k, v in wanted.items() if v is not None) or "any"
        recorded = _describe(self.violations) if self.violations else "no violation was recorded"
        raise AssertionError(f"no violation matching {shown}; {recorded}")

    # -- lifecycle ------------------------------------------------------------------

    def _start(self) -> None:
        from ._runtime import subscribe_scoped

        self._unsubscribe = [
            subscribe_scoped("violations", self._add_violation),
            subscribe_scoped("records", self._add_record),
        ]

    def _add_violation(self, violation: Violation) -> None:
        with self._lock:
            self.violations.append(violation)

    def _add_record(self, record: Record) -> None:
        with self._lock:
            self.records.append(record)

    def _deactivate(self) -> None:
        activation, self._activation = self._activation, None
        if activation is not None:
            try:
                activation.__exit__(None, None, None)
            except ValueError:
                # Torn down in another context than the one it was set up in
                # (an unusual event-loop setup): make sure it is not left active.
                from ._runtime import _ACTIVE

                _ACTIVE.set(None)

    def _stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        self._deactivate()


@pytest.fixture
def purposeguard(request: pytest.FixtureRequest) -> Iterator[PurposeGuardFixture]:
    """An isolated guard in enforce mode, active for this test, capturing violations."""
    fixture = PurposeGuardFixture(request.config.getini("purposeguard_policy") or "trust-center")
    fixture._start()
    try:
        yield fixture
    finally:
        fixture._stop()


# -- strict mode -----------------------------------------------------------------------


_SEEN = pytest.StashKey[list[Any]]()
_REPORTED = pytest.StashKey[int]()


def _describe(violations: list[Any]) -> str:
    lines = [
        f"  {v.category} for {v.purpose} (rule {v.rule or 'default'}, via {v.via}, "
        f"mode {v.mode}, in {v.function})"
        for v in violations
    ]
    return (
        f"{len(violations)} purpose violation(s) recorded:\n"
        + "\n".join(lines)
        + f"\n(a test that records violations on purpose: @pytest.mark.{_ALLOW_MARKER})"
    )


class _StrictMode:
    """Registered only when strict mode is on."""

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[Any]:
        from ._runtime import subscribe_scoped

        seen: list[Any] = []
        lock = threading.Lock()

        def add(violation: Any) -> None:
            with lock:
                seen.append(violation)

        item.stash[_SEEN] = seen
        item.stash[_REPORTED] = 0
        unsubscribe = subscribe_scoped("violations", add)
        try:
            return (yield)
        finally:
            unsubscribe()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report: pytest.TestReport = yield
        seen = item.stash.get(_SEEN, None)
        if seen is None or report.when == "setup" or item.get_closest_marker(_ALLOW_MARKER):
            return report
        reported = item.stash[_REPORTED]
        new = list(seen[reported:])
        if not new:
            return report
        item.stash[_REPORTED] = reported + len(new)
        text = "purposeguard strict mode: " + _describe(new)
        if report.passed and not hasattr(report, "wasxfail"):
            report.outcome = "failed"
            report.longrepr = text
        else:
            report.sections.append(("purposeguard", text))
        return report
