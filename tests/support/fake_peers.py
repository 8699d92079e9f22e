"""Fake ActivityPub peers: one aiohttp app on 127.0.0.1 playing several named hosts.

``peer.example`` and ``evil.example`` (and any other name the test maps to 127.0.0.1 with a
``StaticResolver``) are told apart by the ``Host`` header. Each test registers the exact
responses it needs; every request is recorded with the outcome of a real HTTP signature check
(``federation.signatures.verify_request`` against the keys the test gives the peer), so a
test can assert what was fetched, how often, and that it was signed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from federation.errors import FederationError
from federation.http import AP_CONTENT_TYPE, Headers, IncomingRequest
from federation.keys import KeyPair, PublicKey
from federation.memory import MemoryKeyResolver
from federation.signatures import verify_request
from federation.transport import AiohttpTransport, StaticResolver, build_user_agent
from federation.types import Iri, JsonObject, utc_now

PEER_NAMES = ("peer.example", "evil.example", "third.example")
USER_AGENT = build_user_agent("0.1.0-test", "https://entraide.test")


@dataclass(frozen=True, slots=True)
class Hit:
    """One request a fake peer received."""

    host: str
    target: str
    method: str
    key_id: str | None  # keyId of a signature that verified, else None
    signature_error: str | None  # code of the verification failure, None if verified or unsigned
    signed_host: str | None  # the Host header the request carried


@dataclass(slots=True)
class _Route:
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass
class FakePeers:
    """Named fake peers on one test server. Call :meth:`start` (through the fixture) first."""

    clock: Callable[[], datetime] = utc_now
    verifier: MemoryKeyResolver = field(default_factory=MemoryKeyResolver)
    hits: list[Hit] = field(default_factory=list)
    require_signature: bool = False
    _routes: dict[tuple[str, str], _Route] = field(default_factory=dict)
    server: TestServer | None = None

    # --- setup --------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    @property
    def port(self) -> int:
        assert self.server is not None and self.server.port is not None
        return self.server.port

    def authority(self, host: str) -> str:
        return f"{host}:{self.port}"

    def iri(self, host: str, path: str) -> Iri:
        """``http://host:port/path``: how IRIs of a fake peer look."""
        return Iri(f"http://{host}:{self.port}{path}")

    def trust(self, *keys: KeyPair | PublicKey) -> None:
        """Let the peers verify signatures made with ``keys``."""
        for key in keys:
            self.verifier.add(key.public if isinstance(key, KeyPair) else key)

    # --- responses ----------------------------------------------------------------------

    def serve(
        self,
        host: str,
        target: str,
        body: JsonObject | list[Any] | bytes | str,
        *,
        status: int = 200,
        content_type: str | None = AP_CONTENT_TYPE,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer ``GET http://host:port{target}`` (path plus raw query) with ``body``."""
        raw = (
            body
            if isinstance(body, bytes)
            else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
        )
        all_headers = dict(headers or {})
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        self._routes[(host, target)] = _Route(status, raw, all_headers)

    def serve_json(self, iri: str, doc: JsonObject, **kwargs: Any) -> None:
        """Serve ``doc`` at the fake-peer IRI ``iri``."""
        host, target = self._split(iri)
        self.serve(host, target, doc, **kwargs)

    def redirect(self, iri: str, location: str, *, status: int = 302) -> None:
        host, target = self._split(iri)
        self.serve(host, target, b"", status=status, content_type=None, headers={"Location": location})

    def status(self, iri: str, status: int, *, headers: dict[str, str] | None = None) -> None:
        host, target = self._split(iri)
        self.serve(host, target, b"", status=status, content_type="text/plain", headers=headers)

    def forget(self, iri: str) -> None:
        self._routes.pop(self._split(iri), None)

    # --- inspection ---------------------------------------------------------------------

    def count(self, iri: str) -> int:
        """How many requests reached ``iri``."""
        host, target = self._split(iri)
        return sum(1 for h in self.hits if h.host == host and h.target == target)

    def hits_on(self, host: str) -> list[Hit]:
        return [h for h in self.hits if h.host == host]

    # --- internals ----------------------------------------------------------------------

    def _split(self, iri: str) -> tuple[str, str]:
        rest = iri.split("://", 1)[1]
        authority, _, path = rest.partition("/")
        return authority.rsplit(":", 1)[0], "/" + path

    async def _handle(self, request: web.Request) -> web.Response:
        host = (request.host or "").rsplit(":", 1)[0].lower()
        target = request.raw_path
        key_id: str | None = None
        error: str | None = None
        if "signature" in request.headers or "signature-input" in request.headers:
            incoming = IncomingRequest(
                method=request.method,
                url=f"http://{request.host}{target}",
                target=target,
                headers=Headers(list(request.headers.items())),
                body=await request.read(),
            )
            try:
                signer = await verify_request(incoming, resolve_key=self.verifier, now=self.clock())
                key_id = signer.key_id
            except FederationError as exc:
                error = exc.code
        self.hits.append(Hit(host, target, request.method, key_id, error, request.headers.get("Host")))
        if self.require_signature and key_id is None:
            return web.Response(status=401, text="signature required")
        route = self._routes.get((host, target))
        if route is None:
            return web.Response(status=404, text="not found")
        return web.Response(status=route.status, body=route.body, headers=route.headers)


def peer_transport(**kwargs: Any) -> AiohttpTransport:
    """A guarded transport that reaches the fake peers' names (and only those) on 127.0.0.1."""
    return AiohttpTransport(
        user_agent=USER_AGENT,
        allow_private_addresses=False,
        trusted_test_hosts=PEER_NAMES,
        resolver=StaticResolver({name: ["127.0.0.1"] for name in PEER_NAMES}),
        **kwargs,
    )


def actor_document(
    iri: str,
    *,
    username: str,
    keys: tuple[PublicKey, ...] = (),
    actor_type: str = "Person",
    **extra: Any,
) -> JsonObject:
    """A Mastodon-shaped actor document with ``keys`` as ``publicKey`` entries."""
    doc: JsonObject = {
        "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
        "id": iri,
        "type": actor_type,
        "preferredUsername": username,
        "name": username.title(),
        "inbox": f"{iri}/inbox",
        "outbox": f"{iri}/outbox",
        "followers": f"{iri}/followers",
        "following": f"{iri}/following",
        "endpoints": {"sharedInbox": iri.split("/", 3)[0] + "//" + iri.split("/", 3)[2] + "/inbox"},
    }
    entries = [{"id": k.key_id, "owner": k.owner, "publicKeyPem": k.to_pem()} for k in keys]
    if len(entries) == 1:
        doc["publicKey"] = entries[0]
    elif entries:
        doc["publicKey"] = entries
    doc.update(extra)
    return doc


def jrd(subject: str, *links: tuple[str, str | None]) -> JsonObject:
    """A WebFinger JRD with one ``self`` link per (actor IRI, AS type or None)."""
    items: list[JsonObject] = []
    for href, as_type in links:
        link: JsonObject = {"rel": "self", "type": AP_CONTENT_TYPE, "href": href}
        if as_type is not None:
            link["properties"] = {"https://www.w3.org/ns/activitystreams#type": as_type}
        items.append(link)
    return {"subject": subject, "aliases": [href for href, _ in links], "links": items}


@dataclass
class FakeClock:
    """A settable :data:`federation.types.Clock` for tests of TTLs and rate limits."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta
