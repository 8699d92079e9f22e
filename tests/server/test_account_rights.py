"""Their data, their rights (issue 16), on both engines: a member deletes their account from the
web, the API or the CLI (content tombstoned, ``Delete`` planned for every remote holder, votes per
decision 40, memberships and follows ended, tokens and sessions dead at once, the actor a 410
tombstone whose username is never reused); edits their profile and discoverability (an
``Update{Person}`` goes out); exports their archive from the API and the CLI. A remote person's
``Delete`` of itself is security case 63 (``tests/security/test_sec_k_accounts.py``)."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from sqlalchemy import select

from federation.types import AS_PUBLIC, utc_now
from server.cli import main
from server.db.models import (
    Activity,
    Actor,
    Delivery,
    Follow,
    Job,
    Membership,
    RemoteObject,
    Token,
    Vote,
    WebSession,
)
from server.services.actors import local as actor_service
from server.services.actors.keys import load_vault
from server.services.delivery import fanout as delivery
from server.services.errors import Conflict
from tests.server.test_web_account import PASSWORD, _post_form, _sign_in
from tests.support.nodes import Node, running_node

AP = {"Accept": "application/activity+json"}
SECRET = "SECRET-lea-members-only"


@pytest.fixture
async def quiet_node(tmp_path: Path, database_url: str) -> AsyncIterator[Node]:
    """No in-process worker: the test runs the fan-out, so nothing leaves 127.0.0.1."""
    async with running_node(tmp_path / "node", database_url, worker={"in_process": False}) as running:
        yield running


async def _remote(node: Node, name: str, *, kind: str = "Person", host: str = "peer.example") -> Actor:
    iri = f"https://{host}/{'groups' if kind == 'Group' else 'users'}/{name}"
    now = utc_now()
    async with node.sessions.begin() as session:
        actor = Actor(
            iri=iri,
            local=False,
            type=kind,
            handle=name,
            host=host,
            inbox_iri=f"{iri}/inbox",
            followers_iri=f"{iri}/followers",
            created_at=now,
            updated_at=now,
        )
        session.add(actor)
    return actor


async def _id(node: Node, iri: str) -> int:
    return int(await node.scalar(select(Actor.id).where(Actor.iri == iri)))


async def _relate(node: Node, **rows: Any) -> None:
    async with node.sessions.begin() as session:
        for row in rows.values():
            session.add(row)


async def _fan_out_all(node: Node) -> set[tuple[str, str, str]]:
    """Run the fan-out of every activity (as the worker would) and return the planned
    (activity type, object IRI, inbox) triples."""
    async with node.sessions() as session:
        jobs = [(row.id, row.type) for row in await session.scalars(select(Activity).order_by(Activity.id))]
        also = {
            job.payload["activity_id"]: job.payload.get("also")
            for job in await session.scalars(select(Job).where(Job.kind == delivery.FANOUT))
        }
    for activity_id, _ in jobs:
        await delivery.fanout(node.fed.node, activity_id, also=also.get(activity_id))
    async with node.sessions() as session:
        rows = await session.execute(
            select(Activity.type, Activity.object_iri, Delivery.inbox_iri).join(
                Delivery, Delivery.activity_id == Activity.id
            )
        )
        return {(r[0], r[1] or "", r[2]) for r in rows}


async def _scene(node: Node) -> dict[str, Any]:
    """lea (member of collectif) with a members-only post into it, a public post, a reply, a vote on
    an open and on a closed proposal; followed by a remote person, member of a remote association,
    her association having a remote member; marc, another member, reads everything."""
    group = await node.create_association("collectif", "Collectif")
    await node.add_member("ana", "collectif", role="admin")
    lea = await node.add_member("lea", "collectif")
    await node.add_member("marc", "collectif")
    tokens = {name: await node.token(name) for name in ("ana", "lea", "marc")}
    follower = await _remote(node, "zoe")
    remote_member = await _remote(node, "yan", host="other.example")
    remote_group = await _remote(node, "voisins", kind="Group", host="far.example")
    now = utc_now()
    lea_id, group_id = await _id(node, lea), await _id(node, group)
    await _relate(
        node,
        follow=Follow(follower_id=follower.id, followed_id=lea_id, state="accepted", created_at=now),
        member=Membership(
            group_id=group_id, member_id=remote_member.id, role="member", created_at=now, updated_at=now
        ),
        elsewhere=Membership(
            group_id=remote_group.id, member_id=lea_id, role="member", created_at=now, updated_at=now
        ),
    )
    members = node.uris.members(group)  # type: ignore[arg-type]
    secret = await node.post_outbox(
        "/users/lea",
        tokens["lea"],
        {"type": "Note", "content": f"<p>{SECRET}</p>", "to": [members], "audience": group},
    )
    public = await node.post_outbox(
        "/users/lea", tokens["lea"], {"type": "Note", "content": "<p>bonjour</p>", "to": [AS_PUBLIC]}
    )
    auth = {"Authorization": f"Bearer {tokens['ana']}"}
    end = (now + timedelta(days=3)).isoformat().replace("+00:00", "Z")
    proposals = []
    for title in ("Ouverte", "Close"):
        body = {"name": title, "content": "<p>?</p>", "oneOf": ["oui", "non"], "endTime": end}
        created = await node.client.post("/api/associations/collectif/proposals", json=body, headers=auth)
        assert created.status == 201, await created.text()
        proposals.append((await created.json())["id"])
    for question in proposals:
        vote = await node.client.post(
            "/api/votes",
            json={"question": question, "choice": "oui"},
            headers={"Authorization": f"Bearer {tokens['lea']}"},
        )
        assert vote.status in (200, 201), await vote.text()
    async with node.sessions.begin() as session:  # the second proposal closed meanwhile
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == proposals[1]))
        assert row is not None
        row.document = {**row.document, "closed": row.document.get("endTime")}
    return {
        "group": group,
        "lea": lea,
        "lea_id": lea_id,
        "tokens": tokens,
        "secret": secret["object"],
        "public": public["object"],
        "open": proposals[0],
        "closed": proposals[1],
        "follower": follower,
        "remote_member": remote_member,
        "remote_group": remote_group,
    }


async def _reads_of_marc(node: Node, scene: dict[str, Any]) -> list[tuple[str, int, str]]:
    """What marc (a member of collectif) reads where lea's members-only post could show."""
    marc = {"Authorization": f"Bearer {scene['tokens']['marc']}"}
    html = {"Accept": "text/html", **marc}
    requests = [
        ("/api/objects", {"iri": scene["secret"]}, marc),
        (urlsplit(scene["secret"]).path, None, {**AP, **marc}),
        ("/api/timeline", None, marc),
        ("/groups/collectif/outbox", {"page": "true"}, {**AP, **marc}),
        ("/users/marc/inbox", {"page": "true"}, {**AP, **marc}),
        (urlsplit(node.uris.feed(scene["group"], "atom")).path, None, marc),
        ("/groups/collectif", {"tab": "discussions"}, html),
        ("/users/lea/outbox", {"page": "true"}, {**AP, **marc}),
    ]
    found = []
    for path, params, headers in requests:
        response = await node.client.get(path, params=params, headers=headers)
        found.append((path, response.status, await response.text()))
    return found


