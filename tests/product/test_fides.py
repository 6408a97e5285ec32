"""Fides interoperability, checked against the installed fideslang's own taxonomy."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fideslang.default_taxonomy import DEFAULT_TAXONOMY
from fideslang.manifests import load_yaml_into_dict
from fideslang.models import System

import purposeguard as pg
from purposeguard import fides
from purposeguard._scan import scan
from purposeguard._taxonomy import BUILTIN_CATEGORIES, BUILTIN_PURPOSES, KEY_PATTERN, ancestors
from purposeguard.cli import main

FIDES_CATEGORIES = {c.fides_key: c for c in DEFAULT_TAXONOMY.data_category}
FIDES_USES = {u.fides_key: u for u in DEFAULT_TAXONOMY.data_use}


@pytest.mark.parametrize("key", list(BUILTIN_CATEGORIES))
def test_every_builtin_category_maps_to_a_current_fideslang_category(key: str) -> None:
    mapped = fides.category_to_fides(key)
    assert mapped in FIDES_CATEGORIES and FIDES_CATEGORIES[mapped].version_deprecated is None


@pytest.mark.parametrize("key", list(BUILTIN_PURPOSES))
def test_every_builtin_purpose_maps_to_a_current_fideslang_data_use(key: str) -> None:
    mapped = fides.purpose_to_fides(key)
    assert mapped in FIDES_USES and FIDES_USES[mapped].version_deprecated is None


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("service.operations", "essential.service.operations"),
        ("service.security", "essential.service.security"),
        ("service.communications", "essential.service.notifications"),
        ("improvement", "functional.service.improve"),
        ("advertising", "marketing.advertising"),
        ("marketing.direct", "marketing.communications.email"),
        ("disclosure.compelled", "third_party_sharing.legal_obligation"),
    ],
)
def test_design_pairs_for_purposes(ours: str, theirs: str) -> None:
    assert fides.purpose_to_fides(ours) == theirs
    assert fides.purpose_from_fides(theirs) == ours


def test_design_pair_for_content() -> None:
    assert fides.category_to_fides("customer_data.content") == "user.content"
    assert fides.category_from_fides("user.content") == "customer_data.content"


@pytest.mark.parametrize("key", list(BUILTIN_CATEGORIES))
def test_category_round_trip_returns_the_key_or_an_ancestor(key: str) -> None:
    assert fides.category_from_fides(fides.category_to_fides(key)) in ancestors(key)


@pytest.mark.parametrize("key", list(BUILTIN_PURPOSES))
def test_purpose_round_trip_returns_the_key_or_an_ancestor(key: str) -> None:
    assert fides.purpose_from_fides(fides.purpose_to_fides(key)) in ancestors(key)


def test_every_fideslang_key_maps_back_to_a_builtin_key_or_none() -> None:
    for key in FIDES_CATEGORIES:
        assert fides.category_from_fides(key) in BUILTIN_CATEGORIES  # user.* and system.* are all covered
    for key in FIDES_USES:
        back = fides.purpose_from_fides(key)
        assert back is None or back in BUILTIN_PURPOSES
    assert fides.purpose_from_fides("employment") is None
    assert fides.purpose_from_fides("marketing.advertising.third_party.targeted") == "advertising"
    assert fides.category_from_fides("user.biometric") == "customer_data"


def test_unknown_keys_raise() -> None:
    with pytest.raises(pg.UnknownKeyError):
        fides.category_to_fides("customer_data.nope")
    with pytest.raises(pg.UnknownKeyError):
        fides.purpose_from_fides("not.a.fides.use")


def test_fideslang_taxonomy_is_the_installed_default_taxonomy() -> None:
    taxonomy = fides.fideslang_taxonomy()
    assert taxonomy.name == "fideslang"
    assert set(taxonomy.categories) == set(FIDES_CATEGORIES)
    assert set(taxonomy.purposes) == set(FIDES_USES)
    assert all(KEY_PATTERN.match(k) for k in [*taxonomy.categories, *taxonomy.purposes])
    fides_name = FIDES_CATEGORIES["user.content"].name
    assert fides_name is not None
    assert taxonomy.categories["user.content"].startswith(fides_name)


FIDES_POLICY = """
[policy]
name = "fides-native"
taxonomy = "fideslang"

[[rules]]
id = "run-the-service"
categories = ["user.content"]
purposes = ["essential.service"]
effect = "allow"

