"""Moderation reports: file one, list a queue, act on one (docs/architecture.md, "Moderation reports").

A report is filed here by one of our members (``file``) or received from a peer as a ``Flag``
(``server/services/inbox/handlers.py``, ``on_flag``). Each names the association concerned, whose
admins and moderators see it; node admins see every report (decision 60). The reporter is never
shown to the reported party, and a report forwarded to the content's origin is a ``Flag`` from our
node's ``Application`` actor carrying the targets and the comment only (decision 61, security
case 74). Every action is audited with the entry point's channel (``server/services/audit.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.types import Iri
from federation.uris import is_valid_handle
from server.db import queue
from server.db.models import Account, Actor, Membership, RemoteObject, Report
from server.db.queries import actors as actor_queries
from server.services import audit
from server.services.content import changes
from server.services.content import local as content
from server.services.delivery.outbox import new_activity_iri, publish
from server.services.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from server.services.federation import Federation
from server.services.membership import members as membership
from server.services.membership import suspension
from server.services.moderation import blocks
from server.services.reading import visibility

log = logging.getLogger(__name__)

MAX_COMMENT_CHARS: Final = 1000
LOCAL_REPORTS_PER_WINDOW: Final = 10
REPORT_WINDOW: Final = timedelta(hours=1)
"""A member files at most ``LOCAL_REPORTS_PER_WINDOW`` reports per window (security case 75)."""
STATES: Final = ("open", "resolved", "dismissed")
MAX_PAGE: Final = 100
INT32_MAX: Final = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Moderator:
    """Who acts or reads, and what they may see: every report (node admin) or their associations'."""

    actor_id: int | None  # None: the operator at the command line, who sees every report
    is_node_admin: bool
    group_ids: frozenset[int]

    def sees(self, report: Report) -> bool:
        return self.is_node_admin or (report.group_id is not None and report.group_id in self.group_ids)


@dataclass(frozen=True, slots=True)
class ReportView:
    """One report as a queue shows it; ``reporter`` is None when hidden from the reader."""

    id: int
    state: str
    created_at: datetime
    targets: list[str]
    comment: str
    local: bool
    reporter: str | None
    association: str | None
    association_handle: str | None
    resolved_by: str | None
    resolution: str | None
    action: str | None
    resolved_at: datetime | None
    forwarded: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "created": _iso(self.created_at),
            "targets": self.targets,
            "comment": self.comment,
            "local": self.local,
            "reporter": self.reporter,
            "association": self.association,
            "resolvedBy": self.resolved_by,
            "resolution": self.resolution,
            "action": self.action,
            "resolved": _iso(self.resolved_at),
            "forwarded": self.forwarded,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value is not None else None


def comment_text(value: Any, *, field: str = "comment") -> str:
    """A reporter's or moderator's text: plain, bounded, no NUL (a 4xx before anything is stored)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be text", field=field)
    if len(value) > MAX_COMMENT_CHARS:
        raise InvalidInput(f"{field} is longer than {MAX_COMMENT_CHARS} characters", field=field)
    if "\x00" in value:
        raise InvalidInput(f"{field} must not contain NUL characters", field=field)
    return value.strip()


async def moderator(session: AsyncSession, actor: Actor) -> Moderator:
    """``actor``'s reach: node admin, and the local associations it administers or moderates."""
    account = await session.get(Account, actor.id)
    groups = await session.scalars(
        select(Membership.group_id).where(
            Membership.member_id == actor.id,
            Membership.state == "active",
            Membership.role.in_(membership.MANAGING_ROLES),
        )
    )
    return Moderator(actor.id, bool(account is not None and account.is_node_admin), frozenset(groups))


OPERATOR: Final = Moderator(None, True, frozenset())
"""The node's operator (``entraide report list`` without ``--as``): every report, every reporter."""


