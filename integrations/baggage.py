"""Purpose, tenant and zone categories in W3C baggage, signed, read and written.

Three keys travel between services: ``purposeguard.purpose``,
``purposeguard.tenant`` and ``purposeguard.zone`` (the zone's categories,
comma-separated), with ``purposeguard.sig``: one HMAC-SHA256 over the three
together, the channel (an HTTP call, one Celery task, one RQ job), the trace
the call is part of and the time, made with the first key of
``configure(baggage_keys=[...])`` or ``PURPOSEGUARD_BAGGAGE_KEYS`` (see
``purposeguard._signing``). Only members whose signature one of those keys
verifies are read: unsigned, badly signed, tampered, replayed into another
channel or trace, stale or malformed ones are all ignored, with one warning
per request on the ``purposeguard`` logger. Without a key purposeguard's
members are neither sent nor read (said once per process).

What a verified signature vouches for is still checked: purposes and
categories the policy does not define are dropped (categories one by one,
the known ones next to them kept), tenants that are not printable or too
long are dropped.

The tenant sent is whose data the zone holds (``ZoneState.data_tenant``),
not only the tenant it was opened for: a zone that holds several tenants'
data sends the runtime's own marker for that, ``MIXED_TENANT``, as its
tenant member (signed like any tenant). A receiver never takes the marker
for a tenant's name: ``Incoming.tenant`` is None and
``Incoming.several_tenants`` True, and :func:`mark_zone` makes the zone
opened for it one that no tenant's consent covers, whatever tenant the
application names later. A receiver of an earlier version reads it as a
tenant nobody consented for.

A zone sends at most ``MAX_ZONE_CATEGORIES`` entries in at most
``MAX_ZONE`` characters. A larger zone is over-approximated, never cut:
its deepest categories are replaced by their parent's whole subtree,
written ``parent.*`` (``*``: every category), until it fits. A receiver
puts the subtree's every category in its zone (the parent alone would not
do: a rule on the parent may allow what a rule on a child denies). A
signed list longer than ``MAX_ZONE_CATEGORIES`` (from another sender) is
read whole: every category in it that the policy defines is kept.

Writing keeps W3C Baggage's limits (``MAX_MEMBER`` bytes a member,
``MAX_HEADER`` bytes and ``MAX_MEMBERS`` members a header: what
OpenTelemetry's propagator, and any hop built on it, keeps of a header):
purposeguard's members come first, and the zone member is sized to fit, so
no hop that trims baggage to those limits cuts the signature or the zone
(which would void all three: the receiver would lose the sender's
categories). The current OpenTelemetry baggage and any ``baggage`` header
already set travel after them, as far as the limits leave room.

A received header longer than ``MAX_HEADER`` is still read: the members'
signature vouches for them, the server bounds the header, and dropping it
would lose the categories the caller's zone held (said once per process).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote_plus, unquote_to_bytes

from opentelemetry import baggage as otel_baggage
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator

from purposeguard._context import FLAGS, MIXED_TENANT, PURPOSE, ZONE, ZoneState
from purposeguard._errors import ConfigurationError
from purposeguard._labels import EMPTY, merge_tenants
from purposeguard._runtime import get_guard
from purposeguard._signing import ENV, MAX_AGE, BaggageKey, current_keys, sign, trace_id, verify
from purposeguard._state import STATE, remember

__all__ = [
    "HTTP",
    "PURPOSE_KEY",
    "SIG_KEY",
    "TENANT_KEY",
    "ZONE_KEY",
    "Incoming",
    "header_value",
    "inject",
    "mark_zone",
    "parse",
    "signed_header",
    "task_channel",
]

logger = logging.getLogger("purposeguard")

PURPOSE_KEY = "purposeguard.purpose"
TENANT_KEY = "purposeguard.tenant"
ZONE_KEY = "purposeguard.zone"
SIG_KEY = "purposeguard.sig"
_KEYS = (PURPOSE_KEY, TENANT_KEY, ZONE_KEY)
_SIGNED = (*_KEYS, SIG_KEY)
#: The channel of baggage on an HTTP call (see :func:`task_channel` for tasks).
HTTP = "http"
_PREFIX = "purposeguard."

# W3C Baggage's limits, which OpenTelemetry's propagator keeps (it drops a
# longer member, and the members past either header limit); our own members
# get tighter bounds, generous for real keys and small enough to bound the work.
MAX_HEADER = 8192
MAX_MEMBERS = 180
MAX_MEMBER = 4096
MAX_PURPOSE = 128
MAX_TENANT = 256
MAX_ZONE = 4096
# The most entries a sender writes (a receiver of an earlier version drops a
# longer list whole); a receiver of this version reads any list within MAX_ZONE.
MAX_ZONE_CATEGORIES = 64
# A zone entry standing for a category and everything under it; alone, for every category.
SUBTREE = ".*"
EVERYTHING = "*"

_PROPAGATOR = W3CBaggagePropagator()


@dataclass(frozen=True)
class Incoming:
    """What arrived in baggage, after validation against the active policy."""

    purpose: str | None = None
    tenant: str | None = None
    categories: frozenset[str] = EMPTY
    warnings: tuple[str, ...] = field(default=())
    # The sender's zone held several tenants' data: no tenant's consent
    # covers what arrives (``tenant`` is then None; see mark_zone).
    several_tenants: bool = False


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
    if getattr(type(value), "_pg_kind", None) is not None:
        # A labelled value (an email address, say): tenant ids are kept in
        # records and sent in baggage, which labelled data must not reach.
        say("a labelled value, which is never used as a tenant id")
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > MAX_TENANT or not value.isprintable():
        say(f"longer than {MAX_TENANT} characters or not printable")
        return None
    if value == MIXED_TENANT:
        # Records would read it as data of several tenants, not a tenant a
        # gateway or the application named.
        say("the marker of several tenants' data, never a tenant id")
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
    if "%" not in raw and "+" not in raw:
        return raw.strip()  # nothing encoded (the members were checked to be ASCII)
    try:
        # quote_plus (what OpenTelemetry writes) turns spaces into '+'.
        return unquote_to_bytes(raw.replace("+", " ")).decode("utf-8").strip()
    except UnicodeDecodeError:
        return None


def parse(
    header: str | bytes | Iterable[str | bytes] | None,
    *,
    channel: str = HTTP,
    traceparent: str | bytes | None = None,
) -> Incoming:
    """Read purposeguard's members from a ``baggage`` header (or several).

    ``channel`` is where the header arrived: :data:`HTTP` (the default), or
    :func:`task_channel` for a queued task; ``traceparent`` the W3C trace
    context the request carries, if any. Never raises on bad input; what
    cannot be used is left out and named in ``Incoming.warnings`` (and
    logged on the ``purposeguard`` logger, once per header).
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
    if isinstance(traceparent, bytes):
        traceparent = traceparent.decode("latin-1")
    if not isinstance(header, (str, bytes)):
        try:
            header = tuple(header)  # read once: it may be an iterator
        except TypeError:
            header = (header,)  # type: ignore[assignment]  # reported below as not a string
    seen = STATE.baggage_seen
    try:
        remembered: Any = (header, channel, traceparent)
        hit = seen.get(remembered)
    except TypeError:  # a part that is not hashable: not a header we sent
        remembered = hit = None
    keys = _keys()
    taxonomy = get_guard().policy.taxonomy
    if hit is not None:
        incoming, issued, read_with, read_against = hit
        # Only while the keys and the policy are those it was read with, and
        # the signature is still within its age.
        if (
            read_with is keys
            and read_against is taxonomy
            and (channel != HTTP or abs(time.time() - issued) <= MAX_AGE)
        ):
            remembered_incoming: Incoming = incoming
            return remembered_incoming
    signed_at: list[int] = []
    incoming = _parse(header, warn, channel, trace_id(traceparent), signed_at, keys)
    # Task channels name one task each: a header read for one is never read again.
    if signed_at and not warnings and remembered is not None and channel == HTTP:
        remember(seen, remembered, (incoming, signed_at[0], keys, taxonomy), MAX_REMEMBERED)
    if warnings:
        problems = [warning for warning in warnings if warning != _LONG]
        if problems or dropped[0]:
            more = f" (and {dropped[0]} more)" if dropped[0] else ""
            logger.warning("purposeguard ignored baggage: %s%s", "; ".join(problems), more)
        if len(problems) < len(warnings) and signed_at:
            # Not a reason to ignore anything (see the module's docstring);
            # a peer that keeps sending such headers is said once, not per request.
            _say_once(
                "long header",
                "purposeguard read a baggage header longer than %d bytes, W3C Baggage's limit: its signed "
                "members were read (some hop between the services does not keep to the limit; one "
                "that does would drop such a header whole)",
                MAX_HEADER,
            )
        incoming = replace(incoming, warnings=tuple(warnings))
    return incoming


