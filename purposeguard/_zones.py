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
from typing import Any, Callable, Iterable, TypeVar

from ._context import FLAGS, PURPOSE, ZONE, ZoneState
from ._errors import PolicyError, PurposeGuardError
from ._labels import KEYS, label, labels_in_values, strip_labels, tenant_of
from ._records import Declassification
from ._runtime import caller_name, get_guard

__all__ = ["zone", "transform", "wrap_executor", "current_zone", "ContextExecutor"]

F = TypeVar("F", bound=Callable[..., Any])


class zone:  # noqa: N801 - reads as a statement: with zone(tenant=...)
    """The scope of one request or job: ``with pg.zone(tenant="contoso"): ...``.

    A nested zone starts with its parent's categories and hands what it
    learned back to the parent when it closes. ``categories`` seeds the zone
    (for instance from incoming baggage); unknown keys raise.
    """

    __slots__ = ("tenant", "categories", "_entries")

    def __init__(self, tenant: str | None = None, *, categories: Iterable[str] = ()) -> None:
        if tenant is not None and not isinstance(tenant, str):
            raise TypeError("tenant must be a string or None")
        self.tenant = tenant
        self.categories = KEYS.taxonomy.require_categories(categories)
        self._entries: list[tuple[ZoneState, contextvars.Token[ZoneState | None], int]] = []

    def __enter__(self) -> ZoneState:
        FLAGS.zones = True
        state = ZoneState(self.tenant, ZONE.get(), self.categories)
        token = ZONE.set(state)
        self._entries.append((state, token, threading.get_ident()))
        return state

    def __exit__(self, *exc: object) -> None:
        if not self._entries:
            raise PurposeGuardError("leaving a zone that was never entered")
        state, token, thread = self._entries[-1]
        if thread != threading.get_ident():
            raise PurposeGuardError(
                "leaving a zone from another thread than the one that entered it"
            )
        if ZONE.get() is not state:
            raise PurposeGuardError("leaving a zone that is not the current one (zones must nest)")
        try:
            ZONE.reset(token)
        except ValueError:
            raise PurposeGuardError(
                "leaving a zone with a token from another context"
            ) from None
        self._entries.pop()
        if state.parent is not None:
            state.parent.add(state.categories)

    async def __aenter__(self) -> ZoneState:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)


def current_zone() -> ZoneState | None:
    """The zone state of the current request or job, if one is open."""
    return ZONE.get() if FLAGS.zones else None


# -- transforms ---------------------------------------------------------------------


def _covered(category: str, allowed: tuple[str, ...]) -> bool:
    return any(category == a or category.startswith(a + ".") for a in allowed)


def transform(transform_id: str) -> Callable[[F], F]:
    """Apply a policy transform: the one way labels are removed.

    >>> @transform("usage-aggregate")
    ... def mailbox_size(messages): return sum(len(m) for m in messages)

    The inputs may carry only the transform's ``from`` categories (anything
    else is a violation, ``via="argument"``); the result carries the ``to``
    category instead of the inputs' labels, and every use is recorded as a
    :class:`Declassification`. The zone keeps what it saw.
    """
    policy = get_guard().policy
    if transform_id not in policy.transforms:
        raise PolicyError(
            f"unknown transform {transform_id!r} (the policy defines: "
            f"{', '.join(sorted(policy.transforms)) or 'none'})",
            rule=transform_id,
        )

    def decorate(fn: F) -> F:
        name = f"{fn.__module__}.{fn.__qualname__}"

        def before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[frozenset[str], str | None]:
            guard = get_guard()
            spec = guard.policy.transforms.get(transform_id)
            if spec is None:
                raise PolicyError(f"the active policy has no transform {transform_id!r}", rule=transform_id)
            values = args + tuple(kwargs.values())
            labels = labels_in_values(values)
            state = ZONE.get() if FLAGS.zones else None
            tenant = next((t for t in map(tenant_of, values) if t), None) or (
                state.tenant if state is not None else None
            )
            if state is not None and labels:
                state.add(labels)
            refused = sorted(c for c in labels if not _covered(c, spec.from_categories))
            if refused:
                _refuse(guard, transform_id, refused, name, tenant)
            return labels, tenant

        def after(result: Any, labels: frozenset[str], tenant: str | None) -> Any:
            guard = get_guard()
            spec = guard.policy.transforms[transform_id]
            out = label(strip_labels(result), spec.to, tenant=tenant)
            guard.dispatch(
                Declassification(
                    transform=transform_id,
                    from_categories=tuple(sorted(labels)),
                    to=spec.to,
                    function=name,
                    purpose=PURPOSE.get(),
                    tenant=tenant,
                    timestamp=time.time(),
                )
            )
            return out

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                labels, tenant = before(args, kwargs)
                return after(await fn(*args, **kwargs), labels, tenant)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            labels, tenant = before(args, kwargs)
            return after(fn(*args, **kwargs), labels, tenant)

        wrapper.__purposeguard_transform__ = transform_id  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _refuse(guard: Any, transform_id: str, refused: list[str], name: str, tenant: str | None) -> None:
    from ._errors import PurposeViolation
    from ._records import Violation

    spec = guard.policy.transforms[transform_id]
    mode = guard.mode
    if mode == "off":
        return
    purpose_now = PURPOSE.get() or "transform"
    violations = [
        Violation(
            category=category,
            purpose=purpose_now,
            rule=transform_id,
            via="argument",
            function=name,
            tenant=tenant,
            mode=mode,
            timestamp=time.time(),
            remediation=(
                f"transform {transform_id!r} accepts only {', '.join(spec.from_categories)}; "
                f"{category} needs another transform, or the flow must be blocked"
            ),
            fix="block",
        )
        for category in refused
    ]
    for violation in violations:
        guard.dispatch(violation)
    if mode == "enforce":
        raise PurposeViolation(violations)


# -- executors ---------------------------------------------------------------------------


class ContextExecutor(concurrent.futures.Executor):
    """An executor that runs each task in a copy of the submitter's context,
    so purpose, tenant and zone follow work into the pool."""

    def __init__(self, executor: concurrent.futures.Executor) -> None:
        self._executor = executor

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        context = contextvars.copy_context()
        return self._executor.submit(context.run, fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=cancel_futures)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._executor, name)


def wrap_executor(executor: concurrent.futures.Executor) -> ContextExecutor:
    """Wrap a ``concurrent.futures`` executor so submitted work keeps the
    current purpose, tenant and zone (also via ``loop.run_in_executor``)."""
    if isinstance(executor, ContextExecutor):
        return executor
    return ContextExecutor(executor)
