"""Tables. One ``actors`` table holds local and remote actors alike (``local`` tells them apart),
so follows, memberships and keys reference actors uniformly.

Relationships are ``lazy="raise"``: load what you need explicitly (STYLE R8).
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
)
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


class Base(AsyncAttrs, DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Actor(Base):
    """A local or remote ActivityPub actor (the node, an association, a member, a peer)."""

    __tablename__ = "actors"
    __table_args__ = (
        UniqueConstraint("host", "type", "handle"),
        CheckConstraint(f"type IN {ACTOR_TYPES!r}", name="type"),
        CheckConstraint("members_visibility IN ('public', 'members', 'hidden')", name="members_visibility"),
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
    document: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    fetched_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

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


class Membership(Base):
    """An actor's role in a local association (``group_id`` is always a local Group)."""

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
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


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


class AuditEntry(Base):
    """Administrative actions on associations (who did what, when)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id", ondelete="SET NULL"), index=True)
    by_actor_id: Mapped[int | None] = mapped_column(ForeignKey("actors.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
