"""federation.vocab.parse: every recorded payload parses; odd real-world shapes; published limits."""

from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation import jsonld
from federation.compat import lemmy
from federation.errors import InvalidDocument, MalformedPayload
from federation.types import AS_PUBLIC
from federation.vocab import parse
from federation.vocab.activities import (
    ACTIVITY_CLASSES,
    Accept,
    Activity,
    Announce,
    Create,
    Delete,
    Flag,
    Follow,
    Undo,
    UnknownActivity,
)
from federation.vocab.objects import (
    Article,
    Content,
    Document,
    Image,
    MemberRole,
    Note,
    Page,
    Question,
    RemoteActor,
    Tombstone,
)
from tests.schemas.helpers import PAYLOADS, load_payload

ALL_PAYLOADS = sorted(p.relative_to(PAYLOADS).as_posix() for p in PAYLOADS.glob("*/*.json"))


def _parse_any(doc: dict[str, Any]) -> list[object]:
    """Parse a recorded document with the reader its type calls for (collections: every item)."""
    types = doc["type"] if isinstance(doc["type"], list) else [doc["type"]]
    if set(types) & parse.ACTOR_TYPES:
        return [parse.parse_actor(doc)]
    if set(types) & {"OrderedCollection", "Collection"}:
        items = doc.get("orderedItems") or doc.get("items") or doc["first"]["orderedItems"]
        return [
            parse.parse_member(i) if i.get("type") == "Member" else parse.parse_activity(i) for i in items
        ]
    if set(types) & set(ACTIVITY_CLASSES):
        return [parse.parse_activity(doc)]
    return [parse.parse_object(doc)]


def _create(obj: object, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": "https://peer.example/activities/1",
        "type": "Create",
        "actor": "https://peer.example/users/alice",
        "object": obj,
    }
    doc.update(extra)
    return doc


def _note(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "https://peer.example/notes/1",
        "type": "Note",
        "attributedTo": "https://peer.example/users/alice",
        "content": "<p>Bonjour</p>",
    }
    doc.update(extra)
    return doc


def _actor(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "https://peer.example/users/alice",
        "type": "Person",
        "preferredUsername": "alice",
        "inbox": "https://peer.example/users/alice/inbox",
        "publicKey": {
            "id": "https://peer.example/users/alice#main-key",
            "owner": "https://peer.example/users/alice",
            "publicKeyPem": "-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n",
        },
    }
    doc.update(extra)
    return doc


# ---------------------------------------------------------------------------------------------
# Recorded payloads
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_PAYLOADS)
def test_every_recorded_payload_parses(name: str) -> None:
    # Given a payload recorded from a real peer
    doc = load_payload(name)
    before = copy.deepcopy(doc)
    # When it is screened and parsed
    parse.check_json_ld(doc)
    values = _parse_any(doc)
    # Then it yields typed values and the raw document is left untouched
    assert values
    assert doc == before


def test_mastodon_create_note_reads_addressing_reply_and_mention() -> None:
    create = parse.parse_activity(load_payload("mastodon/create_note.json"))
    assert isinstance(create, Create)
    assert create.to == ("https://mastodon.madrid/users/felix/followers",)
    assert create.cc == (AS_PUBLIC, "https://mamot.fr/users/retiolus")
    assert create.published == datetime(2021, 11, 5, 11, 46, 50, tzinfo=UTC)
    assert create.object is not None
    note = create.object.value
    assert isinstance(note, Note)
    assert note.id == create.object.id == "https://mastodon.madrid/users/felix/statuses/107224289116410645"
    assert note.author == "https://mastodon.madrid/users/felix"
    assert note.in_reply_to == "https://mamot.fr/users/retiolus/statuses/107224244380204526"
    assert note.mentions == ("https://mamot.fr/users/retiolus",)
    assert note.language == "en"
    assert note.url == "https://mastodon.madrid/@felix/107224289116410645"
    assert note.summary is None and note.sensitive is False
    # Mastodon's conversation id is a tag: URI, not an http(s) context: dropped, not refused.
    assert note.context is None


