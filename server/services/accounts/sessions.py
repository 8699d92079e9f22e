"""Browser sessions: sign in with a password, look a cookie up, revoke, change the password.

The cookie is a random token; only its SHA-256 is stored (``web_sessions.token_hash``), so a copy
of the database signs nobody in. Rows survive a restart and end by ``revoked_at`` or
``expires_at``. A sign-in always creates a new row with a new token, so a token planted in a
browser before sign-in (session fixation) never becomes a signed-in session.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import Account, Actor, Membership, Token, WebSession
from server.db.queries import actors as q
from server.services.actors.local import TOKEN_SCOPES, create_token, hash_password, verify_password
from server.services.errors import InvalidInput, NotFound, Unauthorized

SESSION_LIFETIME: Final = timedelta(days=30)
LANGUAGES: Final = ("fr", "en")
MIN_PASSWORD: Final = 8
MAX_PASSWORD: Final = 1024
# Verified against when the account does not exist, so that a failure takes as long either way.
_DUMMY_HASH: Final = hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The account behind a valid session cookie."""

    session: WebSession
    actor: Actor
    account: Account


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def sign_in(
    session: AsyncSession, *, username: str, password: str, user_agent: str, now: datetime
) -> tuple[str, WebSession]:
    """Check the password and open a new session; returns ``(cookie token, row)``.

    Raises:
        Unauthorized: the same one for an unknown user, a wrong password or a disabled account.
    """
    person = await q.local_by_handle(session, "Person", username) if username.isascii() else None
    account = await q.account_of(session, person.id) if person is not None else None
    if len(password) > MAX_PASSWORD:
        password = password[:MAX_PASSWORD]  # scrypt cost bounded; such a password never matched anyway
    ok = verify_password(password, account.password_hash if account is not None else _DUMMY_HASH)
    if account is None or not ok or account.disabled_at is not None:
        raise Unauthorized("unknown username or wrong password")
    token = secrets.token_urlsafe(32)
    row = WebSession(
        account_id=account.actor_id,
        token_hash=_hash(token),
        csrf_token=secrets.token_urlsafe(32),
        user_agent=user_agent[:255],
        created_at=now,
        last_seen_at=now,
        expires_at=now + SESSION_LIFETIME,
    )
    session.add(row)
    await session.flush()
    return token, row


async def lookup(session: AsyncSession, token: str, *, now: datetime) -> SignedIn | None:
    """The live session behind a cookie token, or None (unknown, revoked, expired, disabled)."""
    if not token or len(token) > 128:
        return None
    stmt = (
        select(WebSession, Actor, Account)
        .join(Account, Account.actor_id == WebSession.account_id)
        .join(Actor, Actor.id == Account.actor_id)
        .where(WebSession.token_hash == _hash(token))
    )
    row = (await session.execute(stmt)).first()
    if row is None:
        return None
    web_session, actor, account = row
    if web_session.revoked_at is not None or web_session.expires_at <= now or account.disabled_at is not None:
        return None
    if actor.deleted_at is not None:
        return None
    if now - web_session.last_seen_at > timedelta(minutes=5):  # bounded writes: one per 5 minutes
        web_session.last_seen_at = now
    return SignedIn(web_session, actor, account)


