"""The retry policy shared by every durable job: when to try again, and when to give up.

One policy value serves inbox processing, fan-out and delivery alike (microblog.pub wrote
its backoff twice; we write it once). It is pure: no clock, no I/O and no global random
state. The caller passes the attempt number, the peer's ``Retry-After`` (already parsed with
:func:`parse_retry_after`) and a :class:`random.Random` for the jitter, so a test with a seeded
generator gets a reproducible schedule.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

__all__ = ["DEFAULT", "FAST", "RetryPolicy", "parse_retry_after"]

_DELTA_SECONDS = re.compile(r"[0-9]{1,12}")
# RFC 9110 §5.6.7 obsolete forms that ``email.utils`` does not read: RFC 850 and asctime.
_OBSOLETE_DATE_FORMATS = ("%A, %d-%b-%y %H:%M:%S GMT", "%a %b %d %H:%M:%S %Y")
# Beyond this a delta-seconds value is only noise (and timedelta would overflow near 10^14 s).
_MAX_PARSED_DELAY = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A polynomial backoff with jitter, modelled on Mastodon's delivery worker.

    The delay after the ``n``-th failed attempt is ``n**exponent · unit + base`` plus a jitter
    drawn uniformly from ``[0, jitter · n**exponent · unit)``, capped at ``max_delay``. With the
    defaults that is ``n⁴ + 15`` seconds plus up to ``0.5·n⁴`` seconds.

    Guarantees:
        * a job is attempted at most ``max_attempts`` times; :meth:`delay` returns ``None``
          once they are used up, whatever the peer's ``Retry-After`` says;
        * every delay lies in ``[base, max_delay]`` without ``Retry-After``, and in
          ``[min_retry_after, max_retry_after]`` with one, so a hostile or confused peer can
          neither make us hammer it nor park a job for months.

    Attributes:
        max_attempts: total attempts, the first one included.
        base: the constant added to every computed delay.
        unit: the duration of one ``n**exponent`` step.
        exponent: the polynomial degree (4 for Mastodon's schedule).
        jitter: the jitter's upper bound as a fraction of the polynomial term.
        max_delay: the cap on one computed delay.
        min_retry_after: the floor applied to a peer's ``Retry-After``.
        max_retry_after: the ceiling applied to a peer's ``Retry-After``.
    """

    # Mastodon's ActivityPub::DeliveryWorker retries 16 times and waits
    # n⁴ + 15 s (+ rand(0.5·n⁴)) before retry n, i.e. 15 s, 16 s, 31 s, 96 s, … 14.1 h: about
    # 2 to 3 days in all. We aim for the same order of magnitude, because associations run on
    # small hosts that may be down for a weekend. We count attempts, not retries: after attempt
    # n fails we wait n⁴ + 15 s, so 16 attempts give 15 waits (16 s … 14.1 h) totalling 49.6 h
    # before jitter and at most ~74 h with it.
    max_attempts: int = 16
    base: timedelta = timedelta(seconds=15)
    unit: timedelta = timedelta(seconds=1)
    exponent: int = 4
    jitter: float = 0.5
    max_delay: timedelta = timedelta(hours=24)
    min_retry_after: timedelta = timedelta(seconds=1)
    max_retry_after: timedelta = timedelta(hours=6)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.exponent < 0:
            raise ValueError("exponent must not be negative")
        if not (math.isfinite(self.jitter) and self.jitter >= 0):
            raise ValueError("jitter must be a finite, non-negative fraction")
        zero = timedelta(0)
        if min(self.base, self.unit, self.max_delay, self.min_retry_after) < zero:
            raise ValueError("durations must not be negative")
        if self.base > self.max_delay:
            raise ValueError("base must not exceed max_delay")
        if self.min_retry_after > self.max_retry_after:
            raise ValueError("min_retry_after must not exceed max_retry_after")

    def delay(
        self, attempt: int, *, retry_after: timedelta | None = None, rng: random.Random
    ) -> timedelta | None:
        """How long to wait before the attempt after ``attempt``, or ``None`` to give up.

        Args:
            attempt: the number of the attempt that just failed, starting at 1.
            retry_after: the peer's requested wait (``Retry-After``), if any. It replaces the
                computed delay, clamped to ``[min_retry_after, max_retry_after]``.
            rng: the source of jitter.

        Returns:
            ``None`` when ``attempt >= max_attempts``; otherwise the delay.

        Raises:
            ValueError: ``attempt`` is smaller than 1 (a caller bug, not a peer's doing).
        """
        if attempt < 1:
            raise ValueError(f"attempt numbers start at 1, got {attempt}")
        if attempt >= self.max_attempts:
            return None
        if retry_after is not None:
            return min(max(retry_after, self.min_retry_after), self.max_retry_after)
        step_s = self._step_s(attempt)
        jitter_s = rng.random() * self.jitter * step_s
        total_s = self.base.total_seconds() + step_s + jitter_s
        if not math.isfinite(total_s) or total_s >= self.max_delay.total_seconds():
            return self.max_delay
        return timedelta(seconds=total_s)

    def _step_s(self, attempt: int) -> float:
        # Float seconds are exact enough here (n⁴ stays far below 2**53 for any sane n) and,
        # since the cap is applied before converting, silly exponents cannot overflow timedelta.
        unit_s = self.unit.total_seconds()
        if unit_s == 0:
            return 0.0
        try:
            return float(attempt) ** self.exponent * unit_s
        except OverflowError:
            return math.inf

    def schedule_bounds(self) -> tuple[timedelta, timedelta]:
        """The shortest and longest total wait across all retries (no ``Retry-After``).

        Useful to document or test what a configuration promises: the job is given up after
        a total wait between these two bounds, plus the time the attempts themselves take.
        """
        low = timedelta(0)
        high = timedelta(0)
        for attempt in range(1, self.max_attempts):
            step_s = self._step_s(attempt)
            cap_s = self.max_delay.total_seconds()
            low += timedelta(seconds=min(self.base.total_seconds() + step_s, cap_s))
            high += timedelta(seconds=min(self.base.total_seconds() + step_s * (1 + self.jitter), cap_s))
        return low, high


