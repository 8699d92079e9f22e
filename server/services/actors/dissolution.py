"""Deleting one of our associations for good (decision 97): the operator's
``entraide association delete``, the counterpart of a member deleting their account
(``accounts/erasure.py``, decision 40), in one transaction:

- every object the association published (alerts, resources, proposals, events, posts) becomes a
  tombstone (410), and a ``Delete{Tombstone}`` of each goes to its audience and to every remote
  actor known to hold a copy (:func:`server.services.content.revisions.holders`: relayers, likers,
  voters, repliers, co-signers, an event's participants), so no peer keeps an alert of it active;
- what members posted *into* it stays theirs (their posts keep their author; only the association's
  relay of them ends);
- memberships (active, pending, invited, suspended), follows both ways, invitations and drafts end;
- the actor keeps a row as a tombstone (``deleted_at``): its IRI, outbox and pages answer 410 or 404,
  and its handle can never be taken again (:func:`server.services.actors.local.create_association`
  refuses it), so nobody can later speak in its name to the peers that knew it. Its keys stay, to
  sign the ``Delete`` deliveries;
- one ``Delete`` of the Group actor goes to every remote actor that held something of it: followers,
  actors it followed, its remote members, the holders above. Peers forget the association as they
  forget a deleted person (its follows, memberships and content; ``inbox/handlers.py``).

The change is audited (``association.delete``, with the counts) and logged; each local active
member gets a notification (``association_deleted``, with the former name and the reason given).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select

from server.db.models import Account, Actor, Draft, Follow, Invitation, Membership, RemoteObject
from server.db.queries import actors as q
from server.services import audit
from server.services.accounts.erasure import delete_object, remote_iris, tombstone_actor
from server.services.errors import Forbidden, NotFound
from server.services.federation import Federation
from server.services.membership.standing import check_acting

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Plan:
    """What deleting an association would end (shown before the operator confirms)."""

    actor_iri: str
    objects: int
    members: int
    followers: int


@dataclass(frozen=True, slots=True)
class AssociationDeleted:
    actor_iri: str
    delete_iri: str
    objects: int
    members: int
    recipients: int


async def plan(fed: Federation, handle: str) -> Plan:
    """Count what :func:`delete_association` would end, changing nothing.

    Raises:
        NotFound: no such live association here.
    """
    async with fed.node.sessions() as session:
        group = await q.local_by_handle(session, "Group", handle)
        if group is None:
            raise NotFound("no such association")
        objects = await session.scalar(
            select(func.count()).where(
                RemoteObject.attributed_to_id == group.id, RemoteObject.deleted_at.is_(None)
            )
        )
        members = await session.scalar(select(func.count()).where(Membership.group_id == group.id))
        followers = await session.scalar(
            select(func.count()).where(Follow.followed_id == group.id, Follow.state == "accepted")
        )
    return Plan(group.iri, int(objects or 0), int(members or 0), int(followers or 0))


async def check_may_delete(session: Any, group: Actor, by: Actor, *, scope: str | None, now: Any) -> None:
    """``by`` may delete ``group``: a node admin (a browser session or an admin-scope token), or
    one of the association's active admins who is not suspended in it.

    Raises:
        Forbidden: anyone else (``Suspended``, a Forbidden, for a suspended admin).
    """
    account = await session.get(Account, by.id)
    if account is not None and account.is_node_admin and scope in (None, "admin"):
        return
    role = await session.scalar(
        select(Membership.role).where(
            Membership.group_id == group.id, Membership.member_id == by.id, Membership.state == "active"
        )
    )
    if role != "admin":
        raise Forbidden("only the association's admins and the node's admins delete it")
    await check_acting(session, group, [by], now=now)


async def delete_association(
    fed: Federation,
    handle: str,
    *,
    by: Actor | None = None,
    scope: str | None = None,
    reason: str | None = None,
) -> AssociationDeleted:
    """Delete the association ``handle`` and everything it published (see the module's docstring).
    ``by``: the admin who does it, of the association or of the node, checked here with the
    ``scope`` of their token (None: a browser session); None for the operator at the command line.
    ``reason``, told to the members and audited, is optional.

    Raises:
        NotFound: no such live association here. Forbidden: ``by`` may not delete it.
    """
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        found = await q.local_by_handle(session, "Group", handle)
        group = await session.get(Actor, found.id, with_for_update=True) if found is not None else None
        if group is None or group.deleted_at is not None:
            raise NotFound("no such association")
        if by is not None:
            await check_may_delete(session, group, by, scope=scope, now=now)
        recipients: set[str] = set()
        followers = await session.scalars(select(Follow.follower_id).where(Follow.followed_id == group.id))
        followed = await session.scalars(select(Follow.followed_id).where(Follow.follower_id == group.id))
        memberships = list(await session.scalars(select(Membership).where(Membership.group_id == group.id)))
        recipients.update(
            await remote_iris(session, [*followers, *followed, *(m.member_id for m in memberships)])
        )

        objects = list(
            await session.scalars(
                select(RemoteObject)
                .where(RemoteObject.attributed_to_id == group.id, RemoteObject.deleted_at.is_(None))
                .order_by(RemoteObject.id)
            )
        )
        for row in objects:
            recipients.update(await delete_object(session, fed, group, row, now=now))

        # Our members are told (a notification derived from this entry, reading/notifications.py).
        for membership in memberships:
            member = await session.get(Actor, membership.member_id)
            if member is not None and member.local and membership.state == "active":
                audit.record(
                    session,
                    "member.association_deleted",
                    now=now,
                    group=group,
                    by=by,
                    target=member.iri,
                    detail={"name": group.name, "role": membership.role, "reason": reason},
                )
        await session.execute(delete(Membership).where(Membership.group_id == group.id))
        await session.execute(
            delete(Follow).where((Follow.follower_id == group.id) | (Follow.followed_id == group.id))
        )
        await session.execute(delete(Invitation).where(Invitation.group_id == group.id))
        await session.execute(delete(Draft).where(Draft.group_id == group.id))
        published, listed = await tombstone_actor(session, fed, group, recipients, now=now)
        audit.record(
            session,
            "association.delete",
            now=now,
            group=group,
            by=by,
            target=group.iri,
            detail={"handle": handle, "reason": reason, "objects": len(objects), "members": len(memberships)},
        )
    fed.notify_worker()
    log.info(
        "association deleted",
        extra={"actor": group.iri, "reason": reason, "objects": len(objects), "recipients": len(listed)},
    )
    return AssociationDeleted(group.iri, published.iri, len(objects), len(memberships), len(listed))


__all__ = ["AssociationDeleted", "Plan", "check_may_delete", "delete_association", "plan"]
