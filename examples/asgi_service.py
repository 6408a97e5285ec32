"""A Starlette service guarded by purposeguard.

    python examples/asgi_service.py [PORT]        # serves on 127.0.0.1:PORT (8000)

    curl -H 'x-tenant: contoso' 127.0.0.1:8000/mail/1    # service.operations: 200
    curl 127.0.0.1:8000/newsletter/1                     # content in service communications: 403
    curl 127.0.0.1:8000/promote/1                        # content to the ad network: 403, nothing sent

Needs ``pip install 'purposeguard[asgi,httpx]' uvicorn``.
"""

from __future__ import annotations

import sys

import httpx
import uvicorn
from purposeguard.integrations import httpx as pg_httpx
from purposeguard.integrations.asgi import PurposeGuardMiddleware, route_purpose
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import purposeguard as pg

pg.configure("trust-center")
pg_httpx.instrument()  # every httpx request is checked before it leaves

MAILBOX = {"1": "Quarterly numbers attached, call me"}


@pg.produces("customer_data.content.email")
def read_mail(mail_id: str) -> str:
    return MAILBOX.get(mail_id, "")


@route_purpose("service.operations")
async def show(request: Request) -> JSONResponse:
    body = read_mail(request.path_params["mail_id"])
    return JSONResponse({"tenant": pg.current_tenant(), "preview": body[:9]})


async def newsletter(request: Request) -> JSONResponse:
    body = read_mail(request.path_params["mail_id"])
    pg.check(body)  # the route serves service.communications: content is refused
    return JSONResponse({"sent": True})


@route_purpose("service.operations")
async def promote(request: Request) -> JSONResponse:
    body = read_mail(request.path_params["mail_id"])
    async with httpx.AsyncClient() as client:
        # ads.example.net is the pack's advertising destination: refused here.
        await client.post("https://ads.example.net/profile", json={"text": body})
    return JSONResponse({"sent": True})


app = Starlette(
    routes=[
        Route("/mail/{mail_id}", show),
        Route("/newsletter/{mail_id}", newsletter),
        Route("/promote/{mail_id}", promote),
    ]
)
# x-tenant names the tenant only because this example trusts it: run it behind a gateway that
# authenticates callers and sets the header (or pass tenant_from= with your own authentication).
app.add_middleware(
    PurposeGuardMiddleware,
    tenant_header="x-tenant",
    purposes={"/newsletter/{mail_id}": "service.communications"},
)

if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
