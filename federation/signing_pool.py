"""Signatures made in other processes, many per call (decision 90).

An RSA-2048 signature is most of a delivery's CPU (1.15 ms of ≈2.7 ms on the project machine of
2026-12-07), and ``cryptography`` keeps the GIL while it signs, so threads do not help. A worker
that may use a second core hands a whole batch of signing strings to a process of this pool in
one call: the worker's side of it costs about 10 µs per signature (one call per signature would
cost 0.37 ms, a third of the signature itself, so single requests are never sent here).

The keys travel with each batch as unencrypted PKCS#8 (the pool's processes are this process's
own children, started with ``spawn``: nothing of the parent's threads or database connections
is inherited) and are kept, loaded, in a small table in each child.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Final

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from .keys import KeyPair

_MAX_KEYS: Final = 64  # loaded keys kept per child (one per local actor that delivers)
_child_keys: OrderedDict[bytes, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey] = OrderedDict()


def _child_key(pem: bytes) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    digest = hashlib.sha256(pem).digest()
    key = _child_keys.get(digest)
    if key is None:
        # Our own keys, already checked when they were made: skip OpenSSL's slow RSA check.
        loaded = serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)
        if not isinstance(loaded, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
            raise ValueError("unsupported key type")
        key = _child_keys[digest] = loaded
        while len(_child_keys) > _MAX_KEYS:
            _child_keys.popitem(last=False)
    else:
        _child_keys.move_to_end(digest)
    return key


def _sign_batch(keys: Sequence[bytes], items: Sequence[tuple[int, bytes]]) -> list[bytes]:
    """In a child: the signature of each ``(key index, message)``, as :meth:`KeyPair.sign`."""
    loaded = [_child_key(pem) for pem in keys]
    out: list[bytes] = []
    for index, message in items:
        key = loaded[index]
        if isinstance(key, rsa.RSAPrivateKey):
            out.append(key.sign(message, padding.PKCS1v15(), hashes.SHA256()))
        else:
            out.append(key.sign(message))
    return out


class SigningPool:
    """``processes`` child processes that sign batches for this process (started on first use).

    :meth:`sign_many` returns the same bytes as ``[pair.sign(m) for pair, m in items]``
    (PKCS#1 v1.5 and Ed25519 signatures are deterministic).
    """

    def __init__(self, processes: int) -> None:
        if processes < 1:
            raise ValueError("a signing pool needs at least one process")
        self.processes = processes
        self._executor: ProcessPoolExecutor | None = None
        self._pems: OrderedDict[int, tuple[KeyPair, bytes]] = OrderedDict()

    def _pem(self, pair: KeyPair) -> bytes:
        # Keyed by identity, the pair kept alive with it so the id cannot be reused meanwhile.
        entry = self._pems.get(id(pair))
        if entry is None:
            pem = pair.private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            entry = self._pems[id(pair)] = (pair, pem)
            while len(self._pems) > _MAX_KEYS:
                self._pems.popitem(last=False)
        return entry[1]

    async def sign_many(self, items: Sequence[tuple[KeyPair, bytes]]) -> list[bytes]:
        """The signatures of ``items`` (key pair, message), in order, made in the pool."""
        if not items:
            return []
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.processes, mp_context=multiprocessing.get_context("spawn")
            )
        index: dict[int, int] = {}
        keys: list[bytes] = []
        batch: list[tuple[int, bytes]] = []
        for pair, message in items:
            i = index.get(id(pair))
            if i is None:
                i = index[id(pair)] = len(keys)
                keys.append(self._pem(pair))
            batch.append((i, message))
        # One call per process, so each child signs its share in parallel with the others.
        share = -(-len(batch) // self.processes)
        loop = asyncio.get_running_loop()
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(self._executor, _sign_batch, keys, batch[start : start + share])
                for start in range(0, len(batch), share)
            )
        )
        return [signature for part in parts for signature in part]

    def close(self) -> None:
        """Stop the child processes (without waiting for them). Idempotent."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
