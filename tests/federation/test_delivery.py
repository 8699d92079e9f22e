"""Delivery planning and outcome classification, against a real inbox on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from federation.delivery import Delivered, Gone, Recipient, Rejected, RetryLater, deliver, plan_delivery
from federation.http import Headers, IncomingRequest
from federation.keys import KeyPair, private_key_from_pem
from federation.memory import MemoryKeyResolver
from federation.signatures import verify_request
from federation.transport import AiohttpTransport
from federation.types import Iri

KEYS = Path(__file__).parents[1] / "fixtures" / "keys"
ALICE = KeyPair(
    Iri("https://entraide.test/groups/a#main-key"),
    Iri("https://entraide.test/groups/a"),
    private_key_from_pem((KEYS / "rsa-alice.pem").read_bytes()),
)


def r(actor: str, inbox: str, shared: str | None = None) -> Recipient:
    return Recipient(Iri(actor), Iri(inbox), Iri(shared) if shared else None)


def test_plan_collapses_recipients_onto_shared_inboxes() -> None:
    recipients = [
        r("https://m.example/u/1", "https://m.example/u/1/inbox", "https://m.example/inbox"),
        r("https://m.example/u/2", "https://m.example/u/2/inbox", "https://m.example/inbox"),
        r("https://l.example/u/3", "https://l.example/u/3/inbox"),
    ]
    targets = plan_delivery(recipients, prefer_shared_inbox=True)
    assert [(t.inbox, t.actors) for t in targets] == [
        ("https://m.example/inbox", ("https://m.example/u/1", "https://m.example/u/2")),
        ("https://l.example/u/3/inbox", ("https://l.example/u/3",)),
    ]


def test_plan_without_shared_inboxes_never_widens_the_audience() -> None:
    """Members-only content goes to each member's own inbox, never to a host's shared inbox."""
    recipients = [
        r("https://m.example/u/1", "https://m.example/u/1/inbox", "https://m.example/inbox"),
        r("https://m.example/u/2", "", "https://m.example/inbox"),  # no personal inbox: skipped
    ]
    targets = plan_delivery(recipients, prefer_shared_inbox=False)
    assert [(t.inbox, t.actors) for t in targets] == [
        ("https://m.example/u/1/inbox", ("https://m.example/u/1",))
    ]


def test_plan_excludes_our_origin_and_non_http_inboxes_and_duplicates() -> None:
    recipients = [
        r("https://entraide.test/users/x", "https://entraide.test/users/x/inbox"),
        r("https://p.example/u/1", "ftp://p.example/inbox"),
        r("https://p.example/u/2", "https://p.example/u/2/inbox"),
        r("https://p.example/u/2", "https://p.example/u/2/inbox"),
    ]
    targets = plan_delivery(
        recipients, prefer_shared_inbox=True, exclude_origins=frozenset({"https://entraide.test"})
    )
    assert [(t.inbox, t.actors) for t in targets] == [
        ("https://p.example/u/2/inbox", ("https://p.example/u/2",))
    ]


Responder = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]


async def _inbox(responder: Responder) -> tuple[TestServer, list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []
    keys = MemoryKeyResolver([ALICE.public])

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        incoming = IncomingRequest(
            request.method, str(request.url), request.raw_path, Headers(list(request.headers.items())), body
        )
        signer = await verify_request(incoming, resolve_key=keys, now=datetime.now(UTC))
        received.append({"signer": signer, "body": body})
        return await responder(request, body)

    app = web.Application()
    app.router.add_post("/inbox", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, received


async def _deliver_to(responder: Responder, **kwargs: Any) -> tuple[Any, list[dict[str, Any]]]:
    server, received = await _inbox(responder)
    try:
        async with AiohttpTransport(user_agent="test", allow_private_addresses=True) as transport:
            outcome = await deliver(
                Iri(str(server.make_url("/inbox"))),
                b'{"type":"Create"}',
                signer=ALICE,
                transport=transport,
                now=datetime.now(UTC),
                **kwargs,
            )
    finally:
        await server.close()
    return outcome, received


async def test_accepted_post_is_delivered_with_a_verifiable_signature() -> None:
    outcome, received = await _deliver_to(lambda req, body: _respond(202))
    assert outcome == Delivered(202, "cavage")
    assert received[0]["body"] == b'{"type":"Create"}'
    assert received[0]["signer"].owner == ALICE.owner


async def _respond(status: int, headers: dict[str, str] | None = None, text: str = "") -> web.Response:
    return web.Response(status=status, headers=headers, text=text)


@pytest.mark.parametrize("status", [404, 410])
async def test_404_and_410_are_gone(status: int) -> None:
    outcome, _ = await _deliver_to(lambda req, body: _respond(status))
    assert outcome == Gone(status)


async def test_429_honours_retry_after() -> None:
    outcome, _ = await _deliver_to(lambda req, body: _respond(429, {"Retry-After": "120"}))
    assert isinstance(outcome, RetryLater)
    assert outcome.status == 429 and outcome.after == timedelta(seconds=120)


@pytest.mark.parametrize("status", [500, 502, 503, 408, 401])
async def test_server_errors_and_retryable_4xx_retry(status: int) -> None:
    outcome, _ = await _deliver_to(lambda req, body: _respond(status))
    assert isinstance(outcome, RetryLater) and outcome.status == status


async def test_other_4xx_is_rejected_with_a_capped_excerpt() -> None:
    outcome, _ = await _deliver_to(lambda req, body: _respond(422, text="x" * 5000))
    assert isinstance(outcome, Rejected)
    assert outcome.status == 422 and len(outcome.excerpt) == 1024


async def test_rfc9421_first_knock_falls_back_to_cavage_on_401() -> None:
    """Double-knocking: a peer that refuses RFC 9421 gets draft-cavage at once; we learn which worked."""

    async def responder(request: web.Request, body: bytes) -> web.Response:
        return await _respond(401 if "Signature-Input" in request.headers else 202)

    outcome, received = await _deliver_to(responder, spec="rfc9421")
    assert outcome == Delivered(202, "cavage")
    assert [entry["signer"].spec for entry in received] == ["rfc9421", "cavage"]


async def test_rfc9421_first_knock_falls_back_on_any_error_answer_only_while_the_scheme_is_unknown() -> None:
    """A peer whose verifier answers RFC 9421 with a 500 (bovine-herd with a newer http-sf) gets
    draft-cavage at once on the first knock; a host known to take RFC 9421 keeps its 500."""

    async def responder(request: web.Request, body: bytes) -> web.Response:
        return await _respond(500 if "Signature-Input" in request.headers else 202)

    outcome, received = await _deliver_to(responder, spec="rfc9421", first_knock=True)
    assert outcome == Delivered(202, "cavage")
    assert [entry["signer"].spec for entry in received] == ["rfc9421", "cavage"]
    outcome, received = await _deliver_to(responder, spec="rfc9421")
    assert isinstance(outcome, RetryLater) and outcome.status == 500
    assert [entry["signer"].spec for entry in received] == ["rfc9421"]


async def test_unreachable_inbox_is_retry_later() -> None:
    async with AiohttpTransport(user_agent="test", allow_private_addresses=True) as transport:
        outcome = await deliver(
            Iri("http://127.0.0.1:1/inbox"), b"{}", signer=ALICE, transport=transport, now=datetime.now(UTC)
        )
    assert isinstance(outcome, RetryLater) and outcome.status is None


async def test_private_address_is_rejected_without_connecting() -> None:
    async with AiohttpTransport(user_agent="test", allow_private_addresses=False) as transport:
        outcome = await deliver(
            Iri("http://127.0.0.1:1/inbox"), b"{}", signer=ALICE, transport=transport, now=datetime.now(UTC)
        )
    assert isinstance(outcome, Rejected) and outcome.status is None


async def test_a_host_refused_by_policy_is_rejected_not_retried() -> None:
    from federation.policy import PeerPolicy

    async with AiohttpTransport(
        user_agent="test", allow_private_addresses=True, policy=PeerPolicy.open_network(["127.0.0.1"])
    ) as transport:
        outcome = await deliver(
            Iri("http://127.0.0.1:1/inbox"), b"{}", signer=ALICE, transport=transport, now=datetime.now(UTC)
        )
    assert isinstance(outcome, Rejected) and outcome.status is None
