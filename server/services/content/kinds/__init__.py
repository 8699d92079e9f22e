"""The registry of content kinds: what a client may publish, one module per kind.

A kind module (``post``, ``reply``, ``resource``, ``alert``, ``proposal``, ``event``) subclasses
:class:`~server.services.content.kinds.base.ContentKind` and is registered below with one line;
the publishing pipeline (:mod:`server.services.content.local`), the JSON API's collections and
the feeds ask this registry instead of naming kinds. How to add one: ``docs/architecture.md``,
"Where a new feature goes".

A client asks for a kind with ``entraideKind`` (its :attr:`~ContentKind.wire_term`); otherwise
the registered kinds are asked in registration order whether the object has their shape
(:meth:`~ContentKind.claims`), and a post is what none claims.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from federation.vocab.entraide import Kind
from server.db.models import Actor
from server.services.content.kinds import alert, event, post, proposal, reply, resource
from server.services.content.kinds.base import ContentKind, Draft, Edit, Stored
from server.services.errors import Forbidden, InvalidInput

__all__ = ["ContentKind", "Draft", "Edit", "Stored", "by_kind", "get", "listed", "registered", "requested"]

_REGISTRY: dict[Kind, ContentKind] = {}


def register(kind: ContentKind) -> None:
    """Add a kind (once; its wire term, if any, must be new too)."""
    if kind.kind in _REGISTRY:
        raise ValueError(f"the {kind.kind.value} kind is registered twice")
    if kind.wire_term is not None and any(k.wire_term == kind.wire_term for k in _REGISTRY.values()):
        raise ValueError(f"entraideKind {kind.wire_term} names two kinds")
    _REGISTRY[kind.kind] = kind


register(post.KIND)
register(proposal.KIND)
register(reply.KIND)
register(resource.KIND)
register(alert.KIND)
register(event.KIND)

DEFAULT = post.KIND
"""What an object is when no registered kind claims it."""


def registered() -> Iterator[ContentKind]:
    """Every kind a client may publish, in registration order."""
    return iter(_REGISTRY.values())


def listed() -> tuple[ContentKind, ...]:
    """The kinds listed with an association's content (its lists, feeds and relays)."""
    return tuple(k for k in _REGISTRY.values() if k.listed)


def get(kind: str) -> ContentKind | None:
    """The registered kind of a stored object's ``kind`` column, if it is one (votes and
    endorsements are content too, published by their own services, and are not)."""
    try:
        return _REGISTRY.get(Kind(kind))
    except ValueError:
        return None


def by_kind(kind: str) -> ContentKind:
    """Like :func:`get`, the default kind for one that is not registered."""
    return get(kind) or DEFAULT


def requested(obj: Mapping[str, Any], author: Actor) -> ContentKind:
    """The kind a client asks for: ``entraideKind``, else by shape; its type checked, and
    refused (403) when only an association publishes it and ``author`` is none."""
    term = obj.get("entraideKind")
    chosen = _by_term(term) if term is not None else _by_shape(obj, author)
    obj_type = obj.get("type", chosen.types[0])
    if obj_type not in chosen.types:
        allowed = " or ".join(chosen.types)
        raise InvalidInput(f"a {chosen.kind.value} is published as {allowed}", field="type")
    if chosen.association_only and author.type != "Group":
        raise Forbidden(f"only an association publishes a {chosen.kind.value}")
    return chosen


def _by_term(term: Any) -> ContentKind:
    for kind in _REGISTRY.values():
        if kind.wire_term is not None and kind.wire_term == term:
            return kind
    terms = ", ".join(sorted(k.wire_term for k in _REGISTRY.values() if k.wire_term is not None))
    raise InvalidInput(f"entraideKind must be one of: {terms}", field="entraideKind")


def _by_shape(obj: Mapping[str, Any], author: Actor) -> ContentKind:
    return next((k for k in _REGISTRY.values() if k.claims(obj, author)), DEFAULT)
