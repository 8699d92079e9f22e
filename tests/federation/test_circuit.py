"""The per-host circuit breaker and availability transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from federation.circuit import (
    BreakerState,
    HostHealth,
    may_deliver,
    record_failure,
    record_success,
    start_probe,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def fail_n(
    health: HostHealth, n: int, start: datetime, step: timedelta = timedelta(seconds=30)
) -> HostHealth:
    for i in range(n):
        health = record_failure(health, start + i * step)
    return health


def test_five_failures_within_ten_minutes_open_the_breaker_for_thirty_minutes() -> None:
    health = fail_n(HostHealth(), 4, T0)
    assert health.breaker == BreakerState.CLOSED and may_deliver(health, T0)[0]
    health = record_failure(health, T0 + timedelta(minutes=3))
    assert health.breaker == BreakerState.OPEN
    allowed, retry_at = may_deliver(health, T0 + timedelta(minutes=10))
    assert not allowed and retry_at == T0 + timedelta(minutes=33)


def test_failures_spread_beyond_the_window_do_not_open_it() -> None:
    health = fail_n(HostHealth(), 10, T0, step=timedelta(minutes=11))
    assert health.breaker == BreakerState.CLOSED


def test_one_probe_after_the_open_period_then_close_or_reopen() -> None:
    opened = fail_n(HostHealth(), 5, T0)
    later = T0 + timedelta(minutes=40)
    assert may_deliver(opened, later)[0]
    probing = start_probe(opened, later)
    assert probing.breaker == BreakerState.HALF_OPEN
    assert not may_deliver(probing, later + timedelta(seconds=1))[0]  # others keep waiting
    assert record_success(probing).breaker == BreakerState.CLOSED
    reopened = record_failure(probing, later + timedelta(seconds=5))
    assert reopened.breaker == BreakerState.OPEN


def test_seven_distinct_failing_days_make_a_host_unavailable_until_a_success() -> None:
    health = HostHealth()
    for day in range(7):
        health = record_failure(health, T0 + timedelta(days=day))
        health = record_failure(health, T0 + timedelta(days=day, hours=1))  # same day counts once
    assert health.failing_days == 7 and health.unavailable
    assert not record_success(health).unavailable
