"""A Flask service guarded by purposeguard.

    python examples/flask_service.py [PORT]       # serves on 127.0.0.1:PORT (5000)

    curl -H 'x-tenant: contoso' 127.0.0.1:5000/mail/1    # service.operations: 200
    curl 127.0.0.1:5000/newsletter/1                     # content in service communications: 403
    curl 127.0.0.1:5000/promote/1                        # content to the ad network: 403, nothing sent

Needs ``pip install 'purposeguard[flask,requests]'``.
"""

from __future__ import annotations

import sys

import requests
from flask import Flask, jsonify
from purposeguard.integrations import requests as pg_requests
from purposeguard.integrations.wsgi import init_app, route_purpose

import purposeguard as pg

pg.configure("trust-center")
pg_requests.instrument()  # every requests call is checked before it leaves

MAILBOX = {"1": "Quarterly numbers attached, call me"}
app = Flask(__name__)


@pg.produces("customer_data.content.email")
def read_mail(mail_id: str) -> str:
    return MAILBOX.get(mail_id, "")


@app.get("/mail/<mail_id>")
@route_purpose("service.operations")
def show(mail_id: str):  # type: ignore[no-untyped-def]
    return jsonify(tenant=pg.current_tenant(), preview=read_mail(mail_id)[:9])


@app.get("/newsletter/<mail_id>")
def newsletter(mail_id: str):  # type: ignore[no-untyped-def]
    pg.check(read_mail(mail_id))  # the route serves service.communications: content is refused
    return jsonify(sent=True)


@app.get("/promote/<mail_id>")
@route_purpose("service.operations")
def promote(mail_id: str):  # type: ignore[no-untyped-def]
    # ads.example.net is the pack's advertising destination: refused here.
    requests.post("https://ads.example.net/profile", json={"text": read_mail(mail_id)}, timeout=5)
    return jsonify(sent=True)


# x-tenant names the tenant only because this example trusts it: run it behind a gateway that
# authenticates callers and sets the header (or pass tenant_from= with your own authentication).
init_app(app, tenant_header="x-tenant", purposes={"/newsletter/*": "service.communications"})

if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    app.run(host="127.0.0.1", port=port)
