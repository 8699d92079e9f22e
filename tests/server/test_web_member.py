"""A member's own pages, on both engines: the home timeline (the same data as ``GET /api/timeline``,
kind tabs, newer and older pages, members-only content only for members), notifications with
"mark all as read" and the unread count in the navigation, following by handle or URL with every
bad address said next to the field (never a 500), the list of follows and memberships, a peer's
object read here, and the visitors' language switch."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, unused_port
from sqlalchemy import select

from federation.types import utc_now
from server.db.models import Actor, Follow, RemoteObject
from server.http.pages import member
from tests.server.test_web_account import _csrf, _sign_in
from tests.support.nodes import Node, running_node, wait_until

HTML = {"Accept": "text/html,application/xhtml+xml", "Accept-Language": "en"}


async def _outbox(node: Node, path: str, token: str, body: dict[str, Any]) -> str:
    return str((await node.post_outbox(path, token, body))["object"])


async def _get(client: TestClient[Any, Any], path: str, status: int = 200) -> str:
    response = await client.get(path, headers=HTML, allow_redirects=False)
    text = await response.text()
    assert response.status == status, (path, response.status, text[:500])
    return text


async def _submit(client: TestClient[Any, Any], page: str, action: str, **fields: str) -> Any:
    csrf = _csrf(await _get(client, page))
    return await client.post(action, data={"csrf": csrf, **fields}, headers=HTML, allow_redirects=False)


def _links(html: str) -> list[str]:
    return re.findall(r'<p><a href="([^"]+)">', html.split('id="items-title"', 1)[1])


async def _world(node: Node) -> dict[str, str]:
    """alpha (olga follows it, not a member) and beta (olga's association)."""
    await node.create_association("alpha", "Alpha")
    await node.add_member("alice", "alpha", role="admin")
    await node.create_association("beta", "Beta")
    await node.add_member("olga", "beta", role="admin")
    async with node.sessions.begin() as session:
        olga = await session.scalar(select(Actor).where(Actor.handle == "olga"))
        alpha = await session.scalar(select(Actor).where(Actor.handle == "alpha"))
        assert olga is not None and alpha is not None
        session.add(Follow(follower_id=olga.id, followed_id=alpha.id, state="accepted", created_at=utc_now()))
    return {"alice": await node.token("alice"), "olga": await node.token("olga")}


async def test_the_timeline_page_shows_the_api_items_by_kind_and_page(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(member, "PAGE_SIZE", 2)
    tokens = await _world(node)
    alice, olga = tokens["alice"], tokens["olga"]
    posts = [
        await _outbox(node, "/groups/alpha", alice, {"type": "Note", "content": f"<p>Nouvelle {i}</p>"})
        for i in range(3)
    ]
    secret = await _outbox(
        node,
        "/groups/alpha",
        alice,
        {
            "type": "Note",
            "entraideKind": "Alert",
            "name": "Interne",
            "content": "<p>Entre nous</p>",
            "severity": "warning",
            "category": "shortage",
            "visibility": "members",
        },
    )
    own = await _outbox(
        node,
        "/groups/beta",
        olga,
        {
            "type": "Note",
            "entraideKind": "Alert",
            "name": "Chez nous",
            "content": "<p>x</p>",
            "severity": "critical",
            "category": "safety",
        },
    )
    await _get(node.client, "/timeline", 303)  # members only: to the sign-in page
    assert (await _sign_in(node.client, "olga")).status == 303

    api = await node.client.get("/api/timeline?limit=50", headers={"Authorization": f"Bearer {olga}"})
    expected = [item["id"] for item in (await api.json())["items"]]
    assert expected == [own, *reversed(posts)] and secret not in expected  # followed, not a member

    first = await _get(node.client, "/timeline")
    assert _links(first) == expected[:2] and "Interne" not in first and "Entre nous" not in first
    assert 'rel="prev"' not in first and "Critical" in first and "@alice" not in first
    older = re.search(r'href="([^"]+)" rel="next"', first)
    assert older
    second = await _get(node.client, older.group(1).replace("&amp;", "&"))
    assert _links(second) == expected[2:4]
    newer = re.search(r'href="([^"]+)" rel="prev"', second)
    assert newer
    again = await _get(node.client, newer.group(1).replace("&amp;", "&"))
    assert _links(again) == expected[:2]

    alerts = await _get(node.client, "/timeline?kind=alert")
    assert _links(alerts) == [own] and 'href="/timeline?kind=alert" aria-current="page"' in alerts
    posts_tab = await _get(node.client, "/timeline?kind=post")
    assert own not in _links(posts_tab) and _links(posts_tab) == expected[1:3]
    # a forged cursor is a 400 page in HTML, never a 500; an unknown tab is the whole timeline
    bad = await _get(node.client, "/timeline?before=12x", 400)
    assert "<html" in bad
    assert _links(await _get(node.client, "/timeline?kind=nope")) == expected[:2]
    french = await node.client.get("/timeline", headers={**HTML, "Accept-Language": "fr"})
    assert 'lang="fr"' in await french.text()


async def test_notifications_page_counts_unread_and_marks_all_read(node: Node) -> None:
    tokens = await _world(node)
    olga = tokens["olga"]
    await node.add_member("mia", "beta")
    mia = await node.token("mia")
    post = await _outbox(node, "/users/olga", olga, {"type": "Note", "content": "<p>Question</p>"})
    await _outbox(node, "/users/mia", mia, {"type": "Note", "content": "<p>Réponse</p>", "inReplyTo": post})
    assert (await _sign_in(node.client, "olga")).status == 303

    page = await _get(node.client, "/notifications")
    assert "Reply" in page and "@mia" in page and 'class="card unread"' in page
    api = await node.client.get("/api/notifications", headers={"Authorization": f"Bearer {olga}"})
    items = (await api.json())["items"]
    assert "reply" in [i["type"] for i in items] and not any(i["read"] for i in items)
    count = len(items)  # the reply, and olga's membership of beta
    assert f'<span class="count">{count}<span class="visually-hidden"> unread' in page
    assert page.count('class="card unread"') == count

    forged = await node.client.post("/notifications/read", data={"csrf": "forged"}, headers=HTML)
    assert forged.status == 403
    assert 'class="count"' in await _get(node.client, "/timeline")
    done = await _submit(node.client, "/notifications", "/notifications/read")
    assert done.status == 303 and done.headers["Location"] == "/notifications?done=read"
    after = await _get(node.client, "/notifications?done=read")
    assert 'class="count"' not in after and 'class="card unread"' not in after and "Reply" in after
    assert (await _get(node.client, "/notifications?before=x", 400)).count("<html") == 1


async def test_following_by_handle_or_url_refuses_bad_addresses_next_to_the_field(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    async with (
        running_node(tmp_path / "a", await new_database(0)) as a,
        running_node(
            tmp_path / "b", await new_database(1), federation={"blocked_domains": ["blocked.example"]}
        ) as b,
    ):
        alpha = await a.create_association("alpha", "Alpha", "Entraide entre patients.")
        await a.configure("alpha", join_policy="open")
        await a.add_member("alice", "alpha", role="admin")
        note = await _outbox(
            a, "/groups/alpha", await a.token("alice"), {"type": "Note", "content": "<p>x</p>"}
        )
        await b.create_association("beta", "Beta")
        ben_iri = await b.add_member("ben", "beta")
        assert (await _sign_in(b.client, "ben")).status == 303
        before = await b.row_counts()
        closed = unused_port()
        cases = {
            "not a handle": "Enter an address like",
            "@@a@b": "Enter an address like",
            "javascript:alert(1)": "Enter an address like",
            "x" * 3000: "Enter an address like",
            "alpha@blocked.example": "blocked by this node",
            "https://blocked.example/users/x": "blocked by this node",
            f"nobody@{a.uris.host}": "No account at this address",
            f"alpha@127.0.0.1:{closed}": "does not answer right now",
            note: "does not name an account",
        }
        for address, message in cases.items():
            response = await _submit(b.client, "/follow", "/follow", address=address)
            page = await response.text()
            assert response.status == 400, (address, response.status)
            assert message in page, (address, page[:2000])
            assert 'aria-describedby="address-error address-hint" aria-invalid="true"' in page
            assert 'id="address-error"' in page
            kept = address[: member.MAX_ADDRESS].replace("&", "&amp;")
            assert f'value="{kept}"' in page, address  # the input is kept
        assert await b.row_counts() == before  # nothing stored, nothing queued

        # a handle and a URL find the association: name, summary, type, Follow and Join
        for address in (f"@alpha@{a.uris.host}", f"alpha@{a.uris.host}", alpha):
            response = await _submit(b.client, "/follow", "/follow", address=address)
            page = await response.text()
            assert response.status == 200, page[:2000]
            assert '<h2 id="found-title">Alpha</h2>' in page and "Entraide entre patients." in page
            assert (
                "Association" in page and 'action="/follow/actor"' in page and 'action="/follow/join"' in page
            )
        followed = await _submit(b.client, "/follow", "/follow/actor", iri=alpha)
        assert followed.status == 303 and followed.headers["Location"] == "/following?done=follow"
        joined = await _submit(b.client, "/follow", "/follow/join", iri=alpha)
        assert joined.status == 303

        async def settled() -> bool:
            page = await _get(b.client, "/following")
            return "<strong>accepted</strong>" in page and "<strong>member</strong>" in page

        await wait_until(settled, what="the follow and the membership accepted")
        again = await (await _submit(b.client, "/follow", "/follow", address=alpha)).text()
        assert "Follow: <strong>accepted</strong>" in again and 'action="/follow/actor"' not in again
        assert 'action="/follow/join"' not in again
        refused = await _submit(b.client, "/follow", "/follow/join", iri=alpha)
        assert refused.status == 409 and 'id="join-error"' in await refused.text()
        assert (
            await _submit(b.client, "/follow", "/follow/actor", iri="https://nowhere.example/x")
        ).status == 404

        # one of ours, by handle: shown, and not followed through federation
        local = await (await _submit(b.client, "/follow", "/follow", address=f"ben@{b.uris.host}")).text()
        assert "on this node" in local and 'action="/follow/actor"' not in local

        # unfollow and leave from the list
        page = await _get(b.client, "/following")
        follow_iri = re.search(r'name="follow" value="([^"]+)"', page)
        assert follow_iri
        unfollowed = await _submit(b.client, "/following", "/following/unfollow", follow=follow_iri.group(1))
        assert unfollowed.status == 303
        left = await _submit(b.client, "/following", "/following/leave", iri=alpha)
        assert left.status == 303
        page = await _get(b.client, "/following?done=leave")
        assert "Alpha" not in page and "You left the association." in page
        await wait_until(lambda: _no_relation(a, ben_iri), what="A applies the Undo and the Leave")
        # an actor B knows as deleted is no account to follow
        async with b.sessions.begin() as session:
            row = await session.scalar(select(Actor).where(Actor.iri == alpha))
            assert row is not None
            row.deleted_at = utc_now()
        gone = await _submit(b.client, "/follow", "/follow", address=alpha)
        assert gone.status == 400 and "No account at this address" in await gone.text()


async def _no_relation(node: Node, iri: str) -> bool:
    from server.db.models import Membership

    async with node.sessions() as session:
        ben = await session.scalar(select(Actor.id).where(Actor.iri == iri))
        follows = await session.scalar(select(Follow.id).where(Follow.follower_id == ben))
        held = await session.scalar(select(Membership.id).where(Membership.member_id == ben))
    return ben is not None and follows is None and held is None


async def test_the_follow_pages_need_a_session_and_a_csrf_token(node: Node) -> None:
    await node.create_association("beta", "Beta")
    await node.add_member("ben", "beta")
    for path in ("/follow", "/following", "/notifications", "/timeline"):
        response = await node.client.get(path, headers=HTML, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == f"/login?next={path}"
    assert (await _sign_in(node.client, "ben")).status == 303
    before = await node.row_counts()
    for action in ("/follow", "/follow/actor", "/follow/join", "/following/unfollow", "/following/leave"):
        forged = await node.client.post(action, data={"csrf": "x", "address": "a@b.example"}, headers=HTML)
        assert forged.status == 403, action
    assert await node.row_counts() == before


async def test_a_peers_object_is_read_here_and_the_read_filter_decides(node: Node) -> None:
    tokens = await _world(node)
    public = await _outbox(
        node, "/groups/alpha", tokens["alice"], {"type": "Note", "content": "<p>Ouvert</p>"}
    )
    async with node.sessions.begin() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == public))
        assert row is not None
        secret = RemoteObject(
            iri="https://peer.example/objects/1",
            local=False,
            type="Note",
            kind="post",
            attributed_to_id=row.attributed_to_id,
            visibility="members",
            document={"id": "https://peer.example/objects/1", "type": "Note", "content": "<p>Entre nous</p>"},
            published=utc_now(),
            received_at=utc_now(),
        )
        session.add(secret)
        await session.flush()
        local_id, secret_id = row.id, secret.id
    redirect = await node.client.get(f"/read/{local_id}", headers=HTML, allow_redirects=False)
    assert redirect.status == 303 and redirect.headers["Location"] == public
    hidden = await node.client.get(f"/read/{secret_id}", headers=HTML)
    missing = await node.client.get("/read/999999", headers=HTML)
    assert hidden.status == missing.status == 404
    assert (await hidden.text()).replace(f"/read/{secret_id}", "/read/999999") == await missing.text()
    assert (await _sign_in(node.client, "olga")).status == 303  # follows alpha, not a member
    assert (await node.client.get(f"/read/{secret_id}", headers=HTML)).status == 404


async def test_a_visitor_chooses_the_language_and_a_member_keeps_theirs(node: Node) -> None:
    await node.create_association("beta", "Beta")
    await node.add_member("ben", "beta")
    french = {"Accept": "text/html", "Accept-Language": "fr"}
    page = await (await node.client.get("/groups/beta", headers=french)).text()
    assert '<html lang="fr">' in page and 'href="/language/en?next=/groups/beta"' in page
    # the cache of public pages keeps one copy per language (never French to an English reader)
    english = await node.client.get("/groups/beta", headers={"Accept": "text/html", "Accept-Language": "en"})
    assert '<html lang="en">' in await english.text()
    chosen = await node.client.get("/language/en?next=/groups/beta", allow_redirects=False)
    assert chosen.status == 303 and chosen.headers["Location"] == "/groups/beta"
    cookie = chosen.cookies["entraide_lang"]
    assert cookie.value == "en" and cookie["httponly"] and cookie["samesite"] == "Lax"
    assert '<html lang="en">' in await (await node.client.get("/groups/beta", headers=french)).text()
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        away = await node.client.get(f"/language/fr?next={target}", allow_redirects=False)
        assert away.headers["Location"] == "/"
    assert (await node.client.get("/language/de", headers=french)).status == 404
    assert '<html lang="fr">' in await (await node.client.get("/", headers=french)).text()
    # a member whose account says English keeps it whatever the cookie says; no switch shown
    assert (await _sign_in(node.client, "ben")).status == 303
    assert (await _submit(node.client, "/account", "/account/language", language="en")).status == 303
    node.client.session.cookie_jar.update_cookies({"entraide_lang": "fr"})
    page = await (await node.client.get("/", headers=french)).text()
    assert '<html lang="en">' in page and "/language/" not in page
