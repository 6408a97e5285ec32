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
  ``"{}".format(body)``), and the right operand of ``%`` (a dict or list
  formatted whole, ``'<%(k)s>' % d``, is looked into);
- every variable the template reads from its context or globals, and the
  object of every ``a.b`` / ``a[b]`` (an attribute of an object labelled
  with ``pg.label(obj, ...)`` is itself plain). Containers are looked into
  where their items are output, filtered, joined or passed to a call, not
  where they are read, to keep a render without labels cheap.

A value read only to decide (``{% if body %}``, ``{{ body|length }}``) labels
the page too: over-labelling rather than under-labelling. Each item a
``{% for %}`` takes is noted as the loop takes it (and each member of a
tuple item, ``{% for k, v in d.items() %}``), as a variable read at the top
level is. Filters added after :func:`instrument` (Flask's
``@app.template_filter``) are watched as they are added. A macro called
from Python (``template.module.mail(body)``, Flask's
``get_template_attribute``) returns text labelled as a render's is. A variable passed
in and never read adds nothing. This holds across ``include``, ``extends``,
``import``, macros and ``call`` blocks, in ``render``, ``render_async``, and
in each chunk of ``generate``, ``generate_async`` and ``stream`` (a chunk
carries what the render had read by the time it was produced; buffered
streams and ``TemplateStream.dump`` included), and for sandboxed
environments instrumented the same way. A module made by ``{% import %}``,
which Jinja caches on its template, carries what making it read: every
page that imports it (``import``, ``from ... import``) is labelled with
that, on every render. A page is then checked where it leaves (a guarded
mailer, an egress guard, the zone).

A labelled value read from a plain dict or object (``d.k``, ``order.email``)
labels the page wherever it goes next, also where no hook sees it
(``'%s' % (d.k,)``, a decision ``{% if d.k == ... %}``, a filter registered
after :func:`instrument`, a ``finalize`` replaced later).

``Markup`` and ``escape`` carry labels too, process-wide from the first
:func:`instrument` (or :class:`Environment`) until :func:`uninstrument`.
Stored HTML the application marks safe before a template sees it
(``Markup(note.body)``), ``escape``, ``escape_silent`` and ``Markup.escape``
of a labelled value, and every Markup operation that mixes one in (``%``,
``format``, ``+``, ``join``, ``replace``) return a Markup carrying its
labels and tenant; what is made from a labelled Markup (slicing, ``upper``,
``split``, ``unescape``, ``striptags``, ``str()``) carries them on. A
labelled Markup is still a Markup, escaped no second time (``str()`` of it
is text, as for any Markup), and its class is also the label set's labelled
str class, so every checkpoint reads its labels. A Markup made while a
template renders (by a function it calls) labels the page. A reference to
``escape`` taken before instrumenting (``from markupsafe import escape``)
carries labels as well: markupsafe's ``escape`` looks up what it calls on
each call. Values without labels become exactly the Markup they were, at
least as fast.