DEFAULT = RetryPolicy()
"""The production schedule: 16 attempts over about 2 to 3 days (security.md §3.4 item 2)."""

FAST = RetryPolicy(
    max_attempts=16,
    base=timedelta(milliseconds=10),
    unit=timedelta(microseconds=10),
    max_delay=timedelta(milliseconds=200),
    min_retry_after=timedelta(0),
    max_retry_after=timedelta(milliseconds=200),
)
"""The same shape with tiny delays ("fast federation" tests): every wait is at most 0.2 s."""


def parse_retry_after(value: str | None, *, now: datetime) -> timedelta | None:
    """Read an HTTP ``Retry-After`` header value as a wait from ``now``.

    Accepts delta-seconds (``"120"``) and an HTTP-date in any of the three RFC 9110 forms
    (IMF-fixdate, RFC 850, asctime). A date in the past means "now" (a zero wait).

    This function is total: a missing, empty, negative, fractional, oversized or otherwise
    malformed value gives ``None`` (the caller then uses its own backoff); it never raises.
    Parsed waits are capped at one year; :class:`RetryPolicy` clamps them much further.

    Args:
        value: the raw header value, or ``None`` when absent.
        now: the current time; a naive datetime is taken as UTC.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        return min(timedelta(seconds=int(text)), _MAX_PARSED_DELAY)
    when = _parse_http_date(text)
    if when is None:
        return None
    current = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    wait = when - current
    return min(max(wait, timedelta(0)), _MAX_PARSED_DELAY)


def _parse_http_date(text: str) -> datetime | None:
    """An aware UTC datetime from an HTTP-date, or ``None``."""
    parsed: datetime | None = None
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        parsed = None
    if parsed is None:
        for fmt in _OBSOLETE_DATE_FORMATS:
            try:
                parsed = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    # HTTP-dates are always GMT; email.utils returns a naive datetime for "-0000".
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. year 1 with a positive offset falls before datetime.min
        return None
