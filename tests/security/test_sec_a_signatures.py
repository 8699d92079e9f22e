"""Authenticating inbound requests: HTTP Signatures (security.md §A, cases 1-10).

Each test replays a catalogue case against a real node on SQLite and PostgreSQL (the ``world``
fixture of :mod:`tests.support.world`): the database is the oracle.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from federation.types import utc_now
from server.db.models import ActorKey
from server.services.actors.key_resolver import FetchBudget
from tests.support.signed_inbox import (
    AS_PUBLIC,
    Reply,
    changed,
    encode,
    fixed_key,
    gets_to,
    processed,
    remote_account,
    settle,
)
from tests.support.world import (
    GROUP_INBOX,
    OTHER_GROUP_INBOX,
    SHARED,
    World,
    activity,
    assert_refused,
    assert_stored_and_processed_once,
    create,
    inbox_rows,
    note,
    object_row,
)


async def test_sec_05_ten_duplicate_deliveries_are_accepted_but_processed_once(world: World) -> None:
    """The same signed Create delivered 10 times at once: 202 each, one row, one job, one object."""
    obj = note(world.alice, to=[world.group])
    create_ = create(world.alice, obj)
    signed = world.sender.sign_activity(GROUP_INBOX, create_, world.alice.key)
    before = await world.counts()
    # When the identical request arrives 10 times, concurrently
    replies = await asyncio.wait_for(
        asyncio.gather(*(world.sender.post(signed) for _ in range(10))), timeout=60
    )
    # Then every delivery is acknowledged and the activity is processed exactly once
    assert [r.status for r in replies] == [202] * 10
    await assert_stored_and_processed_once(world, create_["id"])
    # and once more after processing, still nothing new
    assert (await world.sender.post(signed)).status == 202
    await settle(world.node)
    assert changed(before, await world.counts()) == {
        "inbox_activities": 1,
        "inbox_items": 1,
        "jobs": 1,
        "objects": 1,
    }


async def test_sec_05_replayed_create_after_its_delete_does_not_resurrect_the_note(world: World) -> None:
    """After alice deletes her note, replaying her Create (same bytes, or a fresh id) leaves a tombstone."""
    # Given alice's note, stored, then deleted by her
    obj = note(world.alice, to=[world.group])
    create_ = create(world.alice, obj)
    original = world.sender.sign_activity(GROUP_INBOX, create_, world.alice.key)
    assert (await world.sender.post(original)).status == 202
    await assert_stored_and_processed_once(world, create_["id"])
    delete = activity("Delete", world.alice, obj["id"])
    assert (await world.send(GROUP_INBOX, delete, world.alice)).status == 202
    await assert_stored_and_processed_once(world, delete["id"])
    tomb = await object_row(world.node, obj["id"])
    assert tomb is not None and tomb.deleted_at is not None
    before = await world.counts()
    # When the original signed request is replayed within the window
    assert (await world.sender.post(original)).status == 202
    await settle(world.node)
    # Then it is a duplicate: nothing stored, nothing queued
    assert changed(before, await world.counts()) == {}
    # When a Create with a fresh id carries the deleted note again
    again = create(world.alice, obj)
    assert (await world.send(GROUP_INBOX, again, world.alice)).status == 202
    await assert_stored_and_processed_once(world, again["id"])
    # Then the note stays a tombstone
    row = await object_row(world.node, obj["id"])
    assert row is not None and row.deleted_at is not None and row.document["type"] == "Tombstone"
    assert "content" not in row.document


@pytest.mark.parametrize("signer", ["mallory", "bob"])
async def test_sec_01_activity_signed_by_another_actors_key_is_refused(world: World, signer: str) -> None:
    """Alice's Create signed with mallory's key (other host) or bob's (same host): 401, nothing stored."""
    # Given a Create whose actor is alice
    forged = create(
        world.alice, note(world.alice, to=[world.group], content="Alerte : rupture du médicament X")
    )
    key = world.mallory.key if signer == "mallory" else world.bob.key
    before = await world.counts()
    # When it is validly signed by someone else
    reply = await world.sender.send(GROUP_INBOX, forged, key)
    # Then it is refused with a stable code, before any handler
    assert_refused(reply, 401, "key_owner_mismatch")
    await settle(world.node)
    assert changed(before, await world.counts()) == {}
    assert await inbox_rows(world.node, forged["id"]) == 0


