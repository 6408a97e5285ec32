"""The data-use report: built from audit records, a code scan and the policy."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

import purposeguard as pg
from purposeguard import Policy
from purposeguard._scan import scan
from purposeguard.report import (
    ConsentInForce,
    Report,
    build_report,
    render_html,
    render_markdown,
    write_report,
)

T0 = 1_790_000_000.0  # 2026-09-21 14:13:20Z


def violation(rule: str | None, category: str, purpose: str, at: float, **extra: object) -> tuple:
    data = {
        "kind": "violation",
        "category": category,
        "purpose": purpose,
        "rule": rule,
        "via": "argument",
        "function": "app.handlers.f",
        "tenant": "contoso",
        "mode": "trace",
        "timestamp": at,
        **extra,
    }
    return ("violation", at, data)


ENTRIES = [
    violation("no-advertising", "customer_data.content.email", "advertising", T0 + 30),
    violation("no-advertising", "customer_data.content.email", "advertising", T0 + 10),
    violation("no-advertising", "customer_data", "advertising", T0 + 50, tenant="fabrikam"),
    violation(None, "payment_data", "marketing", T0 + 20),
    (
        "declassification",
        T0 + 5,
        {
            "transform": "usage-aggregate",
            "from_categories": ["customer_data.content.email"],
            "to": "usage_data",
            "function": "app.handlers.mailbox_size",
            "purpose": "service.communications",
            "tenant": "contoso",
        },
    ),
    (
        "consent",
        T0 + 1,
        {
            "action": "grant",
            "tenant": "contoso",
            "purpose": "improvement",
            "categories": ["customer_data"],
            "actor": "admin@contoso",
        },
    ),
    (
        "disclosure",
        T0 + 2,
        {
            "case": "LE-1",
            "tenant": "contoso",
            "purpose": "disclosure.compelled",
            "categories": ["customer_data"],
            "fields": ["owner"],
            "notified": True,
        },
    ),
]


@pytest.fixture
def report(sample_tree: Path) -> Report:
    return build_report(ENTRIES, scan(sample_tree), Policy.load("trust-center"), now=T0 + 100)


def test_violations_are_grouped_by_rule_with_counts_and_first_and_last_seen(report: Report) -> None:
    groups = {g.rule: g for g in report.violations}
    assert list(groups) == ["no-advertising", "(policy default)"]  # most frequent first
    ads = groups["no-advertising"]
    assert ads.count == 3
    assert (ads.first_seen, ads.last_seen) == (T0 + 10, T0 + 50)
    assert ads.first_seen_text == "2026-09-21 14:13:30Z"
    assert ads.categories == ("customer_data", "customer_data.content.email")
    assert ads.tenants == ("contoso", "fabrikam")
    assert groups["(policy default)"].count == 1


def test_data_map_shows_declared_and_observed_flows_with_the_policy_verdict(report: Report) -> None:
    cells = {(row.category, c.purpose): c for row in report.data_map.rows for c in row.cells}
    spam = cells["customer_data.content.email", "service.security"]
    assert spam.declared == ("app.handlers.scan_for_spam",) and spam.policy == "allowed"
    ads = cells["customer_data.content.email", "advertising"]
    assert ads.declared == ("app.handlers.recommend_ads",) and ads.violations == 2
    assert ads.policy == "denied"
    assert cells["customer_data", "improvement"].grants == 1
    assert cells["customer_data", "improvement"].consenting_tenants == ("contoso",)
    assert cells["customer_data", "improvement"].policy == "consent"
    assert cells["customer_data", "disclosure.compelled"].disclosures == 1
    assert cells["usage_data", "service.communications"].declassifications == 1
    assert report.data_map.purposes[:2] == ("service.operations", "service.security")  # taxonomy order


def test_declassifications_consents_and_disclosures_are_listed(report: Report) -> None:
    (usage,) = report.declassifications
    assert (usage.transform, usage.count, usage.from_categories, usage.to) == (
        "usage-aggregate",
        1,
        ("customer_data.content.email",),
        "usage_data",
    )
    assert report.consents[0].fields["actor"] == "admin@contoso"
    assert report.disclosures[0].fields["case"] == "LE-1"


def test_code_section_lists_findings_and_skipped_files(report: Report) -> None:
    code = report.code
    assert [s.path for s in code.skipped] == ["app/broken.py"] and code.skipped[0].reason
    assert any(f.function == "app.handlers.scan_for_spam" for f in code.findings)
    assert code.unknown_keys == ()


def test_keys_the_policy_does_not_define_are_flagged(tmp_path: Path) -> None:
    (tmp_path / "svc.py").write_text(
        "import purposeguard as pg\n@pg.purpose('servcie.operations')\n@pg.transform('nope')\ndef f(): pass\n"
    )
    report = build_report([], scan(tmp_path), Policy.load("trust-center"))
    assert [(u.key, u.kind, u.where) for u in report.code.unknown_keys] == [
        ("servcie.operations", "purpose", "svc.py:2"),
        ("nope", "transform", "svc.py:3"),
    ]
    assert "servcie.operations" in render_html(report)


def test_the_decision_matrix_is_the_policy_s(report: Report) -> None:
    matrix = {row.purpose: {c.category: c for c in row.cells} for row in report.matrix.rows}
    assert list(matrix) == list(Policy.load("trust-center").taxonomy.purposes)
    assert matrix["advertising"]["customer_data"].allowed is False
    assert matrix["service.security"]["customer_data.content"].allowed is True
    assert matrix["improvement"]["customer_data"].text == "consent"


def test_html_is_self_contained(report: Report) -> None:
    page = render_html(report)
    for forbidden in ("<script", "http://", "https://", "src=", "url(", "@import", "<link", "<iframe"):
        assert forbidden not in page.lower(), forbidden
    assert "default-src 'none'" in page


def test_markdown_twin_has_the_same_sections_and_counts(report: Report) -> None:
    text = render_markdown(report)
    for title in (
        "## Summary",
        "## Data map",
        "## Violations by rule",
        "## Declassifications",
        "## Consents",
        "## Disclosures",
        "## Decision matrix",
        "## Declared in code",
        "### Files skipped",
    ):
        assert title in text
    assert "| no-advertising | 3 | 2026-09-21 14:13:30Z | 2026-09-21 14:14:10Z |" in text
    assert "| (policy default) | 1 |" in text
    assert "V2 (denied)" in text  # email x advertising: two violations observed


def test_html_escapes_what_it_shows() -> None:
    hostile = violation("<b>rule</b>", "customer_data", "advertising", T0, function="<script>x</script>")
    page = render_html(build_report([hostile], None, Policy.load("trust-center")))
    assert "<script>x" not in page and "&lt;script&gt;x" in page


def test_write_report_accepts_entries_and_writes_both_files(tmp_path: Path, sample_tree: Path) -> None:
    html_path, md_path = write_report(tmp_path / "out", audit=ENTRIES, source=sample_tree)
    assert html_path.read_text().startswith("<!DOCTYPE html>")
    assert md_path.read_text().startswith("# Data-use report")
    assert re.search(
        r'data-rule="no-advertising">no-advertising</td><td class="count" data-count="3"',
        html_path.read_text(),
    )


def test_the_report_is_frozen_and_its_data_is_json(report: Report) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.violations[0].count = 0  # type: ignore[misc]
    data = json.loads(json.dumps(report.to_dict()))
    assert data["violations"][0]["count"] == 3
    assert data["violations"][0]["first_seen_text"] == "2026-09-21 14:13:30Z"
    assert data["audit"]["integrity"]["state"] == "unchecked"
    assert data["data_map"]["rows"][0]["cells"][0]["purpose"] == "service.operations"


def test_markdown_shows_names_literally_whatever_characters_they_hold() -> None:
    hostile = violation(
        "rule_with*stars*",
        "customer_data",
        "advertising",
        T0,
        function="__main__.ads.<module>",
        tenant="ten|ant`x`",
    )
    text = render_markdown(build_report([hostile], None, Policy.load("trust-center")))
    row = next(line for line in text.splitlines() if "rule" in line and "advertising" in line and "<" in line)
    assert r"\_\_main\_\_.ads.\<module\>" in row
    assert r"rule\_with\*stars\*" in row
    assert r"ten\|ant\`x\`" in row
    # Every | left unescaped is a cell border: the row keeps its 10 columns.
    assert len(re.findall(r"(?<!\\)\|", row)) == 11
    for raw in ("__main__", "<module>", "*stars*", "`x`"):
        assert raw not in text


def _consent(
    action: str, at: float, categories: list[str], tenant: str = "contoso", **extra: object
) -> tuple:
    return (
        "consent",
        at,
        {
            "action": action,
            "tenant": tenant,
            "purpose": "improvement",
            "categories": categories,
            "actor": "admin@contoso",
            **extra,
        },
    )


def test_a_revoked_consent_is_not_shown_as_in_force() -> None:
    changes = [
        _consent("grant", T0 + 1, ["customer_data"]),
        _consent("grant", T0 + 2, ["customer_data"], tenant="fabrikam"),
        _consent("revoke", T0 + 3, []),  # contoso: every category, as ConsentStore records it
        _consent("grant", T0 + 4, ["customer_data.content"], tenant="northwind", expires_at=T0 + 50),
    ]
    report = build_report(changes, None, Policy.load("trust-center"), now=T0 + 100)
    cells = {(row.category, c.purpose): c for row in report.data_map.rows for c in row.cells}
    whole = cells["customer_data", "improvement"]
    assert (whole.grants, whole.revokes, whole.consenting_tenants) == (2, 1, ("fabrikam",))
    expired = cells["customer_data.content", "improvement"]
    assert (expired.grants, expired.consenting_tenants) == (1, ())
    assert report.consents_in_force == (
        ConsentInForce(tenant="fabrikam", purpose="improvement", category="customer_data"),
    )
    revoke_row = report.consents[2]
    assert revoke_row.fields["action"] == "revoke"
    assert revoke_row.fields["categories"] == "all (every category granted)"
    page = render_html(report)
    assert 'data-consents-in-force="1"' in page and 'data-consents-in-force="0"' in page
    assert "no consent in force (granted 1, revoked 0)" in page
    assert '<table class="consents-in-force" data-count="1">' in page
    text = render_markdown(report)
    assert "G2 R1 C1 (consent)" in text and "G1 (consent)" in text
    assert "| revoke | admin@contoso | all (every category granted) |" in text

    # Only a grant then its revocation: nothing in force anywhere.
    report = build_report(
        changes[:1] + [_consent("revoke", T0 + 3, ["customer_data"])],
        None,
        Policy.load("trust-center"),
        now=T0 + 100,
    )
    cells = {(row.category, c.purpose): c for row in report.data_map.rows for c in row.cells}
    assert cells["customer_data", "improvement"].consenting_tenants == ()
    assert report.consents_in_force == ()
    assert "No consent is in force" in render_html(report)


def test_the_tenants_column_names_the_tenants_it_counts(report: Report) -> None:
    page = render_html(report)
    assert "<th>tenants affected</th>" in page
    assert '<td data-tenants="2">2: contoso, fabrikam</td>' in page
    assert "| tenants affected |" in render_markdown(report)
    assert "| 2: contoso, fabrikam |" in render_markdown(report)


def test_the_summary_says_when_the_audit_chain_was_not_checked(report: Report) -> None:
    assert report.audit.integrity.checked is False
    assert 'data-integrity="unchecked">audit chain: not checked' in render_html(report)


def test_build_report_takes_the_logs_path_as_write_report_does(tmp_path: Path) -> None:
    """A path is read and verified, not taken for entries (a str would be read as its characters)."""
    from purposeguard import audit

    path = tmp_path / "audit.db"
    pg.configure("trust-center", audit=path)

    @pg.purpose("advertising")
    def choose_ad(value: object) -> None:
        pass

    with pytest.raises(pg.PurposeViolation):
        choose_ad(pg.label("x", "customer_data.content.email"))
    sink = audit.attached()
    assert sink is not None
    sink.flush()
    pg.configure("trust-center", audit=False)
    for given in (path, str(path)):
        report = build_report(given)
        assert report.audit.source == str(path) and report.audit.entries >= 1
        assert [g.rule for g in report.violations] == ["no-advertising"]
