"""``purposeguard policy show|check`` and ``purposeguard explain``."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from typing import Any

from .._policy import Policy
from .._table import matrix_data
from . import EXIT_USAGE, CommandError, shown


def register(subparsers: Any) -> None:
    policy = subparsers.add_parser("policy", help="show or check a policy")
    policy_commands = policy.add_subparsers(dest="policy_command", metavar="ACTION")
    policy.set_defaults(handler=lambda args: _missing(policy))

    show = policy_commands.add_parser("show", help="print a policy's decision matrix")
    show.add_argument(
        "file", nargs="?", default=None, help="policy TOML file or pack name (default: trust-center)"
    )
    show.add_argument("--policy", default=None, help="the same, as an option")
    show.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    show.set_defaults(handler=_show)

    check = policy_commands.add_parser("check", help="validate a policy file")
    check.add_argument("file", help="policy TOML file or pack name")
    check.set_defaults(handler=_check)

    explain = subparsers.add_parser("explain", help="which rule decides a category for a purpose, and why")
    explain.add_argument("category")
    explain.add_argument("purpose")
    explain.add_argument("--tenant", default=None)
    explain.add_argument("--policy", default="trust-center", help="pack name or TOML file")
    explain.add_argument(
        "--consents",
        default=None,
        metavar="PATH",
        help="an audit/consent store (SQLite file or URL) whose grants apply; opened read-only",
    )
    explain.add_argument(
        "--key-file",
        metavar="FILE",
        help="the audit key a keyed consent store was written with (one line); "
        "default: PURPOSEGUARD_AUDIT_KEY or PURPOSEGUARD_AUDIT_KEY_FILE",
    )
    explain.set_defaults(handler=_explain)


def _missing(parser: argparse.ArgumentParser) -> int:
    raise CommandError(f"{parser.prog}: missing action (show or check)", 2)


def _modes_line(policy: Policy) -> str:
    return (
        "modes: a rule's own mode (context_mode for zone-only flows) first, then configure(), "
        f"the policy (mode {policy.mode or 'unset'}, context_mode {policy.context_mode or 'unset'}), "
        "PURPOSEGUARD_MODE / PURPOSEGUARD_CONTEXT_MODE, then enforce / trace; "
        "configure(mode=...) also caps every rule"
    )


def _cell_text(entry: dict[str, Any]) -> str:
    if entry["allowed"]:
        return "yes" + ("*" if entry["obligations"] else "")
    return "consent" if entry["consentable"] else "no"


def render(policy: Policy, fmt: str) -> str:
    data = matrix_data(policy)
    if fmt == "json":
        return json.dumps(data, indent=2)
    # Free text from the policy file (its name, where a rule came from) is
    # shown escaped: a control character or line break in it cannot act on
    # the terminal or forge a line. JSON escapes its own.
    name = shown(policy.name)
    columns = data["columns"]
    head = ["use (purpose)"] + [c["title"] for c in columns]
    body = [[row["purpose"]] + [row[c["category"]] for c in columns] for row in data["rows"]]
    categories = list(policy.taxonomy.categories)
    full_head = ["purpose"] + categories
    full_body = [
        [purpose] + [_cell_text(data["matrix"][purpose][c]) for c in categories]
        for purpose in policy.taxonomy.purposes
    ]
    legend = (
        "yes* = allowed with obligations; consent = denied unless the tenant consents; default: "
        + shown(policy.default)
    )
    rules_head = ["rule", "effect", "categories", "purposes", "mode", "context_mode", "from"]
    rules_body = [
        [
            r["id"],
            r["effect"] + (" (consentable)" if r["consentable"] else ""),
            ", ".join(r["categories"]),
            ", ".join(r["purposes"]),
            r["mode"] or "-",
            r["context_mode"] or "-",
            r["from"] or "-",
        ]
        for r in data["rules"]
    ]
    body = [[shown(str(cell)) for cell in row] for row in body]
    full_body = [[shown(str(cell)) for cell in row] for row in full_body]
    rules_body = [[shown(str(cell)) for cell in row] for row in rules_body]
    head = [shown(str(cell)) for cell in head]
    full_head = [shown(str(cell)) for cell in full_head]
    modes = _modes_line(policy) + "; - = unset"
    if policy.extends:
        modes += (
            "\nextends: "
            + " <- ".join(shown(source) for source in policy.extends)
            + " (rules merged by id; from = where each rule was written)"
        )
    if fmt == "markdown":
        return "\n".join(
            [
                f"## Data-use table: {name}",
                "",
                _markdown(head, body),
                "",
                "## Every category",
                "",
                _markdown(full_head, full_body),
                "",
                legend,
                "",
                "## Rules",
                "",
                _markdown(rules_head, rules_body),
                "",
                modes,
            ]
        )
    return "\n".join(
        [
            f"Data-use table: {name}",
            _table(head, body),
            "",
            "Every category",
            _table(full_head, full_body),
            legend,
            "",
            "Rules",
            _table(rules_head, rules_body),
            modes,
        ]
    )


def _markdown(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _table(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [head] + body) for i in range(len(head))]

    def line(row: list[str]) -> str:
        return "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in body])


def _show(args: argparse.Namespace) -> int:
    if args.file is not None and args.policy is not None and args.file != args.policy:
        raise CommandError("purposeguard policy show: give the policy once (FILE or --policy)", 2)
    print(render(Policy.load(args.file or args.policy or "trust-center"), args.format))
    return 0


def _check(args: argparse.Namespace) -> int:
    policy = Policy.load(args.file)
    print(
        f"{shown(args.file)}: valid policy {shown(policy.name, quote=True)}: {_count(len(policy.rules), 'rule')}, "
        f"{_count(len(policy.transforms), 'transform')}, {_count(len(policy.destinations), 'destination')}"
    )
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _explain(args: argparse.Namespace) -> int:
    policy = Policy.load(args.policy)
    # A key the taxonomy does not define is a bad argument (exit 2), not bad input.
    for kind, key, known in (
        ("category", args.category, policy.taxonomy.categories),
        ("purpose", args.purpose, policy.taxonomy.purposes),
    ):
        if key not in known:
            raise CommandError(
                f"purposeguard explain: unknown {kind} {key!r} (see: purposeguard policy show)",
                EXIT_USAGE,
            )
    if args.key_file is not None and args.consents is None:
        raise CommandError(
            "purposeguard explain: --key-file goes with --consents PATH (see --help)", EXIT_USAGE
        )
    if args.consents is None:
        print(_explained(policy, args, None))
        return 0
    with _consents(args, policy) as consents:
        print(_explained(policy, args, consents))
    return 0


@contextlib.contextmanager
def _consents(args: argparse.Namespace, policy: Policy) -> Iterator[Any]:
    """The consent store ``--consents`` names, opened read-only: explaining a
    decision never creates a file or a table, nor writes to a store."""
    from pathlib import Path

    from .._storage import AuditError, is_url, load_key_file
    from ..audit import AuditLog, default_key
    from ..consent import ConsentStore

    where = args.consents
    if not is_url(where):
        path = Path(where)
        if not path.exists():
            raise CommandError(f"purposeguard explain: no such consent file: {shown(where)}")
        if not path.is_file():
            raise CommandError(f"purposeguard explain: not a regular file: {shown(where)}")
    key = load_key_file(args.key_file) if args.key_file is not None else default_key()
    with AuditLog(where, create=False, readonly=True, key=key) as log:
        if log.keyed and key is None:
            raise CommandError(
                f"purposeguard explain: the consent store {shown(where)} is keyed (key id "
                f"{log.storage.key_id}): pass --key-file FILE (or set PURPOSEGUARD_AUDIT_KEY_FILE) "
                "to prove its grants",
                EXIT_USAGE,
            )
        try:
            # Read and proven once up front: a store whose grants cannot be
            # trusted is an error here, not a silent "no consent".
            log.storage.grants()
        except AuditError as error:
            raise CommandError(f"purposeguard explain: consent store {error}") from None
        yield ConsentStore(log, policy=policy)


def _explained(policy: Policy, args: argparse.Namespace, consents: Any) -> str:
    """``policy.explain`` as lines a terminal shows as they are: the rule's
    description (free text) escaped whole, so a line break in it cannot
    forge a line, and every other line with its control characters escaped."""
    text = policy.explain(args.category, args.purpose, tenant=args.tenant, consents=consents)
    rule = policy.cell(args.category, args.purpose)[1]
    raw = f"  rule says: {rule.description}" if rule is not None and rule.description else None
    if raw is None or raw not in text:
        return _lines(text)
    before, after = text.split(raw, 1)
    assert rule is not None
    return _lines(before) + f"  rule says: {shown(rule.description)}" + _lines(after)


def _lines(text: str) -> str:
    return "\n".join(shown(line) for line in text.split("\n"))
