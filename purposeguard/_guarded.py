"""``@purpose``: the decorator and context manager on the hot path.

For plain functions the wrapper is generated with the function's own
signature (measured here: about 66 ns of wrapper against 166 ns for a
generic ``*args, **kwargs`` one), and its first test is one set lookup per
argument: ``type(arg) in NO_LABELS``. Only when that fails, or when a zone is
open, does the call reach the guard.
"""

from __future__ import annotations

import enum
import functools
import inspect
import itertools
import keyword
import linecache
import numbers
import sys
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from types import AsyncGeneratorType, CoroutineType, GeneratorType
from typing import Any, TypeVar

from ._context import FLAGS, PURPOSE, ZONE, ZoneState
from ._delegation import async_generator_function, generator_function
from ._errors import PurposeGuardError, PurposeViolation
from ._labelled import _LabelledNumber
from ._labels import FLAT_OBJECTS, NO_LABELS, WalkLimit, labels_in_values, learn_flat, tenant_of_values
from ._runtime import COUNTERS, check_zone, frame_name, get_guard, printable_name, require_purpose_key
from ._shortcut import allowed_classes, hits, learn, remember_zone, zone_allows
from ._state import on_reset, remember
from ._walk_diagnosis import capped, diagnose, type_name

__all__ = ["purpose"]

_EMPTY: frozenset[str] = frozenset()
# Numbers the generated wrappers' file names: two functions may share a name.
_WRAPPERS_MADE = itertools.count(1)
# The attribute a purpose decorator leaves on what it wraps: routers and task
# queues read a function's declared purpose from it.
PURPOSE_MARK = "__purposeguard_purpose__"

F = TypeVar("F", bound=Callable[..., Any])

# Tokens of ``with purpose(...)`` blocks, per context, so one purpose object
# can be entered by many tasks at once without mixing their tokens.
_CM_TOKENS: ContextVar[tuple[Any, Any] | None] = ContextVar("purposeguard.cm_tokens", default=None)


def _function_name(fn: Any) -> str:
    return printable_name(
        f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', getattr(fn, '__name__', '?'))}"
    )


def _tenant_in(values: tuple[Any, ...]) -> str | None:
    """Whose data this is, for consent: the values' own tenant (several
    tenants make a mixed value no consent covers), else whose data the zone
    holds (its tenant, or none when it read several tenants' data: a value
    naming no tenant may be any of theirs)."""
    found = tenant_of_values(values)
    if found is not None:
        return found
    state = ZONE.get() if FLAGS.zones else None
    return state.data_tenant() if state is not None else None


def _read_labels(
    purpose_key: str,
    name: str,
    values: tuple[Any, ...],
    via: str,
    arguments: _Arguments | None = None,
    kwargs: dict[str, Any] | None = None,
) -> frozenset[str]:
    """The labels of ``values``; reading them runs user code (properties of
    annotated fields, an ORM's lazy attributes), and a failure there, or
    content beyond the walk's bounds, fails closed as an engine failure
    does: enforce mode denies, trace mode records and goes on. The refusal
    says which value and where inside it (``arguments`` and ``kwargs``
    name the values)."""
    try:
        return labels_in_values(values, purpose_key)
    except WalkLimit as error:
        # Content beyond the walk's bound was not looked at: fail closed.
        where = _where_once(name, purpose_key, values, arguments, kwargs, error)
        get_guard()._internal_error(
            error, error.labels, purpose_key, via, name, error.tenant, False, where=where
        )
        return error.labels
    except Exception as error:
        where = _where_once(name, purpose_key, values, arguments, kwargs, error)
        get_guard()._internal_error(error, frozenset(), purpose_key, via, name, None, False, where=where)
        return frozenset()


