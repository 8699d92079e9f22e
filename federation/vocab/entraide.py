"""Entraide content on the wire: alerts, resources, proposals, votes and endorsements.

Every kind is a standard ActivityStreams object that other servers display, plus our terms
(``entraideKind``, ``severity``, ...) that Entraide peers read:

* a **resource** is an ``Article`` (Mastodon shows its title and link, Lemmy/Mobilizon the body);
* an **alert** is a ``Note`` whose content starts with the headline (no ``summary``: Mastodon
  would hide it behind a content warning);
* a **proposal** is a ``Question`` in Mastodon's poll format (FEP-9967), so Mastodon users vote;
* a **vote** is ``Note{name, inReplyTo}`` sent to the proposal's author, as Mastodon votes;
* an **endorsement** (a co-signature by another association) is an ``Endorsement`` object with
  an FEP-8b32 integrity proof, which non-Entraide servers ignore.

This module builds the documents we publish (``render_*``) and reads our terms from what peers
send (``*_info``). It never touches HTML beyond escaping what it writes itself: sanitising the
author's HTML is the server's job before it calls these functions.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, TypeVar

from federation.types import Iri
from federation.vocab.context import AS2, DATA_INTEGRITY_V1, ENTRAIDE_NS
from federation.vocab.objects import Content, Question

CONTENT_TERMS: Final[dict[str, Any]] = {
    "entraide": ENTRAIDE_NS,
    "toot": "http://joinmastodon.org/ns#",
    "sensitive": "as:sensitive",
    "votersCount": "toot:votersCount",
    "entraideKind": {"@id": "entraide:kind"},
    "severity": "entraide:severity",
    "category": "entraide:category",
    "area": "entraide:area",
    "areaCode": "entraide:areaCode",
    "validUntil": {"@id": "entraide:validUntil", "@type": "http://www.w3.org/2001/XMLSchema#dateTime"},
    "alertStatus": "entraide:alertStatus",
    "supersedes": {"@id": "entraide:supersedes", "@type": "@id"},
    "supersededBy": {"@id": "entraide:supersededBy", "@type": "@id"},
    "eligibility": "entraide:eligibility",
    "proposalStatus": "entraide:proposalStatus",
    "endorsements": {"@id": "entraide:endorsements", "@type": "@id"},
    "Endorsement": "entraide:Endorsement",
    "license": {"@id": "http://schema.org/license", "@type": "@id"},
    "history": {"@id": "https://w3id.org/fep/bad1/history", "@type": "@id"},
}
"""Our content terms, inlined (the ``https://w3id.org/entraide/v1`` IRI is not registered yet, and
peers that cannot fetch an unknown context, such as Fedify, would fail to read the object)."""

CONTENT_CONTEXT: Final[list[Any]] = [AS2, CONTENT_TERMS]
SIGNED_CONTENT_CONTEXT: Final[list[Any]] = [AS2, DATA_INTEGRITY_V1, CONTENT_TERMS]
"""For objects carrying an FEP-8b32 ``proof``: the data-integrity context defines ``proof``, so a
JSON-LD reader finds it (as FEP-8b32's examples and Fedify do)."""

MAX_OPTIONS: Final = 20
MAX_OPTION_CHARS: Final = 200
MAX_HEADLINE_CHARS: Final = 300
MAX_TIME_CHARS: Final = 64


class Kind(StrEnum):
    """What an object is to Entraide (stored per object; ``entraideKind`` on the wire)."""

    POST = "post"
    RESOURCE = "resource"
    ALERT = "alert"
    PROPOSAL = "proposal"
    REPLY = "reply"
    VOTE = "vote"
    ENDORSEMENT = "endorsement"
    EVENT = "event"  # an ``Event`` (Mobilizon's form, federation.vocab.events)


WIRE_KINDS: Final[dict[str, Kind]] = {
    "Alert": Kind.ALERT,
    "Resource": Kind.RESOURCE,
    "Proposal": Kind.PROPOSAL,
}


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertCategory(StrEnum):
    SHORTAGE = "shortage"
    SIDE_EFFECT = "side-effect"
    ACCESS_TO_CARE = "access-to-care"
    SAFETY = "safety"
    OTHER = "other"


class AlertStatus(StrEnum):
    ACTIVE = "active"
    SUPERSEDED = "superseded"
    RETRACTED = "retracted"


class Eligibility(StrEnum):
    """Who may vote on a proposal."""

    ANYONE = "anyone"  # any actor the node federates with (Mastodon users included)
    MEMBERS = "members"  # active members of the authoring association
    ASSOCIATIONS = "associations"  # associations (Group actors), one vote each


class ProposalStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


SEVERITY_LABELS: Final = {
    Severity.INFO: "INFO",
    Severity.WARNING: "WARNING",
    Severity.CRITICAL: "CRITICAL",
}
CATEGORY_LABELS: Final = {
    AlertCategory.SHORTAGE: "Shortage",
    AlertCategory.SIDE_EFFECT: "Side effect",
    AlertCategory.ACCESS_TO_CARE: "Access to care",
    AlertCategory.SAFETY: "Safety",
    AlertCategory.OTHER: "Alert",
}


@dataclass(frozen=True, slots=True)
class AlertInfo:
    severity: Severity
    category: AlertCategory
    status: AlertStatus = AlertStatus.ACTIVE
    area: str | None = None
    area_code: str | None = None  # ISO 3166-1 alpha-2 or ISO 3166-2 (``FR``, ``FR-75``)
    valid_until: datetime | None = None
    supersedes: Iri | None = None
    superseded_by: Iri | None = None


@dataclass(frozen=True, slots=True)
class ProposalInfo:
    eligibility: Eligibility
    status: ProposalStatus
    endorsements: Iri | None = None


def iso(value: datetime) -> str:
    """``2026-11-22T10:00:00Z``: UTC, seconds (what Mastodon and Lemmy write)."""
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 date-time with a time zone as an aware UTC datetime; ``None`` for anything else.

    The one parser of dates read from a client or a peer: ``9999-12-31T23:59:59-14:00`` is valid
    ISO 8601 but past ``datetime.max`` once in UTC, so it is unreadable rather than an
    ``OverflowError`` (security case 58).
    """
    if not isinstance(value, str) or len(value) > MAX_TIME_CHARS:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed.astimezone(UTC) if parsed.tzinfo else None
    except (ValueError, OverflowError):
        return None


E = TypeVar("E", bound=StrEnum)


def _enum(cls: type[E], value: Any) -> E | None:
    try:
        return cls(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _iri(value: Any) -> Iri | None:
    return Iri(value) if isinstance(value, str) and value.startswith(("https://", "http://")) else None


# --- reading peers' objects -----------------------------------------------------------------------


def kind_of(content: Content) -> Kind:
    """Our kind for any object: ``entraideKind`` when it names one of ours and matches the type,
    a vote for ``Note{name, inReplyTo}`` without content, an event for an ``Event`` (Mobilizon's), a
    reply for anything with ``inReplyTo``."""
    wire = content.extra.get("entraideKind")
    declared = WIRE_KINDS.get(wire) if isinstance(wire, str) else None
    expected = {Kind.ALERT: "Note", Kind.RESOURCE: "Article", Kind.PROPOSAL: "Question"}
    if declared is not None and expected[declared] == content.type:
        return declared
    if content.type == "Event" and content.in_reply_to is None:
        return Kind.EVENT
    if content.in_reply_to is not None:
        if content.type == "Note" and content.name and not content.content:
            return Kind.VOTE
        return Kind.REPLY
    return Kind.POST


def alert_info(content: Content) -> AlertInfo | None:
    """Our alert terms of a ``Note``; None when it is not an alert or the terms are invalid."""
    extra = content.extra
    severity = _enum(Severity, extra.get("severity"))
    if kind_of(content) is not Kind.ALERT or severity is None:
        return None
    return AlertInfo(
        severity=severity,
        category=_enum(AlertCategory, extra.get("category")) or AlertCategory.OTHER,
        status=_enum(AlertStatus, extra.get("alertStatus")) or AlertStatus.ACTIVE,
        area=extra["area"][:200] if isinstance(extra.get("area"), str) else None,
        area_code=extra["areaCode"][:10] if isinstance(extra.get("areaCode"), str) else None,
        valid_until=parse_time(extra.get("validUntil")),
        supersedes=_iri(extra.get("supersedes")),
        superseded_by=_iri(extra.get("supersededBy")),
    )


def proposal_info(content: Content) -> ProposalInfo | None:
    if not isinstance(content, Question) or kind_of(content) is not Kind.PROPOSAL:
        return None
    return ProposalInfo(
        eligibility=_enum(Eligibility, content.extra.get("eligibility")) or Eligibility.ANYONE,
        status=_enum(ProposalStatus, content.extra.get("proposalStatus"))
        or (ProposalStatus.CLOSED if content.closed else ProposalStatus.OPEN),
        endorsements=_iri(content.extra.get("endorsements")),
    )


# --- building what we publish ---------------------------------------------------------------------


def alert_headline_html(headline: str, info: AlertInfo) -> str:
    """The first paragraph of an alert: what every server shows first, with no content warning."""
    label = f"{SEVERITY_LABELS[info.severity]} · {CATEGORY_LABELS[info.category]}"
    if info.status is AlertStatus.RETRACTED:
        label = f"RETRACTED · {label}"
    elif info.status is AlertStatus.SUPERSEDED:
        label = f"SUPERSEDED · {label}"
    return f"<p><strong>⚠ {html.escape(label)}: {html.escape(headline)}</strong></p>"


def alert_footer_html(info: AlertInfo) -> str:
    parts: list[str] = []
    if info.area:
        code = f" ({html.escape(info.area_code)})" if info.area_code else ""
        parts.append(f"Area: {html.escape(info.area)}{code}")
    elif info.area_code:
        parts.append(f"Area: {html.escape(info.area_code)}")
    if info.valid_until is not None:
        parts.append(f"Valid until {info.valid_until.astimezone(UTC).strftime('%Y-%m-%d %H:%M UTC')}")
    footer = f"<p>{' · '.join(parts)}</p>" if parts else ""
    if info.superseded_by:
        link = html.escape(info.superseded_by, quote=True)
        footer += f'<p>Superseded by <a href="{link}">{link}</a></p>'
    return footer


def alert_terms(info: AlertInfo) -> dict[str, Any]:
    terms: dict[str, Any] = {
        "entraideKind": "Alert",
        "severity": info.severity.value,
        "category": info.category.value,
        "alertStatus": info.status.value,
    }
    if info.area:
        terms["area"] = info.area
    if info.area_code:
        terms["areaCode"] = info.area_code
    if info.valid_until is not None:
        terms["validUntil"] = iso(info.valid_until)
    if info.supersedes:
        terms["supersedes"] = info.supersedes
    if info.superseded_by:
        terms["supersededBy"] = info.superseded_by
    return terms


def alert_tags(info: AlertInfo, tag_base: str) -> list[dict[str, Any]]:
    """Hashtags so that alerts are findable on Mastodon: ``#alert`` and the category."""
    names = ["alert", info.category.value.replace("-", "")]
    return [{"type": "Hashtag", "name": f"#{n}", "href": f"{tag_base}{n}"} for n in names]


def poll_options(names: Sequence[str], counts: Mapping[str, int]) -> list[dict[str, Any]]:
    """Mastodon's option shape: ``{type: Note, name, replies: {type: Collection, totalItems}}``."""
    return [
        {"type": "Note", "name": n, "replies": {"type": "Collection", "totalItems": counts.get(n, 0)}}
        for n in names
    ]


def option_names(document: Mapping[str, Any]) -> tuple[list[str], bool]:
    """The option names of a ``Question`` document we stored, and whether several may be chosen."""
    multiple = isinstance(document.get("anyOf"), list)
    options = document.get("anyOf") if multiple else document.get("oneOf")
    names = [o["name"] for o in options or [] if isinstance(o, dict) and isinstance(o.get("name"), str)]
    return names, multiple


def render_vote(
    *, note_iri: Iri, voter: Iri, question: Iri, question_author: Iri, choice: str
) -> dict[str, Any]:
    """One vote, as Mastodon sends it: a content-less ``Note`` named after the option."""
    return {
        "id": note_iri,
        "type": "Note",
        "name": choice,
        "attributedTo": voter,
        "inReplyTo": question,
        "to": [question_author],
    }


def render_endorsement(
    *,
    iri: Iri,
    endorser: Iri,
    proposal: Iri,
    proposal_author: Iri,
    published: datetime,
    statement_html: str | None,
    to: Sequence[str],
    cc: Sequence[str],
) -> dict[str, Any]:
    """An association's co-signature of a proposal (signed afterwards with an FEP-8b32 proof)."""
    doc: dict[str, Any] = {
        "@context": SIGNED_CONTENT_CONTEXT,
        "id": iri,
        "type": "Endorsement",
        "attributedTo": endorser,
        "object": proposal,
        "inReplyTo": proposal,
        "published": iso(published),
        "to": list(to),
        "cc": list(dict.fromkeys([proposal_author, *cc])),
    }
    if statement_html:
        doc["content"] = statement_html
    return doc


def endorsement_fields(document: Mapping[str, Any]) -> tuple[Iri, Iri] | None:
    """(endorser, proposal) of an ``Endorsement`` document, or None when it is not one."""
    types = document.get("type")
    if types != "Endorsement" and not (isinstance(types, list) and "Endorsement" in types):
        return None
    endorser, proposal = _iri(document.get("attributedTo")), _iri(document.get("object"))
    if endorser is None or proposal is None:
        return None
    return endorser, proposal
