"""Shared fixtures: every test starts from a fresh process state and no subscribers."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard._state import STATE


def _unscoped_subscribers() -> list[object]:
    handlers = STATE.handlers
    with handlers.lock:
        return [h for h in handlers.violations + handlers.records if id(h) not in handlers.scoped]


# The tests run against the installed package. A ``python -c``/``-m`` that a
# test starts from the repository root would otherwise import the checkout's
# purposeguard/ folder ahead of it (which has no integrations/ inside).
os.environ.setdefault("PYTHONSAFEPATH", "1")


@pytest.fixture(autouse=True)
def _fresh_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """``pg.testing.reset()`` around every test, and fail a test that leaks a subscriber.

    A module that shares one telemetry instrumentation across its tests
    (``KEEPS_TELEMETRY = True``) keeps it, and the counts it reports.
    """
    keep = bool(getattr(request.module, "KEEPS_TELEMETRY", False))
    pg.testing.reset(keep_telemetry=keep)
    yield
    leaked = _unscoped_subscribers()
    # Dropped by the reset, so one test's subscriber cannot affect the next.
    pg.testing.reset(keep_telemetry=keep)
    assert not leaked, f"test left subscribers behind: {leaked}"


@pytest.fixture
def trace_guard() -> pg.Guard:
    return pg.configure("trust-center", mode="trace")


@pytest.fixture
def content() -> str:
    return pg.label("Quarterly numbers attached, call me", "customer_data.content.email")


@pytest.fixture
def consents() -> Iterator[Any]:
    """acme consented to improvement for customer data; globex did not (an
    in-memory consent store, enforce mode for calls and zones)."""
    from purposeguard.consent import ConsentStore

    store = ConsentStore(":memory:")
    try:
        pg.configure("trust-center", mode="enforce", context_mode="enforce", consents=store)
        store.grant("acme", "improvement", ["customer_data"], granted_by="admin@acme")
        yield store
    finally:
        store.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """One throwaway PostgreSQL cluster for the session's tests outside
    tests/distributed (which runs its own: some of its tests stop it), each
    test on a database it creates; stopped at the session's end. Tests that
    use it are marked ``services``."""
    services = Path(__file__).resolve().parent / "distributed"
    sys.path.insert(0, str(services))
    try:
        from services import PostgresServer
    finally:
        sys.path.remove(str(services))
    server = PostgresServer()
    try:
        yield server
    finally:
        server.close()


# -- a real SMTP server on loopback ------------------------------------------------------------


class Mailbox:
    """The aiosmtpd handler: every message accepted, in order."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(envelope.content)
        return "250 OK"


class SMTPServer:
    """An aiosmtpd server on a free loopback port (STARTTLS with
    ``tls_context``), running inside ``with``."""

    def __init__(self, tls_context: Any = None) -> None:
        import socket

        from aiosmtpd.controller import Controller

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        self.mailbox = Mailbox()
        self.controller = Controller(
            self.mailbox, hostname="127.0.0.1", port=port, tls_context=tls_context, ready_timeout=10
        )

    def __enter__(self) -> SMTPServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return int(self.controller.port)

    @property
    def messages(self) -> list[bytes]:
        return self.mailbox.messages


@pytest.fixture
def mail_server() -> Iterator[SMTPServer]:
    """A real SMTP server on a free loopback port until the test ends."""
    with SMTPServer() as server:
        yield server
