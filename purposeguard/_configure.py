"""``configure()``: the one place that wires a guard to its sinks.

It sits above the runtime and the sinks (telemetry, audit): the runtime
hands records to whoever subscribed and never imports a sink, and the sinks
are imported here only when ``configure()`` names them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import _signing
from ._policy import ConsentLookup, Policy
from ._runtime import Guard, install

__all__ = ["configure"]


def configure(
    policy: str | Path | Policy = "trust-center",
    *,
    mode: str | None = None,
    context_mode: str | None = None,
    telemetry: bool | None = None,
    audit: Any = None,
    consents: ConsentLookup | None = None,
    audit_key: Any = None,
    baggage_keys: Iterable[str | bytes] | None = None,
) -> Guard:
    """Load ``policy`` and make it the process's guard.

    ``policy`` is a pack name, a path to a TOML file or a :class:`Policy`.
    Nothing changes if anything fails: a bad policy is never half-loaded and
    the previous guard stays in force. ``telemetry=True`` is
    ``purposeguard.otel.instrument()``, ``False`` uninstruments, ``None``
    leaves telemetry as it is; ``audit`` (a path or an audit log) works the
    same way, with ``False`` to detach. ``audit_key`` (text or bytes of at
    least 32 bytes, or the Path of a key file) keys the audit chain of every
    log opened from then on. ``baggage_keys`` (a list of keys of at least 32
    bytes; the first signs, all verify) sign and verify the purpose, tenant
    and zone that travel in baggage between services; None leaves the keys
    as they are (by default ``PURPOSEGUARD_BAGGAGE_KEYS``, comma-separated).
    An unusable key raises :class:`~purposeguard.ConfigurationError`.
    """
    # Checked before anything changes: a bad key leaves the previous setup in force.
    keys = _signing.keys_from(baggage_keys) if baggage_keys is not None else None
    if keys is None:
        _signing.check_environment()
    loaded = policy if isinstance(policy, Policy) else Policy.load(policy)
    guard = Guard(loaded, mode=mode, context_mode=context_mode, consents=consents)
    # Imported before anything changes: without OpenTelemetry the previous
    # setup stays in force.
    otel = _otel() if telemetry is not None else None
    touches_audit = audit_key is not None or audit is not None
    chain_key = None
    sink = None
    if touches_audit:
        from . import audit as audit_module

        # Read (and checked) first, set only once the log it keys is open: a
        # log that fails to open leaves the previous key in force too.
        chain_key = audit_module.as_key(audit_key) if audit_key is not None else None
        if audit is not None and audit is not False:
            # Opened, not yet attached: records keep going to the previous sink.
            sink = audit_module.sink_for(audit, key=chain_key)
    if otel is not None:
        # Before the guard and the audit sink change: a meter provider that
        # refuses the instruments leaves the previous guard, telemetry, sink
        # and audit key in force.
        try:
            if telemetry:
                otel.instrument()
            else:
                otel.uninstrument()
        except BaseException:
            if sink is not None and sink is not audit:
                from . import audit as audit_module

                # Never attached: closes the log it opened, and a log file
                # it created is removed again (a failed configure leaves no file).
                audit_module.abandon(sink)
            raise
    # Everything that can fail on what was asked has run: now it all changes.
    if touches_audit:
        from . import audit as audit_module

        if audit is False:
            audit_module.detach()
        elif sink is not None:
            audit_module.attach(sink)
        if chain_key is not None:
            audit_module.set_key(chain_key)
    install(guard)
    if keys is not None:
        _signing.set_keys(keys)
    return guard


def _otel() -> Any:
    from . import otel

    return otel