async def concerned_group_id(session: AsyncSession, target_iris: Sequence[str]) -> int | None:
    """The local association a report concerns: a target object's association (its audience, or
    its author when that is an association), a target association itself, or the first association
    a target person belongs to; None otherwise (node admins only see it)."""
    objects = (
        await session.execute(
            select(RemoteObject.audience_id, RemoteObject.attributed_to_id).where(
                RemoteObject.iri.in_(target_iris)
            )
        )
    ).all()
    candidates = [i for row in objects for i in row if i is not None]
    query = select(Actor.id).where(Actor.local.is_(True), Actor.type == "Group", Actor.deleted_at.is_(None))
    by_object = (
        await session.scalar(query.where(Actor.id.in_(candidates)).order_by(Actor.id).limit(1))
        if candidates
        else None
    )
    if by_object is not None:
        return int(by_object)
    found = await session.scalar(query.where(Actor.iri.in_(target_iris)).order_by(Actor.id).limit(1))
    if found is not None:
        return int(found)
    member_of = await session.scalar(
        select(Membership.group_id)
        .join(Actor, Actor.id == Membership.member_id)
        .where(Actor.iri.in_(target_iris), Membership.state == "active")
        .order_by(Membership.id)
        .limit(1)
    )
    return int(member_of) if member_of is not None else None


async def _target(session: AsyncSession, reporter: Actor, target_iri: Any) -> str:
    """The reported object (readable by the reporter) or actor; NotFound alike otherwise (case 54)."""
    if not isinstance(target_iri, str) or not target_iri.startswith(("https://", "http://")):
        raise InvalidInput("target must be the IRI of an object or an actor", field="target")
    if len(target_iri) > 2048 or "\x00" in target_iri:
        raise InvalidInput("target must be the IRI of an object or an actor", field="target")
    row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == target_iri))
    if row is not None:
        viewer = visibility.Viewer(visibility.ViewerKind.LOCAL, actor_id=reporter.id, actor_iri=reporter.iri)
        if row.deleted_at is None and await visibility.can_read_object(session, viewer, row):
            return row.iri
        raise NotFound("no such object or actor")
    actor = await actor_queries.by_iri(session, target_iri)
    if actor is None or actor.deleted_at is not None or actor.id == reporter.id:
        raise NotFound("no such object or actor")
    return actor.iri


async def file(fed: Federation, reporter: Actor, target_iri: Any, comment: Any) -> int:
    """One of our members reports an object or an actor; returns the report's id.

    Raises:
        InvalidInput: a malformed target or comment. NotFound: a target the reporter cannot read.
        Forbidden: the reporter is not one of our people. Conflict: too many reports this hour.
    """
    text = comment_text(comment)
    if not reporter.local or reporter.type != "Person":
        raise Forbidden("only a member of this node files a report here")
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        target = await _target(session, reporter, target_iri)
        recent = await session.scalar(
            select(func.count(Report.id)).where(
                Report.reporter_id == reporter.id, Report.created_at > now - REPORT_WINDOW
            )
        )
        if (recent or 0) >= LOCAL_REPORTS_PER_WINDOW:
            raise Conflict("you filed many reports this hour: moderators will read them first")
        report = Report(
            activity_iri=new_activity_iri(fed.node.uris),  # a private id, never served
            reporter_id=reporter.id,
            target_iris=[target],
            content=text,
            state="open",
            created_at=now,
            local=True,
            group_id=await concerned_group_id(session, [target]),
        )
        session.add(report)
        await session.flush()
        report_id = int(report.id)
    log.info("report filed", extra={"report": report_id})
    return report_id


async def _reported_parties(session: AsyncSession, report: Report) -> set[int]:
    """The actors a report is about: target actors and the authors of target objects."""
    authors = await session.scalars(
        select(RemoteObject.attributed_to_id).where(RemoteObject.iri.in_(report.target_iris))
    )
    actors = await session.scalars(select(Actor.id).where(Actor.iri.in_(report.target_iris)))
    return {*authors, *actors}


async def _view(
    session: AsyncSession, reader: Moderator, report: Report, names: dict[int, Actor]
) -> ReportView:
    hidden = reader.actor_id is not None and reader.actor_id in await _reported_parties(session, report)
    reporter = names.get(report.reporter_id)
    group = names.get(report.group_id) if report.group_id is not None else None
    by = names.get(report.resolved_by_id) if report.resolved_by_id is not None else None
    return ReportView(
        id=report.id,
        state=report.state,
        created_at=report.created_at,
        targets=list(report.target_iris),
        comment=report.content,
        local=report.local,
        reporter=None if hidden or reporter is None else reporter.iri,
        association=group.iri if group is not None else None,
        association_handle=group.handle if group is not None else None,
        resolved_by=by.iri if by is not None else None,
        resolution=report.resolution,
        action=report.action,
        resolved_at=report.resolved_at,
        forwarded=report.forwarded_iri,
    )


