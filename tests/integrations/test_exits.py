"""The other exits teams use: SMTP (smtplib and the mailers on it), urllib3,
http.client / urllib.request and aiohttp, each against a real server on
loopback, plus the notice for clients no guard covers."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import smtplib
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from email.mime.text import MIMEText
from typing import Any

import aiohttp
import pytest
import requests
import urllib3
from purposeguard.integrations import _unguarded, baggage
from purposeguard.integrations import aiohttp as pg_aiohttp
from purposeguard.integrations import http_client as pg_http_client
from purposeguard.integrations import requests as pg_requests
from purposeguard.integrations import smtp as pg_smtp
from purposeguard.integrations import urllib3 as pg_urllib3

import purposeguard as pg

from ..conftest import SMTPServer
from .conftest import Signer, loopback_policy_text

CONTENT = "customer_data.content.email"
ADDRESS = "customer_data"


# -- a real SMTP server on loopback (tests/conftest.py: mail_server) ----------------------------


class AsIf(smtplib.SMTP):
    """An SMTP client for a named mail host that resolves to the loopback test
    server, the way DNS would for a real one: the guard sees the name."""

    loopback_port = 0

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.loopback_port), timeout)


@pytest.fixture(scope="module")
def certificate() -> Any:
    import trustme

    return trustme.CA()


@pytest.fixture
def tls_mail_server(certificate: Any) -> Iterator[SMTPServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.issue_cert("mail.example.com").configure_cert(context)
    with SMTPServer(tls_context=context) as server:
        yield server


def mail_host(host: str, server: SMTPServer) -> smtplib.SMTP:
    client = type("Client", (AsIf,), {"loopback_port": server.port})(host, 25, timeout=10)
    return client


MARKETING_POLICY = (
    loopback_policy_text()
    + '\n[[destinations]]\nid = "bulk-mail"\nhosts = ["smtp.bulkmail.example"]\npurpose = "marketing.direct"\n'
)


@pytest.fixture(autouse=True)
def guards() -> Iterator[None]:
    for module in (pg_smtp, pg_urllib3, pg_http_client, pg_aiohttp):
        module.instrument()
    yield
    for module in (pg_smtp, pg_urllib3, pg_http_client, pg_aiohttp, pg_requests):
        module.uninstrument()
    _unguarded.reset()


def newsletter(to: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "news@service.example"
    message["To"] = to
    message["Subject"] = "Spring offers"
    message.set_content(body)
    return message


# -- SMTP ----------------------------------------------------------------------------------------


def test_mail_for_running_the_service_is_delivered(mail_server: SMTPServer, marker: str) -> None:
    with pg.testing.assert_no_violations(), pg.purpose("service.operations"):
        with smtplib.SMTP("127.0.0.1", mail_server.port, timeout=10) as client:
            client.send_message(newsletter("ops@service.example", pg.label(marker, CONTENT)))
    assert marker.encode() in mail_server.mailbox.messages[0]


def test_a_labelled_address_to_a_marketing_mail_host_is_refused_before_sending(
    mail_server: SMTPServer, marker: str
) -> None:
    pg.configure(pg.Policy.from_toml(MARKETING_POLICY))
    address = pg.label(f"{marker}@contoso.example", ADDRESS)
    with pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation) as caught:
        with mail_host("smtp.bulkmail.example", mail_server) as client:
            client.send_message(newsletter(address, "Spring offers"))
    (violation,) = caught.value.violations
    assert (violation.category, violation.purpose, violation.via, violation.function) == (
        ADDRESS,
        "marketing.direct",
        "egress",
        "smtplib.SMTP.sendmail",
    )
    assert marker not in str(caught.value)
    assert mail_server.mailbox.messages == []


def test_the_current_purpose_decides_when_the_mail_host_is_not_a_destination(mail_server: SMTPServer) -> None:
    subscribers = {"contoso": pg.label("user@contoso.example", ADDRESS)}

    @pg.purpose("marketing.direct")
    def send_newsletter() -> None:
        # The address is read here, not passed in: the mail server is where it leaves.
        with smtplib.SMTP("127.0.0.1", mail_server.port, timeout=10) as client:
            client.send_message(newsletter(subscribers["contoso"], "Spring offers"))

    with pytest.raises(pg.PurposeViolation) as caught:
        send_newsletter()
    (violation,) = caught.value.violations
    assert (violation.purpose, violation.via, violation.rule) == (
        "marketing.direct",
        "egress",
        "no-direct-marketing",
    )
    assert mail_server.mailbox.messages == []


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda body: newsletter("a@b.example", body), id="EmailMessage.set_content"),
        pytest.param(lambda body: MIMEText(body), id="MIMEText"),
        pytest.param(lambda body: _with_attachment(body), id="attachment"),
        pytest.param(lambda body: _with_subject(body), id="subject-header"),
    ],
)
def test_labels_survive_building_the_message(build: Any, mail_server: SMTPServer, marker: str) -> None:
    message = build(pg.label(marker, CONTENT))
    with pg.purpose("service.communications"), pytest.raises(pg.PurposeViolation) as caught:
        with smtplib.SMTP("127.0.0.1", mail_server.port, timeout=10) as client:
            client.send_message(message, from_addr="a@b.example", to_addrs=["c@d.example"])
    assert caught.value.rule == "no-content-in-service-communications"
    assert mail_server.mailbox.messages == []


def _with_attachment(body: str) -> EmailMessage:
    message = newsletter("a@b.example", "see attached")
    message.add_attachment(body.encode(), maintype="application", subtype="octet-stream", filename="x.bin")
    return message


def _with_subject(body: str) -> EmailMessage:
    message = newsletter("a@b.example", "hello")
    del message["Subject"]
    message["Subject"] = body
    return message


def test_sendmail_with_a_labelled_raw_message_is_refused(mail_server: SMTPServer, marker: str) -> None:
    raw = "Subject: hi\r\n\r\n" + pg.label(marker, CONTENT)
    with pg.purpose("service.communications"), pytest.raises(pg.PurposeViolation):
        with smtplib.SMTP("127.0.0.1", mail_server.port, timeout=10) as client:
            client.sendmail("a@b.example", ["c@d.example"], raw)
    assert mail_server.mailbox.messages == []


def test_trace_mode_records_once_and_delivers(mail_server: SMTPServer) -> None:
    pg.configure("trust-center", mode="trace")
    # Read before the purpose starts: labelling inside it would itself be a use (via="source").
    entry = pg.label("diary entry", CONTENT)
    with pg.testing.capture() as seen, pg.purpose("service.communications"):
        with smtplib.SMTP("127.0.0.1", mail_server.port, timeout=10) as client:
            client.send_message(newsletter("a@b.example", entry))
    assert [(v.via, v.rule, v.mode) for v in seen] == [
        ("egress", "no-content-in-service-communications", "trace")
    ]
    assert len(mail_server.mailbox.messages) == 1


def test_content_over_unencrypted_smtp_off_host_is_refused(mail_server: SMTPServer, marker: str) -> None:
    with pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation) as caught:
        with mail_host("mail.example.com", mail_server) as client:
            client.send_message(newsletter("ops@service.example", pg.label(marker, CONTENT)))
    assert [(v.via, v.rule) for v in caught.value.violations] == [("transport", "transport.require_tls")]
    assert marker not in str(caught.value)
    assert mail_server.mailbox.messages == []


def test_content_after_starttls_off_host_is_delivered(tls_mail_server: SMTPServer, certificate: Any) -> None:
    context = ssl.create_default_context()
    certificate.configure_trust(context)
    with pg.testing.assert_no_violations(), pg.purpose("service.operations"):
        with mail_host("mail.example.com", tls_mail_server) as client:
            client.starttls(context=context)
            client.send_message(newsletter("ops@service.example", pg.label("encrypted body", CONTENT)))
    assert len(tls_mail_server.mailbox.messages) == 1


def test_zone_content_in_a_plain_mail_to_a_marketing_host_is_a_context_flow(mail_server: SMTPServer) -> None:
    pg.configure(pg.Policy.from_toml(MARKETING_POLICY), context_mode="enforce")
    with pg.zone(tenant="contoso"), pytest.raises(pg.PurposeViolation) as caught:
        address = pg.label("user@contoso.example", ADDRESS)
        text = f"Hello {address}, spring offers"  # the f-string drops the label; the zone keeps it
        with mail_host("smtp.bulkmail.example", mail_server) as client:
            client.sendmail("news@service.example", ["list@service.example"], text)
    assert [(v.via, v.category, v.tenant) for v in caught.value.violations] == [
        ("context", ADDRESS, "contoso")
    ]
    assert mail_server.mailbox.messages == []


def _connected_later(host: str, server: SMTPServer, constructed_for: str) -> smtplib.SMTP:
    # SMTP() (or a client made for another host), then connect(host): the
    # host given to connect() is the mail server.
    client_class = type("Client", (AsIf,), {"loopback_port": server.port})
    client = client_class(constructed_for, 25, timeout=10) if constructed_for else client_class(timeout=10)
    if constructed_for:
        client.close()
    client.connect(host, 25)
    return client


@pytest.mark.parametrize("constructed_for", ["", "127.0.0.1"], ids=["SMTP()", "SMTP(loopback)"])
def test_the_host_given_to_connect_is_the_mail_server(
    mail_server: SMTPServer, marker: str, constructed_for: str
) -> None:
    pg.configure(pg.Policy.from_toml(MARKETING_POLICY))
    body = pg.label(marker, CONTENT)
    with pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation) as caught:
        with _connected_later("smtp.bulkmail.example", mail_server, constructed_for) as client:
            client.send_message(newsletter("list@service.example", body))
    assert {(v.purpose, v.via) for v in caught.value.violations} == {("marketing.direct", "egress")}
    # And plain SMTP off the host, connected that way, is refused for content.
    with pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation) as plain:
        with _connected_later("mail.example.com", mail_server, constructed_for) as client:
            client.send_message(newsletter("ops@service.example", body))
    assert [(v.via, v.rule) for v in plain.value.violations] == [("transport", "transport.require_tls")]
    assert mail_server.mailbox.messages == []


def test_a_session_driven_by_hand_with_send_is_checked(mail_server: SMTPServer, marker: str) -> None:
    pg.configure(pg.Policy.from_toml(MARKETING_POLICY), context_mode="enforce")
    body = pg.label(marker, CONTENT)
    # The text's own labels, in whatever send() carries.
    with pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation) as labelled:
        with mail_host("smtp.bulkmail.example", mail_server) as client:
            client.ehlo()
            client.docmd("MAIL FROM:<news@service.example>")
            client.docmd("RCPT TO:<list@service.example>")
            client.docmd("DATA")
            client.send(body)
    assert [(v.via, v.function) for v in labelled.value.violations] == [("egress", "smtplib.SMTP.send")]
    # Laundered text: the DATA command checks the zone, as data() does;
    # EHLO and the envelope commands never meet it.
    with pg.zone(tenant="contoso"), pg.purpose("service.operations"):
        laundered = f"{pg.label(marker, CONTENT)}"
        with pytest.raises(pg.PurposeViolation) as zone_flow:
            with mail_host("smtp.bulkmail.example", mail_server) as client:
                client.ehlo()
                client.docmd("MAIL FROM:<news@service.example>")
                client.docmd("RCPT TO:<list@service.example>")
                client.docmd("DATA")
                client.send(laundered.encode() + b"\r\n.\r\n")
    assert [(v.via, v.function) for v in zone_flow.value.violations] == [("context", "smtplib.SMTP.send")]
    assert mail_server.mailbox.messages == []


def test_a_hand_driven_session_for_an_allowed_purpose_is_delivered_and_checked_once(
    mail_server: SMTPServer,
) -> None:
    pg.configure("trust-center", context_mode="enforce")
    with (
        pg.testing.assert_no_violations() as seen,
        pg.zone(tenant="contoso"),
        pg.purpose("service.operations"),
    ):
        body = pg.label("the mail body", CONTENT)
        with smtplib.SMTP("127.0.0.1", mail_server.port, timeout=10) as client:
            client.ehlo()
            client.mail("ops@service.example")
            client.rcpt("admin@service.example")
            client.data(f"Subject: status\r\n\r\n{body}")
    assert list(seen) == []
    assert len(mail_server.mailbox.messages) == 1


def test_uninstrument_restores_smtplib_and_email(mail_server: SMTPServer) -> None:
    pg_smtp.uninstrument()
    assert not pg_smtp.is_instrumented()
    body = pg.label("x", CONTENT)
    with pg.testing.assert_no_violations(), pg.purpose("service.communications"):
        with smtplib.SMTP("127.0.0.1", mail_server.port, timeout=10) as client:
            client.send_message(newsletter("a@b.example", body))
    assert len(mail_server.mailbox.messages) == 1


# -- urllib3 -------------------------------------------------------------------------------------


def test_urllib3_json_to_an_ad_destination_is_refused(
    recorder: Any, loopback_policy: pg.Policy, marker: str
) -> None:
    pg.configure(loopback_policy)
    body = pg.label(marker, CONTENT)
    with pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation) as caught:
        urllib3.PoolManager().request("POST", recorder.url("localhost") + "/ads", json={"inputs": [body]})
    assert (caught.value.violations[0].purpose, caught.value.violations[0].via) == ("advertising", "egress")
    assert marker not in str(caught.value)
    assert recorder.received == []


@pytest.mark.parametrize("where", ["fields", "body", "headers"])
def test_urllib3_checks_fields_body_and_headers(recorder: Any, where: str) -> None:
    value = pg.label("a mail body", CONTENT)
    cases: dict[str, dict[str, Any]] = {
        "fields": {"fields": {"q": value}},
        "body": {"body": value.encode()},
        "headers": {"headers": {"x-snippet": value}},
    }
    kwargs = cases[where]
    with pg.purpose("service.communications"), pytest.raises(pg.PurposeViolation):
        urllib3.PoolManager().request("POST", recorder.url() + "/notice", **kwargs)
    assert recorder.received == []


def test_urllib3_allowed_call_carries_purpose_and_tenant(recorder: Any, signed: Signer) -> None:
    with pg.zone(tenant="contoso"), pg.purpose("service.operations"):
        response = urllib3.PoolManager().request(
            "POST", recorder.url() + "/ingest", json={"body": pg.label("x", CONTENT)}
        )
    assert response.status == 200
    incoming = baggage.parse(recorder.received[0].headers["baggage"])
    assert (incoming.purpose, incoming.tenant, incoming.categories) == (
        "service.operations",
        "contoso",
        {CONTENT},
    )


def test_urllib3_checks_each_redirect_hop_against_its_own_host(
    recorder: Any, loopback_policy: pg.Policy, marker: str
) -> None:
    pg.configure(loopback_policy)
    target = recorder.url("localhost") + "/ads"
    with pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation):
        urllib3.PoolManager().request(
            "POST", recorder.url() + f"/redirect?to={target}", body=pg.label(marker, CONTENT).encode()
        )
    assert [r.path.split("?")[0] for r in recorder.received] == ["/redirect"]  # the ad host got nothing


def test_urllib3_streamed_body_is_checked_chunk_by_chunk(recorder: Any) -> None:
    piece = pg.label("mail body", CONTENT).encode()

    def chunks() -> Iterator[bytes]:
        yield b"plain "
        yield piece

    with pg.purpose("service.communications"), pytest.raises(pg.PurposeViolation):
        urllib3.PoolManager().request("POST", recorder.url() + "/stream", body=chunks(), chunked=True)


def test_requests_unguarded_is_still_checked_by_urllib3(recorder: Any) -> None:
    # requests calls urlopen by keyword; the urllib3 guard reads it all the same.
    # requests wraps every OSError from urllib3 (a PurposeViolation is a
    # PermissionError) in its ConnectionError: the call still fails closed,
    # and the requests guard, when on, raises the violation itself.
    assert not pg_requests.is_instrumented()
    body = pg.label("mail body", CONTENT)
    with pg.testing.capture() as seen, pg.purpose("service.communications"):
        with pytest.raises(requests.ConnectionError) as caught:
            requests.post(recorder.url() + "/notice", data=body, timeout=10)
    assert isinstance(caught.value.args[0], pg.PurposeViolation)
    assert [v.function for v in seen] == ["urllib3.HTTPConnectionPool.urlopen"]
    assert recorder.received == []


def test_requests_over_urllib3_and_http_client_is_one_flow_one_record(recorder: Any) -> None:
    pg_requests.instrument()
    pg.configure("trust-center", mode="trace")
    body = pg.label("mail body", CONTENT)
    with pg.testing.capture() as seen, pg.purpose("service.communications"):
        requests.post(recorder.url() + "/notice", data=body, timeout=10)
    assert [(v.via, v.function) for v in seen] == [("egress", "requests.Session.send")]


# -- http.client and urllib.request ----------------------------------------------------------


def test_urllib_request_to_an_ad_destination_is_refused(
    recorder: Any, loopback_policy: pg.Policy, marker: str
) -> None:
    pg.configure(loopback_policy)
    request = urllib.request.Request(
        recorder.url("localhost") + "/ads", data=pg.label(marker, CONTENT).encode()
    )
    with pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.violations[0].purpose == "advertising"
    assert marker not in str(caught.value)
    assert recorder.received == []


def test_urllib_request_allowed_call_is_sent(recorder: Any) -> None:
    with pg.testing.assert_no_violations(), pg.purpose("service.operations"):
        data = json.dumps({"ok": 1}).encode()
        with urllib.request.urlopen(
            urllib.request.Request(recorder.url() + "/x", data=data), timeout=10
        ) as r:
            assert r.status == 200
    assert len(recorder.received) == 1


def test_http_client_by_hand_checks_headers_and_body(recorder: Any) -> None:
    body = pg.label("mail body", CONTENT)
    connection = http.client.HTTPConnection("127.0.0.1", recorder.port, timeout=10)
    with pg.purpose("service.communications"), pytest.raises(pg.PurposeViolation):
        connection.putrequest("POST", "/notice")
        connection.putheader("x-preview", body)
    connection.close()
    connection = http.client.HTTPConnection("127.0.0.1", recorder.port, timeout=10)
    with pg.purpose("service.communications"), pytest.raises(pg.PurposeViolation):
        connection.request("POST", "/notice", body=body)
    connection.close()
    assert recorder.received == []


def test_http_client_plain_http_off_host_refuses_content_before_connecting(marker: str) -> None:
    connection = http.client.HTTPConnection("mail-archive.example.invalid", 9, timeout=2)
    with pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation) as caught:
        connection.request("POST", "/store", body=pg.label(marker, CONTENT))
    assert [(v.via, v.rule) for v in caught.value.violations] == [("transport", "transport.require_tls")]
    assert connection.sock is None  # refused before any connection was attempted


# -- aiohttp -------------------------------------------------------------------------------------


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_aiohttp_json_to_an_ad_destination_is_refused(
    recorder: Any, loopback_policy: pg.Policy, marker: str
) -> None:
    pg.configure(loopback_policy)

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            with pg.purpose("service.operations"):
                await session.post(
                    recorder.url("localhost") + "/ads", json={"x": [pg.label(marker, CONTENT)]}
                )

    with pytest.raises(pg.PurposeViolation) as caught:
        run(go())
    assert caught.value.violations[0].purpose == "advertising"
    assert marker not in str(caught.value)
    assert recorder.received == []


def test_aiohttp_allowed_call_carries_baggage(recorder: Any, signed: Signer) -> None:
    async def go() -> int:
        async with aiohttp.ClientSession() as session:
            with pg.zone(tenant="contoso"), pg.purpose("service.operations"):
                async with session.post(
                    recorder.url() + "/x", json={"b": pg.label("x", CONTENT)}
                ) as response:
                    return response.status

    assert run(go()) == 200
    incoming = baggage.parse(recorder.received[0].headers["baggage"])
    assert (incoming.purpose, incoming.tenant, incoming.categories) == (
        "service.operations",
        "contoso",
        {CONTENT},
    )


def test_aiohttp_checks_each_redirect_hop(recorder: Any, loopback_policy: pg.Policy) -> None:
    pg.configure(loopback_policy)
    target = recorder.url("localhost") + "/ads"

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            with pg.purpose("service.operations"):
                await session.post(recorder.url() + f"/redirect?to={target}", data=pg.label("x", CONTENT))

    with pytest.raises(pg.PurposeViolation):
        run(go())
    assert [r.path.split("?")[0] for r in recorder.received] == ["/redirect"]


def test_aiohttp_streamed_body_is_checked_chunk_by_chunk(recorder: Any) -> None:
    piece = pg.label("mail body", CONTENT).encode()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"plain "
        yield piece

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            with pg.purpose("service.communications"):
                await session.post(recorder.url() + "/stream", data=chunks())

    with pytest.raises(pg.PurposeViolation):
        run(go())


# -- clients no guard covers -------------------------------------------------------------------


def test_an_unguarded_client_is_named_once_when_data_leaves(
    recorder: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import ftplib  # noqa: F401 - the standard library's FTP client, which no guard covers

    _unguarded.reset()
    pg_urllib3.instrument()
    caplog.set_level(logging.WARNING, logger="purposeguard")
    with pg.purpose("service.operations"):
        urllib3.PoolManager().request("GET", recorder.url() + "/a")
        urllib3.PoolManager().request("GET", recorder.url() + "/b")
    named = [r.getMessage() for r in caplog.records if "ftplib" in r.getMessage()]
    assert len(named) == 1
    assert "does not guard" in named[0]


def test_a_guarded_client_whose_guard_is_off_is_named_with_the_fix(
    recorder: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _unguarded.reset()
    pg_aiohttp.uninstrument()
    pg_urllib3.instrument()
    caplog.set_level(logging.WARNING, logger="purposeguard")
    with pg.purpose("service.operations"):
        urllib3.PoolManager().request("GET", recorder.url() + "/a")
    named = [r.getMessage() for r in caplog.records if "aiohttp" in r.getMessage()]
    assert named == [
        "purposeguard: aiohttp is imported but its guard is off: call purposeguard.integrations.aiohttp.instrument()"
    ]


def test_nothing_is_said_while_no_egress_guard_is_on(recorder: Any, caplog: pytest.LogCaptureFixture) -> None:
    for module in (pg_smtp, pg_urllib3, pg_http_client, pg_aiohttp):
        module.uninstrument()
    _unguarded.reset()
    caplog.set_level(logging.WARNING, logger="purposeguard")
    from purposeguard.integrations._egress import check_egress

    check_egress(recorder.url(), frozenset(), function="t")
    assert not [r for r in caplog.records if "is imported" in r.getMessage()]


def test_urllib_error_is_still_raised_for_a_refused_connection() -> None:
    # The guard adds checks, not failures: an unreachable host fails as before.
    with pg.purpose("service.operations"), pytest.raises(urllib.error.URLError):
        urllib.request.urlopen("http://127.0.0.1:9/", timeout=2)


def test_urllib3_under_a_guarded_requests_is_named_for_its_direct_calls_only(
    recorder: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """requests sends through urllib3: with requests' guard on, urllib3's
    guard is named for direct urllib3 calls, not as if requests' were unchecked."""
    _unguarded.reset()
    pg_urllib3.uninstrument()
    pg_requests.instrument()
    caplog.set_level(logging.WARNING, logger="purposeguard")
    with pg.purpose("service.operations"):
        requests.get(recorder.url() + "/a", timeout=5)
    (named,) = [r.getMessage() for r in caplog.records if "urllib3 is imported" in r.getMessage()]
    assert "calls made through requests are checked by requests's guard" in named
    assert "purposeguard.integrations.urllib3.instrument()" in named
