"""AiohttpTransport against real aiohttp test servers on 127.0.0.1 (security.md section D, 27, 31, 33).

Peers are named (``peer.example``, ``other.example``, ``evil.example``) through a
:class:`StaticResolver` that maps them all to 127.0.0.1; only ``peer.example`` and
``other.example`` are trusted test hosts. No test connects anywhere but 127.0.0.1, every server
loop is bounded, and every client call runs under a short deadline.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import socket
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from federation.errors import PeerNotAllowed, ResponseTooLarge, UnsafeAddress
from federation.http import Headers, OutgoingRequest
from federation.policy import PeerPolicy
from federation.transport import (
    AiohttpTransport,
    ConnectionFailed,
    ContentDecodingFailed,
    FetchTimeout,
    HostLimiter,
    InsecureRedirect,
    InvalidUrl,
    RedirectLoop,
    StaticResolver,
    Timeouts,
    TooManyRedirects,
    UnsupportedScheme,
    build_user_agent,
)

ServerFactory = Callable[..., Awaitable[TestServer]]
HITS = web.AppKey("hits", list[str])
SEEN_HEADERS = web.AppKey("seen_headers", dict[str, dict[str, str]])
IN_FLIGHT = web.AppKey("in_flight", list[int])  # [current, maximum]

USER_AGENT = build_user_agent("0.1.0", "https://entraide.test")
SMALL_CAP = 1000  # bytes; keeps the size tests fast and exact
BIG = 2 * 1024 * 1024


@functools.cache
def gzip_bomb() -> bytes:
    """64 MiB of zeros, about 64 KiB on the wire."""
    return gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)


# --- the fake peer ---------------------------------------------------------------------------


@web.middleware
async def record(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    request.app[HITS].append(request.path)
    return await handler(request)


def _here(request: web.Request, host: str, path: str) -> str:
    return f"http://{host}:{request.url.port}{path}"


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def echo(request: web.Request) -> web.Response:
    request.app[SEEN_HEADERS][request.path] = dict(request.headers)
    return web.json_response({"method": request.method, "body": (await request.read()).decode()})


async def sized(request: web.Request) -> web.Response:
    # Monolithic body: Content-Length is set.
    return web.Response(body=b"x" * int(request.match_info["n"]))


async def chunked(request: web.Request) -> web.StreamResponse:
    # Chunked body: no Content-Length, so only the running count can stop it.
    total = int(request.match_info["n"])
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    sent = 0
    while sent < total:  # bounded by total
        step = min(64 * 1024, total - sent)
        await response.write(b"y" * step)
        sent += step
    await response.write_eof()
    return response


async def bomb(request: web.Request) -> web.Response:
    return web.Response(body=gzip_bomb(), headers={"Content-Encoding": "gzip"})


async def gzipped(request: web.Request) -> web.Response:
    return web.Response(body=gzip.compress(b'{"small": true}'), headers={"Content-Encoding": "gzip"})


async def deflated(request: web.Request) -> web.Response:
    raw = request.query.get("raw") == "1"
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    body = compressor.compress(b"deflated body") + compressor.flush()
    return web.Response(body=body, headers={"Content-Encoding": "deflate"})


async def brotli(request: web.Request) -> web.Response:
    return web.Response(body=b"\x8b\x02\x80hello\x03", headers={"Content-Encoding": "br"})


async def drip(request: web.Request) -> web.StreamResponse:
    # One byte every 50 ms: never idle long enough for sock_read, so only a total deadline stops it.
    response = web.StreamResponse()
    await response.prepare(request)
    for _ in range(100):  # bounded: 5 s at most
        await response.write(b".")
        await asyncio.sleep(0.05)
    return response


async def redirect_chain(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    location = "/ok" if n == 0 else f"/chain/{n - 1}"
    raise web.HTTPFound(location)


async def loop_a(request: web.Request) -> web.Response:
    raise web.HTTPFound("/loop/b")


async def loop_b(request: web.Request) -> web.Response:
    raise web.HTTPFound("/loop/a")


async def to_loopback(request: web.Request) -> web.Response:
    raise web.HTTPFound(_here(request, "127.0.0.1", "/ok"))


async def to_decimal_loopback(request: web.Request) -> web.Response:
    raise web.HTTPFound(_here(request, "2130706433", "/ok"))


async def to_evil(request: web.Request) -> web.Response:
    raise web.HTTPFound(_here(request, "evil.example", "/ok"))


async def to_other(request: web.Request) -> web.Response:
    raise web.HTTPTemporaryRedirect(_here(request, "other.example", "/echo/other"))


async def to_same(request: web.Request) -> web.Response:
    raise web.HTTPTemporaryRedirect("/echo/same")


async def to_data(request: web.Request) -> web.Response:
    raise web.HTTPFound("data:application/json,{}")


async def see_other(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/echo/after-303")


async def accepted(request: web.Request) -> web.Response:
    await request.read()
    encoding = request.query.get("encoding")
    return web.Response(status=202, headers={"Content-Encoding": encoding} if encoding else None)


async def slow_ok(request: web.Request) -> web.Response:
    counters = request.app[IN_FLIGHT]
    counters[0] += 1
    counters[1] = max(counters[1], counters[0])
    try:
        await asyncio.sleep(0.05)
    finally:
        counters[0] -= 1
    return web.json_response({"ok": True})


def build_app() -> web.Application:
    app = web.Application(middlewares=[record])
    app[HITS] = []
    app[SEEN_HEADERS] = {}
    app[IN_FLIGHT] = [0, 0]
    app.router.add_get("/ok", ok)
    app.router.add_route("*", "/echo/{name}", echo)
    app.router.add_get("/sized/{n}", sized)
    app.router.add_get("/chunked/{n}", chunked)
    app.router.add_get("/bomb", bomb)
    app.router.add_get("/gzipped", gzipped)
    app.router.add_get("/deflated", deflated)
    app.router.add_get("/brotli", brotli)
    app.router.add_get("/drip", drip)
    app.router.add_get("/chain/{n}", redirect_chain)
    app.router.add_get("/loop/a", loop_a)
    app.router.add_get("/loop/b", loop_b)
    app.router.add_get("/to-loopback", to_loopback)
    app.router.add_get("/to-decimal-loopback", to_decimal_loopback)
    app.router.add_get("/to-evil", to_evil)
    app.router.add_route("*", "/to-other", to_other)
    app.router.add_route("*", "/to-same", to_same)
    app.router.add_get("/to-data", to_data)
    app.router.add_post("/see-other", see_other)
    app.router.add_get("/slow", slow_ok)
    app.router.add_post("/inbox", accepted)
    return app


@pytest.fixture
async def peer(aiohttp_server: ServerFactory) -> TestServer:
    server = await aiohttp_server(build_app(), host="127.0.0.1")
    assert server.host == "127.0.0.1"
    return server


def hits(server: TestServer) -> list[str]:
    return server.app[HITS]


def url(server: TestServer, path: str, host: str = "peer.example") -> str:
    return f"http://{host}:{server.port}{path}"


class SpyResolver(AbstractResolver):
    """A StaticResolver that records every name it is asked about."""

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


@pytest.fixture
def resolver() -> SpyResolver:
    return SpyResolver(
        {
            "peer.example": ["127.0.0.1"],
            "other.example": ["127.0.0.1"],
            "evil.example": ["127.0.0.1"],  # the attacker's name pointing at our loopback
            "mixed.example": ["1.1.1.1", "127.0.0.1"],  # refused before any connection
        }
    )


@pytest.fixture
async def make_transport(resolver: SpyResolver) -> AsyncIterator[Callable[..., Awaitable[AiohttpTransport]]]:
    opened: list[AiohttpTransport] = []

    async def factory(**overrides: Any) -> AiohttpTransport:
        options: dict[str, Any] = {
            "user_agent": USER_AGENT,
            "resolver": resolver,
            "trusted_test_hosts": ["peer.example", "other.example"],
            "timeouts": Timeouts(total_s=5, connect_s=2, sock_read_s=2),
        }
        options.update(overrides)
        transport = AiohttpTransport(**options)
        await transport.start()
        opened.append(transport)
        return transport

    yield factory
    for transport in opened:
        await transport.close()


def get(target: str, **headers: str) -> OutgoingRequest:
    return OutgoingRequest("GET", target, Headers(headers))


# --- happy path -------------------------------------------------------------------------------


async def test_get_returns_status_headers_body_and_url(peer: TestServer, make_transport: Any) -> None:
    """A plain GET to a trusted test name works and reports what was read."""
    transport = await make_transport()
    response = await transport.send(get(url(peer, "/ok")))
    assert response.status == 200
    assert response.body == b'{"ok": true}'
    assert response.headers["content-type"].startswith("application/json")
    assert response.url == url(peer, "/ok")
    assert hits(peer) == ["/ok"]


async def test_user_agent_is_sent(peer: TestServer, make_transport: Any) -> None:
    """Peers see Entraide/<version> (+<origin>)."""
    transport = await make_transport()
    await transport.send(get(url(peer, "/echo/ua")))
    assert peer.app[SEEN_HEADERS]["/echo/ua"]["User-Agent"] == "Entraide/0.1.0 (+https://entraide.test)"


async def test_accept_encoding_is_added_only_when_absent(peer: TestServer, make_transport: Any) -> None:
    """We advertise what the capped decoder decodes, unless the caller chose."""
    transport = await make_transport()
    await transport.send(get(url(peer, "/echo/default")))
    await transport.send(get(url(peer, "/echo/chosen"), **{"accept-encoding": "identity"}))
    assert peer.app[SEEN_HEADERS]["/echo/default"]["Accept-Encoding"] == "gzip, deflate"
    assert peer.app[SEEN_HEADERS]["/echo/chosen"]["Accept-Encoding"] == "identity"


@pytest.mark.parametrize("encoding", [None, "gzip"])
async def test_an_empty_answer_is_returned_without_reading(
    peer: TestServer, make_transport: Any, encoding: str | None
) -> None:
    """An inbox's 202 with ``Content-Length: 0``: an empty body, and the wire-form headers dropped
    when a content coding was announced (nothing to decode)."""
    transport = await make_transport()
    query = f"?encoding={encoding}" if encoding else ""
    response = await transport.send(OutgoingRequest("POST", url(peer, f"/inbox{query}"), Headers(), b"{}"))
    assert (response.status, response.body) == (202, b"")
    assert ("content-length" in response.headers) is (encoding is None)
    assert "content-encoding" not in response.headers


async def test_a_request_on_a_kept_alive_connection_schedules_three_timers(
    peer: TestServer, make_transport: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call's deadline, and aiohttp's sock_read, started when the request is written and
    restarted when the answer arrives: no per-hop ``total`` timer of aiohttp's besides (it could
    never fire before the call's deadline). Issue 20: timers are a fan-out's cost per delivery."""
    transport = await make_transport()
    post = OutgoingRequest("POST", url(peer, "/inbox"), Headers({"Content-Type": "application/json"}), b"{}")
    assert (await transport.send(post)).status == 202  # the connection, kept alive
    loop = asyncio.get_running_loop()
    scheduled: list[str] = []
    original = loop.call_at

    def call_at(when: float, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        module = getattr(callback, "__module__", "") or ""
        if not module.startswith(("aiohttp.web", "aiohttp.test_utils")):  # not the peer's own
            scheduled.append(getattr(callback, "__qualname__", repr(callback)))
        return original(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", call_at)
    assert (await transport.send(post)).status == 202
    monkeypatch.undo()
    assert len(scheduled) <= 3, scheduled


async def test_error_statuses_are_returned_not_raised(peer: TestServer, make_transport: Any) -> None:
    """A 404 is a response, not an exception."""
    transport = await make_transport()
    response = await transport.send(get(url(peer, "/missing")))
    assert response.status == 404


async def test_post_body_and_headers_are_sent(peer: TestServer, make_transport: Any) -> None:
    """The request body and headers reach the peer unchanged."""
    transport = await make_transport()
    request = OutgoingRequest(
        "POST", url(peer, "/echo/post"), Headers({"Content-Type": "application/activity+json"}), b'{"a":1}'
    )
    response = await transport.send(request)
    assert response.body == b'{"method": "POST", "body": "{\\"a\\":1}"}'
    assert peer.app[SEEN_HEADERS]["/echo/post"]["Content-Type"] == "application/activity+json"


async def test_allow_private_addresses_reaches_loopback_literals(
    peer: TestServer, make_transport: Any
) -> None:
    """Loopback federation tests can turn the address guard off entirely."""
    transport = await make_transport(allow_private_addresses=True, trusted_test_hosts=())
    response = await transport.send(get(f"http://127.0.0.1:{peer.port}/ok"))
    assert response.status == 200


# --- SSRF guard (cases 24, 25, 26) ------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "[::ffff:127.0.0.1]",
        "[::1]",
        "2130706433",
        "0177.0.0.1",
        "0x7f.1",
        "127.1",
        "localhost",
        "a.localhost",
    ],
)
async def test_sec_24_loopback_is_refused_before_any_connection(
    peer: TestServer, make_transport: Any, resolver: SpyResolver, host: str
) -> None:
    """Given the guard is on, a request to our own loopback never opens a connection."""
    transport = await make_transport()
    with pytest.raises(UnsafeAddress):
        await transport.send(get(f"http://{host}:{peer.port}/ok"))
    assert hits(peer) == []
    assert resolver.asked == []  # literals and RFC 6761 loopback names are refused before DNS