async def queue_of(
    session: AsyncSession,
    reader: Actor | None,
    *,
    group: Actor | None = None,
    state: str | None = "open",
    limit: int = 50,
    before: int | None = None,
) -> list[ReportView]:
    """Reports ``reader`` may see, newest first: one association's (its admins and moderators, or a
    node admin), or every one the reader moderates (all of them for a node admin). ``reader``
    None is the operator at the command line.

    Raises:
        Forbidden: ``group`` is given and the reader does not moderate it.
        InvalidInput: an unknown state.
    """
    if state is not None and state not in STATES:
        raise InvalidInput(f"state must be one of: {', '.join(STATES)}", field="state")
    me = await moderator(session, reader) if reader is not None else OPERATOR
    query = select(Report)
    if group is not None:
        if not me.is_node_admin and group.id not in me.group_ids:
            raise Forbidden("an association's reports are read by its admins and moderators")
        query = query.where(Report.group_id == group.id)
    elif not me.is_node_admin:
        if not me.group_ids:
            raise Forbidden("reports are read by moderators and node admins")
        query = query.where(Report.group_id.in_(sorted(me.group_ids)))
    if state is not None:
        query = query.where(Report.state == state)
    if before is not None:
        query = query.where(Report.id < min(before, INT32_MAX))
    rows = list(await session.scalars(query.order_by(Report.id.desc()).limit(min(limit, MAX_PAGE))))
    ids = {i for r in rows for i in (r.reporter_id, r.group_id, r.resolved_by_id) if i is not None}
    names = {a.id: a for a in await session.scalars(select(Actor).where(Actor.id.in_(ids)))} if ids else {}
    return [await _view(session, me, row, names) for row in rows]


async def one(session: AsyncSession, reader: Actor, report_id: int) -> ReportView:
    """One report the reader may see (NotFound alike for a missing one and another's)."""
    me = await moderator(session, reader)
    report = await _visible(session, me, report_id)
    ids = {i for i in (report.reporter_id, report.group_id, report.resolved_by_id) if i is not None}
    names = {a.id: a for a in await session.scalars(select(Actor).where(Actor.id.in_(ids)))}
    return await _view(session, me, report, names)


async def _visible(session: AsyncSession, me: Moderator, report_id: int) -> Report:
    report = await session.get(Report, report_id) if 0 < report_id <= INT32_MAX else None
    if report is None or not me.sees(report):
        raise NotFound("no such report")
    return report


async def _open_report(session: AsyncSession, by: Actor, report_id: int) -> tuple[Report, Moderator]:
    me = await moderator(session, by)
    report = await _visible(session, me, report_id)
    if report.state != "open":
        raise Conflict("this report is already closed", field="report")
    return report, me