# At most this many distinct problems are named per header; the rest are counted.
MAX_WARNINGS = 5
# In Incoming.warnings, though nothing is ignored for it.
_LONG = f"the baggage header is longer than {MAX_HEADER} bytes"
# Verified headers remembered per process (each is a few hundred bytes).
MAX_REMEMBERED = 1024


def _say_once(topic: str, message: str, *args: object) -> None:
    said = STATE.baggage_said
    if topic not in said:
        said.add(topic)
        logger.warning(message, *args)


def _keys() -> tuple[BaggageKey, ...]:
    """The keys in force; none (nothing signed, nothing read) when the
    environment's are unusable: fail closed, said once."""
    try:
        return current_keys()
    except ConfigurationError as error:
        _say_once("bad keys", "purposeguard neither signs nor reads baggage: %s", error)
        return ()


def _members(
    header: str | bytes | Iterable[str | bytes], warn: Callable[[str], None], judge: bool
) -> tuple[dict[str, str], bool] | None:
    """purposeguard's members by key, raw (percent-encoded, properties cut),
    and whether one is unusable as a whole (repeated, not ASCII, no value);
    None when the header itself is not text. With ``judge=False`` (nothing
    will be read) it only finds out whether there is any member of ours."""
    text = _text(header)
    if text is None:
        warn("the baggage header is not a string")
        return None
    # A bad member of another vendor drops that member alone; the work stays
    # linear in the header, which the server already bounds.
    if len(text) > MAX_HEADER:
        warn(_LONG)
    found: dict[str, str] = {}
    broken = False
    for member in text.split(","):
        key, sep, raw = member.partition("=")
        key = key.strip()
        if not key.startswith(_PREFIX):
            continue  # other services' baggage is not ours to judge
        if not judge:
            return found, True
        if not member.isascii():
            warn(f"{key if key in _SIGNED else 'a purposeguard member'} is not ASCII")
            broken = True
            continue
        if key not in _SIGNED:
            warn("an unknown purposeguard baggage key")
            continue
        if not sep:
            warn(f"{key} has no value")
            broken = True
            continue
        if key in found:
            warn(f"{key} appears more than once")
            broken = True
            continue
        # Properties (";name=value") carry nothing for us.
        found[key] = raw.split(";", 1)[0]
    return found, broken


