"""Publishing in a real browser (issue 17): alice, admin of alpha, publishes an alert from the
pages and then retracts it; paul, a member, proposes a draft that alice publishes. No script runs
(the pages' CSP allows none): plain forms, POST-redirect-GET. Every new page (the manage page,
each kind's form, a form with a refusal, the resource preview, the edit form, the drafts page,
for an editor and for a member) is checked by axe in French and in English.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from server.db.models import RemoteObject
from tests.browser.test_web_pages import PASSWORD, _axe, _require_tools
from tests.support.databases import SqliteTemplate
from tests.support.nodes import Node, running_node


async def _sign_in(page: Any, origin: str, username: str) -> None:
    await page.context.clear_cookies()
    await page.goto(origin + "/login")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.press("#password", "Enter")


async def _alert_status(node: Node, name: str) -> str | None:
    async with node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.kind == "alert"))
    return (
        str(row.document.get("alertStatus")) if row is not None and row.document.get("name") == name else None
    )


async def _flow(browser: Any, node: Node, shots: Path) -> None:
    origin = node.settings.server.origin
    context = await browser.new_context(locale="fr", bypass_csp=True)  # bypass only to inject axe
    page = await context.new_page()
    try:
        await _sign_in(page, origin, "alice")
        await page.goto(origin + "/groups/alpha/manage")
        await page.click("a[href='/groups/alpha/manage/new/alert']")
        await page.fill("#field-name", "Rupture de stock")
        await page.select_option("#field-severity", "critical")
        await page.select_option("#field-category", "shortage")
        await page.fill("#field-content", "Plus d'insuline à la pharmacie centrale.")
        await page.fill("#field-area", "Lyon")
        await page.click("form[action$='/manage/new/alert'] button[value=publish]")
        assert "/objects/" in page.url and "Rupture de stock" in await page.inner_text("main")
        assert await _alert_status(node, "Rupture de stock") == "active"

        await page.goto(origin + "/groups/alpha/manage")
        await page.click("td a[href*='/manage/edit']")
        await page.click("form[action$='/manage/retract'] button")
        assert page.url.endswith("/groups/alpha/manage?done=retracted")
        assert await _alert_status(node, "Rupture de stock") == "retracted"
        await page.screenshot(path=str(shots / "manage-retracted.png"), full_page=True)

        # paul proposes a draft; alice publishes it
        await _sign_in(page, origin, "paul")
        await page.goto(origin + "/groups/alpha")
        await page.click("a[href='/groups/alpha/drafts']")
        await page.click("a[href='/groups/alpha/drafts/new/resource']")
        await page.fill("#field-name", "Guide des démarches")
        await page.fill("#field-content", "## Étapes\n\n1. Appeler\n2. Écrire")
        await page.click("form button[value=publish]")
        assert page.url.endswith("/groups/alpha/drafts?done=submitted")
        assert "Guide des démarches" in await page.inner_text("main")
        await _sign_in(page, origin, "alice")
        await page.goto(origin + "/groups/alpha/drafts")
        await page.click("form[action$='/publish'] button")
        assert "/objects/" in page.url and "Guide des démarches" in await page.inner_text("main")
        assert "Étapes" in await page.inner_text("main h2")
    finally:
        await context.close()


async def _tour(browser: Any, node: Node, lang: str, shots: Path) -> None:
    """Every new page in ``lang``, checked by axe."""
    origin = node.settings.server.origin
    context = await browser.new_context(locale=lang, bypass_csp=True)
    page = await context.new_page()
    try:
        await _sign_in(page, origin, "paul")
        await page.goto(origin + "/groups/alpha/drafts/new/proposal")
        await page.fill("#field-name", "Repas partagé ?")
        await page.fill("#field-options", "Samedi\nDimanche")
        await page.click("form button[value=publish]")
        await page.goto(origin + "/groups/alpha/drafts")
        await _axe(page, f"a member's drafts ({lang})")
        await _sign_in(page, origin, "alice")
        for path, name in (
            ("/groups/alpha/manage", "manage"),
            ("/groups/alpha/manage/new/alert", "new-alert"),
            ("/groups/alpha/manage/new/resource", "new-resource"),
            ("/groups/alpha/manage/new/proposal", "new-proposal"),
            ("/groups/alpha/drafts", "drafts"),
        ):
            await page.goto(origin + path)
            assert await page.get_attribute("html", "lang") == lang
            await _axe(page, f"{name} ({lang})")
            await page.screenshot(path=str(shots / f"{name}-{lang}.png"), full_page=True)
        # a refusal next to its field, the input kept
        await page.goto(origin + "/groups/alpha/manage/new/proposal")
        await page.fill("#field-name", "Une seule option")
        await page.fill("#field-options", "Oui")
        await page.click("form button[value=publish]")
        assert await page.get_attribute("#field-options", "aria-invalid") == "true"
        assert await page.input_value("#field-name") == "Une seule option"
        await _axe(page, f"a form with a refusal ({lang})")
        # the resource preview, rendered by the server
        await page.goto(origin + "/groups/alpha/manage/new/resource")
        await page.fill("#field-name", "Aperçu")
        await page.fill("#field-content", "# Titre\n\n**gras**")
        await page.click("form button[value=preview]")
        assert await page.inner_text("#preview-title + .prose strong") == "gras"
        await _axe(page, f"a resource preview ({lang})")
        await page.screenshot(path=str(shots / f"resource-preview-{lang}.png"), full_page=True)
        await page.goto(origin + "/groups/alpha/manage")
        await page.click("td a[href*='/manage/edit']")
        await _axe(page, f"the edit form ({lang})")
    finally:
        await context.close()


async def test_an_admin_publishes_and_retracts_an_alert_and_publishes_a_members_draft(
    tmp_path: Path, sqlite_template: SqliteTemplate, shots: Path
) -> None:
    executable = _require_tools()
    from playwright.async_api import async_playwright

    async with running_node(tmp_path / "a", sqlite_template.copy_to(tmp_path / "db-a")) as node:
        await node.create_association("alpha", "Alpha", "Entraide entre patients à Lyon.")
        await node.add_member("alice", "alpha", role="admin")
        await node.add_member("paul", "alpha")
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            try:
                await _flow(browser, node, shots)
                for lang in ("fr", "en"):
                    await _tour(browser, node, lang, shots)
            finally:
                await browser.close()
