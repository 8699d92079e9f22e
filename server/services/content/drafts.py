"""Members' drafts: a member proposes an alert, a resource or a proposal, and one of the
association's admins or moderators publishes it as the association, or refuses it (decision 65).

A draft lives in its own table, never in ``objects``: no read path, feed, outbox, delivery or
federation handler looks there, so a draft cannot be shown or sent before it is published
(security case 81). Only its author and the association's admins and moderators read it.

The fields are those of the content services' requests (``name``, ``content``, ``severity``,
``oneOf``, ...), checked on submission with the content service's own checks; publishing calls
:func:`server.services.content.local.create` with them, which checks everything again, so a draft
never publishes anything that the association's own form would refuse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select, update

from federation.vocab.entraide import Eligibility, Kind
from server.db.models import Actor, Draft
from server.services import audit as audit_log
from server.services.content import local as content
from server.services.content.kinds.alert import alert_info
from server.services.content.kinds.proposal import poll_options
from server.services.content.local import Published
from server.services.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.services.federation import Federation
from server.services.membership import members as membership
from server.services.membership.standing import check_acting
from server.services.reading import visibility
from server.services.reading.visibility import ACTING_ROLES

MAX_PENDING_PER_AUTHOR: Final = 20
"""Pending drafts one member may have in one association (a member cannot flood its moderators)."""
MAX_REASON_CHARS: Final = 1_000
KINDS: Final = {
    Kind.ALERT.value: {"type": "Note", "entraideKind": "Alert"},
    Kind.RESOURCE.value: {"type": "Article", "entraideKind": "Resource"},
    Kind.PROPOSAL.value: {"type": "Question", "entraideKind": "Proposal"},
}
FIELDS: Final = {
    Kind.ALERT.value: ("name", "content", "severity", "category", "area", "areaCode", "validUntil"),
    Kind.RESOURCE.value: ("name", "content", "summary", "license"),
    Kind.PROPOSAL.value: ("name", "content", "oneOf", "anyOf", "endTime", "eligibility"),
}
COMMON: Final = ("visibility",)
VISIBILITIES: Final = ("public", "members")


@dataclass(frozen=True, slots=True)
class DraftView:
    """A draft as its readers see it."""

    id: int
    kind: str
    state: str
    fields: Mapping[str, Any]
    author_iri: str
    author_handle: str
    created_at: Any
    reason: str
    object_iri: str | None


def check(kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The draft's fields, checked with the content service's own rules (InvalidInput otherwise).

    Only the fields of ``kind`` are kept; what depends on the moment of publication (an end time
    in the future) is checked again when it is published.
    """
    if kind not in KINDS:
        raise InvalidInput("kind must be one of: alert, resource, proposal", field="kind")
    allowed = (*FIELDS[kind], *COMMON)
    unknown = sorted(k for k in fields if k not in allowed)
    if unknown:
        raise InvalidInput(f"{unknown[0]} does not apply to a {kind}", field=unknown[0])
    kept = {k: v for k, v in fields.items() if v is not None and v != ""}
    headline = 300 if kind == Kind.ALERT.value else content.MAX_NAME_CHARS
    content.text(kept.get("name"), "name", headline, required=True)
    body_required = kind != Kind.PROPOSAL.value
    content.text(kept.get("content"), "content", content.MAX_CONTENT_CHARS, required=body_required)
    content.text(kept.get("summary"), "summary", content.MAX_SUMMARY_CHARS)
    if kept.get("visibility", "public") not in VISIBILITIES:
        raise InvalidInput("visibility must be public or members", field="visibility")
    if kind == Kind.ALERT.value:
        alert_info(kept)
    elif kind == Kind.RESOURCE.value:
        content.iri_value(kept.get("license"), "license")
    else:
        poll_options(kept)
        content.when(kept.get("endTime"), "endTime")
        content.choice(Eligibility, kept.get("eligibility"), "eligibility", Eligibility.MEMBERS)
    return kept


def _view(draft: Draft, author: Actor) -> DraftView:
    return DraftView(
        id=draft.id,
        kind=draft.kind,
        state=draft.state,
        fields=dict(draft.fields),
        author_iri=author.iri,
        author_handle=author.handle,
        created_at=draft.created_at,
        reason=draft.reason,
        object_iri=draft.object_iri,
    )


