"""Labels at the source, a zone per request and 403s for Django.

In ``settings.py``::

    INSTALLED_APPS = [..., "purposeguard.integrations.django"]
    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "purposeguard.integrations.django.PurposeGuardMiddleware",
    ]
    PURPOSEGUARD = {
        "policy": "trust-center",            # pack name, path, or Policy
        "mode": "enforce",                   # optional: enforce | trace | off
        "tenant_from": "notes.tenancy.tenant_of",  # callable(request) -> str | None
    }

and in ``models.py``, one declaration per field::

    class Note(models.Model):
        __purposeguard_tenant__ = "owner"     # the field holding the row's tenant
        owner = models.ForeignKey(User, on_delete=models.CASCADE)
        body: Annotated[str, pg.Category("customer_data.content.document")] = models.TextField()

Listing the app switches ORM labelling on (its ``AppConfig.ready()``
configures purposeguard from ``PURPOSEGUARD`` and checks every model): model
instances loaded from the database have labelled field values (with the
row's tenant), and so do the rows of ``values()`` and ``values_list()``
(also for related fields, ``"author__email"``, and annotations computed
from a labelled field). A request's zone learns an instance's categories
when a declared field is read, not when the row is loaded: the login layer
loading the user does not taint a request that never reads the user's
fields. The middleware opens a zone per request (sync and
async views), names its tenant with ``tenant_from(request)`` once the
request is authenticated (in ``process_view``), and answers a
:class:`~purposeguard.PurposeViolation` with a 403: JSON for requests that
accept or send JSON, an HTML page otherwise; neither ever holds the data.
``@pg.purpose`` works on views as on any function.

Needs ``pip install 'purposeguard[django]'``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PurposeGuardMiddleware", "instrument", "is_instrumented", "uninstrument"]


def __getattr__(name: str) -> Any:
    # Django is imported only when one of these is used, never by importing
    # this package (Django imports it itself, by name, from INSTALLED_APPS).
    if name in ("PurposeGuardMiddleware", "instrument", "uninstrument", "is_instrumented"):
        from .. import require

        require("django", "django")
    if name == "PurposeGuardMiddleware":
        from .middleware import PurposeGuardMiddleware

        return PurposeGuardMiddleware
    if name in ("instrument", "uninstrument", "is_instrumented"):
        from . import _orm

        return getattr(_orm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
