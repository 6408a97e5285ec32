"""``purposeguard demo``: the example mail service, guarded, in one command.

Starts the example mail service (the private ``purposeguard._demo``) with
uvicorn on a loopback port, with an SQLite audit log and a consent store in
the output directory, drives the scenario of ``purposeguard._demo.scenario``
through real HTTP,
prints one line per step and a table of what the policy allowed and denied,
then writes the data-use report next to the audit log. Exit 0 when every
outcome is what the policy says, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import tempfile
import time
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import EXIT_INVALID, CommandError

PROG = "purposeguard demo"
AUDIT_FILE = "audit.db"
POLICY = "trust-center"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the example mail service and show what the policy allows and denies",
        description="Start the example mail service on a free 127.0.0.1 port, drive every use of the "
        "data-use promise through real HTTP, print what the policy decided, and write the audit log and "
        "the data-use report (HTML and Markdown). Exit 0 when every outcome is what the policy says.",
    )
    parser.add_argument(
        "--mode",
        choices=("enforce", "trace"),
        default="enforce",
        help="enforce: denied flows are blocked (403); trace: they proceed and are recorded (default: enforce)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="directory for audit.db, report.html and report.md (created if missing; default: a new temporary directory)",
    )
    parser.add_argument(
        "--open-report", action="store_true", help="open the HTML report in a browser at the end"
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=0,
        metavar="N",
        help="port on 127.0.0.1 for the service (default: a free one)",
    )
    parser.set_defaults(handler=_demo)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 0 and 65535, not {port}")
    return port


# -- the output directory ----------------------------------------------------------------


def prepare_out(out: str | None) -> Path:
    """The directory to write into: made fresh, or checked and created. One-line errors."""
    if out is None:
        return Path(tempfile.mkdtemp(prefix="purposeguard-demo-"))
    directory = Path(out).expanduser()
    if directory.exists():
        if not directory.is_dir():
            raise CommandError(f"{PROG}: --out is not a directory: {out}")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise CommandError(f"{PROG}: cannot write to --out directory: {out}")
    else:
        parent = directory.absolute().parent
        if not parent.is_dir():
            raise CommandError(f"{PROG}: the parent directory of --out does not exist: {parent}")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise CommandError(f"{PROG}: cannot create --out directory (parent not writable): {out}")
        try:
            directory.mkdir()
        except OSError as error:
            raise CommandError(
                f"{PROG}: cannot create --out directory {out}: {error.strerror or error}"
            ) from None
    _clear_previous_log(directory / AUDIT_FILE)
    return directory


def _clear_previous_log(path: Path) -> None:
    """A previous demo's audit log is replaced; any other file there is left alone."""
    if not path.exists():
        return
    from ..audit import AuditError, AuditLog

    try:
        with AuditLog(path, create=False, readonly=True):
            pass
    except AuditError as error:
        if "locked by another connection" in error.reason:
            # Still in use (a demo still running?): a log, not something else.
            raise CommandError(f"{PROG}: {path}: {error.reason}") from None
        raise CommandError(
            f"{PROG}: {path} exists and is not a purposeguard audit log; not overwriting it (choose another --out)"
        ) from None
    except OSError:
        raise CommandError(
            f"{PROG}: {path} exists and is not a purposeguard audit log; not overwriting it (choose another --out)"
        ) from None
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            Path(f"{path}{suffix}").unlink()
        except FileNotFoundError:
            pass
        except OSError as error:
            raise CommandError(
                f"{PROG}: cannot replace the previous audit log {path}: {error.strerror}"
            ) from None


# -- output -------------------------------------------------------------------------------


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _progress(index: int, total: int, outcome: Any) -> None:
    step = outcome.step
    verdict = outcome.decision if step.purpose else ("ok" if outcome.ok else "failed")
    mismatch = "" if outcome.ok else f"  << NOT WHAT THE POLICY SAYS: {outcome.problem}"
    print(f"[{index:2d}/{total}] {step.use:<40} HTTP {outcome.status}  {verdict}{mismatch}", flush=True)


def result_table(outcomes: Sequence[Any]) -> str:
    """The final table: one row per use the policy decides."""
    rows = [
        [
            o.step.use,
            o.step.purpose,
            o.step.data_text,
            o.decision + ("" if o.ok else "  << NOT AS POLICY"),
            o.rule,
            o.mode,
        ]
        for o in outcomes
        if o.step.purpose is not None
    ]
    return _table(["step", "use", "data", "decision", "rule", "mode"], rows)