def _close(
    session: AsyncSession,
    report: Report,
    by: Actor,
    *,
    action: str,
    state: str,
    reason: str,
    now: datetime,
    group: Actor | None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record the resolution and its audit entry (in the caller's transaction)."""
    report.state, report.action, report.resolved_at = state, action, now
    report.resolved_by_id, report.resolution = by.id, reason or None
    audit.record(
        session,
        f"report.{action}",
        now=now,
        group=group,
        by=by,
        target=report.target_iris[0] if report.target_iris else None,
        detail={"report": report.id, **({"reason": reason} if reason else {}), **(detail or {})},
    )


async def _group_of(session: AsyncSession, report: Report) -> Actor | None:
    return await session.get(Actor, report.group_id) if report.group_id is not None else None


async def dismiss(fed: Federation, by: Actor, report_id: int, reason: Any = None) -> None:
    """Close a report with nothing done; audited."""
    text = comment_text(reason, field="reason")
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        report, _ = await _open_report(session, by, report_id)
        group = await _group_of(session, report)
        _close(session, report, by, action="dismiss", state="dismissed", reason=text, now=now, group=group)


async def remove_content(fed: Federation, by: Actor, report_id: int, reason: Any = None) -> list[str]:
    """Remove the reported content: ours is deleted through the content service (a ``Delete``
    reaches its audience); a peer's copy is forgotten here (a tombstone: never served, never
    stored again). Returns the IRIs removed.

    Raises:
        InvalidInput: the report names no content we hold.
    """
    text = comment_text(reason, field="reason")
    async with fed.node.sessions() as session:
        report, _ = await _open_report(session, by, report_id)
        rows = list(
            await session.scalars(
                select(RemoteObject).where(
                    RemoteObject.iri.in_(report.target_iris), RemoteObject.deleted_at.is_(None)
                )
            )
        )
        authors = {row.id: await session.get(Actor, row.attributed_to_id) for row in rows if row.local}
    if not rows:
        raise InvalidInput("this report names no content held here", field="report")
    for row in rows:
        author = authors.get(row.id)
        if author is not None:
            await content.delete(fed, author, row.iri, by=by)
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        report, _ = await _open_report(session, by, report_id)
        for row in rows:
            if not row.local:
                await _forget(session, row.id, now)
        group = await _group_of(session, report)
        removed = [row.iri for row in rows]
        _close(
            session,
            report,
            by,
            action="remove",
            state="resolved",
            reason=text,
            now=now,
            group=group,
            detail={"removed": removed},
        )
    return removed


async def _forget(session: AsyncSession, object_id: int, now: datetime) -> None:
    """A peer's object is hidden here for good: a tombstone, as a ``Delete`` from its author leaves."""
    row = await session.get(RemoteObject, object_id)
    if row is not None and row.deleted_at is None:
        row.deleted_at = now
        row.document = {"id": row.iri, "type": "Tombstone", "formerType": row.type}
        changes.mark_published(session)  # cached pages forget it too


async def _reported_member(session: AsyncSession, report: Report) -> Actor:
    """The person a report is about: a target actor, else the author of a target object."""
    named = await session.scalar(
        select(Actor).where(Actor.iri.in_(report.target_iris), Actor.type == "Person").limit(1)
    )
    if named is not None:
        return named
    author = await session.scalar(
        select(Actor)
        .join(RemoteObject, RemoteObject.attributed_to_id == Actor.id)
        .where(RemoteObject.iri.in_(report.target_iris), Actor.type == "Person")
        .limit(1)
    )
    if author is None:
        raise InvalidInput("this report names no person", field="report")
    return author


async def warn(fed: Federation, by: Actor, report_id: int, message: Any) -> str:
    """Warn the reported member of the association concerned: a notification with the
    moderator's message and the association's name (never the reporter's). The warning is the
    audit entry ``report.warn`` whose target is the member (``reading/notifications.py`` reads
    it). A member of another node is not warned from here: forward the report to their node.
    Returns the member's IRI."""
    text = comment_text(message, field="message")
    if not text:
        raise InvalidInput("write the warning", field="message")
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        report, _ = await _open_report(session, by, report_id)
        group = await _group_of(session, report)
        member = await _reported_member(session, report)
        if group is None:
            raise InvalidInput("this report concerns no association of this node", field="report")
        if await visibility.role_in(session, _viewer(by), group) not in membership.MANAGING_ROLES:
            raise Forbidden("only the association's admins and moderators warn its members")
        if not member.local:
            raise InvalidInput(
                "a member of another node is warned by their node: forward the report", field="report"
            )
        report.state, report.action, report.resolved_at = "resolved", "warn", now
        report.resolved_by_id, report.resolution = by.id, text
        audit.record(
            session,
            "report.warn",
            now=now,
            group=group,
            by=by,
            target=member.iri,
            detail={"report": report.id, "reason": text, "member": member.iri},
        )
    return member.iri


def _viewer(actor: Actor) -> visibility.Viewer:
    return visibility.Viewer(visibility.ViewerKind.LOCAL, actor_id=actor.id, actor_iri=actor.iri)


async def remove_member(fed: Federation, by: Actor, report_id: int, reason: Any = None) -> str:
    """Remove the reported person from the association concerned (the membership service: a
    ``Remove`` reaches a member of another node); audited. Returns the member's IRI."""
    text = comment_text(reason, field="reason")
    async with fed.node.sessions() as session:
        report, _ = await _open_report(session, by, report_id)
        group = await _group_of(session, report)
        member = await _reported_member(session, report)
    if group is None:
        raise InvalidInput("this report concerns no association of this node", field="report")
    await membership.remove(fed, group, member.iri, by=by)
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        report, _ = await _open_report(session, by, report_id)
        _close(
            session,
            report,
            by,
            action="remove-member",
            state="resolved",
            reason=text,
            now=now,
            group=group,
            detail={"member": member.iri},
        )
    return member.iri


async def suspend_member(
    fed: Federation, by: Actor, report_id: int, reason: Any = None, until: Any = None
) -> str:
    """Suspend the reported person in the association concerned, until ``until`` (a date, or
    none: until lifted) with the reason as what the member is told (``membership/suspension.py``:
    audited, the member notified); the report is resolved. Returns the member's IRI."""
    text = comment_text(reason, field="reason")
    end = suspension.parse_until(until, now=fed.node.clock())
    async with fed.node.sessions() as session:
        report, _ = await _open_report(session, by, report_id)
        group = await _group_of(session, report)
        member = await _reported_member(session, report)
    if group is None:
        raise InvalidInput("this report concerns no association of this node", field="report")
    done = await suspension.suspend(fed, group, member.iri, by=by, until=end, reason=text or None)
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        report, _ = await _open_report(session, by, report_id)
        _close(
            session, report, by, action="suspend-member", state="resolved", reason=text, now=now,
            group=group, detail={"member": member.iri, "until": done.as_json()["until"]},
        )  # fmt: skip
    return member.iri


async def block_actor(fed: Federation, by: Actor, report_id: int, reason: Any = None) -> str:
    """Block the peer actor the report is about (a target actor, or the author of a target
    object): for the association concerned, or for the whole node when the report concerns no
    association (node admins only). The block severs follows and sends what ends them
    (``moderation/blocks.py``); audited with the report's resolution. Returns the actor's IRI."""
    text = comment_text(reason, field="reason")
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        report, me = await _open_report(session, by, report_id)
        group = await _group_of(session, report)
        owner, _ = await _origin(session, report)
        if group is None and not me.is_node_admin:
            raise Forbidden("a block for the whole node is decided by node admins")
        await blocks.block_actor(
            session, uris=fed.node.uris, by=by, actor_iri=owner.iri, reason=text, group=group, now=now
        )
        _close(
            session, report, by, action="block-actor", state="resolved", reason=text, now=now,
            group=group, detail={"actor": owner.iri},
        )  # fmt: skip
    fed.notify_worker()
    return owner.iri


async def block_domain(fed: Federation, by: Actor, report_id: int, reason: Any = None) -> str:
    """Suspend the domain the reported content comes from, for the whole node (node admins
    only): the node refuses it both ways and severs follows (``moderation/blocks.py``); audited
    with the report's resolution. Returns the domain."""
    text = comment_text(reason, field="reason")
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        report, me = await _open_report(session, by, report_id)
        if not me.is_node_admin:
            raise Forbidden("domains are blocked by node admins")
        owner, _ = await _origin(session, report)
        group = await _group_of(session, report)
        await blocks.block_domain(session, by=by, domain=owner.host, private_comment=text, now=now)
        _close(
            session, report, by, action="block-domain", state="resolved", reason=text, now=now,
            group=group, detail={"domain": owner.host},
        )  # fmt: skip
    fed.notify_worker()
    return owner.host


async def _origin(session: AsyncSession, report: Report) -> tuple[Actor, list[str]]:
    """The peer actor the report's content comes from, and the targets on its node."""
    for iri in report.target_iris:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
        owner = (
            await session.get(Actor, row.attributed_to_id)
            if row is not None
            else await actor_queries.by_iri(session, iri)
        )
        if owner is not None and not owner.local:
            same_host = [t for t in report.target_iris if _host(t) == owner.host]
            return owner, list(dict.fromkeys([*same_host, owner.iri]))
    raise InvalidInput("nothing to forward: the reported content is this node's own", field="report")


def _host(iri: str) -> str:
    return iri.split("/", 3)[2] if iri.count("/") >= 2 else ""


async def forward(fed: Federation, by: Actor, report_id: int) -> str:
    """Send the report to the moderators of the content's origin: a ``Flag`` from our node's
    ``Application`` actor to the origin actor's inbox, with the targets and the comment, never
    the reporter (security case 74). Stored with its fan-out job (docs/architecture.md R9);
    audited. The report stays open. Returns the Flag's IRI.
    """
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        report, _ = await _open_report(session, by, report_id)
        if report.forwarded_iri is not None:
            raise Conflict("this report was already forwarded", field="report")
        origin, targets = await _origin(session, report)
        node_actor = await actor_queries.application_actor(session)
        if node_actor is None:
            raise Conflict("this node has no Application actor: run `entraide init`")
        activity: dict[str, Any] = {
            "id": new_activity_iri(fed.node.uris),
            "type": "Flag",
            "object": targets,
            "content": report.content,
            "to": [origin.iri],
        }
        stored = await publish(
            session, node_actor, activity, visibility="direct", now=now, priority=queue.Priority.INTERACTIVE
        )
        report.forwarded_iri = stored.iri
        audit.record(
            session,
            "report.forward",
            now=now,
            group=await _group_of(session, report),
            by=by,
            target=targets[0],
            detail={"report": report.id, "flag": stored.iri, "to": origin.iri},
        )
        flag_iri = stored.iri
    fed.notify_worker()
    log.info("report forwarded", extra={"report": report_id, "to": origin.host})
    return Iri(flag_iri)


async def person(session: AsyncSession, actor_id: int | None) -> Actor:
    """The local person behind a session or a token (who files a report or moderates)."""
    actor = await session.get(Actor, actor_id) if actor_id is not None else None
    if actor is None or not actor.local or actor.type != "Person" or actor.deleted_at is not None:
        raise Unauthorized("a local account is required")
    return actor


async def association(session: AsyncSession, slug: str) -> Actor:
    """One of our associations by its handle (NotFound otherwise)."""
    group = await actor_queries.local_by_handle(session, "Group", slug) if is_valid_handle(slug) else None
    if group is None:
        raise NotFound("no such association")
    return group


async def moderated(session: AsyncSession, actor: Actor) -> list[Actor]:
    """The associations ``actor`` moderates (for the queue's navigation)."""
    me = await moderator(session, actor)
    if not me.group_ids:
        return []
    return list(
        await session.scalars(select(Actor).where(Actor.id.in_(sorted(me.group_ids))).order_by(Actor.handle))
    )


async def audit_entries(
    session: AsyncSession, reader: Actor, *, group: Actor | None, limit: int, before: int | None = None
) -> list[dict[str, Any]]:
    """The audit log for the web page: one association's (its admins and moderators) or the
    node's (node admins), newest first."""
    me = await moderator(session, reader)
    if group is None and not me.is_node_admin:
        raise Forbidden("the node's audit log is read by node admins")
    if group is not None and not me.is_node_admin and group.id not in me.group_ids:
        raise Forbidden("an association's audit log is read by its admins and moderators")
    filters = audit.Filters(group_id=group.id if group is not None else None)
    return await audit.entries(
        session, filters, limit=limit, before=min(before, INT32_MAX) if before else None
    )


ACTIONS: Final = (
    "dismiss",
    "remove",
    "warn",
    "remove-member",
    "suspend-member",
    "forward",
    "block-actor",
    "block-domain",
)
CONFIRMED: Final = ("remove-member", "suspend-member")
"""The actions the web page asks to confirm first (what they do to a person is heavy)."""


async def act(
    fed: Federation, by: Actor, report_id: int, action: str, text: str | None, until: str | None = None
) -> dict[str, Any]:
    """One moderation action by name (the API, the pages and the CLI): what was done. ``until``:
    the end of a suspension (``suspend-member``)."""
    if action == "suspend-member":
        return {"member": await suspend_member(fed, by, report_id, text, until)}
    if action == "dismiss":
        await dismiss(fed, by, report_id, text)
        return {}
    if action == "remove":
        return {"removed": await remove_content(fed, by, report_id, text)}
    if action == "warn":
        return {"member": await warn(fed, by, report_id, text)}
    if action == "remove-member":
        return {"member": await remove_member(fed, by, report_id, text)}
    if action == "forward":
        return {"flag": await forward(fed, by, report_id)}
    if action == "block-actor":
        return {"actor": await block_actor(fed, by, report_id, text)}
    if action == "block-domain":
        return {"domain": await block_domain(fed, by, report_id, text)}
    raise InvalidInput(f"action must be one of: {', '.join(ACTIONS)}", field="action")


__all__ = [
    "ACTIONS",
    "Moderator",
    "ReportView",
    "act",
    "association",
    "audit_entries",
    "comment_text",
    "concerned_group_id",
    "dismiss",
    "file",
    "forward",
    "moderated",
    "moderator",
    "one",
    "person",
    "queue_of",
    "remove_content",
    "remove_member",
    "suspend_member",
    "warn",
]
