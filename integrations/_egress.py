"""The check every outgoing call goes through (httpx, requests, urllib3,
http.client, aiohttp, smtplib).

Before a request leaves: what it carries is checked against the purpose of
its destination (the policy's ``[[destinations]]``), else the current
purpose; the zone's categories are checked too (``via="context"``); and
categories under ``[transport] require_tls`` may not leave over plain
``http://`` to a host that is not loopback (``via="transport"``).

"What it carries" is what the client finally sends (URL, headers such as
``Authorization`` and ``Cookie``, body), read at the last hook each
integration has before the wire. Where the client encodes a labelled value
into something that cannot carry a label first (Base64 of a password),
:func:`carry_labels` labels the encoded value with the inputs' labels.
"""

from __future__ import annotations

import inspect
import ipaddress
import sys
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

from purposeguard._context import FLAGS, PURPOSE, ZONE
from purposeguard._errors import PurposeViolation
from purposeguard._labels import EMPTY, NO_LABELS, WalkLimit, relabel, tenant_of, tenant_of_values
from purposeguard._runtime import Denial, check_zone, get_guard
from purposeguard._walk import _walk

from . import _unguarded
from ._patch import FunctionPatch

__all__ = [
    "CheckedBody",
    "Egress",
    "HelperPatch",
    "check_chunk",
    "carry_labels",
    "check_egress",
    "checked_by",
    "deep_labels",
    "input_labels",
    "sent_labels",
    "is_loopback",
    "labelled_url",
    "outer_layer",
    "surely_plain",
    "url_labels",
]

TRANSPORT_RULE = "transport.require_tls"
# Schemes that send in the clear: what ``[transport] require_tls`` refuses off-host.
# Task brokers count: a job's arguments cross the network to Redis or RabbitMQ
# as plainly as a request body does (the queue integrations name a broker
# reached over TLS ``rediss``/``amqps``, whatever the setting that asked for it).
PLAINTEXT_SCHEMES = frozenset({"http", "smtp", "ws", "ftp", "redis", "amqp"})

# The client library whose guard checked the call in progress. Clients are
# stacked (requests on urllib3 on http.client): the outermost guard checks the
# whole call, with the labels it saw before encoding; the layers below it must
# not check the same bytes again (one record per flow, not one per layer).
_LAYER: ContextVar[str | None] = ContextVar("purposeguard.egress.layer", default=None)


def outer_layer() -> str | None:
    """The client library whose guard is checking the call in progress, if any."""
    return _LAYER.get()


@contextmanager
def checked_by(layer: str) -> Iterator[None]:
    """Mark the calls made inside the block as checked by ``layer``'s guard."""
    token = _LAYER.set(layer)
    try:
        yield
    finally:
        _LAYER.reset(token)


# Labels of the URL (path and query) of the call in progress. A client
# below writes its own log lines about the call (urllib3's DEBUG line of
# each request names its path and query) from text it rebuilt without them.
_URL: ContextVar[frozenset[str]] = ContextVar("purposeguard.egress.url", default=EMPTY)


@contextmanager
def url_labels(labels: frozenset[str]) -> Iterator[None]:
    """The URL of the calls made inside the block carries ``labels`` (with
    those of the calls around it)."""
    token = _URL.set(_URL.get() | labels)
    try:
        yield
    finally:
        _URL.reset(token)


def labelled_url(url: Any) -> Any:
    """``url`` (text) carrying the labels of the URL of the call in progress,
    for the log lines the client writes with it: the logging integration
    then judges them as any labelled value."""
    labels = _URL.get()
    if not labels or not isinstance(url, str):
        return url
    return relabel(url, *sorted(labels))


_PLAIN_SCALARS = frozenset({str, bytes, int, float, bool, type(None)})


