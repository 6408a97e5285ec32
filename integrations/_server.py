"""What the ASGI and WSGI middleware share: route purposes, path patterns,
the 403 body, and the per-request decisions that do not depend on a framework."""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
from collections.abc import Callable, Mapping
from contextvars import Token
from typing import Any, TypeVar

from purposeguard._context import PURPOSE
from purposeguard._errors import PurposeViolation, UnknownKeyError
from purposeguard._guarded import PURPOSE_MARK
from purposeguard._labels import EMPTY, SERIALIZER_REFUSALS
from purposeguard._runtime import check_zone, get_guard, require_purpose_key
from purposeguard._state import remember

from .baggage import clean_tenant

__all__ = [
    "PathPurposes",
    "PurposeCache",
    "check_purpose",
    "enter_purpose",
    "route_purpose",
    "violation_body",
    "violation_in",
]

F = TypeVar("F", bound=Callable[..., Any])
MARK = PURPOSE_MARK


def route_purpose(key: str) -> Callable[[F], F]:
    """Declare the purpose of a route for the purposeguard middleware.

    >>> @route_purpose("service.operations")
    ... async def troubleshoot(request): ...

    The middleware finds the route before the handler runs and keeps the
    purpose current for the whole request: the handler, a streaming body and
    background tasks. The handler itself is not wrapped (``@pg.purpose`` on a
    handler works too, and also checks its arguments).
    """
    key = require_purpose_key(key)

    def mark(fn: F) -> F:
        try:
            setattr(fn, MARK, key)
        except (AttributeError, TypeError):
            raise TypeError(f"cannot mark {fn!r} with a purpose") from None
        return fn

    return mark


def mark_through_partials(view: Any) -> tuple[str | None, Any]:
    """The purpose marked on ``view`` or on a ``functools.partial`` around
    it (outermost first, as routers call it), and the callable at the
    bottom of the partials."""
    while isinstance(view, functools.partial):
        key = getattr(view, MARK, None)
        if isinstance(key, str):
            return key, view
        view = view.func
    key = getattr(view, MARK, None)
    return (key if isinstance(key, str) else None), view


def method_handler(view_class: Any, method: str) -> Any:
    """The method of a class-based view serving the HTTP ``method``, HEAD
    served by ``get`` when the class has no ``head`` (as Starlette, Flask
    and Django dispatch it)."""
    handler = getattr(view_class, method.lower(), None)
    if handler is None and method == "HEAD":
        handler = getattr(view_class, "get", None)
    return handler


def view_mark(view: Any, method: str | None, dispatch: str) -> str | None:
    """The purpose marked on the view a framework routed to: the function
    (a ``functools.partial`` read through), or for a class-based view
    (``as_view()``, which keeps ``view_class``) its class, the method serving
    ``method``, or the method named ``dispatch`` that serves every method
    (``dispatch_request`` on Flask, ``dispatch`` on Django)."""
    key, view = mark_through_partials(view)
    if key is None:
        view_class = getattr(view, "view_class", None)
        if view_class is not None:
            key = getattr(view_class, MARK, None)
            if key is None and method:
                key = getattr(method_handler(view_class, method), MARK, None)
            if key is None:
                key = getattr(getattr(view_class, dispatch, None), MARK, None)
    return key if isinstance(key, str) else None


# What a connection's scope holds that is the framework's, not the request's:
# the app, its router and routes (FastAPI's reach pydantic's models), exit stacks.
ASGI_FRAMEWORK_KEYS = frozenset(
    {
        "app",
        "router",
        "route",
        "endpoint",
        "fastapi_astack",
        "fastapi_inner_astack",
        "fastapi_function_astack",
        "starlette.exception_handlers",
        "extensions",
    }
)


_SEGMENT = re.compile(r"\{[^{}/]+\}|\*\*|\*")


def _compile(pattern: str) -> re.Pattern[str]:
    """``/mail/{id}`` (one segment), ``/files/*`` (within a segment), ``/api/**``
    (anything below ``/api``, and ``/api`` itself). A path with a trailing
    slash matches as the one without: routers serve both, and a route left
    without its purpose by a slash would run unchecked."""
    if pattern.endswith("/**"):
        return re.compile(_regex(pattern[:-3]) + "(?:/.*)?")
    if pattern.endswith("/") and pattern != "/":
        pattern = pattern[:-1]
    return re.compile(_regex(pattern) + ("" if pattern == "/" else "/?"))


