"""Fake Mastodon, Lemmy, Mobilizon and Fedify peers that serve recorded documents and really sign.

One aiohttp server on 127.0.0.1 plays ``mastodon.example``, ``lemmy.example``,
``mobilizon.example`` and ``fedify.example`` (told apart by the ``Host`` header); the node under
test reaches them through :attr:`PeerWorld.transport`, whose :class:`StaticResolver` maps those
names, and only those, to 127.0.0.1.

What the peers serve comes from ``tests/fixtures/peers/<host>/<path>.json``: the recorded actor
documents of ``tests/fixtures/payloads/``, rewritten only where a test cannot do otherwise (ids on
the fake host, our fixed test keys); ``tests/fixtures/peers/README.md`` lists every rewrite.
Those files spell IRIs ``https://<host>/...``; :meth:`PeerWorld.live` turns them into the
``http://<host>:<port>/...`` of this run, the only change made while serving.

What the peers send is a recorded payload from ``tests/fixtures/payloads/``, loaded unchanged
and rewritten by :meth:`PeerWorld.payload` with the table of its software (:data:`REWRITES`,
recorded hosts and accounts → the fake ones) plus the test's own replacements (our group, our
Follow's id). It is signed with :func:`federation.signatures.sign_request` (draft-cavage like
Mastodon and Lemmy, or RFC 9421 like Fedify) with the key the served document publishes.

Every request the peers receive is recorded (:class:`Received`); :meth:`PeerWorld.verify` checks
its signature with :func:`federation.signatures.verify_request` against the key the node itself
publishes (fetched from the node's actor document, as a real peer would), so a test can assert
that what our node sent was signed by the right actor. Verification runs when the test asks,
not inside the request handler, so a peer never waits on the node while the node waits on it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from federation.actors_remote import read_actor
from federation.errors import KeyUnavailable
from federation.http import AP_ACCEPT, AP_CONTENT_TYPE, Headers, IncomingRequest, OutgoingRequest
from federation.keys import (
    KeyPair,
    PublicKey,
    PublicKeyType,
    ed25519_to_multibase,
    private_key_from_pem,
    public_key_from_pem,
    public_key_to_pem,
)
from federation.signatures import SignatureSpec, VerifiedSigner, sign_request, verify_request
from federation.transport import AiohttpTransport, StaticResolver, build_user_agent
from federation.types import Iri, JsonObject, utc_now
from tests.schemas.helpers import load_payload

FIXTURES: Final = Path(__file__).resolve().parents[1] / "fixtures"
PEERS_DIR: Final = FIXTURES / "peers"
KEYS_DIR: Final = FIXTURES / "keys"
AS_CONTEXT: Final = "https://www.w3.org/ns/activitystreams"

SOFTWARE: Final[Mapping[str, str]] = {
    "mastodon.example": "mastodon",
    "lemmy.example": "lemmy",
    "mobilizon.example": "mobilizon",
    "fedify.example": "fedify",
}
"""The fake hosts and the software each one plays."""

SERVED_CONTENT_TYPE: Final[Mapping[str, str]] = {
    "mastodon": "application/activity+json; charset=utf-8",
    "lemmy": "application/activity+json",
    "mobilizon": "application/activity+json; charset=utf-8",
    "fedify": "application/activity+json",
}
"""``Content-Type`` of served documents, as each software answers.

