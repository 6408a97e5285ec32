"""The static scan: found by parsing, never by importing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from purposeguard._scan import Finding, scan


def _by_function(findings: list[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for finding in findings:
        out.setdefault(finding.function, []).append(finding)
    return out


def test_finds_every_declared_purpose_with_place_and_function(sample_tree: Path) -> None:
    result = scan(sample_tree)
    purposes = {(f.function, f.keys, f.form) for f in result.of_kind("purpose")}
    assert purposes == {
        ("app.handlers.scan_for_spam", ("service.security",), "decorator"),
        ("app.handlers.recommend_ads", ("advertising",), "decorator"),
        ("app.handlers.Newsletter.send", ("marketing.direct",), "decorator"),
        ("app.handlers.troubleshoot", ("service.operations",), "with"),
        ("app.handlers.notify_admins", ("service.communications",), "with"),
        ("app.handlers.dynamic", ("service.operations",), "decorator"),  # a module constant
        ("app.side_effect.analytics", ("improvement",), "decorator"),
    }
    spam = next(f for f in result.of_kind("purpose") if f.function == "app.handlers.scan_for_spam")
    source_line = (sample_tree / spam.path).read_text().splitlines()[spam.line - 1]
    assert spam.path == "app/handlers.py" and source_line.strip() == '@declare("service.security")'


def test_non_literal_keys_are_marked_dynamic(tmp_path: Path) -> None:
    (tmp_path / "jobs.py").write_text(
        "import os\nimport purposeguard as pg\n\n"
        "@pg.purpose(os.environ['PURPOSE'])\ndef job(x):\n    return pg.label(x, 'customer_data', pick())\n"
    )
    found = [(f.function, f.kind, f.keys) for f in scan(tmp_path).findings if f.dynamic]
    assert found == [("jobs.job", "purpose", ()), ("jobs.job", "label", ("customer_data",))]
    assert not [f for f in scan(tmp_path / "jobs.py").findings if not f.dynamic]


def test_finds_produces_transform_category_and_label(sample_tree: Path) -> None:
    found = _by_function(scan(sample_tree).findings)
    assert [(f.kind, f.keys) for f in found["app.handlers.read_body"]] == [
        ("produces", ("customer_data.content.email",))
    ]
    assert [(f.kind, f.keys) for f in found["app.handlers.mailbox_size"]] == [
        ("transform", ("usage-aggregate",))
    ]
    assert [(f.kind, f.keys) for f in found["app.models.Message"]] == [
        ("category", ("customer_data.content.email",))
    ]
    assert ("label", ("customer_data",)) in [(f.kind, f.keys) for f in found["app.handlers.Newsletter.send"]]


def test_flows_join_purposes_with_the_categories_their_code_handles(sample_tree: Path) -> None:
    assert scan(sample_tree).flows() == {
        ("customer_data.content.email", "service.security"): ["app.handlers.scan_for_spam"],
        ("customer_data.content.email", "advertising"): ["app.handlers.recommend_ads"],
        ("customer_data", "marketing.direct"): ["app.handlers.Newsletter.send"],
        ("customer_data.content.document", "service.operations"): ["app.handlers.troubleshoot"],
        ("usage_data.end_user", "service.communications"): ["app.handlers.notify_admins"],
    }


def test_only_names_imported_from_purposeguard_count(sample_tree: Path) -> None:
    paths = {f.path for f in scan(sample_tree).findings}
    assert "app/not_ours.py" not in paths
    assert not any(".venv" in p for p in paths)


def test_unparsable_files_are_skipped_and_named(sample_tree: Path) -> None:
    result = scan(sample_tree)
    assert [p for p, _ in result.skipped] == ["app/broken.py"]
    assert "does not parse (line 1" in result.skipped[0][1]
    assert result.files == 5  # the rest was still scanned


def test_scanning_never_imports_the_code(
    sample_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = scan(sample_tree)
    assert any(f.path == "app/side_effect.py" for f in result.findings)
    assert not (tmp_path / "IMPORTED-SENTINEL").exists()
    assert not (sample_tree / "IMPORTED-SENTINEL").exists()


def test_labelled_values_never_reach_the_result(sample_tree: Path, value_marker: str) -> None:
    assert value_marker in (sample_tree / "app/handlers.py").read_text()
    assert value_marker not in json.dumps(scan(sample_tree).to_dict())


def test_a_single_file_can_be_scanned(sample_tree: Path) -> None:
    result = scan(sample_tree / "app" / "models.py")
    assert result.files == 1
    assert [(f.function, f.path) for f in result.findings] == [("models.Message", "models.py")]


def test_a_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        scan(tmp_path / "nope")


def test_undecodable_and_null_byte_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "latin.py").write_bytes(b"# -*- coding: utf-8 -*-\nx = '\xff\xfe'\n")
    (tmp_path / "nul.py").write_bytes(b"x = 1\x00\n")
    (tmp_path / "ok.py").write_text("import purposeguard as pg\n@pg.purpose('service')\ndef f(): pass\n")
    result = scan(tmp_path)
    assert sorted(p for p, _ in result.skipped) == ["latin.py", "nul.py"]
    assert [f.keys for f in result.findings] == [("service",)]


def test_folders_are_never_passed_over_silently(tmp_path: Path) -> None:
    declared = "import purposeguard as pg\n@pg.purpose('{purpose}')\ndef f(x):\n    return x\n"
    files = {
        "build/tasks.py": "advertising",  # the team's own package called build
        "dist/publish.py": "marketing.direct",
        "app/env/settings.py": "service.operations",
        "venv/lib/thing.py": "improvement",  # a real virtualenv: skipped, and named
        "site-packages/vendored.py": "improvement",
        ".tox/hidden.py": "improvement",
    }
    for name, purpose in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(declared.format(purpose=purpose))
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    result = scan(tmp_path)
    assert sorted(f.path for f in result.of_kind("purpose")) == [
        "app/env/settings.py",
        "build/tasks.py",
        "dist/publish.py",
    ]
    assert sorted(result.skipped) == [
        ("site-packages/", "installed packages, not the project's code"),
        ("venv/", "a virtualenv (it has a pyvenv.cfg), not the project's code"),
    ]


def test_route_purposes_of_the_web_integrations_count(tmp_path: Path) -> None:
    (tmp_path / "web.py").write_text(
        "from purposeguard.integrations.asgi import route_purpose\n"
        "from purposeguard.integrations import wsgi\n\n"
        '@route_purpose("advertising")\n'
        "async def ads(request): ...\n\n"
        '@wsgi.route_purpose("service.operations")\n'
        "def ops(): ...\n"
    )
    result = scan(tmp_path)
    found = {(f.function, f.keys) for f in result.of_kind("purpose")}
    assert ("web.ads", ("advertising",)) in found
