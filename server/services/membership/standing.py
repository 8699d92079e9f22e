"""Whether someone may act in one of our associations at all: the one place that decides it for
a suspended member (decision 76, ``membership/suspension.py``).

Every service through which an actor acts in an association calls :func:`check_acting`: content
creation, edits and ``Announce`` (``content/local.py``), likes of its objects (``content/likes.py``),
votes and closing a vote early (``content/polls.py``), endorsements (``content/endorsements.py``),
proposing and refusing drafts (``content/drafts.py``; publishing one is a creation), invitations and
the management of members (``membership/invitations.py``, ``membership/members.py``), taking part
in its events and deciding who does (``events/participation.py``; a peer's suspended member's
``Join`` gets a ``Reject``), and the inbox for a peer's member posting into the association
(``inbox/handlers.py``). The web pages, the JSON API, the C2S outbox and the CLI call these
services, so they refuse alike: 403, ``member_suspended``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from server.db.models import Actor, Membership
from server.db.queries import actors as q
from server.services.errors import Forbidden


class Suspended(Forbidden):
    """The actor is suspended in the association it acts in."""

    code = "member_suspended"


def is_suspended(row: Membership | None, now: datetime) -> bool:
    """Whether ``row`` is suspended at ``now`` (an ``until`` that passed ends it)."""
    return (
        row is not None
        and row.suspended_at is not None
        and (row.suspended_until is None or row.suspended_until > now)
    )


async def check_acting(session: Any, group: Actor | None, actors: Iterable[Actor], *, now: datetime) -> None:
    """Refuse when one of ``actors`` (who acts, and in whose name) is suspended in ``group``, one of
    our associations; anything else is for the caller's own rules (membership, roles).

    Raises:
        Suspended: one of them is.
    """
    if group is None or not group.local or group.type != "Group":
        return
    for actor in {a.id: a for a in actors if a.id != group.id}.values():
        row = await q.membership(session, group.id, actor.id)
        if is_suspended(row, now):
            assert row is not None
            until = row.suspended_until
            when = f" until {until.isoformat(timespec='minutes')}" if until is not None else ""
            raise Suspended(f"{actor.handle} is suspended in this association{when}")


__all__ = ["Suspended", "check_acting", "is_suspended"]
