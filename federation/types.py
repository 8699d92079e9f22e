"""Shared aliases and small values used across the protocol library."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NewType

Iri = NewType("Iri", str)
"""An absolute http(s) IRI naming an ActivityPub object, actor, key or collection."""

JsonObject = dict[str, Any]
"""A decoded JSON object. Only parse/render/jsonld/compat modules handle these directly."""

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime. Injected everywhere time matters."""

AS_PUBLIC = Iri("https://www.w3.org/ns/activitystreams#Public")
"""The special public collection. Also spelled ``as:Public`` and ``Public`` on the wire."""

PUBLIC_ALIASES: frozenset[str] = frozenset({AS_PUBLIC, "as:Public", "Public"})


def utc_now() -> datetime:
    """The default :data:`Clock`: the current time in UTC."""
    return datetime.now(UTC)
