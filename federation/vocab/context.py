"""The ``@context`` values we publish.

Mastodon performs no JSON-LD processing, so we publish compact AS2 terms and inline the few
extension terms peers read (docs/interop.md "Content types and fetching"). Every term we use
is defined, so JSON-LD processors do not silently drop it (security case 22).
"""

from __future__ import annotations

from typing import Any, Final

AS2: Final = "https://www.w3.org/ns/activitystreams"
SECURITY_V1: Final = "https://w3id.org/security/v1"
DATA_INTEGRITY_V1: Final = "https://w3id.org/security/data-integrity/v1"
MULTIKEY_V1: Final = "https://w3id.org/security/multikey/v1"
DID_V1: Final = "https://www.w3.org/ns/did/v1"
ENTRAIDE_V1: Final = "https://w3id.org/entraide/v1"
ENTRAIDE_NS: Final = "https://w3id.org/entraide/ns#"

MASTODON_TERMS: Final[dict[str, Any]] = {
    "toot": "http://joinmastodon.org/ns#",
    "manuallyApprovesFollowers": "as:manuallyApprovesFollowers",
    "discoverable": "toot:discoverable",
    "indexable": "toot:indexable",
    "featured": {"@id": "toot:featured", "@type": "@id"},
}

ENTRAIDE_ACTOR_TERMS: Final[dict[str, Any]] = {
    "entraide": ENTRAIDE_NS,
    "members": {"@id": "entraide:members", "@type": "@id"},
}
"""Our terms used on actors, inlined: ``https://w3id.org/entraide/v1`` is not registered yet, and a
peer that cannot fetch a context it does not preload (Fedify) would fail to read the actor."""

ACTOR_CONTEXT: Final[list[Any]] = [
    AS2,
    SECURITY_V1,
    DID_V1,
    MULTIKEY_V1,
    {**MASTODON_TERMS, **ENTRAIDE_ACTOR_TERMS},
]
"""Context of actor documents, as Fedify publishes them: AS2, ``publicKey`` (security v1),
``assertionMethod`` (DID v1) holding a Multikey (FEP-521a), then inline extension terms."""

COLLECTION_CONTEXT: Final[list[Any]] = [AS2]
