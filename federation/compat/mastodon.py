"""Mastodon's wire quirks, read defensively (and what other Mastodon-compatible software copies).

Pointers: docs/interop.md "Content types and fetching" (compact AS2, no JSON-LD expansion),
"Polls" and "Visibility as Mastodon reads it"; docs/security.md cases 15 and 42.
"""

from __future__ import annotations

from typing import Any, Final

from ..types import AS_PUBLIC, PUBLIC_ALIASES

__all__ = [
    "PROFILE_FIELD_TYPE",
    "emoji_icon_url",
    "is_public_alias",
    "normalize_public",
    "poll_closed",
]

PROFILE_FIELD_TYPE: Final = "PropertyValue"
"""The ``attachment`` type Mastodon uses for profile fields (``schema:PropertyValue``)."""


def is_public_alias(value: object) -> bool:
    """True for every spelling of the public collection: the full IRI, ``as:Public``, ``Public``.

    Mastodon and Fedify send ``as:Public``; a members-only object addressed to any of the three
    is public (security case 42), so all three must be recognised everywhere.
    """
    return isinstance(value, str) and value in PUBLIC_ALIASES


def normalize_public(value: str) -> str:
    """Map any spelling of the public collection to :data:`~federation.types.AS_PUBLIC`; others unchanged."""
    return AS_PUBLIC if value in PUBLIC_ALIASES else value


def emoji_icon_url(tag: dict[str, Any]) -> object:
    """The image of a Mastodon custom ``Emoji`` tag: ``icon.url`` (``icon`` may be a list).

    Returned as found (the caller checks that it is an http(s) IRI).
    """
    icon = tag.get("icon")
    if isinstance(icon, list):
        icon = icon[0] if icon else None
    if isinstance(icon, dict):
        return icon.get("url")
    return icon


def poll_closed(value: object) -> tuple[bool, str | None]:
    """Read a ``Question``'s ``closed``: Mastodon sends the closing date, others ``true``.

    Returns ``(is_closed, date_text)``; ``false``/``null``/absent mean open. GoToSocial treats an
    ``Update`` that adds ``closed`` as "poll ended" (docs/interop.md "Polls").
    """
    if value is True:
        return True, None
    if isinstance(value, str) and value:
        return True, value
    return False, None
