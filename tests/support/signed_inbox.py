"""Signed inbox requests to a running node, from remote actors that fake peers really serve.

A :class:`RemoteAccount` is an actor document published by :class:`~tests.support.fake_peers.FakePeers`
(``http://peer.example:<port>/users/alice``) with a fixed key from ``tests/fixtures/keys``, so the
node under test fetches and checks the key exactly as it would a real peer's. An
:class:`InboxSender` builds POSTs signed with :func:`federation.signatures.sign_request`
(draft-cavage or RFC 9421, at an injectable time), lets a test tamper with them on the way, and
sends the bytes to the node over HTTP. :class:`StallingPeers` adds routes that never answer within
a short transport timeout. Nothing here bypasses verification.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import and_, func, or_, select

from federation.http import AP_CONTENT_TYPE, Headers, OutgoingRequest
from federation.keys import KeyPair, PrivateKeyType, private_key_from_pem
from federation.signatures import SignatureSpec, sign_request
from federation.signatures.cavage import CavageSignature, build_signing_string
from federation.signatures.digest import compute_digest
from federation.types import Iri, JsonObject, utc_now
from server.db.models import InboxActivity, Job
from tests.support.fake_peers import FakePeers, Hit, actor_document
from tests.support.nodes import Node, wait_until

KEYS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "keys"
AS_CONTEXT = "https://www.w3.org/ns/activitystreams"
AS_PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


@functools.cache
def _private_key(file_name: str) -> PrivateKeyType:
    # Loading an RSA PEM costs ~0.1 s (consistency checks); each file is read once per run.
    return private_key_from_pem((KEYS_DIR / file_name).read_bytes())


def fixed_key(file_name: str, key_id: str, owner: str) -> KeyPair:
    """A key pair from one of the fixed PEM files, known by ``key_id`` and owned by ``owner``."""
    return KeyPair(Iri(key_id), Iri(owner), _private_key(file_name))


# ---------------------------------------------------------------------------------------------
# Remote actors served by fake peers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemoteAccount:
    """A remote actor: its IRI on a fake peer and the key pair its document publishes."""

    iri: Iri
    key: KeyPair
    peers: FakePeers = field(repr=False, compare=False)

    @property
    def key_id(self) -> Iri:
        return self.key.key_id

    @property
    def host(self) -> str:
        """The peer name (``peer.example``), without the test port."""
        return self.iri.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]

    def iri_on_host(self, path: str) -> Iri:
        """An IRI on this actor's own host (activity and object ids it may vouch for)."""
        return self.peers.iri(self.host, path)

    def new_id(self, kind: str = "activities") -> Iri:
        """A fresh id on this actor's host."""
        return self.iri_on_host(f"/{kind}/{secrets.token_hex(6)}")

    def signing_as(self, key: KeyPair) -> RemoteAccount:
        """The same actor signing with another key (``key.key_id`` names it)."""
        return replace(self, key=key)


def remote_account(
    peers: FakePeers,
    host: str,
    username: str,
    key_file: str,
    *,
    fragment: str = "main-key",
    serve: bool = True,
) -> RemoteAccount:
    """An actor ``http://host:port/users/username`` whose document (served unless ``serve`` is
    False) lists the fixed key ``key_file`` as ``#fragment``."""
    iri = peers.iri(host, f"/users/{username}")
    key = fixed_key(key_file, f"{iri}#{fragment}", iri)
    if serve:
        peers.serve_json(iri, actor_document(iri, username=username, keys=(key.public,)))
    return RemoteAccount(iri, key, peers)


def accept_deliveries(*accounts: RemoteAccount) -> None:
    """Let the accounts' peers answer 202 on their shared inbox and on each account's inbox."""
    for account in accounts:
        account.peers.serve(account.host, "/inbox", b"", status=202, content_type=None)
        account.peers.serve_json(f"{account.iri}/inbox", {}, status=202)


def posts_to(peers: FakePeers, host: str) -> list[Hit]:
    """The POSTs a fake peer received (deliveries from the node)."""
    return [h for h in peers.hits_on(host) if h.method == "POST"]


