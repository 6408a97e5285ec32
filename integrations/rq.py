"""Purpose, tenant and zone across RQ jobs.

>>> import purposeguard as pg
>>> from purposeguard.integrations import rq as pg_rq
>>> pg_rq.instrument()          # in the code that enqueues, and in the worker
>>> @pg.purpose("service.operations")
... def reindex(mailbox_id): ...
>>> pg_rq.uninstrument()

and enqueue as usual: ``queue.enqueue(reindex, "mbx-1")``.

Enqueueing is where data leaves the process: the job's arguments are checked
like any egress (against the current purpose, with the zone's categories),
and the current purpose, whose data the zone holds (its tenant, or "several
tenants": see ``baggage``) and its categories (and the labels of the
arguments, which RQ's serializer drops) are stored in the job's ``meta``
under ``purposeguard_baggage`` (W3C baggage syntax), signed for that job id
with the baggage key (``PURPOSEGUARD_BAGGAGE_KEYS``) enqueuer and worker
share. ``Queue.create_job`` (under ``enqueue``, ``enqueue_call``,
``enqueue_at``/``enqueue_in`` and ``enqueue_many``) checks while it still
sees the labelled arguments; ``Queue.enqueue_job`` and
``Queue.schedule_job`` check and tag a job made any other way
(``Job.create`` then ``enqueue_job``, a job fetched back from Redis), and
``Job.save`` a job never handed to a queue (``job.save()`` then
``queue.push_job_id(job.id)``), once per job and queue: a job ``create_job`` checked for that queue is not
checked or recorded again. A job that already carries baggage verified for
it keeps what it carried (its categories and tenant join the enqueuer's). The worker reads them back, verified and validated like any incoming
baggage (meta copied onto another job is ignored), and runs the job in a zone of its
own with that tenant and those categories and with the enqueuer's purpose
current; a job function decorated with ``@pg.purpose`` checks the zone and
its arguments when it starts, so a job declared for advertising is refused
in the worker when the enqueuer's zone held customer data. Enqueueing such a
function (not a dotted name) also checks its arguments' labels and the
zone against its declared purpose, before anything reaches Redis: a
serializer that drops labels (JSON) and a missing baggage key (said once
per process) leave the worker nothing to check.

The job's success, failure and stopped callbacks run in the job's zone
too (with what the job learned while it ran, and the enqueuer's purpose):
a callback declared for a purpose the job's data forbids is refused, though
the result it is handed was laundered of its labels.

A job's result comes back with what its zone held: the worker stores the
categories (and whose data they are), signed for that job id, in the
result RQ writes to Redis, and whoever reads it (``job.return_value()``,
``latest_result()``, ``results()``) gets the value and a failure's text
labelled with them, and its zone told, as if the job had run in-process: a
job that read customer content and returned a summary of it cannot launder
it for its reader.

In the worker, call :func:`instrument` where the worker imports its
settings (``rq worker -c settings``) after ``pg.configure(...)``. RQ runs
each job in a forked process that exits without running exit handlers, so
the audit records a job produced are flushed before its process ends.

Needs ``pip install 'purposeguard[rq]'``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import threading
from typing import Any

from purposeguard._context import PURPOSE
from purposeguard._state import remember
from purposeguard._zones import zone

from . import baggage
from ._egress import check_egress, sent_labels
from ._patch import Patcher
from ._tasks import (
    WITHHELD,
    arguments_protected,
    check_published,
    read_result,
    result_header,
    say_if_nothing_travels,
)

__all__ = ["META_KEY", "instrument", "is_instrumented", "uninstrument"]

logger = logging.getLogger("purposeguard")

META_KEY = "purposeguard_baggage"
SUPPORTED = (1, 16)
# Set on a job once it was checked and tagged for a queue: the queue's URL.
_CHECKED = "_purposeguard_checked_for"


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.originals: dict[str, Any] = {}


_STATE = _State()


def _queue_url(queue: Any) -> str:
    """Where a queue's jobs go, as a URL the egress check understands."""
    return _redis_url(getattr(queue, "connection", None), getattr(queue, "name", "default"))


def _redis_url(connection: Any, name: str) -> str:
    try:
        pool = connection.connection_pool
        kwargs = pool.connection_kwargs
        host = kwargs.get("host") or "localhost"
        port = kwargs.get("port") or 6379
        db = kwargs.get("db") or 0
        scheme = "rediss" if _encrypted(pool) else "redis"
        if kwargs.get("path"):
            return f"unix://localhost/{name}"
        return f"{scheme}://{host}:{port}/{db}/{name}"
    except Exception:  # noqa: BLE001 - an unusual connection still gets its check
        return f"redis://localhost/{name}"


def _encrypted(pool: Any) -> bool:
    """Whether a redis-py pool connects over TLS. ``Redis(ssl=True)`` and
    ``rediss://`` both leave no ``ssl`` among the connection keywords: the
    connection class says it."""
    try:
        from redis.connection import SSLConnection
    except ImportError:  # pragma: no cover - rq depends on redis
        return False
    connection_class = getattr(pool, "connection_class", None)
    return isinstance(connection_class, type) and issubclass(connection_class, SSLConnection)


def _function_name(func: Any) -> str:
    if isinstance(func, str):
        return func
    module = getattr(func, "__module__", "?")
    return f"{module}.{getattr(func, '__qualname__', getattr(func, '__name__', '?'))}"


def _check(url: str, func: Any, labels: frozenset[str], tenant: str | None, name: str) -> None:
    # Raises in enforce mode before anything reaches Redis.
    check_egress(url, labels, function=name, tenant=tenant)
    if func is not None and not isinstance(func, str):
        check_published(func, labels, name, tenant=tenant)
    say_if_nothing_travels(labels)


def _tag(
    job: Any,
    url: str,
    labels: frozenset[str],
    tenant: str | None,
    carried: baggage.Incoming | None = None,
) -> None:
    try:
        value = baggage.header_value(
            extra_categories=labels,
            extra_tenant=tenant,
            carried=carried,
            channel=baggage.task_channel("rq", job.id, job.func_name),
        )
        if value:
            job.meta[META_KEY] = value
        setattr(job, _CHECKED, url)
    except Exception:  # noqa: BLE001 - enqueueing never fails over purposeguard's header
        logger.exception("purposeguard could not add its baggage to an RQ job")


# Set on a job Job.create made here: whether the application gave its description.
_DESCRIPTION_GIVEN = "_purposeguard_description_given"


def _describe_without_values(job: Any, labels: frozenset[str]) -> None:
    """RQ describes a job by its call with each argument's ``repr``: stored
    in Redis and logged by the worker ("default: jobs.notify('...')") as
    plain text, outside the job's zone and past any log redaction. Where
    the arguments are protected, a description RQ made names the function
    only. A description the application gave is its own text, kept (its
    labels were checked with the arguments); a job whose description's
    origin is not known here (fetched from Redis) is described by its
    function too."""
    if getattr(job, _DESCRIPTION_GIVEN, False) or not arguments_protected(labels):
        return
    job.description = f"{job.func_name}({WITHHELD})"


def _job_create(original: Any) -> Any:
    import inspect

    signature = inspect.signature(original)

    def create(cls: Any, *args: Any, **kwargs: Any) -> Any:
        job = original(cls, *args, **kwargs)
        try:
            given = signature.bind_partial(cls, *args, **kwargs).arguments.get("description") is not None
        except TypeError:
            given = False
        setattr(job, _DESCRIPTION_GIVEN, given)
        return job

    create.__wrapped__ = original  # type: ignore[attr-defined]
    return create


def _create_job(original: Any) -> Any:
    def create_job(
        self: Any, func: Any, args: Any = None, kwargs: Any = None, *rest: Any, **options: Any
    ) -> Any:
        url = _queue_url(self)
        # create_job(func, args, kwargs, timeout, result_ttl, ttl, failure_ttl, description, ...)
        description = options.get("description", rest[4] if len(rest) > 4 else None)
        labels, tenant = sent_labels((args, kwargs, description))
        _check(url, func, labels, tenant, _function_name(func))
        job = original(self, func, args, kwargs, *rest, **options)
        _describe_without_values(job, labels)
        _tag(job, url, labels, tenant)
        return job

    create_job.__wrapped__ = original  # type: ignore[attr-defined]
    return create_job


