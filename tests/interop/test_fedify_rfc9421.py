"""RFC 9421 both ways with a fresh Fedify peer, with no draft-cavage fallback on either side.

Fedify double-knocks: it signs its first request to an origin it does not know with RFC 9421 and
falls back to draft-cavage (remembered) only when refused. Every signed request the peer sends
us here, GETs (our actor, our key by its ``#main-key`` IRI) and POSTs (its ``Follow``), must be
accepted at the first knock; and ours, with ``rfc9421_first_knock``, must be verified by Fedify.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from server.db.models import PeerHost
from server.services.membership import following
from tests.interop.support import RFC9421
from tests.interop.test_fedify_peer import (
    NewDatabase,
    StartPeer,
    _activity,
    _alpha,
    _assert_verified,
    _state_is,
)
from tests.support.nodes import running_node, wait_until


async def test_rfc9421_first_knocks_accepted_both_ways_without_fallback(
    tmp_path: Path, new_database: NewDatabase, start_peer: StartPeer
) -> None:
    async with (
        running_node(tmp_path / "a", await new_database(0), federation={"rfc9421_first_knock": True}) as node,
        start_peer() as peer,
    ):
        alpha = await _alpha(node)
        # Fedify -> us: a signed GET of our actor, then a Follow (POST), whose Accept makes Fedify
        # fetch our key by its IRI (with the #main-key fragment) with a signed GET.
        looked_up = await peer.get("lookup", url=alpha.iri, signed="1")
        assert looked_up["ok"], looked_up
        await peer.act("follow", target=alpha.iri)
        await wait_until(_state_is(node, peer.actor, alpha.iri, "accepted"), what="alpha's new follower")
        accept = await peer.wait_received(_activity("Accept"), what="the Accept")
        _assert_verified(accept, RFC9421)  # us -> Fedify, RFC 9421 at the first knock

        # us -> Fedify: our Follow, first knock RFC 9421, verified, remembered for the host.
        await following.follow(node.fed, local_name="alpha", target_iri=peer.actor)
        ours = await peer.wait_received(_activity("Follow", object_id=peer.actor), what="our Follow")
        _assert_verified(ours, RFC9421)
        used = await node.scalar(select(PeerHost.signature_spec).where(PeerHost.host == peer.host))
        assert used == "rfc9421"

        to_us = [e for e in await peer.sent() if e["url"].startswith(node.uris.origin) and e["signatureSpec"]]
        methods = {e["method"] for e in to_us}
        assert methods == {"GET", "POST"}, to_us
        refused = [(e["method"], e["url"], e["status"], e.get("error")) for e in to_us if e["status"] >= 400]
        assert refused == [], refused
        assert {e["signatureSpec"] for e in to_us} == {RFC9421}
        assert any("#" in e["url"] for e in to_us if e["method"] == "GET"), to_us
