"""Purpose, tenant and zone across Celery tasks.

>>> import celery
>>> import purposeguard as pg
>>> from purposeguard.integrations import celery as pg_celery
>>> pg_celery.instrument()                      # in the publisher and in the worker
>>> app = celery.Celery("mail")
>>> @app.task
... @pg.purpose("service.operations")           # a task declared with a purpose is guarded
... def reindex(mailbox_id): ...
>>> pg_celery.uninstrument()

Publishing a task puts the current purpose, whose data the zone holds (its
tenant, or "several tenants": see ``baggage``) and its categories (and the labels of the task's arguments, which serializers drop) into the
message header ``purposeguard_baggage`` (W3C baggage syntax), signed for
that task id with the baggage key (``PURPOSEGUARD_BAGGAGE_KEYS``) publisher
and worker share. The worker reads them back, verified and validated like
any baggage (a header copied onto another task is ignored), and runs each task in a zone of
its own with that tenant and those categories, and with the publisher's
purpose current. A task whose function is decorated with ``@pg.purpose``
checks the zone (``via="context"``) and its arguments when it starts, so a
task declared for advertising is caught when the publisher's zone held
customer data. Where the publisher knows the task (``send_task``, and so
``delay``/``apply_async``, of a task registered in its app), the arguments'
labels and the publisher's zone are checked against the task's declared
purpose before the message is sent: the serializer drops every label, and
without a baggage key nothing of the zone reaches the worker (said once
per process).

Publishing is also where the data leaves the process, as enqueueing an RQ
job is: every ``send_task`` (so ``delay`` and ``apply_async``, and the
arguments of the tasks a chain, chord or link runs next) is checked like
any egress against the purpose of the broker's host (a policy
``[[destinations]]`` entry) or else the current purpose, with the
publisher's zone, whether or not the task was declared with a purpose.
A task's result comes back with what its zone held: the worker stores the
categories (and whose data they are), signed for that task id, next to the
result in the result backend (or in the rpc backend's reply message), and
the caller that reads the result (``get()`` and its ``callback``,
``wait()``, ``result``/``info``, ``traceback``, a group's
``join()``/``join_native()``, the backend's ``get_result()``) gets them on
the value and in its own zone (the raw meta of ``get_task_meta()``, the rpc
backend's too, and ``get_many()`` of a key-value backend: on the value only,
as a status check reads it too; a value that cannot carry a label, True,
False or None, tells the zone there, unless Celery reads the meta for a
task's state), signed for the task id
the state was stored for (``update_state(task_id=...)``, ``store_result()``
by hand, with or without a request),
as if the task had run in-process: a task that read customer content and
returned a summary of it cannot launder it for its caller. Backends that
keep only their own fields (database, MongoDB, Cassandra) drop it (said
once). With ``result_extended`` the arguments Celery stores next to the
state (``AsyncResult.args``/``kwargs``, the meta's ``args``/``kwargs``) come
back labelled the same way, with what the task's message carried, also for
a state stored before the task ran (expired, revoked). A chord's callback
gets what every header task read: on the redis
backend each header task stores its header next to its state as it joins
the chord (also when it ignores its result), and the worker that publishes
the callback reads each part through it (one read per part); other
backends join the header's results, as a caller does.

Needs ``pip install 'purposeguard[celery]'``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

from purposeguard._context import PURPOSE
from purposeguard._labels import merge_tenants
from purposeguard._state import STATE
from purposeguard._zones import zone

from . import baggage
from ._egress import check_egress, deep_labels, sent_labels
from ._patch import Patcher
from ._tasks import (
    ALWAYS,
    NEVER,
    UNLESS_LABELLED,
    WITHHELD,
    arguments_protected,
    check_published,
    read_result,
    result_header,
    say_if_nothing_travels,
)

__all__ = ["HEADER", "instrument", "uninstrument", "is_instrumented"]

logger = logging.getLogger("purposeguard")

HEADER = "purposeguard_baggage"
_UID = "purposeguard.integrations.celery"


class _Running:
    """Zones and purpose tokens of the tasks running now, by task id."""

    def __init__(self) -> None:
        self.tasks: dict[str, tuple[zone, Any]] = {}
        self.lock = threading.Lock()
        self.connected = False


_RUNNING = _Running()


def _before_publish(sender: Any = None, body: Any = None, headers: Any = None, **_: Any) -> None:
    if headers is None:
        return
    try:
        # Protocol 2: body is (args, kwargs, embed); protocol 1: a dict.
        if isinstance(body, (tuple, list)) and len(body) >= 2:
            labels = deep_labels((body[0], body[1]))
        elif isinstance(body, dict):
            labels = deep_labels((body.get("args"), body.get("kwargs")))
        else:
            labels = frozenset()
        # Protocol 2 carries the task id in the headers, protocol 1 in the body.
        task_id = headers.get("id") if isinstance(headers, dict) else None
        if task_id is None and isinstance(body, dict):
            task_id = body.get("id")
        if task_id is None:
            return  # baggage bound to no task could be replayed onto any
        name = headers.get("task") if isinstance(headers, dict) else None
        if name is None and isinstance(body, dict):
            name = body.get("task")
        value = baggage.header_value(
            extra_categories=labels, channel=baggage.task_channel("celery", task_id, name)
        )
    except Exception:  # noqa: BLE001 - publishing never fails over purposeguard
        logger.exception("purposeguard could not add its header to a task message")
        return
    if value:
        headers[HEADER] = value


def _send_task(wrapped: Any, app: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # Celery swallows what a publish signal handler raises: a refusal has to
    # come from the call that publishes.
    name = args[0] if args else kwargs.get("name")
    task_args = args[1] if len(args) > 1 else kwargs.get("args")
    task_kwargs = args[2] if len(args) > 2 else kwargs.get("kwargs")
    labels, tenant = sent_labels((task_args, task_kwargs, kwargs.get("argsrepr"), kwargs.get("kwargsrepr")))
    # The tasks a chain, a chord or a link runs next travel in the same
    # message, with their own arguments.
    following = [
        (signature.get("task"), *sent_labels((signature.get("args"), signature.get("kwargs"))))
        for signature in _signatures(kwargs, 0)
    ]
    sent, owner = labels, tenant
    for _, next_labels, next_tenant in following:
        sent = sent | next_labels
        owner = merge_tenants(owner, next_tenant)
    # Leaving the process: against the broker host's purpose or the current one, with the zone.
    check_egress(_broker_url(app), sent, function=f"celery.{name}", tenant=owner)
    check_published(
        kwargs.get("task_type") or _registered(app, name), labels, f"celery.{name}", tenant=tenant
    )
    for next_name, next_labels, next_tenant in following:
        check_published(_registered(app, next_name), next_labels, f"celery.{next_name}", tenant=next_tenant)
    say_if_nothing_travels(sent)
    if arguments_protected(sent):
        # Celery describes the arguments by their repr (argsrepr, kwargsrepr)
        # in the message, which the broker keeps, and in the task-sent
        # event, which monitors (Flower) show: where they are protected, it
        # describes them by this text instead. Reprs the application gave
        # are its own text, kept (their labels were checked as arguments).
        for key in ("argsrepr", "kwargsrepr"):
            if kwargs.get(key) is None:
                kwargs[key] = f"({WITHHELD})"
    return wrapped(*args, **kwargs)


_BROKER_FAMILIES = {
    "redis": "redis",
    "rediss": "redis",
    "sentinel": "redis",
    "amqp": "amqp",
    "amqps": "amqp",
    "pyamqp": "amqp",
    "librabbitmq": "amqp",
}
_ENCRYPTED = frozenset({"rediss", "amqps"})


def _broker_url(app: Any) -> str:
    """Where a Celery app publishes, as a URL the egress check understands
    (scheme, host and port; never the credentials)."""
    try:
        conf = app.conf
        url = conf.broker_write_url or conf.broker_url or "amqp://localhost"
        if isinstance(url, (list, tuple)):
            url = url[0] if url else "amqp://localhost"
        # Failover lists: the first broker is the one written to.
        parts = urlsplit(str(url).split(";", 1)[0].strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        scheme = (parts.scheme or "amqp").lower()
        # Transport aliases by the wire they use, so that require_tls knows a
        # broker reached in the clear from one reached over TLS.
        family = _BROKER_FAMILIES.get(scheme.split("+", 1)[0])
        if family is not None:
            scheme = f"{family}s" if scheme in _ENCRYPTED or conf.broker_use_ssl else family
        return f"{scheme}://{host}{port}/"
    except Exception:  # noqa: BLE001 - an unusual broker setting still gets its check
        return "amqp://localhost/"


def _registered(app: Any, name: Any) -> Any:
    # The registry as it is: app.tasks would finalize the app (and raises
    # for one made with autofinalize=False), which send_task itself avoids.
    registry = getattr(app, "_tasks", None)
    return registry.get(name) if isinstance(name, str) and isinstance(registry, Mapping) else None


def _signatures(options: Mapping[str, Any], depth: int) -> list[Any]:
    found: list[Any] = []
    if depth > 16:
        return found
    for key in ("chain", "chord", "link", "link_error"):
        value = options.get(key)
        if not value:
            continue
        for signature in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(signature, Mapping):
                found.append(signature)
                inner = signature.get("options")
                if isinstance(inner, Mapping):
                    found.extend(_signatures(inner, depth + 1))
                # A chord's header and a group's tasks.
                for member in (
                    signature.get("kwargs", {}).get("tasks", ())
                    if isinstance(signature.get("kwargs"), Mapping)
                    else ()
                ):
                    if isinstance(member, Mapping):
                        found.append(member)
    return found


_PATCHER = Patcher("celery.app.base", [("Celery", "send_task", _send_task)])


# -- results ----------------------------------------------------------------------------

# Result backends that store or read back only the fields they know: the
# header stored next to a result never reaches its reader.
_DROPS_HEADER = ("celery.backends.database", "celery.backends.mongodb", "celery.backends.cassandra")


# The task id a backend's store_result() is storing a state for: the meta it
# builds is that task's, whatever request (or none) came with it
# (update_state(task_id=...), mark_as_done() called by hand).
_STORING: ContextVar[Any] = ContextVar("purposeguard_celery_storing", default=None)


def _store_result(wrapped: Any, backend: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    task_id = kwargs["task_id"] if "task_id" in kwargs else (args[0] if args else None)
    token = _STORING.set(task_id)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _STORING.reset(token)


def _result_meta(wrapped: Any, backend: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The meta a backend stores for a task's state (its result, its error,
    a custom state's info), with what the task's zone holds: in the worker
    this runs before the task's zone closes."""
    meta = wrapped(*args, **kwargs)
    request = kwargs["request"] if "request" in kwargs else (args[3] if len(args) > 3 else None)
    task_id = _STORING.get()
    if task_id is None:
        task_id = request.get("id") if isinstance(request, dict) else getattr(request, "id", None)
    if task_id is None or not isinstance(meta, dict):
        return meta
    value = kwargs["result"] if "result" in kwargs else (args[0] if args else None)
    # With result_extended the meta holds the task's arguments too: what
    # their message carried is told with them, also where the state is
    # stored outside the task's zone (a task expired or revoked before it ran).
    stored_arguments = any(meta.get(field) is not None for field in _STORED_ARGUMENTS)
    carried = _carried(request, task_id) if stored_arguments else baggage.NOTHING
    header = result_header("celery", task_id, value, carried=carried)
    if header is not None:
        meta[HEADER] = header
        if type(backend).__module__.startswith(_DROPS_HEADER):
            _say_backend_drops_header(backend)
    return meta