class _Arguments:
    """How a guarded function's arguments are named in a refusal that says
    which one the walk gave up on: made when decorating, read only then,
    never on a call. ``signature`` is the one a generated wrapper was made
    from (its values are the named parameters, then ``*args``' items, then
    ``**kwargs``' values); without it the values are as called
    (positional, then keyword) and the signature is read from ``fn``."""

    __slots__ = ("fn", "signature")

    def __init__(self, fn: Any, signature: inspect.Signature | None = None) -> None:
        self.fn = fn
        self.signature = signature

    def name(self, index: int, count: int, kwargs: dict[str, Any] | None) -> str:
        """The name of the ``index``-th of ``count`` values checked, of
        which the last ``len(kwargs)`` are ``kwargs``' values. Parameter
        names are code; a keyword that names no parameter may be data
        (``f(**row)``) and is never shown."""
        signature = self.signature
        if signature is None:
            try:
                signature = inspect.signature(self.fn, follow_wrapped=False)
            except (TypeError, ValueError):
                return f"argument {index + 1}" if index < count - len(kwargs or ()) else "a keyword argument"
        parameters = list(signature.parameters.values())
        positional = [p for p in parameters if p.kind in _POSITIONAL]
        spread = next((p.name for p in parameters if p.kind is inspect.Parameter.VAR_POSITIONAL), None)
        spread_keywords = next((p.name for p in parameters if p.kind is inspect.Parameter.VAR_KEYWORD), None)
        first_keyword = count - len(kwargs or ())
        if index >= first_keyword:
            if self.signature is None and kwargs:
                keyword = next(itertools.islice(kwargs, index - first_keyword, None), None)
                parameter = signature.parameters.get(keyword) if type(keyword) is str else None
                if parameter is not None and parameter.kind in _NAMED:
                    return parameter.name
            return f"a keyword argument in **{spread_keywords}" if spread_keywords else "a keyword argument"
        if self.signature is not None:
            named = [p for p in parameters if p.kind in _POSITIONAL or p.kind in _NAMED]
            if index < len(named):
                parameter = named[index]
                if parameter.kind is not inspect.Parameter.POSITIONAL_ONLY:
                    return parameter.name
                return f"argument {positional.index(parameter) + 1} ({parameter.name}, positional-only)"
            index = len(positional) + index - len(named)
        elif index < len(positional):
            parameter = positional[index]
            if parameter.kind is not inspect.Parameter.POSITIONAL_ONLY:
                return parameter.name
            return f"argument {index + 1} ({parameter.name}, positional-only)"
        return f"argument {index + 1} (in *{spread})" if spread else f"argument {index + 1}"


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