@pytest.mark.parametrize("spec", ["cavage", "rfc9421"])
async def test_sec_02_tampered_body_with_the_original_digest_is_refused(world: World, spec: str) -> None:
    """A genuine signed request with its body swapped for a Delete: 401 digest_mismatch, no key lookup."""
    genuine = world.sender.sign_activity(
        GROUP_INBOX, create(world.alice, note(world.alice, to=[world.group])), world.alice.key, spec=spec
    )
    tampered = genuine.with_body(encode(activity("Delete", world.alice, world.alice.iri_on_host("/notes/1"))))
    before = await world.counts()
    reply = await world.sender.post(tampered)
    assert_refused(reply, 401, "digest_mismatch")
    assert changed(before, await world.counts()) == {}
    assert world.peers.hits == []


async def test_sec_03_signature_over_host_and_date_only_is_refused(world: World) -> None:
    """headers="host date" with a fresh matching Digest: 401, the signature does not cover enough."""
    body = encode(create(world.alice, note(world.alice, to=[world.group])))
    weak = world.sender.sign_cavage_raw(GROUP_INBOX, body, world.alice.key, covered=("host", "date"))
    before = await world.counts()
    reply = await world.sender.post(weak)
    assert_refused(reply, 401, "signature_coverage")
    assert changed(before, await world.counts()) == {}


@pytest.mark.parametrize("spec", ["cavage", "rfc9421"])
@pytest.mark.parametrize("offset", [timedelta(hours=-2), timedelta(hours=3)], ids=["2h_old", "3h_future"])
async def test_sec_04_signature_outside_the_time_window_is_refused(
    world: World, spec: str, offset: timedelta
) -> None:
    """A request signed 2 h ago or 3 h ahead (signer's clock) is refused 401 signature_expired."""
    create_ = create(world.alice, note(world.alice, to=[world.group]))
    stale = world.sender.sign_activity(
        GROUP_INBOX, create_, world.alice.key, spec=spec, now=utc_now() + offset
    )
    before = await world.counts()
    reply = await world.sender.post(stale)
    assert_refused(reply, 401, "signature_expired")
    assert changed(before, await world.counts()) == {}


async def test_sec_09_hmac_algorithm_with_the_public_key_as_secret_is_refused(world: World) -> None:
    """algorithm="hmac-sha256" keyed with alice's public PEM: 401 without fetching anything."""
    body = encode(create(world.alice, note(world.alice, to=[world.group])))
    forged = world.sender.sign_cavage_raw(
        GROUP_INBOX,
        body,
        world.alice.key,
        covered=("(request-target)", "host", "date", "digest"),
        algorithm="hmac-sha256",
        hmac_secret=world.alice.key.public.to_pem().encode(),
    )
    before = await world.counts()
    reply = await world.sender.post(forged)
    assert_refused(reply, 401)
    assert changed(before, await world.counts()) == {}
    assert world.peers.hits == []


async def test_sec_09_acct_key_id_is_refused_without_a_lookup(world: World) -> None:
    """keyId="acct:alice@peer.example" is refused 401 and nothing is fetched."""
    body = encode(create(world.alice, note(world.alice, to=[world.group])))
    forged = world.sender.sign_cavage_raw(
        GROUP_INBOX,
        body,
        world.alice.key,
        covered=("(request-target)", "host", "date", "digest"),
        key_id=f"acct:alice@{world.alice.host}",
    )
    before = await world.counts()
    reply = await world.sender.post(forged)
    assert_refused(reply, 401, "key_unavailable")
    assert changed(before, await world.counts()) == {}
    assert world.peers.hits == []


async def test_sec_09_a_1024_bit_rsa_key_is_refused(world: World) -> None:
    """An actor whose published key is RSA-1024 cannot sign anything: 401, the actor is not stored."""
    old = remote_account(world.peers, "peer.example", "old", "rsa-weak-1024.pem")
    before = await world.counts()
    reply = await world.send(GROUP_INBOX, create(old, note(old, to=[world.group])), old)
    assert_refused(reply, 401, "key_unavailable")
    assert changed(before, await world.counts()) == {}
    assert len(gets_to(world.peers, "peer.example")) == 1  # one look at the key, then refused


@pytest.mark.parametrize("replayed_to", [OTHER_GROUP_INBOX, SHARED, f"{SHARED}?x=1"])
async def test_sec_10_signature_for_one_inbox_replayed_to_another_is_refused(
    world: World, replayed_to: str
) -> None:
    """A POST signed for /groups/collectif/inbox does not verify on another target."""
    other_group = await world.node.create_association("voisins", "Voisins")
    create_ = create(world.alice, note(world.alice, to=[world.group, other_group]))
    genuine = world.sender.sign_activity(GROUP_INBOX, create_, world.alice.key)
    before = await world.counts()
    reply = await world.sender.post(genuine.with_target(replayed_to))
    assert_refused(reply, 401, "signature_invalid")
    assert changed(before, await world.counts()) == {}


