"""Blocks and the node's federation policy, kept in the database (docs/decisions.md 62-64).

* The node's policy (open federation or an allowlist, who may create associations) is one
  ``node_policy`` row, seeded from the configuration file the first time the node starts.
* Domain blocks (Mastodon's fields: ``suspend`` or ``silence``, reject media, reject reports,
  comments, obfuscation) and actor blocks (by the node or by one association).
* Every process holds the policy as a :class:`~federation.policy.LivePolicy` snapshot. A change
  committed here replaces the snapshot of the committing process at once (a listener on the
  commit), and bumps ``node_policy.version``, which the other processes poll
  (:func:`policy_sync`): the inbox, the transport, the fetches and the delivery planner all read
  that snapshot, so a block takes effect before any key is fetched (docs/architecture.md
  "the two halves of the inbox").
* Severing: suspending a domain removes the follows both ways with its actors, locally only
  (the transport refuses the domain from the same commit on, as Mastodon does not federate to a
  suspended domain). Blocking an actor sends ``Reject{Follow}`` for its follows of ours,
  ``Undo{Follow}`` for ours of it, and, for an association's block, a ``Block`` from the
  association (what Mastodon sends when an account blocks another).

Nothing here takes the audit channel as an argument except as an override (``channel``): it
follows the task (``server/services/audit.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, Select, event, exists, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, aliased

from federation.iri import is_http_iri
from federation.policy import HostPattern, LivePolicy, PeerPolicy
from federation.uris import UriScheme
from server.config import FederationSettings
from server.db import queue
from server.db.models import Account, Activity, Actor, ActorBlock, DomainBlock, NodePolicy, RemoteObject
from server.db.models import Follow as FollowRow
from server.services import audit
from server.services.content import changes
from server.services.delivery.outbox import new_activity_iri, publish
from server.services.errors import Forbidden, InvalidInput, NotFound, Unauthorized

log = logging.getLogger(__name__)

SEVERITIES: Final = ("suspend", "silence")
FEDERATION_MODES: Final = ("open", "allowlist")
ASSOCIATION_CREATORS: Final = ("admins", "members")
NODE_SCOPE: Final = "node"
CONFIG_SOURCE: Final = "config"
MANUAL_SOURCE: Final = "manual"
POLL_INTERVAL_S: Final = 5.0
"""How often a process asks whether another one changed the policy (one indexed read)."""

_SNAPSHOT_KEY: Final = "blocks.snapshot"
_HIDDEN_KEY: Final = "blocks.hidden"
_GROUP_BLOCKED_KEY: Final = "blocks.group_blocked"


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


@contextlib.contextmanager
def channel_override(channel: str | None) -> Iterator[None]:
    if channel is None:
        yield
    else:
        with audit.channel_scope(channel):
            yield


# --- values ---------------------------------------------------------------------------------------


def normalize_domain(text: str) -> str:
    """The canonical form of a domain to block (``Evil.Example.`` → ``evil.example``).

    Raises:
        InvalidInput: not a host name (an obfuscated ``ex*mple.org``, a URL, a wildcard).
    """
    value = text.strip()
    if not value or value.startswith("*.") or "/" in value or "*" in value:
        raise InvalidInput(f"not a domain: {text!r}", field="domain")
    try:
        pattern = HostPattern.parse(value)
    except ValueError as exc:
        raise InvalidInput(f"not a domain: {text!r}", field="domain") from exc
    return pattern.host if pattern.port is None else f"{pattern.host}:{pattern.port}"


def normalize_allowed(text: str) -> str:
    """An allowlist entry: a domain, or ``*.domain`` for its subdomains.

    Raises:
        InvalidInput: not a host name.
    """
    value = text.strip()
    wildcard = value.startswith("*.")
    host = normalize_domain(value[2:] if wildcard else value)
    return f"*.{host}" if wildcard else host


@dataclass(frozen=True, slots=True)
class DomainBlockSpec:
    """One domain block as given by a person or a list (what an import compares)."""

    domain: str
    severity: str = "suspend"
    reject_media: bool = False
    reject_reports: bool = False
    public_comment: str = ""
    obfuscate: bool = False

    @classmethod
    def of(cls, row: DomainBlock) -> DomainBlockSpec:
        return cls(
            row.domain, row.severity, row.reject_media, row.reject_reports, row.public_comment, row.obfuscate
        )


async def node_admin(session: AsyncSession, actor_id: int | None, *, scope: str | None) -> Actor:
    """The node admin acting (``entraide member set NAME --node-admin yes``), with an admin-scope
    token or a browser session (``scope`` None).

    Raises:
        Unauthorized: no local account. Forbidden: not a node admin, or a token without the admin scope.
    """
    actor = await session.get(Actor, actor_id) if actor_id is not None else None
    if actor is None or not actor.local or actor.type != "Person":
        raise Unauthorized("a bearer token of a local account is required")
    account = await session.get(Account, actor.id)
    if account is None or not account.is_node_admin or scope not in (None, "admin"):
        raise Forbidden("blocks and the federation policy are set by node admins (admin-scope token)")
    return actor


def describe(
    policy: NodePolicy, domains: list[DomainBlock], actors: list[ActorBlock], lists: list[Any]
) -> dict[str, Any]:
    """The policy page's and the API's one view of the node's federation settings."""
    return {
        "federationMode": policy.federation_mode,
        "allowedDomains": list(policy.allowed_domains),
        "associationCreators": policy.association_creators,
        "domainBlocks": [domain_block_json(d) for d in domains],
        "actorBlocks": [
            {"actor": a.actor_iri, "reason": a.reason, "created": a.created_at.isoformat()} for a in actors
        ],
        "subscriptions": [subscription_json(s) for s in lists],
    }