def _parse(
    header: str | bytes | Iterable[str | bytes],
    warn: Callable[[str], None],
    channel: str,
    trace: str | None,
    signed_at: list[int],
    keys: tuple[BaggageKey, ...] | None = None,
) -> Incoming:
    keys = _keys() if keys is None else keys
    read = _members(header, warn, judge=bool(keys))
    if read is None:
        return Incoming()
    found, broken = read
    if not found and not broken:
        return Incoming()
    if not keys:
        _say_once(
            "no key",
            "purposeguard ignores the purpose, tenant and zone in incoming baggage: no baggage key is "
            "configured (set %s, or configure(baggage_keys=[...]), to the key the calling services share)",
            ENV,
        )
        return Incoming()
    if broken:
        warn("purposeguard's members are ignored")
        return Incoming()
    signature = found.pop(SIG_KEY, None)
    if signature is None:
        warn("purposeguard's members are not signed and are ignored")
        return Incoming()
    values: dict[str, str] = {}
    for key, raw in found.items():
        limit = MAX_ZONE if key == ZONE_KEY else MAX_TENANT if key == TENANT_KEY else MAX_PURPOSE
        value = _decode(raw) if len(raw) <= 3 * limit else None
        if value is None or len(value) > limit:
            warn(
                f"{key} is not percent-encoded UTF-8 of at most {limit} characters; purposeguard's members are ignored"
            )
            return Incoming()
        values[key] = value
    problem = verify(
        keys,
        signature,
        channel=channel,
        trace=trace,
        purpose=values.get(PURPOSE_KEY),
        tenant=values.get(TENANT_KEY),
        zone=values.get(ZONE_KEY),
        max_age=MAX_AGE if channel == HTTP else None,
    )
    if problem is not None:
        warn(f"purposeguard's baggage {problem}; its members are ignored")
        return Incoming()
    signed_at.append(int(signature.split(".")[2]))
    return _validated(values, warn)


