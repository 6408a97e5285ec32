"""``purposeguard fides export``: a Fides system manifest from a static scan."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .._files import write_replacing
from . import EXIT_USAGE, CommandError
from .report import scan_source

PROG = "purposeguard fides export"


def register(subparsers: Any) -> None:
    fides = subparsers.add_parser("fides", help="interoperate with Fides (fideslang)")
    commands = fides.add_subparsers(dest="fides_command", metavar="ACTION")
    fides.set_defaults(handler=_missing)

    export = commands.add_parser(
        "export",
        help="write a Fides system manifest (privacy declarations) from a static scan of the code",
    )
    export.add_argument("--source", metavar="PATH", required=True, help="source tree (or .py file) to scan")
    export.add_argument("--out", metavar="FILE", help="file to write (default: standard output)")
    export.add_argument(
        "--format", choices=("yaml", "json"), default=None, help="default: json for a .json --out, else yaml"
    )
    export.add_argument(
        "--policy", default="trust-center", help="pack name or TOML file (default: trust-center)"
    )
    export.add_argument(
        "--system-key", default=None, help="the system's fides_key (default: from the source name)"
    )
    export.add_argument("--name", default=None, help="the system's name")
    export.set_defaults(handler=_export)


def _missing(args: argparse.Namespace) -> int:
    raise CommandError("purposeguard fides: missing action (export)", EXIT_USAGE)


def _export(args: argparse.Namespace) -> int:
    from .._errors import UnknownKeyError
    from .._policy import Policy
    from .._scan import Finding
    from ..fides import check_fides_key, fideslang_taxonomy, system_manifest

    if args.system_key is not None:
        try:
            check_fides_key(args.system_key, "--system-key")
        except ValueError as error:
            raise CommandError(f"{PROG}: {error}", EXIT_USAGE) from None

    def unknown(finding: Finding, error: UnknownKeyError) -> None:
        # A typo in one decorator must not cost the whole manifest: say where, go on.
        print(f"{PROG}: skipped {finding.path}:{finding.line}: {error.reason}", file=sys.stderr)

    try:
        import yaml  # type: ignore[import-untyped]

        fideslang_taxonomy()  # before scanning: a missing extra is the one line to print

        policy = Policy.load(args.policy)
        scanned = scan_source(args.source, PROG)
        manifest = system_manifest(
            scanned, policy=policy, fides_key=args.system_key, name=args.name, on_unknown=unknown
        )
    except ImportError:
        raise CommandError(f"{PROG}: needs fideslang: pip install 'purposeguard[fides]'") from None
    fmt = args.format or ("json" if args.out and args.out.lower().endswith(".json") else "yaml")
    if fmt == "json":
        text = json.dumps(manifest, indent=2) + "\n"
    else:
        text = yaml.safe_dump(manifest, sort_keys=False, indent=2)
    if args.out is None:
        print(text, end="")
        return 0
    out = Path(args.out)
    if out.is_dir():
        raise CommandError(f"{PROG}: --out is a directory: {args.out}")
    try:
        write_replacing(out, text)
    except OSError as error:
        raise CommandError(f"{PROG}: cannot write {args.out}: {error.strerror or error}") from None
    declarations = manifest["system"][0]["privacy_declarations"]
    print(
        f"wrote {out}: system {manifest['system'][0]['fides_key']!r} with {len(declarations)} privacy declarations"
    )
    return 0