def test_fedify_as_public_spelling_is_normalised() -> None:
    create = parse.parse_activity(load_payload("fedify/create_note.json"))
    assert create.to == (AS_PUBLIC,)
    assert create.object is not None and isinstance(create.object.value, Note)
    assert create.object.value.to == (AS_PUBLIC,)


def test_mastodon_question_reads_options_counts_and_closing() -> None:
    question = parse.parse_object(load_payload("mastodon/question.json"))
    assert isinstance(question, Question)
    assert [(o.name, o.votes) for o in question.options] == [("Option 1", 6), ("Option 2", 4)]
    assert question.multiple is False
    assert question.voters_count == 10
    assert question.closed is True
    assert question.closed_at == question.end_time == datetime(2023, 1, 1, 20, 4, 45, tzinfo=UTC)


def test_lemmy_announce_of_create_page_is_read_as_a_relayed_activity() -> None:
    announce = parse.parse_activity(load_payload("lemmy/announce_create_page.json"))
    assert isinstance(announce, Announce)
    inner = announce.announced_activity
    assert isinstance(inner, Create)
    assert inner.actor == "http://enterprise.lemmy.ml/u/lemmy_beta"
    assert inner.object is not None
    page = inner.object.value
    # A Lemmy post is Article-like content (compat.lemmy).
    assert isinstance(page, Page) and isinstance(page, Article)
    assert page.name == "post 4"
    # The community appears in the inner Create's cc: it may relay it (FEP-1b12, case 42).
    assert lemmy.relayed_activity(announce) is inner


def test_lemmy_relay_of_content_not_addressed_to_the_group_is_not_unwrapped() -> None:
    doc = load_payload("lemmy/announce_create_page.json")
    doc["actor"] = "http://enterprise.lemmy.ml/c/other"
    announce = parse.parse_activity(doc)
    assert isinstance(announce, Announce)
    assert lemmy.relayed_activity(announce) is None


def test_lemmy_page_link_attachment_and_language_object() -> None:
    create = parse.parse_activity(load_payload("lemmy/create_page.json"))
    assert create.audience == ("https://enterprise.lemmy.ml/c/main",)
    assert create.object is not None
    page = create.object.value
    assert isinstance(page, Page)
    assert page.url == "https://lemmy.ml/pictrs/image/xl8W7FZfk9.jpg"
    assert page.language == "ko"
    assert page.comments_enabled is True
    assert page.content == "<p>test body</p>\n"
    assert page.attachment and page.attachment[0].type == "Link"


def test_lemmy_accept_embeds_the_follow() -> None:
    accept = parse.parse_activity(load_payload("lemmy/accept_follow.json"))
    assert isinstance(accept, Accept)
    assert accept.object is not None
    follow = accept.object.value
    assert isinstance(follow, Follow)
    assert (
        accept.object_id
        == follow.id
        == "http://ds9.lemmy.ml/activities/follow/6abcd50b-b8ca-4952-86b0-a6dd8cc12866"
    )
    assert follow.object_id == accept.actor


def test_accept_naming_the_follow_by_iri() -> None:
    doc = load_payload("lemmy/accept_follow.json")
    doc["object"] = doc["object"]["id"]
    accept = parse.parse_activity(doc)
    assert isinstance(accept, Accept)
    assert accept.object is not None and accept.object.value is None
    assert accept.object_id == "http://ds9.lemmy.ml/activities/follow/6abcd50b-b8ca-4952-86b0-a6dd8cc12866"


def test_mastodon_undo_embeds_the_follow_and_undo_by_iri_parses_too() -> None:
    doc = load_payload("mastodon/undo_follow.json")
    undo = parse.parse_activity(doc)
    assert isinstance(undo, Undo)
    assert undo.object is not None and isinstance(undo.object.value, Follow)
    doc["object"] = doc["object"]["id"]
    by_iri = parse.parse_activity(doc)
    assert isinstance(by_iri, Undo) and by_iri.object_id == undo.object_id and by_iri.object is not None
    assert by_iri.object.value is None


