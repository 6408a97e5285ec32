"""Every docstring example in the installed package runs and shows what it says.

This is what ``pytest --doctest-modules`` does, pointed at the modules as
they are imported (``purposeguard.integrations.httpx``): collecting the
source folders by path would import ``integrations/`` a second time under
another name, a second copy of its patches and state.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import io
import os
import pkgutil
import subprocess
import sys
from typing import Any

import pytest

# purposeguard.integrations is installed from a folder of its own.
ROOTS = ("purposeguard", "purposeguard.integrations")
# Running this one would run the command line.
NOT_IMPORTED = {"purposeguard.__main__"}
# Examples that start a service run in a process of their own, which takes the service with it when it exits.
NEEDS_SERVICE = {"purposeguard.integrations.spark"}


def _module_names() -> list[str]:
    names = set(ROOTS)
    for root in ROOTS:
        # Only the package's own folder: nothing else that shares its __path__.
        folder = importlib.import_module(root).__path__[0]
        for info in pkgutil.walk_packages([folder], f"{root}."):
            names.add(info.name)
    return sorted(names - NOT_IMPORTED)


MODULES = _module_names()


def _doctests(name: str) -> list[doctest.DocTest]:
    """The module's own examples: its docstring, and those of the functions
    and classes it defines (with their methods), as the doctest finder
    collects them, but looking only at what the module defines."""
    module = importlib.import_module(name)
    found = doctest.DocTestFinder(recurse=False, exclude_empty=True).find(module, name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    for attribute, value in list(vars(module).items()):
        if _defined_here(value, name):
            found += finder.find(value, f"{name}.{attribute}", module=module)
    return [test for test in found if test.examples]


def _defined_here(value: Any, module: str) -> bool:
    try:
        unwrapped = inspect.unwrap(value)
        return (inspect.isroutine(unwrapped) or inspect.isclass(unwrapped)) and getattr(
            unwrapped, "__module__", None
        ) == module
    except Exception:
        # A lazy object (Django's settings) raises on any look instead of
        # saying what it is; it holds no example.
        return False


def _run_examples(name: str) -> tuple[int, str]:
    output = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in _doctests(name):
        # As a user types them: without the module's own `from __future__ import annotations`.
        runner.run(test, compileflags=0, out=output.write)
    return runner.failures, output.getvalue()


@pytest.mark.parametrize("name", sorted(set(MODULES) - NEEDS_SERVICE))
def test_docstring_examples_run(name: str) -> None:
    failures, report = _run_examples(name)
    assert failures == 0, report


@pytest.mark.services
@pytest.mark.parametrize("name", sorted(NEEDS_SERVICE))
def test_docstring_examples_that_start_a_service_run(name: str) -> None:
    env = dict(
        os.environ,
        SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_SUBMIT_ARGS="--conf spark.ui.enabled=false --conf spark.driver.bindAddress=127.0.0.1 pyspark-shell",
    )
    done = subprocess.run(
        [sys.executable, __file__, name], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert done.stdout.startswith("failures: 0"), done.stdout[-4000:]


def test_the_walk_finds_the_package_and_its_examples() -> None:
    """The examples above are really collected: the modules with examples, and enough of them."""
    assert {
        "purposeguard._guarded",
        "purposeguard.integrations.httpx",
        "purposeguard.integrations.celery",
    } <= set(MODULES)
    assert NEEDS_SERVICE <= set(MODULES)
    with_examples = {name for name in MODULES if _doctests(name)}
    assert {
        "purposeguard._guarded",
        "purposeguard._policy",
        "purposeguard.integrations.logging",
    } <= with_examples
    examples = sum(len(test.examples) for name in with_examples for test in _doctests(name))
    assert examples >= 40


if __name__ == "__main__":
    failed, text = _run_examples(sys.argv[1])
    print(f"failures: {failed}\n{text}")
