"""Security cases 66 and 67 (issue 17): tokens and the audit log.

66: a token's secret is printed once, by its creation, and never again (not by ``token list``, not by
``GET /api/tokens``, not in the audit log); an account lists and revokes its own tokens only, and another
account's token answers like a missing one. 67: the audit log names members-only objects and who did what:
the node's log is read by node admins with an admin-scope token only, an association's by its admins and
moderators only, and it lists that association's entries only.
"""

from __future__ import annotations

from sqlalchemy import select, update

from server.db.models import Account, Actor, AuditEntry
from tests.server.test_api import Api, _alert, _people
from tests.support.nodes import Node


async def _entries(node: Node) -> list[tuple[str, str, str | None, str | None]]:
    async with node.sessions() as session:
        rows = await session.execute(
            select(AuditEntry.action, AuditEntry.channel, Actor.handle, AuditEntry.target)
            .outerjoin(Actor, Actor.id == AuditEntry.by_actor_id)
            .order_by(AuditEntry.id)
        )
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def test_sec_66_token_secrets_never_shown_again_nor_revoked_by_others(node: Node) -> None:
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
    async with node.sessions() as session:
        details = (
            await session.scalars(select(AuditEntry.detail).where(AuditEntry.action.like("token.%")))
        ).all()
    assert details and all(set(d) == {"token", "scope", "label"} for d in details)
    assert all("ent_" not in str(d) for d in details)


async def test_sec_67_audit_logs_only_for_node_admins_and_the_association_managers(node: Node) -> None:
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
