"""Purpose, tenant and zone categories in W3C baggage, read and written.

Three keys travel between services: ``purposeguard.purpose``,
``purposeguard.tenant`` and ``purposeguard.zone`` (the zone's categories,
comma-separated). Reading is strict: baggage comes from the network, so
anything malformed (not ASCII, bad percent-encoding, unknown ``purposeguard.*``
keys, oversized values, keys the policy does not define) is dropped with a
warning on the ``purposeguard`` logger. Dropping never widens a permission:
unknown categories are dropped one by one and the known ones next to them
are kept, so an invented key cannot carry a real one out of a check.

Writing goes through OpenTelemetry's ``W3CBaggagePropagator``, on top of the
current OpenTelemetry baggage and of any ``baggage`` header already set, so
other baggage members travel unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from opentelemetry import baggage as otel_baggage
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator

from purposeguard._context import FLAGS, PURPOSE, ZONE
from purposeguard._labels import EMPTY
from purposeguard._runtime import get_guard

__all__ = [
    "PURPOSE_KEY",
    "TENANT_KEY",
    "ZONE_KEY",
    "Incoming",
    "header_value",
    "inject",
    "parse",
]

logger = logging.getLogger("purposeguard")

PURPOSE_KEY = "purposeguard.purpose"
TENANT_KEY = "purposeguard.tenant"
ZONE_KEY = "purposeguard.zone"
_KEYS = (PURPOSE_KEY, TENANT_KEY, ZONE_KEY)
_PREFIX = "purposeguard."

# W3C baggage limits the whole header to 8192 bytes; our own members get
# tighter bounds, generous for real keys and small enough to bound the work.
MAX_HEADER = 8192
MAX_PURPOSE = 128
MAX_TENANT = 256
MAX_ZONE = 4096
MAX_ZONE_CATEGORIES = 64

_PROPAGATOR = W3CBaggagePropagator()


@dataclass(frozen=True)
class Incoming:
    """What arrived in baggage, after validation against the active policy."""

    purpose: str | None = None
    tenant: str | None = None
    categories: frozenset[str] = EMPTY
    warnings: tuple[str, ...] = field(default=())


NOTHING = Incoming()


def clean_tenant(value: object, source: str, report: Callable[[str], None] | None = None) -> str | None:
    """A tenant id from the network, or None (with a warning) when it is unusable.

    ``report`` collects the warning instead of logging it (one warning per
    header, however many members are bad)."""

    def say(reason: str) -> None:
        if report is not None:
            report(f"a tenant from {source}: {reason}")
        else:
            logger.warning("purposeguard ignored a tenant from %s: %s", source, reason)

    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            say("not ASCII")
            return None
    if not isinstance(value, str):
        say("not a string")
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > MAX_TENANT or not value.isprintable():
        say(f"longer than {MAX_TENANT} characters or not printable")
        return None
    return value


def _text(header: str | bytes | Iterable[str | bytes]) -> str | None:
    """One header string from one or several header values (bytes read as
    latin-1, so a non-ASCII member survives to be dropped on its own), or
    None when a value is neither str nor bytes."""
    if isinstance(header, (str, bytes)):
        parts: list[str | bytes] = [header]
    else:
        parts = list(header)
    texts = []
    for part in parts:
        if isinstance(part, bytes):
            part = part.decode("latin-1")
        if not isinstance(part, str):
            return None
        texts.append(part)
    return ",".join(texts)


def _decode(raw: str) -> str | None:
    try:
        # quote_plus (what OpenTelemetry writes) turns spaces into '+'.
        return unquote_to_bytes(raw.replace("+", " ")).decode("utf-8").strip()
    except UnicodeDecodeError:
        return None


def parse(header: str | bytes | Iterable[str | bytes] | None) -> Incoming:
    """Read purposeguard's members from a ``baggage`` header (or several).

    Never raises on bad input; what cannot be used is left out and named in
    ``Incoming.warnings`` (and logged on the ``purposeguard`` logger).
    """
    if header is None:
        return NOTHING
    warnings: list[str] = []

    def warn(message: str) -> None:
        # Collected, then logged once per header: a header of a thousand bad
        # members is one warning, not a thousand.
        if len(warnings) < MAX_WARNINGS:
            warnings.append(message)
        else:
            dropped[0] += 1

    dropped = [0]
    incoming = _parse(header, warn)
    if warnings:
        more = f" (and {dropped[0]} more)" if dropped[0] else ""
        logger.warning("purposeguard ignored baggage: %s%s", "; ".join(warnings), more)
        incoming = Incoming(incoming.purpose, incoming.tenant, incoming.categories, tuple(warnings))
    return incoming


# At most this many distinct problems are named per header; the rest are counted.
MAX_WARNINGS = 5


def _parse(header: str | bytes | Iterable[str | bytes], warn: Callable[[str], None]) -> Incoming:
    text = _text(header)
    if text is None:
        warn("the baggage header is not a string")
        return Incoming()
    # A bad member (another vendor's oversized or non-ASCII one) drops that
    # member alone: zone categories only ever restrict, so dropping
    # purposeguard's members with it would widen what the request may do.
    # The work stays linear in the header, which the server already bounds.
    if len(text) > MAX_HEADER:
        warn(f"the baggage header is longer than {MAX_HEADER} bytes")

    taxonomy = get_guard().policy.taxonomy
    purposes: set[str] = set()
    tenants: set[str] = set()
    categories: set[str] = set()
    for member in text.split(","):
        key, sep, raw = member.partition("=")
        key = key.strip()
        if not key.startswith(_PREFIX):
            continue  # other services' baggage is not ours to judge
        if not member.isascii():
            warn(f"{key if key in _KEYS else 'a purposeguard member'} is not ASCII")
            continue
        if key not in _KEYS:
            warn("an unknown purposeguard baggage key")
            continue
        if not sep:
            warn(f"{key} has no value")
            continue
        # Properties (";name=value") carry nothing for us.
        raw = raw.split(";", 1)[0]
        limit = MAX_ZONE if key == ZONE_KEY else MAX_TENANT if key == TENANT_KEY else MAX_PURPOSE
        if len(raw) > 3 * limit:
            warn(f"{key} is longer than {limit} characters")
            continue
        value = _decode(raw)
        if value is None:
            warn(f"{key} is not percent-encoded UTF-8")
            continue
        if len(value) > limit:
            warn(f"{key} is longer than {limit} characters")
            continue
        if key == PURPOSE_KEY:
            if value not in taxonomy.purposes:
                warn(f"{key} names a purpose the policy does not define")
                continue
            purposes.add(value)
        elif key == TENANT_KEY:
            tenant = clean_tenant(value, "baggage", warn)
            if tenant is not None:
                tenants.add(tenant)
        else:
            keys = [k.strip() for k in value.split(",") if k.strip()]
            if len(keys) > MAX_ZONE_CATEGORIES:
                warn(f"{key} lists more than {MAX_ZONE_CATEGORIES} categories")
                continue
            unknown = 0
            for category in keys:
                if category in taxonomy.categories:
                    categories.add(category)
                else:
                    unknown += 1
            if unknown:
                warn(
                    f"{key} names {unknown} categor{'y' if unknown == 1 else 'ies'} the policy does not define"
                )
    purpose = tenant = None
    if len(purposes) > 1:
        warn(f"{PURPOSE_KEY} appears with different values")
    elif purposes:
        purpose = purposes.pop()
    if len(tenants) > 1:
        warn(f"{TENANT_KEY} appears with different values")
    elif tenants:
        tenant = tenants.pop()
    return Incoming(purpose, tenant, frozenset(categories))


def header_value(
    existing: str | None = None,
    *,
    extra_categories: frozenset[str] = EMPTY,
    include: bool = True,
) -> str | None:
    """The ``baggage`` header for an outgoing call made here, or None if empty.

    Carries the current purpose, the zone's tenant and categories (plus
    ``extra_categories``, e.g. the labels of what is being sent), over the
    current OpenTelemetry baggage and the members of ``existing``. With
    ``include=False`` purposeguard's members are removed instead (a call to
    another party).
    """
    state = ZONE.get() if FLAGS.zones and include else None
    purpose = PURPOSE.get() if include else None
    tenant = state.tenant if state is not None else None
    categories = (state.categories if state is not None else EMPTY) | (extra_categories if include else EMPTY)
    if purpose is None and tenant is None and not categories and existing is None:
        if not otel_baggage.get_all():
            return None
    ctx = otel_context.get_current()
    if existing:
        ctx = _PROPAGATOR.extract({"baggage": existing}, context=ctx)
    for key, value in (
        (PURPOSE_KEY, purpose),
        (TENANT_KEY, tenant),
        (ZONE_KEY, ",".join(sorted(categories)) if categories else None),
    ):
        # Stale members (from the request that reached us) must not travel on.
        ctx = otel_baggage.set_baggage(key, value, ctx) if value else otel_baggage.remove_baggage(key, ctx)
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=ctx)
    return carrier.get("baggage")


def inject(
    headers: MutableMapping[str, Any], *, extra_categories: frozenset[str] = EMPTY, include: bool = True
) -> None:
    """Set the ``baggage`` header in ``headers`` for a call made here (``include=False``:
    remove purposeguard's members from it)."""
    existing = None
    for name in list(headers.keys()):
        if isinstance(name, str) and name.lower() == "baggage":
            value = headers[name]
            existing = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            if name != "baggage":
                del headers[name]
            break
    value = header_value(existing, extra_categories=extra_categories, include=include)
    if value:
        headers["baggage"] = value
    elif existing is not None and "baggage" in headers:
        del headers["baggage"]
