"""The integrations the demo uses, under the names mypy knows them by.

Installed, ``integrations/`` is ``purposeguard.integrations``; mypy reads the
repository, where that folder is the top-level package ``integrations`` (it
has no notion of the install's package-dir mapping). The demo is the only
module of the package that imports an integration, so the indirection lives
here alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from integrations import http_client as pg_http_client
    from integrations import httpx as pg_httpx
    from integrations import sqlalchemy as pg_sqlalchemy
    from integrations.asgi import PurposeGuardMiddleware, route_purpose
else:
    from purposeguard.integrations import http_client as pg_http_client
    from purposeguard.integrations import httpx as pg_httpx
    from purposeguard.integrations import sqlalchemy as pg_sqlalchemy
    from purposeguard.integrations.asgi import PurposeGuardMiddleware, route_purpose

__all__ = ["PurposeGuardMiddleware", "pg_http_client", "pg_httpx", "pg_sqlalchemy", "route_purpose"]
