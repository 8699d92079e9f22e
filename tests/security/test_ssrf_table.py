"""SSRF: every address form of security.md case 25, at every layer of the transport (cases 24-26).

One table per way an attacker can hand us an address, each row through the real
:class:`~federation.transport.AiohttpTransport` against a live peer on 127.0.0.1:

* **URL literals** (actor URL, keyId, ``inReplyTo``...): refused before DNS and before any
  connection, with :class:`~federation.errors.UnsafeAddress` (``unsafe_address``), or with
  :class:`~federation.transport.InvalidUrl` (``invalid_url``) for userinfo and malformed hosts.
* **DNS answers** for an attacker's name: refused by the guarded resolver on the connector.
* **Redirects**: a trusted peer's 302 to each of the above is refused at the hop.
* **Rebinding**: an answer that changes between the check and the connect is refused at the
  socket the connector opens; answers that alternate between lookups never reach loopback.
* **Proxies** from the environment are ignored.

Classification itself is covered address by address in tests/federation/test_netguard.py; this
module checks that every form is refused *where it enters*. The peer is always on 127.0.0.1, so
a form that slipped through would show up as a hit; any other address would trip the suite's
socket guard (tests/support/socket_guard.py) before a packet left.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from federation.errors import FederationError, UnsafeAddress
from federation.http import Headers, OutgoingRequest
from federation.transport import (
    AiohttpTransport,
    ConnectionFailed,
    InvalidUrl,
    StaticResolver,
    Timeouts,
    build_user_agent,
)
from tests.support.socket_guard import take_violations

ServerFactory = Callable[..., Awaitable[TestServer]]
HITS = web.AppKey("hits", list[str])
USER_AGENT = build_user_agent("0.1.0", "https://entraide.test")
PUBLIC_V4 = "1.1.1.1"  # only ever classified, or refused by the suite's socket guard

# ---------------------------------------------------------------------------------------------
# The table: every address form of case 25 (plus case 24's classics)
# ---------------------------------------------------------------------------------------------

# (URL host as written, what it really is). Every one must be refused as UnsafeAddress.
LITERAL_HOSTS: list[tuple[str, str]] = [
    # IPv4 special ranges
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback /8"),
    ("10.0.0.5", "RFC 1918"),
    ("172.16.0.1", "RFC 1918"),
    ("192.168.1.1", "RFC 1918"),
    ("169.254.169.254", "link-local: cloud metadata service"),
    ("100.64.0.1", "CGNAT shared space"),
    ("198.18.0.1", "benchmarking"),
    ("224.0.0.1", "multicast"),
    ("255.255.255.255", "limited broadcast"),
    ("240.0.0.1", "reserved"),
    ("0.0.0.0", "this host (reaches localhost on Linux)"),
    ("0", "0.0.0.0 as one number"),
    # IPv6
    ("[::1]", "IPv6 loopback"),
    ("[::]", "IPv6 unspecified"),
    ("[fd00::1]", "unique local"),
    ("[fe80::1]", "link-local"),
    ("[ff02::1]", "multicast"),
    ("[::ffff:127.0.0.1]", "IPv4-mapped loopback, dotted"),
    ("[::ffff:7f00:1]", "IPv4-mapped loopback, hex"),
    ("[::FFFF:7F00:1]", "IPv4-mapped loopback, upper case"),
    ("[0:0:0:0:0:ffff:7f00:1]", "IPv4-mapped loopback, uncompressed"),
    ("[::ffff:a9fe:a9fe]", "IPv4-mapped metadata service"),
    ("[::127.0.0.1]", "IPv4-compatible loopback"),
    ("[64:ff9b::a9fe:a9fe]", "NAT64 around 169.254.169.254"),
    ("[64:ff9b::a00:5]", "NAT64 around 10.0.0.5"),
    ("[64:ff9b::7f00:1]", "NAT64 around loopback"),
    ("[64:ff9b:1::a00:5]", "local-use NAT64 /48"),
    ("[2002:7f00:1::]", "6to4 around loopback"),
    ("[2002:a9fe:a9fe::1]", "6to4 around the metadata service"),
    ("[2002:a00:5::1]", "6to4 around 10.0.0.5"),
    ("[2001:0:4136:e378:8000:63bf:80ff:fffe]", "Teredo, client 127.0.0.1"),
    ("[2001:0:4136:e378:8000:63bf:f5ff:fffa]", "Teredo, client 10.0.0.5"),
    # Legacy IPv4 spellings that getaddrinfo and browsers accept
    ("2130706433", "decimal 127.0.0.1"),
    ("167772165", "decimal 10.0.0.5"),
    ("2852039166", "decimal 169.254.169.254"),
    ("0177.0.0.1", "octal 127.0.0.1"),
    ("00000177.0.0.1", "octal with extra zeros"),
    ("017700000001", "octal 127.0.0.1 as one number"),
    ("0x7f.0.0.1", "hex first part"),
    ("0X7F.0.0.1", "hex, upper case"),
    ("0x7f000001", "hex 127.0.0.1 as one number"),
    ("0x7f.0x0.0x0.0x1", "hex in every part"),
    ("0xa9.0xfe.0xa9.0xfe", "hex metadata service"),
    ("127.1", "short form a.d"),
    ("127.0.1", "short form a.b.d"),
    ("10.1", "short form of 10.0.0.1"),
    ("127.000.000.001", "zero-padded (octal zeros)"),
    # Trailing dots and case
    ("127.0.0.1.", "trailing dot"),
    ("2130706433.", "decimal with trailing dot"),
    ("0177.0.0.1.", "octal with trailing dot"),
    ("localhost", "RFC 6761 loopback name"),
    ("LOCALHOST", "upper-case loopback name"),
    ("LocalHost.", "mixed case with trailing dot"),
    ("localhost.", "loopback name with trailing dot"),
    ("a.LOCALHOST", "subdomain of localhost, upper case"),
    ("foo.localhost.", "subdomain of localhost with trailing dot"),
    # Non-ASCII disguises of the same
    ("\uff11\uff12\uff17.\uff10.\uff10.\uff11", "full-width digits"),
    ("127\u30020\u30020\u30021", "ideographic full stops"),
    ("\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3", "circled letters spelling localhost"),
    # Looks numeric but is not a valid address: never handed to a resolver
    ("%31%32%37.0.0.1", "percent-encoded digits"),
    ("256.0.0.1", "out-of-range dotted quad"),
    ("08.0.0.1", "invalid octal"),
    ("4294967296", "decimal beyond 32 bits"),
]

# URL tricks whose refusal is InvalidUrl (userinfo, delimiters in the host, zones).
INVALID_URLS: list[tuple[str, str]] = [
    ("http://evil@127.0.0.1:{port}/ok", "userinfo before a loopback literal"),
    ("http://peer.example@127.0.0.1:{port}/ok", "a trusted name as userinfo"),
    ("http://peer.example:{port}@127.0.0.1:{port}/ok", "user:password that looks like host:port"),
    ("http://127.0.0.1:{port}@evil.example/ok", "loopback as userinfo, the other way round"),
    ("http://peer.example\\@127.0.0.1:{port}/ok", "backslash: WHATWG and RFC 3986 disagree"),
    ("http://[::1]@peer.example:{port}/ok", "bracketed literal as userinfo"),
    ("http://[fe80::1%25eth0]:{port}/ok", "IPv6 zone identifier"),
    ("http://127.0.0.1%2f:{port}/ok", "percent-encoded slash in the host"),
    ("http://127.0.0.1..:{port}/ok", "two trailing dots"),
    ("http:/127.0.0.1:{port}/ok", "one slash: no authority"),
    ("http:\\\\127.0.0.1:{port}/ok", "backslashes instead of slashes"),
]

# Non-public answers an attacker's DNS can give for its own name (case 25 "DNS answers").
DNS_ANSWERS: list[tuple[list[str], str]] = [
    (["127.0.0.1"], "loopback"),
    (["10.0.0.5"], "RFC 1918"),
    (["169.254.169.254"], "metadata service"),
    (["100.64.0.1"], "CGNAT"),
    (["198.18.0.1"], "benchmarking"),
    (["0.0.0.0"], "this host"),
    (["255.255.255.255"], "broadcast"),
    (["224.0.0.1"], "multicast"),
    (["::1"], "IPv6 loopback"),
    (["fd00::1"], "unique local"),
    (["fe80::1"], "link-local"),
    (["fe80::1%1"], "link-local with a zone"),
    (["::ffff:127.0.0.1"], "IPv4-mapped loopback"),
    (["::ffff:a9fe:a9fe"], "IPv4-mapped metadata service"),
    (["::7f00:1"], "IPv4-compatible loopback"),
    (["64:ff9b::a9fe:a9fe"], "NAT64 metadata service"),
    (["64:ff9b:1::1"], "local-use NAT64"),
    (["2002:7f00:1::"], "6to4 loopback"),
    (["2001:0:4136:e378:8000:63bf:80ff:fffe"], "Teredo loopback client"),
    (["3fff::1"], "documentation 3fff::/20"),
    ([PUBLIC_V4, "127.0.0.1"], "public first, loopback second"),
    (["2606:4700::1111", "::1"], "public IPv6 with an IPv6 loopback"),
    ([PUBLIC_V4, "fd00::1"], "public IPv4 with a unique-local IPv6"),
]


# ---------------------------------------------------------------------------------------------
# A live peer on 127.0.0.1, and a transport that can only name it "peer.example"
# ---------------------------------------------------------------------------------------------


async def ok(request: web.Request) -> web.Response:
    request.app[HITS].append(request.path_qs)
    return web.json_response({"ok": True})


async def redirect(request: web.Request) -> web.Response:
    request.app[HITS].append(request.path)
    raise web.HTTPFound(request.query["to"])


@pytest.fixture
async def peer(aiohttp_server: ServerFactory) -> TestServer:
    app = web.Application()
    app[HITS] = []
    app.router.add_route("*", "/ok", ok)
    app.router.add_get("/redirect", redirect)
    server = await aiohttp_server(app, host="127.0.0.1")
    assert server.host == "127.0.0.1"
    return server


def hits(server: TestServer) -> list[str]:
    return server.app[HITS]


class SpyResolver(AbstractResolver):
    """Answers from a table, and records every name asked."""

    def __init__(self, hosts: dict[str, list[str]]) -> None:
        self.inner = StaticResolver(hosts)
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return await self.inner.resolve(host, port, family)

    async def close(self) -> None:
        await self.inner.close()


TransportFactory = Callable[..., Awaitable[AiohttpTransport]]


@pytest.fixture
async def make_transport() -> AsyncIterator[TransportFactory]:
    """Guard on. Only names listed in ``trusted`` (default: peer.example) skip the address check."""
    opened: list[AiohttpTransport] = []

    async def factory(resolver: AbstractResolver, trusted: tuple[str, ...] = ("peer.example",)) -> Any:
        transport = AiohttpTransport(
            user_agent=USER_AGENT,
            resolver=resolver,
            trusted_test_hosts=trusted,
            timeouts=Timeouts(total_s=5, connect_s=2, sock_read_s=2),
        )
        await transport.start()
        opened.append(transport)
        return transport

    yield factory
    for transport in opened:
        await transport.close()


def get(url: str) -> OutgoingRequest:
    return OutgoingRequest("GET", url, Headers({"Accept": "application/activity+json"}))


def authority(host: str, port: int) -> str:
    return f"{host}:{port}"


def assert_refused(info: pytest.ExceptionInfo[FederationError], kind: type[FederationError]) -> None:
    """The exact class and its stable code: no subclass standing in for another refusal."""
    assert type(info.value) is kind, repr(info.value)
    assert info.value.code == kind.code


# ---------------------------------------------------------------------------------------------
# URL literals: refused before DNS and before connecting
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "why"), LITERAL_HOSTS, ids=[h for h, _ in LITERAL_HOSTS])
async def test_sec_25_literal_host_is_refused_before_dns_and_connect(
    peer: TestServer, make_transport: TransportFactory, host: str, why: str
) -> None:
    """Given an IP literal or loopback name in any spelling, no name is resolved and no socket opens."""
    resolver = SpyResolver({"peer.example": ["127.0.0.1"]})
    transport = await make_transport(resolver)
    with pytest.raises(UnsafeAddress) as info:
        await transport.send(get(f"http://{authority(host, peer.port)}/ok"))
    assert_refused(info, UnsafeAddress)
    assert resolver.asked == [], why
    assert hits(peer) == [], why


@pytest.mark.parametrize(("template", "why"), INVALID_URLS, ids=[w for _, w in INVALID_URLS])
async def test_sec_24_userinfo_and_malformed_authorities_are_invalid_urls(
    peer: TestServer, make_transport: TransportFactory, template: str, why: str
) -> None:
    """Userinfo tricks (http://evil@127.0.0.1/) and malformed hosts are refused as invalid_url."""
    resolver = SpyResolver({"peer.example": ["127.0.0.1"], "evil.example": ["127.0.0.1"]})
    transport = await make_transport(resolver)
    with pytest.raises(InvalidUrl) as info:
        await transport.send(get(template.format(port=peer.port)))
    assert_refused(info, InvalidUrl)
    assert resolver.asked == [], why
    assert hits(peer) == [], why


def test_the_trusted_test_name_is_not_an_exemption_for_literals() -> None:
    """The one escape hatch of these tests takes names only: 127.0.0.1 cannot be trusted."""
    with pytest.raises(ValueError):
        AiohttpTransport(user_agent=USER_AGENT, trusted_test_hosts=["127.0.0.1"])
    with pytest.raises(ValueError):
        AiohttpTransport(user_agent=USER_AGENT, trusted_test_hosts=["[::1]"])


# ---------------------------------------------------------------------------------------------
# DNS answers: refused by the guarded resolver
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("answers", "why"), DNS_ANSWERS, ids=[w for _, w in DNS_ANSWERS])
@pytest.mark.parametrize("spelling", ["target.example", "TARGET.EXAMPLE.", "Target.Example"])
async def test_sec_25_name_resolving_to_a_non_public_address_is_refused(
    peer: TestServer, make_transport: TransportFactory, answers: list[str], why: str, spelling: str
) -> None:
    """An attacker's name answering any non-public record (even beside a public one) is refused."""
    resolver = SpyResolver({"target.example": answers, "peer.example": ["127.0.0.1"]})
    transport = await make_transport(resolver)
    with pytest.raises(UnsafeAddress) as info:
        await transport.send(get(f"http://{spelling}:{peer.port}/ok"))
    assert_refused(info, UnsafeAddress)
    assert resolver.asked == [spelling], why
    assert hits(peer) == [], why