def _validated(values: dict[str, str], warn: Callable[[str], None]) -> Incoming:
    """What a verified signature vouches for, checked against this service's policy."""
    taxonomy = get_guard().policy.taxonomy
    purpose = values.get(PURPOSE_KEY)
    if purpose is not None and purpose not in taxonomy.purposes:
        warn(f"{PURPOSE_KEY} names a purpose the policy does not define")
        purpose = None
    tenant = values.get(TENANT_KEY)
    several = tenant == MIXED_TENANT
    if several:
        # The marker, never a tenant's name (see mark_zone).
        tenant = None
    elif tenant is not None:
        tenant = clean_tenant(tenant, "baggage", warn)
    categories: set[str] = set()
    zone_value = values.get(ZONE_KEY)
    if zone_value is not None:
        # MAX_ZONE bounds the work; a longer list than this version sends is
        # read whole rather than dropped (an empty zone would allow more).
        known = taxonomy.categories
        subtrees: set[str] = set()
        unknown = 0
        for entry in zone_value.split(","):
            entry = entry.strip()
            if not entry:
                continue
            if entry == EVERYTHING:
                subtrees.add("")
            elif entry.endswith(SUBTREE) and entry[: -len(SUBTREE)] in known:
                subtrees.add(entry[: -len(SUBTREE)])
            elif entry in known:
                categories.add(entry)
            else:
                unknown += 1
        if unknown:
            warn(
                f"{ZONE_KEY} names {unknown} categor{'y' if unknown == 1 else 'ies'} the policy does not define"
            )
        if "" in subtrees:
            categories.update(known)
        elif subtrees:
            categories.update(
                key for key in known if not subtrees.isdisjoint(taxonomy.category_ancestors(key))
            )
    return Incoming(purpose, tenant, frozenset(categories), several_tenants=several)


def mark_zone(state: ZoneState, incoming: Incoming) -> None:
    """Make the zone a receiver opened for ``incoming`` hold what arrived as
    several tenants' data, if the sender's zone did: a tenant the
    application names later (``pg.set_tenant``, ``tenant_from``) then finds
    its consent does not cover it. Call it right after opening the zone."""
    if incoming.several_tenants:
        state.add(EMPTY, MIXED_TENANT)


def zone_value(categories: frozenset[str]) -> str | None:
    """The ``purposeguard.zone`` member for ``categories``: all of them, or,
    past ``MAX_ZONE_CATEGORIES`` entries or ``MAX_ZONE`` characters, their
    over-approximation by whole subtrees (see the module's docstring)."""
    if not categories:
        return None
    value = ",".join(sorted(categories))
    if len(categories) <= MAX_ZONE_CATEGORIES and _fits(value):
        return value
    exact = set(categories)
    # Categories standing for their whole subtree ("" for every category).
    wholes: set[str] = set()
    while True:
        value = ",".join(sorted([*exact, *(whole + SUBTREE if whole else EVERYTHING for whole in wholes)]))
        if len(exact) + len(wholes) <= MAX_ZONE_CATEGORIES and _fits(value):
            return value
        deepest = max(_level(node) for node in exact | wholes)
        if deepest < 0:
            return value  # "*" alone: always fits
        wholes = {_parent(node) if _level(node) == deepest else node for node in wholes} | {
            _parent(node) for node in exact if _level(node) == deepest
        }
        wholes = {whole for whole in wholes if not _under(whole, wholes)}
        exact = {
            node
            for node in exact
            if _level(node) < deepest and node not in wholes and not _under(node, wholes)
        }


