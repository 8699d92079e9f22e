"""Reference servers the benchmarks compare Entraide with, each run as its own process.

``python -m tests.benchmarks.servers MODE --port P …`` where MODE is:

``bare-inbox``
    The limit (c) of the inbox benchmark: a bare aiohttp handler that verifies the draft-cavage
    signature and the body digest with :func:`federation.signatures.verify_request` (keys
    fetched once from the key server, then cached in memory) and answers 202. No JSON parsing,
    no database.
``null``
    Reads the body and answers 202: what the load generator itself can drive (its ceiling).
``static``
    Answers GETs with fixed bytes (``--spec`` JSON: path+query → file, content type), the
    reference of the reads benchmark.
``fake-hosts``
    The fan-out's receivers: ``--count`` listening ports (one fake host each) that record the
    arrival time of every POST and answer 202, plus a control port (``--port``) serving
    ``/ports``, ``/stats`` and ``/samples`` (the first request of each host, for signature checks).

Everything listens on 127.0.0.1 and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, cast

import aiohttp
from aiohttp import web

from federation.errors import FederationError, KeyUnavailable
from federation.http import Headers, IncomingRequest
from federation.keys import PublicKey, public_key_from_pem
from federation.signatures import verify_request
from federation.types import Iri

from ._common import FAKE_HOSTS_LOOP_ENV, REFERENCE_LOOP_ENV, uvloop_installed

# ---------------------------------------------------------------------------------------------
# (c) bare inbox and the null sink
# ---------------------------------------------------------------------------------------------


class CachingKeyResolver:
    """Fetch a keyId's actor document once (over loopback), then answer from memory."""

    def __init__(self) -> None:
        self._keys: dict[str, PublicKey] = {}
        self._session: aiohttp.ClientSession | None = None

    async def resolve(self, key_id: Iri, *, refresh: bool = False) -> PublicKey:
        cached = self._keys.get(key_id)
        if cached is not None and not refresh:
            return cached
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        async with self._session.get(
            key_id.split("#", 1)[0], headers={"Accept": "application/activity+json"}
        ) as response:
            if response.status != 200:
                raise KeyUnavailable(f"key fetch answered {response.status}", key_id=key_id)
            doc = json.loads(await response.read())
        entry = doc.get("publicKey") or {}
        if entry.get("id") != key_id:
            raise KeyUnavailable("the actor does not list this key", key_id=key_id)
        key = PublicKey(key_id, Iri(doc["id"]), public_key_from_pem(entry["publicKeyPem"]))
        self._keys[key_id] = key
        return key

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def bare_inbox_app(origin: str) -> web.Application:
    resolver = CachingKeyResolver()
    counts: Counter[str] = Counter()

    async def post(request: web.Request) -> web.Response:
        body = await request.read()
        incoming = IncomingRequest(
            method=request.method,
            url=origin + request.raw_path,
            target=request.raw_path,
            headers=Headers(list(request.headers.items())),
            body=body,
        )
        try:
            await verify_request(incoming, resolve_key=resolver, now=datetime.now(UTC))
        except FederationError as exc:
            counts[exc.code] += 1
            return web.Response(status=401, text=exc.code)
        counts["verified"] += 1
        return web.Response(status=202)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(dict(counts))

    async def closing(app: web.Application) -> None:
        await resolver.close()

    app = web.Application(client_max_size=1_048_576)
    app.router.add_post("/inbox", post)
    app.router.add_post("/{tail:.+}/inbox", post)
    app.router.add_get("/_stats", stats)
    app.on_cleanup.append(closing)
    return app


def null_app() -> web.Application:
    async def post(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202)

    app = web.Application(client_max_size=1_048_576)
    app.router.add_post("/{tail:.*}", post)
    app.router.add_get("/_stats", lambda r: web.json_response({}))  # type: ignore[arg-type,return-value]
    return app


# ---------------------------------------------------------------------------------------------
# Static bytes
# ---------------------------------------------------------------------------------------------


