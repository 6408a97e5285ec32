"""``purposeguard audit verify PATH`` and ``purposeguard audit tail PATH``."""

from __future__ import annotations

import argparse
import json
import re
import time
from typing import Any

from ..audit import AuditEntry, AuditLog
from ..cli import EXIT_INVALID, EXIT_USAGE, CommandError


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser("audit", help="verify or read an audit log")
    commands = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    audit.set_defaults(handler=lambda args: _missing(audit))

    verify = commands.add_parser(
        "verify",
        help="check the hash chain: exit 0 if intact, 1 naming the first bad record",
        description="Check the hash chain: exit 0 if intact (printing the count and the head "
        "hash), 1 naming the first altered, deleted, inserted or reordered record. The chain is "
        "not keyed: whoever can write the file can rewrite it whole and it verifies again. Store "
        "the printed head where the log's writer cannot change it and pass it back with --anchor "
        "to catch such a rewrite.",
    )
    verify.add_argument("path", help="audit log file (SQLite)")
    verify.add_argument(
        "--anchor",
        metavar="HASH",
        help="a head printed by an earlier verify: fail unless the chain still holds that record",
    )
    verify.set_defaults(handler=_verify)

    tail = commands.add_parser("tail", help="print the last records")
    tail.add_argument("path", help="audit log file (SQLite)")
    tail.add_argument("-n", type=int, default=10, metavar="N", help="how many records (default 10)")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.set_defaults(handler=_tail)


def _missing(parser: argparse.ArgumentParser) -> int:
    raise CommandError(f"{parser.prog}: missing action (verify or tail)", EXIT_USAGE)


def _open(path: str) -> AuditLog:
    # Read-only: inspecting a log never creates or changes a file.
    return AuditLog(path, readonly=True)


def _verify(args: argparse.Namespace) -> int:
    anchor = args.anchor
    if anchor is not None and not _HEX64.fullmatch(anchor):
        raise CommandError(
            f"purposeguard audit verify: --anchor takes a head hash (64 hex digits), not {anchor!r}", EXIT_USAGE
        )
    with _open(args.path) as log:
        result = log.verify(anchor=anchor)
    if not result.ok:
        raise CommandError(f"{args.path}: NOT intact: {result.reason}", EXIT_INVALID)
    print(f"{args.path}: intact, {result.count} records, head {result.head}")
    return 0


_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def _tail(args: argparse.Namespace) -> int:
    if args.n < 0:
        raise CommandError("purposeguard audit tail: -n must be 0 or more", EXIT_USAGE)
    with _open(args.path) as log:
        entries = log.tail(args.n) if args.n else []
    for entry in entries:
        print(json.dumps(entry.to_dict(), sort_keys=True) if args.json else _line(entry))
    return 0


_SUMMARY_FIELDS = {
    "violation": ("category", "purpose", "rule", "via", "mode", "function", "tenant"),
    "declassification": ("transform", "to", "function", "tenant"),
    "consent": ("action", "tenant", "purpose", "categories", "actor"),
    "disclosure": ("case", "tenant", "authority", "fields", "notified"),
}


def _line(entry: AuditEntry) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.timestamp))
    keys = _SUMMARY_FIELDS.get(entry.kind) or tuple(k for k in sorted(entry.data) if k not in ("kind", "timestamp"))
    parts = []
    for key in keys:
        value = entry.data.get(key)
        if value is None:
            continue
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        parts.append(f"{key}={value}")
    return f"{entry.seq:>6}  {stamp}  {entry.kind:<16} {' '.join(parts)}"
