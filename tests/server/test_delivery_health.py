"""Per-host delivery health: held behind an open breaker, dropped when held too long or the host is
unavailable, and reset as soon as the host sends us a verified request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from federation.http import OutgoingRequest, PeerResponse
from federation.inbox import InboundActivity
from federation.keys import KeyAlgorithm
from federation.signatures import VerifiedSigner
from federation.types import Iri
from federation.vocab.parse import parse_activity
from server.appkeys import INBOX_WRITER
from server.db.models import Activity, Actor, Delivery, PeerHost
from server.services.delivery.fanout import DeliveryDone, DeliveryRetry, deliver_one
from tests.support.nodes import Node

HOST = "peer.example"


def _verified_from(host: str) -> InboundActivity:
    actor = f"https://{host}/users/alice"
    document = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"https://{host}/activities/like-1",
        "type": "Like",
        "actor": actor,
        "object": f"https://{host}/notes/1",
    }
    signer = VerifiedSigner(Iri(f"{actor}#main-key"), Iri(actor), KeyAlgorithm.RSA_V1_5_SHA256, "cavage")
    return InboundActivity(
        activity=parse_activity(document),
        signer=signer,
        document=document,
        received_at=datetime.now(UTC),
    )


class CountingTransport:
    """A transport that must not be called when a delivery is held or dropped."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, request: OutgoingRequest, *, follow_redirects: bool = False) -> PeerResponse:
        self.sent += 1
        raise AssertionError("no request should be sent")


async def _pending_delivery(node: Node, *, created_ago: timedelta, host_state: dict[str, object]) -> int:
    group_iri = await node.create_association("demo")
    now = node.fed.node.clock()
    async with node.sessions.begin() as session:
        group = await session.scalar(select(Actor).where(Actor.iri == group_iri))
        assert group is not None
        activity = Activity(
            iri=f"{group_iri}/a/1",
            actor_id=group.id,
            type="Create",
            visibility="public",
            document={"id": f"{group_iri}/a/1", "type": "Create"},
            published=now,
        )
        session.add(activity)
        await session.flush()
        delivery = Delivery(
            activity_id=activity.id,
            inbox_iri=f"https://{HOST}/inbox",
            host=HOST,
            state="pending",
            attempts=0,
            created_at=now - created_ago,
        )
        session.add(delivery)
        session.add(PeerHost(host=HOST, updated_at=now, **host_state))
        await session.flush()
        return delivery.id


async def test_an_open_breaker_holds_the_delivery_without_sending(node: Node) -> None:
    now = node.fed.node.clock()
    delivery_id = await _pending_delivery(
        node,
        created_ago=timedelta(hours=1),
        host_state={"breaker": "open", "open_until": now + timedelta(minutes=20)},
    )
    transport = CountingTransport()
    step = await deliver_one(node.fed.node, transport, delivery_id, attempt=1, max_attempts=16)
    assert isinstance(step, DeliveryRetry) and step.reason == "circuit_open"
    assert step.after is not None and timedelta(minutes=19) < step.after <= timedelta(minutes=20)
    assert transport.sent == 0


async def test_a_delivery_held_longer_than_seven_days_is_dropped(node: Node) -> None:
    now = node.fed.node.clock()
    delivery_id = await _pending_delivery(
        node,
        created_ago=timedelta(days=8),
        host_state={"breaker": "open", "open_until": now + timedelta(minutes=20)},
    )
    step = await deliver_one(node.fed.node, CountingTransport(), delivery_id, attempt=1, max_attempts=16)
    assert step == DeliveryDone("failed")
    assert await node.scalar(select(Delivery.last_error).where(Delivery.id == delivery_id)) == "held_too_long"


async def test_an_unavailable_host_is_skipped_until_it_contacts_us(node: Node) -> None:
    delivery_id = await _pending_delivery(
        node, created_ago=timedelta(minutes=1), host_state={"unavailable": True, "failing_days": 7}
    )
    step = await deliver_one(node.fed.node, CountingTransport(), delivery_id, attempt=1, max_attempts=16)
    assert step == DeliveryDone("failed")
    # A verified request from that host makes it available again (the inbox writer marks it)
    await node.client.server.app[INBOX_WRITER].submit(_verified_from(HOST), recipient_id=None)
    row = await node.scalar(select(PeerHost).where(PeerHost.host == HOST))
    assert (row.unavailable, row.failing_days, row.breaker) == (False, 0, "closed")
