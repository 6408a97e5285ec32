"""Switches for the optional sinks, imported only when configure() names them."""

from __future__ import annotations

from typing import Any


def set_telemetry(enabled: bool) -> None:
    from . import otel

    if enabled:
        otel.instrument()
    else:
        otel.uninstrument()


def set_audit(audit: Any) -> None:
    from . import audit as audit_module

    if audit is False:
        audit_module.detach()
    else:
        audit_module.attach(audit)
