"""What both renderers do to a name before escaping it for their format."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar

# Characters that would act rather than show: C0 and C1 controls (a terminal
# obeys ESC sequences in a `cat`ted report), zero-width and bidirectional
# formatting (they reorder or hide what a reader sees), line and paragraph
# separators. Shown as escapes instead, so a name reads as it is. Tab, line
# feed and carriage return are left to each format. Lone surrogates (a file
# name or title that was not UTF-8) cannot be written as UTF-8 at all.
_ACTING = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ud800-\udfff\ufeff]"
)


class Markup:
    """Text already escaped for one format, made only by that format's own helpers.

    Each format subclasses it with a private key only its module holds, so no code
    outside that module can wrap a plain ``str`` as if it were escaped.
    """

    __slots__ = ("_markup",)
    # The format's own class (what equals it) and how its values are made.
    _format: ClassVar[type[Markup]]
    _made_by: ClassVar[str]

    def __init__(self, markup: str, key: object) -> None:
        if key is not self._key():
            name = self._format.__name__
            raise TypeError(f"{name} is made by {self._made_by}, never from a str")
        self._markup = markup

    def __init_subclass__(cls) -> None:
        # A format class names how it is made; its subclasses (an HTML cell) stay that format.
        if "_made_by" in cls.__dict__:
            cls._format = cls

    @classmethod
    def _key(cls) -> object:
        raise NotImplementedError

    def __str__(self) -> str:
        return self._markup

    def __repr__(self) -> str:
        return f"{self._format.__name__}({self._markup!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, self._format) and other._markup == self._markup

    def __hash__(self) -> int:
        return hash(self._markup)


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: object) -> str:
    """``str(value)`` with every character that would act instead of show replaced by its escape."""
    return _ACTING.sub(_shown, str(value))


def tenants_text(tenants: Sequence[str]) -> str:
    """How many tenants, and the first five of them."""
    # A count alone says nothing about whom; a long list says too much to read.
    if not tenants:
        return "none recorded"
    shown = ", ".join(tenants[:5])
    more = f" and {len(tenants) - 5} more" if len(tenants) > 5 else ""
    return f"{len(tenants)}: {shown}{more}"
