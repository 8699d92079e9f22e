"""Follows waiting for an answer, in the browser (decision 88), on both engines: a member answers
their own on ``/account/follow-requests`` and chooses there whether follows wait for them; an
association's admins answer its own on ``/groups/{handle}/admin/follow-requests``. Approving sends
``Accept``, refusing ``Reject`` and forgets the follow; only the member and the association's admins
see or answer them; forms need the session's CSRF token; a request answered meanwhile is said on the
page (404), nothing changed. Turning the setting off accepts what waits, except follows from
silenced domains."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import unused_port
from sqlalchemy import func, select

from federation.types import utc_now
from server.db.models import Activity, Actor, Follow
from server.services.moderation import blocks
from tests.server.test_api import Api
from tests.server.test_web_members import HTML, _as, _get, _post
from tests.support.nodes import Node

# Peers on closed loopback ports: answers are queued and their deliveries fail, never leaving the host.
PEER_HOST = f"127.0.0.1:{unused_port()}"
SILENCED_HOST = "silenced.example"
MINE = "/account/follow-requests"
GROUP = "/groups/demo/admin/follow-requests"


def _peer(handle: str, host: str = PEER_HOST) -> str:
    return f"http://{host}/users/{handle}"


async def _follow(node: Node, follower: str, followed_handle: str, followed_type: str) -> None:
    """A pending Follow of a local actor by ``follower`` (a remote actor stored on first use)."""
    now = utc_now()
    host = follower.split("/")[2]
    handle = follower.rsplit("/", 1)[-1]
    async with node.sessions.begin() as session:
        actor = await session.scalar(select(Actor).where(Actor.iri == follower))
        if actor is None:
            actor = Actor(
                iri=follower,
                local=False,
                type="Person",
                handle=handle,
                host=host,
                name=handle.capitalize(),
                summary="",
                inbox_iri=f"{follower}/inbox",
                manually_approves_followers=False,
                discoverable=True,
                members_visibility="public",
                join_policy="approval",
                replies_policy="anyone",
                created_at=now,
                updated_at=now,
            )
            session.add(actor)
            await session.flush()
        followed = await session.scalar(
            select(Actor).where(Actor.handle == followed_handle, Actor.type == followed_type, Actor.local)
        )
        assert followed is not None
        session.add(
            Follow(
                follower_id=actor.id,
                followed_id=followed.id,
                follow_iri=f"{follower}/follows/{followed_handle}",
                state="pending",
                created_at=now,
            )
        )


async def _state(node: Node, follower: str, followed_handle: str) -> str | None:
    found = await node.scalar(
        select(Follow.state)
        .join(Actor, Actor.id == Follow.follower_id)
        .where(
            Actor.iri == follower,
            Follow.followed_id == select(Actor.id).where(Actor.handle == followed_handle).scalar_subquery(),
        )
    )
    return str(found) if found is not None else None


async def _sent(node: Node, kind: str, by_handle: str) -> list[dict[str, Any]]:
    """The ``kind`` activities (Accept, Reject, Update) the local actor ``by_handle`` published."""
    async with node.sessions() as session:
        rows = await session.scalars(
            select(Activity.document)
            .join(Actor, Actor.id == Activity.actor_id)
            .where(Activity.type == kind, Actor.handle == by_handle, Actor.local)
        )
        return list(rows)


async def _world(node: Node) -> None:
    """demo: admin alice, member mia; zoe (a peer) asked to follow mia and demo."""
    await node.create_association("demo", "Démo")
    await node.add_member("alice", "demo", role="admin")
    await node.add_member("mia", "demo")
    await _follow(node, _peer("zoe"), "mia", "Person")
    await _follow(node, _peer("zoe"), "demo", "Group")


async def test_the_member_and_the_admins_answer_follow_requests_and_no_one_else(node: Node) -> None:
    await _world(node)
    zoe = _peer("zoe")
    # anonymous readers are sent to sign in
    for path in (MINE, GROUP):
        response = await node.client.get(path, headers=HTML, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"].startswith("/login?next=")
    # a plain member sees their own request, not the association's (403, no link to it)
    await _as(node, "mia")
    page = await _get(node, MINE)
    assert "@zoe@" in page and "(1)" in page
    # the member is notified, with the way to answer; not of the association's request
    told = await _get(node, "/notifications")
    assert "Follow request" in told and f'href="{MINE}"' in told and GROUP not in told
    status, listed, _ = await Api(node).call("GET", "/api/notifications", token=await node.token("mia"))
    assert status == 200 and [
        (n["type"], n["actor"]) for n in listed["items"] if n["type"] == "follow_request"
    ] == [("follow_request", zoe)]
    refused = await _get(node, GROUP, 403)
    assert "@zoe@" not in refused
    assert "/admin/follow-requests" not in await _get(node, "/groups/demo/directory")
    # a forged form changes nothing
    forged = await node.client.post(f"{MINE}/approve", data={"csrf": "x", "follower": zoe}, headers=HTML)
    assert forged.status == 403 and await _state(node, zoe, "mia") == "pending"
    # the member approves: the follow is accepted and zoe gets an Accept of her own Follow
    response = await _post(node, MINE, f"{MINE}/approve", follower=zoe)
    assert response.status == 303 and response.headers["Location"] == f"{MINE}?done=approved"
    assert await _state(node, zoe, "mia") == "accepted"
    accepts = await _sent(node, "Accept", "mia")
    assert [a["object"]["id"] for a in accepts] == [f"{zoe}/follows/mia"] and accepts[0]["to"] == [zoe]
    page = await _get(node, f"{MINE}?done=approved")
    assert "Request approved" in page and "No follow request is waiting" in page
    assert "Follow request" not in await _get(node, "/notifications")  # answered: gone
    # answering it again (another tab): said on the page, 404, nothing more sent
    gone = await _post(node, MINE, f"{MINE}/refuse", follower=zoe)
    assert gone.status == 404 and "no longer waiting" in await gone.text()
    assert await _state(node, zoe, "mia") == "accepted" and await _sent(node, "Reject", "mia") == []
    # mia cannot answer the association's request by posting either
    forbidden = await _post(node, MINE, f"{GROUP}/approve", follower=zoe)
    assert forbidden.status == 403 and await _state(node, zoe, "demo") == "pending"
    # an admin of the association sees it in the members' tabs, and refuses it: Reject, row gone
    await _as(node, "alice")
    told = await _get(node, "/notifications")
    assert "Asks to follow the association" in told and f'href="{GROUP}"' in told
    page = await _get(node, GROUP)
    assert "@zoe@" in page and 'aria-current="page">Follow requests' in page
    assert f'href="{GROUP}"' in await _get(node, "/groups/demo/admin/members")
    response = await _post(node, GROUP, f"{GROUP}/refuse", follower=zoe)
    assert response.status == 303 and response.headers["Location"] == f"{GROUP}?done=refused"
    assert await _state(node, zoe, "demo") is None
    rejects = await _sent(node, "Reject", "demo")
    assert [r["object"]["id"] for r in rejects] == [f"{zoe}/follows/demo"]
    # an unknown association is a 404, never a list
    await _get(node, "/groups/nobody/admin/follow-requests", 404)


async def test_the_setting_holds_follows_and_turned_off_accepts_all_but_silenced_ones(node: Node) -> None:
    await _world(node)
    api = Api(node)
    token = await node.token("mia")
    zoe, yan, sly = _peer("zoe"), _peer("yan"), _peer("sly", SILENCED_HOST)
    async with node.sessions.begin() as session:
        await blocks.block_domain(session, by=None, domain=SILENCED_HOST, severity="silence", channel="cli")
    await _as(node, "mia")
    # the member holds follows: the actor document says so and followers get the Update
    page = await _get(node, MINE)
    assert re.search(r'id="by-hand-no" name="by_hand" value="no" checked', page)
    bad = await _post(node, MINE, f"{MINE}/setting", by_hand="maybe")
    assert bad.status == 400 and "Choose one of the two answers" in await bad.text()
    response = await _post(node, MINE, f"{MINE}/setting", by_hand="yes")
    assert response.status == 303 and response.headers["Location"] == f"{MINE}?done=setting_on"
    status, profile, _ = await api.call("GET", "/api/account/profile", token=token)
    assert status == 200 and profile["manuallyApprovesFollowers"] is True
    updates = await _sent(node, "Update", "mia")
    assert updates and updates[-1]["object"]["manuallyApprovesFollowers"] is True
    # two more ask while it is on; one is on a silenced domain
    await _follow(node, yan, "mia", "Person")
    await _follow(node, sly, "mia", "Person")
    page = await _get(node, MINE)
    assert "(3)" in page and re.search(r'id="by-hand-yes" name="by_hand" value="yes" checked', page)
    # turned off (here through the API): the two waiting for the setting are accepted with an
    # Accept each; the silenced domain's still waits for an answer
    status, profile, _ = await api.call(
        "PATCH", "/api/account/profile", token=token, body={"manuallyApprovesFollowers": False}
    )
    assert status == 200 and profile["manuallyApprovesFollowers"] is False and profile["update"]
    assert [await _state(node, who, "mia") for who in (zoe, yan, sly)] == ["accepted", "accepted", "pending"]
    accepted = sorted(a["object"]["actor"] for a in await _sent(node, "Accept", "mia"))
    assert accepted == sorted([zoe, yan])
    page = await _get(node, MINE)
    assert "@sly@" in page and "@zoe@" not in page and "(1)" in page
    # the association's own request is not touched by a member's setting
    assert await _state(node, zoe, "demo") == "pending"


async def test_many_requests_are_paged_oldest_first(node: Node) -> None:
    await _world(node)
    for n in range(60):
        await _follow(node, _peer(f"p{n:02d}"), "mia", "Person")
    await _as(node, "mia")
    page = await _get(node, MINE)
    assert "(61)" in page and "@zoe@" in page and "@p48@" in page and "@p49@" not in page
    found = re.search(r'href="(/account/follow-requests\?after=\d+)" rel="next"', page)
    assert found, "no link to the next requests"
    second = await _get(node, found.group(1).replace("&amp;", "&"))
    assert "@p49@" in second and "@p59@" in second and "@zoe@" not in second and 'rel="next"' not in second
    assert f'href="{MINE}"' in second
    await _get(node, f"{MINE}?after=x", 400)
    pending = await node.scalar(select(func.count()).select_from(Follow).where(Follow.state == "pending"))
    assert pending == 62
