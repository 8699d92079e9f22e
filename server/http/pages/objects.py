"""The page of one of our objects for a browser: an alert, a resource, a proposal, a post or a
reply, with its thread.

The reader is the signed-in account (or nobody), and the read filter decides, as for the API:
an object the reader may not read is the same 404 page as a missing one, and so is every reply
in its thread that they may not read. An alert that was retracted or superseded says so first,
with a link to what replaces it. A resource's text is Markdown when it was written as plain text
(rendered with markdown-it-py, then sanitised with nh3), and its versions are listed with what
changed between each and the one before.
"""

from __future__ import annotations

import difflib
import html
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import nh3
from aiohttp import web
from markdown_it import MarkdownIt

from federation.audience import PUBLICLY_READABLE
from federation.types import utc_now
from federation.vocab.entraide import Kind, option_names
from server.appkeys import FEDERATION, NODE
from server.http.pages import core as w
from server.services.actors import directory
from server.services.content import endorsements, polls
from server.services.content import local as content
from server.services.content.sanitize import plain_text, sanitize_html
from server.services.errors import Forbidden, InvalidInput
from server.services.events import agenda
from server.services.membership.standing import Suspended
from server.services.reading import objects as reading
from server.services.reading.visibility import Viewer
from server.services.types import RemoteObject, Session

routes = web.RouteTableDef()
OBJECT_PATH: Final = "/objects/{id:[0-9a-f]{32}}"
READ_PATH: Final = "/read/{rid:[0-9]{1,18}}"
"""A copy this node holds of a peer's object (from a member's timeline), read and answered here."""
THREAD_LIMIT: Final = reading.THREAD_LIMIT
_MARKDOWN: Final = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def render_markdown(text: str) -> str:
    """Markdown to HTML, then nh3's allowlist: the text's author controls nothing but the markup."""
    return nh3.clean(_MARKDOWN.render(text), link_rel="nofollow noopener noreferrer")


def body_html(document: dict[str, Any]) -> str:
    """The object's text as safe HTML: Markdown when it was written as plain text."""
    content = document.get("content")
    if not isinstance(content, str):
        return ""
    if "<" not in content:  # stored text without markup is the author's Markdown, unescaped
        return render_markdown(content.replace("&gt;", ">").replace("&lt;", "<").replace("&amp;", "&"))
    return sanitize_html(content)  # stored sanitised already; cleaned again on the way out


def event_description(document: dict[str, Any]) -> str:
    """An event's own description as safe HTML, without the readable summary that ``content``
    starts with for Mastodon (the page shows those facts itself); a peer's ``content`` else."""
    source = document.get("source")
    text = source.get("content") if isinstance(source, dict) else None
    return sanitize_html(text) if isinstance(text, str) else body_html(document)


@dataclass(frozen=True, slots=True)
class Version:
    """One version of an object: when, its text, and the lines changed since the one before."""

    when: datetime
    text: str
    changes: list[tuple[str, str]]  # ("+" | "-", line)


def _lines(document: dict[str, Any]) -> list[str]:
    content = document.get("content")
    raw = content if isinstance(content, str) else ""
    return [line for line in plain_text(raw.replace("</p>", "</p>\n")).splitlines() if line.strip()]


async def _versions(session: Session, row: RemoteObject) -> list[Version]:
    activities = await reading.revisions(session, row, limit=THREAD_LIMIT)
    versions: list[Version] = []
    before: list[str] = []
    for activity in activities:
        obj = activity.document.get("object")
        lines = _lines(obj) if isinstance(obj, dict) else []
        changes = [
            (d[0], d[2:]) for d in difflib.ndiff(before, lines) if d[:1] in ("+", "-") and d[2:].strip()
        ]
        versions.append(Version(activity.published, "\n".join(lines), changes if versions else []))
        before = lines
    return list(reversed(versions))  # newest first


async def _kind_details(session: Session, viewer: Viewer, row: RemoteObject, now: datetime) -> dict[str, Any]:
    doc = row.document
    if row.kind == Kind.EVENT.value:
        view = await agenda.event_view(session, viewer, row, now=now)
        return {"event": view, "event_body": event_description(doc)} if view is not None else {}
    if row.kind == Kind.RESOURCE.value:
        return {"versions": await _versions(session, row)}
    if row.kind == Kind.PROPOSAL.value:
        names, multiple = option_names(doc)
        counts = polls.results(doc)
        # The first page of the collection, bounded in items and bytes (case 52).
        documents, _ = await endorsements.endorsements_page(session, row.iri, after=0, limit=50)
        signers = [e.get("actor") for e in documents]
        known = await directory.by_iris(session, [s for s in signers if isinstance(s, str)])
        signer_actors = list(known.values())
        return {
            "options": [(name, counts.get(name, 0)) for name in names],
            "multiple": multiple,
            "closed": polls.is_closed(doc, utc_now()),
            "eligibility": polls.eligibility_of(row).value,
            "voters": doc.get("votersCount"),
            "signers": signer_actors,
        }
    if row.kind == Kind.ALERT.value and isinstance(doc.get("supersededBy"), str):
        successor = await reading.held_object(session, doc["supersededBy"])
        return {"successor": successor.iri if successor is not None else doc["supersededBy"]}
    return {}


PARTICIPATION_NOTICES: Final = frozenset({"accepted", "pending", "left"})


async def object_page(
    request: web.Request, *, errors: dict[str, str] | None = None, status: int = 200
) -> web.Response:
    """``GET /objects/{id}`` for a browser (a refused form of the page: ``errors``, ``status``)."""
    voted = request.query.get("voted") == "1"
    joined = request.query.get("participation", "")
    notice = "voted" if voted else f"event_{joined}" if joined in PARTICIPATION_NOTICES else ""
    return await _render(request, notice=notice, errors=errors, status=status)