def _say_backend_drops_header(backend: Any) -> None:
    topic = f"celery result backend {type(backend).__module__}"
    if topic in STATE.baggage_said:
        return
    STATE.baggage_said.add(topic)
    logger.warning(
        "purposeguard: the Celery result backend %s keeps only its own fields: task results "
        "reach whoever reads them without the categories the task saw (a key-value backend "
        "such as redis keeps them)",
        type(backend).__name__,
    )


def _read(task_id: Any, meta: Any, value: Any, *, tell_zone: str = ALWAYS) -> Any:
    """``value``, read from task ``task_id``'s ``meta`` through its header."""
    raw = meta.get(HEADER) if isinstance(meta, dict) else None
    return read_result("celery", task_id, raw, value, tell_zone=tell_zone)


# What result_extended stores of the task's call next to its state: the
# arguments are the caller's data, whose labels the serializer dropped.
# (The task's name, worker and queue are not data.)
_STORED_ARGUMENTS = ("args", "kwargs")


def _read_meta(task_id: Any, meta: Any, *, tell_zone: str, any_state: bool = False) -> Any:
    """A copy of a backend's ``meta`` of ``task_id`` read through its header:
    the result of a finished task (of any state with ``any_state``) and the
    arguments stored with it, labelled; the meta itself where there is no header."""
    if not isinstance(meta, dict) or meta.get(HEADER) is None:
        return meta
    read: dict[str, Any] = {}
    if any_state or meta.get("status") == "SUCCESS":
        # An error's or a custom state's meta is otherwise left as it is:
        # Celery rebuilds the exception from it (get() and traceback tell the zone).
        read["result"] = _read(task_id, meta, meta.get("result"), tell_zone=tell_zone)
    for field in _STORED_ARGUMENTS:
        if meta.get(field) is not None:
            read[field] = _read(task_id, meta, meta[field], tell_zone=tell_zone)
    return {**meta, **read} if read else meta