def test_mastodon_delete_embeds_a_tombstone() -> None:
    delete = parse.parse_activity(load_payload("mastodon/delete_note.json"))
    assert isinstance(delete, Delete)
    assert delete.object is not None and isinstance(delete.object.value, Tombstone)
    assert delete.is_self_delete is False


def test_mastodon_flag_keeps_every_reported_object() -> None:
    flag = parse.parse_activity(load_payload("mastodon/flag.json"))
    assert isinstance(flag, Flag)
    assert [ref.id for ref in flag.objects] == [
        "https://example.com/users/1",
        "https://example.com/posts/380590",
        "https://example.com/posts/380591",
    ]
    assert flag.object == flag.objects[0]
    assert flag.content == "Please take a look at this user and their posts"


def test_mobilizon_members_carry_roles() -> None:
    doc = load_payload("mobilizon/members_collection.json")
    members = [parse.parse_member(item) for item in doc["first"]["orderedItems"]]
    assert [m.role for m in members] == [MemberRole.ADMINISTRATOR, MemberRole.MEMBER]
    assert {m.object for m in members} == {"http://mobilizon.test/@demo"}


def test_mobilizon_group_members_collection_and_keys() -> None:
    group = parse.parse_actor(load_payload("mobilizon/group.json"))
    assert group.is_group
    assert group.members == "https://mobilizon.fr/@contribateliers/members"
    assert group.public_keys and group.public_keys[0].owner == group.id


def test_lemmy_group_extras() -> None:
    group = parse.parse_actor(load_payload("lemmy/group.json"))
    assert group.type == "Group"
    assert group.attributed_to == "https://enterprise.lemmy.ml/c/tenforward/moderators"
    assert group.shared_inbox == "https://enterprise.lemmy.ml/inbox"
    assert group.icon_url == "https://enterprise.lemmy.ml/pictrs/image/waqyZwLAy4.webp"


def test_fedify_actor_multikeys_and_key() -> None:
    actor = parse.parse_actor(load_payload("fedify/actor.json"))
    assert [k.key_id for k in actor.multikeys] == [
        "https://fedify.example/users/alice#multikey-1",
        "https://fedify.example/users/alice#multikey-2",
    ]
    assert [k.key_id for k in actor.public_keys] == ["https://fedify.example/users/alice#main-key"]
    assert actor.manually_approves_followers is False
    assert actor.published == datetime(2025, 1, 15, 10, 0, tzinfo=UTC)


def test_mastodon_actor_fields() -> None:
    actor = parse.parse_actor(load_payload("mastodon/actor.json"))
    assert actor.preferred_username == "peertube"
    assert actor.featured == "https://framapiaf.org/users/peertube/collections/featured"
    assert actor.shared_inbox == "https://framapiaf.org/inbox"
    assert actor.discoverable is False


# ---------------------------------------------------------------------------------------------
# Odd shapes seen in the wild
# ---------------------------------------------------------------------------------------------


def test_multiple_types_pick_the_first_known_one() -> None:
    activity = parse.parse_activity(
        _create(_note(type=["http://example.org/Custom", "Note"]), type=["Create", "x"])
    )
    assert isinstance(activity, Create)
    assert activity.types == ("Create", "x")
    assert activity.object is not None
    note = activity.object.value
    assert isinstance(note, Note) and note.types == ("http://example.org/Custom", "Note")


def test_actor_as_object_or_single_item_list() -> None:
    as_object = parse.parse_activity(
        _create(_note(), actor={"id": "https://peer.example/users/alice", "type": "Person"})
    )
    as_list = parse.parse_activity(_create(_note(), actor=["https://peer.example/users/alice"]))
    assert as_object.actor == as_list.actor == "https://peer.example/users/alice"


def test_several_distinct_actors_are_refused() -> None:
    with pytest.raises(InvalidDocument, match="actor"):
        parse.parse_activity(
            _create(_note(), actor=["https://peer.example/users/alice", "https://peer.example/users/bob"])
        )