async def sign_out(session: AsyncSession, session_id: int, *, now: datetime) -> None:
    await session.execute(
        update(WebSession)
        .where(WebSession.id == session_id, WebSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def sessions_of(session: AsyncSession, account_id: int, *, now: datetime) -> list[WebSession]:
    """The account's live sessions, newest first."""
    stmt = (
        select(WebSession)
        .where(
            WebSession.account_id == account_id,
            WebSession.revoked_at.is_(None),
            WebSession.expires_at > now,
        )
        .order_by(WebSession.id.desc())
    )
    return list((await session.execute(stmt)).scalars())


async def revoke_session(session: AsyncSession, account_id: int, session_id: int, *, now: datetime) -> None:
    """Revoke one of the account's own sessions.

    Raises:
        NotFound: no such live session of this account (another account's looks the same).
    """
    result = await session.execute(
        update(WebSession)
        .where(
            WebSession.id == session_id,
            WebSession.account_id == account_id,
            WebSession.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound("no such session", field="session")


async def revoke_all(
    session: AsyncSession, account_id: int, *, now: datetime, keep: int | None = None
) -> None:
    """Revoke every session of the account but ``keep`` (the one making the request, if any)."""
    stmt = update(WebSession).where(WebSession.account_id == account_id, WebSession.revoked_at.is_(None))
    if keep is not None:
        stmt = stmt.where(WebSession.id != keep)
    await session.execute(stmt.values(revoked_at=now))


def check_new_password(new: str, confirm: str) -> None:
    """Raises InvalidInput (``field`` names the input to show it next to) for a weak or mistyped one."""
    if len(new) < MIN_PASSWORD:
        raise InvalidInput(f"at least {MIN_PASSWORD} characters", field="new_password")
    if len(new) > MAX_PASSWORD:
        raise InvalidInput(f"at most {MAX_PASSWORD} characters", field="new_password")
    if new != confirm:
        raise InvalidInput("the two passwords differ", field="confirm")


async def change_password(
    session: AsyncSession, signed_in: SignedIn, *, current: str, new: str, confirm: str, now: datetime
) -> None:
    """Change the password; every other session of the account is signed out.

    Raises:
        InvalidInput: wrong current password (``field="current_password"``), weak or mistyped new one.
    """
    account = await session.get(Account, signed_in.account.actor_id)
    if account is None or not verify_password(current[:MAX_PASSWORD], account.password_hash):
        raise InvalidInput("wrong password", field="current_password")
    check_new_password(new, confirm)
    account.password_hash = hash_password(new)
    await revoke_all(session, account.actor_id, now=now, keep=signed_in.session.id)


async def set_language(session: AsyncSession, account_id: int, language: str) -> None:
    """Raises InvalidInput for a language the pages are not translated into ("" means the browser's)."""
    if language and language not in LANGUAGES:
        raise InvalidInput("unknown language", field="language")
    await session.execute(
        update(Account).where(Account.actor_id == account_id).values(language=language or None)
    )


async def memberships_of(session: AsyncSession, actor_id: int) -> list[tuple[Membership, Actor]]:
    """The account's memberships (here and on other nodes) with their associations, by name."""
    stmt = (
        select(Membership, Actor)
        .join(Actor, Actor.id == Membership.group_id)
        .where(Membership.member_id == actor_id)
        .order_by(Actor.name, Actor.handle)
    )
    return [(membership, group) for membership, group in (await session.execute(stmt)).all()]


async def tokens_of(session: AsyncSession, account_id: int) -> list[Token]:
    """The account's API tokens that still work, newest first."""
    stmt = (
        select(Token)
        .where(Token.account_id == account_id, Token.revoked_at.is_(None))
        .order_by(Token.id.desc())
    )
    return list((await session.execute(stmt)).scalars())


async def new_token(session: AsyncSession, actor: Actor, *, label: str, scope: str, now: datetime) -> str:
    """Raises InvalidInput: empty or long label, unknown scope."""
    label = label.strip()
    if not label or len(label) > 100:
        raise InvalidInput("a name of 1 to 100 characters", field="label")
    if scope not in TOKEN_SCOPES[:2]:  # admin tokens stay a CLI matter
        raise InvalidInput("unknown scope", field="scope")
    return await create_token(session, username=actor.handle, scope=scope, label=label, now=now)


async def revoke_token(session: AsyncSession, account_id: int, token_id: int, *, now: datetime) -> None:
    """Raises NotFound: no such live token of this account."""
    result = await session.execute(
        update(Token)
        .where(Token.id == token_id, Token.account_id == account_id, Token.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound("no such token", field="token")
