from django.urls import path

from . import views

urlpatterns = [
    path("notes/", views.notes),
    path("notes-async/", views.notes_async),
    path("ads/", views.ads),
    path("ads-async/", views.ads_async),
    path("ads-values/", views.ads_from_values),
    path("profile-ads/", views.profile_ads),
    path("ads-by-purpose/", views.ads_by_purpose),
    path("house-ad/", views.house_ad),
    path("email-ad/", views.email_ad),
    path("digest-feed/", views.digest_feed),
    path("digest-of-a-query/", views.digest_of_a_query),
    path("notes-feed/", views.notes_feed),
    path("whoami/", views.whoami),
    path("internal-notes/", views.internal_notes),
]
