"""The C2S outbox: what a client's ``POST {outbox}`` means, dispatched to the services.

A bare object is wrapped in ``Create`` (ActivityPub §6.2.1). Our kinds are asked for with
``entraideKind`` (``Alert``, ``Resource``, ``Proposal``); a ``Note`` with ``name`` and
``inReplyTo`` and no content is a vote (Mastodon's shape); an ``Endorsement`` co-signs a
proposal. The JSON API calls the same services.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from federation.vocab.parse import contains_unstorable
from server.db.models import Actor
from server.services.content import endorsements, kinds, likes, polls
from server.services.content import local as content
from server.services.content.local import Published
from server.services.errors import InvalidInput
from server.services.events import participation
from server.services.events import remote as events_remote
from server.services.federation import Federation
from server.services.membership import following
from server.services.membership import members as membership

OBJECT_TYPES = frozenset(t for k in kinds.registered() for t in k.types)
"""The types of the objects a client publishes: those of the content kinds (Note, Article, Question)."""
ADDRESSING = ("to", "cc", "bto", "bcc", "audience")

__all__ = ["Published", "is_vote", "post_to_outbox"]


def is_vote(obj: Mapping[str, Any]) -> bool:
    """Mastodon's vote: ``Note`` with ``name`` and ``inReplyTo`` and no ``content``."""
    return (
        obj.get("type") == "Note"
        and isinstance(obj.get("name"), str)
        and obj.get("inReplyTo") is not None
        and not obj.get("content")
    )


def _listed(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else value if isinstance(value, list) else []


def merged_recipients(activity: Mapping[str, Any], obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object of a ``Create`` with the recipients of both united, for every addressing
    property (ActivityPub §6.2), the object's first; the services check each value."""
    merged = dict(obj)
    for key in ADDRESSING:
        values = [*_listed(obj.get(key)), *_listed(activity.get(key))]
        if values and key in activity:
            hashable = all(isinstance(v, str) for v in values)
            merged[key] = list(dict.fromkeys(values)) if hashable else values
    return merged


async def _create(fed: Federation, author: Actor, obj: Mapping[str, Any], *, by: Actor) -> Published:
    if obj.get("type") == "Endorsement":
        return await endorsements.endorse(fed, author, obj, by=by)
    if not isinstance(obj.get("type"), str) or obj.get("type") not in OBJECT_TYPES:
        allowed = ", ".join(sorted({*OBJECT_TYPES, "Endorsement"}))
        raise InvalidInput(f"type must be one of: {allowed}", field="type")
    if is_vote(obj):
        return await polls.cast(fed, author, obj, by=by)
    return await content.create(fed, author, obj, by=by, c2s=True)


async def post_to_outbox(fed: Federation, author: Actor, body: dict[str, Any], *, by: Actor) -> Published:
    """Handle one C2S outbox POST: an activity, or a bare object wrapped in ``Create``."""
    if contains_unstorable(body):
        raise InvalidInput("the body contains a NUL character (\\u0000)")
    kind = body.get("type")
    if not isinstance(kind, str):  # a list or an object would not even hash (case 58)
        raise InvalidInput("type must be a string", field="type")
    obj = body.get("object")
    if kind in OBJECT_TYPES or kind == "Endorsement":
        return await _create(fed, author, body, by=by)
    if kind == "Create" and isinstance(obj, dict):
        return await _create(fed, author, merged_recipients(body, obj), by=by)
    if kind == "Update" and isinstance(obj, dict):
        return await content.update(fed, author, obj, by=by)
    if kind == "Delete":
        return await content.delete(fed, author, _object_id(obj), by=by)
    if kind == "Announce":
        return await content.announce(fed, author, _object_id(obj), by=by)
    if kind in ("Join", "Leave") and author.type == "Person":
        return await _join_or_leave(fed, author, kind, obj)
    if kind in ("Accept", "Reject", "Remove") and author.type == "Group":
        return await _answer_member(fed, author, kind, obj, by=by)
    if kind == "Follow" and isinstance(obj, str):
        result = await following.follow(fed, local_name=author.handle, target_iri=obj, as_actor=author)
        return Published(result.follow_iri, None)
    if kind == "Like":
        return await likes.like(fed, author, obj, by=by)
    if kind == "Undo" and isinstance(obj, str | dict):
        return await _undo(fed, author, obj, by=by)
    raise InvalidInput(
        "supported: Note, Article, Question, Endorsement, Create, Update, Delete, Announce, Like,"
        " Follow, Undo (of a Like or a Follow), Join and Leave (a member), Accept, Reject and Remove"
        " (an association)",
        field="type",
    )


def _object_id(obj: Any) -> Any:
    """An activity's ``object`` as an IRI: its ``id`` when embedded (checked by the service)."""
    return obj.get("id") if isinstance(obj, dict) else obj


async def _is_event(fed: Federation, iri: Any) -> bool:
    if not isinstance(iri, str):
        return False
    async with fed.node.sessions() as session:
        return await events_remote.is_event(session, iri)


async def _join_or_leave(fed: Federation, author: Actor, kind: str, obj: Any) -> Published:
    """A person joins or leaves an association, or takes part in an event held here (Mobilizon's
    ``Join``/``Leave`` of an event, issue 18)."""
    target = _object_id(obj)
    if not isinstance(target, str):
        raise InvalidInput("object must be the association's IRI", field="object")
    if await _is_event(fed, target):
        if kind == "Join":
            await participation.join(fed, author, target)
        else:
            await participation.leave(fed, author, target)
        return Published(None, target)
    if kind == "Join":
        return Published(await membership.join(fed, author, target), target)
    return Published(await membership.leave(fed, author, target), None)


async def _answer_member(fed: Federation, author: Actor, kind: str, obj: Any, *, by: Actor) -> Published:
    """An admin or moderator answers a request to join (``Accept``, ``Reject``: object = the
    Join, or its actor) or removes a member (``Remove``: object = the member)."""
    if kind == "Remove":
        member = _object_id(obj)
        if not isinstance(member, str):
            raise InvalidInput("object must be the member's IRI", field="object")
        await membership.remove(fed, author, member, by=by)
        return Published(None, member)
    member = obj.get("actor") if isinstance(obj, dict) else obj
    if not isinstance(member, str):
        raise InvalidInput("object must be the Join (with its actor) or the member's IRI", field="object")
    event = obj.get("object") if isinstance(obj, dict) else None
    if await _is_event(fed, event):  # the organisers answer a Join of one of their events
        await participation.decide(fed, author, event, member, by=by, accept=kind == "Accept")
        return Published(None, member)
    await membership.decide(fed, author, member, by=by, approve=kind == "Accept")
    return Published(None, member)


async def _undo(fed: Federation, author: Actor, obj: str | dict[str, Any], *, by: Actor) -> Published:
    """Undo a Like, else a Follow; the answer's ``object`` is what was undone."""
    undone = await likes.undo(fed, author, obj, by=by)
    if undone is not None:
        return undone
    target = str(obj if isinstance(obj, str) else obj.get("id"))
    return Published(await following.unfollow(fed, follower=author, follow_iri=target), target)
