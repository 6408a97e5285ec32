"""Whose data leaves, and how much of the zone travels, over real HTTP on loopback.

One tenant's consent never covers another tenant's data: not at an exit
(the tenant of what is sent joins the zone's), and not downstream (a zone
holding several tenants' data says so in its signed baggage, and the
receiving zone is one no consent covers). A zone too large for the baggage
limits is over-approximated by whole subtrees, never dropped."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote_plus

import pytest
import requests
import urllib3
from purposeguard.integrations import baggage
from purposeguard.integrations import http_client as pg_http_client
from purposeguard.integrations import requests as pg_requests
from purposeguard.integrations import urllib3 as pg_urllib3
from purposeguard.integrations.wsgi import PurposeGuardMiddleware

import purposeguard as pg
from purposeguard._context import MIXED_TENANT
from purposeguard.consent import ConsentStore

from .conftest import RecordingServer, Signer

CONTENT = "customer_data.content.email"


@pytest.fixture(autouse=True)
def guards() -> Iterator[None]:
    for module in (pg_requests, pg_urllib3, pg_http_client):
        module.instrument()
    yield
    for module in (pg_requests, pg_urllib3, pg_http_client):
        module.uninstrument()


def _post_with(client: str, url: str, body: Any) -> None:
    if client == "requests":
        requests.post(url, data=body, timeout=10)
    elif client == "urllib3":
        urllib3.PoolManager().request("POST", url, body=body)
    else:
        urllib.request.urlopen(urllib.request.Request(url, data=body.encode(), method="POST"), timeout=10)


# -- 1. the tenant of what is sent, at the exit ----------------------------------------------------


@pytest.mark.parametrize("client", ["requests", "urllib3", "urllib.request"])
def test_another_tenants_value_is_not_sent_on_the_zone_tenants_consent(
    consents: ConsentStore, recorder: RecordingServer, client: str, marker: str
) -> None:
    # Read before the zone opened (a cache, an earlier job): the zone never learnt of it.
    globex_body = pg.label(marker, CONTENT, tenant="globex")
    with pg.zone(tenant="acme"), pg.purpose("improvement"):
        with pytest.raises(pg.PurposeViolation) as refused:
            _post_with(client, recorder.url() + "/train", globex_body)
    assert recorder.received == []
    assert {v.tenant for v in refused.value.violations} == {MIXED_TENANT}
    assert marker not in str(refused.value)


@pytest.mark.parametrize("client", ["requests", "urllib3", "urllib.request"])
def test_the_zone_tenants_own_value_is_sent_on_its_consent(
    consents: ConsentStore, recorder: RecordingServer, client: str
) -> None:
    acme_body = pg.label("acme's own mail", CONTENT, tenant="acme")
    with pg.zone(tenant="acme"), pg.purpose("improvement"):
        _post_with(client, recorder.url() + "/train", acme_body)
    assert [r.body for r in recorder.received] == [b"acme's own mail"]


def test_a_value_sent_outside_any_zone_is_decided_with_no_ones_consent_but_its_own(
    consents: ConsentStore, recorder: RecordingServer
) -> None:
    with pg.purpose("improvement"):
        with pytest.raises(pg.PurposeViolation):
            requests.post(recorder.url() + "/train", data=pg.label("x", CONTENT, tenant="globex"), timeout=10)
    assert recorder.received == []


# -- 2. several tenants' data, downstream ------------------------------------------------------


def _downstream(seen: dict[str, Any], name_tenant: str | None = None) -> Any:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if name_tenant is not None:
            pg.set_tenant(name_tenant)  # the app names the caller it authenticated
        seen["tenant"] = pg.current_tenant()
        try:
            with pg.purpose("improvement"):
                pg.check("plain text")  # only the zone speaks
            seen["improvement"] = "allowed"
        except pg.PurposeViolation as error:
            seen["improvement"] = "refused"
            seen["tenants"] = sorted({str(v.tenant) for v in error.violations})
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    return PurposeGuardMiddleware(app)


def test_a_zone_holding_another_tenants_data_does_not_become_one_tenant_downstream(
    consents: ConsentStore, signed: Signer, serve_wsgi: Callable[[Any], Any]
) -> None:
    seen: dict[str, Any] = {}
    server = serve_wsgi(_downstream(seen))
    with pg.zone(tenant="acme"):
        globex = pg.label("globex private mail", CONTENT, tenant="globex")
        with pg.purpose("service.operations"):
            response = requests.post(server.url + "/ingest", data=f"copy: {globex}", timeout=10)
    assert response.status_code == 200
    sent = baggage.parse(response.request.headers["baggage"])
    assert (sent.tenant, sent.several_tenants) == (None, True)
    # Decided with no one tenant's consent (the HTTP middleware opens the zone
    # without a tenant; the job receivers also mark it, see mark_zone).
    assert (seen["tenant"], seen["improvement"]) == (None, "refused")
    assert "acme" not in seen["tenants"]


def _asgi_downstream(seen: dict[str, Any], name_tenant: str) -> Any:
    from purposeguard.integrations.asgi import PurposeGuardMiddleware as AsgiMiddleware
    from purposeguard.integrations.asgi import Receive, Scope, Send

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        pg.set_tenant(name_tenant)
        seen["tenant"] = pg.current_tenant()
        try:
            with pg.purpose("improvement"):
                pg.check("plain text")
            seen["improvement"] = "allowed"
        except pg.PurposeViolation:
            seen["improvement"] = "refused"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    return AsgiMiddleware(app)


@pytest.mark.parametrize("server_kind", ["wsgi", "asgi"])
def test_a_tenant_named_downstream_does_not_cover_several_tenants_data(
    consents: ConsentStore, signed: Signer, request: pytest.FixtureRequest, server_kind: str
) -> None:
    """The receiving middlewares mark the zone they open for several tenants'
    data: the app naming its caller (acme, who consented) afterwards does not
    make acme's consent cover globex's data that arrived with the call."""
    seen: dict[str, Any] = {}
    if server_kind == "wsgi":
        server = request.getfixturevalue("serve_wsgi")(_downstream(seen, name_tenant="acme"))
    else:
        server = request.getfixturevalue("serve_asgi")(_asgi_downstream(seen, "acme"))
    with pg.zone(tenant="acme"):
        globex = pg.label("globex private mail", CONTENT, tenant="globex")
        with pg.purpose("service.operations"):
            response = requests.post(server.url + "/ingest", data=f"copy: {globex}", timeout=10)
    assert response.status_code == 200
    assert (seen["tenant"], seen["improvement"]) == ("acme", "refused")


def test_one_tenants_zone_still_travels_as_that_tenant(
    consents: ConsentStore, signed: Signer, serve_wsgi: Callable[[Any], Any]
) -> None:
    seen: dict[str, Any] = {}
    server = serve_wsgi(_downstream(seen))
    with pg.zone(tenant="acme"):
        acme = pg.label("acme mail", CONTENT, tenant="acme")
        with pg.purpose("service.operations"):
            requests.post(server.url + "/ingest", data=f"copy: {acme}", timeout=10)
    assert seen == {"tenant": "acme", "improvement": "allowed"}


def test_the_marker_is_never_read_as_a_tenant_name(consents: ConsentStore, signed: Signer) -> None:
    incoming = baggage.parse(signed(tenant=MIXED_TENANT, zone=CONTENT))
    assert (incoming.tenant, incoming.several_tenants, incoming.categories) == (None, True, {CONTENT})
    # A receiver marks the zone it opens: a tenant named afterwards does not cover what arrived.
    with pg.zone(categories=incoming.categories) as state:
        baggage.mark_zone(state, incoming)
        pg.set_tenant("acme")
        assert pg.current_tenant() == "acme"
        with pytest.raises(pg.PurposeViolation) as refused, pg.purpose("improvement"):
            pg.check("plain text")
    assert {v.tenant for v in refused.value.violations} == {MIXED_TENANT}
    # The same header from a sender naming one tenant: that tenant's consent covers it.
    with pg.zone(tenant="acme", categories=[CONTENT]), pg.purpose("improvement"):
        pg.check("plain text")


def test_headers_of_the_earlier_layout_still_verify(signed: Signer) -> None:
    header = signed(purpose="service.operations", tenant="acme", zone=CONTENT)
    incoming = baggage.parse(header)
    assert (incoming.purpose, incoming.tenant, incoming.several_tenants, incoming.categories) == (
        "service.operations",
        "acme",
        False,
        {CONTENT},
    )


# -- 3. zones larger than the baggage limits ----------------------------------------------------

FIDES_POLICY = """
[policy]
name = "fides-subtrees"
taxonomy = "fideslang"
default = "deny"
context_mode = "enforce"

