"""The load generator shared by every benchmark: signed inbox POSTs and plain GETs.

* :class:`KeyServer` publishes the senders' actor documents on 127.0.0.1 (Mastodon-shaped,
  RSA-2048 keys from ``tests/fixtures/keys``), so the server under test fetches each key once
  and caches it, as it would for a real peer. There are few senders (16 by default): a node
  limits key fetches per host, and real traffic comes from a few busy actors too.
* :func:`presign_creates` builds N *distinct* Mastodon-like ``Create{Note}`` activities (about
  2.3 KB, like the baseline test document of ``docs/performance.md``) and signs each POST with draft-cavage
  (:func:`federation.signatures.sign_request`) *before* the clock starts.
* :func:`fire` sends them with ``concurrency`` requests in flight over keep-alive connections
  and reports accepted/s, p50/p99 latency and the non-2xx answers.

Two HTTP clients are available and every table says which one ran:

``raw`` (default)
    Requests are serialised to HTTP/1.1 bytes in advance and written on ``concurrency``
    keep-alive asyncio connections; the answer's status line and length are parsed by hand.
    About 45 µs of client CPU per request, so one core drives ~20k requests/s.
``aiohttp``
    One ``aiohttp.ClientSession`` (connector limit = concurrency, keep-alive). About 250 µs of
    client CPU per request on the project machine: it caps at ~4k/s, below what a bare aiohttp
    server answers, so it would understate the limit (c) and flatter every ratio.

Run alone against any inbox that may fetch keys from 127.0.0.1 (e.g. the Fedify peer)::

    python -m tests.benchmarks.loadgen --inbox http://127.0.0.1:8080/inbox -n 3000 -c 32
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import itertools
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from federation.http import AP_CONTENT_TYPE, Headers, OutgoingRequest
from federation.keys import KeyPair, private_key_from_pem
from federation.signatures import sign_request
from federation.types import Iri

from ._common import cpu_seconds, fmt, percentile

KEYS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
KEY_FILES = ("rsa-alice.pem", "rsa-bob.pem", "rsa-mallory.pem")  # all RSA-2048
AS_PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
MASTODON_CONTEXT: list[Any] = [
    "https://www.w3.org/ns/activitystreams",
    "https://w3id.org/security/v1",
    {
        "ostatus": "http://ostatus.org#",
        "atomUri": "ostatus:atomUri",
        "inReplyToAtomUri": "ostatus:inReplyToAtomUri",
        "conversation": "ostatus:conversation",
        "sensitive": "as:sensitive",
        "toot": "http://joinmastodon.org/ns#",
        "votersCount": "toot:votersCount",
        "Hashtag": "as:Hashtag",
        "blurhash": "toot:blurhash",
    },
]
CONTENT = (
    "<p>Rupture de stock d'insuline rapide dans trois pharmacies du quartier ; "
    "réapprovisionnement annoncé sous dix jours. Contactez la permanence de l'association. "
    '<a href="https://example.invalid/tags/sante" class="mention hashtag" rel="tag">#<span>'
    "santé</span></a></p>"
)


# ---------------------------------------------------------------------------------------------
# Senders and the server publishing their keys
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sender:
    iri: str
    key: KeyPair


class KeyServer:
    """Actor documents of ``count`` senders at ``http://127.0.0.1:<port>/users/bench<i>``."""

    def __init__(self, count: int = 16) -> None:
        self.count = count
        self.senders: list[Sender] = []
        self.hits: Counter[str] = Counter()
        self._docs: dict[str, bytes] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> KeyServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        pems = [private_key_from_pem((KEYS_DIR / name).read_bytes()) for name in KEY_FILES]
        for i in range(self.count):
            iri = f"http://127.0.0.1:{self.port}/users/bench{i}"
            key = KeyPair(Iri(f"{iri}#main-key"), Iri(iri), pems[i % len(pems)])
            self.senders.append(Sender(iri, key))
            self._docs[f"/users/bench{i}"] = json.dumps(_actor_document(iri, f"bench{i}", key)).encode()
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.hits[f"{request.method} {request.path}"] += 1
        body = self._docs.get(request.path)
        if body is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=body, content_type=AP_CONTENT_TYPE)

    @property
    def gets(self) -> int:
        return sum(n for k, n in self.hits.items() if k.startswith("GET "))


