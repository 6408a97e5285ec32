"""The context variables purposeguard keeps, and the zone state they hold.

Kept apart from the runtime so the labels layer can report new labels to the
current zone without importing the runtime.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Iterable

__all__ = ["PURPOSE", "ZONE", "ZoneState", "zones_in_use", "note_labels"]

PURPOSE: ContextVar[str | None] = ContextVar("purposeguard.purpose", default=None)
ZONE: ContextVar[ZoneState | None] = ContextVar("purposeguard.zone", default=None)


class _Flags:
    # Set once the first zone opens: until then the hot path skips the zone
    # lookup entirely, so code that never uses zones pays nothing for them.
    __slots__ = ("zones",)

    def __init__(self) -> None:
        self.zones = False


FLAGS = _Flags()


def zones_in_use() -> bool:
    return FLAGS.zones


class ZoneState:
    """What one zone (a request, a job) has seen: its categories and tenant.

    Shared by every task and thread that copies the context the zone was
    opened in, so what they see flows back to the zone.
    """

    __slots__ = ("categories", "tenant", "parent", "_lock", "owner", "purpose_hint")

    def __init__(
        self,
        tenant: str | None,
        parent: ZoneState | None,
        categories: Iterable[str] = (),
    ) -> None:
        start = frozenset(categories)
        if parent is not None:
            start = start | parent.categories
            if tenant is None:
                tenant = parent.tenant
        self.categories: frozenset[str] = start
        self.tenant = tenant
        self.parent = parent
        self._lock = threading.Lock()
        self.owner = threading.get_ident()
        self.purpose_hint: str | None = None

    def add(self, labels: frozenset[str]) -> None:
        if labels <= self.categories:
            return
        # Threads in one zone may add at once; a lost update would hide a flow.
        with self._lock:
            self.categories = self.categories | labels


def note_labels(labels: frozenset[str]) -> None:
    """Tell the current zone, if any, that values with ``labels`` exist in it."""
    if FLAGS.zones and labels:
        state = ZONE.get()
        if state is not None:
            state.add(labels)
