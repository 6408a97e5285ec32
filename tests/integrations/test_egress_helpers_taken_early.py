"""Basic credentials encoded through a client's helper taken before its
integration's ``instrument()`` (``from requests.auth import _basic_auth_str``,
``from urllib3 import make_headers``): the helper is patched in place, so the
reference taken early encodes a header that carries the password's labels,
and the request it is sent with is refused before anything reaches the
(real, loopback) server."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import urllib3
from aiohttp import encode_basic_auth
from purposeguard.integrations import aiohttp as pg_aiohttp
from purposeguard.integrations import requests as pg_requests
from purposeguard.integrations import urllib3 as pg_urllib3
from requests.auth import _basic_auth_str
from urllib3 import make_headers
from urllib3.util.request import make_headers as make_headers_from_its_module

import purposeguard as pg

from .conftest import RecordingServer

CONTENT = "customer_data.content.email"
SECRET = "Quarterly-numbers-for-the-board"
MODULES = (pg_requests, pg_urllib3, pg_aiohttp)
# Taken at import, before any test instruments anything: what an application
# that imports its helpers before calling instrument() holds.
EARLY: dict[str, Callable[..., Any]] = {
    "requests.auth._basic_auth_str": _basic_auth_str,
    "urllib3.make_headers": make_headers,
    "aiohttp.encode_basic_auth": encode_basic_auth,
}
SIGNATURES = {name: inspect.signature(helper) for name, helper in EARLY.items()}
CODES = {name: getattr(helper, "__code__", None) for name, helper in EARLY.items()}


@pytest.fixture(autouse=True)
def guards() -> Iterator[None]:
    pg.configure("trust-center", mode="enforce")
    for module in MODULES:
        module.instrument()
    yield
    for module in MODULES:
        module.uninstrument()


def secret() -> str:
    return pg.label(SECRET, CONTENT)


async def _aiohttp_get(url: str, headers: dict[str, Any]) -> int:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status


def _shapes(url: str, password: str) -> dict[str, Callable[[], Any]]:
    return {
        "requests with _basic_auth_str": lambda: requests.get(
            url, headers={"Authorization": _basic_auth_str("user", password)}, timeout=10
        ),
        "urllib3 with make_headers": lambda: urllib3.PoolManager().request(
            "GET", url, headers=make_headers(basic_auth="user:" + password)
        ),
        "urllib3 with make_headers from urllib3.util.request": lambda: urllib3.PoolManager().request(
            "GET", url, headers=make_headers_from_its_module(proxy_basic_auth="user:" + password)
        ),
        "requests with make_headers": lambda: requests.get(
            url, headers=make_headers(basic_auth="user:" + password), timeout=10
        ),
        "aiohttp with encode_basic_auth": lambda: asyncio.run(
            _aiohttp_get(url, {"Authorization": encode_basic_auth("user", password)})
        ),
    }


@pytest.mark.parametrize("shape", list(_shapes("http://unused", "")))
def test_a_header_encoded_by_a_helper_taken_before_instrument_is_refused(
    recorder: RecordingServer, shape: str
) -> None:
    send = _shapes(recorder.url(), secret())[shape]
    with pg.purpose("advertising"), pytest.raises(pg.PurposeViolation) as caught:
        send()
    assert caught.value.violations[0].via == "egress"
    assert SECRET not in str(caught.value)
    assert recorder.received == []


@pytest.mark.parametrize("shape", list(_shapes("http://unused", "")))
def test_a_header_encoded_by_a_helper_taken_before_instrument_is_sent_where_allowed(
    recorder: RecordingServer, shape: str
) -> None:
    with pg.purpose("service.operations"):
        _shapes(recorder.url(), secret())[shape]()
    (received,) = recorder.received
    plain = _basic_auth_str("user", SECRET)
    assert plain in (received.headers.get("authorization"), received.headers.get("proxy-authorization"))


def test_helpers_taken_early_keep_their_signature_and_get_their_code_back() -> None:
    assert {name: inspect.signature(helper) for name, helper in EARLY.items()} == SIGNATURES
    assert all(getattr(helper, "__code__", None) is not CODES[name] for name, helper in EARLY.items())
    assert make_headers(keep_alive=True, basic_auth="user:pw") == {
        "connection": "keep-alive",
        "authorization": _basic_auth_str("user", "pw"),
    }
    for module in MODULES:
        module.uninstrument()
    assert all(getattr(helper, "__code__", None) is CODES[name] for name, helper in EARLY.items())
    assert pg.labels_of(_basic_auth_str("user", secret())) == frozenset()
    for module in MODULES:
        module.instrument()
        module.instrument()
    assert pg.labels_of(_basic_auth_str("user", secret())) == {CONTENT}
    assert type(_basic_auth_str("user", "pw")) is str
