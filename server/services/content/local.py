"""Publishing content as our actors: posts, resources, alerts, proposals and replies.

One entry point per verb (:func:`create`, :func:`update`, :func:`delete`) takes the client's
object (C2S or JSON API, same shape), checks every field it uses, renders the wire document
with :mod:`federation.vocab.entraide`, stores it and publishes the activity through the
transactional outbox in the same transaction. Edits and deletes are for the author only (for an
association: its admins and moderators, recorded in the audit log), and reach every node that
received the object (its audience).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, union
from sqlalchemy import update as sa_update
from sqlalchemy.ext.asyncio import AsyncSession

from federation.audience import PUBLICLY_READABLE, Visibility, address, classify
from federation.errors import FederationError
from federation.iri import is_http_iri
from federation.types import AS_PUBLIC, PUBLIC_ALIASES, Iri
from federation.vocab import entraide as wire
from federation.vocab.entraide import (
    AlertCategory,
    AlertInfo,
    AlertStatus,
    Eligibility,
    Kind,
    ProposalStatus,
    Severity,
)
from server.db import queue
from server.db.models import (
    Activity,
    Actor,
    Delivery,
    Endorsement,
    Reaction,
    Relay,
    RemoteObject,
    Vote,
)
from server.db.queries import actors as actor_queries
from server.services import audit as audit_log
from server.services.media import uploads as media_service
from server.services.membership import members as membership_service
from server.services.content import remote as objects
from server.services.reading import visibility
from server.services.errors import Forbidden, InvalidInput, NotFound
from server.services.federation import Federation
from server.services.delivery.outbox import new_activity_iri, publish
from server.services.content.sanitize import plain_text, sanitize_html, text_paragraph

log = logging.getLogger(__name__)

MAX_CONTENT_CHARS = 100_000
MAX_NAME_CHARS = 500
MAX_SUMMARY_CHARS = 2_000
MAX_RECIPIENTS = 200
MAX_TAGS = 20
MAX_ATTACHMENTS = 10
DEFAULT_POLL_DAYS = 7
MAX_POLL_DAYS = 366
POLL_CLOSE = "poll_close"

REMOVABLE = frozenset({"name", "summary", "tag", "license", "sensitive"})
"""What a partial ``Update`` may remove by setting it to ``null``."""
NAMED_KINDS = frozenset({Kind.RESOURCE, Kind.ALERT, Kind.PROPOSAL})
"""Kinds whose ``name`` (title, headline, question) is required."""

TYPE_OF_KIND = {
    Kind.POST: ("Note", "Article"),
    Kind.RESOURCE: ("Article",),
    Kind.ALERT: ("Note",),
    Kind.PROPOSAL: ("Question",),
    Kind.REPLY: ("Note", "Article"),
}


@dataclass(frozen=True, slots=True)
class Published:
    activity_iri: str | None
    object_iri: str | None


# --- field readers: each names the field it refuses ----------------------------------------------


def text(value: Any, field: str, limit: int, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise InvalidInput(f"{field} is required", field=field)
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    if len(value) > limit:
        raise InvalidInput(f"{field} is longer than {limit} characters", field=field)
    return value


def iri_value(value: Any, field: str) -> Iri | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("https://", "http://")) or len(value) > 2048:
        raise InvalidInput(f"{field} must be an http(s) IRI", field=field)
    return Iri(value)


def iri_list(value: Any, field: str) -> list[str]:
    items = (
        [value]
        if isinstance(value, str)
        else value
        if isinstance(value, list)
        else []
        if value is None
        else None
    )
    if items is None or not all(isinstance(i, str) for i in items) or len(items) > MAX_RECIPIENTS:
        raise InvalidInput(f"{field} must be an IRI or a list of at most {MAX_RECIPIENTS} IRIs", field=field)
    iris = [AS_PUBLIC if i in PUBLIC_ALIASES else i for i in items]
    # Addressees are fetched and delivered to: one we could never reach is the client's error.
    if not all(i == AS_PUBLIC or is_http_iri(i) for i in iris):
        raise InvalidInput(f"{field} must name http(s) IRIs with a valid host", field=field)
    return iris


def when(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    parsed = wire.parse_time(value)
    if parsed is None:
        raise InvalidInput(f"{field} must be an ISO 8601 date-time with a time zone", field=field)
    return parsed


def choice(cls: Any, value: Any, field: str, default: Any = None) -> Any:
    """``cls(value)`` for a StrEnum, or ``default`` when the value is absent."""
    if value is None and default is not None:
        return default
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise InvalidInput(f"{field} must be one of: {allowed}", field=field) from None


def language_of(value: Any) -> str | None:
    code = text(value, "language", 35)
    if code is not None and not all(part.isalnum() for part in code.split("-")):
        raise InvalidInput("language must be a BCP 47 tag such as fr or fr-BE", field="language")
    return code


def hashtags(fed: Federation, value: Any) -> list[dict[str, Any]]:
    """``tag``: hashtag names (strings, with or without ``#``) or AS2 ``Hashtag`` objects."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise InvalidInput(f"tag must be a list of at most {MAX_TAGS} hashtags", field="tag")
    tags = []
    for item in value:
        name = item.get("name") if isinstance(item, dict) and item.get("type") == "Hashtag" else item
        if not isinstance(name, str) or not 1 <= len(name.lstrip("#")) <= 100:
            raise InvalidInput("each tag must be a hashtag name of 1 to 100 characters", field="tag")
        bare = plain_text(name.lstrip("#")).replace(" ", "")
        tags.append(
            {"type": "Hashtag", "name": f"#{bare}", "href": fed.node.uris.iri(f"/tags/{bare.lower()}")}
        )
    return tags


# --- addressing -----------------------------------------------------------------------------------


def members_collection(group: Actor | None, uris: Any) -> str | None:
    """An association's members collection: ours by construction, a peer's from its document."""
    if group is None or group.type != "Group":
        return None
    if group.local:
        return str(uris.members(Iri(group.iri)))
    members = (group.document or {}).get("members")
    return members if isinstance(members, str) else None


def blind_recipients(obj: Mapping[str, Any]) -> list[str]:
    """``bto`` and ``bcc``: actors to deliver to without naming them in anything stored or
    served (ActivityPub §6, §7.1.1). The public collection is no blind recipient: dropped."""
    blind = [*iri_list(obj.get("bto"), "bto"), *iri_list(obj.get("bcc"), "bcc")]
    for iri in blind:
        if iri != AS_PUBLIC:
            iri_value(iri, "bcc")
    return list(dict.fromkeys(iri for iri in blind if iri != AS_PUBLIC))


def unaddressed(obj: Mapping[str, Any]) -> bool:
    """The client named no recipient at all: no ``to``, ``cc``, ``bto``, ``bcc``, ``audience``
    (empty lists count as none) and no ``visibility``."""
    return obj.get("visibility") is None and not any(obj.get(key) for key in ADDRESSING)


ADDRESSING = ("to", "cc", "bto", "bcc", "audience")


def _addressing(
    author: Actor,
    obj: Mapping[str, Any],
    uris: Any,
    group: Actor | None,
    *,
    blind: bool = False,
    self_only: bool = False,
) -> tuple[list[str], list[str], Visibility]:
    """``visibility`` (our term) when given, else the client's ``to``/``cc``, else public — or,
    with ``self_only`` (the C2S outbox, decision 37), nobody but the author.

    ``group`` is the association the content belongs to: the author itself, or the one a member
    posts into (``audience``, or the thread's). Members-only content is addressed to its members
    collection — and, from a member, to the association too, which relays it (FEP-1b12).
    ``blind``: the client named ``bto``/``bcc`` recipients, so an empty ``to``/``cc`` is direct
    to them, never the public default.
    """
    members = members_collection(group, uris)
    requested = obj.get("visibility")
    if requested is not None:
        level = choice(Visibility, requested, "visibility")
        if level is Visibility.MEMBERS and members is None:
            raise InvalidInput(
                "members-only content belongs to an association: publish it as the association, "
                "or post it into one you are a member of (audience)",
                field="visibility",
            )
        mentions = _direct_recipients(obj, author, members) if level is Visibility.DIRECT else []
        if level is Visibility.DIRECT and not mentions:
            raise InvalidInput("direct content needs recipients in to", field="to")
        addressed_to, addressed_cc = address(
            level,
            actor_followers=Iri(author.followers_iri or ""),
            group=Iri(group.iri) if group is not None and group.id != author.id else None,
            group_members=Iri(members) if members else None,
            mentions=[Iri(m) for m in mentions],
        )
        return list(addressed_to), list(addressed_cc), level
    to, cc = iri_list(obj.get("to"), "to"), iri_list(obj.get("cc"), "cc")
    if not to and not cc and not blind:
        if self_only:  # C2S: a client that addressed nobody reaches nobody (decision 37)
            return [], [], Visibility.DIRECT
        to, cc = [AS_PUBLIC], [author.followers_iri or ""]  # our API, CLI and pages: public
    level = classify(to, cc, followers_iri=author.followers_iri or "", members_iri=members)
    return to, cc, level


def _direct_recipients(obj: Mapping[str, Any], author: Actor, members: str | None) -> list[str]:
    """The actors a direct message names in ``to``: never the public collection nor a followers
    or members collection, whatever the client put there (security case 55), so direct content
    is never delivered or classified wider than the actors it names."""
    collections = {AS_PUBLIC, author.followers_iri, members}
    return [iri for iri in iri_list(obj.get("to"), "to") if iri not in collections]


async def _posting_group(
    session: AsyncSession, fed: Federation, author: Actor, obj: Mapping[str, Any], parent: RemoteObject | None
) -> tuple[Actor | None, bool, list[str]]:
    """The association the content belongs to, whether the author names it as ``audience``, and
    the other ``audience`` values (ordinary addressing: they are added to ``cc``).

    An association's own content belongs to it. A person's belongs to the first association it
    names in ``audience`` (a string or a list; FEP-1b12: only its active members post into it,
    403 otherwise), else to the association of the thread it replies in.
    """
    named = [iri for iri in iri_list(obj.get("audience"), "audience") if iri != author.iri]
    for iri in named:
        if iri != AS_PUBLIC:
            iri_value(iri, "audience")
    found = (
        await session.scalars(
            select(Actor).where(Actor.iri.in_(named), Actor.type == "Group", Actor.deleted_at.is_(None))
        )
        if named and author.type != "Group"
        else None
    )
    groups = {g.iri: g for g in found or ()}
    group = next((groups[iri] for iri in named if iri in groups), None)
    others = [iri for iri in named if group is None or iri != group.iri]
    if author.type == "Group":
        return author, False, others
    if group is not None:
        if not await membership_service.is_active_member(session, group.id, author.id):
            raise Forbidden("only the association's active members post into it")
        return group, True, others
    if parent is not None and parent.audience_id is not None:
        return await session.get(Actor, parent.audience_id), False, others
    return None, False, others


# --- kinds ----------------------------------------------------------------------------------------


def requested_kind(obj: Mapping[str, Any], author: Actor) -> Kind:
    """The kind a client asks for: ``entraideKind`` (Alert, Resource, Proposal), else by shape."""
    kind_term = obj.get("entraideKind")
    if kind_term is not None:
        if kind_term not in wire.WIRE_KINDS:
            raise InvalidInput("entraideKind must be one of: Alert, Resource, Proposal", field="entraideKind")
        kind = wire.WIRE_KINDS[kind_term]
    elif obj.get("type") == "Question":
        kind = Kind.PROPOSAL
    elif obj.get("inReplyTo") is not None:
        kind = Kind.REPLY
    elif obj.get("type") == "Article" and author.type == "Group":
        kind = Kind.RESOURCE
    else:
        kind = Kind.POST
    obj_type = obj.get("type", TYPE_OF_KIND[kind][0])
    if obj_type not in TYPE_OF_KIND[kind]:
        allowed = " or ".join(TYPE_OF_KIND[kind])
        raise InvalidInput(f"a {kind.value} is published as {allowed}", field="type")
    if kind in (Kind.ALERT, Kind.RESOURCE) and author.type != "Group":
        raise Forbidden(f"only an association publishes a {kind.value}")
    return kind


def alert_info(obj: Mapping[str, Any], *, base: AlertInfo | None = None) -> AlertInfo:
    def pick(key: str, current: Any) -> Any:
        return obj[key] if key in obj else current

    info = AlertInfo(
        severity=choice(Severity, pick("severity", base.severity if base else None), "severity"),
        category=choice(AlertCategory, pick("category", base.category if base else None), "category"),
        status=choice(
            AlertStatus, pick("alertStatus", base.status if base else None), "alertStatus", AlertStatus.ACTIVE
        ),
        area=plain_text(text(pick("area", base.area if base else None), "area", 200)) or None,
        area_code=text(pick("areaCode", base.area_code if base else None), "areaCode", 10),
        valid_until=when(obj["validUntil"], "validUntil")
        if "validUntil" in obj
        else (base.valid_until if base else None),
        supersedes=base.supersedes if base else iri_value(obj.get("supersedes"), "supersedes"),
        superseded_by=base.superseded_by if base else None,
    )
    if info.area_code is not None and not _is_area_code(info.area_code):
        raise InvalidInput("areaCode must be an ISO 3166 code such as FR or FR-75", field="areaCode")
    return info


def _is_area_code(code: str) -> bool:
    country, _, sub = code.partition("-")
    return (
        len(country) == 2
        and country.isalpha()
        and country.isupper()
        and (not sub or (sub.isalnum() and len(sub) <= 3))
    )


def stored_alert_info(document: Mapping[str, Any]) -> AlertInfo:
    """The alert terms of one of our stored alert documents."""
    return AlertInfo(
        severity=Severity(document["severity"]),
        category=AlertCategory(document["category"]),
        status=AlertStatus(document.get("alertStatus", "active")),
        area=document.get("area"),
        area_code=document.get("areaCode"),
        valid_until=when(document.get("validUntil"), "validUntil"),
        supersedes=document.get("supersedes"),
        superseded_by=document.get("supersededBy"),
    )


def render_alert(
    document: dict[str, Any], info: AlertInfo, headline: str, body_html: str, tag_base: str
) -> None:
    """Write the alert's readable content and terms into ``document`` (headline first, no CW)."""
    document["name"] = headline
    document["content"] = wire.alert_headline_html(headline, info) + body_html + wire.alert_footer_html(info)
    document["source"] = {"content": body_html, "mediaType": "text/html"}
    document.update(wire.alert_terms(info))
    for key in ("area", "areaCode", "validUntil", "supersedes", "supersededBy"):
        if key not in wire.alert_terms(info):
            document.pop(key, None)
    own = [t for t in document.get("tag", []) if t.get("href", "").rsplit("/", 1)[-1] not in ("alert",)]
    names = {t["name"] for t in own}
    document["tag"] = own + [t for t in wire.alert_tags(info, tag_base) if t["name"] not in names]
    document.pop("summary", None)  # Mastodon would show a summary as a content warning


def poll_options(obj: Mapping[str, Any]) -> tuple[list[str], bool]:
    multiple = obj.get("anyOf") is not None
    raw = obj.get("anyOf") if multiple else obj.get("oneOf")
    field = "anyOf" if multiple else "oneOf"
    if obj.get("anyOf") is not None and obj.get("oneOf") is not None:
        raise InvalidInput("give oneOf or anyOf, not both", field="oneOf")
    if not isinstance(raw, list) or not 2 <= len(raw) <= wire.MAX_OPTIONS:
        raise InvalidInput(f"{field} must list 2 to {wire.MAX_OPTIONS} options", field=field)
    names = []
    for item in raw:
        name = item.get("name") if isinstance(item, dict) else item
        if not isinstance(name, str) or not name.strip() or len(name) > wire.MAX_OPTION_CHARS:
            raise InvalidInput(
                f"each option must be a name of 1 to {wire.MAX_OPTION_CHARS} characters", field=field
            )
        names.append(plain_text(name).strip())
    if len(set(names)) != len(names):
        raise InvalidInput("option names must be distinct", field=field)
    return names, multiple


# --- create ---------------------------------------------------------------------------------------


async def create(
    fed: Federation, author: Actor, obj: Mapping[str, Any], *, by: Actor, c2s: bool = False
) -> Published:
    """Create a post, resource, alert, proposal or reply authored by ``author``.

    ``by`` is the account that did it (an admin or moderator when ``author`` is an association).
    ``c2s``: the client's ActivityPub outbox, where content that addresses nobody is readable by
    its author only and delivered to no one (decision 37); our API, CLI and pages default to
    public instead.
    """
    self_only = c2s and unaddressed(obj)
    kind = requested_kind(obj, author)
    now = fed.node.clock()
    uris = fed.node.uris
    object_iri = uris.object(uuid.uuid4().hex)
    in_reply_to = iri_value(obj.get("inReplyTo"), "inReplyTo")
    async with fed.node.sessions() as session:
        parent = await _readable_parent(session, fed, author, in_reply_to)
        group, into, others = await _posting_group(session, fed, author, obj, parent)
    remote_parent = (
        await _fetch_parent(fed, in_reply_to)
        if in_reply_to is not None and parent is None and not uris.is_local(in_reply_to)
        else None
    )
    blind = blind_recipients(obj)
    addressed = {**obj, "cc": [*iri_list(obj.get("cc"), "cc"), *others]} if others else obj
    to, cc, level = _addressing(author, addressed, uris, group, blind=bool(blind), self_only=self_only)
    body = text(obj.get("content"), "content", MAX_CONTENT_CHARS, required=kind is not Kind.PROPOSAL)
    name = text(
        obj.get("name"),
        "name",
        wire.MAX_HEADLINE_CHARS if kind is Kind.ALERT else MAX_NAME_CHARS,
        required=kind in NAMED_KINDS,
    )
    summary = text(obj.get("summary"), "summary", MAX_SUMMARY_CHARS)
    # An association's content without a language is in the association's default one, if set.
    language = language_of(obj.get("language")) or (author.language if author.type == "Group" else None)
    obj_type = obj.get("type") or TYPE_OF_KIND[kind][0]
    document: dict[str, Any] = {
        "id": object_iri,
        "type": obj_type,
        "attributedTo": author.iri,
        "content": sanitize_html(body or ""),
        "published": wire.iso(now),
        "to": to,
        "cc": cc,
        "url": object_iri,
        "replies": uris.replies(object_iri),
        "likes": uris.likes(object_iri),
    }
    if language:
        document["contentMap"] = {language: document["content"]}
    if name:
        document["name"] = plain_text(name)
    if summary and kind is not Kind.ALERT:
        document["summary"] = sanitize_html(summary)
    if obj.get("sensitive") is True and kind is not Kind.ALERT:
        document["sensitive"] = True
    tags = hashtags(fed, obj.get("tag"))
    if tags:
        document["tag"] = tags
    context_iri = uris.context(object_iri)
    audience_id: int | None = group.id if group is not None else None
    async with fed.node.sessions() as session:
        if in_reply_to is not None:
            context_iri, parent_author = await _thread_of(session, in_reply_to, parent, level)
            await check_reply_audience(session, author, parent, level)
            if remote_parent is not None:
                context_iri, parent_author, thread_audience = _remote_thread(remote_parent, in_reply_to)
                if thread_audience and level not in (Visibility.DIRECT, Visibility.MEMBERS):
                    if thread_audience not in to and thread_audience not in cc:
                        cc.append(thread_audience)
            if level is Visibility.MEMBERS and parent is not None and parent.audience_id != audience_id:
                raise InvalidInput("a members-only reply stays in its thread's association", field="audience")
            document["inReplyTo"] = in_reply_to
            if (
                parent_author
                and parent_author != author.iri
                and level is not Visibility.MEMBERS
                and not self_only
            ):
                # The parent's author gets the reply (and Mastodon notifies it: a Mention).
                if parent_author not in to and parent_author not in cc:
                    (to if level is Visibility.DIRECT else cc).append(parent_author)
                document["tag"] = [*document.get("tag", []), {"type": "Mention", "href": parent_author}]
        member = (
            group is not None
            and group.id != author.id
            and await membership_service.is_active_member(session, group.id, author.id)
        )
        thread_group = await objects.thread_association(session, parent) if parent is not None else None
        if (
            thread_group is not None
            and thread_group.id != author.id
            and thread_group.replies_policy == "members"
            and not await membership_service.is_active_member(session, thread_group.id, author.id)
        ):
            # Whatever the reply addresses (another association as audience, nobody): the thread's
            # association decides (security case 49).
            raise Forbidden("this association takes replies in its threads from its members only")
        if level is Visibility.MEMBERS and group is not None and group.id != author.id and not member:
            raise InvalidInput(
                "members-only content of an association is for its members", field="visibility"
            )
        relays = group is not None and group.local and member and level is not Visibility.DIRECT
    document["context"] = context_iri
    if group is not None and group.id != author.id and (into or level is Visibility.MEMBERS):
        # FEP-1b12: a post into an association names it as audience and addresses it.
        document["audience"] = group.iri
        if group.iri not in to and group.iri not in cc:
            cc.append(group.iri)
    priority = queue.Priority.NORMAL
    if kind is Kind.ALERT:
        info = alert_info(obj)
        async with fed.node.sessions() as session:
            if info.supersedes is not None:
                await _own_alert(session, author, info.supersedes)
        render_alert(document, info, plain_text(name or ""), document["content"], uris.iri("/tags/"))
        if language:
            document["contentMap"] = {language: document["content"]}
        priority = queue.Priority.ALERT
    elif kind is Kind.RESOURCE:
        license_iri = iri_value(obj.get("license"), "license")
        if license_iri:
            document["license"] = license_iri
        document["history"] = uris.history(object_iri)
        document["entraideKind"] = "Resource"
    elif kind is Kind.PROPOSAL:
        names, multiple = poll_options(obj)
        end = when(obj.get("endTime"), "endTime") or now + timedelta(days=DEFAULT_POLL_DAYS)
        if not now < end <= now + timedelta(days=MAX_POLL_DAYS):
            raise InvalidInput(f"endTime must be in the future, within {MAX_POLL_DAYS} days", field="endTime")
        eligibility = choice(
            Eligibility,
            obj.get("eligibility"),
            "eligibility",
            Eligibility.MEMBERS if author.type == "Group" else Eligibility.ANYONE,
        )
        if eligibility is Eligibility.MEMBERS and author.type != "Group":
            raise InvalidInput("members-only voting is for proposals of an association", field="eligibility")
        document["oneOf" if not multiple else "anyOf"] = wire.poll_options(names, {})
        document.update(
            endTime=wire.iso(end),
            votersCount=0,
            entraideKind="Proposal",
            eligibility=eligibility.value,
            proposalStatus=ProposalStatus.OPEN.value,
            endorsements=uris.endorsements(object_iri),
        )
        if not document["content"]:
            document["content"] = text_paragraph(document["name"])  # text, never markup (case 48)
    attachment_keys = _attachment_keys(fed, obj.get("attachment"))
    activity = {"id": new_activity_iri(uris), "type": "Create", "to": to, "cc": cc}
    async with fed.node.sessions.begin() as session:
        row = RemoteObject(
            iri=object_iri,
            local=True,
            type=obj_type,
            kind=kind.value,
            attributed_to_id=author.id,
            audience_id=audience_id,
            in_reply_to_iri=in_reply_to,
            context_iri=context_iri,
            visibility=level.value,
            document={},
            published=now,
            received_at=now,
        )
        session.add(row)
        await session.flush()
        if attachment_keys:
            attached = await media_service.attach(
                session, owner=author, keys=attachment_keys, object_id=row.id
            )
            document["attachment"] = [media_service.attachment_document(uris, m) for m in attached]
        row.document = {"@context": wire.CONTENT_CONTEXT, **document}
        published = await publish(
            session,
            author,
            {**activity, "object": document},
            visibility=level.value,
            now=now,
            priority=priority,
            also=blind,
        )
        audit(session, author, by, f"{kind.value}.create", object_iri, now)
        if kind is Kind.ALERT and document.get("supersedes"):
            await _mark_superseded(
                fed, session, author, Iri(document["supersedes"]), object_iri, now=now, by=by
            )
        if kind is Kind.PROPOSAL:
            await queue.enqueue(
                session,
                POLL_CLOSE,
                {"object_id": row.id},
                dedup_key=f"poll_close:{row.id}",
                run_at=when(document["endTime"], "endTime"),
                now=now,
            )
    fed.notify_worker()
    if relays and group is not None:
        # FEP-1b12: the association relays what its members post into it, as it does for members
        # on other nodes (inbox_handlers), so its followers (or members) get it.
        await relay_member_activity(fed, group, published.document, row)
    return Published(published.iri, object_iri)


def _attachment_keys(fed: Federation, value: Any) -> list[str]:
    """``attachment``: media keys from ``POST /api/media``, or their URLs (as C2S clients send)."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_ATTACHMENTS:
        raise InvalidInput(
            f"attachment must be a list of at most {MAX_ATTACHMENTS} uploads", field="attachment"
        )
    keys = []
    prefix = fed.node.uris.media("")
    for item in value:
        ref = item.get("url") if isinstance(item, dict) else item
        if isinstance(ref, str) and ref.startswith(prefix):
            ref = ref[len(prefix) :]
        if not isinstance(ref, str) or not ref:
            raise InvalidInput("each attachment must be an uploaded media key or URL", field="attachment")
        keys.append(ref)
    return keys


async def _readable_parent(
    session: AsyncSession, fed: Federation, author: Actor, in_reply_to: Iri | None
) -> RemoteObject | None:
    """The object a reply answers, checked before anything else about the reply: one of ours
    that is missing, or that the author may not read, answers the same (case 54), whatever
    else the reply asks for. A peer's object we do not hold is ``None`` (replies to it are fine)."""
    if in_reply_to is None:
        return None
    parent = await session.scalar(select(RemoteObject).where(RemoteObject.iri == in_reply_to))
    if fed.node.uris.is_local(in_reply_to) and (
        parent is None or not await visibility.can_read_object(session, _as_viewer(author), parent)
    ):
        raise InvalidInput("inReplyTo names no object here", field="inReplyTo")
    return parent


async def _thread_of(
    session: AsyncSession,
    parent_iri: Iri,
    parent: RemoteObject | None,
    level: Visibility,
) -> tuple[Iri, str | None]:
    """The thread (``context``) a reply joins — the parent's, or the parent itself when it has
    none — and the parent's author.

    A local parent exists and is readable by the author (:func:`_readable_parent`); who may see
    the reply is :func:`check_reply_audience`'s rule.
    """
    if parent is None:
        return parent_iri, None
    if parent.deleted_at is not None:
        raise InvalidInput("inReplyTo names a deleted object", field="inReplyTo")
    parent_author = await session.scalar(select(Actor.iri).where(Actor.id == parent.attributed_to_id))
    return Iri(parent.context_iri or parent.iri), parent_author


async def check_reply_audience(
    session: AsyncSession, author: Actor, parent: RemoteObject | None, level: Visibility
) -> None:
    """A reply never shows to more people than its parent (decision 71), whoever publishes it:
    the JSON API, the C2S outbox, the pages and the CLI all come through :func:`create`.

    A reply to members-only content is members-only (in the same association, checked by the
    caller) or direct; to direct content, direct; to followers-only content, direct — or
    followers-only when its author answers itself, to the same followers. A peer's
    followers-only object that the author may not read is treated as unknown (the reply is not
    refused, so the refusal tells nothing about what this node holds).

    Raises:
        InvalidInput: the reply's level is wider than its parent's (field ``visibility``).
    """
    if parent is None:
        return
    if parent.visibility == Visibility.MEMBERS and level not in (Visibility.MEMBERS, Visibility.DIRECT):
        raise InvalidInput(
            "a reply to members-only content must be members-only or direct", field="visibility"
        )
    if parent.visibility == Visibility.DIRECT and level is not Visibility.DIRECT:
        raise InvalidInput("a reply to direct content must itself be direct", field="visibility")
    if (
        parent.visibility == Visibility.FOLLOWERS
        and level is not Visibility.DIRECT
        and not (level is Visibility.FOLLOWERS and parent.attributed_to_id == author.id)
        and await visibility.can_read_object(session, _as_viewer(author), parent)
    ):
        raise InvalidInput(
            "a reply to followers-only content must be direct (visibility direct, with to)",
            field="visibility",
        )


async def _fetch_parent(fed: Federation, iri: Iri) -> dict[str, Any] | None:
    """A remote parent this node does not hold, fetched from its origin (signed, through the
    address guard and the peer policy) so that the reply reaches its author; ``None`` when it
    cannot be fetched (the reply is still published, to its own addressees)."""
    try:
        return await fed.fetch(iri)
    except FederationError as exc:
        log.info("reply parent not fetched", extra={"parent": iri, "error": type(exc).__name__})
        return None


def _remote_thread(document: Mapping[str, Any], parent_iri: Iri) -> tuple[Iri, str | None, str | None]:
    """A fetched parent's thread (its ``context``, else itself), author and ``audience``
    (FEP-1b12: the association it was posted into), as :func:`_thread_of` gives for a held one."""

    def one_iri(value: Any) -> str | None:
        value = value[0] if isinstance(value, list) and value else value
        value = value.get("id") if isinstance(value, dict) else value
        return value if isinstance(value, str) and value.startswith(("https://", "http://")) else None

    context, author = one_iri(document.get("context")), one_iri(document.get("attributedTo"))
    return Iri(context or parent_iri), author, one_iri(document.get("audience"))


async def _own_alert(session: AsyncSession, author: Actor, iri: Iri) -> RemoteObject:
    row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
    if (
        row is None
        or row.deleted_at is not None
        or row.kind != Kind.ALERT.value
        or row.attributed_to_id != author.id
    ):
        raise InvalidInput("supersedes must name an active alert of the same association", field="supersedes")
    return row


async def _mark_superseded(
    fed: Federation,
    session: AsyncSession,
    author: Actor,
    old_iri: Iri,
    new_iri: Iri,
    *,
    now: datetime,
    by: Actor,
) -> None:
    old = await _own_alert(session, author, old_iri)
    info = replace(stored_alert_info(old.document), status=AlertStatus.SUPERSEDED, superseded_by=new_iri)
    document = dict(old.document)
    render_alert(
        document,
        info,
        document.get("name", ""),
        document.get("source", {}).get("content", ""),
        fed.node.uris.iri("/tags/"),
    )
    await _publish_update(fed, session, author, old, document, now=now, by=by)


# --- update and delete ----------------------------------------------------------------------------


async def owned(fed: Federation, author: Actor, object_iri: Any) -> RemoteObject:
    """One of ``author``'s live objects (NotFound / Forbidden otherwise)."""
    if not isinstance(object_iri, str):
        raise InvalidInput("object must be the IRI of one of your objects", field="object")
    async with fed.node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == object_iri))
        readable = row is not None and await visibility.can_read_object(session, _as_viewer(author), row)
    if row is None or not readable or row.deleted_at is not None or not row.local:
        # Someone who may not read the object gets the answer of a missing one (case 54).
        raise NotFound("no such object")
    if row.attributed_to_id != author.id:
        raise Forbidden("only the author may change this object")
    return row


