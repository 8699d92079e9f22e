"""One remote-actor reader: ``vocab.parse.parse_actor`` is built on ``actors_remote.read_actor``,
so both paths apply the same (stricter) ownership rules, actor types and size limits."""

from __future__ import annotations

from typing import Any

import pytest

from federation import actors_remote, limits
from federation.errors import InvalidDocument
from federation.uris import UriScheme
from federation.vocab import parse
from tests.schemas.helpers import load_payload

ALICE = "https://peer.example/users/alice"
RECORDED_ACTORS = [
    "mastodon/actor.json",
    "lemmy/person.json",
    "lemmy/group.json",
    "mobilizon/group.json",
    "mobilizon/person.json",
    "fedify/actor.json",
]


def _actor(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": ALICE,
        "type": "Person",
        "preferredUsername": "alice",
        "inbox": f"{ALICE}/inbox",
        "publicKey": {"id": f"{ALICE}#main-key", "owner": ALICE, "publicKeyPem": "A"},
    }
    doc.update(extra)
    return doc


def _key_ids(doc: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The key ids each reader keeps: (parse_actor, read_actor)."""
    return (
        [k.key_id for k in parse.parse_actor(doc).public_keys],
        [k.id for k in actors_remote.read_actor(doc).public_keys],
    )


def test_one_set_of_actor_types_and_limits() -> None:
    assert parse.ACTOR_TYPES is actors_remote.ACTOR_TYPES
    assert parse.MAX_PREFERRED_USERNAME_CHARS == limits.MAX_PREFERRED_USERNAME_CHARS == 255
    assert parse.MAX_PUBLIC_KEYS == limits.MAX_PUBLIC_KEYS
    assert parse.MAX_IRI_CHARS == limits.MAX_IRI_CHARS
    assert parse.SIZE_LIMITS is limits.SIZE_LIMITS


@pytest.mark.parametrize("payload", RECORDED_ACTORS)
def test_both_paths_read_recorded_actors_alike(payload: str) -> None:
    doc = load_payload(payload)
    actor, core = parse.parse_actor(doc), actors_remote.read_actor(doc)
    assert (actor.id, actor.type, actor.preferred_username, actor.inbox) == (
        core.id,
        core.type,
        core.preferred_username,
        core.inbox,
    )
    assert (
        [k.key_id for k in actor.public_keys] == [k.id for k in core.public_keys] == [doc["publicKey"]["id"]]
    )
    assert [m.key_id for m in actor.multikeys] == [m.id for m in core.assertion_methods]


def test_a_key_without_owner_is_never_taken_as_the_actors() -> None:
    # the fetch path drops the entry; the vocabulary path refuses the document (schema)
    doc = _actor(publicKey={"id": f"{ALICE}#main-key", "publicKeyPem": "A"})
    assert actors_remote.read_actor(doc).public_keys == ()
    with pytest.raises(InvalidDocument, match="owner"):
        parse.parse_actor(doc)


def test_a_multikey_without_controller_is_never_taken_as_the_actors() -> None:
    method = {"id": f"{ALICE}#ed", "type": "Multikey", "publicKeyMultibase": "z6Mk"}
    assert actors_remote.read_actor(_actor(assertionMethod=[method])).assertion_methods == ()
    with pytest.raises(InvalidDocument, match="controller"):
        parse.parse_actor(_actor(assertionMethod=[method]))
    method["controller"] = ALICE
    assert [m.key_id for m in parse.parse_actor(_actor(assertionMethod=[method])).multikeys] == [
        f"{ALICE}#ed"
    ]


def test_a_fragment_key_must_hang_off_the_actors_own_document() -> None:
    # bob's document on the same host cannot list alice's fragment key as his (cases 1 and 8)
    bob = "https://peer.example/users/bob"
    doc = _actor(
        id=bob,
        preferredUsername="bob",
        inbox=f"{bob}/inbox",
        publicKey=[
            {"id": f"{ALICE}#main-key", "owner": bob, "publicKeyPem": "A"},
            {"id": f"{bob}#main-key", "owner": bob, "publicKeyPem": "B"},
        ],
    )
    assert _key_ids(doc) == ([f"{bob}#main-key"], [f"{bob}#main-key"])


@pytest.mark.parametrize(
    "key_id",
    [
        "http://peer.example/keys/alice",  # same host, another scheme
        "https://peer.example:8443/keys/alice",  # same host, another port
        "https://other.example/keys/alice",
    ],
)
def test_a_key_off_the_actors_origin_is_dropped(key_id: str) -> None:
    doc = _actor(publicKey=[{"id": key_id, "owner": ALICE, "publicKeyPem": "A"}])
    assert _key_ids(doc) == ([], [])


def test_a_standalone_key_on_the_origin_is_kept() -> None:
    doc = _actor(publicKey=[{"id": "https://peer.example/keys/alice", "owner": ALICE, "publicKeyPem": "A"}])
    assert _key_ids(doc) == (["https://peer.example/keys/alice"], ["https://peer.example/keys/alice"])


def test_preferred_username_is_limited_to_255_characters() -> None:
    assert parse.parse_actor(_actor(preferredUsername="a" * 255)).preferred_username == "a" * 255
    with pytest.raises(InvalidDocument, match="preferredUsername"):
        parse.parse_actor(_actor(preferredUsername="a" * 256))


@pytest.mark.parametrize("username", ["a@b", "a b", "a/b", ""])
def test_an_unusable_preferred_username_rejects_the_actor_on_both_paths(username: str) -> None:
    for reader in (parse.parse_actor, actors_remote.read_actor):
        with pytest.raises(InvalidDocument, match="preferredUsername"):
            reader(_actor(preferredUsername=username))


def test_collections_on_another_origin_are_dropped() -> None:
    ours = "https://entraide.test/groups/asso/followers"
    actor = parse.parse_actor(
        _actor(followers=ours, following=ours, featured=ours, outbox="https://entraide.test/x/outbox")
    )
    assert (actor.followers, actor.following, actor.featured, actor.outbox) == (None, None, None, None)
    kept = parse.parse_actor(_actor(followers=f"{ALICE}/followers", featured=f"{ALICE}/featured"))
    assert (kept.followers, kept.featured) == (f"{ALICE}/followers", f"{ALICE}/featured")


def test_an_invalid_collection_iri_still_names_its_field() -> None:
    with pytest.raises(InvalidDocument, match="followers"):
        parse.parse_actor(_actor(followers="javascript:alert(1)"))


def test_the_local_iri_parser_is_not_called_parse_actor() -> None:
    assert not hasattr(UriScheme, "parse_actor")
    assert hasattr(UriScheme, "local_actor_ref")
