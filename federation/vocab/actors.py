"""Our actor documents: the node's ``Application``, associations (``Group``), members (``Person``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ed25519

from ..keys import PublicKey, ed25519_to_multibase
from ..types import Iri, JsonObject
from .context import ACTOR_CONTEXT


@dataclass(frozen=True, slots=True)
class LocalActor:
    """Everything needed to render one of our actors. HTML fields are already sanitised."""

    id: Iri
    type: str
    preferred_username: str
    name: str
    summary_html: str
    inbox: Iri
    outbox: Iri
    followers: Iri
    following: Iri
    shared_inbox: Iri
    url: Iri
    published: datetime
    public_key: PublicKey
    assertion_key: PublicKey | None = None
    manually_approves_followers: bool = False
    discoverable: bool = True
    members: Iri | None = None
    featured: Iri | None = None
    liked: Iri | None = None
    icon: JsonObject | None = None
    """The avatar, ``{"type": "Image", "mediaType": …, "url": …}``."""


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def render_actor(actor: LocalActor) -> JsonObject:
    """Render an actor as compact AS2 JSON with our published ``@context``.

    The RSA key is published as ``publicKey`` (what every peer verifies draft-cavage with) and
    the Ed25519 key as a Multikey in ``assertionMethod`` (FEP-521a), used for FEP-8b32 proofs.
    ``preferredUsername`` is required by Mastodon's WebFinger round trip.
    """
    doc: JsonObject = {
        "@context": ACTOR_CONTEXT,
        "id": actor.id,
        "type": actor.type,
        "preferredUsername": actor.preferred_username,
        "name": actor.name,
        "summary": actor.summary_html,
        "url": actor.url,
        "inbox": actor.inbox,
        "outbox": actor.outbox,
        "followers": actor.followers,
        "following": actor.following,
        "endpoints": {"sharedInbox": actor.shared_inbox},
        "published": _iso(actor.published),
        "manuallyApprovesFollowers": actor.manually_approves_followers,
        "discoverable": actor.discoverable,
        "indexable": actor.discoverable,
        "publicKey": {
            "id": actor.public_key.key_id,
            "owner": actor.public_key.owner,
            "publicKeyPem": actor.public_key.to_pem(),
        },
    }
    if actor.assertion_key is not None and isinstance(actor.assertion_key.key, ed25519.Ed25519PublicKey):
        doc["assertionMethod"] = [
            {
                "id": actor.assertion_key.key_id,
                "type": "Multikey",
                "controller": actor.assertion_key.owner,
                "publicKeyMultibase": ed25519_to_multibase(actor.assertion_key.key),
            }
        ]
    if actor.icon is not None:
        doc["icon"] = actor.icon
    if actor.liked is not None:
        doc["liked"] = actor.liked
    if actor.members is not None:
        doc["members"] = actor.members
    if actor.featured is not None:
        doc["featured"] = actor.featured
    return doc
