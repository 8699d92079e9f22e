"""Votes on proposals and polls, tallies and closing.

Votes travel as Mastodon's do: ``Create{Note{name: option, inReplyTo: question}}`` sent to the
question's author, one ``Note`` per chosen option. The author's node alone counts them and
pushes the tally back with ``Update{Question}`` to the question's audience and to the voters.

Rules, checked in :func:`check_vote` for local (C2S, 403) and remote (S2S, dropped and logged)
voters alike: the question is open (``endTime`` in the future, not closed); the option exists;
the voter is eligible (``anyone``; ``members`` of the authoring association; ``associations``,
i.e. ``Group`` actors, one vote each); the author does not vote on its own question; one vote
per voter (several options only for ``anyOf``, each once). Nothing is stored when refused.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from federation.audience import PUBLICLY_READABLE
from federation.types import Iri
from federation.vocab import entraide as wire
from federation.vocab.entraide import Eligibility, Kind, ProposalStatus
from server.db import queue
from server.db.models import Activity, Actor, Membership, RemoteObject, Vote
from server.services.content.local import POLL_CLOSE, Published, audit, holders, owned, text, when
from server.services.delivery.outbox import new_activity_iri, publish
from server.services.errors import Forbidden, InvalidInput
from server.services.federation import Federation
from server.services.membership.standing import check_acting, is_suspended
from server.services.reading import visibility

log = logging.getLogger(__name__)

POLL_TALLY = "poll_tally"
TALLY_DELAY = timedelta(seconds=1)
"""Votes arriving within this window share one ``Update{Question}``."""


class VoteRefused(Forbidden):
    """A vote that the question's rules refuse (closed, ineligible, repeated, unknown option)."""

    code = "vote_refused"


def is_closed(document: Mapping[str, Any], now: datetime) -> bool:
    if document.get("closed") or document.get("proposalStatus") == ProposalStatus.CLOSED.value:
        return True
    end = document.get("endTime")
    try:
        return isinstance(end, str) and when(end, "endTime") is not None and now >= when(end, "endTime")  # type: ignore[operator]
    except InvalidInput:
        return False


def eligibility_of(question: RemoteObject) -> Eligibility:
    if question.kind != Kind.PROPOSAL.value:
        return Eligibility.ANYONE
    try:
        return Eligibility(question.document.get("eligibility", Eligibility.ANYONE.value))
    except ValueError:
        return Eligibility.ANYONE


async def check_vote(
    session: Any, question: RemoteObject, voter: Actor, choice: str, *, now: datetime
) -> None:
    """Raise :class:`VoteRefused` unless ``voter`` may choose ``choice`` now."""
    if question.deleted_at is not None or question.type != "Question":
        raise VoteRefused("no such question")
    if question.local and question.visibility not in PUBLICLY_READABLE:
        # A question the voter may not read does not exist for it (members-only proposals): this
        # comes first, so that neither its state nor its options show through (case 54).
        viewer = visibility.Viewer(visibility.ViewerKind.REMOTE, actor_id=voter.id, actor_iri=voter.iri)
        if not await visibility.can_read_object(session, viewer, question):
            raise VoteRefused("no such question")
    if is_closed(question.document, now):
        raise VoteRefused("the vote is closed")
    names, multiple = wire.option_names(question.document)
    if choice not in names:
        raise VoteRefused("no such option")
    if voter.id == question.attributed_to_id:
        raise VoteRefused("the author does not vote on its own question")
    eligibility = eligibility_of(question)
    if eligibility is Eligibility.ASSOCIATIONS and voter.type != "Group":
        raise VoteRefused("only associations vote on this proposal")
    if eligibility is Eligibility.MEMBERS:
        member = await session.scalar(
            select(Membership.id).where(
                Membership.group_id == question.attributed_to_id,
                Membership.member_id == voter.id,
                Membership.state == "active",
            )
        )
        if member is None:
            raise VoteRefused("only members of the association vote on this proposal")
    standing = await session.scalar(
        select(Membership).where(
            Membership.group_id == question.attributed_to_id, Membership.member_id == voter.id
        )
    )
    if is_suspended(standing, now):  # a peer's member too (ours are refused before: check_acting)
        raise VoteRefused("a suspended member does not vote in the association")
    previous = (
        await session.scalars(
            select(Vote.choice).where(Vote.question_id == question.id, Vote.voter_id == voter.id)
        )
    ).all()
    if previous and (not multiple or choice in previous):
        raise VoteRefused("this voter has already voted")


