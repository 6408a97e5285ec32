"""Labelled parts a client encodes, frames or logs on its own way to the wire.

Each case sends labelled content under a purpose that may not hold it,
outside any zone, to a real loopback server: it must be refused before
anything reaches the server, as the whole request would be.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import requests.auth
from purposeguard.integrations import aiohttp as pg_aiohttp
from purposeguard.integrations import http_client as pg_http_client
from purposeguard.integrations import requests as pg_requests
from purposeguard.integrations import urllib3 as pg_urllib3

import purposeguard as pg

from .conftest import RecordingServer

CONTENT = "customer_data.content.email"
SECRET = "Quarterly-numbers-for-the-board"
MODULES = (pg_requests, pg_urllib3, pg_http_client, pg_aiohttp)


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


def refused(send: Callable[[], Any], purpose: str = "advertising") -> pg.PurposeViolation:
    with pg.purpose(purpose), pytest.raises(pg.PurposeViolation) as caught:
        send()
    assert caught.value.violations[0].via == "egress"
    assert SECRET not in str(caught.value)
    return caught.value


# -- requests: Basic credentials encoded by hand or by an auth callable -----------------------------


def _send_prepared(prepared: requests.PreparedRequest) -> requests.Response:
    with requests.Session() as session:
        return session.send(prepared, timeout=10)


def _basic_auth_shapes(url: str) -> dict[str, Callable[[], Any]]:
    # Read before the purpose starts: the exit, not the read, is under test.
    value = secret()

    def prepare_auth() -> Any:
        prepared = requests.Request("GET", url).prepare()
        prepared.prepare_auth(("user", value))
        return _send_prepared(prepared)

    def auth_object_applied_by_hand() -> Any:
        prepared = requests.auth.HTTPBasicAuth("user", value)(requests.Request("GET", url).prepare())
        return _send_prepared(prepared)

    def auth_callable() -> Any:
        # The password is held in a closure, where no walk looks.
        return requests.get(url, auth=lambda p: requests.auth.HTTPBasicAuth("user", value)(p), timeout=10)

    def proxy_auth_callable() -> Any:
        return requests.get(url, auth=lambda p: requests.auth.HTTPProxyAuth("user", value)(p), timeout=10)

    def header_set_by_hand() -> Any:
        header = requests.auth._basic_auth_str("user", value)
        return requests.get(url, headers={"Authorization": header}, timeout=10)

    return {
        "prepare_auth": prepare_auth,
        "HTTPBasicAuth applied by hand": auth_object_applied_by_hand,
        "auth callable": auth_callable,
        "HTTPProxyAuth in an auth callable": proxy_auth_callable,
        "header set by hand": header_set_by_hand,
    }


@pytest.mark.parametrize("shape", list(_basic_auth_shapes("http://unused")))
def test_requests_basic_credentials_encoded_outside_the_call_are_checked(
    recorder: RecordingServer, shape: str
) -> None:
    refused(_basic_auth_shapes(recorder.url())[shape])
    assert recorder.received == []


def test_requests_basic_credentials_allowed_for_the_purpose_are_sent(recorder: RecordingServer) -> None:
    with pg.purpose("service.operations"):
        response = _basic_auth_shapes(recorder.url())["prepare_auth"]()
    assert response.status_code == 200
    (received,) = recorder.received
    assert received.headers["authorization"] == requests.auth._basic_auth_str("user", SECRET)


# -- urllib3: a connection driven by hand frames each chunk itself ---------------------------------


def _chunked_shapes(port: int, value: str) -> dict[str, Callable[[], Any]]:
    from urllib3.connection import HTTPConnection

    def sent(body: Any, **options: Any) -> Callable[[], Any]:
        def send() -> Any:
            connection = HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                connection.request("POST", "/ingest", body=body(), **options)
                return connection.getresponse().read()
            finally:
                connection.close()

        return send

    def generator() -> Iterator[bytes]:
        yield b"a plain first chunk "
        yield value.encode()

    def request_chunked() -> Any:
        connection = HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # deprecated, still sends
                connection.request_chunked("POST", "/ingest", body=[b"a plain first chunk ", value])
            return connection.getresponse().read()
        finally:
            connection.close()

    return {
        "generator, chunked": sent(generator, chunked=True),
        "list, chunked": sent(lambda: [b"a plain first chunk ", value], chunked=True),
        "one text, chunked": sent(lambda: value, chunked=True),
        "generator, framed by urllib3": sent(generator),
        "request_chunked": request_chunked,
    }


@pytest.mark.parametrize("shape", list(_chunked_shapes(0, "")))
def test_urllib3_connection_chunks_are_checked(recorder: RecordingServer, shape: str) -> None:
    refused(_chunked_shapes(recorder.port, secret())[shape])
    assert recorder.received == []


def test_urllib3_connection_chunks_allowed_for_the_purpose_are_sent(recorder: RecordingServer) -> None:
    send = _chunked_shapes(recorder.port, secret())["generator, chunked"]
    with pg.purpose("service.operations"):
        send()
    (received,) = recorder.received
    assert received.headers["transfer-encoding"] == "chunked"
    assert received.body == b"a plain first chunk " + SECRET.encode()


# -- aiohttp: URLs built with yarl ----------------------------------------------------------------


def _yarl_shapes(base: str, port: int, value: str) -> dict[str, Callable[[], Any]]:
    import yarl

    url = yarl.URL(base)
    return {
        "with_query(dict)": lambda: url.with_query({"q": value}),
        "with_query(keywords)": lambda: url.with_query(q=value),
        "update_query": lambda: url.update_query({"q": value}),
        "extend_query": lambda: url.extend_query(q=value),
        "% query": lambda: url % {"q": value},
        "/ part": lambda: url / value,
        "joinpath": lambda: url.joinpath("notes", value),
        "with_path": lambda: url.with_path("/" + value),
        "with_name": lambda: (url / "draft").with_name(value),
        "with_suffix": lambda: (url / "draft").with_suffix("." + value),
        "with_user": lambda: url.with_user(value),
        "with_password": lambda: url.with_user("user").with_password(value),
        "join": lambda: url.join(yarl.URL(value)),
        "build(query=)": lambda: yarl.URL.build(
            scheme="http", host="127.0.0.1", port=port, path="/", query={"q": value}
        ),
        "derived from a labelled URL": lambda: url.with_query(q=value).with_fragment("top").joinpath("x"),
    }


async def _aiohttp_get(url: Any, base_url: Any = None) -> int:
    import aiohttp

    async with aiohttp.ClientSession(base_url=base_url) as session, session.get(url) as response:
        return response.status


@pytest.mark.parametrize("shape", list(_yarl_shapes("http://unused/", 1, "")))
def test_aiohttp_a_url_built_with_yarl_from_labelled_parts_is_checked(
    recorder: RecordingServer, shape: str
) -> None:
    url = _yarl_shapes(recorder.url() + "/", recorder.port, secret())[shape]()
    refused(lambda: asyncio.run(_aiohttp_get(url)))
    assert recorder.received == []


def test_aiohttp_a_base_url_built_with_yarl_from_labelled_parts_is_checked(recorder: RecordingServer) -> None:
    import yarl

    base = yarl.URL(recorder.url()).with_path("/" + secret() + "/")
    refused(lambda: asyncio.run(_aiohttp_get("notes", base_url=base)))
    assert recorder.received == []


def test_yarl_keeps_one_calls_labels_off_an_equal_url_made_from_plain_text() -> None:
    """yarl hands equal inputs one URL object: the labelled one is a copy of its own."""
    import yarl
    from purposeguard.integrations._egress import deep_labels

    labelled = yarl.URL("http://127.0.0.1/").with_query(q=secret())
    plain = yarl.URL("http://127.0.0.1/").with_query(q=SECRET)
    assert labelled == plain
    assert (deep_labels(labelled), deep_labels(plain)) == (frozenset({CONTENT}), frozenset())


@pytest.mark.parametrize("text", [str, lambda url: url.human_repr()], ids=["str", "human_repr"])
def test_the_text_of_a_labelled_yarl_url_is_checked_where_another_client_sends_it(
    recorder: RecordingServer, text: Callable[[Any], str]
) -> None:
    import yarl

    url = yarl.URL(recorder.url() + "/").with_query(q=secret())
    assert pg.labels_of(text(url)) == {CONTENT}
    refused(lambda: requests.get(text(url), timeout=10))
    assert recorder.received == []
    plain = yarl.URL(recorder.url() + "/").with_query(q="plain")
    assert type(str(plain)) is str and pg.labels_of(plain.human_repr()) == frozenset()


def test_yarl_methods_tell_plain_arguments_without_the_labels_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain URL method call must not pay for the labels layer's walk
    (tens of microseconds a call): plain scalars, plain query dicts and
    pairs, and plain URLs are told apart by their types; anything else is
    walked."""
    import yarl

    walks: list[object] = []
    real = pg_aiohttp.sent_labels

    def counting(values: Any) -> Any:
        walks.append(values)
        return real(values)

    monkeypatch.setattr(pg_aiohttp, "sent_labels", counting)
    url = yarl.URL("http://127.0.0.1/api/")
    plain_calls = [
        lambda: url.with_query({"a": "1", "b": 2, "c": 1.5}),
        lambda: url.with_query([("a", "1"), ("b", "2")]),
        lambda: url.update_query(a="1"),
        lambda: url.join(yarl.URL("x/y")),
        lambda: url / "users",
        lambda: url.with_fragment(None),
        lambda: yarl.URL.build(scheme="http", host="127.0.0.1", path="/a", query={"q": "1"}),
    ]
    for call in plain_calls:
        call()
    assert walks == []
    labelled = [
        url.with_query({"q": secret()}),
        url.with_query([("q", secret())]),
        url.join(yarl.URL(secret())),
        url.join(url.with_query(q=secret())),
    ]
    assert len(walks) >= len(labelled)
    monkeypatch.undo()
    from purposeguard.integrations._egress import deep_labels

    assert [deep_labels(made) for made in labelled] == [frozenset({CONTENT})] * len(labelled)


