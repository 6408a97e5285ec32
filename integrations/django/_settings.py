"""The ``PURPOSEGUARD`` setting: read once, checked whole, applied in ``AppConfig.ready()``.

Its keys are those of :func:`purposeguard.configure` (read from its
signature, so a keyword ``configure`` gains is a key here at once), passed
to it as they are and checked by it, plus the middleware's own:
``tenant_from`` and ``read_baggage``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

import purposeguard as pg

# The middleware's own keys; every other key is a keyword of pg.configure.
MIDDLEWARE_KEYS = ("tenant_from", "read_baggage")
CONFIGURE_KEYS = tuple(inspect.signature(pg.configure).parameters)
KEYS = (*CONFIGURE_KEYS, *MIDDLEWARE_KEYS)

TenantFrom = Callable[[Any], "str | None"]


class _Loaded:
    tenant_from: TenantFrom | None = None
    read_baggage: bool = True


LOADED = _Loaded()


def _config() -> dict[str, Any]:
    config = getattr(settings, "PURPOSEGUARD", None)
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ImproperlyConfigured(f"PURPOSEGUARD must be a dict, not {type(config).__name__}")
    unknown = sorted(map(str, set(config) - set(KEYS)))
    if unknown:
        raise ImproperlyConfigured(
            f"PURPOSEGUARD has unknown keys {', '.join(map(repr, unknown))}; known keys: {', '.join(KEYS)}"
        )
    return config


def _imported(config: dict[str, Any], key: str) -> Any:
    """The setting's value, imported first when it is a dotted path."""
    found = config.get(key)
    if isinstance(found, str):
        try:
            return import_string(found)
        except ImportError as error:
            raise ImproperlyConfigured(f"PURPOSEGUARD[{key!r}] = {found!r}: {error}") from None
    return found


def tenant_resolver(config: dict[str, Any]) -> TenantFrom | None:
    found = _imported(config, "tenant_from")
    if found is None:
        return None
    if not callable(found):
        raise ImproperlyConfigured("PURPOSEGUARD['tenant_from'] must be a callable or its dotted path")
    return found  # type: ignore[no-any-return]


def _read_baggage(config: dict[str, Any]) -> bool:
    found = config.get("read_baggage", True)
    if not isinstance(found, bool):
        raise ImproperlyConfigured(f"PURPOSEGUARD['read_baggage'] must be True or False, not {found!r}")
    return found


def apply() -> None:
    """Configure purposeguard from the settings (a bad setting stops the start, nothing half-applied)."""
    config = _config()
    resolver = tenant_resolver(config)
    read_baggage = _read_baggage(config)
    options = {key: config[key] for key in CONFIGURE_KEYS if key in config}
    if "consents" in options:
        # A consent lookup is often the app's own code, which settings.py
        # cannot import before the apps are ready: its dotted path will do.
        options["consents"] = _imported(config, "consents")
    if options:
        # One configure() with everything: a second one in the app's own
        # ready() would replace this setup whole (its mode among it).
        pg.configure(**options)
    LOADED.tenant_from = resolver
    LOADED.read_baggage = read_baggage
