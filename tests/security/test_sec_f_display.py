"""Content and identity display (security.md §F, cases 35-38).

Each test replays a catalogue case against a real node on SQLite and PostgreSQL (the ``world``
fixture of :mod:`tests.support.world`). Hostile content comes in through the inbox (a member of
the association posts into it, as a reply to the association's public note) and through the
API, then is read back through every channel that shows it: the thread, the outbox and the
relayed ``Announce``, the object's HTML page and its Open Graph tags, the feeds, the JSON API and
the association's page. The oracle reads every string of every answer as a browser would.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

import pytest
from sqlalchemy import update

from server.db.models import Actor
from server.services.content.sanitize import ALLOWED_ATTRIBUTES, ALLOWED_CLASSES, ALLOWED_TAGS, URL_SCHEMES
from tests.support.nodes import Node
from tests.support.signed_inbox import AS_PUBLIC, StallingPeers, processed, settle
from tests.support.visibility import AP, HTML, Reader, read
from tests.support.world import (
    GROUP_INBOX,
    NodeStarter,
    World,
    activity,
    create,
    given_world,
    note,
    object_row,
)

# The catalogue's payloads (case 35) and mutation-XSS shapes that rely on a reparse.
PAYLOADS = {
    "img-onerror": "<img src=x onerror=alert(1)>",
    "javascript-href": '<a href="javascript:alert(1)">x</a>',
    "javascript-href-obfuscated": '<a href="java&#x09;script&colon;alert(1)">x</a>',
    "data-href": '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    "svg-script": "<svg><script>alert(1)</script><a xlink:href=javascript:alert(1)>x</a></svg>",
    "style": '<style>body{display:none}</style><p style="background:url(javascript:alert(1))">x</p>',
    "iframe": '<iframe srcdoc="<script>alert(1)</script>" src="https://evil.example"></iframe>',
    "form": '<form action="https://evil.example"><input name=x><button formaction=javascript:alert(1)>',
    "math-mxss": "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "noscript-mxss": '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "class-spoof": '<p class="status__content">x</p>'
    '<a class="mention u-url" href="https://evil.example">@alice@peer.example</a>',
    "nested-links": '<a href="https://a.example/">1<table><a href="javascript:alert(1)">2</a></table></a>',
}
HOSTILE_URLS = ("javascript:alert(1)", "data:text/html,<script>alert(1)</script>", " JaVaScRiPt:alert(1)")
LAYOUT_TAGS = {
    *("html", "head", "meta", "title", "link", "body", "article", "header", "main"),
    *("nav", "footer", "section", "div", "span", "time", "form", "input", "button", "details", "summary"),
    *("dl", "dt", "dd", "table", "thead", "tbody", "tr", "th", "td", "h1", "h2", "h3", "ol", "ul", "li"),
}
"""The elements the web pages' templates write (server/http/templates) around stored HTML, which goes
in ``<div class="prose">``."""
CSP = "default-src 'none'"
FEEDS = ("atom", "rss", "json")


# ---------------------------------------------------------------------------------------------
# The oracle: what a browser would run
# ---------------------------------------------------------------------------------------------


def _scheme(url: str) -> str:
    """The scheme a browser uses: tabs/newlines removed, C0 controls and spaces stripped."""
    cleaned = re.sub(r"[\t\n\r]", "", url).lstrip("".join(map(chr, range(0x21)))).lower()
    return urlsplit(cleaned).scheme if re.match(r"^[a-z][a-z0-9+.-]*:", cleaned) else ""


class _Inert(HTMLParser):
    """Collects every reason a piece of HTML is not inert.

    ``strict``: rich text must also be inside the sanitiser's allowlist (tags, attributes,
    classes); otherwise (plain-text fields, which every output escapes) only what could run or
    load counts: a tag outside the allowlist, an event handler, a style, a script URL.
    """

    def __init__(self, extra_tags: frozenset[str], *, strict: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.extra_tags = extra_tags
        self.strict = strict
        self.problems: list[str] = []
        self.links_open = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS and tag not in self.extra_tags:
            self.problems.append(f"<{tag}>")
        if tag == "a":
            self.links_open += 1
            if self.links_open > 1 and self.strict:
                self.problems.append("<a> inside <a>")
        for name, value in attrs:
            if name.startswith("on") or name in ("style", "srcdoc", "formaction", "xlink:href", "http-equiv"):
                self.problems.append(f"<{tag} {name}>")
            if name in ("href", "src", "action") and _scheme(value or "") not in (*URL_SCHEMES, ""):
                self.problems.append(f"<{tag} {name}={value!r}>")
            if not self.strict or tag not in ALLOWED_TAGS or tag in self.extra_tags:
                continue
            if name == "class" and not set((value or "").split()) <= ALLOWED_CLASSES:
                self.problems.append(f"<{tag} class={value!r}>")
            if name != "rel" and name not in ALLOWED_ATTRIBUTES.get(tag, set()):
                self.problems.append(f"<{tag} {name}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self.links_open = max(self.links_open - 1, 0)


def problems_in_html(
    markup: str, *, extra_tags: frozenset[str] = frozenset(), strict: bool = True
) -> list[str]:
    reader = _Inert(extra_tags, strict=strict)
    reader.feed(markup)
    reader.close()
    return reader.problems


def problems_in_page(markup: str) -> list[str]:
    """A templated page: nothing in it may run or load, and each stored text's region
    (``<div class="prose">``) is held to the sanitiser's allowlist."""
    problems = problems_in_html(markup, extra_tags=frozenset(LAYOUT_TAGS), strict=False)
    for region in re.findall(r'<div class="prose">(.*?)</div>\n', markup, flags=re.S):
        problems += problems_in_html(region)
    return problems


