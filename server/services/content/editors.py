"""Who may manage an association's content, for the web pages (and any entry point without a
bearer token): the same rules as the JSON API's ``acting_for`` (the association's admins and
moderators act as it, decision 51), looked up here so that handlers never query the database.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from federation.uris import is_valid_handle
from server.db.models import Actor, RemoteObject
from server.db.queries import actors as actor_queries
from server.services.content import local as content
from server.services.context import NodeContext
from server.services.errors import Forbidden, NotFound
from server.services.reading import visibility
from server.services.reading.visibility import ACTING_ROLES, Viewer, ViewerKind


@dataclass(frozen=True, slots=True)
class Editor:
    """An association and the signed-in member acting for it (recorded as ``by``)."""

    group: Actor
    member: Actor
    role: str | None


def viewer_of(member: Actor) -> Viewer:
    return Viewer(ViewerKind.LOCAL, actor_id=member.id, actor_iri=member.iri, scope="write")


async def association(node: NodeContext, slug: str) -> Actor:
    """One of our live associations by handle (NotFound otherwise)."""
    async with node.sessions() as session:
        group = await actor_queries.local_by_handle(session, "Group", slug) if is_valid_handle(slug) else None
    if group is None:
        raise NotFound("no such association")
    return group


async def role(node: NodeContext, slug: str, member: Actor) -> Editor:
    """The association named ``slug`` and ``member``'s active role in it (None: not a member)."""
    group = await association(node, slug)
    async with node.sessions() as session:
        found = await visibility.role_in(session, viewer_of(member), group)
    return Editor(group, member, found)


async def acting(node: NodeContext, slug: str, member: Actor) -> Editor:
    """``member`` acting for the association ``slug``: one of its admins or moderators.

    Raises:
        NotFound: no such association. Forbidden: anyone else.
    """
    editor = await role(node, slug, member)
    if editor.role not in ACTING_ROLES:
        raise Forbidden("only the association's admins and moderators manage its content")
    return editor


async def managed_object(node: NodeContext, editor: Editor, iri: str) -> RemoteObject:
    """One of the association's own live objects, by IRI, for ``editor`` (NotFound otherwise)."""
    async with node.sessions() as session:
        row = (
            await session.scalar(
                select(RemoteObject).where(
                    RemoteObject.iri == iri,
                    RemoteObject.local.is_(True),
                    RemoteObject.attributed_to_id == editor.group.id,
                    RemoteObject.deleted_at.is_(None),
                )
            )
            if iri
            else None
        )
    if row is None:
        raise NotFound("no such object")
    return row


async def managed_content(node: NodeContext, editor: Editor, *, limit: int = 50) -> list[RemoteObject]:
    """The association's own live content, newest first, every visibility (for its editors)."""
    async with node.sessions() as session:
        return await content.list_content(session, editor.group, limit=limit)


async def member(node: NodeContext, actor_id: int | None) -> Actor:
    """The live local actor behind a token or a session (NotFound otherwise)."""
    async with node.sessions() as session:
        found = await session.get(Actor, actor_id) if actor_id is not None else None
    if found is None or not found.local or found.deleted_at is not None:
        raise NotFound("no such user")
    return found