[[rules]]
id = "no-ads"
categories = ["user"]
purposes = ["marketing.advertising"]
effect = "deny"
"""


def test_a_policy_can_use_fideslang_keys_directly() -> None:
    policy = pg.Policy.from_toml(FIDES_POLICY)
    assert policy.taxonomy.name == "fideslang"
    assert policy.decide(["user.content.private"], "essential.service.operations").allowed
    denied = policy.decide(["user.content.private"], "marketing.advertising.first_party.targeted")
    assert not denied.allowed and denied.rule == "no-ads"


@pytest.mark.parametrize(
    ("categories", "purposes"),
    [
        ('["user.no_such_thing"]', '["essential"]'),
        ('["customer_data"]', '["essential"]'),
        ('["user"]', '["service"]'),
    ],
)
def test_a_fideslang_policy_rejects_keys_fideslang_does_not_define(categories: str, purposes: str) -> None:
    text = (
        FIDES_POLICY
        + f'\n[[rules]]\nid = "bad"\ncategories = {categories}\npurposes = {purposes}\neffect = "allow"\n'
    )
    with pytest.raises(pg.UnknownKeyError) as caught:
        pg.Policy.from_toml(text)
    assert caught.value.rule == "bad"


def test_labels_under_a_fideslang_policy() -> None:
    guard = pg.Guard(pg.Policy.from_toml(FIDES_POLICY))
    with guard.activate():

        @pg.purpose("marketing.advertising")
        def ads(text: str) -> str:
            return text

        with pytest.raises(pg.PurposeViolation) as caught:
            ads(pg.label("hello", "user.content.private"))
        assert caught.value.rule == "no-ads"


EXPECTED_DECLARATIONS = {
    "essential.service.notifications": ["user.telemetry"],
    "essential.service.operations": ["user.content.private"],
    "essential.service.security": ["user.content.private"],
    "functional.service.improve": [],
    "marketing.advertising": ["user.content.private"],
    "marketing.communications.email": ["user"],
}


def _declarations(system: dict) -> dict[str, list[str]]:
    return {d["data_use"]: d["data_categories"] for d in system["privacy_declarations"]}


def test_system_manifest_from_a_scan_is_valid_fideslang(sample_tree: Path) -> None:
    manifest = fides.system_manifest(scan(sample_tree), fides_key="mail_service")
    system = manifest["system"][0]
    validated = System.model_validate(system)
    assert validated.fides_key == "mail_service"
    assert _declarations(system) == EXPECTED_DECLARATIONS
    for declaration in validated.privacy_declarations:
        assert declaration.data_use in FIDES_USES
        assert all(c in FIDES_CATEGORIES for c in declaration.data_categories)


def test_export_command_writes_a_yaml_manifest_fideslang_loads(
    sample_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], value_marker: str
) -> None:
    out = tmp_path / "fides" / "system.yml"
    out.parent.mkdir()
    assert main(["fides", "export", "--source", str(sample_tree), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "6 privacy declarations" in captured.out
    assert captured.err.strip().splitlines() == [
        f"purposeguard fides export: skipped app/broken.py: {scan(sample_tree).skipped[0][1]}"
    ]
    loaded = load_yaml_into_dict(str(out))
    system = System.model_validate(loaded["system"][0])
    assert system.fides_key == "mailservice" and system.system_type == "Service"
    assert _declarations(loaded["system"][0]) == EXPECTED_DECLARATIONS
    assert value_marker not in out.read_text()


def test_export_to_stdout_as_json_with_a_fideslang_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "policy.toml").write_text(FIDES_POLICY)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "svc.py").write_text(
        "import purposeguard as pg\n"
        "@pg.purpose('essential.service.operations')\n"
        "@pg.produces('user.contact.email')\n"
        "def lookup(x): return x\n"
    )
    code = main(
        [
            "fides",
            "export",
            "--source",
            str(tmp_path / "src"),
            "--format",
            "json",
            "--policy",
            str(tmp_path / "policy.toml"),
            "--system-key",
            "svc",
        ]
    )
    assert code == 0
    system = json.loads(capsys.readouterr().out)["system"][0]
    assert _declarations(system) == {"essential.service.operations": ["user.contact.email"]}


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (
            ["fides", "export", "--source", "{tmp}/missing"],
            1,
            "purposeguard fides export: no such source path: ",
        ),
        (["fides", "export"], 2, "the following arguments are required: --source"),
        (["fides"], 2, "purposeguard fides: missing action (export)"),
        (["fides", "export", "--source", "{tree}", "--out", "{tmp}"], 1, "--out is a directory"),
    ],
)
def test_export_bad_input_is_one_line_and_non_zero(
    argv: list[str],
    code: int,
    message: str,
    sample_tree: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [a.format(tmp=tmp_path, tree=sample_tree) for a in argv]
    assert main(argv) == code
    lines = [line for line in capsys.readouterr().err.splitlines() if "skipped app/broken.py" not in line]
    assert len(lines) == 1 and message in lines[0]


def test_an_unknown_key_in_code_is_skipped_with_its_place_and_the_rest_exported(tmp_path: Path) -> None:
    (tmp_path / "svc.py").write_text(
        "import purposeguard as pg\n"
        "@pg.purpose('advertizing')\n"
        "def typo(): pass\n"
        "@pg.purpose('service.operations')\n"
        "@pg.produces('customer_data.content.email', 'customer_data.nope')\n"
        "def lookup(x): return x\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "purposeguard",
            "fides",
            "export",
            "--source",
            str(tmp_path),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        "purposeguard fides export: skipped svc.py:2: unknown purpose 'advertizing'",
        "purposeguard fides export: skipped svc.py:5: unknown category 'customer_data.nope'",
    ]
    system = json.loads(result.stdout)["system"][0]
    System.model_validate(system)
    assert _declarations(system) == {"essential.service.operations": ["user.content.private"]}
    # The library raises, naming the place, unless told where to report.
    with pytest.raises(pg.UnknownKeyError, match=r"svc.py:2: unknown purpose 'advertizing'"):
        fides.system_manifest(scan(tmp_path))


@pytest.mark.parametrize("key", ["bad key!!", "", "sp ace", "semi;colon"])
def test_an_invalid_system_key_is_one_line_before_any_work(
    key: str, sample_tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fides", "export", "--source", str(sample_tree), "--system-key", key]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        f"purposeguard fides export: --system-key {key!r} is not a valid Fides key: "
        "use letters, digits and _ . - < > only"
    ]
    with pytest.raises(ValueError, match="not a valid Fides key"):
        fides.system_manifest(scan(sample_tree), fides_key=key)


def test_a_source_that_is_not_python_is_one_line_and_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "manifest.json").write_text("{}")
    assert main(["fides", "export", "--source", str(tmp_path / "manifest.json")]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"purposeguard fides export: --source is neither a directory nor a .py file: {tmp_path / 'manifest.json'}"
    ]
    (tmp_path / "one.py").write_text("import purposeguard as pg\n@pg.purpose('advertising')\ndef f(): pass\n")
    assert main(["fides", "export", "--source", str(tmp_path / "one.py"), "--format", "json"]) == 0
    assert _declarations(json.loads(capsys.readouterr().out)["system"][0]) == {"marketing.advertising": []}


@pytest.mark.parametrize(
    "purpose", ["marketing.advertising", "marketing.advertising.first_party", "marketing"]
)
def test_consent_can_never_widen_advertising_under_fideslang_keys(purpose: str) -> None:
    text = FIDES_POLICY + (
        f'\n[[rules]]\nid = "ads-with-consent"\ncategories = ["user"]\npurposes = ["{purpose}"]\n'
        'effect = "deny"\nconsentable = true\n'
    )
    with pytest.raises(pg.PolicyError, match="consent can never widen marketing.advertising") as caught:
        pg.Policy.from_toml(text)
    assert caught.value.rule == "ads-with-consent"


def test_consent_may_widen_other_fideslang_uses() -> None:
    text = FIDES_POLICY + (
        '\n[[rules]]\nid = "improve-with-consent"\ncategories = ["user"]\n'
        'purposes = ["functional.service.improve"]\neffect = "deny"\nconsentable = true\n'
    )
    assert pg.Policy.from_toml(text).is_consentable("user.content", "functional.service.improve")


@pytest.fixture
def without_fideslang(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("fideslang", "fideslang.default_taxonomy", "fideslang.models"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import` raise ImportError
    fides._fides_keys.cache_clear()
    fides.fideslang_taxonomy.cache_clear()
    yield
    fides._fides_keys.cache_clear()
    fides.fideslang_taxonomy.cache_clear()


@pytest.mark.usefixtures("without_fideslang")
def test_without_fideslang_the_error_names_the_extra(
    sample_tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ImportError, match=r"pip install 'purposeguard\[fides\]'"):
        fides.fideslang_taxonomy()
    with pytest.raises(ImportError, match=r"pip install 'purposeguard\[fides\]'"):
        fides.purpose_to_fides("advertising")
    with pytest.raises(ImportError, match=r"pip install 'purposeguard\[fides\]'"):
        pg.Policy.from_toml(FIDES_POLICY)
    assert main(["fides", "export", "--source", str(sample_tree)]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "purposeguard fides export: needs fideslang: pip install 'purposeguard[fides]'"
    ]
