"""The published size limits (security case 28), as constants and as a table.

One set for the whole library: the vocabulary reader (:mod:`federation.vocab.parse`) and the
remote-actor reader (:mod:`federation.actors_remote`) both read these. The values follow
Mastodon's published table (FEDERATION.md, "Size limits") except where a row says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from .iri import MAX_IRI_CHARS

__all__ = [
    "MAX_ALSO_KNOWN_AS",
    "MAX_ATTACHMENTS",
    "MAX_ATTRIBUTED_TO",
    "MAX_EMBED_DEPTH",
    "MAX_FLAG_OBJECTS",
    "MAX_IRI_CHARS",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_MULTIBASE_CHARS",
    "MAX_MULTIKEYS",
    "MAX_NAME_CHARS",
    "MAX_PEM_CHARS",
    "MAX_POLL_OPTIONS",
    "MAX_PREFERRED_USERNAME_CHARS",
    "MAX_PROFILE_FIELDS",
    "MAX_PROFILE_FIELD_CHARS",
    "MAX_PUBLIC_KEYS",
    "MAX_RECIPIENTS",
    "MAX_SUMMARY_CHARS",
    "MAX_TAGS",
    "SIZE_LIMITS",
    "SizeLimit",
]

# --------------------------------------------------------------------------------------------
# The published limits (security case 28; Mastodon FEDERATION.md "Size limits")
# --------------------------------------------------------------------------------------------

MAX_JSON_BYTES: Final = 1024 * 1024
"""Serialized JSON: 1 MiB, larger bodies are rejected (413) before parsing."""
MAX_JSON_DEPTH: Final = 64
"""Nesting of arrays/objects: deeper documents are rejected (400) before decoding."""
MAX_PREFERRED_USERNAME_CHARS: Final = 255
"""``preferredUsername``: a longer one rejects the actor. Stricter than Mastodon's 2048: the
name is part of the account's handle, and the ``actors.preferred_username`` column is 255 wide."""
MAX_NAME_CHARS: Final = 2048
"""``name``: truncated."""
MAX_SUMMARY_CHARS: Final = 20 * 1024
"""``summary``: truncated (20 kB)."""
MAX_PROFILE_FIELDS: Final = 50
"""Profile fields (``PropertyValue`` attachments): truncated."""
MAX_PROFILE_FIELD_CHARS: Final = 2047
"""A profile field's name or value: truncated."""
MAX_POLL_OPTIONS: Final = 500
"""Poll options: truncated."""
MAX_ALSO_KNOWN_AS: Final = 256
"""``alsoKnownAs`` entries: truncated."""
MAX_PUBLIC_KEYS: Final = 10
"""``publicKey`` entries: truncated."""

# Entraide's own additions to the table (not in Mastodon's), chosen well above what real peers send.
MAX_MULTIKEYS: Final = 10
"""``assertionMethod`` entries: truncated (same bound as ``publicKey``)."""
MAX_PEM_CHARS: Final = 16_384
"""A ``publicKeyPem``: a longer key entry is dropped (an RSA-8192 SPKI PEM is about 1.5 KiB)."""
MAX_MULTIBASE_CHARS: Final = 2048
"""A ``publicKeyMultibase``: a longer Multikey entry is dropped (an RSA-4096 one is under 800)."""
MAX_TAGS: Final = 500
"""``tag`` entries (mentions, hashtags, emoji): truncated."""
MAX_ATTACHMENTS: Final = 32
"""``attachment`` entries of content: truncated (Mastodon displays 4)."""
MAX_RECIPIENTS: Final = 1000
"""Entries of each of ``to``/``cc``/``audience``: more are rejected (truncating could hide ``Public``)."""
MAX_ATTRIBUTED_TO: Final = 16
"""``attributedTo`` entries (PeerTube lists a person and a channel): more are rejected."""
MAX_FLAG_OBJECTS: Final = 100
"""Objects of a ``Flag`` (reported account and statuses): more are rejected."""
MAX_EMBED_DEPTH: Final = 3
"""Embedded activities deeper than ``Undo{Announce{Create{Note}}}`` are kept as bare references
(security case 29: iterate and bound, never follow chains)."""


@dataclass(frozen=True, slots=True)
class SizeLimit:
    """One row of the published size-limits table: the property, the limit, what happens past it."""

    property: str
    limit: int
    consequence: Literal["rejected", "truncated"]


SIZE_LIMITS: Final[tuple[SizeLimit, ...]] = (
    SizeLimit("serialized JSON (bytes)", MAX_JSON_BYTES, "rejected"),
    SizeLimit("JSON nesting depth", MAX_JSON_DEPTH, "rejected"),
    SizeLimit("any IRI (characters)", MAX_IRI_CHARS, "rejected"),
    SizeLimit("preferredUsername", MAX_PREFERRED_USERNAME_CHARS, "rejected"),
    SizeLimit("name", MAX_NAME_CHARS, "truncated"),
    SizeLimit("summary", MAX_SUMMARY_CHARS, "truncated"),
    SizeLimit("profile fields", MAX_PROFILE_FIELDS, "truncated"),
    SizeLimit("profile field name or value", MAX_PROFILE_FIELD_CHARS, "truncated"),
    SizeLimit("poll options", MAX_POLL_OPTIONS, "truncated"),
    SizeLimit("alsoKnownAs", MAX_ALSO_KNOWN_AS, "truncated"),
    SizeLimit("publicKey entries", MAX_PUBLIC_KEYS, "truncated"),
    SizeLimit("assertionMethod entries", MAX_MULTIKEYS, "truncated"),
    SizeLimit("tag entries", MAX_TAGS, "truncated"),
    SizeLimit("attachment entries", MAX_ATTACHMENTS, "truncated"),
    SizeLimit("to / cc / audience entries (each)", MAX_RECIPIENTS, "rejected"),
    SizeLimit("attributedTo entries", MAX_ATTRIBUTED_TO, "rejected"),
    SizeLimit("Flag objects", MAX_FLAG_OBJECTS, "rejected"),
)
"""The size-limits table, published as data (security case 28 asks for a published table)."""
