"""The signing pool (decision 90): signatures made in child processes equal the local ones."""

from __future__ import annotations

from datetime import UTC, datetime

from federation.delivery import inbox_request
from federation.keys import KeyPair, generate_private_key
from federation.signatures import cavage
from federation.signing_pool import SigningPool
from federation.types import Iri


def _pair(kind: str, name: str) -> KeyPair:
    actor = f"https://a.example/{name}"
    return KeyPair(Iri(f"{actor}#main-key"), Iri(actor), generate_private_key(kind))  # type: ignore[arg-type]


async def test_pool_signatures_equal_local_ones_for_both_key_types_in_order() -> None:
    rsa_pair, ed_pair = _pair("rsa", "alice"), _pair("ed25519", "bob")
    items = [(rsa_pair if i % 3 else ed_pair, f"message {i}".encode()) for i in range(7)]
    pool = SigningPool(2)
    try:
        signatures = await pool.sign_many(items)
        assert signatures == [pair.sign(message) for pair, message in items]
        assert await pool.sign_many([]) == []
    finally:
        pool.close()
    pool.close()  # idempotent


async def test_a_request_finished_with_a_pool_signature_is_the_locally_signed_request() -> None:
    pair = _pair("rsa", "carol")
    now = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
    request = inbox_request(Iri("https://b.example/users/dan/inbox"), b'{"type":"Create"}')
    unsigned = cavage.prepare(request, pair, now=now)
    pool = SigningPool(1)
    try:
        (signature,) = await pool.sign_many([(pair, unsigned.message)])
    finally:
        pool.close()
    expected = cavage.sign(request, pair, now=now)
    finished = unsigned.signed(signature)
    assert list(finished.headers.items()) == list(expected.headers.items())
    assert (finished.method, finished.url, finished.body) == (expected.method, expected.url, expected.body)


def test_a_pool_needs_a_process() -> None:
    try:
        SigningPool(0)
    except ValueError:
        return
    raise AssertionError("SigningPool(0) was accepted")
