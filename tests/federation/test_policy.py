"""Peer policy: open network with a blocklist, or a closed allowlist (security.md cases 36, 47)."""

from __future__ import annotations

import pytest

from federation.errors import PeerNotAllowed
from federation.policy import PeerPolicy


def test_open_network_allows_everyone_but_blocked_domains_and_their_subdomains() -> None:
    """A blocked domain also blocks every subdomain, on any port."""
    policy = PeerPolicy.open_network(blocked=["evil.example"])
    assert policy.allows("peer.example")
    assert not policy.allows("evil.example")
    assert not policy.allows("a.b.evil.example")
    assert not policy.allows("evil.example:8443")
    # A different registrable name that merely ends with the same characters is not blocked.
    assert policy.allows("notevil.example")


@pytest.mark.parametrize("spelling", ["EVIL.EXAMPLE.", "Evil.Example:443", "evil.example."])
def test_sec_36_non_canonical_spellings_cannot_dodge_a_block(spelling: str) -> None:
    """Hosts are canonicalised before matching, so case and trailing dots change nothing."""
    policy = PeerPolicy.open_network(blocked=["evil.example"])
    assert not policy.allows(spelling)


def test_blocklist_entries_are_canonicalised() -> None:
    """An entry written in upper case with a trailing dot still blocks the canonical host."""
    policy = PeerPolicy.open_network(blocked=["EVIL.Example."])
    assert not policy.allows("evil.example")


def test_blocked_ip_literal_is_blocked_in_any_spelling() -> None:
    """A blocked address cannot be reached through its decimal or octal spelling (case 25)."""
    policy = PeerPolicy.open_network(blocked=["10.0.0.5"])
    assert not policy.allows("167772165")
    assert not policy.allows("012.0.0.5")
    assert policy.allows("10.0.0.6")


def test_sec_47_closed_network_matches_exact_hosts_only() -> None:
    """x.permitted.example is refused when only permitted.example is listed."""
    policy = PeerPolicy.closed_network(allowed=["permitted.example"])
    assert policy.allows("permitted.example")
    assert policy.allows("PERMITTED.example.")
    assert not policy.allows("x.permitted.example")
    assert not policy.allows("other.example")
    assert not policy.allows("permitted.example.evil.example")


def test_closed_network_wildcard_allows_subdomains_not_the_apex() -> None:
    """``*.univ.example`` covers subdomains; the apex must be listed on its own."""
    policy = PeerPolicy.closed_network(allowed=["*.univ.example"])
    assert policy.allows("a.univ.example")
    assert policy.allows("b.a.univ.example")
    assert not policy.allows("univ.example")
    assert not policy.allows("evilniv.example")


def test_closed_network_blocklist_applies_on_top() -> None:
    """A blocked subdomain stays blocked inside an allowed wildcard."""
    policy = PeerPolicy.closed_network(allowed=["*.univ.example"], blocked=["spam.univ.example"])
    assert policy.allows("ok.univ.example")
    assert not policy.allows("spam.univ.example")
    assert not policy.allows("x.spam.univ.example")


def test_entries_with_ports_match_that_port_only() -> None:
    """Several nodes on one host (loopback tests) are told apart by port."""
    policy = PeerPolicy.closed_network(allowed=["localhost:8001"])
    assert policy.allows("localhost:8001")
    assert not policy.allows("localhost:8002")
    assert not policy.allows("localhost")


def test_entry_without_port_matches_every_port() -> None:
    """Allowing a host allows all its ports."""
    policy = PeerPolicy.closed_network(allowed=["peer.example"])
    assert policy.allows("peer.example:8443")


def test_sec_36_homoglyph_is_not_the_allowed_peer() -> None:
    """A Cyrillic look-alike of an allowed host is a different host."""
    policy = PeerPolicy.closed_network(allowed=["asso-diabete.org"])
    assert not policy.allows("\u0430sso-diabete.org")