def _strings(value: Any, where: str = "$") -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{where}[{index}]")


RICH_AS2 = re.compile(r"\.(content|summary)(Map\.[^.\[]+)?$")
RICH_JSON_FEED = re.compile(r"\.content_html$")  # JSON Feed's summary is plain text


def problems_in_json(document: Any, rich_fields: re.Pattern[str] = RICH_AS2) -> list[str]:
    """Every string read as HTML (a client may render any field), strictly for rich text fields."""
    found = []
    for where, text in _strings(document):
        strict = rich_fields.search(where) is not None
        found += [f"{where}: {p}" for p in problems_in_html(text, strict=strict)]
        if _scheme(text) in ("javascript", "data", "vbscript"):
            found.append(f"{where}: {text!r}")
    return found


def problems_in_feed(fmt: str, body: bytes) -> list[str]:
    if fmt == "json":
        return problems_in_json(json.loads(body), RICH_JSON_FEED)
    found = []
    for element in ElementTree.fromstring(body).iter():
        for text in (element.text or "", *element.attrib.values()):
            found += [f"<{element.tag}>: {p}" for p in problems_in_html(text, strict=False)]
            if _scheme(text) in ("javascript", "data", "vbscript"):
                found.append(f"<{element.tag}>: {text!r}")
    return found


# ---------------------------------------------------------------------------------------------
# The scene: collectif, its admin adele, its remote member alice, and a public note
# ---------------------------------------------------------------------------------------------


@dataclass
class Scene:
    world: World
    admin: str  # adele's token
    root: str  # collectif's public note

    @property
    def node(self) -> Node:
        return self.world.node


async def given_scene(node: Node, peers: StallingPeers) -> Scene:
    world = await given_world(node, peers)
    await node.add_member("adele", "collectif", role="admin")
    async with node.sessions.begin() as session:
        await session.execute(update(Actor).where(Actor.iri == world.group).values(join_policy="open"))
    join = activity("Join", world.alice, world.group)
    assert (await world.send(GROUP_INBOX, join, world.alice)).status == 202
    assert await processed(node, join["id"]) == "processed"
    admin = await node.token("adele")
    posted = await node.post_outbox(
        "/groups/collectif",
        admin,
        {"type": "Note", "content": "<p>Réunion jeudi</p>", "visibility": "public"},
    )
    await settle(node)
    peers.hits.clear()
    return Scene(world, admin, posted["object"])


@pytest.fixture
async def scene(start_node: NodeStarter, peers: StallingPeers) -> AsyncIterator[Scene]:
    async with start_node() as node:
        yield await given_scene(node, peers)


