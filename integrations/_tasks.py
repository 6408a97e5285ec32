"""What the task queue integrations (Celery, RQ) share when a task is published.

A task function declared with ``@pg.purpose`` runs for that purpose: handing
it data is a use of the data, decided where the task is published, before
anything reaches the broker. The worker checks the same again when the task
starts, but only with what reaches it: a serializer drops every label, and
without a baggage key nothing of the publisher's zone travels either.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from purposeguard._context import FLAGS, MIXED_TENANT, ZONE
from purposeguard._guarded import PURPOSE_MARK
from purposeguard._labels import labels_of, merge_tenants, relabel
from purposeguard._runtime import check_zone, get_guard
from purposeguard._signing import current_keys
from purposeguard._state import STATE, on_reset, remember

from . import baggage
from ._egress import sent_labels

__all__ = [
    "check_published",
    "check_task_purpose",
    "declared_purpose",
    "read_result",
    "result_header",
    "say_if_nothing_travels",
]

logger = logging.getLogger("purposeguard")

# Said once per process (forgotten by pg.testing.reset()).
_TOPIC = "tasks without a baggage key"
_RESULT_TOPIC = "task results without a baggage key"


def declared_purpose(function: Any) -> str | None:
    """The purpose a task function was declared with, or None."""
    for _ in range(8):
        if not isinstance(function, functools.partial):
            break
        function = function.func
    for candidate in (function, getattr(function, "run", None), getattr(function, "__wrapped__", None)):
        key = getattr(candidate, PURPOSE_MARK, None) if candidate is not None else None
        if isinstance(key, str):
            return key
    return None


def check_published(task: Any, labels: frozenset[str], function: str, *, tenant: str | None = None) -> None:
    """Check what is handed to ``task`` (a function or a task object) against
    the purpose it was declared with, if any. ``tenant``: whose data the
    labels are (:func:`~purposeguard.integrations._egress.sent_labels`)."""
    purpose = declared_purpose(task) if task is not None else None
    if purpose is not None:
        check_task_purpose(purpose, labels, function, tenant=tenant)


def check_task_purpose(
    purpose: str, labels: frozenset[str], function: str, *, tenant: str | None = None
) -> None:
    """Check a task's arguments (``via="argument"``) and the publisher's zone
    (``via="context"``) against the purpose the task runs for; raises in
    enforce mode, before the task is published.

    The arguments are decided as ``pg.check`` decides a value: with
    ``tenant``, whose data they are, else with the zone's data tenant (which
    counts the tenants :func:`~purposeguard.integrations._egress.deep_labels`
    saw); their owner joins the zone, so the zone's own flows are then
    decided as several tenants' data if it is."""
    guard = get_guard()
    state = ZONE.get() if FLAGS.zones else None
    if state is not None and labels:
        state.add(labels, tenant)
    if labels:
        if tenant is None and state is not None:
            tenant = state.data_tenant()
        guard.check_labels(labels, purpose, via="argument", function=function, tenant=tenant)
    if state is not None:
        check_zone(guard, state, purpose, labels, function, judged_for=tenant)


def say_if_nothing_travels(labels: frozenset[str]) -> None:
    """Said once per process: a task published with labelled arguments or
    from a zone that holds data, with no baggage key to carry them."""
    _say_once_without_key(
        _TOPIC,
        labels,
        "purposeguard: a task was published with labelled data and no baggage key "
        "(configure(baggage_keys=...) or PURPOSEGUARD_BAGGAGE_KEYS): the worker runs it "
        "without the labels of its arguments and without the publisher's zone, purpose and "
        "tenant; only a task declared with @pg.purpose was checked, where it was published",
    )


def _say_once_without_key(topic: str, labels: frozenset[str], message: str) -> None:
    """``message``, once per process, where ``labels`` or the zone hold data
    and no baggage key is set."""
    said = STATE.baggage_said
    if topic in said:
        return
    state = ZONE.get() if FLAGS.zones else None
    if not labels and (state is None or not state.categories):
        return
    try:
        keys = current_keys()
    except Exception:  # noqa: BLE001 - an unusable key is said by the baggage module itself
        return
    if keys:
        return
    said.add(topic)
    logger.warning(message)


# What a task queue shows for a job's arguments where they are protected.
WITHHELD = "arguments withheld by purposeguard"


def arguments_protected(labels: frozenset[str]) -> bool:
    """Whether a job's arguments must not be described by their values:
    they carry labels, or the zone that publishes holds categories (an
    argument may be made from its data: an f-string drops labels)."""
    if labels:
        return True
    state = ZONE.get() if FLAGS.zones else None
    return state is not None and bool(state.categories)


