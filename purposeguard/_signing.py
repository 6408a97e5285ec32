"""The keys that sign purposeguard's baggage members, and the signatures.

Services that trust each other share a key (``configure(baggage_keys=[...])``
or ``PURPOSEGUARD_BAGGAGE_KEYS``, comma-separated). The first key signs,
every key verifies, so a new key is rolled out to every service as the
second key first, then made the first, and the old one removed last.

A signature is one HMAC-SHA256 over the purpose, the tenant and the zone
together (a member cannot be added, removed or swapped on its own), the
channel it was made for (HTTP, or one Celery task, or one RQ job), the
trace it was sent in, when it was made, and the key's id::

    1.<key id>.<unix seconds>.<trace id or ->.<base64url HMAC>
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Iterable

from ._errors import ConfigurationError
from ._state import STATE

__all__ = [
    "ENV",
    "MAX_AGE",
    "MIN_KEY_BYTES",
    "BaggageKey",
    "check_environment",
    "current_keys",
    "keys_from",
    "set_keys",
    "sign",
    "trace_id",
    "verify",
]

ENV = "PURPOSEGUARD_BAGGAGE_KEYS"
MIN_KEY_BYTES = 32
VERSION = "1"
# How far a signature made for an HTTP call may be from this host's clock
# either way: long enough for clock skew between hosts, short enough that a
# header copied out of a log is of no use for long.
MAX_AGE = 300
_MAC_CHARS = 43  # 32 bytes, base64url without padding
_HEX = frozenset("0123456789abcdef")


class BaggageKey:
    """One baggage signing key (at least 32 bytes); ``key_id`` names it without revealing it."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: str | bytes, *, setting: str = "baggage_keys") -> None:
        if isinstance(key, str):
            material = key.encode("utf-8", "surrogatepass")
        elif isinstance(key, (bytes, bytearray)):
            material = bytes(key)
        else:
            raise ConfigurationError(
                f"a baggage key is text or bytes, not {type(key).__name__}", setting=setting
            )
        if len(material) < MIN_KEY_BYTES:
            raise ConfigurationError(
                f"a baggage key is too short ({len(material)} bytes; at least {MIN_KEY_BYTES}, e.g. the "
                "output of `python -c 'import secrets; print(secrets.token_hex(32))'`)",
                setting=setting,
            )
        self._key = material
        self.key_id = hmac.new(material, b"purposeguard baggage key id", hashlib.sha256).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"<BaggageKey {self.key_id}>"

    def mac(self, message: bytes) -> str:
        digest = hmac.digest(self._key, message, "sha256")
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def keys_from(
    keys: Iterable[str | bytes | BaggageKey], *, setting: str = "baggage_keys"
) -> tuple[BaggageKey, ...]:
    """``keys`` as baggage keys, in order (the first signs); raises
    :class:`~purposeguard.ConfigurationError` naming ``setting``."""
    if isinstance(keys, (str, bytes, bytearray)):
        raise ConfigurationError(
            "a list of keys, not a single key (the first signs, all verify)", setting=setting
        )
    try:
        items = list(keys)
    except TypeError:
        raise ConfigurationError(f"a list of keys, not {type(keys).__name__}", setting=setting) from None
    out = tuple(k if isinstance(k, BaggageKey) else BaggageKey(k, setting=setting) for k in items)
    if len({k.key_id for k in out}) != len(out):
        raise ConfigurationError("the same key is listed twice", setting=setting)
    return out


def _parse_env(text: str) -> tuple[BaggageKey, ...]:
    parts = [part.strip() for part in text.split(",")]
    if any(not part for part in parts):
        raise ConfigurationError("an empty key in the comma-separated list", setting=ENV)
    for part in parts:
        if any(c.isspace() or not c.isprintable() for c in part):
            raise ConfigurationError("a key holds spaces or control characters", setting=ENV)
    return keys_from(parts, setting=ENV)


class _Environment:
    """The keys ``PURPOSEGUARD_BAGGAGE_KEYS`` held when last read: parsed
    again only when the variable changes."""

    __slots__ = ("text", "keys", "error")

    def __init__(self) -> None:
        self.text: str | None = None
        self.keys: tuple[BaggageKey, ...] = ()
        self.error: ConfigurationError | None = None


_ENVIRONMENT = _Environment()


def _from_environment() -> tuple[BaggageKey, ...]:
    text = os.environ.get(ENV) or None
    seen = _ENVIRONMENT
    if text != seen.text:
        try:
            keys, error = (_parse_env(text) if text else ()), None
        except ConfigurationError as problem:
            keys, error = (), problem
        seen.text, seen.keys, seen.error = text, keys, error
    if seen.error is not None:
        raise seen.error
    return seen.keys