class _Named(_Arguments):
    """One value with one name: what a function returns or yields, what is sent into a generator."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        super().__init__(None)
        self.what = what

    def name(self, index: int, count: int, kwargs: dict[str, Any] | None) -> str:
        return self.what


_RETURNED = _Named("the return value")
_YIELDED = _Named("a yielded value")
_SENT = _Named("a value sent in")


# (function, purpose, the values' type names, error type) -> where the walk
# gave up: in trace mode a call that keeps passing an object too large to
# look through would pay the second pass (as long as the walk) every time.
# Type names, not types: nothing here keeps a class alive.
_WHERE: dict[tuple[Any, ...], str] = {}
_WHERE_LIMIT = 256
on_reset("walk diagnosis", _WHERE.clear)


def _where_once(
    name: str,
    purpose_key: str,
    values: tuple[Any, ...],
    arguments: _Arguments | None,
    kwargs: dict[str, Any] | None,
    error: Exception,
) -> str:
    key = (
        name,
        purpose_key,
        tuple(f"{type(v).__module__}.{type(v).__qualname__}" for v in values),
        type(error).__name__,
    )
    found = _WHERE.get(key)
    if found is None:
        found = remember(_WHERE, key, _where(purpose_key, values, arguments, kwargs, error), _WHERE_LIMIT)
    return found


def _where(
    purpose_key: str,
    values: tuple[Any, ...],
    arguments: _Arguments | None,
    kwargs: dict[str, Any] | None,
    error: Exception,
) -> str:
    """Which of ``values`` the walk gave up on (or raised in) and where
    inside it, for the refusal; only the value's name when a second pass
    does not tell. Names types and attributes, never a value."""
    count = len(values)

    def name_of(index: int) -> str:
        if arguments is None:
            return f"argument {index + 1}"
        return capped(arguments.name(index, count, kwargs))

    where = "the arguments" if count != 1 else "the value"
    try:
        found = diagnose(values, purpose_key, name_of)
        if found is not None:
            return found
        if count == 1:
            where = name_of(0)
    except Exception:
        pass
    return where if isinstance(error, WalkLimit) else f"{where} (raised {type_name(type(error))})"


def _entry_check(
    purpose_key: str,
    name: str,
    values: tuple[Any, ...],
    arguments: _Arguments | None = None,
    kwargs: dict[str, Any] | None = None,
) -> None:
    """Arguments carry labels (or a zone is open): decide and act per mode.
    ``arguments`` and ``kwargs`` name them if the walk gives up on one."""
    if values:
        # A method's self: once its type is known to be a plain object, the
        # wrapper looks at its attribute types instead of coming here.
        first = type(values[0])
        if first not in FLAT_OBJECTS and first not in NO_LABELS:
            learn_flat(first)
    labels = _read_labels(purpose_key, name, values, "argument", arguments, kwargs)
    if FLAGS.zones:
        state = ZONE.get()
        if state is not None:
            _entry_check_in_zone(purpose_key, name, values, labels, state)
            return
    if not labels:
        return
    guard = get_guard()
    # A label set seen before and allowed: one memo lookup, no tenant lookup.
    if guard.allowed_without_consent(labels, purpose_key):
        learn(purpose_key, values)
        return
    decision = guard.check_labels(
        labels, purpose_key, via="argument", function=name, tenant=_tenant_in(values)
    )
    if decision.allowed and not decision.consent:  # first sight of an allowed label set
        _learn_if_allowed(guard, purpose_key, values)


def _learn_if_allowed(guard: Any, purpose_key: str, values: tuple[Any, ...]) -> None:
    labels = labels_in_values(values)
    if labels and guard.allowed_without_consent(labels, purpose_key, count=False):
        learn(purpose_key, values)


def _entry_check_in_zone(
    purpose_key: str, name: str, values: tuple[Any, ...], labels: frozenset[str], state: Any
) -> None:
    if labels:
        state.add(labels, tenant_of_values(values))
    # The arguments' labels are part of the zone now: a zone allowed as a
    # whole allows them too (a set is allowed when each category is).
    if zone_allows(state, purpose_key):
        return
    epoch = FLAGS.epoch  # before the guard: a policy change meanwhile invalidates it
    categories = state.categories
    guard = get_guard()
    # None when the arguments were allowed without consent: whoever's data
    # they are, the zone's copy of their categories is allowed too.
    judged_for = None
    if labels and not guard.allowed_without_consent(labels, purpose_key):
        judged_for = _tenant_in(values)
        guard.check_labels(labels, purpose_key, via="argument", function=name, tenant=judged_for)
    check_zone(guard, state, purpose_key, labels, name, judged_for=judged_for)
    remember_zone(guard, state, purpose_key, categories, epoch)


def _zone_check(purpose_key: str, name: str) -> None:
    state = ZONE.get()
    if state is None:
        return
    categories = state.categories
    # Every guarded call of a request lands here: the zone remembers the
    # category set the process-wide guard last allowed for this purpose.
    if not categories or zone_allows(state, purpose_key):
        return
    epoch = FLAGS.epoch
    guard = get_guard()
    check_zone(guard, state, purpose_key, _EMPTY, name, judged_for=None)
    remember_zone(guard, state, purpose_key, categories, epoch)


def _return_check(
    purpose_key: str, name: str, value: Any, arguments: tuple[Any, ...] = (), what: _Arguments = _RETURNED
) -> None:
    if getattr(type(value), "_pg_kind", None) is not None:
        for argument in arguments:
            if argument is value:
                # A labelled str, bytes or number handed back is the value
                # checked on entry (immutable): no new flow to count twice.
                return
    # A container or object handed back is checked again: the function may
    # have put labelled values into it.
    labels = _read_labels(purpose_key, name, (value,), "return", what)
    if not labels:
        return
    state = ZONE.get() if FLAGS.zones else None
    if state is not None:
        state.add(labels, tenant_of_values((value,)))
        if zone_allows(state, purpose_key):
            return
    guard = get_guard()
    if guard.allowed_without_consent(labels, purpose_key):
        learn(purpose_key, (value,))
        return
    decision = guard.check_labels(
        labels, purpose_key, via="return", function=name, tenant=_tenant_in((value,))
    )
    if decision.allowed and not decision.consent:
        _learn_if_allowed(guard, purpose_key, (value,))


def _returned(purpose_key: str, name: str, value: Any, arguments: tuple[Any, ...]) -> Any:
    """What a guarded plain function hands back: checked as its return value,
    or, when it is a coroutine or generator whose body has not run yet (an
    ``async def`` or generator function under a decorator that hid it, a
    thin wrapper returning a client's coroutine), wrapped so that the body
    runs for the declared purpose and what it returns or yields is checked.
    Otherwise the body would run later under the caller's purpose."""
    t = type(value)
    if t in _SUSPENDED and _not_started(value) and not _handed_back(value, arguments):
        # Not run yet and not handed in: its body is this function's. One
        # handed in, or already started, is someone else's. Even a new one
        # may be shared (a cursor kept by the function): the wrapper never
        # closes it, its owner or the collector does.
        if t is CoroutineType:
            return _awaited_for(purpose_key, name, value)
        if t is GeneratorType:
            return _generator_wrapper(lambda: value, purpose_key, name, owned=False)()
        return _async_generator_wrapper(lambda: value, purpose_key, name, owned=False)()
    _return_check(purpose_key, name, value, arguments)
    return value


_SUSPENDED = frozenset({CoroutineType, GeneratorType, AsyncGeneratorType})


def _not_started(value: Any) -> bool:
    if type(value) is CoroutineType:
        return inspect.getcoroutinestate(value) == inspect.CORO_CREATED
    if type(value) is GeneratorType:
        # A generator-based coroutine (``@types.coroutine``) is awaited, not
        # iterated: a wrapping generator could not be awaited. Left as it is.
        if value.gi_code.co_flags & inspect.CO_ITERABLE_COROUTINE:
            return False
        return inspect.getgeneratorstate(value) == inspect.GEN_CREATED
    state = getattr(inspect, "getasyncgenstate", None)  # Python 3.12+
    if state is not None:
        return bool(state(value) == inspect.AGEN_CREATED)  # type: ignore[attr-defined]
    # Before 3.12: not started means still at its first instruction.
    frame = value.ag_frame
    return frame is not None and not value.ag_running and frame.f_lasti <= 0


async def _awaited_for(purpose_key: str, name: str, coroutine: Any) -> Any:
    if FLAGS.zones:
        # The body runs now, perhaps long after the call: against the zone as it stands.
        try:
            _zone_check(purpose_key, name)
        except BaseException:
            coroutine.close()  # refused before it started: it never will
            raise
    token = PURPOSE.set(purpose_key)
    try:
        result = await coroutine
    finally:
        PURPOSE.reset(token)
    if type(result) not in NO_LABELS:
        _return_check(purpose_key, name, result)
    return result


_TEMPLATE = """
def {name}({params}):
{entry}    _pg_tok = _pg_set(_pg_P)
    try:
        _pg_r = _pg_fn({call})
    finally:
        _pg_reset(_pg_tok)
    _pg_t = _pg_T(_pg_r)
    if _pg_t not in _pg_NL:
        if _pg_t in _pg_OK and (_pg_F.fast or _pg_F.fast_unzoned and _pg_ZG() is None):
            if _pg_C.enabled and {not_handed_back}:
                _pg_next(_pg_HIT)
        else:
            _pg_r = _pg_returned(_pg_P, _pg_N, _pg_r, {values})
    return _pg_r
"""

# The entry check: all plain, all plain or known allowed, else the guard.
_ENTRY = """if {plain_test}:
    if _pg_F.zones and _pg_ZG() is not None:
        _pg_zone_check(_pg_P, _pg_N)
elif (_pg_F.fast or _pg_F.fast_unzoned and _pg_ZG() is None) and {known_test}:
    if _pg_C.enabled:
        _pg_next(_pg_HIT)
else:
    _pg_entry_check(_pg_P, _pg_N, {values}, _pg_A{keywords})
"""

# One item of *args (the common case) is tested without a loop: measured
# about 60 ns cheaper per call.
_ARGS_ONE = """if _pg_len({args}) == 1:
    _pg_v = _pg_T({args}[0])
    if _pg_v not in _pg_NL:
        _pg_s = False
        if _pg_v not in _pg_OK:
            _pg_k = False
"""

# The items of *args or **kwargs: all plain (_pg_s), all plain or known
# allowed (_pg_k). A plain loop measured cheaper than map/filterfalse/
# issuperset up to dozens of items (those allocate three objects per call).
_SPREAD_LOOP = """if {container} and _pg_k:
    for _pg_v in {items}:
        _pg_v = _pg_T(_pg_v)
        if _pg_v not in _pg_NL:
            _pg_s = False
            if _pg_v not in _pg_OK:
                _pg_k = False
                break
"""

# A method's self: a plain object whose labels could only be in its
# attributes. Their types are looked at on every call (a labelled value set
# on it later is seen at once). A loop measured cheaper than issuperset(map())
# up to about ten attributes, dearer beyond.
_SELF_TEST = """_pg_o = _pg_T(self) in _pg_FLAT
if _pg_o and (_pg_d := self.__dict__):
    if _pg_len(_pg_d) > 8:
        _pg_o = _pg_sup(_pg_map(_pg_T, _pg_d.values()))
    else:
        for _pg_v in _pg_d.values():
            if _pg_T(_pg_v) not in _pg_NL:
                _pg_o = False
                break
"""


def _indent(text: str, depth: int) -> str:
    return "".join(" " * depth + line if line.strip() else line for line in text.splitlines(True))


def _handed_back(result: Any, arguments: tuple[Any, ...]) -> bool:
    # A returned labelled str/bytes/number that was an argument was checked
    # on entry (it cannot have changed): no second check to count.
    return any(argument is result for argument in arguments)


def _generated_wrapper(fn: Callable[..., Any], purpose_key: str, name: str) -> Callable[..., Any] | None:
    """A wrapper with ``fn``'s own signature, or None where that is not possible."""
    try:
        # follow_wrapped=False: a decorator below may have changed the signature.
        signature = inspect.signature(fn, follow_wrapped=False)
    except (TypeError, ValueError):
        return None
    namespace: dict[str, Any] = {
        "_pg_F": FLAGS,
        "_pg_P": purpose_key,
        "_pg_N": name,
        "_pg_T": type,
        "_pg_NL": NO_LABELS,
        "_pg_set": PURPOSE.set,
        "_pg_reset": PURPOSE.reset,
        "_pg_fn": fn,
        "_pg_zone_check": _zone_check,
        "_pg_entry_check": _entry_check,
        "_pg_A": _Arguments(fn, signature),
        "_pg_returned": _returned,
        "_pg_handed_back": _handed_back,
        "_pg_OK": allowed_classes(purpose_key),
        "_pg_HIT": hits(purpose_key).steps,
        "_pg_next": next,
        "_pg_C": COUNTERS,
        "_pg_ZG": ZONE.get,
        "_pg_FLAT": FLAT_OBJECTS,
        "_pg_sup": NO_LABELS.issuperset,
        "_pg_map": map,
        "_pg_len": len,
    }
    call_method = None
    if not inspect.isfunction(fn) and not isinstance(fn, type):
        call_method = inspect.getattr_static(type(fn), "__call__", None)
    if inspect.isfunction(call_method):
        # A callable object: its __call__ bound once saves the lookup and
        # method binding Python does on every call of the object.
        namespace["_pg_fn"] = call_method.__get__(fn, type(fn))
    params: list[str] = []
    call: list[str] = []
    simple: list[str] = []
    var_args = var_kwargs = ""
    seen_kw_only_marker = False
    previous_kind = None
    for index, parameter in enumerate(signature.parameters.values()):
        pname = parameter.name
        if pname.startswith("_pg_") or keyword.iskeyword(pname) or not pname.isidentifier():
            return None
        kind = parameter.kind
        if (
            previous_kind is inspect.Parameter.POSITIONAL_ONLY
            and kind is not inspect.Parameter.POSITIONAL_ONLY
        ):
            params.append("/")
        default = ""
        if parameter.default is not inspect.Parameter.empty:
            namespace[f"_pg_d{index}"] = parameter.default
            default = f"=_pg_d{index}"
        if kind is inspect.Parameter.VAR_POSITIONAL:
            params.append(f"*{pname}")
            call.append(f"*{pname}")
            var_args = pname
            seen_kw_only_marker = True
        elif kind is inspect.Parameter.VAR_KEYWORD:
            params.append(f"**{pname}")
            call.append(f"**{pname}")
            var_kwargs = pname
        elif kind is inspect.Parameter.KEYWORD_ONLY:
            if not seen_kw_only_marker:
                params.append("*")
                seen_kw_only_marker = True
            params.append(f"{pname}{default}")
            call.append(f"{pname}={pname}")
            simple.append(pname)
        else:
            params.append(f"{pname}{default}")
            call.append(pname)
            simple.append(pname)
        previous_kind = kind
    if previous_kind is inspect.Parameter.POSITIONAL_ONLY:
        params.append("/")
    plain_tests = [f"_pg_T({p}) in _pg_NL" for p in simple]
    known_tests = [f"(_pg_T({p}) in _pg_NL or _pg_T({p}) in _pg_OK)" for p in simple]
    first = next(iter(signature.parameters.values()), None)
    self_test = ""
    if (
        first is not None
        and first.name == "self"
        and first.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ):
        # A method: anything but a plain self (see _SELF_TEST), or a self of
        # a type not known to be plain, goes to the full check.
        self_test = _SELF_TEST
        plain_tests[0] = known_tests[0] = "_pg_o"
        if len(simple) == 2 and not (var_args or var_kwargs):
            # The plain test failed for self or for the one argument: with
            # self plain, only the argument's shortcut set is left.
            known_tests[1] = f"_pg_T({simple[1]}) in _pg_OK"
    if len(simple) == 1 and not (var_args or var_kwargs) and not self_test:
        # The plain test just failed for this one argument: only the shortcut set is left.
        known_tests = [f"_pg_T({simple[0]}) in _pg_OK"]
    spread_values = ([var_args] if var_args else []) + (
        [f"tuple({var_kwargs}.values())"] if var_kwargs else []
    )
    values = " + ".join(([f"({', '.join(simple)},)"] if simple else []) + spread_values) or "()"
    # Where **kwargs' values start among the values, should the walk give up on one.
    keywords = f", {var_kwargs}" if var_kwargs else ""
    if not (var_args or var_kwargs):
        entry = _ENTRY.format(
            plain_test=" and ".join(plain_tests) or "True",
            known_test=" and ".join(known_tests) or "True",
            values=values,
            keywords=keywords,
        )
    else:
        # *args and **kwargs items take the same two tests as named
        # parameters, in loops ahead of them.
        entry = "_pg_s = _pg_k = True\n"
        if var_args:
            if simple or var_kwargs:  # else one item took the branch below
                entry += _ARGS_ONE.format(args=var_args) + "el"
            entry += _SPREAD_LOOP.format(container=var_args, items=var_args)
        if var_kwargs:
            entry += _SPREAD_LOOP.format(container=var_kwargs, items=f"{var_kwargs}.values()")
        entry += _ENTRY.format(
            plain_test=" and ".join(plain_tests + ["_pg_s"]),
            known_test=" and ".join(known_tests + ["_pg_k"]),
            values=values,
            keywords=keywords,
        )
        if var_args and not simple:
            # Only *args (and **kwargs), called with one positional item (the
            # common case): it is tested as a named parameter would be, with
            # no flags and no loop, measured 6-8% cheaper per call. (The same
            # for one keyword of **kwargs measured 3% cheaper, and made three
            # keywords 4% dearer: not taken.)
            one = f"_pg_len({var_args}) == 1" + (f" and not {var_kwargs}" if var_kwargs else "")
            single = f"_pg_v = _pg_T({var_args}[0])\n" + _ENTRY.format(
                plain_test="_pg_v in _pg_NL", known_test="_pg_v in _pg_OK", values=values, keywords=keywords
            )
            entry = f"if {one}:\n{_indent(single, 4)}else:\n{_indent(entry, 4)}"
    # Whether the result is not one of the arguments, by identity: spelt out
    # per parameter, since a call of _handed_back costs more than the rest of
    # the allowed path once telemetry counts hits.
    not_handed_back_tests = [f"_pg_r is not {p}" for p in simple]
    if spread_values:
        not_handed_back_tests.append(f"not _pg_handed_back(_pg_r, {' + '.join(spread_values)})")
    not_handed_back = " and ".join(not_handed_back_tests) or "True"
    source = _TEMPLATE.format(
        name="_pg_wrapper",
        params=", ".join(params),
        entry=_indent(self_test + entry, 4),
        values=values,
        not_handed_back=not_handed_back,
        call=", ".join(call),
    )
    filename = f"<purposeguard wrapper of {name} #{next(_WRAPPERS_MADE)}>"
    # Registered like a file, so tracebacks and debuggers show the wrapper's
    # source (an mtime of None keeps linecache.checkcache off it).
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)
    wrapper: Callable[..., Any] = namespace["_pg_wrapper"]
    # Gone with the wrapper: a function decorated per call (a closure in a
    # handler) would otherwise leave its source behind every time.
    weakref.finalize(wrapper, linecache.cache.pop, filename, None)
    return wrapper