async def _record(
    fed: Federation,
    question_id: int,
    voter: Actor,
    choice: str,
    *,
    activity_iri: str,
    note_iri: str | None,
    extra: Any = None,
) -> None:
    """Check and store one vote and schedule the tally, in one transaction."""
    now = fed.node.clock()
    try:
        async with fed.node.sessions.begin() as session:
            # Write-lock the question before reading anything: SQLite ignores FOR UPDATE, and two
            # votes of one voter checked at once would both pass "already voted" (case 45).
            await session.execute(
                update(RemoteObject)
                .where(RemoteObject.id == question_id)
                .values(id=RemoteObject.id)
                .execution_options(synchronize_session=False)
            )
            question = await session.get(RemoteObject, question_id, with_for_update=True)
            if question is None:
                raise VoteRefused("no such question")
            await check_vote(session, question, voter, choice, now=now)
            session.add(
                Vote(
                    question_id=question_id,
                    voter_id=voter.id,
                    choice=choice,
                    activity_iri=activity_iri,
                    note_iri=note_iri,
                    created_at=now,
                )
            )
            if question.local:
                await schedule_tally(session, question_id, now=now)
            if extra is not None:
                await extra(session, question, now)
    except IntegrityError:
        raise VoteRefused("this voter has already voted") from None


