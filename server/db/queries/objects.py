"""Reads of stored objects (``objects``) on hot paths."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from server.db.queries import bare


async def documents_by_iri(session: AsyncSession, iris: Collection[str]) -> dict[str, Any]:
    """The stored document of each of ``iris`` that we hold (one statement through the bare driver,
    decision 87); IRIs we do not hold are absent."""
    if not iris:
        return {}
    ordered = sorted(iris)
    rows = await bare.fetch(
        session, f"SELECT iri, document FROM objects WHERE iri IN ({bare.marks(len(ordered))})", ordered
    )
    return {iri: bare.document(document) for iri, document in rows}
