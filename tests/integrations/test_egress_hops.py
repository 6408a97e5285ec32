"""Every hop, every send and every body form of an outgoing call is checked
(httpx sync and async, requests), against real servers on loopback."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests
from purposeguard.integrations import baggage
from purposeguard.integrations import httpx as pg_httpx
from purposeguard.integrations import requests as pg_requests
from purposeguard.integrations._egress import check_egress

import purposeguard as pg

from .conftest import Signer

CONTENT = "customer_data.content.email"


@pytest.fixture(autouse=True)
def instrumented(loopback_policy: pg.Policy) -> Iterator[None]:
    pg.configure(loopback_policy)
    pg_httpx.instrument()
    pg_requests.instrument()
    yield
    pg_httpx.uninstrument()
    pg_requests.uninstrument()


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def _post(client: str, url: str, **kwargs: Any) -> int:
    if client == "httpx":
        with httpx.Client(timeout=10, follow_redirects=True) as c:
            return c.post(url, **kwargs).status_code

    if client == "httpx-async":

        async def go() -> int:
            async with httpx.AsyncClient(timeout=10, follow_redirects=True) as c:
                return (await c.post(url, **kwargs)).status_code

        return int(_run(go()))
    if "content" in kwargs:
        kwargs["data"] = kwargs.pop("content")
    return requests.post(url, timeout=10, **kwargs).status_code


CLIENTS = ["httpx", "httpx-async", "requests"]


def _leaked(recorder: Any, marker: str) -> bool:
    return any(
        marker.encode() in r.body or marker in r.path or marker in str(r.headers) for r in recorder.received
    )


# -- 1. redirects ---------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_a_redirect_to_a_destination_is_checked_for_its_own_purpose(
    client: str, recorder: Any, marker: str
) -> None:
    ads = recorder.url("localhost") + "/ads"
    first = recorder.url() + "/redirect?to=" + quote(ads, safe="")
    with (
        pg.zone(tenant="contoso"),
        pg.purpose("service.operations"),
        pytest.raises(pg.PurposeViolation) as caught,
    ):
        _post(client, first, content=pg.label(marker.encode(), CONTENT))
    assert {v.purpose for v in caught.value.violations} == {"advertising"}
    # The first hop (our own loopback service) got the body; the destination nothing.
    assert [r.path for r in recorder.received] == [first[len(recorder.url()) :]]


@pytest.mark.parametrize("client", CLIENTS)
def test_no_purposeguard_baggage_reaches_a_destination_on_a_redirect_hop(
    client: str, recorder: Any, signed: Signer
) -> None:
    ads = recorder.url("localhost") + "/ads"
    first = recorder.url() + "/redirect?to=" + quote(ads, safe="")
    with pg.zone(tenant="contoso"), pg.purpose("service.operations"):
        assert _post(client, first, content=b"hello", headers={"baggage": "vendor=kept"}) == 200
    hop1, hop2 = recorder.received
    assert baggage.parse(hop1.headers["baggage"]).tenant == "contoso"
    assert hop2.path == "/ads"
    assert "purposeguard" not in hop2.headers.get("baggage", "")
    assert "vendor=kept" in hop2.headers.get("baggage", "")


# -- 2. sending one request twice ----------------------------------------------------------------


def test_an_httpx_request_sent_twice_is_checked_twice(recorder: Any, marker: str) -> None:
    ads = recorder.url("localhost") + "/ads"
    with pg.purpose("service.operations"), httpx.Client(timeout=10) as client:
        request = client.build_request("POST", ads, json={"body": pg.label(marker, CONTENT)})
        for _ in range(2):
            with pytest.raises(pg.PurposeViolation):
                client.send(request)
    assert recorder.received == []


def test_an_async_httpx_request_sent_twice_is_checked_twice(recorder: Any, marker: str) -> None:
    ads = recorder.url("localhost") + "/ads"

    async def go() -> int:
        refused = 0
        async with httpx.AsyncClient(timeout=10) as client:
            request = httpx.Request("POST", ads, content=pg.label(marker.encode(), CONTENT))
            for _ in range(2):
                try:
                    await client.send(request)
                except pg.PurposeViolation:
                    refused += 1
        return refused

    with pg.purpose("service.operations"):
        assert _run(go()) == 2
    assert recorder.received == []


def test_a_prepared_request_sent_twice_is_checked_twice(recorder: Any, marker: str) -> None:
    ads = recorder.url("localhost") + "/ads"
    prepared = requests.Request("POST", ads, json={"body": pg.label(marker, CONTENT)}).prepare()
    with pg.purpose("service.operations"), requests.Session() as session:
        for _ in range(2):
            with pytest.raises(pg.PurposeViolation):
                session.send(prepared, timeout=10)
    assert recorder.received == []


# -- 3. body forms --------------------------------------------------------------------------------


def _forms(ads: str, marker: str) -> dict[str, Callable[[], Any]]:
    def text() -> str:
        return pg.label(marker, CONTENT)

    def raw() -> bytes:
        return pg.label(marker.encode(), CONTENT)

    async def agen() -> AsyncIterator[bytes]:
        yield raw()

    async def async_send(build: Callable[[], httpx.Request]) -> None:
        async with httpx.AsyncClient(timeout=10) as c:
            await c.send(build())

    async def async_post(**kwargs: Any) -> None:
        async with httpx.AsyncClient(timeout=10) as c:
            await c.post(ads, **kwargs)

    return {
        "httpx Request(content=bytes) + send": lambda: httpx.Client().send(
            httpx.Request("POST", ads, content=raw())
        ),
        "httpx Request(json=) + send": lambda: httpx.Client().send(
            httpx.Request("POST", ads, json={"a": [text()]})
        ),
        "httpx content=iter": lambda: httpx.post(ads, content=iter([b"ok", raw()])),
        "httpx async content=async generator": lambda: _run(async_post(content=agen())),
        "httpx async Request + send": lambda: _run(
            async_send(lambda: httpx.Request("POST", ads, content=raw()))
        ),
        "requests Session.send(prepared data=dict)": lambda: requests.Session().send(
            requests.Request("POST", ads, data={"a": text()}).prepare(), timeout=10
        ),
        "requests Session.send(prepared json=)": lambda: requests.Session().send(
            requests.Request("POST", ads, json={"a": text()}).prepare(), timeout=10
        ),
        "requests data=generator": lambda: requests.post(ads, data=(c for c in [b"ok", raw()]), timeout=10),
    }


FORMS = list(_forms("", ""))


@pytest.mark.parametrize("form", FORMS)
def test_every_body_form_is_checked_before_it_leaves(form: str, recorder: Any, marker: str) -> None:
    send = _forms(recorder.url("localhost") + "/ads", marker)[form]
    with pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation) as caught:
        send()
    assert caught.value.purpose == "advertising"
    assert marker not in str(caught.value)
    assert not _leaked(recorder, marker)


@pytest.mark.parametrize(
    "form",
    ["httpx files=BytesIO", "httpx async files=BytesIO", "requests data=BytesIO", "requests files=BytesIO"],
)
def test_file_objects_whose_labels_are_lost_fall_to_the_zone_check(
    form: str, recorder: Any, marker: str, loopback_policy: pg.Policy
) -> None:
    """BytesIO copies the bytes: no label survives, but the zone saw the content."""
    pg.configure(loopback_policy, context_mode="enforce")
    ads = recorder.url("localhost") + "/ads"

    async def async_files(data: bytes) -> None:
        async with httpx.AsyncClient(timeout=10) as c:
            await c.post(ads, files={"f": io.BytesIO(data)})

    with (
        pg.zone(tenant="contoso"),
        pg.purpose("service.operations"),
        pytest.raises(pg.PurposeViolation) as caught,
    ):
        data = pg.label(marker.encode(), CONTENT)
        if form == "httpx files=BytesIO":
            httpx.post(ads, files={"f": io.BytesIO(data)})
        elif form == "httpx async files=BytesIO":
            _run(async_files(data))
        elif form == "requests data=BytesIO":
            requests.post(ads, data=io.BytesIO(data), timeout=10)
        else:
            requests.post(ads, files={"f": io.BytesIO(data)}, timeout=10)
    assert {(v.via, v.purpose) for v in caught.value.violations} == {("context", "advertising")}
    assert not _leaked(recorder, marker)


def test_streamed_chunks_to_an_allowed_host_are_sent_whole(recorder: Any) -> None:
    with pg.testing.assert_no_violations(), pg.purpose("service.operations"):
        assert httpx.post(recorder.url(), content=iter([b"a", pg.label(b"b", CONTENT)])).status_code == 200
        assert requests.post(recorder.url(), data=(c for c in [b"c", pg.label(b"d", CONTENT)]), timeout=10).ok
    assert [r.body for r in recorder.received] == [b"ab", b"cd"]


# -- 4. zone content over plain http ------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_zone_content_over_plain_http_off_host_is_refused_in_context_enforce(
    client: str, marker: str, loopback_policy: pg.Policy
) -> None:
    pg.configure(loopback_policy, context_mode="enforce")
    with pg.zone(tenant="c"), pg.purpose("service.operations"), pytest.raises(pg.PurposeViolation) as caught:
        text = f"mail: {pg.label(marker, CONTENT)}"  # the f-string drops the label; the zone keeps it
        _post(client, "http://mail-archive.example.invalid:9/store", content=text)
    assert [(v.via, v.category, v.rule) for v in caught.value.violations] == [
        ("transport", CONTENT, "transport.require_tls")
    ]
    assert marker not in str(caught.value)


def test_zone_content_over_plain_http_is_recorded_in_context_trace(loopback_policy: pg.Policy) -> None:
    pg.configure(loopback_policy, mode="enforce", context_mode="trace")
    with pg.testing.capture() as seen, pg.zone(tenant="c"), pg.purpose("service.operations"):
        pg.label("x", CONTENT)
        check_egress("http://mail-archive.example.invalid/store", frozenset(), function="t")
    assert [(v.via, v.rule, v.mode) for v in seen] == [("transport", "transport.require_tls", "trace")]
