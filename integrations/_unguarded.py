"""Say once when a client that can send data out is imported unguarded.

When an egress integration is on, the team expects what leaves the process
to be checked. A client library purposeguard does not guard (or guards, but
whose guard is not on) is a silent exit: it is named once per process on the
``purposeguard`` logger, with what to do about it.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable

import wrapt

logger = logging.getLogger("purposeguard")

# Clients with a guard in purposeguard.integrations, by module: the guard to turn on.
GUARDED = {
    "httpx": "httpx",
    "requests": "requests",
    "urllib3": "urllib3",
    "aiohttp": "aiohttp",
    "smtplib": "smtp",
    "urllib.request": "http_client",
}
# Clients another guarded client sends through: calls through that client are
# checked by its guard; only direct calls need this one.
UNDER = {"urllib3": "requests"}
# Clients that send data out which purposeguard does not guard: only the zone sees their flows.
UNGUARDED = (
    "pycurl",
    "httplib2",
    "tornado.httpclient",
    "treq",
    "aiosmtplib",
    "websockets",
    "websocket",
    # WebSockets over httpx: messages go on the upgraded stream, past httpx's per-request hook.
    "httpx_ws",
    "grpc",
    "paramiko",
    "ftplib",
    "pika",
    "kafka",
    "confluent_kafka",
    "nats",
)

_lock = threading.Lock()
_watching: set[str] = set()
_seen: list[str] = []
_said: set[str] = set()
_active: dict[str, bool] = {}


class _Pending:
    # Read on every egress check: a plain attribute, true only while imports wait for review.
    __slots__ = ("waiting",)

    def __init__(self) -> None:
        self.waiting = False


PENDING = _Pending()


def activate(guard: str) -> None:
    """An egress guard was turned on: watch for the clients no guard covers."""
    with _lock:
        _active[guard] = True
        modules = [m for m in (*GUARDED, *UNGUARDED) if m not in _watching]
        _watching.update(modules)
    for module in modules:
        wrapt.when_imported(module)(_hook(module))


def _hook(module: str) -> Callable[[object], None]:
    def imported(_module: object) -> None:
        _imported(module)

    return imported


def deactivate(guard: str) -> None:
    with _lock:
        _active[guard] = False


def _imported(module: str) -> None:
    # Judged at the next egress check, not now: the guards a service turns on
    # one after another at start-up are all on by the time data leaves.
    with _lock:
        _seen.append(module)
        PENDING.waiting = True


def review() -> None:
    """Name, once each, the clients imported since the last check that no guard covers."""
    with _lock:
        seen = _seen[:]
        _seen.clear()
        PENDING.waiting = False
        if not any(_active.values()):
            return
        unguarded = []
        for module in seen:
            guard = GUARDED.get(module)
            if module in _said or (guard is not None and _active.get(guard)):
                continue
            _said.add(module)
            unguarded.append((module, guard))
    for module, guard in unguarded:
        if guard is None:
            logger.warning(
                "purposeguard: %s is imported but purposeguard does not guard it: what it sends is not "
                "checked (only the zone's categories are, at guarded calls)",
                module,
            )
        elif _active.get(UNDER.get(module, "")):
            logger.warning(
                "purposeguard: %s is imported and its guard is off: calls made through %s are checked by "
                "%s's guard, direct %s calls (an SDK or library using it) are not; call "
                "purposeguard.integrations.%s.instrument() if anything uses it directly (no call is "
                "checked twice)",
                module,
                UNDER[module],
                UNDER[module],
                module,
                guard,
            )
        else:
            logger.warning(
                "purposeguard: %s is imported but its guard is off: call purposeguard.integrations.%s.instrument()",
                module,
                guard,
            )


def reset() -> None:
    """Forget what was said, and which guards are on (tests)."""
    with _lock:
        _said.clear()
        _active.clear()
        _seen[:] = [m for m in _watching if m in sys.modules]
        PENDING.waiting = bool(_seen)
