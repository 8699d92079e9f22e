"""Creating the node's actors: the Application actor, associations, members and their tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.types import AS_PUBLIC, Iri
from federation.uris import UriScheme, is_valid_handle
from federation.vocab.actors import render_actor
from server.db.models import ROLES, Account, Actor, Membership, Token
from server.db.queries import actors as q
from server.services import audit
from server.services.actors.keys import KeyVault, add_actor_keys
from server.services.actors.profiles import local_actor_value
from server.services.delivery.outbox import new_activity_iri, publish
from server.services.errors import Conflict, InvalidInput, NotFound, Unauthorized
from server.services.membership.standing import check_acting

APPLICATION_HANDLE = "entraide.node"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
TOKEN_SCOPES = ("read", "write", "admin")
MAX_NAME = 255
MAX_SUMMARY = 20_000


def _new_local_actor(
    uris: UriScheme, actor_type: str, handle: str, name: str, summary: str, now: datetime
) -> Actor:
    if actor_type == "Application":
        iri = uris.application_actor()
    else:
        iri = uris.actor("group" if actor_type == "Group" else "person", handle)
    return Actor(
        iri=iri,
        local=True,
        type=actor_type,
        handle=handle,
        host=uris.host,
        name=name,
        summary=summary,
        inbox_iri=uris.inbox(iri) if actor_type != "Application" else uris.shared_inbox(),
        shared_inbox_iri=uris.shared_inbox(),
        outbox_iri=uris.outbox(iri),
        followers_iri=uris.followers(iri),
        following_iri=uris.following(iri),
        url=iri,
        manually_approves_followers=actor_type == "Application",
        # A member's account is not listed in directories nor full-text indexed unless they opt in
        # (``member set --discoverable yes``); an association is there to be found (case 59).
        discoverable=actor_type == "Group",
        # Membership of a patient association reveals health information: members-only by default.
        members_visibility="members",
        created_at=now,
        updated_at=now,
    )


async def ensure_application_actor(
    session: AsyncSession, uris: UriScheme, vault: KeyVault, *, node_name: str, now: datetime
) -> tuple[Actor, bool]:
    """Create the node's ``Application`` actor unless it exists; returns (actor, created)."""
    existing = await q.application_actor(session)
    if existing is not None:
        return existing, False
    actor = _new_local_actor(uris, "Application", APPLICATION_HANDLE, node_name, "", now)
    session.add(actor)
    await session.flush()
    await add_actor_keys(session, actor, vault, now=now)
    return actor, True


def _check_handle(handle: str, what: str) -> None:
    if not is_valid_handle(handle):
        raise InvalidInput(
            f"{what} {handle!r} must be 1-63 characters: lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit",
            field=what,
        )