def _as_viewer(actor: Actor) -> visibility.Viewer:
    return visibility.Viewer(visibility.ViewerKind.LOCAL, actor_id=actor.id, actor_iri=actor.iri)


async def update(fed: Federation, author: Actor, obj: Mapping[str, Any], *, by: Actor) -> Published:
    """Edit one of ``author``'s objects; the audience, the kind and a poll's options are kept.

    Every edit is an ``Update`` carrying the whole object with ``updated``: the object's
    ``history`` collection (FEP-bad1) lists them all.
    """
    row = await owned(fed, author, obj.get("id"))
    kind = Kind(row.kind)
    if kind is Kind.VOTE or kind is Kind.ENDORSEMENT:
        raise InvalidInput(f"a {kind.value} cannot be edited", field="type")
    note = change_note(obj.get(CHANGE_NOTE))
    for frozen in ("oneOf", "anyOf", "entraideKind", "to", "cc", "visibility", "inReplyTo", "eligibility"):
        if frozen in obj and obj[frozen] != row.document.get(frozen):
            raise InvalidInput(f"{frozen} cannot be changed after publication", field=frozen)
    document = {k: v for k, v in row.document.items() if k != "@context"}
    _remove_nulled(document, {k: v for k, v in obj.items() if k != CHANGE_NOTE}, kind)
    uris = fed.node.uris
    name = text(obj.get("name"), "name", MAX_NAME_CHARS)
    content = text(obj.get("content"), "content", MAX_CONTENT_CHARS)
    if name is not None:
        if (
            kind is Kind.PROPOSAL
            and content is None
            and document.get("content") == text_paragraph(document.get("name", ""))
        ):
            document["content"] = text_paragraph(plain_text(name))  # the content shown is the name
        document["name"] = plain_text(name)
    if obj.get("tag") is not None:
        document["tag"] = hashtags(fed, obj.get("tag"))
    if kind is Kind.ALERT:
        base = stored_alert_info(document)
        if (
            obj.get("alertStatus") == AlertStatus.SUPERSEDED.value
            and base.status is not AlertStatus.SUPERSEDED
        ):
            raise InvalidInput(
                "an alert is superseded by publishing its successor with supersedes", field="alertStatus"
            )
        info = alert_info(obj, base=base)
        body = (
            sanitize_html(content) if content is not None else document.get("source", {}).get("content", "")
        )
        render_alert(document, info, document.get("name", ""), body, uris.iri("/tags/"))
    else:
        if content is not None:
            document["content"] = sanitize_html(content)
        summary = text(obj.get("summary"), "summary", MAX_SUMMARY_CHARS)
        if summary is not None:
            document["summary"] = sanitize_html(summary)
        if kind is Kind.RESOURCE and obj.get("license") is not None:
            document["license"] = iri_value(obj.get("license"), "license")
    if "contentMap" in document:
        document["contentMap"] = {next(iter(document["contentMap"])): document["content"]}
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        stored = await session.get(RemoteObject, row.id)
        assert stored is not None
        published = await _publish_update(
            fed, session, author, stored, document, now=now, by=by, note=note, changes=_changed(obj)
        )
    fed.notify_worker()
    return Published(published, row.iri)


