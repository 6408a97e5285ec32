"""Red team: signed baggage, attacked as a client and as a peer without the key.

Each attack states what a receiver does with it: a forged, smuggled, replayed
or moved header makes no purpose current, names no tenant and adds no zone
category; one warning per request names no value; members of other services
travel on untouched."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from purposeguard.integrations import baggage
from purposeguard.integrations.asgi import PurposeGuardMiddleware as AsgiMiddleware
from purposeguard.integrations.wsgi import PurposeGuardMiddleware as WsgiMiddleware

import purposeguard as pg
from purposeguard._signing import BaggageKey, verify

KEY = "redteam-baggage-key-one-0123456789abcdef"
OTHER = "redteam-baggage-key-two-fedcba9876543210"
NOT_HELD = "redteam-baggage-key-not-held-0123456789ab"
CONTENT = "customer_data.content.email"
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
OTHER_TRACE = "00-1bf7651916cd43dd8448eb211c80319d-c7ad6b7169203332-01"
NOTHING = (None, None, frozenset[str]())


@pytest.fixture(autouse=True)
def _keys(trace_guard: pg.Guard) -> None:
    pg.configure("trust-center", mode="trace", baggage_keys=[KEY, OTHER])


def _read(header: Any, **kwargs: Any) -> tuple[str | None, str | None, frozenset[str]]:
    incoming = baggage.parse(header, **kwargs)
    return incoming.purpose, incoming.tenant, incoming.categories


def _signed(**kwargs: Any) -> str:
    kwargs.setdefault("tenant", "contoso")
    kwargs.setdefault("categories", [CONTENT])
    kwargs.setdefault("purpose", "service.operations")
    return baggage.signed_header(**kwargs)


FULL = ("service.operations", "contoso", frozenset({CONTENT}))


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "purposeguard" and r.levelno >= logging.WARNING
    ]


# -- forging without the key --------------------------------------------------------------


def _swap_key_id(header: str, key_id: str) -> str:
    head, sig = header.rsplit("purposeguard.sig=", 1)
    version, _, issued, bound, mac = sig.split(".")
    return f"{head}purposeguard.sig={version}.{key_id}.{issued}.{bound}.{mac}"


FORGERIES: dict[str, Callable[[], Any]] = {
    "unsigned members": lambda: f"purposeguard.tenant=contoso,purposeguard.zone={CONTENT}",
    "signed with a key not held": lambda: _signed(key=NOT_HELD),
    "a key not held, under a held key's id": lambda: _swap_key_id(
        _signed(key=NOT_HELD), BaggageKey(KEY).key_id
    ),
    "one held key's MAC under the other's id": lambda: _swap_key_id(
        _signed(key=OTHER), BaggageKey(KEY).key_id
    ),
    "an empty MAC": lambda: _signed().rsplit(".", 1)[0] + ".",
    "a MAC of the right length, all A": lambda: _signed().rsplit(".", 1)[0] + "." + "A" * 43,
    "version 2": lambda: _signed().replace("purposeguard.sig=1.", "purposeguard.sig=2."),
    "a time with a sign": lambda: _signed().replace(
        f".{BaggageKey(KEY).key_id}.", f".{BaggageKey(KEY).key_id}.+"
    ),
    "tenant swapped": lambda: _signed().replace("tenant=contoso", "tenant=fabrikam"),
    "purpose added": lambda: "purposeguard.purpose=disclosure.compelled," + _signed(purpose=None),
    "zone category added": lambda: _signed().replace(f"zone={CONTENT}", f"zone={CONTENT}%2Ccustomer_data"),
    "zone emptied": lambda: _signed().replace(f"zone={CONTENT}", "zone="),
    "member repeated in a second header": lambda: [_signed(), "purposeguard.tenant=fabrikam"],
    "the same header twice": lambda: [_signed(), _signed()],
    "a member with no value": lambda: _signed() + ",purposeguard.tenant",
    "a non-ASCII member (Cyrillic o)": lambda: _signed().replace("contoso", "cont\u043eso"),
    "a signature for another tenant over this one's members": lambda: (
        _signed(tenant="contoso").rsplit("purposeguard.sig=", 1)[0]
        + "purposeguard.sig="
        + _signed(tenant="fabrikam").rsplit("purposeguard.sig=", 1)[1]
    ),
}


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
def test_a_forged_header_reads_nothing_with_one_warning(
    forge: Callable[[], Any], caplog: pytest.LogCaptureFixture
) -> None:
    header = forge()
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        assert _read(header) == NOTHING
    (said,) = _warnings(caplog)
    assert "contoso" not in said and "fabrikam" not in said and "disclosure" not in said


def test_the_mac_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A MAC guessed byte by byte learns nothing from timing: the comparison is hmac.compare_digest."""
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert _read(_signed(issued=int(time.time()) - 1)) == FULL
    assert _read(_signed(issued=int(time.time()) - 2).rsplit(".", 1)[0] + "." + "B" * 43) == NOTHING
    assert compared == [(43, 43), (43, 43)]


