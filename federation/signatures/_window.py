"""The time window shared by both signature specs (security case 4).

Internal: :func:`federation.signatures.verify_request` exposes the two limits as parameters.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import lru_cache

from ..errors import SignatureExpired

DEFAULT_MAX_FUTURE_SKEW = timedelta(hours=1)
"""Mastodon's ``CLOCK_SKEW_MARGIN`` and Fedify's default window (docs/interop.md "HTTP signatures")."""

DEFAULT_MAX_AGE = timedelta(hours=1)
"""How old a signed ``Date``/``created`` may be. Mastodon accepts a Date-signed request for about
65 minutes (5 min expiry + 1 h skew) and Fedify for 1 h; security.md case 4 expects a request
2 h old to be refused. Replays inside the window are harmless (case 5: duplicates are dropped).
Senders re-sign every retry with a fresh Date, so a long queue does not need a longer window."""


def require_aware(now: datetime) -> datetime:
    """Normalise ``now`` to UTC; a naive datetime is a programming error, not peer input."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime (use federation.types.utc_now)")
    return now.astimezone(UTC)


def http_date(now: datetime) -> str:
    """The IMF-fixdate ``Date`` value of ``now`` (``Mon, 07 Dec 2026 22:14:18 GMT``), as
    ``email.utils.format_datetime(now, usegmt=True)`` writes it.

    It changes once a second and a fan-out signs thousands of requests in that second, so the
    string is made once per second (the last few seconds are kept: batches signed a little
    earlier may interleave).

    Raises:
        ValueError: ``now`` is naive.
    """
    return _http_date_of_second(require_aware(now).replace(microsecond=0))


@lru_cache(maxsize=8)
def _http_date_of_second(second: datetime) -> str:
    return format_datetime(second, usegmt=True)


def from_unix(seconds: float, *, what: str) -> datetime:
    """Convert a signed Unix timestamp, mapping out-of-range values to SignatureExpired."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise SignatureExpired(f"the signature's {what} timestamp is out of range") from exc


def check_time_window(
    *,
    created: datetime,
    expires: datetime | None,
    now: datetime,
    max_future_skew: timedelta,
    max_age: timedelta,
    what: str,
) -> None:
    """Accept ``created`` only inside ``[now - max_age, now + max_future_skew]``.

    ``expires`` (when signed) must not be more than ``max_future_skew`` in the past: the same
    clock-skew margin Mastodon grants on both sides.

    Raises:
        SignatureExpired: outside the window; the detail names ``what`` (e.g. "Date header").
    """
    if created > now + max_future_skew:
        raise SignatureExpired(f"the signature's {what} is in the future (more than {max_future_skew} ahead)")
    if now - created > max_age:
        raise SignatureExpired(f"the signature's {what} is older than {max_age}")
    # Written as a difference: ``expires + max_future_skew`` overflows for an expires near
    # datetime.max (a signed ``expires=253402300799``), which must be a 401, not a crash.
    if expires is not None and now - expires > max_future_skew:
        raise SignatureExpired("the signature has expired (its expires parameter is in the past)")
