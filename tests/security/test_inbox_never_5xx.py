"""A real node's inbox answers attacker input with 4xx or 202, never 5xx (security.md §0), on both engines.

Regressions for what the property tests in this package found, replayed over HTTP against a
running node on SQLite and PostgreSQL (the database is the oracle: a refusal changes no row):

* signed times at the very end of ``datetime``'s range (a ``Date`` in year 9999 with a negative
  offset, ``expires=253402300799``) used to raise ``OverflowError``, hence a 500;
* text the JSON decoder accepts but a database may not store (``\\u0000``, lone surrogates) in a
  genuinely signed activity.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from federation.signatures.digest import compute_content_digest, compute_digest
from federation.transport import AiohttpTransport
from federation.types import Iri, JsonObject
from server.db.models import InboxActivity
from tests.support.fake_peers import peer_transport
from tests.support.nodes import Node, running_node
from tests.support.signed_inbox import (
    AS_CONTEXT,
    InboxSender,
    RemoteAccount,
    Reply,
    SignedPost,
    StallingPeers,
    changed,
    encode,
    processed,
    remote_account,
    settle,
)

ServerFactory = Callable[..., Awaitable[TestServer]]
INBOX = "/groups/collectif/inbox"
END_OF_TIME = 253402300799  # 9999-12-31T23:59:59Z, the last second datetime can hold


@pytest.fixture
async def peers(aiohttp_server: ServerFactory) -> StallingPeers:
    fake = StallingPeers()
    fake.server = await aiohttp_server(fake.app(), host="127.0.0.1")
    return fake


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    async with peer_transport() as outbound:
        yield outbound


@pytest.fixture
async def scene(
    tmp_path: Path, database_url: str, peers: StallingPeers, transport: AiohttpTransport
) -> AsyncIterator[tuple[Node, RemoteAccount, InboxSender]]:
    """A node with the association "collectif", and alice on peer.example whose key it knows."""
    async with running_node(tmp_path / "node", database_url, transport=transport) as node:
        await node.create_association("collectif", "Collectif")
        alice = remote_account(peers, "peer.example", "alice", "rsa-alice.pem")
        await node.fed.keys.resolve(alice.key_id)
        await settle(node)
        yield node, alice, InboxSender(node)


def follow(alice: RemoteAccount, node: Node) -> JsonObject:
    return {
        "@context": AS_CONTEXT,
        "id": alice.new_id(),
        "type": "Follow",
        "actor": alice.iri,
        "object": node.uris.origin + "/groups/collectif",
    }


def assert_refused(reply: Reply, status: int, code: str) -> None:
    assert (reply.status, reply.code) == (status, code), reply
    assert reply.is_problem, reply


async def test_sec_04_signed_date_past_the_end_of_time_is_401_not_500(
    scene: tuple[Node, RemoteAccount, InboxSender],
) -> None:
    """Date: Fri, 31 Dec 9999 23:00:00 -0200 is year 10000 in UTC: an invalid date, so 401."""
    node, alice, sender = scene
    signed = sender.sign(INBOX, encode(follow(alice, node)), alice.key)
    before = await node.row_counts()
    reply = await sender.post(signed.with_headers(Date="Fri, 31 Dec 9999 23:00:00 -0200"))
    assert_refused(reply, 401, "signature_expired")
    assert changed(before, await node.row_counts()) == {}


async def test_sec_04_cavage_expires_at_the_end_of_time_is_401_not_500(
    scene: tuple[Node, RemoteAccount, InboxSender],
) -> None:
    """hs2019 with a signed expires=253402300799: checked without overflow, then refused (bad digest)."""
    node, alice, sender = scene
    body = encode(follow(alice, node))
    header = (
        f'keyId="{alice.key_id}",algorithm="hs2019",'
        f'headers="(request-target) host (created) (expires) digest",'
        f'created={int(time.time())},expires={END_OF_TIME},signature="AAAA"'
    )
    signed = SignedPost(
        INBOX,
        (
            ("Content-Type", "application/activity+json"),
            ("Host", node.uris.host),
            ("Digest", compute_digest(b"another body")),
            ("Signature", header),
        ),
        body,
    )
    before = await node.row_counts()
    reply = await sender.post(signed)
    assert_refused(reply, 401, "digest_mismatch")
    assert changed(before, await node.row_counts()) == {}


async def test_sec_04_rfc9421_expires_at_the_end_of_time_is_401_not_500(
    scene: tuple[Node, RemoteAccount, InboxSender],
) -> None:
    """RFC 9421 with expires=253402300799: checked without overflow, then refused (bad digest)."""
    node, alice, sender = scene
    body = encode(follow(alice, node))
    signature_input = (
        f'sig1=("@method" "@target-uri" "content-digest");created={int(time.time())};'
        f'expires={END_OF_TIME};keyid="{alice.key_id}"'
    )
    signed = SignedPost(
        INBOX,
        (
            ("Content-Type", "application/activity+json"),
            ("Content-Digest", compute_content_digest(b"another body")),
            ("Signature-Input", signature_input),
            ("Signature", "sig1=:AAAA:"),
        ),
        body,
    )
    before = await node.row_counts()
    reply = await sender.post(signed)
    assert_refused(reply, 401, "digest_mismatch")
    assert changed(before, await node.row_counts()) == {}


@pytest.mark.parametrize(
    "text",
    ["a\u0000b", "a\ud800b", "\udfff", "\U0010ffff", "\u202e\u200b"],
    ids=["nul", "lone_high_surrogate", "lone_low_surrogate", "last_code_point", "bidi_and_zero_width"],
)
async def test_sec_28_odd_but_valid_json_text_in_a_signed_activity_is_never_a_5xx(
    scene: tuple[Node, RemoteAccount, InboxSender],
    text: str,
    database_url: str,
    request: pytest.FixtureRequest,
) -> None:
    """JSON escapes the decoder accepts (NUL, lone surrogates) are replaced by U+FFFD (no database
    stores them as text) and the activity is accepted; other odd text is stored as is; never a 500.

    The body is ASCII JSON (``\\u0000``, ``\\ud800``), as any peer's serialiser may produce it.
    """
    unstorable = any(c == "\0" or 0xD800 <= ord(c) <= 0xDFFF for c in text)
    node, alice, sender = scene
    note: dict[str, Any] = {
        "id": alice.new_id("notes"),
        "type": "Note",
        "attributedTo": alice.iri,
        "content": f"<p>{text}</p>",
        "summary": text,
        "to": [node.uris.origin + "/groups/collectif"],
    }
    create = {
        "@context": AS_CONTEXT,
        "id": alice.new_id(),
        "type": "Create",
        "actor": alice.iri,
        "object": note,
        "to": note["to"],
    }
    body = json.dumps(create).encode("ascii")
    reply = await sender.post(sender.sign(INBOX, body, alice.key))
    assert reply.status == 202, reply
    if reply.status == 202:
        # Stored: processing ends in a final state instead of crashing the worker on a retry loop.
        assert await processed(node, Iri(create["id"])) in ("processed", "ignored")
        if unstorable:  # stored with U+FFFD in place of what no database can store
            async with node.sessions() as session:
                stored = await session.scalar(
                    select(InboxActivity.document).where(InboxActivity.iri == create["id"])
                )
            assert stored is not None and "\ufffd" in stored["object"]["summary"]
