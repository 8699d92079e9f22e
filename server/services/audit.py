"""The audit log: who did what, when, to what, and through which channel (decision 49).

Every administrative or moderation action is recorded by the service that does it, in the same
transaction as the change, so an action is never done without its entry nor recorded without
being done. The channel is the entry point's: the command line sets ``cli``, the HTTP layer sets
``api`` for bearer-token requests and ``web`` for the browser's (:func:`channel_scope`), and work
done by jobs is ``system``. Services never take the channel as an argument: it follows the task
(a :class:`contextvars.ContextVar`), so every existing and future call site gets it right.

Entries never hold secrets (a token's secret, a password): only what identifies the thing acted on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from server.db.models import Actor, AuditEntry
from server.services.errors import InvalidInput

CHANNELS: Final = ("web", "cli", "api", "system")
_channel: ContextVar[str] = ContextVar("entraide_audit_channel", default="system")
MAX_PAGE: Final = 500


def current_channel() -> str:
    return _channel.get()


def set_channel(channel: str) -> None:
    """Set the channel for the rest of the current task (the CLI does it once in ``main``)."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown audit channel {channel!r}")
    _channel.set(channel)


@contextmanager
def channel_scope(channel: str) -> Iterator[None]:
    """Record the actions done inside the block as coming through ``channel``."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown audit channel {channel!r}")
    token = _channel.set(channel)
    try:
        yield
    finally:
        _channel.reset(token)


def record(
    session: Any,
    action: str,
    *,
    now: datetime,
    group: Actor | None = None,
    by: Actor | None = None,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add one entry to ``session`` (committed with the change it records)."""
    entry = AuditEntry(
        group_id=group.id if group is not None else None,
        by_actor_id=by.id if by is not None else None,
        action=action,
        channel=current_channel(),
        target=target,
        detail=dict(detail or {}),
        created_at=now,
    )
    session.add(entry)
    return entry


@dataclass(frozen=True, slots=True)
class Filters:
    """What ``audit list`` and ``GET /api/audit`` filter on; None: any."""

    group_id: int | None = None
    by_id: int | None = None
    action: str | None = None  # exact, or a prefix ending in "." (``member.``)
    channel: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def check_action(action: str | None) -> str | None:
    if action is None:
        return None
    if not action or len(action) > 64 or not all(c.isalnum() or c in "._-" for c in action):
        raise InvalidInput(
            "action must be an action name such as member.remove, or a prefix such as member.", field="action"
        )
    return action


def check_channel(channel: str | None) -> str | None:
    if channel is not None and channel not in (*CHANNELS, "unknown"):
        raise InvalidInput(f"channel must be one of: {', '.join(CHANNELS)}, unknown", field="channel")
    return channel


async def entries(
    session: AsyncSession, filters: Filters, *, limit: int, before: int | None = None
) -> list[dict[str, Any]]:
    """Entries matching ``filters``, newest first, each with the IRIs of its association and actor."""
    group = aliased(Actor)
    by = aliased(Actor)
    query = (
        select(AuditEntry, group.iri, group.handle, by.iri, by.handle, by.host)
        .outerjoin(group, group.id == AuditEntry.group_id)
        .outerjoin(by, by.id == AuditEntry.by_actor_id)
    )
    f = filters
    if f.group_id is not None:
        query = query.where(AuditEntry.group_id == f.group_id)
    if f.by_id is not None:
        query = query.where(AuditEntry.by_actor_id == f.by_id)
    if f.action is not None:
        query = query.where(
            AuditEntry.action.startswith(f.action, autoescape=True)
            if f.action.endswith(".")
            else AuditEntry.action == f.action
        )
    if f.channel is not None:
        query = query.where(AuditEntry.channel == f.channel)
    if f.target is not None:
        query = query.where(AuditEntry.target == f.target)
    if f.since is not None:
        query = query.where(AuditEntry.created_at >= f.since)
    if f.until is not None:
        query = query.where(AuditEntry.created_at < f.until)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    rows = (await session.execute(query.order_by(AuditEntry.id.desc()).limit(min(limit, MAX_PAGE)))).all()
    return [
        {
            "id": entry.id,
            "at": entry.created_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "action": entry.action,
            "channel": entry.channel,
            "association": group_iri,
            "associationHandle": group_handle,
            "by": by_iri,
            "byHandle": f"{by_handle}@{by_host}" if by_handle is not None else None,
            "target": entry.target if entry.target is not None else _legacy_target(entry.detail),
            "detail": entry.detail or {},
        }
        for entry, group_iri, group_handle, by_iri, by_handle, by_host in rows
    ]


def _legacy_target(detail: Any) -> str | None:
    """Entries from before the target column named it in their detail."""
    if isinstance(detail, dict):
        for key in ("object", "member"):
            if isinstance(detail.get(key), str):
                return str(detail[key])
    return None


__all__: Sequence[str] = [
    "CHANNELS",
    "Filters",
    "channel_scope",
    "check_action",
    "check_channel",
    "current_channel",
    "entries",
    "record",
    "set_channel",
]