[[rules]]
id = "user-for-the-service"
categories = ["user"]
purposes = ["essential"]
effect = "allow"

[[rules]]
id = "no-street-addresses"
categories = ["user.contact.address.street"]
purposes = ["essential"]
effect = "deny"
"""


@pytest.fixture
def fides() -> pg.Policy:
    policy = pg.Policy.from_toml(FIDES_POLICY)
    pg.configure(policy, mode="enforce", context_mode="enforce")
    return policy


def _user_categories(policy: pg.Policy) -> list[str]:
    return sorted(c for c in policy.taxonomy.categories if c.startswith("user."))


def test_a_zone_over_the_limit_arrives_as_a_superset_never_empty(fides: pg.Policy, signed: Signer) -> None:
    labelled = _user_categories(fides)[:70]
    assert len(labelled) > baggage.MAX_ZONE_CATEGORIES
    with pg.zone(tenant="acme"):
        for category in labelled:
            pg.label("x", category)
        header = baggage.header_value()
    assert header is not None
    incoming = baggage.parse(header)
    assert incoming.warnings == ()
    assert incoming.categories >= set(labelled)
    # Within what a receiver of an earlier version reads (it drops a longer list whole).
    members = dict(member.split("=", 1) for member in header.split(","))
    written = unquote_plus(members[baggage.ZONE_KEY])
    assert len(written.split(",")) <= baggage.MAX_ZONE_CATEGORIES and len(written) <= baggage.MAX_ZONE


def test_a_collapsed_zone_keeps_a_childs_denial_downstream(
    fides: pg.Policy, signed: Signer, serve_wsgi: Callable[[Any], Any]
) -> None:
    """A rule on a parent may allow what a rule on a child denies: the subtree
    travels, so the denied child is still in the receiving zone."""
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        zone = pg.current_zone()
        seen["street"] = zone is not None and "user.contact.address.street" in zone.categories
        try:
            with pg.purpose("essential.service"):
                pg.check("plain text")
            seen["service"] = "allowed"
        except pg.PurposeViolation as error:
            seen["service"] = sorted({v.rule for v in error.violations})
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    server = serve_wsgi(PurposeGuardMiddleware(app))
    labelled = _user_categories(fides)[:70]
    assert "user.contact.address.street" in labelled
    with pg.zone(tenant="acme"):
        for category in labelled:
            pg.label("x", category)
        requests.get(server.url + "/", timeout=10)  # no purpose current here: only downstream decides
    assert seen == {"street": True, "service": ["no-street-addresses"]}


def test_a_signed_list_longer_than_this_version_sends_is_read_whole(fides: pg.Policy, signed: Signer) -> None:
    labelled = _user_categories(fides)[:70]
    incoming = baggage.parse(signed(tenant="acme", zone=labelled))
    assert incoming.categories == set(labelled)
    assert incoming.tenant == "acme"


def test_subtrees_and_everything_expand_on_the_receiver(fides: pg.Policy, signed: Signer) -> None:
    address = {c for c in fides.taxonomy.categories if c.startswith("user.contact.address")}
    header = signed(zone=["user.contact.address.*", "user.name"])
    assert baggage.parse(header).categories == address | {"user.name"}
    assert baggage.parse(signed(zone=["*"])).categories == set(fides.taxonomy.categories)
    unknown = baggage.parse(signed(zone=["user.nothing_here.*", "user.name"]))
    assert unknown.categories == {"user.name"} and unknown.warnings


def test_collapsing_stays_within_both_limits(fides: pg.Policy) -> None:
    every = frozenset(fides.taxonomy.categories)
    value = baggage.zone_value(every)
    assert value is not None
    entries = value.split(",")
    assert len(entries) <= baggage.MAX_ZONE_CATEGORIES and len(value) <= baggage.MAX_ZONE
    assert baggage.zone_value(frozenset({CONTENT})) == CONTENT  # small zones travel as they are


def test_json_bodies_keep_their_tenant_too(consents: ConsentStore, recorder: RecordingServer) -> None:
    document = {"mail": pg.label("globex mail", CONTENT, tenant="globex")}
    with pg.zone(tenant="acme"), pg.purpose("improvement"), pytest.raises(pg.PurposeViolation):
        requests.post(recorder.url() + "/train", json=document, timeout=10)
    with pg.zone(tenant="acme"), pg.purpose("improvement"), pytest.raises(pg.PurposeViolation):
        urllib3.PoolManager().request("POST", recorder.url() + "/train", json=document)
    assert recorder.received == []
