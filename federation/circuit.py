"""Per-host circuit breaker and availability, as pure state transitions.

Defaults follow Fedify (5 failures within 10 minutes open the breaker for 30 minutes, then one
probe) and Mastodon (a host failing on 7 distinct days is *unavailable* until it answers or
sends us a verified request): security.md §3.1 and §3.4(3). The server stores the state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = 5
    window: timedelta = timedelta(minutes=10)
    open_for: timedelta = timedelta(minutes=30)
    unavailable_after_days: int = 7


@dataclass(frozen=True, slots=True)
class HostHealth:
    """What we remember of one host's recent deliveries."""

    breaker: BreakerState = BreakerState.CLOSED
    recent_failures: int = 0
    window_started_at: datetime | None = None
    open_until: datetime | None = None
    failing_days: int = 0
    last_failure_day: str | None = None
    unavailable: bool = False


def may_deliver(health: HostHealth, now: datetime) -> tuple[bool, datetime | None]:
    """May we try this host now? If not, when to try again (the end of the open period).

    An open breaker whose period has ended lets exactly one probe through (half-open); the
    caller records it with :func:`start_probe` so concurrent deliveries keep waiting.
    """
    if health.breaker == BreakerState.OPEN and health.open_until is not None and now < health.open_until:
        return False, health.open_until
    if health.breaker == BreakerState.HALF_OPEN and health.open_until is not None and now < health.open_until:
        return False, health.open_until
    return True, None


def start_probe(health: HostHealth, now: datetime, policy: BreakerPolicy = BreakerPolicy()) -> HostHealth:
    """Mark the one probe of an expired open period; others wait another period."""
    if health.breaker == BreakerState.CLOSED:
        return health
    return replace(health, breaker=BreakerState.HALF_OPEN, open_until=now + policy.open_for)


def record_success(health: HostHealth) -> HostHealth:
    """Any success closes the breaker and clears unavailability (Mastodon resets on success)."""
    return HostHealth()


def record_failure(health: HostHealth, now: datetime, policy: BreakerPolicy = BreakerPolicy()) -> HostHealth:
    """Count a transient failure (network error, 5xx); 429 and other 4xx are not counted.

    A failed probe reopens the breaker at once; otherwise it opens when ``failure_threshold``
    failures fall within ``window``. Failing days are counted once per calendar day (UTC).
    """
    day = now.date().isoformat()
    failing_days = health.failing_days + (1 if health.last_failure_day != day else 0)
    counted = replace(
        health,
        failing_days=failing_days,
        last_failure_day=day,
        unavailable=health.unavailable or failing_days >= policy.unavailable_after_days,
    )
    if health.window_started_at is None or now - health.window_started_at > policy.window:
        started, count = now, 1
    else:
        started, count = health.window_started_at, health.recent_failures + 1
    if health.breaker == BreakerState.HALF_OPEN or count >= policy.failure_threshold:
        return replace(
            counted,
            breaker=BreakerState.OPEN,
            open_until=now + policy.open_for,
            recent_failures=0,
            window_started_at=None,
        )
    return replace(counted, recent_failures=count, window_started_at=started)