def subscription_json(row: Any) -> dict[str, Any]:
    """One subscribed block list (a ``BlockListSubscription``) as the API shows it."""
    return {
        "url": row.url,
        "kind": row.kind,
        "refreshIntervalS": row.refresh_interval_s,
        "lastFetched": row.last_fetched_at.isoformat() if row.last_fetched_at else None,
        "error": row.last_error,
    }


def domain_block_json(row: DomainBlock) -> dict[str, Any]:
    return {
        "domain": row.domain,
        "severity": row.severity,
        "rejectMedia": row.reject_media,
        "rejectReports": row.reject_reports,
        "publicComment": row.public_comment,
        "privateComment": row.private_comment,
        "obfuscate": row.obfuscate,
        "source": row.source,
        "created": row.created_at.isoformat(),
    }


# --- the node's policy and its snapshot -------------------------------------------------------------


async def node_policy(session: AsyncSession, *, now: datetime | None = None) -> NodePolicy:
    """The node's policy row, created (open federation) if the node never started with this schema."""
    row = await session.get(NodePolicy, 1)
    if row is None:
        row = NodePolicy(
            id=1,
            federation_mode="open",
            allowed_domains=[],
            association_creators="admins",
            version=1,
            updated_at=_now(now),
        )
        session.add(row)
        await session.flush()
    return row


async def seed_from_config(session: AsyncSession, settings: FederationSettings, *, now: datetime) -> None:
    """First start: the configuration file's network and allowlist become the stored policy.
    Every start: its ``blocked_domains`` are the ``config`` domain blocks (added and removed to match;
    blocks made otherwise are left alone)."""
    row = await session.get(NodePolicy, 1)
    if row is None:
        mode = settings.network if settings.network in FEDERATION_MODES else "open"
        allowed = [normalize_allowed(d) for d in settings.allowed_domains]
        session.add(
            NodePolicy(
                id=1,
                federation_mode=mode,
                allowed_domains=allowed,
                association_creators="admins",
                version=1,
                updated_at=now,
            )
        )
    wanted = {normalize_domain(d) for d in settings.blocked_domains}
    existing = {b.domain: b for b in await session.scalars(select(DomainBlock))}
    changed = row is None
    for domain in sorted(wanted - existing.keys()):
        session.add(DomainBlock(domain=domain, severity="suspend", source=CONFIG_SOURCE, created_at=now))
        changed = True
    for domain, block in existing.items():
        if block.source == CONFIG_SOURCE and domain not in wanted:
            await session.delete(block)
            changed = True
    if changed:
        await policy_changed(session, now=now)


