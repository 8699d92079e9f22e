"""Invitation links (issue 17, decision 58) and the member directory through the JSON API and the
command line, on both engines: admins only create, list and revoke them; only the token's hash is
stored and the audit log never holds it; a member of this node joins at once with a link, even a
closed association; an expired, used-up or revoked link is refused with a problem saying why; two
people racing for the last use get one membership; the directory is read by members only and
leaves out the members who opted out (decision 59, security cases 72 and 73)."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from federation.types import utc_now
from server.cli import main
from server.db.models import Account, Actor, AuditEntry, Invitation, Membership
from tests.server.test_api import Api, _people
from tests.server.test_cli_publish import _db_url, _node, _query
from tests.support.nodes import Node

INVITES = "/api/associations/demo/invitations"
ACCEPT = "/api/invitations/accept"


async def _create(api: Api, token: str, **body: Any) -> dict[str, Any]:
    status, created, _ = await api.call("POST", INVITES, token=token, body=body)
    assert status == 201, created
    return dict(created)


async def _state(node: Node, username: str, group: str = "demo") -> str | None:
    async with node.sessions() as session:
        found = await session.scalar(
            select(Membership.state)
            .join(Actor, Actor.id == Membership.member_id)
            .where(
                Actor.handle == username,
                Actor.type == "Person",
                Membership.group_id
                == select(Actor.id).where(Actor.handle == group, Actor.type == "Group").scalar_subquery(),
            )
        )
    return str(found) if found is not None else None


async def test_admins_alone_create_list_and_revoke_links_and_only_a_hash_is_kept(node: Node) -> None:
    api, t = Api(node), await _people(node)
    # Given demo's admin, when she creates a link for 3 uses over 2 days
    created = await _create(api, t["alice"], expiresInDays=2, maxUses=3)
    token = created["token"]
    # Then the answer holds the link, once; the database only its SHA-256, the audit log neither
    assert created["url"] == node.uris.iri(f"/invite/{token}")
    assert (created["maxUses"], created["uses"], created["state"], created["createdBy"]) == (
        3,
        0,
        "active",
        "alice",
    )
    async with node.sessions() as session:
        row = await session.scalar(select(Invitation))
        entries = (await session.execute(select(AuditEntry.action, AuditEntry.detail))).all()
    assert row is not None and row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert (row.expires_at - row.created_at) == timedelta(days=2)
    assert [a for a, _ in entries if a.startswith("invitation.")] == ["invitation.create"]
    assert token not in repr(entries)
    # The list never shows a token
    status, listed, _ = await api.call("GET", INVITES, token=t["alice"])
    assert status == 200 and [i["id"] for i in listed["items"]] == [created["id"]]
    assert token not in repr(listed) and "token" not in listed["items"][0]
    # A moderator, a member, an admin of another association, a read-only token and nobody: refused
    for who, expected in (("mo", 403), ("mia", 403), ("olga", 403), ("alice_read", 403), (None, 401)):
        tok = t[who] if who else None
        assert (await api.call("GET", INVITES, token=tok))[0] == expected, who
        assert (await api.call("POST", INVITES, token=tok, body={}))[0] == expected, who
        assert (await api.call("DELETE", f"{INVITES}/{created['id']}", token=tok))[0] == expected, who
    # Bad input names the field and stores nothing
    before = await node.row_counts()
    for body, field in (
        ({"expiresInDays": 0}, "expiresInDays"),
        ({"expiresInDays": 91}, "expiresInDays"),
        ({"expiresInDays": "7"}, "expiresInDays"),
        ({"maxUses": 0}, "maxUses"),
        ({"maxUses": 1001}, "maxUses"),
        ({"maxUses": True}, "maxUses"),
        ({"token": "mine"}, "token"),
    ):
        status, problem, _ = await api.call("POST", INVITES, token=t["alice"], body=body)
        assert (status, problem.get("field")) == (400, field), (body, problem)
    status, _, _ = await api.call(
        "POST", INVITES, token=t["alice"], raw=b"{", content_type="application/json"
    )
    assert status == 400
    assert await node.row_counts() == before
    # The defaults: one use, seven days
    default = await _create(api, t["alice"])
    assert default["maxUses"] == 1
    # Revoked: the state says so, revoking again changes nothing, other ids are not found
    path = f"{INVITES}/{created['id']}"
    status, revoked, _ = await api.call("DELETE", path, token=t["alice"])
    assert (status, revoked["state"]) == (200, "revoked")
    assert (await api.call("DELETE", path, token=t["alice"]))[1]["revokedAt"] == revoked["revokedAt"]
    assert (await api.call("DELETE", f"{INVITES}/999999", token=t["alice"]))[0] == 404
    other = await _create(api, t["alice"])
    status, _, _ = await api.call(
        "DELETE", f"/api/associations/other/invitations/{other['id']}", token=t["olga"]
    )
    assert status == 404  # another association's invitation is not olga's to revoke
    async with node.sessions() as session:
        actions = (await session.scalars(select(AuditEntry.action).order_by(AuditEntry.id))).all()
    assert actions.count("invitation.revoke") == 1 and actions.count("invitation.create") == 3


async def test_a_member_of_this_node_joins_at_once_until_the_link_expires_is_used_up_or_revoked(
    node: Node,
) -> None:
    api, t = Api(node), await _people(node)
    await node.configure("demo", join_policy="closed")  # a link is the way into a closed association
    await node.add_member("pat", "other")
    await node.add_member("quinn", "other")
    people = {name: await node.token(name) for name in ("pat", "quinn")}
    link = await _create(api, t["alice"], maxUses=2)
    # zed joins with the token in the body: active at once, audited
    status, joined, _ = await api.call("POST", ACCEPT, token=t["zed"], body={"token": link["token"]})
    assert (status, joined) == (200, {"association": node.uris.group("demo"), "state": "active"})
    assert await _state(node, "zed") == "active"
    async with node.sessions() as session:
        entry = await session.scalar(select(AuditEntry).where(AuditEntry.action == "invitation.accept"))
    assert entry is not None and entry.target == node.uris.person("zed") and entry.channel == "api"
    # a member already: 409, and no use is spent
    status, problem, _ = await api.call("POST", ACCEPT, token=t["mia"], body={"token": link["token"]})
    assert (status, problem["code"]) == (409, "conflict")
    # someone who asked to join and waits is made a member by the link
    async with node.sessions.begin() as session:
        pat = await session.scalar(select(Actor).where(Actor.handle == "pat", Actor.type == "Person"))
        demo = await session.scalar(select(Actor).where(Actor.handle == "demo", Actor.type == "Group"))
        assert pat is not None and demo is not None
        session.add(
            Membership(
                group_id=demo.id,
                member_id=pat.id,
                role="member",
                state="pending",
                created_at=utc_now(),
                updated_at=utc_now(),
            )
        )
    assert (await api.call("POST", ACCEPT, token=people["pat"], body={"token": link["token"]}))[0] == 200
    assert await _state(node, "pat") == "active"
    # used up: 410 with its own code, and quinn is not in
    status, problem, _ = await api.call("POST", ACCEPT, token=people["quinn"], body={"token": link["token"]})
    assert (status, problem["code"]) == (410, "invitation_exhausted")
    assert await _state(node, "quinn") is None
    # expired and revoked links are refused the same way, each saying why
    late = await _create(api, t["alice"])
    async with node.sessions.begin() as session:
        await session.execute(
            update(Invitation)
            .where(Invitation.id == late["id"])
            .values(expires_at=utc_now() - timedelta(seconds=1))
        )
    status, problem, _ = await api.call("POST", ACCEPT, token=people["quinn"], body={"token": late["token"]})
    assert (status, problem["code"]) == (410, "invitation_expired")
    revoked = await _create(api, t["alice"])
    await api.call("DELETE", f"{INVITES}/{revoked['id']}", token=t["alice"])
    status, problem, _ = await api.call(
        "POST", ACCEPT, token=people["quinn"], body={"token": revoked["token"]}
    )
    assert (status, problem["code"]) == (410, "invitation_revoked")
    # unknown, malformed and oversized tokens; no token; no credentials
    fresh = await _create(api, t["alice"])
    read_only = await node.token("quinn", scope="read")
    before = await node.row_counts()
    for body, expected in (
        ({"token": fresh["token"][:-2] + "xx"}, 404),
        ({"token": "short"}, 404),
        ({"token": "é" * 40}, 404),
        ({"token": "a" * 129}, 400),
        ({"token": ""}, 400),
        ({}, 400),
        ({"token": 12}, 400),
    ):
        assert (await api.call("POST", ACCEPT, token=people["quinn"], body=body))[0] == expected, body
    assert (await api.call("POST", ACCEPT, token=None, body={"token": fresh["token"]}))[0] == 401
    assert (await api.call("POST", ACCEPT, token=read_only, body={"token": fresh["token"]}))[0] == 403
    assert await node.row_counts() == before


async def test_two_people_racing_for_the_last_use_get_one_membership(node: Node) -> None:
    api, t = Api(node), await _people(node)
    await node.add_member("pat", "other")
    pat = await node.token("pat")
    link = await _create(api, t["alice"], maxUses=1)
    results = await asyncio.gather(
        *(api.call("POST", ACCEPT, token=tok, body={"token": link["token"]}) for tok in (t["zed"], pat))
    )
    assert sorted(status for status, _, _ in results) == [200, 410]
    async with node.sessions() as session:
        row = await session.scalar(select(Invitation))
        joined = await session.scalar(
            select(func.count()).select_from(Membership).where(Membership.group_id == row.group_id)  # type: ignore[union-attr]
        )
    assert row is not None and row.uses == 1 and joined == 4  # alice, mo, mia and one of them


async def test_the_directory_is_read_by_members_only_and_leaves_out_who_opted_out(node: Node) -> None:
    """Security case 73: strangers, followers and anonymous readers never get the directory, and a
    member who opted out is in no listing of non-managers."""
    api, t = Api(node), await _people(node)
    directory = "/api/associations/demo/directory"
    members = "/api/associations/demo/members"

    async def listed(path: str, token: str | None) -> tuple[int, list[str]]:
        status, page, _ = await api.call("GET", path, token=token)
        return status, [m["handle"].split("@")[0] for m in page["items"]] if status == 200 else []

    assert await listed(directory, t["mia"]) == (200, ["mia", "mo", "alice"])
    # olga (another association's admin), zed and anonymous readers: refused
    for who in ("olga", "zed", None):
        assert (await listed(directory, t[who] if who else None))[0] == 403
    # mia opts out: not in the directory, nor in the members list of other members
    async with node.sessions.begin() as session:
        mia = await session.scalar(select(Actor).where(Actor.handle == "mia", Actor.type == "Person"))
        assert mia is not None
        account = await session.get(Account, mia.id)
        assert account is not None
        account.directory_opt_out = True
    assert await listed(directory, t["mo"]) == (200, ["mo", "alice"])
    assert await listed(directory, t["mia"]) == (200, ["mo", "alice"])  # she reads it, without herself
    await node.add_member("nina", "demo")
    nina = await node.token("nina")
    assert "mia" not in (await listed(members, nina))[1]
    # the association's admins and moderators still see her (they manage her)
    assert "mia" in (await listed(members, t["mo"]))[1] and "mia" in (await listed(members, t["alice"]))[1]
    # a public member list shows no one who opted out either
    await node.configure("demo", members_visibility="public")
    assert (await listed(members, None)) == (200, ["nina", "mo", "alice"])
    assert (await listed(directory, None))[0] == 403  # the directory stays members only
    # a hidden member list: the directory is its admins' only
    await node.configure("demo", members_visibility="hidden")
    assert (await listed(directory, nina))[0] == 403 and (await listed(directory, t["alice"]))[0] == 200
    # paging and bad cursors
    await node.configure("demo", members_visibility="members")
    status, page, _ = await api.call("GET", directory, token=nina, params={"limit": "1"})
    assert status == 200 and len(page["items"]) == 1 and page["next"].startswith(node.uris.iri(directory))
    for params in ({"limit": "0"}, {"before": "x"}, {"before": "²"}):
        assert (await api.call("GET", directory, token=nina, params=params))[0] == 400
    assert (await api.call("GET", "/api/associations/nothing/directory", token=nina))[0] == 404


def _invite(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["invite", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_invite_create_list_and_revoke_from_the_command_line(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _node(tmp_path, database_url)
    url = _db_url(config, database_url)
    at = ("--association", "demo", "--config", config)
    code, out, err = _invite(capsys, "create", "--days", "3", "--uses", "5", *at)
    assert code == 0, err
    link = out.strip()
    assert "/invite/" in link and "5 use(s)" in err and "by alice" in err
    token = link.rsplit("/", 1)[1]
    code, out, _ = _invite(capsys, "list", *at)
    assert code == 0 and out.split("\t")[:3] == ["1", "active", "0/5"] and token not in out
    code, out, _ = _invite(capsys, "list", "--json", *at)
    assert code == 0 and '"maxUses": 5' in out
    # a moderator is no admin; numbers out of range are usage errors
    code, out, err = _invite(capsys, "create", "--by", "mo", *at)
    assert code == 1 and out == "" and "--by: mo is not an admin of demo" in err
    for bad in (("--days", "0"), ("--days", "91"), ("--uses", "x")):
        with pytest.raises(SystemExit) as exited:
            main(["invite", "create", *bad, *at])
        assert exited.value.code == 2
    code, _, err = _invite(capsys, "revoke", "1", "--by", "ann", *at)
    assert code == 0 and "revoked (by ann)" in err
    code, _, err = _invite(capsys, "revoke", "99", *at)
    assert code == 1 and "no such invitation" in err
    assert _invite(capsys, "list", *at)[1].split("\t")[1] == "revoked"
    rows = asyncio.run(_query(url, select(AuditEntry.action, AuditEntry.channel, AuditEntry.detail)))
    assert [(a, c) for a, c, _ in rows if a.startswith("invitation.")] == [
        ("invitation.create", "cli"),
        ("invitation.revoke", "cli"),
    ]
    assert token not in repr(rows)