async def test_sec_24_localhost_resolving_to_loopback_is_refused(
    peer: TestServer, make_transport: Any
) -> None:
    """A real resolver answering 127.0.0.1 for localhost is refused at the resolver."""
    transport = await make_transport(resolver=StaticResolver({"localhost": ["127.0.0.1", "::1"]}))
    with pytest.raises(UnsafeAddress):
        await transport.send(get(url(peer, "/ok", host="localhost")))
    assert hits(peer) == []


async def test_sec_24_untrusted_name_mapped_to_loopback_is_refused(
    peer: TestServer, make_transport: Any
) -> None:
    """evil.example resolving to 127.0.0.1 is refused by the guarded resolver, before connecting."""
    transport = await make_transport()
    with pytest.raises(UnsafeAddress):
        await transport.send(get(url(peer, "/ok", host="evil.example")))
    assert hits(peer) == []


async def test_sec_26_mixed_public_and_private_answer_is_refused(
    peer: TestServer, make_transport: Any
) -> None:
    """One private record taints the whole DNS answer (no connection to either address)."""
    transport = await make_transport()
    with pytest.raises(UnsafeAddress):
        await transport.send(get(url(peer, "/ok", host="mixed.example")))
    assert hits(peer) == []


@pytest.mark.parametrize(
    "target",
    ["data:application/json,{}", "file:///etc/passwd", "gopher://peer.example/", "ftp://peer.example/"],
)
async def test_sec_24_non_http_schemes_are_refused_without_connecting(
    peer: TestServer, make_transport: Any, resolver: SpyResolver, target: str
) -> None:
    """data:, file: and friends are refused before resolution or connection."""
    transport = await make_transport()
    with pytest.raises(UnsupportedScheme) as info:
        await transport.send(get(target))
    assert info.value.code == "unsupported_scheme"
    assert isinstance(info.value, UnsafeAddress)
    assert resolver.asked == []
    assert hits(peer) == []


