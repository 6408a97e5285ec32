"""Egress under attack: content laundered inside a request, sent through each
guarded exit to an advertising destination on loopback, is refused before it
leaves; what a decision frame read does not block a house ad."""

from __future__ import annotations

import base64
import hashlib
import http.client
import http.server
import json
import smtplib
import threading
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from importlib import resources
from typing import Any

import pytest
import urllib3
from purposeguard.integrations import _unguarded
from purposeguard.integrations import http_client as pg_http_client
from purposeguard.integrations import smtp as pg_smtp
from purposeguard.integrations import urllib3 as pg_urllib3

import purposeguard as pg

from ..conftest import SMTPServer

EMAIL = "customer_data.content.email"
MARKER = "PGMARK-egress-4b1e"
BODY = f"Board minutes {MARKER}: the merger closes Friday"


def _policy() -> pg.Policy:
    text = resources.files("purposeguard.packs").joinpath("trust-center.toml").read_text(encoding="utf-8")
    text += '\n[[destinations]]\nid = "loopback-ads"\nhosts = ["localhost"]\npurpose = "advertising"\n'
    text += '\n[[destinations]]\nid = "bulk-mail"\nhosts = ["localhost.mail"]\npurpose = "marketing.direct"\n'
    return pg.Policy.from_toml(text, source="egress-attacks")


class Recorder:
    def __init__(self) -> None:
        received: list[bytes] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("content-length", "0"))
                received.append(self.path.encode() + b"\n" + self.rfile.read(length))
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with Recorder() as server:
        yield server


@pytest.fixture(autouse=True)
def exits() -> Iterator[None]:
    pg.configure(_policy(), mode="enforce")
    for module in (pg_urllib3, pg_http_client, pg_smtp):
        module.instrument()
    yield
    for module in (pg_urllib3, pg_http_client, pg_smtp):
        module.uninstrument()
    _unguarded.reset()


def _send_urllib3(port: int, payload: bytes) -> None:
    with urllib3.PoolManager() as pool:
        pool.request("POST", f"http://localhost:{port}/ads", body=payload, retries=False, timeout=5)


def _send_urllib_request(port: int, payload: bytes) -> None:
    request = urllib.request.Request(f"http://localhost:{port}/ads", data=payload, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()


def _send_http_client(port: int, payload: bytes) -> None:
    connection = http.client.HTTPConnection("localhost", port, timeout=5)
    try:
        connection.request("POST", "/ads", body=payload)
        connection.getresponse().read()
    finally:
        connection.close()


EXITS: dict[str, Callable[[int, bytes], None]] = {
    "urllib3": _send_urllib3,
    "urllib.request": _send_urllib_request,
    "http.client": _send_http_client,
}

LAUNDERINGS: dict[str, Callable[[str], bytes]] = {
    "labelled-bytes": lambda body: body.encode(),
    "fstring": lambda body: f"ad context: {body}".encode(),
    "json": lambda body: json.dumps({"texts": [body]}).encode(),
    "base64": lambda body: base64.b64encode(body.encode()),
    "zlib": lambda body: zlib.compress(body.encode()),
    "sha256": lambda body: hashlib.sha256(body.encode()).hexdigest().encode(),
    "join": lambda body: " ".join(body.split()).encode("ascii"),
    "reversed": lambda body: "".join(reversed(body)).encode(),
    "hex": lambda body: body.encode().hex().encode(),
    "upper-words": lambda body: ",".join(w.upper() for w in body.split()).encode(),
}


@pytest.mark.parametrize("exit_name", list(EXITS))
@pytest.mark.parametrize("launder", list(LAUNDERINGS))
def test_laundered_content_to_an_ad_destination_never_leaves(
    recorder: Recorder, exit_name: str, launder: str
) -> None:
    """Secure: content read in the request, laundered any way, is refused at every guarded exit before sending."""
    with pg.zone(tenant="contoso"), pg.purpose("service.operations"):
        body = pg.label(BODY, EMAIL)
        payload = LAUNDERINGS[launder](body)
        with pytest.raises(pg.PurposeViolation) as raised:
            EXITS[exit_name](recorder.port, payload)
    assert raised.value.violations[0].purpose == "advertising"
    assert MARKER not in str(raised.value)
    assert recorder.received == []


@pytest.mark.parametrize("exit_name", list(EXITS))
def test_a_house_ad_after_a_decision_frame_reaches_the_ad_destination(
    recorder: Recorder, exit_name: str
) -> None:
    """Precise: a spam verdict over content, in a decision frame, does not block an ad call carrying no user data."""

    @pg.purpose("service.security", output="decision")
    def is_spam() -> bool:
        return "lottery" in pg.label(BODY, EMAIL)

    with pg.zone(tenant="contoso"), pg.purpose("service.operations"):
        assert is_spam() is False
        EXITS[exit_name](recorder.port, b'{"slot": "sidebar", "campaign": "house"}')
    assert len(recorder.received) == 1


@pytest.mark.parametrize("exit_name", list(EXITS))
def test_outside_a_zone_a_labelled_payload_is_still_refused(recorder: Recorder, exit_name: str) -> None:
    """Secure: with no zone, the payload's own label refuses it at the exit."""
    with pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation):
        EXITS[exit_name](recorder.port, pg.label(BODY, EMAIL).encode())
    assert recorder.received == []


@pytest.mark.parametrize("exit_name", list(EXITS))
def test_trace_mode_records_the_flow_without_the_value(recorder: Recorder, exit_name: str) -> None:
    """Secure: in trace mode the flow is recorded (and goes out); no record holds the value."""
    pg.configure(_policy(), mode="trace", context_mode="trace")
    seen: list[pg.Violation] = []
    unsubscribe = pg.on_violation(seen.append)
    try:
        with pg.zone(tenant="contoso"), pg.purpose("service.operations"):
            body = pg.label(BODY, EMAIL)
            EXITS[exit_name](recorder.port, base64.b64encode(body.encode()))
    finally:
        unsubscribe()
    assert seen and all(v.purpose == "advertising" for v in seen)
    assert MARKER not in repr(seen)


def _bulk_mail_client(port: int) -> smtplib.SMTP:
    import socket

    class AsIf(smtplib.SMTP):
        def _get_socket(self, host: str, p: int, timeout: float) -> socket.socket:
            return socket.create_connection(("127.0.0.1", port), timeout)

    return AsIf("localhost.mail", 25, timeout=10)


@pytest.mark.parametrize(
    "build",
    [
        lambda body: ("customers@list.example", f"Hello! {body[:20]}"),
        lambda body: ("customers@list.example", base64.b64encode(body.encode()).decode()),
        lambda body: (pg.label("megan@contoso.example", "customer_data"), "Spring offers"),
    ],
    ids=["fstring-body", "base64-body", "labelled-recipient"],
)
def test_newsletter_mail_with_request_data_never_leaves(mail_server: SMTPServer, build: Any) -> None:
    """Secure: mail to a marketing host carrying request data (laundered or labelled) is refused before sending."""
    with pg.zone(tenant="contoso"), pg.purpose("service.operations"):
        body = pg.label(BODY, EMAIL)
        to, text = build(body)
        message = EmailMessage()
        message["From"] = "news@service.example"
        message["To"] = to
        message["Subject"] = "Spring offers"
        message.set_content(text)
        with _bulk_mail_client(mail_server.port) as client, pytest.raises(pg.PurposeViolation):
            client.send_message(message)
    assert mail_server.messages == []
