"""Reads of stored objects (``objects``) on hot paths."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from server.db.queries import bare


async def documents_by_iri(session: AsyncSession, iris: Collection[str]) -> dict[str, Any]:
    """The stored document of each of ``iris`` that we hold (one statement through the bare driver,
    decision 84); IRIs we do not hold are absent."""
    if not iris:
        return {}
    ordered = sorted(iris)
    rows = await bare.fetch(
        session, f"SELECT iri, document FROM objects WHERE iri IN ({bare.marks(len(ordered))})", ordered
    )
    return {iri: bare.document(document) for iri, document in rows}


async def feed_marks(
    session: AsyncSession, actor_id: int, kinds: Collection[str]
) -> list[tuple[str, int, datetime]]:
    """``feed_marks`` rows (kind, version, changed_at in UTC) of ``actor_id`` for ``kinds``, by kind:
    one statement through the bare driver, run by every feed request (decision 84)."""
    ordered = sorted(kinds)
    kinds_in = bare.marks(len(ordered))
    sql = f"SELECT kind, version, changed_at FROM feed_marks WHERE actor_id = ? AND kind IN ({kinds_in})"
    rows = await bare.fetch(session, sql + " ORDER BY kind", [actor_id, *ordered])
    return [(kind, int(version), bare.utc(changed)) for kind, version, changed in rows]
