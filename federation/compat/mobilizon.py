"""Mobilizon's wire quirks: ``Member`` objects and roles, where a group lists its members.

Pointers: docs/interop.md "Actors" (Mobilizon Group extras) and "Group Announce wrapping"
(members-only addressing, resources as ``Document``/``ResourceCollection`` with a non-standard
``actor`` naming the creator). Recorded payloads: ``tests/fixtures/payloads/mobilizon/``.
"""

from __future__ import annotations

from typing import Any, Final

from ..vocab.objects import MemberRole

__all__ = [
    "CONTENT_TYPES",
    "MEMBER_TYPE",
    "member_role",
    "members_collection",
]

MEMBER_TYPE: Final = "Member"
"""Mobilizon's membership object: ``{"type": "Member", "actor", "object": <group>, "role"}``."""

CONTENT_TYPES: Final[frozenset[str]] = frozenset({"ResourceCollection", "Event", "Todo", "TodoList"})
"""Mobilizon object types read as generic content (type kept). A ``Document`` resource is a
:class:`~federation.vocab.objects.Document`; its ``actor`` (the creator) is not authorship:
the group in ``attributedTo`` is, so the parser ignores ``actor`` on objects."""

_ROLES: Final[dict[str, MemberRole]] = {role.value: role for role in MemberRole}


def member_role(value: object) -> MemberRole | None:
    """Read a ``Member``'s ``role`` (invited, not_approved, member, moderator, administrator, rejected).

    Matching is exact and case-sensitive, as Mobilizon sends it; an unknown role gives ``None``
    so that a handler can refuse it instead of guessing a privilege level.
    """
    return _ROLES.get(value) if isinstance(value, str) else None


def members_collection(doc: dict[str, Any]) -> object:
    """Where a group actor names its members collection, as found.

    Mobilizon (and Entraide) publish ``members`` at the top level; Mobilizon also repeats it in
    ``endpoints.members``. The top-level value wins; ``null`` counts as absent.
    """
    value = doc.get("members")
    if value is None:
        endpoints = doc.get("endpoints")
        if isinstance(endpoints, dict):
            value = endpoints.get("members")
    return value
