"""The node admins' federation page (``/admin/federation``), on both engines: only node admins see
it, a domain is blocked and unblocked from it, a shared list is previewed (nothing stored) then
applied exactly, bad input is refused next to its field, every change audited with ``web``."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from server.db.models import AuditEntry, DomainBlock
from server.services.actors import local as actor_service
from tests.server.test_web_account import _post_form, _sign_in
from tests.support.nodes import Node

PAGE = "/admin/federation"
CSV = (
    "#domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate\n"
    "evil.example,suspend,true,false,Spam,false\n"
    "noisy.example,silence,false,false,,false\n"
)


async def _admin(node: Node) -> None:
    await node.create_association("entraide", "Entraide")
    await node.add_member("ana", "entraide", role="admin")
    async with node.sessions.begin() as session:
        await actor_service.set_node_admin(session, username="ana", node_admin=True, now=datetime.now(UTC))
    assert (await _sign_in(node.client, "ana")).status == 303


async def _domains(node: Node) -> dict[str, str]:
    async with node.sessions() as session:
        return {r.domain: r.severity for r in await session.scalars(select(DomainBlock))}


async def test_only_node_admins_see_the_federation_page(node: Node) -> None:
    await node.create_association("entraide", "Entraide")
    await node.add_member("mia", "entraide", role="admin")  # an association's admin, not the node's
    assert (await _sign_in(node.client, "mia")).status == 303
    response = await node.client.get(PAGE, headers={"Accept": "text/html"})
    assert response.status == 403 and "<html" in await response.text()
    assert (await node.client.post(f"{PAGE}/domains", data={"domain": "evil.example"})).status == 403


async def test_a_node_admin_blocks_previews_and_applies_a_list(node: Node) -> None:
    await _admin(node)
    page = await node.client.get(PAGE)
    assert page.status == 200 and page.headers["Cache-Control"] == "private, no-store"
    response = await _post_form(
        node.client, PAGE, f"{PAGE}/domains", domain="Spam.Example", severity="silence", reject_media="1"
    )
    assert response.status == 303 and await _domains(node) == {"spam.example": "silence"}
    refused = await _post_form(node.client, PAGE, f"{PAGE}/domains", domain="ex*mple.org", severity="suspend")
    body = await refused.text()
    assert refused.status == 400 and 'aria-invalid="true"' in body and "ex*mple.org" in body
    preview = await _post_form(node.client, PAGE, f"{PAGE}/import", csv=CSV, name="shared", step="preview")
    text = await preview.text()
    assert preview.status == 200 and "evil.example" in text and "noisy.example" in text
    assert await _domains(node) == {"spam.example": "silence"}  # the preview stored nothing
    applied = await _post_form(node.client, PAGE, f"{PAGE}/import", csv=CSV, name="shared", step="apply")
    assert applied.status == 303
    assert await _domains(node) == {
        "spam.example": "silence",
        "evil.example": "suspend",
        "noisy.example": "silence",
    }
    assert not node.fed.policy.allows("evil.example")
    removed = await _post_form(node.client, PAGE, f"{PAGE}/domains/remove", domain="evil.example")
    assert removed.status == 303 and node.fed.policy.allows("evil.example")
    policy = await _post_form(
        node.client, PAGE, f"{PAGE}/policy", mode="allowlist", allowed="peer.example\n", creators="admins"
    )
    assert policy.status == 303 and not node.fed.policy.allows("noisy.example")
    async with node.sessions() as session:
        channels = {
            c
            for (c,) in (
                await session.execute(
                    select(AuditEntry.channel).where(
                        AuditEntry.action.in_(
                            ("domain.block", "domain.import", "domain.unblock", "node.policy")
                        )
                    )
                )
            ).all()
        }
    assert channels == {"web"}


async def test_a_node_admin_lifts_an_actor_block_after_confirming(node: Node) -> None:
    await _admin(node)
    spammer = "https://evil.example/users/spam"
    added = await _post_form(node.client, PAGE, f"{PAGE}/actors", actor=spammer, reason="spam")
    assert added.status == 303 and not node.fed.policy.allows_actor(spammer)
    listed = await (await node.client.get(PAGE)).text()
    assert f'action="{PAGE}/actors/remove"' in listed and f'value="{spammer}"' in listed
    # The first post asks for a confirmation and lifts nothing
    asked = await _post_form(node.client, PAGE, f"{PAGE}/actors/remove", actor=spammer)
    body = await asked.text()
    assert asked.status == 200 and 'id="confirm-actor-title"' in body and 'name="confirm" value="yes"' in body
    assert not node.fed.policy.allows_actor(spammer)
    # Confirmed, it is lifted and audited with the channel web
    lifted = await _post_form(node.client, PAGE, f"{PAGE}/actors/remove", actor=spammer, confirm="yes")
    assert lifted.status == 303 and lifted.headers["Location"] == f"{PAGE}?done=actor_unblocked"
    assert node.fed.policy.allows_actor(spammer)
    async with node.sessions() as session:
        channel = await session.scalar(select(AuditEntry.channel).where(AuditEntry.action == "actor.unblock"))
    assert channel == "web"
    # without the CSRF token, nothing happens
    forged = await node.client.post(f"{PAGE}/actors/remove", data={"actor": spammer, "confirm": "yes"})
    assert forged.status == 403
