"""Background jobs: the handler registry, the worker loop and the standalone worker process.

A job is a row of the ``jobs`` table (:mod:`server.db.queue`); a handler is an
``async def handler(ctx: JobContext) -> None`` registered for the job's ``kind``
(:mod:`server.jobs.registry`); :class:`~server.jobs.worker.Worker` claims jobs and runs
their handlers, in ``serve`` (in process) or in ``entraide worker`` (:mod:`server.jobs.runner`).
"""

from server.jobs.registry import JobContext, JobError, JobHandler, JobRegistry, PermanentJobFailure, RetryJob

__all__ = ["JobContext", "JobError", "JobHandler", "JobRegistry", "PermanentJobFailure", "RetryJob"]
