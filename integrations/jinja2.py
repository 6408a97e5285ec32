"""Jinja2: a rendered template carries the labels of what it interpolated.

>>> import purposeguard as pg
>>> from purposeguard.integrations.jinja2 import Environment
>>> env = Environment(autoescape=True)
>>> page = env.from_string("<p>{{ body }}</p>").render(body=pg.label("hi", "customer_data.content.email"))
>>> sorted(pg.labels_of(page))
['customer_data.content.email']

A render labels its text with the labels (and tenant) of every labelled
value the template read on its way to the output, whatever the path:

- each ``{{ ... }}`` value (the environment's ``finalize``, autoescape on or
  off) and every argument of a filter (``{{ body|e }}``, ``|format``,
  ``|join``: the filter's result may be a plain string);
- every operand of ``~``; the concatenation itself is labelled too, so a
  ``{% set x = 'Hi ' ~ body %}`` or a namespace attribute built with ``~``
  carries the labels when output later or read from ``make_module()``;
- every argument of a call (macros, ``caller()``, ``"".join(items)``,
  ``"{}".format(body)``);
- every variable the template reads from its context or globals, and the
  object of every ``a.b`` / ``a[b]`` (an attribute of an object labelled
  with ``pg.label(obj, ...)`` is itself plain). Containers are looked into
  where their items are output, filtered, joined or passed to a call, not
  where they are read, to keep a render without labels cheap.

A value read only to decide (``{% if body %}``, ``{{ body|length }}``) labels
the page too: over-labelling rather than under-labelling. A variable passed
in and never read adds nothing. This holds across ``include``, ``extends``,
``import``, macros and ``call`` blocks, in ``render``, ``render_async``, and
in each chunk of ``generate``, ``generate_async`` and ``stream`` (a chunk
carries what the render had read by the time it was produced; buffered
streams and ``TemplateStream.dump`` included), and for sandboxed
environments instrumented the same way. A page is then checked where it
leaves (a guarded mailer, an egress guard, the zone).

A labelled value read from a plain dict or object (``d.k``, ``order.email``)
labels the page wherever it goes next, also where no hook sees it
(``'%s' % (d.k,)``, a decision ``{% if d.k == ... %}``, a filter registered
after :func:`instrument`, a ``finalize`` replaced later).

Not covered: ``Markup(body)`` or ``markupsafe.escape(body)`` made outside the
template returns a Markup without labels, so there is nothing to carry;
label the Markup's source where it is output instead. A dict or list passed
whole to an operator (``'%(k)s' % d``) is not looked into (its items are,
where the template reads them). A module cached by ``{% import %}`` labels
the page only on the render that ran it. Templates compiled by an
environment that was not instrumented (a shared bytecode cache warmed
before, ``compile_templates`` with ``ModuleLoader``) never call the
instrumented ``finalize``: reads are still noted, output alone is not.
Joining the chunks of ``generate``/``stream`` with a plain ``"".join``
drops their labels, as for any str; ``render`` the template, or join with a
labelled chunk.

:class:`Environment` is a drop-in ``jinja2.Environment``; :func:`instrument`
does the same to an environment a framework built (Flask's
``app.jinja_env``, Starlette's ``Jinja2Templates(...).env``). Instrument
before the first template is compiled: a template compiled without a
``finalize`` never calls it (the environment's template cache is cleared).
Instrumenting swaps the environment's class for a subclass (same name) and
its ``template_class`` and ``context_class`` likewise.

Needs Jinja2 (``pip install 'purposeguard[jinja2]'``).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Callable, Iterator
from contextvars import ContextVar
from typing import Any

from purposeguard._labels import (
    _CONTAINER_CLASSES,
    EMPTY,
    FLAT_OBJECTS,
    FOREIGN,
    NO_LABELS,
    SIDE_TABLE_TYPES,
    LabelledProxy,
    _item_labels,
    annotated_fields,
    foreign_reader,
    labels_of,
    learn_flat,
    merge_tenants,
    relabel,
    tenant_of,
    tenant_of_values,
)
from purposeguard._state import TYPE_CACHE_LIMIT, remember

try:
    import jinja2
    import jinja2.runtime
except ImportError as error:  # pragma: no cover - the extra is missing
    raise ImportError(
        "purposeguard.integrations.jinja2 needs 'jinja2': pip install 'purposeguard[jinja2]'"
    ) from error

__all__ = ["Environment", "LabelledTemplate", "instrument"]

_MARK = "_purposeguard_instrumented"


# Jinja passes the variables in scope to each call in a loop or block; the
# callee never receives them, unless it takes the context (then its reads
# of them are noted as reads).
_CALL_INTERNALS = frozenset({"_loop_vars", "_block_vars"})
# Exact containers are never labelled themselves (label() makes a labelled
# subclass): what they hold is noted when it is read or output.
_PLAIN_CONTAINERS = frozenset(_CONTAINER_CLASSES)


class _Seen:
    """What one render interpolated: categories and the tenant they belong to."""

    __slots__ = ("labels", "tenant", "any")

    def __init__(self) -> None:
        self.labels: frozenset[str] = EMPTY
        self.tenant: str | None = None
        self.any = False

    def note(self, value: Any) -> None:
        """The labels of ``value`` and of everything inside it."""
        if type(value) in NO_LABELS:
            return
        found = labels_of(value)
        if found:
            # tenant_of() does not look inside a list or mapping.
            self._add(found, tenant_of_values((value,)))

    def note_own(self, value: Any) -> None:
        """The labels of ``value`` itself, not of what it holds: for every
        variable and attribute read, where a deep walk of each list or
        mapping read would cost a render without labels in proportion to its
        data. What it holds is noted when it is itself read, output,
        filtered, concatenated or passed to a call."""
        t = type(value)
        if t in NO_LABELS or t in _PLAIN_CONTAINERS or t in FLAT_OBJECTS:
            # A plain object (an ORM row, a form) carries labels only in its
            # attributes, which are noted as they are read: O(1) per read.
            return
        if t in _NO_OWN_LABELS and t not in SIDE_TABLE_TYPES:
            return  # a bound method, a loop object: nothing of its own, ever
        if getattr(t, "_pg_kind", None) is None:
            learn_flat(t)
            if t in FLAT_OBJECTS:
                return
        found = _item_labels(value)
        if not found and _never_own_labels(t):
            remember(_NO_OWN_LABELS, t, True, TYPE_CACHE_LIMIT)
        if found:
            self._add(found, tenant_of(value))

    def _add(self, found: frozenset[str], owner: str | None) -> None:
        self.labels = self.labels | found
        self.tenant = owner if not self.any else merge_tenants(self.tenant, owner)
        self.any = True


# Types whose instances carry no labels of their own unless one is labelled
# in place (then the type is in SIDE_TABLE_TYPES, checked on each read).
_NO_OWN_LABELS: dict[type, bool] = {}


def _never_own_labels(t: type) -> bool:
    return (
        getattr(t, "_pg_kind", None) is None
        and getattr(t, "_pg_box", None) is None
        and not issubclass(t, LabelledProxy)
        and not annotated_fields(t)
        and not (FOREIGN and foreign_reader(t) is not None)
    )


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
        outer._add(seen.labels, seen.tenant)


def _joined(join: Callable[[Any], str]) -> Callable[[Any], str]:
    """``~`` (``str_join``/``markup_join``) under a template's own name: a
    plain ``"".join`` drops the labels of its parts, and the result may be
    stored (``set``, a namespace) and output later as a plain string."""

    def joined(seq: Any) -> str:
        parts = tuple(seq)
        text = join(parts)
        found: _Seen | None = None
        for part in parts:
            if type(part) not in NO_LABELS:
                found = found or _Seen()
                found.note(part)
        if found is None or not found.labels:
            return text
        seen = _RENDER.get()
        if seen is not None:
            seen._add(found.labels, found.tenant)
        # Markup is left as it is: a labelled str would lose its safety and
        # be escaped twice; the render labels the page with what it noted.
        return _labelled(text, found) if type(text) is str else text

    return joined


def _buffered(chunks: Iterator[str], size: int) -> Iterator[str]:
    """Jinja's own buffering (``TemplateStream._buffered_generator``: every
    ``size`` non-empty chunks, nothing after the last), whose plain
    ``"".join`` would drop the chunks' labels."""
    buf: list[str] = []
    filled = 0
    while True:
        try:
            while filled < size:
                chunk = next(chunks)
                buf.append(chunk)
                if chunk:
                    filled += 1
        except StopIteration:
            if not filled:
                return
        seen = _Seen()
        for chunk in buf:
            seen.note(chunk)
        yield _labelled("".join(buf), seen)
        buf = []
        filled = 0