# -- smuggling past the parser -------------------------------------------------------------


def test_a_mixed_case_member_is_neither_read_nor_taken_for_ours() -> None:
    """``PurposeGuard.tenant`` is another service's key: it does not count for a signature and is not read."""
    assert _read("PurposeGuard.tenant=fabrikam," + _signed()) == FULL
    assert _read(_signed(tenant=None).replace("purposeguard.", "PurposeGuard.")) == NOTHING


def test_a_percent_encoded_key_is_not_read_and_does_not_travel_on_as_ours() -> None:
    """OpenTelemetry decodes ``purposeguard%2Etenant`` to ``purposeguard.tenant``; purposeguard
    does not read it, and an outgoing header carries only its own signed members."""
    assert _read(_signed() + ",purposeguard%2Etenant=fabrikam")[1] == "contoso"
    with pg.zone(tenant="contoso"):
        outgoing = baggage.header_value("purposeguard%2Etenant=fabrikam,userId=alice")
    assert outgoing is not None and "fabrikam" not in outgoing and "userId=alice" in outgoing
    assert _read(outgoing)[1] == "contoso"
    assert baggage.header_value("purposeguard%2Etenant=fabrikam,userId=alice") == "userId=alice"


def test_properties_and_members_of_other_services_change_nothing() -> None:
    header = _signed().replace("tenant=contoso", "tenant=contoso;purposeguard.tenant=fabrikam")
    assert _read(header) == FULL
    assert _read("userId=alice," + _signed() + ",x=%FF;p") == FULL


def test_values_with_commas_and_unicode_travel_percent_encoded_and_verify() -> None:
    """A tenant id holding ',' ';' '=' or non-ASCII text is signed and read back as it was."""
    for tenant in ("acme, inc.", "a;b=c", "m\u00fcller", "50% off"):
        assert _read(_signed(tenant=tenant))[1] == tenant


def test_a_huge_header_is_one_warning_naming_at_most_five_problems(caplog: pytest.LogCaptureFixture) -> None:
    """Amplification: twenty thousand bad members are one warning, not twenty thousand."""
    header = ",".join(f"purposeguard.x{i}=1" for i in range(20_000))
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        assert _read(header) == NOTHING
    (said,) = _warnings(caplog)
    assert said.count(";") <= 5 and "more)" in said and len(said) < 1000


# -- what a verified header may still not do ---------------------------------------------


def test_a_verified_header_names_nothing_the_policy_does_not_define(caplog: pytest.LogCaptureFixture) -> None:
    header = _signed(purpose="marketing.everything", categories=["no.such.category", CONTENT])
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        assert _read(header) == (None, "contoso", frozenset({CONTENT}))
    (said,) = _warnings(caplog)
    assert "marketing.everything" not in said and "no.such.category" not in said


@pytest.mark.parametrize(
    "tenant", ["contoso\nfabrikam", "\x1b[31mred", "t" * 257], ids=["newline", "escape", "long"]
)
def test_a_verified_but_unprintable_or_long_tenant_is_dropped(tenant: str) -> None:
    assert _read(_signed(tenant=tenant))[1] is None


# -- replays and the cache of verified headers ----------------------------------------------


def test_a_verified_header_replayed_into_another_trace_or_channel_reads_nothing() -> None:
    header = _signed(traceparent=TRACE)
    assert _read(header, traceparent=TRACE) == FULL  # verified once: remembered
    assert _read(header, traceparent=OTHER_TRACE) == NOTHING
    assert _read(header) == NOTHING
    assert _read(header, traceparent=TRACE, channel=baggage.task_channel("celery", "t-1", "x")) == NOTHING
    assert _read(header, traceparent=TRACE) == FULL


@pytest.mark.parametrize(
    "joined",
    [f"{TRACE},{OTHER_TRACE}", f"{OTHER_TRACE},{TRACE}", f"{TRACE}-extra", "ff" + TRACE[2:]],
    ids=["joined, bound first", "joined, bound second", "version 00 with more fields", "version ff"],
)
def test_a_traceparent_that_names_no_one_trace_holds_no_trace_bound_signature(joined: str) -> None:
    """Two traceparents joined by a WSGI server, or one OpenTelemetry would not accept, name no trace."""
    assert _read(_signed(traceparent=TRACE), traceparent=joined) == NOTHING


