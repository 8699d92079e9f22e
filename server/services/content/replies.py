"""Where a reply goes: the object it answers, the thread it joins, who it is addressed to.

A step of the publishing pipeline (:func:`server.services.content.local.create`) for anything
with ``inReplyTo``, whatever its kind: the parent is checked before anything else (one the
author may not read answers as a missing one, case 54), a reply never shows to more people than
its parent, a thread's association decides who replies in it (case 49), and the parent's author
gets the reply.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.audience import Visibility
from federation.errors import FederationError
from federation.types import Iri
from server.db.models import Actor, RemoteObject
from server.services.content import remote as objects
from server.services.errors import Forbidden, InvalidInput
from server.services.federation import Federation
from server.services.membership import members as membership_service
from server.services.reading import visibility

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Parent:
    """The object a reply answers: its IRI, our row when this node holds it, else its document
    as fetched from its origin (``None`` when it could not be)."""

    iri: Iri
    held: RemoteObject | None
    fetched: Mapping[str, Any] | None


def as_viewer(actor: Actor) -> visibility.Viewer:
    """One of our actors as the reader of an object."""
    return visibility.Viewer(visibility.ViewerKind.LOCAL, actor_id=actor.id, actor_iri=actor.iri)


async def readable_parent(
    session: AsyncSession, fed: Federation, author: Actor, in_reply_to: Iri | None
) -> RemoteObject | None:
    """The object a reply answers, checked before anything else about the reply: one of ours
    that is missing, or that the author may not read, answers the same (case 54), whatever
    else the reply asks for. A peer's object we do not hold is ``None`` (replies to it are fine)."""
    if in_reply_to is None:
        return None
    parent = await session.scalar(select(RemoteObject).where(RemoteObject.iri == in_reply_to))
    if fed.node.uris.is_local(in_reply_to) and (
        parent is None or not await visibility.can_read_object(session, as_viewer(author), parent)
    ):
        raise InvalidInput("inReplyTo names no object here", field="inReplyTo")
    return parent


async def fetch_parent(fed: Federation, iri: Iri) -> dict[str, Any] | None:
    """A remote parent this node does not hold, fetched from its origin (signed, through the
    address guard and the peer policy) so that the reply reaches its author; ``None`` when it
    cannot be fetched (the reply is still published, to its own addressees)."""
    try:
        return await fed.fetch(iri)
    except FederationError as exc:
        log.info("reply parent not fetched", extra={"parent": iri, "error": type(exc).__name__})
        return None


async def join_thread(
    session: AsyncSession,
    author: Actor,
    parent: Parent,
    document: dict[str, Any],
    level: Visibility,
    *,
    audience_id: int | None,
    self_only: bool,
) -> Iri:
    """Make ``document`` a reply to ``parent`` and return the thread (``context``) it joins.

    ``audience_id`` is the association the reply belongs to: a members-only reply stays in its
    thread's. The parent's author is addressed and mentioned (Mastodon notifies a Mention) unless
    the reply is members-only or for its author alone (``self_only``); a fetched parent's
    association (FEP-1b12 ``audience``) gets a reply that is neither members-only nor direct.
    """
    context_iri, parent_author = await _thread_of(session, parent.iri, parent.held, level)
    if parent.fetched is not None:
        context_iri, parent_author, thread_audience = _remote_thread(parent.fetched, parent.iri)
        if thread_audience and level not in (Visibility.DIRECT, Visibility.MEMBERS):
            _add_recipient(document, thread_audience, "cc")
    if level is Visibility.MEMBERS and parent.held is not None and parent.held.audience_id != audience_id:
        raise InvalidInput("a members-only reply stays in its thread's association", field="audience")
    document["inReplyTo"] = parent.iri
    if parent_author and parent_author != author.iri and level is not Visibility.MEMBERS and not self_only:
        # The parent's author gets the reply (and Mastodon notifies it: a Mention).
        _add_recipient(document, parent_author, "to" if level is Visibility.DIRECT else "cc")
        document["tag"] = [*document.get("tag", []), {"type": "Mention", "href": parent_author}]
    return context_iri


def _add_recipient(document: dict[str, Any], iri: str, field: str) -> None:
    """Address ``iri`` in ``document``'s ``field`` unless ``to`` or ``cc`` already names it."""
    if iri not in document["to"] and iri not in document["cc"]:
        document[field].append(iri)


async def check_replies_policy(session: AsyncSession, author: Actor, parent: RemoteObject | None) -> None:
    """Whatever a reply addresses (another association as audience, nobody), the association of
    the thread decides whether it takes replies from non-members (security case 49)."""
    thread_group = await objects.thread_association(session, parent) if parent is not None else None
    if (
        thread_group is not None
        and thread_group.id != author.id
        and thread_group.replies_policy == "members"
        and not await membership_service.is_active_member(session, thread_group.id, author.id)
    ):
        raise Forbidden("this association takes replies in its threads from its members only")


async def _thread_of(
    session: AsyncSession,
    parent_iri: Iri,
    parent: RemoteObject | None,
    level: Visibility,
) -> tuple[Iri, str | None]:
    """The thread (``context``) a reply joins — the parent's, or the parent itself when it has
    none — and the parent's author.

    A local parent exists and is readable by the author (:func:`readable_parent`). A reply
    never shows to more people than its parent: a reply to members-only content is members-only
    in the same association (or direct), a reply to direct content is direct.
    """
    if parent is None:
        return parent_iri, None
    if parent.deleted_at is not None:
        raise InvalidInput("inReplyTo names a deleted object", field="inReplyTo")
    parent_author = await session.scalar(select(Actor.iri).where(Actor.id == parent.attributed_to_id))
    if parent.visibility == "members" and level not in (Visibility.MEMBERS, Visibility.DIRECT):
        raise InvalidInput(
            "a reply to members-only content must be members-only or direct", field="visibility"
        )
    if parent.visibility == "direct" and level is not Visibility.DIRECT:
        raise InvalidInput("a reply to direct content must itself be direct", field="visibility")
    return Iri(parent.context_iri or parent.iri), parent_author


def _remote_thread(document: Mapping[str, Any], parent_iri: Iri) -> tuple[Iri, str | None, str | None]:
    """A fetched parent's thread (its ``context``, else itself), author and ``audience``
    (FEP-1b12: the association it was posted into), as :func:`_thread_of` gives for a held one."""

    def one_iri(value: Any) -> str | None:
        value = value[0] if isinstance(value, list) and value else value
        value = value.get("id") if isinstance(value, dict) else value
        return value if isinstance(value, str) and value.startswith(("https://", "http://")) else None

    context, author = one_iri(document.get("context")), one_iri(document.get("attributedTo"))
    return Iri(context or parent_iri), author, one_iri(document.get("audience"))
