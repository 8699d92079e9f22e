"""A member reads (issue 13): ben, on node B, follows alpha (on A) and gamma (on C) and joins
alpha. His timeline shows their content in publication order and in its current state; his
notifications show the membership decision, a reply to him and a closed vote; his memberships
say where he stands; ``/api/objects`` answers for what B holds from peers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from federation.types import AS_PUBLIC
from server.db.models import Follow, Membership, RemoteObject
from server.services.content import polls
from server.services.membership import following
from tests.support.nodes import Node, running_node, wait_until


async def _api(node: Node, token: str, path: str, status: int = 200) -> Any:
    response = await node.client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status == status, (path, response.status, await response.text())
    return await response.json(content_type=None)


async def _post(node: Node, token: str, path: str, body: dict[str, Any]) -> Any:
    response = await node.client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status in (200, 201, 202), (path, response.status, await response.text())
    return await response.json(content_type=None)


async def _row(node: Node, iri: str) -> RemoteObject | None:
    async with node.sessions() as session:
        return await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))


async def _has(node: Node, iri: str, check: Callable[[dict[str, Any]], bool] = lambda d: True) -> bool:
    row = await _row(node, iri)
    return row is not None and row.deleted_at is None and check(row.document)


async def _gone(node: Node, iri: str) -> bool:
    row = await _row(node, iri)
    return row is not None and row.deleted_at is not None


async def _accepted_follows(node: Node, count: int) -> bool:
    rows = await node.scalar(select(Follow.id).where(Follow.state == "accepted").offset(count - 1))
    return rows is not None


async def test_a_member_reads_timeline_notifications_and_memberships(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    async with (
        running_node(tmp_path / "a", await new_database(0)) as a,
        running_node(tmp_path / "b", await new_database(1)) as b,
        running_node(tmp_path / "c", await new_database(2)) as c,
    ):
        alpha = await a.create_association("alpha", "Alpha")
        await a.configure("alpha", join_policy="open")
        await a.add_member("alice", "alpha", role="admin")
        gamma = await c.create_association("gamma", "Gamma")
        await c.add_member("carl", "gamma", role="admin")
        await b.create_association("beta", "Beta")
        ben_iri = await b.add_member("ben", "beta")
        alice, carl, ben = await a.token("alice"), await c.token("carl"), await b.token("ben")

        # ben follows alpha and gamma, joins alpha (open: accepted at once); gamma follows ben
        for target in (alpha, gamma):
            await following.follow(b.fed, local_name="ben", target_iri=target)
        await following.follow(c.fed, local_name="gamma", target_iri=ben_iri)
        await wait_until(lambda: _accepted_follows(b, 2), what="ben's follows accepted")
        await wait_until(lambda: _accepted_follows(c, 1), what="gamma follows ben")
        await _post(b, ben, "/api/memberships", {"association": alpha})
        await wait_until(lambda: _joined(b), what="ben's membership accepted")

        # alpha and gamma publish; alpha edits, retracts, deletes
        alert = (await _post(a, alice, "/api/associations/alpha/alerts", _alert()))["id"]
        resource = (
            await _post(a, alice, "/api/associations/alpha/resources", {"name": "Guide", "content": "v1"})
        )["id"]
        post = (await _post(c, carl, "/api/associations/gamma/posts", {"content": "Bonjour de Gamma"}))["id"]
        doomed = (await _post(a, alice, "/api/associations/alpha/posts", {"content": "à effacer"}))["id"]
        await asyncio.sleep(1.1)  # published dates travel with second precision: the proposal is newer
        proposal = (await _post(a, alice, "/api/associations/alpha/proposals", _proposal()))["id"]
        for iri in (alert, resource, post, doomed, proposal):
            await wait_until(lambda iri=iri: _has(b, iri), what=f"{iri} reaches B")
        edit = {"id": resource, "content": "v2"}
        await a.post_outbox("/groups/alpha", alice, {"type": "Update", "object": edit})
        await a.post_outbox(
            "/groups/alpha", alice, {"type": "Update", "object": {"id": alert, "alertStatus": "retracted"}}
        )
        await a.post_outbox("/groups/alpha", alice, {"type": "Delete", "object": doomed})
        await wait_until(lambda: _has(b, resource, lambda d: "v2" in d["content"]), what="the edit reaches B")
        await wait_until(lambda: _has(b, alert, lambda d: d["alertStatus"] == "retracted"), what="retraction")
        await wait_until(lambda: _gone(b, doomed), what="the deletion reaches B")

        # ben votes, alpha closes the vote; ben posts, carl replies to him
        await _post(b, ben, "/api/votes", {"question": proposal, "choice": "Pour"})
        question_id = await a.scalar(select(RemoteObject.id).where(RemoteObject.iri == proposal))
        await wait_until(lambda: _has(a, proposal, lambda d: d.get("votersCount") == 1), what="ben's vote")
        await polls.tally(a.fed, int(question_id), close=True)
        await wait_until(lambda: _has(b, proposal, lambda d: bool(d.get("closed"))), what="the close")
        mine = await b.post_outbox(
            "/users/ben", ben, {"to": [AS_PUBLIC], "type": "Note", "content": "<p>Merci !</p>"}
        )
        await wait_until(lambda: _has(c, mine["object"]), what="ben's note reaches gamma")
        answer = {"inReplyTo": mine["object"], "content": "De rien"}
        reply = await _post(c, carl, "/api/users/carl/replies", answer)
        await wait_until(lambda: _has(b, reply["id"]), what="carl's reply reaches B")

        # the timeline: newest first, current state, deleted content left out; ?kind= filters
        page = await _api(b, ben, "/api/timeline")
        ids = [item["id"] for item in page["items"]]
        assert ids[0] == proposal and set(ids) == {proposal, post, resource, alert}, ids
        published = [item["published"] for item in page["items"]]
        assert published == sorted(published, reverse=True)
        by_id = {item["id"]: item for item in page["items"]}
        assert by_id[alert]["alertStatus"] == "retracted" and by_id[resource]["content"] == "v2"
        assert by_id[proposal]["closed"] is True
        assert by_id[proposal]["options"][0] == {"name": "Pour", "votes": 1}
        assert [i["id"] for i in (await _api(b, ben, "/api/timeline?kind=alert"))["items"]] == [alert]
        first = await _api(b, ben, "/api/timeline?limit=2")
        rest = await _api(b, ben, first["next"].removeprefix(b.uris.origin))
        assert [i["id"] for i in first["items"] + rest["items"]] == ids and rest["next"] is None

        # notifications: the membership decision, the reply, the closed vote (and alpha's alert)
        notes = (await _api(b, ben, "/api/notifications"))["items"]
        kinds = {(n["type"], n["object"] or n["actor"]) for n in notes}
        assert {("membership", alpha), ("reply", reply["id"]), ("vote_closed", proposal)} <= kinds, kinds
        assert next(n for n in notes if n["type"] == "vote_closed")["result"] == {"Pour": 1, "Contre": 0}
        assert not any(n["read"] for n in notes)
        read = await b.client.post("/api/notifications/read", headers={"Authorization": f"Bearer {ben}"})
        assert read.status == 204
        assert all(n["read"] for n in (await _api(b, ben, "/api/notifications"))["items"])

        # memberships, and objects held from peers
        held = {m["association"]: m["state"] for m in (await _api(b, ben, "/api/memberships"))["items"]}
        assert held[alpha] == "accepted", held
        seen = await _api(b, ben, f"/api/objects?iri={resource}")
        assert seen["content"] == "v2" and seen["kind"] == "resource"
        await _api(b, ben, f"/api/objects?iri={doomed}", status=410)
        await _api(b, "", "/api/timeline", status=401)


async def _joined(node: Node) -> bool:
    joined = select(Membership.id).where(Membership.state == "active", Membership.join_iri.isnot(None))
    return await node.scalar(joined) is not None


def _alert() -> dict[str, Any]:
    return {"name": "Pénurie", "content": "Levothyrox 50", "severity": "warning", "category": "shortage"}


def _proposal() -> dict[str, Any]:
    return {"name": "Motion", "oneOf": ["Pour", "Contre"], "eligibility": "anyone"}