def _regex(pattern: str) -> str:
    out = []
    position = 0
    for match in _SEGMENT.finditer(pattern):
        out.append(re.escape(pattern[position : match.start()]))
        token = match.group()
        if token == "**" or token.endswith(":path}"):
            out.append(".*")
        else:
            out.append("[^/]*" if token == "*" else "[^/]+")
        position = match.end()
    out.append(re.escape(pattern[position:]))
    return "".join(out)


class PathPurposes:
    """A mapping from path patterns to purposes; the most literal pattern wins."""

    def __init__(self, purposes: Mapping[str, str] | None) -> None:
        entries = []
        for pattern, key in (purposes or {}).items():
            if not isinstance(pattern, str) or not pattern.startswith("/"):
                raise ValueError(f"a path pattern must start with '/': {pattern!r}")
            try:
                require_purpose_key(key)
            except UnknownKeyError:
                # The pattern is the app's own text: named, as a marked route is.
                raise UnknownKeyError(
                    key, "purpose", hint=f"given for the path pattern {pattern!r}"
                ) from None
            literal = len(_SEGMENT.sub("", pattern))
            entries.append((literal, pattern, _compile(pattern), key))
        entries.sort(key=lambda e: (-e[0], e[1]))
        self._entries = [(regex, key) for _, _, regex, key in entries]
        self._exact = {p: k for _, p, _, k in entries if not _SEGMENT.search(p)}

    def __bool__(self) -> bool:
        return bool(self._entries)

    def match(self, path: str) -> str | None:
        key = self._exact.get(path)
        if key is not None:
            return key
        for regex, key in self._entries:
            if regex.fullmatch(path):
                return key
        return None


class PurposeCache:
    """The purpose per route and the tenant per raw header value, bounded.

    Past ``LIMIT`` entries a cache forgets its oldest eighth (looked up
    again when next met): partial and local, never the whole cache at once.
    """

    LIMIT = 4096

    def __init__(self) -> None:
        self.routes: dict[Any, str | None] = {}
        # Keyed by the header as the server hands it over: bytes (ASGI) or
        # latin-1 decoded text (WSGI).
        self.tenants: dict[bytes | str, str] = {}
        self.said_twice = False

    def tenant(self, raw: bytes | str, source: str) -> str | None:
        """A tenant header value, validated once per distinct value (bad ones warn every time)."""
        # Only the exact types servers hand over are cached: a labelled
        # value equal to a known tenant is validated, and refused.
        exact = type(raw) is bytes or type(raw) is str
        found = self.tenants.get(raw) if exact else None
        if found is None:
            wire = wire_bytes(raw) if isinstance(raw, str) else raw
            if b"," in wire:
                # The header came twice (a WSGI server joins the values with
                # commas; the ASGI middleware passes a comma for it): a
                # gateway that sets it did not strip the client's own. Said
                # once per middleware: a client can send it on every request.
                if self.said_twice:
                    return None
                self.said_twice = True
                logging.getLogger("purposeguard").warning(
                    "purposeguard: %s came more than once (or holds a list): no tenant taken from it; "
                    "the gateway must replace the header a client sent, not add its own beside it",
                    source,
                )
                return None
            found = clean_tenant(wire, source)
            if found is not None and exact:
                remember(self.tenants, raw, found, self.LIMIT)
        return found

    def remember(self, route: Any, key: str | None) -> str | None:
        remember(self.routes, route, key, self.LIMIT)
        return key