def test_addressing_accepts_every_public_spelling_and_objects() -> None:
    activity = parse.parse_activity(
        _create(
            _note(),
            to="Public",
            cc=["as:Public", {"id": "https://peer.example/users/alice/followers"}],
            audience="https://peer.example/groups/g",
        )
    )
    assert activity.to == (AS_PUBLIC,)
    assert activity.cc == (AS_PUBLIC, "https://peer.example/users/alice/followers")
    assert activity.audience == ("https://peer.example/groups/g",)
    assert activity.addressing.is_public


def test_bto_and_bcc_are_stripped() -> None:
    activity = parse.parse_activity(
        _create(_note(bcc=["https://peer.example/users/secret"]), bto="https://peer.example/users/x")
    )
    assert not hasattr(activity, "bto") and not hasattr(activity, "bcc")
    assert "https://peer.example/users/secret" not in repr(activity)


def test_object_list_gives_its_first_item() -> None:
    activity = parse.parse_activity(_create(["https://peer.example/notes/1", "https://peer.example/notes/2"]))
    assert activity.object_id == "https://peer.example/notes/1"


def test_unknown_activity_type_is_kept_with_its_name() -> None:
    doc = _create("https://peer.example/notes/1", type="EmojiReact", content="🔥")
    activity = parse.parse_activity(doc)
    assert isinstance(activity, UnknownActivity)
    assert activity.type == "EmojiReact"


def test_embedded_unknown_activity_type_is_read_as_an_activity() -> None:
    undo = parse.parse_activity(
        _create(
            {
                "id": "https://peer.example/r/1",
                "type": "EmojiReact",
                "actor": "https://peer.example/users/alice",
                "object": "https://peer.example/notes/1",
            },
            type="Undo",
        )
    )
    assert undo.object is not None and isinstance(undo.object.value, UnknownActivity)


def test_mobilizon_resource_with_creator_actor_is_content_not_an_activity() -> None:
    resource = {
        "id": "https://mobilizon.example/resource/1",
        "type": "ResourceCollection",
        "name": "Dossier",
        "actor": "https://mobilizon.example/@creator",
        "attributedTo": "https://mobilizon.example/@group",
        "object": "https://mobilizon.example/whatever",
    }
    activity = parse.parse_activity(
        _create(resource, actor="https://mobilizon.example/@creator", id="https://mobilizon.example/a/1")
    )
    assert activity.object is not None
    value = activity.object.value
    assert isinstance(value, Content) and value.type == "ResourceCollection"
    assert value.attributed_to == ("https://mobilizon.example/@group",)


def test_embedded_actor_in_update() -> None:
    update = parse.parse_activity(
        _create(_actor(), type="Update", id="https://peer.example/users/alice#updates/1")
    )
    assert update.object is not None and isinstance(update.object.value, RemoteActor)


def test_activities_nested_deeper_than_the_bound_become_references() -> None:
    doc: dict[str, Any] = _note()
    for level in range(parse.MAX_EMBED_DEPTH + 2):
        doc = {
            "id": f"https://peer.example/a/{level}",
            "type": "Announce",
            "actor": "https://peer.example/users/alice",
            "object": doc,
        }
    activity = parse.parse_activity(doc)
    depth = 0
    current: Activity = activity
    while current.object is not None and isinstance(current.object.value, Activity):
        current = current.object.value
        depth += 1
    assert depth == parse.MAX_EMBED_DEPTH
    assert current.object is not None and current.object.value is None and current.object.id is not None


