"""What each client actually sends is checked, not only the arguments of the call.

Labels are lost inside the clients before the request leaves (Base64 of a
password, a URL parsed into plain pieces, a cookie jar turned into a Cookie
line, a mail text parsed into a message): each case below sends labelled
content under a purpose that may not hold it, outside any zone, to a real
loopback server, and must be refused before anything reaches it.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.message
import smtplib
import urllib.request
import warnings
from collections.abc import Callable, Generator, Iterator
from typing import Any

import aiohttp
import httpx
import pytest
import requests
import urllib3
from purposeguard.integrations import aiohttp as pg_aiohttp
from purposeguard.integrations import http_client as pg_http_client
from purposeguard.integrations import httpx as pg_httpx
from purposeguard.integrations import requests as pg_requests
from purposeguard.integrations import smtp as pg_smtp
from purposeguard.integrations import urllib3 as pg_urllib3

import purposeguard as pg

from ..conftest import SMTPServer

CONTENT = "customer_data.content.email"
SECRET = "Quarterly-numbers-for-the-board"
MODULES = (pg_httpx, pg_requests, pg_urllib3, pg_http_client, pg_aiohttp, pg_smtp)


@pytest.fixture(autouse=True)
def guards() -> Iterator[None]:
    pg.configure("trust-center", mode="enforce")
    for module in MODULES:
        module.instrument()
    yield
    for module in MODULES:
        module.uninstrument()


def secret() -> str:
    return pg.label(SECRET, CONTENT)


def refused(send: Callable[[], Any], purpose: str = "advertising") -> pg.PurposeViolation:
    with pg.purpose(purpose), pytest.raises(pg.PurposeViolation) as caught:
        send()
    assert caught.value.violations[0].via == "egress"
    assert SECRET not in str(caught.value)
    return caught.value


# -- urllib.request: the URL itself ---------------------------------------------------------------


@pytest.mark.parametrize("form", ["str", "Request"])
def test_urlopen_checks_a_labelled_url(recorder: Any, form: str) -> None:
    url = recorder.url() + "/" + secret()
    target: Any = url if form == "str" else urllib.request.Request(url)
    refused(lambda: urllib.request.urlopen(target, timeout=10))
    assert recorder.received == []


# -- httpx: auth, URL objects, base_url, hooks and auth flows ------------------------------------


def _httpx_cases(base: str, value: str) -> dict[str, Callable[[], Any]]:
    def event_hook() -> Any:
        def hook(request: httpx.Request) -> None:
            request.url = request.url.copy_add_param("q", value)

        with httpx.Client(event_hooks={"request": [hook]}) as client:
            return client.get(base)

    class Signing(httpx.Auth):
        def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
            request.url = request.url.copy_with(path="/" + value)
            yield request

    def replaced_body() -> Any:
        with httpx.Client() as client:
            request = client.build_request("POST", base, content=b"x")
            request.stream = httpx.ByteStream(value.encode())
            request.headers["content-length"] = str(len(SECRET))
            return client.send(request)

    return {
        "request auth tuple": lambda: httpx.get(base, auth=("user", value)),
        "client auth tuple": lambda: httpx.Client(auth=("user", value)).get(base),
        "BasicAuth": lambda: httpx.get(base, auth=httpx.BasicAuth("user", value)),
        "base_url": lambda: httpx.Client(base_url=base + "/" + value).get("x"),
        "URL object": lambda: httpx.get(httpx.URL(base + "/" + value)),
        "URL copy_with": lambda: httpx.get(httpx.URL(base).copy_with(path="/" + value)),
        "URL join": lambda: httpx.get(httpx.URL(base).join("/" + value)),
        "event hook": event_hook,
        "auth flow": lambda: httpx.get(base, auth=Signing()),
        "replaced body": replaced_body,
    }


@pytest.mark.parametrize("case", list(_httpx_cases("http://x", "")))
def test_httpx_checks_what_is_finally_sent(recorder: Any, case: str) -> None:
    refused(_httpx_cases(recorder.url(), secret())[case])
    assert recorder.received == []


def test_httpx_async_client_auth_is_checked(recorder: Any) -> None:
    value = secret()

    async def go() -> None:
        async with httpx.AsyncClient(auth=("user", value)) as client:
            await client.get(recorder.url())

    refused(lambda: asyncio.run(go()))
    assert recorder.received == []


def test_httpx_auth_allowed_for_its_purpose_is_sent(recorder: Any) -> None:
    value = secret()
    with pg.testing.assert_no_violations(), pg.purpose("service.operations"):
        assert httpx.get(recorder.url(), auth=("user", value)).status_code == 200
    (received,) = recorder.received
    assert base64.b64decode(received.headers["authorization"].split()[1]) == f"user:{SECRET}".encode()


def test_httpx_auth_in_trace_mode_is_recorded_once_and_sent(recorder: Any) -> None:
    pg.configure("trust-center", mode="trace")
    value = secret()
    with pg.testing.capture() as captured, pg.purpose("advertising"):
        httpx.get(recorder.url(), auth=("user", value))
    assert [v.via for v in captured] == ["egress"]
    assert len(recorder.received) == 1


# -- requests: an auth callable that rewrites the prepared request -------------------------------


@pytest.mark.parametrize("part", ["url", "body"])
def test_requests_auth_callable_rewriting_the_request_is_checked(recorder: Any, part: str) -> None:
    value = secret()

    def auth(prepared: requests.PreparedRequest) -> requests.PreparedRequest:
        if part == "url":
            prepared.prepare_url(prepared.url or "", {"q": value})
        else:
            prepared.prepare_body(None, None, json={"q": value})
        return prepared

    refused(lambda: requests.post(recorder.url(), auth=auth, timeout=10))
    assert recorder.received == []


# -- urllib3: make_headers --------------------------------------------------------------------


@pytest.mark.parametrize("argument", ["basic_auth", "proxy_basic_auth"])
def test_urllib3_make_headers_keeps_the_password_labelled(recorder: Any, argument: str) -> None:
    credentials: dict[str, Any] = {argument: "user:" + secret()}
    headers = urllib3.make_headers(**credentials)
    assert pg.labels_of(next(iter(headers.values()))) == {CONTENT}
    refused(lambda: urllib3.PoolManager().request("GET", recorder.url(), headers=headers))
    assert recorder.received == []


def test_urllib3_uninstrument_restores_make_headers() -> None:
    pg_urllib3.uninstrument()
    assert not hasattr(urllib3.make_headers, "__pg_original__")
    assert urllib3.util.make_headers is urllib3.util.request.make_headers is urllib3.make_headers
    assert pg.labels_of(urllib3.make_headers(basic_auth="u:" + secret())["authorization"]) == frozenset()


# -- aiohttp: session defaults --------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["cookies", "auth", "base_url", "proxy", "proxy_auth"])
def test_aiohttp_session_defaults_are_checked(recorder: Any, setting: str) -> None:
    value = secret()
    address = recorder.url().split("//", 1)[1]

    async def go() -> None:
        options: Any = {
            "cookies": {"cookies": {"c": value}},
            "auth": {"auth": aiohttp.BasicAuth("user", value)},
            "base_url": {"base_url": recorder.url() + "/" + value + "/"},
            # The recorder stands in for the proxy the credentials go to.
            "proxy": {"proxy": "http://user:" + value + "@" + address},
            "proxy_auth": {"proxy": recorder.url(), "proxy_auth": aiohttp.BasicAuth("user", value)},
        }[setting]
        async with aiohttp.ClientSession(**options) as session:
            url = "x" if setting == "base_url" else recorder.url()
            async with session.get(url) as response:
                await response.read()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # aiohttp 3.14 deprecates BasicAuth
        refused(lambda: asyncio.run(go()))
    assert recorder.received == []


def test_aiohttp_absolute_url_is_not_charged_with_the_base_url(recorder: Any) -> None:
    value = secret()

    async def go() -> int:
        async with aiohttp.ClientSession(base_url=recorder.url() + "/" + value + "/") as session:
            with pg.purpose("advertising"):
                async with session.get(recorder.url() + "/plain") as response:
                    return response.status

    with pg.testing.assert_no_violations():
        assert asyncio.run(go()) == 200


# -- smtplib: mail sent by hand ------------------------------------------------------------------


def _client(server: SMTPServer) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", server.port, timeout=10)


def _smtp_cases(server: SMTPServer, value: str) -> dict[str, Callable[[], Any]]:
    def by_hand() -> None:
        with _client(server) as client:
            client.ehlo()
            client.mail("news@service.example")
            client.rcpt("a@b.example")
            client.data("Subject: offers\r\n\r\n" + value)

    def parsed(bytes_: bool) -> Callable[[], None]:
        def send() -> None:
            text = "From: news@service.example\nTo: a@b.example\nSubject: s\n\n" + value
            message = email.message_from_bytes(text.encode()) if bytes_ else email.message_from_string(text)
            with _client(server) as client:
                client.send_message(message)

        return send

    def flattened() -> None:
        message = email.message.EmailMessage()
        message["From"], message["To"] = "news@service.example", "a@b.example"
        message.set_content(value)
        with _client(server) as client:
            client.sendmail("news@service.example", ["a@b.example"], message.as_string())

    return {
        "data by hand": by_hand,
        "message_from_string": parsed(False),
        "message_from_bytes": parsed(True),
        "as_string": flattened,
    }


@pytest.mark.parametrize("case", ["data by hand", "message_from_string", "message_from_bytes", "as_string"])
def test_smtp_checks_the_message_as_sent(mail_server: SMTPServer, case: str) -> None:
    refused(_smtp_cases(mail_server, secret())[case])
    assert mail_server.mailbox.messages == []


def test_smtp_labelled_recipient_by_hand_is_refused_before_rcpt(mail_server: SMTPServer) -> None:
    address = pg.label("bob@b.example", "customer_data")
    with _client(mail_server) as client:
        client.ehlo()
        client.mail("news@service.example")
        with pg.purpose("advertising"), pytest.raises(pg.PurposeViolation):
            client.rcpt(address)
    assert mail_server.mailbox.messages == []


def test_smtp_data_allowed_for_its_purpose_is_delivered_once_checked(mail_server: SMTPServer) -> None:
    value = secret()
    with pg.testing.assert_no_violations(), pg.purpose("service.operations"):
        with _client(mail_server) as client:
            client.sendmail("ops@service.example", ["a@b.example"], "Subject: x\r\n\r\n" + value)
    (message,) = mail_server.mailbox.messages
    assert SECRET.encode() in message


# -- what the review of these checks found -----------------------------------------------------


def test_httpx_a_relative_url_object_merged_with_base_url_is_checked(recorder: Any) -> None:
    path = httpx.URL("/" + secret())

    def send() -> Any:
        with httpx.Client(base_url=recorder.url()) as client:
            return client.get(path)

    refused(send)
    assert recorder.received == []


def test_requests_a_url_assigned_by_an_auth_callable_is_checked(recorder: Any) -> None:
    value = secret()

    def auth(prepared: requests.PreparedRequest) -> requests.PreparedRequest:
        prepared.url = (prepared.url or "") + "?q=" + value
        return prepared

    refused(lambda: requests.get(recorder.url(), auth=auth, timeout=10))
    assert recorder.received == []


def test_requests_credentials_in_a_sessions_proxy_are_checked(recorder: Any) -> None:
    address = recorder.url().split("//", 1)[1]
    proxy = "http://user:" + secret() + "@" + address  # concatenation keeps the label

    def send() -> Any:
        with requests.Session() as session:
            session.proxies = {"http": proxy}
            return session.get("http://example.invalid/", timeout=10)

    refused(send)
    assert recorder.received == []


def test_requests_a_prepared_request_sent_again_later_keeps_its_bodys_labels(recorder: Any) -> None:
    # Session.request walks the body once; the prepared request keeps what it saw.
    with requests.Session() as session:
        with pg.purpose("service.operations"):
            first = session.post(recorder.url(), json={"body": secret()}, timeout=10)
        refused(lambda: session.send(first.request, timeout=10))
    assert len(recorder.received) == 1


def test_urllib3_proxy_headers_of_a_proxy_manager_are_checked(recorder: Any) -> None:
    headers = urllib3.make_headers(proxy_basic_auth="user:" + secret())
    manager = urllib3.ProxyManager(recorder.url(), proxy_headers=headers)
    refused(lambda: manager.request("GET", "http://example.invalid/"))
    assert recorder.received == []