def surely_plain(value: Any) -> bool:
    """Whether ``value`` surely carries no label, told by types alone (no
    walk): a plain scalar, or a dict, list or tuple of plain scalars and
    pairs of them (a query's parameters). False means "walk it"."""
    t = type(value)
    if t in _PLAIN_SCALARS:
        return True
    if t is dict:
        for key, item in value.items():
            if type(key) not in _PLAIN_SCALARS or type(item) not in _PLAIN_SCALARS:
                return False
        return True
    if t is list or t is tuple:
        for item in value:
            if type(item) is tuple:
                for part in item:
                    if type(part) not in _PLAIN_SCALARS:
                        return False
            elif type(item) not in _PLAIN_SCALARS:
                return False
        return True
    return False


def deep_labels(values: Any) -> frozenset[str]:
    """The labels anywhere in ``values`` (nested containers, JSON-like
    documents, objects' attributes), as deep as every checkpoint looks: the
    labels layer's one walk and its bound (``MAX_DEPTH`` levels,
    ``MAX_ITEMS`` values). Content beyond the bound was not looked at: enforce
    mode refuses the call, trace mode records that and goes on.

    The tenant the labels name joins the current zone's owners, as a
    checkpoint's does: what is sent is then decided with whose data it is
    (see :func:`check_egress`), however the caller unions the labels."""
    return sent_labels(values)[0]


def sent_labels(values: Any) -> tuple[frozenset[str], str | None]:
    """:func:`deep_labels` of ``values`` and the tenant their labels name
    (``MIXED_TENANT`` for several, None for none), from the same walk."""
    t = type(values)
    if t in NO_LABELS:
        return EMPTY, None
    kind = getattr(t, "_pg_kind", None)
    if kind is not None:
        labels: frozenset[str] = kind.labels
        tenant = tenant_of(values) if labels else None
    else:
        try:
            labels, tenant = _walk((values,))
        except WalkLimit as error:
            purpose = PURPOSE.get() or "service"
            get_guard()._internal_error(error, error.labels, purpose, "egress", "egress", error.tenant, False)
            labels, tenant = error.labels, error.tenant
    if tenant is not None and labels:
        note_owner(labels, tenant)
    return labels, tenant


def note_owner(labels: frozenset[str], tenant: str) -> None:
    """Tell the current zone, if any, that it holds ``tenant``'s data with
    ``labels`` (the runtime's checkpoints do the same): one tenant's consent
    then never covers another tenant's data sent from its zone."""
    state = ZONE.get() if FLAGS.zones else None
    if state is not None:
        state.add(labels, tenant)


def input_labels(values: tuple[Any, ...]) -> frozenset[str]:
    """:func:`deep_labels` of a few call arguments, with plain ``str`` and
    ``bytes`` (the usual case) skipped without a walk."""
    found = EMPTY
    for value in values:
        t = type(value)
        if t is not str and t is not bytes and value is not None:
            found = found | deep_labels(value)
    return found


def carry_labels(result: Any, values: tuple[Any, ...]) -> Any:
    """``result`` labelled with the labels of ``values`` it was encoded from.

    For encodings that drop labels (Base64 of a labelled password in an
    ``Authorization`` header): the header then carries them to the guard
    that checks the request on its way out, which knows the destination.
    ``relabel`` does not count this as a new read (no ``via="source"``)."""
    labels = input_labels(values)
    if not labels:
        return result
    return relabel(result, *sorted(labels), tenant=tenant_of_values(values))


