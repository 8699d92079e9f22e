"""The object pages for browsers, on both engines: the read filter decides for the signed-in
account (members-only content and replies), an alert's status comes first with a link to its
successor, a resource's Markdown is rendered and sanitised with its versions and what changed,
a proposal shows its options, eligibility and counts, and the HTML page keeps link previews."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from tests.server.test_web_account import _sign_in
from tests.support.nodes import Node

HTML = {"Accept": "text/html,application/xhtml+xml", "Accept-Language": "en"}


async def _create(node: Node, token: str, path: str, body: dict[str, Any]) -> str:
    response = await node.client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status == 201, await response.text()
    return str((await response.json())["id"])


async def _page(client: TestClient[Any, Any], iri: str) -> tuple[int, str]:
    response = await client.get("/" + iri.split("/", 3)[3], headers=HTML)
    return response.status, await response.text()


async def _post(client: TestClient[Any, Any], page: str, action: str) -> Any:
    csrf = re.search(r'name="csrf" value="([^"]+)"', await (await client.get(page)).text())
    assert csrf
    return await client.post(action, data={"csrf": csrf.group(1)}, allow_redirects=False)


async def test_object_pages_show_each_kind_and_the_read_filter_decides(node: Node) -> None:
    await node.create_association("demo", "Demo")
    await node.create_association("other", "Other")
    await node.add_member("alice", "demo", role="admin")
    await node.add_member("mia", "demo")
    await node.add_member("zed", "other")
    alice, mia = await node.token("alice"), await node.token("mia")
    alert = {
        "severity": "critical",
        "category": "shortage",
        "area": "Lyon",
        "content": "<p>Plus de stock.</p>",
    }
    first = await _create(node, alice, "/api/associations/demo/alerts", {"name": "Pénurie", **alert})
    second = await _create(
        node,
        alice,
        "/api/associations/demo/alerts",
        {"name": "Pénurie (mise à jour)", "supersedes": first, **alert},
    )
    status, page = await _page(node.client, first)
    assert status == 200
    status_at, article_at = page.index('class="status"'), page.index("<h1>Pénurie</h1>")
    assert status_at < article_at and f'href="{second}"' in page  # the status first, with the successor
    assert "Critical" in page and "Shortage" in page and "Lyon" in page
    assert 'property="og:title" content="Pénurie"' in page

    markdown = "# Guide\n\nPremière ligne\n\n* un point\n\n<script>alert(1)</script>"
    resource = await _create(
        node, alice, "/api/associations/demo/resources", {"name": "Guide", "content": markdown}
    )
    edited = await node.client.patch(
        "/api/objects",
        params={"iri": resource},
        json={"content": markdown.replace("Première ligne", "Ligne revue")},
        headers={"Authorization": f"Bearer {alice}"},
    )
    assert edited.status == 200, await edited.text()
    _, page = await _page(node.client, resource)
    assert "<h1>Guide</h1>" in page.split('class="prose"', 1)[1] and "<li>un point</li>" in page
    assert "<script>alert" not in page
    assert re.search(r"<ins>.*Ligne revue</ins>", page) and re.search(r"<del>.*Première ligne</del>", page)

    end = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0).isoformat()
    proposal = await _create(
        node,
        alice,
        "/api/associations/demo/proposals",
        {"name": "Adopter la charte ?", "oneOf": ["Oui", "Non"], "endTime": end, "eligibility": "members"},
    )
    _, page = await _page(node.client, proposal)
    assert "<td>Oui</td><td>0</td>" in page and "members vote" in page and "Voting ends" in page

    # Members only: the same 404 page as a missing object for a visitor and for another association's member.
    secret = await _create(
        node, alice, "/api/associations/demo/posts", {"content": "<p>Entre nous</p>", "visibility": "members"}
    )
    reply = await node.client.post(
        "/api/users/mia/replies",
        json={"inReplyTo": first, "content": "<p>Merci, vu aussi à Villeurbanne</p>"},
        headers={"Authorization": f"Bearer {mia}"},
    )
    assert reply.status == 201
    status, page = await _page(node.client, secret)
    assert status == 404 and "Entre nous" not in page and "<html" in page
    await _sign_in(node.client, "zed")
    assert (await _page(node.client, secret))[0] == 404
    await _sign_in(node.client, "mia")
    status, page = await _page(node.client, secret)
    assert status == 200 and "Entre nous" in page and "Members only" in page
    _, page = await _page(node.client, first)
    assert "vu aussi à Villeurbanne" in page  # the member's reply, in the thread


async def test_association_page_tabs_follow_the_read_filter_and_members_join_and_leave(node: Node) -> None:
    await node.create_association("demo", "Demo", "<p>Entraide à Lyon</p>")
    await node.configure("demo", join_policy="open")
    await node.add_member("alice", "demo", role="admin")
    await node.create_association("other", "Other")
    await node.add_member("zed", "other")
    alice = await node.token("alice")
    await _create(
        node,
        alice,
        "/api/associations/demo/posts",
        {"content": "<p>Réunion mardi</p>", "visibility": "members"},
    )
    await _create(
        node,
        alice,
        "/api/associations/demo/alerts",
        {"name": "Rupture", "content": "<p>x</p>", "severity": "warning", "category": "shortage"},
    )
    page = await (await node.client.get("/groups/demo", headers=HTML)).text()
    assert "Rupture" in page and "Entraide à Lyon" in page and "@demo@" in page
    assert "Follow from Mastodon" in page and 'href="/login?next=/groups/demo"' in page
    assert "/groups/demo/feeds/alerts.rss" in page  # feed links, in the page and in its head
    discussions = await (await node.client.get("/groups/demo?tab=discussions", headers=HTML)).text()
    assert "Réunion mardi" not in discussions and 'aria-current="page">Discussions' in discussions
    # zed signs in, joins (open policy), then reads the members-only discussion, then leaves.
    await _sign_in(node.client, "zed")
    joined = await _post(node.client, "/groups/demo", "/groups/demo/join")
    assert joined.status == 303
    member_view = await (await node.client.get("/groups/demo?tab=discussions", headers=HTML)).text()
    assert "Réunion mardi" in member_view and 'action="/groups/demo/leave"' in member_view
    assert (await _post(node.client, "/groups/demo", "/groups/demo/leave")).status == 303
    after = await (await node.client.get("/groups/demo?tab=discussions", headers=HTML)).text()
    assert "Réunion mardi" not in after and 'action="/groups/demo/join"' in after
    # A join without the form's CSRF token changes nothing.
    forged = await node.client.post("/groups/demo/join", data={"csrf": "x"}, headers=HTML)
    assert forged.status == 403 and "<html" in await forged.text()
    profile = await (await node.client.get("/users/alice", headers=HTML)).text()
    assert "@alice@" in profile and "<h1>alice</h1>" in profile


async def test_members_reply_and_vote_from_the_page_and_bad_input_is_shown_with_the_text_kept(
    node: Node,
) -> None:
    await node.create_association("demo", "Demo")
    await node.add_member("alice", "demo", role="admin")
    await node.add_member("mia", "demo")
    alice = await node.token("alice")
    alert = await _create(
        node,
        alice,
        "/api/associations/demo/alerts",
        {"name": "Pénurie", "content": "<p>x</p>", "severity": "info", "category": "shortage"},
    )
    end = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0).isoformat()
    proposal = await _create(
        node,
        alice,
        "/api/associations/demo/proposals",
        {"name": "Charte ?", "oneOf": ["Oui", "Non"], "endTime": end, "eligibility": "members"},
    )
    alert_path, proposal_path = "/" + alert.split("/", 3)[3], "/" + proposal.split("/", 3)[3]
    assert "Sign in to reply" in (await _page(node.client, alert))[1]
    await _sign_in(node.client, "mia")
    empty = await _post(node.client, alert_path, alert_path + "/reply")
    assert empty.status == 400 and 'id="reply-content-error"' in await empty.text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', (await _page(node.client, alert))[1])
    assert csrf
    sent = await node.client.post(
        alert_path + "/reply",
        data={"csrf": csrf.group(1), "content": "Vu aussi\n\n<script>x()</script>"},
        allow_redirects=False,
    )
    assert sent.status == 303
    page = (await _page(node.client, alert))[1]
    assert (
        "<p>Vu aussi</p>" in page and "&lt;script&gt;x()&lt;/script&gt;" in page and "<script>x" not in page
    )
    no_choice = await _post(node.client, proposal_path, proposal_path + "/vote")
    assert no_choice.status == 400 and 'id="choice-error"' in await no_choice.text()
    voted = await node.client.post(
        proposal_path + "/vote", data={"csrf": csrf.group(1), "choice": "Oui"}, allow_redirects=False
    )
    assert voted.status == 303 and voted.headers["Location"].endswith("?voted=1")
    twice = await node.client.post(proposal_path + "/vote", data={"csrf": csrf.group(1), "choice": "Non"})
    assert twice.status == 403 and 'id="choice-error"' in await twice.text()
    forged = await node.client.post(proposal_path + "/vote", data={"csrf": "x", "choice": "Non"})
    assert forged.status == 403 and 'id="choice-error"' not in await forged.text()
