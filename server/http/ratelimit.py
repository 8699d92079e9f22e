"""Per-peer rate limits for server-to-server traffic (security.md case 34).

Limits are keyed on the *verified* signer's registrable domain (after the signature check, never
``host:port``: case 57), never on a claim the sender could forge to throttle someone else, and
never on a client-supplied ``X-Forwarded-For``; traffic not yet verified spends from its source
address's bucket. Over the limit a request gets 429 with ``Retry-After``. State is a token
bucket per host in a bounded LRU (case 33): an attacker rotating hosts evicts only its own.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class HostRateLimiter:
    """``rate_per_s`` sustained, ``burst`` at once, per host; ``rate_per_s <= 0`` disables it."""

    def __init__(self, *, rate_per_s: float, burst: int, max_hosts: int = 10_000) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_hosts = max_hosts
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def take(self, host: str, *, now: float | None = None) -> float | None:
        """Spend one token for ``host``; None if allowed, else seconds until one is available."""
        if not self.enabled:
            return None
        moment = time.monotonic() if now is None else now
        bucket = self._buckets.get(host)
        if bucket is None:
            bucket = _Bucket(float(self.burst), moment)
            self._buckets[host] = bucket
            while len(self._buckets) > self.max_hosts:
                self._buckets.popitem(last=False)
        else:
            bucket.tokens = min(
                float(self.burst), bucket.tokens + (moment - bucket.updated) * self.rate_per_s
            )
            bucket.updated = moment
        self._buckets.move_to_end(host)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return (1 - bucket.tokens) / self.rate_per_s

    def refund(self, host: str) -> None:
        """Give back the token just spent for ``host`` (the request turned out not to count)."""
        bucket = self._buckets.get(host)
        if bucket is not None:
            bucket.tokens = min(float(self.burst), bucket.tokens + 1)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
