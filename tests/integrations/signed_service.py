"""A service that reads purposeguard's baggage, run as its own process for the
signed-baggage tests: ``python signed_service.py asgi|wsgi PORT AUDIT_PATH``.

Keys come from ``PURPOSEGUARD_BAGGAGE_KEYS``; zone flows are enforced, every
record goes to the audit log at ``AUDIT_PATH``, and warnings of the
``purposeguard`` logger go to stderr one per line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import purposeguard as pg

KIND, PORT, AUDIT = sys.argv[1], int(sys.argv[2]), sys.argv[3]
logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s", stream=sys.stderr)
pg.configure("trust-center", context_mode="enforce", audit=AUDIT)
SEEN: list[pg.Violation] = []
pg.on_violation(SEEN.append)


def state() -> dict[str, Any]:
    zone = pg.current_zone()
    return {
        "purpose": pg.current_purpose(),
        "tenant": pg.current_tenant(),
        "zone": sorted(zone.categories) if zone is not None else None,
    }


def violations() -> dict[str, Any]:
    return {"count": len(SEEN), "tenants": sorted({str(v.tenant) for v in SEEN})}


if KIND == "asgi":
    import uvicorn
    from purposeguard.integrations.asgi import PurposeGuardMiddleware, route_purpose
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def inspect(request: Request) -> JSONResponse:
        return JSONResponse(state())

    @route_purpose("service.communications")
    async def comms(request: Request) -> JSONResponse:
        return JSONResponse(state())

    async def seen(request: Request) -> JSONResponse:
        return JSONResponse(violations())

    app = Starlette(routes=[Route("/inspect", inspect), Route("/comms", comms), Route("/violations", seen)])
    app.add_middleware(PurposeGuardMiddleware)
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning", access_log=False, ws="none")
else:
    from flask import Flask, jsonify
    from purposeguard.integrations.wsgi import init_app, route_purpose
    from werkzeug.serving import make_server

    flask_app = Flask("signed-service")

    @flask_app.get("/inspect")
    def flask_inspect() -> Any:
        return jsonify(state())

    @flask_app.get("/comms")
    @route_purpose("service.communications")
    def flask_comms() -> Any:
        return jsonify(state())

    @flask_app.get("/violations")
    def flask_seen() -> Any:
        return jsonify(violations())

    init_app(flask_app)
    make_server("127.0.0.1", PORT, flask_app, threaded=True).serve_forever()
