"""Django: a streamed response's body runs in its request's zone, under its request's purpose.

A ``StreamingHttpResponse`` produces its chunks after the view returned and
after the middleware's call ended: each chunk, and the body's close (a client
gone mid-stream), runs in the request's zone with its tenant and under the
request's purpose (the view's own, found on a function or a class-based
view's method, else the calling service's), and the zone closes once, when
the body ends or is closed. Tried as a new user would: served on loopback by
a threaded WSGI server (sync bodies) and by uvicorn (async bodies).

The notes site of test_django.py (tests/orm/django_site), with a URL
configuration of this module's own around it. Django's settings are made once
per process: when test_django.py ran before this module in the session, its
site is used; else this module sets the site up the same way."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
import types
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from purposeguard.integrations.wsgi import route_purpose

import purposeguard as pg
from purposeguard._state import STATE

from .conftest import served_django_asgi, set_up_notes_site

HERE = Path(__file__).resolve().parent
SITE = HERE / "django_site"
DOCUMENT = "customer_data.content.document"
CONTACT = "customer_data"
BAGGAGE_KEY = "django-streaming-tests-baggage-key-7c2e91"
URLS = "purposeguard_streaming_test_urls"

# What the bodies' code saw, recorded as it ran (in the servers' threads).
SEEN: list[dict[str, Any]] = []


def _seen(where: str) -> dict[str, Any]:
    zone = pg.current_zone()
    return {
        "where": where,
        "purpose": pg.current_purpose(),
        "tenant": pg.current_tenant(),
        "zone": sorted(zone.categories) if zone is not None else None,
        # Still open while its body streams: a zone counted closed is one a
        # reconfiguration may switch zone checks off under.
        "open": zone is not None and not zone.closed,
    }


def _line(where: str) -> str:
    return json.dumps(_seen(where)) + "\n"


# -- the views -----------------------------------------------------------------------------


def plain_feed(request: Any) -> Any:
    """No purpose of its own: its chunks run under the request's, if any."""
    from django.http import StreamingHttpResponse

    def chunks() -> Iterator[str]:
        for i in range(3):
            yield _line(f"chunk {i}")

    return StreamingHttpResponse(chunks())


# What a failing closer's error quotes: never in purposeguard's own records.
CLOSER_TEXT = "could not flush the draft of megan.bowen@contoso.example"


class _FailingBody:
    def __init__(self) -> None:
        self.parts = iter([b"a", b"b"])

    def __iter__(self) -> Iterator[bytes]:
        return self.parts

    def close(self) -> None:
        raise RuntimeError(CLOSER_TEXT)


def failing_close_feed(request: Any) -> Any:
    from django.http import StreamingHttpResponse

    return StreamingHttpResponse(_FailingBody())


async def plain_feed_async(request: Any) -> Any:
    from django.http import StreamingHttpResponse

    async def chunks() -> AsyncIterator[str]:
        for i in range(3):
            await asyncio.sleep(0)
            yield _line(f"chunk {i}")

    return StreamingHttpResponse(chunks())


@pg.purpose("service.operations")
def slow_feed(request: Any) -> Any:
    """Long enough for a client to leave in the middle; bounded all the same."""
    from django.http import StreamingHttpResponse

    def chunks() -> Iterator[str]:
        try:
            for _ in range(4000):
                yield "x" * 8192
                time.sleep(0.002)
        finally:
            SEEN.append(_seen("finally"))

    return StreamingHttpResponse(chunks())


@pg.purpose("service.operations")
async def slow_feed_async(request: Any) -> Any:
    from django.http import StreamingHttpResponse

    async def chunks() -> AsyncIterator[str]:
        try:
            for _ in range(4000):
                yield "x" * 8192
                await asyncio.sleep(0.002)
        finally:
            SEEN.append(_seen("finally"))

    return StreamingHttpResponse(chunks())


@pg.purpose("service.operations")
async def busy_feed_async(request: Any) -> Any:
    """Never waits itself: a client leaving finds it at a ``yield``, and only
    the event loop finalising the abandoned body closes it."""
    from django.http import StreamingHttpResponse

    async def chunks() -> AsyncIterator[str]:
        try:
            while True:
                yield "x" * 8192
        finally:
            SEEN.append(_seen("finally"))

    return StreamingHttpResponse(chunks())


