"""The aiohttp implementation of :class:`federation.ports.Transport`: the only HTTP client.

This is the one module in :mod:`federation` allowed to import aiohttp (import-linter contract
"only federation.transport talks HTTP"). Every outbound request of the node goes through
:class:`AiohttpTransport`, which enforces security.md section D and cases 7, 13, 27, 31, 33, 47:

* **SSRF guard, three layers.** (1) Before any connection, the URL must be http(s) and an IP
  literal host in any spelling must be public (:mod:`federation.netguard`); aiohttp never hands
  IP literals to the resolver, so this check is the one that covers them. RFC 6761 loopback
  names (``localhost``, ``*.localhost``) are refused here too, without asking DNS. (2) Names are resolved
  by a guarded resolver on the connector, which refuses a name if *any* address is not
  public; the connector connects only to addresses it returned, on every hop and every new
  connection, so DNS rebinding gains nothing (case 26). (3) The socket factory re-checks the
  address actually connected to, as Mastodon's ``Socket.open`` and GoToSocial's dialer do.
* **Peer policy** on every hop (case 47), **redirects** followed by hand with a hop limit, a
  visited set and no https→http downgrade (cases 7, 13, 26), and credentials never carried to
  another origin (case 26).
* **Limits**: one 30 s deadline over the whole call, which bounds every hop in it, plus aiohttp's
  ``connect=5`` and ``sock_read=10`` per hop (case 31); the body, compressed and decompressed,
  capped at 1 MiB (case 27); concurrency caps per origin and per host name whose bookkeeping is
  bounded (case 33).

There is no proxy support (``trust_env=False``): an outbound proxy would have to apply the same
guard (case 26) and none does today. Cookies are never stored or sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from .errors import (
    ConnectionFailed,
    ContentDecodingFailed,
    FederationError,
    FetchTimeout,
    InsecureRedirect,
    InvalidUrl,
    RedirectLoop,
    ResponseTooLarge,
    TooManyRedirects,
    UnsafeAddress,
    UnsupportedScheme,
)
from .http import Headers, OutgoingRequest, PeerResponse
from .netguard import (
    IPAddress,
    canonical_host,
    is_public_address,
    parse_host_literal,
    split_host_port,
)
from .policy import HostPolicy

# ---------------------------------------------------------------------------------------------
# Configuration values
# ---------------------------------------------------------------------------------------------

DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024
DEFAULT_MAX_REDIRECTS: Final = 3  # Mastodon's follow: {max_hops: 3} (case 13)
DEFAULT_MAX_TRACKED_HOSTS: Final = 1024  # case 33
DEFAULT_CONCURRENCY_PER_ORIGIN: Final = 8
DEFAULT_CONCURRENCY_PER_HOST: Final = 64
_READ_CHUNK_BYTES: Final = 64 * 1024
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_ALLOWED_SCHEMES: Final = frozenset({"http", "https"})
# Never sent to another origin after a redirect (case 26): the caller re-signs each hop.
_CREDENTIAL_HEADERS: Final = frozenset(
    {"signature", "signature-input", "authorization", "proxy-authorization", "cookie", "host"}
)
# Describe a response's wire form: dropped from PeerResponse.headers once the body is decoded.
_WIRE_FORM_HEADERS: Final = frozenset({"content-encoding", "content-length"})
# Describe a request body; dropped when a redirect turns the request into a bodiless GET.
_BODY_HEADERS: Final = frozenset(
    {"content-type", "content-length", "content-encoding", "digest", "content-digest"}
)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-request limits in seconds (security case 31; Mastodon's values).

    ``total_s`` bounds each hop *and* the whole :meth:`AiohttpTransport.send` call, redirects
    and per-host queueing included; ``connect_s`` bounds connection setup (TCP and TLS);
    ``sock_read_s`` bounds the gap between two reads. A peer that drips one byte every few
    seconds is therefore cut off by ``total_s``.
    """

    total_s: float = 30.0
    connect_s: float = 5.0
    sock_read_s: float = 10.0

    def __post_init__(self) -> None:
        if min(self.total_s, self.connect_s, self.sock_read_s) <= 0:
            raise ValueError("timeouts must be positive")