# -- results ------------------------------------------------------------------------------
#
# A task's result is made from what the task read in the worker, and the
# serializer drops every label on it: without this, a task declared for an
# allowed purpose could read customer content and hand a summary of it back
# to a caller that uses it for anything. The worker stores, next to the
# result, the categories its zone holds and whose data they are (signed for
# that task id); the caller that reads the result gets them back on the
# value and in its zone, as if the task had run in-process.


def result_channel(kind: str, task_id: object) -> str:
    """The channel a task's result is signed for: never a task header's."""
    return baggage.task_channel(f"{kind} result", task_id)


def result_header(
    kind: str, task_id: object, value: Any, *, carried: baggage.Incoming = baggage.NOTHING
) -> str | None:
    """In the worker, while the task's zone is still open: what the zone
    holds and the labels ``value`` carries, signed for the result of
    ``task_id``; None when there is nothing to tell (said once per process
    when data is there and no baggage key is). ``carried``: what the task's
    message carried, verified, where the state stored holds the task's
    arguments and may be stored outside its zone (a task that expired
    before it ran)."""
    labels, tenant = sent_labels((value,))
    if carried.categories:
        owner = MIXED_TENANT if carried.several_tenants else carried.tenant
        tenant = merge_tenants(tenant, owner) if labels else owner
        labels = labels | carried.categories
    header = baggage.zone_header(result_channel(kind, task_id), extra_categories=labels, extra_tenant=tenant)
    if header is None:
        _say_if_result_carries_nothing(labels)
    return header


def _say_if_result_carries_nothing(labels: frozenset[str]) -> None:
    _say_once_without_key(
        _RESULT_TOPIC,
        labels,
        "purposeguard: a task stored a result made in a zone that holds data, and results are "
        "signed with a baggage key, which is not set (configure(baggage_keys=...) or "
        "PURPOSEGUARD_BAGGAGE_KEYS): whoever reads the result gets it without the categories "
        "the task saw",
    )


# How reading a result tells the reader's zone (read_result's ``tell_zone``).
ALWAYS = "always"
# The value is handed over, not read (a raw meta): its labels say what it
# holds; a value that cannot carry them (True, False, None) tells the zone.
UNLESS_LABELLED = "unless labelled"
# A status check reads the value's meta too: it learns nothing of the data
# (the reader that then reads the value tells the zone).
NEVER = "never"


def read_result(kind: str, task_id: object, raw: object, value: Any, *, tell_zone: str = ALWAYS) -> Any:
    """Where a result is read: the categories its task saw (``raw``, the
    header :func:`result_header` made, verified for ``task_id``) join the
    reader's zone, and ``value`` comes back labelled with them. A header
    that does not verify is ignored, as any baggage is (and logged).
    ``tell_zone``: :data:`ALWAYS`, :data:`UNLESS_LABELLED` or :data:`NEVER`."""
    if raw is None:
        return value
    if not isinstance(raw, (str, bytes)):
        logger.warning("purposeguard ignored a task result's header that is not a string")
        return value
    incoming = _verified(kind, task_id, raw)
    if not incoming.categories:
        return value
    tenant = MIXED_TENANT if incoming.several_tenants else incoming.tenant
    state = ZONE.get() if FLAGS.zones else None
    if tell_zone == ALWAYS and state is not None:
        state.add(incoming.categories, tenant)
    if isinstance(value, BaseException):
        # A failed task's error: the zone knows; the exception stays the one raised.
        return value
    if tell_zone == ALWAYS or state is None:
        return relabel(value, *sorted(incoming.categories), tenant=incoming.tenant)
    # Labelling tells the current zone: with none current for it.
    token = ZONE.set(None)
    try:
        labelled = relabel(value, *sorted(incoming.categories), tenant=incoming.tenant)
    finally:
        ZONE.reset(token)
    if tell_zone == UNLESS_LABELLED and not labels_of(labelled):
        # True, False, None (and enum members) stay themselves: the zone is
        # the only place their categories can go.
        state.add(incoming.categories, tenant)
    return labelled


# (kind, task id, header) -> what it verified to: one result is read
# through several of Celery's layers (get() reads it twice), and a header
# costs a signature check. Bounded; a reset forgets it (keys may change).
_VERIFIED: dict[tuple[str, object, object], baggage.Incoming] = {}
_VERIFIED_LIMIT = 1024


def _verified(kind: str, task_id: object, raw: str | bytes) -> baggage.Incoming:
    key = (kind, task_id, raw)
    try:
        found = _VERIFIED.get(key)
    except TypeError:  # an unhashable task id
        return baggage.parse(raw, channel=result_channel(kind, task_id))
    if found is None:
        found = baggage.parse(raw, channel=result_channel(kind, task_id))
        remember(_VERIFIED, key, found, _VERIFIED_LIMIT)
    return found


on_reset("task result headers verified", _VERIFIED.clear)
