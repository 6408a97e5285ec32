"""Guard outgoing mail sent with ``smtplib``: ``instrument()`` once.

>>> from purposeguard.integrations import smtp as pg_smtp
>>> pg_smtp.instrument()

Everything that sends mail through the standard library goes through
``smtplib.SMTP.sendmail`` (``send_message`` flattens the message and calls
it; Flask-Mail, Django's SMTP backend and most mailers do the same). Before
a message leaves, the labels of its addresses, headers and bodies are checked
against the purpose of the mail server's host (the policy's
``[[destinations]]``, e.g. a bulk-mail provider named for ``marketing``),
else the current purpose; the zone's categories are checked too; and
categories under ``[transport] require_tls`` may not leave over a session
that is not encrypted (no ``starttls()``, not ``SMTP_SSL``) to a host that
is not loopback.

Why the ``email`` package is watched too: building a message encodes its
text (``EmailMessage.set_content`` re-wraps lines, headers become header
objects), so the labels of what went in are gone by the time it is sent.
``instrument()`` therefore wraps every method of ``Message``, ``MIMEPart``
and ``EmailMessage`` that is not a reader (``get*``, ``is_*``, ``iter_*``,
``walk``, ``keys``/``values``/``items``; the list is read from the classes
when ``email.message`` is imported, so a setter a later Python adds is
covered too): the labels of its arguments go onto the message part as
side-table labels, and parts it creates from a labelled part (``make_mixed``,
``add_attachment``) get that part's labels. Side-table labels follow the
object through ``copy.copy``, ``copy.deepcopy`` and pickling, so a copied
message is still labelled; they make the message itself a labelled value
for every other exit (a task queue, a log line). At send time the guard
reads each part's own labels and, again, everything the part holds (header
values, payload, preamble, epilogue): text that kept its labels is seen
even if it was stored without any setter. ``Message.as_string`` /
``as_bytes`` (and ``str()``/``bytes()`` of a message) label the text they
flatten with the message's labels, and parsing
(``email.message_from_string``, ``message_from_bytes``, ``FeedParser``)
keeps the labels of the text on the parsed message. Django's mail is
watched where it loses labels: the message ``EmailMessage.message()``
builds carries the labels of everything the ``EmailMessage`` held (its
headers are made with ``str(address)``, its envelope and ``bcc`` with
``sanitize_address()``), and the ``as_string``/``as_bytes`` Django's MIME
classes define for themselves label what they flatten. Text flattened
another way (a ``Generator`` by hand) keeps none; the zone still sees what
was labelled while it was open.

Mail sent by hand with ``mail()``, ``rcpt()`` and ``data()`` is checked
too: ``data()`` like ``sendmail`` (the message and the zone), a labelled
address at ``mail()``/``rcpt()`` before it is sent; inside ``sendmail``
these commands are not checked again. Lower still, text given to
``send()`` (``docmd()``, ``putcmd()``) is checked for its labels, and a
DATA command sent that way checks the zone as ``data()`` does. The mail
server is the host ``connect()`` was given (``SMTP()`` then
``connect(host)`` included), for ``[[destinations]]`` and TLS alike.

A message part keeps the labels of everything it was given: replacing its
content with plain text (``set_content``) or deleting a labelled header
leaves them on it, and mail built from it is checked as holding them.
Build a new message instead.
"""

from __future__ import annotations

import ssl
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from purposeguard._labels import (
    EMPTY,
    _item_labels,
    merge_tenants,
    relabel,
    tenant_of,
    tenant_of_values,
)

from . import _unguarded
from ._egress import check_egress, deep_labels, input_labels, sent_labels, surely_plain
from ._patch import Patcher, Wrapper

__all__ = ["instrument", "is_instrumented", "message_labels", "uninstrument"]

_FUNCTION = "smtplib.SMTP.sendmail"
# Labels fed to a parser, and whose data they are, until ``close()`` hands
# them to the message it builds. Message parts themselves keep their labels
# in the labels layer's side table, which copies and pickles them along.
_FED: weakref.WeakKeyDictionary[Any, tuple[frozenset[str], str | None]] = weakref.WeakKeyDictionary()
_NOTHING: tuple[frozenset[str], str | None] = (EMPTY, None)
# Labels of the message ``send_message`` is flattening, for the ``sendmail`` it calls.
_PENDING: ContextVar[frozenset[str]] = ContextVar("purposeguard.smtp.pending", default=EMPTY)
# True inside ``sendmail``, which checked the whole message: the ``mail``,
# ``rcpt`` and ``data`` commands it sends are not checked again.
_CHECKED: ContextVar[bool] = ContextVar("purposeguard.smtp.checked", default=False)
# Methods of the ``email.message`` classes that only read: every other one
# is wrapped, so a setter nobody listed cannot drop labels.
_READERS = ("get", "is_", "iter_", "walk", "keys", "values", "items", "raw_items")
_FLATTENERS = ("as_string", "as_bytes")


def _remember(part: Any, values: tuple[Any, ...]) -> None:
    labels = input_labels(values)
    if labels:
        _label_part(part, labels, tenant_of_values(values))


