"""The pytest plugin: fixture, marker, strict mode, and that loading it changes nothing else."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# pytest accepts pytest_plugins only in a test module or the root conftest.
pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

MARKER = "PG-PLUGIN-MARKER-7f3a9c"

TRACE_VIOLATION = f"""
import purposeguard as pg

@pg.purpose("advertising")
def recommend_ads(text):
    return len(text)

def record_one_trace_violation():
    pg.configure("trust-center", mode="trace")
    try:
        return recommend_ads(pg.label("{MARKER}", "customer_data.content.email"))
    finally:
        pg.configure("trust-center")
"""


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    pytester.makepyfile(helpers=TRACE_VIOLATION)
    pytester.syspathinsert()
    return pytester


def test_fixture_gives_an_enforcing_guard_that_captures(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import pytest
        import purposeguard as pg
        from helpers import recommend_ads

        def test_blocked(purposeguard):
            assert purposeguard.guard.mode == "enforce"
            assert pg.get_guard() is purposeguard.guard
            with pytest.raises(pg.PurposeViolation):
                recommend_ads(pg.label("x", "customer_data.content.email"))
            v = purposeguard.assert_violation(purpose="advertising", via="argument")
            assert v.category == "customer_data.content.email"
            with pytest.raises(AssertionError, match="1 purpose violation"):
                purposeguard.assert_no_violations()
            purposeguard.clear()
            purposeguard.assert_no_violations()
        """
    )
    inner.runpytest_inprocess().assert_outcomes(passed=1)


def test_fixture_wins_over_a_global_trace_configuration(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import pytest
        import purposeguard as pg
        from helpers import recommend_ads

        def test_global_trace_is_ignored(purposeguard):
            pg.configure("trust-center", mode="trace")
            try:
                with pytest.raises(pg.PurposeViolation):
                    recommend_ads(pg.label("x", "customer_data.content.email"))
            finally:
                pg.configure("trust-center")

        def test_configure_switches_the_test_guard(purposeguard):
            purposeguard.configure(mode="trace")
            assert recommend_ads(pg.label("abc", "customer_data.content.email")) == 3
            assert purposeguard.violations[0].mode == "trace"
        """
    )
    inner.runpytest_inprocess().assert_outcomes(passed=2)


def test_fixture_guard_is_gone_after_the_test(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import purposeguard as pg

        seen = {}

        def test_first(purposeguard):
            seen["guard"] = purposeguard.guard

        def test_second():
            assert pg.get_guard() is not seen["guard"]
        """
    )
    inner.runpytest_inprocess().assert_outcomes(passed=2)


def test_fixture_policy_comes_from_the_ini(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".toml",
        mine="""
        [policy]
        name = "allow-all"
        default = "allow"
        """,
    )
    pytester.makeini(INI + "purposeguard_policy = mine.toml\n")
    pytester.makepyfile(
        """
        def test_policy(purposeguard):
            assert purposeguard.policy.name == "allow-all"
        """
    )
    pytester.runpytest_inprocess().assert_outcomes(passed=1)


def test_marker_runs_sync_and_async_tests_under_the_purpose(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import pytest
        import purposeguard as pg

        @pytest.mark.purpose("service.operations")
        def test_sync():
            assert pg.current_purpose() == "service.operations"

        @pytest.mark.purpose("service.security")
        async def test_async():
            assert pg.current_purpose() == "service.security"

        def test_unmarked():
            assert pg.current_purpose() is None

        @pytest.mark.purpose("advertising")
        def test_marked_test_is_checked(purposeguard):
            with pytest.raises(pg.PurposeViolation):
                pg.check(pg.label("x", "customer_data.content.email"))
        """
    )
    inner.runpytest_inprocess("--strict-markers").assert_outcomes(passed=4)


def test_marker_with_an_unknown_purpose_fails_the_test(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import pytest

        @pytest.mark.purpose("no.such.purpose")
        def test_typo():
            pass

        @pytest.mark.purpose()
        def test_missing():
            pass
        """
    )
    result = inner.runpytest_inprocess()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*no.such.purpose*"])


