"""What changes a request after it was checked, what is sent beside it, and
what a client library encodes before any request sees it:
an aiohttp client middleware that moves a request, adds a header or
replaces the body; urllib3's other public entry points; a data-free call a
hook sends while a labelled one is in flight. Against a real server on
loopback, where ``localhost`` is an advertising destination."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import aiohttp
import aiohttp.payload
import httpx
import pytest
import requests
import urllib3
from purposeguard.integrations import aiohttp as pg_aiohttp
from purposeguard.integrations import requests as pg_requests
from purposeguard.integrations import urllib3 as pg_urllib3

import purposeguard as pg

CONTENT = "customer_data.content.email"

Middleware = Callable[[aiohttp.ClientRequest, Any], Awaitable[aiohttp.ClientResponse]]


@pytest.fixture(autouse=True)
def instrumented(loopback_policy: pg.Policy) -> Iterator[None]:
    pg.configure(loopback_policy)
    for module in (pg_aiohttp, pg_requests, pg_urllib3):
        module.instrument()
    yield
    for module in (pg_aiohttp, pg_requests, pg_urllib3):
        module.uninstrument()


def _leaked(recorder: Any, marker: str) -> bool:
    return any(
        marker.encode() in r.body or marker in r.path or marker in str(r.headers) for r in recorder.received
    )


def _post_through(middleware: Middleware, url: str, **kwargs: Any) -> int:
    async def go() -> int:
        async with aiohttp.ClientSession(middlewares=(middleware,)) as session:
            async with session.post(url, **kwargs) as response:
                await response.read()
                return response.status

    return asyncio.run(go())


def test_a_middleware_that_moves_a_checked_request_to_a_destination_is_refused(
    recorder: Any, marker: str
) -> None:
    body = pg.label(marker, CONTENT)

    async def failover(request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        request.url = request.url.with_host("localhost")
        request.update_host(request.url)
        return await handler(request)

    # Content may go to the service's own host under service.operations;
    # the middleware sends it to the advertising destination instead.
    with pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation) as caught:
        _post_through(failover, recorder.url() + "/api", json={"body": body})
    assert {(v.purpose, v.via) for v in caught.value.violations} == {("advertising", "egress")}
    assert not _leaked(recorder, marker) and recorder.received == []


@pytest.mark.parametrize("change", ["header", "body"])
def test_a_middleware_that_adds_labelled_data_is_refused(recorder: Any, marker: str, change: str) -> None:
    value = pg.label(marker, CONTENT)

    async def adding(request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        if change == "header":
            request.headers["X-Note"] = value
        else:
            await request.update_body(value.encode())
        return await handler(request)

    with pg.purpose("advertising"), pytest.raises(pg.PurposeViolation) as caught:
        _post_through(adding, recorder.url() + "/api", data=b"")
    assert [(v.category, v.via) for v in caught.value.violations] == [(CONTENT, "egress")]
    assert not _leaked(recorder, marker)


def test_a_data_free_call_a_middleware_sends_is_judged_by_what_it_carries(recorder: Any, marker: str) -> None:
    body = pg.label(marker, CONTENT)

    async def pinging(request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        # A side call to the advertising host while content goes to the service.
        async with aiohttp.ClientSession() as side, side.get(recorder.url("localhost") + "/ping") as ping:
            await ping.read()
        return await handler(request)

    with pg.testing.assert_no_violations(), pg.purpose("service.operations"):
        assert _post_through(pinging, recorder.url() + "/api", json={"body": body}) == 200
    assert sorted(r.path for r in recorder.received) == ["/api", "/ping"]


def test_a_request_a_response_hook_prepares_is_judged_by_what_it_carries(recorder: Any, marker: str) -> None:
    sent: list[int] = []

    def audit_ping(response: requests.Response, **kwargs: Any) -> None:
        with requests.Session() as side:
            prepared = requests.Request("GET", recorder.url("localhost") + "/ping").prepare()
            sent.append(side.send(prepared, timeout=10).status_code)

    with pg.testing.assert_no_violations(), pg.purpose("service.operations"):
        response = requests.post(
            recorder.url() + "/api",
            json={"body": pg.label(marker, CONTENT)},
            hooks={"response": audit_ping},
            timeout=10,
        )
    assert response.status_code == 200 and sent == [200]


@pytest.mark.parametrize("entry", ["PoolManager.urlopen", "request_encode_url", "request_encode_body"])
def test_urllib3_s_other_public_entry_points_are_checked(recorder: Any, marker: str, entry: str) -> None:
    value = pg.label(marker, CONTENT)
    manager = urllib3.PoolManager()
    calls: dict[str, Callable[[], Any]] = {
        "PoolManager.urlopen": lambda: manager.urlopen("GET", recorder.url() + "/q/" + value),
        "request_encode_url": lambda: manager.request_encode_url(
            "GET", recorder.url() + "/q", fields={"q": value}
        ),
        "request_encode_body": lambda: manager.request_encode_body(
            "POST", recorder.url() + "/q", fields={"q": value}, encode_multipart=False
        ),
    }
    with pg.purpose("advertising"), pytest.raises(pg.PurposeViolation) as caught:
        calls[entry]()
    assert [(v.category, v.via) for v in caught.value.violations] == [(CONTENT, "egress")]
    assert not _leaked(recorder, marker)
    # The same calls with plain values go through.
    with pg.testing.assert_no_violations(), pg.purpose("advertising"):
        assert manager.request_encode_url("GET", recorder.url() + "/q", fields={"q": "plain"}).status == 200


def test_httpx_s_own_log_line_of_a_labelled_url_is_redacted(recorder: Any, marker: str) -> None:
    # httpx logs each request's URL at INFO ("HTTP Request: GET ..."): an
    # allowed request with content in its URL must not write it to the logs.
    from purposeguard.integrations import httpx as pg_httpx
    from purposeguard.integrations import logging as pg_logging

    pg_httpx.instrument()
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    keep = Keep()
    httpx_logger = logging.getLogger("httpx")
    httpx_logger.addHandler(keep)
    level = httpx_logger.level
    httpx_logger.setLevel(logging.INFO)
    guard = pg_logging.setup()
    try:
        with pg.purpose("service.operations"):
            assert (
                httpx.get(recorder.url() + "/q/" + pg.label(marker, CONTENT), timeout=10).status_code == 200
            )
            assert httpx.get(recorder.url() + "/plain", timeout=10).status_code == 200
    finally:
        pg_logging.teardown(guard)
        httpx_logger.removeHandler(keep)
        httpx_logger.setLevel(level)
        pg_httpx.uninstrument()
    assert len(lines) == 2 and not any(marker in line for line in lines)
    assert "redacted" in lines[0] and "/plain" in lines[1]


# -- what aiohttp encodes before any request sees it ---------------------------------------------


def _aiohttp_body(make: Callable[[str], Any]) -> Callable[[str, str], Coroutine[Any, Any, int]]:
    async def post(url: str, value: str) -> int:
        async with aiohttp.ClientSession() as session, session.post(url, data=make(value)) as response:
            return response.status

    return post


def _multipart(append: str) -> Callable[[str], Any]:
    def make(value: str) -> Any:
        writer = aiohttp.MultipartWriter("form-data")
        if append == "json":
            writer.append_json({"body": value})
        else:
            writer.append_form([("body", value)])
        return writer

    return make


AIOHTTP_ENCODED: dict[str, Callable[[str, str], Coroutine[Any, Any, int]]] = {
    "JsonPayload": _aiohttp_body(lambda value: aiohttp.payload.JsonPayload({"body": value})),
    "StringPayload": _aiohttp_body(lambda value: aiohttp.payload.StringPayload(value)),
    "MultipartWriter.append_json": _aiohttp_body(_multipart("json")),
    "MultipartWriter.append_form": _aiohttp_body(_multipart("form")),
}


async def _with_authorization(url: str, value: str, header: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={"Authorization": header}) as response,
    ):
        return response.status


@pytest.mark.parametrize("shape", [*AIOHTTP_ENCODED, "encode_basic_auth", "BasicAuth.encode"])
def test_what_aiohttp_encodes_carries_the_labels_of_what_it_encoded(
    recorder: Any, marker: str, shape: str
) -> None:
    value = pg.label(marker, CONTENT)
    url = recorder.url() + "/api"
    if shape == "encode_basic_auth":
        # What aiohttp's deprecation of auth= recommends instead.
        call = _with_authorization(url, value, aiohttp.encode_basic_auth("user", value))
    elif shape == "BasicAuth.encode":
        with pytest.warns(DeprecationWarning):
            header = aiohttp.BasicAuth("user", value).encode()
        call = _with_authorization(url, value, header)
    else:
        call = AIOHTTP_ENCODED[shape](url, value)
    with pg.purpose("advertising"), pytest.raises(pg.PurposeViolation) as caught:
        asyncio.run(call)
    assert [(v.category, v.via) for v in caught.value.violations] == [(CONTENT, "egress")]
    assert recorder.received == []
    # Plain values go through, encoded the same way.
    if shape in AIOHTTP_ENCODED:
        with pg.testing.assert_no_violations(), pg.purpose("advertising"):
            assert asyncio.run(AIOHTTP_ENCODED[shape](url, "plain words")) == 200
