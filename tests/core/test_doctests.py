"""Every docstring example in the installed package runs and shows what it says.

This is what ``pytest --doctest-modules`` does, pointed at the modules as
they are imported (``purposeguard.integrations.httpx``): collecting the
source folders by path would import ``integrations/`` a second time under
another name, a second copy of its patches and state.
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil

import pytest

# purposeguard.integrations is installed from a folder of its own.
ROOTS = ("purposeguard", "purposeguard.integrations")
# Running this one would run the command line.
NOT_IMPORTED = {"purposeguard.__main__"}


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
    module = importlib.import_module(name)
    found = doctest.DocTestFinder(exclude_empty=True).find(module, name)
    # The finder also follows names a module imports from elsewhere; each example belongs to the module defining it.
    return [test for test in found if test.examples and _defined_in(test, module.__file__)]


def _defined_in(test: doctest.DocTest, filename: str | None) -> bool:
    return test.filename is None or filename is None or test.filename == filename


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    output = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in _doctests(name):
        # As a user types them: without the module's own `from __future__ import annotations`.
        runner.run(test, compileflags=0, out=output.write)
    assert runner.failures == 0, output.getvalue()


def test_the_walk_finds_the_package_and_its_examples() -> None:
    """The examples above are really collected: the modules with examples, and enough of them."""
    assert {"purposeguard._guarded", "purposeguard.integrations.httpx", "purposeguard.integrations.celery"} <= set(
        MODULES
    )
    with_examples = {name for name in MODULES if _doctests(name)}
    assert {"purposeguard._guarded", "purposeguard._policy", "purposeguard.integrations.logging"} <= with_examples
    examples = sum(len(test.examples) for name in with_examples for test in _doctests(name))
    assert examples >= 40
