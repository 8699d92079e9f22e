"""A hostile fake peer: an aiohttp app on 127.0.0.1 that misbehaves on purpose, route by route.

:class:`HostilePeer` is a :class:`~tests.support.fake_peers.FakePeers` (it serves honest
documents, records every request with its signature check, and tells hosts apart by ``Host``)
running on its own port, whose routes can also play what security.md §D-§E attack with:
redirect chains and loops, a slow drip (headers, then one byte every few ms), a body that never
ends, a lying ``Content-Type``, a wrong ``id``, a huge streamed body (with or without
``Content-Length``), deeply nested JSON, a gzip bomb, and reply chains of any length.

The node reaches it by name exactly as it reaches the fake peers: :func:`hostile_transport` is
:func:`~tests.support.fake_peers.peer_transport`'s guarded transport with a resolver that also
answers for the names a test adds (``h17.evil.example``, trusted like the peers' names) and
for untrusted names that resolve to loopback (``localhost.evil.example``: the guard must refuse
them). Every streamed route counts what it sent in a :class:`Traffic`, so a test asserts that
the node stopped reading (``cut``), how much it was sent, and that no route was reached at all.
Every play is bounded in time (:data:`MAX_PLAY_S`) and stops as soon as the client goes away,
so the server always shuts down promptly.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import socket
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from federation.http import AP_CONTENT_TYPE
from federation.transport import AiohttpTransport, StaticResolver
from federation.types import Iri, JsonObject
from tests.support.fake_peers import PEER_NAMES, USER_AGENT, FakePeers, Hit
from tests.support.signed_inbox import AS_CONTEXT, RemoteAccount

HOSTILE_HOST = "evil.example"
"""The name the hostile peer plays by default (on its own port: another origin than mallory's)."""

LOOPBACK_NAME = "localhost.evil.example"
"""An attacker's name whose DNS answer is 127.0.0.1 and that no test trusts (case 24)."""

MAX_PLAY_S = 30.0
"""No hostile response lasts longer than this, whatever the client does."""

CHUNK = 64 * 1024
MIB = 1024 * 1024

Play = Callable[[web.Request, "Traffic"], Awaitable[web.StreamResponse]]


@dataclass
class Traffic:
    """What one hostile route did: requests, body bytes handed to the socket, how they ended."""

    requests: int = 0
    bytes_sent: int = 0
    finished: int = 0  # bodies written to the end
    cut: int = 0  # bodies the client stopped reading (the connection went away mid-body)


class _ClientGone(Exception):
    pass


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _pause(request: web.Request, seconds: float) -> None:
    """Sleep ``seconds``, in short steps, and stop early when the client has gone."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while True:
        if _gone(request):
            raise _ClientGone
        left = end - loop.time()
        if left <= 0:
            return
        await asyncio.sleep(min(left, 0.02))


async def _write(request: web.Request, response: web.StreamResponse, traffic: Traffic, data: bytes) -> None:
    if _gone(request):
        raise _ClientGone
    try:
        await response.write(data)
    except ConnectionError as exc:
        raise _ClientGone from exc
    traffic.bytes_sent += len(data)


async def _stream(
    request: web.Request,
    traffic: Traffic,
    chunks: Iterable[bytes],
    *,
    headers: dict[str, str],
    every_s: float = 0.0,
    then_hang: bool = False,
) -> web.StreamResponse:
    """Send ``headers``, then ``chunks`` (``every_s`` apart); count bytes; notice a client leaving."""
    response = web.StreamResponse(status=200, headers=headers)
    await response.prepare(request)
    try:
        async with asyncio.timeout(MAX_PLAY_S):
            for chunk in chunks:
                await _write(request, response, traffic, chunk)
                if every_s:
                    await _pause(request, every_s)
            if then_hang:
                await _pause(request, MAX_PLAY_S)
            await response.write_eof()
    except (_ClientGone, TimeoutError):
        traffic.cut += 1
        return response
    except asyncio.CancelledError:
        traffic.cut += 1  # aiohttp cancels the handler when the client's connection is lost
        raise
    traffic.finished += 1
    return response


def _bytes_of(body: JsonObject | bytes | str) -> bytes:
    if isinstance(body, bytes):
        return body
    return body.encode() if isinstance(body, str) else json.dumps(body).encode()


@functools.cache
def _bomb(decoded_bytes: int) -> bytes:
    """A gzip member that inflates to a JSON object padded with ``decoded_bytes`` of zeros."""
    raw = b'{"type":"Note","content":"' + b"0" * decoded_bytes + b'"}'
    return gzip.compress(raw, compresslevel=9)


@dataclass
class HostilePeer(FakePeers):
    """Fake peers whose routes can misbehave; start it with the :func:`hostile` fixture."""

    traffic: dict[tuple[str, str], Traffic] = field(default_factory=dict)
    _plays: dict[tuple[str, str], Play] = field(default_factory=dict)

    # --- addressing ---------------------------------------------------------------------

    def at(self, path: str, host: str = HOSTILE_HOST) -> Iri:
        """``http://evil.example:<hostile port>{path}``."""
        return self.iri(host, path)

    def traffic_on(self, iri: str) -> Traffic:
        """The counters of the route at ``iri`` (zero when it was never reached)."""
        return self.traffic.setdefault(self._split(iri), Traffic())

    def reached(self) -> list[Hit]:
        return list(self.hits)

    # --- behaviours ---------------------------------------------------------------------

    def play(self, iri: str, play: Play) -> None:
        """Answer ``iri`` with ``play`` (any coroutine given the request and the route's counters)."""
        key = self._split(iri)
        self._plays[key] = play
        self.traffic.setdefault(key, Traffic())

    def redirect_chain(self, iri: str, hops: int, *, to: str | None = None, status: int = 302) -> list[str]:
        """``iri`` → ``iri?hop=1`` → … → ``iri?hop=hops`` → ``to`` (when given). Returns the chain."""
        chain = [iri, *(f"{iri}?hop={n}" for n in range(1, hops + 1))]
        for here, there in zip(chain, [*chain[1:], to], strict=True):
            if there is not None:
                self.redirect(here, there, status=status)
        return chain

    def redirect_loop(self, a: str, b: str) -> None:
        """``a`` → ``b`` → ``a`` → …"""
        self.redirect(a, b)
        self.redirect(b, a)

    def drip(
        self,
        iri: str,
        body: JsonObject | bytes | str,
        *,
        every_s: float = 0.05,
        declare_length: bool = True,
        content_type: str = AP_CONTENT_TYPE,
    ) -> None:
        """Slowloris: headers at once, then the body one byte every ``every_s`` seconds."""
        raw = _bytes_of(body)
        headers = {"Content-Type": content_type}
        if declare_length:
            headers["Content-Length"] = str(len(raw))

        async def play(request: web.Request, traffic: Traffic) -> web.StreamResponse:
            one_by_one = (raw[i : i + 1] for i in range(len(raw)))
            return await _stream(request, traffic, one_by_one, headers=headers, every_s=every_s)

        self.play(iri, play)

    def never_finish(self, iri: str, *, head: bytes = b'{"id": "', declared: int | None = 10_000) -> None:
        """Headers and ``head``, then nothing more, ever (until the client leaves)."""
        headers = {"Content-Type": AP_CONTENT_TYPE}
        if declared is not None:
            headers["Content-Length"] = str(declared)

        async def play(request: web.Request, traffic: Traffic) -> web.StreamResponse:
            return await _stream(request, traffic, [head], headers=headers, then_hang=True)

        self.play(iri, play)

    def huge(
        self,
        iri: str,
        size: int,
        *,
        declare_length: bool = True,
        content_type: str = AP_CONTENT_TYPE,
    ) -> None:
        """A JSON object of ``size`` bytes (``id`` = ``iri``, padded ``content``), in 64 KiB chunks."""
        prefix = json.dumps({"id": iri, "type": "Note"})[:-1].encode() + b', "content": "'
        suffix = b'"}'
        padding = size - len(prefix) - len(suffix)
        headers = {"Content-Type": content_type}
        if declare_length:
            headers["Content-Length"] = str(size)

        def chunks() -> Iterator[bytes]:
            yield prefix
            filler = b"x" * CHUNK
            left = padding
            while left > 0:
                yield filler[: min(left, CHUNK)]
                left -= CHUNK
            yield suffix

        async def play(request: web.Request, traffic: Traffic) -> web.StreamResponse:
            return await _stream(request, traffic, chunks(), headers=headers)

        self.play(iri, play)

    def gzip_bomb(self, iri: str, *, decoded: int = 10 * MIB, declare_length: bool = True) -> int:
        """``Content-Encoding: gzip`` of ``decoded`` zeros (a few KB on the wire). Returns the wire size."""
        wire = _bomb(decoded)
        headers = {"Content-Type": AP_CONTENT_TYPE, "Content-Encoding": "gzip"}
        if declare_length:
            headers["Content-Length"] = str(len(wire))

        async def play(request: web.Request, traffic: Traffic) -> web.StreamResponse:
            pieces = (wire[i : i + CHUNK] for i in range(0, len(wire), CHUNK))
            return await _stream(request, traffic, pieces, headers=headers)

        self.play(iri, play)
        return len(wire)

    def nested(self, iri: str, depth: int) -> None:
        """A document whose ``content`` is ``depth`` levels of ``{"a": …}``, labelled activity+json."""
        inner = b'{"a":' * depth + b"1" + b"}" * depth
        head = json.dumps({"id": iri, "type": "Note"})[:-1].encode()
        host, target = self._split(iri)
        self.serve(host, target, head + b', "content": ' + inner + b"}")

    def lying(self, iri: str, lie: str, doc: JsonObject | None = None) -> None:
        """``html_as_activity``: an HTML page labelled activity+json; ``activity_as_html``: a
        valid document labelled text/html; ``activity_as_json``: labelled plain application/json."""
        host, target = self._split(iri)
        document = doc or {"@context": AS_CONTEXT, "id": iri, "type": "Note", "content": "x"}
        if lie == "html_as_activity":
            self.serve(host, target, b"<!doctype html><html><body>hi</body></html>")
        elif lie == "activity_as_html":
            self.serve(host, target, document, content_type="text/html; charset=utf-8")
        elif lie == "activity_as_json":
            self.serve(host, target, document, content_type="application/json")
        else:
            raise ValueError(f"unknown lie {lie!r}")

    def wrong_id(self, iri: str, doc: JsonObject, claimed: str) -> None:
        """Serve ``doc`` at ``iri`` with another ``id``."""
        self.serve_json(iri, {**doc, "id": claimed})

    def reply_chain(
        self, author: RemoteAccount, length: int, *, loop_to: int | None = None, prefix: str = "/chain"
    ) -> list[Iri]:
        """Notes ``{prefix}/0`` … ``{prefix}/{length-1}`` by ``author``, note N ``inReplyTo`` note
        N+1; the last replies to note ``loop_to`` (a cycle) or to a note that is never served."""
        iris = [author.iri_on_host(f"{prefix}/{n}") for n in range(length)]
        for n, iri in enumerate(iris):
            parent = iris[n + 1] if n + 1 < length else None
            if parent is None:
                parent = iris[loop_to] if loop_to is not None else author.iri_on_host(f"{prefix}/{length}")
            self.serve_json(
                iri,
                {
                    "@context": AS_CONTEXT,
                    "id": iri,
                    "type": "Note",
                    "attributedTo": author.iri,
                    "content": f"<p>reply {n}</p>",
                    "inReplyTo": parent,
                    "to": ["https://www.w3.org/ns/activitystreams#Public"],
                },
            )
        return iris

    # --- internals ----------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:  # type: ignore[override]
        host = (request.host or "").rsplit(":", 1)[0].lower()
        play = self._plays.get((host, request.raw_path))
        if play is None:
            return await super()._handle(request)
        self.hits.append(Hit(host, request.raw_path, request.method, None, None, request.headers.get("Host")))
        traffic = self.traffic[(host, request.raw_path)]
        traffic.requests += 1
        return await play(request, traffic)


async def start_hostile(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> HostilePeer:
    """A :class:`HostilePeer` on its own 127.0.0.1 port (call from a fixture with ``aiohttp_server``)."""
    peer = HostilePeer()
    peer.server = await aiohttp_server(peer.app(), host="127.0.0.1")
    return peer


class HostileResolver(AbstractResolver):
    """The fake peers' names and ``trusted`` names → 127.0.0.1; ``untrusted`` names → their answers.

    Which names the transport *trusts* is the transport's business (:func:`hostile_transport`):
    ``untrusted`` names (by default :data:`LOOPBACK_NAME` → 127.0.0.1) are answered but never
    trusted, so the guard must refuse every non-public answer.
    """

    def __init__(
        self, trusted: Iterable[str] = (), untrusted: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        table: dict[str, Sequence[str]] = {name: ["127.0.0.1"] for name in (*PEER_NAMES, *trusted)}
        table.update(untrusted if untrusted is not None else {LOOPBACK_NAME: ["127.0.0.1"]})
        self._inner = StaticResolver(table)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return await self._inner.resolve(host, port, family)

    async def close(self) -> None:
        await self._inner.close()


def hostile_transport(
    *,
    extra_trusted: Iterable[str] = (),
    untrusted: Mapping[str, Sequence[str]] | None = None,
    **kwargs: Any,
) -> AiohttpTransport:
    """:func:`~tests.support.fake_peers.peer_transport` plus ``extra_trusted`` names (attacker
    subdomains playing public hosts on 127.0.0.1) and ``untrusted`` names with the DNS answers
    an attacker chose (default: :data:`LOOPBACK_NAME` → 127.0.0.1), which the guard must refuse."""
    extra = tuple(extra_trusted)
    return AiohttpTransport(
        user_agent=USER_AGENT,
        allow_private_addresses=False,
        trusted_test_hosts=(*PEER_NAMES, *extra),
        resolver=HostileResolver(extra, untrusted),
        **kwargs,
    )


__all__ = [
    "HOSTILE_HOST",
    "LOOPBACK_NAME",
    "MAX_PLAY_S",
    "HostilePeer",
    "HostileResolver",
    "Traffic",
    "hostile_transport",
    "start_hostile",
]
