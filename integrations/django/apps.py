"""The app Django loads from ``INSTALLED_APPS``: its ``ready()`` switches purposeguard on."""

from __future__ import annotations

from .. import require

require("django", "django")

from django.apps import AppConfig  # noqa: E402 - after the check that names the extra


class PurposeGuardConfig(AppConfig):  # type: ignore[misc]
    name = "purposeguard.integrations.django"
    label = "purposeguard"
    verbose_name = "purposeguard"

    def ready(self) -> None:
        from . import _orm, _settings

        _settings.apply()
        _orm.instrument()
