"""Readers of a client's content fields: each checks one value and names the field it refuses.

Shared by the publishing pipeline (:mod:`server.services.content.local`) and the content kinds
(:mod:`server.services.content.kinds`), so that a kind reads its own fields with the same rules
and the same errors as the fields every kind has.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from federation.iri import is_http_iri
from federation.types import AS_PUBLIC, PUBLIC_ALIASES, Iri
from federation.vocab import entraide as wire
from server.services.content.sanitize import plain_text
from server.services.errors import InvalidInput
from server.services.federation import Federation

MAX_CONTENT_CHARS = 100_000
MAX_NAME_CHARS = 500
MAX_SUMMARY_CHARS = 2_000
MAX_RECIPIENTS = 200
MAX_TAGS = 20
MAX_ATTACHMENTS = 10


def text(value: Any, field: str, limit: int, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise InvalidInput(f"{field} is required", field=field)
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    if len(value) > limit:
        raise InvalidInput(f"{field} is longer than {limit} characters", field=field)
    return value


def iri_value(value: Any, field: str) -> Iri | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("https://", "http://")) or len(value) > 2048:
        raise InvalidInput(f"{field} must be an http(s) IRI", field=field)
    return Iri(value)


def _listed(value: Any) -> list[Any] | None:
    """A single value or a list as a list; ``None`` for anything else (refused by the caller)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return value if isinstance(value, list) else None


def iri_list(value: Any, field: str) -> list[str]:
    items = _listed(value)
    if items is None or not all(isinstance(i, str) for i in items) or len(items) > MAX_RECIPIENTS:
        raise InvalidInput(f"{field} must be an IRI or a list of at most {MAX_RECIPIENTS} IRIs", field=field)
    iris = [AS_PUBLIC if i in PUBLIC_ALIASES else i for i in items]
    # Addressees are fetched and delivered to: one we could never reach is the client's error.
    if not all(i == AS_PUBLIC or is_http_iri(i) for i in iris):
        raise InvalidInput(f"{field} must name http(s) IRIs with a valid host", field=field)
    return iris


def when(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    parsed = wire.parse_time(value)
    if parsed is None:
        raise InvalidInput(f"{field} must be an ISO 8601 date-time with a time zone", field=field)
    return parsed


def choice(cls: Any, value: Any, field: str, default: Any = None) -> Any:
    """``cls(value)`` for a StrEnum, or ``default`` when the value is absent."""
    if value is None and default is not None:
        return default
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise InvalidInput(f"{field} must be one of: {allowed}", field=field) from None


def language_of(value: Any) -> str | None:
    code = text(value, "language", 35)
    if code is not None and not all(part.isalnum() for part in code.split("-")):
        raise InvalidInput("language must be a BCP 47 tag such as fr or fr-BE", field="language")
    return code


def hashtags(fed: Federation, value: Any) -> list[dict[str, Any]]:
    """``tag``: hashtag names (strings, with or without ``#``) or AS2 ``Hashtag`` objects."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise InvalidInput(f"tag must be a list of at most {MAX_TAGS} hashtags", field="tag")
    tags = []
    for item in value:
        name = item.get("name") if isinstance(item, dict) and item.get("type") == "Hashtag" else item
        if not isinstance(name, str) or not 1 <= len(name.lstrip("#")) <= 100:
            raise InvalidInput("each tag must be a hashtag name of 1 to 100 characters", field="tag")
        bare = plain_text(name.lstrip("#")).replace(" ", "")
        tags.append(
            {"type": "Hashtag", "name": f"#{bare}", "href": fed.node.uris.iri(f"/tags/{bare.lower()}")}
        )
    return tags
