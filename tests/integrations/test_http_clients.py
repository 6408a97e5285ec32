"""Outgoing HTTP with httpx (sync and async) and requests, against real loopback servers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import requests
from purposeguard.integrations import baggage
from purposeguard.integrations import httpx as pg_httpx
from purposeguard.integrations import requests as pg_requests

import purposeguard as pg

from .conftest import Signer

CONTENT = "customer_data.content.email"


@pytest.fixture(autouse=True)
def instrumented() -> Iterator[None]:
    pg_httpx.instrument()
    pg_requests.instrument()
    yield
    pg_httpx.uninstrument()
    pg_requests.uninstrument()


def send_httpx(url: str, **kwargs: Any) -> int:
    with httpx.Client(timeout=10) as client:
        return client.post(url, **kwargs).status_code


def send_httpx_async(url: str, **kwargs: Any) -> int:
    import asyncio

    async def go() -> int:
        async with httpx.AsyncClient(timeout=10) as client:
            return (await client.post(url, **kwargs)).status_code

    return asyncio.run(go())


def send_requests(url: str, **kwargs: Any) -> int:
    if "content" in kwargs:
        kwargs["data"] = kwargs.pop("content")
    with requests.Session() as session:
        return session.post(url, timeout=10, **kwargs).status_code


CLIENTS = {"httpx": send_httpx, "httpx-async": send_httpx_async, "requests": send_requests}


@pytest.fixture(params=list(CLIENTS))
def send(request: pytest.FixtureRequest) -> Callable[..., int]:
    return CLIENTS[request.param]


def ours(header: str | None) -> baggage.Incoming:
    return baggage.parse(header)


def test_allowed_call_carries_purpose_tenant_and_zone_in_baggage(
    send: Callable[..., int], recorder: Any, marker: str, signed: Signer
) -> None:
    with pg.zone(tenant="contoso"), pg.purpose("service.operations"):
        body = pg.label(marker, CONTENT)
        assert send(recorder.url() + "/ingest", json={"ticket": {"body": body}}) == 200
    (received,) = recorder.received
    assert marker in received.body.decode()  # allowed: the data does travel
    incoming = ours(received.headers["baggage"])
    assert (incoming.purpose, incoming.tenant, incoming.categories) == (
        "service.operations",
        "contoso",
        {CONTENT},
    )


def test_labels_of_what_is_sent_travel_even_without_a_zone(
    send: Callable[..., int], recorder: Any, signed: Signer
) -> None:
    with pg.purpose("service.operations"):
        send(recorder.url(), content=pg.label("a document body", "customer_data.content.document"))
    assert ours(recorder.received[0].headers["baggage"]).categories == {"customer_data.content.document"}


def test_existing_baggage_members_are_kept(send: Callable[..., int], recorder: Any, signed: Signer) -> None:
    with pg.purpose("service.security"):
        send(recorder.url(), headers={"baggage": "team=mail,purposeguard.purpose=advertising"}, content=b"x")
    header = recorder.received[0].headers["baggage"]
    assert "team=mail" in header
    assert ours(header).purpose == "service.security"


def test_without_a_baggage_key_no_purposeguard_member_is_sent(
    send: Callable[..., int], recorder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unsigned members would be ignored by every receiver: none leave, stale ones are removed."""
    monkeypatch.delenv("PURPOSEGUARD_BAGGAGE_KEYS", raising=False)
    with pg.zone(tenant="contoso"), pg.purpose("service.operations"):
        pg.label("a mail body", CONTENT)
        send(recorder.url(), headers={"baggage": "team=mail,purposeguard.purpose=advertising"}, content=b"x")
    header = recorder.received[0].headers["baggage"]
    assert "team=mail" in header and "purposeguard" not in header


def test_the_signature_is_bound_to_the_trace_the_call_carries(
    send: Callable[..., int], recorder: Any, signed: Signer
) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with pg.zone(tenant="contoso"), pg.purpose("service.operations"):
        send(recorder.url(), headers={"traceparent": traceparent}, content=b"x")
    header = recorder.received[0].headers["baggage"]
    assert baggage.parse(header, traceparent=traceparent).tenant == "contoso"
    other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    replayed = baggage.parse(header, traceparent=other)
    assert replayed.tenant is None and any("another trace" in w for w in replayed.warnings)


@pytest.mark.parametrize(
    "where",
    ["json-nested", "params", "headers", "data"],
)
def test_content_to_an_advertising_destination_is_refused_before_it_leaves(
    send: Callable[..., int], recorder: Any, loopback_policy: pg.Policy, marker: str, where: str
) -> None:
    pg.configure(loopback_policy)
    body = pg.label(marker, CONTENT)
    cases: dict[str, dict[str, Any]] = {
        "json-nested": {"json": {"campaign": {"inputs": [body]}}},
        "params": {"params": {"q": body}},
        "headers": {"headers": {"x-snippet": body}},
        "data": {"data": {"field": body}},
    }
    kwargs = cases[where]
    with pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation) as caught:
        send(recorder.url("localhost") + "/ads", **kwargs)
    (violation,) = caught.value.violations
    assert (violation.category, violation.purpose, violation.rule, violation.via) == (
        CONTENT,
        "advertising",
        "no-advertising",
        "egress",
    )
    assert marker not in str(caught.value)
    assert recorder.received == []


