"""@pg.purpose on a class is a clear TypeError."""

from __future__ import annotations

import pytest

import purposeguard as pg


def test_decorating_a_class_raises_a_type_error_naming_the_class() -> None:
    """The class is not silently turned into a function."""
    with pytest.raises(TypeError, match="not the class Campaign"):

        @pg.purpose("advertising")
        class Campaign:
            pass


def test_decorating_its_methods_still_works() -> None:
    """Methods, classmethods and staticmethods can be decorated one by one."""

    class Campaign:
        @pg.purpose("advertising")
        def run(self) -> str | None:
            return pg.current_purpose()

    assert Campaign().run() == "advertising"