def _check_text(value: str, field: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidInput(f"{field} is longer than {limit} characters", field=field)


@dataclass(frozen=True, slots=True)
class Created:
    actor: Actor
    created: bool


async def create_association(
    session: AsyncSession,
    uris: UriScheme,
    vault: KeyVault,
    *,
    handle: str,
    name: str,
    summary: str = "",
    now: datetime,
    by: Actor | None = None,
) -> Created:
    """Create an association (a ``Group``). Creating it again with the same name is a no-op.
    ``by``: the member who created it (None: the operator at the command line).

    Raises:
        InvalidInput: bad handle, name or summary.
        Conflict: the handle is taken by an association with another name.
    """
    _check_handle(handle, "slug")
    if not name.strip():
        raise InvalidInput("name must not be empty", field="name")
    _check_text(name, "name", MAX_NAME)
    _check_text(summary, "summary", MAX_SUMMARY)
    existing = await q.local_by_handle(session, "Group", handle)
    if existing is not None:
        if existing.name == name and (not summary or existing.summary == summary):
            return Created(existing, False)
        raise Conflict(f"association {handle!r} already exists with another name", field="slug")
    if await q.local_tombstone(session, "Group", handle) is not None:
        # A deleted association's handle is never given again (decision 97): peers knew it.
        raise Conflict(f"{handle!r} was a deleted association's handle; choose another", field="slug")
    actor = _new_local_actor(uris, "Group", handle, name, summary, now)
    session.add(actor)
    await session.flush()
    await add_actor_keys(session, actor, vault, now=now)
    audit.record(
        session,
        "association.create",
        now=now,
        group=actor,
        by=by,
        target=actor.iri,
        detail={"handle": handle},
    )
    return Created(actor, True)


ASSOCIATION_SETTINGS: dict[str, tuple[str, ...]] = {
    "join_policy": ("open", "approval", "closed"),
    "replies_policy": ("anyone", "members"),
    "members_visibility": ("public", "members", "hidden"),
}
"""What an association chooses, and the values each setting takes."""


async def configure_association(
    session: AsyncSession, *, handle: str, changes: dict[str, str], now: datetime
) -> Actor:
    """Change an association's settings (:data:`ASSOCIATION_SETTINGS`); audited as the operator's.

    Raises:
        NotFound: no such association.
        InvalidInput: an unknown setting or value (named in ``field``).
    """
    group = await q.local_by_handle(session, "Group", handle)
    if group is None:
        raise NotFound(f"no association {handle!r} on this node")
    for name, value in changes.items():
        allowed = ASSOCIATION_SETTINGS.get(name)
        if allowed is None:
            raise InvalidInput(f"{name} is not a setting of an association", field=name)
        if value not in allowed:
            raise InvalidInput(f"{name} must be one of: {', '.join(allowed)}", field=name)
    before = {name: getattr(group, name) for name in changes}
    for name, value in changes.items():
        setattr(group, name, value)
    group.updated_at = now
    if changes:
        audit.record(
            session,
            "association.configure",
            now=now,
            group=group,
            target=group.iri,
            detail={"before": before, "after": dict(changes)},
        )
    return group


PROFILE_FIELDS = ("name", "summary", "language")
"""What ``edit_association`` changes besides :data:`ASSOCIATION_SETTINGS`."""


def _check_language(value: str) -> str | None:
    if value == "":
        return None  # no default language
    parts = value.split("-")
    if (
        len(value) > 35
        or not 2 <= len(parts[0]) <= 3
        or not parts[0].isalpha()
        or not all(p.isalnum() and 1 <= len(p) <= 8 for p in parts)
    ):
        raise InvalidInput(
            "language must be a BCP 47 tag such as fr or fr-BE (empty: none)", field="language"
        )
    return value


@dataclass(frozen=True, slots=True)
class AssociationEdited:
    group: Actor
    changed: dict[str, tuple[Any, Any]]  # name -> (before, after)
    update_iri: str | None  # the Update{Group} sent to followers, when the profile changed


async def edit_association(
    session: AsyncSession,
    uris: UriScheme,
    *,
    handle: str,
    changes: dict[str, str],
    by: Actor | None = None,
    now: datetime,
) -> AssociationEdited:
    """Change an association's profile (name, summary, default language) and settings (join
    policy, replies, members list). A changed name or summary is announced to the association's
    followers with ``Update{Group}`` (queued in the same transaction). Audited as
    ``association.configure`` with the values before and after; nothing changes on a refused value.

    ``by`` is the admin who does it (None: the node's operator, from the command line); the
    caller checks that ``by`` administers the association.

    Raises:
        NotFound: no such association. InvalidInput: an unknown field or a bad value.
        Suspended: ``by`` is suspended in the association.
    """
    group = await q.local_by_handle(session, "Group", handle)
    if group is None or group.deleted_at is not None:
        raise NotFound(f"no association {handle!r} on this node", field="slug")
    if by is not None:
        await check_acting(session, group, [by], now=now)  # a suspended admin changes nothing
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        if not isinstance(value, str):
            raise InvalidInput(f"{name} must be a string", field=name)
        if name in ASSOCIATION_SETTINGS:
            if value not in ASSOCIATION_SETTINGS[name]:
                raise InvalidInput(
                    f"{name} must be one of: {', '.join(ASSOCIATION_SETTINGS[name])}", field=name
                )
            clean[name] = value
        elif name == "name":
            if not value.strip():
                raise InvalidInput("name must not be empty", field="name")
            _check_text(value, "name", MAX_NAME)
            clean[name] = value.strip()
        elif name == "summary":
            _check_text(value, "summary", MAX_SUMMARY)
            clean[name] = value.strip()
        elif name == "language":
            clean[name] = _check_language(value)
        else:
            raise InvalidInput(f"{name} is not a setting of an association", field=name)
    changed = {
        name: (getattr(group, name), value) for name, value in clean.items() if getattr(group, name) != value
    }
    for name, (_, value) in changed.items():
        setattr(group, name, value)
    update_iri: str | None = None
    if changed:
        group.updated_at = now
        await session.flush()
        if {"name", "summary"} & changed.keys():
            update_iri = await _announce_profile(session, uris, group, now=now)
        audit.record(
            session,
            "association.configure",
            now=now,
            group=group,
            by=by,
            target=group.iri,
            detail={
                "before": {k: v[0] for k, v in changed.items()},
                "after": {k: v[1] for k, v in changed.items()},
                **({"update": update_iri} if update_iri else {}),
            },
        )
    return AssociationEdited(group, changed, update_iri)


async def _announce_profile(session: AsyncSession, uris: UriScheme, actor: Actor, *, now: datetime) -> str:
    """Queue ``Update{actor}`` to the actor's followers: peers refresh their copy of the profile."""
    document = render_actor(await local_actor_value(session, uris, actor))
    document = {k: v for k, v in document.items() if k != "@context"}
    activity = {
        "id": new_activity_iri(uris),
        "type": "Update",
        "object": document,
        "to": [AS_PUBLIC],
        "cc": [actor.followers_iri or uris.followers(Iri(actor.iri))],
    }
    row = await publish(session, actor, activity, visibility="public", now=now)
    return row.iri


async def list_associations(session: AsyncSession) -> list[tuple[Actor, int, int]]:
    """The node's associations with their active members and pending requests, by handle."""
    active = (
        select(func.count())
        .where(Membership.group_id == Actor.id, Membership.state == "active")
        .correlate(Actor)
        .scalar_subquery()
    )
    pending = (
        select(func.count())
        .where(Membership.group_id == Actor.id, Membership.state == "pending")
        .correlate(Actor)
        .scalar_subquery()
    )
    rows = await session.execute(
        select(Actor, active, pending)
        .where(Actor.local.is_(True), Actor.type == "Group", Actor.deleted_at.is_(None))
        .order_by(Actor.handle)
    )
    return [(actor, int(a), int(p)) for actor, a, p in rows.all()]


async def configure_account(
    session: AsyncSession, *, username: str, discoverable: bool | None, now: datetime
) -> Actor:
    """A member's own choice to appear in directories and search (``discoverable`` and
    ``indexable``); ``None`` changes nothing. Returns the account.

    Raises:
        NotFound: no such local account.
    """
    person = await q.local_by_handle(session, "Person", username)
    if person is None:
        raise NotFound(f"no account {username!r} on this node")
    if discoverable is not None:
        person.discoverable = discoverable
        person.updated_at = now
    return person


def hash_password(password: str) -> str:
    """scrypt (stdlib) with a random salt, encoded as ``scrypt$n$r$p$salt$hash``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
    )
    return hmac.compare_digest(candidate.hex(), digest)


@dataclass(frozen=True, slots=True)
class MemberAdded:
    person: Actor
    person_created: bool
    role_changed: bool
    password: str | None  # set only when generated for a new account


async def add_member(
    session: AsyncSession,
    uris: UriScheme,
    vault: KeyVault,
    *,
    username: str,
    association: str,
    role: str,
    password: str | None,
    now: datetime,
) -> MemberAdded:
    """Create the member's account if needed and give it ``role`` in ``association``.

    Running it again with the same role changes nothing; with another role it changes the role
    (audited). A password is generated (and returned once) when a new account gets none.

    Raises:
        InvalidInput: bad username, role or password. NotFound: unknown association.
    """
    _check_handle(username, "username")
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", field="role")
    if password is not None and len(password) < 8:
        raise InvalidInput("password must have at least 8 characters", field="password")
    group = await q.local_by_handle(session, "Group", association)
    if group is None:
        raise NotFound(f"association {association!r} does not exist", field="association")
    person = await q.local_by_handle(session, "Person", username)
    if person is None and await q.local_tombstone(session, "Person", username) is not None:
        # A deleted account's username is never given again: its IRI stays a tombstone, so
        # nobody can pass for the person who left (decision 40).
        raise Conflict(f"username {username!r} belonged to a deleted account", field="username")
    created = person is None
    generated: str | None = None
    if person is None:
        person = _new_local_actor(uris, "Person", username, username, "", now)
        session.add(person)
        await session.flush()
        await add_actor_keys(session, person, vault, now=now)
        if password is None:
            generated = password = secrets.token_urlsafe(12)
        session.add(Account(actor_id=person.id, password_hash=hash_password(password), created_at=now))
    membership = await q.membership(session, group.id, person.id)
    changed = False
    if membership is None:
        session.add(
            Membership(
                group_id=group.id,
                member_id=person.id,
                role=role,
                state="active",
                created_at=now,
                updated_at=now,
            )
        )
        changed = True
        audit.record(
            session,
            "member.add",
            now=now,
            group=group,
            target=person.iri,
            detail={"member": person.iri, "role": role},
        )
    elif membership.role != role or membership.state != "active":
        audit.record(
            session,
            "member.role",
            now=now,
            group=group,
            target=person.iri,
            detail={"member": person.iri, "from": membership.role, "to": role},
        )
        membership.role, membership.state, membership.updated_at = role, "active", now
        changed = True
    await session.flush()
    return MemberAdded(person, created, changed, generated)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(
    session: AsyncSession,
    *,
    username: str,
    scope: str,
    label: str = "",
    by: Actor | None = None,
    now: datetime,
) -> str:
    """Issue a bearer token for a local account; only its hash is stored. Returns the token.

    Raises:
        InvalidInput: unknown scope. NotFound: no such account.
    """
    if scope not in TOKEN_SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(TOKEN_SCOPES)}", field="scope")
    person = await q.local_by_handle(session, "Person", username)
    account = await q.account_of(session, person.id) if person else None
    if account is None:
        raise NotFound(f"no local account {username!r}", field="username")
    token = "ent_" + secrets.token_urlsafe(32)
    row = Token(
        account_id=account.actor_id,
        token_hash=_token_hash(token),
        scope=scope,
        label=label,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    assert person is not None
    audit.record(
        session,
        "token.create",
        now=now,
        by=by,
        target=person.iri,
        detail={"token": row.id, "scope": scope, "label": label},
    )
    return token


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What is shown of a token: never its secret (only its hash is stored anyway)."""

    id: int
    scope: str
    label: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


async def _account(session: AsyncSession, username: str) -> Actor:
    person = await q.local_by_handle(session, "Person", username) if is_valid_handle(username) else None
    account = await q.account_of(session, person.id) if person else None
    if person is None or account is None:
        raise NotFound(f"no local account {username!r}", field="username")
    return person


async def list_tokens(session: AsyncSession, *, username: str, revoked: bool = False) -> list[TokenInfo]:
    """An account's tokens, oldest first; revoked ones only with ``revoked``."""
    person = await _account(session, username)
    query = select(Token).where(Token.account_id == person.id)
    if not revoked:
        query = query.where(Token.revoked_at.is_(None))
    rows = (await session.scalars(query.order_by(Token.id))).all()
    return [TokenInfo(t.id, t.scope, t.label, t.created_at, t.last_used_at, t.revoked_at) for t in rows]


async def revoke_token(
    session: AsyncSession, *, username: str, token_id: int, by: Actor | None = None, now: datetime
) -> TokenInfo:
    """Revoke one of an account's tokens (by the id ``list_tokens`` shows); audited. Revoking a
    revoked token changes nothing.

    Raises:
        NotFound: no such account, or no such token of this account.
    """
    person = await _account(session, username)
    row = await session.scalar(select(Token).where(Token.id == token_id, Token.account_id == person.id))
    if row is None:
        raise NotFound(f"{username} has no token {token_id}", field="token")
    if row.revoked_at is None:
        row.revoked_at = now
        audit.record(
            session,
            "token.revoke",
            now=now,
            by=by,
            target=person.iri,
            detail={"token": row.id, "scope": row.scope, "label": row.label},
        )
    return TokenInfo(row.id, row.scope, row.label, row.created_at, row.last_used_at, row.revoked_at)


async def set_node_admin(session: AsyncSession, *, username: str, node_admin: bool, now: datetime) -> bool:
    """Make an account a node admin (reads the node's audit log through the API) or not; audited.
    Returns whether it changed."""
    person = await _account(session, username)
    account = await q.account_of(session, person.id)
    assert account is not None
    if account.is_node_admin == node_admin:
        return False
    account.is_node_admin = node_admin
    audit.record(session, "account.node_admin", now=now, target=person.iri, detail={"node_admin": node_admin})
    return True


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A request authenticated by a bearer token."""

    actor: Actor
    scope: str


async def authenticate_token(session: AsyncSession, token: str, *, now: datetime) -> Authenticated:
    """Resolve a bearer token to its account's actor.

    Raises:
        Unauthorized: unknown, revoked token or disabled account.
    """
    stmt = (
        select(Token, Actor, Account)
        .join(Account, Account.actor_id == Token.account_id)
        .join(Actor, Actor.id == Account.actor_id)
        .where(Token.token_hash == _token_hash(token))
    )
    row = (await session.execute(stmt)).first()
    if row is None or row[0].revoked_at is not None or row[2].disabled_at is not None:
        raise Unauthorized("invalid or revoked token")
    row[0].last_used_at = now
    return Authenticated(row[1], row[0].scope)
