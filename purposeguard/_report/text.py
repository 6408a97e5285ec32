"""What both renderers do to a name before escaping it for their format."""

from __future__ import annotations

import re
from collections.abc import Sequence

# Characters that would act rather than show: C0 and C1 controls (a terminal
# obeys ESC sequences in a `cat`ted report), zero-width and bidirectional
# formatting (they reorder or hide what a reader sees), line and paragraph
# separators. Shown as escapes instead, so a name reads as it is. Tab, line
# feed and carriage return are left to each format.
_ACTING = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


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
