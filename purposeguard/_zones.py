"""Zones, transforms and context propagation to executors.

A zone is the scope of one request or job. Labels cannot follow every value
(f-strings that add text, C code building new objects); the zone collects the
categories of every labelled value created, checked or passed into guarded
code inside it, and every guarded entry checks them too (``via="context"``).
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import inspect
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ._context import FLAGS, MIXED_TENANT, PURPOSE, ZONE, ZoneState
from ._errors import PolicyError, PurposeGuardError, key_shaped, shown
from ._labels import (
    KEYS,
    MAX_TENANT_LENGTH,
    WalkLimit,
    labels_in_values,
    relabel,
    require_tenant,
    strip_labels,
    tenant_of_values,
)
from ._records import Declassification
from ._runtime import Denial, get_guard, report_repeats

__all__ = [
    "zone",
    "transform",
    "wrap_executor",
    "current_zone",
    "set_tenant",
    "ContextExecutor",
    "enter_zone",
    "leave_zone",
    "drop_zone",
]

F = TypeVar("F", bound=Callable[..., Any])

_OPENED = FLAGS.opened.steps
_CLOSED = FLAGS.closed.steps


class zone:  # noqa: N801 - reads as a statement: with zone(tenant=...)
    """The scope of one request or job: ``with pg.zone(tenant="contoso"): ...``.

    Inside it, every labelled value created, checked or passed into guarded
    code adds its categories to the zone, and every guarded entry checks the
    zone's categories too (``via="context"``, under ``context_mode``). A
    nested zone starts with its parent's categories and hands what it
    learned back to the parent when it closes. ``categories`` seeds the zone
    (for instance from incoming baggage); unknown keys raise.

    One zone object may be entered by several tasks or threads at once; each
    entry gets its own state. Leaving a zone that was not entered in the
    current context and thread raises :class:`PurposeGuardError` and changes
    nothing.
    """

    __slots__ = ("tenant", "categories")

    def __init__(self, tenant: str | None = None, *, categories: Iterable[str] = ()) -> None:
        if tenant is not None:
            require_tenant(tenant)
        if isinstance(categories, str):
            categories = (categories,)
        self.tenant = tenant
        self.categories = KEYS.current().require_categories(categories)

    def __repr__(self) -> str:
        return f"zone(tenant={self.tenant!r})"

    def __enter__(self) -> ZoneState:
        state = enter_zone(self.tenant, self.categories)
        state.opener = self
        return state

    def __exit__(self, *exc: object) -> None:
        # Every check comes before any change, so a misuse leaves every
        # zone (this one, its parent, another request's) as it was.
        state = ZONE.get()
        if state is None or state.opener is not self:
            outer = state.parent if state is not None else None
            while outer is not None and outer.opener is not self:
                outer = outer.parent
            if outer is not None:
                raise PurposeGuardError(
                    "leaving a zone that is not the current one: leave the inner zone first"
                )
            raise PurposeGuardError("leaving a zone that was never entered here")
        if state.owner != threading.get_ident():
            raise PurposeGuardError("leaving a zone from another thread than the one that entered it")
        leave_zone(state)

    async def __aenter__(self) -> ZoneState:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)


def enter_zone(tenant: str | None, categories: frozenset[str]) -> ZoneState:
    """Open a zone for a request or job and return its state; close it with
    :func:`leave_zone` in the same context. ``tenant`` and ``categories``
    must be checked already (as :class:`zone` checks them): a middleware
    opens one per request and keeps the checks out of that path."""
    # Counted so a reset knows whether the zones switch may go off.
    next(_OPENED)
    if not FLAGS.zones:
        # With the lock activations take: refresh() reads their count.
        with FLAGS.lock:
            FLAGS.zones = True
            FLAGS.refresh()
    state = ZoneState(tenant, ZONE.get(), categories)
    state.token = ZONE.set(state)
    return state


def leave_zone(state: ZoneState) -> None:
    """Close a zone :func:`enter_zone` opened, in the context it was opened in."""
    token = state.token
    if token is None:
        raise PurposeGuardError("leaving a zone that was never entered here")
    try:
        ZONE.reset(token)
    except (ValueError, RuntimeError):
        # The token belongs to another context (a task or copied context
        # that inherited the zone), or was used already.
        raise PurposeGuardError(
            "leaving a zone from another task or context than the one that entered it"
        ) from None
    drop_zone(state)


def drop_zone(state: ZoneState) -> None:
    """Close a zone whose context is never entered again, as a WSGI
    request's own copy of the context is not once its body is closed: as
    :func:`leave_zone`, without writing the context back (a context write
    costs a request about as much as building the zone's state)."""
    if state.token is None:
        raise PurposeGuardError("leaving a zone that was never entered here")
    state.token = None
    if state.parent is None:
        # Nothing to hand to a parent (see ZoneState.close): one call fewer
        # on every request.
        state.closed = True
    else:
        state.close()
    next(_CLOSED)
    if state.flows:
        report_repeats(get_guard(), state)


def current_zone() -> ZoneState | None:
    """The zone state of the current request or job, if one is open."""
    return ZONE.get() if FLAGS.zones else None


# -- transforms ---------------------------------------------------------------------


def _covered(category: str, allowed: tuple[str, ...]) -> bool:
    return any(category == a or category.startswith(a + ".") for a in allowed)


def _declassified(result: Any) -> Any:
    # One container level, the depth at which labels_of looks: a list of
    # labelled strings must not keep its items' labels through a transform.
    result = strip_labels(result)
    t = type(result)
    if t in (list, tuple, set, frozenset):
        return t(strip_labels(item) for item in result)
    if t is dict:
        return {strip_labels(k): strip_labels(v) for k, v in result.items()}
    return result


def transform(transform_id: str) -> Callable[[F], F]:
    """Apply a policy transform: the one way labels are removed.

    >>> @transform("usage-aggregate")
    ... def mailbox_size(messages): return sum(len(m) for m in messages)

    The inputs may carry only the transform's ``from`` categories (anything
    else is a violation, ``via="argument"``: raised in enforce mode, recorded
    in trace mode, where the refused categories stay on the result). The
    result carries the ``to`` category instead of the accepted labels, and
    every use is reported to :func:`on_record` handlers as a
    :class:`Declassification` (not a violation). The zone keeps what it saw.
    An id the active policy does not define raises :class:`PolicyError` here,
    when decorating.
    """
    policy = get_guard().policy
    if not isinstance(transform_id, str) or transform_id not in policy.transforms:
        raise PolicyError(
            f"unknown transform {shown(transform_id)} (the policy defines: "
            f"{', '.join(sorted(policy.transforms)) or 'none'})",
            rule=transform_id if key_shaped(transform_id) else None,
        )

    def decorate(fn: F) -> F:
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError("@transform applies to functions that return their result, not generators")
        if not callable(fn):
            raise TypeError(f"@transform decorates functions, not {type(fn).__name__}")
        name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"

        def before(
            args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[frozenset[str], tuple[str, ...], str | None]:
            guard = get_guard()
            spec = guard.policy.transforms.get(transform_id)
            if spec is None:
                raise PolicyError(f"the active policy has no transform {transform_id!r}", rule=transform_id)
            values = args + tuple(kwargs.values())
            labels = labels_in_values(values)
            state = ZONE.get() if FLAGS.zones else None
            # Whose data this is, as for @purpose: the values' tenants (several
            # make it nobody's), else the zone's.
            tenant = tenant_of_values(values)
            if tenant is None and state is not None:
                tenant = state.tenant
            if state is not None and labels:
                # Before anything else: a refused or failing transform must
                # not hide from the zone what reached it, nor whose it was.
                state.add(labels, tenant_of_values(values))
            refused = tuple(sorted(c for c in labels if not _covered(c, spec.from_categories)))
            if refused:
                _refuse(guard, transform_id, refused, name, tenant)
            return labels.difference(refused), refused, tenant

        def after(result: Any, accepted: frozenset[str], refused: tuple[str, ...], tenant: str | None) -> Any:
            guard = get_guard()
            spec = guard.policy.transforms[transform_id]
            if result is not None:
                # Data the body read for itself (not through its arguments)
                # is declassified only within ``from`` too: anything else on
                # the result is refused as an input outside ``from`` is, and
                # keeps its label in trace mode.
                try:
                    carried = labels_in_values((result,))
                except WalkLimit as error:
                    carried = error.labels
                # What the transform produces (its ``to``, or a narrower
                # transform's output it built on) is not outside it either.
                accepts = (*spec.from_categories, spec.to)
                outside = tuple(sorted(c for c in carried if c not in refused and not _covered(c, accepts)))
                if outside:
                    _refuse(guard, transform_id, outside, name, tenant, via="return")
                    refused = tuple(sorted({*refused, *outside}))
            # What the transform does not accept is not declassified by it.
            # None carries nothing (and a proxy of it would break `is None`).
            out = None if result is None else relabel(_declassified(result), spec.to, *refused, tenant=tenant)
            guard.dispatch(
                Declassification(
                    transform=transform_id,
                    from_categories=tuple(sorted(accepted)),
                    to=spec.to,
                    function=name,
                    purpose=PURPOSE.get(),
                    tenant=tenant,
                    timestamp=time.time(),
                )
            )
            return out

        wrapper: Callable[..., Any]
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                accepted, refused, tenant = before(args, kwargs)
                return after(await fn(*args, **kwargs), accepted, refused, tenant)

            wrapper = async_wrapper
        else:

            @functools.wraps(fn)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                accepted, refused, tenant = before(args, kwargs)
                return after(fn(*args, **kwargs), accepted, refused, tenant)

            wrapper = sync_wrapper
        setattr(wrapper, "__purposeguard_transform__", transform_id)  # noqa: B010 - mypy cannot see the attribute
        return wrapper  # type: ignore[return-value]

    return decorate


def _refuse(
    guard: Any,
    transform_id: str,
    refused: tuple[str, ...],
    name: str,
    tenant: str | None,
    via: str = "argument",
) -> None:
    """Categories a transform does not accept reached it: a violation, with
    the transform that would accept each of them as the fix."""
    policy = guard.policy
    spec = policy.transforms[transform_id]
    accepts = f"transform {transform_id!r} accepts only {', '.join(spec.from_categories)}"
    denials = []
    for category in refused:
        other = next(
            (t.id for t in policy.transforms.values() if _covered(category, t.from_categories)),
            None,
        )
        if other is not None:
            fix, text = "transform", f"{accepts}; derive from {category} through transform {other!r} instead"
        else:
            fix, text = "block", f"{accepts}; no transform of the policy accepts {category}: block the flow"
        denials.append(Denial(category, transform_id, None, text, fix))
    guard.violate(PURPOSE.get() or "transform", denials, via=via, function=name, tenant=tenant)


# -- executors ---------------------------------------------------------------------------


def _run_in_process(
    fn: Callable[..., Any],
    purpose_key: str | None,
    tenant: str | None,
    categories: tuple[str, ...],
    in_zone: bool,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> tuple[Any, tuple[str, ...]]:
    # Runs in the worker process: a context cannot be pickled, so the parts
    # of it that matter travel as plain values, as they do in baggage.
    token = PURPOSE.set(purpose_key)
    try:
        if not in_zone:
            return fn(*args, **kwargs), ()
        with zone(tenant, categories=categories) as state:
            result = fn(*args, **kwargs)
            return result, tuple(sorted(state.categories))
    finally:
        PURPOSE.reset(token)


class ContextExecutor(concurrent.futures.Executor):
    """An executor that runs each task in a copy of the submitter's context,
    so purpose, tenant and zone follow work into the pool.

    Threads share the submitter's zone, so what the work sees flows back at
    once. A process pool cannot share it: the purpose, tenant and zone
    categories travel with the task, and the categories the worker's zone
    learned are added to the submitter's zone when the task completes.
    """

    def __init__(self, executor: concurrent.futures.Executor) -> None:
        self._executor = executor
        self._processes = isinstance(executor, concurrent.futures.ProcessPoolExecutor)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        if self._processes:
            return self._submit_to_process(fn, args, kwargs)
        context = contextvars.copy_context()
        return self._executor.submit(context.run, fn, *args, **kwargs)

    def _submit_to_process(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> concurrent.futures.Future[Any]:
        state = ZONE.get() if FLAGS.zones else None
        inner = self._executor.submit(
            _run_in_process,
            fn,
            PURPOSE.get(),
            state.tenant if state is not None else None,
            tuple(sorted(state.categories)) if state is not None else (),
            state is not None,
            args,
            kwargs,
        )
        outer: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def finish(done: concurrent.futures.Future[Any]) -> None:
            if done.cancelled():
                outer.cancel()
                outer.set_running_or_notify_cancel()
                return
            error = done.exception()
            if error is not None:
                outer.set_exception(error)
                return
            result, learned = done.result()
            if state is not None and learned:
                state.add(frozenset(learned))
            outer.set_result(result)

        inner.add_done_callback(finish)
        return outer

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=cancel_futures)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._executor, name)


def wrap_executor(executor: concurrent.futures.Executor) -> ContextExecutor:
    """Wrap a ``concurrent.futures`` executor so submitted work keeps the
    current purpose, tenant and zone (also through ``loop.run_in_executor``).

    >>> from concurrent.futures import ThreadPoolExecutor
    >>> with wrap_executor(ThreadPoolExecutor(2)) as pool:
    ...     pool.submit(current_zone).result() is None
    True
    """
    if isinstance(executor, ContextExecutor):
        return executor
    if not isinstance(executor, concurrent.futures.Executor):
        raise TypeError(f"wrap_executor() needs a concurrent.futures.Executor, not {type(executor).__name__}")
    return ContextExecutor(executor)


# -- the tenant, once the application knows it ------------------------------------------


def set_tenant(tenant: str) -> None:
    """Name the current zone's tenant, once the application has authenticated
    the caller (a middleware opens the zone before the app knows who it is).

    >>> with zone():
    ...     set_tenant("contoso")
    ...     current_zone().tenant
    'contoso'

    A zone's tenant is set once: naming the same tenant again does nothing,
    naming a different one raises :class:`PolicyError` (one request serves
    one tenant). The id must be a non-empty printable string of at most 256
    characters, not a labelled value (tenant ids travel in records and
    baggage) and not ``"(several tenants)"`` (the mark of several tenants'
    data). Outside a zone it raises :class:`PolicyError`.
    """
    if not isinstance(tenant, str):
        raise PolicyError(f"a tenant id is a string, not {type(tenant).__name__}", field="tenant")
    if getattr(type(tenant), "_pg_kind", None) is not None:
        raise PolicyError(
            "a tenant id must not be a labelled value: it is kept in records and baggage", field="tenant"
        )
    if not tenant or tenant != tenant.strip() or len(tenant) > MAX_TENANT_LENGTH or not tenant.isprintable():
        raise PolicyError(
            f"a tenant id is 1 to {MAX_TENANT_LENGTH} printable characters without surrounding spaces",
            field="tenant",
        )
    if tenant == MIXED_TENANT:
        raise PolicyError(
            f"{MIXED_TENANT!r} marks data of several tenants and is never a tenant id", field="tenant"
        )
    state = ZONE.get() if FLAGS.zones else None
    if state is None:
        raise PolicyError(
            "set_tenant() outside a zone: open one with pg.zone() or a middleware", field="tenant"
        )
    with state._lock:
        current = state.tenant
        if current is None:
            state.tenant = tenant
            return
    if current != tenant:
        raise PolicyError(
            f"this zone's tenant is already {current!r}, not {tenant!r}: a zone serves one tenant",
            field="tenant",
        )