def static_app(spec_file: Path) -> web.Application:
    """Serve ``{path_qs: {"file": ..., "content_type": ...}}`` from memory, byte for byte."""
    spec = json.loads(spec_file.read_text())
    routes = {
        path_qs: (Path(entry["file"]).read_bytes(), entry["content_type"], dict(entry.get("headers", {})))
        for path_qs, entry in spec.items()
    }

    async def get(request: web.Request) -> web.Response:
        found = routes.get(request.path_qs)
        if found is None:
            return web.Response(status=404, text="not found")
        body, content_type, headers = found
        response = web.Response(body=body, headers=headers)
        response.headers["Content-Type"] = content_type
        return response

    app = web.Application()
    app.router.add_get("/{tail:.*}", get)
    return app


# ---------------------------------------------------------------------------------------------
# Fake hosts for the fan-out
# ---------------------------------------------------------------------------------------------


_ACCEPTED: Final = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
_NOT_FOUND: Final = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
_REFUSED: Final = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_MAX_HEAD: Final = 65_536
_MAX_BODY: Final = 1_048_576


class _FakeHostProtocol(asyncio.Protocol):
    """One connection to a fake host: HTTP/1.1 requests with a ``Content-Length`` body, kept alive.

    The fake hosts stand for other machines, yet they share the node's cores: an aiohttp server cost
    them 0.3 ms of CPU per delivery, a sixth of the node's own. This answers the same requests for a
    tenth of that. Anything it does not understand (a chunked body, a malformed head, an oversized
    request) is answered 400 and counted in ``refused``, so a benchmark cannot pass on requests that a
    real server would not have taken.
    """

    def __init__(self, hosts: FakeHosts) -> None:
        self.hosts = hosts
        self.port = 0
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.port = int(self.transport.get_extra_info("sockname")[1])
        self.hosts.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.hosts.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and not self.transport.is_closing():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > _MAX_HEAD:
                    self._refuse()
                return
            request = self._head(bytes(self.buffer[:end]))
            if request is None:
                self._refuse()
                return
            method, target, headers, length, close = request
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
            found = self.hosts.arrive(self.port, method, target, headers, body)
            self.transport.write(_ACCEPTED if found else _NOT_FOUND)
            if close:
                self.transport.close()

    @staticmethod
    def _head(head: bytes) -> tuple[str, str, list[tuple[str, str]], int, bool] | None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[2] != "HTTP/1.1":
            return None
        headers: list[tuple[str, str]] = []
        length, close = 0, False
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                return None
            name, value = name.strip(), value.strip()
            lowered = name.lower()
            if lowered == "content-length":
                if not value.isdigit() or int(value) > _MAX_BODY:
                    return None
                length = int(value)
            elif lowered == "transfer-encoding":
                return None
            elif lowered == "connection" and value.lower() == "close":
                close = True
            headers.append((name, value))
        return parts[0], parts[1], headers, length, close

    def _refuse(self) -> None:
        self.hosts.refused += 1
        assert self.transport is not None
        self.transport.write(_REFUSED)
        self.transport.close()


