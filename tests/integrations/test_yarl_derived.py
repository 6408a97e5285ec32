"""What an application derives from a labelled yarl URL keeps its labels.

A URL made from labelled parts (``url.with_query(q=...)``, ``url / part``,
``yarl.URL(text)``) is labelled; so is every URL and every text read from it
(``origin()``, ``parent``, ``query["q"]``, ``path_qs``, ``str()``, a pickled
copy). Each derived value is sent, outside any zone, under a purpose that may
not hold its labels, through each HTTP client to a real loopback server, or
logged: it must be refused (or redacted) before anything leaves.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import requests
import urllib3
import yarl
from purposeguard.integrations import aiohttp as pg_aiohttp
from purposeguard.integrations import httpx as pg_httpx
from purposeguard.integrations import requests as pg_requests
from purposeguard.integrations import urllib3 as pg_urllib3
from purposeguard.integrations._egress import deep_labels

import purposeguard as pg

from .conftest import RecordingServer

CONTENT = "customer_data.content.email"
SECRET = "Quarterly-numbers-for-the-board"
MODULES = (pg_requests, pg_urllib3, pg_httpx, pg_aiohttp)


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


def _labelled_query(base: str) -> yarl.URL:
    return yarl.URL(base + "/notes/draft").with_query(q=secret())


def _labelled_path(base: str) -> yarl.URL:
    return yarl.URL(base + "/notes/") / secret() / "draft.txt"


def _url_shapes(base: str) -> dict[str, Callable[[], yarl.URL]]:
    """URLs an application derives from a labelled one."""

    def parsed_after_an_equal_plain_one() -> yarl.URL:
        # yarl parses through caches keyed by the text: the plain parse comes first.
        text = base + "/?q=" + SECRET
        yarl.URL(text)
        return yarl.URL(pg.label(text, CONTENT))

    return {
        "origin()": lambda: _labelled_query(base).origin(),
        "parent": lambda: _labelled_path(base).parent,
        "parent of a labelled query": lambda: _labelled_query(base).parent,
        "/ part": lambda: _labelled_query(base) / "x",
        "joinpath": lambda: _labelled_query(base).joinpath("a", "b"),
        "with_query": lambda: _labelled_path(base).with_query(page="1"),
        "update_query": lambda: _labelled_query(base).update_query(page="1"),
        "with_fragment": lambda: _labelled_query(base).with_fragment("top"),
        "pickle": lambda: pickle.loads(pickle.dumps(_labelled_query(base))),
        "copy.copy": lambda: copy.copy(_labelled_query(base)),
        "copy.deepcopy": lambda: copy.deepcopy(_labelled_query(base)),
        "URL(labelled text)": parsed_after_an_equal_plain_one,
    }


def _text_shapes(base: str) -> dict[str, Callable[[], Any]]:
    """Text an application reads from a labelled URL."""
    return {
        "str(origin())": lambda: str(_labelled_query(base).origin()),
        'query["q"]': lambda: _labelled_query(base).query["q"],
        "query.get": lambda: _labelled_query(base).query.get("q"),
        "query.getall": lambda: _labelled_query(base).query.getall("q")[0],
        "query.items()": lambda: next(iter(_labelled_query(base).query.items()))[1],
        "dict(query)": lambda: dict(_labelled_query(base).query)["q"],
        "query_string": lambda: _labelled_query(base).query_string,
        "raw_query_string": lambda: _labelled_query(base).raw_query_string,
        "path_qs": lambda: _labelled_query(base).path_qs,
        "raw_path_qs": lambda: _labelled_query(base).raw_path_qs,
        "path": lambda: _labelled_path(base).path,
        "parts": lambda: _labelled_path(base).parts[-2],
        "name": lambda: _labelled_path(base).parent.name,
        "repr": lambda: repr(_labelled_query(base)),
        "str(parent)": lambda: str(_labelled_path(base).parent),
        "str(pickled)": lambda: str(pickle.loads(pickle.dumps(_labelled_query(base)))),
    }


async def _aiohttp_get(url: Any, **kwargs: Any) -> int:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as response:
        return response.status


def _send_url(client: str, url: yarl.URL) -> Any:
    if client == "aiohttp":
        return asyncio.run(_aiohttp_get(url))
    if client == "requests":
        return requests.get(str(url), timeout=10)
    if client == "urllib3":
        return urllib3.PoolManager().request("GET", str(url))
    return httpx.get(str(url), timeout=10)


def _send_text(client: str, base: str, text: Any) -> Any:
    # The derived text as a query parameter: a plain URL, a labelled value.
    if client == "aiohttp":
        return asyncio.run(_aiohttp_get(base + "/", params={"v": text}))
    if client == "requests":
        return requests.get(base + "/", params={"v": text}, timeout=10)
    if client == "urllib3":
        return urllib3.PoolManager().request("GET", base + "/", fields={"v": text})
    return httpx.get(base + "/", params={"v": text}, timeout=10)


CLIENTS = ["aiohttp", "requests", "urllib3", "httpx"]


def refused(send: Callable[[], Any]) -> None:
    with pg.purpose("advertising"), pytest.raises(pg.PurposeViolation) as caught:
        send()
    assert caught.value.violations[0].via == "egress"
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("shape", list(_url_shapes("http://unused")))
def test_a_url_derived_from_a_labelled_url_is_refused_at_every_client(
    recorder: RecordingServer, shape: str, client: str
) -> None:
    url = _url_shapes(recorder.url())[shape]()
    assert deep_labels(url) == {CONTENT}
    refused(lambda: _send_url(client, url))
    assert recorder.received == []


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("shape", list(_text_shapes("http://unused")))
def test_text_read_from_a_labelled_url_is_refused_at_every_client(
    recorder: RecordingServer, shape: str, client: str
) -> None:
    text = _text_shapes(recorder.url())[shape]()
    assert pg.labels_of(text) == {CONTENT}
    refused(lambda: _send_text(client, recorder.url(), text))
    assert recorder.received == []


def test_text_read_from_a_labelled_url_is_redacted_where_it_is_logged() -> None:
    from purposeguard.integrations.logging import setup, teardown

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("tests.yarl_derived")
    handler = Keep(logging.INFO)
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    guard_filter = setup(logger)
    try:
        url = _labelled_query("http://127.0.0.1:1")
        with pg.purpose("service.operations"):
            logger.info("searched %s", url.query["q"])
            logger.info("next page %s", url.update_query(page="2").path_qs)
            logger.info("copy %s", str(pickle.loads(pickle.dumps(url))))
    finally:
        teardown(guard_filter, logger)
        logger.removeHandler(handler)
    assert len(lines) == 3
    assert not any(SECRET in line for line in lines)
    assert all("redacted" in line and CONTENT in line for line in lines)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_derived_url_allowed_for_the_purpose_is_sent(recorder: RecordingServer, client: str) -> None:
    url = _labelled_query(recorder.url()).update_query(page="2")
    with pg.purpose("service.operations"):
        _send_url(client, url)
    (received,) = recorder.received
    assert received.path == f"/notes/draft?q={SECRET}&page=2"


def test_an_equal_url_made_from_plain_text_stays_plain() -> None:
    """The labels of one URL never reach an equal URL built from plain text
    (yarl hands equal inputs one object): what is read from it is plain."""
    base = "http://127.0.0.1:1"
    labelled = _labelled_query(base)
    plain = yarl.URL(base + "/notes/draft").with_query(q=SECRET)
    assert labelled == plain
    reads: list[Callable[[yarl.URL], Any]] = [
        lambda u: u.origin(),
        lambda u: u.parent,
        lambda u: u.query["q"],
        lambda u: u.path_qs,
        lambda u: str(u),
        lambda u: repr(u),
        lambda u: pickle.loads(pickle.dumps(u)),
        lambda u: copy.deepcopy(u),
        lambda u: u / "x",
    ]
    for read in reads:
        assert deep_labels(read(labelled)) == {CONTENT}
        assert deep_labels(read(plain)) == frozenset()
    assert deep_labels(yarl.URL(base + "/?q=" + SECRET)) == frozenset()
    assert type(plain.query["q"]) is str and type(str(plain.origin())) is str


def test_uninstrument_gives_yarl_its_own_attributes_back() -> None:
    names = ("__new__", "origin", "_origin", "parent", "query", "host", "path_qs", "__getstate__")
    instrumented = {name: vars(yarl.URL)[name] for name in names}
    pg_aiohttp.instrument()  # once wraps once
    assert {name: vars(yarl.URL)[name] for name in names} == instrumented
    pg_aiohttp.uninstrument()
    originals = {name: vars(yarl.URL)[name] for name in names}
    assert all(
        originals[name] is not instrumented[name] for name in ("__new__", "_origin", "parent", "query")
    )
    url = yarl.URL("http://127.0.0.1/a/b").with_query(q=secret())
    assert deep_labels(url.origin()) == frozenset()
    pg_aiohttp.instrument()
    again = {name: vars(yarl.URL)[name] for name in names}
    pg_aiohttp.instrument()
    assert {name: vars(yarl.URL)[name] for name in names} == again
    assert deep_labels(url.with_query(q=secret()).origin()) == {CONTENT}


def test_a_plain_url_is_made_and_read_without_the_labels_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain text parses as yarl parses it, and what is read from a plain URL
    is yarl's own plain value: no walk of the labels layer on that path."""
    walks: list[object] = []
    real = pg_aiohttp.sent_labels

    def counting(values: Any) -> Any:
        walks.append(values)
        return real(values)

    monkeypatch.setattr(pg_aiohttp, "sent_labels", counting)
    url = yarl.URL("http://127.0.0.1:1/plain/read?page=2")
    reads = [str(url.origin()), url.parent.path, url.query["page"], url.path_qs, repr(url), url.host]
    assert walks == []
    assert all(type(read) is str for read in reads)
    yarl.URL(pg.label("http://127.0.0.1:1/?q=x", CONTENT))
    assert len(walks) == 1
