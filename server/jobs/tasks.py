"""Which handler runs each job kind: the registry every worker process uses.

Keep this file a table of contents: the work lives in the services (``server/services/…``);
here each job kind is mapped to its service call and to the job outcomes.
"""

from __future__ import annotations

from datetime import timedelta

from server.jobs.registry import DeferJob, JobContext, JobRegistry, PermanentJobFailure, RetryJob
from server.services import content, delivery, following, polls
from server.services import inbox as inbox_service
from server.services.federation import Federation
from server.services.inbox_handlers import router


async def noop(ctx: JobContext) -> None:
    """Do nothing and succeed (tests, and a smoke check that workers are consuming)."""


def _int(ctx: JobContext, key: str) -> int:
    value = ctx.job.payload.get(key)
    if not isinstance(value, int):
        raise PermanentJobFailure("bad_payload", f"{key} missing")
    return value


def default_registry(fed: Federation | None = None) -> JobRegistry:
    """A fresh registry with every production job kind (and ``noop``).

    Without a :class:`Federation` only ``noop`` is registered (queue tests).
    """
    registry = JobRegistry()
    registry.add("noop", noop)
    if fed is None:
        return registry

    async def process_inbox(ctx: JobContext) -> None:
        await inbox_service.process(fed, router, _int(ctx, "inbox_activity_id"))

    async def fanout(ctx: JobContext) -> None:
        also = ctx.job.payload.get("also")
        await delivery.fanout(
            fed.node,
            _int(ctx, "activity_id"),
            priority=ctx.job.priority,
            policy=fed.policy,
            also=[a for a in also if isinstance(a, str)] if isinstance(also, list) else None,
        )
        fed.notify_worker()

    async def deliver(ctx: JobContext) -> None:
        step = await delivery.deliver_one(
            fed.node,
            fed.transport,
            _int(ctx, "delivery_id"),
            attempt=ctx.job.attempt,
            max_attempts=ctx.job.max_attempts,
            prefer_rfc9421=fed.node.settings.federation.rfc9421_first_knock,
        )
        match step:
            case delivery.DeliveryRetry(reason="circuit_open", after=after):
                raise DeferJob("circuit_open", after=after or timedelta(minutes=5))
            case delivery.DeliveryRetry(reason=reason, after=after):
                raise RetryJob(reason, after=after)
            case delivery.DeliveryDone():
                return

    async def sync_outbox(ctx: JobContext) -> None:
        resume = ctx.job.payload.get("resume")
        await following.sync_outbox(
            fed, _int(ctx, "actor_id"), resume=resume if isinstance(resume, dict) else None
        )

    async def sync_all(ctx: JobContext) -> None:
        await following.sync_all(fed)

    async def poll_tally(ctx: JobContext) -> None:
        await polls.tally(fed, _int(ctx, "object_id"))

    async def poll_close(ctx: JobContext) -> None:
        wait = await polls.close(fed, _int(ctx, "object_id"))
        if wait is not None:
            raise DeferJob("poll_not_ended", after=wait)

    registry.add(inbox_service.PROCESS_INBOX, process_inbox)
    registry.add(polls.POLL_TALLY, poll_tally)
    registry.add(content.POLL_CLOSE, poll_close)
    registry.add(delivery.FANOUT, fanout)
    registry.add(delivery.DELIVER, deliver)
    registry.add(following.SYNC_OUTBOX, sync_outbox)
    registry.add(following.SYNC_ALL, sync_all)
    return registry
