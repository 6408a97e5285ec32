"""The ``PURPOSEGUARD`` setting: read once, checked whole, applied in ``AppConfig.ready()``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

import purposeguard as pg

KEYS = ("policy", "mode", "context_mode", "tenant_from")

TenantFrom = Callable[[Any], "str | None"]


class _Loaded:
    tenant_from: TenantFrom | None = None


LOADED = _Loaded()


def _config() -> dict[str, Any]:
    config = getattr(settings, "PURPOSEGUARD", None)
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ImproperlyConfigured(f"PURPOSEGUARD must be a dict, not {type(config).__name__}")
    unknown = sorted(set(config) - set(KEYS))
    if unknown:
        raise ImproperlyConfigured(
            f"PURPOSEGUARD has unknown keys {', '.join(map(repr, unknown))}; known keys: {', '.join(KEYS)}"
        )
    return config


def tenant_resolver(config: dict[str, Any]) -> TenantFrom | None:
    found = config.get("tenant_from")
    if found is None:
        return None
    if isinstance(found, str):
        try:
            found = import_string(found)
        except ImportError as error:
            raise ImproperlyConfigured(
                f"PURPOSEGUARD['tenant_from'] = {config['tenant_from']!r}: {error}"
            ) from None
    if not callable(found):
        raise ImproperlyConfigured("PURPOSEGUARD['tenant_from'] must be a callable or its dotted path")
    return found  # type: ignore[no-any-return]


def apply() -> None:
    """Configure purposeguard from the settings (a bad setting stops the start, nothing half-applied)."""
    config = _config()
    resolver = tenant_resolver(config)
    if "policy" in config or "mode" in config or "context_mode" in config:
        pg.configure(
            config.get("policy", "trust-center"),
            mode=config.get("mode"),
            context_mode=config.get("context_mode"),
        )
    LOADED.tenant_from = resolver
