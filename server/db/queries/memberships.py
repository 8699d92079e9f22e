"""Keyset pages of an association's memberships, newest first (the members page, the directory).

A page is cut on ``memberships.id`` (unique, and the order members joined in): ``before`` reads
the page of members older than a cursor, ``after`` the page of members newer than it (read in
ascending order, then turned around). Each page says whether there are older and newer members
beyond it, so a listing shows "previous" and "next" links without counting anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import Membership

INT32_MAX: Final = 2**31 - 1
"""``memberships.id`` is a 32-bit column: a larger cursor is clamped."""


@dataclass(frozen=True, slots=True)
class Page:
    """Rows of one page (newest first), and the cursors of the pages beside it (None: none)."""

    rows: list[Any]
    older: int | None  # pass as ``before``
    newer: int | None  # pass as ``after``


async def _exists(session: AsyncSession, query: Select[Any]) -> bool:
    return (await session.execute(query.limit(1))).first() is not None


async def page(
    session: AsyncSession, query: Select[Any], *, before: int | None, after: int | None, limit: int
) -> Page:
    """A page of ``query`` (which selects ``Membership`` first) ordered by membership id, newest
    first: older than ``before``, or newer than ``after`` (``before`` wins when both are given),
    or the newest ones."""
    if before is None and after is not None:
        cut = query.where(Membership.id > min(after, INT32_MAX)).order_by(Membership.id.asc())
        rows = list(reversed((await session.execute(cut.limit(limit))).all()))
    else:
        cut = query.order_by(Membership.id.desc())
        if before is not None:
            cut = cut.where(Membership.id < min(before, INT32_MAX))
        rows = list((await session.execute(cut.limit(limit))).all())
    if not rows:
        return Page([], None, None)
    first, last = rows[0][0].id, rows[-1][0].id
    older = last if await _exists(session, query.where(Membership.id < last)) else None
    newer = first if await _exists(session, query.where(Membership.id > first)) else None
    return Page(rows, older, newer)


__all__ = ["Page", "page"]
