"""The pinned JSON-LD contexts load offline, are indexed, and our own context types every term."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pyld import jsonld as pyld

import schemas
from federation import jsonld
from tests.schemas.helpers import CONTEXTS_DIR, forbid_network, load_example, load_json

ENTRAIDE_CONTEXT = "https://w3id.org/entraide/v1"
AS = "https://www.w3.org/ns/activitystreams#"
ENTRAIDE_NS = "https://w3id.org/entraide/ns#"


def _index() -> dict[str, str]:
    index = load_json(CONTEXTS_DIR / "index.json")
    assert isinstance(index, dict)
    return index


def _expand_collecting_drops(document: Any) -> tuple[list[Any], list[str]]:
    """Expand and list the terms JSON-LD would lose.

    Two ways to lose a term: pyld drops it (no mapping at all), or the AS2 context's
    ``"@vocab": "_:"`` turns it into a blank-node property, which no RDF consumer keeps and no
    signature covers meaningfully. Both count.
    """
    dropped: list[str] = []
    expanded = pyld.expand(
        document,
        {"documentLoader": jsonld.load_document},
        on_property_dropped=lambda term: dropped.append(str(term)),
    )
    pending: list[Any] = [expanded]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, dict):
            dropped.extend(key for key in node if key.startswith("_:"))
            pending.extend(node.values())
    return expanded, dropped


def _term_definitions(context: Any) -> dict[str, Any]:
    """Flatten the term definitions of a context value (object or list), scoped ones included."""
    found: dict[str, Any] = {}
    pending = [context]
    while pending:
        current = pending.pop()
        if isinstance(current, list):
            pending.extend(current)
        elif isinstance(current, dict):
            for term, definition in current.items():
                if term.startswith("@"):
                    continue
                found.setdefault(term, definition)
                if isinstance(definition, dict) and "@context" in definition:
                    pending.append(definition["@context"])
    return found


def test_every_context_file_is_indexed_and_every_index_entry_has_a_file() -> None:
    files = {path.name for path in CONTEXTS_DIR.glob("*.jsonld")}
    assert set(_index().values()) == files


@pytest.mark.parametrize("path", sorted(CONTEXTS_DIR.glob("*.jsonld")), ids=lambda p: p.name)
def test_every_context_file_is_a_json_ld_context_document(path: Any) -> None:
    document = json.loads(path.read_bytes())
    assert isinstance(document, dict)
    assert set(document) == {"@context"}
    assert isinstance(document["@context"], (dict, list))


def test_the_required_contexts_and_the_variants_peers_send_are_preloaded() -> None:
    assert {
        "https://www.w3.org/ns/activitystreams",
        "http://www.w3.org/ns/activitystreams",
        "https://www.w3.org/ns/activitystreams.jsonld",
        "https://w3id.org/security/v1",
        "https://w3id.org/security/data-integrity/v1",
        "https://w3id.org/security/data-integrity/v2",
        "https://w3id.org/security/multikey/v1",
        "https://www.w3.org/ns/did/v1",
        "https://join-lemmy.org/context.json",
        "https://litepub.social/litepub/context.jsonld",
        "http://joinmastodon.org/ns",
        ENTRAIDE_CONTEXT,
    } <= schemas.context_iris()


@pytest.mark.parametrize("iri", sorted(_index()))
def test_every_preloaded_context_resolves_offline(iri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = forbid_network(monkeypatch)
    remote = jsonld.load_document(iri)
    assert remote["documentUrl"] == iri
    assert remote["document"] == schemas.load_context(iri)
    # pyld can actually process it (nested contexts included, e.g. Lemmy's imports security v1).
    expanded = jsonld.expand(
        {"@context": iri, "@id": "https://peer.example/x", "@type": "https://peer.example/T"}
    )
    assert expanded[0]["@id"] == "https://peer.example/x"
    assert attempts == []


def test_load_context_answers_only_for_listed_iris_and_returns_copies() -> None:
    assert schemas.load_context("https://evil.example/context.jsonld") is None
    assert schemas.load_context("https://www.w3.org/ns/activitystreams#") is None  # exact match only
    first = schemas.load_context(ENTRAIDE_CONTEXT)
    assert first is not None
    first["@context"]["severity"] = "mutated"
    second = schemas.load_context(ENTRAIDE_CONTEXT)
    assert second is not None and second["@context"]["severity"] != "mutated"


def test_every_entraide_term_has_an_explicit_iri_and_type() -> None:
    # docs/security.md case 22: terms a processor cannot map are dropped, and so not signed.
    document = schemas.load_context(ENTRAIDE_CONTEXT)
    assert document is not None
    context = document["@context"]
    prefixes = {"entraide": ENTRAIDE_NS, "xsd": "http://www.w3.org/2001/XMLSchema#"}
    for term, definition in context.items():
        if term in prefixes:
            assert definition == prefixes[term]
            continue
        assert isinstance(definition, dict), f"{term} must use an expanded definition"
        assert "@id" in definition, term
        if term[0].islower():  # properties carry a type; classes (Alert, ...) are just IRIs
            assert "@type" in definition, f"{term} has no explicit @type"


def test_an_alert_using_every_entraide_term_expands_without_dropping_anything() -> None:
    alert = {
        "@context": ["https://www.w3.org/ns/activitystreams", ENTRAIDE_CONTEXT],
        "id": "https://entraide.example/alerts/1",
        "type": "Note",
        "entraideKind": "Alert",
        "severity": "critical",
        "category": "drug-shortage",
        "area": "Bretagne",
        "areaCode": "FR-BRE",
        "validUntil": "2025-03-01T00:00:00Z",
        "alertStatus": "active",
        "supersedes": "https://entraide.example/alerts/0",
        "supersededBy": "https://entraide.example/alerts/2",
        "eligibility": "members",
        "proposalStatus": "open",
        "endorsements": "https://entraide.example/proposals/1/endorsements",
        "visibility": "public",
        "members": "https://entraide.example/associations/collectif/members",
        "role": "moderator",
        "license": "https://creativecommons.org/licenses/by-sa/4.0/",
        "history": "https://entraide.example/alerts/1/history",
        "postingRestrictedToMods": False,
        "content": "<p>Rupture de stock</p>",
    }
    expanded, dropped = _expand_collecting_drops(alert)
    assert dropped == []
    node = expanded[0]
    assert node[ENTRAIDE_NS + "kind"] == [{"@id": ENTRAIDE_NS + "Alert"}]
    assert node[ENTRAIDE_NS + "validUntil"][0]["@type"] == "http://www.w3.org/2001/XMLSchema#dateTime"
    assert node[ENTRAIDE_NS + "supersedes"] == [{"@id": "https://entraide.example/alerts/0"}]
    assert node["http://schema.org/license"] == [{"@id": "https://creativecommons.org/licenses/by-sa/4.0/"}]
    assert node["https://w3id.org/fep/bad1/history"] == [{"@id": "https://entraide.example/alerts/1/history"}]


@pytest.mark.parametrize("name", ["group", "person", "application"])
def test_our_golden_actors_define_every_term_they_use(name: str) -> None:
    _expanded, dropped = _expand_collecting_drops(load_example(name))
    assert dropped == []


def test_an_undefined_term_is_caught_even_when_as2_vocab_swallows_it() -> None:
    # Without DID v1 (or an inline definition), assertionMethod becomes "_:assertionMethod".
    group = load_example("group")
    group["@context"].remove("https://www.w3.org/ns/did/v1")
    _expanded, dropped = _expand_collecting_drops(group)
    assert dropped == ["_:assertionMethod"]


def test_no_preloaded_context_aliases_a_restructuring_keyword() -> None:
    # has_forbidden_keywords() inspects inline contexts only; this is why that is enough.
    for iri in sorted(schemas.context_iris()):
        document = schemas.load_context(iri)
        assert document is not None
        for term, definition in _term_definitions(document["@context"]).items():
            target = definition.get("@id") if isinstance(definition, dict) else definition
            assert target not in jsonld.FORBIDDEN_KEYWORDS, (iri, term)
            if isinstance(definition, dict):
                assert "@reverse" not in definition, (iri, term)
                container = definition.get("@container", [])
                containers = [container] if isinstance(container, str) else container
                if "@graph" in containers:
                    assert term == "proof", (iri, term)  # Data Integrity proofs (FEP-8b32)


def test_the_protected_terms_keep_their_pinned_activitystreams_and_security_meaning() -> None:
    pinned = jsonld._pinned_terms()
    assert pinned["actor"].iri == AS + "actor"
    assert pinned["inbox"].iri == "http://www.w3.org/ns/ldp#inbox"
    assert pinned["orderedItems"].container == ("@list",)
    assert pinned["Follow"].iri == AS + "Follow"
    assert pinned["publicKey"].iri == "https://w3id.org/security#publicKey"
    assert pinned["owner"].iri == "https://w3id.org/security#owner"
    assert pinned["assertionMethod"].iri == "https://w3id.org/security#assertionMethod"
    assert set(jsonld.PROTECTED_TERMS) <= set(pinned)
