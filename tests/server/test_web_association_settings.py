"""An association's settings and deletion, in the browser and through the JSON API (decision 97), on
both engines: only its admins see the settings page; a change is saved and audited, a bad value is
said next to its field (400) with nothing changed, a suspended admin is told (403); deleting needs the
handle typed again, then the association answers 410 and its members are told. Through the API,
``DELETE /api/associations/{slug}`` takes the handle as ``confirm``, from its admins or a node admin
with an admin-scope token, and from nobody else."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from server.db.models import Actor, AuditEntry
from server.services.actors import local as actor_service
from tests.server.test_api import Api, _alert, _people
from tests.server.test_web_members import _as, _get, _post
from tests.support.nodes import Node

PAGE = "/groups/demo/admin/settings"


async def _group(node: Node) -> Actor:
    async with node.sessions() as session:
        group = await session.scalar(select(Actor).where(Actor.handle == "demo", Actor.type == "Group"))
    assert group is not None
    return group


async def test_admins_change_the_settings_and_delete_the_association_in_the_browser(node: Node) -> None:
    api, t = Api(node), await _people(node)
    await api.create("demo", "alerts", t["alice"], _alert())
    # only the association's admins see the page
    for who, status in (("mo", 403), ("mia", 403), ("zed", 403)):
        await _as(node, who)
        await _get(node, PAGE, status)
    await _as(node, "alice")
    page = await _get(node, PAGE)
    assert 'value="Démo"' in page and "1 publications" in page and 'aria-current="page"' in page
    # a bad value is said next to its field, nothing changes
    bad = await _post(node, PAGE, PAGE, name="Démo", summary="", language="français",
                      join_policy="open", replies_policy="members", members_visibility="members")  # fmt: skip
    assert bad.status == 400 and 'id="language-error"' in await bad.text()
    assert (await _group(node)).join_policy == "approval"
    # a good change is saved, audited, and said
    fields = {"join_policy": "open", "replies_policy": "anyone", "members_visibility": "members"}
    saved = await _post(node, PAGE, PAGE, name="Démo santé", summary="Entraide", language="fr", **fields)
    assert saved.status == 303 and saved.headers["Location"].endswith("?done=saved")
    group = await _group(node)
    assert (group.name, group.summary, group.language, group.join_policy, group.replies_policy) == (
        "Démo santé", "Entraide", "fr", "open", "anyone",
    )  # fmt: skip
    assert "Settings saved." in await _get(node, PAGE + "?done=saved")
    # a suspended admin changes nothing
    await node.add_member("ann", "demo", role="admin")
    until = (node.fed.node.clock() + timedelta(days=2)).date().isoformat()
    body = {"member": node.uris.person("ann"), "until": until}
    assert (await api.call("POST", "/api/associations/demo/members/suspension", token=t["alice"], body=body))[
        0
    ] == 200
    await _as(node, "ann")
    refused = await _post(node, PAGE, PAGE, name="Autre", summary="", language="", **fields)
    assert refused.status == 403 and (await _group(node)).name == "Démo santé"
    refused = await _post(node, PAGE, PAGE + "/delete", confirm="demo")
    assert refused.status == 403 and (await _group(node)).deleted_at is None
    # deleting needs the handle typed again
    await _as(node, "alice")
    wrong = await _post(node, PAGE, PAGE + "/delete", confirm="Démo santé", reason="")
    assert wrong.status == 400 and 'id="confirm-error"' in await wrong.text()
    assert (await _group(node)).deleted_at is None
    done = await _post(node, PAGE, PAGE + "/delete", confirm="demo", reason="Dissolution votée")
    assert done.status == 200 and "Démo santé is deleted" in await done.text()
    assert (await _group(node)).deleted_at is not None
    assert (
        await node.client.get("/groups/demo", headers={"Accept": "application/activity+json"})
    ).status == 410
    await _get(node, PAGE, 404)
    status, page, _ = await api.call("GET", "/api/notifications", token=t["mia"])
    [told] = [n for n in page["items"] if n["type"] == "association_deleted"]
    assert (told["name"], told["message"]) == ("Démo santé", "Dissolution votée")
    async with node.sessions() as session:
        channel = await session.scalar(
            select(AuditEntry.channel).where(AuditEntry.action == "association.delete")
        )
    assert channel == "web"


async def test_the_api_deletes_for_the_associations_admins_and_node_admins_only(node: Node) -> None:
    api, t = Api(node), await _people(node)
    path = "/api/associations/demo"
    for token, body, expected in (
        (t["mo"], {"confirm": "demo"}, (403, "forbidden")),
        (t["mia"], {"confirm": "demo"}, (403, "forbidden")),
        (t["olga"], {"confirm": "demo"}, (403, "forbidden")),  # an admin of another association
        (t["alice_read"], {"confirm": "demo"}, (403, "forbidden")),  # a read-only token
        (t["alice"], {"confirm": "other"}, (400, "invalid_input")),
        (t["alice"], {}, (400, "invalid_input")),
        (t["alice"], {"confirm": "demo", "extra": 1}, (400, "invalid_input")),
    ):
        status, answer, _ = await api.call("DELETE", path, token=token, body=body)
        assert (status, answer.get("code")) == expected, (body, answer)
    assert (await _group(node)).deleted_at is None
    # a node admin deletes "other" with an admin-scope token, not with a write one
    async with node.sessions.begin() as session:
        await actor_service.set_node_admin(
            session, username="zed", node_admin=True, now=node.fed.node.clock()
        )
    write, admin = await node.token("zed"), await node.token("zed", scope="admin")
    status, answer, _ = await api.call(
        "DELETE", "/api/associations/other", token=write, body={"confirm": "other"}
    )
    assert (status, answer["code"]) == (403, "forbidden")
    status, answer, _ = await api.call(
        "DELETE", "/api/associations/other", token=admin, body={"confirm": "other"}
    )
    assert status == 200 and answer["id"] == node.uris.group("other") and answer["members"] == 2
    status, answer, _ = await api.call(
        "DELETE", path, token=t["alice"], body={"confirm": "demo", "reason": "Fin"}
    )
    assert status == 200 and answer["objects"] == 0 and answer["delete"].startswith(node.uris.origin)
    status, answer, _ = await api.call("DELETE", path, token=t["alice"], body={"confirm": "demo"})
    assert status == 404