def _prepared(queue: Any, job: Any) -> None:
    """Check and tag a job ``Queue.create_job`` did not make for this queue
    (``Job.create``, a job fetched back from Redis), before it is stored."""
    _prepare(_queue_url(queue), job)


def _prepare(url: str, job: Any) -> None:
    if getattr(job, _CHECKED, None) == url:
        return  # create_job checked it, with the labels it saw then
    func = _job_function(job)
    # A job made here holds its arguments as given (labelled); one fetched
    # from Redis as its serializer read them back (pickle keeps labels).
    args = job.__dict__.get("_args")
    kwargs = job.__dict__.get("_kwargs")
    description = job.__dict__.get("description")
    labels, tenant = sent_labels(
        (
            args if isinstance(args, (list, tuple)) else (),
            kwargs if isinstance(kwargs, dict) else {},
            description if isinstance(description, str) else None,
        )
    )
    _check(url, func, labels, tenant, _function_name(func) if func is not None else str(job.func_name))
    _describe_without_values(job, labels)
    carried = None
    meta = job.meta if isinstance(getattr(job, "meta", None), dict) else None
    raw = meta.get(META_KEY) if meta is not None else None
    if isinstance(raw, (str, bytes)):
        # Verified for this job id and function only: meta copied from
        # another job carries nothing.
        carried = baggage.parse(raw, channel=baggage.task_channel("rq", job.id, job.func_name))
    _tag(job, url, labels, tenant, carried)


def _job_function(job: Any) -> Any:
    """The function a job runs, where this process has it already (never
    imported here just to look: as with a dotted name given to enqueue)."""
    try:
        name = job.func_name
        instance = job.__dict__.get("_instance")
        if instance is not None and isinstance(name, str):
            return getattr(instance, name, None)
        if not isinstance(name, str):
            return None
        parts = name.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            found: Any = sys.modules.get(".".join(parts[:cut]))
            if found is None:
                continue
            for attribute in parts[cut:]:
                found = getattr(found, attribute, None)
            return found
    except Exception:  # noqa: BLE001 - an unresolvable job is checked as one given by name
        return None
    return None


def _enqueue_job(original: Any) -> Any:
    def enqueue_job(self: Any, job: Any, *args: Any, **kwargs: Any) -> Any:
        _prepared(self, job)
        return original(self, job, *args, **kwargs)

    enqueue_job.__wrapped__ = original  # type: ignore[attr-defined]
    return enqueue_job


def _schedule_job(original: Any) -> Any:
    def schedule_job(self: Any, job: Any, *args: Any, **kwargs: Any) -> Any:
        _prepared(self, job)
        return original(self, job, *args, **kwargs)

    schedule_job.__wrapped__ = original  # type: ignore[attr-defined]
    return schedule_job


# A job in one of these states was never handed to a queue: saving it is
# publishing it (``job.save()`` then ``queue.push_job_id(job.id)`` enqueues
# without ``enqueue_job``). RQ before 2 leaves a new job's status unset.
_UNPUBLISHED = frozenset({None, "created", "deferred"})


