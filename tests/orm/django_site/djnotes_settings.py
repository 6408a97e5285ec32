"""Settings of the test site; DATABASES and PURPOSEGUARD are filled in by the test fixture."""

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
ROOT_URLCONF = "djnotes.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "purposeguard.integrations.django",
    "djnotes",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "purposeguard.integrations.django.PurposeGuardMiddleware",
    "djnotes.account.AccountMiddleware",
]
PURPOSEGUARD = {
    "policy": "trust-center",
    "mode": "enforce",
    "tenant_from": "djnotes.tenancy.tenant_of",
}
