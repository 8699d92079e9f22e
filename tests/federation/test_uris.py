"""federation.uris: the one table that both mints and recognises every local IRI."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.types import Iri
from federation.uris import LocalActorRef, UriScheme, is_valid_handle, normalized_origin

ORIGIN = "https://entraide.test"
uris = UriScheme(ORIGIN)


# --- building and parsing round trips ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["group", "person"])
def test_an_actor_iri_parses_back_to_its_kind_and_handle(kind: str) -> None:
    """What ``actor()`` mints, ``local_actor_ref()`` recognises, with no sub-resource."""
    iri = uris.actor(kind, "collectif")
    assert uris.local_actor_ref(iri) == LocalActorRef(kind, "collectif", None)


def test_group_and_person_iris_use_their_own_paths() -> None:
    """Groups live under /groups/ and people under /users/ (as Mastodon and Lemmy peers expect)."""
    assert uris.group("collectif") == "https://entraide.test/groups/collectif"
    assert uris.person("alice") == "https://entraide.test/users/alice"


@pytest.mark.parametrize(
    ("build", "part"),
    [
        (uris.inbox, "inbox"),
        (uris.outbox, "outbox"),
        (uris.followers, "followers"),
        (uris.following, "following"),
        (uris.members, "members"),
        (uris.featured, "featured"),
    ],
)
def test_every_actor_collection_parses_back_to_its_part(build: Callable[[Iri], Iri], part: str) -> None:
    """Each collection IRI of a group names the group and the collection."""
    group = uris.group("collectif")
    iri = build(group)
    assert iri == f"{group}/{part}"
    assert uris.local_actor_ref(iri) == LocalActorRef("group", "collectif", part)


def test_person_collections_parse_as_the_person() -> None:
    person = uris.person("alice")
    assert uris.local_actor_ref(uris.followers(person)) == LocalActorRef("person", "alice", "followers")


def test_key_ids_are_fragments_of_the_actor() -> None:
    """``actor#main-key`` is the RSA keyId shape Mastodon, Lemmy and Mobilizon expect."""
    group = uris.group("collectif")
    assert uris.main_key(group) == f"{group}#main-key"
    assert uris.ed25519_key(group) == f"{group}#ed25519-key"


def test_node_level_iris() -> None:
    assert uris.application_actor() == "https://entraide.test/actor"
    assert uris.shared_inbox() == "https://entraide.test/inbox"
    assert uris.object("abc") == "https://entraide.test/objects/abc"
    assert uris.activity("abc") == "https://entraide.test/activities/abc"


# --- origin and port ----------------------------------------------------------------------------


def test_a_port_is_kept_in_the_host_and_in_every_iri() -> None:
    """A node on a non-default port is ``host:port`` in handles and in IRIs."""
    scheme = UriScheme("http://localhost:8080")
    assert scheme.host == "localhost:8080"
    group = scheme.group("demo")
    assert group == "http://localhost:8080/groups/demo"
    assert scheme.local_actor_ref(group) == LocalActorRef("group", "demo", None)


def test_the_origin_is_normalised_to_lower_case_without_trailing_slash() -> None:
    scheme = UriScheme("HTTPS://Entraide.TEST:8443/")
    assert scheme.origin == "https://entraide.test:8443"
    assert scheme.host == "entraide.test:8443"


@pytest.mark.parametrize(
    "origin",
    [
        "entraide.test",  # missing scheme
        "entraide.test:8080",  # parsed as scheme "entraide.test"
        "//entraide.test",  # scheme-relative
        "https://",  # no host
        "ftp://entraide.test",  # not http(s)
        "https://entraide.test/base",  # a path
        "https://entraide.test/base/",
    ],
)
def test_an_origin_that_is_not_scheme_host_port_is_refused(origin: str) -> None:
    """Every IRI is minted from the origin, so a bad one must fail at start-up."""
    with pytest.raises(ValueError, match="origin must be"):
        UriScheme(origin)


# --- what local_actor_ref refuses --------------------------------------------------------------------


