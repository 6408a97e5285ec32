"""End to end: a real audit file written through the runtime, `purposeguard report` on it,
the HTML opened in headless Chromium; and the command's bad input."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import purposeguard as pg
from purposeguard import audit as audit_module
from purposeguard.audit import AuditLog
from purposeguard.cli import main
from purposeguard.consent import ConsentStore

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def audit_file(tmp_path: Path, value_marker: str) -> Iterator[Path]:
    """An audit log written by the runtime: 3 advertising and 1 direct-marketing
    violation (trace mode), 1 declassification, 1 consent grant, 1 disclosure."""
    path = tmp_path / "audit.db"
    pg.configure("trust-center", mode="trace", audit=str(path))
    try:

        @pg.purpose("advertising")
        def recommend_ads(text: str) -> None:
            return None

        @pg.purpose("marketing.direct")
        def newsletter(text: str) -> None:
            return None

        @pg.transform("usage-aggregate")
        def mailbox_size(messages: list[str]) -> int:
            return sum(len(m) for m in messages)

        body = pg.label(f"{value_marker} quarterly numbers", "customer_data.content.email", tenant="contoso")
        for _ in range(3):
            recommend_ads(body)
        newsletter(body)
        with pg.purpose("service.communications"):
            mailbox_size([body])
    finally:
        audit_module.detach()
    with AuditLog(path) as log:
        ConsentStore(log).grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
        with pg.compelled_disclosure(
            case="LE-2026-7",
            tenant="contoso",
            authority="District Court",
            redirect_attempted=True,
            notifier=lambda notice: None,
            audit=log,
        ) as disclosure:
            disclosure.release(
                {"owner": pg.label(value_marker, "customer_data"), "size": 3}, fields=["owner"]
            )
    yield path


def _run_report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "purposeguard", "report", *args], capture_output=True, text=True, timeout=60
    )


def test_report_from_a_real_audit_file_and_source_tree(
    audit_file: Path, sample_tree: Path, tmp_path: Path, value_marker: str
) -> None:
    kinds = [entry.kind for entry in AuditLog(audit_file, create=False, readonly=True).records()]
    assert sorted(kinds) == ["consent", "declassification", "disclosure"] + ["violation"] * 4
    out = tmp_path / "report"
    result = _run_report("--audit", str(audit_file), "--source", str(sample_tree), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"wrote {out}/report.html and {out}/report.md: 4 violations in 2 rules, 1 declassifications, "
        "1 consent changes, 1 disclosures, 5 files scanned, 1 skipped, audit chain intact (7 records)"
    )
    assert result.stderr.strip().startswith("purposeguard report: skipped app/broken.py: does not parse")
    html = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    assert "| no-advertising | 3 |" in markdown and "| no-direct-marketing | 1 |" in markdown
    assert "LE-2026-7" in markdown and "admin@contoso" in markdown
    assert 'data-integrity="intact">audit chain: intact (7 records)</p>' in html
    assert "**audit chain: intact (7 records)**" in markdown
    # The protected value was labelled, violated, declassified and disclosed: it is nowhere.
    for text in (html, markdown, result.stdout, result.stderr):
        assert value_marker not in text


def test_a_tampered_log_is_reported_as_not_intact_and_exits_1(
    audit_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with sqlite3.connect(audit_file) as connection:
        connection.execute(
            "UPDATE purposeguard_audit SET data = replace(data, 'no-advertising', 'forged-rule') WHERE seq = 2"
        )
    connection.close()
    out = tmp_path / "report"
    assert main(["report", "--audit", str(audit_file), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert line.startswith(f"purposeguard report: the audit log {audit_file} is NOT intact: record 2 ")
    # Written whole, and the forged record does not pass for a proven one.
    html = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    assert html.rstrip().endswith("</html>") and "## Declared in code" in markdown
    assert "forged-rule" in html
    banner = re.search(r'<p class="integrity broken"[^>]*>([^<]+)</p>', html)
    assert banner is not None and banner.group(1).startswith("audit chain: NOT intact: record 2 was altered")
    summary = html[html.index('<section id="summary">') : html.index('<section id="data-map">')]
    assert 'data-integrity="broken">audit chain: NOT intact: record 2' in summary
    assert "**WARNING: audit chain: NOT intact: record 2 was altered" in markdown
    assert not list(out.glob(".*.part"))


@pytest.fixture
def chromium(request: pytest.FixtureRequest) -> str:
    """Debian's headless Chromium; only for tests marked `services`."""
    if request.node.get_closest_marker("services") is None:
        pytest.fail(f"{request.node.nodeid} runs Chromium: mark it @pytest.mark.services", pytrace=False)
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found is None:
        pytest.fail(
            "headless Chromium is needed for this test: apt-get install chromium (`bash scripts/test` does this)"
        )
    return found


