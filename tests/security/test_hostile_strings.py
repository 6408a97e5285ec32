"""Hostile strings: whatever a caller, client or policy supplies is validated or
escaped where it is printed, logged or stored, never echoes a labelled value,
and never amplifies into one warning per bad item."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard.consent import ConsentStore

SECRET = "megan.bowen@contoso.example"
HOSTILE = [
    "",
    " contoso",
    "contoso ",
    "con\ntoso",
    "con\rtoso",
    "con\x1b[31mtoso",
    "con\x00toso",
    "t" * 257,
    "con\u2028toso",
    "con\ttoso",
]
HOSTILE_IDS = [
    "empty",
    "lead-space",
    "trail-space",
    "newline",
    "cr",
    "ansi",
    "nul",
    "too-long",
    "line-sep",
    "tab",
]


@pytest.mark.parametrize("tenant", HOSTILE, ids=HOSTILE_IDS)
def test_a_hostile_zone_tenant_is_refused(tenant: str) -> None:
    """Secure: a zone's tenant id is validated before it can reach a record or baggage."""
    with pytest.raises(ValueError, match="printable"):
        pg.zone(tenant=tenant)


@pytest.mark.parametrize("tenant", HOSTILE, ids=HOSTILE_IDS)
def test_a_hostile_label_tenant_is_refused(tenant: str) -> None:
    """Secure: a label's tenant id is validated like a zone's."""
    with pytest.raises(ValueError, match="printable"):
        pg.label("body", "customer_data", tenant=tenant)


@pytest.mark.parametrize("tenant", HOSTILE, ids=HOSTILE_IDS)
def test_a_hostile_set_tenant_is_refused(tenant: str) -> None:
    """Secure: set_tenant() refuses the same ids, inside a zone."""
    with pg.zone(), pytest.raises(pg.PolicyError):
        pg.set_tenant(tenant)


def test_a_labelled_tenant_id_is_refused_without_echo() -> None:
    """Secure: a labelled value as tenant id is refused and not printed."""
    secret = pg.label(SECRET, "customer_data")
    for attempt in (lambda: pg.zone(tenant=secret), lambda: pg.label("x", "customer_data", tenant=secret)):
        with pytest.raises(ValueError) as raised:
            attempt()
        assert SECRET not in str(raised.value)


@pytest.mark.parametrize(
    "tenant", [3, 3.5, b"contoso", ["contoso"], object()], ids=lambda t: type(t).__name__
)
def test_a_tenant_of_the_wrong_type_names_the_type(tenant: Any) -> None:
    """Secure: a wrong-typed tenant is a TypeError naming the type."""
    with pytest.raises(TypeError, match=type(tenant).__name__):
        pg.zone(tenant=tenant)


SWAPPED_VALUES = [SECRET, "Quarterly numbers attached", "4111 1111 1111 1111", "megan", "line\nbreak"]


@pytest.mark.parametrize("value", SWAPPED_VALUES, ids=["email", "sentence", "card", "word", "newline"])
def test_swapped_label_arguments_name_the_mistake_not_the_value(value: str) -> None:
    """Secure: pg.label("customer_data", value) says the arguments look swapped and never prints value."""
    with pytest.raises(pg.UnknownKeyError) as raised:
        pg.label("customer_data", value)
    message = str(raised.value)
    assert "swapped" in message
    if value != "megan":  # a bare word looks like a key; anything else is never shown
        assert value not in message


@pytest.mark.parametrize(
    "key",
    [SECRET, "a b", "x\n", "\x1b[2J", "k" * 500, 42, 4.2, b"bytes", {"a": SECRET}, [SECRET], None],
    ids=["email", "space", "newline", "ansi", "long", "int", "float", "bytes", "dict", "list", "none"],
)
def test_an_unknown_category_that_is_not_key_shaped_is_not_echoed(key: Any) -> None:
    """Secure: an unknown category that does not look like a key is named by its type only."""
    with pytest.raises(pg.UnknownKeyError) as raised:
        pg.label("body", key)
    message = str(raised.value)
    assert SECRET not in message and "\n" not in message and "\x1b" not in message
    assert len(message) < 300
    assert raised.value.key.startswith("<") or raised.value.key == key