def _generic_wrapper(fn: Callable[..., Any], purpose_key: str, name: str) -> Callable[..., Any]:
    arguments = _Arguments(fn)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = args + tuple(kwargs.values()) if kwargs else args
        for value in values:
            if type(value) not in NO_LABELS:
                _entry_check(purpose_key, name, values, arguments, kwargs)
                break
        else:
            if FLAGS.zones:
                _zone_check(purpose_key, name)
        token = PURPOSE.set(purpose_key)
        try:
            result = fn(*args, **kwargs)
        finally:
            PURPOSE.reset(token)
        if type(result) not in NO_LABELS:
            return _returned(purpose_key, name, result, values)
        return result

    return wrapper


def _enter_values(
    purpose_key: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], arguments: _Arguments
) -> None:
    values = args + tuple(kwargs.values()) if kwargs else args
    for value in values:
        if type(value) not in NO_LABELS:
            _entry_check(purpose_key, name, values, arguments, kwargs)
            return
    if FLAGS.zones:
        _zone_check(purpose_key, name)


def _coroutine_wrapper(fn: Callable[..., Any], purpose_key: str, name: str) -> Callable[..., Any]:
    arguments = _Arguments(fn)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        _enter_values(purpose_key, name, args, kwargs, arguments)
        token = PURPOSE.set(purpose_key)
        try:
            result = await fn(*args, **kwargs)
        finally:
            PURPOSE.reset(token)
        if type(result) not in NO_LABELS:
            _return_check(purpose_key, name, result, args + tuple(kwargs.values()))
        return result

    return wrapper