def build_user_agent(version: str, origin: str) -> str:
    """The User-Agent peers see: ``Entraide/<version> (+<origin>)``.

    Raises:
        ValueError: either part contains a control character (header injection).
    """
    agent = f"Entraide/{version} (+{origin})"
    if not agent.isprintable():
        raise ValueError("user agent must not contain control characters")
    return agent


# ---------------------------------------------------------------------------------------------
# Address guard and resolvers
# ---------------------------------------------------------------------------------------------


def _address_of(text: str) -> IPAddress | None:
    try:
        return parse_host_literal(text)
    except ValueError:
        return None


class _AddressGuard:
    """The address rule shared by the pre-flight check, the resolver and the socket factory."""

    def __init__(self, *, allow_private: bool, trusted_test_hosts: frozenset[str]) -> None:
        self.allow_private = allow_private
        self.trusted_test_hosts = trusted_test_hosts
        # Addresses that trusted test names resolved to, so the socket-level check accepts the
        # connection the resolver already accepted. Grows only with trusted names' records.
        self._exempt: set[IPAddress] = set()

    def check_name(self, host: str, hostname: str) -> None:
        """RFC 6761 loopback names are refused without asking DNS, unless they are trusted."""
        if self.allow_private or hostname in self.trusted_test_hosts:
            return
        if hostname == "localhost" or hostname.endswith(".localhost"):
            raise UnsafeAddress(f"refusing loopback name {hostname}", host=host)

    def check_literal(self, host: str, address: IPAddress) -> None:
        """An IP literal is never exempt: ``trusted_test_hosts`` holds names only."""
        if not self.allow_private and not is_public_address(address):
            raise UnsafeAddress(f"refusing non-public address {address}", host=host)

    def check_resolved(self, host: str, addresses: Sequence[str]) -> None:
        if self.allow_private:
            return
        try:
            name = canonical_host(host)
        except ValueError:
            name = host
        if name in self.trusted_test_hosts:
            self._exempt.update(a for a in map(_address_of, addresses) if a is not None)
            return
        # One bad record taints the whole answer: a name that mixes public and private
        # addresses is under attacker control (rebinding), not a legitimate peer.
        if any(not is_public_address(a) for a in addresses):
            raise UnsafeAddress(f"{host} resolves to a non-public address", host=host)

    def check_socket(self, address: str) -> None:
        if self.allow_private:
            return
        parsed = _address_of(address)
        if parsed is not None and parsed in self._exempt:
            return
        if not is_public_address(address):
            raise UnsafeAddress(f"refusing to connect to non-public address {address}")

    def open_socket(self, addr_info: tuple[Any, ...]) -> socket.socket:
        """aiohttp ``socket_factory``: runs just before connecting to ``addr_info``'s address."""
        family, kind, proto, _, sockaddr = addr_info
        self.check_socket(str(sockaddr[0]))
        return socket.socket(family=family, type=kind, proto=proto)