def _views() -> dict[str, Any]:
    """Class-based views, made once Django is set up."""
    from django.http import StreamingHttpResponse
    from django.utils.decorators import method_decorator
    from django.views import View

    def streamed(head: dict[str, Any]) -> Any:
        def chunks() -> Iterator[str]:
            yield json.dumps(head) + "\n"
            yield _line("chunk")

        return StreamingHttpResponse(chunks())

    def streamed_async(head: dict[str, Any]) -> Any:
        async def chunks() -> AsyncIterator[str]:
            yield json.dumps(head) + "\n"
            yield _line("chunk")

        return StreamingHttpResponse(chunks())

    class Decorated(View):
        @method_decorator(pg.purpose("service.operations"))
        def get(self, request: Any) -> Any:
            return streamed(_seen("view"))

    class Marked(View):
        # Marked, not wrapped: the view itself runs under no purpose of its own.
        @route_purpose("service.operations")
        def get(self, request: Any) -> Any:
            return streamed(_seen("view"))

    class DecoratedAsync(View):
        @method_decorator(pg.purpose("service.operations"))
        async def get(self, request: Any) -> Any:
            return streamed_async(_seen("view"))

    class MarkedAsync(View):
        @route_purpose("service.operations")
        async def get(self, request: Any) -> Any:
            return streamed_async(_seen("view"))

    return {
        "decorated": Decorated.as_view(),
        "marked": Marked.as_view(),
        "decorated-async": DecoratedAsync.as_view(),
        "marked-async": MarkedAsync.as_view(),
    }


# -- the site, the servers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    set_up_notes_site(tmp_path_factory)
    from django.contrib.auth.models import User
    from django.test import override_settings
    from django.urls import path
    from djnotes import urls as site_urls
    from purposeguard.integrations import django as pg_django

    pg_django.instrument()  # test_django.py's site switches it off as it ends
    urls = types.ModuleType(URLS)
    urls.urlpatterns = [  # type: ignore[attr-defined]
        *site_urls.urlpatterns,
        path("pg-stream/plain/", plain_feed),
        path("pg-stream/failing-close/", failing_close_feed),
        path("pg-stream/plain-async/", plain_feed_async),
        path("pg-stream/slow/", slow_feed),
        path("pg-stream/slow-async/", slow_feed_async),
        path("pg-stream/busy-async/", busy_feed_async),
        *(path(f"pg-stream/cbv/{name}/", view) for name, view in _views().items()),
    ]
    sys.modules[URLS] = urls
    routed = override_settings(ROOT_URLCONF=URLS)
    routed.enable()
    erin = User.objects.create_user("streaming-erin", password="pw-erin")
    try:
        yield {"erin": erin}
    finally:
        User.objects.filter(username__startswith="streaming-").delete()
        routed.disable()
        del sys.modules[URLS]
        pg_django.uninstrument()
        sys.path.remove(str(SITE))