See docs/interop.md "Content types and fetching".
"""

INBOX_STATUS: Final[Mapping[str, int]] = {"mastodon": 202, "lemmy": 200, "mobilizon": 200, "fedify": 202}
"""What each software answers to an accepted inbox POST."""

REWRITES: Final[Mapping[str, tuple[tuple[str, str], ...]]] = {
    # Several recorded Mastodon accounts on several instances; the fake Mastodon has one account,
    # the recorded actor document (framapiaf.org/users/peertube), and every activity is its own.
    "mastodon": (
        ("https://masto.asonix.dog/users/asonix", "https://mastodon.example/users/peertube"),
        ("https://masto.asonix.dog", "https://mastodon.example"),
        ("https://mastodon.madrid/users/felix", "https://mastodon.example/users/peertube"),
        ("https://mastodon.madrid/@felix", "https://mastodon.example/@peertube"),
        ("https://mastodon.madrid", "https://mastodon.example"),
        ("https://ap.example.com/users/postcreator", "https://mastodon.example/users/peertube"),
        ("https://ap.example.com/@postcreator", "https://mastodon.example/@peertube"),
        ("https://ap.example.com", "https://mastodon.example"),
        ("https://framapiaf.org", "https://mastodon.example"),
    ),
    # Lemmy's assets use a community "main" and a user "lemmy_beta" on enterprise.lemmy.ml (over
    # http://); the recorded actor documents are the community "tenforward" and the user "picard".
    "lemmy": (
        ("http://enterprise.lemmy.ml/c/main", "https://lemmy.example/c/tenforward"),
        ("http://enterprise.lemmy.ml/u/lemmy_beta", "https://lemmy.example/u/picard"),
        ("http://enterprise.lemmy.ml", "https://lemmy.example"),
        ("https://enterprise.lemmy.ml", "https://lemmy.example"),
    ),
    # Mobilizon's test fixtures act as http://mobilizon2.test/@admin; the recorded person is
    # mobilizon.fr/@sanof44.
    "mobilizon": (
        ("http://mobilizon2.test/@admin", "https://mobilizon.example/@sanof44"),
        ("http://mobilizon2.test", "https://mobilizon.example"),
        ("https://mobilizon.fr", "https://mobilizon.example"),
    ),
    "fedify": (),  # recorded on https://fedify.example already
}
"""Per software, recorded IRI prefix → fixture IRI, first match wins (see peers/README.md)."""


@dataclass(frozen=True, slots=True)
class PeerActor:
    """An account of a fake peer: where its document is served and the key file it publishes."""

    host: str
    path: str
    key_file: str

    @property
    def software(self) -> str:
        return SOFTWARE[self.host]


MASTODON_ACCOUNT: Final = PeerActor("mastodon.example", "/users/peertube", "rsa-alice.pem")
LEMMY_COMMUNITY: Final = PeerActor("lemmy.example", "/c/tenforward", "rsa-bob.pem")
LEMMY_USER: Final = PeerActor("lemmy.example", "/u/picard", "rsa-alice.pem")
MOBILIZON_GROUP: Final = PeerActor("mobilizon.example", "/@contribateliers", "rsa-bob.pem")
MOBILIZON_PERSON: Final = PeerActor("mobilizon.example", "/@sanof44", "rsa-alice.pem")
FEDIFY_ACTOR: Final = PeerActor("fedify.example", "/users/alice", "rsa-alice.pem")
ACTORS: Final = (
    MASTODON_ACCOUNT,
    LEMMY_COMMUNITY,
    LEMMY_USER,
    MOBILIZON_GROUP,
    MOBILIZON_PERSON,
    FEDIFY_ACTOR,
)


def _at_boundary(value: str, prefix: str) -> bool:
    """``prefix`` starts ``value`` and ends at an IRI boundary (``/c/main`` never matches ``/c/mainly``)."""
    return value == prefix or (value.startswith(prefix) and value[len(prefix)] in "/#?")


def rewrite(value: Any, table: tuple[tuple[str, str], ...]) -> Any:
    """``value`` with every string starting with a table prefix rewritten (first match wins)."""
    if isinstance(value, str):
        for old, new in table:
            if _at_boundary(value, old):
                return new + value[len(old) :]
        return value
    if isinstance(value, list):
        return [rewrite(item, table) for item in value]
    if isinstance(value, dict):
        return {key: rewrite(item, table) for key, item in value.items()}
    return value


def _fixture_documents() -> dict[tuple[str, str], JsonObject]:
    """``(host, path) → document`` for every file under ``tests/fixtures/peers/``."""
    documents: dict[tuple[str, str], JsonObject] = {}
    for file in sorted(PEERS_DIR.glob("*/**/*.json")):
        relative = file.relative_to(PEERS_DIR)
        host = relative.parts[0]
        path = "/" + "/".join(relative.parts[1:]).removesuffix(".json")
        documents[(host, path)] = json.loads(file.read_text(encoding="utf-8"))
    return documents


@dataclass(frozen=True, slots=True)
class FixtureSource:
    """How one ``tests/fixtures/peers/`` file derives from a recorded payload.

    The payload (or the embedded value at ``pointer``) is rewritten with its software's
    :data:`REWRITES`; ``publicKey.publicKeyPem`` becomes ``key_file``'s public key in the PEM
    format the recording used (SPKI or PKCS#1, same trailing newlines); ``multikeys`` replace the
    ``publicKeyMultibase`` of the ``assertionMethod`` entries, in order. Nothing else changes.
    """

    payload: str
    key_file: str | None = None
    pointer: tuple[str, ...] = ()
    multikeys: tuple[str, ...] = ()
    compact: bool = False  # written as one line, like the recording


FIXTURE_SOURCES: Final[Mapping[tuple[str, str], FixtureSource]] = {
    ("mastodon.example", "/users/peertube"): FixtureSource("mastodon/actor.json", "rsa-alice.pem"),
    ("lemmy.example", "/c/tenforward"): FixtureSource("lemmy/group.json", "rsa-bob.pem"),
    ("lemmy.example", "/u/picard"): FixtureSource("lemmy/person.json", "rsa-alice.pem"),
    ("lemmy.example", "/post/7"): FixtureSource(
        "lemmy/announce_create_page.json", pointer=("object", "object")
    ),
    ("mobilizon.example", "/@contribateliers"): FixtureSource("mobilizon/group.json", "rsa-bob.pem"),
    ("mobilizon.example", "/@sanof44"): FixtureSource("mobilizon/person.json", "rsa-alice.pem"),
    ("fedify.example", "/users/alice"): FixtureSource(
        "fedify/actor.json", "rsa-alice.pem", multikeys=("rsa-alice.pem", "ed25519-alice.pem"), compact=True
    ),
}
"""Every file of ``tests/fixtures/peers/`` and the recording it comes from (see its README)."""

_RSA_PUB_MULTICODEC: Final = b"\x85\x24"  # varint of 0x1205 (rsa-pub), as Fedify encodes RSA Multikeys
_B58: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _base58btc(data: bytes) -> str:
    number, out = int.from_bytes(data, "big"), ""
    while number:
        number, digit = divmod(number, 58)
        out = _B58[digit] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def _public_key(key_file: str) -> PublicKeyType:
    return private_key_from_pem((KEYS_DIR / key_file).read_bytes()).public_key()


def _pem_like(recorded: str, key_file: str) -> str:
    """``key_file``'s public key in the recorded PEM's format (PKCS#1 or SPKI, trailing newlines)."""
    key = _public_key(key_file)
    fmt = PublicFormat.PKCS1 if "BEGIN RSA PUBLIC KEY" in recorded else PublicFormat.SubjectPublicKeyInfo
    pem = key.public_bytes(Encoding.PEM, fmt).decode("ascii")
    return pem.rstrip("\n") + recorded[len(recorded.rstrip("\n")) :]


def _multibase(key_file: str) -> str:
    key = _public_key(key_file)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return ed25519_to_multibase(key)
    return "z" + _base58btc(_RSA_PUB_MULTICODEC + key.public_bytes(Encoding.DER, PublicFormat.PKCS1))


def derive_fixture(source: FixtureSource) -> JsonObject:
    """The document ``source`` describes, derived from the recording (see :class:`FixtureSource`)."""
    doc: Any = load_payload(source.payload)
    for name in source.pointer:
        doc = doc[name]
    doc = rewrite(doc, REWRITES[source.payload.split("/", 1)[0]])
    if source.key_file is not None:
        doc["publicKey"]["publicKeyPem"] = _pem_like(doc["publicKey"]["publicKeyPem"], source.key_file)
    for method, key_file in zip(doc.get("assertionMethod", ()), source.multikeys, strict=False):
        method["publicKeyMultibase"] = _multibase(key_file)
    result: JsonObject = doc
    return result


def write_fixtures() -> None:
    """(Re)write every ``tests/fixtures/peers/`` file from its recording.

    Run as ``python -m tests.support.peer_world`` after changing :data:`FIXTURE_SOURCES`.
    """
    for (host, path), source in FIXTURE_SOURCES.items():
        file = PEERS_DIR / host / (path.lstrip("/") + ".json")
        file.parent.mkdir(parents=True, exist_ok=True)
        doc = derive_fixture(source)
        if source.compact:
            text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
        else:
            text = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
        file.write_text(text, encoding="utf-8")


def check_fixtures(documents: Mapping[tuple[str, str], JsonObject]) -> None:
    """Every served file is exactly its derivation from the recording, and none is unaccounted for.

    Raises:
        AssertionError: a file was edited by hand, or has no entry in :data:`FIXTURE_SOURCES`.
    """
    if set(documents) != set(FIXTURE_SOURCES):
        raise AssertionError(
            f"tests/fixtures/peers/ and FIXTURE_SOURCES differ: {set(documents) ^ set(FIXTURE_SOURCES)}"
        )
    for where, source in FIXTURE_SOURCES.items():
        if documents[where] != derive_fixture(source):
            raise AssertionError(
                f"tests/fixtures/peers/{where[0]}{where[1]}.json is not derived from {source.payload}"
            )


def _path_of(iri: str) -> tuple[str, str]:
    parts = urlsplit(iri)
    return (parts.hostname or "", parts.path)


@dataclass(frozen=True, slots=True)
class Received:
    """One request a fake peer received, kept whole so that its signature can be checked later."""

    host: str
    method: str
    target: str  # raw path and query
    headers: Headers = field(repr=False)
    body: bytes = field(repr=False)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def document(self) -> Any:
        """The JSON body (POSTs); ``None`` when there is none."""
        return json.loads(self.body) if self.body else None

    @property
    def is_signed(self) -> bool:
        return "signature" in self.headers or "signature-input" in self.headers


class PublishedKeys:
    """A :class:`federation.ports.KeyResolver` reading keys from the actor documents the *node*
    publishes (GET ``keyId`` without its fragment), as a peer verifying our requests does."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self._cache: dict[str, PublicKey] = {}

    async def resolve(self, key_id: Iri, *, refresh: bool = False) -> PublicKey:
        if key_id in self._cache and not refresh:
            return self._cache[key_id]
        parts = urlsplit(key_id)
        if parts.hostname != "127.0.0.1":
            raise KeyUnavailable("only keys published by the node under test are resolved", key_id=key_id)
        async with self._session.get(key_id.split("#", 1)[0], headers={"Accept": AP_ACCEPT}) as response:
            if response.status != 200:
                raise KeyUnavailable(f"the key's document answered {response.status}", key_id=key_id)
            document = await response.json(content_type=None)
        key = read_actor(document).public_key(key_id)
        self._cache[key_id] = key
        return key


class PeerWorld:
    """The running fake peers; build it with :func:`peer_world`."""

    def __init__(
        self, server: TestServer, session: aiohttp.ClientSession, transport: AiohttpTransport
    ) -> None:
        self._server = server
        self._session = session
        self.transport = transport
        """The node's outbound transport: fake hosts resolve to 127.0.0.1, everything else fails."""
        self.received: list[Received] = []
        self._documents = _fixture_documents()
        check_fixtures(self._documents)
        self._inboxes = self._inbox_paths()
        self._keys = PublishedKeys(session)

    # --- names ---------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server.port is not None
        return self._server.port

    def origin(self, host: str) -> str:
        return f"http://{host}:{self.port}"

    def iri(self, actor: PeerActor) -> Iri:
        return Iri(self.origin(actor.host) + actor.path)

    def live(self, value: Any) -> Any:
        """Fixture IRIs (``https://<fake host>/…``) as this run's (``http://<fake host>:<port>/…``)."""
        return rewrite(value, tuple((f"https://{host}", self.origin(host)) for host in SOFTWARE))

    # --- documents -----------------------------------------------------------------------------

    def document(self, actor: PeerActor) -> JsonObject:
        """The document the peer serves for ``actor``, as served in this run."""
        served: JsonObject = self.live(self._documents[(actor.host, actor.path)])
        return served

    def payload(self, relative: str, *, replace: Mapping[str, str] | None = None) -> JsonObject:
        """A recorded payload, e.g. ``"mastodon/follow.json"``, rewritten for this run.

        ``replace`` maps recorded IRIs (or IRI prefixes) to the values the test needs, e.g. the
        recorded Follow's object to our group; it is applied first, then the software's
        :data:`REWRITES`, then :meth:`live`.
        """
        software = relative.split("/", 1)[0]
        doc = load_payload(relative)
        doc = rewrite(doc, tuple((replace or {}).items()))
        doc = rewrite(doc, REWRITES[software])
        result: JsonObject = self.live(doc)
        return result

    def key_pair(self, actor: PeerActor) -> KeyPair:
        """The private half of the key ``actor``'s served document publishes as ``#main-key``."""
        iri = self.iri(actor)
        return KeyPair(
            Iri(f"{iri}#main-key"), iri, private_key_from_pem((KEYS_DIR / actor.key_file).read_bytes())
        )

    def check_published_keys(self) -> None:
        """Every served actor document publishes the public half of its account's key file."""
        for actor in ACTORS:
            published = public_key_from_pem(self.document(actor)["publicKey"]["publicKeyPem"])
            if public_key_to_pem(published) != self.key_pair(actor).public.to_pem():
                raise AssertionError(f"{actor.host}{actor.path} does not publish {actor.key_file}")

    # --- sending -------------------------------------------------------------------------------

    async def post(
        self, actor: PeerActor, inbox: str, activity: JsonObject, *, spec: SignatureSpec = "cavage"
    ) -> int:
        """POST ``activity`` to ``inbox`` (on the node), signed with ``actor``'s key; the status."""
        body = json.dumps(activity, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        request = OutgoingRequest(
            "POST", inbox, Headers({"Content-Type": AP_CONTENT_TYPE, "Accept": AP_ACCEPT}), body
        )
        signed = sign_request(request, self.key_pair(actor), now=utc_now(), spec=spec)
        async with self._session.post(inbox, data=body, headers=dict(signed.headers.items())) as response:
            await response.read()
            return response.status

    def accept_follow(self, actor: PeerActor, follow: JsonObject, *, serial: int = 1) -> JsonObject:
        """``Accept{Follow}`` in the shape of Mastodon's ``AcceptFollowSerializer``.

        Not a recorded payload (none of ``payloads/`` is a Mastodon or Fedify Accept): the
        follow exchange is a Given of the tests that need it, not what they test.
        """
        iri = self.iri(actor)
        return {
            "@context": AS_CONTEXT,
            "id": f"{iri}#accepts/follows/{serial}",
            "type": "Accept",
            "actor": iri,
            "object": {"id": follow["id"], "type": "Follow", "actor": follow["actor"], "object": iri},
        }

    # --- what the peers received ---------------------------------------------------------------

    def posts_to(self, iri: str) -> list[Received]:
        """POSTs received at ``iri`` (an inbox of this run)."""
        host, path = _path_of(iri)
        return [r for r in self.received if r.method == "POST" and r.host == host and r.path == path]

    def gets_of(self, iri: str) -> list[Received]:
        host, path = _path_of(iri)
        return [r for r in self.received if r.method == "GET" and r.host == host and r.path == path]

    async def next_post(
        self, iri: str, activity_type: str, *, after: int = 0, timeout_s: float = 20.0
    ) -> Received:
        """The first POST of an ``activity_type`` at ``iri`` among those after the ``after``-th;
        fails after ``timeout_s`` (bounded)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            for received in self.posts_to(iri)[after:]:
                if received.document.get("type") == activity_type:
                    return received
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for a {activity_type} at {iri}")
            await asyncio.sleep(0.05)

    async def verify(self, received: Received) -> VerifiedSigner:
        """Check ``received``'s signature as a peer would (keys from the node's documents).

        Raises:
            FederationError: the request is unsigned or its signature does not verify.
        """
        incoming = IncomingRequest(
            method=received.method,
            url=f"http://{received.headers.get('Host', received.host)}{received.target}",
            target=received.target,
            headers=received.headers,
            body=received.body,
        )
        return await verify_request(incoming, resolve_key=self._keys, now=utc_now())

    # --- serving -------------------------------------------------------------------------------

    def _inbox_paths(self) -> set[tuple[str, str]]:
        paths: set[tuple[str, str]] = set()
        for doc in self._documents.values():
            endpoints = doc.get("endpoints")
            for iri in (
                doc.get("inbox"),
                endpoints.get("sharedInbox") if isinstance(endpoints, dict) else None,
            ):
                if isinstance(iri, str):
                    paths.add(_path_of(iri))
        return paths

    async def handle(self, request: web.Request) -> web.Response:
        host = (request.host or "").rsplit(":", 1)[0].lower()
        self.received.append(
            Received(
                host=host,
                method=request.method,
                target=request.raw_path,
                headers=Headers(list(request.headers.items())),
                body=await request.read(),
            )
        )
        software = SOFTWARE.get(host)
        if software is None:
            return web.Response(status=404, text="unknown host")
        if request.method == "GET":
            doc = self._documents.get((host, request.path))
            if doc is None:
                return web.Response(status=404, text="not found")
            body = json.dumps(self.live(doc), ensure_ascii=False).encode("utf-8")
            return web.Response(
                body=body, headers={"Content-Type": SERVED_CONTENT_TYPE[software], "Vary": "Accept"}
            )
        if request.method == "POST" and (host, request.path) in self._inboxes:
            return web.Response(status=INBOX_STATUS[software])
        return web.Response(status=404, text="not found")


@asynccontextmanager
async def peer_world() -> AsyncIterator[PeerWorld]:
    """Start the fake peers on 127.0.0.1 and the node transport that reaches them; stop both."""
    app = web.Application()
    holder: list[PeerWorld] = []

    async def handle(request: web.Request) -> web.Response:
        return await holder[0].handle(request)

    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    transport = AiohttpTransport(
        user_agent=build_user_agent("0.1.0-test", "https://entraide.test"),
        allow_private_addresses=False,
        trusted_test_hosts=tuple(SOFTWARE),
        resolver=StaticResolver({host: ["127.0.0.1"] for host in SOFTWARE}),
    )
    await transport.start()
    try:
        world = PeerWorld(server, session, transport)
        holder.append(world)
        world.check_published_keys()
        yield world
    finally:
        await transport.close()
        await session.close()
        await server.close()


if __name__ == "__main__":
    write_fixtures()