def test_attachments_and_tags() -> None:
    note = parse.parse_object(
        _note(
            attachment=[
                {
                    "type": "Document",
                    "mediaType": "image/png",
                    "url": "https://peer.example/m/1.png",
                    "name": "alt",
                    "width": 10,
                    "height": 20,
                    "blurhash": "UABC",
                },
                {"type": "Image", "url": [{"type": "Link", "href": "https://peer.example/m/2.jpg"}]},
                "not an object",
            ],
            tag=[
                {"type": "Mention", "href": "https://peer.example/users/bob", "name": "@bob"},
                {"type": "Hashtag", "href": "https://peer.example/tags/sante", "name": "#sante"},
                {
                    "type": "Emoji",
                    "name": ":blob:",
                    "icon": {"type": "Image", "url": "https://peer.example/e/blob.png"},
                },
                {"type": "Mention", "href": "acct:bob@peer.example"},
            ],
        )
    )
    assert isinstance(note, Note)
    first, second = note.attachment
    assert isinstance(first, Document) and not isinstance(first, Image)
    assert (first.url, first.name, first.width, first.height, first.blurhash) == (
        "https://peer.example/m/1.png",
        "alt",
        10,
        20,
        "UABC",
    )
    assert isinstance(second, Image) and second.url == "https://peer.example/m/2.jpg"
    assert [(t.type, t.href) for t in note.tag] == [
        ("Mention", "https://peer.example/users/bob"),
        ("Hashtag", "https://peer.example/tags/sante"),
        ("Emoji", "https://peer.example/e/blob.png"),
        ("Mention", None),
    ]


def test_content_map_fills_content_and_language() -> None:
    note = parse.parse_object(_note(content=None, contentMap={"fr": "<p>Salut</p>", "en": "<p>Hi</p>"}))
    assert isinstance(note, Content)
    assert (note.content, note.language) == ("<p>Salut</p>", "fr")


def test_entraide_terms_land_in_extra() -> None:
    note = parse.parse_object(_note(severity="high", validUntil="2025-04-01T00:00:00Z", unrelated="x"))
    assert isinstance(note, Content)
    assert dict(note.extra) == {"severity": "high", "validUntil": "2025-04-01T00:00:00Z"}
    hash(note)  # extra is excluded from the hash; values stay hashable


def test_lone_surrogates_are_replaced_not_kept() -> None:
    doc = parse.decode_json_object(json.dumps(_note(content="a\ud800b")).encode())
    note = parse.parse_object(doc)
    assert isinstance(note, Content) and note.content == "a\ufffdb"
    assert note.content.encode("utf-8")


def test_unreadable_dates_are_none_and_naive_dates_are_utc() -> None:
    note = parse.parse_object(_note(published="yesterday", updated="2021-11-18T17:19:45.895163"))
    assert isinstance(note, Content)
    assert note.published is None
    assert note.updated == datetime(2021, 11, 18, 17, 19, 45, 895163, tzinfo=UTC)


def test_parse_object_refuses_activities_and_actors() -> None:
    with pytest.raises(InvalidDocument):
        parse.parse_object(_create(_note()))
    with pytest.raises(InvalidDocument):
        parse.parse_object(_actor())


def test_public_keys_of_other_owners_or_hosts_are_dropped() -> None:
    actor = parse.parse_actor(
        _actor(
            publicKey=[
                {
                    "id": "https://peer.example/users/alice#main-key",
                    "owner": "https://peer.example/users/alice",
                    "publicKeyPem": "A",
                },
                {
                    "id": "https://peer.example/users/bob#main-key",
                    "owner": "https://peer.example/users/bob",
                    "publicKeyPem": "B",
                },
                {
                    "id": "https://evil.example/keys/alice",
                    "owner": "https://peer.example/users/alice",
                    "publicKeyPem": "C",
                },
            ],
            assertionMethod=[
                {
                    "id": "https://peer.example/users/alice#ed",
                    "type": "Multikey",
                    "controller": "https://evil.example/x",
                    "publicKeyMultibase": "z6Mk",
                },
            ],
        )
    )
    assert [k.pem for k in actor.public_keys] == ["A"]
    assert actor.multikeys == ()


# ---------------------------------------------------------------------------------------------
# IRIs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "ftp://peer.example/a/1"),
        ("id", "/relative/1"),
        ("actor", "acct:alice@peer.example"),
        ("object", "javascript:alert(1)"),
        ("actor", "https://peer.example@evil.example/users/alice"),
        ("actor", "https://peer.example/users/" + "a" * parse.MAX_IRI_CHARS),
        ("actor", "https://peer example/users/alice"),
        ("target", "https:///nohost"),
        ("to", "tag:peer.example,2021:x"),
    ],
)
def test_id_like_fields_must_be_short_absolute_http_iris(field: str, value: str) -> None:
    doc = _create("https://peer.example/notes/1")
    doc[field] = value
    with pytest.raises(InvalidDocument) as error:
        parse.parse_activity(doc)
    assert field in error.value.detail


