"""Which handler runs each job kind: the registry every worker process uses.

Keep this file a table of contents: handlers live next to the services they drive
(``server/services/…``) and are only registered here. Kinds still to come: ``process_inbox``,
``fanout``, ``deliver``, ``backfill``.
"""

from __future__ import annotations

from server.jobs.registry import JobContext, JobRegistry


async def noop(ctx: JobContext) -> None:
    """Do nothing and succeed (tests, and a smoke check that workers are consuming)."""


def default_registry() -> JobRegistry:
    """A fresh registry with every production job kind (and ``noop``)."""
    registry = JobRegistry()
    registry.add("noop", noop)
    return registry