def _actor_document(iri: str, username: str, key: KeyPair) -> dict[str, Any]:
    origin = iri.split("/users/", 1)[0]
    return {
        "@context": MASTODON_CONTEXT,
        "id": iri,
        "type": "Person",
        "preferredUsername": username,
        "name": username.title(),
        "summary": "<p>A sender of the Entraide benchmarks.</p>",
        "inbox": f"{iri}/inbox",
        "outbox": f"{iri}/outbox",
        "followers": f"{iri}/followers",
        "following": f"{iri}/following",
        "url": f"{origin}/@{username}",
        "manuallyApprovesFollowers": False,
        "endpoints": {"sharedInbox": f"{origin}/inbox"},
        "publicKey": {"id": key.key_id, "owner": iri, "publicKeyPem": key.public.to_pem()},
    }


# ---------------------------------------------------------------------------------------------
# Requests, prepared before the clock starts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepared:
    """One request exactly as it goes on the wire (the ``Host`` header included when signed)."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    def wire(self, authority: str) -> bytes:
        names = {k.lower() for k, _ in self.headers}
        lines = [f"{self.method} {self.target} HTTP/1.1"]
        if "host" not in names:
            lines.append(f"Host: {authority}")
        lines.extend(f"{k}: {v}" for k, v in self.headers if k.lower() != "content-length")
        if self.body or self.method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def create_note(sender: Sender, serial: str, now: datetime, *, ld_signature: bool = True) -> dict[str, Any]:
    """A Mastodon-like public ``Create{Note}`` of about 2.3 KB with unique ids.

    Like Mastodon's, it carries a Linked Data ``signature`` (whose value no one can verify:
    receivers fall back to the HTTP signature); ``ld_signature=False`` leaves it out."""
    status = f"{sender.iri}/statuses/{serial}"
    origin = sender.iri.split("/users/", 1)[0]
    published = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    to, cc = [AS_PUBLIC], [f"{sender.iri}/followers"]
    document: dict[str, Any] = {
        "@context": MASTODON_CONTEXT,
        "id": f"{status}/activity",
        "type": "Create",
        "actor": sender.iri,
        "published": published,
        "to": to,
        "cc": cc,
        "object": {
            "id": status,
            "type": "Note",
            "summary": None,
            "inReplyTo": None,
            "published": published,
            "url": f"{origin}/@{sender.iri.rsplit('/', 1)[1]}/{serial}",
            "attributedTo": sender.iri,
            "to": to,
            "cc": cc,
            "sensitive": False,
            "atomUri": status,
            "inReplyToAtomUri": None,
            "conversation": f"tag:127.0.0.1,{now:%Y-%m-%d}:objectId={serial}:objectType=Conversation",
            "content": CONTENT,
            "contentMap": {"fr": CONTENT},
            "attachment": [],
            "tag": [{"type": "Hashtag", "href": "https://example.invalid/tags/sante", "name": "#santé"}],
            "replies": {
                "id": f"{status}/replies",
                "type": "Collection",
                "first": {
                    "type": "CollectionPage",
                    "next": f"{status}/replies?only_other_accounts=true&page=true",
                    "partOf": f"{status}/replies",
                    "items": [],
                },
            },
        },
        "signature": {
            "type": "RsaSignature2017",
            "creator": sender.key.key_id,
            "created": published,
            "signatureValue": base64.b64encode(hashlib.sha512(serial.encode()).digest() * 4).decode(),
        },
    }
    if not ld_signature:
        del document["signature"]
    return document


def presign_creates(
    origin: str,
    target: str,
    senders: Sequence[Sender],
    n: int,
    *,
    tag: str,
    now: datetime | None = None,
    ld_signature: bool = True,
) -> list[Prepared]:
    """``n`` distinct signed POSTs of ``Create{Note}`` to ``origin + target`` (ids carry ``tag``)."""
    now = now or datetime.now(UTC)
    prepared: list[Prepared] = []
    for i in range(n):
        sender = senders[i % len(senders)]
        doc = create_note(sender, f"{tag}{i:07d}", now, ld_signature=ld_signature)
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        request = OutgoingRequest("POST", origin + target, Headers({"Content-Type": AP_CONTENT_TYPE}), body)
        signed = sign_request(request, sender.key, now=now)
        prepared.append(Prepared("POST", target, tuple((k, signed.headers[k]) for k in signed.headers), body))
    return prepared


def get_request(target: str, accept: str = AP_CONTENT_TYPE) -> Prepared:
    return Prepared("GET", target, (("Accept", accept),))


# ---------------------------------------------------------------------------------------------
# Firing
# ---------------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    label: str
    client: str
    concurrency: int
    sent: int = 0
    ok: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    client_cpu_s: float = 0.0
    response_bytes: int = 0

    @property
    def rate(self) -> float:
        """2xx answers per second."""
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    @property
    def throttled(self) -> int:
        """429 answers (rate-limited), counted apart from the other failures."""
        return self.statuses.get(429, 0)

    @property
    def p50_ms(self) -> float | None:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float | None:
        return percentile(self.latencies_ms, 99)

    @property
    def client_us_per_request(self) -> float | None:
        return 1e6 * self.client_cpu_s / self.sent if self.sent else None

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "client": self.client,
            "concurrency": self.concurrency,
            "sent": self.sent,
            "ok": self.ok,
            "rate": round(self.rate, 1),
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "throttled_429": self.throttled,
            "non_2xx": dict(self.statuses - Counter({s: n for s, n in self.statuses.items() if s < 300})),
            "errors": dict(self.errors),
            "elapsed_s": round(self.elapsed_s, 3),
            "client_us_per_request": self.client_us_per_request,
        }

    def describe_failures(self) -> str:
        bad = {s: n for s, n in self.statuses.items() if not 200 <= s < 300}
        parts = [f"{n}x{s}" for s, n in sorted(bad.items())] + [f"{n}x{e}" for e, n in self.errors.items()]
        return ", ".join(parts) or "0"


class _Protocol(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: write a request, parse exactly one response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, int]] | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self._head: tuple[int, int | None, bool, bool] | None = None  # status, length, chunked, close

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("connection closed by the server"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._parse()

    def _parse(self) -> None:
        if self.waiter is None or self.waiter.done():
            return
        if self._head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            del self.buffer[: end + 4]
            lines = head.split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length: int | None = None
            chunked = close = False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            self._head = (status, length, chunked, close)
        status, length, chunked, close = self._head
        if chunked:
            size = self._chunked_size()
            if size is None:
                return
            body_len = size
        else:
            body_len = length or 0
            if len(self.buffer) < body_len:
                return
            del self.buffer[:body_len]
        self._head = None
        waiter, self.waiter = self.waiter, None
        waiter.set_result((status, body_len))
        if close and self.transport is not None:
            self.transport.close()

    def _chunked_size(self) -> int | None:
        """Consume a complete chunked body from the buffer; None while incomplete."""
        pos, total = 0, 0
        buf = self.buffer
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            if size == 0:
                end = buf.find(b"\r\n\r\n", eol)  # optional trailers, then an empty line
                if end < 0:
                    return None
                del buf[: end + 4]
                return total
            start = eol + 2
            if len(buf) < start + size + 2:
                return None
            total += size
            pos = start + size + 2

    async def request(self, data: bytes) -> tuple[int, int]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


async def fire(
    origin: str,
    requests: Sequence[Prepared],
    *,
    concurrency: int,
    label: str = "",
    client: str = "raw",
    duration_s: float | None = None,
    timeout_s: float = 30.0,
    deadline_s: float = 180.0,
) -> LoadResult:
    """Send ``requests`` (each once; or cycling for ``duration_s`` seconds) and measure.

    At most ``concurrency`` requests are in flight, each connection kept alive. The whole run
    stops after ``deadline_s`` whatever happens (unsent requests are not counted).
    """
    if client == "aiohttp":
        return await _fire_aiohttp(
            origin, requests, concurrency=concurrency, label=label, duration_s=duration_s,
            timeout_s=timeout_s, deadline_s=deadline_s,
        )  # fmt: skip
    parts = urlsplit(origin)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    authority = parts.netloc
    wires = [r.wire(authority) for r in requests]
    result = LoadResult(label, "raw", concurrency)
    loop = asyncio.get_running_loop()
    source = itertools.cycle(wires) if duration_s is not None else iter(wires)
    stop_at = loop.time() + (duration_s if duration_s is not None else deadline_s)

    async def connect() -> _Protocol:
        _, protocol = await loop.create_connection(_Protocol, host, port)
        return protocol

    async def worker() -> None:
        conn: _Protocol | None = None
        try:
            for data in source:
                if loop.time() >= stop_at:
                    return
                started = time.perf_counter()
                result.sent += 1
                try:
                    if conn is None or conn.transport is None or conn.transport.is_closing():
                        conn = await connect()
                    status, size = await asyncio.wait_for(conn.request(data), timeout_s)
                except (OSError, TimeoutError, ConnectionError) as exc:
                    result.errors[type(exc).__name__] += 1
                    if conn is not None and conn.transport is not None:
                        conn.transport.close()
                    conn = None
                    continue
                result.latencies_ms.append(1000 * (time.perf_counter() - started))
                result.statuses[status] += 1
                result.response_bytes += size
                if 200 <= status < 300:
                    result.ok += 1
        finally:
            if conn is not None and conn.transport is not None:
                conn.transport.close()

    cpu0 = cpu_seconds() or 0.0
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - started
    result.client_cpu_s = (cpu_seconds() or 0.0) - cpu0
    return result


async def _fire_aiohttp(
    origin: str,
    requests: Sequence[Prepared],
    *,
    concurrency: int,
    label: str,
    duration_s: float | None,
    timeout_s: float,
    deadline_s: float,
) -> LoadResult:
    import aiohttp

    result = LoadResult(label, "aiohttp", concurrency)
    loop = asyncio.get_running_loop()
    source = itertools.cycle(requests) if duration_s is not None else iter(requests)
    stop_at = loop.time() + (duration_s if duration_s is not None else deadline_s)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False, skip_auto_headers=("User-Agent",)
    ) as session:

        async def worker() -> None:
            for prepared in source:
                if loop.time() >= stop_at:
                    return
                started = time.perf_counter()
                result.sent += 1
                try:
                    async with session.request(
                        prepared.method,
                        origin + prepared.target,
                        data=prepared.body or None,
                        headers=list(prepared.headers),
                        allow_redirects=False,
                    ) as response:
                        body = await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    result.errors[type(exc).__name__] += 1
                    continue
                result.latencies_ms.append(1000 * (time.perf_counter() - started))
                result.statuses[status] += 1
                result.response_bytes += len(body)
                if 200 <= status < 300:
                    result.ok += 1

        cpu0 = cpu_seconds() or 0.0
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.elapsed_s = time.perf_counter() - started
        result.client_cpu_s = (cpu_seconds() or 0.0) - cpu0
    return result


def median_round(rounds: Sequence[LoadResult]) -> LoadResult:
    """The round with the median rate (its latencies are reported with it)."""
    ordered = sorted(rounds, key=lambda r: r.rate)
    return ordered[len(ordered) // 2]


async def send_one(origin: str, prepared: Prepared, timeout_s: float = 30.0) -> int:
    """Send one request and return its status (warm-ups: the key fetch happens here)."""
    result = await fire(origin, [prepared], concurrency=1, timeout_s=timeout_s)
    if result.errors:
        raise RuntimeError(f"request to {origin}{prepared.target} failed: {dict(result.errors)}")
    return next(iter(result.statuses))


# ---------------------------------------------------------------------------------------------
# Command line: fire at any inbox
# ---------------------------------------------------------------------------------------------


async def _main(args: argparse.Namespace) -> None:
    parts = urlsplit(args.inbox)
    origin = f"{parts.scheme}://{parts.netloc}"
    keys = await KeyServer(args.senders).start()
    try:
        warm = presign_creates(origin, parts.path, keys.senders, len(keys.senders), tag="warm")
        statuses = [await send_one(origin, p) for p in warm]
        print(f"warm-up: {Counter(statuses)}; key server answered {keys.gets} GETs")
        batch = presign_creates(origin, parts.path, keys.senders, args.n, tag=f"run{int(time.time())}-")
        result = await fire(origin, batch, concurrency=args.c, client=args.client, label=args.inbox)
        print(
            f"{result.ok}/{result.sent} accepted in {result.elapsed_s:.2f} s: {fmt(result.rate)} /s, "
            f"p50 {fmt(result.p50_ms, 1)} ms, p99 {fmt(result.p99_ms, 1)} ms, "
            f"throttled (429): {result.throttled}, non-2xx/errors: {result.describe_failures()}"
        )
    finally:
        await keys.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inbox", required=True, help="inbox URL on 127.0.0.1")
    parser.add_argument("-n", type=int, default=3000, help="activities (default 3000)")
    parser.add_argument("-c", type=int, default=32, help="concurrency (default 32)")
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw")
    args = parser.parse_args()
    host = urlsplit(args.inbox).hostname or ""
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        parser.error("the load generator only sends to loopback addresses")
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