async def load_snapshot(session: AsyncSession) -> tuple[PeerPolicy, int] | None:
    """The policy the stored rows describe, with its version; ``None`` before the first seed."""
    row = await session.get(NodePolicy, 1)
    if row is None:
        return None
    suspended = list(
        await session.scalars(select(DomainBlock.domain).where(DomainBlock.severity == "suspend"))
    )
    actors = list(await session.scalars(select(ActorBlock.actor_iri).where(ActorBlock.scope == NODE_SCOPE)))
    blocked = [d for d in suspended if _valid(d)]
    if row.federation_mode == "allowlist":
        allowed = [d for d in row.allowed_domains if _valid(d.removeprefix("*."))]
        return PeerPolicy.closed_network(allowed, blocked, actors), row.version
    return PeerPolicy.open_network(blocked, actors), row.version


def _valid(domain: str) -> bool:
    try:
        HostPattern.parse(domain)
    except ValueError:
        log.warning("stored policy entry ignored", extra={"entry": domain})
        return False
    return True


async def policy_changed(session: AsyncSession, *, now: datetime | None = None) -> None:
    """Bump the version and compute the new snapshot; it replaces this process's policy when the
    transaction commits (and the other processes' at their next poll). The commit also empties
    the page cache, like a publication: a cached page may show what the change hides."""
    row = await node_policy(session, now=now)
    row.version += 1
    row.updated_at = _now(now)
    await session.flush()
    snapshot = await load_snapshot(session)
    url = str(session.sync_session.get_bind().engine.url)
    session.sync_session.info[_SNAPSHOT_KEY] = (url, snapshot)
    changes.mark_published(session)  # what the caches kept may show what is now hidden
    session.info.pop(_HIDDEN_KEY, None)
    session.info.pop(_GROUP_BLOCKED_KEY, None)


_LIVE: dict[str, weakref.WeakSet[LivePolicy]] = {}


def register(database_url: str, policy: LivePolicy) -> None:
    """Let commits in this process replace ``policy`` at once (the database it reads: ``database_url``)."""
    _LIVE.setdefault(database_url, weakref.WeakSet()).add(policy)


@event.listens_for(Session, "after_commit")
def _push_snapshot(session: Session) -> None:
    found = session.info.pop(_SNAPSHOT_KEY, None)
    if found is None:
        return
    url, snapshot = found
    if snapshot is None:
        return
    policy, version = snapshot
    for live in list(_LIVE.get(url, ())):
        if version > live.version:
            live.replace(policy, version)


@event.listens_for(Session, "after_rollback")
def _drop_snapshot(session: Session) -> None:
    session.info.pop(_SNAPSHOT_KEY, None)


async def refresh(sessions: Any, live: LivePolicy) -> bool:
    """Reload ``live`` when the stored version moved (another process changed it). True if reloaded."""
    async with sessions() as session:
        version = await session.scalar(select(NodePolicy.version).where(NodePolicy.id == 1))
        if version is None or version == live.version:
            return False
        snapshot = await load_snapshot(session)
    if snapshot is not None:
        live.replace(*snapshot)
    return True