async def test_sec_08_update_carrying_another_key_never_replaces_alices_key(world: World) -> None:
    """Update{Person alice, publicKey: mallory's} from bob, then from alice herself: alice's key stays."""
    alice_pem = world.alice.key.public.to_pem()
    takeover = {
        "id": world.alice.iri,
        "type": "Person",
        "preferredUsername": "alice",
        "inbox": f"{world.alice.iri}/inbox",
        "publicKey": {
            "id": world.alice.key_id,
            "owner": world.alice.iri,
            "publicKeyPem": world.mallory.key.public.to_pem(),
        },
    }
    for who in (world.bob, world.alice):
        update = activity("Update", who, takeover, to=[AS_PUBLIC])
        assert (await world.send(SHARED, update, who)).status == 202
        assert await processed(world.node, update["id"]) == "processed"
        async with world.node.sessions() as session:
            pems = (
                await session.execute(
                    select(ActorKey.public_pem).where(ActorKey.key_iri == world.alice.key_id)
                )
            ).scalars()
            assert list(pems) == [alice_pem]
    # and mallory's private key still cannot speak under alice's keyId
    impostor = world.alice.signing_as(fixed_key("rsa-mallory.pem", world.alice.key_id, world.alice.iri))
    before = await world.counts()
    reply = await world.send(SHARED, create(world.alice, note(world.alice, to=[world.group])), impostor)
    assert_refused(reply, 401, "signature_invalid")
    assert changed(before, await world.counts()) == {}


async def test_sec_07_key_id_caught_in_a_redirect_loop_costs_a_bounded_number_of_fetches(
    world: World,
) -> None:
    """keyIds that redirect in a loop or along a long chain: 401, a few GETs, then none on retry."""
    loop_a, loop_b = world.mallory.iri_on_host("/k/a"), world.mallory.iri_on_host("/k/b")
    world.peers.redirect(loop_a, loop_b)
    world.peers.redirect(loop_b, loop_a)
    for i in range(50):
        world.peers.redirect(
            world.mallory.iri_on_host(f"/chain/{i}"), world.mallory.iri_on_host(f"/chain/{i + 1}")
        )
    before = await world.counts()
    for key_id in (loop_a, world.mallory.iri_on_host("/chain/0")):
        key = fixed_key("rsa-mallory.pem", key_id, world.mallory.iri)
        for _ in range(3):
            reply = await world.sender.send(
                SHARED, create(world.mallory, note(world.mallory, to=[world.group])), key
            )
            assert_refused(reply, 401, "key_unavailable")
    assert (
        len(gets_to(world.peers, "evil.example")) <= 2 + 4
    )  # loop detected at hop 2; chain capped at 3 redirects
    assert changed(before, await world.counts()) == {}


async def test_sec_06_self_delete_of_an_unknown_actor_whose_key_is_gone_is_202_and_stores_nothing(
    world: World,
) -> None:
    """A deleted actor's self-Delete (its key answers 410), delivered 3 times: 202 each, one fetch at most."""
    gone = remote_account(world.peers, "peer.example", "gone", "rsa-bob.pem", serve=False)
    world.peers.status(gone.iri, 410)
    before = await world.counts()
    for _ in range(3):
        delete = activity("Delete", gone, gone.iri, to=[AS_PUBLIC])
        assert (await world.send(SHARED, delete, gone)).status == 202
    await settle(world.node)
    assert changed(before, await world.counts()) == {}
    assert world.peers.count(gone.iri) <= 1


async def test_sec_07_flood_of_random_key_ids_is_cut_off_by_the_per_host_budget(world: World) -> None:
    """50 signed POSTs with random keyIds on evil.example: all 401, fetches bounded by the host budget."""
    before = await world.counts()
    started = time.monotonic()
    replies: list[Reply] = []
    for i in range(50):
        key = fixed_key(
            "rsa-mallory.pem", world.mallory.iri_on_host(f"/k/{i}-{time.time_ns()}"), world.mallory.iri
        )
        replies.append(
            await world.sender.send(SHARED, create(world.mallory, note(world.mallory, to=[world.group])), key)
        )
    elapsed = time.monotonic() - started
    assert all(r.status == 401 and r.is_problem for r in replies), {r.status for r in replies}
    budget = FetchBudget()
    allowance = budget.capacity + int(elapsed * budget.refill_per_minute / 60) + 1
    fetches = len(gets_to(world.peers, "evil.example"))
    assert fetches <= allowance, (fetches, allowance)
    assert replies[-1].code == "key_fetch_budget"  # refused without asking anyone
    assert elapsed < 30
    assert changed(before, await world.counts()) == {}