# -- the command -------------------------------------------------------------------------------


def _load_service() -> Any:
    try:
        return importlib.import_module("purposeguard._demo")
    except ImportError as error:
        missing = f" (missing: {error.name})" if error.name else ""
        raise CommandError(
            f"{PROG}: the example service needs the demo extra: pip install 'purposeguard[demo]'{missing}"
        ) from None


def _demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    mailservice = _load_service()
    from .. import _configure, _runtime
    from .. import audit as audit_module
    from ..consent import ConsentStore

    scenario = importlib.import_module("purposeguard._demo.scenario")

    if args.port:
        # Before anything is written: a port in use is the likeliest failure.
        _probe_port(mailservice, args.port)
    out = prepare_out(args.out)
    audit_path = out / AUDIT_FILE
    previous = _runtime.get_guard()
    log = audit_module.AuditLog(audit_path)
    consents = ConsentStore(log)
    outcomes: list[Any] = []
    try:
        _configure.configure(POLICY, mode=args.mode, audit=log, consents=consents)
        with contextlib.ExitStack() as stack:
            try:
                # uvicorn's own log lines would interleave with the table; failures show as outcomes.
                running = stack.enter_context(
                    mailservice.running(port=args.port, consents=consents, log_level="critical")
                )
            except mailservice.PortInUse:
                raise CommandError(_port_message(args.port)) from None
            print(
                f"purposeguard demo: the example mail service on {running.url}, policy {POLICY}, mode {args.mode}",
                flush=True,
            )
            outcomes = scenario.run(running.url, outside=running.outside, progress=_progress)
    finally:
        audit_module.detach()
        consents.close()
        log.close()
        restored = _configure.configure(
            previous.policy, mode=previous.mode_setting, context_mode=previous.context_mode_setting
        )
        restored.consents = previous.consents

    print()
    print(result_table(outcomes))
    if args.mode == "trace":
        print(
            "\ntrace mode: denied flows went ahead and were recorded; --mode enforce blocks them (HTTP 403)."
        )
    print()
    print(f"audit log: {audit_path} ({_verified(audit_path)})")
    html_path = _write_report(out, audit_path, Path(mailservice.__file__).parent)
    if html_path is not None:
        print(f"report:    {html_path} (and {html_path.with_suffix('.md').name})")
        if args.open_report:
            opened = webbrowser.open(html_path.as_uri())
            if not opened:
                print(f"{PROG}: no browser could be opened; open {html_path} yourself", file=sys.stderr)
    decided = [o for o in outcomes if o.step.purpose is not None]
    wrong = [o for o in outcomes if not o.ok]
    elapsed = time.monotonic() - started
    if wrong:
        print(
            f"{PROG}: {len(wrong)} of {len(outcomes)} steps are not what the policy says "
            f"(first: {wrong[0].step.use}: {wrong[0].problem}); {elapsed:.1f} s",
            file=sys.stderr,
        )
        return EXIT_INVALID
    print(f"all {len(decided)} uses are what the policy says ({args.mode} mode); {elapsed:.1f} s")
    return 0


def _port_message(port: int) -> str:
    return f"{PROG}: port {port} on 127.0.0.1 is in use or not available; pick another --port or leave it out"


def _probe_port(mailservice: Any, port: int) -> None:
    try:
        mailservice.bind(port).close()
    except mailservice.PortInUse:
        raise CommandError(_port_message(port)) from None


def _verified(path: Path) -> str:
    from ..audit import AuditError, AuditLog

    try:
        with AuditLog(path, create=False, readonly=True) as log:
            result = log.verify()
    except AuditError as error:
        return f"cannot be read: {error}"
    if result.ok:
        return f"{result.count} records, hash chain verified"
    return f"{result.count} records, DOES NOT VERIFY: {result.reason}"


def _write_report(out: Path, audit_path: Path, source: Path) -> Path | None:
    try:
        from ..report import write_report
    except ImportError:
        print(f"{PROG}: the report module is not available; no report written", file=sys.stderr)
        return None
    try:
        html_path, _ = write_report(
            out,
            audit=audit_path,
            source=source,
            policy=POLICY,
            title="purposeguard demo: the example mail service",
        )
    except OSError as error:
        raise CommandError(f"{PROG}: cannot write the report to {out}: {error.strerror or error}") from None
    return Path(html_path)