async def test_a_name_resolving_to_public_addresses_only_passes_the_resolver(
    make_transport: TransportFactory,
) -> None:
    """Control row: a public answer is not refused by the guard (the suite's socket guard then
    stands in for the internet and refuses the connect, which the transport reports)."""
    resolver = SpyResolver({"public.example": [PUBLIC_V4]})
    transport = await make_transport(resolver)
    with pytest.raises(ConnectionFailed):
        await transport.send(get("http://public.example/ok"))
    assert [PUBLIC_V4 in v for v in take_violations()] == [True]


# ---------------------------------------------------------------------------------------------
# Redirects: every hop is checked (case 26, Fedify CVE-2026-77632)
# ---------------------------------------------------------------------------------------------

REDIRECT_TARGETS: list[tuple[str, type[FederationError]]] = [
    *((f"http://{host}:{{port}}/ok", UnsafeAddress) for host, _ in LITERAL_HOSTS),
    ("http://evil.example:{port}/ok", UnsafeAddress),  # untrusted name -> 127.0.0.1
    ("http://EVIL.example.:{port}/ok", UnsafeAddress),
    ("http://metadata.example/latest/meta-data/", UnsafeAddress),  # -> 169.254.169.254
    ("http://mapped.example:{port}/ok", UnsafeAddress),  # -> ::ffff:127.0.0.1
    ("http://evil@127.0.0.1:{port}/ok", InvalidUrl),
    ("http://peer.example@127.0.0.1:{port}/ok", InvalidUrl),
    ("http://[fe80::1%25eth0]:{port}/ok", InvalidUrl),
]


