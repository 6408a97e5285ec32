"""Message shapes that must keep their labels until the mail is sent: every
setter of the ``email`` classes, copies, pickles, flattened and parsed text,
each sent to a real SMTP server on loopback."""

from __future__ import annotations

import copy
import email
import email.policy
import pickle
import smtplib
from collections.abc import Callable, Iterator
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any

import pytest
import wrapt
from purposeguard.integrations import smtp as pg_smtp

import purposeguard as pg

from .test_exits import SMTPServer

CONTENT = "customer_data.content.email"


@pytest.fixture
def mail_server() -> Iterator[SMTPServer]:
    with SMTPServer() as server:
        yield server


@pytest.fixture(autouse=True)
def guard() -> Iterator[None]:
    pg_smtp.instrument()
    yield
    pg_smtp.uninstrument()


def base(cls: type[Message] = EmailMessage) -> Any:
    message = cls()
    message["From"] = "a@service.example"
    message["To"] = "b@service.example"
    message["Subject"] = "hello"
    if isinstance(message, EmailMessage):
        message.set_content("plain words")
    else:
        message.set_payload("plain words")
    return message


def with_content(text: str) -> EmailMessage:
    message = base()
    message.set_content(text)
    return message


def _after(message: Any, call: Callable[[Any], object]) -> Any:
    call(message)
    return message


def _moved_into_a_part(text: str) -> Any:
    # The body moves into a new sub-part, encoded; the sub-part is sent alone.
    message = with_content(text)
    message.make_mixed()
    (part,) = message.iter_parts()
    return copy.deepcopy(part)


def _with_preamble(text: str) -> Any:
    # Stored as an attribute, by no setter: read where the message is sent.
    message = base()
    message.make_mixed()
    message.preamble = text
    return message


# Each builds a message (or flattened text) from ``text`` by one route.
SHAPES: dict[str, Callable[[str], Any]] = {
    "replace_header": lambda text: _after(base(), lambda m: m.replace_header("Subject", text)),
    "replace_header, compat32": lambda text: _after(
        base(Message), lambda m: m.replace_header("Subject", text)
    ),
    "set_raw": lambda text: _after(base(), lambda m: m.set_raw("X-Note", text)),
    "add_header parameter": lambda text: _after(base(), lambda m: m.add_header("X-Note", "v", title=text)),
    "set_param": lambda text: _after(base(), lambda m: m.set_param("name", text)),
    "set_param on another header": lambda text: _after(
        base(), lambda m: m.set_param("name", text, header="X-Note")
    ),
    "preamble attribute": _with_preamble,
    "copy.deepcopy": lambda text: copy.deepcopy(with_content(text)),
    "copy.copy": lambda text: copy.copy(with_content(text)),
    "pickle": lambda text: pickle.loads(pickle.dumps(with_content(text))),
    "deepcopy after replace_header": lambda text: copy.deepcopy(
        _after(base(), lambda m: m.replace_header("Subject", text))
    ),
    "deepcopy of a MIMEMultipart": lambda text: copy.deepcopy(
        _after(MIMEMultipart(), lambda m: m.attach(MIMEText(text)))
    ),
    "deepcopy with an attachment": lambda text: copy.deepcopy(
        _after(base(), lambda m: m.add_attachment(text.encode(), maintype="application", subtype="x"))
    ),
    "set_content on a copy": lambda text: _after(copy.copy(base()), lambda m: m.set_content(text)),
    "set_payload on a deepcopy": lambda text: _after(
        copy.deepcopy(base(Message)), lambda m: m.set_payload(text)
    ),
    "sub-part after make_mixed": _moved_into_a_part,
    "message_from_string, cloned policy": lambda text: email.message_from_string(
        with_content(text).as_string(), policy=email.policy.default.clone(linesep="\r\n")
    ),
    "message_from_bytes": lambda text: email.message_from_bytes(
        with_content(text).as_bytes(), policy=email.policy.default
    ),
}
# Flattened text sent with sendmail.
RAW: dict[str, Callable[[str], Any]] = {
    "as_bytes": lambda text: with_content(text).as_bytes(),
    "as_string, cloned policy": lambda text: with_content(text).as_string(
        policy=email.policy.SMTP.clone(max_line_length=40)
    ),
    "bytes(message) of a deepcopy": lambda text: bytes(copy.deepcopy(with_content(text))),
}


def send(server: SMTPServer, purpose: str, payload: Any, raw: bool) -> None:
    with pg.purpose(purpose), smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        if raw:
            client.sendmail("a@service.example", ["b@service.example"], payload)
        else:
            client.send_message(payload, from_addr="a@service.example", to_addrs=["b@service.example"])


ALL = [pytest.param(build, False, id=name) for name, build in SHAPES.items()] + [
    pytest.param(build, True, id=f"sendmail {name}") for name, build in RAW.items()
]


@pytest.mark.parametrize(("build", "raw"), ALL)
def test_a_labelled_message_is_refused_whatever_way_it_was_built(
    build: Callable[[str], Any], raw: bool, mail_server: SMTPServer, marker: str
) -> None:
    payload = build(pg.label(marker, CONTENT))
    with pytest.raises(pg.PurposeViolation) as caught:
        send(mail_server, "service.communications", payload, raw)
    assert caught.value.rule == "no-content-in-service-communications"
    assert mail_server.mailbox.messages == []


@pytest.mark.parametrize(("build", "raw"), ALL)
def test_an_unlabelled_message_built_the_same_way_is_delivered(
    build: Callable[[str], Any], raw: bool, mail_server: SMTPServer
) -> None:
    payload = build("nothing labelled here")
    with pg.testing.assert_no_violations():
        send(mail_server, "service.communications", payload, raw)
    assert len(mail_server.mailbox.messages) == 1


@pytest.mark.parametrize(("build", "raw"), ALL)
def test_a_labelled_message_is_delivered_for_a_purpose_that_allows_it(
    build: Callable[[str], Any], raw: bool, mail_server: SMTPServer
) -> None:
    entry = pg.label("support reply", CONTENT)
    payload = build(entry)
    with pg.testing.assert_no_violations():
        send(mail_server, "service.operations", payload, raw)
    assert len(mail_server.mailbox.messages) == 1


def test_a_copy_keeps_whose_data_it_is() -> None:
    message = with_content(pg.label("note", CONTENT, tenant="contoso"))
    for copied in (copy.copy(message), copy.deepcopy(message), pickle.loads(pickle.dumps(message))):
        assert pg_smtp.message_labels(copied) == {CONTENT}
        assert pg.tenant_of(copied) == "contoso"


def test_a_part_attached_to_a_labelled_message_keeps_its_own_labels() -> None:
    footer = base()
    footer.set_content("unsubscribe here")
    message = with_content(pg.label("note", CONTENT))
    message.make_mixed()
    message.attach(footer)
    assert pg_smtp.message_labels(message) == {CONTENT}
    assert pg_smtp.message_labels(footer) == frozenset()


def test_uninstrument_unwraps_every_email_method() -> None:
    assert isinstance(vars(Message)["replace_header"], wrapt.FunctionWrapper)
    pg_smtp.uninstrument()
    for cls in (Message, email.message.MIMEPart, EmailMessage):
        assert not [name for name, value in vars(cls).items() if isinstance(value, wrapt.ObjectProxy)]
    pg_smtp.instrument()
    assert isinstance(vars(Message)["replace_header"], wrapt.FunctionWrapper)