def hostile_note(scene: Scene, payload: str) -> dict[str, Any]:
    """Alice's reply into collectif with ``payload`` in every field a reader sees."""
    world = scene.world
    return note(
        world.alice,
        to=[AS_PUBLIC, world.group],
        cc=[world.alice.iri + "/followers"],
        audience=world.group,
        inReplyTo=scene.root,
        content=f"<p>Bonjour</p>{payload}",
        contentMap={"fr": f"<p>Bonjour</p>{payload}"},
        summary=payload,
        name=f"{payload}Titre",
        url=HOSTILE_URLS[0],
        attachment=[
            {
                "type": "Document",
                "mediaType": "image/png",
                "url": "https://peer.example/media/1.png",
                "name": payload,
            }
        ],
        tag=[
            {"type": "Hashtag", "name": f"#{payload}", "href": HOSTILE_URLS[1]},
            {"type": "Mention", "name": f"@{payload}", "href": HOSTILE_URLS[2]},
        ],
    )


async def _channels(scene: Scene) -> dict[str, Any]:
    """Every answer that may show a peer's reply into the association, by channel name."""
    node, anonymous = scene.node, Reader("anonymous")
    answers: dict[str, Any] = {}
    thread = await read(node, anonymous, f"{scene.root}/context")
    assert thread.status == 200, thread.text
    answers["thread"] = json.loads(thread.body)
    outbox = await read(node, anonymous, "/groups/collectif/outbox?page=true")
    assert outbox.status == 200, outbox.text
    answers["outbox"] = json.loads(outbox.body)
    for item in answers["outbox"]["orderedItems"]:
        if item.get("type") == "Announce":
            seen = await read(node, anonymous, item["id"])
            assert seen.status == 200, seen.text
            answers[f"activity {item['id']}"] = json.loads(seen.body)
    return answers


# ---------------------------------------------------------------------------------------------
# 35. HTML and XSS in federated content
# ---------------------------------------------------------------------------------------------


async def test_sec_35_html_in_a_peers_post_is_inert_in_every_channel(scene: Scene) -> None:
    """A member's replies carry each payload in every field: each channel shows them inert."""
    world = scene.world
    hostile = {name: hostile_note(scene, payload) for name, payload in PAYLOADS.items()}
    # When alice posts one reply per payload into collectif
    for document in hostile.values():
        sent = create(world.alice, document)
        assert (await world.send(GROUP_INBOX, sent, world.alice)).status == 202
        assert await processed(scene.node, sent["id"]) == "processed"
    await settle(scene.node)
    # Then they are stored, relayed, listed in the thread: and nothing in any answer runs
    answers = await _channels(scene)
    listed = json.dumps(answers["thread"])
    assert [name for name, document in hostile.items() if document["id"] not in listed] == []
    assert any(k.startswith("activity ") for k in answers), "the association relayed the replies"
    for channel, document in answers.items():
        assert problems_in_json(document) == [], (channel, problems_in_json(document))
    page = await read(scene.node, Reader("anonymous"), "/groups/collectif", accept=HTML)
    assert CSP in (page.header("Content-Security-Policy") or "")
    assert problems_in_page(page.text) == []


async def test_sec_35_html_in_a_members_post_is_inert_in_pages_meta_feeds_and_api(scene: Scene) -> None:
    """The same payloads through the API: the pages, their Open Graph tags, feeds and API are inert."""
    node, anonymous = scene.node, Reader("anonymous")
    posted = {}
    for name, payload in PAYLOADS.items():
        response = await node.client.post(
            "/api/associations/collectif/posts",
            json={
                "name": f"{payload}Titre",
                "summary": payload,
                "content": f"<p>Bonjour</p>{payload}",
                "visibility": "public",
            },
            headers={"Authorization": f"Bearer {scene.admin}"},
        )
        assert response.status == 201, (name, await response.text())
        posted[name] = (await response.json())["id"]
    for name, iri in posted.items():
        page = await read(node, anonymous, iri, accept=HTML)
        assert page.status == 200, name
        assert CSP in (page.header("Content-Security-Policy") or ""), name
        assert page.header("X-Content-Type-Options") == "nosniff", name
        assert problems_in_page(page.text) == [], name
        assert 'class="prose"' in page.text, name
        assert 'property="og:title"' in page.text, name
        for path in (iri, f"/api/objects?iri={iri}"):
            seen = await read(node, anonymous, path, accept="application/json" if "api" in path else AP)
            assert seen.status == 200, (name, path)
            assert problems_in_json(json.loads(seen.body)) == [], (name, path)
    for fmt in FEEDS:
        feed = await read(node, anonymous, f"/groups/collectif/feed.{fmt}", accept="*/*")
        assert feed.status == 200 and all(iri in feed.text for iri in posted.values()), fmt
        assert problems_in_feed(fmt, feed.body) == [], (fmt, problems_in_feed(fmt, feed.body))
    listing = await read(
        node, anonymous, "/api/associations/collectif/posts?limit=100", accept="application/json"
    )
    assert listing.status == 200 and problems_in_json(json.loads(listing.body)) == []