CHANGE_NOTE = "changeNote"
MAX_CHANGE_NOTE_CHARS = 500
ALERT_FIELDS = frozenset({"severity", "category", "alertStatus", "area", "areaCode", "validUntil"})


def check_fields_apply(kind: str, obj: Mapping[str, Any]) -> None:
    """Fields that do not apply to this kind are refused rather than silently ignored (the JSON API
    and the command line; a C2S ``Update`` carries the whole object and keeps what applies)."""
    for field in obj:
        if (
            (field in ALERT_FIELDS and kind != Kind.ALERT.value)
            or (field == "license" and kind != Kind.RESOURCE.value)
            or (field == "summary" and kind == Kind.ALERT.value)
        ):
            raise InvalidInput(f"{field} does not apply to a {kind}", field=field)


def change_note(value: Any) -> str | None:
    """A revision's change note: plain text, shown in the object's history (the ``Update``'s
    ``summary``)."""
    note = text(value, CHANGE_NOTE, MAX_CHANGE_NOTE_CHARS)
    if note is not None and "\x00" in note:
        raise InvalidInput(f"{CHANGE_NOTE} must not contain NUL characters", field=CHANGE_NOTE)
    return note.strip() or None if note is not None else None


def _changed(obj: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in obj if k not in ("id", CHANGE_NOTE))


