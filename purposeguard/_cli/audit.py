"""``purposeguard audit verify|tail|init|upgrade|migrate``: audit logs named by path or URL."""

from __future__ import annotations

import argparse
import json
import re
import time
from typing import Any

from .._storage import ChainKey, in_memory, is_postgres, is_url, load_key_file, redact
from ..audit import AuditEntry, AuditLog, default_key
from . import EXIT_INVALID, EXIT_USAGE, CommandError, shown

WHERE = "audit log: a file (SQLite), sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB"


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser("audit", help="verify or read an audit log")
    commands = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    audit.set_defaults(handler=lambda args: _missing(audit))

    verify = commands.add_parser(
        "verify",
        help="check the hash chain: exit 0 if intact, 1 naming the first bad record",
        description="Check the hash chain: exit 0 if intact (printing the count and the head "
        "hash), 1 naming the first altered, deleted, inserted, reordered or cut-off record. A log "
        "written with a key is verified with --key-file (or PURPOSEGUARD_AUDIT_KEY[_FILE]): then "
        "no one without the key can change it unnoticed. Without a key the chain proves integrity "
        "against accidents only: whoever can write the file can rewrite it whole. Store the "
        "printed head where the log's writer cannot change it and pass it back with --anchor to "
        "catch a rewrite or a roll-back to an older copy. A consent store's log also has its consent "
        "table checked against its consent records; the copies of a store's changes that an audit "
        "sink on another log keeps are not grants of that log (verify the store's log for those).",
    )
    verify.add_argument("path", help=WHERE)
    verify.add_argument(
        "--anchor",
        metavar="HASH",
        help="a head printed by an earlier verify: fail unless the chain still holds that record",
    )
    verify.add_argument(
        "--key-file",
        metavar="FILE",
        help="the file holding the audit key the log was written with (one line)",
    )
    verify.set_defaults(handler=_verify)

    tail = commands.add_parser("tail", help="print the last records")
    tail.add_argument("path", help=WHERE)
    tail.add_argument("-n", type=int, default=10, metavar="N", help="how many records (default 10)")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.set_defaults(handler=_tail)

    init = commands.add_parser(
        "init",
        help="create the audit log's tables (schema version included) in an empty database",
        description="Create purposeguard's tables in an empty database (or a new SQLite file). "
        "A database that already holds them is left as it is; one of another schema version is refused.",
    )
    init.add_argument("path", help=WHERE)
    init.set_defaults(handler=_init)

    upgrade = commands.add_parser(
        "upgrade",
        help="bring a PostgreSQL audit log's schema to this purposeguard's version",
        description="Apply the schema upgrades from the database's recorded version to this "
        "purposeguard's, one transaction per version; nothing changes if a step fails.",
    )
    upgrade.add_argument("url", help="postgresql://USER:PASSWORD@HOST:PORT/DB")
    upgrade.set_defaults(handler=_upgrade)

    migrate = commands.add_parser(
        "migrate",
        help="copy an SQLite audit log (chain and consents) into an empty PostgreSQL database",
        description="Verify the SQLite log, copy every record (same positions and hashes) and every "
        "consent grant into an empty PostgreSQL database in one transaction, then verify the copy "
        "and check it ends at the same head. Nothing is written if any step fails.",
    )
    migrate.add_argument("source", help="the SQLite audit log file")
    migrate.add_argument("destination", help="postgresql://USER:PASSWORD@HOST:PORT/DB (an empty database)")
    migrate.add_argument("--key-file", metavar="FILE", help="the audit key of a keyed log (one line)")
    migrate.set_defaults(handler=_migrate)


def _missing(parser: argparse.ArgumentParser) -> int:
    raise CommandError(f"{parser.prog}: missing action (verify, tail, init, upgrade or migrate)", EXIT_USAGE)


def _open(path: str, key: ChainKey | None = None) -> AuditLog:
    # Read-only: inspecting a log never creates or changes a file or a table.
    return AuditLog(path, readonly=True, key=key)


def _verify(args: argparse.Namespace) -> int:
    anchor = args.anchor
    if anchor is not None and not _HEX64.fullmatch(anchor):
        raise CommandError(
            f"purposeguard audit verify: --anchor takes a head hash (64 hex digits), not {anchor!r}",
            EXIT_USAGE,
        )
    named = shown(redact(args.path))
    key = load_key_file(args.key_file) if args.key_file is not None else default_key()
    with _open(args.path, key) as log:
        if log.keyed and key is None:
            raise CommandError(
                f"{named}: the chain is keyed (key id {log.storage.key_id}): pass --key-file FILE "
                "(or set PURPOSEGUARD_AUDIT_KEY_FILE) to verify it",
                EXIT_USAGE,
            )
        result = log.verify(anchor=anchor)
    if not result.ok:
        raise CommandError(f"{named}: NOT intact: {result.reason}", EXIT_INVALID)
    # The head stays the last word: scripts keep it as an anchor.
    if result.keyed:
        print(
            f"{named}: keyed chain (key id {key_id(key)}): intact, {result.count} records, head {result.head}"
        )
    else:
        print(
            f"{named}: unkeyed chain, integrity against accidents only (whoever can write the log could "
            f"rewrite it): intact, {result.count} records, head {result.head}"
        )
    return 0