def _save(original: Any) -> Any:
    def save(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(self, _CHECKED, None) is None and _status(self) in _UNPUBLISHED:
            _prepare(
                _redis_url(getattr(self, "connection", None), getattr(self, "origin", None) or "default"),
                self,
            )
        return original(self, *args, **kwargs)

    save.__wrapped__ = original  # type: ignore[attr-defined]
    return save


def _status(job: Any) -> str | None:
    # As stored on the job, never fetched from Redis (the property may be).
    status = job.__dict__.get("_status")
    return getattr(status, "value", status) if status is not None else None


def _incoming(job: Any) -> baggage.Incoming:
    """What the enqueuer's baggage says, verified for this job."""
    raw = job.meta.get(META_KEY) if isinstance(getattr(job, "meta", None), dict) else None
    if raw is not None and not isinstance(raw, (str, bytes)):
        logger.warning("purposeguard ignored an RQ job's baggage that is not a string")
        raw = None
    if raw is None:
        return baggage.NOTHING
    return baggage.parse(raw, channel=baggage.task_channel("rq", job.id, job.func_name))


# Set on a job while and after it runs here: the zone it ran in and the
# purpose that was current, for its callbacks.
_RAN_IN = "_purposeguard_ran_in"


def _perform(original: Any) -> Any:
    def perform(self: Any) -> Any:
        incoming = _incoming(self)
        try:
            with zone(incoming.tenant, categories=incoming.categories) as state:
                baggage.mark_zone(state, incoming)
                self.__dict__[_RAN_IN] = (state, incoming.purpose)
                token = PURPOSE.set(incoming.purpose) if incoming.purpose else None
                try:
                    value = original(self)
                except BaseException:
                    # The error's text is stored as the job's failed result.
                    _keep_result_header(self, None)
                    raise
                finally:
                    if token is not None:
                        PURPOSE.reset(token)
                _keep_result_header(self, value)
                return value
        finally:
            _flush_audit()

    perform.__wrapped__ = original  # type: ignore[attr-defined]
    return perform


# Job id -> the header for its result, made while the job's zone was open:
# RQ stores the result (Result.create, from the worker's success or failure
# handling) after perform() returned. A work horse runs one job; a worker
# that runs jobs in its own process keeps the last LIMIT.
_RESULT_HEADERS: dict[str, str] = {}
_RESULT_HEADERS_LIMIT = 1024


def _keep_result_header(job: Any, value: Any) -> None:
    header = result_header("rq", job.id, value)
    if header is None:
        _RESULT_HEADERS.pop(job.id, None)
    else:
        remember(_RESULT_HEADERS, job.id, header, _RESULT_HEADERS_LIMIT)


def _serialize(wrapped: Any, result: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    data = wrapped(*args, **kwargs)
    header = _RESULT_HEADERS.get(result.job_id)
    if header is not None and isinstance(data, dict):
        data[META_KEY] = header
    return data


def _restore(wrapped: Any, cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A result read from Redis (``job.return_value()``, ``latest_result()``,
    ``results()``): its value and the failure's text labelled with what the
    job's zone held, and the reader's zone told."""
    result = wrapped(*args, **kwargs)
    job_id = kwargs["job_id"] if "job_id" in kwargs else (args[0] if args else None)
    payload = kwargs["payload"] if "payload" in kwargs else (args[2] if len(args) > 2 else None)
    raw = None
    if isinstance(payload, dict):
        raw = payload.get(META_KEY.encode(), payload.get(META_KEY))
    if raw is None or job_id is None:
        return result
    result.return_value = read_result("rq", job_id, raw, result.return_value)
    if result.exc_string:
        result.exc_string = read_result("rq", job_id, raw, result.exc_string)
    return result


_RESULTS = Patcher("rq.results", [("Result", "serialize", _serialize), ("Result", "restore", _restore)])


def _callback_property(original: property) -> property:
    """``Job.success_callback`` (and the failure and stopped ones) hands RQ
    the callback to run in the job's zone. RQ calls a callback after
    ``perform`` returned, with the job's result or exception: outside the
    zone, what the job learned (a row it read, a value it laundered into
    its result) would not be known to the callback, and a callback
    declared for a purpose the job's data forbids would run."""
    fget = original.fget
    assert fget is not None

    def get(self: Any) -> Any:
        callback = fget(self)
        # RQ refuses coroutine callbacks itself: a wrapper would hide what they are.
        if callback is None or not callable(callback) or inspect.iscoroutinefunction(callback):
            return callback
        return _in_job_zone(self, callback)

    return property(get, original.fset, original.fdel, original.__doc__)


def _in_job_zone(job: Any, callback: Any) -> Any:
    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        ran_in = job.__dict__.get(_RAN_IN)
        if ran_in is not None:
            ran, purpose = ran_in
            tenant, categories, owners = ran.tenant, ran.categories, ran.owners
        else:
            # A callback run where the job did not run (a failure callback
            # for a job the worker lost): the zone the enqueuer sent.
            incoming = _incoming(job)
            tenant, categories, owners, purpose = incoming.tenant, incoming.categories, (), incoming.purpose
        try:
            with zone(tenant, categories=categories) as state:
                for owner in owners:
                    state.add(frozenset(), owner)
                if ran_in is None:
                    baggage.mark_zone(state, incoming)
                token = PURPOSE.set(purpose) if purpose else None
                try:
                    return callback(*args, **kwargs)
                finally:
                    if token is not None:
                        PURPOSE.reset(token)
        finally:
            # The work horse exits right after its callbacks.
            _flush_audit()

    return run


_CALLBACKS = ("success_callback", "failure_callback", "stopped_callback")


def _flush_audit() -> None:
    # RQ's work horse leaves with os._exit: what the job recorded must be
    # written now or never.
    from purposeguard import audit

    sink = audit.attached()
    if sink is None:
        return
    try:
        sink.flush()
    except Exception as error:  # noqa: BLE001 - the job's outcome stands; the sink logged why
        logger.error("purposeguard could not write an RQ job's audit records: %s", error)


def _version() -> tuple[int, ...]:
    import rq

    parts = []
    for piece in str(getattr(rq, "__version__", getattr(rq, "VERSION", "0"))).split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def instrument() -> None:
    """Check and tag jobs when they are enqueued and run them in their zone, process-wide."""
    from . import require

    require("rq", "rq")
    from rq.job import Job
    from rq.queue import Queue

    version = _version()
    if version < SUPPORTED:
        raise ImportError(
            f"purposeguard.integrations.rq supports rq {SUPPORTED[0]}.{SUPPORTED[1]} or later, not "
            f"{'.'.join(map(str, version))}: pip install 'purposeguard[rq]'"
        )
    with _STATE.lock:
        if _STATE.originals:
            return
        originals = {
            "create": Job.__dict__["create"],
            "create_job": Queue.create_job,
            "enqueue_job": Queue.enqueue_job,
            "perform": Job.perform,
            "save": Job.save,
        }
        if hasattr(Queue, "schedule_job"):
            originals["schedule_job"] = Queue.schedule_job
        callbacks = {
            name: Job.__dict__[name] for name in _CALLBACKS if isinstance(Job.__dict__.get(name), property)
        }
        originals.update(callbacks)
        _STATE.originals = originals
        # setattr: the classes are RQ's own, patched in place for every queue and job.
        setattr(Queue, "create_job", _create_job(Queue.create_job))  # noqa: B010
        setattr(Queue, "enqueue_job", _enqueue_job(Queue.enqueue_job))  # noqa: B010
        if "schedule_job" in originals:
            setattr(Queue, "schedule_job", _schedule_job(Queue.schedule_job))  # noqa: B010
        setattr(Job, "perform", _perform(Job.perform))  # noqa: B010
        setattr(Job, "save", _save(Job.save))  # noqa: B010
        setattr(Job, "create", classmethod(_job_create(originals["create"].__func__)))  # noqa: B010
        for name, callback in callbacks.items():
            setattr(Job, name, _callback_property(callback))
        _RESULTS.install()


def uninstrument() -> None:
    """Restore RQ's own methods."""
    with _STATE.lock:
        originals = _STATE.originals
        if not originals:
            return
        from rq.job import Job
        from rq.queue import Queue

        for name in ("create_job", "enqueue_job", "schedule_job"):
            if name in originals:
                setattr(Queue, name, originals[name])
        setattr(Job, "perform", originals["perform"])  # noqa: B010
        setattr(Job, "save", originals["save"])  # noqa: B010
        setattr(Job, "create", originals["create"])  # noqa: B010
        for name in _CALLBACKS:
            if name in originals:
                setattr(Job, name, originals[name])
        _RESULTS.remove()
        _STATE.originals = {}


def is_instrumented() -> bool:
    return bool(_STATE.originals)