async def retract_alert(fed: Federation, author: Actor, object_iri: Any, *, by: Actor) -> Published:
    """Withdraw one of ``author``'s active alerts (an ``Update`` with ``alertStatus: retracted``)."""
    row = await owned(fed, author, object_iri)
    if row.kind != Kind.ALERT.value:
        raise InvalidInput(f"only an alert is retracted; this is a {row.kind}", field="object")
    status = row.document.get("alertStatus", AlertStatus.ACTIVE.value)
    if status != AlertStatus.ACTIVE.value:
        raise InvalidInput(f"this alert is already {status}", field="object")
    return await update(fed, author, {"id": row.iri, "alertStatus": AlertStatus.RETRACTED.value}, by=by)


LISTED_KINDS = (Kind.ALERT.value, Kind.RESOURCE.value, Kind.PROPOSAL.value, Kind.POST.value)


async def list_content(
    session: AsyncSession,
    author: Actor,
    *,
    kinds: tuple[str, ...] = LISTED_KINDS,
    include_deleted: bool = False,
    limit: int = 50,
    before: int | None = None,
) -> list[RemoteObject]:
    """``author``'s own objects of ``kinds``, newest first, for those who manage them (every
    visibility: callers check that the reader may manage ``author``'s content)."""
    query = select(RemoteObject).where(
        RemoteObject.attributed_to_id == author.id,
        RemoteObject.local.is_(True),
        RemoteObject.kind.in_(kinds),
    )
    if not include_deleted:
        query = query.where(RemoteObject.deleted_at.is_(None))
    if before is not None:
        query = query.where(RemoteObject.id < before)
    return list((await session.scalars(query.order_by(RemoteObject.id.desc()).limit(limit))).all())


