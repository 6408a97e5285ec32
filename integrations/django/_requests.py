"""Label reading for Django's requests and responses, handed to a guarded
view or service: what they carry, read best effort, without the framework's
objects around it.

A request holds its URL resolution (``resolver_match.tried`` reaches every
URL pattern of an ``include()``d URLconf, the admin's among them) and the
handler's stream; a template response holds its request and its view: read
as plain objects, they go past the walk's bounds, and a guarded view would
be refused for what holds no data."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from purposeguard._labels import EMPTY, merge_tenants, register_foreign, unregister_foreign
from purposeguard._walk import NO_LABELS, WalkLimit, _walk

from .._server import ASGI_FRAMEWORK_KEYS

__all__ = ["read", "unread"]

logger = logging.getLogger("purposeguard")

# A request's attributes that are Django's or purposeguard's own: the URL
# resolution, the body's stream and upload handlers (both hold the handler's
# input), ``auser`` (a partial of the request itself), this package's zone.
# Anything else on the request is read, whatever its name: an attribute the
# application sets (``request.note``, ``request._cache``) is never skipped.
_REQUEST_MACHINERY = frozenset(
    {
        "resolver_match",
        "_stream",
        "_upload_handlers",
        "auser",
        "_purposeguard_zone",
        "_purposeguard_incoming",
        "_purposeguard_view_purpose",
    }
)
# A response's attributes that are no content: the template to render and
# its engine, callbacks, closers; and what Django's test client puts on a
# response it hands back (the client, its handler's URL resolution, the
# templates it rendered). Its request is read, through the request's own
# reading: a template renders it (the ``request`` context processor).
_RESPONSE_MACHINERY = frozenset(
    {
        "template_name",
        "using",
        "_post_render_callbacks",
        "_resource_closers",
        "_handler_class",
        "client",
        "json",
        "resolver_match",
        "templates",
        "exc_info",
    }
)

# Ids of the requests and responses being read in this thread: what they hold
# often holds them back (the messages storage, ``auser``, a view's
# ``request``), and each reading is a walk of its own, which would start over.
_READING = threading.local()


def _reading() -> set[int]:
    found: set[int] | None = getattr(_READING, "ids", None)
    if found is None:
        found = _READING.ids = set()
    return found


def _environment(values: Mapping[Any, Any]) -> list[Any]:
    # WSGI's own entries (the input and error streams, the file wrapper);
    # the client's headers and CGI variables are read, as is what a WSGI
    # middleware stored under a name of its own.
    return [item for key, item in values.items() if not (type(key) is str and key.startswith("wsgi."))]


def _state(value: Any) -> dict[str, Any]:
    try:
        state = object.__getattribute__(value, "__dict__")
    except (AttributeError, TypeError):
        return {}
    return state if type(state) is dict else {}


def _request_values(request: Any) -> list[Any]:
    from django.contrib.sessions.backends.base import SessionBase

    held: list[Any] = []
    for key, item in _state(request).items():
        if key in _REQUEST_MACHINERY:
            continue
        if key in ("META", "environ") and isinstance(item, Mapping):
            held.extend(_environment(item))
        elif key == "scope" and isinstance(item, Mapping):
            held.extend(entry for name, entry in item.items() if name not in ASGI_FRAMEWORK_KEYS)
        elif isinstance(item, SessionBase):
            # What the session holds once loaded, without loading it (a check
            # must not read the session store); not its backend (a cache
            # client, a database connection).
            cache = _state(item).get("_session_cache")
            if isinstance(cache, Mapping):
                held.extend(cache.values())
        else:
            held.append(item)
    return held


def _response_values(response: Any) -> list[Any]:
    held: list[Any] = []
    for key, item in _state(response).items():
        if key in _RESPONSE_MACHINERY:
            continue
        if key == "context_data" and isinstance(item, Mapping):
            held.extend(item.values())
        else:
            held.append(item)
    return held


def _walk_each(held: Iterable[Any], purpose: str | None) -> tuple[frozenset[str], str | None]:
    """The labels in ``held`` and whose data they are, each value walked
    with an item budget of its own: one large value (a parsed body, a
    client object) must not use up the budget for what was put beside it.
    Plain and labelled scalars go in one walk, which they cannot use up.

    Best effort: a request commonly carries objects past the walk's bounds
    (a client, a pool, an app's services) that hold no request data, and
    failing closed on them would refuse every guarded call given the
    request. What such a value nests past the bounds is not seen by checks
    of the request; said once per type, so it is never silent."""
    labels: set[str] = set()
    tenant: str | None = None
    scalars: list[Any] = []
    for item in held:
        t = type(item)
        if t in NO_LABELS or getattr(t, "_pg_kind", None) is not None:
            scalars.append(item)
            continue
        try:
            found, owner = _walk((item,), purpose)
        except WalkLimit as limit:
            found, owner = limit.labels, limit.tenant
            _say_not_looked_at(t)
        labels.update(found)
        if owner is not None:
            tenant = merge_tenants(tenant, owner)
    if scalars:
        found, owner = _walk(scalars, purpose, strict=False)
        labels.update(found)
        if owner is not None:
            tenant = merge_tenants(tenant, owner)
    return (frozenset(labels) if labels else EMPTY), tenant


# Types of request values already said to go past the walk's bounds (bounded by the app's types).
_SAID: set[str] = set()


def _say_not_looked_at(t: type) -> None:
    name = f"{t.__module__}.{t.__qualname__}"
    if name in _SAID or len(_SAID) >= 256:
        return
    _SAID.add(name)
    logger.warning(
        "purposeguard: a %s on a Django request or response nests past the label walk's bounds; "
        "checks of the request did not look at all of it (a labelled value deep inside it is "
        "not seen there): pass guarded code the values it uses, not the request",
        name,
    )


class _Read:
    """A reader for what ``held`` picks out of a request or response. An
    instance met again inside its own reading (it holds itself through
    another object) counts as read: the outer reading walks its values."""

    def __init__(self, held: Any, kind: str) -> None:
        self._held = held
        self._kind = kind

    def labels(self, value: Any, purpose: str | None) -> frozenset[str]:
        return self._read(value, purpose)[0]

    def tenant(self, value: Any) -> str | None:
        return self._read(value, None)[1]

    def _read(self, value: Any, purpose: str | None) -> tuple[frozenset[str], str | None]:
        reading = _reading()
        key = id(value)
        if key in reading:
            # Being read further up this thread's stack: what it holds is counted there.
            return EMPTY, None
        reading.add(key)
        try:
            return _walk_each(self._held(value), purpose)
        finally:
            reading.discard(key)

    def label(self, value: Any, categories: frozenset[str], tenant: str | None) -> Any:
        raise TypeError(f"a Django {self._kind} is not data: label the values it holds")

    def strip(self, value: Any) -> Any:
        return value


_REQUESTS = _Read(_request_values, "request")
_RESPONSES = _Read(_response_values, "response")


def read() -> None:
    """Django's requests and responses (template responses among them) read through their readers."""
    from django.http import HttpRequest, HttpResponse

    register_foreign(HttpRequest, _REQUESTS)
    register_foreign(HttpResponse, _RESPONSES)


def unread() -> None:
    from django.http import HttpRequest, HttpResponse

    unregister_foreign(HttpRequest)
    unregister_foreign(HttpResponse)