async def _delete_from_the_web(node: Node) -> Any:
    assert (await _sign_in(node.client, "lea")).status == 303
    page = await node.client.get("/account", headers={"Accept-Language": "en"})
    body = await page.text()
    assert 'action="/account/delete"' in body and "Delete my account" in body
    # A wrong password, or the box not ticked: the errors next to their fields, nothing deleted.
    wrong = await _post_form(
        node.client, "/account", "/account/delete", delete_password="nope", delete_confirm="yes"
    )
    text = await wrong.text()
    assert wrong.status == 400
    assert re.search(r'id="delete_password"[^>]*aria-invalid="true"', text)
    assert 'id="delete_password-error"' in text
    unticked = await _post_form(node.client, "/account", "/account/delete", delete_password=PASSWORD)
    assert unticked.status == 400 and 'id="delete_confirm-error"' in await unticked.text()
    forged = await node.client.post(
        "/account/delete", data={"csrf": "forged", "delete_password": PASSWORD, "delete_confirm": "yes"}
    )
    assert forged.status == 403
    assert await node.scalar(select(Actor.deleted_at).where(Actor.handle == "lea")) is None
    return await _post_form(
        node.client, "/account", "/account/delete", delete_password=PASSWORD, delete_confirm="yes"
    )


async def test_a_member_deletes_their_account_from_the_web(quiet_node: Node) -> None:
    node = quiet_node
    scene = await _scene(node)
    lea_token = scene["tokens"]["lea"]
    before = {where for where, status, text in await _reads_of_marc(node, scene) if SECRET in text}
    assert {"/api/objects", "/api/timeline", "/groups/collectif/outbox", "/groups/collectif"} <= before
    done = await _delete_from_the_web(node)
    assert done.status == 200 and "entraide_session" in done.cookies  # the cookie is dropped
    assert "@lea" not in await done.text()  # the page is a visitor's
    # Sessions and tokens: dead at once.
    assert (
        await node.scalar(
            select(WebSession.id).where(
                WebSession.account_id == scene["lea_id"], WebSession.revoked_at.is_(None)
            )
        )
        is None
    )
    assert (
        await node.scalar(
            select(Token.id).where(Token.account_id == scene["lea_id"], Token.revoked_at.is_(None))
        )
        is None
    )
    api = await node.client.get("/api/timeline", headers={"Authorization": f"Bearer {lea_token}"})
    assert api.status == 401
    assert (await _sign_in(node.client, "lea")).status == 401
    # The actor is a 410 tombstone, for programs and browsers; its username is never given again.
    gone = await node.client.get("/users/lea", headers=AP)
    assert gone.status == 410 and (await gone.json(content_type=None))["type"] == "Tombstone"
    page = await node.client.get("/users/lea", headers={"Accept": "text/html"})
    assert page.status == 410 and "<h1>" in await page.text()
    vault = load_vault(node.settings.storage.secret_key_file)
    with pytest.raises(Conflict):
        async with node.sessions.begin() as session:
            await actor_service.add_member(
                session,
                node.uris,
                vault,
                username="lea",
                association="collectif",
                role="member",
                password=PASSWORD,
                now=utc_now(),
            )
    # Content: tombstones; the members-only text survives nowhere marc (a member) can read.
    async with node.sessions() as session:
        rows = list(
            await session.scalars(
                select(RemoteObject).where(RemoteObject.attributed_to_id == scene["lea_id"])
            )
        )
        assert rows and all(r.deleted_at is not None for r in rows)
        assert SECRET not in orjson.dumps([r.document for r in rows]).decode()
        # Votes: withdrawn from the open question, kept in the closed tally (decision 40).
        open_id = await session.scalar(select(RemoteObject.id).where(RemoteObject.iri == scene["open"]))
        closed_id = await session.scalar(select(RemoteObject.id).where(RemoteObject.iri == scene["closed"]))
        voters = {
            q: list(await session.scalars(select(Vote.voter_id).where(Vote.question_id == q)))
            for q in (open_id, closed_id)
        }
        assert voters == {open_id: [], closed_id: [scene["lea_id"]]}
        assert (
            await session.scalar(select(Membership.id).where(Membership.member_id == scene["lea_id"]))
        ) is None
        assert (
            await session.scalar(
                select(Follow.id).where(
                    (Follow.follower_id == scene["lea_id"]) | (Follow.followed_id == scene["lea_id"])
                )
            )
        ) is None
    reads = await _reads_of_marc(node, scene)
    for where, status, text in reads:
        assert status < 500 and SECRET not in text, where
    assert reads[0][1] == 410
    # Every remote holder is planned a Delete: of the actor, and of each object.
    planned = await _fan_out_all(node)
    person_deletes = {inbox for kind, obj, inbox in planned if kind == "Delete" and obj == scene["lea"]}
    assert {
        scene["follower"].inbox_iri,
        scene["remote_member"].inbox_iri,
        scene["remote_group"].inbox_iri,
    } <= person_deletes
    secret_deletes = {inbox for kind, obj, inbox in planned if kind == "Delete" and obj == scene["secret"]}
    assert scene["remote_member"].inbox_iri in secret_deletes  # got it through the association
    assert scene["follower"].inbox_iri not in secret_deletes  # never had it
    async with node.sessions() as session:
        delete = await session.scalar(
            select(Activity).where(Activity.type == "Delete", Activity.object_iri == scene["lea"])
        )
    assert delete is not None and delete.document["object"] == scene["lea"]