async def test_sec_35_meta_tags_escape_attribute_values(scene: Scene) -> None:
    """A title and summary made of quotes and angle brackets stay inside the content="" attribute."""
    hostile = '"><script>alert(1)</script><meta http-equiv="refresh" content="0;url=https://evil.example">'
    response = await scene.node.client.post(
        "/api/associations/collectif/posts",
        json={"name": hostile, "summary": f"x {hostile}", "content": "<p>x</p>", "visibility": "public"},
        headers={"Authorization": f"Bearer {scene.admin}"},
    )
    assert response.status == 201, await response.text()
    page = await read(scene.node, Reader("anonymous"), (await response.json())["id"], accept=HTML)
    assert problems_in_page(page.text) == []
    assert "http-equiv" not in page.text.split("<body>")[0].replace("http-equiv=&quot;", "")


# ---------------------------------------------------------------------------------------------
# 38. Someone else's attachments, or non-media objects as attachments
# ---------------------------------------------------------------------------------------------


def _foreign_attachments(scene: Scene) -> dict[str, dict[str, Any]]:
    node = scene.node
    return {
        "our-object": {"type": "Note", "id": scene.root},
        "our-object-as-document": {"type": "Document", "mediaType": "image/png", "url": scene.root},
        "our-media": {"type": "Image", "mediaType": "image/png", "url": node.uris.iri("/media/ab/cd/x.png")},
        "javascript-url": {"type": "Image", "mediaType": "image/png", "url": "javascript:alert(1)"},
        "data-url": {"type": "Image", "mediaType": "text/html", "url": "data:text/html,<script>x</script>"},
        "actor": {"type": "Person", "id": scene.world.mallory.iri, "url": scene.world.mallory.iri},
        "link-to-script": {"type": "Document", "url": {"type": "Link", "href": "javascript:alert(1)"}},
    }


async def test_sec_38_foreign_or_non_media_attachment_is_dropped(scene: Scene) -> None:
    """A peer's attachment naming our objects or media, or no http(s) media, is not kept."""
    world = scene.world
    media = {"type": "Document", "mediaType": "image/png", "url": "https://peer.example/media/ok.png"}
    notes = {}
    for shape, attachment in _foreign_attachments(scene).items():
        notes[shape] = note(
            world.alice,
            to=[AS_PUBLIC, world.group],
            audience=world.group,
            inReplyTo=scene.root,
            attachment=[attachment, media],
        )
        sent = create(world.alice, notes[shape])
        assert (await world.send(GROUP_INBOX, sent, world.alice)).status == 202
        assert await processed(scene.node, sent["id"]) == "processed", shape
    await settle(scene.node)
    for shape, hostile in notes.items():
        stored = await object_row(scene.node, hostile["id"])
        assert stored is not None, shape
        assert stored.document["attachment"] == [media], shape  # only the real media of its own host
    assert world.peers.hits == []  # nothing dereferenced, not even the media
    for channel, document in (await _channels(scene)).items():
        assert problems_in_json(document) == [], channel


async def test_sec_38_a_lying_media_type_is_kept_as_a_link_only(scene: Scene) -> None:
    """A "png" that is HTML stays an http(s) link; no channel embeds it as active content."""
    world = scene.world
    lie = {"type": "Image", "mediaType": "image/png", "url": "https://peer.example/media/page.html"}
    hostile = note(
        world.alice, to=[AS_PUBLIC, world.group], audience=world.group, inReplyTo=scene.root, attachment=[lie]
    )
    sent = create(world.alice, hostile)
    assert (await world.send(GROUP_INBOX, sent, world.alice)).status == 202
    assert await processed(scene.node, sent["id"]) == "processed"
    answers = await _channels(scene)
    for channel, document in answers.items():
        assert problems_in_json(document) == [], channel
    assert world.peers.count(lie["url"]) == 0  # never fetched, never proxied
