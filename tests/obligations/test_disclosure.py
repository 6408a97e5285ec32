"""Compelled disclosure: redirect first, minimum fields, notify first, always audited."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pytest

import purposeguard as pg
from purposeguard import audit
from purposeguard.audit import AuditError, AuditLog
from purposeguard.disclosure import Disclosure, DisclosureNotice

EMAIL = "customer_data.content.email"


@pytest.fixture
def mailbox() -> dict[str, Any]:
    return {
        "owner": pg.label("megan@contoso.example", "customer_data", tenant="contoso"),
        "created": pg.label("2026-01-04", "customer_data", tenant="contoso"),
        "body": pg.label("Quarterly numbers attached, keep internal", EMAIL, tenant="contoso"),
        "card": pg.label("4111 1111 1111 1111", "payment_data", tenant="contoso"),
    }


class Outbox:
    """A notifier: what the tenant's administrators receive, in order."""

    def __init__(self, events: list[str] | None = None) -> None:
        self.notices: list[DisclosureNotice] = []
        self.events = events if events is not None else []

    def __call__(self, notice: DisclosureNotice) -> None:
        self.notices.append(notice)
        self.events.append("notified")


def request(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(
        case="LE-2026-0042",
        tenant="contoso",
        authority="District Court, Springfield",
        redirect_attempted=True,
    )
    base.update(overrides)
    return base


def test_a_release_returns_only_the_named_fields(mailbox: dict[str, Any], log_path: Path) -> None:
    outbox = Outbox()
    with AuditLog(log_path) as log:
        with pg.compelled_disclosure(**request(), notifier=outbox, audit=log) as disclosure:
            assert pg.current_purpose() == "disclosure.compelled"
            released = disclosure.release(mailbox, fields=["owner", "created"])
        assert pg.current_purpose() is None
        assert dict(released) == {"owner": "megan@contoso.example", "created": "2026-01-04"}
        assert released.owner == "megan@contoso.example"
        assert pg.labels_of(released["owner"]) == {"customer_data"}
        assert "body" not in released and len(released) == 2
        with pytest.raises(pg.ObligationError, match="'body' was not named") as caught:
            released["body"]
        assert caught.value.obligation == "minimize"
        with pytest.raises(pg.ObligationError):
            released.card  # noqa: B018
        (entry,) = log.records()
    assert entry.kind == "disclosure"
    data = entry.data
    assert (data["case"], data["authority"], data["tenant"]) == (
        "LE-2026-0042",
        "District Court, Springfield",
        "contoso",
    )
    assert data["fields"] == ["owner", "created"]
    assert data["categories"] == ["customer_data"]
    assert data["notified"] is True and data["redirect_attempted"] is True
    assert data["obligations"] == ["redirect_first", "minimize", "notify_tenant"]


def test_content_can_be_released_when_the_request_names_it(mailbox: dict[str, Any], log_path: Path) -> None:
    with pg.compelled_disclosure(**request(), notifier=Outbox(), audit=log_path) as disclosure:
        released = disclosure.release(mailbox, fields=["body"])
    assert released["body"] == mailbox["body"]


def test_without_a_redirect_nothing_happens(mailbox: dict[str, Any], log_path: Path) -> None:
    outbox = Outbox()
    with pytest.raises(pg.ObligationError, match="redirect the requester to the customer first") as caught:
        pg.compelled_disclosure(**request(redirect_attempted=False), notifier=outbox, audit=log_path)
    assert caught.value.obligation == "redirect_first"
    assert caught.value.rule == "compelled-disclosure"
    assert outbox.notices == []
    assert not log_path.exists()


def test_administrators_are_notified_before_the_release(mailbox: dict[str, Any], log_path: Path) -> None:
    events: list[str] = []
    outbox = Outbox(events)
    log = AuditLog(log_path)
    unsubscribe = pg.on_record(lambda record: events.append(f"recorded {record.kind}"))
    try:
        with pg.compelled_disclosure(**request(), notifier=outbox, audit=log) as disclosure:
            disclosure.release(mailbox, fields=["owner"])
            events.append("released")
    finally:
        unsubscribe()
        log.close()
    assert events == ["notified", "recorded disclosure", "released"]
    (notice,) = outbox.notices
    assert (notice.case, notice.tenant, notice.fields, notice.categories) == (
        "LE-2026-0042",
        "contoso",
        ("owner",),
        ("customer_data",),
    )


def test_a_failing_notifier_blocks_the_release(mailbox: dict[str, Any], log_path: Path) -> None:
    def broken(notice: DisclosureNotice) -> None:
        raise ConnectionError("mail relay down")

    with AuditLog(log_path) as log:
        with pg.compelled_disclosure(**request(), notifier=broken, audit=log) as disclosure:
            with pytest.raises(
                pg.ObligationError, match="notifying the tenant's administrators failed"
            ) as caught:
                disclosure.release(mailbox, fields=["owner"])
        assert caught.value.obligation == "notify_tenant"
        assert isinstance(caught.value.__cause__, ConnectionError)
        assert len(log) == 0


def test_a_notification_the_law_forbids_needs_its_reference(mailbox: dict[str, Any], log_path: Path) -> None:
    with pytest.raises(pg.ObligationError, match="prohibition_ref") as caught:
        pg.compelled_disclosure(**request(), notification_prohibited=True, audit=log_path)
    assert caught.value.obligation == "notify_tenant"
    with AuditLog(log_path) as log:
        with pg.compelled_disclosure(
            **request(), notification_prohibited=True, prohibition_ref="18 U.S.C. 2705(b) order 7", audit=log
        ) as disclosure:
            disclosure.release(mailbox, fields=["owner"])
        (entry,) = log.records()
    assert entry.data["notified"] is False
    assert entry.data["notification_prohibited"] is True
    assert entry.data["prohibition_ref"] == "18 U.S.C. 2705(b) order 7"


def test_without_a_notifier_or_a_prohibition_nothing_happens(log_path: Path) -> None:
    with pytest.raises(pg.ObligationError, match="must be notified first") as caught:
        pg.compelled_disclosure(**request(), audit=log_path)
    assert caught.value.obligation == "notify_tenant"


@pytest.mark.parametrize(
    ("missing", "text"),
    [
        ("case", "needs case="),
        ("tenant", "needs tenant="),
        ("authority", "needs authority="),
        ("redirect_attempted", "needs redirect_attempted="),
    ],
)
def test_missing_fields_are_clear_errors_and_leave_no_record(missing: str, text: str, log_path: Path) -> None:
    arguments = request()
    arguments[missing] = None
    with pytest.raises(pg.ObligationError, match=text):
        pg.compelled_disclosure(**arguments, notifier=Outbox(), audit=log_path)
    assert not log_path.exists()


def test_release_needs_named_existing_fields(mailbox: dict[str, Any], log_path: Path) -> None:
    with AuditLog(log_path) as log:
        with pg.compelled_disclosure(**request(), notifier=Outbox(), audit=log) as disclosure:
            with pytest.raises(pg.ObligationError, match="needs fields="):
                disclosure.release(mailbox)
            with pytest.raises(pg.ObligationError, match="at least one field"):
                disclosure.release(mailbox, fields=[])
            with pytest.raises(pg.ObligationError, match="no field 'subject'"):
                disclosure.release(mailbox, fields=["owner", "subject"])
        assert len(log) == 0
        with pytest.raises(pg.ObligationError, match="outside its"):
            disclosure.release(mailbox, fields=["owner"])


def test_categories_the_policy_does_not_let_out_are_denied(mailbox: dict[str, Any], log_path: Path) -> None:
    outbox = Outbox()
    with AuditLog(log_path) as log:
        with pg.compelled_disclosure(**request(), notifier=outbox, audit=log) as disclosure:
            with pytest.raises(pg.PurposeViolation) as caught:
                disclosure.release(mailbox, fields=["owner", "card"])
        assert caught.value.category == "payment_data"
        assert caught.value.purpose == "disclosure.compelled"
        assert outbox.notices == [] and len(log) == 0


def test_annotated_fields_of_objects_are_checked(log_path: Path) -> None:
    @dataclass
    class Account:
        owner: Annotated[str, pg.Category("customer_data")]
        card: Annotated[str, pg.Category("payment_data")]

    account = Account("megan@contoso.example", "4111")
    with pg.compelled_disclosure(**request(), notifier=Outbox(), audit=log_path) as disclosure:
        assert disclosure.release(account, fields=["owner"]).owner == "megan@contoso.example"
        with pytest.raises(pg.PurposeViolation):
            disclosure.release(account, fields=["card"])


def test_voluntary_disclosure_stays_denied_whatever_is_passed(
    mailbox: dict[str, Any], log_path: Path
) -> None:
    @pg.purpose("disclosure.voluntary")
    def hand_over(value: str) -> str:
        return value

    with pytest.raises(TypeError):
        pg.compelled_disclosure(
            **request(), notifier=Outbox(), audit=log_path, purpose="disclosure.voluntary"
        )
    with pg.compelled_disclosure(
        **request(), notification_prohibited=True, prohibition_ref="order 7", audit=log_path
    ) as disclosure:
        with pytest.raises(pg.PurposeViolation) as caught:
            hand_over(mailbox["owner"])
        assert caught.value.rule == "no-voluntary-disclosure"
        released = disclosure.release(mailbox, fields=["owner"])
        with pytest.raises(pg.PurposeViolation):
            hand_over(released["owner"])
    assert pg.decide(["customer_data"], "disclosure.voluntary").allowed is False


def test_an_audit_log_is_required(mailbox: dict[str, Any]) -> None:
    with pytest.raises(pg.ObligationError, match="must be audited") as caught:
        pg.compelled_disclosure(**request(), notifier=Outbox())
    assert caught.value.obligation == "record"


def test_the_attached_sink_audits_the_release_before_it_returns(
    mailbox: dict[str, Any], log_path: Path
) -> None:
    pg.configure("trust-center", audit=log_path)
    with pg.compelled_disclosure(**request(), notifier=Outbox()) as disclosure:
        disclosure.release(mailbox, fields=["owner"])
        # No flush: a disclosure is on disk when release() returns.
        with AuditLog(log_path, readonly=True) as reader:
            (entry,) = reader.records()
    assert entry.kind == "disclosure" and entry.data["case"] == "LE-2026-0042"


def test_a_log_that_cannot_keep_the_record_blocks_the_release(
    mailbox: dict[str, Any], log_path: Path
) -> None:
    AuditLog(log_path).close()
    outbox = Outbox()
    with AuditLog(log_path, readonly=True) as log:
        with pg.compelled_disclosure(**request(), notifier=outbox, audit=log) as disclosure:
            with pytest.raises(pg.ObligationError, match="cannot be audited") as caught:
                disclosure.release(mailbox, fields=["owner"])
    assert caught.value.obligation == "record"
    # Through a failing attached sink too.
    pg.configure("trust-center")
    audit.attach(AuditLog(log_path, readonly=True))
    with pg.compelled_disclosure(**request(), notifier=outbox) as disclosure:
        with pytest.raises(pg.PurposeGuardError, match="read-only"):
            disclosure.release(mailbox, fields=["owner"])


def test_a_disclosure_is_written_once_when_sink_and_audit_share_the_log(
    mailbox: dict[str, Any], log_path: Path
) -> None:
    log = AuditLog(log_path)
    audit.attach(log)
    with pg.testing.capture_records() as records:
        with pg.compelled_disclosure(**request(), notifier=Outbox(), audit=log) as disclosure:
            disclosure.release(mailbox, fields=["owner"])
    audit.detach()
    assert [type(r) for r in records] == [Disclosure]
    assert log.verify().count == 1
    log.close()


def test_labelled_request_fields_are_refused(mailbox: dict[str, Any], log_path: Path, marker: str) -> None:
    with pytest.raises(pg.ObligationError, match="must not be a labelled value"):
        pg.compelled_disclosure(**request(case=pg.label(marker, EMAIL)), notifier=Outbox(), audit=log_path)


def test_labels_on_the_whole_record_apply_to_every_released_field(log_path: Path) -> None:
    record = pg.label({"owner": "megan", "card": "4111"}, "payment_data")
    with pg.compelled_disclosure(**request(), notifier=Outbox(), audit=log_path) as disclosure:
        with pytest.raises(pg.PurposeViolation) as caught:
            disclosure.release(record, fields=["owner"])
    assert caught.value.category == "payment_data"


def _full_log(path: Path) -> AuditLog:
    """A real log that may not grow by a single page: a full disk, for SQLite."""
    AuditLog(path).close()
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    connection.close()
    log = AuditLog(path, max_bytes=(pages + 1) * page_size)
    # Fill it to the last byte: even a small record no longer fits.
    with pytest.raises(AuditError, match="full"):
        for _ in range(10_000):
            log.append({"kind": "note", "text": "x"})
    return log


@pytest.mark.parametrize("failure", ["full", "read-only"])
def test_in_trace_mode_an_attached_sink_that_cannot_write_blocks_the_release(
    mailbox: dict[str, Any], log_path: Path, failure: str
) -> None:
    if failure == "full":
        log = _full_log(log_path)
    else:
        AuditLog(log_path).close()
        log = AuditLog(log_path, readonly=True)
    pg.configure("trust-center", mode="trace")
    audit.attach(log, interval=60.0)
    kept_before = len(log)
    released: list[Any] = []
    with pg.compelled_disclosure(**request(), notifier=Outbox()) as disclosure:
        with pytest.raises(pg.ObligationError, match="cannot be audited") as caught:
            released.append(disclosure.release(mailbox, fields=["owner"]))
    assert caught.value.obligation == "record"
    assert released == [] and disclosure.releases == []
    audit.detach()
    log.close()
    with AuditLog(log_path, readonly=True) as reader:
        assert reader.verify().count == kept_before
        assert "disclosure" not in {e.kind for e in reader.records()}


# -- found by a red-team pass ----------------------------------------------------------------


def test_a_case_cannot_name_the_several_tenants_marker_as_its_customer(log_path: Path) -> None:
    mixed = pg.label("alice;", "customer_data", tenant="contoso") + pg.label(
        "bob", "customer_data", tenant="fabrikam"
    )
    outbox = Outbox()
    with AuditLog(log_path) as log:
        with pytest.raises(pg.ObligationError, match="must name one customer"):
            with pg.compelled_disclosure(
                **request(tenant="(several tenants)"), notifier=outbox, audit=log
            ) as disclosure:
                disclosure.release({"who": mixed}, fields=["who"])
        assert outbox.notices == []
        assert log.verify().count == 0


def test_a_field_of_several_tenants_is_refused_whatever_the_case_names(log_path: Path) -> None:
    from purposeguard.disclosure import CompelledDisclosure

    mixed = pg.label("alice;", "customer_data", tenant="contoso") + pg.label(
        "bob", "customer_data", tenant="fabrikam"
    )
    outbox = Outbox()
    with AuditLog(log_path) as log:
        with pg.compelled_disclosure(**request(), notifier=outbox, audit=log) as disclosure:
            # As if the marker had got past the boundary: the field check holds alone.
            object.__setattr__(disclosure, "tenant", "(several tenants)")
            assert isinstance(disclosure, CompelledDisclosure)
            with pytest.raises(pg.ObligationError, match="another tenant"):
                disclosure.release({"who": mixed}, fields=["who"])
        assert outbox.notices == []


class AsyncOutbox:
    def __init__(self) -> None:
        self.sent: list[DisclosureNotice] = []

    async def __call__(self, notice: DisclosureNotice) -> None:
        self.sent.append(notice)


def test_an_async_notifier_is_refused_before_anything_is_released(log_path: Path) -> None:
    async def notify(notice: DisclosureNotice) -> None:
        raise AssertionError("never run")

    with AuditLog(log_path) as log:
        for notifier in (notify, AsyncOutbox()):
            with pytest.raises(pg.ObligationError, match="async notifier"):
                with pg.compelled_disclosure(**request(), notifier=notifier, audit=log):
                    pass
        assert log.verify().count == 0


def test_a_notifier_that_returns_an_awaitable_has_not_notified(
    mailbox: dict[str, Any], log_path: Path
) -> None:
    async def send(notice: DisclosureNotice) -> None:
        raise AssertionError("never run")

    def notifier(notice: DisclosureNotice) -> Any:
        return send(notice)  # a plain function handing back the coroutine

    with AuditLog(log_path) as log:
        with pg.compelled_disclosure(**request(), notifier=notifier, audit=log) as disclosure:
            with pytest.raises(pg.ObligationError, match="returned an awaitable"):
                disclosure.release(mailbox, fields=["owner"])
        assert log.verify().count == 0


@pytest.mark.parametrize("field", ["case", "authority", "tenant"])
@pytest.mark.parametrize("text", ["x" * 257, "LE-1\x1b[2J", "line\nbreak"], ids=["long", "escape", "newline"])
def test_names_kept_in_records_are_bounded_and_printable(field: str, text: str, log_path: Path) -> None:
    with AuditLog(log_path) as log:
        with pytest.raises(pg.ObligationError, match="printable characters"):
            with pg.compelled_disclosure(**request(**{field: text}), notifier=Outbox(), audit=log):
                pass
        assert log.verify().count == 0


def test_naming_the_compelled_purpose_is_not_following_its_procedure(
    mailbox: dict[str, Any], log_path: Path
) -> None:
    """Secure: a function marked disclosure.compelled, or a check for it, outside
    pg.compelled_disclosure(...) is refused (via="obligation"): no redirect, no
    minimum, no notice and no record would stand behind what it hands over."""
    records: list[pg.Violation] = []
    unsubscribe = pg.get_guard().on_violation(records.append)

    @pg.purpose("disclosure.compelled")
    def hand_over(value: Any) -> Any:
        return value

    try:
        with pytest.raises(pg.PurposeViolation) as caught:
            hand_over({"owner": mailbox["owner"], "body": mailbox["body"]})
        with pg.purpose("disclosure.compelled"), pytest.raises(pg.PurposeViolation):
            pg.check(mailbox["owner"])
    finally:
        unsubscribe()
    assert caught.value.rule == "compelled-disclosure"
    assert {violation.via for violation in records} == {"obligation"}
    assert "megan" not in str(caught.value) and "Quarterly" not in str(caught.value)
    # What the policy says is unchanged: allowed, with the obligations to meet.
    decision = pg.decide(["customer_data"], "disclosure.compelled")
    assert decision.allowed and decision.obligations == ("redirect_first", "minimize", "notify_tenant")
    # Reading the data to prepare a disclosure is no use of it yet.
    with pg.purpose("disclosure.compelled"):
        assert pg.label("2026-01-04", "customer_data", tenant="contoso") == "2026-01-04"
    # Inside the procedure, what release() let out may be handed over.
    with pg.compelled_disclosure(**request(), notifier=Outbox(), audit=log_path) as disclosure:
        released = disclosure.release(mailbox, fields=["owner"])
        assert hand_over(released["owner"]) == "megan@contoso.example"
    with pytest.raises(pg.PurposeViolation):
        hand_over(released["owner"])


def test_one_disclosure_entered_twice_restores_each_entry(mailbox: dict[str, Any], log_path: Path) -> None:
    disclosure = pg.compelled_disclosure(**request(), notifier=Outbox(), audit=log_path)
    with pg.purpose("service.operations"):
        with disclosure:
            with disclosure:
                assert pg.current_purpose() == "disclosure.compelled"
                disclosure.release(mailbox, fields=["owner"])
            assert pg.current_purpose() == "disclosure.compelled"
            disclosure.release(mailbox, fields=["created"])
        assert pg.current_purpose() == "service.operations"
        with pytest.raises(pg.ObligationError, match="outside its"):
            disclosure.release(mailbox, fields=["owner"])
    assert [record.fields for record in disclosure.releases] == [("owner",), ("created",)]
