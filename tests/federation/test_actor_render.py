"""federation.vocab.actors: the actor documents peers fetch (docs/interop.md "Actors")."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from federation.keys import (
    PrivateKeyType,
    PublicKey,
    ed25519_from_multibase,
    generate_private_key,
    private_key_from_pem,
    public_key_from_pem,
    public_key_to_pem,
)
from federation.uris import UriScheme
from federation.vocab.actors import LocalActor, render_actor

KEYS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
uris = UriScheme("https://entraide.test")


def fixed_key(file_name: str, kind: str) -> PrivateKeyType:
    """A fixed key from tests/fixtures/keys/ when present, else a fresh one of the same kind."""
    path = KEYS_DIR / file_name
    if path.exists():
        return private_key_from_pem(path.read_bytes())
    return generate_private_key("rsa" if kind == "rsa" else "ed25519")


RSA_KEY = fixed_key("rsa-alice.pem", "rsa")
ED_KEY = fixed_key("ed25519-alice.pem", "ed25519")


def local_actor(kind: str, handle: str) -> LocalActor:
    """A fully populated LocalActor as server/services/actors/profiles.py builds it."""
    iri = uris.actor(kind, handle)
    is_group = kind == "group"
    return LocalActor(
        id=iri,
        type="Group" if is_group else "Person",
        preferred_username=handle,
        name="Collectif santé" if is_group else "Alice",
        summary_html="<p>Entraide &amp; soins</p>",
        inbox=uris.inbox(iri),
        outbox=uris.outbox(iri),
        followers=uris.followers(iri),
        following=uris.following(iri),
        shared_inbox=uris.shared_inbox(),
        url=iri,
        published=datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC),
        public_key=PublicKey(uris.main_key(iri), iri, RSA_KEY.public_key()),
        assertion_key=PublicKey(uris.ed25519_key(iri), iri, ED_KEY.public_key()),
        members=uris.members(iri) if is_group else None,
        featured=uris.featured(iri) if is_group else None,
    )


GROUP = local_actor("group", "collectif")
PERSON = local_actor("person", "alice")


def test_group_has_every_field_mastodon_and_lemmy_require() -> None:
    """id, type, preferredUsername, inbox, outbox, followers, following, sharedInbox, publicKey."""
    doc = render_actor(GROUP)
    base = "https://entraide.test/groups/collectif"
    assert doc["id"] == base
    assert doc["type"] == "Group"
    assert doc["preferredUsername"] == "collectif"  # Mastodon's WebFinger round trip
    assert doc["inbox"] == f"{base}/inbox"
    assert doc["outbox"] == f"{base}/outbox"
    assert doc["followers"] == f"{base}/followers"
    assert doc["following"] == f"{base}/following"
    assert doc["endpoints"] == {"sharedInbox": "https://entraide.test/inbox"}
    assert doc["name"] == "Collectif santé"
    assert doc["summary"] == "<p>Entraide &amp; soins</p>"
    assert doc["url"] == base


def test_public_key_block_names_the_key_its_owner_and_a_loadable_pem() -> None:
    """What every peer verifies draft-cavage signatures with."""
    doc = render_actor(GROUP)
    public_key = doc["publicKey"]
    assert set(public_key) == {"id", "owner", "publicKeyPem"}
    assert public_key["id"] == f"{GROUP.id}#main-key"
    assert public_key["owner"] == GROUP.id
    loaded = public_key_from_pem(public_key["publicKeyPem"])
    assert public_key_to_pem(loaded) == public_key_to_pem(RSA_KEY.public_key())


def test_ed25519_key_is_published_as_a_multikey_assertion_method() -> None:
    """FEP-521a: ``Multikey`` with ``controller`` equal to the actor and a ``z6Mk`` value."""
    doc = render_actor(GROUP)
    [method] = doc["assertionMethod"]
    assert method["id"] == f"{GROUP.id}#ed25519-key"
    assert method["type"] == "Multikey"
    assert method["controller"] == GROUP.id
    assert method["publicKeyMultibase"].startswith("z6Mk")
    decoded = ed25519_from_multibase(method["publicKeyMultibase"])
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    assert decoded.public_bytes(*raw) == ED_KEY.public_key().public_bytes(*raw)


def test_no_assertion_method_without_an_ed25519_key() -> None:
    assert "assertionMethod" not in render_actor(replace(GROUP, assertion_key=None))
    rsa_as_assertion = replace(GROUP, assertion_key=GROUP.public_key)
    assert "assertionMethod" not in render_actor(rsa_as_assertion)


def test_context_defines_public_key_multikey_and_mastodon_terms() -> None:
    """Mastodon does no JSON-LD expansion but still expects security/v1 on actors."""
    context = render_actor(GROUP)["@context"]
    assert context[0] == "https://www.w3.org/ns/activitystreams"
    assert "https://w3id.org/security/v1" in context
    assert "https://w3id.org/security/multikey/v1" in context
    terms = next(item for item in context if isinstance(item, dict))
    for term in ("manuallyApprovesFollowers", "discoverable", "indexable", "featured"):
        assert term in terms


def test_members_and_featured_only_for_groups() -> None:
    """Mobilizon-style ``members`` and Mastodon/Lemmy ``featured`` belong to associations."""
    group = render_actor(GROUP)
    assert group["members"] == f"{GROUP.id}/members"
    assert group["featured"] == f"{GROUP.id}/featured"
    person = render_actor(PERSON)
    assert person["type"] == "Person"
    assert "members" not in person
    assert "featured" not in person


def test_published_is_utc_with_a_z_and_whole_seconds() -> None:
    published = render_actor(replace(GROUP, published=datetime(2025, 3, 1, 12, 0, 0, 987654, tzinfo=UTC)))[
        "published"
    ]
    assert published == "2025-03-01T12:00:00Z"
    assert published.endswith("Z")


@pytest.mark.parametrize("approves", [True, False])
def test_follow_approval_and_discoverability_are_published(approves: bool) -> None:
    doc = render_actor(replace(GROUP, manually_approves_followers=approves, discoverable=not approves))
    assert doc["manuallyApprovesFollowers"] is approves
    assert doc["discoverable"] is (not approves)
    assert doc["indexable"] is (not approves)


def test_the_document_is_plain_json_with_no_private_key_material() -> None:
    """The whole document serialises as JSON, and nothing private leaks into it."""
    text = json.dumps(render_actor(GROUP))
    assert "PRIVATE KEY" not in text
    assert isinstance(ED_KEY, ed25519.Ed25519PrivateKey)
    seed = ED_KEY.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert seed.hex() not in text


def test_an_avatar_is_an_icon_image_as_mastodon_reads_it() -> None:
    actor = PERSON
    assert "icon" not in render_actor(actor)
    icon = {"type": "Image", "mediaType": "image/webp", "url": uris.media("ab" * 16)}
    doc = render_actor(replace(actor, icon=icon))
    assert doc["icon"] == icon