def test_aiohttp_a_yarl_url_allowed_for_the_purpose_is_sent(recorder: RecordingServer) -> None:
    url = _yarl_shapes(recorder.url() + "/", recorder.port, secret())["with_query(keywords)"]()
    with pg.purpose("service.operations"):
        assert asyncio.run(_aiohttp_get(url)) == 200
    (received,) = recorder.received
    assert received.path == "/?q=" + SECRET


# -- urllib3's own log line of each request -------------------------------------------------------


@pytest.fixture
def urllib3_lines() -> Iterator[list[str]]:
    """What urllib3's loggers write, with purposeguard's logging filter set up."""
    from purposeguard.integrations.logging import setup, teardown

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("urllib3")
    handler = Keep(logging.DEBUG)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    guard_filter = setup(logger)
    yield lines
    teardown(guard_filter, logger)
    logger.removeHandler(handler)
    logger.setLevel(level)


def _logged_shapes(url: str, port: int, value: str) -> dict[str, Callable[[], Any]]:
    import urllib3

    return {
        "urllib3 fields": lambda: urllib3.PoolManager().request("GET", url, fields={"q": value}),
        "urllib3 URL text": lambda: urllib3.PoolManager().request("GET", url + "?q=" + value),
        "urllib3 pool": lambda: urllib3.HTTPConnectionPool("127.0.0.1", port).urlopen("GET", "/?q=" + value),
        "requests params": lambda: requests.get(url, params={"q": value}, timeout=10),
        "requests URL text": lambda: requests.get(url + "?q=" + value, timeout=10),
    }