def status_of(row: RemoteObject, now: datetime) -> str:
    """One word for lists: deleted, retracted, superseded, expired, closed, open or active."""
    if row.deleted_at is not None:
        return "deleted"
    doc = row.document
    if row.kind == Kind.ALERT.value:
        status = str(doc.get("alertStatus", "active"))
        valid_until = when(doc.get("validUntil"), "validUntil") if status == "active" else None
        return "expired" if valid_until is not None and valid_until <= now else status
    if row.kind == Kind.PROPOSAL.value:
        end = when(doc.get("endTime"), "endTime")
        closed = doc.get("closed") or doc.get("proposalStatus") == ProposalStatus.CLOSED.value
        return "closed" if closed or (end is not None and end <= now) else "open"
    return "published"


def _remove_nulled(document: dict[str, Any], obj: Mapping[str, Any], kind: Kind) -> None:
    """A property set to ``null`` in a partial ``Update`` is removed (ActivityPub §6.3.1).

    Only the optional properties a client edits may go; a property the kind requires, or one
    the object cannot exist without, is refused rather than silently kept.
    """
    for key in (k for k, v in obj.items() if v is None and k in document):
        if key not in REMOVABLE or (key == "name" and kind in NAMED_KINDS):
            raise InvalidInput(f"{key} cannot be removed from a {kind.value}", field=key)
        del document[key]