def wire_bytes(text: str) -> bytes:
    """A WSGI header value as the bytes on the wire (PEP 3333 decodes them
    as latin-1). Text that latin-1 cannot hold came from no wire: as UTF-8
    it is non-ASCII, and refused as such."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def check_purpose(key: str, state: Any, function: str) -> None:
    """Check the zone's categories against the request's purpose
    (``via="context"``): only a zone that already holds something has any."""
    if state.categories:
        check_zone(get_guard(), state, key, EMPTY, function, judged_for=None)


def enter_purpose(key: str, state: Any, function: str) -> Token[str | None]:
    """Make ``key`` the current purpose for the request and check the zone's
    categories against it (``via="context"``); the caller resets the token.

    A bare ContextVar set (not ``with pg.purpose``): this runs per request,
    and the zone check only matters when the zone already holds something.
    """
    token = PURPOSE.set(key)
    if state.categories:
        try:
            check_zone(get_guard(), state, key, EMPTY, function, judged_for=None)
        except BaseException:
            PURPOSE.reset(token)
            raise
    return token


# Exception groups (task groups wrap what their tasks raise).
_GROUPS: tuple[type[BaseException], ...]
EXCEPTION_GROUP: type[Exception] | None
if sys.version_info >= (3, 11):
    _GROUPS = (BaseExceptionGroup,)  # noqa: F821 - builtin since 3.11
    EXCEPTION_GROUP = ExceptionGroup  # noqa: F821
else:  # Python 3.10: the backport anyio brings, when installed
    try:
        from exceptiongroup import BaseExceptionGroup as _BaseGroup  # type: ignore[import-not-found,unused-ignore]
        from exceptiongroup import ExceptionGroup as _Group  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        _GROUPS, EXCEPTION_GROUP = (), None
    else:
        _GROUPS, EXCEPTION_GROUP = (_BaseGroup,), _Group


def violation_in(error: BaseException) -> PurposeViolation | None:
    """The purpose violation ``error`` is, or that an exception group holds.

    A violation raised in a task group (``anyio``, ``asyncio.TaskGroup``)
    arrives wrapped in an ``ExceptionGroup``; a group holding at least one
    violation is answered as a violation (with all the violations it holds),
    since its other errors are what the violation cut short.
    """
    if isinstance(error, PurposeViolation):
        return error
    if type(error).__name__ == "PydanticSerializationError":
        # pydantic wraps what a serializer raises (a declared field written
        # out in JSON mode under a purpose that may not read it), and its
        # JSON writer keeps only the message: the refusal is the one kept
        # where it was raised, if the message is its.
        cause = error.__cause__
        if isinstance(cause, PurposeViolation):
            return cause
        kept = SERIALIZER_REFUSALS[0]
        if isinstance(kept, PurposeViolation) and str(kept) in str(error):
            return kept
        return None
    if not _GROUPS or not isinstance(error, _GROUPS):
        return None
    found: list[PurposeViolation] = []

    def walk(current: BaseException, depth: int) -> None:
        if isinstance(current, PurposeViolation):
            found.append(current)
        elif depth < 16 and isinstance(current, _GROUPS):
            for inner in current.exceptions:  # type: ignore[attr-defined,unused-ignore]
                walk(inner, depth + 1)

    walk(error, 0)
    if not found:
        return None
    if len(found) == 1:
        return found[0]
    return PurposeViolation([v for violation in found for v in violation.violations])


def say_cut_off(method: object, route: str | None, violation: PurposeViolation) -> None:
    """A violation raised once the response had started (a streamed body):
    its status is sent and cannot become a 403, so the server cuts the
    response off. Said in purposeguard's words, next to the server's own
    report, so the cut is not read as a network fault. ``route`` is the
    matched route's template, never the path (a path can quote what a
    client typed)."""
    request = method if isinstance(method, str) and method.isalpha() else "a request"
    if route is not None:
        request = f"{request} {route}"
    logging.getLogger("purposeguard").warning(
        "purposeguard: a purpose violation was raised after the response to %s had started "
        "(rule %s, purpose %s, category %s): its status was already sent, so the response is "
        "cut off instead of answered with a 403; read what a streamed body needs before the "
        "response starts to have it refused with a 403",
        request,
        violation.rule,
        violation.purpose,
        violation.category,
    )


def violation_body(error: PurposeViolation) -> bytes:
    """The JSON body of a 403: rule, purpose and category of each violation, never the data.

    ``{"error": "purpose_violation", "rule", "decided_by", "purpose", "category",
    "via", "violations": [...]}``, the top-level fields being those of the
    first violation. ``rule`` is the id of the policy rule that denied, or
    null when no rule matched and the policy's default denied; ``decided_by``
    says which: ``"rule"`` or ``"policy default"``.
    """
    items = [
        {
            "rule": v.rule,
            "decided_by": "rule" if v.rule else "policy default",
            "purpose": v.purpose,
            "category": v.category,
            "via": v.via,
        }
        for v in error.violations
    ]
    first = (
        items[0]
        if items
        else {"rule": None, "decided_by": "policy default", "purpose": None, "category": None, "via": None}
    )
    document = {"error": "purpose_violation", **first, "violations": items}
    return json.dumps(document, sort_keys=True).encode("utf-8")


def resolve_tenant_header(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError("tenant_header must be a header name")
    return name.lower()