@pytest.mark.parametrize("shape", list(_logged_shapes("http://unused/", 1, "")))
def test_urllib3_request_log_line_of_a_labelled_query_is_judged(
    recorder: RecordingServer, urllib3_lines: list[str], shape: str
) -> None:
    send = _logged_shapes(recorder.url() + "/", recorder.port, secret())[shape]
    with pg.purpose("service.operations"):  # may send it, may not log it
        send()
    assert [r.path for r in recorder.received] == ["/?q=" + SECRET]
    assert not any(SECRET in line for line in urllib3_lines)
    assert any("redacted" in line and CONTENT in line for line in urllib3_lines)


def test_urllib3_request_log_line_of_a_plain_query_is_kept(
    recorder: RecordingServer, urllib3_lines: list[str]
) -> None:
    with pg.purpose("service.operations"):
        requests.get(recorder.url() + "/", params={"q": "spring offers"}, timeout=10)
    assert any('"GET /?q=spring+offers HTTP/1.1" 200' in line for line in urllib3_lines)


# -- outside any zone: whose data it is ------------------------------------------------------------


def _post_json(client: str, url: str, document: Any) -> Any:
    import urllib3

    if client == "requests":
        return requests.post(url, json=document, timeout=10)
    if client == "urllib3":
        return urllib3.PoolManager().request("POST", url, json=document)

    async def post() -> int:
        import aiohttp

        async with aiohttp.ClientSession() as session, session.post(url, json=document) as response:
            return response.status

    return asyncio.run(post())


@pytest.mark.parametrize("client", ["requests", "urllib3", "aiohttp"])
def test_outside_any_zone_one_tenants_consent_never_covers_another_tenants_data(
    consents: Any, recorder: RecordingServer, client: str
) -> None:
    """acme consented to improvement, globex did not: sent together, neither goes."""
    document = {
        "a": pg.label("acme mail", CONTENT, tenant="acme"),
        "g": pg.label("globex mail", CONTENT, tenant="globex"),
    }
    with pg.purpose("improvement"), pytest.raises(pg.PurposeViolation) as caught:
        _post_json(client, recorder.url(), document)
    assert "acme" not in {v.tenant for v in caught.value.violations}
    assert recorder.received == []
