"""Guard outgoing ``aiohttp`` client requests: ``instrument()`` once.

>>> from purposeguard.integrations import aiohttp as pg_aiohttp
>>> pg_aiohttp.instrument()

The same checks as the other HTTP clients: labels of the body, JSON, form
data, params and headers against the destination's purpose (else the
current purpose), the zone's categories, TLS for content off-host, and
purpose, tenant and zone in the W3C ``baggage`` header (not to a policy
destination). Needs ``pip install 'purposeguard[aiohttp]'``.

Where the checks hook in, and why:

* ``ClientSession._request`` (behind ``get``, ``post``, ``request``...)
  remembers the labels of its arguments, because ``json=`` is encoded into
  a payload object that carries no label, and wraps a streamed body (an
  async generator) so each chunk is checked before it is written. It is
  aiohttp's private entry point: the ``aiohttp`` extra pins the range tested.
* ``ClientRequest.__init__`` runs once per hop, including each redirect
  aiohttp follows itself, so each hop is checked against its own host and
  gets its own baggage header before anything is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any

from purposeguard._errors import PurposeViolation
from purposeguard._labels import EMPTY

from . import _unguarded, baggage
from ._egress import check_chunk, check_egress, deep_labels, header_labels
from ._patch import Patcher

__all__ = ["instrument", "is_instrumented", "uninstrument"]

_FUNCTION = "aiohttp.ClientSession.request"
_PENDING: ContextVar[frozenset[str]] = ContextVar("purposeguard.aiohttp.pending", default=EMPTY)


class _CheckedBody:
    """A streamed body whose chunks are checked before they are written; the
    violation is kept, since aiohttp turns errors raised while writing the
    body into its own connection errors."""

    def __init__(self, inner: Any, url: str) -> None:
        self.inner = inner
        self.url = url
        self.violation: PurposeViolation | None = None

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for chunk in self.inner:
            try:
                check_chunk(self.url, chunk, function=_FUNCTION)
            except PurposeViolation as error:
                self.violation = error
                raise
            yield chunk


def _request(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    data = kwargs.get("data")
    streamed = None
    if data is not None and hasattr(data, "__aiter__"):
        url = str(args[1] if len(args) > 1 else kwargs.get("str_or_url", ""))
        streamed = _CheckedBody(data, url)
        kwargs = {**kwargs, "data": streamed.__aiter__()}
        data = None
    labels = deep_labels((args, tuple(v for k, v in kwargs.items() if k != "data"), data))
    if not labels and streamed is None:
        return wrapped(*args, **kwargs)

    async def remembering() -> Any:
        # The coroutine runs later, in the caller's task: set the labels there.
        token = _PENDING.set(_PENDING.get() | labels)
        try:
            return await wrapped(*args, **kwargs)
        except PurposeViolation:
            raise
        except Exception as error:
            if streamed is not None and streamed.violation is not None:
                raise streamed.violation from error
            raise
        finally:
            _PENDING.reset(token)

    return remembering()


def _init_request(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    result = wrapped(*args, **kwargs)
    labels = _PENDING.get() | header_labels(instance.headers.items())
    egress = check_egress(str(instance.url), labels, function=_FUNCTION)
    baggage.inject(instance.headers, extra_categories=labels, include=not egress.external)
    return result


_SESSION = Patcher("aiohttp", [("ClientSession", "_request", _request)])
_REQUEST = Patcher("aiohttp", [("ClientRequest", "__init__", _init_request)])


def instrument() -> None:
    """Guard every request made with an ``aiohttp.ClientSession`` from now on."""
    from . import require

    require("aiohttp", "aiohttp")
    _SESSION.install()
    _REQUEST.install()
    _unguarded.activate("aiohttp")


def uninstrument() -> None:
    """Restore aiohttp as it was."""
    _REQUEST.remove()
    _SESSION.remove()
    _unguarded.deactivate("aiohttp")


def is_instrumented() -> bool:
    return _SESSION.applied
