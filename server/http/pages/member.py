"""A signed-in member's own pages: the home timeline, notifications, following an association or
a person by handle or URL, and the list of their follows and memberships; and the language
switch of visitors.

The timeline and notifications are the same data as ``GET /api/timeline`` and
``GET /api/notifications``, read through the same services (and so the same read filter).
Following looks the address up with WebFinger (a handle) or fetches it (a URL) through the
federation's transport: the address guard and the peer policy refuse private addresses and
blocked domains, and every failure is said next to the field, never as a server error.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from aiohttp import web

from federation.errors import (
    FederationError,
    InvalidDocument,
    KeyFetchTemporaryFailure,
    PeerNotAllowed,
    UnsafeAddress,
)
from federation.fetch import DocumentGone, FetchTemporaryFailure, NotActivityStreams
from federation.lookup import (
    AmbiguousHandle,
    HandleMismatch,
    LocalHandleRefused,
    WebFingerNotFound,
    WebFingerTemporaryFailure,
)
from server.appkeys import FEDERATION, NODE
from server.http.pages import core as w
from server.http.pages import i18n
from server.http.pages.objects import page_of
from server.http.ratelimit import HostRateLimiter, retry_after_header
from server.services.accounts.sessions import SignedIn
from server.services.actors import directory
from server.services.actors.remote import lookup_account
from server.services.content.sanitize import sanitize_html
from server.services.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceError
from server.services.federation import Federation
from server.services.membership import following
from server.services.membership import members as membership
from server.services.reading import notifications, timeline
from server.services.reading import objects as reading
from server.services.reading.visibility import Viewer, ViewerKind
from server.services.types import Actor, RemoteObject, Session

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

PAGE_SIZE: Final = 20
LOOKUP_LIMITER: Final = web.AppKey("lookup_limiter", HostRateLimiter)
LOOKUP_RATE_PER_S: Final = 1 / 3  # one more look-up every 3 s once the burst is spent
LOOKUP_BURST: Final = 20
LANGUAGE_COOKIE_AGE: Final = int(timedelta(days=365).total_seconds())
MAX_ADDRESS: Final = 2048
HANDLE: Final = re.compile(
    r"^@?(?P<user>[A-Za-z0-9_][A-Za-z0-9_.-]{0,63})@(?P<host>[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?)$"
)
ACTOR_TYPES: Final = ("Group", "Person", "Service", "Application", "Organization")


def lookup_limiter() -> HostRateLimiter:
    return HostRateLimiter(rate_per_s=LOOKUP_RATE_PER_S, burst=LOOKUP_BURST)


def _reader(user: SignedIn) -> Viewer:
    return Viewer(ViewerKind.LOCAL, actor_id=user.actor.id, actor_iri=user.actor.iri, scope="write")


# --- the home timeline ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Item:
    """One timeline item as the page shows it."""

    row: RemoteObject
    author: Actor | None
    href: str
    title: str


def _title(row: RemoteObject) -> str:
    doc = row.document
    for key in ("name", "summary", "content"):
        value = doc.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return ""


async def _items(session: Session, rows: list[RemoteObject]) -> list[Item]:
    authors = await directory.by_ids(session, {row.attributed_to_id for row in rows if row.attributed_to_id})
    return [Item(row, authors.get(row.attributed_to_id), page_of(row), _title(row)) for row in rows]


def _cursor(request: web.Request, name: str) -> timeline.Cursor | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    cursor = timeline.Cursor.parse(raw)
    if cursor is None:
        raise InvalidInput(f"{name} must be the cursor of a page", field=name)
    return cursor


@routes.get("/timeline")
async def timeline_page(request: web.Request) -> web.Response:
    """What the member follows and their associations published, newest first; a kind per tab."""
    user = await w.require_signed_in(request)
    kind = request.query.get("kind") or None
    if kind not in (None, *timeline.TIMELINE_KINDS):
        kind = None  # an unknown tab is the whole timeline, as on an association's page
    before, after = _cursor(request, "before"), _cursor(request, "after")
    node = request.app[NODE]
    older: timeline.Cursor | None
    async with node.sessions() as session:
        if after is not None:
            entries, newer = await timeline.newer(
                session, _reader(user), kind=kind, after=after, limit=PAGE_SIZE
            )
            older = entries[-1].cursor if entries else after
        else:
            entries, older = await timeline.timeline(
                session, _reader(user), kind=kind, before=before, limit=PAGE_SIZE
            )
            newer = before is not None and bool(entries)
        rows = [entry.object for entry in entries]
        items = await _items(session, rows)
    base = "/timeline?" + (f"kind={kind}&" if kind else "")
    context = {
        "items": items,
        "kinds": timeline.TIMELINE_KINDS,
        "kind": kind,
        "next": f"{base}before={older}" if older is not None and rows else None,
        "previous": f"{base}after={entries[0].cursor}" if newer and entries else None,
        "first": base.rstrip("?&") if (before is not None or after is not None) else None,
    }
    return await w.render(request, "timeline.html", context, title="timeline")


# --- notifications --------------------------------------------------------------------------------


def _instant(value: Any) -> datetime | None:
    """An instant a notification carries as ISO 8601 (a suspension's end), for the page's dates."""
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None
    except ValueError:
        return None


@routes.get("/notifications")
async def notifications_page(request: web.Request) -> web.Response:
    user = await w.require_signed_in(request)
    raw = request.query.get("before")
    before = notifications.Key.parse(raw) if raw is not None else None
    if raw is not None and before is None:
        raise InvalidInput("before must be the cursor of a page", field="before")
    node = request.app[NODE]
    async with node.sessions() as session:
        page = await notifications.notifications(
            session,
            _reader(user),
            before=before,
            limit=PAGE_SIZE,
            now=node.clock(),
            reminder_before=node.settings.events.reminder_before,
        )
        actor_iris = {n.actor for n in page.items if n.actor} | {
            str(n.detail["association"]) for n in page.items if n.detail and n.detail.get("association")
        }
        object_iris = {n.object for n in page.items if n.object}
        actors = await directory.by_iris(session, actor_iris)
        objects = await reading.objects_by_iris(session, object_iris)
    rows = [
        {
            "n": n,
            "unread": page.read_at is None or n.at > page.read_at,
            "actor": actors.get(n.actor or ""),
            "object": objects.get(n.object or ""),
            "href": page_of(objects[n.object]) if n.object in objects else None,
            "result": sorted((n.detail or {}).get("result", {}).items()),
            "state": (n.detail or {}).get("state"),
            "until": _instant((n.detail or {}).get("until")),
            "association": actors.get(str((n.detail or {}).get("association", ""))),
        }
        for n in page.items
    ]
    context = {
        "rows": rows,
        "next": f"/notifications?before={page.next_before.encode()}" if page.next_before else None,
        "first": "/notifications" if before is not None else None,
        "notice": "read" if request.query.get("done") == "read" else "",
    }
    return await w.render(request, "notifications.html", context, title="notifications")


@routes.post("/notifications/read")
async def mark_read(request: web.Request) -> web.StreamResponse:
    user = await w.require_signed_in(request)
    await w.form(request, user)
    node = request.app[NODE]
    async with node.sessions.begin() as session:
        await notifications.mark_read(session, _reader(user), now=node.clock())
    raise web.HTTPSeeOther("/notifications?done=read")


# --- follow by handle or URL ----------------------------------------------------------------------


class AddressRefused(Exception):
    """The address cannot be followed; ``key`` is the catalogue's message for the field."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "[::1]") or host.startswith("127.")


async def _lookup(fed: Federation, address: str) -> Actor:
    """The live actor ``address`` names (see :func:`_find`); a deleted one is no account.

    Raises:
        AddressRefused: see :func:`_find`.
    """
    found = await _find(fed, address)
    if found.deleted_at is not None:
        raise AddressRefused("follow_no_account")
    return found


async def _find(fed: Federation, address: str) -> Actor:
    """The actor ``address`` names (``@slug@host``, ``slug@host`` or an actor's URL), fetched
    and stored, or one of ours.

    Raises:
        AddressRefused: the address is malformed, or names no reachable, allowed actor.
    """
    address = address.strip()
    if not address or len(address) > MAX_ADDRESS or any(c.isspace() or ord(c) < 0x20 for c in address):
        raise AddressRefused("follow_bad_address")
    try:
        return await _resolve(fed, address)
    except _LOOKUP_ERRORS as exc:
        raise _refusal(address, exc) from None


async def _resolve(fed: Federation, address: str) -> Actor:
    """The actor an actor's URL or a handle names."""
    if address.startswith(("https://", "http://")):
        try:
            parts = urlsplit(address)
        except ValueError:
            raise AddressRefused("follow_bad_address") from None
        if not parts.hostname or parts.username or parts.password:
            raise AddressRefused("follow_bad_address")
        return await fed.actor(address)
    match = HANDLE.match(address)
    if match is None:
        raise AddressRefused("follow_bad_address")
    return await _by_handle(fed, match["user"], match["host"])


async def _by_handle(fed: Federation, user: str, host_port: str) -> Actor:
    """The actor ``user@host`` names, looked up with WebFinger; one of ours by its name."""
    node = fed.node
    host = host_port.rsplit(":", 1)[0] if ":" in host_port else host_port
    insecure = node.settings.federation.allow_private_addresses and _loopback(host)
    options: dict[str, Any] = {
        "policy": fed.policy,
        "allow_http": insecure,
        "scheme": "http" if insecure else "https",
    }
    handle = f"{user}@{host_port}"
    try:
        return await lookup_account(node, fed.transport, handle, **options)
    except AmbiguousHandle:  # a person and an association share the name: the association
        return await lookup_account(node, fed.transport, handle, actor_type="Group", **options)
    except LocalHandleRefused:
        async with node.sessions() as session:
            found = await directory.local_by_name(session, user)
        if not found:
            raise AddressRefused("follow_no_account") from None
        return next((a for a in found if a.type == "Group"), found[0])


_REFUSALS: tuple[tuple[tuple[type[Exception], ...], str], ...] = (
    ((PeerNotAllowed,), "follow_blocked"),
    ((UnsafeAddress,), "follow_unsafe_address"),
    ((WebFingerNotFound, NotFound, DocumentGone), "follow_no_account"),
    ((WebFingerTemporaryFailure, FetchTemporaryFailure, KeyFetchTemporaryFailure), "follow_unreachable"),
    ((HandleMismatch,), "follow_handle_mismatch"),
    ((InvalidDocument, NotActivityStreams), "follow_not_actor"),
)
"""Why a look-up failed, first match first, as the catalogue's message for the address field."""
_LOOKUP_ERRORS: tuple[type[Exception], ...] = (
    *(error for errors, _ in _REFUSALS for error in errors),
    FederationError,
    ServiceError,
)


def _refusal(address: str, exc: Exception) -> AddressRefused:
    """The refusal a failed look-up of ``address`` is shown as (``follow_failed`` when unforeseen)."""
    for errors, key in _REFUSALS:
        if isinstance(exc, errors):
            return AddressRefused(key)
    log.info("follow look-up failed", extra={"address": address[:200], "error": type(exc).__name__})
    return AddressRefused("follow_failed")


async def _relations(session: Session, me: Actor, actor: Actor) -> dict[str, str | None]:
    follow = await following.follow_state(session, me.id, actor.id)
    joined = await membership.state_of(session, actor.id, me.id) if actor.type == "Group" else None
    return {"follow": follow, "membership": joined}


async def _follow_page(
    request: web.Request,
    user: SignedIn,
    *,
    address: str = "",
    found: Actor | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    context: dict[str, Any] = {"address": address, "found": None, "errors": errors or {}}
    if found is not None:
        async with request.app[NODE].sessions() as session:
            relations = await _relations(session, user.actor, found)
        context["found"] = {
            "actor": found,
            "summary": sanitize_html(found.summary or ""),
            "type": found.type if found.type in ACTOR_TYPES else "other",
            "handle": f"@{found.handle}@{found.host}",
            "can_join": found.type == "Group" and (not found.local or found.join_policy != "closed"),
            **relations,
        }
    return await w.render(request, "follow.html", context, status=status, title="follow_title")


@routes.get("/follow")
async def follow_form(request: web.Request) -> web.Response:
    user = await w.require_signed_in(request)
    return await _follow_page(request, user, address=w.field(request.query, "address")[:MAX_ADDRESS])


@routes.post("/follow")
async def follow_lookup(request: web.Request) -> web.Response:
    """Look the address up and show what it names, with the buttons to follow or join it."""
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    address = w.field(data, "address")[:MAX_ADDRESS]
    wait = request.app[LOOKUP_LIMITER].take(f"account:{user.actor.id}")
    if wait is not None:
        response = await _follow_page(
            request, user, address=address, errors={"address": "too_many_lookups"}, status=429
        )
        response.headers["Retry-After"] = retry_after_header(wait)
        return response
    try:
        found = await _lookup(request.app[FEDERATION], address)
    except AddressRefused as refused:
        log.info("follow address refused", extra={"reason": refused.key})
        return await _follow_page(request, user, address=address, errors={"address": refused.key}, status=400)
    return await _follow_page(request, user, address=address, found=found)


async def _stored_actor(request: web.Request, iri: str) -> Actor:
    async with request.app[NODE].sessions() as session:
        actor = await directory.by_iri(session, iri) if iri else None
    if actor is None or actor.deleted_at is not None or actor.type not in ACTOR_TYPES:
        raise NotFound("no such actor")
    return actor


@routes.post("/follow/actor")
async def follow_actor(request: web.Request) -> web.StreamResponse:
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    target = await _stored_actor(request, w.field(data, "iri"))
    if target.local or target.id == user.actor.id:
        return await _follow_page(request, user, found=target, errors={"follow": "follow_local"}, status=400)
    try:
        await following.follow(
            request.app[FEDERATION], local_name=user.actor.handle, target_iri=target.iri, as_actor=user.actor
        )
    except (FederationError, ServiceError) as exc:
        log.info("follow refused", extra={"target": target.iri, "error": type(exc).__name__})
        return await _follow_page(request, user, found=target, errors={"follow": "follow_failed"}, status=400)
    raise web.HTTPSeeOther("/following?done=follow")


@routes.post("/follow/join")
async def join_actor(request: web.Request) -> web.StreamResponse:
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    group = await _stored_actor(request, w.field(data, "iri"))
    try:
        if group.local:
            await membership.join_here(request.app[FEDERATION], user.actor, group)
        else:
            await membership.join(request.app[FEDERATION], user.actor, group.iri)
    except Conflict:
        return await _follow_page(request, user, found=group, errors={"join": "join_already"}, status=409)
    except (Forbidden, InvalidInput):
        return await _follow_page(request, user, found=group, errors={"join": "join_refused"}, status=400)
    except (FederationError, ServiceError) as exc:
        log.info("join refused", extra={"group": group.iri, "error": type(exc).__name__})
        return await _follow_page(request, user, found=group, errors={"join": "follow_failed"}, status=400)
    raise web.HTTPSeeOther("/following?done=join")


# --- my follows and memberships -------------------------------------------------------------------


@routes.get("/following")
async def following_page(request: web.Request) -> web.Response:
    user = await w.require_signed_in(request)
    node = request.app[NODE]
    async with node.sessions() as session:
        follows = await following.follows_of(session, user.actor.id)
        held = await membership.memberships_of(session, user.actor.id)
        groups = await directory.by_iris(session, [iri for iri, *_ in held])
    memberships = [
        {"iri": iri, "state": state, "local": local, "since": at, "group": groups.get(iri)}
        for iri, state, local, at in held
    ]
    done = request.query.get("done", "")
    context = {
        "follows": [(f, a) for f, a in follows],
        "memberships": memberships,
        "notice": done if done in ("follow", "join", "unfollow", "leave") else "",
    }
    return await w.render(request, "following.html", context, title="following_title")


@routes.post("/following/unfollow")
async def unfollow(request: web.Request) -> web.StreamResponse:
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    await following.unfollow(request.app[FEDERATION], follower=user.actor, follow_iri=w.field(data, "follow"))
    raise web.HTTPSeeOther("/following?done=unfollow")


@routes.post("/following/leave")
async def leave(request: web.Request) -> web.StreamResponse:
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    group = await _stored_actor(request, w.field(data, "iri"))
    await membership.leave(request.app[FEDERATION], user.actor, group.iri)
    raise web.HTTPSeeOther("/following?done=leave")


# --- the visitors' language switch ----------------------------------------------------------------


@routes.get("/language/{lang}")
async def choose_language(request: web.Request) -> web.StreamResponse:
    """A visitor chooses the pages' language (a cookie; no script). A signed-in member's pages
    follow their account's setting, which this does not change."""
    lang = request.match_info["lang"]
    if lang not in i18n.LANGUAGES:
        raise NotFound("no such language")
    next_path = request.query.get("next", "")
    response = web.HTTPSeeOther(next_path if w.safe_next(next_path) else "/")
    response.set_cookie(
        w.LANGUAGE_COOKIE,
        lang,
        max_age=LANGUAGE_COOKIE_AGE,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=w.secure_cookies(request),
    )
    w.security_headers(response, private=True)
    raise response