class _GuardedResolver(AbstractResolver):
    """Wraps a resolver and refuses any name that resolves to a non-public address.

    Installed on the :class:`aiohttp.TCPConnector`, so it runs for every connection the
    session opens: every redirect hop and every reconnection, after each fresh DNS answer.
    Results that pass are what the connector connects to (and caches), which makes DNS
    rebinding useless (security case 26).

    Raises (from :meth:`resolve`):
        UnsafeAddress: any returned address is not public, unless private addresses are
            allowed or the name is a trusted test host.
    """

    def __init__(self, inner: AbstractResolver, guard: _AddressGuard, *, owns_inner: bool) -> None:
        self._inner = inner
        self._guard = guard
        self._owns_inner = owns_inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host`` with the wrapped resolver and check every address."""
        results = await self._inner.resolve(host, port, family)
        self._guard.check_resolved(host, [r["host"] for r in results])
        return results

    async def close(self) -> None:
        """Close the wrapped resolver if this object created it."""
        if self._owns_inner:
            await self._inner.close()


class StaticResolver(AbstractResolver):
    """A resolver that answers from a fixed table and never queries DNS (tests, fake peers).

    ``StaticResolver({"peer.example": ["127.0.0.1"]})`` lets aiohttp test servers on
    127.0.0.1 play named peers. Names are compared canonically (``PEER.example.`` finds
    ``peer.example``). Unknown names fail like NXDOMAIN, so a test can never reach the real
    network by accident. The answers still go through the transport's address guard.

    Raises:
        ValueError: at construction, when a key is not a valid host or a value is not an IP.
    """

    def __init__(self, hosts: Mapping[str, Iterable[str]]) -> None:
        table: dict[str, tuple[IPAddress, ...]] = {}
        for name, addresses in hosts.items():
            parsed = tuple(_require_address(a) for a in addresses)
            table[canonical_host(name)] = parsed
        self._hosts = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Return the table's addresses for ``host`` in ``family`` (AF_UNSPEC: all)."""
        try:
            addresses = self._hosts.get(canonical_host(host), ())
        except ValueError:
            addresses = ()
        results: list[ResolveResult] = []
        for address in addresses:
            fam = socket.AF_INET if address.version == 4 else socket.AF_INET6
            if family in (socket.AF_UNSPEC, fam):
                results.append(
                    ResolveResult(
                        hostname=host,
                        host=str(address),
                        port=port,
                        family=fam,
                        proto=0,
                        flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                    )
                )
        if not results:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is not in the static table")
        return results

    async def close(self) -> None:
        """Nothing to release."""


def _require_address(text: str) -> IPAddress:
    address = parse_host_literal(text)
    if address is None:
        raise ValueError(f"not an IP address: {text!r}")
    return address


# ---------------------------------------------------------------------------------------------
# Per-host concurrency (security cases 31 and 33)
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _HostSlot:
    semaphore: asyncio.Semaphore
    users: int = 0  # tasks holding or waiting for the semaphore


class HostLimiter:
    """At most ``per_host`` concurrent requests per host, with bounded bookkeeping.

    Semaphores live in an LRU table of at most ``max_hosts`` entries (security case 33:
    attacker-chosen hosts must not grow state without bound). Only idle entries are evicted,
    so the per-host cap always holds; entries in use are bounded by the number of requests in
    flight, not by the number of hosts ever seen.
    """

    def __init__(self, per_host: int, max_hosts: int = DEFAULT_MAX_TRACKED_HOSTS) -> None:
        if per_host < 1 or max_hosts < 1:
            raise ValueError("per_host and max_hosts must be at least 1")
        self._per_host = per_host
        self._max_hosts = max_hosts
        self._slots: OrderedDict[str, _HostSlot] = OrderedDict()

    def __len__(self) -> int:
        """Number of hosts currently tracked."""
        return len(self._slots)

    @contextlib.asynccontextmanager
    async def hold(self, host: str) -> AsyncIterator[None]:
        """Wait for, then hold, one of ``host``'s slots for the duration of the block."""
        slot = await self.acquire(host)
        try:
            yield
        finally:
            self.release(host, slot)

    async def acquire(self, host: str) -> _HostSlot:
        """Wait for one of ``host``'s slots and take it; give it back with :meth:`release`.

        The transport's path per request (no generator-based context manager: it is taken
        twice for every delivery of a fan-out).
        """
        slot = self._slots.get(host)
        if slot is None:
            slot = self._slots[host] = _HostSlot(asyncio.Semaphore(self._per_host))
        else:
            self._slots.move_to_end(host)
        slot.users += 1
        try:
            await slot.semaphore.acquire()
        except BaseException:
            slot.users -= 1
            self._evict()
            raise
        return slot

    def release(self, host: str, slot: _HostSlot) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        slot.semaphore.release()
        slot.users -= 1
        self._evict()

    def _evict(self) -> None:
        if len(self._slots) <= self._max_hosts:
            return
        excess = len(self._slots) - self._max_hosts
        if excess <= 0:
            return
        idle = [host for host, slot in self._slots.items() if slot.users == 0][:excess]
        for host in idle:
            del self._slots[host]


