"""Creating an association from the browser (``/associations/new``), on both engines: offered and
allowed per the node's policy (decision 73), refused with a 403 page otherwise, the creator
becomes its admin, a bad or taken slug is refused next to its field."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from server.db.models import Actor, AuditEntry, Membership
from server.services.actors import local as actor_service
from server.services.moderation import blocks
from tests.server.test_web_account import _post_form, _sign_in
from tests.support.nodes import Node

PAGE = "/associations/new"
HTML = {"Accept": "text/html"}


async def _members_may_create(node: Node) -> None:
    async with node.sessions.begin() as session:
        await blocks.set_node_policy(session, by=None, association_creators="members")


async def test_a_member_is_refused_unless_the_policy_lets_members_create(node: Node) -> None:
    await node.create_association("entraide", "Entraide")
    await node.add_member("mia", "entraide")
    assert (await _sign_in(node.client, "mia")).status == 303
    assert PAGE not in await (await node.client.get("/")).text()  # not offered
    refused = await node.client.get(PAGE, headers=HTML)
    assert refused.status == 403 and "<html" in await refused.text()
    assert (await node.client.post(PAGE, data={"slug": "x", "name": "X"}, headers=HTML)).status == 403
    await _members_may_create(node)
    assert PAGE in await (await node.client.get("/")).text()
    assert (await node.client.get(PAGE)).status == 200


async def test_the_creator_becomes_its_admin_and_lands_on_its_page(node: Node) -> None:
    await node.create_association("entraide", "Entraide")
    await node.add_member("mia", "entraide")
    await _members_may_create(node)
    assert (await _sign_in(node.client, "mia")).status == 303
    created = await _post_form(
        node.client, PAGE, PAGE, slug="jardins", name="Jardins partagés", summary="Des potagers"
    )
    assert created.status == 303 and created.headers["Location"] == "/groups/jardins"
    async with node.sessions() as session:
        group = await session.scalar(select(Actor).where(Actor.handle == "jardins", Actor.type == "Group"))
        assert group is not None and group.name == "Jardins partagés"
        role = await session.scalar(select(Membership.role).where(Membership.group_id == group.id))
        channel = await session.scalar(
            select(AuditEntry.channel)
            .where(AuditEntry.action == "association.create")
            .order_by(AuditEntry.id.desc())
            .limit(1)
        )
    assert role == "admin" and channel == "web"
    # the same slug again is a conflict, shown next to the field with what was typed
    taken = await _post_form(node.client, PAGE, PAGE, slug="jardins", name="Autres jardins")
    body = await taken.text()
    assert taken.status == 409 and 'aria-invalid="true"' in body and "Autres jardins" in body
    bad = await _post_form(node.client, PAGE, PAGE, slug="Pas Bon!", name="X")
    assert bad.status == 400 and 'id="slug-error"' in await bad.text()


async def test_a_node_admin_reaches_it_from_the_federation_page_in_french(node: Node) -> None:
    await node.create_association("entraide", "Entraide")
    await node.add_member("ana", "entraide", role="admin")
    async with node.sessions.begin() as session:
        await actor_service.set_node_admin(session, username="ana", node_admin=True, now=datetime.now(UTC))
    assert (await _sign_in(node.client, "ana")).status == 303
    assert f'href="{PAGE}"' in await (await node.client.get("/admin/federation")).text()
    page = await node.client.get(PAGE, headers={"Accept-Language": "fr"})
    assert page.status == 200 and "Créer une association" in await page.text()
