"""Job kinds → handlers, the context a handler receives, and how a handler reports an outcome.

A handler returns normally when its work is done. Expected non-success outcomes are signalled
with the two exceptions below (docs/architecture.md R5: they are outcomes the worker records, not errors it
logs with a traceback):

* :class:`RetryJob`: try again later, under the worker's retry policy or after a given delay;
* :class:`PermanentJobFailure`: give up now, with a stable ``code``.

Any other exception is unexpected: the worker logs it with its traceback and retries the job
under the policy until its attempts run out, then marks it failed. Nothing is swallowed.

Handlers must be idempotent: a job may run more than once (a crash after the work but before
the outcome is recorded, or a run longer than the lease).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from federation.ports import Transport
from server.db.queue import MAX_KIND_LENGTH, ClaimedJob
from server.services.context import NodeContext

__all__ = [
    "DeferJob",
    "JobContext",
    "JobError",
    "JobHandler",
    "JobRegistry",
    "PermanentJobFailure",
    "RetryJob",
]

_KIND = re.compile(r"[a-z][a-z0-9_.-]*")


class JobError(Exception):
    """Base class of the outcomes a handler signals by raising."""


class RetryJob(JobError):
    """Run the job again later: after ``after`` if given, else under the retry policy.

    ``after`` is clamped like a peer's ``Retry-After`` (see
    :meth:`federation.retry.RetryPolicy.delay`), and the attempt still counts: a job that
    keeps asking to be retried ends up failed after its ``max_attempts``.
    """

    def __init__(self, reason: str, *, after: timedelta | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after = after


class DeferJob(JobError):
    """Not now, and not a failure: run again after ``after`` without spending an attempt.

    For waits decided by us rather than by the job's own failure, e.g. a delivery held while
    the peer host's circuit breaker is open (held activities must survive days of an outage,
    which ``RetryJob`` would turn into exhausted attempts).
    """

    def __init__(self, reason: str, *, after: timedelta) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after = after


class PermanentJobFailure(JobError):
    """The job can never succeed (e.g. its object was deleted, or the peer answered 410).

    ``code`` is a stable machine-readable slug (funkwhale style, docs/architecture.md R4), stored with the
    ``detail`` in the job's ``last_error``.
    """

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler receives: its job, the node, and the services the process injected.

    Services are typed fields rather than a ``Mapping[str, object]`` so handlers need no casts
    and mypy sees a missing service. Each one is optional because not every process has all of
    them (a test worker has no network); a handler that needs one checks it is not ``None``
    and raises :class:`PermanentJobFailure` (``"misconfigured"``) otherwise. Add a field here
    when a new service is injected.

    Attributes:
        job: the claimed job (id, kind, payload, attempt…).
        node: settings, URIs, sessions, keys and the clock of this node.
        transport: the outbound HTTP transport, for jobs that talk to peers.
    """

    job: ClaimedJob
    node: NodeContext
    transport: Transport | None = None

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        """Session factory: one ``async with ctx.sessions.begin()`` per unit of work.

        See docs/architecture.md R8.
        """
        return self.node.sessions

    def now(self) -> datetime:
        """The current time from the node's injected clock."""
        return self.node.clock()


JobHandler = Callable[[JobContext], Awaitable[None]]
"""``async def handler(ctx: JobContext) -> None``."""


class JobRegistry:
    """Maps each job kind to exactly one handler.

    Use the decorator (``@registry.register("deliver")``) or :meth:`add`. A worker only claims
    the kinds its registry knows, so mixed releases can share one queue.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, JobHandler] = {}

    def register(self, kind: str) -> Callable[[JobHandler], JobHandler]:
        """Decorator registering the decorated function as the handler of ``kind``."""

        def decorate(handler: JobHandler) -> JobHandler:
            self.add(kind, handler)
            return handler

        return decorate

    def add(self, kind: str, handler: JobHandler) -> None:
        """Register ``handler`` for ``kind``.

        Raises:
            ValueError: ``kind`` is not a lowercase slug of at most 32 characters (the column
                size), or already has a handler.
        """
        if len(kind) > MAX_KIND_LENGTH or not _KIND.fullmatch(kind):
            raise ValueError(
                f"job kind must be a lowercase slug of at most {MAX_KIND_LENGTH} characters: {kind!r}"
            )
        if kind in self._handlers:
            raise ValueError(f"job kind {kind!r} already has a handler")
        self._handlers[kind] = handler

    def handler_for(self, kind: str) -> JobHandler | None:
        """The handler of ``kind``, or ``None``."""
        return self._handlers.get(kind)

    def kinds(self) -> frozenset[str]:
        """Every registered kind."""
        return frozenset(self._handlers)

    def __contains__(self, kind: object) -> bool:
        return kind in self._handlers

    def __len__(self) -> int:
        return len(self._handlers)
