"""The check every outgoing HTTP call goes through (httpx, requests).

Before a request leaves: what it carries is checked against the purpose of
its destination (the policy's ``[[destinations]]``), else the current
purpose; the zone's categories are checked too (``via="context"``); and
categories under ``[transport] require_tls`` may not leave over plain
``http://`` to a host that is not loopback (``via="transport"``).
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any
from urllib.parse import urlsplit

from purposeguard._context import FLAGS, PURPOSE, ZONE
from purposeguard._errors import PurposeViolation
from purposeguard._labels import EMPTY, NO_LABELS, labels_of, tenant_of
from purposeguard._records import Violation
from purposeguard._runtime import check_zone, get_guard

__all__ = ["Egress", "check_chunk", "check_egress", "deep_labels", "is_loopback"]

TRANSPORT_RULE = "transport.require_tls"
_CONTAINERS = (list, tuple, set, frozenset, dict)
# Bounds for walking request bodies: deep enough for JSON documents, bounded
# so a huge payload cannot turn the check into the slow part of a request.
MAX_DEPTH = 8
MAX_ITEMS = 50_000


def deep_labels(values: Any, depth: int = MAX_DEPTH) -> frozenset[str]:
    """The labels anywhere in ``values`` (nested containers, JSON-like)."""
    found: set[str] = set()
    budget = [MAX_ITEMS]
    tenant: list[str] = []

    def walk(value: Any, level: int) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            return
        t = type(value)
        kind = getattr(t, "_pg_kind", None)
        if kind is not None:
            found.update(kind.labels)
            return
        if t in NO_LABELS and t not in _CONTAINERS:
            return
        own = labels_of(value)
        if own:
            found.update(own)
            if not tenant:
                owner = tenant_of(value)
                if owner:
                    tenant.append(owner)
        if level <= 0 or not isinstance(value, _CONTAINERS):
            return
        items = value.items() if isinstance(value, dict) else value
        for item in items:
            walk(item, level - 1)

    walk(values, depth)
    return frozenset(found) if found else EMPTY


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


def check_egress(url: str, labels: frozenset[str], *, function: str) -> Egress:
    """Check a request to ``url`` carrying ``labels``; raise or record per mode."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    guard = get_guard()
    policy = guard.policy
    destination = policy.destination_for(host) if host else None
    purpose = destination.purpose if destination is not None else PURPOSE.get()
    state = ZONE.get() if FLAGS.zones else None
    tenant = state.tenant if state is not None else None
    if state is not None and labels:
        state.add(labels)
    if purpose is not None:
        if labels:
            guard.check_labels(labels, purpose, via="egress", function=function, tenant=tenant)
        if state is not None:
            check_zone(guard, state, purpose, labels, function)
    if parts.scheme.lower() == "http" and host and not is_loopback(host):
        # The request's own labels under the guard's mode; categories only the
        # zone saw (text merged into an f-string, a file read into bytes) under
        # context_mode, like every other zone check.
        clear = policy.requires_tls(labels) if labels else ()
        if clear:
            _refuse_plain_http(guard, clear, purpose or "service", function, tenant, guard.mode)
        if state is not None and state.categories:
            rest = policy.requires_tls(state.categories - labels)
            if rest:
                _refuse_plain_http(guard, rest, purpose or "service", function, tenant, guard.context_mode)
    return Egress(host, purpose, labels, destination is not None)


def check_chunk(url: str, chunk: Any, *, function: str) -> None:
    """Check one chunk of a streamed body (an iterator or async generator the
    client sends piece by piece) before it leaves, like a whole request."""
    kind = getattr(type(chunk), "_pg_kind", None)
    labels = kind.labels if kind is not None else labels_of(chunk)
    if labels:
        check_egress(url, labels, function=function)


def _refuse_plain_http(
    guard: Any, categories: tuple[str, ...], purpose: str, function: str, tenant: str | None, mode: str
) -> None:
    if mode == "off":
        return
    now = time.time()
    violations = [
        Violation(
            category=category,
            purpose=purpose,
            rule=TRANSPORT_RULE,
            via="transport",
            function=function,
            tenant=tenant,
            mode=mode,
            timestamp=now,
            remediation=f"{category} may leave this host only encrypted: use https://",
            fix="block",
        )
        for category in categories
    ]
    for violation in violations:
        guard.dispatch(violation)
    if mode == "enforce":
        raise PurposeViolation(violations)


def header_labels(pairs: Any) -> frozenset[str]:
    """Labels in header values given as (name, value) pairs."""
    found = EMPTY
    for _, value in pairs:
        kind = getattr(type(value), "_pg_kind", None)
        if kind is not None:
            found = found | kind.labels
    return found
