"""Guard outgoing ``requests`` calls: ``instrument()`` once.

>>> from purposeguard.integrations import requests as pg_requests
>>> pg_requests.instrument()

The same checks as the httpx integration: labels of params, data, JSON,
files, headers and cookies against the destination's purpose (else the
current one), the zone's categories, TLS for content off-host, and the
purpose, tenant and zone in the W3C ``baggage`` header. Every hop of a
redirect is checked against its own host. Needs
``pip install 'purposeguard[requests]'``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from purposeguard._labels import EMPTY

from . import baggage
from ._egress import check_egress, deep_labels, header_labels
from ._patch import Patcher

__all__ = ["instrument", "uninstrument", "is_instrumented"]

# Labels of the call being sent: requests encodes JSON and forms to plain
# bytes in between, so Session.request reads them and Session.send uses them
# (for each redirect hop too).
_PENDING: ContextVar[frozenset[str]] = ContextVar("purposeguard.requests.pending", default=EMPTY)


def _request(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    labels = deep_labels((args, tuple(kwargs.values())))
    token = _PENDING.set(labels)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _PENDING.reset(token)


def _send(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    request = args[0] if args else kwargs["request"]
    labels = _PENDING.get() | deep_labels(request.body) | header_labels(request.headers.items())
    egress = check_egress(request.url, labels, function="requests.Session.send")
    baggage.inject(request.headers, extra_categories=labels, include=not egress.external)
    return wrapped(*args, **kwargs)


_PATCHER = Patcher("requests", [("Session", "request", _request), ("Session", "send", _send)])


def instrument() -> None:
    """Guard every ``requests`` call (``requests.get``, sessions) from now on."""
    from . import require

    require("requests", "requests")
    _PATCHER.install()


def uninstrument() -> None:
    """Restore requests as it was."""
    _PATCHER.remove()


def is_instrumented() -> bool:
    return _PATCHER.applied