# ---------------------------------------------------------------------------------------------
# Capped body reading (security case 27)
# ---------------------------------------------------------------------------------------------


class _CappedDecoder:
    """Decodes ``identity``, ``gzip`` or ``deflate`` and refuses output beyond ``limit`` bytes.

    zlib's ``max_length`` bounds every step, so a gzip bomb costs at most ``limit + 1`` bytes
    of output (plus one network chunk of input) before it is refused.
    """

    def __init__(self, coding: str | None, limit: int) -> None:
        self._coding = coding
        self._limit = limit
        self._out = bytearray()
        self._zlib: Any = None  # zlib's decompressor type is not importable for annotations
        self._fed = False

    def _new_decompressor(self, first: bytes) -> Any:
        if self._coding == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # "deflate" is meant to be zlib-wrapped (RFC 9110) but some servers send raw deflate.
        zlib_wrapped = bool(first) and first[0] & 0x0F == 8
        return zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)

    def _append(self, data: bytes) -> None:
        self._out += data
        if len(self._out) > self._limit:
            raise ResponseTooLarge(f"response body exceeds {self._limit} bytes", limit=self._limit)

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self._fed = True
        if self._coding is None:
            self._append(data)
            return
        pending = data
        try:
            while pending:  # each turn consumes input or raises: max_length is always >= 1
                if self._zlib is None:
                    self._zlib = self._new_decompressor(pending)
                room = self._limit + 1 - len(self._out)
                self._append(self._zlib.decompress(pending, room))
                if self._zlib.eof:
                    pending = self._zlib.unused_data
                    if pending and self._coding != "gzip":
                        raise ContentDecodingFailed("data after the end of the deflate stream")
                    self._zlib = None  # gzip allows several members back to back
                else:
                    pending = self._zlib.unconsumed_tail
        except zlib.error as exc:
            raise ContentDecodingFailed(f"corrupt {self._coding} body: {exc}") from exc

    def finish(self) -> bytes:
        if self._coding is not None and self._fed and self._zlib is not None:
            raise ContentDecodingFailed(f"truncated {self._coding} body")
        return bytes(self._out)


def _content_coding(value: str | None) -> str | None:
    coding = (value or "").strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip"):
        return "gzip"
    if coding == "deflate":
        return "deflate"
    # br, zstd, compress, or stacked codings: we only ever advertise gzip and deflate.
    raise ContentDecodingFailed(f"unsupported Content-Encoding: {value}", encoding=value)


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """Read the body, decoded, reading at most ``limit + 1`` wire bytes. Returns (body, decoded)."""
    coding = _content_coding(response.headers.get("Content-Encoding"))
    declared = response.content_length
    if declared is not None and declared > limit:
        # Refuse before reading a byte (Mastodon's body_with_limit does the same).
        raise ResponseTooLarge(f"declared body of {declared} bytes exceeds {limit}", limit=limit)
    if declared == 0:  # an inbox's 202, often: nothing to read or decode
        return b"", coding is not None
    decoder = _CappedDecoder(coding, limit)
    wire_bytes = 0
    while True:
        chunk = await response.content.read(min(_READ_CHUNK_BYTES, limit + 1 - wire_bytes))
        if not chunk:
            break
        wire_bytes += len(chunk)
        if wire_bytes > limit:
            # Also bounds compressed input that never yields output (empty deflate blocks).
            raise ResponseTooLarge(f"response body exceeds {limit} bytes", limit=limit)
        decoder.feed(chunk)
    return decoder.finish(), coding is not None


