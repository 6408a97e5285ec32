import functools
from collections.abc import Awaitable, Callable
from typing import Any

import django
from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

import purposeguard as pg

from .models import Note, Profile

AsyncView = Callable[[HttpRequest], Awaitable[HttpResponse]]


async def current_user(request: HttpRequest) -> Any:
    # request.auser() is Django 5.0+; before it the lazy user is loaded in a thread.
    if hasattr(request, "auser"):
        return await request.auser()
    return await sync_to_async(
        lambda: request.user._wrapped if request.user.is_authenticated else request.user
    )()


def async_login_required(view: AsyncView) -> AsyncView:
    """login_required for an async view (Django's own is async-aware from 5.0 only)."""
    if django.VERSION >= (5, 0):
        return login_required(view)  # type: ignore[return-value]

    @functools.wraps(view)
    async def checked(request: HttpRequest) -> HttpResponse:
        user = await current_user(request)
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        return await view(request)

    return checked


@pg.purpose("advertising")
def choose_ad(text: str) -> str:
    return "ad-for-" + str(len(text))


@pg.purpose("service.operations")
def summarise(text: str) -> str:
    return text[:20]


@login_required
@pg.purpose("service.operations")
def notes(request: HttpRequest) -> JsonResponse:
    mine = Note.objects.filter(owner=request.user).order_by("id")
    return JsonResponse({"notes": [summarise(n.body) for n in mine], "tenant": pg.current_tenant()})


@async_login_required
@pg.purpose("service.operations")
async def notes_async(request: HttpRequest) -> JsonResponse:
    user = await current_user(request)
    bodies = [n.body async for n in Note.objects.filter(owner=user).order_by("id")]
    return JsonResponse({"notes": [summarise(b) for b in bodies], "tenant": pg.current_tenant()})


@login_required
def ads(request: HttpRequest) -> JsonResponse:
    note = Note.objects.filter(owner=request.user).first()
    return JsonResponse({"ad": choose_ad(note.body if note else "")})


@async_login_required
async def ads_async(request: HttpRequest) -> JsonResponse:
    user = await current_user(request)
    note = await Note.objects.filter(owner=user).afirst()
    return JsonResponse({"ad": choose_ad(note.body if note else "")})


@login_required
def ads_from_values(request: HttpRequest) -> JsonResponse:
    bodies = Note.objects.filter(owner=request.user).values_list("body", flat=True)
    return JsonResponse({"ads": [choose_ad(b) for b in bodies]})


@login_required
@pg.purpose("service.personalization")
def profile_ads(request: HttpRequest) -> JsonResponse:
    # Built with an f-string, the text carries no label of its own: the zone
    # that loaded the note still remembers the content.
    note = Note.objects.filter(owner=request.user).first()
    text = f"about {note.body if note else ''}!"
    return JsonResponse({"ad": choose_ad(text)})


@login_required
@pg.purpose("advertising")
def ads_by_purpose(request: HttpRequest) -> JsonResponse:
    # Declared for advertising, the view may not even read the notes.
    notes = list(Note.objects.filter(owner=request.user))
    return JsonResponse({"ads": len(notes)})


@login_required
def house_ad(request: HttpRequest) -> JsonResponse:
    # The account middleware loaded the user's profile; this ad reads none of it.
    return JsonResponse({"ad": choose_ad("house ad: try the mobile app")})


@login_required
def email_ad(request: HttpRequest) -> JsonResponse:
    # The profile's email, laundered through an f-string: the text carries no
    # label, the zone that read the email remembers it.
    profile = Profile.objects.filter(user=request.user).first()
    return JsonResponse({"ad": choose_ad(f"offers for {profile.email if profile else ''}")})


@login_required
@pg.purpose("service.communications")
def digest_feed(request: HttpRequest) -> StreamingHttpResponse:
    # Service communications may carry customer data, not content: the note
    # bodies are read while the response streams, after the view returned.
    return StreamingHttpResponse(_digest(request.user.pk))


def _digest(owner_id: int) -> Any:
    # Nothing labelled among its locals when the view returns: the rows load as it runs.
    for note in Note.objects.filter(owner_id=owner_id).order_by("id"):
        yield f"your note says: {note.body}\n"


@login_required
@pg.purpose("service.communications")
def digest_of_a_query(request: HttpRequest) -> StreamingHttpResponse:
    notes = Note.objects.filter(owner=request.user).order_by("id").iterator()
    return StreamingHttpResponse(f"your note says: {note.body}\n" for note in notes)


@login_required
@pg.purpose("service.operations")
def notes_feed(request: HttpRequest) -> StreamingHttpResponse:
    notes = Note.objects.filter(owner=request.user).order_by("id").iterator()
    return StreamingHttpResponse(f"{summarise(note.body)}\n" for note in notes)


# -- called by another service: what arrives in its signed baggage governs ---------------


def whoami(request: HttpRequest) -> JsonResponse:
    # No login and no purpose of its own: what this service holds of its caller.
    zone = pg.current_zone()
    return JsonResponse(
        {
            "purpose": pg.current_purpose(),
            "tenant": pg.current_tenant(),
            "zone": sorted(zone.categories) if zone is not None else None,
            "data_tenant": zone.data_tenant() if zone is not None else None,
        }
    )


def internal_notes(request: HttpRequest) -> JsonResponse:
    # An internal endpoint without a purpose of its own: the caller's governs it.
    return JsonResponse({"notes": [note.body for note in Note.objects.order_by("id")]})
