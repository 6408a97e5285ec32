"""Service B of the two-service test, run as its own process:
``python service_b.py PORT AD_URL``. Its policy names ``localhost`` as an
advertising destination and enforces zone (context) flows."""

from __future__ import annotations

import sys
from importlib import resources

import httpx
import uvicorn
from purposeguard.integrations import httpx as pg_httpx
from purposeguard.integrations.asgi import PurposeGuardMiddleware, route_purpose
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import purposeguard as pg

PORT, AD_URL = int(sys.argv[1]), sys.argv[2]

text = resources.files("purposeguard.packs").joinpath("trust-center.toml").read_text(encoding="utf-8")
text += '\n[[destinations]]\nid = "loopback-ads"\nhosts = ["localhost"]\npurpose = "advertising"\n'
pg.configure(pg.Policy.from_toml(text, source="service-b"), context_mode="enforce")
pg_httpx.instrument()


@route_purpose("service.operations")
async def inspect(request: Request) -> JSONResponse:
    state = pg.current_zone()
    return JSONResponse(
        {
            "purpose": pg.current_purpose(),
            "tenant": pg.current_tenant(),
            "zone": sorted(state.categories) if state is not None else None,
        }
    )


@route_purpose("service.operations")
async def advertise(request: Request) -> JSONResponse:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(AD_URL, json={"campaign": "spring"})
    return JSONResponse({"ads": response.status_code})


app = Starlette(routes=[Route("/inspect", inspect), Route("/advertise", advertise)])
app.add_middleware(PurposeGuardMiddleware, tenant_header="x-tenant")

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning", access_log=False, ws="none")
