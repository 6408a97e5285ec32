"""Django's mail (``send_mail``, ``EmailMessage``, ``EmailMultiAlternatives``)
through its SMTP backend to a real SMTP server on loopback: what a message
was built from is checked where it leaves, as for mail built with the
``email`` package.

Django builds its headers with ``str(address)``, its envelope with
``sanitize_address()`` and flattens with ``as_bytes`` methods of its own
MIME classes: each drops the labels of what went in, so a labelled address
or note body left unchecked until the message itself carried them.

The notes site of test_django.py (tests/orm/django_site) on SQLite, set up
once per process as the other Django test files do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg

from ..conftest import Mailbox, SMTPServer

SITE = Path(__file__).resolve().parent / "django_site"
BODY = "zq-mail Fabrikam merger terms"
ADDRESS = "carol-mail@contoso.example"


@pytest.fixture
def mailbox(mail_server: SMTPServer) -> Iterator[Mailbox]:
    """The shared loopback SMTP server (tests/conftest.py), and Django's SMTP
    backend pointed at it."""
    from django.conf import settings

    saved = {name: getattr(settings, name) for name in ("EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT")}
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", mail_server.port
    try:
        yield mail_server.mailbox
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from .conftest import set_up_notes_site

    set_up_notes_site(tmp_path_factory)
    from django.contrib.auth.models import User
    from djnotes.models import Note, Profile
    from purposeguard.integrations import django as pg_django

    pg_django.instrument()
    carol = User.objects.create_user("mail-carol", password="pw-carol")
    Note.objects.create(owner=carol, title="terms", body=BODY)
    Profile.objects.create(user=carol, email=ADDRESS)
    yield {"Note": Note, "Profile": Profile, "carol": carol}
    User.objects.filter(username__startswith="mail-").delete()
    pg_django.uninstrument()


@pytest.fixture(autouse=True)
def guarded(site: dict[str, Any]) -> Iterator[None]:
    from purposeguard.integrations import smtp as pg_smtp

    pg.configure("trust-center")
    pg_smtp.instrument()
    yield
    pg_smtp.uninstrument()


def _loaded(site: dict[str, Any]) -> tuple[str, str]:
    """The note's body and the address, read through the ORM: labelled."""
    body = site["Note"].objects.get(owner=site["carol"]).body
    address = site["Profile"].objects.get(user=site["carol"]).email
    assert pg.labels_of(body) == {"customer_data.content.document"}
    assert pg.labels_of(address) == {"customer_data"}
    return body, address


def _send_mail(body: str, address: str) -> None:
    from django.core.mail import send_mail

    send_mail("Deals", "We saw: " + body, "shop@service.example", [address])


def _email_message(body: str, address: str) -> None:
    from django.core.mail import EmailMessage

    EmailMessage("Deals", body, "shop@service.example", [address]).send()


def _alternative_only(body: str, address: str) -> None:
    from django.core.mail import EmailMultiAlternatives

    message = EmailMultiAlternatives("Deals", "plain words", "shop@service.example", ["b@service.example"])
    message.attach_alternative("<p>" + body + "</p>", "text/html")
    message.send()


def _attachment_only(body: str, address: str) -> None:
    from django.core.mail import EmailMessage

    message = EmailMessage("Deals", "plain words", "shop@service.example", ["b@service.example"])
    message.attach("terms.txt", body, "text/plain")
    message.send()


def _bcc_only(body: str, address: str) -> None:
    # The address is in the envelope alone, never in the message's text.
    from django.core.mail import EmailMessage

    EmailMessage("Deals", "plain words", "shop@service.example", ["b@service.example"], bcc=[address]).send()


@pytest.mark.parametrize(
    "send",
    [_send_mail, _email_message, _alternative_only, _attachment_only, _bcc_only],
    ids=lambda f: f.__name__,
)
def test_django_mail_for_marketing_is_refused_before_it_leaves(
    site: dict[str, Any], mailbox: Mailbox, send: Any
) -> None:
    body, address = _loaded(site)
    with pytest.raises(pg.PurposeViolation) as caught, pg.purpose("marketing.direct"):
        send(body, address)
    assert caught.value.rule == "no-direct-marketing"
    assert mailbox.messages == []
    assert "zq-mail" not in str(caught.value) and ADDRESS not in str(caught.value)


def test_service_communications_may_use_the_address_but_not_the_content(
    site: dict[str, Any], mailbox: Mailbox
) -> None:
    from django.core.mail import EmailMessage

    body, address = _loaded(site)
    with pg.purpose("service.communications"):
        EmailMessage("Your invoice", "Your invoice is ready.", "billing@service.example", [address]).send()
        with pytest.raises(pg.PurposeViolation) as caught:
            EmailMessage("Your invoice", body, "billing@service.example", [address]).send()
    assert caught.value.rule == "no-content-in-service-communications"
    assert len(mailbox.messages) == 1 and b"invoice is ready" in mailbox.messages[0]


def test_a_request_zone_without_consent_refuses_django_mail_for_improvement(
    site: dict[str, Any], mailbox: Mailbox
) -> None:
    with pg.zone(tenant="contoso"):
        body, address = _loaded(site)
        with pytest.raises(pg.PurposeViolation) as caught, pg.purpose("improvement"):
            _email_message(body, address)
    assert caught.value.rule == "improvement-only-with-consent"
    assert mailbox.messages == []


def test_a_flattened_django_message_carries_what_it_was_built_from(site: dict[str, Any]) -> None:
    from django.core.mail import EmailMessage
    from purposeguard.integrations.smtp import message_labels

    body, address = _loaded(site)
    message = EmailMessage("Deals", body, "shop@service.example", [address]).message()
    assert message_labels(message) == {"customer_data", "customer_data.content.document"}
    assert pg.labels_of(message.as_bytes()) == {"customer_data", "customer_data.content.document"}
    assert pg.labels_of(message.as_string()) == {"customer_data", "customer_data.content.document"}