Not covered: ``pg.label(Markup(html), ...)`` returns a labelled str, not a
Markup, which autoescaping then escapes; make the Markup from the labelled
text (``Markup(pg.label(html, ...))``). Likewise a labelled str on the left
of ``+`` with a Markup gives a labelled str (the str's own ``+``). A Markup
subclass with ``__slots__`` of its own comes back as a labelled plain
Markup when the value has a tenant. With MarkupSafe before 3.0 (``escape``
written in C), an ``escape`` imported before instrumenting drops the labels
of text it had to escape. Templates compiled by an environment that was not
instrumented (a shared bytecode cache warmed before, ``compile_templates``
with ``ModuleLoader``) never call the instrumented ``finalize``: reads,
calls and what autoescaping escapes are noted, but with autoescape off a
value output without being read (a call's result) is not. Joining the
chunks of ``generate``/``stream`` with a plain ``"".join`` drops their
labels, as for any str; ``render`` the template, or join with a labelled
chunk.

:class:`Environment` is a drop-in ``jinja2.Environment``; :func:`instrument`
does the same to an environment a framework built (Flask's
``app.jinja_env``, Starlette's ``Jinja2Templates(...).env``). Instrument
before the first template is compiled: a template compiled without a
``finalize`` never calls it (the environment's template cache is cleared).
Instrumenting swaps the environment's class for a subclass (same name) and
its ``template_class``, ``context_class`` and ``code_generator_class``
likewise, and replaces ``Markup``'s constructor and mixing operations,
``markupsafe.escape``, ``escape_silent`` and ``_escape_inner``, and the
``escape`` jinja2's modules imported. From then on a template made directly
(``jinja2.Template(source)``, a subclass of it) compiles in an instrumented
environment of Jinja's shared ones, and a ``template_class`` passed to
``from_string`` labels what it renders too; the text of a template module
(``str()`` and ``__html__()`` of ``make_module()`` or an import) carries the
module's labels. A ``Template`` subclass that names an ``environment_class``
of its own (a sandboxed one) renders through that class, which is
instrumented only where the application instruments it. :func:`uninstrument` puts
markupsafe and jinja2's names (``Template.environment_class`` among them)
back as they were (environments stay instrumented).

Needs Jinja2 (``pip install 'purposeguard[jinja2]'``).
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
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
    LabelledStr,
    _item_labels,
    _tenant_on,
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
    import jinja2.compiler
    import jinja2.runtime
    import markupsafe
except ImportError as error:  # pragma: no cover - the extra is missing
    raise ImportError(
        "purposeguard.integrations.jinja2 needs 'jinja2': pip install 'purposeguard[jinja2]'"
    ) from error

__all__ = ["Environment", "LabelledTemplate", "instrument", "is_instrumented", "uninstrument"]

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
    return _carried(text, seen.labels, seen.tenant)  # type: ignore[no-any-return]


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


# -- Markup and escape ---------------------------------------------------------

_Markup = markupsafe.Markup
_str_new = str.__new__


def _carried(made: Any, labels: frozenset[str], tenant: str | None) -> Any:
    """``made`` carrying ``labels`` (and ``tenant``) besides its own, of the
    same kind: a Markup stays safe, so it is not escaped a second time."""
    t = type(made)
    own = getattr(t, "_pg_kind", None)
    if own is not None and labels <= own.labels:
        present = _tenant_on(made)
        if merge_tenants(present, tenant) == present:
            return made  # already carries them (a Markup built from a labelled Markup)
    if isinstance(made, _Markup):
        # Not a new read: the values were labelled (and checked) where they
        # were read; what is built from them only carries them on.
        return _markup_of(getattr(t, "_pg_markup", t), relabel(made, *sorted(labels), tenant=tenant))
    if isinstance(made, str):
        return relabel(made, *sorted(labels), tenant=tenant)
    if t is list or t is tuple:
        return t(_carried(item, labels, tenant) for item in made)
    return made


# (Markup class, labelled str class) -> the labelled Markup class of both.
_MARKUP_CLASSES: dict[tuple[type, type], type] = {}


def _markup_of(base: type, text: str, source: Any = None) -> Any:
    """``text`` as a labelled ``base`` (a Markup class) with the labels and
    tenant of ``source``, a labelled str (``text`` itself by default)."""
    if source is None:
        source = text
    t = type(source)
    cls = _MARKUP_CLASSES.get((base, t))
    if cls is None:
        cls = _markup_class(base, t)
    made: Any = _str_new(cls, text)
    tenant = _tenant_on(source)
    if tenant is not None:
        made._pg_tenant = tenant
    return made


# Labelled str classes (not Markup): escape() and Markup() of their values
# take a short path.
_LABELLED_TEXT: dict[type, bool] = {}


def _labelled_text(t: type) -> bool:
    found = _LABELLED_TEXT.get(t)
    if found is None:
        found = issubclass(t, LabelledStr) and not hasattr(t, "__html__")
        remember(_LABELLED_TEXT, t, found)
    return found


def _markup_from(base: type, text: str, source: Any) -> Any:
    """:func:`_markup_of` made from a labelled str: a render in progress
    notes its labels (the Markup may reach the page by a path no other hook
    sees)."""
    made = _markup_of(base, text, source)
    seen = _RENDER.get()
    if seen is not None:
        seen._add(type(source)._pg_kind.labels, _tenant_on(source))
    return made


def _markup_class(base: type, text_class: type) -> type:
    # A subclass of both the Markup class and the label set's own str class:
    # Markup's methods come first (its escaping is what makes it safe), and
    # every label reader of purposeguard finds the labels on the class.
    namespace = {
        "__slots__": (),
        "_pg_markup": base,
        "_pg_text": text_class,
        "__module__": __name__,
        "__qualname__": "LabelledMarkup",
    }
    try:
        cls = type("LabelledMarkup", (_MarkupLabels, base, text_class), namespace)
    except TypeError:
        # A Markup subclass whose instances cannot take a tenant slot (its
        # own __slots__): the labels are kept on a plain Markup instead.
        if base is _Markup:
            raise
        cls = _markup_class(_Markup, text_class)
    return remember(_MARKUP_CLASSES, (base, text_class), cls)  # type: ignore[no-any-return]


def _text(value: Any) -> Any:
    """A labelled Markup's text as a labelled str (``str(markup)``: text,
    no longer marked safe)."""
    made = type(value)._pg_text(str.__str__(value))
    tenant = _tenant_on(value)
    if tenant is not None:
        made._pg_tenant = tenant
    return made


def _markup_rebuilt(base: type, text: str, labels: tuple[str, ...], tenant: str | None) -> Any:
    # Unpickling and copying: the labels were valid when the value was made.
    return _markup_of(base, relabel(text, *labels, tenant=tenant))


class _MarkupLabels:
    """What a labelled Markup adds to Markup: each operation runs on the
    plain Markup of its text (Markup's own escaping, arguments' labels carried
    by the instrumented Markup) and its result carries this value's labels."""

    __slots__ = ()
    _pg_markup: Any  # the Markup class
    _pg_text: Any  # the label set's str class
    _pg_kind: Any

    def __str__(self) -> str:
        return _text(self)  # type: ignore[no-any-return]

    def __format__(self, spec: str) -> str:
        return _text(self).__format__(spec)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        text = f"{type(self)._pg_markup.__name__}({str.__repr__(self)})"
        return _carried(text, type(self)._pg_kind.labels, _tenant_on(self))  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[str]:
        return iter(_text(self))

    def __rmod__(self, template: object) -> Any:
        if isinstance(template, _Markup):
            # Markup % labelled Markup: the template's own __mod__ escapes
            # its arguments (str's would not), and carries their labels.
            return NotImplemented
        if not isinstance(template, str):
            return NotImplemented
        return _text(self).__rmod__(template)

    def __reduce_ex__(self, protocol: Any) -> Any:
        cls = type(self)
        labels = tuple(sorted(cls._pg_kind.labels))
        return (_markup_rebuilt, (cls._pg_markup, str.__str__(self), labels, _tenant_on(self)))

    @classmethod
    def escape(cls, s: Any, /) -> Any:
        # A classmethod: what it escapes has nothing of this class's labels.
        return cls._pg_markup.escape(s)


def _on_plain(name: str) -> Callable[..., Any]:
    def method(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        cls = type(self)
        base = cls._pg_markup
        made = getattr(base, name)(_str_new(base, str.__str__(self)), *args, **kwargs)
        if made is NotImplemented:
            return made
        return _carried(made, cls._pg_kind.labels, _tenant_on(self))

    method.__name__ = name
    method.__qualname__ = f"LabelledMarkup.{name}"
    return method


# Markup's operations that return text (Markup, str, or a list or tuple of them).
_MARKUP_OPERATIONS = (
    "__add__",
    "__radd__",
    "__mul__",
    "__rmul__",
    "__mod__",
    "__getitem__",
    "join",
    "split",
    "rsplit",
    "splitlines",
    "partition",
    "rpartition",
    "format",
    "format_map",
    "replace",
    "unescape",
    "striptags",
    "capitalize",
    "title",
    "lower",
    "upper",
    "casefold",
    "swapcase",
    "ljust",
    "rjust",
    "center",
    "zfill",
    "strip",
    "lstrip",
    "rstrip",
    "removeprefix",
    "removesuffix",
    "translate",
    "expandtabs",
)
for _name in _MARKUP_OPERATIONS:
    if hasattr(_Markup, _name):
        setattr(_MarkupLabels, _name, _on_plain(_name))


def _plain(value: Any) -> bool:
    t = type(value)
    if t in NO_LABELS or t is _Markup:
        return True
    if t is tuple:  # Markup % (a, b)
        for item in value:
            if type(item) not in NO_LABELS and type(item) is not _Markup:
                return False
        return True
    return False


def _with_labels_of(made: Any, values: Iterable[Any], deep: bool = False) -> Any:
    """``made`` (built from ``values``) carrying their labels; a render in
    progress notes them too (a Markup built while rendering may reach the
    page by a path no other hook sees).

    Lists, tuples, sets and dicts are looked into; other objects (one with
    ``__html__``, a form field that refers to its whole form) only for their
    own labels unless ``deep``: what ``__html__`` or ``str()`` of them
    returns is noted for its own labels."""
    found: _Seen | None = None
    for value in values:
        if not _plain(value):
            found = found or _Seen()
            if deep:
                found.note(value)
            else:
                _note_argument(found, value)
    if found is None or not found.labels:
        return made
    seen = _RENDER.get()
    if seen is not None:
        seen._add(found.labels, found.tenant)
    return _carried(made, found.labels, found.tenant)


def _new(cls: Any, object: Any = "", encoding: str | None = None, errors: str = "strict") -> Any:
    """``Markup.__new__``: the same Markup, carrying the labels of what it is made of."""
    t = type(object)
    if encoding is None:
        if t is str:
            return _str_new(cls, object)  # what Markup.__new__ does for a str, without the __html__ look-up
        if _labelled_text(t) and getattr(cls, "_pg_markup", None) is None:
            return _markup_from(cls, object, object)
    source = object
    if hasattr(object, "__html__"):
        object = object.__html__()
    made = _str_new(cls, object) if encoding is None else _str_new(cls, object, encoding, errors)
    return _with_labels_of(made, (source,) if object is source else (source, object))


def _mixing_one(original: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """A Markup operator whose operand becomes part of its result."""

    @functools.wraps(original)
    def method(self: Any, value: Any, /) -> Any:
        made = original(self, value)
        if type(value) is str or made is NotImplemented:
            return made
        return _with_labels_of(made, (value,))

    return method


def _mixing(original: Callable[..., Any], deep: bool = False) -> Callable[..., Any]:
    """A Markup operation whose arguments become part of its result;
    ``deep`` for ``format``, which reads their attributes and items."""

    @functools.wraps(original)
    def method(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        made = original(self, *args, **kwargs)
        if made is NotImplemented:
            return made
        for value in args:
            if type(value) is not str:
                return _with_labels_of(made, (*args, *kwargs.values()), deep)
        return _with_labels_of(made, kwargs.values(), deep) if kwargs else made

    return method


def _joining(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def join(self: Any, iterable: Iterable[Any], /) -> Any:
        items = iterable if type(iterable) is list or type(iterable) is tuple else list(iterable)
        made = original(self, items)
        for item in items:
            if not _plain(item):
                return _with_labels_of(made, items)
        return made

    return join


# The originals, as markupsafe defined them when this module was imported.
_ESCAPE: Callable[[Any], Any] = markupsafe.escape
# MarkupSafe 3 escapes in Python around a C function of plain str; 2.x escapes in C.
_ESCAPE_INNER: Callable[[str], str] | None = getattr(markupsafe, "_escape_inner", None)


_NUMBERS = frozenset({int, float, bool, type(None)})


def _escape(s: Any, /) -> Any:
    """``markupsafe.escape``: the same Markup, carrying ``s``'s labels."""
    t = type(s)
    if _ESCAPE_INNER is not None:
        # What markupsafe.escape does for these, without its look-ups.
        if t is str:
            return _str_new(_Markup, _ESCAPE_INNER(s))
        if t is _Markup:
            return _str_new(_Markup, s)
        if t in _NUMBERS:
            return _str_new(_Markup, _ESCAPE_INNER(str(s)))
        if _labelled_text(t):
            return _markup_from(_Markup, _ESCAPE_INNER(s), s)
    made = _ESCAPE(s)
    if type(s) in NO_LABELS:
        return made
    return _with_labels_of(made, (s,))


def _escape_silent(s: Any, /) -> Any:
    if s is None:
        return _Markup()
    return _escape(s)


def _escape_inner(s: str, /) -> str:
    """``markupsafe._escape_inner``, which the original ``escape`` looks up on
    each call: a reference to it taken before :func:`instrument` (``from
    markupsafe import escape``) carries labels too."""
    made = _ESCAPE_INNER(s)  # type: ignore[misc]
    if type(s) is str or made is s:
        return made
    kind = getattr(type(s), "_pg_kind", None)
    if kind is None:
        return made
    return relabel(made, *sorted(kind.labels), tenant=_tenant_on(s))


_PATCH_LOCK = threading.Lock()
# (owner, name, original, patched) in the order applied.
_PATCHED: list[tuple[Any, str, Any, Any]] = []


def _patch(owner: Any, name: str, patched: Any) -> None:
    original = vars(owner)[name]
    setattr(owner, name, patched)
    _PATCHED.append((owner, name, original, patched))


def _patch_markupsafe() -> None:
    with _PATCH_LOCK:
        if _PATCHED:
            return
        own = vars(_Markup)
        _patch(_Markup, "__new__", staticmethod(_new))
        for name in ("__add__", "__radd__", "__mod__"):
            _patch(_Markup, name, _mixing_one(own[name]))
        for name in ("format", "format_map", "replace", "ljust", "rjust", "center"):
            if name in own:
                _patch(_Markup, name, _mixing(own[name], deep=name.startswith("format")))
        _patch(_Markup, "join", _joining(own["join"]))
        _patch(markupsafe, "escape", _escape)
        _patch(markupsafe, "escape_silent", _escape_silent)
        if _ESCAPE_INNER is not None:
            _patch(markupsafe, "_escape_inner", _escape_inner)
        # Jinja binds escape by name at import (compiled templates import it
        # from jinja2.runtime when they load).
        for module_name, module in list(sys.modules.items()):
            if (
                module is not None
                and module_name.split(".")[0] == "jinja2"
                and vars(module).get("escape") is _ESCAPE
            ):
                _patch(module, "escape", _escape)
        # str() and Markup of a module (make_module(), {% import %}) join its
        # body's chunks with a plain join: the module's own labels go on it.
        module_class = jinja2.environment.TemplateModule
        _patch(module_class, "__str__", _module_text(vars(module_class)["__str__"]))
        _patch(module_class, "__html__", _module_text(vars(module_class)["__html__"]))
        # A template made directly (jinja2.Template(source)) is compiled by a
        # shared environment Jinja makes of this class: an instrumented one,
        # or its render would drop every label it interpolated.
        _patch(jinja2.Template, "environment_class", Environment)


def _unpatch_markupsafe() -> None:
    with _PATCH_LOCK:
        for owner, name, original, patched in reversed(_PATCHED):
            # Left alone if something else replaced it since: it may wrap ours.
            if vars(owner).get(name) is patched:
                setattr(owner, name, original)
        _PATCHED.clear()


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
        return _labelled(text, found)  # Markup (autoescape) stays Markup

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
        if namespace.get("Macro") is jinja2.runtime.Macro:
            namespace["Macro"] = _LabelledMacro
        return super()._from_namespace(environment, namespace, globals)

    # A module made by {% import %} is cached on its template and reused by
    # later renders: it carries what making it read, and every render that
    # imports it notes that (its values may carry none: a {% set %} block,
    # a number, a branch taken).

    def make_module(self, vars: Any = None, shared: bool = False, locals: Any = None) -> Any:
        seen, token = _start()
        try:
            module = super().make_module(vars, shared, locals)
        finally:
            _finish(seen, token)
        return _module_labelled(module, seen)

    async def make_module_async(self, vars: Any = None, shared: bool = False, locals: Any = None) -> Any:
        seen, token = _start()
        try:
            module = await super().make_module_async(vars, shared, locals)
        finally:
            _finish(seen, token)
        return _module_labelled(module, seen)

    def _get_default_module(self, ctx: Any = None) -> Any:
        return _imported(super()._get_default_module(ctx))

    async def _get_default_module_async(self, ctx: Any = None) -> Any:
        return _imported(await super()._get_default_module_async(ctx))

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


class _LabelledMacro(jinja2.runtime.Macro):
    """A macro called from Python (``template.module.mail(body)``, Flask's
    ``get_template_attribute``) renders on its own: its text carries what
    it read and the labels of its arguments, as a render's does. Called
    from a template, it adds to that render as before."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _RENDER.get() is not None:
            return super().__call__(*args, **kwargs)
        seen, token = _start()
        try:
            for value in args:
                _note_argument(seen, value)
            for value in kwargs.values():
                _note_argument(seen, value)
            made = super().__call__(*args, **kwargs)
        finally:
            _finish(seen, token)
        return _labelled(made, seen) if isinstance(made, str) else made


def _module_labelled(module: Any, seen: _Seen) -> Any:
    if not seen.labels:
        return module
    return relabel(module, *sorted(seen.labels), tenant=seen.tenant)


def _module_text(original: Callable[[Any], str]) -> Callable[[Any], str]:
    def text(module: Any) -> str:
        made = original(module)
        labels = labels_of(module)
        if not labels:
            return made
        labelled: str = relabel(str.__str__(made), *sorted(labels), tenant=tenant_of(module))
        if isinstance(made, markupsafe.Markup):
            markup: str = _markup_of(type(made), made, labelled)
            return markup
        return labelled

    return functools.wraps(original)(text)


def _imported(module: Any) -> Any:
    seen = _RENDER.get()
    if seen is not None:
        seen.note_own(module)
    return module


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
        if obj is _loop_over:
            # A loop's iterable: its items are noted one by one as it runs.
            return _loop_over(args[0])
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

    def from_string(
        self,
        source: Any,
        globals: Any = None,  # noqa: A002 - Jinja's own parameter name
        template_class: type[Any] | None = None,
    ) -> Any:
        # A template class named by the caller (jinja2.Template(source) names
        # its own) still labels what it renders.
        if template_class is not None:
            template_class = _with(template_class, LabelledTemplate)
        return super().from_string(source, globals, template_class)

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


class _WatchedFilters(dict[str, Any]):
    """An environment's filters, each watched as it is added: a filter
    registered after :func:`instrument` (an f-string, base64) would
    otherwise turn a labelled argument into plain text unseen."""

    def __init__(self, filters: Any = (), /) -> None:
        super().__init__()
        self.update(filters)

    def __setitem__(self, name: str, fn: Any) -> None:
        super().__setitem__(name, _watched(fn))

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        items = other.items() if hasattr(other, "items") else other
        for name, fn in (*items, *kwargs.items()):
            self[name] = fn

    def setdefault(self, name: str, fn: Any = None, /) -> Any:
        if name not in self:
            self[name] = fn
        return self[name]

    def copy(self) -> _WatchedFilters:
        return _WatchedFilters(self)

    # dict's own |= adds items in C, past __setitem__. typeshed types
    # dict.__or__/__ior__ as overloads that no single signature matches.
    def __ior__(self, other: Any) -> _WatchedFilters:  # type: ignore[override,misc]
        self.update(other)
        return self


def _watched(fn: Any) -> Any:
    if not callable(fn) or hasattr(fn, "__purposeguard_filter__"):
        return fn
    return _watched_filter(fn)


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


_LOOP_OVER = f"{__name__}._loop_over"


def _loop_over(iterable: Any) -> Any:
    """What a ``{% for %}`` iterates, each item noted (its own labels, and
    those of a tuple's members: ``{% for k, v in d.items() %}``) as the
    loop takes it, so a chunk carries what the loop had reached. The
    context hands the iterable here as it is (see ``_LabelledContext.call``)."""
    if _RENDER.get() is None or hasattr(iterable, "__aiter__") or not hasattr(iterable, "__iter__"):
        return iterable
    return _noting(iterable)


def _noting(iterable: Any) -> Iterator[Any]:
    for item in iterable:
        seen = _RENDER.get()
        if seen is not None:
            if type(item) is tuple:
                for member in item:
                    seen.note_own(member)
            else:
                seen.note_own(item)
        yield item


def _is_loop_call(node: Any) -> bool:
    callee = getattr(node, "node", None) if isinstance(node, jinja2.nodes.Call) else None
    return isinstance(callee, jinja2.nodes.ImportedName) and callee.importname == _LOOP_OVER


class _CodeGenerator(jinja2.compiler.CodeGenerator):
    """Compiles ``a % b`` with ``b`` passed through ``context.call(identity, b)``:
    a dict or list formatted whole is looked into like any call's argument.
    What a ``{% for %}`` iterates goes through ``_loop_over``: a loop's
    items are local variables that no context read sees, and an item read
    only to decide (``{% if x == ... %}``) must label the page as a
    variable read at the top level does.
    Both are in every compiled template; the environment needs nothing more."""

    def visit_Template(self, node: Any, frame: Any = None) -> None:
        # Before the template's imports are collected: the loops' calls import _loop_over.
        nodes = jinja2.nodes
        for loop in node.find_all(nodes.For):
            if not _is_loop_call(loop.iter):
                over = nodes.ImportedName(_LOOP_OVER, lineno=loop.lineno)
                loop.iter = nodes.Call(over, [loop.iter], [], None, None, lineno=loop.lineno)
        super().visit_Template(node, frame)

    @jinja2.compiler.optimizeconst
    def visit_Mod(self, node: Any, frame: Any) -> None:
        env = self.environment
        intercepted = env.sandboxed and "%" in getattr(env, "intercepted_binops", ())
        self.write("environment.call_binop(context, '%', " if intercepted else "(")
        self.visit(node.left, frame)
        self.write(", context.call(identity, " if intercepted else " % context.call(identity, ")
        self.visit(node.right, frame)
        self.write("))")


def instrument(env: Any) -> Any:
    """Make ``env`` (a ``jinja2.Environment``) label what its templates render,
    and ``Markup`` and ``escape`` carry labels (process-wide, until
    :func:`uninstrument`).

    Idempotent. Returns ``env``. Filters added to ``env.filters`` later
    (Flask's ``@app.template_filter``) are watched as they are added."""
    if not isinstance(env, jinja2.Environment):
        raise TypeError(f"instrument() needs a jinja2.Environment, not {type(env).__name__}")
    _patch_markupsafe()
    if getattr(env, _MARK, False):
        return env
    env.finalize = _finalizer(env.finalize)
    env.filters = _WatchedFilters(env.filters)
    env.template_class = _with(env.template_class, LabelledTemplate)
    env.context_class = _with(env.context_class, _LabelledContext)
    env.code_generator_class = _with(env.code_generator_class, _CodeGenerator)
    # A class of its own, not wrapped bound methods on the instance: overlay()
    # copies the instance's __dict__, and a copied bound method would read
    # through the original environment (its sandbox rules).
    env.__class__ = _with(type(env), _Reads)
    cache = getattr(env, "cache", None)
    if cache is not None:
        cache.clear()
    setattr(env, _MARK, True)
    return env


def uninstrument() -> None:
    """Restore markupsafe (``Markup``, ``escape``, ``escape_silent``),
    jinja2's names for ``escape`` and ``jinja2.Template``'s environment class
    as they were. Environments instrumented
    stay so (they label what they render); a Markup already labelled keeps
    its labels. The next :func:`instrument` (or :class:`Environment`)
    instruments markupsafe again."""
    _unpatch_markupsafe()


def is_instrumented() -> bool:
    """Whether ``Markup`` and ``escape`` carry labels (see :func:`instrument`)."""
    return bool(_PATCHED)


class Environment(_Reads):
    """A ``jinja2.Environment`` whose templates label what they render; see the module."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        instrument(self)