def gets_to(peers: FakePeers, host: str) -> list[Hit]:
    """The GETs a fake peer received (key, actor and object fetches by the node)."""
    return [h for h in peers.hits_on(host) if h.method == "GET"]


# ---------------------------------------------------------------------------------------------
# Signed requests
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedPost:
    """A POST exactly as it will go on the wire: target (raw path), headers, body bytes."""

    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def with_body(self, body: bytes) -> SignedPost:
        """The same headers (signature and digest included) with other bytes: tampering."""
        return replace(self, body=body)

    def with_target(self, target: str) -> SignedPost:
        """The same signed request sent to another path: a replay to another inbox."""
        return replace(self, target=target)

    def with_headers(self, **changes: str | None) -> SignedPost:
        """Headers replaced (``Content_Digest="..."`` → ``Content-Digest``) or dropped (None)."""
        names = {
            name.replace("_", "-").lower(): (name.replace("_", "-"), value) for name, value in changes.items()
        }
        kept = [(k, v) for k, v in self.headers if k.lower() not in names]
        added = [(name, value) for name, value in names.values() if value is not None]
        return replace(self, headers=tuple(kept + added))


@dataclass(frozen=True, slots=True)
class Reply:
    """The node's answer, read in full (status, content type, parsed JSON body if any)."""

    status: int
    content_type: str
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def code(self) -> str | None:
        """The problem+json ``code``, when the answer is a problem."""
        return self.body.get("code") if isinstance(self.body, dict) else None

    @property
    def is_problem(self) -> bool:
        return (
            self.content_type == "application/problem+json"
            and isinstance(self.body, dict)
            and self.body.get("status") == self.status
        )


def encode(document: JsonObject) -> bytes:
    """The bytes of an activity as a peer sends them."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass
class InboxSender:
    """Signs and sends inbox POSTs to ``node``; ``clock`` is the signer's idea of now."""

    node: Node
    clock: Callable[[], datetime] = utc_now

    def url(self, target: str) -> str:
        return self.node.uris.origin + target

    def sign(
        self,
        target: str,
        body: bytes,
        key: KeyPair,
        *,
        spec: SignatureSpec = "cavage",
        now: datetime | None = None,
        content_type: str = AP_CONTENT_TYPE,
    ) -> SignedPost:
        """``body`` POSTed to ``target``, signed by ``key`` with ``spec`` at ``now``."""
        request = OutgoingRequest("POST", self.url(target), Headers({"Content-Type": content_type}), body)
        signed = sign_request(request, key, now=now or self.clock(), spec=spec)
        return SignedPost(target, tuple((name, signed.headers[name]) for name in signed.headers), body)

    def sign_activity(self, target: str, activity: JsonObject, key: KeyPair, **kwargs: Any) -> SignedPost:
        return self.sign(target, encode(activity), key, **kwargs)

    def sign_cavage_raw(
        self,
        target: str,
        body: bytes,
        key: KeyPair,
        *,
        covered: tuple[str, ...],
        algorithm: str = "rsa-sha256",
        key_id: str | None = None,
        hmac_secret: bytes | None = None,
        now: datetime | None = None,
    ) -> SignedPost:
        """A hand-built cavage signature over exactly ``covered`` (real bytes, attacker-style).

        ``hmac_secret`` signs with HMAC-SHA256 instead of ``key`` (algorithm confusion, case 9).
        """
        headers = Headers(
            {
                "Host": self.node.uris.host,
                "Date": _http_date(now or self.clock()),
                "Digest": compute_digest(body),
                "Content-Type": AP_CONTENT_TYPE,
            }
        )
        claimed = CavageSignature(key_id or key.key_id, algorithm, covered, b"")
        text = build_signing_string(claimed, method="post", target=target, headers=headers).encode()
        raw = (
            hmac.new(hmac_secret, text, hashlib.sha256).digest()
            if hmac_secret is not None
            else key.sign(text)
        )
        value = (
            f'keyId="{claimed.key_id}",algorithm="{algorithm}",headers="{" ".join(covered)}",'
            f'signature="{base64.b64encode(raw).decode()}"'
        )
        return SignedPost(target, (*((k, headers[k]) for k in headers), ("Signature", value)), body)

    async def post(self, signed: SignedPost) -> Reply:
        """Send ``signed`` as is (our ``Host`` header wins over the client's)."""
        response = await self.node.client.post(
            signed.target, data=signed.body, headers=list(signed.headers), allow_redirects=False
        )
        return await read_reply(response)

    async def send(self, target: str, activity: JsonObject, key: KeyPair, **kwargs: Any) -> Reply:
        """Sign ``activity`` with ``key`` and POST it to ``target``."""
        return await self.post(self.sign_activity(target, activity, key, **kwargs))


