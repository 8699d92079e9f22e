"""The members pages in a real browser (issue 17): alice, admin of demo, creates an invitation link;
bob, a member of another association of this node, opens it, joins at once and appears in demo's
member directory; alice refuses lou's pending request with a reason, which the audit log keeps (and a
peer would get in the ``Reject``), then suspends bob once she confirmed it on its page. Every new
page is checked by axe, in French during the flow and again in English, with a field error shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from server.db.models import AuditEntry
from tests.browser.test_web_pages import PASSWORD, _axe, _require_tools
from tests.server.test_web_follow_requests import PEER_HOST, _follow
from tests.support.databases import SqliteTemplate
from tests.support.nodes import Node, running_node


async def _signed_in(browser: Any, node: Node, username: str, lang: str) -> tuple[Any, Any]:
    context = await browser.new_context(locale=lang, bypass_csp=True)  # bypass only to inject axe
    page = await context.new_page()
    await page.goto(node.settings.server.origin + "/login")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.press("#password", "Enter")
    await page.wait_for_url(node.settings.server.origin + "/")
    return context, page


async def _flow(browser: Any, node: Node, shots: Path) -> None:
    origin = node.settings.server.origin
    alice_context, alice = await _signed_in(browser, node, "alice", "fr")
    bob_context, bob = await _signed_in(browser, node, "bob", "fr")
    try:
        # alice creates a link for one person, valid two days
        await alice.goto(origin + "/groups/demo")
        await alice.click("a[href='/groups/demo/admin/invitations']")
        await _axe(alice, "invitations (fr)")
        await alice.fill("#days", "2")
        await alice.fill("#uses", "1")
        await alice.click("form[action='/groups/demo/admin/invitations'] button[type=submit]")
        link = await alice.input_value("#invitation-link")
        assert link.startswith(origin + "/invite/")
        await _axe(alice, "invitation created (fr)")
        await alice.screenshot(path=str(shots / "invitation-created-fr.png"), full_page=True)

        # bob opens it, joins, and is in the directory
        response = await bob.goto(link)
        assert response.status == 200 and "Démo" in await bob.inner_text("h1")
        await _axe(bob, "invitation page (fr)")
        await bob.click(f"form[action='{link.removeprefix(origin)}'] button[type=submit]")
        assert bob.url == origin + "/groups/demo/directory?done=joined"
        assert "@bob@" in await bob.inner_text("main")
        await _axe(bob, "member directory (fr)")
        await bob.screenshot(path=str(shots / "directory-fr.png"), full_page=True)
        # the link is used up: opened again by someone else it says so
        lou_context, lou = await _signed_in(browser, node, "lou", "fr")
        response = await lou.goto(link)
        assert response.status == 410 and "Demandez un nouveau lien" in await lou.inner_text("main")
        await _axe(lou, "a used-up invitation (fr)")
        await lou_context.close()

        # alice refuses lou's request with a reason
        await alice.goto(origin + "/groups/demo/admin/members")
        assert "@lou@" in await alice.inner_text("#pending-title ~ ul")
        await _axe(alice, "members page (fr)")
        await alice.fill("#reason-1", "Réservé aux patients suivis à Lyon.")
        await alice.click("form[action='/groups/demo/admin/members/refuse'] button[type=submit]")
        assert alice.url == origin + "/groups/demo/admin/members?done=refused"
        assert "@lou@" not in await alice.inner_text("main") and "@bob@" in await alice.inner_text("main")
        await _axe(alice, "members page after a refusal (fr)")
        await alice.screenshot(path=str(shots / "members-fr.png"), full_page=True)

        # alice suspends bob: a page to confirm first (a box to tick), then he is marked suspended
        await alice.click("form[action='/groups/demo/admin/members/suspend'] button[type=submit]")
        assert "/groups/demo/admin/members/suspend?member=" in alice.url
        await _axe(alice, "suspension to confirm (fr)")
        await alice.fill("#reason", "Une semaine de calme.")
        await alice.check("#confirm")
        await alice.click("form[action='/groups/demo/admin/members/suspend'] button[type=submit]")
        assert alice.url == origin + "/groups/demo/admin/members?done=suspended"
        assert "Une semaine de calme." in await alice.inner_text("main")
        await _axe(alice, "members page with a suspended member (fr)")
    finally:
        await alice_context.close()
        await bob_context.close()
    async with node.sessions() as session:
        refused = await session.scalar(select(AuditEntry).where(AuditEntry.action == "member.refuse"))
    assert refused is not None and refused.channel == "web"
    assert refused.detail["reason"] == "Réservé aux patients suivis à Lyon."
    async with node.sessions() as session:
        suspended = await session.scalar(select(AuditEntry).where(AuditEntry.action == "member.suspend"))
    assert suspended is not None and suspended.channel == "web"
    assert suspended.detail["reason"] == "Une semaine de calme."


async def _tour(browser: Any, node: Node, lang: str) -> None:
    """The new pages again in ``lang``, one with a field error, and the account's setting."""
    origin = node.settings.server.origin
    context, page = await _signed_in(browser, node, "alice", lang)
    try:
        for path, name in (
            ("/groups/demo/admin/members", "members page"),
            ("/groups/demo/admin/invitations", "invitations"),
            ("/groups/demo/directory", "member directory"),
            ("/groups/demo/admin/follow-requests", "the association's follow requests"),
            ("/account/follow-requests", "follow requests and their setting"),
            ("/groups/demo/admin/settings", "the association's settings"),
        ):
            await page.goto(origin + path)
            assert await page.get_attribute("html", "lang") == lang
            await _axe(page, f"{name} ({lang})")
        # a number out of range (the browser's own check set aside) is said next to its field
        await page.goto(origin + "/groups/demo/admin/invitations")
        await page.evaluate("document.querySelector('form[action$=\"/invitations\"]').noValidate = true")
        await page.fill("#days", "0")
        await page.click("form[action='/groups/demo/admin/invitations'] button[type=submit]")
        assert await page.get_attribute("#days", "aria-invalid") == "true"
        await _axe(page, f"invitations with an error ({lang})")
        # the settings page with a field error (a handle typed wrong: nothing deleted)
        await page.goto(origin + "/groups/demo/admin/settings")
        await page.fill("#confirm", "pas-demo")
        await page.click("form[action='/groups/demo/admin/settings/delete'] button[type=submit]")
        assert await page.get_attribute("#confirm", "aria-invalid") == "true"
        await _axe(page, f"settings with an error ({lang})")
        # the directory setting on the account page
        await page.goto(origin + "/account")
        await page.check("#directory-hidden")
        await page.click("form[action='/account/directory'] button[type=submit]")
        assert page.url == origin + "/account?done=directory"
        assert await page.is_checked("#directory-hidden")
        await _axe(page, f"account with the directory setting ({lang})")
        await page.check("#directory-listed")
        await page.click("form[action='/account/directory'] button[type=submit]")
    finally:
        await context.close()


async def test_an_admin_invites_a_member_who_joins_and_refuses_a_request_with_a_reason(
    tmp_path: Path, sqlite_template: SqliteTemplate, shots: Path
) -> None:
    executable = _require_tools()
    from playwright.async_api import async_playwright

    async with running_node(tmp_path / "node", sqlite_template.copy_to(tmp_path / "db")) as node:
        await node.create_association("demo", "Démo", "Entraide entre patients.")
        await node.configure("demo", join_policy="approval")
        await node.add_member("alice", "demo", role="admin")
        await node.create_association("other", "Autre")
        await node.add_member("bob", "other")
        await node.add_member("lou", "other")
        response = await node.client.post(
            "/api/memberships",
            json={"association": node.uris.group("demo")},
            headers={"Authorization": f"Bearer {await node.token('lou')}"},
        )
        assert response.status == 202, await response.text()
        for followed, kind in (("demo", "Group"), ("alice", "Person")):  # listed on the tour's pages
            await _follow(node, f"http://{PEER_HOST}/users/zoe", followed, kind)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            try:
                await _flow(browser, node, shots)
                await _tour(browser, node, "en")
            finally:
                await browser.close()