@pytest.mark.parametrize("host", ["peer.example/x", "user@peer.example", "", "peer..example", "a b"])
def test_malformed_hosts_are_refused(host: str) -> None:
    """A host the policy cannot canonicalise is never allowed, even in an open network."""
    assert not PeerPolicy.open_network().allows(host)


def test_check_raises_peer_not_allowed_with_the_host() -> None:
    """check() is the raising form of allows()."""
    policy = PeerPolicy.open_network(blocked=["evil.example"])
    policy.check("peer.example")
    with pytest.raises(PeerNotAllowed) as info:
        policy.check("sub.evil.example")
    assert info.value.code == "peer_not_allowed"
    assert info.value.context["host"] == "sub.evil.example"


@pytest.mark.parametrize(
    "build",
    [
        lambda: PeerPolicy.open_network(blocked=["*.evil.example"]),  # blocks cover subdomains already
        lambda: PeerPolicy.open_network(blocked=["evil.example/x"]),
        lambda: PeerPolicy.closed_network(allowed=["peer.example:443"]),  # could never match
        lambda: PeerPolicy.closed_network(allowed=["*.10.0.0.1"]),
        lambda: PeerPolicy.closed_network(allowed="peer.example"),  # a str, not a list of hosts
        lambda: PeerPolicy(mode="open", allowed=PeerPolicy.closed_network(["a.example"]).allowed),
        lambda: PeerPolicy(mode="sideways"),  # type: ignore[arg-type]
    ],
)
def test_misconfiguration_fails_at_construction(build: object) -> None:
    """Bad entries are refused when the policy is built, not silently ignored later."""
    assert callable(build)
    with pytest.raises((ValueError, TypeError)):
        build()


def test_policy_is_immutable() -> None:
    """PeerPolicy is a frozen value."""
    policy = PeerPolicy.open_network()
    with pytest.raises(AttributeError):
        policy.mode = "allowlist"  # type: ignore[misc]


def test_actor_blocks_refuse_one_actor_and_not_its_host() -> None:
    from federation.errors import PeerNotAllowed

    policy = PeerPolicy.open_network(["evil.example"], blocked_actors=["https://peer.example/users/troll"])
    assert not policy.allows_actor("https://peer.example/users/troll")
    assert policy.allows_actor("https://peer.example/users/alice")
    assert not policy.allows_actor("https://a.evil.example/users/x")
    assert not policy.allows_actor("not an iri")
    with pytest.raises(PeerNotAllowed):
        policy.check_actor("https://peer.example/users/troll")


def test_a_live_policy_is_replaced_whole() -> None:
    from federation.policy import LivePolicy

    live = LivePolicy(PeerPolicy.open_network())
    assert live.allows("evil.example") and live.version == 0
    live.replace(PeerPolicy.open_network(["evil.example"]), 3)
    assert not live.allows("evil.example") and not live.allows_actor("https://evil.example/u")
    assert live.version == 3
    assert live.current.blocked


def test_a_live_policy_reads_a_host_once_until_it_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    from federation import policy as policy_module
    from federation.policy import LivePolicy

    live = LivePolicy(
        PeerPolicy.closed_network(["peer.example"], blocked_actors=["https://peer.example/u/troll"])
    )
    calls: list[str] = []
    canonical = policy_module.canonical_host
    monkeypatch.setattr(policy_module, "canonical_host", lambda host: calls.append(host) or canonical(host))
    for _ in range(3):
        live.check("peer.example")
        live.check_actor("https://peer.example/u/alice")
        with pytest.raises(PeerNotAllowed, match=r"other\.example"):
            live.check("other.example")
        with pytest.raises(PeerNotAllowed):
            live.check_actor("https://peer.example/u/troll")  # blocked one by one, whatever its host
    assert calls.count("peer.example") == 1  # (a refusal is worded by the policy itself, each time)
    live.replace(PeerPolicy.open_network(["peer.example"]), 1)
    with pytest.raises(PeerNotAllowed):
        live.check("peer.example")
    assert live.allows("other.example")
