"""The two-node flow in a real browser (issue 16): ben, a member on node B, signs in on B's pages,
finds the association alpha of node A by its handle, follows and joins it, votes on one of its
proposals and replies to one of its posts from B's pages, and sees the result: the tally A sends
back on B's page, his reply on A's page. Both nodes are real servers on 127.0.0.1; their workers
deliver as in production.

Then every new page (timeline, notifications, follow with an error and with a found account,
follows and memberships, a peer's object read here) is checked by axe in French and in English,
and a visitor switches the language without script.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from federation.types import AS_PUBLIC
from server.db.models import RemoteObject
from tests.browser.test_web_pages import PASSWORD, _axe, _require_tools
from tests.support.databases import SqliteTemplate
from tests.support.nodes import Node, running_node, wait_until


async def _stored(node: Node, iri: str, check: Any = lambda doc: True) -> bool:
    async with node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
    return row is not None and check(row.document)


async def _publish(a: Node, token: str) -> tuple[str, str]:
    """A proposal and a post of alpha, published once ben follows it (so they reach B)."""
    auth = {"Authorization": f"Bearer {token}"}
    end = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0).isoformat()
    proposal = {"name": "Adopter la charte ?", "oneOf": ["Oui", "Non"], "endTime": end}
    response = await a.client.post("/api/associations/alpha/proposals", json=proposal, headers=auth)
    assert response.status == 201, await response.text()
    question = str((await response.json())["id"])
    post = await a.post_outbox(
        "/groups/alpha", token, {"to": [AS_PUBLIC], "type": "Note", "content": "<p>Réunion jeudi à 18 h.</p>"}
    )
    return question, str(post["object"])


async def _reload_until(page: Any, text: str, what: str) -> None:
    """Load the page again until ``text`` shows (what the peer sends arrives in the background)."""
    url = page.url.split("#")[0]

    async def shown() -> bool:
        await page.goto(url)
        return text in await page.inner_text("main")

    # bounded; a delivery between the nodes waits for their workers, slow on a loaded machine
    await wait_until(shown, timeout_s=90, interval_s=0.3, what=what)


async def _flow(browser: Any, a: Node, b: Node, shots: Path) -> None:
    origin = b.settings.server.origin
    alice = await a.token("alice")
    context = await browser.new_context(locale="fr", bypass_csp=True)  # bypass only to inject axe
    page = await context.new_page()
    try:
        await page.goto(origin + "/timeline")
        assert "/login?next=/timeline" in page.url
        await page.fill("#username", "ben")
        await page.fill("#password", PASSWORD)
        await page.press("#password", "Enter")
        assert page.url == origin + "/timeline"
        # ben finds alpha by its handle on B's pages, follows it and joins it
        await page.click("a[href='/follow']")
        await page.fill("#address", f"@alpha@{a.uris.host}")
        await page.click("form[action='/follow'] button[type=submit]")
        assert "Alpha" in await page.inner_text("#found-title")
        assert "Entraide entre patients" in await page.inner_text("main")
        await page.click("form[action='/follow/actor'] button[type=submit]")
        assert page.url.endswith("/following?done=follow")
        await page.goto(origin + f"/follow?address=@alpha@{a.uris.host}")
        await page.click("form[action='/follow'] button[type=submit]")
        await page.click("form[action='/follow/join'] button[type=submit]")
        assert page.url.endswith("/following?done=join")
        await _reload_until(page, "accepté", "ben's follow of alpha accepted")
        await _reload_until(page, "membre", "ben's membership of alpha accepted")

        # alpha publishes; B receives it; ben reads it on his timeline, votes and replies
        question, post = await _publish(a, alice)
        await wait_until(lambda: _stored(b, question), what="B receives the proposal")
        await wait_until(lambda: _stored(b, post), what="B receives the post")
        await page.goto(origin + "/timeline?kind=proposal")
        await page.click("text=Adopter la charte ?")
        assert re.search(r"/read/\d+$", page.url)
        await page.get_by_label("Oui", exact=True).check()
        await page.click("form[action$='/vote'] button[type=submit]")
        assert page.url.endswith("?voted=1")
        await wait_until(
            lambda: _stored(a, question, lambda doc: doc.get("votersCount") == 1), what="A counts the vote"
        )

        voted_url = page.url

        async def tallied() -> bool:  # A pushes the tally back to its voters (Update{Question})
            await page.goto(voted_url)
            rows = await page.eval_on_selector_all("tbody tr", "rows => rows.map(r => r.innerText)")
            return [row.split() for row in rows] == [["Oui", "1"], ["Non", "0"]]

        await wait_until(tallied, timeout_s=90, interval_s=0.3, what="the tally shown on B")
        await page.screenshot(path=str(shots / "peer-proposal-voted.png"), full_page=True)

        await page.goto(origin + "/timeline?kind=post")
        await page.click("text=Réunion jeudi")
        await page.fill("#reply-content", "J'y serai, merci !")
        await page.click("form[action$='/reply'] button[type=submit]")
        assert "J'y serai, merci !" in await page.inner_text("#thread-title ~ ol")
        await page.goto(post)  # on A's own page, the reply from B is in the thread
        await _reload_until(page, "J'y serai, merci !", "A shows the reply from B")
    finally:
        await context.close()


async def _tour(browser: Any, a: Node, b: Node, lang: str, shots: Path) -> None:
    """Every new page in ``lang``, checked by axe, with screenshots."""
    origin = b.settings.server.origin
    context = await browser.new_context(locale=lang, bypass_csp=True)
    page = await context.new_page()
    try:
        await page.goto(origin + "/login")
        await page.fill("#username", "ben")
        await page.fill("#password", PASSWORD)
        await page.press("#password", "Enter")
        for path, name in (
            ("/timeline", "timeline"),
            ("/timeline?kind=alert", "timeline-alerts"),
            ("/notifications", "notifications"),
            ("/following", "following"),
        ):
            await page.goto(origin + path)
            assert await page.get_attribute("html", "lang") == lang
            await _axe(page, f"{name} ({lang})")
            await page.screenshot(path=str(shots / f"{name}-{lang}.png"), full_page=True)
        # the French tour comes first: ben's notifications are unread until he marks them read
        assert await page.is_visible("header .count") == (lang == "fr"), await page.inner_text("header")
        await page.goto(origin + "/notifications")
        assert "Alpha" in await page.inner_text("main")  # ben's membership of alpha, accepted
        await page.click("form[action='/notifications/read'] button[type=submit]")
        assert not await page.is_visible("header .count")
        await _axe(page, f"notifications, all read ({lang})")
        await page.goto(origin + "/follow")
        await page.fill("#address", "pas une adresse")
        await page.click("form[action='/follow'] button[type=submit]")
        assert await page.get_attribute("#address", "aria-invalid") == "true"
        assert await page.input_value("#address") == "pas une adresse"
        await _axe(page, f"follow with an error ({lang})")
        await page.focus("#address")
        assert await page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
        await page.fill("#address", f"alpha@{a.uris.host}")
        await page.click("form[action='/follow'] button[type=submit]")
        await _axe(page, f"follow with a found account ({lang})")
        await page.screenshot(path=str(shots / f"follow-{lang}.png"), full_page=True)
        await page.goto(origin + "/timeline?kind=proposal")
        await page.click("ul.cards a")
        await _axe(page, f"a peer's proposal read here ({lang})")
        await page.screenshot(path=str(shots / f"peer-proposal-{lang}.png"), full_page=True)
        await page.click("header button[type=submit]")  # sign out
        # a visitor switches the language with a link (no script), and the choice stays
        other = "en" if lang == "fr" else "fr"
        await page.goto(origin + "/")
        await page.click(f"header .languages a[lang='{other}']")
        assert page.url == origin + "/"
        assert await page.get_attribute("html", "lang") == other
        await page.goto(origin + "/login")
        assert await page.get_attribute("html", "lang") == other
        await _axe(page, f"sign-in after switching to {other}")
    finally:
        await context.close()


async def test_a_member_of_node_b_follows_joins_votes_and_replies_on_node_a(
    tmp_path: Path, sqlite_template: SqliteTemplate, shots: Path
) -> None:
    executable = _require_tools()
    from playwright.async_api import async_playwright

    async with (
        running_node(tmp_path / "a", sqlite_template.copy_to(tmp_path / "db-a")) as a,
        running_node(tmp_path / "b", sqlite_template.copy_to(tmp_path / "db-b")) as b,
    ):
        await a.create_association("alpha", "Alpha", "Entraide entre patients à Lyon.")
        await a.configure("alpha", join_policy="open")
        await a.add_member("alice", "alpha", role="admin")
        await b.create_association("beta", "Beta")
        await b.add_member("ben", "beta")
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            try:
                await _flow(browser, a, b, shots)
                for lang in ("fr", "en"):
                    await _tour(browser, a, b, lang, shots)
            finally:
                await browser.close()
