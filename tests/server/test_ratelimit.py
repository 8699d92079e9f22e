"""The per-host token bucket."""

from __future__ import annotations

from server.http.ratelimit import HostRateLimiter, retry_after_header


def test_burst_then_rate_then_recovery() -> None:
    limiter = HostRateLimiter(rate_per_s=2.0, burst=3)
    assert [limiter.take("a.example", now=0.0) for _ in range(3)] == [None, None, None]
    wait = limiter.take("a.example", now=0.0)
    assert wait is not None and 0.49 < wait <= 0.5
    assert retry_after_header(wait) == "1"
    assert limiter.take("b.example", now=0.0) is None  # hosts are independent
    assert limiter.take("a.example", now=0.5) is None  # one token came back


def test_state_is_bounded_and_disabled_limiter_allows_everything() -> None:
    limiter = HostRateLimiter(rate_per_s=1.0, burst=1, max_hosts=100)
    for n in range(1000):
        limiter.take(f"h{n}.evil.example", now=0.0)
    assert len(limiter._buckets) == 100
    off = HostRateLimiter(rate_per_s=0, burst=1)
    assert all(off.take("a.example") is None for _ in range(100))
