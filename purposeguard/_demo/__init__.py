"""The example multi-tenant mail service that ``purposeguard demo`` runs.

Private: only the CLI's ``demo`` command imports it, and it needs the
``demo`` extra (``pip install 'purposeguard[demo]'``). Like the CLI, it sits
on top of the library and may use the integrations; nothing below imports it.

Tenants have end users with mailboxes (messages are
``customer_data.content.email``), a document library
(``customer_data.content.document``) and administrators, kept in SQLite
through SQLAlchemy models and received as pydantic request bodies whose
fields declare their categories: the service labels nothing by hand. The service filters
spam, troubleshoots mailboxes, counts usage through the policy's transforms
and notifies administrators of storage limits, as the promise allows; its
"ad recommendations", newsletter, product-analytics job and law-enforcement
desk show what the promise forbids, or allows only with consent or under
obligations::

    from purposeguard._demo import running

    with running() as service:            # uvicorn on a free 127.0.0.1 port
        httpx.get(service.url + "/healthz")
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from purposeguard.audit import AuditLog
from purposeguard.consent import ConsentStore

try:
    # The service's own dependencies: a missing one names the extra, before any half-import.
    import httpx  # noqa: F401
    import pydantic  # noqa: F401
    import sqlalchemy  # noqa: F401
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as error:
    raise ImportError(
        f"the demo needs {error.name or 'its dependencies'}: pip install 'purposeguard[demo]'",
        name=error.name,
    ) from error

from .app import MailService, create_app
from .outside import LoopbackTransport, OutsideServer
from .server import PortInUse, ServiceThread, bind
from .store import Store

__all__ = [
    "LoopbackTransport",
    "MailService",
    "OutsideServer",
    "PortInUse",
    "Running",
    "ServiceThread",
    "Store",
    "bind",
    "create_app",
    "running",
]


@dataclass
class Running:
    """A started service: its URL, state, HTTP server and the local outside world."""

    url: str
    service: MailService
    server: ServiceThread
    outside: OutsideServer


@contextmanager
def running(
    *,
    port: int = 0,
    consents: ConsentStore | None = None,
    audit: AuditLog | str | Path | None = None,
    store: Store | None = None,
    log_level: str = "warning",
) -> Iterator[Running]:
    """Serve the mail service on 127.0.0.1 (``port`` 0: a free one) with a
    local stand-in for the ad network and the newsletter service.

    Instruments httpx and SQLAlchemy for the block (and undoes each that was
    not on before): calls to outside parties are checked, and what the store
    reads arrives labelled.
    The guard is the caller's: ``pg.configure(...)`` first, with the same
    ``consents`` store if consent should decide anything. A port in use raises
    :class:`PortInUse` before anything starts. ``log_level`` is uvicorn's.
    """
    from ._integrations import pg_http_client, pg_httpx, pg_sqlalchemy

    outside = OutsideServer()
    service = MailService(store, consents=consents, audit=audit, outside=outside.routes())
    try:
        server = ServiceThread(create_app(service), port=port, log_level=log_level)
    except BaseException:
        outside.server.server_close()
        service.close()
        raise
    # http_client as well: httpx imports urllib.request (through
    # http.cookiejar), which purposeguard names once when its guard is off.
    switched_on = [m for m in (pg_httpx, pg_http_client, pg_sqlalchemy) if not m.is_instrumented()]
    for module in switched_on:
        module.instrument()
    try:
        with outside, server:
            yield Running(server.url, service, server, outside)
    finally:
        for module in switched_on:
            module.uninstrument()
        service.close()