class _LabelledStream(jinja2.environment.TemplateStream):
    def enable_buffering(self, size: int = 5) -> None:
        if size <= 1:
            raise ValueError("buffer size too small")
        self.buffered = True
        self._next = functools.partial(next, _buffered(self._gen, size))


class LabelledTemplate(jinja2.Template):
    """A template whose rendered text carries the labels of what it interpolated."""

    @classmethod
    def _from_namespace(
        cls,
        environment: jinja2.Environment,
        namespace: Any,
        globals: Any,
    ) -> jinja2.Template:
        # The compiled code looks these up in its module namespace on each call.
        for name in ("str_join", "markup_join"):
            join = namespace.get(name)
            if join is not None and not hasattr(join, "__purposeguard_join__"):
                namespace[name] = _joined(join)
                namespace[name].__purposeguard_join__ = join
        return super()._from_namespace(environment, namespace, globals)

    def stream(self, *args: Any, **kwargs: Any) -> jinja2.environment.TemplateStream:
        return _LabelledStream(self.generate(*args, **kwargs))

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


class _LabelledContext(jinja2.runtime.Context):
    """Notes every variable a template reads and every argument it passes to
    a call (macros, ``caller()``, methods such as ``"".join``): what a
    template read may reach its output by a path no other hook sees."""

    def resolve_or_missing(self, key: str) -> Any:
        value = super().resolve_or_missing(key)
        seen = _RENDER.get()
        if seen is not None:
            seen.note_own(value)
        return value

    def call(self, obj: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        seen = _RENDER.get()
        if seen is not None:
            for value in args:
                _note_argument(seen, value)
            for name, value in kwargs.items():
                if name not in _CALL_INTERNALS:
                    _note_argument(seen, value)
        return super().call(obj, *args, **kwargs)


def _note_argument(seen: _Seen, value: Any) -> None:
    # Lists, tuples, sets and dicts are looked into (bounded); any other
    # collection only for its own labels: walking it could run it (a lazy
    # query set built in full to be looked at). Its items are noted as the
    # callee reads them back through the template, or where they are output.
    if type(value) in _PLAIN_CONTAINERS:
        seen.note(value)
    else:
        seen.note_own(value)


class _Reads(jinja2.Environment):
    """Notes the object of every ``a.b`` and ``a[b]``: an attribute of a
    labelled object is itself a plain value. The value read is noted where
    it goes (output, filter, ``~``, call, or the object of the next read)."""

    # Every a.b and a[b] of every render comes here: the common case (a plain
    # object or container, a plain value) is tested inline, without a call.

    def getattr(self, obj: Any, attribute: str) -> Any:
        value = super().getattr(obj, attribute)
        seen = _RENDER.get()
        if seen is not None and not (
            (type(obj) in FLAT_OBJECTS or type(obj) in _PLAIN_CONTAINERS) and type(value) in NO_LABELS
        ):
            _note_read(seen, obj, value)
        return value

    def getitem(self, obj: Any, argument: Any) -> Any:
        value = super().getitem(obj, argument)
        seen = _RENDER.get()
        if seen is not None and not (
            (type(obj) in _PLAIN_CONTAINERS or type(obj) in FLAT_OBJECTS) and type(value) in NO_LABELS
        ):
            _note_read(seen, obj, value)
        return value


def _note_read(seen: _Seen, obj: Any, value: Any) -> None:
    # The object (an attribute of an object labelled in place is plain) and
    # the value read: a labelled value read from a plain dict or object can
    # reach the output by a path no hook sees ('%s' % (d.k,), a decision
    # {% if d.k == ... %}, a filter registered after instrument()).
    t = type(obj)
    if t not in _PLAIN_CONTAINERS and t not in FLAT_OBJECTS:
        seen.note_own(obj)
    if type(value) not in NO_LABELS:
        seen.note_own(value)


_CLASSES: dict[tuple[type, type], type] = {}


def _with(base: type, extra: type) -> type:
    """``base`` with ``extra``'s methods first, made once per pair."""
    if issubclass(base, extra):
        return base
    made = _CLASSES.get((base, extra))
    if made is None:
        made = _CLASSES[(base, extra)] = type(base.__name__, (extra, base), {"__module__": base.__module__})
    return made


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
    env.template_class = _with(env.template_class, LabelledTemplate)
    env.context_class = _with(env.context_class, _LabelledContext)
    # A class of its own, not wrapped bound methods on the instance: overlay()
    # copies the instance's __dict__, and a copied bound method would read
    # through the original environment (its sandbox rules).
    env.__class__ = _with(type(env), _Reads)
    cache = getattr(env, "cache", None)
    if cache is not None:
        cache.clear()
    setattr(env, _MARK, True)
    return env


class Environment(_Reads):
    """A ``jinja2.Environment`` whose templates label what they render; see the module."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        instrument(self)