@pytest.mark.parametrize(
    "target",
    ["http://user:pw@peer.example/ok", "http:///ok", "http://peer..example/", "http://peer.example:99999/"],
)
async def test_malformed_urls_are_refused(make_transport: Any, resolver: SpyResolver, target: str) -> None:
    """Userinfo, missing hosts, empty labels and bad ports never reach the network."""
    transport = await make_transport()
    with pytest.raises(InvalidUrl):
        await transport.send(get(target))
    assert resolver.asked == []


async def test_sec_26_redirect_to_loopback_literal_is_refused(peer: TestServer, make_transport: Any) -> None:
    """A trusted name redirecting to http://127.0.0.1/ is refused at the hop (Fedify CVE-2026-77632)."""
    transport = await make_transport()
    with pytest.raises(UnsafeAddress):
        await transport.send(get(url(peer, "/to-loopback")), follow_redirects=True)
    assert hits(peer) == ["/to-loopback"]


async def test_sec_26_redirect_to_decimal_loopback_is_refused(peer: TestServer, make_transport: Any) -> None:
    """The hop check reads odd spellings too (http://2130706433/)."""
    transport = await make_transport()
    with pytest.raises(UnsafeAddress):
        await transport.send(get(url(peer, "/to-decimal-loopback")), follow_redirects=True)
    assert hits(peer) == ["/to-decimal-loopback"]


