"""Atom, RSS 2.0 and JSON Feed of an association's public content, on both engines."""

from __future__ import annotations

import itertools
import json
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import pytest
from multidict import CIMultiDict
from sqlalchemy import select

from federation import uris
from federation.types import AS_PUBLIC
from server.db.models import Actor, RemoteObject
from server.http.cache import PAGE_CACHE
from server.http.feeds import rendered_feeds
from server.services import c2s as publishing
from server.services.reading import feeds as feed_service
from tests.support.nodes import Node

ATOM_NS = {"a": "http://www.w3.org/2005/Atom"}
DC_CREATOR = "{http://purl.org/dc/elements/1.1/}creator"
FORMATS = ("atom", "rss", "json")
KINDS = (None, "alerts", "resources", "proposals")
CONTENT_TYPES = {
    "atom": "application/atom+xml; charset=utf-8",
    "rss": "application/rss+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}
JSON_FEED_ITEM_KEYS = {"id", "url", "title", "content_html", "date_published", "date_modified"}
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
_minutes = itertools.count()


def feed_path(fmt: str, kind: str | None = None, handle: str = "demo") -> str:
    return f"/groups/{handle}/feed.{fmt}" if kind is None else f"/groups/{handle}/feeds/{kind}.{fmt}"


ALL_FEEDS = [feed_path(fmt, kind) for kind in KINDS for fmt in FORMATS]


async def get(
    node: Node, path: str, *, method: str = "GET", **headers: str
) -> tuple[int, CIMultiDict[str], bytes]:
    """One fresh request: the node's 1-second page cache and the rendered-feed memo are emptied
    first, so that every call renders (the caches are tested on their own)."""
    app = node.client.server.app
    assert app is not None
    app[PAGE_CACHE].clear()
    rendered_feeds(app).clear()
    response = await node.client.request(method, path, headers=headers)
    return response.status, CIMultiDict(response.headers), await response.read()


async def actor_row(node: Node, iri: str) -> Actor:
    async with node.sessions() as session:
        actor = await session.scalar(select(Actor).where(Actor.iri == iri))
    assert actor is not None
    return actor


async def insert(
    node: Node,
    owner_iri: str,
    *,
    kind: str = "post",
    visibility: str = "public",
    local: bool = True,
    deleted: bool = False,
    in_reply_to: str | None = None,
    **fields: Any,
) -> str:
    """An object row as the publishing services store it; documents carry ``fields``."""
    owner = await actor_row(node, owner_iri)
    iri = node.uris.object(uuid.uuid4().hex)
    when = T0 + timedelta(minutes=next(_minutes))
    object_type = {"resource": "Article", "proposal": "Question"}.get(kind, "Note")
    document = {
        "@context": ["https://www.w3.org/ns/activitystreams"],
        "id": iri,
        "type": object_type,
        "attributedTo": owner_iri,
        "content": f"<p>{kind} {visibility} {iri}</p>",
        "published": when.isoformat(),
        "url": iri,
        **fields,
    }
    async with node.sessions.begin() as session:
        session.add(
            RemoteObject(
                iri=iri,
                local=local,
                type=object_type,
                attributed_to_id=owner.id,
                in_reply_to_iri=in_reply_to,
                visibility=visibility,
                kind=kind,
                document=document,
                published=when,
                received_at=when,
                deleted_at=when if deleted else None,
            )
        )
    return iri


def parse_ids(fmt: str, body: bytes) -> list[str]:
    """Entry ids in feed order, after checking the document's required structure."""
    if fmt == "atom":
        root = ET.fromstring(body)
        assert root.tag == "{http://www.w3.org/2005/Atom}feed"
        for name in ("id", "title", "updated"):
            assert root.find(f"a:{name}", ATOM_NS) is not None, name
        return [e.findtext("a:id", namespaces=ATOM_NS) or "" for e in root.findall("a:entry", ATOM_NS)]
    if fmt == "rss":
        root = ET.fromstring(body)
        assert root.tag == "rss" and root.get("version") == "2.0"
        channel = root.find("channel")
        assert channel is not None
        for name in ("title", "link", "description"):
            assert channel.findtext(name), name
        return [item.findtext("guid") or "" for item in channel.findall("item")]
    doc = json.loads(body)
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert {"title", "home_page_url", "feed_url", "items"} <= doc.keys()
    for item in doc["items"]:
        assert JSON_FEED_ITEM_KEYS <= item.keys(), item.keys()
    return [item["id"] for item in doc["items"]]


async def feed_ids(node: Node, path: str) -> list[str]:
    status, headers, body = await get(node, path)
    assert status == 200, (path, body)
    fmt = path.rsplit(".", 1)[1]
    assert headers["Content-Type"] == CONTENT_TYPES[fmt]
    return parse_ids(fmt, body)


async def snapshot(node: Node, **headers: str) -> dict[str, tuple[str, str, bytes]]:
    """(ETag, Last-Modified, body) of every feed of ``demo``."""
    out = {}
    for path in ALL_FEEDS:
        status, response_headers, body = await get(node, path, **headers)
        assert status == 200, path
        out[path] = (response_headers["ETag"], response_headers["Last-Modified"], body)
    return out


async def test_each_format_renders_entries_with_titles_content_and_categories(node: Node) -> None:
    # Given an association with one object of each listed kind
    group = await node.create_association("demo", "Démo <b>&</b>", "<p>Entraide entre patients</p>")
    post = await insert(node, group, content="<p>Première ligne</p><p>" + "mot " * 40 + "</p>")
    resource = await insert(
        node,
        group,
        kind="resource",
        name="Guide des droits",
        summary="<p>Le résumé</p>",
        content="<p>Texte <script>x</script> &amp; <b>gras</b>\x0b</p>",
        tag=[{"type": "Hashtag", "name": "#droits", "href": "https://x.example/tags/droits"}],
        attachment=[{"type": "Document", "mediaType": "application/pdf", "url": "https://x.example/g.pdf"}],
    )
    alert = await insert(
        node,
        group,
        kind="alert",
        content="<p><strong>Rupture d'insuline</strong></p><p>Détails</p>",
        severity="critical",
        category="shortage",
        area="Paris",
        validUntil="2026-04-01T00:00:00Z",
        alertStatus="active",
    )
    proposal = await insert(
        node,
        group,
        kind="proposal",
        name="Pétition",
        oneOf=[{"type": "Note", "name": "Pour"}, {"type": "Note", "name": "Contre"}],
        endTime="2026-04-01T12:00:00Z",
    )
    newest_first = [proposal, alert, resource, post]

    # Atom
    status, headers, body = await get(node, feed_path("atom"))
    assert status == 200 and headers["Content-Type"] == CONTENT_TYPES["atom"]
    assert headers["Cache-Control"] == "public, max-age=60"
    assert parse_ids("atom", body) == newest_first
    root = ET.fromstring(body)
    assert root.findtext("a:title", namespaces=ATOM_NS) == "Démo <b>&</b>"
    assert root.findtext("a:author/a:name", namespaces=ATOM_NS) == "Démo <b>&</b>"
    self_link = root.find("a:link[@rel='self']", ATOM_NS)
    assert self_link is not None and self_link.get("href") == f"{group}/feed.atom"
    entries = {e.findtext("a:id", namespaces=ATOM_NS): e for e in root.findall("a:entry", ATOM_NS)}
    assert entries[alert].findtext("a:title", namespaces=ATOM_NS) == "[CRITICAL] Rupture d'insuline Détails"
    terms = {c.get("term") for c in entries[alert].findall("a:category", ATOM_NS)}
    assert terms == {"critical", "shortage"}
    assert entries[resource].findtext("a:title", namespaces=ATOM_NS) == "Guide des droits"
    content = entries[resource].find("a:content", ATOM_NS)
    assert content is not None and content.get("type") == "html"
    assert content.text == "<p>Texte <script>x</script> &amp; <b>gras</b></p>"  # escaped, not markup
    assert entries[resource].findtext("a:summary", namespaces=ATOM_NS) == "<p>Le résumé</p>"
    assert [c.get("term") for c in entries[resource].findall("a:category", ATOM_NS)] == ["droits"]
    enclosure = entries[resource].find("a:link[@rel='enclosure']", ATOM_NS)
    assert enclosure is not None and enclosure.get("type") == "application/pdf"
    assert (
        entries[post].findtext("a:title", namespaces=ATOM_NS)
        == ("Première ligne " + "mot " * 40)[:80].rstrip() + "…"
    )
    assert entries[post].findtext("a:author/a:name", namespaces=ATOM_NS) == "Démo <b>&</b>"
    link = entries[post].find("a:link[@rel='alternate']", ATOM_NS)
    assert link is not None and link.get("href") == post
    assert entries[post].findtext("a:published", namespaces=ATOM_NS)
    assert entries[post].findtext("a:updated", namespaces=ATOM_NS)
    proposal_html = entries[proposal].findtext("a:content", namespaces=ATOM_NS) or ""
    assert "<li>Pour</li><li>Contre</li>" in proposal_html and "2026-04-01 12:00" in proposal_html

    # RSS 2.0
    status, headers, body = await get(node, feed_path("rss"))
    assert status == 200 and headers["Content-Type"] == CONTENT_TYPES["rss"]
    assert parse_ids("rss", body) == newest_first
    items = {i.findtext("guid"): i for i in ET.fromstring(body).iter("item")}
    assert items[alert].findtext("title") == "[CRITICAL] Rupture d'insuline Détails"
    assert items[alert].findtext("link") == alert
    assert items[alert].findtext(DC_CREATOR) == "Démo <b>&</b>"
    assert {c.text for c in items[alert].findall("category")} == {"CRITICAL", "Shortage"}
    assert items[post].findtext("pubDate")
    assert items[post].findtext("description") == f"<p>Première ligne</p><p>{'mot ' * 40}</p>"

    # JSON Feed 1.1
    status, headers, body = await get(node, feed_path("json"))
    assert status == 200 and headers["Content-Type"] == CONTENT_TYPES["json"]
    assert parse_ids("json", body) == newest_first
    doc = json.loads(body)
    assert doc["title"] == "Démo <b>&</b>"
    assert doc["home_page_url"] == group and doc["feed_url"] == f"{group}/feed.json"
    by_id = {item["id"]: item for item in doc["items"]}
    assert by_id[alert]["title"].startswith("[CRITICAL] ")
    assert set(by_id[alert]["tags"]) == {"critical", "shortage"}
    assert by_id[resource]["summary"] == "Le résumé"
    assert by_id[resource]["tags"] == ["droits"]
    assert by_id[resource]["attachments"] == [
        {"url": "https://x.example/g.pdf", "mime_type": "application/pdf"}
    ]
    assert by_id[resource]["content_html"] == "<p>Texte <script>x</script> &amp; <b>gras</b>\x0b</p>"
    assert by_id[post]["url"] == post
    assert by_id[post]["date_published"].endswith("Z")


async def test_a_note_published_through_the_outbox_service_is_listed(node: Node) -> None:
    group = await node.create_association("demo")
    admin = await node.add_member("alice", "demo", role="admin")
    published = await publishing.post_to_outbox(
        node.fed,
        await actor_row(node, group),
        {"to": [AS_PUBLIC], "type": "Note", "content": "<p>Permanence <em>jeudi</em> à 18 h</p>"},
        by=await actor_row(node, admin),
    )
    for fmt in FORMATS:
        assert await feed_ids(node, feed_path(fmt)) == [published.object_iri]
    _, _, body = await get(node, feed_path("json"))
    assert json.loads(body)["items"][0]["title"] == "Permanence jeudi à 18 h"


async def test_per_kind_feeds_list_only_their_kind_and_never_replies_votes_or_endorsements(
    node: Node,
) -> None:
    group = await node.create_association("demo")
    made = {kind: await insert(node, group, kind=kind) for kind in ("post", "resource", "alert", "proposal")}
    for kind in ("reply", "vote", "endorsement"):
        await insert(node, group, kind=kind, inReplyTo=made["proposal"], in_reply_to=made["proposal"])
    await insert(node, group, kind="post", in_reply_to=made["post"])  # a reply stored as a post
    expected = {
        None: [made["proposal"], made["alert"], made["resource"], made["post"]],
        "alerts": [made["alert"]],
        "resources": [made["resource"]],
        "proposals": [made["proposal"]],
    }
    for kind, ids in expected.items():
        for fmt in FORMATS:
            assert await feed_ids(node, feed_path(fmt, kind)) == ids, (fmt, kind)


async def test_non_public_objects_never_appear_and_do_not_change_the_validators(node: Node) -> None:
    """A members-only alert of a patient association must not leak, not even as a new ETag."""
    # Given an association with public content in every kind, and another association
    group = await node.create_association("demo")
    other = await node.create_association("other")
    await node.add_member("alice", "demo", role="admin")
    for kind in ("post", "resource", "alert", "proposal"):
        await insert(node, group, kind=kind)
    before = await snapshot(node)

    # When non-public, deleted-non-public, foreign and remote objects are written
    hidden = []
    for kind in ("post", "resource", "alert", "proposal"):
        for visibility in ("unlisted", "followers", "members", "direct"):
            hidden.append(await insert(node, group, kind=kind, visibility=visibility, severity="critical"))
            hidden.append(await insert(node, group, kind=kind, visibility=visibility, deleted=True))
        hidden.append(await insert(node, other, kind=kind))
        hidden.append(await insert(node, group, kind=kind, local=False))

    # Then every feed, in every format, is byte for byte what it was, with the same validators,
    # whoever asks (feeds are anonymous: a member's token or a bad credential changes nothing)
    assert await snapshot(node) == before
    token = await node.token("alice")
    assert await snapshot(node, Authorization=f"Bearer {token}") == before
    assert await snapshot(node, Authorization="Bearer nope", Signature='keyId="x",signature="y"') == before
    for _, _, body in before.values():
        for iri in hidden:
            assert iri.encode() not in body


async def test_conditional_requests_answer_304_without_rendering(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = await node.create_association("demo")
    alert = await insert(node, group, kind="alert", severity="warning")
    status, headers, body = await get(node, feed_path("atom"))
    etag, last_modified = headers["ETag"], headers["Last-Modified"]
    assert status == 200 and etag.startswith('"') and not etag.startswith("W/")
    async with node.sessions() as session:
        published = await session.scalar(select(RemoteObject.published).where(RemoteObject.iri == alert))
    assert parsedate_to_datetime(last_modified) == published

    def no_rendering(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a 304 must not render the feed")

    monkeypatch.setattr(feed_service, "feed_items", no_rendering)
    monkeypatch.setattr(feed_service, "render_feed", no_rendering)
    for method in ("GET", "HEAD"):
        for header in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
            status, response_headers, response_body = await get(
                node, feed_path("atom"), method=method, **{"If-None-Match": header}
            )
            assert status == 304 and response_body == b"", (method, header)
            assert response_headers["ETag"] == etag
            assert response_headers["Last-Modified"] == last_modified
            assert response_headers["Cache-Control"] == "public, max-age=60"
        status, _, response_body = await get(
            node, feed_path("atom"), method=method, **{"If-Modified-Since": last_modified}
        )
        assert status == 304 and response_body == b""
    monkeypatch.undo()

    later = format_datetime(parsedate_to_datetime(last_modified) + timedelta(days=1), usegmt=True)
    earlier = format_datetime(parsedate_to_datetime(last_modified) - timedelta(seconds=1), usegmt=True)
    assert (await get(node, feed_path("atom"), **{"If-Modified-Since": later}))[0] == 304
    for conditional in (
        {"If-None-Match": '"something-else"'},
        {"If-None-Match": '"something-else"', "If-Modified-Since": later},  # If-None-Match wins
        {"If-Modified-Since": earlier},
        {"If-Modified-Since": "not a date"},
    ):
        status, _, response_body = await get(node, feed_path("atom"), **conditional)
        assert status == 200 and response_body == body, conditional
    # The validator belongs to one format and kind
    status, _, _ = await get(node, feed_path("rss"), **{"If-None-Match": etag})
    assert status == 200
    status, _, _ = await get(node, feed_path("atom", "alerts"), **{"If-None-Match": etag})
    assert status == 200
    # HEAD: the headers of GET, no body
    status, head_headers, head_body = await get(node, feed_path("atom"), method="HEAD")
    assert status == 200 and head_body == b""
    assert head_headers["ETag"] == etag and head_headers["Content-Type"] == CONTENT_TYPES["atom"]


async def test_editing_and_deleting_change_the_validators(node: Node) -> None:
    # Given two public notes published through the outbox service
    group = await node.create_association("demo")
    admin = await actor_row(node, await node.add_member("alice", "demo", role="admin"))
    author = await actor_row(node, group)
    first = await publishing.post_to_outbox(
        node.fed, author, {"to": [AS_PUBLIC], "type": "Note", "content": "<p>un</p>"}, by=admin
    )
    second = await publishing.post_to_outbox(
        node.fed, author, {"to": [AS_PUBLIC], "type": "Note", "content": "<p>deux</p>"}, by=admin
    )
    etags = {path: (await get(node, path))[1]["ETag"] for path in ALL_FEEDS}

    # When the older one is edited
    edit = {"type": "Update", "object": {"id": first.object_iri, "content": "<p>un, corrigé</p>"}}
    await publishing.post_to_outbox(node.fed, author, edit, by=admin)
    # Then the feeds that list it change validators and content; the others do not
    edited = {path: (await get(node, path))[1]["ETag"] for path in ALL_FEEDS}
    for path in ALL_FEEDS:
        if "/feeds/" in path:
            assert edited[path] == etags[path], path
        else:
            assert edited[path] != etags[path], path
    _, _, body = await get(node, feed_path("json"))
    assert [item["content_html"] for item in json.loads(body)["items"]] == [
        "<p>deux</p>",
        "<p>un, corrigé</p>",
    ]
    status, _, _ = await get(node, feed_path("json"), **{"If-None-Match": etags[feed_path("json")]})
    assert status == 200

    # When the older one is deleted
    await publishing.post_to_outbox(
        node.fed, author, {"type": "Delete", "object": first.object_iri}, by=admin
    )
    deleted = {path: (await get(node, path))[1]["ETag"] for path in ALL_FEEDS}
    for fmt in FORMATS:
        path = feed_path(fmt)
        assert deleted[path] not in (etags[path], edited[path]), path
        assert await feed_ids(node, path) == [second.object_iri]
        status, _, _ = await get(node, path, **{"If-None-Match": edited[path]})
        assert status == 200


async def test_missing_feeds_are_the_same_404_problem(node: Node) -> None:
    """Unknown association, a member's actor, unknown kind or format: one answer, no oracle."""
    await node.create_association("demo")
    await node.add_member("alice", "demo")
    paths = [
        "/groups/nobody/feed.atom",
        "/groups/nobody/feeds/alerts.rss",
        "/users/alice/feed.atom",
        "/users/alice/feeds/alerts.json",
        "/users/nobody/feed.json",
        "/groups/demo/feed.html",
        "/groups/demo/feed.xml",
        "/groups/demo/feeds/replies.atom",
        "/groups/demo/feeds/votes.json",
        "/groups/demo/feeds/alerts.txt",
        "/groups/demo/feeds/alerts.atom.rss",
        "/groups/DEMO/feed.atom",
        "/groups/de%20mo/feed.atom",
    ]
    answers = []
    for path in paths:
        for method in ("GET", "HEAD"):
            status, headers, body = await get(node, path, method=method)
            assert status == 404, (method, path)
            assert headers["Content-Type"] == "application/problem+json", path
            if method == "GET":
                answers.append(json.loads(body))
    assert all(answer == answers[0] for answer in answers), answers
    assert answers[0]["code"] == "not_found"


async def test_association_page_links_its_feeds_and_a_member_page_does_not(node: Node) -> None:
    group = await node.create_association("demo", 'Démo "quotes" & co')
    await node.add_member("alice", "demo")
    response = await node.client.get("/groups/demo", headers={"Accept": BROWSER})
    page = await response.text()
    name = "Démo &quot;quotes&quot; &amp; co"
    for fmt, media_type, label in (
        ("atom", "application/atom+xml", "Atom"),
        ("rss", "application/rss+xml", "RSS"),
        ("json", "application/feed+json", "JSON Feed"),
    ):
        assert (
            f'<link rel="alternate" type="{media_type}" href="{group}/feed.{fmt}" '
            f'title="{name} — tout le contenu ({label})">'
        ) in page
        for kind, kind_label in (
            ("alerts", "alertes"),
            ("resources", "ressources"),
            ("proposals", "propositions"),
            ("events", "événements"),
        ):
            assert (
                f'<link rel="alternate" type="{media_type}" href="{group}/feeds/{kind}.{fmt}" '
                f'title="{name} — {kind_label} ({label})">'
            ) in page
    assert page.count('rel="alternate"') == 1 + 15
    # every advertised feed answers
    for href in [part.split('"')[0] for part in page.split('href="')[1:]]:
        if "/feed" in href:
            assert (await get(node, href.removeprefix(node.uris.origin)))[0] == 200, href
    member_page = await (await node.client.get("/users/alice", headers={"Accept": BROWSER})).text()
    assert "/feed" not in member_page


async def test_feed_of_an_association_without_content_is_valid_and_empty(node: Node) -> None:
    group = await node.create_association("demo", "Démo")
    created = (await actor_row(node, group)).created_at
    for path in ALL_FEEDS:
        status, headers, body = await get(node, path)
        assert status == 200, path
        assert parse_ids(path.rsplit(".", 1)[1], body) == []
        assert headers["ETag"]
        assert parsedate_to_datetime(headers["Last-Modified"]) == created.replace(microsecond=0)


async def test_only_the_fifty_newest_entries_are_listed(node: Node) -> None:
    group = await node.create_association("demo")
    made = [await insert(node, group, kind="resource", name=f"Ressource {i}") for i in range(53)]
    for fmt in FORMATS:
        assert await feed_ids(node, feed_path(fmt, "resources")) == list(reversed(made))[:50]


async def test_a_rendered_feed_is_reused_while_its_etag_holds(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = await node.create_association("demo")
    await insert(node, group)
    status, headers, body = await get(node, feed_path("rss"))
    assert status == 200

    def no_rendering(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the same ETag must reuse the rendered body")

    # Given the feed rendered once, the next readers get the same bytes without a rebuild
    with monkeypatch.context() as patch:
        patch.setattr(feed_service, "feed_items", no_rendering)
        patch.setattr(feed_service, "render_feed", no_rendering)
        node.client.server.app[PAGE_CACHE].clear()  # type: ignore[union-attr]
        again = await node.client.get(feed_path("rss"))
        assert again.status == 200 and await again.read() == body
        assert again.headers["ETag"] == headers["ETag"]
    # and a new object gives a new ETag and a new rendering
    newer = await insert(node, group)
    node.client.server.app[PAGE_CACHE].clear()  # type: ignore[union-attr]
    fresh = await node.client.get(feed_path("rss"))
    assert fresh.headers["ETag"] != headers["ETag"]
    assert newer.encode() in await fresh.read()


def test_the_feed_tables_cover_the_uri_scheme() -> None:
    assert set(feed_service.CONTENT_TYPES) == set(uris.FEED_FORMATS)
    assert set(feed_service.OBJECT_KINDS) == {None, *uris.FEED_KINDS}