async def _publish_update(
    fed: Federation,
    session: AsyncSession,
    author: Actor,
    row: RemoteObject,
    document: dict[str, Any],
    *,
    now: datetime,
    by: Actor,
    note: str | None = None,
    changes: list[str] | None = None,
) -> str:
    document = {k: v for k, v in document.items() if k != "@context"}
    action = _update_action(row, document)
    document["updated"] = wire.iso(now)
    row.document = {"@context": wire.CONTENT_CONTEXT, **document}
    row.updated = now
    activity = {
        "id": new_activity_iri(fed.node.uris),
        "type": "Update",
        "object": document,
        "to": document.get("to", []),
        "cc": document.get("cc", []),
    }
    if note:
        activity["summary"] = text_paragraph(note)  # the change note, listed in the history
    priority = queue.Priority.ALERT if row.kind == Kind.ALERT.value else queue.Priority.NORMAL
    # Holders beyond the audience get the new revision of public content only: a members-only
    # object's edit goes to whoever may read it now, not to whoever once replied to it.
    also = await holders(session, row) if row.visibility in PUBLICLY_READABLE else None
    published = await publish(
        session, author, activity, visibility=row.visibility, now=now, priority=priority, also=also
    )
    audit(session, author, by, action, row.iri, now, note=note, changed=changes)
    return published.iri