@pytest.mark.parametrize(
    "key",
    [SECRET, "adver\ntising", "\x1b[31madvertising", "p" * 1000],
    ids=["email", "newline", "ansi", "long"],
)
def test_an_unknown_purpose_is_not_echoed(key: str) -> None:
    """Secure: an unknown purpose that does not look like a key is not printed."""
    with pytest.raises(pg.UnknownKeyError) as raised:
        pg.purpose(key)
    message = str(raised.value)
    assert key not in message and "\n" not in message and len(message) < 300


def test_a_labelled_unknown_category_is_not_echoed() -> None:
    """Secure: a labelled value passed as a category is never printed, even key-shaped."""
    value = pg.label("customer_stuff", "customer_data")
    with pytest.raises(pg.UnknownKeyError) as raised:
        pg.label("body", value)
    assert "customer_stuff" not in str(raised.value)


def test_a_key_shaped_typo_is_still_named() -> None:
    """Usable: a typo that looks like a key is named so it can be fixed."""
    with pytest.raises(pg.UnknownKeyError, match="customer_dta"):
        pg.label("body", "customer_dta")


@pytest.mark.parametrize(
    "actor",
    ["ad\nmin", "ad\x1b[31mmin", "a" * 257, " admin", "admin\x00", "\u2029"],
    ids=["newline", "ansi", "long", "space", "nul", "para-sep"],
)
@pytest.mark.parametrize("action", ["grant", "revoke"])
def test_a_hostile_actor_name_is_refused_before_the_consent_changes(action: str, actor: str) -> None:
    """Secure: actor names reach the audit chain only when printable and bounded; nothing changes otherwise."""
    store = ConsentStore()
    pg.configure("trust-center", consents=store)
    store.grant("contoso", "improvement", ["customer_data"], granted_by="admin")
    with pytest.raises(pg.PolicyError):
        if action == "grant":
            store.grant("fabrikam", "improvement", ["customer_data"], granted_by=actor)
        else:
            store.revoke("contoso", "improvement", revoked_by=actor)
    assert pg.get_guard().decide(["customer_data"], "improvement", tenant="contoso").allowed
    assert not pg.get_guard().decide(["customer_data"], "improvement", tenant="fabrikam").allowed


@pytest.mark.parametrize(
    "rule_id",
    ["a\u001b[31m", "a\\nb", "a b", "", "x" * 300, "a'b", "a;DROP"],
    ids=["ansi", "newline", "space", "empty", "long", "quote", "semicolon"],
)
def test_a_hostile_rule_id_is_a_policy_error_naming_the_field(rule_id: str) -> None:
    """Secure: a policy's rule id must be key-shaped; a hostile one is refused, the policy is not half-loaded."""
    text = (
        '[policy]\nname = "x"\ndefault = "deny"\n[[rules]]\n'
        f'id = "{rule_id}"\ncategories = ["customer_data"]\npurposes = ["advertising"]\neffect = "deny"\n'
    )
    with pytest.raises(pg.PolicyError) as raised:
        pg.Policy.from_toml(text, source="hostile.toml")
    message = str(raised.value)
    assert "\x1b" not in message and "\n" not in message.strip()
    assert len(message) < 600


@pytest.mark.parametrize(
    "qualname",
    ["ads\nINFO forged line", "ads\x1b[2J", "a" * 5000, "ads\u2028x"],
    ids=["newline", "ansi", "long", "ls"],
)
def test_a_hostile_function_name_is_escaped_in_violation_records(qualname: str) -> None:
    """Secure: a function name set by hostile code is escaped and bounded in violation records."""

    def ads(value: Any) -> None:
        return None

    ads.__qualname__ = qualname
    guarded = pg.purpose("advertising")(ads)
    seen: list[pg.Violation] = []
    pg.configure("trust-center", mode="trace")
    unsubscribe = pg.on_violation(seen.append)
    try:
        guarded(pg.label("body", "customer_data"))
    finally:
        unsubscribe()
    assert seen
    for violation in seen:
        assert violation.function.isprintable() and len(violation.function) <= 300


