"""Suspended members (issue 17, decision 76), through the JSON API, the C2S outbox and the services,
on both engines: admins and moderators suspend a member (a moderator never an admin, nobody
themselves) for a time or until lifted; the suspended member reads what members read but neither
publishes, replies, votes, co-signs, proposes drafts nor invites in that association (403
``member_suspended``, one check for every channel), while acting elsewhere as before; the member is
notified of the suspension and of its lifting, by a moderator or when its end passes (a job). A
join by invitation is notified to the association's admins, a refusal here to the person."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from server.db.models import Actor, AuditEntry, Job, Membership
from server.services.membership import suspension
from tests.server.test_api import Api, _alert, _people, _proposal
from tests.support.nodes import Node

SUSPENSION = "/api/associations/demo/members/suspension"


async def _notifications(api: Api, token: str, kind: str) -> list[dict[str, Any]]:
    status, page, _ = await api.call("GET", "/api/notifications", token=token)
    assert status == 200, page
    return [n for n in page["items"] if n["type"] == kind]


async def _refused(api: Api, token: str, method: str, path: str, body: Any) -> None:
    status, answer, _ = await api.call(method, path, token=token, body=body)
    assert (status, answer.get("code")) == (403, "member_suspended"), (path, status, answer)


async def test_a_suspended_member_reads_on_and_acts_in_nothing_through_the_api_and_c2s(node: Node) -> None:
    api, t = Api(node), await _people(node)
    mia, demo = node.uris.person("mia"), node.uris.group("demo")
    alert = await api.create("demo", "alerts", t["alice"], _alert())
    proposal = await api.create("demo", "proposals", t["alice"], _proposal(eligibility="members"))
    secret = await api.create(
        "demo", "posts", t["alice"], {"content": "<p>Entre nous</p>", "visibility": "members"}
    )
    elsewhere = await api.create("other", "alerts", t["olga"], _alert())
    await node.add_member("mia", "other")
    until = (node.fed.node.clock() + timedelta(days=3)).date().isoformat()
    # the moderator suspends mia with an end date and a reason
    status, done, _ = await api.call(
        "POST", SUSPENSION, token=t["mo"], body={"member": mia, "until": until, "reason": "Propos blessants"}
    )
    assert status == 200 and (done["state"], done["reason"]) == ("suspended", "Propos blessants")
    assert done["until"].startswith(until)
    # she still reads what members read
    assert (await api.get(secret["id"], token=t["mia"]))[0] == 200
    # but replies, votes, posts into demo (API and C2S) and proposes drafts nowhere in demo
    reply = {"inReplyTo": alert["id"], "content": "<p>Non</p>"}
    await _refused(api, t["mia"], "POST", "/api/users/mia/replies", reply)
    await _refused(api, t["mia"], "POST", "/api/votes", {"question": proposal["id"], "choice": "Oui"})
    draft = {"kind": "resource", "name": "Guide", "content": "<p>x</p>"}
    await _refused(api, t["mia"], "POST", "/api/associations/demo/drafts", draft)
    before = await node.row_counts()
    outbox = await node.client.post(
        "/users/mia/outbox",
        json={"type": "Note", "content": "<p>Coucou</p>", "audience": demo},
        headers={"Authorization": f"Bearer {t['mia']}"},
    )
    assert outbox.status == 403 and (await outbox.json(content_type=None))["code"] == "member_suspended"
    assert await node.row_counts() == before
    # in another association she acts as before
    there = {"inReplyTo": elsewhere["id"], "content": "<p>Oui</p>"}
    status, _, _ = await api.call("POST", "/api/users/mia/replies", token=t["mia"], body=there)
    assert status == 201
    # she is told, with the reason and the end
    [told] = await _notifications(api, t["mia"], "suspension")
    assert (told["state"], told["message"], told["actor"]) == ("suspended", "Propos blessants", demo)
    assert told["until"].startswith(until)
    # the rules: a moderator never suspends an admin, nobody themselves, only members, dates ahead
    for token, body, expected in (
        (t["mo"], {"member": node.uris.person("alice")}, (403, "forbidden")),
        (t["mo"], {"member": node.uris.person("mo")}, (400, "invalid_input")),
        (t["mo"], {"member": node.uris.person("zed")}, (404, "not_found")),
        (t["mo"], {"member": mia, "until": "2001-01-01"}, (400, "invalid_input")),
        (t["mo"], {"member": mia, "until": "demain"}, (400, "invalid_input")),
        (t["mia"], {"member": node.uris.person("mo")}, (403, "forbidden")),
        (t["olga"], {"member": mia}, (403, "forbidden")),
    ):
        status, answer, _ = await api.call("POST", SUSPENSION, token=token, body=body)
        assert (status, answer["code"]) == expected, (body, answer)
    # lifted by the moderator: she acts again, and is told; lifting twice is a conflict
    status, lifted, _ = await api.call("DELETE", SUSPENSION, token=t["mo"], params={"member": mia})
    assert (status, lifted["state"]) == (200, "active")
    status, again, _ = await api.call("DELETE", SUSPENSION, token=t["mo"], params={"member": mia})
    assert (status, again["code"]) == (409, "conflict")
    status, _, _ = await api.call("POST", "/api/users/mia/replies", token=t["mia"], body=reply)
    assert status == 201
    assert [n["state"] for n in await _notifications(api, t["mia"], "suspension")] == ["lifted", "suspended"]
    async with node.sessions() as session:
        audited = (
            await session.execute(
                select(AuditEntry.action, AuditEntry.channel, AuditEntry.target).order_by(AuditEntry.id)
            )
        ).all()
    assert [(a, c) for a, c, target in audited if a.startswith("member.") and target == mia][-2:] == [
        ("member.suspend", "api"),
        ("member.unsuspend", "api"),
    ]


async def test_a_suspended_member_neither_likes_nor_joins_events_and_an_organiser_decides_nothing(
    node: Node,
) -> None:
    api, t = Api(node), await _people(node)
    mia, mo = node.uris.person("mia"), node.uris.person("mo")
    alert = await api.create("demo", "alerts", t["alice"], _alert())
    elsewhere = await api.create("other", "alerts", t["olga"], _alert())
    start = node.fed.node.clock() + timedelta(days=7)
    event = {
        "name": "Table ronde", "content": "<p>Avec l'ARS.</p>", "startTime": start.isoformat(),
        "endTime": (start + timedelta(hours=2)).isoformat(), "timezone": "Europe/Paris",
        "joinMode": "restricted",
    }  # fmt: skip
    status, created, _ = await api.call("POST", "/api/associations/demo/events", token=t["alice"], body=event)
    assert status == 201, created
    join = {"event": created["id"]}
    status, asked, _ = await api.call("POST", "/api/events/participations", token=t["zed"], body=join)
    assert (status, asked["state"]) == (202, "pending")
    for who in (mia, mo):
        assert (await api.call("POST", SUSPENSION, token=t["alice"], body={"member": who}))[0] == 200
    before = await node.row_counts()
    # liking in the association, through C2S, is acting in it; so is taking part in its event
    liked = await node.client.post(
        "/users/mia/outbox", json={"type": "Like", "object": alert["id"]},
        headers={"Authorization": f"Bearer {t['mia']}"},
    )  # fmt: skip
    assert liked.status == 403 and (await liked.json(content_type=None))["code"] == "member_suspended"
    await _refused(api, t["mia"], "POST", "/api/events/participations", join)
    # the suspended moderator decides no participation
    decision = {"event": created["id"], "participant": node.uris.person("zed"), "accept": True}
    await _refused(api, t["mo"], "POST", "/api/associations/demo/events/participants", decision)
    assert await node.row_counts() == before
    # elsewhere mia likes as before; lifted, she joins
    assert (await node.post_outbox("/users/mia", t["mia"], {"type": "Like", "object": elsewhere["id"]}))["id"]
    assert (await api.call("DELETE", SUSPENSION, token=t["alice"], params={"member": mia}))[0] == 200
    status, joined, _ = await api.call("POST", "/api/events/participations", token=t["mia"], body=join)
    assert (status, joined["state"]) == (202, "pending")


async def test_a_suspended_admin_publishes_cosigns_invites_and_manages_nothing(node: Node) -> None:
    api, t = Api(node), await _people(node)
    await node.add_member("ann", "demo", role="admin")
    ann, alice = await node.token("ann"), node.uris.person("alice")
    proposal = await api.create("other", "proposals", t["olga"], _proposal())
    status, _, _ = await api.call("POST", SUSPENSION, token=ann, body={"member": alice})
    assert status == 200
    await _refused(api, t["alice"], "POST", "/api/associations/demo/alerts", _alert())
    await _refused(
        api, t["alice"], "POST", "/api/associations/demo/endorsements", {"proposal": proposal["id"]}
    )
    await _refused(api, t["alice"], "POST", "/api/associations/demo/invitations", {})
    await _refused(api, t["alice"], "POST", SUSPENSION, {"member": node.uris.person("mia")})
    outbox = await node.client.post(
        "/groups/demo/outbox",
        json={"type": "Note", "content": "<p>Au nom de l'association</p>"},
        headers={"Authorization": f"Bearer {t['alice']}"},
    )
    assert outbox.status == 403 and (await outbox.json(content_type=None))["code"] == "member_suspended"
    # the other admin still acts
    assert (await api.create("demo", "alerts", ann, _alert()))["id"]


async def test_a_suspension_ends_by_itself_and_the_member_is_told(node: Node) -> None:
    api, t = Api(node), await _people(node)
    mia = node.uris.person("mia")
    alert = await api.create("demo", "alerts", t["alice"], _alert())
    async with node.sessions() as session:
        demo = await session.scalar(select(Actor).where(Actor.handle == "demo", Actor.type == "Group"))
        mo = await session.scalar(select(Actor).where(Actor.handle == "mo", Actor.type == "Person"))
    assert demo is not None and mo is not None
    end = node.fed.node.clock() + timedelta(hours=2)
    done = await suspension.suspend(node.fed, demo, mia, by=mo, until=end, reason="Pause")
    # a job waits for its end
    async with node.sessions() as session:
        job = (
            await session.execute(
                select(Job.payload, Job.run_at).where(Job.kind == suspension.LIFT_SUSPENSION)
            )
        ).one()
        row = await session.scalar(select(Membership).where(Membership.suspended_at.is_not(None)))
    assert row is not None and job.run_at == end and job.payload["membership_id"] == row.id
    wait = await suspension.lift_expired(node.fed, row.id, job.payload["since"])
    assert wait is not None and timedelta(hours=1) < wait <= timedelta(hours=2)
    reply = {"inReplyTo": alert["id"], "content": "<p>Merci</p>"}
    await _refused(api, t["mia"], "POST", "/api/users/mia/replies", reply)
    # its end passes: she acts again at once, and the job records the lifting (once)
    async with node.sessions.begin() as session:
        await session.execute(
            update(Membership).where(Membership.id == row.id).values(suspended_until=done.since)
        )
    status, _, _ = await api.call("POST", "/api/users/mia/replies", token=t["mia"], body=reply)
    assert status == 201
    assert await suspension.lift_expired(node.fed, row.id, job.payload["since"]) is None
    assert await suspension.lift_expired(node.fed, row.id, job.payload["since"]) is None
    async with node.sessions() as session:
        lifted = (
            await session.execute(
                select(AuditEntry.detail, AuditEntry.by_actor_id).where(
                    AuditEntry.action == "member.unsuspend"
                )
            )
        ).all()
        cleared = await session.get(Membership, row.id)
    assert [(d["expired"], by) for d, by in lifted] == [(True, None)]
    assert cleared is not None and cleared.suspended_at is None and cleared.state == "active"
    assert [n["state"] for n in await _notifications(api, t["mia"], "suspension")] == ["lifted", "suspended"]


async def test_admins_hear_of_joins_by_invitation_and_people_of_refusals_here(node: Node) -> None:
    api, t = Api(node), await _people(node)
    created = await api.call("POST", "/api/associations/demo/invitations", token=t["alice"], body={})
    accept = {"token": created[1]["token"]}
    status, _, _ = await api.call("POST", "/api/invitations/accept", token=t["zed"], body=accept)
    assert status == 200
    [joined] = await _notifications(api, t["alice"], "member_joined")
    assert (joined["actor"], joined["association"]) == (node.uris.person("zed"), node.uris.group("demo"))
    assert await _notifications(api, t["mo"], "member_joined") == []  # admins only
    # a request to join here refused: the person is told
    await node.configure("other", join_policy="approval")
    asked = {"association": node.uris.group("other")}
    status, _, _ = await api.call("POST", "/api/memberships", token=t["mia"], body=asked)
    assert status == 202
    status, _, _ = await api.call(
        "POST", "/api/associations/other/members", token=t["olga"],
        body={"member": node.uris.person("mia"), "decision": "refuse", "reason": "Complet"},
    )  # fmt: skip
    assert status == 200
    refused = [n for n in await _notifications(api, t["mia"], "membership") if n["state"] == "refused"]
    assert [n["actor"] for n in refused] == [node.uris.group("other")]


def _by_member(page: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["member"]: item for item in page["items"]}


async def test_the_members_list_says_who_is_suspended_and_why_only_to_managers(node: Node) -> None:
    api, t = Api(node), await _people(node)
    await node.add_member("lea", "demo")
    lea = await node.token("lea")
    mia, alice = node.uris.person("mia"), node.uris.person("alice")
    until = (node.fed.node.clock() + timedelta(days=3)).date().isoformat()
    body = {"member": mia, "until": until, "reason": "Propos blessants"}
    assert (await api.call("POST", SUSPENSION, token=t["mo"], body=body))[0] == 200
    for token in (t["mo"], t["alice"]):  # the association's moderators and admins: with the reason
        status, page, _ = await api.call("GET", "/api/associations/demo/members", token=token)
        assert status == 200, page
        items = _by_member(page)
        assert items[mia]["suspended"] is True and items[mia]["suspendedUntil"].startswith(until)
        assert items[mia]["suspensionReason"] == "Propos blessants"
        assert (items[alice]["suspended"], items[alice]["suspendedUntil"]) == (False, None)
        assert items[alice]["suspensionReason"] is None
    # a plain member sees who is suspended and until when, never why (members list and directory)
    for path in ("/api/associations/demo/members", "/api/associations/demo/directory"):
        status, page, _ = await api.call("GET", path, token=lea)
        assert status == 200, (path, page)
        items = _by_member(page)
        assert items[mia]["suspended"] is True and items[mia]["suspendedUntil"].startswith(until)
        assert all("suspensionReason" not in item for item in page["items"]), path
        assert "Propos blessants" not in str(page)
    # lifted: no longer said, to anyone
    assert (await api.call("DELETE", SUSPENSION, token=t["mo"], params={"member": mia}))[0] == 200
    status, page, _ = await api.call("GET", "/api/associations/demo/members", token=t["mo"])
    item = _by_member(page)[mia]
    assert (item["suspended"], item["suspendedUntil"], item["suspensionReason"]) == (False, None, None)