def _label_part(part: Any, labels: frozenset[str], tenant: str | None) -> None:
    # In the labels layer's side table (a message part is weakly
    # referenceable), which copy, deepcopy and pickle carry along.
    relabel(part, *sorted(labels), tenant=tenant)


def _remembering(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    own = _item_labels(instance)
    if not own:
        result = wrapped(*args, **kwargs)
        _remember(instance, (*args, *kwargs.values()))
        return result
    # A labelled part restructured (make_mixed, add_attachment): the parts it
    # creates hold what it held, encoded; they carry its labels. A part
    # passed in (attach) keeps its own.
    payload = getattr(instance, "_payload", None)
    before = {id(part) for part in payload} if isinstance(payload, list) else set()
    result = wrapped(*args, **kwargs)
    _remember(instance, (*args, *kwargs.values()))
    payload = getattr(instance, "_payload", None)
    if isinstance(payload, list):
        values = (*args, *kwargs.values())
        given = {id(value) for value in values}
        given.update(id(part) for value in values if isinstance(value, list) for part in value)
        tenant = tenant_of(instance)
        for part in payload:
            if id(part) not in before and id(part) not in given:
                _label_part(part, own, tenant)
    return result


def message_labels(message: Any) -> frozenset[str]:
    """The labels of everything a message (and each of its parts) was built from."""
    return _labels_and_tenant(message)[0]


def _labels_and_tenant(message: Any) -> tuple[frozenset[str], str | None]:
    found: frozenset[str] = EMPTY
    tenant: str | None = None
    walk = getattr(message, "walk", None)
    parts = walk() if walk is not None else (message,)
    for part in parts:
        labels = _item_labels(part)
        part_tenant = tenant_of(part) if labels else None
        # What the part holds, read again: a value stored without a setter
        # (``msg.preamble = ...``, ``set_raw``) is seen if it kept its labels.
        for name, value in getattr(part, "__dict__", {}).items():
            if name == "policy" or (name == "_payload" and isinstance(value, list)):
                continue  # configuration; sub-parts are walked themselves
            for item in value if name == "_headers" and isinstance(value, list) else (value,):
                item_labels = deep_labels(item)
                if item_labels:
                    labels = labels | item_labels
                    part_tenant = merge_tenants(part_tenant, tenant_of_values((item,)))
        if labels:
            tenant = merge_tenants(tenant, part_tenant)
            found = found | labels
    return found, tenant


def _send_message(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    message = args[0] if args else kwargs.get("msg")
    labels = message_labels(message) | deep_labels(
        (args[1:], tuple(v for k, v in kwargs.items() if k != "msg"))
    )
    token = _PENDING.set(_PENDING.get() | labels)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _PENDING.reset(token)


def _check(client: Any, labels: frozenset[str], function: str, *, zone: bool = True) -> None:
    # The host connect() was last given, not the constructor's: smtplib
    # keeps only the constructor's, and SMTP() then connect(host) is common.
    host = _CONNECTED.get(client) or str(getattr(client, "_host", "") or "")
    encrypted = isinstance(getattr(client, "sock", None), ssl.SSLSocket)
    check_egress(f"{'smtps' if encrypted else 'smtp'}://{host}", labels, function=function, zone=zone)


def _sendmail(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    _check(instance, _PENDING.get() | deep_labels((args, tuple(kwargs.values()))), _FUNCTION)
    token = _CHECKED.set(True)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _CHECKED.reset(token)


def _data(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # The message itself, sent by hand (mail, rcpt, data): checked like
    # sendmail, the zone included.
    if _CHECKED.get():
        return wrapped(*args, **kwargs)
    _check(instance, input_labels((*args, *kwargs.values())), "smtplib.SMTP.data")
    return _checked_call(wrapped, args, kwargs)


def _envelope(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # A labelled address sent with mail() or rcpt() by hand leaves before
    # data(): its own labels are checked here, the zone once at data().
    if _CHECKED.get():
        return wrapped(*args, **kwargs)
    labels = input_labels((*args, *kwargs.values()))
    if labels:
        _check(instance, labels, f"smtplib.SMTP.{wrapped.__name__}", zone=False)
    return _checked_call(wrapped, args, kwargs)


def _checked_call(wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # What a checked command sends through send() is not checked again.
    token = _CHECKED.set(True)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _CHECKED.reset(token)


# The DATA command, as send() sees it: what follows it is the message.
_DATA_COMMANDS = frozenset({"data", b"data"})


def _send(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # The lowest layer: a session driven by hand with docmd()/putcmd() and
    # send() (the DATA command, then the message) never calls data(). Its
    # text is checked for its own labels; the DATA command is where the
    # message starts, and where the zone is checked, as data() checks it.
    # EHLO, STARTTLS and AUTH never meet the zone.
    if not _CHECKED.get():
        sent = args[0] if args else kwargs.get("s")
        labels = input_labels((sent,))
        if isinstance(sent, (str, bytes)) and len(sent) <= 8 and sent.strip().lower() in _DATA_COMMANDS:
            _check(instance, labels, "smtplib.SMTP.send")
        elif labels:
            _check(instance, labels, "smtplib.SMTP.send", zone=False)
    return wrapped(*args, **kwargs)


# Each client's host as connect() was last given it.
_CONNECTED: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _connect(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    host = args[0] if args else kwargs.get("host", "localhost")
    result = wrapped(*args, **kwargs)
    _CONNECTED[instance] = str(host)
    return result


def _flattened(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # A message flattened by hand (``sendmail(msg.as_string())``) is plain
    # text: it carries the labels the message was built from.
    text = wrapped(*args, **kwargs)
    labels, tenant = _labels_and_tenant(instance)
    return relabel(text, *sorted(labels), tenant=tenant) if labels else text


def _parsed(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # Parsing reads the text through StringIO and splits it into lines,
    # which drops its labels: the parsed message keeps them.
    message = wrapped(*args, **kwargs)
    _remember(message, (args[0] if args else kwargs.get("text"),))
    return message


def _feed(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    values = (*args, *kwargs.values())
    labels = input_labels(values)
    if labels:
        known, known_tenant = _FED.get(instance, _NOTHING)
        _FED[instance] = (known | labels, merge_tenants(known_tenant, tenant_of_values(values)))
    return wrapped(*args, **kwargs)


def _close(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    message = wrapped(*args, **kwargs)
    fed, tenant = _FED.pop(instance, _NOTHING)
    if fed:
        _label_part(message, fed, tenant)
    return message


_SMTP = Patcher(
    "smtplib",
    [
        ("SMTP", "send_message", _send_message),
        ("SMTP", "sendmail", _sendmail),
        ("SMTP", "mail", _envelope),
        ("SMTP", "rcpt", _envelope),
        ("SMTP", "data", _data),
        ("SMTP", "send", _send),
        ("SMTP", "connect", _connect),
    ],
)
_PARSER = Patcher("email.parser", [("Parser", "parsestr", _parsed), ("BytesParser", "parsebytes", _parsed)])
_FEEDPARSER = Patcher("email.feedparser", [("FeedParser", "feed", _feed), ("FeedParser", "close", _close)])


class _EmailPatcher(Patcher):
    """Wraps the ``email.message`` classes' methods as the module is
    imported, reading which there are from the classes themselves."""

    def _apply(self, module: Any) -> None:
        targets: list[tuple[str, str, Wrapper]] = []
        for class_name in ("Message", "MIMEPart", "EmailMessage"):
            for name, value in vars(getattr(module, class_name)).items():
                if not callable(value):
                    continue
                if name in _FLATTENERS:
                    targets.append((class_name, name, _flattened))
                elif name == "__setitem__" or not (name.startswith("_") or name.startswith(_READERS)):
                    targets.append((class_name, name, _remembering))
        self.targets = targets
        super()._apply(module)


_EMAIL = _EmailPatcher("email.message", [])

# What a Django EmailMessage holds and puts into the message it builds (or,
# for bcc, into the envelope only). Not its connection: a mail backend.
_DJANGO_FIELDS = (
    "subject",
    "body",
    "from_email",
    "to",
    "cc",
    "bcc",
    "reply_to",
    "extra_headers",
    "attachments",
    "alternatives",
)


def _django_message(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # Django builds its headers from str(address) and its envelope from
    # sanitize_address(), which drop labels: the message carries the labels
    # of everything the EmailMessage held, bcc included.
    message = wrapped(*args, **kwargs)
    held = tuple(
        value
        for value in (getattr(instance, name, None) for name in _DJANGO_FIELDS)
        if not surely_plain(value)
    )
    if not held:
        return message
    labels, tenant = sent_labels(held)
    if labels:
        _label_part(message, labels, tenant)
    return message


class _DjangoMailPatcher(Patcher):
    """Django's mail classes: ``EmailMessage.message()`` and, before Django
    6, the ``as_string``/``as_bytes`` its MIME classes define for
    themselves (``MIMEMixin``), which the ``email.message`` wrappers never
    see."""

    def _apply(self, module: Any) -> None:
        targets: list[tuple[str, str, Wrapper]] = [("EmailMessage", "message", _django_message)]
        mixin = getattr(module, "MIMEMixin", None)
        if mixin is not None:
            targets.extend(("MIMEMixin", name, _flattened) for name in _FLATTENERS if name in vars(mixin))
        self.targets = targets
        super()._apply(module)


_DJANGO_MAIL = _DjangoMailPatcher("django.core.mail.message", [])


def instrument() -> None:
    """Guard every message sent with ``smtplib`` (and the mailers built on it) from now on."""
    _EMAIL.install()
    _DJANGO_MAIL.install()
    _PARSER.install()
    _FEEDPARSER.install()
    _SMTP.install()
    _unguarded.activate("smtp")


def uninstrument() -> None:
    """Restore ``smtplib`` and ``email`` as they were."""
    _SMTP.remove()
    _FEEDPARSER.remove()
    _PARSER.remove()
    _DJANGO_MAIL.remove()
    _EMAIL.remove()
    _unguarded.deactivate("smtp")


def is_instrumented() -> bool:
    return _SMTP.applied
