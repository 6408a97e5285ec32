"""Jinja2: a rendered template carries the labels of what it interpolated.

>>> import purposeguard as pg
>>> from purposeguard.integrations.jinja2 import Environment
>>> env = Environment(autoescape=True)
>>> page = env.from_string("<p>{{ body }}</p>").render(body=pg.label("hi", "customer_data.content.email"))
>>> sorted(pg.labels_of(page))
['customer_data.content.email']

Each ``{{ ... }}`` output passes through the environment's ``finalize``
before it is escaped or turned into text; purposeguard reads the labels (and
tenant) of each value there, and of the arguments of every filter (so
``{{ body|e }}``, ``{{ body|safe }}`` and ``{{ "%s"|format(body) }}`` count
too, though the filter's result is a plain string), and labels the rendered
text with all of them, autoescape on or off, across ``include``,
``extends``, macros and ``call`` blocks. A mail or page built from content is
then checked where it leaves (a guarded mailer, an egress guard, the zone).
Only what the template interpolates or filters counts: a variable passed in
and never output adds nothing.

:class:`Environment` is a drop-in ``jinja2.Environment``; :func:`instrument`
does the same to an environment a framework built (Flask's
``app.jinja_env``, Starlette's ``Jinja2Templates(...).env``). Instrument
before the first template is compiled: a template compiled without a
``finalize`` never calls it (the environment's template cache is cleared).

Needs Jinja2 (``pip install 'purposeguard[jinja2]'``).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Callable, Iterator
from contextvars import ContextVar
from typing import Any

from purposeguard._labels import EMPTY, NO_LABELS, labels_of, merge_tenants, relabel, tenant_of

try:
    import jinja2
except ImportError as error:  # pragma: no cover - the extra is missing
    raise ImportError(
        "purposeguard.integrations.jinja2 needs 'jinja2': pip install 'purposeguard[jinja2]'"
    ) from error

__all__ = ["Environment", "LabelledTemplate", "instrument"]

_MARK = "_purposeguard_instrumented"


class _Seen:
    """What one render interpolated: categories and the tenant they belong to."""

    __slots__ = ("labels", "tenant", "any")

    def __init__(self) -> None:
        self.labels: frozenset[str] = EMPTY
        self.tenant: str | None = None
        self.any = False

    def note(self, value: Any) -> None:
        if type(value) in NO_LABELS:
            return
        found = labels_of(value)
        if found:
            self.labels = self.labels | found
            owner = tenant_of(value)
            self.tenant = owner if not self.any else merge_tenants(self.tenant, owner)
            self.any = True


_RENDER: ContextVar[_Seen | None] = ContextVar("purposeguard.jinja2.render", default=None)


def _labelled(text: str, seen: _Seen) -> str:
    if not seen.labels:
        return text
    # Not a new read: the values were labelled (and checked) where they
    # were read; the page only carries them on.
    return relabel(text, *sorted(seen.labels), tenant=seen.tenant)


def _start() -> tuple[_Seen, Any]:
    seen = _Seen()
    return seen, _RENDER.set(seen)


def _finish(seen: _Seen, token: Any) -> None:
    _RENDER.reset(token)
    outer = _RENDER.get()
    if outer is not None and seen.labels:
        # A template rendered while rendering another (a filter, a macro
        # from Python) hands what it saw to the outer page.
        outer.labels = outer.labels | seen.labels
        outer.tenant = seen.tenant if not outer.any else merge_tenants(outer.tenant, seen.tenant)
        outer.any = True


class LabelledTemplate(jinja2.Template):
    """A template whose rendered text carries the labels of what it interpolated."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        seen, token = _start()
        try:
            text = super().render(*args, **kwargs)
        finally:
            _finish(seen, token)
        return _labelled(text, seen)

    async def render_async(self, *args: Any, **kwargs: Any) -> str:
        seen, token = _start()
        try:
            text = await super().render_async(*args, **kwargs)
        finally:
            _finish(seen, token)
        return _labelled(text, seen)

    def generate(self, *args: Any, **kwargs: Any) -> Iterator[str]:
        # Each chunk carries what the render had seen when it was produced.
        seen = _Seen()
        chunks = super().generate(*args, **kwargs)
        while True:
            token = _RENDER.set(seen)
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            finally:
                _RENDER.reset(token)
            yield _labelled(chunk, seen)

    async def generate_async(self, *args: Any, **kwargs: Any) -> AsyncGenerator[str, object]:
        seen = _Seen()
        chunks = super().generate_async(*args, **kwargs)
        while True:
            token = _RENDER.set(seen)
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            finally:
                _RENDER.reset(token)
            yield _labelled(chunk, seen)


def _finalizer(previous: Callable[..., Any] | None) -> Callable[..., Any]:
    def finalize(value: Any) -> Any:
        seen = _RENDER.get()
        if seen is not None:
            seen.note(value)
        return value if previous is None else previous(value)

    if previous is not None and getattr(previous, "jinja_pass_arg", None) is not None:
        # A finalize that takes the context or environment first: keep its calling convention.
        def finalize_passing(first: Any, value: Any) -> Any:
            seen = _RENDER.get()
            if seen is not None:
                seen.note(value)
            return previous(first, value)

        finalize_passing.jinja_pass_arg = previous.jinja_pass_arg  # type: ignore[attr-defined]
        return finalize_passing
    return finalize


def _watched_filter(fn: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if getattr(fn, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(fn)  # keeps jinja_pass_arg, which tells Jinja what to pass first
    def watched(*args: Any, **kwargs: Any) -> Any:
        seen = _RENDER.get()
        if seen is not None:
            for value in args[skip:]:
                seen.note(value)
            for value in kwargs.values():
                seen.note(value)
        return fn(*args, **kwargs)

    watched.__purposeguard_filter__ = fn  # type: ignore[attr-defined]
    return watched


def instrument(env: Any) -> Any:
    """Make ``env`` (a ``jinja2.Environment``) label what its templates render.

    Idempotent. Returns ``env``. Filters added to ``env.filters`` later are
    not watched (their output still is, through ``finalize``)."""
    if not isinstance(env, jinja2.Environment):
        raise TypeError(f"instrument() needs a jinja2.Environment, not {type(env).__name__}")
    if getattr(env, _MARK, False):
        return env
    env.finalize = _finalizer(env.finalize)
    for name, fn in list(env.filters.items()):
        if not hasattr(fn, "__purposeguard_filter__"):
            env.filters[name] = _watched_filter(fn)
    if not issubclass(env.template_class, LabelledTemplate):
        base = env.template_class
        if base is jinja2.Template:
            env.template_class = LabelledTemplate
        else:
            env.template_class = type(base.__name__, (LabelledTemplate, base), {})
    cache = getattr(env, "cache", None)
    if cache is not None:
        cache.clear()
    setattr(env, _MARK, True)
    return env


class Environment(jinja2.Environment):
    """A ``jinja2.Environment`` whose templates label what they render; see the module."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        instrument(self)