def _fits(value: str) -> bool:
    """Whether a zone value is within ``MAX_ZONE`` characters and, as sent
    (percent-encoded, with its key), within one member's ``MAX_MEMBER``
    bytes: a hop that keeps W3C's limits drops a longer member, and the
    signature over it with it."""
    if len(value) > MAX_ZONE:
        return False
    room = MAX_MEMBER - len(ZONE_KEY) - 1
    # Encoding at most triples the length; only a value near the limit is encoded to measure it.
    return 3 * len(value) <= room or len(quote_plus(value)) <= room


def _level(node: str) -> int:
    """Dots in a key (0 at the top); -1 for the root of every category."""
    return node.count(".") if node else -1


def _parent(node: str) -> str:
    return node.rpartition(".")[0]


def _under(node: str, wholes: set[str]) -> bool:
    """Whether a proper ancestor of ``node`` (or the root) stands for its subtree."""
    if not node:
        return False
    if "" in wholes:
        return True
    parent = node.rpartition(".")[0]
    while parent:
        if parent in wholes:
            return True
        parent = parent.rpartition(".")[0]
    return False


def header_value(
    existing: str | None = None,
    *,
    extra_categories: frozenset[str] = EMPTY,
    extra_tenant: str | None = None,
    carried: Incoming | None = None,
    include: bool = True,
    channel: str = HTTP,
    traceparent: str | None = None,
) -> str | None:
    """The ``baggage`` header for an outgoing call made here, or None if empty.

    Carries the current purpose, whose data the zone holds (its data
    tenant, ``MIXED_TENANT`` for several) and its categories (plus
    ``extra_categories``, e.g. the labels of what is being sent, whose
    tenant is ``extra_tenant``), signed for ``channel`` and the trace of
    ``traceparent`` (the one the call carries), over the current
    OpenTelemetry baggage and the members of ``existing``. ``carried``: what
    the message already carried, verified (an RQ job enqueued again), kept
    in: its categories and tenant join, its purpose stands if none is
    current. With ``include=False``, or with no baggage key, purposeguard's
    members are removed instead (a call to another party; nobody could
    trust them).
    """
    keys = _keys() if include else ()
    state = ZONE.get() if FLAGS.zones and keys else None
    purpose = PURPOSE.get() if keys else None
    tenant = state.data_tenant() if state is not None else None
    categories = (state.categories if state is not None else EMPTY) | (extra_categories if keys else EMPTY)
    if keys:
        if extra_tenant is not None and extra_categories:
            tenant = merge_tenants(tenant, extra_tenant)
        if carried is not None:
            categories = categories | carried.categories
            tenant = merge_tenants(tenant, MIXED_TENANT if carried.several_tenants else carried.tenant)
            purpose = purpose or carried.purpose
    if purpose is None and tenant is None and not categories and existing is None:
        if not otel_baggage.get_all():
            return None
    zone = zone_value(categories)
    signature = None
    if purpose is not None or tenant is not None or zone is not None:
        signature = sign(
            keys[0],
            channel=channel,
            trace=trace_id(traceparent),
            purpose=purpose,
            tenant=tenant,
            zone=zone,
        )
    ctx = otel_context.get_current()
    if existing:
        ctx = _PROPAGATOR.extract({"baggage": existing}, context=ctx)
    for key in _SIGNED:
        # Stale members (from the request that reached us) must not travel on.
        ctx = otel_baggage.remove_baggage(key, ctx)
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=ctx)
    ours = [
        f"{key}={quote_plus(value)}"
        for key, value in (
            (PURPOSE_KEY, purpose),
            (TENANT_KEY, tenant),
            (ZONE_KEY, zone),
            (SIG_KEY, signature),
        )
        if value
    ]
    return _within_limits(ours, carrier.get("baggage"))


def _within_limits(ours: list[str], others: str | None) -> str | None:
    """purposeguard's members first, then as many of the others (already
    encoded, each within ``MAX_MEMBER``) as W3C's limits leave room for.
    Last, they would be the ones a hop keeping the limits cuts: without its
    signature, the zone is read by no one."""
    members = list(ours)
    length = sum(map(len, members)) + max(len(members) - 1, 0)
    left_out = 0
    for member in others.split(",") if others else ():
        added = len(member) + (1 if members else 0)
        if len(members) >= MAX_MEMBERS or length + added > MAX_HEADER:
            left_out += 1
            continue
        members.append(member)
        length += added
    if left_out:
        _say_once(
            "trimmed",
            "purposeguard left %d other baggage member(s) out of an outgoing header: with purposeguard's "
            "own they would pass W3C Baggage's limits (%d bytes, %d members), and a hop keeping to "
            "those would cut the header's last members",
            left_out,
            MAX_HEADER,
            MAX_MEMBERS,
        )
    return ",".join(members) if members else None