def test_invalid_embedded_iri_names_the_field() -> None:
    with pytest.raises(InvalidDocument, match="inReplyTo"):
        parse.parse_activity(_create(_note(inReplyTo="data:text/plain,hi")))


def test_link_like_fields_are_dropped_when_not_http() -> None:
    note = parse.parse_object(_note(url="ipfs://bafy", context="tag:peer.example,2021:objectId=1"))
    assert isinstance(note, Content)
    assert note.url is None and note.context is None


# ---------------------------------------------------------------------------------------------
# Published limits (security case 28)
# ---------------------------------------------------------------------------------------------


def test_the_published_table_matches_mastodons() -> None:
    table = {row.property: (row.limit, row.consequence) for row in parse.SIZE_LIMITS}
    assert table["serialized JSON (bytes)"] == (1024 * 1024, "rejected")
    # the one row stricter than Mastodon's 2048: the name is part of the handle, its column is 255 wide
    assert table["preferredUsername"] == (255, "rejected")
    assert table["name"] == (2048, "truncated")
    assert table["summary"] == (20 * 1024, "truncated")
    assert table["poll options"] == (500, "truncated")
    assert table["alsoKnownAs"] == (256, "truncated")
    assert table["publicKey entries"] == (10, "truncated")
    assert table["profile fields"] == (50, "truncated")
    assert table["profile field name or value"] == (2047, "truncated")


def test_long_name_and_summary_are_truncated() -> None:
    note = parse.parse_object(_note(name="n" * 3000, summary="s" * 30000))
    assert isinstance(note, Content)
    assert note.name is not None and len(note.name) == parse.MAX_NAME_CHARS
    assert note.summary is not None and len(note.summary) == parse.MAX_SUMMARY_CHARS


def test_poll_options_are_truncated_to_500() -> None:
    options = [
        {"type": "Note", "name": f"option {i}", "replies": {"type": "Collection", "totalItems": 0}}
        for i in range(600)
    ]
    question = parse.parse_object(_note(type="Question", anyOf=options))
    assert isinstance(question, Question)
    assert question.multiple is True
    assert len(question.options) == parse.MAX_POLL_OPTIONS


def test_long_preferred_username_rejects_the_actor() -> None:
    with pytest.raises(InvalidDocument, match="preferredUsername"):
        parse.parse_actor(_actor(preferredUsername="a" * (parse.MAX_PREFERRED_USERNAME_CHARS + 1)))


def test_actor_lists_are_truncated() -> None:
    keys = [
        {
            "id": f"https://peer.example/users/alice#k{i}",
            "owner": "https://peer.example/users/alice",
            "publicKeyPem": str(i),
        }
        for i in range(12)
    ]
    fields = [{"type": "PropertyValue", "name": f"f{i}", "value": "v" * 3000} for i in range(60)]
    actor = parse.parse_actor(
        _actor(
            publicKey=keys,
            alsoKnownAs=[f"https://old{i}.example/users/alice" for i in range(300)],
            attachment=fields,
        )
    )
    assert len(actor.public_keys) == parse.MAX_PUBLIC_KEYS
    assert len(actor.also_known_as) == parse.MAX_ALSO_KNOWN_AS
    assert len(actor.fields) == parse.MAX_PROFILE_FIELDS
    assert all(len(f.value) == parse.MAX_PROFILE_FIELD_CHARS for f in actor.fields)


def test_too_many_recipients_are_refused() -> None:
    doc = _create(_note(), cc=[f"https://peer.example/users/u{i}" for i in range(parse.MAX_RECIPIENTS + 1)])
    with pytest.raises(InvalidDocument, match="cc"):
        parse.parse_activity(doc)


# ---------------------------------------------------------------------------------------------
# Decoding and JSON-LD screening
# ---------------------------------------------------------------------------------------------