async def _render(
    request: web.Request,
    *,
    errors: dict[str, str] | None = None,
    reply_text: str = "",
    notice: str = "",
    status: int = 200,
) -> web.Response:
    """The object's page; a refused reply or vote is shown next to its field, the text kept."""
    node = request.app[NODE]
    viewer = await w.viewer(request)
    async with node.sessions() as session:
        row = await located(request, session, viewer)
        private = row.visibility not in PUBLICLY_READABLE
        if row.deleted_at is not None:
            gone = {"heading": "error_title_410", "text": "error_text_410"}
            return await w.render(request, "error.html", gone, status=410, private=private, title="error")
        author = await directory.by_id(session, row.attributed_to_id)
        audience = await directory.by_id(session, row.audience_id)
        details = await _kind_details(session, viewer, row, w.now(request))
        thread = await reading.thread_replies(session, viewer, row, limit=THREAD_LIMIT)
    doc = row.document
    name = str(doc["name"]) if isinstance(doc.get("name"), str) else ""
    summary = doc.get("summary") if isinstance(doc.get("summary"), str) else None
    content = doc.get("content") if isinstance(doc.get("content"), str) else ""
    context: dict[str, Any] = {
        "excerpt": plain_text(summary or content)[:200],
        "row": row,
        "doc": doc,
        "name": name,
        "body": body_html(doc),
        "author": author,
        "audience": audience,
        "thread": [(reply, who, body_html(reply.document)) for reply, who in thread],
        "private_thread": any(reply.visibility not in PUBLICLY_READABLE for reply, _ in thread),
        "errors": errors or {},
        "reply_text": reply_text,
        "notice": notice,
        "self_path": _base_path(request),
        "original": row.iri if not row.local else None,
        "can_reply": row.visibility in PUBLICLY_READABLE and row.kind != Kind.VOTE.value,
        **details,
    }
    private = private or bool(context["private_thread"])
    return await w.render(
        request,
        "object.html",
        context,
        status=status,
        private=private,
        title=f"kind_{row.kind}",
        raw_title=name,
    )


def page_of(row: RemoteObject) -> str:
    """Where a browser reads ``row`` on this node: its own page, or its copy's for a peer's."""
    return row.iri if row.local else f"/read/{row.id}"


def _base_path(request: web.Request) -> str:
    if "rid" in request.match_info:
        return "/read/" + request.match_info["rid"]
    return "/objects/" + request.match_info["id"]


async def located(request: web.Request, session: Session, viewer: Viewer) -> RemoteObject:
    """The object the request's path names, if the reader may read it (NotFound otherwise)."""
    if "rid" not in request.match_info:
        iri = request.app[NODE].uris.object(request.match_info["id"])
        return await reading.readable_local_object(session, viewer, iri)
    return await reading.readable_copy(session, viewer, int(request.match_info["rid"]))


@routes.get(READ_PATH)
async def read_copy(request: web.Request) -> web.Response:
    """``GET /read/{id}``: a peer's object as this node holds it, with the reply and vote forms
    (one of ours is at its own address)."""
    node = request.app[NODE]
    async with node.sessions() as session:
        row = await located(request, session, await w.viewer(request))
    if row.local:
        raise web.HTTPSeeOther(row.iri)
    return await object_page(request)


def paragraphs(text: str) -> str:
    """A textarea's plain text as HTML paragraphs (escaped; blank lines separate paragraphs)."""
    blocks = [block.strip() for block in text.replace("\r\n", "\n").split("\n\n")]
    return "".join(
        "<p>" + "<br>".join(html.escape(line) for line in block.splitlines()) + "</p>"
        for block in blocks
        if block
    )


@routes.post(OBJECT_PATH + "/reply")
@routes.post(READ_PATH + "/reply")
async def reply(request: web.Request) -> web.Response:
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    text = w.field(data, "content")
    fed = request.app[FEDERATION]
    async with fed.node.sessions() as session:
        parent = await located(request, session, await w.viewer(request))
    if not text.strip():
        return await _render(request, errors={"content": "write_something"}, status=400)
    if parent.visibility not in PUBLICLY_READABLE:
        return await _render(request, errors={"content": "reply_public_only"}, reply_text=text, status=400)
    try:
        await content.create(
            fed,
            user.actor,
            {"type": "Note", "inReplyTo": parent.iri, "content": paragraphs(text)},
            by=user.actor,
        )
    except (InvalidInput, Forbidden) as exc:
        said = {"content": _said(exc)}
        return await _render(request, errors=said, reply_text=text, status=_status(exc))
    raise web.HTTPSeeOther(request.path.removesuffix("/reply") + "#replies-title")


@routes.post(OBJECT_PATH + "/vote")
@routes.post(READ_PATH + "/vote")
async def vote(request: web.Request) -> web.Response:
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    choice = w.field(data, "choice")
    fed = request.app[FEDERATION]
    async with fed.node.sessions() as session:
        question = await located(request, session, await w.viewer(request))
    if not choice:
        return await _render(request, errors={"choice": "choose_an_option"}, status=400)
    try:
        await polls.cast(fed, user.actor, {"name": choice, "inReplyTo": question.iri}, by=user.actor)
    except (InvalidInput, Forbidden) as exc:
        return await _render(request, errors={"choice": _said(exc)}, status=_status(exc))
    raise web.HTTPSeeOther(request.path.removesuffix("/vote") + "?voted=1")


def _said(error: InvalidInput | Forbidden) -> str:
    """What the form says of a refusal: a suspended member's own message (a catalogue key, as
    the error page says it), else the service's words."""
    return "error_text_suspended" if isinstance(error, Suspended) else error.detail


def _status(error: Exception) -> int:
    return 403 if isinstance(error, Forbidden) else 400