@contextlib.asynccontextmanager
async def policy_sync(fed: Any, *, interval_s: float = POLL_INTERVAL_S) -> AsyncIterator[None]:
    """For the life of a process's federation runtime: seed the stored policy from the
    configuration, load it into ``fed.policy``, follow this process's commits at once and the
    other processes' by polling the version every ``interval_s``."""
    node = fed.node
    async with node.sessions.begin() as session:
        await seed_from_config(session, node.settings.federation, now=node.clock())
    engine = node.sessions.kw.get("bind")
    register(str(engine.url) if engine is not None else "", fed.policy)
    await refresh(node.sessions, fed.policy)

    async def poll() -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await refresh(node.sessions, fed.policy)
            except Exception:  # a database hiccup must not stop the polling; logged, retried
                log.warning("policy refresh failed", exc_info=True)

    task = asyncio.create_task(poll(), name="entraide-policy-sync")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def set_node_policy(
    session: AsyncSession,
    *,
    by: Actor | None,
    federation_mode: str | None = None,
    allowed_domains: list[str] | None = None,
    association_creators: str | None = None,
    now: datetime | None = None,
    channel: str | None = None,
) -> NodePolicy:
    """Change the node's federation mode, allowlist or who may create associations (audited).

    Raises:
        InvalidInput: an unknown mode or choice, an allowlist entry that is not a domain.
    """
    if federation_mode is not None and federation_mode not in FEDERATION_MODES:
        raise InvalidInput(f"federation mode must be one of {FEDERATION_MODES}", field="federation_mode")
    if association_creators is not None and association_creators not in ASSOCIATION_CREATORS:
        raise InvalidInput(f"must be one of {ASSOCIATION_CREATORS}", field="association_creators")
    allowed = (
        None
        if allowed_domains is None
        else sorted({normalize_allowed(d) for d in allowed_domains if d.strip()})
    )
    row = await node_policy(session, now=now)
    if federation_mode is not None:
        row.federation_mode = federation_mode
    if allowed is not None:
        row.allowed_domains = allowed
    if association_creators is not None:
        row.association_creators = association_creators
    with channel_override(channel):
        audit.record(
            session,
            "node.policy",
            now=_now(now),
            by=by,
            detail={
                "federation_mode": row.federation_mode,
                "allowed": len(row.allowed_domains),
                "association_creators": row.association_creators,
            },
        )
    await policy_changed(session, now=now)
    return row


# --- matching stored actors -------------------------------------------------------------------------


def _host_under(domain: Any) -> ColumnElement[bool]:
    """``actors.host`` is ``domain`` or one of its subdomains, with or without a port."""
    return or_(
        Actor.host == domain,
        Actor.host.like(literal("%.") + domain),
        Actor.host.like(domain + literal(":%")),
        Actor.host.like(literal("%.") + domain + literal(":%")),
    )


# The conditions below are built once and reused by every statement that embeds them: building
# one (aliases, correlated subqueries) cost 1.5-4 ms of CPU per read, more than running it. A
# condition holds no value of its own but the viewer's id, its key in the caches (bounded).


@functools.cache
def on_blocked_domain(severities: tuple[str, ...] = ("suspend",)) -> ColumnElement[bool]:
    """A condition on ``actors``: a remote actor under a domain blocked with one of ``severities``."""
    return exists().where(DomainBlock.severity.in_(severities), _host_under(DomainBlock.domain))


@functools.cache
def node_blocked_actor() -> ColumnElement[bool]:
    """A condition on ``actors``: blocked one by one by the node."""
    return Actor.iri.in_(select(ActorBlock.actor_iri).where(ActorBlock.scope == NODE_SCOPE))


@functools.lru_cache(maxsize=1024)
def hidden_authors(viewer_id: int | None) -> Any:
    """The actors whose stored content no read channel shows ``viewer_id`` (``None``: anonymous):
    suspended domains and node-blocked actors always; silenced domains unless the viewer follows
    the author (silence keeps them off public listings only)."""
    silenced = on_blocked_domain(("silence",))
    if viewer_id is not None:
        followed = select(FollowRow.followed_id).where(
            FollowRow.follower_id == viewer_id, FollowRow.state == "accepted"
        )
        silenced = silenced & Actor.id.not_in(followed)
    return select(Actor.id).where(
        Actor.local.is_(False), or_(on_blocked_domain(), node_blocked_actor(), silenced)
    )


async def is_silenced(session: AsyncSession, actor_id: int) -> bool:
    """Is ``actor_id`` a remote actor under a silenced domain?"""
    found = await session.scalar(
        select(Actor.id).where(Actor.id == actor_id, Actor.local.is_(False), on_blocked_domain(("silence",)))
    )
    return found is not None