def _dump_dom_and_screenshot(chromium: str, page: Path, tmp_path: Path) -> str:
    profile = tmp_path / "chromium-profile"
    base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=90)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = tmp_path / "report.png"
    screenshot = subprocess.run(
        [*base, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert screenshot.returncode == 0, screenshot.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    return dom.stdout


@pytest.mark.services
def test_chromium_renders_the_sections_and_counts(
    chromium: str, audit_file: Path, sample_tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    assert main(["report", "--audit", str(audit_file), "--source", str(sample_tree), "--out", str(out)]) == 0
    dom = _dump_dom_and_screenshot(chromium, out / "report.html", tmp_path)
    sections = re.findall(r'<section id="([a-z-]+)"><h2>([^<]+)</h2>', dom)
    assert sections == [
        ("summary", "Summary"),
        ("data-map", "Data map"),
        ("violations", "Violations by rule"),
        ("declassifications", "Declassifications"),
        ("consents", "Consents"),
        ("disclosures", "Disclosures"),
        ("decision-matrix", "Decision matrix"),
        ("code", "Declared in code"),
    ]
    counts = dict(re.findall(r'<td data-rule="([^"]+)">[^<]*</td><td class="count" data-count="(\d+)">', dom))
    assert counts == {"no-advertising": "3", "no-direct-marketing": "1"}
    assert re.search(r'data-stat="violations"><b>4</b>', dom)
    assert re.search(r'data-stat="files skipped"><b>1</b>', dom)
    assert re.search(
        r'<td data-transform="usage-aggregate">usage-aggregate</td><td class="count" data-count="1">', dom
    )
    assert re.search(r'<table class="consents" data-count="1">', dom)
    assert re.search(r'<table class="disclosures" data-count="1">', dom)
    assert re.search(
        r'data-category="customer_data.content.email" data-purpose="advertising"[^>]*>'
        r".*?3 violations",
        dom,
    )
    assert "<script" not in dom


# -- bad input ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("missing", "purposeguard report: no such audit log: "),
        ("directory", "purposeguard report: audit log is a directory: "),
        ("text", "purposeguard report: not a purposeguard audit log: "),
        ("other-sqlite", "purposeguard report: not a purposeguard audit log: "),
    ],
)
def test_an_audit_path_that_is_not_an_audit_log_is_one_line_exit_1(
    make: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.db"
    if make == "directory":
        path.mkdir()
    elif make == "text":
        path.write_text("this is not an audit log\n")
    elif make == "other-sqlite":
        with sqlite3.connect(path) as connection:
            connection.execute("create table customers (name text)")
        connection.close()
    before = path.read_bytes() if path.is_file() else None
    assert main(["report", "--audit", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith(message), err
    assert (path.read_bytes() if path.is_file() else None) == before  # left untouched
    assert make != "missing" or not path.exists()  # never created
    assert not (tmp_path / "out" / "report.html").exists()


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["report", "--source", "{tmp}/nope", "--out", "{tmp}/out"], 1, "no such source path"),
        (["report", "--out", "{tmp}/out"], 2, "give --audit PATH, --source PATH or both"),
        (["report", "--source", "{tmp}"], 2, "the following arguments are required: --out"),
        (["report", "--source", "{tmp}", "--out", "{tmp}/file.txt"], 1, "--out is not a directory"),
        (
            ["report", "--source", "{tmp}", "--out", "{tmp}/out", "--policy", "{tmp}/none.toml"],
            1,
            "no such policy",
        ),
    ],
)
def test_report_usage_errors_are_one_line(
    argv: list[str], code: int, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file.txt").write_text("x")
    assert main([a.format(tmp=tmp_path) for a in argv]) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_bad_audit_from_the_console_shows_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "audit.db").write_bytes(b"\x00\x01garbage" * 100)
    result = _run_report("--audit", str(tmp_path / "audit.db"), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