async def read_reply(response: Any) -> Reply:
    raw = await response.read()
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return Reply(response.status, content_type, body, dict(response.headers))


def _http_date(now: datetime) -> str:
    return format_datetime(now.astimezone(UTC), usegmt=True)


# ---------------------------------------------------------------------------------------------
# The database as oracle
# ---------------------------------------------------------------------------------------------


def changed(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Tables whose row count moved, with the difference (empty when nothing changed)."""
    return {t: after[t] - before.get(t, 0) for t in after if after[t] != before.get(t, 0)}


async def due_jobs(node: Node) -> int:
    """Jobs that are running, or queued and due now (future catch-ups do not count)."""
    async with node.sessions() as session:
        stmt = (
            select(func.count())
            .select_from(Job)
            .where(or_(Job.state == "running", and_(Job.state == "queued", Job.run_at <= utc_now())))
        )
        return int((await session.execute(stmt)).scalar_one())


async def settle(node: Node, *, timeout_s: float = 20.0) -> None:
    """Wait until the node's worker has nothing due (bounded)."""

    async def idle() -> bool:
        return await due_jobs(node) == 0

    await wait_until(idle, timeout_s=timeout_s, what="the worker to go idle")


async def inbox_state(node: Node, activity_iri: str) -> str | None:
    """The stored activity's processing state, or None when it was never stored."""
    state = await node.scalar(select(InboxActivity.state).where(InboxActivity.iri == activity_iri))
    return None if state is None else str(state)


async def processed(node: Node, activity_iri: str, *, timeout_s: float = 20.0) -> str:
    """Wait until the stored activity left ``queued``; return its final state."""

    async def done() -> bool:
        return await inbox_state(node, activity_iri) not in (None, "queued")

    await wait_until(done, timeout_s=timeout_s, what=f"processing of {activity_iri}")
    await settle(node, timeout_s=timeout_s)
    state = await inbox_state(node, activity_iri)
    assert state is not None
    return state


async def process_jobs(node: Node, activity_iri: str) -> list[tuple[str, int]]:
    """``(state, attempts)`` of every ``process_inbox`` job of the stored activity."""
    row_id = await node.scalar(select(InboxActivity.id).where(InboxActivity.iri == activity_iri))
    async with node.sessions() as session:
        rows = await session.execute(
            select(Job.state, Job.attempts).where(
                Job.kind == "process_inbox", Job.dedup_key == f"inbox:{row_id}"
            )
        )
        return [(r[0], r[1]) for r in rows]


# ---------------------------------------------------------------------------------------------
# A peer that never answers in time
# ---------------------------------------------------------------------------------------------


@dataclass
class StallingPeers(FakePeers):
    """:class:`FakePeers` whose :meth:`stall` routes answer only after ``seconds`` (bounded)."""

    stalls: dict[tuple[str, str], float] = field(default_factory=dict)

    def stall(self, iri: str, seconds: float) -> None:
        """``GET iri`` is recorded, then answered 504 after ``seconds`` (the client gives up first)."""
        self.stalls[self._split(iri)] = seconds

    async def _handle(self, request: web.Request) -> web.Response:
        host = (request.host or "").rsplit(":", 1)[0].lower()
        delay = self.stalls.get((host, request.raw_path))
        if delay is None:
            return await super()._handle(request)
        self.hits.append(Hit(host, request.raw_path, request.method, None, None, request.headers.get("Host")))
        await asyncio.sleep(delay)
        return web.Response(status=504, text="too late")
