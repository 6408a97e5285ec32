"""``purposeguard report``: the data-use report from an audit log and a code scan."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import EXIT_USAGE, CommandError, shown

PROG = "purposeguard report"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write the data-use report (HTML and Markdown) from an audit log and a code scan",
        description="Write report.html (self-contained) and report.md: a data map of categories x "
        "purposes as the code declares them and as runtime observed them, violations by rule, "
        "declassifications, consents, disclosures and the policy's decision matrix.",
    )
    parser.add_argument(
        "--audit",
        metavar="PATH",
        help="audit log: a file (SQLite) or a URL (sqlite:///PATH, postgresql://...), from pg.configure(audit=...)",
    )
    parser.add_argument(
        "--key-file",
        metavar="FILE",
        help="the file holding the audit key a keyed log was written with (one line); "
        "default: PURPOSEGUARD_AUDIT_KEY or PURPOSEGUARD_AUDIT_KEY_FILE",
    )
    parser.add_argument("--source", metavar="PATH", help="source tree (or .py file) to scan; never imported")
    parser.add_argument(
        "--policy",
        default=None,
        help="pack name or TOML file the log was written under (default: PURPOSEGUARD_POLICY, else trust-center)",
    )
    parser.add_argument(
        "--out", metavar="DIR", required=True, help="directory to write report.html and report.md into"
    )
    parser.add_argument("--title", default="Data-use report", help="the report's title")
    parser.set_defaults(handler=_report)


def readable_file(path: str, what: str, prog: str) -> Path:
    """A path that exists, is a file and can be read, or a one-line CommandError."""
    file = Path(path)
    if not file.exists():
        raise CommandError(f"{prog}: no such {what}: {path}")
    if file.is_dir():
        raise CommandError(f"{prog}: {what} is a directory: {path}")
    if not file.is_file():
        # A FIFO or a device: opening it would block or never end.
        raise CommandError(f"{prog}: {what} is not a regular file: {path}")
    if not os.access(file, os.R_OK):
        raise CommandError(f"{prog}: cannot read {what}: {path}")
    return file


def readable_source(path: str, prog: str) -> Path:
    source = Path(path)
    if not source.exists():
        raise CommandError(f"{prog}: no such source path: {path}")
    if not os.access(source, os.R_OK) or (source.is_dir() and not os.access(source, os.X_OK)):
        raise CommandError(f"{prog}: cannot read source path: {path}")
    if not source.is_dir() and (source.suffix != ".py" or not source.is_file()):
        # A FIFO or a device named x.py is not a file to read: it would block or never end.
        raise CommandError(f"{prog}: --source is neither a directory nor a .py file: {path}")
    return source


def scan_source(path: str, prog: str) -> Any:
    """Scan ``path``, naming every skipped file on stderr (one line each)."""
    from .._scan import scan

    result = scan(readable_source(path, prog))
    for skipped, reason in result.skipped:
        print(f"{prog}: skipped {skipped}: {reason}", file=sys.stderr)
    return result


def _key(key_file: str | None) -> Any:
    """The audit key of ``--key-file``, else the environment's (None without
    one); a key file that cannot be used is a one-line error."""
    from .._storage import load_key_file
    from ..audit import AuditError, default_key

    try:
        return load_key_file(key_file) if key_file is not None else default_key()
    except AuditError as error:
        raise CommandError(f"{PROG}: {error}") from None


def _say_if_other_policy(records: list[Any], policy: Any) -> None:
    """A log written under another policy than the one the report assumed:
    its matrix and verdicts would be that policy's. Said once, on stderr; the
    report is still written."""
    known = {
        *policy.rules_by_id,
        *policy.transforms,
        "transport.require_tls",
        "disclosure-tenant-boundary",
    }
    for record in records:
        rule = record.data.get("rule") if isinstance(record.data, Mapping) else None
        if (
            isinstance(rule, str)
            and rule not in known
            and not rule.startswith(("purposeguard.", "disclosure."))
        ):
            print(
                f"{PROG}: the log names rule {shown(rule)}, which policy {shown(policy.name)} does not define: "
                "pass --policy with the policy the log was written under",
                file=sys.stderr,
            )
            return


def _report(args: argparse.Namespace) -> int:
    from .._policy import Policy
    from ..audit import AuditError
    from ..report import Entry, Integrity, build_report, read_verified_audit, write_files

    if args.audit is None and args.source is None:
        raise CommandError(f"{PROG}: give --audit PATH, --source PATH or both (see --help)", EXIT_USAGE)
    if args.key_file is not None and args.audit is None:
        raise CommandError(f"{PROG}: --key-file goes with --audit PATH (see --help)", EXIT_USAGE)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"{PROG}: --out is not a directory: {args.out}")
    given = args.policy is not None
    policy = Policy.load(args.policy or os.environ.get("PURPOSEGUARD_POLICY") or "trust-center")
    records: list[Entry] = []
    checked: Integrity | None = None
    if args.audit is not None:
        from .._storage import is_url, redact

        if not is_url(args.audit):
            readable_file(args.audit, "audit log", PROG)
        key = _key(args.key_file)
        try:
            records, checked = read_verified_audit(args.audit, key=key)
        except AuditError as error:
            if is_url(args.audit) or "audit key" in error.reason:
                # The error names the database (without its password) and the cause.
                raise CommandError(f"{PROG}: {error}") from None
            prefix = "not a purposeguard audit log: "
            if error.reason.startswith(prefix):
                detail = error.reason[len(prefix) :]
                raise CommandError(f"{PROG}: not a purposeguard audit log: {args.audit} ({detail})") from None
            # A log that is locked, damaged or of another version is still a log: say what is wrong.
            raise CommandError(f"{PROG}: cannot read the audit log {args.audit}: {error.reason}") from None
        args.audit = redact(args.audit)
    if not given and (checked is None or checked.ok):
        # (A log that is not intact is said to be so instead: its rules may be forged.)
        _say_if_other_policy(records, policy)
    scanned = scan_source(args.source, PROG) if args.source is not None else None
    data = build_report(
        records, scanned, policy, title=args.title, audit_source=args.audit, audit_integrity=checked
    )
    try:
        html_path, md_path = write_files(out, data)
    except OSError as error:
        raise CommandError(
            f"{PROG}: cannot write the report to {args.out}: {error.strerror or error}"
        ) from None
    if checked is not None and not checked.ok:
        # The report is written whole and says so at the top; the exit status
        # tells a script that what it shows cannot be trusted.
        if "verifying it needs its key" in checked.reason:
            raise CommandError(
                f"{PROG}: the audit log {args.audit} is keyed: pass --key-file FILE (or set "
                f"PURPOSEGUARD_AUDIT_KEY_FILE) to verify it (the report in {args.out} says it is unverified)"
            )
        raise CommandError(
            f"{PROG}: the audit log {args.audit} is NOT intact: {checked.reason} "
            f"(the report in {args.out} says so)"
        )
    audit, code = data.audit, data.code
    scanned_text = f", {code.files} files scanned, {len(code.skipped)} skipped" if code.scanned else ""
    chain = f", audit chain intact ({checked.count} records)" if checked is not None else ""
    print(
        f"wrote {shown(str(html_path))} and {shown(str(md_path))}: {audit.violations} violations in "
        f"{len(data.violations)} rules, {audit.declassifications} declassifications, "
        f"{audit.consents} consent changes, {audit.disclosures} disclosures{scanned_text}{chain}"
    )
    return 0
