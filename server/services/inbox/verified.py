"""Verified activities handed from the inbox writer to the same process's inbox lane (decision 102).

The worker used to rebuild every stored activity from its row: read the document, decode its JSON
and parse it again (``federation.inbox.restore``), about a third of what processing one cost. When
the worker runs in the process that accepted the activity (``serve`` with ``worker.in_process``),
the value :func:`federation.inbox.receive` verified is still in memory: the writer keeps it here
once its row is committed, and the lane takes it instead of rebuilding it. The row stays the
truth: the lane still claims the job and checks that the row is queued, and whatever is not here
(another process stored it, this one restarted, it was full) is rebuilt as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from federation.inbox import InboundActivity

KEPT_AT_MOST = 2048
"""Activities kept at most, about 10 KB each (the decoded document and the parsed activity of a
2.6 KB Mastodon ``Create``): ≈ 20 MB when full, a backlog of about two seconds of accepting."""

KEPT_FOR_AT_MOST_S = 60.0
"""An activity kept this long was claimed elsewhere (another worker process sharing the
database) or is waiting for a retry: it makes room for a new one."""


class VerifiedActivities:
    """Activities stored by this process's inbox writer, by row id, until its inbox lane takes them.

    Closed (keeps nothing) until an in-process inbox lane opens it (:meth:`open`), so a node whose
    worker runs elsewhere holds nothing. Bounded: when full, entries older than
    :data:`KEPT_FOR_AT_MOST_S` go first; if none is, the new activity is not kept (the lane claims
    the oldest jobs first, so dropping the newest keeps what it will take soonest).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = 0
        self._clock = clock
        self._kept: dict[int, tuple[float, InboundActivity]] = {}  # in insertion order: oldest first

    def open(self, capacity: int = KEPT_AT_MOST) -> None:
        """Keep up to ``capacity`` activities from now on (an in-process inbox lane)."""
        self._capacity = capacity

    def keep(self, row_id: int, inbound: InboundActivity) -> None:
        """The activity stored, and committed, as row ``row_id``."""
        if not self._capacity:
            return
        now = self._clock()
        if len(self._kept) >= self._capacity:
            while self._kept:
                oldest = next(iter(self._kept))
                if now - self._kept[oldest][0] < KEPT_FOR_AT_MOST_S:
                    break
                del self._kept[oldest]
            if len(self._kept) >= self._capacity:
                return
        self._kept[row_id] = (now, inbound)

    def take(self, row_id: int) -> InboundActivity | None:
        """The activity of row ``row_id`` if it is kept here, which it no longer is afterwards."""
        kept = self._kept.pop(row_id, None)
        return None if kept is None else kept[1]

    def __len__(self) -> int:
        return len(self._kept)
