"""The web pages in a real browser: Chromium from Debian's packages driven by Playwright, axe-core
(npm) injected into every page, in French and in English, on a real node.

One browser for the test, flows chained, so the whole costs a few seconds. Skipped with a message
when Chromium is absent locally; under CI (``CI=true``) its absence fails the test instead.
Screenshots go to ``$ENTRAIDE_SCREENSHOTS`` when set (the README's come from there), else to
the test's temporary directory.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.server.test_media import png
from tests.support.databases import SqliteTemplate
from tests.support.nodes import Node, running_node

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PASSWORD = "correct horse battery"
LICENSE = "https://creativecommons.org/licenses/by/4.0/"


def _require_tools() -> str:
    missing = [what for what, ok in (("chromium", CHROMIUM), ("axe-core (npm ci)", AXE.exists())) if not ok]
    if missing:
        message = f"browser tests need {', '.join(missing)} (deploy/scripts/test.sh installs them under CI)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    assert CHROMIUM is not None
    return CHROMIUM


async def _axe(page: Any, what: str) -> None:
    """Zero axe-core violations (WCAG 2.1 A and AA rules) on the page as it is now."""
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        "async () => await axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})"
    )
    problems = [
        f"{v['id']}: {v['help']} at {[n['target'] for n in v['nodes']][:3]}" for v in result["violations"]
    ]
    assert not problems, f"axe on {what}: {problems}"


async def _publish(node: Node) -> list[str]:
    """An alert, a Markdown resource edited once, and a proposal, by demo's admin: their IRIs."""
    token = await node.token("alice")
    auth = {"Authorization": f"Bearer {token}"}
    end = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0).isoformat()
    bodies = {
        "alerts": {
            "name": "Pénurie",
            "content": "<p>Plus de stock.</p>",
            "severity": "critical",
            "category": "shortage",
        },
        "resources": {
            "name": "Guide",
            "content": "# Guide\n\nPremière ligne\n\n* un point",
            "license": LICENSE,
        },
        "proposals": {"name": "Adopter la charte ?", "oneOf": ["Oui", "Non"], "endTime": end},
    }
    iris = []
    for path, body in bodies.items():
        response = await node.client.post(f"/api/associations/entraide/{path}", json=body, headers=auth)
        assert response.status == 201, await response.text()
        iris.append(str((await response.json())["id"]))
    edit = {"content": "# Guide\n\nLigne revue\n\n* un point"}
    response = await node.client.patch("/api/objects", params={"iri": iris[1]}, json=edit, headers=auth)
    assert response.status == 200, await response.text()
    return iris


async def _tour(browser: Any, node: Node, lang: str, shots: Path, objects: list[str]) -> None:
    """Every page a visitor and a signed-in member see, checked by axe, with keyboard use."""
    origin = node.settings.server.origin
    context = await browser.new_context(locale=lang, bypass_csp=True)  # bypass only to inject axe
    page = await context.new_page()
    try:
        await page.goto(origin + "/")
        assert await page.get_attribute("html", "lang") == lang
        await _axe(page, f"home ({lang})")
        await page.keyboard.press("Tab")  # the first stop is the skip link, visibly focused
        assert await page.evaluate("document.activeElement.className") == "skip"
        assert await page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
        await page.screenshot(path=str(shots / f"home-{lang}.png"), full_page=True)
        await page.goto(origin + "/groups/entraide")
        await _axe(page, f"association ({lang})")
        await page.screenshot(path=str(shots / f"association-{lang}.png"), full_page=True)
        for iri, name in zip(objects, ("alert", "resource", "proposal"), strict=True):
            await page.goto(iri)
            await _axe(page, f"{name} ({lang})")
            await page.screenshot(path=str(shots / f"{name}-{lang}.png"), full_page=True)

        await page.goto(origin + "/account")  # members only: to the sign-in page, coming back after
        assert page.url.endswith("/login?next=/account")
        await page.fill("#username", "alice")
        await page.fill("#password", "wrong password")
        await page.click("button[type=submit]")
        assert await page.input_value("#username") == "alice"
        await _axe(page, f"sign-in with an error ({lang})")
        await page.screenshot(path=str(shots / f"login-error-{lang}.png"))
        await page.fill("#password", PASSWORD)
        await page.press("#password", "Enter")
        assert page.url == origin + "/account"
        assert "@alice" in await page.inner_text("header")
        await _axe(page, f"account ({lang})")
        await page.fill("#current_password", "nope")
        await page.fill("#new_password", "short")
        await page.fill("#confirm", "short")
        await page.click("#password-title ~ form button[type=submit]")
        assert await page.get_attribute("#current_password", "aria-invalid") == "true"
        await _axe(page, f"account with an error ({lang})")
        await page.screenshot(path=str(shots / f"account-{lang}.png"), full_page=True)

        await page.goto(objects[2])  # a proposal: vote, then the counts
        await _axe(page, f"proposal with its vote form ({lang})")
        await page.click("#choice-1")
        await page.click("form[action$='/vote'] button[type=submit]")
        if lang == "fr":
            assert page.url.endswith("?voted=1")
            await _axe(page, f"proposal after a vote ({lang})")
        else:  # the same account voted in the French tour: refused, said next to the options
            assert await page.is_visible("#choice-error")
            await _axe(page, f"proposal with a refused vote ({lang})")
        await page.goto(objects[0])  # an alert: reply
        await page.fill("#reply-content", f"Vu aussi ({lang})")
        await page.click("form[action$='/reply'] button[type=submit]")
        assert f"Vu aussi ({lang})" in await page.inner_text("main")
        await _axe(page, f"alert with a reply ({lang})")
        await page.goto(origin + "/account/tokens")
        await page.fill("#label", "script")
        await page.click("form[action='/account/tokens'] button[type=submit]")
        assert "ent_" in await page.inner_text("code.secret")
        await _axe(page, f"tokens ({lang})")
        await page.goto(origin + "/account/sessions")
        await _axe(page, f"sessions ({lang})")
        await page.goto(origin + "/objects/" + "0" * 32)
        await _axe(page, f"error page ({lang})")
        await page.click("header button[type=submit]")  # sign out
        assert "@alice" not in await page.inner_text("header")
    finally:
        await context.close()