def test_without_a_destination_the_current_purpose_decides(send: Callable[..., int], recorder: Any) -> None:
    with pg.purpose("service.communications"), pytest.raises(pg.PurposeViolation) as caught:
        send(recorder.url() + "/notices", json={"body": pg.label("hello", CONTENT)})
    assert caught.value.rule == "no-content-in-service-communications"
    assert recorder.received == []


def test_zone_categories_are_checked_against_the_destination(
    send: Callable[..., int], recorder: Any, loopback_policy: pg.Policy
) -> None:
    pg.configure(loopback_policy, mode="trace")
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        pg.label("mail body", CONTENT)  # seen by the zone, not sent
        assert send(recorder.url("localhost"), json={"campaign": "spring"}) == 200
    assert [(v.category, v.purpose, v.via, v.tenant) for v in violations] == [
        (CONTENT, "advertising", "context", "contoso")
    ]
    # Another party: purposeguard's baggage (tenant, categories) is not sent there.
    assert "purposeguard" not in recorder.received[0].headers.get("baggage", "")


def test_content_over_plain_http_off_host_is_refused(send: Callable[..., int], marker: str) -> None:
    with pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation) as caught:
        # Refused before any connection is attempted: nothing leaves the machine.
        send("http://mail-archive.example.com:9/store", json={"body": pg.label(marker, CONTENT)})
    (violation,) = caught.value.violations
    assert (violation.via, violation.category, violation.rule) == (
        "transport",
        CONTENT,
        "transport.require_tls",
    )
    assert marker not in str(caught.value)


def test_plain_http_to_loopback_is_not_a_transport_violation(send: Callable[..., int], recorder: Any) -> None:
    with pg.testing.assert_no_violations(), pg.purpose("service.operations"):
        assert send(recorder.url(), json={"body": pg.label("x", CONTENT)}) == 200


def test_customer_data_that_is_not_content_may_use_plain_http() -> None:
    from purposeguard.integrations._egress import check_egress

    with pg.testing.assert_no_violations(), pg.purpose("service.operations"):
        check_egress("http://api.example.com/x", frozenset({"customer_data"}), function="t")
        check_egress("https://api.example.com/x", frozenset({CONTENT}), function="t")


def test_unlabelled_calls_pass_untouched_outside_any_purpose(send: Callable[..., int], recorder: Any) -> None:
    with pg.testing.assert_no_violations():
        assert send(recorder.url(), json={"hello": "world"}) == 200
    assert "baggage" not in recorder.received[0].headers


def test_uninstrument_restores_the_clients(recorder: Any) -> None:
    pg_httpx.uninstrument()
    pg_requests.uninstrument()
    assert not pg_httpx.is_instrumented() and not pg_requests.is_instrumented()
    body = pg.label("hello", CONTENT)
    with pg.purpose("service.communications"):
        assert send_httpx(recorder.url(), json={"b": body}) == 200
        assert send_requests(recorder.url(), json={"b": body}) == 200
    assert all("baggage" not in r.headers for r in recorder.received)
    pg_httpx.instrument()
    assert pg_httpx.is_instrumented()


def test_instrument_twice_wraps_once(recorder: Any) -> None:
    pg_httpx.instrument()
    pg_requests.instrument()
    with pg.testing.capture() as violations, pg.zone(), pg.purpose("service.communications"):
        pg.configure("trust-center", mode="trace")
        send_httpx(recorder.url(), json={"b": pg.label("hello", CONTENT)})
        send_requests(recorder.url(), json={"b": pg.label("hello", CONTENT)})
    assert [v.via for v in violations if v.via == "egress"] == ["egress", "egress"]


def test_redirect_hops_are_checked_against_their_own_host(recorder: Any, loopback_policy: pg.Policy) -> None:
    """A loopback service answering with a redirect to the advertising destination."""
    import http.server
    import threading

    target = recorder.url("localhost") + "/ads"

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(307)
            self.send_header("location", target)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        pg.configure(loopback_policy)
        url = f"http://127.0.0.1:{server.server_address[1]}/r"
        with pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation) as caught:
            requests.post(url, json={"body": pg.label("x", CONTENT)}, timeout=10)
        assert caught.value.purpose == "advertising"
        assert recorder.received == []
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def test_received_json_is_what_was_sent(recorder: Any) -> None:
    with pg.purpose("service.operations"):
        send_requests(recorder.url(), json={"n": [1, 2, {"k": pg.label("v", "customer_data")}]})
    assert json.loads(recorder.received[0].body) == {"n": [1, 2, {"k": "v"}]}