def is_loopback(host: str) -> bool:
    """Loopback hosts: ``localhost`` (and ``*.localhost``), 127.0.0.0/8, ::1."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Egress:
    """The outcome of checking one outgoing request."""

    __slots__ = ("host", "purpose", "labels", "external")

    def __init__(self, host: str, purpose: str | None, labels: frozenset[str], external: bool) -> None:
        self.host = host
        self.purpose = purpose
        self.labels = labels
        # A policy destination is another party: purposeguard's baggage
        # (tenant, categories) is not sent there.
        self.external = external


def check_egress(
    url: str, labels: frozenset[str], *, function: str, zone: bool = True, tenant: str | None = None
) -> Egress:
    """Check a request to ``url`` carrying ``labels``; raise or record per mode.

    ``tenant`` is whose data the labels are, where the caller knows it
    (:func:`sent_labels`); else the zone's data tenant decides, which
    already counts the tenants :func:`deep_labels` saw (several tenants:
    ``MIXED_TENANT``, which no consent covers), as ``pg.check`` decides.
    ``zone=False`` checks only ``labels``: for the pieces of a call whose
    start was checked already (with the zone) by the same guard."""
    if _unguarded.PENDING.waiting:
        _unguarded.review()
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    guard = get_guard()
    policy = guard.policy
    destination = policy.destination_for(host) if host else None
    purpose = destination.purpose if destination is not None else PURPOSE.get()
    state = ZONE.get() if FLAGS.zones else None
    if state is not None:
        if labels:
            state.add(labels, tenant)
        if tenant is None:
            # Read after the labels joined: the zone then names their owner.
            tenant = state.data_tenant()
    if purpose is not None:
        if labels:
            guard.check_labels(labels, purpose, via="egress", function=function, tenant=tenant)
        if zone and state is not None:
            check_zone(guard, state, purpose, labels, function, judged_for=tenant)
    if parts.scheme.lower() in PLAINTEXT_SCHEMES and host and not is_loopback(host):
        # The request's own labels under the guard's mode; categories only the
        # zone saw (text merged into an f-string, a file read into bytes) under
        # context_mode, like every other zone check.
        clear = policy.requires_tls(labels) if labels else ()
        if clear:
            _refuse_plain_http(guard, clear, purpose or "service", function, tenant, context=False)
        if zone and state is not None and state.categories:
            rest = policy.requires_tls(state.categories - labels)
            if rest:
                _refuse_plain_http(guard, rest, purpose or "service", function, tenant, context=True)
    return Egress(host, purpose, labels, destination is not None)


class CheckedBody:
    """A streamed request body whose chunks are checked before they are written.

    The clients turn an ``OSError`` raised while sending into their own
    connection errors, and a :class:`PurposeViolation` is a
    ``PermissionError``: the violation is kept here for the send wrapper to
    raise again.
    """

    def __init__(self, inner: Any, url: str, function: str) -> None:
        self.inner = inner
        self.url = url
        self.function = function
        self.violation: PurposeViolation | None = None

    def __iter__(self) -> Iterator[Any]:
        for chunk in self.inner:
            try:
                check_chunk(self.url, chunk, function=self.function)
            except PurposeViolation as error:
                self.violation = error
                raise
            yield chunk


def check_chunk(url: str, chunk: Any, *, function: str) -> None:
    """Check one chunk of a streamed body (an iterator or async generator the
    client sends piece by piece) before it leaves, like a whole request."""
    labels, tenant = sent_labels(chunk)
    if labels:
        check_egress(url, labels, function=function, tenant=tenant)


def _refuse_plain_http(
    guard: Any, categories: tuple[str, ...], purpose: str, function: str, tenant: str | None, *, context: bool
) -> None:
    # The request's own labels run in the guard's mode, categories only the
    # zone saw in context_mode: Guard.violate resolves which.
    text = (
        "{} may leave this host only encrypted: use TLS (https://, SMTP with STARTTLS, rediss://, amqps://)"
    )
    denials = [Denial(category, TRANSPORT_RULE, None, text.format(category)) for category in categories]
    guard.violate(purpose, denials, via="transport", function=function, tenant=tenant, context=context)


def header_labels(pairs: Any) -> frozenset[str]:
    """Labels in header values given as (name, value) pairs."""
    found = EMPTY
    for _, value in pairs:
        kind = getattr(type(value), "_pg_kind", None)
        if kind is not None:
            labels = kind.labels
            found = found | labels
            tenant = tenant_of(value) if labels else None
            if tenant is not None:
                note_owner(labels, tenant)
    return found


# The signatures of the client functions bound_arguments reads, once each.
_SIGNATURES: dict[Any, inspect.Signature] = {}


def bound_arguments(
    wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], call: str
) -> dict[str, Any]:
    """A client call's arguments by name, as the client's function receives
    them (extra keywords alongside): how a guard reads a call shape it does
    not read by position. ``TypeError`` for a call the client would refuse
    too; ``ValueError`` when the function takes ``*args``, whose meaning is
    unknown."""
    function = getattr(wrapped, "__func__", wrapped)
    signature = _SIGNATURES.get(function)
    if signature is None:
        signature = _SIGNATURES[function] = inspect.signature(wrapped)
    named: dict[str, Any] = {}
    for name, value in signature.bind(*args, **kwargs).arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            # Not in any release of the clients guarded: which of them is the body is unknown.
            raise ValueError(f"{call}(*{name}) cannot be read")
        else:
            named[name] = value
    return named


def _trampoline(*args: Any, **kwargs: Any) -> Any:
    # The code a patched helper runs: its global name is rewritten to the
    # one the helper's module holds the replacement under.
    return _replacement(*args, **kwargs)


def _replacement(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("purposeguard: a helper's trampoline ran unpatched")  # pragma: no cover


class HelperPatch:
    """Makes a client's module-level helper (``requests.auth._basic_auth_str``,
    ``urllib3.util.make_headers``) run ``make(original)`` from
    :meth:`install` on, in place: the function object's code is swapped
    for a call to the replacement, so a reference taken before
    (``from urllib3 import make_headers``), by the application or the
    client's own modules, goes through it too. :meth:`remove` puts the code
    back. A helper that is not a plain function (a C function, one that
    closes over variables) is replaced by module attribute instead, where
    the ``homes`` bind it (:class:`FunctionPatch`)."""

    def __init__(
        self, name: str, homes: tuple[str, ...], make: Callable[[Callable[..., Any]], Callable[..., Any]]
    ) -> None:
        self.name = name
        self.homes = homes
        self.make = make
        self.slot = f"__purposeguard_{name}__"
        self._fallback = FunctionPatch(name, homes, make)
        self._lock = threading.Lock()
        # The patched function, its own code and defaults, and its plain twin.
        self._saved: tuple[types.FunctionType, types.CodeType, Any, Any, Callable[..., Any]] | None = None

    def install(self) -> None:
        with self._lock:
            if self._saved is not None:
                return
            function = getattr(sys.modules.get(self.homes[0]), self.name, None)
            if type(function) is not types.FunctionType or function.__closure__ is not None:
                self._fallback.install()
                return
            # The helper as it was, in a function object of its own (same
            # code, globals and defaults): what the replacement calls.
            twin = types.FunctionType(
                function.__code__, function.__globals__, function.__name__, function.__defaults__
            )
            twin.__kwdefaults__ = dict(function.__kwdefaults__) if function.__kwdefaults__ else None
            twin.__qualname__ = function.__qualname__
            twin.__module__ = function.__module__
            twin.__doc__ = function.__doc__
            twin.__annotations__ = dict(function.__annotations__)
            replacement = self.make(twin)
            code = _trampoline.__code__.replace(
                co_names=tuple(
                    self.slot if n == "_replacement" else n for n in _trampoline.__code__.co_names
                ),
                co_name=function.__code__.co_name,
            )
            if sys.version_info >= (3, 11):
                code = code.replace(co_qualname=function.__code__.co_qualname)
            saved = (function, function.__code__, function.__defaults__, function.__kwdefaults__, twin)
            function.__globals__[self.slot] = replacement
            function.__code__ = code
            function.__defaults__ = None
            function.__kwdefaults__ = None
            # inspect.signature reads the helper's own signature through this.
            function.__dict__["__wrapped__"] = twin
            self._saved = saved

    def remove(self) -> None:
        with self._lock:
            self._fallback.remove()
            saved = self._saved
            if saved is None:
                return
            function, code, defaults, kwdefaults, twin = saved
            function.__code__ = code
            function.__defaults__ = defaults
            function.__kwdefaults__ = kwdefaults
            function.__dict__.pop("__wrapped__", None)
            # A call between reading the code and the slot runs the helper as it was.
            function.__globals__[self.slot] = twin
            self._saved = None