# The stricter case: this service holds a baggage key, so members are judged, not skipped.
BAGGAGE_KEY = "hostile-strings-baggage-key-0123456789abcdef"


def _baggage_logs(caplog: pytest.LogCaptureFixture, header: str) -> tuple[Any, list[logging.LogRecord]]:
    from purposeguard.integrations import baggage

    pg.configure(baggage_keys=[BAGGAGE_KEY])
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        caplog.clear()
        incoming = baggage.parse(header)
        return incoming, [r for r in caplog.records if r.name == "purposeguard"]


@pytest.mark.parametrize("count", [1, 10, 1000], ids=lambda n: f"{n}-bad-members")
def test_bad_baggage_is_one_warning_per_header(caplog: pytest.LogCaptureFixture, count: int) -> None:
    """Secure: however many purposeguard members are bad, one warning per header (no amplification)."""
    header = ",".join(f"purposeguard.zone=no_such_category_{i}" for i in range(count))
    incoming, records = _baggage_logs(caplog, header)
    assert len(records) == 1
    assert incoming.categories == frozenset()
    assert len(records[0].getMessage()) < 1000


def test_many_bad_categories_in_signed_baggage_are_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Secure: a signature that holds does not buy one warning per bad category."""
    from purposeguard.integrations import baggage

    header = baggage.signed_header(categories=[f"no_such_category_{i}" for i in range(60)], key=BAGGAGE_KEY)
    incoming, records = _baggage_logs(caplog, header)
    assert len(records) == 1 and incoming.categories == frozenset()
    assert "60 categories" in records[0].getMessage() and "no_such_category" not in records[0].getMessage()


def test_many_bad_tenant_members_are_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Secure: bad tenant members join the header's one warning instead of one each."""
    header = ",".join("purposeguard.tenant=%1B%5B31mx" for _ in range(200))
    incoming, records = _baggage_logs(caplog, header)
    assert incoming.tenant is None
    assert len(records) == 1
    assert "\x1b" not in records[0].getMessage()


@pytest.mark.parametrize(
    "member",
    ["purposeguard.\x1b[31mx=1", "purposeguard.tenant\x1b=1", "purposeguard.evil\nkey=1"],
    ids=["ansi-key", "ansi-suffix", "newline-key"],
)
def test_a_hostile_baggage_key_is_not_echoed(caplog: pytest.LogCaptureFixture, member: str) -> None:
    """Secure: an unknown purposeguard baggage key is named generically, never printed."""
    _, records = _baggage_logs(caplog, member)
    message = " ".join(r.getMessage() for r in records)
    assert "\x1b" not in message and "\n" not in message and "evil" not in message


def test_a_labelled_value_as_a_baggage_header_is_not_echoed(caplog: pytest.LogCaptureFixture) -> None:
    """Secure: content pasted into baggage is not logged back."""
    header = "purposeguard.tenant=" + "%20".join([SECRET] * 3)
    _, records = _baggage_logs(caplog, header)
    assert SECRET not in " ".join(r.getMessage() for r in records)


def test_disclosure_audit_argument_of_the_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    """Secure: a labelled value passed as audit= is named by type only."""
    secret = pg.label(SECRET, "customer_data")
    with pytest.raises(pg.ObligationError) as raised:
        pg.compelled_disclosure(
            case="LE-1",
            tenant="contoso",
            authority="Court",
            redirect_attempted=True,
            notifier=lambda n: None,
            audit=[secret],  # type: ignore[arg-type]
        )
    assert SECRET not in str(raised.value)


def test_a_labelled_field_name_in_a_release_is_not_echoed(tmp_path: Path) -> None:
    """Secure: a non-string field name is named by type, never printed."""
    with (
        pg.compelled_disclosure(
            case="LE-1",
            tenant="contoso",
            authority="Court",
            redirect_attempted=True,
            notifier=lambda n: None,
            audit=tmp_path / "a.db",
        ) as disclosure,
        pytest.raises(pg.ObligationError) as raised,
    ):
        disclosure.release({"a": 1}, fields=[{"x": SECRET}])  # type: ignore[list-item]
    assert SECRET not in str(raised.value)
