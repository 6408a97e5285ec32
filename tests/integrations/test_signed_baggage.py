"""Signed baggage between real services on loopback.

Service A runs here (uvicorn in a thread) and calls service B with httpx and
with requests; B runs in a process of its own, once as a Starlette app under
uvicorn and once as a Flask app under werkzeug, holding two baggage keys (a
rotation in progress). Purpose, tenant and zone reach B only signed; a client
that forges, alters or replays any member gains nothing and leaves no record.
Celery across processes: tests/distributed/test_jobs_on_redis.py."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from purposeguard.integrations import baggage
from purposeguard.integrations import httpx as pg_httpx
from purposeguard.integrations import requests as pg_requests
from purposeguard.integrations.asgi import PurposeGuardMiddleware, route_purpose
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import purposeguard as pg
from purposeguard._signing import BaggageKey
from purposeguard.audit import AuditLog

from .conftest import free_port, wait_for_port

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
CONTENT = "customer_data.content.email"
OLD_KEY = "signed-baggage-old-key-6a1f0c93be5d47a2"
NEW_KEY = "signed-baggage-new-key-d83e11b07c4f9a56"
STRANGER_KEY = "signed-baggage-someone-elses-key-00112233"
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
OTHER_TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
NOTHING: dict[str, Any] = {"purpose": None, "tenant": None, "zone": []}


class ServiceB:
    def __init__(self, kind: str, folder: Path) -> None:
        self.kind = kind
        self.port = free_port()
        self.audit = folder / f"{kind}-audit.db"
        self.log = folder / f"{kind}.log"
        self.output = self.log.open("w")
        env = {**os.environ, "PURPOSEGUARD_BAGGAGE_KEYS": f"{NEW_KEY},{OLD_KEY}"}
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "signed_service.py"), kind, str(self.port), str(self.audit)],
            env=env,
            stdout=self.output,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(self.port, timeout=30)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"service B ({kind}) did not start:\n{self.log.read_text()}") from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def warnings(self) -> list[str]:
        self.output.flush()
        return [line for line in self.log.read_text().splitlines() if "purposeguard ignored baggage" in line]

    def violations(self) -> dict[str, Any]:
        return httpx.get(self.url + "/violations", timeout=10).json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.output.close()


@pytest.fixture(scope="module", params=["asgi", "wsgi"])
def service_b(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceB]:
    service = ServiceB(request.param, tmp_path_factory.mktemp(f"b-{request.param}"))
    yield service
    service.stop()


@pytest.fixture
def service_a(service_b: ServiceB, serve_asgi: Callable[[Any], Any], marker: str) -> Iterator[str]:
    """Service A: reads content for the caller's tenant, then asks B (httpx or requests)."""

    @route_purpose("service.operations")
    async def with_httpx(request: Request) -> JSONResponse:
        pg.label(marker, CONTENT)
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(service_b.url + request.path_params["path"])
        return JSONResponse({"status": response.status_code, "body": response.json()})

    @route_purpose("service.operations")
    def with_requests(request: Request) -> JSONResponse:
        pg.label(marker, CONTENT)
        response = requests.get(service_b.url + request.path_params["path"], timeout=10)
        return JSONResponse({"status": response.status_code, "body": response.json()})

    app = Starlette(
        routes=[Route("/httpx{path:path}", with_httpx), Route("/requests{path:path}", with_requests)]
    )
    app.add_middleware(PurposeGuardMiddleware, tenant_from=lambda scope: "contoso")
    pg_httpx.instrument()
    pg_requests.instrument()
    try:
        yield serve_asgi(app).url
    finally:
        pg_requests.uninstrument()
        pg_httpx.uninstrument()


def use_keys(monkeypatch: pytest.MonkeyPatch, *keys: str) -> None:
    monkeypatch.setenv("PURPOSEGUARD_BAGGAGE_KEYS", ",".join(keys))


