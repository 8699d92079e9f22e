"""A proposal: a ``Question`` (a poll) that members or anyone vote on and others may co-sign.

Its options are fixed at publication; it closes at ``endTime`` (a ``poll_close`` job, enqueued
with it) and its tallies are pushed by :mod:`server.services.content.polls`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

from federation.vocab import entraide as wire
from federation.vocab.entraide import Eligibility, Kind, ProposalStatus
from server.db import queue
from server.db.models import Actor
from server.services.content.fields import choice, when
from server.services.content.kinds.base import ContentKind, Draft, Edit, Stored
from server.services.content.sanitize import plain_text, text_paragraph
from server.services.errors import InvalidInput

DEFAULT_POLL_DAYS = 7
MAX_POLL_DAYS = 366
POLL_CLOSE = "poll_close"
"""The job that closes a proposal at its ``endTime``."""


class Proposal(ContentKind):
    kind: ClassVar[Kind] = Kind.PROPOSAL
    types: ClassVar[tuple[str, ...]] = ("Question",)
    wire_term: ClassVar[str | None] = "Proposal"
    named: ClassVar[bool] = True
    content_required: ClassVar[bool] = False  # the question (its name) is the content shown
    server_kept: ClassVar[frozenset[str]] = frozenset({"votersCount", "closed", "proposalStatus"})
    feed_path: ClassVar[str | None] = "proposals"
    feed_label: ClassVar[str | None] = "propositions"
    api_path: ClassVar[str | None] = "proposals"
    api_schema: ClassVar[str | None] = "ProposalCreate"

    def claims(self, obj: Mapping[str, Any], author: Actor) -> bool:
        return obj.get("type") == "Question"

    async def build(self, draft: Draft) -> None:
        names, multiple = poll_options(draft.obj)
        end = _end_time(draft.obj, draft.now)
        eligibility = _eligibility(draft.obj, draft.author)
        document = draft.document
        document["oneOf" if not multiple else "anyOf"] = wire.poll_options(names, {})
        document.update(
            endTime=wire.iso(end),
            votersCount=0,
            entraideKind=self.wire_term,
            eligibility=eligibility.value,
            proposalStatus=ProposalStatus.OPEN.value,
            endorsements=draft.fed.node.uris.endorsements(document["id"]),
        )
        if not document["content"]:
            document["content"] = text_paragraph(document["name"])  # text, never markup (case 48)

    async def after_store(self, stored: Stored) -> None:
        await queue.enqueue(
            stored.session,
            POLL_CLOSE,
            {"object_id": stored.row.id},
            dedup_key=f"poll_close:{stored.row.id}",
            run_at=when(stored.document["endTime"], "endTime"),
            now=stored.now,
        )

    def edit(self, edit: Edit) -> None:
        """A renamed proposal whose content was its name shows the new name."""
        before = edit.before
        if (
            edit.name is not None
            and edit.content is None
            and before.get("content") == text_paragraph(before.get("name", ""))
        ):
            edit.document["content"] = text_paragraph(plain_text(edit.name))
        super().edit(edit)

    def status(self, document: Mapping[str, Any], now: datetime) -> str:
        """``closed`` once closed or past its ``endTime``, else ``open``."""
        end = when(document.get("endTime"), "endTime")
        closed = document.get("closed") or document.get("proposalStatus") == ProposalStatus.CLOSED.value
        return "closed" if closed or (end is not None and end <= now) else "open"


def poll_options(obj: Mapping[str, Any]) -> tuple[list[str], bool]:
    """The option names (``oneOf``, or ``anyOf`` for several choices), checked, and whether
    several may be chosen."""
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


def _end_time(obj: Mapping[str, Any], now: datetime) -> datetime:
    end = when(obj.get("endTime"), "endTime") or now + timedelta(days=DEFAULT_POLL_DAYS)
    if not now < end <= now + timedelta(days=MAX_POLL_DAYS):
        raise InvalidInput(f"endTime must be in the future, within {MAX_POLL_DAYS} days", field="endTime")
    return end


def _eligibility(obj: Mapping[str, Any], author: Actor) -> Eligibility:
    """Who may vote: an association's proposal defaults to its members, a person's to anyone."""
    eligibility: Eligibility = choice(
        Eligibility,
        obj.get("eligibility"),
        "eligibility",
        Eligibility.MEMBERS if author.type == "Group" else Eligibility.ANYONE,
    )
    if eligibility is Eligibility.MEMBERS and author.type != "Group":
        raise InvalidInput("members-only voting is for proposals of an association", field="eligibility")
    return eligibility


KIND = Proposal()
