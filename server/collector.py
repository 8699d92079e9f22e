"""The cyclic garbage collector of a long-running process (``serve``, ``worker``): decision 103.

CPython collects reference cycles by generations. A young collection runs every
``gc_threshold`` net allocations of container objects; every tenth promotes its survivors to the
oldest generation, and once that generation has grown by a quarter the next one is a *full*
collection, which walks every tracked object of the process. A started node holds some 10⁵ of
them that live as long as it does (modules, classes, SQLAlchemy's mappers and compiled
statements, the routes), so each full collection cost 70 to 110 ms of CPU, several times a minute
under load, to find the few hundred cycles that requests and jobs left behind (SQLAlchemy's
sessions and transactions). Frozen (:func:`gc.freeze`), those objects are skipped by every
collection; they are still freed by reference counting if they ever die, and a cycle among
them would stay until :func:`gc.unfreeze` (at shutdown), which is why the garbage is collected
once before freezing.

The young threshold is raised too (``server.gc_threshold``, 7,000 against Python's 700): with 32
requests or a lane of activities in flight, a young collection every 700 allocations found most
of them alive and promoted them, which is what filled the old generation. Ten times the
threshold gave 20 to 26 young collections per 5,000 activities or deliveries instead of 400 to
700, and no full one. What waits longer for its collection is a few thousand objects at most.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from server.config import ServerSettings


@contextmanager
def collector_policy(settings: ServerSettings) -> Iterator[None]:
    """Apply ``server.gc_freeze`` and ``server.gc_threshold`` while the block runs, then restore.

    Entered once the process has started (imports done, engine and federation open), so that
    what is frozen is what lives as long as the process.
    """
    threshold = gc.get_threshold()
    gc.set_threshold(settings.gc_threshold, *threshold[1:])
    if settings.gc_freeze:
        gc.collect()
        gc.freeze()
    try:
        yield
    finally:
        if settings.gc_freeze:
            gc.unfreeze()
        gc.set_threshold(*threshold)