@pytest.mark.parametrize("client", ["httpx", "requests"])
def test_purpose_tenant_and_zone_reach_b_signed(
    client: str, service_a: str, service_b: ServiceB, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_keys(monkeypatch, NEW_KEY, OLD_KEY)
    relayed = httpx.get(f"{service_a}/{client}/inspect", timeout=20).json()
    assert relayed == {
        "status": 200,
        "body": {"purpose": "service.operations", "tenant": "contoso", "zone": [CONTENT]},
    }


@pytest.mark.parametrize("client", ["httpx", "requests"])
def test_a_signed_zone_is_enforced_in_b_and_recorded_for_the_signed_tenant(
    client: str, service_a: str, service_b: ServiceB, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_keys(monkeypatch, NEW_KEY, OLD_KEY)
    before = service_b.violations()["count"]
    relayed = httpx.get(f"{service_a}/{client}/comms", timeout=20).json()
    assert relayed["status"] == 403 and relayed["body"]["via"] == "context"
    after = service_b.violations()
    assert after["count"] == before + 1 and "contoso" in after["tenants"]


@pytest.mark.parametrize(
    "a_holds",
    [(OLD_KEY,), (NEW_KEY, OLD_KEY), (NEW_KEY,)],
    ids=["A not rotated yet", "A signs with the new key", "A dropped the old key"],
)
def test_key_rotation_with_both_keys_live_in_b(
    a_holds: tuple[str, ...], service_a: str, service_b: ServiceB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B verifies with both keys while A moves from the old key to the new one."""
    use_keys(monkeypatch, *a_holds)
    relayed = httpx.get(f"{service_a}/httpx/inspect", timeout=20).json()
    assert relayed["body"]["tenant"] == "contoso" and relayed["body"]["zone"] == [CONTENT]
    signer = baggage.signed_header(tenant="t").split("purposeguard.sig=")[1].split(".")[1]
    assert signer == BaggageKey(a_holds[0]).key_id  # the first key signs


def test_a_key_b_does_not_hold_is_not_trusted(
    service_a: str, service_b: ServiceB, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_keys(monkeypatch, STRANGER_KEY)
    relayed = httpx.get(f"{service_a}/httpx/inspect", timeout=20).json()
    assert relayed == {"status": 200, "body": NOTHING}


# -- a client forging baggage ------------------------------------------------------------


def _sign(**members: Any) -> str:
    members.setdefault("key", OLD_KEY)
    return baggage.signed_header(**members)


def _altered(header: str, old: str, new: str) -> str:
    assert old in header
    return header.replace(old, new)


FORGERIES: dict[str, Callable[[], dict[str, str]]] = {
    "unsigned": lambda: {
        "baggage": f"purposeguard.purpose=service.security,purposeguard.tenant=contoso,"
        f"purposeguard.zone={CONTENT}"
    },
    "signed with a key B does not hold": lambda: {
        "baggage": _sign(purpose="service.security", tenant="contoso", categories=[CONTENT], key=STRANGER_KEY)
    },
    "tenant changed": lambda: {
        "baggage": _altered(
            _sign(tenant="fabrikam", categories=[CONTENT]), "tenant=fabrikam", "tenant=contoso"
        )
    },
    "purpose added": lambda: {
        "baggage": "purposeguard.purpose=service.security," + _sign(tenant="contoso", categories=[CONTENT])
    },
    "zone widened": lambda: {
        "baggage": _altered(_sign(tenant="contoso", categories=["customer_data"]), "customer_data", CONTENT)
    },
    "signature of another header": lambda: {
        "baggage": _sign(categories=[CONTENT]).split(",purposeguard.sig=")[0]
        + ",purposeguard.sig="
        + _sign(tenant="contoso").split("purposeguard.sig=")[1]
    },
    "member repeated": lambda: {
        "baggage": _sign(tenant="contoso", categories=[CONTENT]) + ",purposeguard.tenant=x"
    },
    "malformed signature": lambda: {"baggage": f"purposeguard.zone={CONTENT},purposeguard.sig=1.abc.def"},
    "replayed into another trace": lambda: {
        "baggage": _sign(tenant="contoso", categories=[CONTENT], traceparent=TRACE),
        "traceparent": OTHER_TRACE,
    },
    "replayed without its trace": lambda: {
        "baggage": _sign(tenant="contoso", categories=[CONTENT], traceparent=TRACE)
    },
    "replayed an hour later": lambda: {
        "baggage": _sign(tenant="contoso", categories=[CONTENT], issued=int(time.time()) - 3600)
    },
    "a task's header replayed over HTTP": lambda: {
        "baggage": _sign(
            tenant="contoso", categories=[CONTENT], channel=baggage.task_channel("celery", "t-1")
        )
    },
}


def _get(service: ServiceB, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    # http.client is not instrumented here: the forged header goes out as written.
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
def test_a_client_forging_baggage_gains_nothing_and_leaves_no_record(
    forge: Callable[[], dict[str, str]], service_b: ServiceB
) -> None:
    headers = forge()
    warned = len(service_b.warnings())
    before = service_b.violations()
    # Nothing of the forged purpose, tenant or zone is current ...
    assert _get(service_b, "/inspect", headers) == (200, NOTHING)
    # ... and the forged zone cannot make a route refuse, nor write a record.
    assert _get(service_b, "/comms", headers) == (200, {**NOTHING, "purpose": "service.communications"})
    assert service_b.violations() == before
    # One warning per request, however the header was forged.
    deadline = time.monotonic() + 5
    while len(service_b.warnings()) < warned + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(service_b.warnings()) == warned + 2


def test_the_signed_header_the_forgeries_start_from_is_accepted(service_b: ServiceB) -> None:
    """The control: without the change, the same header is read (so the forgeries above fail for the change)."""
    status, body = _get(service_b, "/inspect", {"baggage": _sign(tenant="contoso", categories=[CONTENT])})
    assert (status, body) == (200, {"purpose": None, "tenant": "contoso", "zone": [CONTENT]})
    traced = {"baggage": _sign(tenant="contoso", traceparent=TRACE), "traceparent": TRACE}
    assert _get(service_b, "/inspect", traced)[1]["tenant"] == "contoso"


def test_forgeries_left_nothing_in_bs_audit_log(service_b: ServiceB) -> None:
    """Runs after the forgeries: B's audit log holds only the records of the signed requests."""
    expected = service_b.violations()["count"]
    deadline = time.monotonic() + 10
    found = -1
    while time.monotonic() < deadline:
        with AuditLog(str(service_b.audit), readonly=True) as log:
            found = sum(1 for e in log.records() if e.kind == "violation")
        if found == expected:
            break
        time.sleep(0.1)
    assert found == expected
    with AuditLog(str(service_b.audit), readonly=True) as log:
        assert {e.data["tenant"] for e in log.records() if e.kind == "violation"} <= {"contoso"}
