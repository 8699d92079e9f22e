"""An association's member pages (issue 17), on both engines: its admins and moderators answer
requests to join (a refusal's reason goes with the ``Reject``, as from the CLI), change roles (admins
only; the last admin keeps the role) and remove members (a peer's member gets ``Remove``); admins
create, list and revoke invitation links and a member of this node uses one on its page; the member
directory is for members only and the account page takes a member out of it. Every form needs the
session's CSRF token; others get 403 and bad input is said next to its field, nothing stored."""

from __future__ import annotations

import html
import re
from typing import Any

from aiohttp.test_utils import unused_port
from sqlalchemy import select, update

from federation.types import utc_now
from server.db.models import Activity, Actor, AuditEntry, Invitation, Membership
from tests.server.test_web_account import _csrf, _sign_in
from tests.support.nodes import Node

HTML = {"Accept": "text/html,application/xhtml+xml", "Accept-Language": "en"}
# A peer on a closed loopback port: the Reject is queued and its delivery fails, never leaving the host.
PEER_HOST = f"127.0.0.1:{unused_port()}"
PEER = f"http://{PEER_HOST}/users/zoe"
MANAGE = "/groups/demo/admin/members"
INVITES = "/groups/demo/admin/invitations"


async def _get(node: Node, path: str, status: int = 200) -> str:
    response = await node.client.get(path, headers=HTML, allow_redirects=False)
    text = await response.text()
    assert response.status == status, (path, response.status, text[:800])
    return text


async def _post(node: Node, page: str, action: str, **fields: str) -> Any:
    csrf = _csrf(await _get(node, page))
    return await node.client.post(action, data={"csrf": csrf, **fields}, headers=HTML, allow_redirects=False)


async def _as(node: Node, username: str) -> None:
    assert (await _sign_in(node.client, username)).status == 303


async def _world(node: Node) -> None:
    """demo: admin alice, moderator mo, member mia; other: member bob; a peer's zoe asked to join
    demo, and so did local lou."""
    await node.create_association("demo", "Démo")
    await node.add_member("alice", "demo", role="admin")
    await node.add_member("mo", "demo", role="moderator")
    await node.add_member("mia", "demo")
    await node.create_association("other", "Other")
    await node.add_member("bob", "other")
    await node.add_member("lou", "other")
    now = utc_now()
    async with node.sessions.begin() as session:
        demo = await session.scalar(select(Actor).where(Actor.handle == "demo", Actor.type == "Group"))
        lou = await session.scalar(select(Actor).where(Actor.handle == "lou", Actor.type == "Person"))
        assert demo is not None and lou is not None
        zoe = Actor(
            iri=PEER,
            local=False,
            type="Person",
            handle="zoe",
            host=PEER_HOST,
            name="Zoé",
            summary="",
            inbox_iri=f"{PEER}/inbox",
            manually_approves_followers=False,
            discoverable=True,
            members_visibility="public",
            join_policy="approval",
            replies_policy="anyone",
            created_at=now,
            updated_at=now,
        )
        session.add(zoe)
        await session.flush()
        for member, join_iri in ((zoe, f"http://{PEER_HOST}/activities/join-1"), (lou, None)):
            session.add(
                Membership(
                    group_id=demo.id,
                    member_id=member.id,
                    role="member",
                    state="pending",
                    join_iri=join_iri,
                    created_at=now,
                    updated_at=now,
                )
            )


async def _state(node: Node, handle: str) -> str | None:
    found = await node.scalar(
        select(Membership.state)
        .join(Actor, Actor.id == Membership.member_id)
        .where(
            Actor.handle == handle,
            Actor.type == "Person",
            Membership.group_id == select(Actor.id).where(Actor.handle == "demo").scalar_subquery(),
        )
    )
    return str(found) if found is not None else None


async def _role(node: Node, handle: str) -> str | None:
    return await node.scalar(
        select(Membership.role)
        .join(Actor, Actor.id == Membership.member_id)
        .where(
            Actor.handle == handle,
            Actor.type == "Person",
            Membership.group_id == select(Actor.id).where(Actor.handle == "demo").scalar_subquery(),
        )
    )


