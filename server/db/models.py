"""Tables. One ``actors`` table holds local and remote actors alike (``local`` tells them apart),
so follows, memberships and keys reference actors uniformly.

Relationships are ``lazy="raise"``: load what you need explicitly (docs/architecture.md R8).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import false as sa_false
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .types import JsonType, UtcDateTime

IRI = String(2048)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ACTOR_TYPES = ("Application", "Group", "Person", "Service", "Organization")
ROLES = ("admin", "moderator", "member")
VISIBILITIES = ("public", "unlisted", "followers", "members", "direct")
# What an object is to Entraide (``entraideKind`` on the wire, or inferred for peers' objects).
KINDS = ("post", "resource", "alert", "proposal", "reply", "vote", "endorsement", "event")


class Base(AsyncAttrs, DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Actor(Base):
    """A local or remote ActivityPub actor (the node, an association, a member, a peer)."""

    __tablename__ = "actors"
    __table_args__ = (
        UniqueConstraint("host", "type", "handle"),
        CheckConstraint(f"type IN {ACTOR_TYPES!r}", name="type"),
        CheckConstraint("members_visibility IN ('public', 'members', 'hidden')", name="members_visibility"),
        CheckConstraint("join_policy IN ('open', 'approval', 'closed')", name="join_policy"),
        CheckConstraint("replies_policy IN ('anyone', 'members')", name="replies_policy"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    iri: Mapped[str] = mapped_column(IRI, unique=True)
    local: Mapped[bool] = mapped_column(Boolean, index=True)
    type: Mapped[str] = mapped_column(String(32))
    handle: Mapped[str] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255), default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    inbox_iri: Mapped[str | None] = mapped_column(IRI)
    shared_inbox_iri: Mapped[str | None] = mapped_column(IRI)
    outbox_iri: Mapped[str | None] = mapped_column(IRI)
    followers_iri: Mapped[str | None] = mapped_column(IRI)
    following_iri: Mapped[str | None] = mapped_column(IRI)
    url: Mapped[str | None] = mapped_column(IRI)
    manually_approves_followers: Mapped[bool] = mapped_column(Boolean, default=False)
    discoverable: Mapped[bool] = mapped_column(Boolean, default=True)
    members_visibility: Mapped[str] = mapped_column(String(16), default="public")
    # Associations: how people join (``approval`` by an admin by default), and who may reply.
    join_policy: Mapped[str] = mapped_column(String(16), default="approval", server_default="approval")
    replies_policy: Mapped[str] = mapped_column(String(16), default="members", server_default="members")
    # Associations: the language of content published without one (BCP 47), or None.
    language: Mapped[str | None] = mapped_column(String(35))
    document: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    fetched_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    moved_to_iri: Mapped[str | None] = mapped_column(IRI)

    keys: Mapped[list[ActorKey]] = relationship(back_populates="actor", lazy="raise")


class ActorKey(Base):
    """A public key (and, for local actors, its private half encrypted at rest)."""

    __tablename__ = "actor_keys"
    __table_args__ = (CheckConstraint("kind IN ('rsa', 'ed25519')", name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), index=True)
    key_iri: Mapped[str] = mapped_column(IRI, unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    public_pem: Mapped[str] = mapped_column(Text)
    private_key_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    fetched_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    actor: Mapped[Actor] = relationship(back_populates="keys", lazy="raise")


class Account(Base):
    """Login credentials of a local member (a local ``Person`` actor)."""

    __tablename__ = "accounts"

    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_node_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Notifications up to this instant are read (``POST /api/notifications/read``).
    notifications_read_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    language: Mapped[str | None] = mapped_column(String(8))  # the web pages' language; None: the browser's
    # Left out of the member directories of the member's associations (decision 59); the default
    # is listed, to the association's own members only.
    directory_opt_out: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())


class Membership(Base):
    """An actor's role in an association.

    For a local association, the member may be local or remote (joined with ``Join``). A row
    whose group is remote records one of our members' own membership elsewhere. ``join_iri``
    is the ``Join`` that created it, matched by the ``Accept``/``Reject`` that answers it.
    """

    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("group_id", "member_id"),
        CheckConstraint(f"role IN {ROLES!r}", name="role"),
        CheckConstraint("state IN ('active', 'pending', 'invited')", name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="active")
    join_iri: Mapped[str | None] = mapped_column(IRI, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # A suspended member (decision 76): reads as a member, acts in nothing until lifted or until
    # ``suspended_until`` (None: until a moderator lifts it).
    suspended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    suspended_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    suspension_reason: Mapped[str | None] = mapped_column(Text)


class Invitation(Base):
    """A link that lets a local member join an association without waiting for approval
    (decision 58). Only the token's SHA-256 is stored; ``uses`` never passes ``max_uses``."""

    __tablename__ = "invitations"
    __table_args__ = (
        CheckConstraint("max_uses >= 1", name="max_uses"),
        CheckConstraint("uses >= 0 AND uses <= max_uses", name="uses"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    max_uses: Mapped[int] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Token(Base):
    """A bearer token of an account; only its SHA-256 is stored."""

    __tablename__ = "tokens"
    __table_args__ = (CheckConstraint("scope IN ('read', 'write', 'admin')", name="scope"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.actor_id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class WebSession(Base):
    """A browser's signed-in session. Only the cookie's hash is stored, so a database leak does not
    sign anyone in; rows outlive a restart and are revoked by setting ``revoked_at``."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.actor_id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Follow(Base):
    """``follower`` follows ``followed``; pending until accepted."""

    __tablename__ = "follows"
    __table_args__ = (
        UniqueConstraint("follower_id", "followed_id"),
        CheckConstraint("state IN ('pending', 'accepted', 'rejected')", name="state"),
        Index("ix_follows_followed_state", "followed_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    follower_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), index=True)
    followed_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"))
    follow_iri: Mapped[str | None] = mapped_column(IRI, unique=True)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Activity(Base):
    """An activity we published (our outbox) with its rendered JSON document."""

    __tablename__ = "activities"
    __table_args__ = (
        CheckConstraint(f"visibility IN {VISIBILITIES!r}", name="visibility"),
        Index("ix_activities_actor_outbox", "actor_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    iri: Mapped[str] = mapped_column(IRI, unique=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    object_iri: Mapped[str | None] = mapped_column(IRI, index=True)
    visibility: Mapped[str] = mapped_column(String(16))
    document: Mapped[dict[str, Any]] = mapped_column(JsonType)
    published: Mapped[datetime] = mapped_column(UtcDateTime)


class ActivityCount(Base):
    """Derived: how many ``activities`` rows each actor has per (type, visibility).

    Kept by database triggers (migration 0014) in the transaction that inserts, deletes or
    updates activities, whatever writes them, so an outbox's ``totalItems`` and NodeInfo's
    ``localPosts`` are a read of a few rows instead of a count of every activity (decision 46).
    Never written by the application; left out of backups' row copies (rebuilt by the triggers).
    """

    __tablename__ = "activity_counts"
    __table_args__ = {"info": {"derived": True}}

    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), primary_key=True)
    type: Mapped[str] = mapped_column(String(32), primary_key=True)
    visibility: Mapped[str] = mapped_column(String(16), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class FollowerInbox(Base):
    """Derived: how many accepted remote followers of ``followed`` each shared inbox serves.

    Kept by database triggers (migration 0022) on ``follows`` and on the ``actors`` columns that
    decide whether a follower counts (remote, not deleted, a non-empty shared inbox), so planning a
    shared-inbox fan-out reads one row per shared inbox instead of grouping every follower
    (decision 70). Rows whose count fell to 0 stay. Never written by the application; left out of
    backups' row copies (rebuilt by the triggers).
    """

    __tablename__ = "follower_inboxes"
    __table_args__ = {"info": {"derived": True}}

    followed_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), primary_key=True)
    shared_inbox_iri: Mapped[str] = mapped_column(IRI, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class FeedMark(Base):
    """Derived: a change marker per association and object kind, for the feeds' validators.

    Kept by database triggers (migration 0014) on ``objects`` rows a feed may list (local,
    public, not a reply, tombstones included): ``version`` moves on every insert, update or
    delete of such a row, ``changed_at`` is the newest ``coalesce(deleted_at, updated,
    published)`` seen (the time of the change when a row leaves the feed). A write a feed may
    not show never touches it, so the validators cannot reveal it (decision 47).
    """

    __tablename__ = "feed_marks"
    __table_args__ = {"info": {"derived": True}}

    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AuditEntry(Base):
    """Administrative and moderation actions (who did what, when, to what, through which channel).

    Written by the services only (``server/services/audit.py``). ``group_id`` is the association
    concerned (None for node-wide actions such as tokens); ``by_actor_id`` None means the node's
    operator (the command line without ``--by``); ``channel`` is web, cli, api or system.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id", ondelete="SET NULL"), index=True)
    by_actor_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id", ondelete="SET NULL"), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(16), default="system", server_default="unknown")
    target: Mapped[str | None] = mapped_column(IRI)
    detail: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class RemoteObject(Base):
    """A content object (Note, Article, Question, …), ours or a peer's.

    Deleted objects keep their row as a tombstone (``deleted_at``): fetches answer 410 and a
    replayed ``Create`` cannot resurrect them (security case 5).
    """

    __tablename__ = "objects"
    __table_args__ = (
        CheckConstraint(f"visibility IN {VISIBILITIES!r}", name="visibility"),
        CheckConstraint(f"kind IN {KINDS!r}", name="kind"),
        Index("ix_objects_attributed_published", "attributed_to_id", "id"),
        Index("ix_objects_attributed_kind", "attributed_to_id", "kind", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    iri: Mapped[str] = mapped_column(IRI, unique=True)
    local: Mapped[bool] = mapped_column(Boolean)
    type: Mapped[str] = mapped_column(String(32))
    attributed_to_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"))
    audience_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id", ondelete="SET NULL"), index=True)
    in_reply_to_iri: Mapped[str | None] = mapped_column(IRI, index=True)
    context_iri: Mapped[str | None] = mapped_column(IRI, index=True)
    visibility: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16), default="post", server_default="post")
    document: Mapped[dict[str, Any]] = mapped_column(JsonType)
    published: Mapped[datetime] = mapped_column(UtcDateTime)
    updated: Mapped[datetime | None] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class InboxActivity(Base):
    """A verified activity as received, stored before processing (the inbox's durable half).

    ``iri`` is unique: the database is the last line of idempotency (security case 5).
    """

    __tablename__ = "inbox_activities"
    __table_args__ = (CheckConstraint("state IN ('queued', 'processed', 'ignored', 'failed')", name="state"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    iri: Mapped[str] = mapped_column(IRI, unique=True)
    actor_iri: Mapped[str] = mapped_column(IRI, index=True)
    type: Mapped[str] = mapped_column(String(32))
    object_iri: Mapped[str | None] = mapped_column(IRI, index=True)
    signer_key_iri: Mapped[str] = mapped_column(IRI)
    document: Mapped[dict[str, Any]] = mapped_column(JsonType)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    error: Mapped[str | None] = mapped_column(String(1024))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class InboxItem(Base):
    """Which local actor's inbox an activity belongs to (read back through C2S ``GET {inbox}``).

    Filed when it arrives at a personal inbox, listed only once processing ``accepted`` it, and for
    every local actor it concerns whichever inbox it came through (security case 50).
    """

    __tablename__ = "inbox_items"
    __table_args__ = (
        UniqueConstraint("actor_id", "inbox_activity_id"),
        Index("ix_inbox_items_actor_id_id", "actor_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"))
    inbox_activity_id: Mapped[int] = mapped_column(ForeignKey("inbox_activities.id", ondelete="CASCADE"))
    accepted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())


class Job(Base):
    """A durable job (inbox processing, fan-out, delivery, backfill…), claimed by workers.

    ``dedup_key`` is unique while set: enqueuing the same work twice is a no-op (docs/architecture.md R9).
    Lower ``priority`` runs first (alerts jump the queue).
    """

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name="state"),
        Index("ix_jobs_claim", "state", "priority", "run_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonType)
    dedup_key: Mapped[str | None] = mapped_column(String(512), unique=True)
    priority: Mapped[int] = mapped_column(Integer, default=10)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=16)
    run_at: Mapped[datetime] = mapped_column(UtcDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    locked_by: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Delivery(Base):
    """One activity to one inbox (shared inboxes collapse recipients). Unique per (activity, inbox)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("activity_id", "inbox_iri"),
        CheckConstraint("state IN ('pending', 'delivered', 'failed', 'gone', 'rejected')", name="state"),
        Index("ix_deliveries_host_state", "host", "state"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("activities.id", ondelete="CASCADE"), index=True)
    inbox_iri: Mapped[str] = mapped_column(IRI)
    host: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class PeerHost(Base):
    """Per-host delivery health: circuit breaker, failing days, the signature spec that worked.

    Rows exist only for hosts we deliver to (accepted followers), never for hosts that merely
    sent us something, so an attacker cannot grow this table (security case 33).
    """

    __tablename__ = "peer_hosts"
    __table_args__ = (CheckConstraint("breaker IN ('closed', 'open', 'half_open')", name="breaker"),)

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    breaker: Mapped[str] = mapped_column(String(16), default="closed")
    recent_failures: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    open_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    failing_days: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_day: Mapped[str | None] = mapped_column(String(10))
    unavailable: Mapped[bool] = mapped_column(Boolean, default=False)
    signature_spec: Mapped[str | None] = mapped_column(String(16))
    last_success_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Reaction(Base):
    """A Like or Announce of an object, received from a peer or made by one of our actors (C2S
    ``Like``); one per actor and object (undone by ``Undo``)."""

    __tablename__ = "reactions"
    __table_args__ = (
        CheckConstraint("type IN ('Like', 'Announce')", name="type"),
        Index(
            "uq_reactions_like_actor_object",
            "actor_id",
            "object_iri",
            unique=True,
            sqlite_where=text("type = 'Like'"),
            postgresql_where=text("type = 'Like'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    activity_iri: Mapped[str] = mapped_column(IRI, unique=True)
    type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), index=True)
    object_iri: Mapped[str] = mapped_column(IRI, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Relay(Base):
    """An object relayed (``Announce``) by an actor: a peer association's relay received from an
    actor our people follow or joined, or one of our own actors' relays (issue 13).

    ``object_iri`` is the relayed *object*, also when the ``Announce`` wrapped the activity that
    created it (FEP-1b12 ``Announce{Create}``): timelines show it by relay time, and the C2S inbox
    embeds it. Removed by the relayer's ``Undo``.
    """

    __tablename__ = "relays"
    __table_args__ = (Index("ix_relays_relayer_relayed", "relayer_id", "relayed_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    announce_iri: Mapped[str] = mapped_column(IRI, unique=True)
    relayer_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"))
    object_iri: Mapped[str] = mapped_column(IRI, index=True)
    relayed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Block(Base):
    """A remote actor told us it blocks one of our actors (we stop delivering to it)."""

    __tablename__ = "blocks"
    __table_args__ = (UniqueConstraint("blocker_id", "blocked_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    activity_iri: Mapped[str] = mapped_column(IRI, unique=True)
    blocker_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), index=True)
    blocked_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Report(Base):
    """A report for moderators: a ``Flag`` received, or filed here by one of our members (``local``).

    ``group_id`` is the association concerned (its admins and moderators see the report; node
    admins see every report); None when no association of ours is concerned. The resolution
    (``resolved_by_id``, ``resolution``, ``action``, ``resolved_at``) is set once, by the moderator
    who closed it (``server/services/moderation/reports.py``). ``forwarded_iri`` is the ``Flag`` our
    node sent to the content's origin, which never names the reporter.
    """

    __tablename__ = "reports"
    __table_args__ = (
        CheckConstraint("state IN ('open', 'resolved', 'dismissed')", name="state"),
        Index("ix_reports_reporter_created", "reporter_id", "created_at"),  # per-actor limit
        Index("ix_reports_group_state", "group_id", "state", "id"),  # an association's queue
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    activity_iri: Mapped[str] = mapped_column(IRI, unique=True)
    reporter_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"))
    target_iris: Mapped[list[str]] = mapped_column(JsonType)
    content: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    local: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    group_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id", ondelete="SET NULL"))
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id", ondelete="SET NULL"))
    resolution: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str | None] = mapped_column(String(32))
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    forwarded_iri: Mapped[str | None] = mapped_column(IRI)


class SyncState(Base):
    """Backfill and catch-up cursor of a remote actor we follow (its outbox)."""

    __tablename__ = "sync_states"

    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), primary_key=True)
    newest_seen_iri: Mapped[str | None] = mapped_column(IRI)
    backfilled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_synced_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(String(1024))
    items_fetched: Mapped[int] = mapped_column(Integer, default=0)


class Vote(Base):
    """One voter's choice on a poll or proposal we host (``Create{Note{name, inReplyTo}}``).

    One row per voter and chosen option, as Mastodon sends one ``Note`` per option of a
    multiple-choice poll. A second vote on a single-choice question is refused by the
    service; the unique key is the last line against counting a choice twice.
    """

    __tablename__ = "votes"
    __table_args__ = (UniqueConstraint("question_id", "voter_id", "choice"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("objects.id", ondelete="CASCADE"), index=True)
    voter_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"))
    choice: Mapped[str] = mapped_column(String(500))
    activity_iri: Mapped[str] = mapped_column(IRI, unique=True)
    note_iri: Mapped[str | None] = mapped_column(IRI)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Endorsement(Base):
    """An association's co-signature of a proposal, kept with its integrity proof (FEP-8b32).

    Held by the proposal's node (``proposal_id`` set) and by the endorser's node.
    """

    __tablename__ = "endorsements"
    __table_args__ = (UniqueConstraint("proposal_iri", "endorser_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    iri: Mapped[str] = mapped_column(IRI, unique=True)
    proposal_iri: Mapped[str] = mapped_column(IRI, index=True)
    proposal_id: Mapped[int | None] = mapped_column(ForeignKey("objects.id", ondelete="CASCADE"))
    endorser_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"))
    document: Mapped[dict[str, Any]] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Media(Base):
    """An uploaded file (resource attachment), stored on disk under the data dir by ``key``.

    ``content_type`` is what the bytes are (sniffed), never what the uploader claimed.
    """

    __tablename__ = "media"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), index=True)
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id", ondelete="SET NULL"))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(String(1500), default="")
    object_id: Mapped[int | None] = mapped_column(ForeignKey("objects.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The member whose avatar this is (at most one per actor); the unused-uploads cleanup keeps it.
    avatar_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("actors.id", ondelete="SET NULL"), unique=True
    )


class Draft(Base):
    """A member's proposed publication for an association, waiting for its admins or moderators.

    A draft is not content: it is never an ``objects`` row, so no read path, feed, outbox or
    delivery can show it. Publishing it calls the content service as the association; the object
    it became is ``object_iri`` (decision 65).
    """

    __tablename__ = "drafts"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'published', 'refused')", name="state"),
        CheckConstraint("kind IN ('alert', 'resource', 'proposal')", name="kind"),
        Index("ix_drafts_group_state", "group_id", "state"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"))
    author_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    fields: Mapped[dict[str, Any]] = mapped_column(JsonType)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id", ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(Text, default="")
    object_iri: Mapped[str | None] = mapped_column(IRI)


class NodePolicy(Base):
    """The node's federation settings, one row (``id`` 1), seeded from the configuration file.

    ``version`` grows with every change of the policy or of the blocks below: each process
    compares it with the snapshot it holds and reloads when it moved (docs/decisions.md 62).
    """

    __tablename__ = "node_policy"
    __table_args__ = (
        CheckConstraint("federation_mode IN ('open', 'allowlist')", name="federation_mode"),
        CheckConstraint("association_creators IN ('admins', 'members')", name="association_creators"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    federation_mode: Mapped[str] = mapped_column(String(16), default="open")
    allowed_domains: Mapped[list[str]] = mapped_column(JsonType, default=list)
    association_creators: Mapped[str] = mapped_column(String(16), default="admins")
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class DomainBlock(Base):
    """A domain the node refuses (``suspend``) or keeps off public listings (``silence``).

    ``source`` says where it came from: ``config`` (the configuration file), ``manual``, or
    ``import:<list>`` (a file or a subscribed URL; a refresh only removes its own entries).
    """

    __tablename__ = "domain_blocks"
    __table_args__ = (CheckConstraint("severity IN ('suspend', 'silence')", name="severity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(String(255), unique=True)
    severity: Mapped[str] = mapped_column(String(16), default="suspend")
    reject_media: Mapped[bool] = mapped_column(Boolean, default=False)
    reject_reports: Mapped[bool] = mapped_column(Boolean, default=False)
    public_comment: Mapped[str] = mapped_column(Text, default="")
    private_comment: Mapped[str] = mapped_column(Text, default="")
    obfuscate: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(2048), default="manual")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ActorBlock(Base):
    """A remote actor blocked by the whole node (``scope`` ``node``) or by one association
    (``scope`` ``group:<id>``, ``group_id`` set)."""

    __tablename__ = "actor_blocks"
    __table_args__ = (UniqueConstraint("scope", "actor_iri"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(64))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), index=True)
    actor_iri: Mapped[str] = mapped_column(IRI, index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class BlockListSubscription(Base):
    """A shared list fetched on a schedule: domain blocks (Mastodon's CSV) or an allowlist."""

    __tablename__ = "block_list_subscriptions"
    __table_args__ = (CheckConstraint("kind IN ('blocks', 'allowlist')", name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(IRI, unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="blocks")
    refresh_interval_s: Mapped[int] = mapped_column(Integer, default=86400)
    last_fetched_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    etag: Mapped[str | None] = mapped_column(String(1024))
    last_error: Mapped[str | None] = mapped_column(String(1024))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


JOIN_MODES = ("free", "restricted", "invite")
EVENT_STATUSES = ("tentative", "confirmed", "cancelled")
PARTICIPANT_STATES = ("pending", "accepted", "rejected")


class Event(Base):
    """The calendar facts of an ``Event`` object, ours or a peer's (Mobilizon's wire form,
    docs/federation.md "Events"); the object row keeps the document and its visibility.

    Times are stored in UTC with the IANA time zone they were given in (``timezone``), so the ICS
    export writes local times with a ``VTIMEZONE``. ``sequence`` is the iCalendar ``SEQUENCE``:
    raised on every change we publish or receive, so calendar apps replace their copy.
    """

    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint(f"join_mode IN {JOIN_MODES!r}", name="join_mode"),
        CheckConstraint(f"status IN {EVENT_STATUSES!r}", name="status"),
        CheckConstraint("capacity IS NULL OR capacity >= 0", name="capacity"),
        Index("ix_events_start_at", "start_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    object_id: Mapped[int] = mapped_column(ForeignKey("objects.id", ondelete="CASCADE"), unique=True)
    start_at: Mapped[datetime] = mapped_column(UtcDateTime)
    end_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    location_name: Mapped[str | None] = mapped_column(String(500))
    street: Mapped[str | None] = mapped_column(String(500))
    locality: Mapped[str | None] = mapped_column(String(200))
    postal_code: Mapped[str | None] = mapped_column(String(32))
    region: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(100))
    online_url: Mapped[str | None] = mapped_column(IRI)
    join_mode: Mapped[str] = mapped_column(String(16), default="free")
    capacity: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="confirmed")
    sequence: Mapped[int] = mapped_column(Integer, default=0)


class EventParticipant(Base):
    """Someone taking part in an event: a ``Join`` received (or sent by one of ours), and the
    organiser's answer. One row per event and actor; ``join_iri`` matches the answer."""

    __tablename__ = "event_participants"
    __table_args__ = (
        UniqueConstraint("event_id", "actor_id"),
        CheckConstraint(f"state IN {PARTICIPANT_STATES!r}", name="state"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("actors.id", ondelete="CASCADE"), index=True)
    actor_iri: Mapped[str] = mapped_column(IRI)
    join_iri: Mapped[str] = mapped_column(IRI, unique=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    message: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
