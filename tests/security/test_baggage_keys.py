"""Baggage keys: where they come from, what is refused, and what a receiver
does with members it cannot trust (one warning per request, fail closed)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest
from purposeguard.integrations import baggage

import purposeguard as pg
from purposeguard._signing import BaggageKey

KEY = "baggage-keys-test-key-one-0123456789abcdef"
SECOND = "baggage-keys-test-key-two-fedcba9876543210"
CONTENT = "customer_data.content.email"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "purposeguard" and r.levelno >= logging.WARNING
    ]


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "says"),
    [
        (["tiny-k3y"], "too short (8 bytes; at least 32"),
        ("a-single-key-not-in-a-list-0123456789", "a list of keys, not a single key"),
        ([KEY, KEY], "the same key is listed twice"),
        ([12345], "text or bytes, not int"),
        (42, "a list of keys, not int"),
    ],
    ids=["too short", "not a list", "twice", "not text", "not iterable"],
)
def test_configure_refuses_unusable_keys_and_changes_nothing(keys: object, says: str) -> None:
    before = pg.configure("trust-center", mode="trace", baggage_keys=[KEY])
    with pytest.raises(pg.ConfigurationError) as refused:
        pg.configure("trust-center", mode="enforce", baggage_keys=keys)  # type: ignore[arg-type]
    error = refused.value
    assert isinstance(error, pg.PurposeGuardError) and isinstance(error, ValueError)
    assert error.setting == "baggage_keys" and says in str(error) and "\n" not in str(error)
    assert "short" not in str(error).split(":", 1)[1] or says.startswith(
        "too short"
    )  # the key is never echoed
    assert pg.get_guard() is before  # the previous guard and keys stay in force
    assert baggage.parse(baggage.signed_header(tenant="contoso", key=KEY)).tenant == "contoso"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("short", "too short"),
        (f"{KEY},,{SECOND}", "an empty key"),
        (f"{KEY}, has a space in it 0123456789abcdef", "spaces or control characters"),
        (f"{KEY},{KEY}", "listed twice"),
    ],
    ids=["too short", "empty entry", "space inside", "twice"],
)
def test_a_bad_environment_variable_stops_configure_with_one_line(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("PURPOSEGUARD_BAGGAGE_KEYS", value)
    with pytest.raises(pg.ConfigurationError) as refused:
        pg.configure("trust-center")
    assert refused.value.setting == "PURPOSEGUARD_BAGGAGE_KEYS" and says in str(refused.value)
    assert KEY not in str(refused.value) and "\n" not in str(refused.value)


def test_a_bad_environment_variable_is_one_line_and_exit_1_from_the_cli(tmp_path: object) -> None:
    env = {**os.environ, "PURPOSEGUARD_BAGGAGE_KEYS": "too-short"}
    done = subprocess.run(
        [sys.executable, "-m", "purposeguard", "demo", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0  # help needs no configuration
    done = subprocess.run(
        [sys.executable, "-m", "purposeguard", "demo"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "PURPOSEGUARD_BAGGAGE_KEYS" in done.stderr
    assert "Traceback" not in done.stderr and "too-short" not in done.stderr


def test_configured_keys_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PURPOSEGUARD_BAGGAGE_KEYS", SECOND)
    pg.configure("trust-center", baggage_keys=[KEY])
    assert baggage.parse(baggage.signed_header(tenant="t", key=KEY)).tenant == "t"
    assert baggage.parse(baggage.signed_header(tenant="t", key=SECOND)).tenant is None


def test_the_first_key_signs_and_every_key_verifies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PURPOSEGUARD_BAGGAGE_KEYS", f" {SECOND} , {KEY} ")
    with pg.zone(tenant="contoso"):
        header = baggage.header_value()
    assert header is not None and f".{BaggageKey(SECOND).key_id}." in header
    for key in (KEY, SECOND):
        assert baggage.parse(baggage.signed_header(tenant="t", key=key)).tenant == "t"


def test_the_key_id_names_a_key_without_revealing_it() -> None:
    key = BaggageKey(KEY)
    assert len(key.key_id) == 8 and key.key_id not in KEY and KEY not in repr(key)


# -- receiving ----------------------------------------------------------------------------


def test_without_a_key_incoming_baggage_is_ignored_and_said_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("PURPOSEGUARD_BAGGAGE_KEYS", raising=False)
    header = baggage.signed_header(tenant="contoso", categories=[CONTENT], key=KEY)
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        for _ in range(3):
            incoming = baggage.parse(header)
            assert (incoming.purpose, incoming.tenant, incoming.categories) == (None, None, frozenset())
    (said,) = _warnings(caplog)
    assert "PURPOSEGUARD_BAGGAGE_KEYS" in said and "no baggage key is configured" in said


def test_with_a_bad_environment_variable_nothing_is_read_or_sent(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Fail closed when the variable changes to something unusable after start-up."""
    monkeypatch.setenv("PURPOSEGUARD_BAGGAGE_KEYS", "short")
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        assert baggage.parse(baggage.signed_header(tenant="t", key=KEY)).tenant is None
        with pg.zone(tenant="contoso"), pg.purpose("service.operations"):
            assert baggage.header_value() is None
    assert any("too short" in message for message in _warnings(caplog))


