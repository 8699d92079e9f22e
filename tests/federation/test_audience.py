"""federation.audience: Mastodon's visibility rules, the members-only level, outgoing addressing."""

from __future__ import annotations

import pytest

from federation.audience import Visibility, address, classify
from federation.types import AS_PUBLIC, Iri

FOLLOWERS = Iri("https://peer.example/users/alice/followers")
GROUP = Iri("https://entraide.test/groups/collectif")
MEMBERS = Iri("https://entraide.test/groups/collectif/members")
GROUP_FOLLOWERS = Iri("https://entraide.test/groups/collectif/followers")
BOB = Iri("https://peer.example/users/bob")
CAROL = Iri("https://other.example/users/carol")


@pytest.mark.parametrize("public", [AS_PUBLIC, "as:Public", "Public"])
def test_public_in_to_is_public_in_every_spelling(public: str) -> None:
    assert classify([public], [FOLLOWERS], followers_iri=FOLLOWERS) is Visibility.PUBLIC


@pytest.mark.parametrize("public", [AS_PUBLIC, "as:Public", "Public"])
def test_public_in_cc_is_unlisted(public: str) -> None:
    assert classify([FOLLOWERS], [public], followers_iri=FOLLOWERS) is Visibility.UNLISTED


def test_followers_collection_without_public_is_followers_only() -> None:
    assert classify([FOLLOWERS], [BOB], followers_iri=FOLLOWERS) is Visibility.FOLLOWERS
    assert classify([BOB], [FOLLOWERS], followers_iri=FOLLOWERS) is Visibility.FOLLOWERS


def test_actors_only_is_direct() -> None:
    assert classify([BOB], [CAROL], followers_iri=FOLLOWERS) is Visibility.DIRECT
    assert classify([], [], followers_iri=FOLLOWERS) is Visibility.DIRECT


def test_members_collection_without_public_is_members_only() -> None:
    assert classify([MEMBERS], [], followers_iri=GROUP_FOLLOWERS, members_iri=MEMBERS) is Visibility.MEMBERS


def test_members_wins_over_followers_the_narrower_reading() -> None:
    # Given content addressed to both the members and the followers collections
    to, cc = [MEMBERS], [GROUP_FOLLOWERS]
    # Then it is members-only: it never shows to more people here than its author may have meant
    assert classify(to, cc, followers_iri=GROUP_FOLLOWERS, members_iri=MEMBERS) is Visibility.MEMBERS


def test_members_addressed_to_public_is_public() -> None:
    # security.md case 42: a "members-only" object addressed to Public is public, never hidden as members
    assert (
        classify([MEMBERS, "Public"], [], followers_iri=GROUP_FOLLOWERS, members_iri=MEMBERS)
        is Visibility.PUBLIC
    )


def test_unknown_followers_collection_falls_to_direct() -> None:
    assert classify([FOLLOWERS], [], followers_iri=None) is Visibility.DIRECT


def test_address_table() -> None:
    assert address(Visibility.PUBLIC, actor_followers=FOLLOWERS, group=GROUP, mentions=[BOB]) == (
        (AS_PUBLIC,),
        (FOLLOWERS, GROUP, BOB),
    )
    assert address(Visibility.UNLISTED, actor_followers=FOLLOWERS, mentions=[BOB]) == (
        (FOLLOWERS,),
        (AS_PUBLIC, BOB),
    )
    assert address(Visibility.FOLLOWERS, actor_followers=FOLLOWERS, group=GROUP) == ((FOLLOWERS,), (GROUP,))
    assert address(
        Visibility.MEMBERS, actor_followers=GROUP_FOLLOWERS, group=GROUP, group_members=MEMBERS
    ) == (
        (MEMBERS,),
        (GROUP,),
    )
    assert address(Visibility.DIRECT, actor_followers=FOLLOWERS, mentions=[BOB, CAROL, BOB]) == (
        (BOB, CAROL),
        (),
    )


def test_address_deduplicates() -> None:
    _, cc = address(
        Visibility.PUBLIC, actor_followers=GROUP_FOLLOWERS, group=GROUP, mentions=[GROUP, BOB, BOB]
    )
    assert cc == (GROUP_FOLLOWERS, GROUP, BOB)


@pytest.mark.parametrize("visibility", list(Visibility))
def test_addressing_round_trips_through_classify(visibility: Visibility) -> None:
    # Whatever we send is classified back to the same level by Mastodon's rules.
    to, cc = address(
        visibility, actor_followers=GROUP_FOLLOWERS, group=GROUP, group_members=MEMBERS, mentions=[BOB]
    )
    assert classify(to, cc, followers_iri=GROUP_FOLLOWERS, members_iri=MEMBERS) is visibility


@pytest.mark.parametrize("visibility", [Visibility.FOLLOWERS, Visibility.MEMBERS, Visibility.DIRECT])
def test_non_public_addressing_never_names_public(visibility: Visibility) -> None:
    to, cc = address(
        visibility, actor_followers=GROUP_FOLLOWERS, group=GROUP, group_members=MEMBERS, mentions=[BOB]
    )
    assert AS_PUBLIC not in to + cc


def test_members_only_never_names_a_followers_collection() -> None:
    to, cc = address(Visibility.MEMBERS, actor_followers=GROUP_FOLLOWERS, group=GROUP, group_members=MEMBERS)
    assert GROUP_FOLLOWERS not in to + cc


def test_members_only_needs_the_members_collection() -> None:
    with pytest.raises(ValueError, match="members"):
        address(Visibility.MEMBERS, actor_followers=GROUP_FOLLOWERS, group=GROUP)


def test_direct_needs_a_mention() -> None:
    with pytest.raises(ValueError, match="mention"):
        address(Visibility.DIRECT, actor_followers=FOLLOWERS)
