"""Django: a request or a response handed to a guarded view or function is read for what it carries.

A project whose URLconf ``include()``s (the admin listed first, the
startproject layout) gives each request a URL resolution that reaches every
pattern it tried: read as a plain object, it goes past the deep walk's
bounds and enforce mode refused every ``@pg.purpose`` view. Requests and
responses are read for their data instead (query, form and cookie values,
headers, the session once loaded, the user, what the application put on
them, a template response's context and request), and nothing the
application attached goes unread.

The notes site of test_django.py (tests/orm/django_site), with URL
configurations of this module's own around it. Django's settings are made
once per process: when another Django test file ran before this module in
the session, its site is used; else this module sets the site up the same way."""

from __future__ import annotations

import asyncio
import logging
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard._labels import MAX_DEPTH, foreign_reader

from .conftest import set_up_notes_site

SITE = Path(__file__).resolve().parent / "django_site"
DOCUMENT = "customer_data.content.document"
BODY = "Requests test note: renewal terms for Contoso"
ADMIN_FIRST = "purposeguard_requests_test_urls_admin_first"
ADMIN_LAST = "purposeguard_requests_test_urls_admin_last"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "OPTIONS": {
            "context_processors": ["django.template.context_processors.request"],
            "loaders": [
                (
                    "django.template.loaders.locmem.Loader",
                    {
                        "note.html": "<p>{{ object.body }}</p>",
                        "draft.html": "<p>{{ draft }}{{ view.draft }}</p>",
                    },
                )
            ],
        },
    }
]
# A labelled value read before any purpose was current (a cache, a global):
# only the check of what a guarded view returns sees it go out.
DRAFTS: dict[str, Any] = {}


# -- the views ------------------------------------------------------------------------------


@pg.purpose("advertising")
def choose_ad(request: Any) -> str:
    return "ad"


def _views() -> dict[str, Any]:
    from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
    from django.utils.decorators import method_decorator
    from django.views.generic import DetailView, TemplateView
    from djnotes.models import Note

    @pg.purpose("advertising")
    def house_ad(request: HttpRequest) -> HttpResponse:
        return HttpResponse("house ad, reads nothing")

    @pg.purpose("service.operations")
    def operations(request: HttpRequest) -> HttpResponse:
        note = Note.objects.filter(owner=request.user).first()
        return HttpResponse(f"length {len(note.body) if note else 0}")

    @pg.purpose("service.operations")
    async def operations_async(request: HttpRequest) -> HttpResponse:
        return HttpResponse("async operations")

    @method_decorator(pg.purpose("service.operations"), name="dispatch")
    class NoteDetail(DetailView):
        model = Note
        template_name = "note.html"

    @method_decorator(pg.purpose("advertising"), name="dispatch")
    class DraftAd(TemplateView):
        template_name = "draft.html"

        def get_context_data(self, **kwargs: Any) -> Any:
            context = super().get_context_data(**kwargs)
            if kwargs["where"] == "context":
                context["draft"] = DRAFTS["draft"]
            else:
                self.draft = DRAFTS["draft"]  # the template reads it as view.draft
            return context

    def attach(request: HttpRequest, how: str) -> JsonResponse:
        """The signed-in user's note put on the request the way ``how`` names,
        then the request handed to a function guarded for advertising."""
        note = Note.objects.filter(owner=request.user).first()
        assert note is not None
        if how == "attribute":
            request.note = note.body
        elif how == "private":
            request._note_cache = note.body
        elif how == "nested":
            request.notes = {"mine": [note]}
        elif how == "post":
            posted = request.POST.copy()
            posted["body"] = note.body
            request.POST = posted
        elif how == "get":
            query = QueryDict(mutable=True)
            query["q"] = note.body
            request.GET = query
        elif how == "cookie":
            request.COOKIES["draft"] = note.body
        elif how == "header":
            request.META["HTTP_X_NOTE"] = note.body
        elif how == "session":
            request.session["draft"] = note.body
        elif how == "user":
            request.user.draft = note.body
        elif how == "behind-deep":
            # An object nested past the walk's bounds (a client, a pool) set
            # first: what is set after it is read all the same.
            request.services = _nested(MAX_DEPTH + 4)
            request.note = note.body
        elif how == "cycle":
            # What holds the request back (as the messages storage does).
            request.holder = types.SimpleNamespace(request=request, note=note.body)
        else:
            raise AssertionError(how)
        return JsonResponse({"labels": sorted(pg.labels_of(request)), "refused": _refusals(request)})

    async def attach_async(request: HttpRequest) -> JsonResponse:
        note = await Note.objects.filter(title="requests-note").afirst()
        assert note is not None
        request.scope["state"] = {"draft": note.body}
        return JsonResponse({"labels": sorted(pg.labels_of(request)), "refused": _refusals(request)})

    return {
        "house_ad": house_ad,
        "operations": operations,
        "operations_async": operations_async,
        "note_detail": NoteDetail.as_view(),
        "draft_ad": DraftAd.as_view(),
        "attach": attach,
        "attach_async": attach_async,
    }


