"""NodeInfo 2.1 (and the ``/.well-known/nodeinfo`` index with the FEP-2677 Application link)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .types import Iri, JsonObject

NODEINFO_21_SCHEMA = "http://nodeinfo.diaspora.software/ns/schema/2.1"
NODEINFO_20_SCHEMA = "http://nodeinfo.diaspora.software/ns/schema/2.0"
APPLICATION_REL = "https://www.w3.org/ns/activitystreams#Application"
NODEINFO_21_PROFILE = 'application/json; profile="http://nodeinfo.diaspora.software/ns/schema/2.1#"'


@dataclass(frozen=True, slots=True)
class AssociationSummary:
    """An association listed in NodeInfo metadata (public information only)."""

    handle: str
    name: str
    actor: Iri


@dataclass(frozen=True, slots=True)
class NodeUsage:
    """Usage figures; activity counts we do not measure are left out rather than guessed."""

    users_total: int
    local_posts: int
    users_active_month: int | None = None
    users_active_halfyear: int | None = None


@dataclass(frozen=True, slots=True)
class NodeDescription:
    node_name: str
    software_version: str
    usage: NodeUsage
    associations: Sequence[AssociationSummary] = field(default_factory=tuple)
    open_registrations: bool = False


def render_nodeinfo_index(nodeinfo_21_url: str, nodeinfo_20_url: str, application_actor: Iri) -> JsonObject:
    """``/.well-known/nodeinfo``: links to 2.1 and 2.0 plus the node's Application actor (FEP-2677)."""
    return {
        "links": [
            {"rel": NODEINFO_21_SCHEMA, "href": nodeinfo_21_url},
            {"rel": NODEINFO_20_SCHEMA, "href": nodeinfo_20_url},
            {"rel": APPLICATION_REL, "href": application_actor},
        ]
    }


def render_nodeinfo(node: NodeDescription, *, version: str = "2.1") -> JsonObject:
    """A NodeInfo document, 2.1 by default (2.0 has the same fields we use)."""
    software: JsonObject = {"name": "entraide", "version": node.software_version}
    return {
        "version": version,
        "software": software,
        "protocols": ["activitypub"],
        "services": {"inbound": [], "outbound": ["atom1.0", "rss2.0"]},
        "openRegistrations": node.open_registrations,
        "usage": {
            "users": {
                key: value
                for key, value in (
                    ("total", node.usage.users_total),
                    ("activeMonth", node.usage.users_active_month),
                    ("activeHalfyear", node.usage.users_active_halfyear),
                )
                if value is not None
            },
            "localPosts": node.usage.local_posts,
        },
        "metadata": {
            "nodeName": node.node_name,
            "associations": [
                {"handle": a.handle, "name": a.name, "actor": a.actor} for a in node.associations
            ],
        },
    }
