"""Compelled disclosure under attack: paths, whole records, deep content and other tenants."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pytest

import purposeguard as pg
from purposeguard.disclosure import DisclosureNotice

EMAIL = "customer_data.content.email"
CUSTOMER = "customer_data"
SECRET = "PGSECRET-91c3-body"


@dataclass
class Address:
    street: Annotated[str, pg.Category(CUSTOMER)]
    city: Annotated[str, pg.Category(CUSTOMER)]


@dataclass
class Owner:
    name: Annotated[str, pg.Category(CUSTOMER)]
    address: Address


@dataclass
class Message:
    subject: Annotated[str, pg.Category(EMAIL)]
    body: Annotated[str, pg.Category(EMAIL)]


@dataclass
class Mailbox:
    owner: Owner
    messages: list[Message] = field(default_factory=list)
    created: str = "2026-01-04"

    @property
    def everything(self) -> Mailbox:
        return self

    @property
    def export(self) -> dict[str, Any]:
        return {"owner": self.owner, "messages": self.messages}


def mailbox() -> Mailbox:
    return Mailbox(
        Owner("Megan Bowen", Address("1 Main St", "Springfield")),
        [Message("Q3", SECRET), Message("Lunch", "Noon?")],
    )


class Outbox:
    def __init__(self) -> None:
        self.notices: list[DisclosureNotice] = []

    def __call__(self, notice: DisclosureNotice) -> None:
        self.notices.append(notice)


def open_case(tmp_path: Path, outbox: Outbox | None = None, tenant: str = "contoso") -> Any:
    return pg.compelled_disclosure(
        case="LE-1",
        tenant=tenant,
        authority="Court",
        redirect_attempted=True,
        notifier=outbox or Outbox(),
        audit=tmp_path / "audit.db",
    )


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("owner.address.city", "Springfield"),
        ("owner.name", "Megan Bowen"),
        ("messages[].subject", ["Q3", "Lunch"]),
        ("created", "2026-01-04"),
    ],
    ids=["nested-field", "one-level", "list-of-records", "top-level-plain"],
)
def test_a_field_path_releases_exactly_that_field(tmp_path: Path, path: str, expected: Any) -> None:
    """Secure: a path releases only the value it names."""
    with open_case(tmp_path) as disclosure:
        released = disclosure.release(mailbox(), fields=[path])
    assert list(released) == [path]
    assert released[path] == expected


@pytest.mark.parametrize(
    "path",
    [
        "owner",
        "owner.address",
        "messages",
        "messages[]",
        "everything",
        "export",
        "everything.owner",
        "export.owner",
    ],
    ids=lambda p: f"whole-record:{p}",
)
def test_a_whole_record_is_never_released(tmp_path: Path, path: str) -> None:
    """Secure: a path ending at a record (or a property returning one) is refused: minimize."""
    outbox = Outbox()
    with open_case(tmp_path, outbox) as disclosure:
        with pytest.raises(pg.ObligationError) as raised:
            disclosure.release(mailbox(), fields=[path])
    assert raised.value.obligation == "minimize"
    assert outbox.notices == [] and disclosure.releases == []
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize(
    "path",
    [
        "owner..name",
        ".owner",
        "owner.",
        "owner.address[].city",
        "owner[x]",
        "messages[][].subject",
        "owner.__class__",
        "owner._secret",
        "messages[].__dict__",
        "nothere",
        "owner.address.zip",
        "x" * 500,
        "created.upper",
        "created[]",
    ],
    ids=lambda p: f"bad-path:{p[:20]}",
)
def test_a_malformed_or_unknown_path_releases_nothing(tmp_path: Path, path: str) -> None:
    """Secure: a malformed, private, unknown or over-long path is refused before anything is released."""
    outbox = Outbox()
    with open_case(tmp_path, outbox) as disclosure:
        with pytest.raises(pg.ObligationError) as raised:
            disclosure.release(mailbox(), fields=[path])
    assert outbox.notices == [] and disclosure.releases == []
    assert len(str(raised.value)) < 400


@pytest.mark.parametrize(
    ("path", "category"),
    [("messages[].body", EMAIL), ("owner.address.street", CUSTOMER), ("messages[].subject", EMAIL)],
    ids=["deep-content", "deep-customer", "list-subjects"],
)
def test_every_released_category_is_recorded_and_notified(tmp_path: Path, path: str, category: str) -> None:
    """Secure: the categories of nested content are recorded and told to the tenant."""
    outbox = Outbox()
    with open_case(tmp_path, outbox) as disclosure:
        disclosure.release(mailbox(), fields=[path])
    assert category in disclosure.releases[-1].categories
    assert category in outbox.notices[-1].categories


def test_labels_nested_in_plain_dicts_are_recorded(tmp_path: Path) -> None:
    """Secure: labelled content inside a plain record is found by path and recorded."""
    record = {"owner": {"mail": [pg.label(SECRET, EMAIL)]}}
    with open_case(tmp_path) as disclosure:
        disclosure.release(record, fields=["owner.mail"])
    assert disclosure.releases[-1].categories == (EMAIL,)


@pytest.mark.parametrize("other", ["fabrikam", "contoso2", "(several tenants)"], ids=lambda t: f"owner:{t}")
def test_another_tenants_data_is_refused_and_recorded(tmp_path: Path, other: str) -> None:
    """Secure: data labelled for another tenant is refused (ObligationError) and recorded via="obligation"."""
    seen: list[pg.Violation] = []
    unsubscribe = pg.on_violation(seen.append)
    try:
        record = {"owner": pg.label("pat@fabrikam.example", CUSTOMER, tenant=other)}
        outbox = Outbox()
        with open_case(tmp_path, outbox) as disclosure:
            with pytest.raises(pg.ObligationError) as raised:
                disclosure.release(record, fields=["owner"])
    finally:
        unsubscribe()
    assert raised.value.obligation == "tenant"
    assert isinstance(raised.value.__cause__, pg.PurposeViolation)
    assert outbox.notices == [] and disclosure.releases == []
    assert [(v.via, v.tenant, v.mode) for v in seen] == [("obligation", other, "enforce")]
    assert "pat@" not in str(raised.value) and "pat@" not in repr(seen)


def test_mixed_tenants_in_one_list_are_refused(tmp_path: Path) -> None:
    """Secure: a list mixing the case's tenant and another's belongs to nobody: refused."""
    record = {
        "to": [pg.label("a@contoso", CUSTOMER, tenant="contoso"), pg.label("b@fab", CUSTOMER, tenant="fab")]
    }
    with open_case(tmp_path) as disclosure, pytest.raises(pg.ObligationError):
        disclosure.release(record, fields=["to"])


def test_another_tenant_is_refused_even_in_trace_mode(tmp_path: Path) -> None:
    """Secure: the tenant boundary of a disclosure does not relax with the rollout mode."""
    pg.configure("trust-center", mode="trace")
    record = {"owner": pg.label("pat@fabrikam.example", CUSTOMER, tenant="fabrikam")}
    with open_case(tmp_path) as disclosure, pytest.raises(pg.ObligationError):
        disclosure.release(record, fields=["owner"])


def test_the_cases_own_tenant_is_released(tmp_path: Path) -> None:
    """Secure and usable: the case's own tenant's labelled data is released as requested."""
    record = {"owner": pg.label("megan@contoso.example", CUSTOMER, tenant="contoso")}
    with open_case(tmp_path) as disclosure:
        released = disclosure.release(record, fields=["owner"])
    assert released["owner"] == "megan@contoso.example"


def test_unnamed_fields_stay_closed_after_a_path_release(tmp_path: Path) -> None:
    """Secure: after releasing one path, every other field raises minimize."""
    with open_case(tmp_path) as disclosure:
        released = disclosure.release(mailbox(), fields=["owner.name"])
    for other in ("owner", "messages", "owner.address.city", "created"):
        with pytest.raises(pg.ObligationError):
            released[other]


@pytest.mark.parametrize(
    "case",
    ["LE\n2026", "LE\x1b[31m", "'; DROP TABLE audit; --", "x" * 300],
    ids=["newline", "ansi", "sql", "long"],
)
def test_hostile_case_ids_are_escaped_in_errors(tmp_path: Path, case: str) -> None:
    """Secure: a hostile case id is refused when the case opens (not short
    printable text) or appears escaped and bounded in error messages, never raw."""
    with pytest.raises(pg.ObligationError) as raised:  # noqa: PT012 - opening or releasing refuses
        with pg.compelled_disclosure(
            case=case,
            tenant="contoso",
            authority="Court",
            redirect_attempted=True,
            notifier=Outbox(),
            audit=tmp_path / "a.db",
        ) as disclosure:
            disclosure.release({"a": 1}, fields=["nope"])
    message = str(raised.value)
    assert "\n" not in message and "\x1b" not in message and len(message) < 400
