"""Votes from peers, in Mastodon's recorded shape, on a real node (SQLite and PostgreSQL).

A vote is ``Create{Note{name, inReplyTo}}`` with no content (tests/fixtures/payloads/mastodon/
vote_create.json). Counted votes produce one ``Update{Question}`` with the tally, delivered to
the question's audience and to the voter; refused votes (second vote, unknown option, not
eligible, closed) change nothing but the inbox's own bookkeeping.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from federation.types import AS_PUBLIC
from server.db.models import Activity, Delivery, RemoteObject, Vote
from tests.support.nodes import wait_until
from tests.support.signed_inbox import RemoteAccount, StallingPeers, changed, processed, settle
from tests.support.world import (
    GROUP_INBOX,
    NodeStarter,
    World,
    given_world,
    object_row,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "payloads" / "mastodon" / "vote_create.json"


@pytest.fixture
async def world(start_node: NodeStarter, peers: StallingPeers) -> AsyncIterator[World]:
    async with start_node() as node:
        world = await given_world(node, peers)
        await node.add_member("alice-admin", "collectif", role="admin")
        yield world


def mastodon_vote(voter: RemoteAccount, question: str, author: str, choice: str, n: int) -> dict[str, Any]:
    """The recorded Mastodon vote, re-addressed: same shape, our ids."""
    vote = copy.deepcopy(json.loads(FIXTURE.read_text()))
    note_id = f"{voter.iri}#votes/{n}"
    vote.update(id=f"{note_id}/activity", to=author, actor=voter.iri)
    vote["object"].update(id=note_id, to=author, name=choice, inReplyTo=question, attributedTo=voter.iri)
    return vote


async def _proposal(world: World, **fields: Any) -> str:
    token = await world.node.token("alice-admin")
    body = {
        "to": [AS_PUBLIC],
        "type": "Question",
        "name": "Stocks de sécurité",
        "content": "<p>Quatre mois de stock.</p>",
        "oneOf": ["Pour", "Contre"],
        "eligibility": "anyone",
        **fields,
    }
    created = await world.node.post_outbox("/groups/collectif", token, body)
    await settle(world.node)
    return str(created["object"])


async def _votes(world: World) -> list[tuple[str, str]]:
    async with world.node.sessions() as session:
        from server.db.models import Actor

        rows = await session.execute(select(Actor.iri, Vote.choice).join(Actor, Actor.id == Vote.voter_id))
        return sorted((r[0], r[1]) for r in rows)


async def test_a_recorded_mastodon_vote_is_counted_and_the_tally_goes_back_to_the_voter(world: World) -> None:
    question = await _proposal(world)
    vote = mastodon_vote(world.alice, question, world.group, "Pour", 1)
    assert (await world.send(GROUP_INBOX, vote, world.alice)).status == 202
    assert await processed(world.node, vote["id"]) == "processed"
    assert await _votes(world) == [(world.alice.iri, "Pour")]

    async def tallied() -> bool:
        row = await object_row(world.node, question)
        return row is not None and row.document.get("votersCount") == 1

    await wait_until(tallied, what="the tally")
    row = await object_row(world.node, question)
    assert row is not None
    assert {o["name"]: o["replies"]["totalItems"] for o in row.document["oneOf"]} == {"Pour": 1, "Contre": 0}
    # the vote itself is not stored as a post
    assert (
        await world.node.scalar(
            select(func.count()).select_from(RemoteObject).where(RemoteObject.kind == "vote")
        )
        == 0
    )

    # one Update{Question}, delivered to alice's inbox although she is not a follower
    async def delivered_to_voter() -> bool:
        async with world.node.sessions() as session:
            update = await session.scalar(
                select(Activity).where(Activity.type == "Update", Activity.object_iri == question)
            )
            if update is None:
                return False
            inboxes = (
                await session.scalars(select(Delivery.inbox_iri).where(Delivery.activity_id == update.id))
            ).all()
        return any(i.startswith(world.alice.iri_on_host("/")) for i in inboxes)

    await wait_until(delivered_to_voter, what="the tally's delivery to the voter")


async def test_refused_votes_change_nothing(world: World) -> None:
    question = await _proposal(world)
    members_only = await _proposal(world, eligibility="members", name="Assemblée")
    associations = await _proposal(world, eligibility="associations", name="Cosignature")
    first = mastodon_vote(world.alice, question, world.group, "Pour", 1)
    assert (await world.send(GROUP_INBOX, first, world.alice)).status == 202
    assert await processed(world.node, first["id"]) == "processed"

    async def tallied() -> bool:  # the tally waits TALLY_DELAY for more votes, then goes out
        async with world.node.sessions() as session:
            return bool(
                await session.scalar(
                    select(func.count())
                    .select_from(Activity)
                    .where(Activity.type == "Update", Activity.object_iri == question)
                )
            )

    await wait_until(tallied, what="the first vote's tally")
    await settle(world.node)
    before = await world.counts()
    refused = [
        mastodon_vote(world.alice, question, world.group, "Contre", 2),  # a second vote
        mastodon_vote(world.bob, question, world.group, "Peut-être", 3),  # no such option
        mastodon_vote(world.bob, members_only, world.group, "Pour", 4),  # not a member
        mastodon_vote(world.bob, associations, world.group, "Pour", 5),  # a person, not an association
    ]
    for vote in refused:
        who = world.alice if vote["actor"] == world.alice.iri else world.bob
        assert (await world.send(GROUP_INBOX, vote, who)).status == 202
        await processed(world.node, vote["id"])
    await settle(world.node)
    diff = changed(before, await world.counts())
    # only the inbox bookkeeping (received activities, their jobs, the group inbox listing)
    assert set(diff) <= {"inbox_activities", "inbox_items", "jobs", "actors", "actor_keys"}, diff
    assert await _votes(world) == [(world.alice.iri, "Pour")]


async def test_a_vote_after_the_end_is_refused_and_the_question_closes_with_its_final_tally(
    world: World,
) -> None:
    question = await _proposal(world)
    vote = mastodon_vote(world.alice, question, world.group, "Contre", 1)
    assert (await world.send(GROUP_INBOX, vote, world.alice)).status == 202
    await processed(world.node, vote["id"])
    # the end time passes
    async with world.node.sessions.begin() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == question))
        assert row is not None
        past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat(timespec="seconds").replace("+00:00", "Z")
        row.document = {**row.document, "endTime": past}
    late = mastodon_vote(world.bob, question, world.group, "Pour", 2)
    assert (await world.send(GROUP_INBOX, late, world.bob)).status == 202
    await processed(world.node, late["id"])
    assert await _votes(world) == [(world.alice.iri, "Contre")]
    from server.services.content import polls

    assert await polls.close(world.node.fed, row.id) is None

    async def closed() -> bool:
        stored = await object_row(world.node, question)
        return stored is not None and bool(stored.document.get("closed"))

    await wait_until(closed, what="closing")
    stored = await object_row(world.node, question)
    assert stored is not None and stored.document["proposalStatus"] == "closed"
    assert stored.document["votersCount"] == 1


async def test_a_mastodon_follower_gets_each_kind_signed_and_readable(world: World) -> None:
    """A Mastodon-like follower (fake peer) receives alerts, resources and proposals, signed by
    the association, in shapes Mastodon displays: the alert's headline first and no summary
    (which Mastodon would show as a content warning), the proposal as a poll."""
    from federation import validation
    from tests.support.signed_inbox import posts_to
    from tests.support.world import activity, follow_state

    follow = activity("Follow", world.alice, world.group)
    assert (await world.send(GROUP_INBOX, follow, world.alice)).status == 202
    await processed(world.node, follow["id"])
    assert await follow_state(world.node, world.alice.iri, world.group) == "accepted"
    token = await world.node.token("alice-admin")
    bodies = [
        {
            "to": [AS_PUBLIC],
            "type": "Note",
            "entraideKind": "Alert",
            "name": "Pénurie",
            "content": "<p>Texte</p>",
            "summary": "ignored for alerts",
            "severity": "critical",
            "category": "shortage",
        },
        {
            "to": [AS_PUBLIC],
            "type": "Article",
            "name": "Guide",
            "content": "<p>Corps</p>",
            "summary": "<p>Résumé</p>",
        },
        {
            "to": [AS_PUBLIC],
            "type": "Question",
            "name": "Position",
            "oneOf": ["Pour", "Contre"],
            "eligibility": "anyone",
        },
    ]
    world.peers.hits.clear()
    created = [await world.node.post_outbox("/groups/collectif", token, body) for body in bodies]
    await settle(world.node)
    hits = [h for h in posts_to(world.peers, "peer.example")]
    assert len(hits) == 3 and all(h.key_id == f"{world.group}#main-key" for h in hits)
    async with world.node.sessions() as session:
        documents = [
            (await session.scalar(select(Activity).where(Activity.iri == c["id"]))).document  # type: ignore[union-attr]
            for c in created
        ]
    for document in documents:
        validation.validate(document, "activitystreams/activity")
    alert, resource, proposal = (d["object"] for d in documents)
    assert alert["type"] == "Note" and "summary" not in alert
    assert alert["content"].startswith("<p><strong>⚠ CRITICAL · Shortage: Pénurie</strong></p>")
    assert resource["type"] == "Article" and resource["name"] == "Guide"
    assert proposal["type"] == "Question" and [o["name"] for o in proposal["oneOf"]] == ["Pour", "Contre"]
    assert "endTime" in proposal and proposal["votersCount"] == 0
