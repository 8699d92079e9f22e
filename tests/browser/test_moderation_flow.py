"""Moderation reports in a real browser (issue 17): mia, a member, reports two posts from their pages;
alice, an admin of the association (and a node admin), dismisses one report and removes the other's post
from the queue, then reads the audit log. The report form, the queue and the audit log pass axe, in
French and in English."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from server.db.models import Account, Actor
from tests.browser.test_web_pages import PASSWORD, _axe, _require_tools
from tests.support.databases import SqliteTemplate
from tests.support.nodes import Node, running_node


async def _sign_in(page: Any, origin: str, username: str) -> None:
    await page.goto(origin + "/login")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.press("#password", "Enter")


async def _report(page: Any, post: str, comment: str) -> None:
    await page.goto(post)
    await page.click("a[href^='/report?target=']")
    await page.fill("#report-comment", comment)
    await page.click("form[action='/report'] button[type=submit]")
    assert "done=1" in page.url and await page.is_visible("p.notice")


async def _scene(node: Node) -> list[str]:
    await node.create_association("demo", "Démo")
    await node.add_member("alice", "demo", role="admin")
    await node.add_member("mia", "demo")
    async with node.sessions.begin() as session:
        alice = await session.scalar(select(Actor).where(Actor.handle == "alice", Actor.local.is_(True)))
        account = await session.get(Account, alice.id)  # type: ignore[union-attr]
        assert account is not None
        account.is_node_admin = True
    auth = {"Authorization": f"Bearer {await node.token('alice')}"}
    posts = []
    for text in ("Réunion jeudi", "Remède miracle"):
        response = await node.client.post(
            "/api/associations/demo/posts", json={"content": f"<p>{text}</p>"}, headers=auth
        )
        assert response.status == 201, await response.text()
        posts.append(str((await response.json())["id"]))
    return posts


async def _moderate(browser: Any, node: Node, posts: list[str], shots: Path) -> None:
    origin = node.settings.server.origin
    context = await browser.new_context(locale="fr", bypass_csp=True)  # bypass only to inject axe
    page = await context.new_page()
    try:
        await _sign_in(page, origin, "mia")
        await page.goto(posts[0])
        await page.click("a[href^='/report?target=']")
        await _axe(page, "report form (fr)")
        await _report(page, posts[0], "Hors sujet")
        await _report(page, posts[1], "Conseil médical dangereux")
        await page.click("header button[type=submit]")  # sign out

        await _sign_in(page, origin, "alice")
        await page.goto(origin + "/account")
        await page.click("a[href='/moderation']")
        await page.click("nav.tabs a[href='/moderation?association=demo']")
        await _axe(page, "report queue (fr)")
        await page.screenshot(path=str(shots / "moderation-fr.png"), full_page=True)
        cards = page.locator("ol.reports > li")
        assert await cards.count() == 2
        dismissed = cards.filter(has_text="Hors sujet")
        await dismissed.locator("select").select_option("dismiss")
        await dismissed.locator("textarea").fill("Rien à redire")
        await dismissed.locator("button[type=submit]").click()
        assert page.url.endswith("done=dismiss") and await page.is_visible("p.notice")
        removed = page.locator("ol.reports > li").filter(has_text="Conseil médical dangereux")
        await removed.locator("select").select_option("remove")
        await removed.locator("button[type=submit]").click()
        assert page.url.endswith("done=remove")
        assert await page.locator("ol.reports > li").count() == 0
        await _axe(page, "empty report queue with a notice (fr)")
        response = await page.goto(posts[1])
        assert response is not None and response.status == 410
        response = await page.goto(posts[0])
        assert response is not None and response.status == 200
        await page.goto(origin + "/moderation/audit")
        text = await page.inner_text("main")
        assert "report.dismiss" in text and "report.remove" in text and "web" in text
        await _axe(page, "audit log (fr)")
        await page.screenshot(path=str(shots / "audit-fr.png"), full_page=True)
    finally:
        await context.close()


async def _tour(browser: Any, node: Node) -> None:
    """The queue's tabs and the audit logs in English, checked by axe."""
    origin = node.settings.server.origin
    context = await browser.new_context(locale="en", bypass_csp=True)
    page = await context.new_page()
    try:
        await _sign_in(page, origin, "alice")
        for path in (
            "/moderation",
            "/moderation?association=demo&state=resolved",
            "/moderation?association=demo&state=dismissed",
            "/moderation/audit",
            "/moderation/audit?association=demo",
        ):
            await page.goto(origin + path)
            assert await page.get_attribute("html", "lang") == "en"
            await _axe(page, f"{path} (en)")
        await page.goto(origin + "/moderation?association=demo&state=dismissed")
        assert "Rien à redire" in await page.inner_text("main")
    finally:
        await context.close()


async def test_a_member_reports_two_posts_and_a_moderator_dismisses_one_and_removes_the_other(
    tmp_path: Path, sqlite_template: SqliteTemplate, shots: Path
) -> None:
    executable = _require_tools()
    from playwright.async_api import async_playwright

    async with running_node(tmp_path / "node", sqlite_template.copy_to(tmp_path / "db")) as node:
        posts = await _scene(node)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            try:
                await _moderate(browser, node, posts, shots)
                await _tour(browser, node)
            finally:
                await browser.close()
