"""Events in a real browser (issue 18): alice, admin of alpha, publishes a restricted event from
the form; paul, a member, finds it in the node's agenda and asks to take part with a message;
alice accepts him from the participant list; paul then sees the event in the association's agenda
and that he takes part. No script runs (plain forms, POST-redirect-GET). The new pages (the event
form, the agendas, the event page, the participant list) are checked by axe in French; the
English rendering is checked by the HTTP tests (tests/server/test_web_events.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from server.db.models import EventParticipant
from tests.browser.test_publish_flow import _sign_in
from tests.browser.test_web_pages import _axe, _require_tools
from tests.support.databases import SqliteTemplate
from tests.support.nodes import Node, running_node

START = (datetime.now(ZoneInfo("Europe/Paris")) + timedelta(days=20)).replace(hour=18, minute=0)


async def _states(node: Node) -> list[str]:
    async with node.sessions() as session:
        return list(await session.scalars(select(EventParticipant.state)))


async def _flow(browser: Any, node: Node, shots: Path) -> None:
    origin = node.settings.server.origin
    context = await browser.new_context(locale="fr", bypass_csp=True)  # bypass only to inject axe
    page = await context.new_page()
    try:
        await _sign_in(page, origin, "alice")
        await page.goto(origin + "/groups/alpha/manage")
        await page.click("a[href='/groups/alpha/manage/new/event']")
        await _axe(page, "the event form")
        await page.fill("#field-name", "Café des aidants")
        await page.fill("#field-content", "Un temps d'échange **entre aidants**.")
        await page.fill("#field-startTime", START.strftime("%Y-%m-%dT%H:%M"))
        await page.fill("#field-endTime", (START + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))
        await page.fill("#field-placeName", "Maison des usagers")
        await page.fill("#field-addressLocality", "Lyon")
        await page.select_option("#field-joinMode", "restricted")
        await page.fill("#field-maximumAttendeeCapacity", "12")
        await page.click("form[action$='/manage/new/event'] button[value=publish]")
        assert "/objects/" in page.url and "Café des aidants" in await page.inner_text("main h1")
        event_url = page.url
        assert "Europe/Paris" in await page.inner_text("main dl")
        await page.screenshot(path=str(shots / "event-organiser-fr.png"), full_page=True)

        await _sign_in(page, origin, "paul")
        await page.goto(origin + "/events")
        await _axe(page, "the node's agenda")
        await page.click("text=Café des aidants")
        assert page.url == event_url
        await _axe(page, "an event page, for a member")
        await page.fill("#participation-message", "Je viendrai avec ma mère.")
        await page.click("form[action$='/participation'] button")
        assert page.url.endswith("?participation=pending")
        assert "Demande en attente" in await page.inner_text("main")
        assert await _states(node) == ["pending"]

        await _sign_in(page, origin, "alice")
        await page.goto(event_url)
        await page.click("a[href^='/groups/alpha/events/participants']")
        assert "Je viendrai avec ma mère." in await page.inner_text("main table")
        await _axe(page, "the participant list")
        await page.click("button[value=accept]")
        assert "decided=accepted" in page.url and await _states(node) == ["accepted"]
        await page.screenshot(path=str(shots / "event-participants-fr.png"), full_page=True)

        await _sign_in(page, origin, "paul")
        await page.goto(origin + "/groups/alpha")
        await page.click("a[href='/groups/alpha/events']")
        assert "Café des aidants" in await page.inner_text("main")
        assert "Vous participez" in await page.inner_text("main .cards")
        await _axe(page, "an association's agenda")
        await page.click("text=Café des aidants")
        assert "Vous participez." in await page.inner_text("main")
        await page.screenshot(path=str(shots / "event-member-fr.png"), full_page=True)
    finally:
        await context.close()


async def test_an_admin_publishes_a_restricted_event_and_accepts_a_member(
    tmp_path: Path, sqlite_template: SqliteTemplate, shots: Path
) -> None:
    executable = _require_tools()
    from playwright.async_api import async_playwright

    async with running_node(tmp_path / "a", sqlite_template.copy_to(tmp_path / "db-a")) as node:
        await node.create_association("alpha", "Alpha", "Entraide entre aidants à Lyon.")
        await node.add_member("alice", "alpha", role="admin")
        await node.add_member("paul", "alpha")
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            try:
                await _flow(browser, node, shots)
            finally:
                await browser.close()