@pytest.mark.parametrize(
    "iri",
    [
        "https://elsewhere.example/groups/collectif",  # another host, same path
        "http://entraide.test/groups/collectif",  # same host, other scheme
        "https://entraide.test:8443/groups/collectif",  # same host, other port
        "https://entraide.test.evil.example/groups/collectif",  # our host as a prefix
        "https://entraide.test@evil.example/groups/collectif",  # our host as userinfo
    ],
)
def test_local_actor_ref_refuses_iris_of_another_origin(iri: str) -> None:
    """A foreign IRI with a local-looking path is not one of our actors."""
    assert uris.local_actor_ref(iri) is None
    assert not uris.is_local(iri)


@pytest.mark.parametrize(
    "iri",
    [
        "https://entraide.test/groups/collectif?page=true",
        "https://entraide.test/groups/collectif/outbox?page=true",
        "https://entraide.test/groups/collectif#main-key",
        "https://entraide.test/groups/collectif/",
        "https://entraide.test/groups/collectif/likes",
        "https://entraide.test/groups/collectif/inbox/extra",
        "https://entraide.test/groups/",
        "https://entraide.test/things/collectif",
        "https://entraide.test/actor",
        "https://entraide.test/groups/collectif%0A",
    ],
)
def test_local_actor_ref_refuses_queries_fragments_and_unknown_parts(iri: str) -> None:
    """Only the bare actor IRI or one of its six collections is an actor reference."""
    assert uris.local_actor_ref(iri) is None


@pytest.mark.parametrize(
    "handle",
    [
        "Collectif",  # upper case
        "a" * 64,  # one over the limit
        "-collectif",  # leading dash
        "_collectif",  # leading underscore
        "collectïf",  # unicode letter
        "col lectif",
        "col.lectif",
        "",
    ],
)
def test_bad_handles_are_neither_valid_nor_parsed(handle: str) -> None:
    assert not is_valid_handle(handle)
    assert uris.local_actor_ref(f"{ORIGIN}/groups/{handle}") is None


def test_handle_with_a_trailing_newline_is_invalid() -> None:
    """Regression: ``$`` in the pattern used to accept ``"demo\\n"`` as a handle."""
    assert not is_valid_handle("demo\n")


@pytest.mark.parametrize("handle", ["a", "0", "collectif-sante_2", "a" * 63])
def test_good_handles_are_valid(handle: str) -> None:
    assert is_valid_handle(handle)
    assert uris.local_actor_ref(uris.group(handle)) == LocalActorRef("group", handle, None)


# --- is_local --------------------------------------------------------------------------------


def test_is_local_ignores_case_in_the_host() -> None:
    """DNS names are case-insensitive: our own IRI with an upper-case host is still ours."""
    iri = Iri("https://ENTRAIDE.Test/groups/collectif")
    assert uris.is_local(iri)
    assert uris.local_actor_ref(iri) == LocalActorRef("group", "collectif", None)


def test_is_local_is_true_for_any_path_on_our_origin() -> None:
    assert uris.is_local("https://entraide.test/objects/42")
    assert uris.is_local("https://entraide.test")
    assert not uris.is_local("https://peer.example/users/alice")
    assert not uris.is_local("not an iri")


# --- normalized_origin --------------------------------------------------------------------------


def _reference_origin_guard(iri: str) -> bool:
    """The check as first written: no whitespace and no control character anywhere."""
    return not any(c.isspace() or not c.isprintable() for c in iri)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_normalized_origin_refuses_exactly_whitespace_and_control_characters(tail: str) -> None:
    iri = f"https://peer.example/{tail}"
    assert (normalized_origin(iri) is not None) == _reference_origin_guard(iri)
    assert normalized_origin(iri) == normalized_origin(iri)  # memoised answer, same answer


@pytest.mark.parametrize(
    "char",
    ["\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u2000", "\u2028", "\u3000", "\x00"],
)
def test_normalized_origin_refuses_every_kind_of_whitespace(char: str) -> None:
    assert normalized_origin(f"https://peer.example/a{char}b") is None
    assert normalized_origin(f"https://peer{char}.example/") is None


def test_normalized_origin_of_long_iris_is_computed_the_same_way() -> None:
    long_path = "a" * 5000
    assert normalized_origin(f"https://Peer.Example.:443/{long_path}") == "https://peer.example"
    assert normalized_origin(f"http://peer.example:8080/{long_path}") == "http://peer.example:8080"
    assert normalized_origin(f"https://peer.example/{long_path} x") is None