@pytest.mark.parametrize(
    ("location", "refusal"), REDIRECT_TARGETS, ids=[loc.split("/")[2] for loc, _ in REDIRECT_TARGETS]
)
async def test_sec_26_redirect_to_a_private_target_is_refused_at_the_hop(
    peer: TestServer, make_transport: TransportFactory, location: str, refusal: type[FederationError]
) -> None:
    """A trusted peer answering 302 to any private form: the first hop is served, the second never."""
    resolver = SpyResolver(
        {
            "peer.example": ["127.0.0.1"],
            "evil.example": ["127.0.0.1"],
            "metadata.example": ["169.254.169.254"],
            "mapped.example": ["::ffff:127.0.0.1"],
        }
    )
    transport = await make_transport(resolver)
    target = location.replace("{port}", str(peer.port))
    start = f"http://peer.example:{peer.port}/redirect?" + _query(to=target)
    with pytest.raises(refusal) as info:
        await transport.send(get(start), follow_redirects=True)
    assert_refused(info, refusal)
    assert hits(peer) == ["/redirect"]


async def test_sec_26_private_target_at_the_last_allowed_hop_is_refused(
    peer: TestServer, make_transport: TransportFactory
) -> None:
    """peer -> peer -> peer -> 127.0.0.1: the check runs on the last hop as on the first."""
    resolver = SpyResolver({"peer.example": ["127.0.0.1"]})
    transport = await make_transport(resolver)
    base = f"http://peer.example:{peer.port}"
    url = f"http://0x7f.1:{peer.port}/ok"
    for _ in range(3):
        url = f"{base}/redirect?" + _query(to=url)
    with pytest.raises(UnsafeAddress):
        await transport.send(get(url), follow_redirects=True)
    assert hits(peer) == ["/redirect"] * 3