def test_ten_thousand_deep_nesting_is_malformed_without_recursion_error() -> None:
    body = b'{"a":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    with pytest.raises(MalformedPayload, match="deeper"):
        parse.decode_json_object(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":"' + b'\\"' * 500_000,  # an unterminated string of escaped quotes
        b'"' * 1_000_000,
        b'{"a":"' + b"\\" * 1_000_000,
        b"[" * 1_000_000,
    ],
    ids=["escaped-quotes", "quotes", "backslashes", "brackets"],
)
def test_the_depth_scan_is_linear_on_hostile_bodies(body: bytes) -> None:
    # A quadratic scan would take minutes on these 1 MB bodies; a linear one well under a second.
    started = time.perf_counter()
    with pytest.raises(MalformedPayload):
        parse.decode_json_object(body)
    assert time.perf_counter() - started < 5


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    text = "[" * 500 + '\\"{' * 10
    doc = parse.decode_json_object(json.dumps({"content": text}).encode())
    assert doc["content"] == text


def test_depth_limit_is_exact() -> None:
    ok = b'{"a":' + b"[" * 63 + b"]" * 63 + b"}"
    too_deep = b'{"a":' + b"[" * 64 + b"]" * 64 + b"}"
    assert parse.decode_json_object(ok)
    with pytest.raises(MalformedPayload):
        parse.decode_json_object(too_deep)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'"text"',
        b"\xff\xfe{}",
        b'{"a": NaN}',
        b'{"a": 1' + b"0" * 5000 + b"}",
        b'{"a":1}x',
    ],
)
def test_non_objects_and_invalid_json_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        parse.decode_json_object(body)


_LITEPUB = "https://pleroma.example/schemas/litepub-0.1.jsonld"


@pytest.mark.parametrize(
    "context",
    [
        [_LITEPUB],
        _LITEPUB,
        ["https://www.w3.org/ns/activitystreams", _LITEPUB, {"g": "@graph"}],
        ["https://www.w3.org/ns/activitystreams", _LITEPUB, {"actor": "as:object"}],
        ["https://www.w3.org/ns/activitystreams", _LITEPUB, {"@language": "und"}],
    ],
)
def test_one_top_level_context_is_screened_without_unknown_ones_like_the_general_path(context: Any) -> None:
    doc = _create(_note())
    doc["@context"] = context
    doc["object"]["g"] = []
    screened = parse._without_unknown_contexts(doc)
    general = (jsonld.has_forbidden_keywords(screened), jsonld.uses_only_known_contexts(screened))
    assert parse._screen(doc) == general


def test_a_document_without_context_is_screened_for_keyword_keys_only() -> None:
    doc = _create(_note())
    del doc["@context"]
    parse.check_json_ld(doc)  # nothing redefined: plain JSON
    doc["object"]["@included"] = [{"id": "https://peer.example/u/1", "type": "Undo"}]
    with pytest.raises(InvalidDocument, match="@graph"):
        parse.check_json_ld(doc)


def test_pleroma_style_instance_context_is_accepted() -> None:
    # Pleroma/Akkoma name a per-instance litepub context we never fetch (case 23): plain JSON.
    doc = _create(_note())
    doc["@context"] = [
        "https://www.w3.org/ns/activitystreams",
        "https://pleroma.example/schemas/litepub-0.1.jsonld",
        {"@language": "und"},
    ]
    parse.check_json_ld(doc)


@pytest.mark.parametrize("keyword", ["@graph", "@included", "@reverse"])
def test_graph_restructuring_keywords_are_refused(keyword: str) -> None:
    doc = _create(_note())
    doc[keyword] = [{"id": "https://peer.example/u/1", "type": "Undo"}]
    with pytest.raises(InvalidDocument, match="@graph"):
        parse.check_json_ld(doc)


def test_inline_alias_of_included_is_refused() -> None:
    doc = _create(_note())
    doc["@context"] = ["https://www.w3.org/ns/activitystreams", {"also": "@included"}]
    doc["also"] = [{"id": "https://peer.example/u/1", "type": "Undo"}]
    with pytest.raises(InvalidDocument):
        parse.check_json_ld(doc)