def key_id(key: ChainKey | None) -> str:
    return key.key_id if key is not None else "none"


def _init(args: argparse.Namespace) -> int:
    if in_memory(args.path):
        # The library opens such a log for tests; here it would vanish as the command ends.
        raise CommandError(
            f"purposeguard audit init: {shown(args.path)} names an in-memory log, gone when the command "
            "ends: name a file (PATH or sqlite:///PATH) or a postgresql:// URL",
            EXIT_USAGE,
        )
    with AuditLog(args.path, create=True) as log:
        count = len(log)
    print(
        f"{shown(redact(args.path))}: audit log ready (schema version {_schema_version(args.path)}, "
        f"{count} records)"
    )
    return 0


def _schema_version(path: str) -> int:
    if is_postgres(path):
        from .._storage.postgres import SCHEMA_VERSION

        return SCHEMA_VERSION
    from .._storage import VERSION

    return int(VERSION)


def _upgrade(args: argparse.Namespace) -> int:
    if not is_postgres(args.url):
        raise CommandError(
            "purposeguard audit upgrade: takes a postgresql:// URL (SQLite logs need no upgrade)", EXIT_USAGE
        )
    from .._storage.postgres import upgrade

    start, end = upgrade(args.url)
    if start == end:
        print(f"{redact(args.url)}: schema version {end}, already current")
    else:
        print(f"{redact(args.url)}: schema upgraded from version {start} to {end}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    if is_url(args.source) and not args.source.startswith("sqlite:"):
        raise CommandError(
            "purposeguard audit migrate: the source is an SQLite file or sqlite:/// URL", EXIT_USAGE
        )
    if not is_postgres(args.destination):
        raise CommandError("purposeguard audit migrate: the destination is a postgresql:// URL", EXIT_USAGE)
    key = load_key_file(args.key_file) if args.key_file is not None else default_key()
    with AuditLog(args.source, create=False, readonly=True, key=key) as source:
        if source.keyed and key is None:
            raise CommandError(
                f"{args.source}: the chain is keyed (key id {source.storage.key_id}): pass --key-file FILE",
                EXIT_USAGE,
            )
        with source.storage.snapshot() as (head, stored):
            # Verify and copy one and the same snapshot of the source.
            checked: list[Any] = []

            def walk() -> Any:
                for entry in stored:
                    checked.append(entry)
                    yield entry

            from ..audit import _verify_chain

            result = _verify_chain(walk(), head, None, key, source.log_id)
            checked.extend(stored)
        if not result.ok:
            raise CommandError(f"{args.source}: NOT intact, not migrated: {result.reason}", EXIT_INVALID)
        grants = source.storage.grants()
        log_id = source.log_id
    from .._storage.postgres import PostgresStorage

    destination = PostgresStorage(args.destination, create=True, key=key)
    try:
        copied = destination.import_chain(checked, grants, log_id=log_id)
        with AuditLog(storage=destination) as copy:
            verified = copy.verify(anchor=result.head)
    finally:
        destination.close()
    shown = redact(args.destination)
    if not verified.ok or verified.head != result.head:
        raise CommandError(f"{shown}: the copy does NOT verify: {verified.reason}", EXIT_INVALID)
    print(
        f"{shown}: copied {copied} records and {len(grants)} consent grants from {args.source}; "
        f"intact, {verified.count} records, head {verified.head} (the source's)"
    )
    return 0


_HEX64 = re.compile(r"[0-9a-fA-F]{64}")

# More records than any terminal shows; past SQLite's LIMIT, a number is an error.
MAX_TAIL = 1_000_000_000


def _tail(args: argparse.Namespace) -> int:
    if not 0 <= args.n <= MAX_TAIL:
        raise CommandError(f"purposeguard audit tail: -n must be 0 to {MAX_TAIL}", EXIT_USAGE)
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
    try:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.timestamp))
    except (OverflowError, OSError, ValueError):
        stamp = repr(entry.timestamp)
    keys = _SUMMARY_FIELDS.get(entry.kind) or tuple(
        k for k in sorted(entry.data) if k not in ("kind", "timestamp")
    )
    parts = []
    for key in keys:
        value = entry.data.get(key)
        if value is None:
            continue
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        parts.append(f"{shown(str(key))}={shown(str(value), quote=True)}")
    if entry.data.get("escaped"):
        parts.append("(escaped)")
    if isinstance(entry.data.get("unreadable"), str):
        parts.append(f"({shown(entry.data['unreadable'])})")
    return f"{entry.seq:>6}  {stamp}  {shown(entry.kind):<16} {' '.join(parts)}"
