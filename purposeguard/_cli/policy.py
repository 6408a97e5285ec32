"""``purposeguard policy show|check`` and ``purposeguard explain``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .._policy import Policy
from .._table import matrix_data
from . import CommandError


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
        "--consents", default=None, metavar="PATH", help="an audit/consent SQLite file whose grants apply"
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
        + policy.default
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
    modes = _modes_line(policy) + "; - = unset"
    if policy.extends:
        modes += (
            "\nextends: "
            + " <- ".join(policy.extends)
            + " (rules merged by id; from = where each rule was written)"
        )
    if fmt == "markdown":
        return "\n".join(
            [
                f"## Data-use table: {policy.name}",
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
            f"Data-use table: {policy.name}",
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
        f"{args.file}: valid policy {policy.name!r}: {_count(len(policy.rules), 'rule')}, "
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
                f"purposeguard explain: unknown {kind} {key!r} (see: purposeguard policy show)", 2
            )
    consents = None
    if args.consents is not None:
        from pathlib import Path

        from ..consent import ConsentStore

        if not Path(args.consents).exists():
            raise CommandError(f"purposeguard explain: no such consent file: {args.consents}")
        if not Path(args.consents).is_file():
            raise CommandError(f"purposeguard explain: not a file: {args.consents}")
        consents = ConsentStore(args.consents, policy=policy)
    print(policy.explain(args.category, args.purpose, tenant=args.tenant, consents=consents))
    return 0
