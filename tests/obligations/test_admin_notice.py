"""The seed's administrator-communications case, run from examples/admin_notice.py."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import purposeguard as pg
from purposeguard import audit
from purposeguard.audit import AuditLog

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "admin_notice.py"


@pytest.fixture
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("admin_notice_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_storage_limit_notice_from_end_user_usage_data_is_allowed(example: ModuleType) -> None:
    pg.configure("trust-center")
    outbox: list[tuple[str, str]] = []
    used = example.storage_used(example.sample_mailbox(), attachments_bytes=48 * example.GIB)
    assert pg.labels_of(used) == {"usage_data.end_user"}
    with pg.testing.assert_no_violations():
        notice = example.storage_notice("megan@contoso.example", used)
        example.send_to_administrators("contoso", notice, outbox)
    assert pg.labels_of(notice) == {"usage_data.end_user"}
    assert outbox == [("contoso", notice)]
    assert "96% of the 50 GB" in notice
    assert pg.decide(["usage_data.end_user"], "service.communications").rule == "end-user-usage-data"


def test_the_same_notice_quoting_a_line_of_mail_is_a_violation(example: ModuleType) -> None:
    pg.configure("trust-center")
    mailbox = example.sample_mailbox()
    used = example.storage_used(mailbox)
    with pytest.raises(pg.PurposeViolation) as caught:
        example.storage_notice_quoting_mail("megan@contoso.example", used, mailbox[0])
    (violation,) = caught.value.violations
    assert violation.category == "customer_data.content.email"
    assert violation.purpose == "service.communications"
    assert violation.rule == "no-content-in-service-communications"
    assert violation.tenant == "contoso"


def test_a_quote_smuggled_in_by_concatenation_is_caught_when_sent(example: ModuleType) -> None:
    pg.configure("trust-center")
    mailbox = example.sample_mailbox()
    notice = example.storage_notice("megan@contoso.example", example.storage_used(mailbox))
    quoting = notice + " Latest: " + mailbox[0].splitlines()[0]
    assert pg.labels_of(quoting) == {"usage_data.end_user", "customer_data.content.email"}
    outbox: list[tuple[str, str]] = []
    with pytest.raises(pg.PurposeViolation) as caught:
        example.send_to_administrators("contoso", quoting, outbox)
    assert caught.value.rule == "no-content-in-service-communications"
    assert outbox == []


def test_a_quote_through_an_f_string_is_caught_by_the_zone(example: ModuleType) -> None:
    pg.configure("trust-center")
    outbox: list[tuple[str, str]] = []
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        mailbox = example.sample_mailbox()
        notice = example.storage_notice("megan@contoso.example", example.storage_used(mailbox))
        quoting = f"{notice} Latest: {mailbox[0][:20]}"  # the label cannot follow an f-string
        assert pg.labels_of(quoting) == frozenset()
        example.send_to_administrators("contoso", quoting, outbox)
    # Once mail is read in the zone, every service communication in it is flagged.
    assert {(v.category, v.via, v.mode, v.rule) for v in violations} == {
        ("customer_data.content.email", "context", "trace", "no-content-in-service-communications")
    }
    assert any(v.function.endswith("send_to_administrators") for v in violations)


def test_the_violation_is_audited_without_the_mail(example: ModuleType, log_path: Path) -> None:
    pg.configure("trust-center", mode="trace", audit=log_path)
    mailbox = example.sample_mailbox()
    example.storage_notice_quoting_mail("megan@contoso.example", example.storage_used(mailbox), mailbox[0])
    audit.detach()
    with AuditLog(log_path, readonly=True) as log:
        kinds = [(e.kind, e.data.get("rule") or e.data.get("transform")) for e in log.records()]
        text = " ".join(str(e.data) for e in log.records())
    assert ("declassification", "end-user-usage") in kinds
    assert ("violation", "no-content-in-service-communications") in kinds
    assert "quarterly numbers" not in text.lower()
    assert b"quarterly numbers" not in log_path.read_bytes().lower()


def test_the_example_runs_as_a_script() -> None:
    result = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "sent to contoso's administrators: megan@contoso.example has used 96%" in result.stdout
    assert "refused: customer_data.content.email may not be used for service.communications" in result.stdout
    assert "1 notice(s) sent" in result.stdout
    assert "Quarterly" not in result.stdout