def _headers_read(response: aiohttp.ClientResponse, decoded: bool) -> Headers:
    if decoded:  # these describe the wire form, not the body returned
        return Headers((k, v) for k, v in response.headers.items() if k.lower() not in _WIRE_FORM_HEADERS)
    return Headers(response.headers.items())


# ---------------------------------------------------------------------------------------------
# The transport
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    url: URL
    text: str  # str(url), made once
    host: str  # canonical, with a non-default port
    hostname: str  # canonical, without port: the key of the per-host cap

    @property
    def origin(self) -> tuple[str, str]:
        return (self.url.scheme, self.host)

    @property
    def origin_key(self) -> str:
        """``scheme://host[:port]``: the key of the per-origin cap (RFC 6454's origin)."""
        return f"{self.url.scheme}://{self.host}"

    @property
    def visit_key(self) -> str:
        return f"{self.url.scheme}://{self.host}{self.url.raw_path_qs}"


@functools.lru_cache(maxsize=DEFAULT_MAX_TRACKED_HOSTS)  # bounded (case 33)
def _authority(scheme: str, raw_host: str, port: int | None) -> tuple[str, str, IPAddress | None]:
    """``(host, hostname, literal)`` of a URL's authority: its canonical ``host[:port]``, the
    host name alone, and the IP address it spells if it is a literal.

    Pure, so cached: a fan-out sends thousands of requests to the same few hundred origins, and
    parsing legacy IPv4 spellings and IDNA every time was a tenth of the transport's own time.
    The guard and the peer policy, which can change, still run on every request.

    Raises:
        UnsafeAddress: a host that looks numeric but is not a valid address.
        InvalidUrl: an invalid host (not cached: ``lru_cache`` does not keep exceptions).
    """
    try:
        parse_host_literal(raw_host)
    except ValueError as exc:
        # Looks numeric but is not a valid address: resolvers disagree on such strings.
        raise UnsafeAddress(f"ambiguous numeric host {raw_host!r}") from exc
    authority = f"[{raw_host}]" if ":" in raw_host else raw_host
    if port is not None:
        authority += f":{port}"
    try:
        host = canonical_host(authority, scheme)
    except ValueError as exc:
        raise InvalidUrl(f"invalid host: {exc}") from exc
    hostname, _ = split_host_port(host)
    # aiohttp connects to IP literals without asking the resolver, so they are checked
    # by the caller, in every spelling (2130706433, 0177.0.0.1, [::ffff:7f00:1]; case 25).
    return host, hostname, parse_host_literal(hostname)


@dataclass(frozen=True, slots=True)
class _Redirect:
    status: int
    location: str


def _parse_url(text: str) -> tuple[URL, str]:
    """The URL and its ``str()``."""
    try:
        # ASCII URLs are sent byte for byte as given, because signatures cover the path and
        # query exactly (security case 10). Others are normalised by yarl (IDNA host,
        # percent-encoded path), which is what a peer would see anyway.
        url = URL(text, encoded=True) if text.isascii() else URL(text)
        # yarl parses the authority lazily: force it now, so every URL past this point
        # (including its str()) is well-formed.
        _ = (url.raw_host, url.explicit_port, url.raw_user, url.raw_password)
        return url, str(url)
    except (ValueError, TypeError) as exc:
        raise InvalidUrl(f"malformed URL: {exc}", url=text) from exc