def _query(**params: str) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


# ---------------------------------------------------------------------------------------------
# DNS rebinding: the address actually connected to is checked (case 26)
# ---------------------------------------------------------------------------------------------


class _RebindingAnswer(dict[str, Any]):
    """A resolver record whose ``host`` changes after it has been read once.

    The guarded resolver reads the record, sees a public address and lets it through; the
    connector reads it again to connect and gets 127.0.0.1. That is DNS rebinding squeezed
    into the gap between check and connect, so only the socket-level check can stop it.
    """

    def __init__(self, first: str, then: str, **fields: Any) -> None:
        super().__init__(host=first, **fields)
        self._then = then
        self.reads = 0

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        if key == "host":
            self.reads += 1
            if self.reads > 1:
                return self._then
        return value


class RebindingResolver(AbstractResolver):
    def __init__(self, first: str, then: str) -> None:
        self.first, self.then = first, then
        self.answers: list[_RebindingAnswer] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answer = _RebindingAnswer(
            self.first,
            self.then,
            hostname=host,
            port=port,
            family=socket.AF_INET,
            proto=0,
            flags=socket.AI_NUMERICHOST,
        )
        self.answers.append(answer)
        return [answer]  # type: ignore[list-item]

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("then", ["127.0.0.1", "::ffff:127.0.0.1"])
async def test_sec_26_answer_changing_between_check_and_connect_is_refused_at_the_socket(
    peer: TestServer, make_transport: TransportFactory, then: str
) -> None:
    """The resolver saw a public address; the connector was about to connect to loopback."""
    resolver = RebindingResolver(first=PUBLIC_V4, then=then)
    transport = await make_transport(resolver, trusted=())
    with pytest.raises(UnsafeAddress, match="refusing to connect to non-public address") as info:
        await transport.send(get(f"http://rebind.example:{peer.port}/ok"))
    assert_refused(info, UnsafeAddress)
    assert resolver.answers and resolver.answers[0].reads >= 2  # checked, then re-read to connect
    assert hits(peer) == []