TRACE_TEST = """
from helpers import record_one_trace_violation

def test_records_a_trace_violation():
    assert record_one_trace_violation() > 0

def test_clean():
    pass
"""


def test_without_strict_a_trace_violation_passes(inner: pytest.Pytester) -> None:
    inner.makepyfile(TRACE_TEST)
    inner.runpytest_inprocess().assert_outcomes(passed=2)


@pytest.mark.parametrize("how", ["option", "ini"])
def test_strict_fails_a_test_that_recorded_a_violation(inner: pytest.Pytester, how: str) -> None:
    inner.makepyfile(TRACE_TEST)
    if how == "ini":
        inner.makeini(INI + "purposeguard_strict = true\n")
        result = inner.runpytest_inprocess()
    else:
        result = inner.runpytest_inprocess("--purposeguard-strict")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*purposeguard: strict*",
            "*purposeguard strict mode: 1 purpose violation(s) recorded*",
            "*customer_data.content.email for advertising (rule *, via argument, mode trace*",
            "*FAILED*test_records_a_trace_violation*",
        ]
    )
    assert MARKER not in result.stdout.str()


def test_strict_sees_violations_in_other_threads(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import threading
        from helpers import record_one_trace_violation

        def test_thread():
            t = threading.Thread(target=record_one_trace_violation)
            t.start(); t.join()
        """
    )
    inner.runpytest_inprocess("--purposeguard-strict").assert_outcomes(failed=1)


def test_strict_respects_the_allow_marker_and_reports_teardown(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import pytest
        from helpers import record_one_trace_violation

        @pytest.mark.purposeguard_allow_violations
        def test_expected():
            record_one_trace_violation()

        @pytest.fixture
        def leaks_at_teardown():
            yield
            record_one_trace_violation()

        def test_teardown(leaks_at_teardown):
            pass

        def test_already_failing():
            record_one_trace_violation()
            assert False, "own failure"
        """
    )
    result = inner.runpytest_inprocess("--purposeguard-strict")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_teardown*", "*own failure*"])


def test_strict_with_the_fixture_fails_even_when_enforce_raised(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import pytest
        import purposeguard as pg
        from helpers import recommend_ads

        def test_caught(purposeguard):
            with pytest.raises(pg.PurposeViolation):
                recommend_ads(pg.label("x", "customer_data.content.email"))
        """
    )
    inner.runpytest_inprocess("--purposeguard-strict").assert_outcomes(failed=1)


def _run_subprocess(
    pytester: pytest.Pytester, *args: str, autoload: bool
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    if autoload:
        env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    else:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=pytester.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_entry_point_loads_it_and_dash_p_opts_in_without_autoload(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        """
        def test_uses_fixture(purposeguard):
            assert purposeguard.guard.mode == "enforce"
        """
    )
    autoloaded = _run_subprocess(pytester, autoload=True)
    assert autoloaded.returncode == 0, autoloaded.stdout + autoloaded.stderr
    without = _run_subprocess(pytester, autoload=False)
    assert without.returncode != 0 and "fixture 'purposeguard' not found" in without.stdout
    opted_in = _run_subprocess(pytester, "-p", "purposeguard", autoload=False)
    assert opted_in.returncode == 0, opted_in.stdout + opted_in.stderr


def test_loading_the_plugin_changes_no_other_test(inner: pytest.Pytester) -> None:
    """The same suite, with trace violations, has the same outcomes with the plugin on and off."""
    inner.makepyfile(
        """
        import purposeguard as pg
        from helpers import record_one_trace_violation

        def test_purpose_is_unset():
            assert pg.current_purpose() is None

        def test_trace_violation_passes():
            record_one_trace_violation()

        def test_fails():
            assert False
        """
    )
    with_plugin = inner.runpytest_inprocess()
    without_plugin = inner.runpytest_inprocess("-p", "no:purposeguard")
    with_plugin.assert_outcomes(passed=2, failed=1)
    without_plugin.assert_outcomes(passed=2, failed=1)
    assert "purposeguard: strict" not in with_plugin.stdout.str()