def _nested(depth: int) -> Any:
    inner: Any = "the bottom"
    for _ in range(depth):
        inner = types.SimpleNamespace(inner=inner)
    return inner


def _refusals(request: Any) -> list[list[str | None]]:
    try:
        choose_ad(request)
    except pg.PurposeViolation as refusal:
        return [[v.via, v.category, v.rule] for v in refusal.violations]
    return []


def _urlconfs() -> dict[str, types.ModuleType]:
    """The application's URLs ``include()``d, beside an admin site's (with a
    model registered) listed first, and listed last."""
    from django.contrib import admin
    from django.urls import include, path
    from djnotes.models import Note

    views = _views()
    site = admin.AdminSite(name="purposeguard-requests-admin")
    site.register(Note)
    app = [
        path("house-ad/", views["house_ad"]),
        path("operations/", views["operations"]),
        path("operations-async/", views["operations_async"]),
        path("notes/<int:pk>/", views["note_detail"]),
        path("draft-ad/<str:where>/", views["draft_ad"]),
        path("attach/<str:how>/", views["attach"]),
        path("attach-async/", views["attach_async"]),
    ]
    first = types.ModuleType(ADMIN_FIRST)
    first.urlpatterns = [path("admin/", site.urls), path("", include(app))]  # type: ignore[attr-defined]
    last = types.ModuleType(ADMIN_LAST)
    last.urlpatterns = [path("", include(app)), path("admin/", site.urls)]  # type: ignore[attr-defined]
    return {ADMIN_FIRST: first, ADMIN_LAST: last}


# -- the site ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    set_up_notes_site(tmp_path_factory)
    from django.contrib.auth.models import User
    from django.test import override_settings
    from djnotes.models import Note
    from purposeguard.integrations import django as pg_django

    # Another Django test file's site switches it off as it ends; left as found.
    was_instrumented = pg_django.is_instrumented()
    pg_django.instrument()
    modules = _urlconfs()
    sys.modules.update(modules)
    templated = override_settings(TEMPLATES=TEMPLATES)
    templated.enable()
    carol = User.objects.create_user("requests-carol", password="pw-carol")
    note = Note.objects.create(owner=carol, title="requests-note", body=BODY)
    try:
        yield {"carol": carol, "note": note}
    finally:
        Note.objects.filter(title="requests-note").delete()
        User.objects.filter(username__startswith="requests-").delete()
        templated.disable()
        for name in modules:
            del sys.modules[name]
        if not was_instrumented:
            pg_django.uninstrument()
        sys.path.remove(str(SITE))


@pytest.fixture(autouse=True)
def configured(site: dict[str, Any]) -> None:
    from purposeguard.integrations.django import _settings

    _settings.apply()
    DRAFTS.clear()


@pytest.fixture(params=[ADMIN_FIRST, ADMIN_LAST], ids=["admin-first", "admin-last"])
def routed(request: pytest.FixtureRequest, site: dict[str, Any]) -> Iterator[str]:
    from django.test import override_settings

    with override_settings(ROOT_URLCONF=request.param):
        yield request.param


@pytest.fixture
def admin_first(site: dict[str, Any]) -> Iterator[None]:
    from django.test import override_settings

    with override_settings(ROOT_URLCONF=ADMIN_FIRST):
        yield


def _client(site: dict[str, Any]) -> Any:
    from django.test import Client

    client = Client()
    client.force_login(site["carol"])
    return client


# -- allowed views answer ---------------------------------------------------------------------


def test_a_view_declared_for_ads_that_reads_nothing_answers(site: dict[str, Any], routed: str) -> None:
    with pg.testing.assert_no_violations():
        response = _client(site).get("/house-ad/")
    assert response.status_code == 200 and response.content == b"house ad, reads nothing"


def test_a_view_reading_what_its_purpose_allows_answers(site: dict[str, Any], routed: str) -> None:
    with pg.testing.assert_no_violations():
        response = _client(site).get("/operations/")
    assert response.status_code == 200 and response.content == f"length {len(BODY)}".encode()


def test_a_class_based_view_returning_a_template_response_answers(site: dict[str, Any], routed: str) -> None:
    with pg.testing.assert_no_violations():
        response = _client(site).get(f"/notes/{site['note'].pk}/")
    assert response.status_code == 200 and response.content.decode() == f"<p>{BODY}</p>"