async def schedule_tally(session: Any, question_id: int, *, now: datetime) -> None:
    """One tally job per question and :data:`TALLY_DELAY` window (later votes join it)."""
    window = int(now.timestamp() // max(TALLY_DELAY.total_seconds(), 0.001))
    await queue.enqueue(
        session,
        POLL_TALLY,
        {"object_id": question_id},
        dedup_key=f"poll_tally:{question_id}:{window}",
        run_at=now + TALLY_DELAY,
        priority=queue.Priority.INTERACTIVE,
        now=now,
    )


# --- votes from our accounts (C2S) ----------------------------------------------------------------


async def cast(fed: Federation, voter: Actor, obj: Mapping[str, Any], *, by: Actor) -> Published:
    """A local actor votes: ``Note{name: option, inReplyTo: question}`` (Mastodon's shape).

    The vote is kept as a direct ``Create{Note}`` to the question's author: on our own question
    it is counted at once (nothing leaves the node); on a peer's question it is delivered to the
    author, and remembered here so that a second vote is refused locally too.
    """
    question_iri = text(obj.get("inReplyTo"), "inReplyTo", 2048, required=True)
    choice = text(obj.get("name"), "name", wire.MAX_OPTION_CHARS, required=True)
    assert question_iri is not None and choice is not None
    async with fed.node.sessions() as session:
        question = await session.scalar(select(RemoteObject).where(RemoteObject.iri == question_iri))
        author = await session.get(Actor, question.attributed_to_id) if question is not None else None
        as_voter = visibility.Viewer(visibility.ViewerKind.LOCAL, actor_id=voter.id, actor_iri=voter.iri)
        readable = question is not None and await visibility.can_read_object(session, as_voter, question)
        if readable:  # a suspended member votes neither on its association's questions nor in its name
            await check_acting(session, author, [voter, by], now=fed.node.clock())
            await check_acting(session, voter, [by], now=fed.node.clock())
    if question is None or author is None or not readable or question.type != "Question":
        # A question the voter may not read answers like a missing one, before any rule (case 54).
        raise InvalidInput("inReplyTo names no question known here", field="inReplyTo")
    uris = fed.node.uris
    note_iri = uris.object(uuid.uuid4().hex)
    activity_iri = new_activity_iri(uris)
    note = wire.render_vote(
        note_iri=note_iri,
        voter=Iri(voter.iri),
        question=Iri(question.iri),
        question_author=Iri(author.iri),
        choice=choice,
    )

    async def send(session: Any, _question: RemoteObject, now: datetime) -> None:
        session.add(
            RemoteObject(
                iri=note_iri,
                local=True,
                type="Note",
                kind=Kind.VOTE.value,
                attributed_to_id=voter.id,
                in_reply_to_iri=question.iri,
                visibility="direct",
                document={"@context": wire.CONTENT_CONTEXT, **note},
                published=now,
                received_at=now,
            )
        )
        activity = {"id": activity_iri, "type": "Create", "object": note, "to": [author.iri]}
        await publish(
            session, voter, activity, visibility="direct", now=now, priority=queue.Priority.INTERACTIVE
        )
        audit(session, voter, by, "vote.cast", question.iri, now)

    await _record(fed, question.id, voter, choice, activity_iri=activity_iri, note_iri=note_iri, extra=send)
    fed.notify_worker()
    return Published(activity_iri, note_iri)


# --- votes from peers (S2S) -----------------------------------------------------------------------


async def receive(
    fed: Federation, voter: Actor, question_iri: str, choice: str, *, activity_iri: str, note_iri: str | None
) -> bool:
    """A peer's vote on one of our questions; refused votes are dropped and logged."""
    async with fed.node.sessions() as session:
        question_id = await session.scalar(
            select(RemoteObject.id).where(RemoteObject.iri == question_iri, RemoteObject.local.is_(True))
        )
    if question_id is None:
        return False
    try:
        await _record(fed, question_id, voter, choice, activity_iri=activity_iri, note_iri=note_iri)
    except VoteRefused as exc:
        log.info("vote refused", extra={"question": question_iri, "voter": voter.iri, "reason": str(exc)})
        return False
    fed.notify_worker()
    log.info("vote counted", extra={"question": question_iri, "voter": voter.iri})
    return True


# --- tallies and closing (jobs) -------------------------------------------------------------------


async def tally(fed: Federation, question_id: int, *, close: bool = False, by: Actor | None = None) -> bool:
    """Recount a local question's votes into its document and push ``Update{Question}``.

    The update goes to the question's audience and to every remote voter's inbox (voters may
    not follow the author). With ``close`` the question is also closed. Returns False when
    there is nothing to do (deleted, already closed).
    """
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        question = await session.get(RemoteObject, question_id, with_for_update=True)
        if question is None or not question.local or question.deleted_at is not None:
            return False
        if close and question.document.get("closed"):
            return False
        author = await session.get(Actor, question.attributed_to_id)
        assert author is not None
        rows = (
            await session.execute(
                select(Vote.choice, func.count()).where(Vote.question_id == question_id).group_by(Vote.choice)
            )
        ).all()
        voters = int(
            (
                await session.execute(
                    select(func.count(func.distinct(Vote.voter_id))).where(Vote.question_id == question_id)
                )
            ).scalar_one()
        )
        remote_voters = (
            await session.scalars(
                select(Actor.iri)
                .join(Vote, Vote.voter_id == Actor.id)
                .where(Vote.question_id == question_id, Actor.local.is_(False))
                .distinct()
            )
        ).all()
        if question.visibility in PUBLICLY_READABLE:
            # Repliers, relays and co-signers hold it too: they learn the tally and the result.
            remote_voters = list(dict.fromkeys([*remote_voters, *await holders(session, question)]))
        counts = {choice: int(n) for choice, n in rows}
        names, multiple = wire.option_names(question.document)
        document = {k: v for k, v in question.document.items() if k != "@context"}
        document["anyOf" if multiple else "oneOf"] = wire.poll_options(names, counts)
        document["votersCount"] = voters
        if close:
            document["closed"] = wire.iso(now)
            if question.kind == Kind.PROPOSAL.value:
                document["proposalStatus"] = ProposalStatus.CLOSED.value
        if document == {k: v for k, v in question.document.items() if k != "@context"}:
            return False
        document["updated"] = wire.iso(now)
        question.document = {"@context": wire.CONTENT_CONTEXT, **document}
        question.updated = now
        activity = {
            "id": new_activity_iri(fed.node.uris),
            "type": "Update",
            "object": document,
            "to": document.get("to", []),
            "cc": document.get("cc", []),
        }
        await publish(
            session,
            author,
            activity,
            visibility=question.visibility,
            now=now,
            priority=queue.Priority.INTERACTIVE,
            also=list(remote_voters),
        )
        if close and by is not None:
            audit(session, author, by, f"{question.kind}.close", question.iri, now, early=True)
    fed.notify_worker()
    log.info("poll tallied", extra={"question": question.iri, "voters": voters, "closed": close})
    return True


async def close(fed: Federation, question_id: int) -> timedelta | None:
    """Close a question at its ``endTime`` with its final tally.

    Returns how long to wait when the job runs early (a clock difference), else None.
    """
    async with fed.node.sessions() as session:
        question = await session.get(RemoteObject, question_id)
    if question is None or not question.local:
        return None
    end = when(question.document.get("endTime"), "endTime")
    now = fed.node.clock()
    if end is not None and now < end:
        return end - now
    await tally(fed, question_id, close=True)
    return None


async def close_early(fed: Federation, author: Actor, object_iri: Any, *, by: Actor) -> Published:
    """Close one of ``author``'s open proposals (or polls) before its ``endTime``, with its final
    tally: an ``Update`` with ``closed`` (and ``proposalStatus: closed``) goes to its audience and
    voters, and no vote is counted after it. Audited as ``proposal.close``."""
    row = await owned(fed, author, object_iri)
    if row.type != "Question":
        raise InvalidInput(f"only a proposal or a poll is closed; this is a {row.kind}", field="object")
    if is_closed(row.document, fed.node.clock()):
        raise InvalidInput("this vote is already closed", field="object")
    async with fed.node.sessions() as session:
        await check_acting(session, author, [by], now=fed.node.clock())
    if not await tally(fed, row.id, close=True, by=by):
        raise InvalidInput("this vote is already closed", field="object")
    async with fed.node.sessions() as session:
        activity = await session.scalar(
            select(Activity.iri)
            .where(Activity.object_iri == row.iri, Activity.type == "Update")
            .order_by(Activity.id.desc())
            .limit(1)
        )
    return Published(activity, row.iri)


def results(document: Mapping[str, Any]) -> dict[str, int]:
    """Option name → votes, from a question document."""
    names, multiple = wire.option_names(document)
    options = document.get("anyOf" if multiple else "oneOf") or []
    counts: dict[str, int] = {}
    for option in options:
        replies = option.get("replies") if isinstance(option, dict) else None
        total = replies.get("totalItems") if isinstance(replies, dict) else None
        if isinstance(option, dict) and option.get("name") in names:
            counts[option["name"]] = total if isinstance(total, int) else 0
    return counts


__all__ = [
    "POLL_CLOSE",
    "POLL_TALLY",
    "VoteRefused",
    "cast",
    "check_vote",
    "close",
    "close_early",
    "receive",
    "results",
    "tally",
]
