"""Creating an association through the JSON API (``POST /api/associations``) under the node's
policy ``association_creators`` (docs/decisions.md 73): ``admins``, node admins only (the
default); ``members``, every local member. The creator becomes the association's admin; both steps
are audited as the creator's, through the ``api`` channel. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from server.db.models import Actor, AuditEntry, Membership
from server.services.actors import local as actor_service
from server.services.moderation import blocks
from tests.support.signed_inbox import changed
from tests.support.world import World

NEW = {"slug": "entraide-nord", "name": "Entraide Nord", "summary": "Quartiers nord"}


async def _member(
    world: World, username: str, *, node_admin: bool = False, scope: str = "write"
) -> dict[str, str]:
    await world.node.add_member(username, "collectif")
    if node_admin:
        async with world.node.sessions.begin() as session:
            await actor_service.set_node_admin(
                session, username=username, node_admin=True, now=datetime.now(UTC)
            )
    return {"Authorization": f"Bearer {await world.node.token(username, scope=scope)}"}


async def _set_creators(world: World, who: str) -> None:
    async with world.node.sessions.begin() as session:
        await blocks.set_node_policy(session, by=None, association_creators=who, channel="cli")


async def _create(world: World, headers: dict[str, str], body: dict[str, Any] = NEW) -> Any:
    return await world.node.client.post("/api/associations", json=body, headers=headers)


async def _refused(world: World, status: int, headers: dict[str, str], body: dict[str, Any] = NEW) -> None:
    before = await world.counts()
    response = await _create(world, headers, body)
    assert response.status == status and response.content_type == "application/problem+json"
    assert changed(before, await world.counts()) == {}


async def _roles(world: World, slug: str) -> dict[str, str]:
    async with world.node.sessions() as session:
        group = await session.scalar(select(Actor).where(Actor.handle == slug, Actor.type == "Group"))
        assert group is not None
        rows = await session.execute(
            select(Actor.handle, Membership.role)
            .join(Membership, Membership.member_id == Actor.id)
            .where(Membership.group_id == group.id)
        )
        return {handle: role for handle, role in rows}


async def test_a_node_admin_creates_an_association_and_becomes_its_admin(world: World) -> None:
    headers = await _member(world, "ana", node_admin=True)
    response = await _create(world, headers)
    assert response.status == 201
    answer = await response.json()
    assert (answer["handle"], answer["name"]) == ("entraide-nord", "Entraide Nord")
    assert answer["summary"] == "Quartiers nord" and answer["update"] is None
    assert answer["id"] == world.node.uris.actor("group", "entraide-nord")
    assert await _roles(world, "entraide-nord") == {"ana": "admin"}
    async with world.node.sessions() as session:
        entries = (
            await session.execute(
                select(AuditEntry.action, AuditEntry.channel, Actor.handle)
                .join(Actor, Actor.id == AuditEntry.by_actor_id)
                .where(AuditEntry.action.in_(("association.create", "member.add")))
            )
        ).all()
    assert sorted(entries) == [("association.create", "api", "ana"), ("member.add", "api", "ana")]
    # the new association answers like any other
    members = await world.node.client.get("/api/associations/entraide-nord/members", headers=headers)
    assert members.status == 200


async def test_under_admins_a_member_is_refused_and_under_members_allowed(world: World) -> None:
    headers = await _member(world, "bea")
    await _refused(world, 403, headers)
    await _set_creators(world, "members")
    response = await _create(world, headers)
    assert response.status == 201
    assert await _roles(world, "entraide-nord") == {"bea": "admin"}
    # and back to admins: refused again
    await _set_creators(world, "admins")
    await _refused(world, 403, headers, {**NEW, "slug": "autre"})


async def test_anonymous_is_refused_with_401_and_a_read_only_token_with_403(world: World) -> None:
    await _set_creators(world, "members")
    await _refused(world, 401, {})
    await _refused(world, 403, await _member(world, "ana", node_admin=True, scope="read"))


@pytest.mark.parametrize(
    "body",
    [
        {**NEW, "slug": "Bad Slug"},
        {**NEW, "slug": ""},
        {**NEW, "slug": "-x"},
        {**NEW, "name": "   "},
        {**NEW, "name": "x" * 256},
        {"slug": "ok"},
        {**NEW, "extra": 1},
    ],
)
async def test_a_bad_association_is_refused_with_a_problem_and_nothing_stored(
    world: World, body: dict[str, Any]
) -> None:
    headers = await _member(world, "ana", node_admin=True)
    before = await world.counts()
    response = await _create(world, headers, body)
    assert response.status == 400 and response.content_type == "application/problem+json"
    problem = await response.json()
    assert problem.get("field") in set(body) | {"name"}
    assert changed(before, await world.counts()) == {}


async def test_a_taken_slug_is_a_conflict_not_a_way_in(world: World) -> None:
    # collectif exists (made at the command line); "creating" it again with its own name does not
    # make the caller its admin
    await _set_creators(world, "members")
    headers = await _member(world, "bea")
    await _refused(world, 409, headers, {"slug": "collectif", "name": "Collectif"})
    assert (await _roles(world, "collectif"))["bea"] == "member"
