"""An alert: an association's ``Note`` with a headline, a severity, a category and a status.

Its readable content is rendered from its terms (headline first, the terms in a footer, no
content warning), its deliveries go before any other (``Priority.ALERT``), and publishing one
with ``supersedes`` marks its predecessor superseded in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.types import Iri
from federation.vocab import entraide as wire
from federation.vocab.entraide import AlertCategory, AlertInfo, AlertStatus, Kind, Severity
from server.db import queue
from server.db.models import Actor, RemoteObject
from server.services.content.fields import choice, iri_value, text, when
from server.services.content.kinds.base import ContentKind, Draft, Edit, Stored
from server.services.content.revisions import publish_update
from server.services.content.sanitize import plain_text, sanitize_html
from server.services.errors import InvalidInput

FIELDS = frozenset({"severity", "category", "alertStatus", "area", "areaCode", "validUntil"})
"""The alert's own terms a client sends."""


class Alert(ContentKind):
    kind: ClassVar[Kind] = Kind.ALERT
    types: ClassVar[tuple[str, ...]] = ("Note",)
    wire_term: ClassVar[str | None] = "Alert"
    association_only: ClassVar[bool] = True
    named: ClassVar[bool] = True
    name_chars: ClassVar[int] = wire.MAX_HEADLINE_CHARS
    takes_summary: ClassVar[bool] = False  # Mastodon would show a summary as a content warning
    priority: ClassVar[int] = queue.Priority.ALERT
    own_fields: ClassVar[frozenset[str]] = FIELDS
    feed_path: ClassVar[str | None] = "alerts"
    feed_label: ClassVar[str | None] = "alertes"
    api_path: ClassVar[str | None] = "alerts"
    api_schema: ClassVar[str | None] = "AlertCreate"

    async def build(self, draft: Draft) -> None:
        info = alert_info(draft.obj)
        if info.supersedes is not None:
            async with draft.fed.node.sessions() as session:
                await own_alert(session, draft.author, info.supersedes)
        document = draft.document
        tag_base = draft.fed.node.uris.iri("/tags/")
        render_alert(document, info, document.get("name", ""), document["content"], tag_base)

    async def after_store(self, stored: Stored) -> None:
        if stored.document.get("supersedes"):
            await mark_superseded(stored, Iri(stored.document["supersedes"]))

    def edit(self, edit: Edit) -> None:
        document = edit.document
        base = stored_alert_info(document)
        if (
            edit.obj.get("alertStatus") == AlertStatus.SUPERSEDED.value
            and base.status is not AlertStatus.SUPERSEDED
        ):
            raise InvalidInput(
                "an alert is superseded by publishing its successor with supersedes", field="alertStatus"
            )
        _check_final(base.status, edit.obj.get("alertStatus"))
        info = alert_info(edit.obj, base=base)
        body = (
            sanitize_html(edit.content)
            if edit.content is not None
            else document.get("source", {}).get("content", "")
        )
        render_alert(document, info, document.get("name", ""), body, edit.fed.node.uris.iri("/tags/"))

    def update_action(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
        """``alert.retract`` or ``alert.supersede`` when the edit does that, else ``alert.update``."""
        status = after.get("alertStatus")
        if status == before.get("alertStatus"):
            return "alert.update"
        actions = {"retracted": "alert.retract", "superseded": "alert.supersede"}
        return actions.get(str(status), "alert.update")

    def status(self, document: Mapping[str, Any], now: datetime) -> str:
        """Its ``alertStatus``, or ``expired`` for an active one past ``validUntil``."""
        status = str(document.get("alertStatus", "active"))
        valid_until = when(document.get("validUntil"), "validUntil") if status == "active" else None
        return "expired" if valid_until is not None and valid_until <= now else status


FINAL_STATUSES: Final = frozenset({AlertStatus.RETRACTED, AlertStatus.SUPERSEDED})
"""What an alert cannot leave: peers that got the retraction or the successor must be able to trust
it (an edit that made a retracted alert active again would reach only some of them as a new alert)."""


def _check_final(current: AlertStatus, requested: Any) -> None:
    """Refuse an edit that changes the status of a retracted or superseded alert."""
    if current in FINAL_STATUSES and requested is not None and requested != current.value:
        raise InvalidInput(f"this alert is {current.value}: publish a new alert instead", field="alertStatus")


def alert_info(obj: Mapping[str, Any], *, base: AlertInfo | None = None) -> AlertInfo:
    """The alert terms a client sent, checked; for an edit, those it did not send are ``base``'s."""

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


async def own_alert(session: AsyncSession, author: Actor, iri: Iri) -> RemoteObject:
    """A live alert of ``author``'s (what ``supersedes`` may name)."""
    row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
    if (
        row is None
        or row.deleted_at is not None
        or row.kind != Kind.ALERT.value
        or row.attributed_to_id != author.id
    ):
        raise InvalidInput("supersedes must name an active alert of the same association", field="supersedes")
    return row


async def mark_superseded(stored: Stored, old_iri: Iri) -> None:
    """The alert ``stored`` supersedes is marked superseded by it, and that edit published."""
    old = await own_alert(stored.session, stored.author, old_iri)
    info = replace(
        stored_alert_info(old.document), status=AlertStatus.SUPERSEDED, superseded_by=Iri(stored.row.iri)
    )
    document = dict(old.document)
    render_alert(
        document,
        info,
        document.get("name", ""),
        document.get("source", {}).get("content", ""),
        stored.fed.node.uris.iri("/tags/"),
    )
    await publish_update(
        stored.fed,
        stored.session,
        stored.author,
        old,
        document,
        now=stored.now,
        by=stored.by,
        action=KIND.update_action(old.document, document),
        priority=KIND.priority,
    )


KIND = Alert()
