"""The JSON Schemas in ``schemas/`` are valid, offline, and say what we promise.

Lenient inbound schemas (``activitystreams/*``) pin ids, types and Mastodon's size limits;
strict schemas (``entraide/*``) are the contract for what our node publishes.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing.exceptions import Unresolvable

import schemas
from federation import validation
from federation.errors import InvalidDocument
from tests.schemas.helpers import REPO_ROOT, load_example, load_payload

SCHEMA_ID_PREFIX = "https://w3id.org/entraide/schemas/"
STRICT = [
    "entraide/group",
    "entraide/person",
    "entraide/application",
    "entraide/ordered-collection",
    "entraide/ordered-collection-page",
    "entraide/event",
]


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _invalid_detail(document: Any, schema_name: str) -> str:
    with pytest.raises(InvalidDocument) as caught:
        validation.validate(document, schema_name)
    return caught.value.detail


# -- the files themselves ---------------------------------------------------------------------


def test_the_expected_schemas_are_shipped() -> None:
    names = set(schemas.schema_names())
    assert {
        "activitystreams/actor",
        "activitystreams/activity",
        "activitystreams/object",
        "activitystreams/collection",
        "activitystreams/collection-page",
        "activitystreams/key",
        "activitystreams/webfinger",
        "activitystreams/nodeinfo",
        "activitystreams/nodeinfo-discovery",
        *STRICT,
    } <= names
    assert list(schemas.schema_names()) == sorted(names)


@pytest.mark.parametrize("name", schemas.schema_names())
def test_every_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = schemas.load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("name", schemas.schema_names())
def test_every_schema_has_a_stable_id_matching_its_path(name: str) -> None:
    assert schemas.load_schema(name)["$id"] == f"{SCHEMA_ID_PREFIX}{name}.schema.json"


@pytest.mark.parametrize("name", schemas.schema_names())
def test_every_ref_resolves_inside_the_registry(name: str) -> None:
    schema = schemas.load_schema(name)
    resolver = validation.registry().resolver(base_uri=schema["$id"])
    for ref in _refs(schema):
        assert not ref.startswith(("http://", "https://")), f"{name}: use relative $refs ({ref})"
        resolver.lookup(ref)  # raises Unresolvable if it points outside schemas/


def test_the_registry_never_retrieves_anything() -> None:
    resolver = validation.registry().resolver()
    with pytest.raises(Unresolvable):
        resolver.lookup("https://json-schema.example/remote.schema.json")


def test_load_schema_returns_a_copy_the_caller_may_mutate() -> None:
    first = schemas.load_schema("activitystreams/actor")
    first["required"].append("mutated")
    assert "mutated" not in schemas.load_schema("activitystreams/actor")["required"]


def test_unknown_schema_names_raise_key_error() -> None:
    with pytest.raises(KeyError):
        schemas.load_schema("activitystreams/nope")
    with pytest.raises(KeyError):
        validation.validate({}, "nope")


def test_importing_schemas_reads_no_file() -> None:
    # Nothing at import time (docs/architecture.md R7): the caches are empty until first use.
    code = (
        "import schemas\n"
        "assert schemas._context_index.cache_info().currsize == 0\n"
        "assert schemas._schema_names.cache_info().currsize == 0\n"
        "assert schemas._schema.cache_info().currsize == 0\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


# -- error messages ---------------------------------------------------------------------------


def test_an_invalid_document_names_the_json_path_of_the_error() -> None:
    actor = load_payload("mastodon/actor.json")
    actor["publicKey"]["owner"] = "x"
    with pytest.raises(InvalidDocument) as caught:
        validation.validate(actor, "activitystreams/actor")
    assert caught.value.detail == "publicKey.owner: 'x' is not an absolute http(s) IRI"
    assert caught.value.code == "invalid_document"
    assert caught.value.context == {
        "schema": "activitystreams/actor",
        "path": "publicKey.owner",
        "keyword": "pattern",
    }


def test_a_missing_required_property_is_reported_at_the_root() -> None:
    actor = load_payload("mastodon/actor.json")
    del actor["inbox"]
    assert _invalid_detail(actor, "activitystreams/actor") == "<root>: 'inbox' is a required property"


def test_array_positions_appear_in_the_path() -> None:
    page = load_example("ordered-collection-page")
    page["orderedItems"][0]["id"] = "ftp://elsewhere.example/1"
    assert _invalid_detail(page, "entraide/ordered-collection-page").startswith("orderedItems[0]")


def test_error_messages_are_capped_because_they_quote_attacker_input() -> None:
    actor = load_payload("mastodon/actor.json")
    actor["id"] = "not an iri " + "A" * 5000
    detail = _invalid_detail(actor, "activitystreams/actor")
    assert detail.startswith("id: ")
    assert len(detail) <= 300


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("2025-01-15T10:00:00Z", True),
        ("2025-01-15T10:00:00.123456+02:00", True),
        ("2025-01-15T10:00:00", False),  # no time zone
        ("2025-01-15 10:00:00Z", False),  # RFC 3339 wants the T
        ("yesterday", False),
    ],
)
def test_the_date_time_format_is_checked_without_optional_packages(value: str, valid: bool) -> None:
    assert validation.FORMAT_CHECKER.conforms(value, "date-time") is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("acct:alice@peer.example", True),
        ("https://peer.example/u/alice", True),
        ("alice", False),
        ("a b:c", False),
    ],
)
def test_the_uri_format_is_checked_without_rfc3987(value: str, valid: bool) -> None:
    assert validation.FORMAT_CHECKER.conforms(value, "uri") is valid


# -- lenient inbound schemas: Mastodon's size-limits table (security.md case 28) --------------


def test_preferred_username_longer_than_2048_is_rejected() -> None:
    actor = load_payload("mastodon/actor.json")
    actor["preferredUsername"] = "a" * 2049
    assert _invalid_detail(actor, "activitystreams/actor").startswith("preferredUsername:")


def test_more_than_ten_public_keys_are_rejected() -> None:
    actor = load_payload("mastodon/actor.json")
    actor["publicKey"] = [copy.deepcopy(actor["publicKey"]) for _ in range(11)]
    with pytest.raises(InvalidDocument):
        validation.validate(actor, "activitystreams/actor")
    actor["publicKey"] = actor["publicKey"][:10]
    validation.validate(actor, "activitystreams/actor")


def test_a_summary_over_20_kb_and_a_name_over_2048_are_rejected() -> None:
    actor = load_payload("mastodon/actor.json")
    actor["summary"] = "x" * 20481
    assert _invalid_detail(actor, "activitystreams/actor").startswith("summary:")
    actor = load_payload("mastodon/actor.json")
    actor["name"] = "x" * 2049
    assert _invalid_detail(actor, "activitystreams/actor").startswith("name:")


def test_a_question_with_more_than_500_options_is_rejected() -> None:
    question = load_payload("mastodon/question.json")
    question["oneOf"] = [{"type": "Note", "name": f"option {i}"} for i in range(501)]
    assert _invalid_detail(question, "activitystreams/object").startswith("oneOf:")


def test_an_actor_must_have_an_actor_type() -> None:
    actor = load_payload("mastodon/actor.json")
    actor["type"] = "Note"
    with pytest.raises(InvalidDocument):
        validation.validate(actor, "activitystreams/actor")
    actor["type"] = ["Person", "foaf:Agent"]
    validation.validate(actor, "activitystreams/actor")


def test_a_multikey_in_assertion_method_must_be_complete() -> None:
    actor = load_payload("fedify/actor.json")
    del actor["assertionMethod"][0]["publicKeyMultibase"]
    with pytest.raises(InvalidDocument):
        validation.validate(actor, "activitystreams/actor")


@pytest.mark.parametrize(
    "bad_id", ["/users/alice", "urn:uuid:1", "javascript:alert(1)", "https://", "https:// x"]
)
def test_ids_must_be_absolute_http_iris(bad_id: str) -> None:
    follow = load_payload("mastodon/follow.json")
    follow["id"] = bad_id
    assert _invalid_detail(follow, "activitystreams/activity").startswith("id:")


def test_webfinger_and_nodeinfo_documents() -> None:
    jrd = {
        "subject": "acct:alice@peer.example",
        "aliases": ["https://peer.example/@alice"],
        "links": [
            {"rel": "self", "type": "application/activity+json", "href": "https://peer.example/users/alice"},
            {
                "rel": "http://ostatus.org/schema/1.0/subscribe",
                "template": "https://peer.example/authorize?uri={uri}",
            },
        ],
    }
    validation.validate(jrd, "activitystreams/webfinger")
    with pytest.raises(InvalidDocument):
        validation.validate({"links": []}, "activitystreams/webfinger")
    discovery = {
        "links": [
            {
                "rel": "http://nodeinfo.diaspora.software/ns/schema/2.1",
                "href": "https://peer.example/nodeinfo/2.1",
            }
        ]
    }
    validation.validate(discovery, "activitystreams/nodeinfo-discovery")
    nodeinfo = {
        "version": "2.1",
        "software": {"name": "lemmy", "version": "0.19.5"},
        "protocols": ["activitypub"],
        "services": {"inbound": [], "outbound": []},
        "openRegistrations": True,
        "usage": {"users": {"total": 10, "activeHalfyear": 5, "activeMonth": 2}, "localPosts": 7},
        "metadata": {},
    }
    validation.validate(nodeinfo, "activitystreams/nodeinfo")
    nodeinfo["version"] = "3.0"
    with pytest.raises(InvalidDocument):
        validation.validate(nodeinfo, "activitystreams/nodeinfo")


# -- strict schemas: the contract for what we publish -----------------------------------------


@pytest.mark.parametrize("name", STRICT)
def test_our_golden_examples_satisfy_the_strict_contract(name: str) -> None:
    validation.validate(load_example(name.removeprefix("entraide/")), name)


@pytest.mark.parametrize(
    "missing",
    [
        "@context",
        "preferredUsername",
        "inbox",
        "outbox",
        "followers",
        "following",
        "publicKey",
        "endpoints",
        "assertionMethod",
        "url",
        "name",
        "summary",
        "published",
        "manuallyApprovesFollowers",
        "discoverable",
        "indexable",
        "members",
        "featured",
    ],
)
def test_a_group_missing_a_required_property_is_refused(missing: str) -> None:
    group = load_example("group")
    del group[missing]
    assert _invalid_detail(group, "entraide/group") == f"<root>: '{missing}' is a required property"


def test_our_actors_have_no_unexpected_properties() -> None:
    group = load_example("group")
    group["email"] = "admin@collectif.example"  # e.g. a private field leaking into the render
    with pytest.raises(InvalidDocument):
        validation.validate(group, "entraide/group")


def test_group_only_properties_are_refused_on_a_person() -> None:
    person = load_example("person")
    person["members"] = "https://entraide.example/members/alice/members"
    with pytest.raises(InvalidDocument):
        validation.validate(person, "entraide/person")


def test_the_public_key_must_be_a_complete_pem_key() -> None:
    group = load_example("group")
    del group["publicKey"]["owner"]
    assert _invalid_detail(group, "entraide/group").startswith("publicKey:")
    group = load_example("group")
    pkcs1 = "-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n"
    group["publicKey"]["publicKeyPem"] = pkcs1
    assert _invalid_detail(group, "entraide/group").startswith("publicKey.publicKeyPem:")


def test_assertion_method_needs_at_least_one_multikey() -> None:
    group = load_example("group")
    group["assertionMethod"] = []
    with pytest.raises(InvalidDocument):
        validation.validate(group, "entraide/group")
    group["assertionMethod"] = ["https://entraide.example/associations/collectif#ed25519-key"]
    with pytest.raises(InvalidDocument):
        validation.validate(group, "entraide/group")


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda ctx: ctx.remove("https://w3id.org/security/v1"), "publicKey would be undefined"),
        (lambda ctx: ctx.remove("https://w3id.org/security/multikey/v1"), "Multikey would be undefined"),
        (lambda ctx: ctx.remove("https://www.w3.org/ns/did/v1"), "assertionMethod would be undefined"),
        (lambda ctx: ctx[4].pop("indexable"), "Mastodon's indexable would be undefined"),
        (lambda ctx: ctx.pop(), "members would be undefined"),
        (lambda ctx: ctx.insert(0, ctx.pop(0) + "#"), "AS2 must come first"),
        (lambda ctx: ctx.append("https://evil.example/ctx"), "only contexts peers can load"),
    ],
)
def test_the_context_of_our_actors_defines_every_term_they_use(edit: Any, why: str) -> None:
    # docs/security.md case 22: a JSON-LD processor drops terms its context does not define.
    group = load_example("group")
    edit(group["@context"])
    with pytest.raises(InvalidDocument):
        validation.validate(group, "entraide/group")


def test_dates_we_publish_are_rfc3339_utc() -> None:
    group = load_example("group")
    group["published"] = "2025-01-15T11:00:00+01:00"
    with pytest.raises(InvalidDocument):
        validation.validate(group, "entraide/group")
    group["published"] = "15/01/2025"
    with pytest.raises(InvalidDocument):
        validation.validate(group, "entraide/group")


def test_a_paged_collection_does_not_also_inline_its_items() -> None:
    collection = load_example("ordered-collection")
    collection["orderedItems"] = []
    with pytest.raises(InvalidDocument):
        validation.validate(collection, "entraide/ordered-collection")
    del collection["first"], collection["last"]
    validation.validate(collection, "entraide/ordered-collection")


def test_a_private_collection_may_show_only_its_size() -> None:
    collection = load_example("ordered-collection")
    del collection["first"], collection["last"]
    validation.validate(collection, "entraide/ordered-collection")


def test_a_page_must_say_which_collection_it_belongs_to() -> None:
    page = load_example("ordered-collection-page")
    del page["partOf"]
    detail = _invalid_detail(page, "entraide/ordered-collection-page")
    assert detail == "<root>: 'partOf' is a required property"


def test_a_pathologically_nested_document_is_invalid_not_a_crash() -> None:
    deep: Any = "https://peer.example/o/1"
    for _ in range(5000):
        deep = {"id": "https://peer.example/o/1", "type": "Note", "inReplyTo": deep}
    with pytest.raises(InvalidDocument):
        validation.validate(deep, "activitystreams/object")
