from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse

import purposeguard as pg

from .models import Note, Profile


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


@login_required
@pg.purpose("service.operations")
async def notes_async(request: HttpRequest) -> JsonResponse:
    user = await request.auser()
    bodies = [n.body async for n in Note.objects.filter(owner=user).order_by("id")]
    return JsonResponse({"notes": [summarise(b) for b in bodies], "tenant": pg.current_tenant()})


@login_required
def ads(request: HttpRequest) -> JsonResponse:
    note = Note.objects.filter(owner=request.user).first()
    return JsonResponse({"ad": choose_ad(note.body if note else "")})


@login_required
async def ads_async(request: HttpRequest) -> JsonResponse:
    user = await request.auser()
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
