"""Creating an association through the JSON API: who may, per the node's policy (decision 73).

The node policy's ``association_creators`` (``server/services/moderation/blocks.py``) says who may:
``admins``, the node admins only (the default), or ``members``, any local member. The operator at
the command line (``entraide association create``) is always allowed and does not come here. The
member who creates an association becomes its first admin, so that it can be run from the API
without the command line; an existing or deleted association's slug is a conflict, never a
no-op, so nobody becomes an admin of someone else's association by "creating" it again.
"""

from __future__ import annotations

from datetime import datetime

from federation.uris import UriScheme
from server.db.models import Account, Actor, Membership
from server.db.queries import actors as q
from server.services import audit
from server.services.actors.keys import KeyVault
from server.services.actors.local import create_association
from server.services.errors import Conflict, Forbidden, Unauthorized
from server.services.moderation.blocks import node_policy
from server.services.types import Session

CREATOR_SCOPES = ("write", "admin")


async def may_create(session: Session, actor_id: int | None, *, scope: str | None) -> Actor:
    """The local member allowed to create an association under the node's policy.

    Raises:
        Unauthorized: no local account. Forbidden: a read-only token, or a member who is not a
        node admin while the policy says ``admins``.
    """
    actor = await session.get(Actor, actor_id) if actor_id is not None else None
    account = await session.get(Account, actor_id) if actor is not None else None
    if actor is None or account is None or not actor.local or actor.type != "Person":
        raise Unauthorized("a bearer token of a local account is required")
    if scope not in CREATOR_SCOPES:
        raise Forbidden("this token's scope does not allow writing")
    policy = await node_policy(session)
    if policy.association_creators != "members" and not account.is_node_admin:
        raise Forbidden("on this node, associations are created by node admins")
    return actor


async def create_as_member(
    session: Session,
    uris: UriScheme,
    vault: KeyVault,
    *,
    actor_id: int | None,
    scope: str | None,
    handle: str,
    name: str,
    summary: str,
    now: datetime,
) -> Actor:
    """Create an association for the caller, who becomes its admin (both audited, as the caller's).

    Raises:
        Unauthorized, Forbidden: see :func:`may_create`. InvalidInput: bad slug, name or summary.
        Conflict: the slug is taken, now or by a deleted association.
    """
    creator = await may_create(session, actor_id, scope=scope)
    taken = await q.local_by_handle(session, "Group", handle) or await q.local_tombstone(
        session, "Group", handle
    )
    if taken is not None:
        raise Conflict(f"the slug {handle!r} is taken", field="slug")
    created = await create_association(
        session, uris, vault, handle=handle, name=name, summary=summary, now=now, by=creator
    )
    group = created.actor
    session.add(
        Membership(
            group_id=group.id,
            member_id=creator.id,
            role="admin",
            state="active",
            created_at=now,
            updated_at=now,
        )
    )
    audit.record(
        session,
        "member.add",
        now=now,
        group=group,
        by=creator,
        target=creator.iri,
        detail={"member": creator.iri, "role": "admin"},
    )
    await session.flush()
    return group


async def can_create(session: Session, actor_id: int | None) -> bool:
    """Whether the node's policy lets this account create an association (to offer the page)."""
    try:
        await may_create(session, actor_id, scope="write")
    except (Unauthorized, Forbidden):
        return False
    return True
