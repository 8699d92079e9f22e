"""Security cases 72 and 73 (issue 17, the members pages).

72: an invitation link is a secret that opens an association. Only its SHA-256 is stored and no
table, no audit entry holds the token; it opens the one association it was made for, as a plain
member, for a person of this node, as many times as it allows and no more, and never once expired or
revoked; opening its page (a link preview, a prefetch) spends nothing.

73: the member directory names the people of a patient association. Anonymous readers, a local
account of another association, a remote non-member, an institution that follows the association and
the instance actor of a member's node get no name from it, through the page or the API; and a member
who opted out is in no member list of anyone but the association's admins and moderators: not the
directory, not the API's members list, not the ActivityPub ``members`` collection.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from sqlalchemy import select, update

from federation.types import utc_now
from server.db.models import Account, Actor, Base, Invitation
from tests.security.test_sec_g_visibility import Scene, scene  # noqa: F401 (the fixture)
from tests.server.test_api import Api, _people
from tests.support.nodes import Node
from tests.support.visibility import AP, HTML, Reader, read

INVITES = "/api/associations/demo/invitations"
ACCEPT = "/api/invitations/accept"


async def _every_row(node: Node) -> str:
    """Every stored row of every table, as one text to search for a secret."""
    parts = []
    async with node.sessions() as session:
        for table in Base.metadata.sorted_tables:
            rows = (await session.execute(select(table))).all()
            parts.append(repr([tuple(row) for row in rows]))
    return "\n".join(parts)


async def test_sec_72_an_invitation_opens_one_association_as_a_member_and_only_while_valid(
    node: Node,
) -> None:
    api, t = Api(node), await _people(node)
    status, created, _ = await api.call("POST", INVITES, token=t["alice"], body={"maxUses": 1})
    assert status == 201
    token = created["token"]
    # the token is nowhere at rest: only its hash, in invitations
    stored = await _every_row(node)
    assert token not in stored and hashlib.sha256(token.encode()).hexdigest() in stored
    # its page (what a link preview or prefetch opens) spends nothing
    page = await node.client.get(f"/invite/{token}", headers={"Accept": "text/html"}, allow_redirects=False)
    assert page.status == 303  # to the sign-in page, nothing read
    assert await node.scalar(select(Invitation.uses)) == 0
    # a link for demo does not open other, and gives no more than the member role
    status, joined, _ = await api.call("POST", ACCEPT, token=t["zed"], body={"token": token})
    assert status == 200 and joined["association"] == node.uris.group("demo")
    status, listed, _ = await api.call("GET", "/api/associations/demo/members", token=t["alice"])
    zed = next(m for m in listed["items"] if m["handle"].startswith("zed@"))
    assert zed["role"] == "member"
    # used up: no second person gets in, even at once, nor once revoked or expired
    await node.add_member("pat", "other")
    pat = await node.token("pat")
    status, problem, _ = await api.call("POST", ACCEPT, token=pat, body={"token": token})
    assert (status, problem["code"]) == (410, "invitation_exhausted")
    status, fresh, _ = await api.call("POST", INVITES, token=t["alice"], body={"maxUses": 5})
    await api.call("DELETE", f"{INVITES}/{fresh['id']}", token=t["alice"])
    assert (await api.call("POST", ACCEPT, token=pat, body={"token": fresh["token"]}))[0] == 410
    status, late, _ = await api.call("POST", INVITES, token=t["alice"], body={"maxUses": 5})
    async with node.sessions.begin() as session:
        await session.execute(
            update(Invitation)
            .where(Invitation.id == late["id"])
            .values(expires_at=utc_now() - timedelta(microseconds=1))
        )
    assert (await api.call("POST", ACCEPT, token=pat, body={"token": late["token"]}))[0] == 410
    # another association's admin neither lists nor revokes demo's links
    assert (await api.call("GET", INVITES, token=t["olga"]))[0] == 403
    status, other_link, _ = await api.call(
        "POST", "/api/associations/other/invitations", token=t["olga"], body={}
    )
    assert (await api.call("DELETE", f"{INVITES}/{other_link['id']}", token=t["alice"]))[0] == 404
    # and no token of any link is in the audit log or anywhere else
    stored = await _every_row(node)
    assert all(link["token"] not in stored for link in (created, fresh, late, other_link))


async def test_sec_73_the_directory_reaches_members_only_and_never_names_who_opted_out(
    scene: Scene,  # noqa: F811
) -> None:
    node, world = scene.node, scene.world
    await node.add_member("mia", "collectif")
    async with node.sessions.begin() as session:
        mia = await session.scalar(select(Actor).where(Actor.handle == "mia", Actor.type == "Person"))
        assert mia is not None
        account = await session.get(Account, mia.id)
        assert account is not None
        account.directory_opt_out = True
    directory = "/api/associations/collectif/directory"
    names = ("adele", "mia", world.alice.iri)
    for reader in scene.outsiders():
        for path, accept in ((directory, "application/json"), ("/groups/collectif/directory", HTML)):
            seen = await read(node, reader, path, accept=accept)
            assert seen.status in (303, 401, 403), (reader.name, path, seen.status)
            assert not any(name in seen.text for name in names), (reader.name, path)
        members = await read(node, reader, "/groups/collectif/members?page=true", accept=AP)
        assert members.status == 404 and not any(name in members.text for name in names), reader.name
    # the remote member (a signed fetch) reads the directory and the members collection, without mia
    alice = Reader("remote member", remote=world.alice)
    seen = await read(node, alice, directory, accept="application/json")
    listed = [item["handle"] for item in json.loads(seen.text)["items"]]
    assert seen.status == 200 and any(h.startswith("adele@") for h in listed)
    assert not any(h.startswith("mia@") for h in listed)
    collection = await read(node, alice, "/groups/collectif/members?page=true", accept=AP)
    assert collection.status == 200 and node.uris.person("adele") in collection.text
    assert node.uris.person("mia") not in collection.text
    assert (
        json.loads((await read(node, alice, "/groups/collectif/members", accept=AP)).text)["totalItems"] == 2
    )
    # the association's admin manages her, so sees her
    admin = Reader("admin", token=scene.admin)
    for path in (
        "/api/associations/collectif/members",
        "/groups/collectif/members?page=true",
    ):
        seen = await read(node, admin, path, accept="application/json" if path.startswith("/api") else AP)
        assert seen.status == 200 and ("mia@" in seen.text or node.uris.person("mia") in seen.text), path
    seen = await read(node, admin, directory, accept="application/json")
    assert "mia@" not in seen.text  # the directory itself leaves her out for everyone
