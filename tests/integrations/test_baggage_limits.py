"""W3C Baggage's limits (8192 bytes and 180 members a header, 4096 bytes a
member), over real servers on loopback: purposeguard's signed members are
never the ones a hop keeping to the limits cuts, and a header past them is
still read, not dropped (dropping it would lose the caller's categories)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import requests
from flask import Flask, jsonify
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from purposeguard.integrations import baggage
from purposeguard.integrations import requests as pg_requests
from purposeguard.integrations.asgi import PurposeGuardMiddleware, route_purpose
from purposeguard.integrations.wsgi import init_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import purposeguard as pg

from .conftest import Signer

CONTENT = "customer_data.content.email"
# Other services' baggage that, with purposeguard's members after it, passes 8192 bytes.
OTHERS = ",".join(f"vendor{i}=" + "y" * 1010 for i in range(8))


@pytest.fixture(autouse=True)
def instrumented() -> Iterator[None]:
    pg_requests.instrument()
    yield
    pg_requests.uninstrument()


def _communications_services(serve_asgi: Callable[[Any], Any], serve_wsgi: Callable[[Any], Any]) -> list[Any]:
    """A Starlette and a Flask service whose /comms route serves service
    communications, which may not see content."""

    @route_purpose("service.communications")
    async def asgi_comms(request: Request) -> JSONResponse:
        return JSONResponse({})

    asgi_app = Starlette(routes=[Route("/comms", asgi_comms)])
    asgi_app.add_middleware(PurposeGuardMiddleware)
    flask_app = Flask("limits")

    @flask_app.get("/comms")
    @route_purpose("service.communications")
    def flask_comms() -> Any:
        return jsonify({})

    init_app(flask_app)
    return [serve_asgi(asgi_app), serve_wsgi(flask_app)]


def test_other_baggage_near_the_limit_never_cuts_the_signature(
    signed: Signer, serve_asgi: Callable[[Any], Any], serve_wsgi: Callable[[Any], Any]
) -> None:
    """Other members first and purposeguard's after them, a header trimmed
    to 8192 bytes lost the signature: the receiver then read no zone and
    served content to a purpose that may not see it."""
    pg.configure("trust-center", context_mode="enforce")
    for server in _communications_services(serve_asgi, serve_wsgi):
        with pg.zone(tenant="acme"):
            pg.label("a customer's mail", CONTENT)
            response = requests.get(server.url + "/comms", headers={"baggage": OTHERS}, timeout=10)
        assert response.status_code == 403, server
        assert response.json()["category"] == CONTENT


def test_the_header_sent_keeps_the_limits_with_purposeguards_members_first(signed: Signer) -> None:
    pg.configure("trust-center")
    with pg.zone(tenant="acme"):
        pg.label("a customer's mail", CONTENT)
        header = baggage.header_value(OTHERS)
    assert header is not None and len(header) <= baggage.MAX_HEADER
    members = header.split(",")
    assert [m.split("=", 1)[0] for m in members[:3]] == [
        baggage.TENANT_KEY,
        baggage.ZONE_KEY,
        baggage.SIG_KEY,
    ]
    assert all(m.startswith("vendor") for m in members[3:]) and len(members) > 3
    incoming = baggage.parse(header)
    assert incoming.categories == {CONTENT} and incoming.tenant == "acme"


def _long_keys_policy() -> tuple[pg.Policy, list[str]]:
    """64 categories of 62 characters: their list is within 4096 characters,
    its percent-encoded member (every comma as ``%2C``) is not."""
    keys = [f"customer_data.content.{'k' * 37}_{i:02d}" for i in range(64)]
    assert all(len(key) == 62 for key in keys)
    lines = "\n".join(f'"{key}" = "a long key"' for key in keys)
    text = f"""
[policy]
name = "long-keys"
default = "deny"

[taxonomy.categories]
{lines}

[[rules]]
id = "operate"
categories = ["customer_data"]
purposes = ["service.operations"]
effect = "allow"
"""
    return pg.Policy.from_toml(text, source="long-keys"), keys


def test_a_zone_of_long_keys_survives_a_hop_that_keeps_the_limits(signed: Signer) -> None:
    """A hop built on OpenTelemetry's propagator (extract, then inject)
    drops a member longer than 4096 bytes, and the signature with it."""
    policy, keys = _long_keys_policy()
    pg.configure(policy)
    with pg.zone(tenant="acme"):
        for key in keys:
            pg.label("x", key)
        header = baggage.header_value()
    assert header is not None
    assert all(len(member) <= baggage.MAX_MEMBER for member in header.split(","))
    propagator = W3CBaggagePropagator()
    relayed: dict[str, str] = {}
    propagator.inject(
        relayed, context=propagator.extract({"baggage": header}, context=otel_context.Context())
    )
    incoming = baggage.parse(relayed["baggage"])
    # Over-approximated by their parent's subtree, never dropped.
    assert incoming.warnings == () and incoming.categories >= set(keys)


def test_a_signed_header_past_the_limit_is_read_and_not_said_to_be_ignored(
    signed: Signer,
    serve_asgi: Callable[[Any], Any],
    serve_wsgi: Callable[[Any], Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A peer's header past 8192 bytes (another hop added to it) is read:
    its signature vouches for its members, and dropping them would serve the
    caller's content to a purpose that may not see it. Said once, as what
    happened, never as baggage ignored."""
    pg.configure("trust-center", context_mode="enforce")
    header = signed(zone=CONTENT) + "," + OTHERS + ",vendor-late=" + "z" * 1000
    assert len(header) > baggage.MAX_HEADER
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        for server in _communications_services(serve_asgi, serve_wsgi):
            for _ in range(2):
                response = httpx.get(server.url + "/comms", headers={"baggage": header}, timeout=10)
                assert response.status_code == 403, server
    said = [
        r.getMessage() for r in caplog.records if r.name == "purposeguard" and "baggage" in r.getMessage()
    ]
    assert not [message for message in said if "ignored" in message], said
    assert len([message for message in said if "longer than 8192 bytes" in message]) == 1, said