async def submit(
    fed: Federation, group: Actor, author: Actor, kind: str, fields: Mapping[str, Any]
) -> DraftView:
    """Store ``author``'s draft for ``group``: an active member's, checked, bounded per author.

    Nothing is published, delivered or audited as the association's: a draft is not an action
    of the association.

    Raises:
        Forbidden: ``author`` is not an active member. InvalidInput: bad fields, too many pending.
    """
    kept = check(kind, fields)
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        if not await membership.is_active_member(session, group.id, author.id):
            raise Forbidden("only the association's active members propose drafts")
        await check_acting(session, group, [author], now=now)
        pending = await session.scalars(
            select(Draft.id).where(
                Draft.group_id == group.id, Draft.author_id == author.id, Draft.state == "pending"
            )
        )
        if len(pending.all()) >= MAX_PENDING_PER_AUTHOR:
            raise InvalidInput(
                f"you already have {MAX_PENDING_PER_AUTHOR} drafts waiting in this association", field="kind"
            )
        draft = Draft(
            group_id=group.id,
            author_id=author.id,
            kind=kind,
            fields=kept,
            state="pending",
            created_at=now,
            reason="",
        )
        session.add(draft)
        await session.flush()
        return _view(draft, author)


async def _is_editor(session: Any, group: Actor, member: Actor) -> bool:
    viewer = visibility.Viewer(visibility.ViewerKind.LOCAL, actor_id=member.id, actor_iri=member.iri)
    return await visibility.role_in(session, viewer, group) in ACTING_ROLES


async def listing(
    fed: Federation, group: Actor, reader: Actor, *, state: str = "pending", limit: int = 50
) -> list[DraftView]:
    """Drafts of ``group`` in ``state``: all of them for its admins and moderators, the reader's
    own for anyone else (a member sees what they proposed, never another member's draft)."""
    if state not in ("pending", "published", "refused"):
        raise InvalidInput("state must be pending, published or refused", field="state")
    async with fed.node.sessions() as session:
        query = (
            select(Draft, Actor)
            .join(Actor, Actor.id == Draft.author_id)
            .where(Draft.group_id == group.id, Draft.state == state)
        )
        if not await _is_editor(session, group, reader):
            query = query.where(Draft.author_id == reader.id)
        rows = (await session.execute(query.order_by(Draft.id.desc()).limit(limit))).all()
    return [_view(draft, author) for draft, author in rows]


async def _decidable(session: Any, group: Actor, by: Actor, draft_id: int) -> tuple[Draft, Actor]:
    if not await _is_editor(session, group, by):
        raise Forbidden("only the association's admins and moderators publish or refuse drafts")
    draft = await session.get(Draft, draft_id)
    author = await session.get(Actor, draft.author_id) if draft is not None else None
    if draft is None or author is None or draft.group_id != group.id:
        raise NotFound("no such draft")
    if draft.state != "pending":
        raise Conflict(f"this draft was already {draft.state}")
    return draft, author


async def _claim(fed: Federation, draft_id: int, state: str, **values: Any) -> None:
    """Move a pending draft to ``state``; Conflict when another decision came first."""
    async with fed.node.sessions.begin() as session:
        done = await session.execute(
            update(Draft).where(Draft.id == draft_id, Draft.state == "pending").values(state=state, **values)
        )
        if getattr(done, "rowcount", 0) != 1:
            raise Conflict("this draft was already decided")


async def publish(fed: Federation, group: Actor, draft_id: int, *, by: Actor) -> Published:
    """Publish a pending draft as ``group`` (``by``: one of its admins or moderators).

    The draft is claimed first, so two moderators publishing at once publish it once; if the
    content service refuses it (an end time now past), the draft is pending again, unchanged.
    """
    async with fed.node.sessions() as session:
        draft, _ = await _decidable(session, group, by, draft_id)
        kind, fields = draft.kind, dict(draft.fields)
    now = fed.node.clock()
    await _claim(fed, draft_id, "published", decided_at=now, decided_by_id=by.id)
    try:
        result = await content.create(fed, group, {**fields, **KINDS[kind]}, by=by)
    except Exception:
        async with fed.node.sessions.begin() as session:
            await session.execute(
                update(Draft)
                .where(Draft.id == draft_id)
                .values(state="pending", decided_at=None, decided_by_id=None)
            )
        raise
    async with fed.node.sessions.begin() as session:
        await session.execute(update(Draft).where(Draft.id == draft_id).values(object_iri=result.object_iri))
    return result


async def refuse(fed: Federation, group: Actor, draft_id: int, *, by: Actor, reason: str = "") -> None:
    """Refuse a pending draft, with an optional reason shown to its author (and audited)."""
    clean = content.text(reason, "reason", MAX_REASON_CHARS) or ""
    async with fed.node.sessions() as session:
        await _decidable(session, group, by, draft_id)
        await check_acting(session, group, [by], now=fed.node.clock())
    now = fed.node.clock()
    await _claim(fed, draft_id, "refused", decided_at=now, decided_by_id=by.id, reason=clean.strip())
    async with fed.node.sessions.begin() as session:
        audit_log.record(
            session,
            "draft.refuse",
            now=now,
            group=group,
            by=by,
            target=None,
            detail={"draft": draft_id, **({"reason": clean.strip()} if clean.strip() else {})},
        )