def _item_checker(purpose_key: str, name: str) -> Callable[[Any], Any]:
    def check_item(item: Any) -> Any:
        if type(item) not in NO_LABELS:
            _return_check(purpose_key, name, item, (), _YIELDED)
        return item

    return check_item


def _result_checker(purpose_key: str, name: str) -> Callable[[Any], Any]:
    # What a generator returns (``StopIteration.value``, the value of a
    # ``yield from`` over it) leaves its code as a plain function's result does.
    def check_result(result: Any) -> Any:
        if type(result) not in NO_LABELS:
            _return_check(purpose_key, name, result)
        return result

    return check_result


def _receive_checker(purpose_key: str, name: str) -> Callable[[Any], None]:
    # What send()/asend() hands in (and the exception athrow()/throw() does)
    # enters the generator's code like an argument, and is checked like one.
    # Every step checks the zone: it may have seen content since the
    # generator last ran, and text rebuilt from it can be sent in plain.
    def check_received(value: Any) -> None:
        if type(value) not in NO_LABELS:
            _entry_check(purpose_key, name, (value,), _SENT)
        elif FLAGS.zones:
            _zone_check(purpose_key, name)

    return check_received


def _generator_wrapper(
    fn: Callable[..., Any], purpose_key: str, name: str, *, owned: bool = True
) -> Callable[..., Any]:
    # The purpose is current only while the generator body runs: it is set
    # around each step and reset before the value goes back to the caller.
    arguments = _Arguments(fn)
    return generator_function(
        fn,
        _item_checker(purpose_key, name),
        before=lambda args, kwargs: _enter_values(purpose_key, name, args, kwargs, arguments),
        context=(PURPOSE, purpose_key),
        on_receive=_receive_checker(purpose_key, name),
        on_return=_result_checker(purpose_key, name),
        owned=owned,
    )


