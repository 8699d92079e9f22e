"""federation.jsonld never reaches the network, and spots the JSON-LD tricks of security.md cases 20-23."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pyld import jsonld as pyld

from federation import jsonld
from federation.errors import ContextNotAllowed, InvalidDocument
from tests.schemas.helpers import forbid_network, load_payload

AS = "https://www.w3.org/ns/activitystreams"
SEC = "https://w3id.org/security/v1"
AS_NS = AS + "#"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail the test on any connection attempt; the list records attempts for a final assertion."""
    return forbid_network(monkeypatch)


# -- case 23: loading remote contexts -----------------------------------------------------------


@pytest.mark.parametrize(
    "remote",
    [
        "https://evil.example/ctx?sleep=60",
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8080/context.jsonld",
        "https://www.w3.org/ns/activitystreams#",  # close to, but not, a preloaded IRI
    ],
)
def test_expanding_with_an_unknown_remote_context_refuses_and_opens_no_socket(
    remote: str, no_network: list[str]
) -> None:
    # Given a Follow whose @context names a context we do not ship
    follow = load_payload("mastodon/follow.json")
    follow["@context"] = [AS, remote]
    # When it is expanded, Then it is refused by name, and no connection was attempted
    with pytest.raises(ContextNotAllowed) as caught:
        jsonld.expand(follow)
    assert "Refusing to fetch a non-preloaded JSON-LD context" in caught.value.detail
    assert caught.value.code == "context_not_allowed"
    assert no_network == []


def test_a_relative_context_reference_is_refused_without_fetching(no_network: list[str]) -> None:
    follow = load_payload("mastodon/follow.json")
    follow["@context"] = [AS, "relative-context.jsonld"]
    with pytest.raises(InvalidDocument):  # pyld has no base IRI to resolve it against
        jsonld.expand(follow)
    assert jsonld.uses_only_known_contexts(follow) is False
    assert no_network == []


def test_an_unknown_context_imported_by_an_inline_context_is_refused(no_network: list[str]) -> None:
    document = {"@context": [AS, {"@version": 1.1, "@import": "https://evil.example/ctx"}], "type": "Note"}
    with pytest.raises(ContextNotAllowed):
        jsonld.expand(document)
    assert no_network == []


def test_compaction_also_refuses_unknown_contexts(no_network: list[str]) -> None:
    with pytest.raises(ContextNotAllowed):
        jsonld.compact(load_payload("mastodon/follow.json"), "https://evil.example/ctx")
    with pytest.raises(ContextNotAllowed):
        jsonld.compact({"@context": "https://evil.example/ctx", "type": "Note"}, AS)
    assert no_network == []


def test_the_offline_loader_is_pyld_default_so_direct_pyld_calls_are_safe_too(no_network: list[str]) -> None:
    # Importing federation.jsonld installed it; a caller who forgets documentLoader is still safe.
    assert pyld.get_document_loader() is jsonld.load_document
    with pytest.raises(pyld.JsonLdError) as caught:
        pyld.expand({"@context": "https://evil.example/ctx", "type": "Note"})
    assert any(isinstance(link, ContextNotAllowed) for link in jsonld._causes(caught.value))
    assert no_network == []


def test_load_document_refuses_anything_not_preloaded() -> None:
    with pytest.raises(ContextNotAllowed) as caught:
        jsonld.load_document("https://evil.example/" + "a" * 5000)
    assert len(caught.value.detail) < 300


def test_expanding_a_mastodon_create_works_offline(no_network: list[str]) -> None:
    expanded = jsonld.expand(load_payload("mastodon/create_note.json"))
    create = expanded[0]
    assert create["@type"] == [AS_NS + "Create"]
    assert create[AS_NS + "actor"] == [{"@id": "https://mastodon.madrid/users/felix"}]
    note = create[AS_NS + "object"][0]
    assert note["@type"] == [AS_NS + "Note"]
    assert note[AS_NS + "inReplyTo"] == [
        {"@id": "https://mamot.fr/users/retiolus/statuses/107224244380204526"}
    ]
    assert no_network == []


@pytest.mark.parametrize(
    "payload",
    [
        "fedify/actor.json",
        "fedify/create_note.json",
        "mastodon/actor.json",
        "mastodon/question.json",
        "mobilizon/group.json",
        "mobilizon/join.json",
    ],
)
def test_real_payloads_expand_offline(payload: str, no_network: list[str]) -> None:
    expanded = jsonld.expand(load_payload(payload))
    assert len(expanded) == 1 and "@type" in expanded[0]
    assert no_network == []


