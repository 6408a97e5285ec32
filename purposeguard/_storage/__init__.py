"""Where the audit log and the consent grants are kept, named by URL.

``open_storage(target)`` picks the backend: a path, ``":memory:"`` or
``sqlite:///PATH`` is SQLite (the embedded default); ``postgresql://...`` is
PostgreSQL (psycopg 3, ``pip install 'purposeguard[postgres]'``), which many
replicas can share. Both implement :class:`Storage`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import (
    FORMAT,
    GENESIS,
    VERSION,
    AuditError,
    ChainKey,
    Grant,
    Head,
    Pending,
    Revoke,
    Storage,
    StoredEntry,
    link,
    load_key_file,
    read_checkpoint,
)
from .sqlite import SYNCHRONOUS, SQLiteStorage

__all__ = [
    "FORMAT",
    "GENESIS",
    "SYNCHRONOUS",
    "VERSION",
    "AuditError",
    "ChainKey",
    "Grant",
    "Head",
    "Pending",
    "Revoke",
    "SQLiteStorage",
    "Storage",
    "StoredEntry",
    "is_url",
    "link",
    "load_key_file",
    "open_storage",
    "read_checkpoint",
    "redact",
]

POSTGRES_SCHEMES = ("postgresql", "postgres")
_POSTGRES_OPTIONS = frozenset({"connect_timeout", "stale_after", "heartbeat"})
_SQLITE_OPTIONS = frozenset({"timeout", "checkpoint_every"})


def _scheme(target: str) -> str | None:
    head, sep, _ = target.partition("://")
    if not sep or not head or not head.replace("+", "").replace("-", "").isalnum():
        return None
    return head.lower()


def is_url(target: object) -> bool:
    """Does ``target`` name storage by URL (``scheme://...``) rather than by path?"""
    return isinstance(target, str) and _scheme(target) is not None


def is_postgres(target: object) -> bool:
    return isinstance(target, str) and _scheme(target) in POSTGRES_SCHEMES


def redact(target: str) -> str:
    """``target`` with any password replaced by ``***``: what messages show."""
    if _scheme(target) not in POSTGRES_SCHEMES:
        return target
    scheme, _, rest = target.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    shown = f"{scheme}://{userinfo}{at}{host}{slash}{path}"
    # A password can also ride in the query string.
    if "password=" in shown:
        base, _, query = shown.partition("?")
        parts = ["password=***" if p.startswith("password=") else p for p in query.split("&")]
        shown = base + "?" + "&".join(parts)
    return shown


def sqlite_path(target: str) -> str:
    """The file named by a ``sqlite:`` URL, as SQLAlchemy spells them:
    ``sqlite:///relative.db``, ``sqlite:////absolute/path.db``, and
    ``sqlite://`` or ``sqlite:///:memory:`` for memory."""
    rest = target.partition("://")[2]
    if rest in ("", "/", "/:memory:"):
        return ":memory:"
    if not rest.startswith("/"):
        raise AuditError(
            f"malformed SQLite URL {target!r}: expected sqlite:///relative/path or sqlite:////absolute/path"
        )
    path = rest[1:]
    if "?" in path:
        raise AuditError(f"malformed SQLite URL {target!r}: query options are not supported")
    return path


def open_storage(
    target: str | Path,
    *,
    create: bool = True,
    readonly: bool = False,
    synchronous: str = "full",
    max_bytes: int | None = None,
    key: ChainKey | None = None,
    **options: Any,
) -> Storage:
    """The storage ``target`` names: a path or URL (see the module's docstring).

    ``options`` go to the backend: ``connect_timeout``, ``stale_after`` and
    ``heartbeat`` for PostgreSQL; ``timeout`` and ``checkpoint_every`` (records
    between signed checkpoints of a keyed log) for SQLite. ``key`` keys the chain (HMAC-SHA256).
    """
    postgres = isinstance(target, str) and _scheme(target) in POSTGRES_SCHEMES
    allowed = _POSTGRES_OPTIONS if postgres else _SQLITE_OPTIONS
    for name, value in options.items():
        if name not in allowed:
            raise AuditError(
                f"unknown storage option {name!r} for {'PostgreSQL' if postgres else 'SQLite'} "
                f"(expected {', '.join(sorted(allowed))})"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            unit = "records" if name == "checkpoint_every" else "seconds"
            raise AuditError(f"storage option {name} must be a positive number of {unit}, not {value!r}")
    options["key"] = key
    if isinstance(target, Path):
        return SQLiteStorage(
            target, create=create, readonly=readonly, synchronous=synchronous, max_bytes=max_bytes, **options
        )
    if not isinstance(target, str) or not target:
        raise AuditError(f"storage is named by a path or URL, not {target!r}")
    scheme = _scheme(target)
    if scheme is None:
        return SQLiteStorage(
            target, create=create, readonly=readonly, synchronous=synchronous, max_bytes=max_bytes, **options
        )
    if scheme == "sqlite":
        return SQLiteStorage(
            sqlite_path(target),
            create=create,
            readonly=readonly,
            synchronous=synchronous,
            max_bytes=max_bytes,
            **options,
        )
    if scheme in POSTGRES_SCHEMES:
        if max_bytes is not None:
            raise AuditError("max_bytes applies to SQLite files only; PostgreSQL has its own quotas")
        from .postgres import PostgresStorage

        return PostgresStorage(target, create=create, readonly=readonly, **options)
    raise AuditError(
        f"unsupported storage URL scheme {scheme!r} in {redact(target)!r} "
        "(expected a file path, sqlite:///PATH or postgresql://...)"
    )
