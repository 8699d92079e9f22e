"""The retry policy: Mastodon's schedule, jitter bounds, Retry-After parsing and clamping."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from federation.retry import FAST, RetryPolicy, parse_retry_after

NOW = datetime(2015, 10, 21, 7, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)


class _Extreme(random.Random):
    """A generator stuck at one end of [0, 1), to reach the jitter's bounds exactly."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def _total(policy: RetryPolicy, rng: random.Random) -> tuple[timedelta, int]:
    total = timedelta(0)
    waits = 0
    for attempt in range(1, 100):
        delay = policy.delay(attempt, rng=rng)
        if delay is None:
            return total, waits
        total += delay
        waits += 1
    raise AssertionError("the policy never gave up")


def test_default_policy_retries_for_two_to_three_and_a_half_days() -> None:
    """16 attempts, 15 waits of n⁴ + 15 s (+ jitter < 0.5·n⁴): security.md §3.1 and §3.4."""
    policy = RetryPolicy()
    assert policy.max_attempts == 16

    low, low_waits = _total(policy, _Extreme(0.0))
    high, high_waits = _total(policy, _Extreme(0.999_999_999))
    assert low_waits == high_waits == 15
    assert 2 * DAY < low < high < 3.5 * DAY
    # Without jitter the sum is Σ n⁴ (n = 1..15) + 15·15 s = 178,537 s, about 49.6 h.
    assert low == timedelta(seconds=178_537)
    assert (low, high) == pytest.approx(policy.schedule_bounds(), abs=timedelta(seconds=1))

    for seed in range(20):
        total, _ = _total(policy, random.Random(seed))
        assert low <= total <= high


def test_each_delay_is_n4_plus_15_plus_bounded_jitter() -> None:
    policy = RetryPolicy()
    rng = random.Random(1234)
    for attempt in range(1, 16):
        base = attempt**4 + 15
        for _ in range(50):
            delay = policy.delay(attempt, rng=rng)
            assert delay is not None
            assert base <= delay.total_seconds() < base + 0.5 * attempt**4
    assert policy.delay(1, rng=_Extreme(0.0)) == timedelta(seconds=16)
    assert policy.delay(15, rng=_Extreme(0.0)) == timedelta(seconds=15**4 + 15)  # 14.1 h


def test_same_seed_gives_same_schedule() -> None:
    first = [RetryPolicy().delay(n, rng=r) for r in [random.Random(7)] for n in range(1, 16)]
    second = [RetryPolicy().delay(n, rng=r) for r in [random.Random(7)] for n in range(1, 16)]
    assert first == second


def test_gives_up_after_max_attempts_even_with_retry_after() -> None:
    policy = RetryPolicy(max_attempts=3)
    rng = random.Random(0)
    assert policy.delay(2, rng=rng) is not None
    assert policy.delay(3, rng=rng) is None
    assert policy.delay(4, retry_after=timedelta(seconds=5), rng=rng) is None
    assert RetryPolicy(max_attempts=1).delay(1, rng=rng) is None


def test_each_delay_is_capped() -> None:
    policy = RetryPolicy(max_attempts=100, max_delay=timedelta(hours=2))
    assert policy.delay(99, rng=random.Random(0)) == timedelta(hours=2)
    # Even an absurd exponent neither overflows nor exceeds the cap.
    huge = RetryPolicy(max_attempts=1000, exponent=400)
    assert huge.delay(999, rng=random.Random(0)) == huge.max_delay


def test_retry_after_is_honoured_within_the_clamp() -> None:
    policy = RetryPolicy()
    rng = random.Random(0)
    assert policy.delay(3, retry_after=timedelta(minutes=7), rng=rng) == timedelta(minutes=7)
    # Shorter than the computed delay: the peer knows best, down to the 1 s floor.
    assert policy.delay(14, retry_after=timedelta(seconds=30), rng=rng) == timedelta(seconds=30)
    assert policy.delay(1, retry_after=timedelta(0), rng=rng) == timedelta(seconds=1)
    assert policy.delay(1, retry_after=timedelta(seconds=-50), rng=rng) == timedelta(seconds=1)
    # A peer cannot park our jobs for days.
    assert policy.delay(1, retry_after=timedelta(days=30), rng=rng) == timedelta(hours=6)


def test_attempt_numbers_start_at_one() -> None:
    with pytest.raises(ValueError):
        RetryPolicy().delay(0, rng=random.Random(0))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"jitter": -0.1},
        {"jitter": float("nan")},
        {"base": timedelta(seconds=-1)},
        {"base": timedelta(days=2)},
        {"min_retry_after": timedelta(hours=7)},
        {"exponent": -1},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_fast_policy_keeps_every_wait_tiny() -> None:
    rng = random.Random(0)
    for attempt in range(1, FAST.max_attempts):
        delay = FAST.delay(attempt, rng=rng)
        assert delay is not None and delay <= timedelta(milliseconds=200)
    assert FAST.delay(1, retry_after=timedelta(hours=1), rng=rng) == timedelta(milliseconds=200)
    assert FAST.delay(FAST.max_attempts, rng=rng) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", timedelta(seconds=120)),
        (" 5 ", timedelta(seconds=5)),
        ("0", timedelta(0)),
        ("999999999999", timedelta(days=365)),  # capped, no overflow
        # The three HTTP-date forms of RFC 9110 §5.6.7.
        ("Wed, 21 Oct 2015 07:28:00 GMT", timedelta(minutes=28)),
        ("Wednesday, 21-Oct-15 07:28:00 GMT", timedelta(minutes=28)),
        ("Wed Oct 21 07:28:00 2015", timedelta(minutes=28)),
        # A date in the past means "now".
        ("Tue, 20 Oct 2015 07:28:00 GMT", timedelta(0)),
        ("Fri, 31 Dec 9999 23:59:59 GMT", timedelta(days=365)),
    ],
)
def test_parse_retry_after_reads_seconds_and_http_dates(value: str, expected: timedelta) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "-5",
        "1.5",
        "1e3",
        "soon",
        "120 seconds",
        "٣",  # a non-ASCII digit
        "9" * 40,
        "Wed, 99 Oct 2015 07:28:00 GMT",
        "Wed, 21 Oct 99999 07:28:00 GMT",
        "Fri, 31 Dec 9999 23:59:59 -1400",
        "\x00",
        "Wed, 21 Oct 2015 25:61:00 GMT",
        "<html>Too Many Requests</html>",
    ],
)
def test_parse_retry_after_is_total_on_garbage(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


def test_parse_retry_after_accepts_a_naive_now_as_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=naive) == timedelta(minutes=28)


def test_parse_retry_after_never_raises_on_random_text() -> None:
    rng = random.Random(42)
    alphabet = "0123456789 ,:-+GMTWedOctSunday\x00é"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        result = parse_retry_after(text, now=NOW)
        assert result is None or timedelta(0) <= result <= timedelta(days=365)
