"""Sub-commands of the ``purposeguard`` command line, one module each.

What every command shares lives here, below ``purposeguard.cli`` (which
finds the commands at start-up), so no command imports the entry point.
"""

from __future__ import annotations

__all__ = ["EXIT_INVALID", "EXIT_OK", "EXIT_USAGE", "CommandError"]

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A command's one-line failure, with the exit code to use."""

    def __init__(self, message: str, code: int = EXIT_INVALID) -> None:
        super().__init__(message)
        self.code = code