@pytest.fixture(autouse=True)
def configured(site: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The PURPOSEGUARD setting (trust-center, enforce) on a fresh guard; this
    service holds the key its callers sign baggage with."""
    from purposeguard.integrations.django import _settings

    monkeypatch.setenv("PURPOSEGUARD_BAGGAGE_KEYS", BAGGAGE_KEY)
    _settings.apply()
    SEEN.clear()
    yield
    SEEN.clear()


def _served_wsgi() -> Generator[str, None, None]:
    from django.core.wsgi import get_wsgi_application
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

    server = make_server("127.0.0.1", 0, get_wsgi_application(), threaded=True, request_handler=Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(params=["wsgi", "asgi"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(base URL, the suffix of the views it serves: sync bodies for WSGI, async ones for ASGI)."""
    served = _served_wsgi() if request.param == "wsgi" else served_django_asgi()
    yield next(served), "" if request.param == "wsgi" else "-async"
    served.close()


def _until(done: Any, limit: float = 20.0) -> bool:
    """Waits for something the servers' threads do after the client has its answer."""
    deadline = time.monotonic() + limit
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _zones_open() -> int:
    return STATE.flags.opened.value() - STATE.flags.closed.value()


def _cookie(site: dict[str, Any], user: str) -> str:
    from django.test import Client

    client = Client()
    client.force_login(site[user])
    return str(client.cookies["sessionid"].value)


def _signed(**members: Any) -> str:
    from purposeguard.integrations import baggage

    categories = members.pop("zone", ())
    return baggage.signed_header(categories=categories, key=BAGGAGE_KEY, **members)


def _lines(url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    import httpx

    response = httpx.get(url, headers=headers, timeout=20)
    assert response.status_code == 200, response.text[:600]
    return [json.loads(line) for line in response.text.splitlines()]


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("purpose", [None, "service.operations"], ids=["no-purpose", "callers-purpose"])
def test_an_undeclared_views_stream_runs_in_the_requests_zone_with_its_tenant(
    site: dict[str, Any], server: tuple[str, str], purpose: str | None
) -> None:
    """Signed in (the tenant tenant_from names) and called with the caller's
    zone: every chunk sees the zone, the tenant and the request's purpose
    (the caller's, or none), and the zone is still open while it streams."""
    base, suffix = server
    before = _zones_open()
    header = _signed(zone=[CONTACT], **({"purpose": purpose} if purpose else {}))
    lines = _lines(
        f"{base}/pg-stream/plain{suffix}/",
        {"Cookie": f"sessionid={_cookie(site, 'erin')}", "baggage": header},
    )
    erin = str(site["erin"].pk)
    assert lines == [
        {"where": f"chunk {i}", "purpose": purpose, "tenant": erin, "zone": [CONTACT], "open": True}
        for i in range(3)
    ]
    assert _until(lambda: _zones_open() == before), "a request's zone was left open"


@pytest.mark.parametrize("how", ["decorated", "marked"])
def test_a_class_based_views_marked_get_streams_under_its_purpose(
    site: dict[str, Any], server: tuple[str, str], how: str
) -> None:
    """``@method_decorator(pg.purpose(...))`` or ``@route_purpose(...)`` on
    ``get``: the body streams under that purpose, in the request's zone."""
    base, suffix = server
    before = _zones_open()
    lines = _lines(
        f"{base}/pg-stream/cbv/{how}{suffix}/",
        {"Cookie": f"sessionid={_cookie(site, 'erin')}", "baggage": _signed(zone=[DOCUMENT])},
    )
    erin = str(site["erin"].pk)
    view, chunk = lines
    assert chunk == {
        "where": "chunk",
        "purpose": "service.operations",
        "tenant": erin,
        "zone": [DOCUMENT],
        "open": True,
    }
    # The decorated method runs under its purpose itself; a method only marked
    # does not (the mark tells the middleware what its stream runs under).
    expected = "service.operations" if how == "decorated" else None
    assert view == {"where": "view", "purpose": expected, "tenant": erin, "zone": [DOCUMENT], "open": True}
    assert _until(lambda: _zones_open() == before), "a request's zone was left open"


def test_a_head_request_reads_the_mark_on_get(site: dict[str, Any]) -> None:
    from purposeguard.integrations.django.middleware import _view_mark

    views = _views()
    assert _view_mark(views["marked"], "HEAD") == "service.operations"
    assert _view_mark(views["decorated"], "GET") == "service.operations"
    assert _view_mark(views["decorated"], "POST") is None
    assert _view_mark(plain_feed, "GET") is None


def test_a_client_leaving_mid_stream_closes_the_body_in_the_requests_zone(
    site: dict[str, Any], server: tuple[str, str]
) -> None:
    """The client resets the connection after the first bytes: the body's
    ``finally`` runs in the request's zone, under the view's purpose, and the
    zone is closed afterwards."""
    base, suffix = server
    _leave_mid_stream(site, base, f"/pg-stream/slow{suffix}/")


def test_an_async_body_abandoned_at_a_yield_closes_in_the_requests_zone(site: dict[str, Any]) -> None:
    """Django's ASGI handler, called as a server calls it, by a client that
    leaves while the first chunk is being sent: the body, suspended at its
    ``yield``, is abandoned (Django cancels the send and drops the response)
    and finalised by the event loop; its ``finally`` runs in the request's
    zone, and the zone closes, while the loop still runs. (Django's handler
    keeps the dropped response in a reference cycle, the disconnect's
    traceback holding its frame: a server's process finalises it when the
    cycle collector next runs; here it runs at once.)"""
    import gc

    from django.core.asgi import get_asgi_application

    application = get_asgi_application()
    before = _zones_open()
    headers = [
        (b"host", b"127.0.0.1"),
        (b"cookie", f"sessionid={_cookie(site, 'erin')}".encode()),
        (b"baggage", _signed(zone=[DOCUMENT]).encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/pg-stream/busy-async/",
        "raw_path": b"/pg-stream/busy-async/",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }

    async def serve() -> tuple[list[int], bool]:
        started = asyncio.Event()
        statuses: list[int] = []
        asked = 0

        async def receive() -> dict[str, Any]:
            nonlocal asked
            asked += 1
            if asked == 1:
                return {"type": "http.request", "body": b"", "more_body": False}
            await started.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            elif message.get("body"):
                started.set()
                await asyncio.sleep(3600)  # a client that stopped reading, then left

        await application(scope, receive, send)
        # Finalised by this loop once Django dropped the response, not at its shutdown.
        for _ in range(500):
            if SEEN and _zones_open() == before:
                break
            gc.collect()
            await asyncio.sleep(0.01)
        return statuses, bool(SEEN)

    statuses, seen_in_time = asyncio.run(serve())
    assert statuses == [200] and seen_in_time
    assert SEEN == [
        {
            "where": "finally",
            "purpose": "service.operations",
            "tenant": str(site["erin"].pk),
            "zone": [DOCUMENT],
            "open": True,
        }
    ]
    assert _zones_open() == before


def _leave_mid_stream(site: dict[str, Any], base: str, path: str) -> None:
    before = _zones_open()
    port = int(base.rsplit(":", 1)[1])
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Cookie: sessionid={_cookie(site, 'erin')}\r\nbaggage: {_signed(zone=[DOCUMENT])}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=20) as client:
        client.sendall(request.encode())
        received = b""
        while b"xxxx" not in received:
            received += client.recv(65536)
        assert received.startswith(b"HTTP/1.1 200")
        # A reset, not a polite close: the server finds out on its next write.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    assert _until(lambda: bool(SEEN)), "the body's finally never ran"
    assert SEEN == [
        {
            "where": "finally",
            "purpose": "service.operations",
            "tenant": str(site["erin"].pk),
            "zone": [DOCUMENT],
            "open": True,
        }
    ]
    assert _until(lambda: _zones_open() == before), "a request's zone was left open"


def test_a_streamed_body_closed_by_the_test_client_closes_its_zone_once(site: dict[str, Any]) -> None:
    """Django's test client (no server): the body ends, the response is
    closed, and the zone is counted closed exactly once."""
    from django.test import Client

    client = Client()
    client.force_login(site["erin"])
    before = _zones_open()
    response = client.get("/pg-stream/plain/")
    assert _zones_open() == before + 1  # open until its body is done
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [line["tenant"] for line in lines] == [str(site["erin"].pk)] * 3
    assert _zones_open() == before
    response.close()
    assert _zones_open() == before


def test_a_streamed_body_never_read_closes_its_zone_when_closed(site: dict[str, Any]) -> None:
    from django.test import Client

    before = _zones_open()
    response = Client().get("/pg-stream/plain/")
    assert _zones_open() == before + 1
    response.close()
    assert _zones_open() == before


def test_a_failing_closer_is_said_by_its_type_not_its_message(
    site: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """purposeguard's own records are not checked against the zone: what a
    closer's error quotes (the body's data) stays out of them."""
    from django.test import Client

    before = _zones_open()
    with caplog.at_level("DEBUG", logger="purposeguard"):
        response = Client().get("/pg-stream/failing-close/")
        assert b"".join(response.streaming_content) == b"ab"
        response.close()
    said = [r for r in caplog.records if "closer failed" in r.getMessage()]
    assert len(said) == 1 and "RuntimeError" in said[0].getMessage()
    assert all(CLOSER_TEXT not in r.getMessage() and r.exc_info is None for r in caplog.records)
    assert _zones_open() == before
