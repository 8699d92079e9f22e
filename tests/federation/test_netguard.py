"""Address classification and host canonicalisation (security.md cases 24, 25, 36).

Classification only: nothing here opens a socket, least of all to the public addresses.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.netguard import canonical_host, is_public_address, parse_host_literal, split_host_port

# Every form from security.md cases 24 and 25, with what it really points at.
REFUSED_ADDRESSES = [
    ("::ffff:7f00:1", "IPv4-mapped 127.0.0.1 (GHSA-xfrj-c749-jxxq)"),
    ("::ffff:127.0.0.1", "IPv4-mapped, dotted spelling"),
    ("::ffff:a9fe:a9fe", "IPv4-mapped metadata service"),
    ("::7f00:1", "IPv4-compatible 127.0.0.1 (GHSA-vwhj-3g83-v276)"),
    ("::127.0.0.1", "IPv4-compatible, dotted spelling"),
    ("::1.1.1.1", "IPv4-compatible is deprecated even around a public address"),
    ("64:ff9b::a9fe:a9fe", "NAT64 well-known prefix around 169.254.169.254"),
    ("64:ff9b::7f00:1", "NAT64 around loopback"),
    ("64:ff9b::a00:5", "NAT64 around 10.0.0.5"),
    ("64:ff9b:1::1", "local-use NAT64 /48 (RFC 8215)"),
    ("64:ff9b:1:a00::5", "local-use NAT64 around 10.0.0.5"),
    ("2002:7f00:1::", "6to4 around 127.0.0.1"),
    ("2002:a9fe:a9fe::1", "6to4 around the metadata service"),
    ("2002:101:101::1", "6to4 is deprecated even around a public address"),
    # Teredo: server 65.54.227.120, client 10.0.0.5 obfuscated (XOR 0xffffffff) in the low 32 bits.
    ("2001:0:4136:e378:8000:63bf:f5ff:fffa", "Teredo embedding private client 10.0.0.5"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo embedding client 127.0.0.1"),
    ("100.64.0.1", "shared address space (CGNAT)"),
    ("100.127.255.254", "shared address space, top"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking, top"),
    ("0.0.0.0", "this network"),
    ("0.1.2.3", "this network /8"),
    ("255.255.255.255", "limited broadcast"),
    ("240.0.0.1", "reserved 240/4"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast SSDP"),
    ("192.0.2.1", "TEST-NET-1"),
    ("198.51.100.1", "TEST-NET-2"),
    ("203.0.113.1", "TEST-NET-3"),
    ("192.0.0.9", "IETF protocol assignments, is_global=True in the registry"),
    ("192.88.99.1", "6to4 relay anycast"),
    ("fd00::1", "unique local"),
    ("fc00::1", "unique local fc00::/7"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local with zone"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("3fff::1", "documentation 3fff::/20 (is_global=True on CPython 3.11)"),
    ("2001:db8::1", "documentation"),
    ("100::1", "discard-only"),
    ("5f00::1", "SRv6 SID"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("169.254.169.254", "cloud metadata service"),
    ("10.0.0.5", "RFC 1918"),
    ("172.16.0.1", "RFC 1918"),
    ("192.168.1.1", "RFC 1918"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback /8"),
    ("2130706433", "decimal 127.0.0.1"),
    ("0177.0.0.1", "octal 127.0.0.1"),
    ("0x7f.1", "hex short form of 127.0.0.1"),
    ("0x7f000001", "hex 127.0.0.1"),
    ("127.1", "short form of 127.0.0.1"),
    ("0x7f.0.0.1", "hex first part"),
    ("017700000001", "octal 127.0.0.1 as one number"),
    ("0xa9.0xfe.0xa9.0xfe", "hex metadata service"),
    ("167772165", "decimal 10.0.0.5"),
    ("[::1]", "bracketed loopback"),
    ("[::ffff:7f00:1]", "bracketed mapped loopback"),
]

PUBLIC_ADDRESSES = [
    "1.1.1.1",
    "8.8.8.8",
    "2606:4700::1111",
    "2a00:1450:4007:80e::200e",
    "::ffff:1.1.1.1",  # mapped public: the v4 verdict applies
    "64:ff9b::101:101",  # NAT64 of 1.1.1.1: DNS64 networks need this
    "16843009",  # decimal 1.1.1.1
]


@pytest.mark.parametrize(("address", "why"), REFUSED_ADDRESSES, ids=[a for a, _ in REFUSED_ADDRESSES])
def test_sec_25_non_public_address_forms_are_refused(address: str, why: str) -> None:
    """Every disguise of a private, special or deprecated address is classified non-public."""
    assert is_public_address(address) is False, why


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_globally_routable_addresses_are_public(address: str) -> None:
    """Real public unicast addresses pass (classification only; nothing connects to them)."""
    assert is_public_address(address) is True


def test_address_objects_and_strings_agree() -> None:
    """The guard takes ipaddress values as well as strings, with the same verdicts."""
    assert is_public_address(IPv4Address("1.1.1.1")) is True
    assert is_public_address(IPv6Address("::ffff:7f00:1")) is False
    assert is_public_address(IPv4Address("100.64.0.1")) is False


@pytest.mark.parametrize("text", ["", "peer.example", "not an address", "1.2.3.4.5", "::g", "999.1.1.1"])
def test_non_addresses_are_never_public(text: str) -> None:
    """Fail closed: a name or garbage is not an address, hence not public."""
    assert is_public_address(text) is False


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0X7F.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1.5", "10.1.0.5"),  # a.b.c: the last part fills 16 bits
        ("127.0.0.1.", "127.0.0.1"),  # one trailing dot, as browsers allow
        ("0x", "0.0.0.0"),  # WHATWG reads a bare 0x as zero
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
    ],
)
def test_parse_host_literal_reads_legacy_forms(host: str, expected: str) -> None:
    """Numeric hosts are read the way browsers and getaddrinfo read them."""
    assert str(parse_host_literal(host)) == expected


@pytest.mark.parametrize("host", ["peer.example", "localhost", "0x7f.evil.example", "1.2.3.evil", "a1"])
def test_parse_host_literal_leaves_domain_names_alone(host: str) -> None:
    """Only a numeric last label makes a host an IPv4 literal (WHATWG "ends in a number")."""
    assert parse_host_literal(host) is None


@pytest.mark.parametrize(
    "host", ["256.1.1.1", "1.2.3.4.5", "08.0.0.1", "1..1", "1.2.65536", "[::1", "::g", "4294967296"]
)
def test_parse_host_literal_refuses_ambiguous_numbers(host: str) -> None:
    """A host that looks numeric but is invalid is an error, never a name to resolve."""
    with pytest.raises(ValueError):
        parse_host_literal(host)


# --- canonical_host (case 36) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "scheme", "expected"),
    [
        ("PEER.EXAMPLE.", "https", "peer.example"),
        ("peer.example:443", "https", "peer.example"),
        ("peer.example:80", "http", "peer.example"),
        ("peer.example:80", "https", "peer.example:80"),
        ("peer.example:8443", "https", "peer.example:8443"),
        ("peer.example:443", None, "peer.example:443"),
        ("Peer.Example", None, "peer.example"),
        ("ÉCOLE.example", None, "xn--cole-9oa.example"),
        ("évry.example", None, "xn--vry-9la.example"),
        ("evil\u3002example", None, "evil.example"),  # ideographic full stop is a dot to DNS
        ("\uff11\uff12\uff17.\uff10.\uff10.\uff11", None, "127.0.0.1"),  # full-width digits
        ("2130706433", None, "127.0.0.1"),
        ("[::FFFF:7F00:1]:8080", "http", "[::ffff:7f00:1]:8080"),
        ("_service.peer.example", None, "_service.peer.example"),
    ],
)
def test_canonical_host(host: str, scheme: str | None, expected: str) -> None:
    """One spelling per host: punycode, lower case, no trailing dot, non-default port only."""
    assert canonical_host(host, scheme) == expected


def test_sec_36_cyrillic_homoglyph_stays_distinct() -> None:
    """A Cyrillic U+0430 in `asso-diabete.org` must not collide with the Latin name."""
    latin = canonical_host("asso-diabete.org")
    cyrillic = canonical_host("\u0430sso-diabete.org")
    assert cyrillic.startswith("xn--")
    assert cyrillic != latin


@pytest.mark.parametrize(
    "host",
    [
        "peer.example/x",  # Mastodon CVE-2023-42451: must not collapse onto peer.example
        "mastodon.so/cial",
        "user@peer.example",
        "peer.example\\evil",
        "peer example",
        "peer.example\t",
        "peer..example",
        ".peer.example",
        "peer.example..",
        "",
        "peer.example:0",
        "peer.example:65536",
        "peer.example:https",
        "peer.example?x",
        "peer.example#x",
        "peer%2eexample",
        "[fe80::1%25eth0]",
        "xn--zz.example",  # invalid punycode
        "peer.example\uff0fx",  # full-width solidus maps to "/" under UTS-46
        "-peer.example",
        "a" * 64 + ".example",
        "256.0.0.1",
    ],
)
def test_canonical_host_rejects_malformed_hosts(host: str) -> None:
    """Hosts with delimiters, empty labels, bad ports or invalid IDNA are refused, not repaired."""
    with pytest.raises(ValueError):
        canonical_host(host, "https")


def test_split_host_port() -> None:
    """IPv6 brackets and ports are split unambiguously."""
    assert split_host_port("peer.example:8443") == ("peer.example", 8443)
    assert split_host_port("[::1]:80") == ("::1", 80)
    assert split_host_port("::1") == ("::1", None)
    assert split_host_port("peer.example") == ("peer.example", None)


_label = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?", fullmatch=True)
_hostnames = st.lists(_label, min_size=1, max_size=4).map(".".join)


@given(host=_hostnames, port=st.none() | st.integers(1, 65535), trailing_dot=st.booleans())
def test_canonical_host_is_idempotent(host: str, port: int | None, trailing_dot: bool) -> None:
    """canonical_host(canonical_host(h)) == canonical_host(h) for any valid ASCII host."""
    text = host + ("." if trailing_dot else "") + (f":{port}" if port else "")
    try:
        once = canonical_host(text, "https")
    except ValueError:
        return  # e.g. an all-numeric last label that is not a valid address
    assert canonical_host(once, "https") == once
    assert once == once.lower()
    assert not once.split(":")[0].endswith(".")


@given(host=st.text(alphabet="0123456789abcdefxX.", min_size=1, max_size=24))
def test_parse_host_literal_agrees_with_inet_aton(host: str) -> None:
    """Wherever the C library reads a numeric host as an address, we read the same address.

    (We may also read some strings the C library refuses, such as WHATWG's bare ``0x``:
    classifying more hosts as addresses only ever makes the guard stricter.)
    """
    try:
        packed = socket.inet_aton(host)
    except OSError:
        return
    assert parse_host_literal(host) == IPv4Address(packed)


def _reference_host_refused(host: str) -> bool:
    """The character check as first written, one character at a time."""
    forbidden = set("/@\\?#%<>\"'`{}|^")
    return any(c in forbidden or c.isspace() or not c.isprintable() for c in host)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=12))
def test_canonical_host_refuses_exactly_the_forbidden_characters(label: str) -> None:
    host = f"peer{label}.example"
    try:
        canonical_host(host)
    except ValueError as exc:
        refused_for_a_character = "forbidden character" in str(exc)
    else:
        refused_for_a_character = False
    assert refused_for_a_character == _reference_host_refused(host)
    # Memoised: asking again gives the same answer (or the same refusal)
    try:
        again: str | None = canonical_host(host)
    except ValueError:
        again = None
    try:
        first: str | None = canonical_host(host)
    except ValueError:
        first = None
    assert again == first