def zone_header(
    channel: str, *, extra_categories: frozenset[str] = EMPTY, extra_tenant: str | None = None
) -> str | None:
    """purposeguard's members alone for what the current zone holds (its
    categories and whose data they are, plus ``extra_categories`` of
    ``extra_tenant``), signed for ``channel``; None when there is nothing
    to carry or no baggage key. No purpose and no other vendor's baggage:
    for a task's result, which tells its reader what the task saw, not
    what it was for."""
    keys = _keys()
    if not keys:
        return None
    state = ZONE.get() if FLAGS.zones else None
    tenant = state.data_tenant() if state is not None else None
    categories = (state.categories if state is not None else EMPTY) | extra_categories
    if extra_tenant is not None and extra_categories:
        tenant = merge_tenants(tenant, extra_tenant)
    zone = zone_value(categories)
    if zone is None:
        # A tenant with no categories: no data of theirs to tell of.
        return None
    signature = sign(keys[0], channel=channel, trace=None, purpose=None, tenant=tenant, zone=zone)
    members = [
        f"{name}={quote_plus(value)}" for name, value in ((TENANT_KEY, tenant), (ZONE_KEY, zone)) if value
    ]
    return ",".join([*members, f"{SIG_KEY}={signature}"])


def inject(
    headers: MutableMapping[str, Any], *, extra_categories: frozenset[str] = EMPTY, include: bool = True
) -> None:
    """Set the ``baggage`` header in ``headers`` for an HTTP call made here
    (``include=False``: remove purposeguard's members from it). The
    signature is bound to the ``traceparent`` the headers carry, if any."""
    existing = None
    traceparent = None
    for name in list(headers.keys()):
        if not isinstance(name, str):
            continue
        lowered = name.lower()
        if lowered == "traceparent":
            value = headers[name]
            traceparent = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        elif lowered == "baggage" and existing is None:
            value = headers[name]
            existing = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            if name != "baggage":
                del headers[name]
    value = header_value(
        existing, extra_categories=extra_categories, include=include, traceparent=traceparent
    )
    if value:
        headers["baggage"] = value
    elif existing is not None and "baggage" in headers:
        del headers["baggage"]


def task_channel(kind: str, task_id: object, name: object = None) -> str:
    """The channel of one queued task (``kind`` is ``"celery"`` or ``"rq"``):
    its baggage holds for that task id and task (``name``: the Celery task's
    name, the RQ job's function) only, however long it waits. Task ids are
    chosen by whoever enqueues, so without the name a header seen on one
    task could be put on another task enqueued under the same id."""
    ident = str(task_id)
    return f"{kind} task {len(ident)}:{ident} {'-' if name is None else name}"


def signed_header(
    *,
    purpose: str | None = None,
    tenant: str | None = None,
    categories: Iterable[str] = (),
    key: str | bytes | None = None,
    channel: str = HTTP,
    traceparent: str | None = None,
    issued: int | None = None,
) -> str:
    """A ``baggage`` header with these members, signed as a peer service
    sharing ``key`` (by default the first key in force) would sign it: for
    tests, and for callers that build headers by hand.

    >>> signed_header(purpose="service.operations", key="k" * 32).startswith("purposeguard.purpose=")
    True
    """
    signer = BaggageKey(key) if key is not None else (_keys() or (None,))[0]
    if signer is None:
        raise ConfigurationError("no baggage key to sign with", setting=ENV)
    zone_value = ",".join(sorted(categories)) or None
    members = {PURPOSE_KEY: purpose, TENANT_KEY: tenant, ZONE_KEY: zone_value}
    signature = sign(
        signer,
        channel=channel,
        trace=trace_id(traceparent),
        purpose=purpose,
        tenant=tenant,
        zone=zone_value,
        issued=issued,
    )
    parts = [f"{name}={quote_plus(value)}" for name, value in members.items() if value is not None]
    return ",".join([*parts, f"{SIG_KEY}={signature}"])
