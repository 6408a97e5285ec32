"""``yield from`` with a hook: generators wrapped by ``@purpose`` and ``@produces``.

Both need what ``yield from`` gives (``send``, ``throw``, ``close`` and the
return value forwarded) plus one thing it cannot: each item passes through a
function on its way out, and, for ``@purpose``, each step of the inner
generator runs with a context variable set and reset around it, so the
purpose is current only while the generator's own code runs.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator
from contextvars import ContextVar
from typing import Any

__all__ = ["async_generator_function", "delegate", "generator_function"]


def _close_after(close: Callable[[], Any], context: tuple[ContextVar[Any], Any] | None) -> None:
    token = context[0].set(context[1]) if context is not None else None
    try:
        close()
    finally:
        if token is not None:
            context[0].reset(token)  # type: ignore[index]


async def _aclose_after(
    generator: AsyncGenerator[Any, Any], context: tuple[ContextVar[Any], Any] | None
) -> None:
    token = context[0].set(context[1]) if context is not None else None
    try:
        await generator.aclose()
    finally:
        if token is not None:
            context[0].reset(token)  # type: ignore[index]


def delegate(
    generator: Generator[Any, Any, Any],
    on_item: Callable[[Any], Any],
    context: tuple[ContextVar[Any], Any] | None = None,
    on_receive: Callable[[Any], None] | None = None,
    on_return: Callable[[Any], Any] | None = None,
    owned: bool = True,
) -> Generator[Any, Any, Any]:
    """``yield from generator`` with ``on_item`` applied to what it yields,
    ``on_receive`` to what the caller sends or throws in before each step
    (None for a plain ``next()`` and for the first step; a refusal there
    closes the generator and reaches the caller) and ``on_return`` to what
    it returns. ``owned=False``: the generator was made elsewhere and may be
    shared, so closing this delegate (or a refusal) leaves it open."""
    var, value = context if context is not None else (None, None)
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        if on_receive is not None:
            # Every step, the first included: the generator's code runs
            # again now, perhaps long after it was made (a consumer primed
            # before the request read anything).
            try:
                on_receive(to_send if to_throw is None else to_throw)
            except BaseException:
                if owned:
                    _close_after(generator.close, context)
                raise
        token = var.set(value) if var is not None else None
        try:
            if to_throw is not None:
                error, to_throw = to_throw, None
                item = generator.throw(error)
            else:
                item = generator.send(to_send)
        except StopIteration as stop:
            return stop.value if on_return is None else on_return(stop.value)
        finally:
            if token is not None:
                var.reset(token)  # type: ignore[union-attr]
        item = on_item(item)
        try:
            to_send = yield item
        except GeneratorExit:
            if owned:
                _close_after(generator.close, context)
            raise
        except BaseException as error:  # noqa: BLE001 - forwarded into the generator
            to_throw, to_send = error, None


def generator_function(
    fn: Callable[..., Generator[Any, Any, Any]],
    on_item: Callable[[Any], Any],
    *,
    before: Callable[[tuple[Any, ...], dict[str, Any]], None] | None = None,
    context: tuple[ContextVar[Any], Any] | None = None,
    on_receive: Callable[[Any], None] | None = None,
    on_return: Callable[[Any], Any] | None = None,
    owned: bool = True,
) -> Callable[..., Generator[Any, Any, Any]]:
    """A generator function that runs ``before(args, kwargs)`` when called and
    then delegates to ``fn``'s generator (creating it inside ``context`` too)."""

    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        if before is not None:
            before(args, kwargs)
        if context is not None:
            token = context[0].set(context[1])
            try:
                generator = fn(*args, **kwargs)
            finally:
                context[0].reset(token)
        else:
            generator = fn(*args, **kwargs)
        return (yield from delegate(generator, on_item, context, on_receive, on_return, owned))

    return wrapper


def async_generator_function(
    fn: Callable[..., AsyncGenerator[Any, Any]],
    on_item: Callable[[Any], Any],
    *,
    before: Callable[[tuple[Any, ...], dict[str, Any]], None] | None = None,
    context: tuple[ContextVar[Any], Any] | None = None,
    on_receive: Callable[[Any], None] | None = None,
    owned: bool = True,
) -> Callable[..., AsyncGenerator[Any, Any]]:
    """The asynchronous twin of :func:`generator_function` (async generators
    have no ``yield from``, so the forwarding is written out here, once)."""
    var, value = context if context is not None else (None, None)

    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        if before is not None:
            before(args, kwargs)
        generator = fn(*args, **kwargs)
        to_send: Any = None
        to_throw: BaseException | None = None
        while True:
            if on_receive is not None:
                try:
                    on_receive(to_send if to_throw is None else to_throw)
                except BaseException:
                    if owned:
                        await _aclose_after(generator, context)
                    raise
            token = var.set(value) if var is not None else None
            try:
                if to_throw is not None:
                    error, to_throw = to_throw, None
                    item = await generator.athrow(error)
                else:
                    item = await generator.asend(to_send)
            except StopAsyncIteration:
                return
            finally:
                if token is not None:
                    var.reset(token)  # type: ignore[union-attr]
            item = on_item(item)
            try:
                to_send = yield item
            except GeneratorExit:
                if owned:
                    await _aclose_after(generator, context)
                raise
            except BaseException as error:  # noqa: BLE001 - forwarded into the generator
                to_throw, to_send = error, None

    return wrapper