class FakeHosts:
    def __init__(self, count: int, samples_per_host: int = 1) -> None:
        self.count = count
        self.samples_per_host = samples_per_host
        self.ports: list[int] = []
        self.arrivals: list[tuple[float, int, str]] = []
        # First arrival per inbox, kept as POSTs come: the benchmark polls /stats every 50 ms,
        # and rebuilding this from 10,000 arrivals each time cost the fake hosts' core.
        self.first_by_inbox: dict[tuple[int, str], float] = {}
        self.samples: dict[int, list[dict[str, Any]]] = {}
        self.refused = 0
        self.servers: list[asyncio.Server] = []
        self.connections: set[_FakeHostProtocol] = set()

    def arrive(
        self, port: int, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> bool:
        """Record a complete request; whether it was a POST (answered 202, else 404)."""
        if method != "POST":
            return False
        now = time.time()
        self.arrivals.append((now, port, target))
        self.first_by_inbox.setdefault((port, target), now)
        kept = self.samples.setdefault(port, [])
        if len(kept) < self.samples_per_host:
            encoded = base64.b64encode(body).decode()
            kept.append({"port": port, "target": target, "headers": headers, "body": encoded})
        return True

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.count):
            server = await loop.create_server(lambda: _FakeHostProtocol(self), "127.0.0.1", 0, backlog=1024)
            self.servers.append(server)
            self.ports.append(server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()
        for server in self.servers:
            await server.wait_closed()

    def control_app(self) -> web.Application:
        async def ports(request: web.Request) -> web.Response:
            return web.json_response(self.ports)

        async def stats(request: web.Request) -> web.Response:
            first_by_inbox = self.first_by_inbox
            times = sorted(first_by_inbox.values()) if request.query.get("times") else []
            return web.json_response(
                {
                    "posts": len(self.arrivals),
                    "inboxes": len(first_by_inbox),
                    "hosts": len({port for port, _ in first_by_inbox}),
                    "duplicates": len(self.arrivals) - len(first_by_inbox),
                    "refused": self.refused,
                    "times": times,
                }
            )

        async def samples(request: web.Request) -> web.Response:
            return web.json_response([s for kept in self.samples.values() for s in kept])

        async def reset(request: web.Request) -> web.Response:
            self.arrivals.clear()
            self.first_by_inbox.clear()
            self.samples.clear()
            self.refused = 0
            return web.json_response({"reset": True})

        app = web.Application()
        app.router.add_get("/ports", ports)
        app.router.add_get("/stats", stats)
        app.router.add_get("/samples", samples)
        app.router.add_post("/reset", reset)
        return app


async def _serve_fake_hosts(count: int, control_port: int) -> None:
    # The control port is bound first: the hosts' ports are the kernel's choice, and one of them
    # could otherwise take the port the benchmark chose for the control (it did, once).
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening.bind(("127.0.0.1", control_port))
    hosts = FakeHosts(count)
    await hosts.start()
    control = web.AppRunner(hosts.control_app(), access_log=None)
    await control.setup()
    await web.SockSite(control, listening).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await control.cleanup()
        await hosts.close()


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=("bare-inbox", "null", "static", "fake-hosts"))
    parser.add_argument("--port", type=int, required=True, help="listening (or control) port on 127.0.0.1")
    parser.add_argument("--origin", help="bare-inbox: the origin signatures were made for")
    parser.add_argument("--spec", type=Path, help="static: JSON routes file")
    parser.add_argument("--count", type=int, default=200, help="fake-hosts: how many hosts (ports)")
    args = parser.parse_args()
    # The fake hosts stand for other machines: their cost is not the node's, and it shares the node's
    # cores, so they run on uvloop where installed. The references run on asyncio's loop unless
    # REFERENCE_LOOP_ENV says otherwise (every earlier run did).
    default = "uvloop" if args.mode == "fake-hosts" and uvloop_installed() else "asyncio"
    loop = os.environ.get(FAKE_HOSTS_LOOP_ENV if args.mode == "fake-hosts" else REFERENCE_LOOP_ENV) or default
    factory = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    elif loop != "asyncio":
        parser.error(f"event loop: asyncio or uvloop, not {loop!r}")
    if args.mode == "fake-hosts":
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(_serve_fake_hosts(args.count, args.port))
        return
    if args.mode == "bare-inbox":
        app = bare_inbox_app(args.origin or f"http://127.0.0.1:{args.port}")
    elif args.mode == "null":
        app = null_app()
    else:
        if args.spec is None:
            parser.error("static needs --spec")
        app = static_app(args.spec)
    web.run_app(
        app,
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        handle_signals=True,
        loop=factory() if factory is not None else None,
    )


if __name__ == "__main__":
    main()