def test_compacting_against_our_context_keeps_what_plain_json_reads(no_network: list[str]) -> None:
    create = load_payload("mastodon/create_note.json")
    compacted = jsonld.compact(create, [AS, SEC])
    assert compacted["actor"] == create["actor"]
    assert compacted["object"]["attributedTo"] == create["object"]["attributedTo"]
    assert no_network == []


def test_invalid_json_ld_becomes_invalid_document_not_a_pyld_error(no_network: list[str]) -> None:
    with pytest.raises(InvalidDocument):
        jsonld.expand({"@context": {"@vocab": 5}, "type": "Note"})
    with pytest.raises(InvalidDocument):
        # Redefining a protected term of a pinned context is a JSON-LD error.
        jsonld.expand({"@context": ["https://w3id.org/security/multikey/v1", {"Multikey": "as:Note"}]})


# -- case 21: verifying one representation and acting on another ------------------------------

SWAP = {"actor": {"@id": "as:object", "@type": "@id"}, "object": {"@id": "as:actor", "@type": "@id"}}
CASE_21 = {
    "@context": [AS, SEC, SWAP],
    "id": "https://evil.example/f/1",
    "type": "Follow",
    "actor": "https://peer.example/users/alice",
    "object": "https://evil.example/users/mallory",
}


def test_the_case_21_swap_is_real_and_is_refused_for_plain_json_reading(no_network: list[str]) -> None:
    # The attack: after compaction against the pinned context, actor and object trade places.
    compacted = jsonld.compact(CASE_21, [AS, SEC])
    assert compacted["actor"] == "https://evil.example/users/mallory"
    assert compacted["object"] == "https://peer.example/users/alice"
    # The defence (model (a)): such a document is not read as plain JSON.
    assert jsonld.uses_only_known_contexts(CASE_21) is False
    assert no_network == []


@pytest.mark.parametrize(
    ("inline", "why"),
    [
        ({"Follow": "as:Undo"}, "a type name given another type"),
        ({"to": "as:bcc"}, "addressing redirected"),
        ({"publicKey": "as:url"}, "key material redefined"),
        ({"inbox": "as:outbox"}, "inbox redefined"),
        ({"sender": "as:actor"}, "a second name for a core property"),
        ({"kind": "@type"}, "a keyword alias"),
        ({"incl": "@included"}, "a keyword alias"),
        ({"actor": None}, "a core term undefined"),
        ({"as": "https://evil.example/ns#"}, "the as: prefix redefined"),
        ({"@base": "https://evil.example/"}, "@base"),
        ({"@import": "https://evil.example/ctx"}, "an unknown import"),
        ({"Hashtag": {"@id": "as:Hashtag", "@context": {"actor": "as:object"}}}, "a type-scoped swap"),
        ({"object": {"@id": "as:object", "@container": "@list"}}, "a core term's container changed"),
    ],
)
def test_contexts_that_change_core_meaning_are_not_plain_json(inline: dict[str, Any], why: str) -> None:
    follow = load_payload("mastodon/follow.json")
    follow["@context"] = [AS, SEC, inline]
    assert jsonld.uses_only_known_contexts(follow) is False, why


def test_an_embedded_object_cannot_smuggle_a_context_either() -> None:
    create = load_payload("mastodon/create_note.json")
    create["object"]["@context"] = {"attributedTo": "as:audience"}
    assert jsonld.uses_only_known_contexts(create) is False


def test_a_null_context_reset_is_not_plain_json() -> None:
    follow = load_payload("mastodon/follow.json")
    follow["@context"] = [AS, None]
    assert jsonld.uses_only_known_contexts(follow) is False


def test_unknown_context_strings_are_not_plain_json() -> None:
    follow = load_payload("mastodon/follow.json")
    follow["@context"] = [AS, "https://evil.example/ctx"]
    assert jsonld.uses_only_known_contexts(follow) is False


def test_a_preloaded_context_that_overrides_activitystreams_after_it_is_not_plain_json() -> None:
    # identity v1 maps Person to schema:Person; Fedify puts it *before* AS2, which is harmless.
    actor = load_payload("mastodon/actor.json")
    actor["@context"] = ["https://w3id.org/identity/v1", AS, SEC]
    assert jsonld.uses_only_known_contexts(actor) is True
    actor["@context"] = [AS, SEC, "https://w3id.org/identity/v1"]
    assert jsonld.uses_only_known_contexts(actor) is False


