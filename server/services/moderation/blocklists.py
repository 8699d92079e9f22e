"""Shared block lists: Mastodon's domain-blocks CSV in and out, allowlists, subscriptions by URL.

The CSV is the one Mastodon's administration exports and imports
(``#domain,#severity,#reject_media,#reject_reports,#public_comment,#obfuscate``); a file of bare
domains, one a line, is read as suspensions. An import is first *planned* (:func:`plan_import`:
what it adds, changes and removes, exactly what :func:`apply_import` then does) and shown to the
administrator before anything changes.

Entries belong to their source (``import:<name>``, a file's name or a subscription's URL): a new
version of the same list removes what the list dropped, and never touches blocks made by hand,
from the configuration or from another list (decision 64). Lists fetched by URL go through the
federation transport (its address guard, size limits and the peer policy), with ``If-None-Match``
so that an unchanged list costs a 304; the ``refresh_blocklists`` job refreshes the due ones.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.errors import FederationError
from federation.http import Headers, OutgoingRequest
from federation.iri import is_http_iri
from server.db import queue
from server.db.models import Actor, BlockListSubscription, DomainBlock
from server.services import audit
from server.services.errors import InvalidInput, NotFound
from server.services.moderation import blocks
from server.services.moderation.blocks import DomainBlockSpec

log = logging.getLogger(__name__)

CSV_HEADER: Final = (
    "#domain",
    "#severity",
    "#reject_media",
    "#reject_reports",
    "#public_comment",
    "#obfuscate",
)
MAX_LIST_BYTES: Final = 4 * 1024 * 1024
MAX_ENTRIES: Final = 100_000
MIN_REFRESH_S: Final = 3600
REFRESH_BLOCKLISTS: Final = "refresh_blocklists"
REFRESH_EVERY: Final = timedelta(hours=1)
_TRUE: Final = frozenset({"true", "1", "yes", "t"})
_FALSE: Final = frozenset({"false", "0", "no", "f", ""})


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


# --- reading and writing lists ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Invalid:
    """A line of a list that cannot be applied, and why."""

    line: int
    text: str
    reason: str


@dataclass(frozen=True, slots=True)
class ParsedList:
    entries: tuple[DomainBlockSpec, ...]
    invalid: tuple[Invalid, ...] = ()


def _flag(value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _columns(header: list[str]) -> dict[str, int] | None:
    names = [h.strip().lstrip("#").strip().lower() for h in header]
    if "domain" not in names:
        return None
    return {name: i for i, name in enumerate(names)}


def _spec(row: list[str], columns: dict[str, int]) -> DomainBlockSpec:
    def cell(name: str, default: str = "") -> str:
        index = columns.get(name)
        return row[index] if index is not None and index < len(row) else default

    severity = cell("severity", "suspend").strip().lower() or "suspend"
    if severity not in blocks.SEVERITIES:
        raise ValueError(f"severity {severity!r} is not applied (suspend or silence)")
    return DomainBlockSpec(
        domain=blocks.normalize_domain(cell("domain")),
        severity=severity,
        reject_media=_flag(cell("reject_media")),
        reject_reports=_flag(cell("reject_reports")),
        public_comment=cell("public_comment").strip(),
        obfuscate=_flag(cell("obfuscate")),
    )


def parse_domain_csv(text: str) -> ParsedList:
    """Read Mastodon's domain-blocks CSV, or bare domains one a line (suspensions).

    The last entry of a domain listed twice wins. Lines that cannot be applied (an obfuscated
    ``ex*mple.org``, an unknown severity such as Mastodon's ``noop``, a bad boolean) are returned
    in ``invalid``, never half-applied.

    Raises:
        InvalidInput: more than :data:`MAX_ENTRIES` lines.
    """
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    if len(rows) > MAX_ENTRIES:
        raise InvalidInput(f"a list has at most {MAX_ENTRIES} lines", field="file")
    columns = _columns(rows[0]) if rows else None
    start = 1 if columns is not None else 0
    columns = columns or {"domain": 0}
    found: dict[str, DomainBlockSpec] = {}
    invalid: list[Invalid] = []
    for number, row in enumerate(rows[start:], start=start + 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        try:
            spec = _spec(row, columns)
        except (ValueError, InvalidInput) as exc:
            invalid.append(Invalid(number, ",".join(row)[:200], str(exc)[:200]))
            continue
        found.pop(spec.domain, None)
        found[spec.domain] = spec
    return ParsedList(tuple(found.values()), tuple(invalid))


def render_domain_csv(rows: list[DomainBlock]) -> str:
    """Mastodon's export: one line per block, its header first (private comments are not exported)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for row in sorted(rows, key=lambda r: r.domain):
        writer.writerow(
            [
                row.domain,
                row.severity,
                str(row.reject_media).lower(),
                str(row.reject_reports).lower(),
                row.public_comment,
                str(row.obfuscate).lower(),
            ]
        )
    return out.getvalue()


def parse_allowlist(text: str) -> list[str]:
    """An allowlist: one domain a line (``*.example.org`` for subdomains), or the domain column
    of the CSV above; ``#`` starts a comment line.

    Raises:
        InvalidInput: a line is not a domain (its number is in the message).
    """
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    columns = _columns(rows[0]) if rows else None
    index = columns["domain"] if columns is not None else 0
    found: dict[str, None] = {}
    for number, row in enumerate(rows[1 if columns else 0 :], start=2 if columns else 1):
        if not row or row[0].lstrip().startswith("#") or index >= len(row) or not row[index].strip():
            continue
        try:
            found[blocks.normalize_allowed(row[index])] = None
        except InvalidInput as exc:
            raise InvalidInput(f"line {number}: {exc}", field="file") from exc
    return list(found)


def render_allowlist(domains: list[str]) -> str:
    return "".join(f"{d}\n" for d in sorted(domains))


# --- planning and applying an import ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    before: DomainBlockSpec
    after: DomainBlockSpec


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """What applying a list does: exactly these adds, changes and removals (the preview).

    ``kept`` are listed domains already blocked by hand, by the configuration or by another list:
    the import leaves them as they are.
    """

    source: str
    adds: tuple[DomainBlockSpec, ...] = ()
    changes: tuple[Change, ...] = ()
    removals: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    unchanged: int = 0
    invalid: tuple[Invalid, ...] = field(default=())

    @property
    def is_empty(self) -> bool:
        return not (self.adds or self.changes or self.removals)

    def as_json(self) -> dict[str, Any]:
        def spec(s: DomainBlockSpec) -> dict[str, Any]:
            return {
                "domain": s.domain,
                "severity": s.severity,
                "reject_media": s.reject_media,
                "reject_reports": s.reject_reports,
                "public_comment": s.public_comment,
                "obfuscate": s.obfuscate,
            }

        return {
            "source": self.source,
            "adds": [spec(s) for s in self.adds],
            "changes": [{"before": spec(c.before), "after": spec(c.after)} for c in self.changes],
            "removals": list(self.removals),
            "kept": list(self.kept),
            "unchanged": self.unchanged,
            "invalid": [{"line": i.line, "text": i.text, "reason": i.reason} for i in self.invalid],
        }


def source_of(name: str) -> str:
    """The ``source`` of a list's entries: ``import:<name>`` (a file name or a URL).

    Raises:
        InvalidInput: an empty name.
    """
    text = name.strip()
    if not text or len(text) > 1900:
        raise InvalidInput("a list needs a name (its file name or URL)", field="name")
    return f"import:{text}"


async def plan_import(
    session: AsyncSession, parsed: ParsedList, *, source: str, remove_missing: bool = True
) -> ImportPlan:
    """Compare the list with the stored blocks; nothing is changed.

    ``remove_missing``: the list is the whole of ``source`` (a new version of it), so its
    stored entries it no longer names are removed.
    """
    existing = {row.domain: row for row in await session.scalars(select(DomainBlock))}
    adds: list[DomainBlockSpec] = []
    changes: list[Change] = []
    kept: list[str] = []
    unchanged = 0
    for spec in parsed.entries:
        row = existing.get(spec.domain)
        if row is None:
            adds.append(spec)
        elif row.source != source:
            kept.append(spec.domain)
        elif DomainBlockSpec.of(row) != spec:
            changes.append(Change(DomainBlockSpec.of(row), spec))
        else:
            unchanged += 1
    listed = {s.domain for s in parsed.entries}
    removals = (
        sorted(d for d, r in existing.items() if r.source == source and d not in listed)
        if remove_missing
        else []
    )
    return ImportPlan(
        source, tuple(adds), tuple(changes), tuple(removals), tuple(kept), unchanged, parsed.invalid
    )


async def apply_import(
    session: AsyncSession,
    plan: ImportPlan,
    *,
    by: Actor | None,
    now: datetime | None = None,
    channel: str | None = None,
) -> ImportPlan:
    """Apply a plan made by :func:`plan_import` in the same state (re-plan right before, in the
    same transaction, to apply exactly what was previewed). Audited as one entry."""
    when = _now(now)
    for spec in (*plan.adds, *(c.after for c in plan.changes)):
        await blocks.put_domain_block(session, spec, by=by, source=plan.source, now=when, bump=False)
    for domain in plan.removals:
        row = await session.scalar(select(DomainBlock).where(DomainBlock.domain == domain))
        if row is not None:
            await session.delete(row)
    with blocks.channel_override(channel):
        audit.record(
            session,
            "domain.import",
            now=when,
            by=by,
            target=plan.source[:2048],
            detail={
                "adds": len(plan.adds),
                "changes": len(plan.changes),
                "removals": len(plan.removals),
                "kept": len(plan.kept),
                "invalid": len(plan.invalid),
            },
        )
    await blocks.policy_changed(session, now=when)
    return plan


async def import_domain_csv(
    session: AsyncSession,
    text: str,
    *,
    name: str,
    by: Actor | None,
    apply: bool,
    now: datetime | None = None,
    channel: str | None = None,
) -> ImportPlan:
    """Plan (``apply`` False: the preview) or apply the import of a CSV file named ``name``."""
    plan = await plan_import(session, parse_domain_csv(text), source=source_of(name))
    if apply:
        await apply_import(session, plan, by=by, now=now, channel=channel)
    return plan


async def export_domain_csv(session: AsyncSession) -> str:
    return render_domain_csv(await blocks.list_domain_blocks(session))


async def import_allowlist(
    session: AsyncSession,
    text: str,
    *,
    by: Actor | None,
    now: datetime | None = None,
    channel: str | None = None,
) -> list[str]:
    """Replace the node's allowlist with the list's domains (audited); returns them."""
    domains = parse_allowlist(text)
    await blocks.set_node_policy(session, by=by, allowed_domains=domains, now=now, channel=channel)
    return domains


async def export_allowlist(session: AsyncSession) -> str:
    row = await blocks.node_policy(session)
    return render_allowlist(list(row.allowed_domains))


# --- lists by URL -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fetched:
    """A list fetched by URL: its text, or ``None`` when unchanged (304); its ETag."""

    text: str | None
    etag: str | None


async def fetch_list(fed: Any, url: str, *, etag: str | None = None) -> Fetched:
    """GET ``url`` through the federation transport (address guard, limits, peer policy).

    Raises:
        InvalidInput: not an http(s) URL, an answer other than 200 or 304, a body too large or not UTF-8.
        FederationError: the transport refused or failed (unsafe address, timeout, ...).
    """
    if not is_http_iri(url):
        raise InvalidInput("an http(s) URL is expected", field="url")
    headers = [("Accept", "text/csv, text/plain;q=0.9, */*;q=0.1")]
    if etag:
        headers.append(("If-None-Match", etag))
    response = await fed.transport.send(OutgoingRequest("GET", url, Headers(headers)), follow_redirects=True)
    if response.status == 304:
        return Fetched(None, etag)
    if response.status != 200:
        raise InvalidInput(f"the list answered {response.status}", field="url")
    if len(response.body) > MAX_LIST_BYTES:
        raise InvalidInput("the list is too large", field="url")
    try:
        text = response.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("the list is not UTF-8 text", field="url") from exc
    return Fetched(text, response.headers.get("ETag"))


async def preview_url(fed: Any, url: str) -> ImportPlan:
    """What importing the list at ``url`` would change (nothing is stored)."""
    fetched = await fetch_list(fed, url)
    async with fed.node.sessions() as session:
        return await plan_import(session, parse_domain_csv(fetched.text or ""), source=source_of(url))


async def import_url(fed: Any, url: str, *, by: Actor | None, channel: str | None = None) -> ImportPlan:
    """Fetch the list at ``url`` and apply it (its entries' source is ``import:<url>``)."""
    fetched = await fetch_list(fed, url)
    async with fed.node.sessions.begin() as session:
        return await import_domain_csv(
            session, fetched.text or "", name=url, by=by, apply=True, now=fed.node.clock(), channel=channel
        )


async def subscribe(
    session: AsyncSession,
    *,
    by: Actor | None,
    url: str,
    kind: str = "blocks",
    refresh_interval_s: int = 86400,
    now: datetime | None = None,
    channel: str | None = None,
) -> BlockListSubscription:
    """Follow the list at ``url``: refreshed every ``refresh_interval_s`` (at least an hour) by the
    ``refresh_blocklists`` job; the first fetch happens at the job's next round.

    Raises:
        InvalidInput: not an http(s) URL, an unknown kind, a too short interval.
    """
    if not is_http_iri(url):
        raise InvalidInput("an http(s) URL is expected", field="url")
    if kind not in ("blocks", "allowlist"):
        raise InvalidInput("kind must be blocks or allowlist", field="kind")
    if refresh_interval_s < MIN_REFRESH_S:
        raise InvalidInput(f"refresh at most every {MIN_REFRESH_S} s", field="refresh_interval_s")
    when = _now(now)
    row = await session.scalar(select(BlockListSubscription).where(BlockListSubscription.url == url))
    if row is None:
        row = BlockListSubscription(url=url, created_by_id=by.id if by else None, created_at=when)
        session.add(row)
    row.kind, row.refresh_interval_s = kind, refresh_interval_s
    await session.flush()
    with blocks.channel_override(channel):
        audit.record(session, "blocklist.subscribe", now=when, by=by, target=url, detail={"kind": kind})
    # A first fetch soon, not at the next hourly round (keyed per subscription and instant).
    key = f"{REFRESH_BLOCKLISTS}:subscribed:{row.id}:{int(when.timestamp())}"
    await queue.enqueue(session, REFRESH_BLOCKLISTS, {}, dedup_key=key, now=when)
    return row


async def unsubscribe(
    session: AsyncSession,
    *,
    by: Actor | None,
    url: str,
    remove_entries: bool = True,
    now: datetime | None = None,
    channel: str | None = None,
) -> None:
    """Stop following the list at ``url``; its domain blocks go too unless ``remove_entries`` is False.

    Raises:
        NotFound: no subscription to ``url``.
    """
    row = await session.scalar(select(BlockListSubscription).where(BlockListSubscription.url == url))
    if row is None:
        raise NotFound("no subscription to this list", field="url")
    await session.delete(row)
    removed = 0
    if remove_entries and row.kind == "blocks":
        for block in await session.scalars(select(DomainBlock).where(DomainBlock.source == source_of(url))):
            await session.delete(block)
            removed += 1
    when = _now(now)
    with blocks.channel_override(channel):
        audit.record(
            session, "blocklist.unsubscribe", now=when, by=by, target=url, detail={"removed": removed}
        )
    await blocks.policy_changed(session, now=when)


async def list_subscriptions(session: AsyncSession) -> list[BlockListSubscription]:
    return list(await session.scalars(select(BlockListSubscription).order_by(BlockListSubscription.url)))


def _due(row: BlockListSubscription, now: datetime) -> bool:
    return row.last_fetched_at is None or now - row.last_fetched_at >= timedelta(
        seconds=row.refresh_interval_s
    )


async def refresh_subscription(fed: Any, subscription_id: int) -> str:
    """Fetch one subscribed list (``If-None-Match``) and apply it: ``updated``, ``unchanged``
    or ``failed``."""
    async with fed.node.sessions() as session:
        row = await session.get(BlockListSubscription, subscription_id)
        if row is None:
            return "failed"
        url, kind, etag = row.url, row.kind, row.etag
    outcome, error = "failed", None
    try:
        fetched = await fetch_list(fed, url, etag=etag)
    except (FederationError, InvalidInput) as exc:
        fetched, error = None, f"{type(exc).__name__}: {exc}"[:1024]
        log.info("block list not fetched", extra={"url": url, "error": type(exc).__name__})
    now = fed.node.clock()
    async with fed.node.sessions.begin() as session:
        row = await session.get(BlockListSubscription, subscription_id)
        if row is None:
            return "failed"
        row.last_fetched_at, row.last_error = now, error
        if fetched is not None:
            row.etag = fetched.etag
            outcome = "unchanged" if fetched.text is None else "updated"
            if fetched.text is not None:
                await _apply_fetched(session, kind, url, fetched.text, now)
    return outcome


async def _apply_fetched(session: AsyncSession, kind: str, url: str, text: str, now: datetime) -> None:
    if kind == "allowlist":
        await import_allowlist(session, text, by=None, now=now)
        return
    plan = await plan_import(session, parse_domain_csv(text), source=source_of(url))
    if not plan.is_empty:
        await apply_import(session, plan, by=None, now=now)


async def refresh_due(fed: Any) -> int:
    """Refresh every subscription whose interval has passed (the periodic job); how many were due."""
    now = fed.node.clock()
    async with fed.node.sessions() as session:
        due = [row.id for row in await list_subscriptions(session) if _due(row, now)]
    for subscription_id in due:
        await refresh_subscription(fed, subscription_id)
    return len(due)


async def schedule_refresh(session: Any, *, now: datetime) -> None:
    """Make sure the next periodic round is queued (idempotent per interval)."""
    await queue.schedule_periodic(session, REFRESH_BLOCKLISTS, every=REFRESH_EVERY, now=now)
