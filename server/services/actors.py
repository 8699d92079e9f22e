"""Creating the node's actors: the Application actor, associations, members and their tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from federation.uris import UriScheme, is_valid_handle
from server.db.models import ROLES, Account, Actor, AuditEntry, Membership, Token
from server.db.queries import actors as q
from server.services.errors import Conflict, InvalidInput, NotFound, Unauthorized
from server.services.keys import KeyVault, add_actor_keys

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
) -> Created:
    """Create an association (a ``Group``). Creating it again with the same name is a no-op.

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
    actor = _new_local_actor(uris, "Group", handle, name, summary, now)
    session.add(actor)
    await session.flush()
    await add_actor_keys(session, actor, vault, now=now)
    session.add(
        AuditEntry(group_id=actor.id, action="association.create", detail={"handle": handle}, created_at=now)
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
        session.add(
            AuditEntry(
                group_id=group.id,
                action="association.configure",
                detail={"before": before, "after": dict(changes)},
                created_at=now,
            )
        )
    return group


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
        session.add(
            AuditEntry(
                group_id=group.id,
                action="member.add",
                detail={"member": person.iri, "role": role},
                created_at=now,
            )
        )
    elif membership.role != role or membership.state != "active":
        session.add(
            AuditEntry(
                group_id=group.id,
                action="member.role",
                detail={"member": person.iri, "from": membership.role, "to": role},
                created_at=now,
            )
        )
        membership.role, membership.state, membership.updated_at = role, "active", now
        changed = True
    await session.flush()
    return MemberAdded(person, created, changed, generated)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(
    session: AsyncSession, *, username: str, scope: str, label: str = "", now: datetime
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
    session.add(
        Token(
            account_id=account.actor_id,
            token_hash=_token_hash(token),
            scope=scope,
            label=label,
            created_at=now,
        )
    )
    await session.flush()
    return token


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