def _async_generator_wrapper(
    fn: Callable[..., Any], purpose_key: str, name: str, *, owned: bool = True
) -> Callable[..., Any]:
    arguments = _Arguments(fn)
    return async_generator_function(
        fn,
        _item_checker(purpose_key, name),
        before=lambda args, kwargs: _enter_values(purpose_key, name, args, kwargs, arguments),
        context=(PURPOSE, purpose_key),
        on_receive=_receive_checker(purpose_key, name),
        owned=owned,
    )


class purpose:  # noqa: N801 - used like a function: @purpose("..."), with purpose("...")
    """Declare the purpose a code path serves: a decorator and a context manager.

    >>> import purposeguard as pg
    >>> @pg.purpose("service.operations")
    ... def troubleshoot(ticket):
    ...     return pg.current_purpose()
    >>> troubleshoot("ticket 42")
    'service.operations'
    >>> with pg.purpose("service.security"):
    ...     pg.current_purpose()
    'service.security'

    Decorating checks every argument's labels (and the zone's) when the
    function is entered, and what it returns or yields. Unknown keys fail
    here, when the decorator is applied. ``enabled=False`` returns the
    function unwrapped and costs nothing.

    ``output="decision"`` marks a function whose result is a decision (log
    a user in, score a mail as spam, check a quota): what it reads inside
    stays in its own frame instead of tainting the rest of the request's
    zone; only what it returns flows on into the zone: its labels, and, when
    the result is not a decision (None, a truth value, a number, labelled or
    not, that can hold nothing else, an enum member, a short tuple of those)
    but text (labelled or not), bytes or an object that could carry what was
    read, everything the frame saw. It is
    checked like any guarded function, against the zone as it stands, and
    applies to functions and coroutine functions, not generators.

    A plain function that returns a coroutine or generator it made (an
    ``async def`` under a decorator that hid it, a wrapper returning a
    client's coroutine) has that body run for its purpose too, checked
    against the zone when it starts, and what it returns or yields checked.

    A ``with purpose(...)`` block around a ``yield`` in a generator that is
    not decorated hands its purpose to whoever consumes the generator, until
    it is resumed (generators share their consumer's context: that is how a
    ``@contextlib.contextmanager`` or a test fixture sets a purpose for the
    block it wraps). A generator abandoned inside such a block (never
    resumed, closed or collected: a cursor kept in a cache, a reference
    cycle) leaves its purpose current for the rest of the consumer's
    context, on a thread that serves request after request the next ones
    too. To give a generator's own code a purpose, decorate the generator
    function: its purpose is current only while its body runs.
    """

    __slots__ = ("key", "enabled", "output")

    def __init__(self, key: str, *, enabled: bool = True, output: str = "value") -> None:
        self.key = require_purpose_key(key)
        self.enabled = enabled
        if output not in _OUTPUTS:
            raise ValueError(
                f"output must be one of {', '.join(map(repr, _OUTPUTS))}, not {_safe_word(output)}"
            )
        self.output = output

    def __repr__(self) -> str:
        return f"purpose({self.key!r})"

    # -- decorator --------------------------------------------------------------

    def __call__(self, fn: F) -> F:
        if not self.enabled:
            return fn
        if isinstance(fn, (classmethod, staticmethod)):
            return type(fn)(self(fn.__func__))
        if isinstance(fn, type):
            # Wrapping a class in a function would break isinstance() and
            # subclassing; guarding every method silently is a guess.
            raise TypeError(
                f"@purpose decorates functions and methods, not the class {fn.__name__}: decorate its methods"
            )
        if not callable(fn):
            raise TypeError(f"@purpose decorates functions, not {type(fn).__name__}")
        name = _function_name(fn)
        if inspect.isasyncgenfunction(fn):
            wrapper = _async_generator_wrapper(fn, self.key, name)
        elif inspect.iscoroutinefunction(fn) or (
            # A callable object whose __call__ is a coroutine function.
            not inspect.isfunction(fn) and inspect.iscoroutinefunction(type(fn).__call__)
        ):
            wrapper = _coroutine_wrapper(fn, self.key, name)
        elif inspect.isgeneratorfunction(fn):
            wrapper = _generator_wrapper(fn, self.key, name)
        else:
            wrapper = _generated_wrapper(fn, self.key, name) or _generic_wrapper(fn, self.key, name)
        if self.output == "decision":
            if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
                raise TypeError(
                    'output="decision" applies to functions that return their decision, not generators'
                )
            wrapper = _decision_frame(wrapper, inspect.iscoroutinefunction(fn))
        functools.update_wrapper(wrapper, fn)
        setattr(wrapper, PURPOSE_MARK, self.key)
        return wrapper  # type: ignore[return-value]

    # -- context manager -------------------------------------------------------------

    def __enter__(self) -> purpose:
        if FLAGS.zones:
            caller = sys._getframe(1)
            _zone_check(self.key, frame_name(caller.f_back if caller.f_code is _AENTER_CODE else caller))
        token = PURPOSE.set(self.key)
        _CM_TOKENS.set((token, _CM_TOKENS.get()))
        return self

    def __exit__(self, *exc: object) -> None:
        node = _CM_TOKENS.get()
        if node is None or node[0].var is not PURPOSE or PURPOSE.get() != self.key:
            raise PurposeGuardError(f"leaving purpose {self.key!r} that was not entered here")
        _CM_TOKENS.set(node[1])
        PURPOSE.reset(node[0])

    async def __aenter__(self) -> purpose:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)


