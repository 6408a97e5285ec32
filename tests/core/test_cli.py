"""The first CLI: policy show/check and explain, with one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from purposeguard.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_policy_show_first_block_is_the_data_use_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "show", "--format", "json")
    assert code == 0
    data = json.loads(out)
    rows = {row["purpose"]: (row["customer_data"], row["customer_data.content"]) for row in data["rows"]}
    assert rows["service.operations"] == ("yes", "yes")
    assert rows["service.security"] == ("yes", "yes")
    assert rows["service.communications"] == ("yes", "no")
    for purpose in ("improvement", "advertising", "disclosure.voluntary", "marketing.direct"):
        assert rows[purpose] == ("no", "no")
    from purposeguard._taxonomy import BUILTIN_PURPOSES

    assert set(rows) == set(BUILTIN_PURPOSES)


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_policy_show_has_a_row_for_every_purpose(capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    code, out, _ = run(capsys, "policy", "show", "--format", fmt)
    assert code == 0
    first_block = out.split("Every category")[0]
    from purposeguard._taxonomy import BUILTIN_PURPOSES

    for purpose in BUILTIN_PURPOSES:
        line = next(
            line
            for line in first_block.splitlines()
            if line.strip("| ").startswith(purpose + " ") or line.strip("| ").split(" ")[0] == purpose
        )
        assert ("yes" in line) or ("no" in line)
    comms = next(line for line in first_block.splitlines() if "service.communications" in line)
    assert comms.replace("|", " ").split()[1:] == ["yes", "no"]


def test_policy_check_valid_and_invalid(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        '[[rules]]\nid = "a"\ncategories = ["customer_data"]\npurposes = ["service"]\neffect = "allow"\n'
    )
    code, out, _ = run(capsys, "policy", "check", str(good))
    assert code == 0 and "valid" in out
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[rules]]\nid = "a"\ncategories = ["customer_data"]\npurposes = ["service"]\neffect = "perhaps"\n'
    )
    code, out, err = run(capsys, "policy", "check", str(bad))
    assert code == 1
    assert err.count("\n") == 1 and str(bad) in err and "effect" in err and "Traceback" not in err


def test_explain(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", "customer_data.content.email", "service.communications")
    assert code == 0 and "no-content-in-service-communications" in out and "denied" in out


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        ([], 2),
        (["policy"], 2),
        (["policy", "show", "--format", "yaml"], 2),
        (["nonsense"], 2),
        (["explain", "customer_data"], 2),
        (["explain", "customer_data.fax", "service"], 2),
        (["explain", "customer_data", "service.nothing"], 2),
        (["explain", "customer_data", "service", "--tenant"], 2),
        (["policy", "show", "--policy", "/no/such/file.toml"], 1),
        (["policy", "check", "/no/such/file.toml"], 1),
    ],
)
def test_bad_arguments_get_one_line_and_an_exit_code(
    capsys: pytest.CaptureFixture[str], argv: list[str], code: int
) -> None:
    got, out, err = run(capsys, *argv)
    assert got == code
    assert err.strip() and err.count("\n") == 1 and "Traceback" not in err


def test_console_script_and_module_entry_points() -> None:
    exe = Path(sys.executable).parent / "purposeguard"
    for command in ([str(exe), "policy", "show"], [sys.executable, "-m", "purposeguard", "policy", "show"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "service.communications" in done.stdout
    done = subprocess.run(
        [str(exe), "policy", "check", "/nope.toml"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_explain_applies_recorded_consent(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from purposeguard.consent import ConsentStore

    path = tmp_path / "consents.sqlite"
    store = ConsentStore(str(path))
    store.grant("contoso", "improvement", ["customer_data"], granted_by="admin@contoso")
    code, out, _ = run(
        capsys,
        "explain",
        "customer_data.content.email",
        "improvement",
        "--tenant",
        "contoso",
        "--consents",
        str(path),
    )
    assert code == 0 and "allowed" in out.splitlines()[0] and "consented" in out
    code, out, _ = run(
        capsys,
        "explain",
        "customer_data.content.email",
        "improvement",
        "--tenant",
        "fabrikam",
        "--consents",
        str(path),
    )
    assert code == 0 and "denied" in out.splitlines()[0]
    code, _, err = run(
        capsys, "explain", "customer_data", "improvement", "--consents", str(tmp_path / "none.sqlite")
    )
    assert code == 1 and err.count("\n") == 1


def test_policy_show_takes_the_file_as_argument_or_option(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        '[policy]\nname = "mine"\n[[rules]]\nid = "a"\ncategories = ["customer_data"]\npurposes = ["service"]\neffect = "allow"\n'
    )
    for argv in (["policy", "show", str(path)], ["policy", "show", "--policy", str(path)]):
        code, out, _ = run(capsys, *argv)
        assert code == 0 and "Data-use table: mine" in out
    code, _, err = run(capsys, "policy", "show", str(path), "--policy", "trust-center")
    assert code == 2 and err.count("\n") == 1


def test_a_missing_extra_is_one_line_naming_it_not_an_internal_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As if psycopg were not installed: importing it raises ImportError.
    monkeypatch.setitem(sys.modules, "psycopg", None)
    assert main(["audit", "verify", "postgresql://svc:secret@127.0.0.1:1/x"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("purposeguard: PostgreSQL storage needs psycopg 3") and "[postgres]" in err
    assert "internal error" not in err and "\n" not in err and "secret" not in err
