"""An association's member pages (issue 17), on both engines: its admins and moderators answer
requests to join (a refusal's reason goes with the ``Reject``, as from the CLI), change roles (admins
only; the last admin keeps the role) and remove members (a peer's member gets ``Remove``); admins
create, list and revoke invitation links and a member of this node uses one on its page; the member
directory is for members only and the account page takes a member out of it. Every form needs the
session's CSRF token; others get 403 and bad input is said next to its field, nothing stored."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from aiohttp.test_utils import unused_port
from sqlalchemy import select, update

from federation.types import utc_now
from server.db.models import Activity, Actor, AuditEntry, Invitation, Membership
from tests.server.test_api import Api, _alert
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
    response = await _post(node, MANAGE, f"{MANAGE}/approve", member=lou)
    assert response.status == 404 and "This request is no longer waiting" in await response.text()
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
    response = await _post(node, MANAGE, f"{MANAGE}/remove", member=lou, confirm="yes")
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


async def _suspended(node: Node, handle: str) -> Any:
    return await node.scalar(
        select(Membership.suspended_at)
        .join(Actor, Actor.id == Membership.member_id)
        .where(Actor.handle == handle, Actor.type == "Person")
        .where(Membership.group_id == select(Actor.id).where(Actor.handle == "demo").scalar_subquery())
    )


async def test_suspending_and_removing_are_confirmed_and_refusals_are_said_on_the_page(node: Node) -> None:
    await _world(node)
    mia, alice = node.uris.person("mia"), node.uris.person("alice")
    alert = await Api(node).create("demo", "alerts", await node.token("alice"), _alert())
    await _as(node, "mo")
    assert f'action="{MANAGE}/suspend"' in await _get(node, MANAGE)
    confirm = await _get(node, f"{MANAGE}/suspend?member={quote(mia, safe='')}")
    assert re.search(r'type="checkbox" id="confirm" name="confirm" value="yes" required', confirm)
    assert 'name="until"' in confirm and "@mia@" in confirm
    french = await node.client.get(
        f"{MANAGE}/suspend?member={quote(mia, safe='')}", headers={**HTML, "Accept-Language": "fr"}
    )
    assert "Oui, suspendre" in await french.text()
    # the box not ticked, or a date gone: said on the confirmation page, nothing changed
    response = await _post(node, MANAGE, f"{MANAGE}/suspend", member=mia, reason="Calme")
    assert response.status == 400 and "Tick the box to confirm" in await response.text()
    response = await _post(
        node, MANAGE, f"{MANAGE}/suspend", member=mia, until="2001-01-01", reason="Calme", confirm="yes"
    )
    text = await response.text()
    assert response.status == 400 and re.search(r'id="until"[^>]*aria-invalid="true"', text)
    assert "Calme" in text and await _suspended(node, "mia") is None
    until = (utc_now() + timedelta(days=2)).date().isoformat()
    response = await _post(
        node, MANAGE, f"{MANAGE}/suspend", member=mia, until=until, reason="Calme", confirm="yes"
    )
    assert response.status == 303 and response.headers["Location"] == f"{MANAGE}?done=suspended"
    page = await _get(node, f"{MANAGE}?done=suspended")
    assert "Member suspended." in page and "Lift the suspension" in page and "Calme" in page
    # mia still reads the alert, but her reply is refused with a message of its own (403)
    await _as(node, "mia")
    where = alert["id"].removeprefix(node.uris.origin)
    response = await _post(node, where, f"{where}/reply", content="Non")
    assert response.status == 403 and "A moderator suspended you in this association" in await response.text()
    assert "Calme" in await _get(node, "/notifications")
    # lifted; lifting again is said on the page (409)
    await _as(node, "mo")
    response = await _post(node, MANAGE, f"{MANAGE}/unsuspend", member=mia)
    assert response.status == 303 and await _suspended(node, "mia") is None
    response = await _post(node, MANAGE, f"{MANAGE}/unsuspend", member=mia)
    assert response.status == 409 and "This member is not suspended" in await response.text()
    # a moderator does not get to confirm removing an admin: the page says why (403)
    refused = await _get(node, f"{MANAGE}/remove?member={quote(alice, safe='')}", 403)
    assert "only an admin acts on an admin" in refused and 'id="active-title"' in refused
    # removal is confirmed as well; then removing her again says she left (404), nothing else
    response = await _post(node, MANAGE, f"{MANAGE}/remove", member=mia)
    assert response.status == 400 and await _state(node, "mia") == "active"
    response = await _post(node, MANAGE, f"{MANAGE}/remove", member=mia, confirm="yes")
    assert response.status == 303 and await _state(node, "mia") is None
    before = await node.row_counts()
    response = await _post(node, MANAGE, f"{MANAGE}/remove", member=mia, confirm="yes")
    text = await response.text()
    assert response.status == 404 and "is not a member any more" in text and 'id="active-title"' in text
    assert await node.row_counts() == before
    async with node.sessions() as session:
        rows = (await session.execute(select(AuditEntry.action, AuditEntry.channel))).all()
    assert [(a, c) for a, c in rows if a in ("member.suspend", "member.unsuspend")] == [
        ("member.suspend", "web"),
        ("member.unsuspend", "web"),
    ]


async def _many_members(node: Node, count: int, *, state: str = "active", prefix: str = "m") -> None:
    now = utc_now()
    async with node.sessions.begin() as session:
        demo = await session.scalar(select(Actor.id).where(Actor.handle == "demo", Actor.type == "Group"))
        for n in range(count):
            iri = f"http://{PEER_HOST}/users/{prefix}{n:03d}"
            person = Actor(
                iri=iri, local=False, type="Person", handle=f"{prefix}{n:03d}", host=PEER_HOST,
                inbox_iri=f"{iri}/inbox", created_at=now, updated_at=now,
            )  # fmt: skip
            session.add(person)
            await session.flush()
            session.add(
                Membership(
                    group_id=demo, member_id=person.id, role="member", state=state,
                    created_at=now, updated_at=now,
                )
            )  # fmt: skip


def _handles(page: str) -> list[str]:
    return re.findall(r'<span class="handle">@(m\d{3}|alice|mo|mia)@', page)


def _requests(page: str) -> list[str]:
    """The handles in the requests to join of a members page."""
    pending = page.split('id="active-title"')[0]
    return re.findall(r'<span class="handle">@(r\d{3}|zoe|lou)@', pending)


def _labelled(page: str, label: str) -> str:
    match = re.search(rf'<a href="([^"]+)">{label}</a>', page)
    assert match, f"no {label} link"
    return html.unescape(match.group(1))


def _rel(page: str, rel: str) -> str:
    match = re.search(rf'<a href="([^"]+)" rel="{rel}"', page)
    assert match, f"no {rel} link"
    return html.unescape(match.group(1))


async def test_the_members_page_and_the_directory_page_through_many_members(node: Node) -> None:
    await _world(node)
    await _many_members(node, 60)  # 63 members: two pages of 50
    for who, path in (("mo", MANAGE), ("mia", "/groups/demo/directory")):
        await _as(node, who)
        first = await _get(node, path)
        assert len(_handles(first)) == 50 and _handles(first)[0] == "m059" and 'rel="prev"' not in first
        second = await _get(node, _rel(first, "next"))
        assert len(_handles(second)) == 13 and _handles(second)[-1] == "alice" and 'rel="next"' not in second
        assert _handles(await _get(node, _rel(second, "prev"))) == _handles(first)
        assert not set(_handles(first)) & set(_handles(second))
    await _as(node, "mo")
    assert "(63)" in await _get(node, MANAGE)
    await _get(node, "/groups/demo/directory?after=x", 400)


async def test_the_members_page_pages_requests_to_join_and_keeps_the_members_page(node: Node) -> None:
    await _world(node)
    await _many_members(node, 60)
    await _many_members(node, 60, state="pending", prefix="r")  # 62 requests: two pages of 50
    await _as(node, "mo")
    top = await _get(node, MANAGE)
    assert "Requests to join (62)" in top
    assert len(_requests(top)) == 50 and _requests(top)[0] == "r059" and "Newer requests" not in top
    members_second = await _get(node, _rel(top, "next"))  # the members' second page...
    second = await _get(node, _labelled(members_second, "Older requests"))  # ...then the requests'
    assert _requests(second) == [f"r{n:03d}" for n in range(9, -1, -1)] + ["lou", "zoe"]
    assert "Older requests" not in second
    assert _handles(second) == _handles(members_second)  # the members list stayed where it was
    assert not set(_requests(top)) & set(_requests(second))
    assert _requests(await _get(node, _labelled(second, "Newer requests"))) == _requests(top)
    # the approve form still answers from a later page, and the count follows
    response = await _post(node, MANAGE, f"{MANAGE}/approve", member=f"http://{PEER_HOST}/users/r000")
    assert response.status == 303 and "Requests to join (61)" in await _get(node, MANAGE)
    await _get(node, f"{MANAGE}?requests_before=x", 400)