def set_keys(keys: Iterable[str | bytes | BaggageKey] | None) -> None:
    """The keys from now on (``configure(baggage_keys=...)``); None: the environment's."""
    STATE.baggage_keys = None if keys is None else keys_from(keys)


def check_environment() -> None:
    """Raise :class:`~purposeguard.ConfigurationError` if ``PURPOSEGUARD_BAGGAGE_KEYS``
    is set and unusable (``configure()`` calls it, so a bad key stops start-up)."""
    if STATE.baggage_keys is None:
        _from_environment()


def current_keys() -> tuple[BaggageKey, ...]:
    """The keys in force: configured ones, else the environment's; raises
    :class:`~purposeguard.ConfigurationError` for an unusable variable."""
    configured = STATE.baggage_keys
    if configured is not None:
        return configured
    return _from_environment()


def _field(value: str | None) -> str:
    return "-" if value is None else f"{len(value)}:{value}"


def _message(
    key_id: str,
    issued: int,
    channel: str,
    trace: str,
    purpose: str | None,
    tenant: str | None,
    zone: str | None,
) -> bytes:
    # Length-prefixed fields: no two different sets of values make the same text.
    text = "\n".join(
        (
            f"purposeguard baggage {VERSION}",
            key_id,
            str(issued),
            _field(channel),
            trace,
            _field(purpose),
            _field(tenant),
            _field(zone),
        )
    )
    return text.encode("utf-8", "surrogatepass")


def sign(
    key: BaggageKey,
    *,
    channel: str,
    trace: str | None,
    purpose: str | None,
    tenant: str | None,
    zone: str | None,
    issued: int | None = None,
) -> str:
    """The signature member's value for these members, made with ``key``."""
    when = int(time.time()) if issued is None else issued
    bound = trace or "-"
    mac = key.mac(_message(key.key_id, when, channel, bound, purpose, tenant, zone))
    return f"{VERSION}.{key.key_id}.{when}.{bound}.{mac}"


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` value, or None when there is none or it is malformed."""
    if not traceparent:
        return None
    # Read as OpenTelemetry reads it, so the trace a signature is checked
    # against is the trace the request's spans join: version 00 has exactly
    # four fields (two headers joined by a comma are not a traceparent).
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or (parts[0] == "00" and len(parts) != 4):
        return None
    version, found, span, flags = parts[:4]
    if len(version) != 2 or version == "ff" or len(span) != 16 or len(flags) != 2:
        return None
    if not _HEX.issuperset(version + span + flags) or span == "0" * 16:
        return None
    if len(found) != 32 or not _HEX.issuperset(found) or found == "0" * 32:
        return None
    return found


def verify(
    keys: tuple[BaggageKey, ...],
    signature: str,
    *,
    channel: str,
    trace: str | None,
    purpose: str | None,
    tenant: str | None,
    zone: str | None,
    max_age: int | None,
    now: float | None = None,
) -> str | None:
    """None when ``signature`` holds for these members in this context, else why not.

    ``trace`` is the trace id the message arrived in: a signature bound to a
    trace holds only there. ``max_age`` bounds the signature's age either
    way in seconds (None: no bound, for a task bound to its own id).
    """
    parts = signature.strip().split(".")
    if len(parts) != 5 or parts[0] != VERSION:
        return "has a malformed signature"
    _, key_id, issued_text, bound, mac = parts
    # isdigit() alone takes '²' and other digits int() refuses.
    if (
        not (issued_text.isascii() and issued_text.isdigit())
        or len(issued_text) > 12
        or len(mac) != _MAC_CHARS
    ):
        return "has a malformed signature"
    if bound != "-" and (len(bound) != 32 or not _HEX.issuperset(bound)):
        return "has a malformed signature"
    issued = int(issued_text)
    message = None
    matched = held = False
    for key in keys:
        if key.key_id == key_id:
            held = True
            if message is None:
                message = _message(key_id, issued, channel, bound, purpose, tenant, zone)
            if hmac.compare_digest(key.mac(message), mac):
                matched = True
                break
    if not held:
        return "is signed with a key this service does not hold"
    if not matched:
        return "is badly signed"
    if bound != "-" and bound != trace:
        return "was signed for another trace"
    if max_age is not None and abs((time.time() if now is None else now) - issued) > max_age:
        return f"was signed more than {max_age} seconds away from now"
    return None