async def is_hidden(session: AsyncSession, viewer_id: int | None, author_id: int) -> bool:
    """Is ``author_id``'s content hidden from this viewer? Answered once per session and pair."""
    cache: dict[tuple[int | None, int], bool] = session.info.setdefault(_HIDDEN_KEY, {})
    key = (viewer_id, author_id)
    if key not in cache:
        found = await session.scalar(hidden_authors(viewer_id).where(Actor.id == author_id))
        cache[key] = found is not None
    return cache[key]


async def hidden_iris(session: AsyncSession, viewer_id: int | None, actor_iris: set[str]) -> set[str]:
    """Which of ``actor_iris`` are hidden from this viewer (one statement)."""
    if not actor_iris:
        return set()
    found = await session.scalars(
        select(Actor.iri).where(Actor.iri.in_(sorted(actor_iris)), Actor.id.in_(hidden_authors(viewer_id)))
    )
    return set(found)


@functools.cache
def blocked_in_its_association() -> ColumnElement[bool]:
    """A condition on ``objects``: its author is blocked by the association whose content the row
    is part of (decision 78): the association it was posted into (``audience``), the author or
    association of the thread's root (same ``context``, no ``inReplyTo``), or of the object it
    answers. Such a row is hidden from every reader in that association's context; the node's
    blocks are :func:`hidden_authors`."""
    author = aliased(Actor)
    root = aliased(RemoteObject)
    in_thread = or_(
        (root.context_iri == RemoteObject.context_iri) & root.in_reply_to_iri.is_(None),
        root.iri == RemoteObject.in_reply_to_iri,
    )
    return exists().where(
        ActorBlock.group_id.is_not(None),
        ActorBlock.actor_iri == author.iri,
        author.id == RemoteObject.attributed_to_id,
        or_(
            ActorBlock.group_id == RemoteObject.audience_id,
            ActorBlock.group_id.in_(select(root.audience_id).where(in_thread).correlate(RemoteObject)),
            ActorBlock.group_id.in_(select(root.attributed_to_id).where(in_thread).correlate(RemoteObject)),
        ),
    )


def blocked_by(relayer_id: Any, author_id: Any) -> ColumnElement[bool]:
    """A condition: the association ``relayer_id`` blocks the actor ``author_id`` (its relays of
    that actor's content no longer bring it to its members' timelines)."""
    author = aliased(Actor)
    return exists().where(
        ActorBlock.group_id == relayer_id, ActorBlock.actor_iri == author.iri, author.id == author_id
    )


async def is_blocked_in_its_association(session: AsyncSession, row: RemoteObject) -> bool:
    """:func:`blocked_in_its_association` for one row. The authors some association blocks are
    read once per session; only their rows cost a statement."""
    blocked: set[int] | None = session.info.get(_GROUP_BLOCKED_KEY)
    if blocked is None:
        blocked = set(
            await session.scalars(
                select(Actor.id)
                .join(ActorBlock, ActorBlock.actor_iri == Actor.iri)
                .where(ActorBlock.group_id.is_not(None))
            )
        )
        session.info[_GROUP_BLOCKED_KEY] = blocked
    if row.attributed_to_id not in blocked:
        return False
    found = await session.scalar(
        select(RemoteObject.id).where(RemoteObject.id == row.id, blocked_in_its_association())
    )
    return found is not None


async def rejects_media(session: AsyncSession, author_id: int) -> bool:
    """Is ``author_id`` on a domain whose media the node does not show (``reject_media``)?"""
    found = await session.scalar(
        select(Actor.id).where(
            Actor.id == author_id,
            Actor.local.is_(False),
            exists().where(DomainBlock.reject_media.is_(True), _host_under(DomainBlock.domain)),
        )
    )
    return found is not None


async def rejects_media_from(session: AsyncSession, host: str) -> bool:
    """Does the node reject the media of ``host`` (a domain above it blocked with ``reject_media``)?"""
    rows = await session.scalars(select(DomainBlock.domain).where(DomainBlock.reject_media.is_(True)))
    policy = PeerPolicy.open_network([d for d in rows if _valid(d)])
    return not policy.allows(host)


MEDIA_FIELDS: Final = ("attachment", "image", "icon")