class AiohttpTransport:
    """The production :class:`~federation.ports.Transport`, over its own aiohttp session.

    Use as ``async with AiohttpTransport(user_agent=...) as transport:`` or call
    :meth:`start` and :meth:`close` (e.g. from an aiohttp ``cleanup_ctx``).

    Args:
        user_agent: the User-Agent header; see :func:`build_user_agent`.
        policy: refuse hosts this policy does not allow, on the first request and every hop.
        allow_private_addresses: turn the address guard off entirely. Only for loopback
            federation tests and single-host development; never in production.
        trusted_test_hosts: host *names* whose DNS answers skip the address guard, so a test
            can map ``peer.example`` to 127.0.0.1 with a :class:`StaticResolver` while every
            other name, and every IP literal including ``127.0.0.1`` itself, stays guarded.
            Test-only: keep it empty in production configuration.
        timeouts: see :class:`Timeouts`.
        max_body_bytes: the cap on the decoded body and on the bytes read from the wire.
        max_redirects: redirects followed per call when ``follow_redirects=True``.
        max_concurrency_per_origin: concurrent requests to one origin (scheme, host, port),
            the unit a server answers on (and keeps connections alive for).
        max_concurrency_per_host: concurrent requests to one host name, all its origins
            together; it bounds what many ports of one machine receive from us at once.
        max_tracked_hosts: size of each semaphore table (origins, host names).
        max_connections: the connector's global connection limit.
        resolver: the DNS resolver to wrap (default: aiohttp's default resolver). Tests pass a
            :class:`StaticResolver`. The caller keeps ownership of a resolver it passes.

    Raises:
        ValueError: a limit is out of range or a trusted test host is malformed.
    """

    def __init__(
        self,
        *,
        user_agent: str,
        policy: HostPolicy | None = None,
        allow_private_addresses: bool = False,
        trusted_test_hosts: Iterable[str] = (),
        timeouts: Timeouts | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        max_concurrency_per_origin: int = DEFAULT_CONCURRENCY_PER_ORIGIN,
        max_concurrency_per_host: int = DEFAULT_CONCURRENCY_PER_HOST,
        max_tracked_hosts: int = DEFAULT_MAX_TRACKED_HOSTS,
        max_connections: int = 100,
        resolver: AbstractResolver | None = None,
    ) -> None:
        if max_body_bytes < 1 or max_redirects < 0 or max_connections < 1:
            raise ValueError("max_body_bytes and max_connections must be >= 1, max_redirects >= 0")
        if not user_agent.isprintable():
            raise ValueError("user agent must not contain control characters")
        trusted = frozenset(canonical_host(h) for h in trusted_test_hosts)
        if any(parse_host_literal(split_host_port(h)[0]) is not None for h in trusted):
            raise ValueError("trusted_test_hosts takes host names, not IP addresses")
        self._user_agent = user_agent
        self._policy = policy
        self._timeouts = timeouts or Timeouts()
        # The session's, for every hop. No ``total``: the deadline over the whole call (send())
        # already bounds each hop by the same total_s, and aiohttp's own would cost each request
        # one more timer and its bookkeeping, for a deadline that can never fire first.
        self._client_timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self._timeouts.connect_s,
            sock_read=self._timeouts.sock_read_s,
        )
        self._max_body_bytes = max_body_bytes
        self._max_redirects = max_redirects
        self._max_connections = max_connections
        self._origin_limiter = HostLimiter(max_concurrency_per_origin, max_tracked_hosts)
        self._host_limiter = HostLimiter(max_concurrency_per_host, max_tracked_hosts)
        self._guard = _AddressGuard(allow_private=allow_private_addresses, trusted_test_hosts=trusted)
        self._inner_resolver = resolver
        self._resolver: _GuardedResolver | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Create the session, connector and guarded resolver. Idempotent; needs a running loop."""
        if self._session is not None:
            return
        owns_inner = self._inner_resolver is None
        inner = self._inner_resolver or aiohttp.DefaultResolver()
        self._resolver = _GuardedResolver(inner, self._guard, owns_inner=owns_inner)
        connector = aiohttp.TCPConnector(
            resolver=self._resolver,
            socket_factory=self._guard.open_socket,
            limit=self._max_connections,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": self._user_agent},
            timeout=self._client_timeout,
            auto_decompress=False,  # we decompress ourselves, with a cap (case 27)
            trust_env=False,  # no proxies from the environment (case 26)
            cookie_jar=aiohttp.DummyCookieJar(),  # never carry cookies between peers
            raise_for_status=False,
        )

    async def close(self) -> None:
        """Close the session and connections and release the resolver. Idempotent."""
        session, resolver = self._session, self._resolver
        self._session = self._resolver = None
        if session is not None:
            await session.close()
        if resolver is not None:
            await resolver.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def send(self, request: OutgoingRequest, *, follow_redirects: bool = False) -> PeerResponse:
        """Send ``request`` and return the response with its body read and capped.

        Guarantees:
            * No connection is opened to a non-public address (unless allowed), to a host the
              policy refuses, or for a scheme other than http/https; these checks run before
              each hop, and the resolved and connected addresses are checked again.
            * With ``follow_redirects``, at most ``max_redirects`` redirects are followed, never
              to a URL already visited and never from https to http. 301/302 of a non-GET and
              303 become a bodiless GET. ``Signature``, ``Signature-Input``, ``Authorization``
              (and ``Cookie``, ``Proxy-Authorization``, ``Host``) are dropped as soon as the
              origin (scheme, host, port) changes; the caller re-signs if it must. Without
              ``follow_redirects`` a 3xx is returned like any other response.
            * ``PeerResponse.url`` is the final URL; ``body`` is the decoded body of the final
              response, at most ``max_body_bytes``. When a content coding was decoded, the
              ``Content-Encoding`` and ``Content-Length`` headers (which describe the wire
              form) are removed from ``PeerResponse.headers``.
            * The call ends within ``timeouts.total_s`` seconds, redirects included.
            * HTTP error statuses are returned, not raised.

        Raises:
            UnsupportedScheme: the URL or a redirect target is not http(s).
            UnsafeAddress: the host is, or resolves to, a non-public address.
            PeerNotAllowed: the policy refuses the host of the URL or of a redirect target.
            InvalidUrl: the URL or a ``Location`` is malformed or carries userinfo.
            TooManyRedirects, RedirectLoop, InsecureRedirect: the redirect rules above.
            ResponseTooLarge: the body exceeds ``max_body_bytes``.
            ContentDecodingFailed: unsupported or corrupt content coding.
            FetchTimeout: a connect, read or total deadline passed.
            ConnectionFailed: any other network or HTTP protocol failure.
            RuntimeError: the transport is not started.
        """
        session = self._session
        if session is None:
            raise RuntimeError("AiohttpTransport.send() called before start()")
        try:
            async with asyncio.timeout(self._timeouts.total_s):
                return await self._send_chain(session, request, follow_redirects)
        except TimeoutError as exc:
            raise FetchTimeout(
                f"no complete answer within {self._timeouts.total_s} s", url=request.url
            ) from exc

    async def _send_chain(
        self, session: aiohttp.ClientSession, request: OutgoingRequest, follow_redirects: bool
    ) -> PeerResponse:
        method = request.method.upper()
        headers = list(request.headers.items())
        if "accept-encoding" not in request.headers:  # what _CappedDecoder can decode
            headers.append(("Accept-Encoding", "gzip, deflate"))
        body = request.body
        target = self._check_target(_parse_url(request.url))
        first_origin = target.origin
        visited: set[str] = set()
        # Bounded: one request per turn, max_redirects + 1 turns at most (case 7).
        for hop in range(self._max_redirects + 1):
            if follow_redirects:  # without, there is one hop and nothing to compare it with
                if target.visit_key in visited:
                    raise RedirectLoop("redirect loop", url=target.text)
                visited.add(target.visit_key)
            hop_headers = headers
            if hop and target.origin != first_origin:
                hop_headers = [(k, v) for k, v in headers if k.lower() not in _CREDENTIAL_HEADERS]
            outcome = await self._exchange_capped(
                session, method, target, hop_headers, body, follow_redirects
            )
            if isinstance(outcome, PeerResponse):
                return outcome
            if hop == self._max_redirects:
                break
            next_url, next_text = self._redirect_target(target.url, outcome.location)
            if target.url.scheme == "https" and next_url.scheme == "http":
                raise InsecureRedirect("redirect from https to http", url=next_text)
            if outcome.status == 303 or (outcome.status in (301, 302) and method != "GET"):
                if method != "HEAD":
                    method, body = "GET", None
                    headers = [(k, v) for k, v in headers if k.lower() not in _BODY_HEADERS]
            target = self._check_target((next_url, next_text))
        raise TooManyRedirects(
            f"more than {self._max_redirects} redirects", url=request.url, limit=self._max_redirects
        )

    async def _exchange_capped(
        self,
        session: aiohttp.ClientSession,
        method: str,
        target: _Target,
        headers: list[tuple[str, str]],
        body: bytes | None,
        follow_redirects: bool,
    ) -> PeerResponse | _Redirect:
        """:meth:`_exchange` holding a slot of the target's origin and of its host name."""
        origin_key, hostname = target.origin_key, target.hostname
        origin_slot = await self._origin_limiter.acquire(origin_key)
        try:
            host_slot = await self._host_limiter.acquire(hostname)
            try:
                return await self._exchange(session, method, target, headers, body, follow_redirects)
            finally:
                self._host_limiter.release(hostname, host_slot)
        finally:
            self._origin_limiter.release(origin_key, origin_slot)

    @staticmethod
    def _redirect_target(current: URL, location: str) -> tuple[URL, str]:
        try:
            joined = current.join(_parse_url(location)[0]).with_fragment(None)
        except (ValueError, TypeError) as exc:
            raise InvalidUrl(f"malformed Location: {exc}", url=str(current)) from exc
        return _parse_url(str(joined))

    def _check_target(self, parsed: tuple[URL, str]) -> _Target:
        """Everything that can be decided before connecting (cases 24, 25, 47)."""
        url, text = parsed
        if url.scheme not in _ALLOWED_SCHEMES:
            raise UnsupportedScheme(f"scheme {url.scheme!r} is not allowed", url=text)
        raw_host, port = url.raw_host, url.explicit_port  # safe: _parse_url forced parsing
        if url.raw_user is not None or url.raw_password is not None:
            raise InvalidUrl("URLs with userinfo are not fetched", url=text)
        if not raw_host:
            raise InvalidUrl("URL has no host", url=text)
        try:
            host, hostname, literal = _authority(url.scheme, raw_host, port)
        except (UnsafeAddress, InvalidUrl) as exc:
            exc.context.setdefault("url", text)
            raise
        if literal is not None:
            self._guard.check_literal(host, literal)
        else:
            self._guard.check_name(host, hostname)
        if self._policy is not None:
            self._policy.check(host)
        return _Target(url=url, text=text, host=host, hostname=hostname)

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        method: str,
        target: _Target,
        headers: list[tuple[str, str]],
        body: bytes | None,
        follow_redirects: bool,
    ) -> PeerResponse | _Redirect:
        try:
            async with session.request(
                method, target.url, headers=headers, data=body, allow_redirects=False
            ) as response:
                status = response.status
                if follow_redirects and status in _REDIRECT_STATUSES:
                    location = response.headers.get("Location")
                    if location:
                        return _Redirect(status, location)
                body_bytes, decoded = await _read_capped(response, self._max_body_bytes)
                return PeerResponse(
                    status=status, headers=_headers_read(response, decoded), url=target.text, body=body_bytes
                )
        except FederationError:
            raise
        except TimeoutError as exc:
            raise FetchTimeout(f"timed out talking to {target.host}", url=target.text) from exc
        except aiohttp.InvalidURL as exc:
            raise InvalidUrl(f"invalid URL: {exc}", url=target.text) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionFailed(f"{type(exc).__name__} talking to {target.host}", url=target.text) from exc


__all__ = [
    "AiohttpTransport",
    "ConnectionFailed",
    "ContentDecodingFailed",
    "FetchTimeout",
    "HostLimiter",
    "InsecureRedirect",
    "InvalidUrl",
    "RedirectLoop",
    "StaticResolver",
    "Timeouts",
    "TooManyRedirects",
    "UnsupportedScheme",
    "build_user_agent",
]