def test_an_async_view_answers(site: dict[str, Any], routed: str) -> None:
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    async def call() -> Any:
        client = AsyncClient()
        await sync_to_async(client.force_login)(site["carol"])
        return await client.get("/operations-async/")

    with pg.testing.assert_no_violations():
        response = asyncio.run(call())
    assert response.status_code == 200 and response.content == b"async operations"


# -- what the application attached is read -----------------------------------------------------


@pytest.mark.parametrize(
    "how",
    [
        "attribute",
        "private",
        "nested",
        "post",
        "get",
        "cookie",
        "header",
        "session",
        "user",
        "behind-deep",
        "cycle",
    ],
)
def test_a_labelled_value_put_on_the_request_is_read(
    site: dict[str, Any], admin_first: None, how: str
) -> None:
    client = _client(site)
    if how == "post":
        response = client.post(f"/attach/{how}/", {"body": "typed in a form"})
    else:
        response = client.get(f"/attach/{how}/")
    assert response.status_code == 200, response.content
    found = response.json()
    assert DOCUMENT in found["labels"]
    # Refused for what the request carries, not because it could not be read.
    assert ["argument", DOCUMENT, "no-advertising"] in found["refused"]
    assert all(rule != "purposeguard.internal-error" for _, _, rule in found["refused"])


def test_a_labelled_value_in_an_asgi_requests_scope_is_read(site: dict[str, Any], admin_first: None) -> None:
    from django.test import AsyncClient

    response = asyncio.run(AsyncClient().get("/attach-async/"))
    assert response.status_code == 200, response.content
    found = response.json()
    assert DOCUMENT in found["labels"]
    assert ["argument", DOCUMENT, "no-advertising"] in found["refused"]


@pytest.mark.parametrize("where", ["context", "view"])
def test_a_template_response_is_read_for_what_it_renders(
    site: dict[str, Any], routed: str, where: str
) -> None:
    """A labelled value in the context, or on the view the template reads
    (``view.draft``), goes out with the response: the check of what the
    view returns refuses it."""
    DRAFTS["draft"] = pg.label("a draft read before any purpose", DOCUMENT)
    with pg.testing.capture() as violations:
        response = _client(site).get(f"/draft-ad/{where}/", HTTP_ACCEPT="application/json")
    assert response.status_code == 403
    assert [(v.via, v.category, v.rule) for v in violations] == [("return", DOCUMENT, "no-advertising")]
    assert "a draft" not in response.content.decode()


def test_a_template_response_is_read_for_its_request_and_each_context_value(site: dict[str, Any]) -> None:
    """The ``request`` context processor hands the request to the template:
    what the application put on it is read with the response."""
    from django.template.response import TemplateResponse
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.note = pg.label("on the request", DOCUMENT)
    response = TemplateResponse(request, "draft.html", {})
    assert pg.labels_of(response) == {DOCUMENT}
    request.holder = response  # each holds the other
    assert pg.labels_of(request) == {DOCUMENT} and pg.labels_of(response) == {DOCUMENT}
    # An object past the walk's bounds in the context hides nothing beside it.
    beside = TemplateResponse(
        RequestFactory().get("/"),
        "draft.html",
        {"client": _nested(MAX_DEPTH + 4), "draft": pg.label("in the context", DOCUMENT)},
    )
    assert pg.labels_of(beside) == {DOCUMENT}


def test_the_readers_go_with_the_orm_labelling(site: dict[str, Any]) -> None:
    from django.http import HttpRequest
    from django.template.response import TemplateResponse
    from purposeguard.integrations import django as pg_django

    assert foreign_reader(HttpRequest) is not None and foreign_reader(TemplateResponse) is not None
    pg_django.uninstrument()
    try:
        assert foreign_reader(HttpRequest) is None and foreign_reader(TemplateResponse) is None
    finally:
        pg_django.instrument()
    assert foreign_reader(HttpRequest) is not None


def test_a_value_on_the_request_past_the_walks_bounds_is_said_not_refused(
    site: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Requests carry objects past the bounds (a client, a pool) that hold no
    request data: the request is still read, and what was not looked at is
    said, by type, never silently passed over."""
    from django.test import RequestFactory
    from purposeguard.integrations.django import _requests

    class DeepServices:
        def __init__(self) -> None:
            self.inner = _nested(MAX_DEPTH + 4)

    _requests._SAID.discard(f"{DeepServices.__module__}.{DeepServices.__qualname__}")
    request = RequestFactory().get("/")
    request.services = DeepServices()  # type: ignore[attr-defined]
    request.note = pg.label("a note", DOCUMENT)  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="purposeguard"):
        assert pg.labels_of(request) == {DOCUMENT}
    said = [record.getMessage() for record in caplog.records if "nests past" in record.getMessage()]
    assert len(said) == 1 and "DeepServices" in said[0] and "a note" not in said[0]