async def test_pages_pass_axe_in_french_and_english(
    tmp_path: Path, sqlite_template: SqliteTemplate, shots: Path
) -> None:
    executable = _require_tools()
    from playwright.async_api import async_playwright

    async with running_node(tmp_path / "node", sqlite_template.copy_to(tmp_path)) as node:
        await node.create_association("entraide", "Entraide Lyon", "Entraide entre patients à Lyon.")
        await node.add_member("alice", "entraide", role="admin")
        objects = await _publish(node)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            try:
                for lang in ("fr", "en"):
                    await _tour(browser, node, lang, shots, objects)
            finally:
                await browser.close()


# --- profile, discoverability and account deletion (issue 16, their data, their rights) -----------


async def _profile_and_deletion(browser: Any, node: Node, lang: str, username: str, shots: Path) -> None:
    """A member edits the profile (an error first), opts in to discovery, then deletes the account;
    every state of the page passes axe, errors are tied to their fields and the input is kept."""
    origin = node.settings.server.origin
    context = await browser.new_context(locale=lang, bypass_csp=True)  # bypass only to inject axe
    page = await context.new_page()
    try:
        await page.goto(origin + "/login")
        await page.fill("#username", username)
        await page.fill("#password", PASSWORD)
        await page.press("#password", "Enter")
        await page.goto(origin + "/account")
        long_name = "N" * 101
        await page.fill("#name", long_name)
        await page.fill("#summary", "Bénévole depuis 2019.")
        await page.click("form[action='/account/profile'] button[type=submit]")
        assert await page.get_attribute("#name", "aria-invalid") == "true"
        assert await page.input_value("#name") == long_name
        assert await page.input_value("#summary") == "Bénévole depuis 2019."
        await _axe(page, f"profile with an error ({lang})")
        await page.fill("#name", f"Membre {lang}")
        await page.click("form[action='/account/profile'] button[type=submit]")
        assert page.url.endswith("/account?done=profile")
        assert await page.is_visible("p.notice")
        await _axe(page, f"profile saved ({lang})")
        # The avatar: a file that is not an image is refused next to the field, then a real PNG.
        not_an_image = {"name": "me.png", "mimeType": "image/png", "buffer": b"not an image"}
        await page.set_input_files("#avatar", not_an_image)
        await page.click("form[action='/account/avatar'] button[type=submit]")
        assert await page.get_attribute("#avatar", "aria-invalid") == "true"
        assert await page.is_visible("#avatar-error")
        await _axe(page, f"avatar with an error ({lang})")
        image = {"name": "me.png", "mimeType": "image/png", "buffer": png(8, 8)}
        await page.set_input_files("#avatar", image)
        await page.click("form[action='/account/avatar'] button[type=submit]")
        assert page.url.endswith("/account?done=avatar")
        # the click returns once the page is there, not its images: wait until the avatar is loaded
        await page.wait_for_function("document.querySelector('img.avatar')?.complete === true")
        assert await page.evaluate("document.querySelector('img.avatar').naturalWidth") == 8
        await _axe(page, f"avatar saved ({lang})")
        await page.check("#discoverable-yes")
        await page.click("form[action='/account/discoverable'] button[type=submit]")
        assert page.url.endswith("/account?done=discoverable")
        assert await page.is_checked("#discoverable-yes")
        await page.goto(origin + f"/users/{username}")
        assert f"Membre {lang}" in await page.inner_text("h1")
        assert await page.get_attribute("header.actor img.avatar", "alt") == ""
        await _axe(page, f"profile page ({lang})")
        await page.goto(origin + "/account")
        await page.fill("#delete_password", "not the password")
        await page.check("#delete_confirm")
        await page.click("form[action='/account/delete'] button[type=submit]")
        assert await page.get_attribute("#delete_password", "aria-invalid") == "true"
        await _axe(page, f"deletion with an error ({lang})")
        await page.screenshot(path=str(shots / f"account-delete-{lang}.png"), full_page=True)
        await page.fill("#delete_password", PASSWORD)
        await page.check("#delete_confirm")
        await page.click("form[action='/account/delete'] button[type=submit]")
        assert f"@{username}" not in await page.inner_text("header")  # signed out
        await _axe(page, f"account deleted ({lang})")
        gone = await page.goto(origin + f"/users/{username}")
        assert gone is not None and gone.status == 410
        await _axe(page, f"deleted profile ({lang})")
    finally:
        await context.close()


async def test_profile_discoverability_and_deletion_forms_pass_axe(
    tmp_path: Path, sqlite_template: SqliteTemplate, shots: Path
) -> None:
    executable = _require_tools()
    from playwright.async_api import async_playwright

    async with running_node(tmp_path / "node", sqlite_template.copy_to(tmp_path)) as node:
        await node.create_association("entraide", "Entraide Lyon")
        users = {"fr": "bea", "en": "ben"}
        for username in users.values():
            await node.add_member(username, "entraide")
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            try:
                for lang, username in users.items():
                    await _profile_and_deletion(browser, node, lang, username, shots)
            finally:
                await browser.close()
