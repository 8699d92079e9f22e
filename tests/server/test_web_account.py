"""The web app's sign-in and account pages, on both engines: sessions stored in the database
(they survive a restart and are revocable), CSRF on every form, session fixation, open redirects
after sign-in, rate-limited attempts, failures that never say whether the account exists,
clickjacking headers, and every account form refusing bad input next to its field, input kept."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from federation.types import utc_now
from server.db.models import WebSession
from server.http.pages import account
from server.services.actors import local as actor_service
from server.services.actors.keys import load_vault
from tests.support.nodes import Node, running_node

PASSWORD = "correct horse battery"  # what Node.add_member sets


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


async def _sign_in(
    client: TestClient[Any, Any], username: str, password: str = PASSWORD, next_: str = ""
) -> Any:
    page = await client.get("/login")
    url = "/login" + (f"?next={next_}" if next_ else "")
    form = {"csrf": _csrf(await page.text()), "username": username, "password": password}
    return await client.post(url, data=form, allow_redirects=False)


async def _post_form(client: TestClient[Any, Any], page: str, action: str, **fields: str) -> Any:
    csrf = _csrf(await (await client.get(page)).text())
    return await client.post(action, data={"csrf": csrf, **fields}, allow_redirects=False)


async def test_sign_in_sets_a_safe_cookie_and_every_page_names_the_reader(node: Node) -> None:
    await node.create_association("entraide", "Entraide Lyon")
    await node.add_member("alice", "entraide")
    response = await _sign_in(node.client, "alice")
    assert response.status == 303 and response.headers["Location"] == "/"
    cookie = response.cookies["entraide_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"]  # http origin here
    home = await node.client.get("/")
    body = await home.text()
    assert "@alice" in body and 'action="/logout"' in body and "Entraide Lyon" in body
    assert home.headers["Cache-Control"] == "private, no-store"
    async with node.sessions() as session:
        stored = (await session.execute(select(WebSession.token_hash))).scalar_one()
    assert cookie.value not in stored  # only the hash is stored
    # Signing out revokes the session: the same cookie, replayed, signs nobody in.
    token = cookie.value
    assert (await _post_form(node.client, "/", "/logout")).status == 303
    node.client.session.cookie_jar.update_cookies({"entraide_session": token})
    assert "@alice" not in await (await node.client.get("/")).text()


async def test_a_failed_sign_in_never_says_whether_the_account_exists(node: Node) -> None:
    await node.create_association("entraide")
    await node.add_member("alice", "entraide")
    wrong = await _sign_in(node.client, "alice", "not the password")
    unknown = await _sign_in(node.client, "nobody", "not the password")
    assert wrong.status == unknown.status == 401
    wrong_body, unknown_body = await wrong.text(), await unknown.text()
    assert wrong_body.replace("alice", "X") == unknown_body.replace("nobody", "X")
    assert 'value="alice"' in wrong_body  # the username is kept, the password is not
    assert "entraide_session" not in wrong.cookies


async def test_attempts_are_rate_limited(node: Node) -> None:
    statuses = [
        (await _sign_in(node.client, "alice", "guess")).status for _ in range(account.LOGIN_BURST + 1)
    ]
    assert statuses[:-1] == [401] * account.LOGIN_BURST
    last = await _sign_in(node.client, "alice", "guess")
    assert last.status == 429 and int(last.headers["Retry-After"]) >= 1
    assert "text/html" in last.headers["Content-Type"]


async def test_csrf_fixation_and_open_redirects_are_refused(node: Node) -> None:
    await node.create_association("entraide")
    await node.add_member("alice", "entraide")
    client = node.client
    # No CSRF value, or another site's Origin: refused with an HTML page, nobody signed in.
    no_csrf = await client.post(
        "/login", data={"username": "alice", "password": PASSWORD}, headers={"Accept": "text/html"}
    )
    assert no_csrf.status == 403 and "<html" in await no_csrf.text()
    page = await client.get("/login")
    form = {"csrf": _csrf(await page.text()), "username": "alice", "password": PASSWORD}
    other_site = await client.post("/login", data=form, headers={"Origin": "https://evil.example"})
    assert other_site.status == 403
    # Fixation: a session token planted before sign-in is replaced, and never becomes valid.
    client.session.cookie_jar.update_cookies({"entraide_session": "planted-by-an-attacker-0123456789"})
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "http:evil", "/%0d%0aX"):
        response = await _sign_in(client, "alice", next_=target)
        assert response.status == 303
        assert response.headers["Location"] in ("/", target) and not response.headers["Location"].startswith(
            "//"
        )
        assert response.cookies["entraide_session"].value != "planted-by-an-attacker-0123456789"
    assert (await _sign_in(client, "alice", next_="/account/tokens")).headers["Location"] == "/account/tokens"
    # A signed-in form with a wrong token changes nothing.
    forged = await client.post(
        "/account/password",
        data={"csrf": "forged", "current_password": PASSWORD, "new_password": "x" * 12, "confirm": "x" * 12},
    )
    assert forged.status == 403
    # Clickjacking: no page may be framed.
    headers = (await client.get("/account")).headers
    assert (
        "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        and headers["X-Frame-Options"] == "DENY"
    )
    assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none': no script at all


async def test_password_change_shows_errors_next_to_fields_and_signs_out_other_sessions(node: Node) -> None:
    await node.create_association("entraide")
    await node.add_member("alice", "entraide")
    other = TestClient(node.client.server)  # a second browser, signed in too
    await other.start_server()
    try:
        await _sign_in(node.client, "alice")
        await _sign_in(other, "alice")
        wrong = await _post_form(
            node.client,
            "/account",
            "/account/password",
            current_password="nope",
            new_password="x" * 12,
            confirm="x" * 12,
        )
        assert wrong.status == 400
        assert re.search(
            r'id="current_password"[^>]*aria-invalid="true" aria-describedby="current_password-error"',
            await wrong.text(),
        )
        mismatch = await _post_form(
            node.client,
            "/account",
            "/account/password",
            current_password=PASSWORD,
            new_password="x" * 12,
            confirm="y" * 12,
        )
        assert mismatch.status == 400 and 'id="confirm-error"' in await mismatch.text()
        short = await _post_form(
            node.client,
            "/account",
            "/account/password",
            current_password=PASSWORD,
            new_password="short",
            confirm="short",
        )
        assert short.status == 400 and 'id="new_password-error"' in await short.text()
        done = await _post_form(
            node.client,
            "/account",
            "/account/password",
            current_password=PASSWORD,
            new_password="x" * 12,
            confirm="x" * 12,
        )
        assert done.status == 303
        assert "@alice" in await (await node.client.get("/")).text()  # this session stays
        assert "@alice" not in await (await other.get("/")).text()  # the other one is signed out
        assert (await _sign_in(other, "alice")).status == 401
        assert (await _sign_in(other, "alice", "x" * 12)).status == 303
    finally:
        await other.close()


async def test_tokens_and_sessions_are_created_and_revoked_from_the_account(node: Node) -> None:
    await node.create_association("entraide")
    await node.add_member("alice", "entraide")
    await _sign_in(node.client, "alice")
    empty = await _post_form(node.client, "/account/tokens", "/account/tokens", label="  ", scope="write")
    assert empty.status == 400 and 'id="label-error"' in await empty.text()
    bad_scope = await _post_form(
        node.client, "/account/tokens", "/account/tokens", label="phone", scope="admin"
    )
    assert bad_scope.status == 400 and 'value="phone"' in await bad_scope.text()  # input kept
    created = await _post_form(node.client, "/account/tokens", "/account/tokens", label="phone", scope="read")
    token = re.search(r"(ent_[A-Za-z0-9_-]+)", await created.text())
    assert created.status == 200 and token
    api = {"Authorization": f"Bearer {token.group(1)}"}
    assert (await node.client.get("/api/associations/entraide/members", headers=api)).status == 200
    listing = await (await node.client.get("/account/tokens")).text()
    token_id = re.search(r"/account/tokens/(\d+)/revoke", listing)
    assert token_id and token.group(1) not in listing  # shown once only
    revoked = await _post_form(node.client, "/account/tokens", f"/account/tokens/{token_id.group(1)}/revoke")
    assert revoked.status == 303
    assert (await node.client.get("/api/associations/entraide/members", headers=api)).status == 401
    # Another account's token or a made-up id: the same 404 page, nothing revoked.
    missing = await _post_form(node.client, "/account/tokens", "/account/tokens/999999/revoke")
    assert missing.status == 404
    # Sessions: revoking the current one signs this browser out.
    sessions = await (await node.client.get("/account/sessions")).text()
    own = re.search(r"/account/sessions/(\d+)/revoke", sessions)
    assert own
    await _post_form(node.client, "/account/sessions", f"/account/sessions/{own.group(1)}/revoke")
    assert (await node.client.get("/account", allow_redirects=False)).headers[
        "Location"
    ] == "/login?next=/account"


async def test_language_from_the_account_else_the_browser(node: Node) -> None:
    await node.create_association("entraide")
    await node.add_member("alice", "entraide")
    english = await node.client.get("/login", headers={"Accept-Language": "en-GB,en;q=0.9,fr;q=0.5"})
    assert '<html lang="en">' in await english.text() and english.headers["Content-Language"] == "en"
    assert (
        '<html lang="fr">'
        in await (await node.client.get("/login", headers={"Accept-Language": "de"})).text()
    )
    await _sign_in(node.client, "alice")
    bad = await _post_form(node.client, "/account", "/account/language", language="xx")
    assert bad.status == 400 and 'id="language-error"' in await bad.text()
    assert (await _post_form(node.client, "/account", "/account/language", language="en")).status == 303
    page = await (await node.client.get("/account", headers={"Accept-Language": "fr"})).text()
    assert '<html lang="en">' in page and "Change the password" in page


async def test_sessions_survive_a_restart_and_member_add_passwords_sign_in(
    node: Node, tmp_path: Path, database_url: str
) -> None:
    await node.create_association("entraide")
    vault = load_vault(node.settings.storage.secret_key_file)
    async with node.sessions.begin() as session:
        added = await actor_service.add_member(
            session,
            node.uris,
            vault,
            username="bob",
            association="entraide",
            role="member",
            password=None,
            now=utc_now(),
        )
    assert added.password  # what `entraide member add` prints
    response = await _sign_in(node.client, "bob", added.password)
    assert response.status == 303
    cookie = response.cookies["entraide_session"].value
    async with running_node(tmp_path / "restarted", database_url) as restarted:
        restarted.client.session.cookie_jar.update_cookies({"entraide_session": cookie})
        assert "@bob" in await (await restarted.client.get("/")).text()
        assert await restarted.scalar(select(func.count()).select_from(WebSession)) == 1


async def test_errors_are_html_pages_for_browsers_and_problems_for_programs(node: Node) -> None:
    missing = "/objects/" + "0" * 32
    page = await node.client.get(missing, headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status == 404 and page.content_type == "text/html"
    assert "<h1>" in await page.text() and "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    program = await node.client.get(missing, headers={"Accept": "application/json"})
    assert program.status == 404 and program.content_type == "application/problem+json"
    api = await node.client.get("/api/objects?iri=x", headers={"Accept": "text/html"})
    assert api.content_type == "application/problem+json"  # the API always answers JSON
    members_only = await node.client.get("/account", allow_redirects=False)
    assert members_only.status == 303 and members_only.headers["Location"] == "/login?next=/account"


async def test_a_member_downloads_the_archive_of_their_data(node: Node) -> None:
    await node.create_association("entraide", "Entraide")
    await node.add_member("alice", "entraide", role="admin")
    token = await node.token("alice")
    auth = {"Authorization": f"Bearer {token}"}
    alert = {"name": "Pénurie", "content": "<p>x</p>", "severity": "info", "category": "shortage"}
    created = await node.client.post("/api/associations/entraide/alerts", json=alert, headers=auth)
    assert created.status == 201
    reply = {"inReplyTo": (await created.json())["id"], "content": "<p>Bonjour</p>"}
    assert (await node.client.post("/api/users/alice/replies", json=reply, headers=auth)).status == 201
    assert (await node.client.get("/account/export", allow_redirects=False)).status == 303  # members only
    await _sign_in(node.client, "alice")
    download = await node.client.get("/account/export")
    assert download.status == 200 and download.content_type == "application/zip"
    assert download.headers["Cache-Control"] == "private, no-store"
    with zipfile.ZipFile(io.BytesIO(await download.read())) as archive:
        names = set(archive.namelist())
        assert {
            "index.html",
            "profile.json",
            "posts.json",
            "replies.json",
            "votes.json",
            "memberships.json",
        } <= names
        profile = json.loads(archive.read("profile.json"))
        replies = json.loads(archive.read("replies.json"))
        memberships = json.loads(archive.read("memberships.json"))
        assert profile["preferredUsername"] == "alice"
        assert [r["content"] for r in replies["orderedItems"]] == ["<p>Bonjour</p>"]
        assert memberships["orderedItems"][0]["entraide:state"] == "active"
        assert "@alice@" in archive.read("index.html").decode()
    page = await (await node.client.get("/account", headers={"Accept-Language": "en"})).text()
    assert "My memberships" in page and "administrator" in page and "<strong>active</strong>" in page
