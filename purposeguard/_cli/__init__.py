"""Sub-commands of the ``purposeguard`` command line, one module each.

What every command shares lives here, below ``purposeguard.cli`` (which
finds the commands at start-up), so no command imports the entry point.
"""

from __future__ import annotations

__all__ = ["EXIT_INVALID", "EXIT_OK", "EXIT_USAGE", "CommandError", "shown"]

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A command's one-line failure, with the exit code to use."""

    def __init__(self, message: str, code: int = EXIT_INVALID) -> None:
        super().__init__(message)
        self.code = code


def shown(text: str, *, quote: bool = False) -> str:
    """``text`` as one line that cannot pass for anything else: control and
    other unprintable characters (newlines, terminal escapes, lone
    surrogates) and backslashes escaped; with ``quote``, a value holding a
    space, ``=`` or ``"`` in double quotes, so it cannot forge another field."""
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(
                f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
            )
    line = "".join(out)
    if quote and (not line or any(c in line for c in ' ="')):
        line = '"' + line.replace('"', '\\"') + '"'
    return line