def test_restating_core_terms_with_the_same_meaning_is_fine() -> None:
    # Mastodon restates alsoKnownAs and Public; LitePub restates totalItems without its type.
    follow = load_payload("mastodon/follow.json")
    follow["@context"] = [
        AS,
        {
            "alsoKnownAs": {"@id": "as:alsoKnownAs", "@type": "@id"},
            "Public": "as:Public",
            "totalItems": "as:totalItems",
        },
    ]
    assert jsonld.uses_only_known_contexts(follow) is True


def test_a_document_without_context_is_plain_json() -> None:
    assert jsonld.uses_only_known_contexts(load_payload("lemmy/group.json")) is True


# -- case 20: restructuring with @graph, @included, @reverse -----------------------------------

SIGNATURE = {
    "type": "RsaSignature2017",
    "creator": "https://peer.example/users/v#main-key",
    "signatureValue": "c2ln",
}


def _case_20(**extra: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "@context": [AS, SEC],
        "id": "https://peer.example/a/1",
        "type": "Announce",
        "actor": "https://peer.example/users/v",
        "object": "https://peer.example/n/1",
        "signature": SIGNATURE,
    }
    document.update(extra)
    return document


UNDO = {"id": "https://peer.example/u/1", "type": "Undo", "actor": "https://peer.example/users/v"}

CASE_20_VARIANTS = {
    "@included": _case_20(**{"@included": [dict(UNDO, object="https://peer.example/a/1")]}),
    "@reverse": _case_20(**{"@reverse": {AS_NS + "object": UNDO}}),
    "@graph": {
        "@context": [AS, SEC],
        "@graph": [dict(UNDO, object="https://peer.example/a/1")],
        "signature": SIGNATURE,
    },
    "nested @graph": _case_20(object={"id": "https://peer.example/n/1", "@graph": [UNDO]}),
    "alias of @included": {
        **_case_20(),
        "@context": [AS, SEC, {"also": "@included"}],
        "also": [dict(UNDO, object="https://peer.example/a/1")],
    },
    "alias of @graph in an embedded context": _case_20(
        object={"@context": {"g": {"@id": "@graph"}}, "id": "https://peer.example/n/1", "g": [UNDO]}
    ),
    "reverse property": {
        **_case_20(),
        "@context": [AS, SEC, {"undoneBy": {"@reverse": "as:object"}}],
        "undoneBy": UNDO,
    },
    "graph container": {
        **_case_20(),
        "@context": [AS, SEC, {"wrapped": {"@id": "as:attachment", "@container": "@graph"}}],
        "wrapped": UNDO,
    },
    "unknown context that could hide an alias": {**_case_20(), "@context": [AS, "https://evil.example/ctx"]},
}


@pytest.mark.parametrize("variant", sorted(CASE_20_VARIANTS))
def test_case_20_restructured_payloads_are_detected(variant: str) -> None:
    assert jsonld.has_forbidden_keywords(CASE_20_VARIANTS[variant]) is True


def test_the_included_variant_really_canonicalises_like_the_signed_undo(no_network: list[str]) -> None:
    # Why this matters (docs/security.md case 20; this test checks it with pyld): the same N-Quads, so a
    # signature over the Undo also "verifies" the document a JSON reader sees as an Announce.
    signed_undo = {
        "@context": [AS, SEC],
        **UNDO,
        "object": {"id": "https://peer.example/a/1", "type": "Announce", "actor": "https://peer.example/users/v",
                   "object": "https://peer.example/n/1"},
    }  # fmt: skip
    restructured = copy.deepcopy(CASE_20_VARIANTS["@included"])
    del restructured["signature"]
    options = {
        "algorithm": "URDNA2015",
        "format": "application/n-quads",
        "documentLoader": jsonld.load_document,
    }
    assert pyld.normalize(signed_undo, options) == pyld.normalize(restructured, options)
    assert jsonld.has_forbidden_keywords(restructured) is True
    assert no_network == []


def test_a_data_integrity_proof_is_not_mistaken_for_a_graph_trick() -> None:
    # FEP-8b32: `proof` is a @graph container in the Data Integrity context, by design.
    create = load_payload("fedify/create_note.json")
    create["proof"] = {
        "type": "DataIntegrityProof",
        "cryptosuite": "eddsa-jcs-2022",
        "verificationMethod": "https://fedify.example/users/alice#multikey-2",
        "proofPurpose": "assertionMethod",
        "proofValue": "z3sXaxjKs4M3BRicwWA9peyNPJvJqxtGsDmRwr4ReNCRUrbZqqm1Dc4dc57VfkXMaLwb",
        "created": "2025-01-15T10:05:00Z",
    }
    assert jsonld.has_forbidden_keywords(create) is False
    assert jsonld.uses_only_known_contexts(create) is True