class AlternatingResolver(AbstractResolver):
    """TTL-0 rebinding across lookups: a public answer, then loopback, then public..."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.calls = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.answers[self.calls % len(self.answers)]
        self.calls += 1
        return await StaticResolver({host: [address]}).resolve(host, port, family)

    async def close(self) -> None:
        return None


async def test_sec_26_alternating_answers_never_reach_loopback(
    peer: TestServer, make_transport: TransportFactory
) -> None:
    """Whatever the order of answers, only checked addresses are ever connected to.

    Connections to the public answer are refused by the suite's socket guard (standing in for
    the internet) and recorded; none may have gone to the loopback peer.
    """
    resolver = AlternatingResolver([PUBLIC_V4, "127.0.0.1"])
    transport = await make_transport(resolver, trusted=())
    outcomes: list[str] = []
    for n in range(4):
        try:
            await transport.send(get(f"http://rebind{n % 2}.example:{peer.port}/ok"))
            outcomes.append("served")
        except FederationError as exc:
            outcomes.append(exc.code)
    attempts = take_violations()
    assert "served" not in outcomes
    assert "unsafe_address" in outcomes
    assert all(PUBLIC_V4 in attempt for attempt in attempts)
    assert hits(peer) == []


# ---------------------------------------------------------------------------------------------
# The socket-level check on its own, over the whole table (the last layer)
# ---------------------------------------------------------------------------------------------

SOCKET_ADDRESSES = sorted(
    {a for answers, _ in DNS_ANSWERS for a in answers if a not in (PUBLIC_V4, "2606:4700::1111")}
)


@pytest.mark.parametrize("address", SOCKET_ADDRESSES)
async def test_sec_26_socket_factory_refuses_every_non_public_address(
    make_transport: TransportFactory, address: str
) -> None:
    """Just before connect(), the address actually about to be used is classified again."""
    transport = await make_transport(StaticResolver({}), trusted=())
    guard = transport._guard  # private: unreachable through send() unless the resolver lies
    if ":" in address:
        info: tuple[Any, ...] = (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, 80, 0, 0))
    else:
        info = (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 80))
    with pytest.raises(UnsafeAddress):
        guard.open_socket(info)


async def test_socket_factory_lets_a_public_address_through(make_transport: TransportFactory) -> None:
    """Control row: a public address gets a socket (never connected here)."""
    transport = await make_transport(StaticResolver({}), trusted=())
    sock = transport._guard.open_socket((socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_V4, 80)))
    sock.close()


# ---------------------------------------------------------------------------------------------
# Proxies from the environment are not used (case 26: a proxy would bypass every check)
# ---------------------------------------------------------------------------------------------


async def test_sec_26_proxy_variables_are_ignored(
    peer: TestServer,
    aiohttp_server: ServerFactory,
    make_transport: TransportFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP(S)_PROXY pointing at a local "proxy" changes nothing: the request goes direct."""
    proxy_app = web.Application()
    proxy_app[HITS] = []

    async def record_proxy(request: web.Request) -> web.Response:
        request.app[HITS].append(str(request.url))
        return web.Response(status=502)

    proxy_app.router.add_route("*", "/{tail:.*}", record_proxy)
    proxy = await aiohttp_server(proxy_app, host="127.0.0.1")
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    transport = await make_transport(SpyResolver({"peer.example": ["127.0.0.1"]}))
    response = await transport.send(get(f"http://peer.example:{peer.port}/ok"))
    assert response.status == 200
    assert proxy.app[HITS] == []
    assert hits(peer) == ["/ok"]