def _update_action(row: RemoteObject, document: Mapping[str, Any]) -> str:
    """``alert.retract`` when the edit retracts an alert, else ``<kind>.update``."""
    before = row.document.get("alertStatus") if row.kind == Kind.ALERT.value else None
    if row.kind == Kind.ALERT.value and document.get("alertStatus") != before:
        status = document.get("alertStatus")
        return {"retracted": "alert.retract", "superseded": "alert.supersede"}.get(
            str(status), "alert.update"
        )
    return f"{row.kind}.update"


MAX_HOLDERS = 500
"""Remote holders an edit or delete is also delivered to (beyond its audience), at most."""


async def holders(session: AsyncSession, row: RemoteObject) -> list[str]:
    """Remote actors that hold a copy of our object without being in its audience: those whose
    inbox got it (followers who left since), those that relayed or liked it (an association's
    ``Announce`` reaches nodes that do not follow us; ``relays`` keeps members-only relays too),
    voted on it, replied to it, or co-signed it. Bounded by :data:`MAX_HOLDERS`. Only a
    publicly readable object's edit goes to them; its deletion (a tombstone) always does.
    Their nodes get its edits and its deletion (issue 13); an association relaying it relays the
    change on (decision 14)."""
    remote = select(Actor.id).where(Actor.local.is_(False))
    # Inboxes that got the object (its Create, an edit, a relay), whoever follows us today.
    delivered = (
        select(Delivery.inbox_iri)
        .join(Activity, Activity.id == Delivery.activity_id)
        .where(Activity.object_iri == row.iri, Delivery.state == "delivered")
    )
    sources = union(
        select(Actor.id.label("id")).where(
            or_(Actor.inbox_iri.in_(delivered), Actor.shared_inbox_iri.in_(delivered))
        ),
        select(Reaction.actor_id.label("id")).where(Reaction.object_iri == row.iri),
        select(Vote.voter_id.label("id")).where(Vote.question_id == row.id),
        select(RemoteObject.attributed_to_id.label("id")).where(
            RemoteObject.in_reply_to_iri == row.iri, RemoteObject.local.is_(False)
        ),
        select(Endorsement.endorser_id.label("id")).where(Endorsement.proposal_iri == row.iri),
        # Relays recorded from their Announce, members-only ones by an association too (FEP-1b12).
        select(Relay.relayer_id.label("id")).where(Relay.object_iri == row.iri),
    ).subquery()
    iris = await session.scalars(
        select(Actor.iri)
        .where(Actor.id.in_(select(sources.c.id)), Actor.id.in_(remote))
        .order_by(Actor.id)
        .limit(MAX_HOLDERS)
    )
    return list(iris)


