"""Notifications are paged on a keyset ``(at, type, iri)`` applied in each source (issue 13): walking
every page returns every notification exactly once, with many at the same instant and more than
a source's batch, and a cursor that is not one of ours is a 400. Memberships are paged the same
way on ``(since, association)``. Both engines."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from server.db.models import Activity, Actor, InboxActivity, InboxItem, Membership, RemoteObject, Vote
from server.services.reading import notifications
from tests.support.nodes import Node

PER_SOURCE = notifications.BATCH + 30
"""More than a source reads at once."""
INSTANTS = [datetime(2026, 3, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=i) for i in range(4)]
"""Few instants, shared by every source: ties within a source and across sources."""


async def _ids(node: Node, *names: str) -> list[int]:
    iris = [node.uris.iri(f"/users/{n}") for n in names[:-1]] + [node.uris.iri(f"/groups/{names[-1]}")]
    async with node.sessions() as session:
        found = dict((await session.execute(select(Actor.iri, Actor.id).where(Actor.iri.in_(iris)))).all())
    return [found[iri] for iri in iris]


def _object(node: Node, n: str, author: int, kind: str, at: datetime, **extra: Any) -> RemoteObject:
    iri = node.uris.object(f"{n:0>32}")
    document = {"id": iri, "type": extra.pop("type", "Note"), "content": "x", **extra.pop("document", {})}
    return RemoteObject(
        iri=iri,
        local=True,
        type=document["type"],
        attributed_to_id=author,
        visibility=extra.pop("visibility", "public"),
        kind=kind,
        document=document,
        published=at,
        received_at=at,
        **extra,
    )


async def _given_many_notifications(node: Node) -> set[tuple[str, str]]:
    """Replies to mia, alerts of her association, closed questions she voted on (with open ones
    and replies she may not read in between): each source has more than a batch."""
    await node.create_association("collectif")
    await node.add_member("mia", "collectif")
    await node.add_member("zed", "collectif")
    mia, zed, group = await _ids(node, "mia", "zed", "collectif")
    expected: set[tuple[str, str]] = {("membership", node.uris.iri("/groups/collectif"))}
    async with node.sessions.begin() as session:
        parent = _object(node, "f" * 32, mia, "post", INSTANTS[0])
        session.add(parent)
        for i in range(PER_SOURCE):
            at = INSTANTS[i % len(INSTANTS)]
            reply = _object(node, f"a{i}", zed, "reply", at, in_reply_to_iri=parent.iri)
            alert = _object(node, f"b{i}", group, "alert", at)
            question = _object(
                node,
                f"c{i}",
                group,
                "proposal",
                at,
                type="Question",
                document={
                    "closed": at.isoformat(),
                    "oneOf": [{"name": "Pour", "replies": {"totalItems": 1}}],
                },
            )
            session.add_all([reply, alert, question])
            expected |= {("reply", reply.iri), ("alert", alert.iri), ("vote_closed", question.iri)}
            if i % 3 == 0:  # read-filtered and still-open rows in between
                hidden = _object(
                    node, f"d{i}", zed, "reply", at, in_reply_to_iri=parent.iri, visibility="direct"
                )
                still_open = _object(node, f"e{i}", group, "proposal", at, type="Question")
                session.add_all([hidden, still_open])
                await session.flush()
                session.add(
                    Vote(
                        question_id=still_open.id,
                        voter_id=mia,
                        choice="Pour",
                        activity_iri=f"{still_open.iri}#v",
                        created_at=at,
                    )
                )
            await session.flush()
            session.add(
                Vote(
                    question_id=question.id,
                    voter_id=mia,
                    choice="Pour",
                    activity_iri=f"{question.iri}#v",
                    created_at=at,
                )
            )
    return expected


async def _get(node: Node, token: str, path: str) -> tuple[int, dict[str, Any], str]:
    response = await node.client.get(path, headers={"Authorization": f"Bearer {token}"})
    return response.status, await response.json(content_type=None), response.headers.get("Content-Type", "")


@pytest.mark.parametrize("limit", [37, 100])
async def test_walking_every_page_returns_every_notification_once(node: Node, limit: int) -> None:
    expected = await _given_many_notifications(node)
    token = await node.token("mia", "read")
    seen: list[tuple[str, str]] = []
    order: list[tuple[str, str]] = []
    path: str | None = f"/api/notifications?limit={limit}"
    while path is not None:
        status, page, _ = await _get(node, token, path)
        assert status == 200, page
        assert len(page["items"]) <= limit
        seen += [(n["type"], n["object"] or n["actor"]) for n in page["items"]]
        order += [(n["at"], n["type"]) for n in page["items"]]
        path = page["next"].removeprefix(node.uris.origin) if page["next"] else None
    assert len(seen) == len(set(seen)), "a notification came twice"
    assert set(seen) == expected
    assert order == sorted(order, reverse=True)


async def test_a_cursor_that_is_not_ours_is_refused(node: Node) -> None:
    await node.create_association("collectif")
    await node.add_member("mia", "collectif")
    token = await node.token("mia", "read")

    def encoded(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    for bad in (
        "",
        "1733550000000000",  # the former timestamp cursor
        "not base64!",
        encoded({"at": 1}),
        encoded([1, "party", "x"]),
        encoded([-1, "reply", "x"]),
        encoded([True, "reply", "x"]),
        encoded([1, "reply", "x" * 3000]),
        "A" * 5000,
    ):
        status, body, content_type = await _get(node, token, f"/api/notifications?before={bad}")
        assert status == 400, (bad, body)
        assert content_type.startswith("application/problem+json") and body["field"] == "before"
    status, body, _ = await _get(node, token, f"/api/notifications?before={encoded([1, 'reply', 'x'])}")
    assert status == 200 and body == {"items": [], "next": None}


async def test_walking_every_page_of_memberships_returns_each_once(node: Node) -> None:
    """Memberships here and elsewhere, with refusals, many at the same instant: each page is cut in
    SQL on (since, association), and the walk returns each association once."""
    await node.create_association("collectif")
    await node.add_member("mia", "collectif")
    (mia, _) = await _ids(node, "mia", "collectif")
    expected = {(node.uris.iri("/groups/collectif"), "accepted")}
    async with node.sessions.begin() as session:
        groups = []
        for i in range(30):
            iri = f"https://peer.example/groups/g{i}"
            at = INSTANTS[i % 2]
            group = Actor(iri=iri, local=False, type="Group", handle=f"g{i}", host="peer.example")
            group.created_at = group.updated_at = at
            groups.append(group)
        session.add_all(groups)
        await session.flush()
        for i, group in enumerate(groups[:22]):  # members (active or still pending) of 22
            state = "active" if i % 3 else "pending"
            session.add(
                Membership(
                    group_id=group.id,
                    member_id=mia,
                    role="member",
                    state=state,
                    created_at=group.created_at,
                    updated_at=group.created_at,
                )
            )
            expected.add((group.iri, "accepted" if state == "active" else "pending"))
        # refusals: from 8 others (one refused twice: listed once), and from one she is in now
        for n, group in enumerate([*groups[22:], groups[22], groups[1]]):
            join = Activity(
                iri=node.uris.iri(f"/activities/join{n}"),
                actor_id=mia,
                type="Join",
                object_iri=group.iri,
                visibility="direct",
                document={},
                published=INSTANTS[0],
            )
            reject = InboxActivity(
                iri=f"{group.iri}/reject{n}",
                actor_iri=group.iri,
                type="Reject",
                object_iri=join.iri,
                signer_key_iri=f"{group.iri}#main-key",
                document={},
                state="processed",
                received_at=INSTANTS[n % 2],
            )
            session.add_all([join, reject])
            await session.flush()
            session.add(InboxItem(actor_id=mia, inbox_activity_id=reject.id, accepted=True))
            if group in groups[22:]:
                expected.add((group.iri, "refused"))
    token = await node.token("mia", "read")
    seen: list[tuple[str, str]] = []
    path: str | None = "/api/memberships?limit=4"
    while path is not None:
        status, page, _ = await _get(node, token, path)
        assert status == 200, page
        seen += [(m["association"], m["state"]) for m in page["items"]]
        path = page["next"].removeprefix(node.uris.origin) if page["next"] else None
    assert len(seen) == len({a for a, _ in seen}) == len(expected)
    assert set(seen) == expected
    status, _, content_type = await _get(node, token, "/api/memberships?before=1733550000000000")
    assert status == 400 and content_type.startswith("application/problem+json")