def without_media(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` without the fields that point at media files."""
    return {k: v for k, v in document.items() if k not in MEDIA_FIELDS}


async def rejects_reports(session: AsyncSession, host: str) -> bool:
    """Does the node ignore reports (``Flag``) from ``host`` (``reject_reports``, or suspended)?"""
    rows = await session.scalars(
        select(DomainBlock).where(
            or_(DomainBlock.reject_reports.is_(True), DomainBlock.severity == "suspend")
        )
    )
    policy = PeerPolicy.open_network([r.domain for r in rows if _valid(r.domain)])
    return not policy.allows(host)


# --- domain blocks ----------------------------------------------------------------------------------


async def block_domain(
    session: AsyncSession,
    *,
    by: Actor | None,
    domain: str,
    severity: str = "suspend",
    reject_media: bool = False,
    reject_reports: bool = False,
    public_comment: str = "",
    private_comment: str = "",
    obfuscate: bool = False,
    source: str = MANUAL_SOURCE,
    now: datetime | None = None,
    channel: str | None = None,
) -> DomainBlock:
    """Block ``domain`` and its subdomains, or change its block (audited). Suspending severs the
    follows with its actors (locally: nothing is sent to a suspended domain).

    Raises:
        InvalidInput: not a domain, an unknown severity, or one of our own hosts.
    """
    if severity not in SEVERITIES:
        raise InvalidInput(f"severity must be one of {SEVERITIES}", field="severity")
    spec = DomainBlockSpec(
        normalize_domain(domain), severity, reject_media, reject_reports, public_comment.strip(), obfuscate
    )
    with channel_override(channel):
        return await put_domain_block(
            session, spec, by=by, private_comment=private_comment.strip(), source=source, now=_now(now)
        )


async def put_domain_block(
    session: AsyncSession,
    spec: DomainBlockSpec,
    *,
    by: Actor | None,
    source: str,
    now: datetime,
    private_comment: str | None = None,
    bump: bool = True,
) -> DomainBlock:
    """Create or change the block ``spec`` (severing follows on suspension), audited. ``bump``
    False: the caller calls :func:`policy_changed` once after a batch (an import)."""
    row = await session.scalar(select(DomainBlock).where(DomainBlock.domain == spec.domain))
    action = "domain.block" if row is None else "domain.block.update"
    if row is None:
        row = DomainBlock(
            domain=spec.domain, source=source, created_by_id=by.id if by else None, created_at=now
        )
        session.add(row)
    newly_rejected = spec.reject_media and not row.reject_media
    row.severity, row.reject_media, row.reject_reports = spec.severity, spec.reject_media, spec.reject_reports
    row.public_comment, row.obfuscate = spec.public_comment, spec.obfuscate
    if private_comment is not None:
        row.private_comment = private_comment
    await session.flush()
    severed = await _sever_domain(session, spec.domain) if spec.severity == "suspend" else 0
    purged = await purge_media(session, spec.domain) if newly_rejected else 0
    if bump:
        audit.record(
            session,
            action,
            now=now,
            by=by,
            target=spec.domain,
            detail={
                "severity": spec.severity,
                "reject_media": spec.reject_media,
                "reject_reports": spec.reject_reports,
                "source": source,
                "follows_severed": severed,
                "media_purged": purged,
            },
        )
        await policy_changed(session, now=now)
    return row


PURGE_BATCH: Final = 500


async def purge_media(session: AsyncSession, domain: str) -> int:
    """Remove the media the node keeps from ``domain`` and its subdomains, now that it rejects
    them (decision 79): the attachment, image and icon fields of its actors' stored objects and
    of their actor documents (the node stores no remote file: these links are what it shows).
    Read in batches of :data:`PURGE_BATCH` rows; how many rows changed."""
    remote = select(Actor.id).where(Actor.local.is_(False), _host_under(literal(domain)))

    def objects(after: int) -> Select[Any]:
        return (
            select(RemoteObject)
            .where(RemoteObject.attributed_to_id.in_(remote), RemoteObject.id > after)
            .order_by(RemoteObject.id)
            .limit(PURGE_BATCH)
        )

    def actors(after: int) -> Select[Any]:
        return (
            select(Actor).where(Actor.id.in_(remote), Actor.id > after).order_by(Actor.id).limit(PURGE_BATCH)
        )

    return await _strip_batches(session, objects) + await _strip_batches(session, actors)


async def _strip_batches(session: AsyncSession, batch: Callable[[int], Select[Any]]) -> int:
    """Remove the media fields of the documents of the rows ``batch(after)`` selects, batch after
    batch; how many rows changed."""
    changed = 0
    after = 0
    while True:
        rows: list[Any] = list(await session.scalars(batch(after)))
        for row in rows:
            document = row.document
            if isinstance(document, dict) and any(field in document for field in MEDIA_FIELDS):
                row.document = without_media(document)
                changed += 1
        await session.flush()
        if len(rows) < PURGE_BATCH:
            return changed
        after = rows[-1].id


async def _sever_domain(session: AsyncSession, domain: str) -> int:
    """Remove every follow between our actors and the domain's, both ways; how many went."""
    remote = select(Actor.id).where(Actor.local.is_(False), _host_under(literal(domain)))
    rows = list(
        await session.scalars(
            select(FollowRow).where(or_(FollowRow.follower_id.in_(remote), FollowRow.followed_id.in_(remote)))
        )
    )
    for row in rows:
        await session.delete(row)
    return len(rows)


async def unblock_domain(
    session: AsyncSession,
    *,
    by: Actor | None,
    domain: str,
    now: datetime | None = None,
    channel: str | None = None,
) -> None:
    """Lift the block of ``domain`` (audited). Severed follows are not restored.

    Raises:
        NotFound: the domain is not blocked. InvalidInput: not a domain.
    """
    name = normalize_domain(domain)
    row = await session.scalar(select(DomainBlock).where(DomainBlock.domain == name))
    if row is None:
        raise NotFound(f"{name} is not blocked", field="domain")
    await session.delete(row)
    with channel_override(channel):
        audit.record(
            session, "domain.unblock", now=_now(now), by=by, target=name, detail={"source": row.source}
        )
    await policy_changed(session, now=now)


async def list_domain_blocks(session: AsyncSession) -> list[DomainBlock]:
    """Every domain block, by domain."""
    return list(await session.scalars(select(DomainBlock).order_by(DomainBlock.domain)))


# --- actor blocks -----------------------------------------------------------------------------------


def _scope(group: Actor | None) -> str:
    return NODE_SCOPE if group is None else f"group:{group.id}"


async def block_actor(
    session: AsyncSession,
    *,
    uris: UriScheme,
    by: Actor | None,
    actor_iri: str,
    reason: str = "",
    group: Actor | None = None,
    now: datetime | None = None,
    channel: str | None = None,
) -> ActorBlock:
    """Block a remote actor for the whole node (``group`` None) or for one local association.

    Follows between them and us (the association, or any of our actors for a node block) are
    severed with ``Reject{Follow}`` and ``Undo{Follow}``; an association's block also sends
    ``Block``. Idempotent: blocking again updates the reason only.

    Raises:
        InvalidInput: not an http(s) IRI, or one of ours.
    """
    if not is_http_iri(actor_iri) or uris.is_local(actor_iri):
        raise InvalidInput("a remote actor's IRI is expected", field="actor")
    when = _now(now)
    scope = _scope(group)
    row = await session.scalar(
        select(ActorBlock).where(ActorBlock.scope == scope, ActorBlock.actor_iri == actor_iri)
    )
    if row is not None:
        row.reason = reason
        return row
    row = ActorBlock(
        scope=scope,
        group_id=group.id if group else None,
        actor_iri=actor_iri,
        reason=reason,
        created_by_id=by.id if by else None,
        created_at=when,
    )
    session.add(row)
    await session.flush()
    target = await session.scalar(select(Actor).where(Actor.iri == actor_iri))
    sent = await _sever_actor(session, uris, target, group, when) if target is not None else []
    with channel_override(channel):
        audit.record(
            session,
            "actor.block",
            now=when,
            by=by,
            group=group,
            target=actor_iri,
            detail={"reason": reason, "sent": sent},
        )
    await policy_changed(session, now=when)
    return row


async def _sever_actor(
    session: AsyncSession, uris: UriScheme, target: Actor, group: Actor | None, now: datetime
) -> list[str]:
    """Send what ends the relations between ``target`` and our actor(s); the types sent."""
    ours = select(Actor.id).where(Actor.local.is_(True)) if group is None else select(literal(group.id))
    follows = list(
        await session.scalars(
            select(FollowRow).where(
                or_(
                    (FollowRow.follower_id == target.id) & FollowRow.followed_id.in_(ours),
                    (FollowRow.followed_id == target.id) & FollowRow.follower_id.in_(ours),
                )
            )
        )
    )
    sent: list[str] = []
    for row in follows:
        theirs = row.follower_id == target.id
        local = await session.get(Actor, row.followed_id if theirs else row.follower_id)
        await session.delete(row)
        if local is None or row.follow_iri is None:
            continue
        follow = {
            "id": row.follow_iri,
            "type": "Follow",
            "actor": target.iri if theirs else local.iri,
            "object": local.iri if theirs else target.iri,
        }
        kind = "Reject" if theirs else "Undo"
        await _send(session, uris, local, {"type": kind, "object": follow, "to": [target.iri]}, now)
        sent.append(kind)
    if group is not None:
        await _send(session, uris, group, {"type": "Block", "object": target.iri, "to": [target.iri]}, now)
        sent.append("Block")
    return sent


async def _send(
    session: AsyncSession, uris: UriScheme, actor: Actor, doc: dict[str, Any], now: datetime
) -> None:
    await publish(
        session,
        actor,
        {"id": new_activity_iri(uris), **doc},
        visibility="direct",
        now=now,
        priority=queue.Priority.INTERACTIVE,
    )


async def unblock_actor(
    session: AsyncSession,
    *,
    uris: UriScheme,
    by: Actor | None,
    actor_iri: str,
    group: Actor | None = None,
    now: datetime | None = None,
    channel: str | None = None,
) -> None:
    """Lift a block (audited); an association's block is undone on the wire (``Undo{Block}``).

    Raises:
        NotFound: no such block.
    """
    when = _now(now)
    row = await session.scalar(
        select(ActorBlock).where(ActorBlock.scope == _scope(group), ActorBlock.actor_iri == actor_iri)
    )
    if row is None:
        raise NotFound("this actor is not blocked", field="actor")
    await session.delete(row)
    if group is not None:
        block_iri = await session.scalar(
            select(Activity.iri)
            .where(Activity.actor_id == group.id, Activity.type == "Block", Activity.object_iri == actor_iri)
            .order_by(Activity.id.desc())
            .limit(1)
        )
        block = {"type": "Block", "actor": group.iri, "object": actor_iri}
        if block_iri is not None:
            block["id"] = block_iri
        await _send(session, uris, group, {"type": "Undo", "object": block, "to": [actor_iri]}, when)
    with channel_override(channel):
        audit.record(session, "actor.unblock", now=when, by=by, group=group, target=actor_iri)
    await policy_changed(session, now=when)


async def list_actor_blocks(session: AsyncSession, *, group: Actor | None = None) -> list[ActorBlock]:
    """The node's actor blocks (``group`` None), or one association's."""
    return list(
        await session.scalars(
            select(ActorBlock)
            .where(ActorBlock.scope == _scope(group))
            .order_by(ActorBlock.created_at, ActorBlock.id)
        )
    )


async def is_actor_blocked(session: AsyncSession, actor_iri: str, *, group: Actor | None = None) -> bool:
    """Is ``actor_iri`` blocked by the node, or (``group`` given) by that association or the node?"""
    scopes = [NODE_SCOPE] if group is None else [NODE_SCOPE, _scope(group)]
    found = await session.scalar(
        select(ActorBlock.id).where(ActorBlock.actor_iri == actor_iri, ActorBlock.scope.in_(scopes)).limit(1)
    )
    return found is not None
