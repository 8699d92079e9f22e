"""The JSON API of issue 17, on both engines: closing a vote early, retracting and revising content,
editing an association (``Update{Group}``), member roles and refusals with a reason, the caller's
tokens, and the audit logs (node admins; an association's admins and moderators), every action
audited with the channel ``api``. Every answer is checked against the OpenAPI document."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from server.db.models import Account, Activity, Actor, AuditEntry, Membership
from server.services import audit
from tests.server.test_api import Api, _alert, _people, _proposal, _row
from tests.support.nodes import Node

PEER = "https://peer.example/users/zoe"


async def _entries(node: Node) -> list[tuple[str, str, str | None, str | None]]:
    async with node.sessions() as session:
        rows = await session.execute(
            select(AuditEntry.action, AuditEntry.channel, Actor.handle, AuditEntry.target)
            .outerjoin(Actor, Actor.id == AuditEntry.by_actor_id)
            .order_by(AuditEntry.id)
        )
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def test_content_is_closed_retracted_and_revised_through_the_api(node: Node) -> None:
    api, t = Api(node), await _people(node)
    proposal = await api.create("demo", "proposals", t["alice"], _proposal(visibility="members"))
    alert = await api.create("demo", "alerts", t["alice"], _alert())
    resource = await api.create("demo", "resources", t["alice"], {"name": "Guide", "content": "<p>v1</p>"})

    async def close(iri: str, token: str | None) -> tuple[int, Any]:
        status, answer, _ = await api.call("POST", "/api/objects/close", params={"iri": iri}, token=token)
        return status, answer

    before = await node.row_counts()
    for iri, token, status, field in [
        (proposal["id"], None, 401, None),
        (proposal["id"], t["mia"], 403, None),  # a member, not a moderator
        (proposal["id"], t["olga"], 404, None),  # members-only: another association's admin cannot see it
        (proposal["id"], t["alice_read"], 403, None),
        (alert["id"], t["alice"], 400, "object"),  # not a vote
    ]:
        got, problem = await close(iri, token)
        assert (got, problem.get("field")) == (status, field), problem
    assert await node.row_counts() == before
    status, closed = await close(proposal["id"], t["mo"])
    assert status == 200 and closed["id"] == proposal["id"] and closed["activity"]
    _, item = await api.get(proposal["id"], t["mia"])
    assert item["closed"] is True and item["proposalStatus"] == "closed"
    status, problem = await close(proposal["id"], t["mo"])
    assert (status, problem["detail"]) == (400, "this vote is already closed")
    # retract an alert and revise a resource with a change note (PATCH, the same service as the CLI)
    status, _, _ = await api.call(
        "PATCH", "/api/objects", params={"iri": alert["id"]}, token=t["mo"], body={"alertStatus": "retracted"}
    )
    assert status == 200
    status, revised, _ = await api.call(
        "PATCH",
        "/api/objects",
        params={"iri": resource["id"]},
        token=t["alice"],
        body={"content": "<p>v2</p>", "changeNote": "Mise à jour"},
    )
    assert status == 200
    async with node.sessions() as session:
        note = await session.scalar(select(Activity.document).where(Activity.iri == revised["activity"]))
    assert note["summary"] == "<p>Mise à jour</p>"
    history = await node.client.get(
        resource["id"].removeprefix(node.uris.origin) + "/history",
        headers={"Accept": "application/activity+json"},
    )
    assert "Mise à jour" in await history.text()
    status, problem, _ = await api.call(
        "PATCH",
        "/api/objects",
        params={"iri": resource["id"]},
        token=t["alice"],
        body={"changeNote": "x" * 501},
    )
    assert (status, problem["field"]) == (400, "changeNote")
    assert (await _row(node, alert["id"])).document["alertStatus"] == "retracted"  # type: ignore[union-attr]
    entries = [
        e for e in await _entries(node) if e[0] in ("proposal.close", "alert.retract", "resource.update")
    ]
    assert entries == [
        ("proposal.close", "api", "mo", proposal["id"]),
        ("alert.retract", "api", "mo", alert["id"]),
        ("resource.update", "api", "alice", resource["id"]),
    ]


async def test_an_admin_edits_the_association_and_roles(node: Node) -> None:
    api, t = Api(node), await _people(node)

    async def patch(token: str | None, body: Any) -> tuple[int, Any]:
        status, answer, _ = await api.call("PATCH", "/api/associations/demo", token=token, body=body)
        return status, answer

    before = await node.row_counts()
    for token, body, status, field in [
        (None, {"name": "X"}, 401, None),
        (t["mo"], {"name": "X"}, 403, None),  # moderators do not edit the association
        (t["olga"], {"name": "X"}, 403, None),
        (t["alice"], {}, 400, None),
        (t["alice"], {"joinPolicy": "sometimes"}, 400, "joinPolicy"),
        (t["alice"], {"language": "fr!"}, 400, "language"),
        (t["alice"], {"name": " "}, 400, "name"),
        (t["alice"], {"slug": "other"}, 400, "slug"),
    ]:
        got, problem = await patch(token, body)
        assert (got, problem.get("field")) == (status, field), (body, problem)
    assert await node.row_counts() == before
    status, edited = await patch(t["alice"], {"name": "Démo 2", "language": "fr", "membersList": "members"})
    assert status == 200, edited
    assert (edited["name"], edited["language"], edited["membersList"]) == ("Démo 2", "fr", "members")
    async with node.sessions() as session:
        sent = await session.scalar(select(Activity.document).where(Activity.iri == edited["update"]))
    assert sent["type"] == "Update" and sent["object"]["name"] == "Démo 2"
    actor = await node.client.get("/groups/demo", headers={"Accept": "application/activity+json"})
    assert (await actor.json())["name"] == "Démo 2"
    status, edited = await patch(t["alice"], {"language": None})
    assert status == 200 and edited["language"] is None and edited["update"] is None
    # roles: an admin makes mia a moderator; the last admin cannot step down
    mia = f"{node.uris.origin}/users/mia"
    alice = f"{node.uris.origin}/users/alice"

    async def role(token: str, member: str, value: str) -> tuple[int, Any]:
        status, answer, _ = await api.call(
            "PATCH",
            "/api/associations/demo/members",
            params={"member": member},
            token=token,
            body={"role": value},
        )
        return status, answer

    assert (await role(t["mo"], mia, "moderator"))[0] == 403
    assert (await role(t["alice"], mia, "owner"))[0] == 400
    assert (await role(t["alice"], PEER, "member"))[0] == 404
    assert await role(t["alice"], mia, "moderator") == (
        200,
        {"member": mia, "role": "moderator", "previous": "member"},
    )
    status, problem = await role(t["alice"], alice, "member")
    assert (status, problem["code"]) == (409, "conflict")
    entries = [e for e in await _entries(node) if e[0] in ("association.configure", "member.role")]
    assert entries == [
        ("association.configure", "api", "alice", f"{node.uris.origin}/groups/demo"),
        ("association.configure", "api", "alice", f"{node.uris.origin}/groups/demo"),
        ("member.role", "api", "alice", mia),
    ]


async def test_a_refusal_carries_its_reason(node: Node) -> None:
    api, t = Api(node), await _people(node)
    async with node.sessions.begin() as session:
        group = await session.scalar(select(Actor).where(Actor.handle == "demo", Actor.type == "Group"))
        peer = Actor(
            iri=PEER,
            local=False,
            type="Person",
            handle="zoe",
            host="peer.example",
            inbox_iri=f"{PEER}/inbox",
            created_at=node.fed.node.clock(),
            updated_at=node.fed.node.clock(),
        )
        session.add(peer)
        await session.flush()
        session.add(
            Membership(
                group_id=group.id,
                member_id=peer.id,
                role="member",
                state="pending",
                join_iri="https://peer.example/join/1",
                created_at=peer.created_at,
                updated_at=peer.created_at,
            )
        )
    body = {"member": PEER, "decision": "approve", "reason": "Bienvenue"}
    status, problem, _ = await api.call("POST", "/api/associations/demo/members", token=t["mo"], body=body)
    assert (status, problem["field"]) == (400, "reason")  # a reason goes with a refusal only
    body = {"member": PEER, "decision": "refuse", "reason": "Réservé aux <adhérents>"}
    status, answer, _ = await api.call("POST", "/api/associations/demo/members", token=t["mo"], body=body)
    assert (status, answer["state"]) == (200, "refused")
    async with node.sessions() as session:
        reject = await session.scalar(select(Activity.document).where(Activity.type == "Reject"))
    assert reject["content"] == "<p>Réservé aux &lt;adhérents&gt;</p>"


async def test_tokens_of_the_caller_only_never_their_secrets(node: Node) -> None:
    api, t = Api(node), await _people(node)
    status, listed, _ = await api.call("GET", "/api/tokens", token=t["mia"])
    assert status == 200 and len(listed["items"]) == 1
    mine = listed["items"][0]["id"]
    assert t["mia"] not in str(listed) and "ent_" not in str(listed)
    status, listed, _ = await api.call("GET", "/api/tokens", token=t["alice"])
    alice_read = next(item["id"] for item in listed["items"] if item["scope"] == "read")
    assert (await api.call("GET", "/api/tokens"))[0] == 401
    # one cannot revoke another's token (the same answer as a missing one), nor with a read token
    assert (await api.call("DELETE", f"/api/tokens/{alice_read}", token=t["mia"]))[0] == 404
    assert (await api.call("DELETE", f"/api/tokens/{alice_read}", token=t["alice_read"]))[0] == 403
    assert (await api.call("DELETE", "/api/tokens/99999999", token=t["mia"]))[0] == 404
    status, revoked, _ = await api.call("DELETE", f"/api/tokens/{mine}", token=t["mia"])
    assert status == 200 and revoked["id"] == mine and revoked["revoked"]
    assert (await api.call("GET", "/api/tokens", token=t["mia"]))[0] == 401  # it stopped working at once
    assert [e for e in await _entries(node) if e[0] == "token.revoke"] == [
        ("token.revoke", "api", "mia", f"{node.uris.origin}/users/mia")
    ]


async def test_audit_logs_are_for_node_admins_and_the_association_managers(node: Node) -> None:
    api, t = Api(node), await _people(node)
    secret = await api.create("demo", "alerts", t["alice"], _alert(visibility="members"))
    await api.create("other", "alerts", t["olga"], _alert())
    admin_token = await node.token("zed", scope="admin")
    # not a node admin yet: refused, whatever the token's scope
    for token in (t["alice"], admin_token, None):
        status, _, _ = await api.call("GET", "/api/audit", token=token)
        assert status in (401, 403)
    async with node.sessions.begin() as session:
        zed = await session.scalar(select(Actor.id).where(Actor.handle == "zed"))
        await session.execute(update(Account).where(Account.actor_id == zed).values(is_node_admin=True))
    zed_write = t["zed"]
    assert (await api.call("GET", "/api/audit", token=zed_write))[0] == 403  # an admin-scope token only
    status, page, _ = await api.call("GET", "/api/audit", token=admin_token, params={"limit": "2"})
    assert status == 200 and len(page["items"]) == 2 and page["next"]
    path, _, query = page["next"].removeprefix(node.uris.origin).partition("?")
    assert path == "/api/audit"
    params = dict(part.split("=") for part in query.split("&"))
    status, rest, _ = await api.call("GET", path, token=admin_token, params=params)
    assert status == 200 and rest["items"][0]["id"] < page["items"][-1]["id"]
    status, filtered, _ = await api.call(
        "GET", "/api/audit", token=admin_token, params={"action": "alert.", "channel": "api"}
    )
    assert [(e["action"], e["associationHandle"]) for e in filtered["items"]] == [
        ("alert.create", "other"),
        ("alert.create", "demo"),
    ]
    assert (await api.call("GET", "/api/audit", token=admin_token, params={"channel": "fax"}))[0] == 400
    assert (await api.call("GET", "/api/audit", token=admin_token, params={"who": "x"}))[0] == 400
    # an association's log: its admins and moderators, and only its own entries; members-only
    # content's IRIs never reach a member or another association's admin
    for token, status in [(t["mia"], 403), (t["olga"], 403), (None, 403), (t["mo"], 200), (t["alice"], 200)]:
        got, answer, _ = await api.call("GET", "/api/associations/demo/audit", token=token)
        assert got == status, answer
        assert (secret["id"] in str(answer)) is (status == 200)
    _, answer, _ = await api.call("GET", "/api/associations/demo/audit", token=t["mo"])
    assert {e["associationHandle"] for e in answer["items"]} == {"demo"}
    assert (await api.call("GET", "/api/associations/nowhere/audit", token=t["mo"]))[0] == 404


def test_channels_are_the_known_ones() -> None:
    assert audit.current_channel() == "system"
    with audit.channel_scope("web"):
        assert audit.current_channel() == "web"
    assert audit.current_channel() == "system"
    try:
        with audit.channel_scope("fax"):
            raise AssertionError("an unknown channel is refused")
    except ValueError:
        pass
