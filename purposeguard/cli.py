"""The ``purposeguard`` command line.

Exit codes: 0 success, 1 invalid input (a policy that does not load, an audit
log that does not verify), 2 usage error. Every failure is one line on
stderr; never a traceback. Sub-commands live in ``purposeguard._cli.*``
modules, each with a ``register(subparsers)`` function, found at start-up.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from . import _cli
from ._cli import EXIT_INVALID, EXIT_OK, EXIT_USAGE, CommandError
from ._errors import PurposeGuardError

__all__ = ["EXIT_INVALID", "EXIT_OK", "EXIT_USAGE", "CommandError", "main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CommandError(f"{self.prog}: {message} (see --help)", EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="purposeguard",
        description="Runtime purpose enforcement for data-use promises.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(_cli.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{_cli.__name__}.{module_info.name}")
        register: Callable[[Any], None] | None = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.version:
            from ._version import __version__

            print(f"purposeguard {__version__}")
            return EXIT_OK
        handler = getattr(args, "handler", None)
        if handler is None:
            raise CommandError("purposeguard: missing command (try: purposeguard --help)", EXIT_USAGE)
        result = handler(args)
        return int(result or 0)
    except CommandError as error:
        _fail(str(error))
        return error.code
    except PurposeGuardError as error:
        _fail(f"purposeguard: {error}")
        return EXIT_INVALID
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: not an error of ours.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OSError as error:
        _fail(f"purposeguard: {error.strerror or error}: {error.filename or ''}".rstrip(": "))
        return EXIT_INVALID
    except KeyboardInterrupt:
        _fail("purposeguard: interrupted")
        return 130
    except ImportError as error:
        # A missing extra: the message names what to install.
        _fail(f"purposeguard: {error}")
        return EXIT_INVALID
    except Exception as error:  # noqa: BLE001 - the CLI never shows a traceback
        _fail(f"purposeguard: internal error: {type(error).__name__}: {error}")
        return EXIT_INVALID


def _fail(message: str) -> None:
    # One line, and one a terminal shows as it is: a message may quote a
    # path or a name an attacker chose (a terminal escape, a lone surrogate).
    line = " ".join(message.split())
    print("".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in line), file=sys.stderr)


def run() -> NoReturn:  # console-script entry point
    sys.exit(main())
