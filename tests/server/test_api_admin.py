"""The JSON API of issue 17, on both engines: closing a vote early, retracting and revising content,
editing an association (``Update{Group}``), member roles and refusals with a reason, the caller's
tokens, and the audit logs (node admins; an association's admins and moderators), every action
audited with the channel ``api``. Every answer is checked against the OpenAPI document. Who may see
tokens and audit logs is tested as security cases 66 and 67 (``tests/security/test_sec_k_admin.py``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from server.db.models import Activity, Actor, AuditEntry, Membership
from server.services import audit
from tests.server.test_api import Api, _alert, _people, _proposal, _row
from tests.support.nodes import Node

PEER = "http://127.0.0.1:9/users/zoe"
"""A remote requester on loopback: the worker's delivery of the Reject is refused, never a name lookup."""


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
    # a retraction is final: no edit makes the alert active (or anything else) again
    for status_asked in ("active", "superseded"):
        status, problem, _ = await api.call(
            "PATCH", "/api/objects", params={"iri": alert["id"]}, token=t["alice"],
            body={"alertStatus": status_asked},
        )  # fmt: skip
        assert (status, problem["field"]) == (400, "alertStatus"), problem
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
            host="127.0.0.1:9",
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
                join_iri="http://127.0.0.1:9/join/1",
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


def test_the_http_channel_is_api_for_tokens_and_the_api_and_web_for_pages() -> None:
    from aiohttp.test_utils import make_mocked_request

    from server.http.middlewares import audit_channel

    assert audit_channel(make_mocked_request("POST", "/api/objects/close")) == "api"
    assert audit_channel(make_mocked_request("GET", "/api/audit")) == "api"
    bearer = {"Authorization": "Bearer ent_x"}
    assert audit_channel(make_mocked_request("POST", "/users/alice/outbox", headers=bearer)) == "api"
    assert audit_channel(make_mocked_request("POST", "/groups/demo/settings")) == "web"
