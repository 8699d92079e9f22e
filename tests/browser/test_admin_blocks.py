"""The node admins' federation page in a real browser (Chromium, Playwright), checked by axe-core
in French and English: the page, a refused domain, the preview of a shared list, after applying it;
then (in French only) the page that creates an association, reached from it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server.services.actors import local as actor_service
from tests.browser.test_web_pages import PASSWORD, _axe, _require_tools
from tests.support.databases import SqliteTemplate
from tests.support.nodes import Node, running_node

CSV = (
    "#domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate\n"
    "evil.example,suspend,true,false,Spam,false\n"
    "ex*mple.org,suspend,false,false,,true\n"
)


async def _tour(browser: Any, node: Node, lang: str, shots: Path) -> None:
    origin = node.settings.server.origin
    context = await browser.new_context(locale=lang, bypass_csp=True)  # bypass only to inject axe
    page = await context.new_page()
    try:
        await page.goto(origin + "/admin/federation")
        await page.fill("#username", "ana")
        await page.fill("#password", PASSWORD)
        await page.press("#password", "Enter")
        assert page.url == origin + "/admin/federation"
        await _axe(page, f"federation policy ({lang})")
        await page.fill("#domain", "ex*mple.org")
        await page.click("form[action='/admin/federation/domains'] button[type=submit]")
        assert await page.get_attribute("#domain", "aria-invalid") == "true"
        await _axe(page, f"federation policy with an error ({lang})")
        await page.fill("#csv", CSV)
        await page.click("button[name=step][value=preview]")
        assert "evil.example" in await page.inner_text("#preview-title + ul")
        await _axe(page, f"import preview ({lang})")
        await page.screenshot(path=str(shots / f"federation-preview-{lang}.png"), full_page=True)
        await page.click("button[name=step][value=apply]")
        assert "evil.example" in await page.inner_text("table")
        await _axe(page, f"after the import ({lang})")
        await page.click("form[action='/admin/federation/domains/remove'] button[type=submit]")
        if lang == "fr":
            await _create_association(page, origin)
        await page.click("header button[type=submit]")  # sign out
    finally:
        await context.close()


async def _create_association(page: Any, origin: str) -> None:
    await page.click("a[href='/associations/new']")
    assert page.url == origin + "/associations/new"
    await _axe(page, "create an association (fr)")
    await page.fill("#slug", "jardins")
    await page.fill("#name", "Jardins partagés")
    await page.fill("#summary", "Des potagers")
    await page.click("form[action='/associations/new'] button[type=submit]")
    assert page.url == origin + "/groups/jardins"


async def test_the_federation_page_passes_axe_in_french_and_english(
    tmp_path: Path, sqlite_template: SqliteTemplate, shots: Path
) -> None:
    executable = _require_tools()
    from playwright.async_api import async_playwright

    async with running_node(tmp_path / "node", sqlite_template.copy_to(tmp_path)) as node:
        await node.create_association("entraide", "Entraide Lyon")
        await node.add_member("ana", "entraide", role="admin")
        async with node.sessions.begin() as session:
            await actor_service.set_node_admin(
                session, username="ana", node_admin=True, now=datetime.now(UTC)
            )
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            try:
                for lang in ("fr", "en"):
                    await _tour(browser, node, lang, shots)
            finally:
                await browser.close()