async def delete(fed: Federation, author: Actor, object_iri: Any, *, by: Actor) -> Published:
    """Delete one of ``author``'s objects: a tombstone stays (410), a Delete goes to its audience."""
    row = await owned(fed, author, object_iri)
    now = fed.node.clock()
    activity = {
        "id": new_activity_iri(fed.node.uris),
        "type": "Delete",
        "object": {"id": row.iri, "type": "Tombstone"},
        "to": row.document.get("to", []),
        "cc": row.document.get("cc", []),
    }
    priority = queue.Priority.ALERT if row.kind == Kind.ALERT.value else queue.Priority.NORMAL
    async with fed.node.sessions.begin() as session:
        stored = await session.get(RemoteObject, row.id)
        assert stored is not None
        stored.deleted_at = now
        stored.document = {
            "id": row.iri,
            "type": "Tombstone",
            "formerType": row.type,
            "deleted": wire.iso(now),
        }
        if row.kind == Kind.ENDORSEMENT.value:
            await session.execute(
                sa_update(Endorsement).where(Endorsement.iri == row.iri).values(withdrawn_at=now)
            )
        published = await publish(
            session,
            author,
            activity,
            visibility=row.visibility,
            now=now,
            priority=priority,
            also=await holders(session, stored),
        )
        audit(session, author, by, f"{row.kind}.delete", row.iri, now)
    fed.notify_worker()
    return Published(published.iri, row.iri)


RELAYABLE = (Kind.POST.value, Kind.RESOURCE.value, Kind.ALERT.value, Kind.PROPOSAL.value)


async def announce(fed: Federation, author: Actor, object_iri: Any, *, by: Actor) -> Published:
    """Relay (``Announce``) a public object — typically another association's alert — to
    ``author``'s followers. Members-only and private objects are never relayed (case 42)."""
    iri = iri_value(object_iri, "object")
    async with fed.node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
        original = await session.get(Actor, row.attributed_to_id) if row is not None else None
    if (
        row is None
        or original is None
        or row.deleted_at is not None
        or row.visibility not in PUBLICLY_READABLE
        or row.kind not in RELAYABLE
    ):
        raise InvalidInput(
            "object names no public post, resource, alert or proposal known here", field="object"
        )
    now = fed.node.clock()
    activity = {
        "id": new_activity_iri(fed.node.uris),
        "type": "Announce",
        "object": row.iri,
        "to": [AS_PUBLIC],
        "cc": [author.followers_iri or "", original.iri],
    }
    priority = queue.Priority.ALERT if row.kind == Kind.ALERT.value else queue.Priority.NORMAL
    async with fed.node.sessions.begin() as session:
        published = await publish(session, author, activity, visibility="public", now=now, priority=priority)
        audit(session, author, by, f"{row.kind}.announce", row.iri, now)
    fed.notify_worker()
    return Published(published.iri, row.iri)


async def relay_member_activity(
    fed: Federation, group: Actor, activity: Mapping[str, Any], row: RemoteObject
) -> None:
    """FEP-1b12: the association relays a member's activity in an ``Announce`` to its followers
    (members only for members-only content; never direct messages). The activity keeps its id,
    actor and addressing; its object is the copy we stored, sanitised (receivers refetch it from
    its origin anyway, and our outbox never serves a peer's raw HTML)."""
    uris = fed.node.uris
    level = Visibility(row.visibility)
    members = uris.members(Iri(group.iri))
    if level is Visibility.DIRECT and members in visibility.addressed_in(row.document):
        # A member addressed the association's members collection: members-only content of this
        # association (our classification of a peer's object only knows its author's followers).
        level = Visibility.MEMBERS
    if level is Visibility.DIRECT:
        return
    to, cc = address(
        level,
        actor_followers=Iri(group.followers_iri or ""),
        group_members=members,
    )
    now = fed.node.clock()
    relayed = dict(activity)
    if isinstance(relayed.get("object"), dict):
        # The object as stored, sanitised (security case 35): our outbox never serves a peer's raw
        # HTML. Integrity proofs of the original no longer hold and are not relayed.
        relayed = {k: v for k, v in relayed.items() if k not in ("signature", "proof")}
        relayed["object"] = row.document
    announce = {
        "id": new_activity_iri(uris),
        "type": "Announce",
        "object": relayed,
        "to": list(to),
        "cc": list(cc),
    }
    async with fed.node.sessions.begin() as session:
        stored = await session.get(RemoteObject, row.id)
        if stored is not None and stored.audience_id is None:
            stored.audience_id = group.id
        if stored is not None and stored.audience_id == group.id:
            stored.visibility = level.value
        await publish(session, group, announce, visibility=level.value, now=now)
    fed.notify_worker()
    log.info("member activity relayed", extra={"group": group.iri, "object": row.iri})


async def relay_change(fed: Federation, object_iri: str) -> int:
    """A peer's object that our associations relayed was edited or deleted: relay it again, so
    that nodes which got it only through us refetch it from its origin. Returns the relays."""
    async with fed.node.sessions() as session:
        rows = (
            await session.execute(
                select(Activity.actor_id, Activity.document)
                .join(Actor, Actor.id == Activity.actor_id)
                .where(Activity.type == "Announce", Activity.object_iri == object_iri, Actor.local.is_(True))
            )
        ).all()
    relayers = {actor_id: document for actor_id, document in rows}
    if not relayers:
        return 0
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        for actor_id, previous in relayers.items():
            actor = await session.get(Actor, actor_id)
            assert actor is not None
            activity = {
                "id": new_activity_iri(fed.node.uris),
                "type": "Announce",
                "object": object_iri,
                "to": previous.get("to", [AS_PUBLIC]),
                "cc": previous.get("cc", []),
            }
            await publish(session, actor, activity, visibility="public", now=now)
    fed.notify_worker()
    return len(relayers)


def audit(
    session: Any,
    author: Actor,
    by: Actor,
    action: str,
    object_iri: str,
    now: datetime,
    **detail: Any,
) -> None:
    """Association actions record the member who did them (a member's own content is not audited)."""
    if author.type == "Group":
        audit_log.record(
            session,
            action,
            now=now,
            group=author,
            by=by,
            target=object_iri,
            detail={"object": object_iri, **{k: v for k, v in detail.items() if v is not None}},
        )


async def local_author(session: AsyncSession, iri: str) -> Actor | None:
    actor = await actor_queries.by_iri(session, iri)
    return actor if actor is not None and actor.local else None