def test_a_remembered_header_is_refused_once_it_is_too_old(monkeypatch: pytest.MonkeyPatch) -> None:
    header = _signed()
    assert _read(header) == FULL
    later = time.time() + baggage.MAX_AGE + 5
    monkeypatch.setattr(time, "time", lambda: later)
    assert _read(header) == NOTHING


def test_a_remembered_header_is_refused_once_its_key_is_removed() -> None:
    header = _signed(key=OTHER)
    assert _read(header) == FULL
    pg.configure("trust-center", mode="trace", baggage_keys=[KEY])
    assert _read(header) == NOTHING


def test_a_task_header_holds_only_for_that_task_id_and_name() -> None:
    """Whoever enqueues picks the id: a header seen on one task does not hold on another task under that id."""
    channel = baggage.task_channel("celery", "task-1", "billing.send_receipt")
    header = _signed(channel=channel, issued=int(time.time()) - 86_400)
    assert _read(header, channel=channel) == FULL
    for other in (
        baggage.task_channel("celery", "task-1", "ads.sync"),
        baggage.task_channel("celery", "task-2", "billing.send_receipt"),
        baggage.task_channel("rq", "task-1", "billing.send_receipt"),
        baggage.task_channel("celery", "task-1 billing.send_receipt"),
    ):
        assert _read(header, channel=other) == NOTHING


# -- through the middleware ---------------------------------------------------------------


def _asgi(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        found = pg.current_zone()
        seen["tenant"] = pg.current_tenant()
        seen["categories"] = found.categories if found is not None else frozenset()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    scope = {"type": "http", "method": "GET", "path": "/inbox", "headers": headers, "query_string": b""}
    asyncio.run(AsgiMiddleware(app)(scope, receive, send))
    return seen


def test_asgi_two_traceparent_headers_hold_no_trace_bound_signature() -> None:
    header = _signed(traceparent=TRACE).encode()
    assert _asgi([(b"baggage", header), (b"traceparent", TRACE.encode())])["tenant"] == "contoso"
    for pair in ((OTHER_TRACE, TRACE), (TRACE, OTHER_TRACE)):
        seen = _asgi(
            [(b"traceparent", pair[0].encode()), (b"baggage", header), (b"traceparent", pair[1].encode())]
        )
        assert seen == {"tenant": None, "categories": frozenset()}


def test_asgi_a_forged_member_in_a_second_baggage_header_voids_the_signed_one() -> None:
    seen = _asgi([(b"baggage", _signed().encode()), (b"baggage", b"purposeguard.tenant=fabrikam")])
    assert seen == {"tenant": None, "categories": frozenset()}


def _serve(middleware: Any, environ: dict[str, Any]) -> None:
    # As a WSGI server does: iterate the body, then close it (which closes the request's zone).
    body = middleware(environ, lambda status, headers, exc_info=None: None)
    try:
        list(body)
    finally:
        body.close()


def test_wsgi_a_forged_tenant_is_not_read_and_a_signed_one_is() -> None:
    seen: dict[str, Any] = {}

    def app(environ: Any, start_response: Any) -> list[bytes]:
        seen["tenant"] = pg.current_tenant()
        start_response("200 OK", [])
        return [b""]

    middleware = WsgiMiddleware(app)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/inbox", "HTTP_BAGGAGE": "purposeguard.tenant=fabrikam"}
    _serve(middleware, environ)
    assert seen["tenant"] is None
    environ["HTTP_BAGGAGE"] = _signed(traceparent=TRACE)
    environ["HTTP_TRACEPARENT"] = f"{OTHER_TRACE},{TRACE}"  # two headers, joined by the server
    _serve(middleware, environ)
    assert seen["tenant"] is None
    environ["HTTP_TRACEPARENT"] = TRACE
    _serve(middleware, environ)
    assert seen["tenant"] == "contoso"


@pytest.mark.parametrize(
    "issued",
    ["\u00b2\u00b3", "\u0661\u0662", "1_700_000_000", " 17"],
    ids=["superscript", "arabic-indic", "underscores", "space"],
)
def test_a_signature_time_that_is_not_plain_ascii_digits_is_malformed_not_an_error(issued: str) -> None:
    """The verifier is reached with text from the network: it answers, it never raises."""
    key = BaggageKey(KEY)
    said = verify(
        (key,),
        f"1.{key.key_id}.{issued}.-.{'A' * 43}",
        channel=baggage.HTTP,
        trace=None,
        purpose=None,
        tenant="contoso",
        zone=None,
        max_age=baggage.MAX_AGE,
    )
    assert said == "has a malformed signature"
