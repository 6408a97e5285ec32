"""Guard outgoing ``httpx`` requests (sync and async): ``instrument()`` once.

>>> from purposeguard.integrations import httpx as pg_httpx
>>> pg_httpx.instrument()

Before a request leaves, the labels of what it carries (content, data,
files, JSON, params, headers, cookies) are checked against the purpose of its
destination (the policy's ``[[destinations]]``), else against the current
purpose; the zone's categories are checked too, and content the policy
requires TLS for may not go over plain ``http://`` off-host. The current
purpose, tenant and zone categories travel in the W3C ``baggage`` header,
except to a policy destination (another party). Patching happens when
``httpx`` is imported (at once if it already is); ``uninstrument()`` undoes it.
Needs ``pip install 'purposeguard[httpx]'``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from purposeguard._labels import EMPTY

from . import baggage
from ._egress import check_egress, deep_labels, header_labels
from ._patch import Patcher

__all__ = ["instrument", "uninstrument", "is_instrumented"]

# Labels of the arguments a request was built from: httpx encodes bodies to
# plain bytes, so they are read before encoding and looked up at send time.
_BUILT: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()


def _build_request(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    request = wrapped(*args, **kwargs)
    labels = deep_labels((args, tuple(kwargs.values())))
    if labels:
        _BUILT[request] = labels
    return request


def _prepare(args: tuple[Any, ...], kwargs: dict[str, Any], function: str) -> None:
    request = args[0] if args else kwargs["request"]
    labels = _BUILT.pop(request, EMPTY) | header_labels(request.headers.raw)
    egress = check_egress(str(request.url), labels, function=function)
    baggage.inject(request.headers, extra_categories=labels, include=not egress.external)


def _send(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    _prepare(args, kwargs, "httpx.Client.send")
    return wrapped(*args, **kwargs)


async def _send_async(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    _prepare(args, kwargs, "httpx.AsyncClient.send")
    return await wrapped(*args, **kwargs)


_PATCHER = Patcher(
    "httpx",
    [
        ("Client", "build_request", _build_request),
        ("AsyncClient", "build_request", _build_request),
        ("Client", "send", _send),
        ("AsyncClient", "send", _send_async),
    ],
)


def instrument() -> None:
    """Guard every ``httpx.Client`` and ``httpx.AsyncClient`` request from now on."""
    from . import require

    require("httpx", "httpx")
    _PATCHER.install()


def uninstrument() -> None:
    """Restore httpx as it was."""
    _PATCHER.remove()


def is_instrumented() -> bool:
    return _PATCHER.applied