def test_context_swapping_actor_and_object_is_refused() -> None:
    # security.md case 21: a JSON reader sees actor=alice; a JSON-LD reader sees actor=mallory.
    doc = {
        "@context": [
            "https://www.w3.org/ns/activitystreams",
            "https://w3id.org/security/v1",
            {"actor": {"@id": "as:object", "@type": "@id"}, "object": {"@id": "as:actor", "@type": "@id"}},
        ],
        "id": "https://evil.example/f/1",
        "type": "Follow",
        "actor": "https://peer.example/users/alice",
        "object": "https://evil.example/users/mallory",
    }
    with pytest.raises(InvalidDocument, match="redefines"):
        parse.check_json_ld(doc)


# ---------------------------------------------------------------------------------------------
# Totality: arbitrary JSON never escapes as anything but InvalidDocument
# ---------------------------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=20)
    | st.sampled_from(["https://peer.example/x", "as:Public", "Create", "Note"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "type",
                    "actor",
                    "object",
                    "to",
                    "cc",
                    "name",
                    "attributedTo",
                    "inReplyTo",
                    "tag",
                    "url",
                    "oneOf",
                ]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["id", "type", "actor", "object", "to", "cc", "target", "content"]), _json, max_size=8
    )
)
def test_parsers_are_total_over_arbitrary_json(doc: dict[str, Any]) -> None:
    parse.peek_activity(doc)  # never raises
    for reader in (parse.parse_activity, parse.parse_object, parse.parse_actor):
        try:
            reader(doc)
        except InvalidDocument:
            pass


_context_keys = st.sampled_from(
    ["@id", "@type", "@container", "@reverse", "@context", "@import", "@base", "actor", "object", "as", "x"]
)
_contexts = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(
        ["@graph", "@id", "as:actor", "https://www.w3.org/ns/activitystreams", "https://evil.example/c"]
    ),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_context_keys, children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_contexts)
def test_json_ld_screening_is_total_over_arbitrary_contexts(context: Any) -> None:
    doc = _create(_note())
    doc["@context"] = context
    try:
        parse.check_json_ld(doc)
    except InvalidDocument:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(alphabet='[]{}"\\:,a1 ', max_size=200).map(str.encode))
def test_decoding_is_total_over_arbitrary_bytes(body: bytes) -> None:
    try:
        assert isinstance(parse.decode_json_object(body), dict)
    except MalformedPayload:
        pass


def test_an_ld_signature_block_with_its_own_context_is_not_a_core_term_redefinition() -> None:
    """Fedify signs activities with an LD signature carrying ``@context: identity/v1``; we never
    read the block, so it must not make the activity look like a context-swapping attack."""
    from federation.vocab.parse import check_json_ld

    doc = {
        "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/data-integrity/v1"],
        "id": "https://fedify.example/activities/1",
        "type": "Follow",
        "actor": "https://fedify.example/users/alice",
        "object": "https://entraide.test/groups/a",
        "signature": {
            "@context": "https://w3id.org/identity/v1",
            "type": "RsaSignature2017",
            "creator": "https://fedify.example/users/alice#main-key",
            "created": "2026-11-22T12:00:00Z",
            "signatureValue": "AAAA",
        },
    }
    check_json_ld(doc)  # does not raise
    swapped = doc | {
        "@context": ["https://www.w3.org/ns/activitystreams", {"actor": {"@id": "as:object", "@type": "@id"}}]
    }
    with pytest.raises(InvalidDocument):
        check_json_ld(swapped)  # a top-level redefinition is still refused (case 21)


def test_nul_characters_are_replaced_not_kept() -> None:
    from federation.vocab.parse import decode_json_object

    assert decode_json_object(b'{"type": "Note", "content": "a\\u0000b"}')["content"] == "a\ufffdb"
    assert decode_json_object(b'{"a\\u0000": 1}') == {"a\ufffd": 1}
    assert decode_json_object(b'{"content": "a\\\\u0000b"}')["content"] == "a\\u0000b"
