"""``entraide association delete`` (decision 97), on both engines: without ``--yes`` it says what
would end and changes nothing; with it, every object of the association becomes a tombstone with a
``Delete`` addressed as the object was (a members-only alert's never goes public), memberships end,
the change is audited, and the handle is never given again. Its members are told (a notification
with its former name and the reason), and its addresses answer 410 or 404."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from federation.types import AS_PUBLIC
from server.cli import main
from server.db.models import Activity, Actor, AuditEntry, Membership, RemoteObject
from server.services.actors import dissolution
from tests.server.test_api import Api, _alert, _people
from tests.server.test_cli_publish import ORIGIN, _counts, _db_url, _node, _publish, _query
from tests.support.nodes import Node


def test_an_association_is_deleted_from_the_cli_only_when_confirmed(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _node(tmp_path, database_url)
    url = _db_url(config, database_url)
    published = {}
    for visibility in ("public", "members"):
        code, out, err = _publish(
            capsys,
            *"alert --as demo --severity critical --category shortage --title Pénurie".split(),
            *f"--visibility {visibility} --body-file - --config {config}".split(),
            stdin="Les pharmacies manquent de Levothyrox.\n",
        )
        assert code == 0, err
        published[visibility] = out.strip()
    before = _counts(url)

    # unconfirmed: it says what would end, and nothing changes
    assert main(["association", "delete", "demo", "--config", config]) == 1
    err = capsys.readouterr().err
    assert "--yes" in err and "2 objects" in err and "4 memberships" in err
    assert _counts(url) == before

    assert main(["association", "delete", "demo", "--yes", "--reason", "dissoute", "--config", config]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == f"{ORIGIN}/groups/demo" and "deleted @demo: 2 objects" in out.err

    rows = asyncio.run(_query(url, select(RemoteObject.iri, RemoteObject.deleted_at, RemoteObject.document)))
    assert {iri for iri, deleted, _ in rows if deleted is not None} >= set(published.values())
    assert all(doc["type"] == "Tombstone" for iri, _, doc in rows if iri in published.values())
    deletes = {
        doc["object"]["id"] if isinstance(doc["object"], dict) else doc["object"]: (doc, level)
        for doc, level in asyncio.run(
            _query(url, select(Activity.document, Activity.visibility).where(Activity.type == "Delete"))
        )
    }
    members_only, level = deletes[published["members"]]
    assert level == "members" and AS_PUBLIC not in members_only.get("to", []) + members_only.get("cc", [])
    assert deletes[published["public"]][1] == "public"
    group_delete, _ = deletes[f"{ORIGIN}/groups/demo"]
    assert group_delete["to"] == [AS_PUBLIC]
    [(deleted_at, name)] = asyncio.run(
        _query(url, select(Actor.deleted_at, Actor.name).where(Actor.handle == "demo", Actor.type == "Group"))
    )
    assert deleted_at is not None and name == ""
    group_id = select(Actor.id).where(Actor.handle == "demo", Actor.type == "Group").scalar_subquery()
    assert asyncio.run(_query(url, select(Membership.id).where(Membership.group_id == group_id))) == []
    [(detail,)] = asyncio.run(
        _query(url, select(AuditEntry.detail).where(AuditEntry.action == "association.delete"))
    )
    assert (detail["reason"], detail["objects"], detail["members"]) == ("dissoute", 2, 4)
    # the other association and the members' accounts are untouched
    assert asyncio.run(_query(url, select(Actor.deleted_at).where(Actor.handle == "empty")))[0][0] is None
    assert asyncio.run(_query(url, select(Actor.deleted_at).where(Actor.handle == "alice")))[0][0] is None

    # gone: deleting again is refused, and the handle is never given again
    assert main(["association", "delete", "demo", "--yes", "--config", config]) == 1
    assert "no such association" in capsys.readouterr().err
    assert main(["association", "create", "demo", "--name", "Démo", "--config", config]) == 1
    assert "deleted association" in capsys.readouterr().err
    assert main(["association", "delete", "nope", "--config", config]) == 1
    assert "no such association" in capsys.readouterr().err


async def test_its_members_are_told_and_its_addresses_answer_gone(node: Node) -> None:
    api, t = Api(node), await _people(node)
    alert = await api.create("demo", "alerts", t["alice"], _alert())
    demo = node.uris.group("demo")
    done = await dissolution.delete_association(node.fed, "demo", reason="Dissolution votée en AG")
    assert done.members == 3 and done.objects == 1
    for token in (t["alice"], t["mo"], t["mia"]):
        status, page, _ = await api.call("GET", "/api/notifications", token=token)
        assert status == 200, page
        [told] = [n for n in page["items"] if n["type"] == "association_deleted"]
        assert (told["actor"], told["name"], told["message"]) == (demo, "Démo", "Dissolution votée en AG")
    status, page, _ = await api.call("GET", "/api/notifications", token=t["zed"])  # a member of "other"
    assert [n for n in page["items"] if n["type"] == "association_deleted"] == []
    activity_json = {"Accept": "application/activity+json"}
    for path, expected in (
        (demo, 410),
        (alert["id"], 410),
        (f"{demo}/outbox", 404),
        (f"{demo}/feed.atom", 404),
        (f"{demo}/members", 404),
    ):
        answer = await node.client.get(path.removeprefix(node.uris.origin), headers=activity_json)
        assert answer.status == expected, (path, answer.status)
    answer = await node.client.get("/groups/demo")  # the page, for a browser
    assert answer.status in (404, 410)
    assert "Démo" not in await answer.text()
    # the association's management is gone with it
    status, _, _ = await api.call("GET", "/api/associations/demo/members", token=t["alice"])
    assert status == 404
