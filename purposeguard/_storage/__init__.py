"""Where the audit log and the consent grants are kept, named by URL.

``open_storage(target)`` picks the backend: a path, ``":memory:"`` or
``sqlite:///PATH`` is SQLite (the embedded default); ``postgresql://...`` is
PostgreSQL (psycopg 3, ``pip install 'purposeguard[postgres]'``), which many
replicas can share. Both implement :class:`Storage`. A libpq connection
string (``host=... dbname=...``) is refused rather than taken for a file
name: PostgreSQL is named by URL.
"""

from __future__ import annotations

import re
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
    checkpoint_problem,
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
    "checkpoint_problem",
    "in_memory",
    "is_url",
    "looks_like_conninfo",
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


# The keywords of a libpq connection string (PostgreSQL 16's list).
_LIBPQ_KEYWORDS = (
    "host hostaddr port dbname user password passfile channel_binding connect_timeout "
    "client_encoding options application_name fallback_application_name keepalives "
    "keepalives_idle keepalives_interval keepalives_count tcp_user_timeout replication "
    "gssencmode sslmode requiressl sslcompression sslcert sslkey sslpassword sslcertmode "
    "sslrootcert sslcrl sslcrldir sslsni requirepeer require_auth ssl_min_protocol_version "
    "ssl_max_protocol_version krbsrvname gsslib gssdelegation service target_session_attrs "
    "load_balance_hosts"
).split()
_CONNINFO = re.compile(r"\s*(?:" + "|".join(_LIBPQ_KEYWORDS) + r")\s*=")
# A password in a connection string: quoted ('...', with \' and \\ escapes) or up to a space.
_CONNINFO_SECRET = re.compile(r"((?:^|\s)(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)")


def looks_like_conninfo(target: object) -> bool:
    """Does ``target`` read as a libpq connection string (``host=db
    dbname=audit user=svc ...``: it starts with a libpq keyword and ``=``)?
    Such a string is refused as a storage location, never taken for a file
    name (a file so named is written ``./NAME`` or ``sqlite:///NAME``)."""
    return isinstance(target, str) and _scheme(target) is None and _CONNINFO.match(target) is not None


def is_url(target: object) -> bool:
    """Does ``target`` name storage by URL (``scheme://...``) rather than by
    path? A libpq connection string counts as one too: it names no file, and
    opening it says to write a ``postgresql://`` URL instead."""
    return isinstance(target, str) and (_scheme(target) is not None or looks_like_conninfo(target))


def in_memory(target: object) -> bool:
    """Does ``target`` name an in-memory SQLite log (``:memory:``,
    ``sqlite://``, ``sqlite:///:memory:``), which nothing outlives the
    process that opened it?"""
    if isinstance(target, Path):
        target = str(target)
    if not isinstance(target, str):
        return False
    if target == ":memory:":
        return True
    if _scheme(target) == "sqlite":
        try:
            return sqlite_path(target) == ":memory:"
        except AuditError:
            return False  # malformed: opening it says why
    return False


def is_postgres(target: object) -> bool:
    return isinstance(target, str) and _scheme(target) in POSTGRES_SCHEMES


def redact(target: str) -> str:
    """``target`` with any password replaced by ``***``: what messages show.

    The password of ``scheme://user:password@host...`` is everything from
    the first ``:`` to the *last* ``@`` (as URL parsers read an ``@`` left
    unencoded), whatever it holds (``@``, ``/``, ``?``, ``#``): a URL that
    is ambiguous shows less rather than a piece of its password. So are
    ``password=`` in the query string and in a libpq connection string."""
    if looks_like_conninfo(target):
        return _CONNINFO_SECRET.sub(lambda m: m.group(1) + "***", target)
    scheme = _scheme(target)
    if scheme is None or scheme == "sqlite":
        return target  # a path: ':' and '@' are just characters of its name
    head, _, rest = target.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    shown = f"{head}://{userinfo}{at}{host}"
    # A password can also ride in the query string.
    if "password=" in shown:
        base, _, query = shown.partition("?")
        parts = [
            p.partition("=")[0] + "=***" if p.startswith(("password=", "sslpassword=")) else p
            for p in query.split("&")
        ]
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
    if looks_like_conninfo(target):
        # Never a file of that name (the password in it, printed by every
        # message naming the log); never echoed either.
        raise AuditError(
            "a libpq connection string (key=value words: host=..., dbname=...) does not name "
            "purposeguard's storage: write it as a URL, postgresql://USER:PASSWORD@HOST:PORT/DBNAME "
            "(an '@' or '/' in the password percent-encoded: %40, %2F); for a file so named, write ./NAME"
        )
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