_OUTPUTS = ("value", "decision")


def _safe_word(value: object) -> str:
    # Never echo what a caller passed: it may be a labelled value.
    if (
        isinstance(value, str)
        and value.isidentifier()
        and len(value) <= 40
        and not labels_in_values((value,))
    ):
        return repr(value)
    return f"a {type(value).__name__}"


def _open_frame() -> tuple[Any, Any]:
    """A zone of its own for a decision frame: it starts from what the
    request's zone knows (so the frame is checked against it) and hands
    nothing back when it ends."""
    outer = ZONE.get()
    if outer is None:
        return None, None
    inner = ZoneState(outer.tenant, None, outer.categories)
    return outer, ZONE.set(inner)


# Exact types only: a subclass of int can carry attributes (text rebuilt
# from what the frame read), and labelled text can be a labelled name with
# content appended in C (``name + f" wrote: {body}"``), its label the name's.
_DECISION_TYPES = frozenset({type(None), bool, int, float})


# type -> whether its instances can hold nothing beside their number.
_NUMBER_ONLY: dict[type, bool] = {}


def _holds_nothing_else(t: type) -> bool:
    """A subclass of int or float whose instances have no ``__dict__`` and no
    slots: nothing the frame read can ride along on one."""
    found = _NUMBER_ONLY.get(t)
    if found is None:
        found = getattr(t, "__dictoffset__", 1) == 0 and not any(
            getattr(base, "__slots__", ()) for base in t.__mro__ if base.__module__ != "builtins"
        )
        remember(_NUMBER_ONLY, t, found, 512)
    return found