async def test_deletion_from_the_api_asks_for_the_password_and_the_cli_for_yes(
    quiet_node: Node, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = quiet_node
    await node.create_association("collectif")
    await node.add_member("lea", "collectif")
    token = await node.token("lea")
    auth = {"Authorization": f"Bearer {token}"}
    wrong = await node.client.post("/api/account/delete", json={"password": "nope"}, headers=auth)
    assert wrong.status == 400 and (await wrong.json())["field"] == "password"
    missing = await node.client.post("/api/account/delete", json={}, headers=auth)
    assert missing.status == 400
    read_only = await node.token("lea", scope="read")
    refused = await node.client.post(
        "/api/account/delete", json={"password": PASSWORD}, headers={"Authorization": f"Bearer {read_only}"}
    )
    assert refused.status == 403
    assert await node.scalar(select(Actor.deleted_at).where(Actor.handle == "lea")) is None
    done = await node.client.post("/api/account/delete", json={"password": PASSWORD}, headers=auth)
    assert done.status == 200 and (await done.json())["deleted"] is True
    assert (await node.client.get("/api/account/profile", headers=auth)).status == 401
    again = await node.client.post("/api/account/delete", json={"password": PASSWORD}, headers=auth)
    assert again.status == 401


def test_member_delete_from_the_cli_needs_yes(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.server.test_cli_publish import _node

    config = _node(tmp_path, database_url)
    assert (
        main(["member", "add", "lea", "--association", "demo", "--role", "member", "--config", config]) == 0
    )
    capsys.readouterr()
    assert main(["member", "delete", "lea", "--config", config]) == 1
    assert "--yes" in capsys.readouterr().err
    assert main(["member", "delete", "lea", "--yes", "--config", config]) == 0
    out = capsys.readouterr()
    assert out.out.strip().endswith("/users/lea") and "deleted lea" in out.err
    assert main(["member", "delete", "lea", "--yes", "--config", config]) == 1  # already gone
    assert "no account" in capsys.readouterr().err
    code = main(["member", "add", "lea", "--association", "demo", "--role", "member", "--config", config])
    assert code == 1 and "deleted account" in capsys.readouterr().err


def test_member_export_and_set_from_the_cli(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.server.test_cli_publish import _node

    config = _node(tmp_path, database_url)
    assert (
        main(["member", "add", "lea", "--association", "demo", "--role", "member", "--config", config]) == 0
    )
    assert (
        main(["member", "set", "lea", "--name", "Léa M.", "--summary", "<b>hi</b>", "--config", config]) == 0
    )
    out = capsys.readouterr().out
    assert "name = Léa M." in out and "approve_followers = no" in out
    assert main(["member", "set", "lea", "--approve-followers", "yes", "--config", config]) == 0
    assert "approve_followers = yes" in capsys.readouterr().out
    too_long = main(["member", "set", "lea", "--name", "x" * 101, "--config", config])
    assert too_long == 1 and "--name" in capsys.readouterr().err
    target = tmp_path / "lea.zip"
    assert main(["member", "export", "lea", "--output", str(target), "--config", config]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(target) and "memberships" in captured.err  # progress
    assert target.stat().st_mode & 0o777 == 0o600
    with zipfile.ZipFile(target) as archive:
        profile = json.loads(archive.read("profile.json"))
        assert profile["name"] == "Léa M." and "&lt;b&gt;hi&lt;/b&gt;" in profile["summary"]
        assert "index.html" in archive.namelist()
    # Never over an existing file unless asked.
    assert main(["member", "export", "lea", "--output", str(target), "--config", config]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["member", "export", "lea", "-o", str(target), "--force", "--config", config]) == 0


async def test_profile_and_discoverability_edits_send_an_update_of_the_person(quiet_node: Node) -> None:
    node = quiet_node
    await node.create_association("collectif")
    lea = await node.add_member("lea", "collectif")
    follower = await _remote(node, "zoe")
    await _relate(
        node,
        follow=Follow(
            follower_id=follower.id, followed_id=await _id(node, lea), state="accepted", created_at=utc_now()
        ),
    )
    await _sign_in(node.client, "lea")
    # Bad input: the error next to its field, what was typed kept, nothing stored, no Update.
    long_name = "N" * 101
    bad = await _post_form(node.client, "/account", "/account/profile", name=long_name, summary="kept text")
    text = await bad.text()
    assert bad.status == 400 and 'id="name-error"' in text and f'value="{long_name}"' in text
    assert ">kept text</textarea>" in text
    assert await node.scalar(select(Activity.id).where(Activity.type == "Update")) is None
    done = await _post_form(
        node.client,
        "/account",
        "/account/profile",
        name="Léa Martin",
        summary="Bénévole.\n\n<script>alert(1)</script>",
    )
    assert done.status == 303 and done.headers["Location"] == "/account?done=profile"
    actor = await (await node.client.get("/users/lea", headers=AP)).json(content_type=None)
    assert actor["name"] == "Léa Martin"
    assert "<script>" not in actor["summary"] and "&lt;script&gt;" in actor["summary"]
    page = await (await node.client.get("/users/lea", headers={"Accept": "text/html"})).text()
    assert "Léa Martin" in page and "&lt;script&gt;" in page and "<script>" not in page
    # Discoverability: off by default; the setting sends an Update too (none when unchanged).
    assert actor.get("discoverable") is False
    bad_choice = await _post_form(node.client, "/account", "/account/discoverable", discoverable="maybe")
    assert bad_choice.status == 400 and 'id="discoverable-error"' in await bad_choice.text()
    assert (
        await _post_form(node.client, "/account", "/account/discoverable", discoverable="yes")
    ).status == 303
    assert (
        await _post_form(node.client, "/account", "/account/discoverable", discoverable="yes")
    ).status == 303
    actor = await (await node.client.get("/users/lea", headers=AP)).json(content_type=None)
    assert actor["discoverable"] is True
    async with node.sessions() as session:
        updates = list(await session.scalars(select(Activity).where(Activity.type == "Update")))
    assert len(updates) == 2
    assert updates[0].document["object"]["name"] == "Léa Martin"
    assert updates[1].document["object"]["discoverable"] is True
    planned = await _fan_out_all(node)
    assert {inbox for kind, _, inbox in planned if kind == "Update"} == {follower.inbox_iri}
    # The API: the same service; bad input is a problem naming the field.
    token = await node.token("lea")
    auth = {"Authorization": f"Bearer {token}"}
    patched = await node.client.patch("/api/account/profile", json={"summary": "API"}, headers=auth)
    assert patched.status == 200 and (await patched.json())["summary"] == "API"
    bad_api = await node.client.patch("/api/account/profile", json={"name": "x" * 101}, headers=auth)
    assert bad_api.status == 400
    assert (await (await node.client.get("/api/account/profile", headers=auth)).json())["summary"] == "API"
    export = await node.client.get("/api/account/export", headers=auth)
    assert export.status == 200 and export.content_type == "application/zip"
    with zipfile.ZipFile(io.BytesIO(await export.read())) as archive:
        assert json.loads(archive.read("profile.json"))["name"] == "Léa Martin"
    assert (await node.client.get("/api/account/export")).status == 401