async def test_admins_and_moderators_answer_requests_change_roles_and_remove_members(node: Node) -> None:
    await _world(node)
    lou, mia, alice = node.uris.person("lou"), node.uris.person("mia"), node.uris.person("alice")
    # anonymous readers are sent to sign in; a plain member gets 403, not the list
    response = await node.client.get(MANAGE, headers=HTML, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/login?next=")
    await _as(node, "mia")
    refused = await _get(node, MANAGE, 403)
    assert "Zoé" not in refused and "lou" not in refused
    assert (await _get(node, "/groups/demo")).count("/admin/members") == 0  # no link either
    # the moderator sees both requests and every member, with their roles
    await _as(node, "mo")
    page = await _get(node, MANAGE)
    assert "Zoé" in page and "@lou@" in page and "@mia@" in page and "/admin/invitations" not in page
    assert 'name="role"' not in page  # roles are the admins' to change
    # a forged form changes nothing
    forged = await node.client.post(f"{MANAGE}/approve", data={"csrf": "x", "member": lou}, headers=HTML)
    assert forged.status == 403 and await _state(node, "lou") == "pending"
    # a reason too long is said next to its field; the request still waits
    before = await node.row_counts()
    response = await _post(node, MANAGE, f"{MANAGE}/refuse", member=PEER, reason="x" * 1001)
    body = await response.text()
    assert response.status == 400 and 'aria-invalid="true"' in body and "at most 1000 characters" in body
    assert await node.row_counts() == before
    # the moderator approves lou and refuses zoé with a reason, sent in the Reject as from the CLI
    response = await _post(node, MANAGE, f"{MANAGE}/approve", member=lou)
    assert response.status == 303 and response.headers["Location"] == f"{MANAGE}?done=approved"
    assert await _state(node, "lou") == "active"
    response = await _post(
        node, MANAGE, f"{MANAGE}/refuse", member=PEER, reason="Réservé aux patients de Lyon."
    )
    assert response.status == 303 and await _state(node, "zoe") is None
    reject = await node.scalar(select(Activity.document).where(Activity.type == "Reject"))
    assert reject["object"]["id"] == f"http://{PEER_HOST}/activities/join-1"
    assert "Réservé aux patients de Lyon." in reject["content"] and reject["to"] == [PEER]
    assert "Request refused" in await _get(node, f"{MANAGE}?done=refused")
    # no pending request any more: 404, never a 500
    assert (await _post(node, MANAGE, f"{MANAGE}/approve", member=lou)).status == 404
    # a moderator may not change roles, nor remove an admin
    assert (await _post(node, MANAGE, f"{MANAGE}/role", member=mia, role="moderator")).status == 403
    assert (await _post(node, MANAGE, f"{MANAGE}/remove", member=alice)).status == 403
    assert await _role(node, "mia") == "member" and await _state(node, "alice") == "active"
    # the admin changes mia's role; a role that does not exist is said next to its field
    await _as(node, "alice")
    assert 'href="/groups/demo/admin/invitations"' in await _get(node, MANAGE)  # admins' tab
    response = await _post(node, MANAGE, f"{MANAGE}/role", member=mia, role="moderator")
    assert response.status == 303 and await _role(node, "mia") == "moderator"
    response = await _post(node, MANAGE, f"{MANAGE}/role", member=mia, role="owner")
    assert response.status == 400 and "Choose admin, moderator or member." in await response.text()
    # the last admin keeps the role, said next to the field (409)
    response = await _post(node, MANAGE, f"{MANAGE}/role", member=alice, role="member")
    text = await response.text()
    assert (
        response.status == 409 and "The last admin keeps the role" in text and 'aria-invalid="true"' in text
    )
    assert await _role(node, "alice") == "admin"
    # the admin removes lou (a local member: nothing to send)
    response = await _post(node, MANAGE, f"{MANAGE}/remove", member=lou)
    assert response.status == 303 and await _state(node, "lou") is None
    assert (await _post(node, MANAGE, f"{MANAGE}/remove", member="not an iri")).status == 404
    assert await _get(node, "/groups/nothing/admin/members", 404)
    async with node.sessions() as session:
        rows = (await session.execute(select(AuditEntry.action, AuditEntry.channel))).all()
    ours = [(a, c) for a, c in rows if a.startswith("member.") and a != "member.add"]
    assert ours == [
        ("member.approve", "web"),
        ("member.refuse", "web"),
        ("member.role", "web"),
        ("member.remove", "web"),
    ]


def _link(page: str) -> str:
    match = re.search(r'id="invitation-link" readonly value="([^"]+)"', page)
    assert match, "no link on the page"
    return html.unescape(match.group(1))


async def test_admins_manage_invitation_links_and_a_member_of_this_node_joins_with_one(node: Node) -> None:
    await _world(node)
    await node.configure("demo", join_policy="closed")
    # moderators and members do not see nor create invitations
    for who in ("mo", "mia"):
        await _as(node, who)
        await _get(node, INVITES, 403)
        assert (await _post(node, "/account", INVITES, days="7", uses="1")).status == 403
    await _as(node, "alice")
    # bad numbers are said next to their fields, kept as typed, and nothing is stored
    before = await node.row_counts()
    for days, uses, invalid in (
        ("0", "1", "days"),
        ("91", "1", "days"),
        ("²", "1", "days"),
        ("7", "abc", "uses"),
        ("7", "1001", "uses"),
        ("", "", "days"),
    ):
        response = await _post(node, INVITES, INVITES, days=days, uses=uses)
        text = await response.text()
        assert response.status == 400 and f'id="{invalid}"' in text, (days, uses)
        assert re.search(rf'id="{invalid}"[^>]*aria-invalid="true"', text), (days, uses)
    assert await node.row_counts() == before
    # created: the link is shown once, then only its state
    response = await _post(node, INVITES, INVITES, days="3", uses="1")
    created = await response.text()
    assert response.status == 200 and "Copy the link now" in created
    link = _link(created)
    token = link.rsplit("/", 1)[1]
    assert link == node.uris.iri(f"/invite/{token}")
    listing = await _get(node, INVITES)
    assert token not in listing and "0 / 1" in listing and "Active" in listing
    # bob, of another association, opens the link: a page naming demo and a button (no use spent)
    await _as(node, "bob")
    page = await _get(node, f"/invite/{token}")
    assert "Invitation to join Démo" in page and f'action="/invite/{token}"' in page
    assert await node.scalar(select(Invitation.uses)) == 0
    # a forged form does not join
    forged = await node.client.post(f"/invite/{token}", data={"csrf": "x"}, headers=HTML)
    assert forged.status == 403 and await _state(node, "bob") is None
    response = await _post(node, f"/invite/{token}", f"/invite/{token}")
    assert response.status == 303 and response.headers["Location"] == "/groups/demo/directory?done=joined"
    assert await _state(node, "bob") == "active"
    welcome = await _get(node, "/groups/demo/directory?done=joined")
    assert "you are now a member of Démo" in welcome and "@bob@" in welcome
    assert "You are already a member" in await _get(node, f"/invite/{token}")
    # the link is used up for lou: a clear page, 410, and lou is not in
    await _as(node, "lou")
    used_up = await _get(node, f"/invite/{token}", 410)
    assert "already been used as many times as it allows" in used_up and 'action="/invite/' not in used_up
    assert (await _post(node, "/account", f"/invite/{token}")).status == 410
    assert await _state(node, "lou") == "pending"
    # expired and revoked links, each said as such; an unknown one is not found
    await _as(node, "alice")
    expired = _link(await (await _post(node, INVITES, INVITES, days="1", uses="5")).text())
    async with node.sessions.begin() as session:
        await session.execute(update(Invitation).where(Invitation.uses == 0).values(expires_at=utc_now()))
    revoked = _link(await (await _post(node, INVITES, INVITES, days="1", uses="5")).text())
    last = await node.scalar(select(Invitation.id).order_by(Invitation.id.desc()))
    response = await _post(node, INVITES, f"{INVITES}/{last}/revoke")
    assert response.status == 303 and "Invitation revoked" in await _get(node, response.headers["Location"])
    assert (await _post(node, INVITES, f"{INVITES}/999999/revoke")).status == 404
    assert (await _post(node, INVITES, f"{INVITES}/x1/revoke")).status == 404
    await _as(node, "lou")
    assert "has expired" in await _get(node, "/invite/" + expired.rsplit("/", 1)[1], 410)
    assert "was revoked" in await _get(node, "/invite/" + revoked.rsplit("/", 1)[1], 410)
    await _get(node, "/invite/" + "A" * 43, 404)
    await _get(node, "/invite/short", 404)
    # signed out, the link leads to the sign-in page and back
    await node.client.post("/logout", data={"csrf": _csrf(await _get(node, "/account"))}, headers=HTML)
    response = await node.client.get(f"/invite/{token}", headers=HTML, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == f"/login?next=/invite/{token}"


async def test_the_directory_is_for_members_and_the_account_page_takes_one_out(node: Node) -> None:
    await _world(node)
    # bob is no member: 403, and no name leaks
    await _as(node, "bob")
    stranger = await _get(node, "/groups/demo/directory", 403)
    assert "@mia@" not in stranger and "@alice@" not in stranger
    # mia reads it; the association page links to it
    await _as(node, "mia")
    page = await _get(node, "/groups/demo/directory")
    assert all(f"@{name}@" in page for name in ("alice", "mo", "mia")) and "@lou@" not in page
    assert 'href="/groups/demo/directory"' in await _get(node, "/groups/demo")
    # mia leaves the directory from her account page (CSRF checked, bad values refused)
    assert (
        await node.client.post("/account/directory", data={"csrf": "x", "directory": "hidden"}, headers=HTML)
    ).status == 403
    assert (await _post(node, "/account", "/account/directory", directory="maybe")).status == 400
    response = await _post(node, "/account", "/account/directory", directory="hidden")
    assert response.status == 303 and response.headers["Location"] == "/account?done=directory"
    account = await _get(node, "/account?done=directory")
    assert "Directory setting saved." in account and re.search(r'id="directory-hidden"[^>]*checked', account)
    hidden = await _get(node, "/groups/demo/directory")
    assert "@mia@" not in hidden and "You are not in it." in hidden and "@mo@" in hidden
    # other members do not see her; her admins still do, on the members page, marked as such
    await _as(node, "mo")
    assert "@mia@" not in await _get(node, "/groups/demo/directory")
    assert "Not in the member directory" in await _get(node, MANAGE)
    # she comes back
    await _as(node, "mia")
    await _post(node, "/account", "/account/directory", directory="listed")
    assert "@mia@" in await _get(node, "/groups/demo/directory")
    # an association that hides its members list keeps the directory to its admins
    await node.configure("demo", members_visibility="hidden")
    await _get(node, "/groups/demo/directory", 403)
    await _get(node, "/groups/demo/directory?before=x", 400)
    await _as(node, "alice")
    await _get(node, "/groups/demo/directory")
    await _get(node, "/groups/nothing/directory", 404)