def test_keywords_inside_context_definitions_are_not_document_keys() -> None:
    # A context may legitimately use "@reverse" in a *definition* we do not use as a key... but we
    # flag the term anyway if it appears; here it does not appear, only "@id"/"@type" keys do.
    follow = load_payload("mastodon/follow.json")
    follow["@context"] = [AS, {"knows": {"@id": "https://peer.example/ns#knows", "@type": "@id"}}]
    assert jsonld.has_forbidden_keywords(follow) is False


# -- attacker input never raises out of the static checks ----------------------------------------

ODD_CONTEXTS: list[Any] = [
    5,
    [AS, 5],
    {"x": 5},
    {"x": {"@id": 5, "@container": 7}},
    {"x": {"@id": "as:attachment", "@container": [{"a": 1}, "@graph"]}},
    {"x": {"@reverse": ["as:object"]}},
    {"@import": 5},
    {"a": "b:x", "b": "a:y", "actor": "a:z"},
    [[[[[[[[[[[[AS]]]]]]]]]]]],
    {"x": {"@id": "as:x", "@context": {"y": {"@id": "as:y", "@context": {"z": None}}}}},
]


@pytest.mark.parametrize("context", ODD_CONTEXTS, ids=range(len(ODD_CONTEXTS)))
def test_odd_contexts_get_an_answer_not_an_exception(context: Any) -> None:
    document = {"@context": context, "type": "Note", "x": 1}
    assert isinstance(jsonld.uses_only_known_contexts(document), bool)
    assert isinstance(jsonld.has_forbidden_keywords(document), bool)


def test_deeply_nested_documents_get_an_answer_not_an_exception() -> None:
    deep: Any = {"type": "Note"}
    for _ in range(5000):
        deep = {"object": deep}
    deep_context: Any = AS
    for _ in range(5000):
        deep_context = [deep_context]
    assert jsonld.uses_only_known_contexts(deep) is True
    assert jsonld.has_forbidden_keywords(deep) is False
    assert jsonld.uses_only_known_contexts({"@context": deep_context}) is False
    assert jsonld.has_forbidden_keywords({"@context": deep_context}) is True
    with pytest.raises(InvalidDocument):
        jsonld.expand({"@context": AS, "object": deep})


# -- the inbox's fast path: one top-level context, verdicts cached per context -------------------

_CHANGES = [
    {"Follow": "as:Undo"},
    {"sender": "as:actor"},
    {"incl": "@included"},
    {"actor": None},
    {"@base": "https://evil.example/"},
    {"@import": "https://evil.example/ctx"},
    {"Hashtag": {"@id": "as:Hashtag", "@context": {"actor": "as:object"}}},
]
TOP_LEVEL_ONLY: list[Any] = [
    *(v for v in CASE_20_VARIANTS.values() if "@context" not in v.get("object", {})),
    *({"@context": [AS, SEC, inline], "type": "Follow", "actor": "https://p.ex/u"} for inline in _CHANGES),
    *({"@context": context, "type": "Note", "x": 1} for context in ODD_CONTEXTS),
    {"@context": [AS, None], "type": "Note"},
    {"@context": None, "type": "Note"},
    {"@context": [AS, "https://evil.example/ctx"], "type": "Note"},
    {"@context": [AS, {"g": "@graph"}], "type": "Note", "object": {"type": "Note", "g": []}},
    {"@context": ["https://w3id.org/identity/v1", AS, SEC], "type": "Person"},
    {"@context": [AS, SEC, "https://w3id.org/identity/v1"], "type": "Person"},
    load_payload("mastodon/create_note.json"),
    load_payload("mastodon/follow.json"),
    load_payload("fedify/create_note.json"),
]


@pytest.mark.parametrize("document", TOP_LEVEL_ONLY, ids=range(len(TOP_LEVEL_ONLY)))
def test_the_top_level_screen_answers_like_the_two_general_checks(document: Any) -> None:
    nodes = jsonld.objects_of(document)
    assert not any("@context" in node for node in nodes[1:])
    general = (jsonld.has_forbidden_keywords(document), jsonld.uses_only_known_contexts(document))
    assert jsonld.screen_top_level_context(document["@context"], nodes) == general
    assert jsonld.screen_top_level_context(document["@context"], nodes) == general  # cached: same answer