# Set while Celery reads a task's meta for its state (AsyncResult.state,
# ready(), backend.get_state()): a status check learns nothing of the data.
_STATUS_READ: ContextVar[bool] = ContextVar("purposeguard_celery_status_read", default=False)


def _status_read(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    token = _STATUS_READ.set(True)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _STATUS_READ.reset(token)


def _meta_tells_zone() -> str:
    # A raw meta read by hand (a dashboard, an admin script) hands its values
    # over labelled; one that cannot carry a label (True, False, None) tells
    # the reader's zone instead, unless Celery reads it for a status check.
    return NEVER if _STATUS_READ.get() else UNLESS_LABELLED


def _maybe_throw(wrapped: Any, result: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # Under get(), wait() and a result set's join(): the value a caller reads.
    # maybe_throw(propagate=True, callback=None): the callback gets the value
    # as the caller does, labelled.
    callback = kwargs.pop("callback", None)
    if len(args) > 1:
        callback, args = args[1], args[:1]
    try:
        value = wrapped(*args, **kwargs)
    except BaseException:
        # The task's error is raised here; its message may be made of the data.
        _read(result.id, result._cache, None)
        raise
    value = _read(result.id, result._cache, value)
    if callback is not None:
        callback(result.id, value)
    return value


def _task_meta(wrapped: Any, backend: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``backend.get_task_meta(task_id)``, as Celery's (the rpc backend's
    too), read through the task's header: a finished task's result and the
    arguments stored with it come back labelled (a copy of the meta).
    Labelled, not told to the zone: a status check (state, ready()) reads
    this meta too, and learns nothing of the data; reading the value
    (get(), result) tells the zone."""
    meta = wrapped(*args, **kwargs)
    task_id = kwargs["task_id"] if "task_id" in kwargs else (args[0] if args else None)
    return _read_meta(task_id, meta, tell_zone=_meta_tells_zone())


def _get_many(wrapped: Any, backend: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # backend.get_many(ids): each meta read as get_task_meta() hands it
    # (join_native() reads it through here too, then tells the zone).
    tell_zone = _meta_tells_zone()
    for task_id, meta in wrapped(*args, **kwargs):
        yield task_id, _read_meta(task_id, meta, tell_zone=tell_zone)


def _get_result(wrapped: Any, backend: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # backend.get_result(task_id), as Celery's: the meta's result, read
    # through the task's header.
    task_id = kwargs["task_id"] if "task_id" in kwargs else args[0]
    meta = backend.get_task_meta(task_id)
    return _read(task_id, meta, meta.get("result"))


def _iter_native(wrapped: Any, results: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # Under a group's join_native() (and so get()): each member's meta, read as it comes.
    for task_id, meta in wrapped(*args, **kwargs):
        yield task_id, _read_meta(task_id, meta, tell_zone=ALWAYS, any_state=True)


# Next to a chord header task's stored state, in the redis backend: its
# result header, for the chord's callback (a task that ignores its result,
# or whose result expired, still hands the callback its value).
_PART_KEY = ".purposeguard"


def _chord_part_return(wrapped: Any, backend: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """In the worker, as a chord header task's result joins the chord (its
    zone still open): what the zone holds, stored for the callback."""
    request = args[0] if args else kwargs.get("request")
    result = args[2] if len(args) > 2 else kwargs.get("result")
    task_id = getattr(request, "id", None)
    if isinstance(task_id, str) and getattr(request, "group", None):
        try:
            header = result_header("celery", task_id, result)
            if header is not None:
                backend.set(backend.get_key_for_task(task_id, _PART_KEY), header)
        except Exception:  # noqa: BLE001 - the chord goes on; its callback learns less
            logger.warning("purposeguard could not store what chord part %s read", task_id, exc_info=True)
    return wrapped(*args, **kwargs)


def _chord_part(wrapped: Any, backend: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A chord header task's result as the redis backend hands it to the
    chord's callback: read through that task's header, in the worker that
    publishes the callback (the zone of the header task that finished last,
    still open there), so the callback's message carries what every header
    task read. The backend keeps the parts without the header: it is read
    from the key stored next to the task's state, one read per part."""
    tup = args[0] if args else kwargs.pop("tup")
    decode = args[1] if len(args) > 1 else kwargs.pop("decode")
    decoded: list[Any] = []

    def decoding(raw: Any) -> Any:
        part = decode(raw)
        decoded.append(part)
        return part

    try:
        value = wrapped(tup, decoding, *args[2:], **kwargs)
    except BaseException:
        # A failed header task: the chord fails; its zone learns what it read.
        _read_part(backend, decoded, None)
        raise
    return _read_part(backend, decoded, value)


def _read_part(backend: Any, decoded: list[Any], value: Any) -> Any:
    part = decoded[0] if decoded else None
    if not isinstance(part, (list, tuple)) or len(part) < 2 or not isinstance(part[1], str):
        return value
    task_id = part[1]
    try:
        raw = backend.get(backend.get_key_for_task(task_id, _PART_KEY))
        if raw is None:
            # Stored by a worker that wrote no part key: the task's own meta.
            raw = backend.get_task_meta(task_id).get(HEADER)
    except Exception:  # noqa: BLE001 - the callback still runs, with the zone it had
        logger.warning("purposeguard could not read the stored header of chord part %s", task_id)
        return value
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    return read_result("celery", task_id, raw, value)


def _result_property(result: Any) -> Any:
    """``AsyncResult.result`` (and ``info``): as Celery's, read through the
    task's header. A custom state's meta is never cached, so the meta is
    read once here, not through Celery's property."""
    meta = result._get_task_meta()
    return _read(result.id, meta, meta["result"])


def _traceback_property(result: Any) -> Any:
    meta = result._get_task_meta()
    return _read(result.id, meta, meta.get("traceback"))


def _stored_argument(field: str) -> Any:
    def read(result: Any) -> Any:
        # ``AsyncResult.args`` / ``kwargs``: the arguments result_extended stored.
        meta = result._get_task_meta()
        value = meta.get(field)
        return None if value is None else _read(result.id, meta, value)

    return read


_RESULT_PROPERTIES = {
    "result": _result_property,
    "info": _result_property,
    "traceback": _traceback_property,
    "args": _stored_argument("args"),
    "kwargs": _stored_argument("kwargs"),
}


class _Properties:
    """The result properties replaced on ``AsyncResult``, and Celery's own."""

    def __init__(self) -> None:
        self.originals: dict[str, Any] = {}

    def install(self) -> None:
        from celery.result import AsyncResult

        if self.originals:
            return
        for name, read in _RESULT_PROPERTIES.items():
            original = AsyncResult.__dict__.get(name)
            if not isinstance(original, property):
                continue
            self.originals[name] = original
            setattr(AsyncResult, name, property(read, original.fset, original.fdel, original.__doc__))

    def remove(self) -> None:
        from celery.result import AsyncResult

        for name, original in self.originals.items():
            setattr(AsyncResult, name, original)
        self.originals.clear()


_PROPERTIES = _Properties()
# Imported only where a redis result backend is configured.
_CHORDS = Patcher(
    "celery.backends.redis",
    [
        ("RedisBackend", "_unpack_chord_result", _chord_part),
        ("RedisBackend", "on_chord_part_return", _chord_part_return),
    ],
)
# Imported only where an rpc result backend is configured: results are
# messages, read by a get_task_meta() of its own.
_RPC = Patcher("celery.backends.rpc", [("RPCBackend", "get_task_meta", _task_meta)])
_RESULTS = Patcher(
    "celery.result",
    [
        ("AsyncResult", "maybe_throw", _maybe_throw),
        ("AsyncResult", "_get_task_meta", _status_read),
        ("ResultSet", "iter_native", _iter_native),
    ],
)
_STORED = Patcher(
    "celery.backends.base",
    [
        ("Backend", "store_result", _store_result),
        ("Backend", "_get_result_meta", _result_meta),
        ("Backend", "get_result", _get_result),
        ("Backend", "get_task_meta", _task_meta),
        ("Backend", "get_state", _status_read),
        ("Backend", "get_status", _status_read),
        ("BaseKeyValueStoreBackend", "get_many", _get_many),
    ],
)


def _incoming(task: Any) -> baggage.Incoming:
    request = getattr(task, "request", None)
    return _message_baggage(request, getattr(request, "id", None), getattr(task, "name", None))


def _carried(request: Any, task_id: Any) -> baggage.Incoming:
    """What the message of the task a state is stored for carried, verified."""
    if isinstance(request, dict):
        name = request.get("task")
    else:
        name = getattr(request, "task", None)
    return _message_baggage(request, task_id, name if isinstance(name, str) else None)


def _message_baggage(request: Any, task_id: Any, name: str | None) -> baggage.Incoming:
    if isinstance(request, dict):
        raw = request.get(HEADER)
        extra = request.get("headers")
    else:
        raw = getattr(request, HEADER, None)
        extra = getattr(request, "headers", None)
    if raw is None and isinstance(extra, dict):
        raw = extra.get(HEADER)
    if raw is None:
        return baggage.NOTHING
    if not isinstance(raw, (str, bytes)):
        logger.warning("purposeguard ignored a task header that is not a string")
        return baggage.NOTHING
    return baggage.parse(raw, channel=baggage.task_channel("celery", task_id, name))


def _prerun(sender: Any = None, task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is None:
        return
    incoming = _incoming(task)
    task_zone = zone(incoming.tenant, categories=incoming.categories)
    baggage.mark_zone(task_zone.__enter__(), incoming)
    # The publisher's purpose is current; a task's own @pg.purpose nests inside
    # and is the one its checks use.
    token = PURPOSE.set(incoming.purpose) if incoming.purpose else None
    with _RUNNING.lock:
        _RUNNING.tasks[task_id] = (task_zone, token)


def _postrun(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
    with _RUNNING.lock:
        entry = _RUNNING.tasks.pop(task_id, None) if task_id is not None else None
    if entry is None:
        return
    task_zone, token = entry
    try:
        if token is not None:
            PURPOSE.reset(token)
        task_zone.__exit__(None, None, None)
    except Exception:  # noqa: BLE001 - never fail a worker over bookkeeping
        logger.exception("purposeguard could not close the zone of task %s", task_id)


def instrument() -> None:
    """Connect to Celery's signals (publishing and running tasks), process-wide."""
    from . import require

    require("celery", "celery")
    from celery import signals

    with _RUNNING.lock:
        if _RUNNING.connected:
            return
        _RUNNING.connected = True
    signals.before_task_publish.connect(_before_publish, weak=False, dispatch_uid=_UID + ".publish")
    signals.task_prerun.connect(_prerun, weak=False, dispatch_uid=_UID + ".prerun")
    signals.task_postrun.connect(_postrun, weak=False, dispatch_uid=_UID + ".postrun")
    _PATCHER.install()
    _STORED.install()
    _RESULTS.install()
    _CHORDS.install()
    _RPC.install()
    _PROPERTIES.install()


def uninstrument() -> None:
    """Disconnect from Celery's signals."""
    from . import require

    require("celery", "celery")
    from celery import signals

    signals.before_task_publish.disconnect(_before_publish, dispatch_uid=_UID + ".publish")
    signals.task_prerun.disconnect(_prerun, dispatch_uid=_UID + ".prerun")
    signals.task_postrun.disconnect(_postrun, dispatch_uid=_UID + ".postrun")
    _PATCHER.remove()
    _STORED.remove()
    _RESULTS.remove()
    _CHORDS.remove()
    _RPC.remove()
    _PROPERTIES.remove()
    with _RUNNING.lock:
        _RUNNING.connected = False


def is_instrumented() -> bool:
    return _RUNNING.connected
