"""``purposeguard demo``: the README's first command, from the installed package."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard._demo import features, scenario
from purposeguard.audit import AuditLog
from purposeguard.cli import main

EXECUTABLE = Path(sys.executable).with_name("purposeguard")
DENIED_RULES = (
    "no-content-in-service-communications",
    "no-advertising",
    "no-direct-marketing",
    "improvement-only-with-consent",
    "no-voluntary-disclosure",
)


def run_demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BROWSER": "true"}
    env.pop("PURPOSEGUARD_MODE", None)
    return subprocess.run(
        [str(EXECUTABLE), "demo", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def table_rows(stdout: str) -> dict[str, str]:
    """The final table's rows, by step."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("step "))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        rows[line.split("  ")[0]] = line
    return rows


def one_line_error(captured: Any) -> str:
    err = captured.err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return str(err)


def test_demo_in_enforce_mode_blocks_every_denied_use_and_writes_log_and_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_demo("--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    stdout = result.stdout
    assert "[ 1/23]" in stdout and "[23/23]" in stdout
    rows = table_rows(stdout)
    assert len(rows) == 14
    for rule in DENIED_RULES:
        assert any(rule in row and "denied, blocked (403)" in row for row in rows.values()), rule
    assert "allowed (consent)" in rows["product analytics, tenant consented"]
    # Looking the mailbox up loads its owner's entry (customer data); the house ad still runs.
    assert "allowed" in rows["house ad, no customer data"]
    assert "refused: redirect_first" in rows["compelled disclosure, no redirect"]
    assert "allowed, obligations met" in rows["compelled disclosure after redirect"]
    assert all(row.rstrip().endswith(("enforce", "any")) for row in rows.values())
    assert f"audit log: {out / 'audit.db'}" in stdout and "hash chain verified" in stdout
    assert f"report:    {out / 'report.html'}" in stdout
    assert (out / "report.md").exists()
    with AuditLog(out / "audit.db", create=False, readonly=True) as log:
        assert log.verify().ok
        kinds = [e.kind for e in log.records()]
    assert kinds.count("violation") == 5 and kinds.count("consent") == 1 and kinds.count("disclosure") == 1
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "no-advertising" in html and "LE-2026-0042" in html


def test_demo_in_trace_mode_lets_denied_flows_proceed_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "trace"
    result = run_demo("--mode", "trace", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = table_rows(result.stdout)
    for rule in DENIED_RULES:
        assert any(
            rule in row and "denied, proceeded" in row and row.endswith("trace") for row in rows.values()
        ), rule
    assert "trace mode: denied flows went ahead and were recorded" in result.stdout
    # Trace mode records the most; none of it, nor the output, holds a mail or document body.
    bodies = [step.body["body"] for step in scenario.STEPS if step.body and "body" in step.body]
    assert len(bodies) >= 5
    written = b"".join(p.read_bytes() for p in out.iterdir())
    for body in bodies:
        assert body not in result.stdout and body not in result.stderr
        assert body.encode() not in written


def test_demo_without_out_writes_into_a_new_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    assert main(["demo"]) == 0
    [made] = list(tmp_path.glob("purposeguard-demo-*"))
    assert (made / "audit.db").exists() and (made / "report.html").exists()
    assert str(made / "report.html") in capsys.readouterr().out


def test_open_report_opens_the_html_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    opened: list[str] = []

    def open_browser(url: str, *args: Any, **kwargs: Any) -> bool:
        opened.append(url)
        return True

    monkeypatch.setattr("webbrowser.open", open_browser)
    assert main(["demo", "--out", str(tmp_path), "--open-report"]) == 0
    assert opened == [(tmp_path / "report.html").as_uri()]


def test_a_second_run_replaces_the_previous_audit_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--out", str(tmp_path)]) == 0
    with AuditLog(tmp_path / "audit.db", create=False, readonly=True) as log:
        first = len(log)
    assert main(["demo", "--out", str(tmp_path)]) == 0
    with AuditLog(tmp_path / "audit.db", create=False, readonly=True) as log:
        assert len(log) == first and log.verify().ok


def test_an_outcome_the_policy_does_not_allow_fails_the_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A service that sends mail to advertising where it claims spam filtering: exit 1."""

    @pg.purpose("advertising")
    def spam_score(subject: str, body: str) -> float:
        return 0.0

    monkeypatch.setattr(features, "spam_score", spam_score)
    assert main(["demo", "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "NOT AS POLICY" in captured.out
    error = one_line_error(captured)
    assert error.startswith("purposeguard demo: ") and "not what the policy says" in error
    assert "deliver mail to megan" in error


def test_port_in_use_is_one_line_and_nonzero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["demo", "--port", str(port), "--out", str(tmp_path / "out")]) == 1
    assert f"port {port} on 127.0.0.1 is in use" in one_line_error(capsys.readouterr())
    assert not (tmp_path / "out").exists()


def test_a_given_free_port_is_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["demo", "--port", str(port), "--out", str(tmp_path)]) == 0
    assert f"http://127.0.0.1:{port}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "{tmp}/missing/out"], "parent directory of --out does not exist"),
        (["--out", "{tmp}/file"], "--out is not a directory"),
        (["--out", "/proc/purposeguard-demo-out"], "cannot create --out directory"),
        (["--out", "{tmp}/foreign"], "is not a purposeguard audit log"),
    ],
)
def test_bad_out_is_one_line_and_nonzero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    (tmp_path / "file").write_text("not a directory")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "audit.db").write_bytes(b"somebody else's data")
    assert main(["demo", *(a.format(tmp=tmp_path) for a in args)]) == 1
    assert message in one_line_error(capsys.readouterr())
    assert (tmp_path / "foreign" / "audit.db").read_bytes() == b"somebody else's data"


@pytest.mark.parametrize("port", ["70000", "http", "-1"])
def test_bad_port_is_a_usage_error(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--port", port]) == 2
    assert "--port" in one_line_error(capsys.readouterr())


def test_bad_mode_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--mode", "off"]) == 2
    assert "--mode" in one_line_error(capsys.readouterr())


def test_the_demo_leaves_no_global_state_behind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from purposeguard.integrations import httpx as pg_httpx

    from purposeguard import audit

    before = pg.get_guard()
    instrumented = pg_httpx.is_instrumented()
    assert main(["demo", "--out", str(tmp_path), "--mode", "trace"]) == 0
    assert audit.attached() is None
    assert pg_httpx.is_instrumented() == instrumented
    after = pg.get_guard()
    assert after.mode == before.mode and after.consents is before.consents


def test_a_missing_extra_names_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [m for m in sys.modules if m == "purposeguard._demo" or m.startswith("purposeguard._demo.")]:
        monkeypatch.delitem(sys.modules, name)
    # As if starlette were not installed.
    for name in [m for m in sys.modules if m == "starlette" or m.startswith("starlette.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "starlette", None)
    assert main(["demo", "--out", str(tmp_path)]) == 1
    assert list(tmp_path.iterdir()) == []
    assert "pip install 'purposeguard[demo]'" in one_line_error(capsys.readouterr())


# Installed as sitecustomize: the interpreter starts as if these distributions were not installed.
BLOCKER = """
import sys

class _NotInstalled:
    blocked = set({blocked!r})

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""


@pytest.mark.parametrize("missing", ["uvicorn", "starlette", "sqlalchemy", "pydantic"])
def test_the_demo_command_without_its_extra_names_the_extra_in_one_line(tmp_path: Path, missing: str) -> None:
    site = tmp_path / "site"
    site.mkdir()
    site.joinpath("sitecustomize.py").write_text(BLOCKER.format(blocked=[missing]), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = tmp_path / "out"
    result = subprocess.run(
        [str(EXECUTABLE), "demo", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    err = result.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("purposeguard demo: ") and "pip install 'purposeguard[demo]'" in err
    assert f"(missing: {missing})" in err
    assert result.stdout == "" and not out.exists()