async def test_sec_26_redirect_to_name_resolving_to_loopback_is_refused(
    peer: TestServer, make_transport: Any
) -> None:
    """A redirect to evil.example (→ 127.0.0.1) is refused by the resolver on that hop."""
    transport = await make_transport()
    with pytest.raises(UnsafeAddress):
        await transport.send(get(url(peer, "/to-evil")), follow_redirects=True)
    assert hits(peer) == ["/to-evil"]


async def test_socket_level_guard_refuses_non_public_addresses(make_transport: Any) -> None:
    """The last layer, run just before connect(), refuses what slipped past the others."""
    transport = await make_transport(trusted_test_hosts=())
    guard = transport._guard  # private: this layer is unreachable through send() by design
    with pytest.raises(UnsafeAddress):
        guard.open_socket((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)))
    with pytest.raises(UnsafeAddress):
        guard.open_socket((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::ffff:7f00:1", 80, 0, 0)))


def test_trusted_test_hosts_take_names_not_addresses() -> None:
    """An IP literal cannot be exempted from the guard."""
    with pytest.raises(ValueError):
        AiohttpTransport(user_agent=USER_AGENT, trusted_test_hosts=["127.0.0.1"])


# --- peer policy on every hop (cases 13, 47) --------------------------------------------------


async def test_sec_47_policy_refuses_blocked_host_before_connecting(
    peer: TestServer, make_transport: Any
) -> None:
    """A blocked host is refused without a connection."""
    transport = await make_transport(policy=PeerPolicy.open_network(blocked=["peer.example"]))
    with pytest.raises(PeerNotAllowed):
        await transport.send(get(url(peer, "/ok")))
    assert hits(peer) == []


async def test_sec_47_redirect_into_unlisted_host_is_refused(peer: TestServer, make_transport: Any) -> None:
    """In a closed network a redirect cannot launder a fetch into an unlisted host."""
    policy = PeerPolicy.closed_network(allowed=[f"peer.example:{peer.port}"])
    transport = await make_transport(policy=policy)
    with pytest.raises(PeerNotAllowed):
        await transport.send(get(url(peer, "/to-other")), follow_redirects=True)
    assert hits(peer) == ["/to-other"]


# --- redirects (cases 7, 13, 26) --------------------------------------------------------------


async def test_redirects_up_to_the_limit_are_followed_and_final_url_reported(
    peer: TestServer, make_transport: Any
) -> None:
    """Three hops are fine; PeerResponse.url is where the body came from."""
    transport = await make_transport()
    response = await transport.send(get(url(peer, "/chain/2")), follow_redirects=True)
    assert response.status == 200
    assert response.url == url(peer, "/ok")
    assert hits(peer) == ["/chain/2", "/chain/1", "/chain/0", "/ok"]


async def test_sec_07_redirect_chain_longer_than_limit_is_refused(
    peer: TestServer, make_transport: Any
) -> None:
    """A fourth redirect is not followed."""
    transport = await make_transport()
    with pytest.raises(TooManyRedirects):
        await transport.send(get(url(peer, "/chain/20")), follow_redirects=True)
    assert hits(peer) == ["/chain/20", "/chain/19", "/chain/18", "/chain/17"]


async def test_sec_07_redirect_loop_is_refused(peer: TestServer, make_transport: Any) -> None:
    """/loop/a → /loop/b → /loop/a stops at the first revisit."""
    transport = await make_transport(max_redirects=10)
    with pytest.raises(RedirectLoop):
        await transport.send(get(url(peer, "/loop/a")), follow_redirects=True)
    assert hits(peer) == ["/loop/a", "/loop/b"]


async def test_redirects_are_not_followed_unless_asked(peer: TestServer, make_transport: Any) -> None:
    """Without follow_redirects the 3xx itself is returned."""
    transport = await make_transport()
    response = await transport.send(get(url(peer, "/chain/1")))
    assert response.status == 302
    assert response.headers["Location"] == "/chain/0"


async def test_redirect_to_data_url_is_refused(peer: TestServer, make_transport: Any) -> None:
    """A Location with another scheme is refused (Fedify CVE-2025-23221)."""
    transport = await make_transport()
    with pytest.raises(UnsupportedScheme):
        await transport.send(get(url(peer, "/to-data")), follow_redirects=True)


async def test_sec_26_credentials_are_dropped_when_the_host_changes(
    peer: TestServer, make_transport: Any
) -> None:
    """Signature, Signature-Input and Authorization never reach another host."""
    transport = await make_transport()
    request = get(
        url(peer, "/to-other"),
        Authorization="Bearer secret",
        Signature='keyId="k",signature="abc"',
        **{"Signature-Input": 'sig1=("@method");keyid="k"', "Accept": "application/activity+json"},
    )
    response = await transport.send(request, follow_redirects=True)
    assert response.status == 200
    seen = {k.lower(): v for k, v in peer.app[SEEN_HEADERS]["/echo/other"].items()}
    assert "authorization" not in seen
    assert "signature" not in seen
    assert "signature-input" not in seen
    assert seen["accept"] == "application/activity+json"


async def test_credentials_are_kept_on_a_same_origin_redirect(peer: TestServer, make_transport: Any) -> None:
    """A redirect within one origin keeps the headers (the caller decides whether to re-sign)."""
    transport = await make_transport()
    request = get(url(peer, "/to-same"), Authorization="Bearer secret")
    await transport.send(request, follow_redirects=True)
    assert peer.app[SEEN_HEADERS]["/echo/same"]["Authorization"] == "Bearer secret"


async def test_see_other_turns_post_into_bodiless_get(peer: TestServer, make_transport: Any) -> None:
    """303 is followed with GET and without the body or its headers."""
    transport = await make_transport()
    request = OutgoingRequest(
        "POST",
        url(peer, "/see-other"),
        Headers({"Content-Type": "application/activity+json", "Digest": "SHA-256=x"}),
        b"{}",
    )
    response = await transport.send(request, follow_redirects=True)
    assert response.body == b'{"method": "GET", "body": ""}'
    assert "Digest" not in peer.app[SEEN_HEADERS]["/echo/after-303"]


async def test_sec_13_https_to_http_downgrade_is_refused(
    make_transport: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An https URL redirecting to http is refused before the second hop.

    No TLS test server here, so the first hop is stubbed at the private exchange step.
    """
    from federation.transport import _Redirect

    transport = await make_transport()
    calls: list[str] = []

    async def fake_exchange(session: Any, method: str, target: Any, *args: Any) -> _Redirect:
        calls.append(str(target.url))
        return _Redirect(302, "http://peer.example/ok")

    monkeypatch.setattr(transport, "_exchange", fake_exchange)
    with pytest.raises(InsecureRedirect):
        await transport.send(get("https://peer.example/start"), follow_redirects=True)
    assert calls == ["https://peer.example/start"]


# --- body limits and decoding (case 27) -------------------------------------------------------


async def test_sec_27_monolithic_body_over_cap_is_refused(peer: TestServer, make_transport: Any) -> None:
    """A Content-Length above the cap is refused before the body is read."""
    transport = await make_transport()
    with pytest.raises(ResponseTooLarge):
        await transport.send(get(url(peer, f"/sized/{BIG}")))


async def test_sec_27_chunked_body_over_cap_is_refused(peer: TestServer, make_transport: Any) -> None:
    """A chunked body with no length is cut off once it passes the cap."""
    transport = await make_transport()
    with pytest.raises(ResponseTooLarge):
        await transport.send(get(url(peer, f"/chunked/{BIG}")))


@pytest.mark.parametrize("path", ["sized", "chunked"])
async def test_body_cap_is_exact(peer: TestServer, make_transport: Any, path: str) -> None:
    """Exactly max_body_bytes is accepted; one more byte is not."""
    transport = await make_transport(max_body_bytes=SMALL_CAP)
    response = await transport.send(get(url(peer, f"/{path}/{SMALL_CAP}")))
    assert len(response.body) == SMALL_CAP
    with pytest.raises(ResponseTooLarge):
        await transport.send(get(url(peer, f"/{path}/{SMALL_CAP + 1}")))


async def test_sec_27_gzip_bomb_is_capped_without_blowing_memory(
    peer: TestServer, make_transport: Any
) -> None:
    """64 MiB of zeros in 64 KiB of gzip stops at the 1 MiB cap, with bounded memory."""
    gzip_bomb()  # build the payload outside the measurement
    transport = await make_transport()
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge):
            await transport.send(get(url(peer, "/bomb")))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


async def test_gzip_body_is_decoded_and_wire_headers_dropped(peer: TestServer, make_transport: Any) -> None:
    """A small gzip body is returned decoded; Content-Encoding no longer describes it."""
    transport = await make_transport()
    response = await transport.send(get(url(peer, "/gzipped")))
    assert response.body == b'{"small": true}'
    assert "Content-Encoding" not in response.headers
    assert "Content-Length" not in response.headers


@pytest.mark.parametrize("raw", ["0", "1"])
async def test_deflate_body_is_decoded_zlib_or_raw(peer: TestServer, make_transport: Any, raw: str) -> None:
    """deflate is decoded whether the server wraps it in zlib (RFC) or not (common bug)."""
    transport = await make_transport()
    response = await transport.send(get(url(peer, f"/deflated?raw={raw}")))
    assert response.body == b"deflated body"


async def test_unsupported_content_encoding_is_refused(peer: TestServer, make_transport: Any) -> None:
    """We only advertise gzip and deflate; anything else is refused, not passed on undecoded."""
    transport = await make_transport()
    with pytest.raises(ContentDecodingFailed):
        await transport.send(get(url(peer, "/brotli")))


# --- time limits (case 31) --------------------------------------------------------------------


async def test_sec_31_slow_drip_hits_the_total_deadline(peer: TestServer, make_transport: Any) -> None:
    """A peer dripping a byte every 50 ms is cut off by the total deadline, not served forever."""
    transport = await make_transport(timeouts=Timeouts(total_s=0.5, connect_s=0.5, sock_read_s=10))
    started = time.monotonic()
    with pytest.raises(FetchTimeout) as info:
        await transport.send(get(url(peer, "/drip")))
    assert time.monotonic() - started < 3
    assert info.value.code == "fetch_timeout"


async def test_connection_refused_is_connection_failed(make_transport: Any) -> None:
    """A closed port on loopback surfaces as ConnectionFailed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    transport = await make_transport(allow_private_addresses=True)
    with pytest.raises(ConnectionFailed):
        await transport.send(get(f"http://127.0.0.1:{closed_port}/"))


async def test_unknown_name_is_connection_failed(make_transport: Any) -> None:
    """NXDOMAIN (here: a name missing from the static table) is ConnectionFailed."""
    transport = await make_transport()
    with pytest.raises(ConnectionFailed):
        await transport.send(get("http://unknown.example/"))


async def test_send_before_start_is_a_programming_error() -> None:
    """The transport must be started (or entered) first."""
    transport = AiohttpTransport(user_agent=USER_AGENT)
    with pytest.raises(RuntimeError):
        await transport.send(get("http://peer.example/"))


async def test_async_context_manager_starts_and_closes(peer: TestServer, resolver: SpyResolver) -> None:
    """``async with`` is the usual lifetime."""
    async with AiohttpTransport(
        user_agent=USER_AGENT, resolver=resolver, trusted_test_hosts=["peer.example"]
    ) as transport:
        response = await transport.send(get(url(peer, "/ok")))
    assert response.status == 200
    with pytest.raises(RuntimeError):
        await transport.send(get(url(peer, "/ok")))


# --- per-host concurrency (cases 31, 33) ------------------------------------------------------


async def test_sec_31_concurrency_per_host_is_capped(peer: TestServer, make_transport: Any) -> None:
    """With a cap of 2, five parallel requests to one host never overlap by more than 2."""
    transport = await make_transport(max_concurrency_per_host=2)
    responses = await asyncio.gather(*(transport.send(get(url(peer, "/slow"))) for _ in range(5)))
    assert [r.status for r in responses] == [200] * 5
    assert peer.app[IN_FLIGHT][1] == 2


class _Overlap:
    """Counts requests inside a handler at once: per server (port) and over all of them."""

    def __init__(self) -> None:
        self.now: dict[int, int] = {}
        self.peak: dict[int, int] = {}
        self.total = 0
        self.total_peak = 0

    async def handle(self, request: web.Request) -> web.Response:
        port = request.url.port or 0
        self.now[port] = self.now.get(port, 0) + 1
        self.total += 1
        self.peak[port] = max(self.peak.get(port, 0), self.now[port])
        self.total_peak = max(self.total_peak, self.total)
        try:
            await asyncio.sleep(0.05)
        finally:
            self.now[port] -= 1
            self.total -= 1
        return web.Response(text="ok")


async def _two_ports(aiohttp_server: ServerFactory, overlap: _Overlap) -> list[TestServer]:
    servers = []
    for _ in range(2):
        app = web.Application()
        app.router.add_get("/slow", overlap.handle)
        servers.append(await aiohttp_server(app, host="127.0.0.1"))
    return servers


async def test_sec_31_concurrency_is_capped_per_origin_and_per_host(
    aiohttp_server: ServerFactory, make_transport: Any
) -> None:
    """Two ports of one host are two origins, each with its own cap (2), and the host name's
    cap (3) bounds them together."""
    overlap = _Overlap()
    servers = await _two_ports(aiohttp_server, overlap)
    transport = await make_transport(max_concurrency_per_origin=2, max_concurrency_per_host=3)
    requests = [transport.send(get(url(s, "/slow"))) for s in servers for _ in range(6)]
    responses = await asyncio.gather(*requests)
    assert [r.status for r in responses] == [200] * 12
    assert sorted(overlap.peak.values()) == [2, 2]
    assert overlap.total_peak == 3


async def test_origins_of_one_host_do_not_share_a_cap(
    aiohttp_server: ServerFactory, make_transport: Any
) -> None:
    """Ports of one host (127.0.0.1 in the fan-out benchmark) are not queued behind one cap."""
    overlap = _Overlap()
    servers = await _two_ports(aiohttp_server, overlap)
    transport = await make_transport(max_concurrency_per_origin=2)
    requests = [transport.send(get(url(s, "/slow"))) for s in servers for _ in range(6)]
    await asyncio.gather(*requests)
    assert sorted(overlap.peak.values()) == [2, 2]
    assert overlap.total_peak == 4


async def test_sec_33_host_limiter_table_is_bounded() -> None:
    """Thousands of attacker-chosen hosts leave at most max_hosts entries behind."""
    limiter = HostLimiter(per_host=1, max_hosts=16)
    for n in range(1000):
        async with limiter.hold(f"h{n}.evil.example"):
            pass
    assert len(limiter) == 16


async def test_host_limiter_never_evicts_a_busy_host() -> None:
    """Eviction skips hosts in use, so the per-host cap holds even under churn."""
    limiter = HostLimiter(per_host=1, max_hosts=2)
    entered = asyncio.Event()
    release = asyncio.Event()

    async def hold_busy() -> None:
        async with limiter.hold("busy.example"):
            entered.set()
            await release.wait()

    task = asyncio.create_task(hold_busy())
    async with asyncio.timeout(5):
        await entered.wait()
        for n in range(10):
            async with limiter.hold(f"h{n}.example"):
                pass
        second = asyncio.create_task(hold_busy())  # must wait: the same semaphore still exists
        await asyncio.sleep(0.05)
        assert not second.done()
        release.set()
        await asyncio.gather(task, second)