@pytest.mark.parametrize(
    "change",
    [
        lambda h: h.replace("tenant=contoso", "tenant=fabrikam"),
        lambda h: h.replace(f"zone={CONTENT}", "zone=customer_data"),
        lambda h: h.split(",purposeguard.zone=")[0] + ",purposeguard.sig=" + h.split("purposeguard.sig=")[1],
        lambda h: "purposeguard.purpose=service.security," + h,
        lambda h: h[:-3] + ("AAA" if not h.endswith("AAA") else "BBB"),
    ],
    ids=["tenant swapped", "zone changed", "zone removed", "purpose added", "mac changed"],
)
def test_any_change_to_a_signed_header_voids_all_of_it(
    change: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PURPOSEGUARD_BAGGAGE_KEYS", KEY)
    header = baggage.signed_header(tenant="contoso", categories=[CONTENT])
    assert baggage.parse(header).tenant == "contoso"
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        incoming = baggage.parse(change(header))  # type: ignore[operator]
    assert (incoming.purpose, incoming.tenant, incoming.categories) == (None, None, frozenset())
    assert len(_warnings(caplog)) == 1  # one aggregated warning for the request


@pytest.mark.parametrize("offset", [-301, 301], ids=["too old", "from the future"])
def test_a_signature_far_from_now_is_ignored(offset: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PURPOSEGUARD_BAGGAGE_KEYS", KEY)
    issued = int(time.time()) + offset
    incoming = baggage.parse(baggage.signed_header(tenant="t", issued=issued))
    assert incoming.tenant is None and any("300 seconds" in w for w in incoming.warnings)
    assert baggage.parse(baggage.signed_header(tenant="t", issued=int(time.time()) - 250)).tenant == "t"


def test_a_task_header_holds_for_its_task_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PURPOSEGUARD_BAGGAGE_KEYS", KEY)
    channel = baggage.task_channel("rq", "job-1")
    # Queued work may wait long: a task's signature is bound to its id, not to the clock.
    header = baggage.signed_header(tenant="t", channel=channel, issued=int(time.time()) - 86400)
    assert baggage.parse(header, channel=channel).tenant == "t"
    assert baggage.parse(header, channel=baggage.task_channel("rq", "job-2")).tenant is None
    assert baggage.parse(header).tenant is None  # nor over HTTP


def test_a_header_given_as_an_iterator_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several header values may come as a generator: remembering the header must not use it up."""
    monkeypatch.setenv("PURPOSEGUARD_BAGGAGE_KEYS", KEY)
    first, *rest = baggage.signed_header(tenant="contoso", categories=[CONTENT]).split(",")
    values = (value.encode() for value in (first, ",".join(rest)))
    incoming = baggage.parse(values)
    assert (incoming.tenant, incoming.categories) == ("contoso", frozenset({CONTENT}))
