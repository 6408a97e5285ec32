"""One replica of a service that many replicas share a PostgreSQL with.

    python examples/replica_service.py postgresql://USER:PASSWORD@HOST:PORT/DB [PORT]

Start it several times (each on its own port) against the same database:

    curl 127.0.0.1:8001/improve/contoso           # 403: improvement needs contoso's consent
    curl -X POST '127.0.0.1:8002/consent/contoso?action=grant'
    curl 127.0.0.1:8001/improve/contoso           # 200 on every replica within a second
    purposeguard audit verify postgresql://...    # one chain, every replica's records

Every replica writes its violations to the same audit chain and sees every
consent change through the database's notifications; the guarded route
itself does no I/O. Needs ``pip install 'purposeguard[postgres]' starlette uvicorn``.
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import purposeguard as pg
from purposeguard import audit
from purposeguard.consent import ConsentStore

DATABASE = sys.argv[1] if len(sys.argv) > 1 else "replicas.db"
MAIL = "Quarterly numbers attached, call me"

store = ConsentStore(DATABASE)
pg.configure("trust-center", mode="enforce", audit=DATABASE, consents=store)


@pg.purpose("improvement")
def learn_from(body: str) -> int:
    """Improve the service from a tenant's mail: allowed only with its consent."""
    return len(body)


async def improve(request: Request) -> JSONResponse:
    tenant = request.path_params["tenant"]
    with pg.zone(tenant=tenant):
        body = pg.label(MAIL, "customer_data.content.email", tenant=tenant)
        try:
            learn_from(body)
        except pg.PurposeViolation as refused:
            return JSONResponse({"allowed": False, "rule": refused.violations[0].rule}, status_code=403)
    return JSONResponse({"allowed": True})


def consent(request: Request) -> JSONResponse:
    # A plain def: Starlette runs it in a thread, so the database write
    # never blocks the event loop that serves the guarded route.
    tenant = request.path_params["tenant"]
    action = request.query_params.get("action")
    if action == "grant":
        store.grant(tenant, "improvement", ["customer_data"], granted_by=f"admin@{tenant}")
    elif action == "revoke":
        store.revoke(tenant, "improvement", revoked_by=f"admin@{tenant}")
    else:
        return JSONResponse({"error": "action is grant or revoke"}, status_code=400)
    return JSONResponse({"tenant": tenant, "action": action})


def flush(request: Request) -> JSONResponse:
    sink = audit.attached()
    if sink is not None:
        sink.flush()
    return JSONResponse({"written": sink.written if sink is not None else 0})


app = Starlette(
    routes=[
        Route("/improve/{tenant}", improve),
        Route("/consent/{tenant}", consent, methods=["POST"]),
        Route("/audit/flush", flush, methods=["POST"]),
    ]
)

if __name__ == "__main__":
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 8000
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