def _is_decision(value: Any, depth: int = 0) -> bool:
    """A result that is a decision, not data: None, a truth value, a number
    (labelled or not: its labels flow on), an enum member, or a short tuple
    or list of those. Text and bytes (labelled or not), mappings and objects
    can carry what the frame read rebuilt without a label, so they hand the
    frame's categories on."""
    t = type(value)
    if t in _DECISION_TYPES or isinstance(value, enum.Enum):
        return True
    if isinstance(value, (int, float, numbers.Number)) and _holds_nothing_else(t):
        return True  # numpy.float64, a score from a model: a number and no more
    if isinstance(value, _LabelledNumber):  # no attributes: its value and labels only
        return True
    if t in (tuple, list) and depth < 2 and len(value) <= 64:
        return all(_is_decision(item, depth + 1) for item in value)
    return False


# What a frame that raised hands on: not a decision. The exception can carry
# what the frame read (a message quoting a value, an attribute holding it).
_RAISED = object()


def _raised(error: BaseException) -> Any:
    """What a frame that raised ``error`` hands on: nothing for a violation
    (it names categories and rules only) or a cancellation or interrupt
    (from outside the frame), everything the frame saw for any other error."""
    if not isinstance(error, Exception):
        return None
    # A refusal raised while handling another error carries that error in
    # its chain (__context__, __cause__), which can quote what was read.
    seen: BaseException | None = error
    for _ in range(16):
        if seen is None:
            return None
        if not isinstance(seen, PurposeViolation):
            return _RAISED
        seen = seen.__cause__ or seen.__context__
    return _RAISED


def _close_frame(outer: Any, token: Any, result: Any) -> None:
    inner = ZONE.get()
    ZONE.reset(token)
    # What the decision hands on is what flows on: its own labels, and
    # everything the frame saw when the result could be data in disguise.
    try:
        labels = labels_in_values((result,))
        whole = not _is_decision(result)
    except WalkLimit as error:
        # Too large to look through: no decision. What was found and all the
        # frame saw flow on; the checkpoint the result reaches next decides
        # on it under its own mode (trace mode goes on, as for any value).
        labels, whole = error.labels, True
    if whole and inner is not None:
        labels = labels | inner.categories
    if labels:
        outer.add(labels)


def _decision_frame(wrapper: Callable[..., Any], is_async: bool) -> Callable[..., Any]:
    if is_async:

        async def async_decision(*args: Any, **kwargs: Any) -> Any:
            if not FLAGS.zones:
                return await wrapper(*args, **kwargs)
            outer, token = _open_frame()
            if outer is None:
                return await wrapper(*args, **kwargs)
            try:
                result = await wrapper(*args, **kwargs)
            except BaseException as error:
                _close_frame(outer, token, _raised(error))
                raise
            _close_frame(outer, token, result)
            return result

        return async_decision

    def decision(*args: Any, **kwargs: Any) -> Any:
        if not FLAGS.zones:
            return wrapper(*args, **kwargs)
        outer, token = _open_frame()
        if outer is None:
            return wrapper(*args, **kwargs)
        try:
            result = wrapper(*args, **kwargs)
        except BaseException as error:
            _close_frame(outer, token, _raised(error))
            raise
        _close_frame(outer, token, result)
        return result

    return decision


_AENTER_CODE = purpose.__aenter__.__code__  # skipped when naming the code that entered
