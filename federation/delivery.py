"""Outbound delivery: who gets an activity (planning) and what a POST's answer means (outcome).

Planning is pure: recipients in, one :class:`DeliveryTarget` per inbox out, never a wider
audience than asked. Delivering signs one POST, sends it through the :class:`Transport` port
and classifies the answer as a :class:`DeliveryOutcome` the caller acts on with ``match``
(docs/architecture.md R5): ``Delivered``, ``RetryLater``, ``Gone`` or ``Rejected``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from .errors import FetchError, PeerNotAllowed, UnsafeAddress
from .http import AP_CONTENT_TYPE, Headers, OutgoingRequest
from .iri import host_of
from .keys import KeyPair
from .ports import Transport
from .retry import parse_retry_after
from .signatures import SignatureSpec, sign_request
from .types import Iri

ERROR_EXCERPT_BYTES = 1024
"""Error bodies kept at most (fedify-dev/fedify#569: 100 KB error pages exhausted memory)."""

PERMANENT_STATUSES = frozenset({404, 410})
RETRYABLE_4XX = frozenset({401, 408, 429})
"""Mastodon retries these 4xx (security.md §3.1); 401 can be a key-cache race on the peer."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """A remote actor to deliver to, with its personal and (optional) shared inbox."""

    actor: Iri
    inbox: Iri
    shared_inbox: Iri | None = None


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """One inbox and every recipient it serves."""

    inbox: Iri
    actors: tuple[Iri, ...]

    @property
    def host(self) -> str:
        """The canonical ``host[:port]`` of the inbox, the unit of per-host health."""
        return host_of(self.inbox)


def plan_delivery(
    recipients: Iterable[Recipient],
    *,
    prefer_shared_inbox: bool,
    exclude_origins: frozenset[str] = frozenset(),
) -> list[DeliveryTarget]:
    """Group recipients by the inbox that must receive the activity.

    Each inbox appears once, with every recipient it serves, in first-seen order. Recipients
    whose inbox is on an excluded origin (our own) are dropped. The audience is never widened:
    a recipient without a usable inbox is skipped, not routed to some other shared inbox, and a
    shared inbox is used only when ``prefer_shared_inbox`` (never for members-only content:
    the shared inbox's host may also hold non-members).
    """
    by_inbox: dict[str, list[Iri]] = {}
    for recipient in recipients:
        inbox = recipient.shared_inbox if prefer_shared_inbox and recipient.shared_inbox else recipient.inbox
        if not inbox:
            continue
        try:
            parts = urlsplit(inbox)
        except ValueError:  # not a URL: nothing to deliver to
            continue
        if (
            parts.scheme not in ("http", "https")
            or f"{parts.scheme}://{parts.netloc.lower()}" in exclude_origins
        ):
            continue
        actors = by_inbox.setdefault(inbox, [])
        if recipient.actor not in actors:
            actors.append(recipient.actor)
    return [DeliveryTarget(Iri(inbox), tuple(actors)) for inbox, actors in by_inbox.items()]


@dataclass(frozen=True, slots=True)
class Delivered:
    status: int
    spec: SignatureSpec


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Transient: 5xx, 401/408/429, timeouts and connection errors. ``after`` from Retry-After."""

    reason: str
    status: int | None = None
    after: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Gone:
    """404/410: the inbox (or its actor) is gone; do not retry, deactivate the follower."""

    status: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """Any other 4xx, or a target we refuse to contact: final, logged, not retried."""

    status: int | None
    excerpt: str = field(default="")


DeliveryOutcome = Delivered | RetryLater | Gone | Rejected


async def deliver(
    inbox: Iri,
    body: bytes,
    *,
    signer: KeyPair,
    transport: Transport,
    now: datetime,
    spec: SignatureSpec = "cavage",
    double_knock: bool = True,
    first_knock: bool = False,
    presigned: OutgoingRequest | None = None,
) -> DeliveryOutcome:
    """Sign and POST ``body`` to ``inbox`` and classify the answer.

    ``presigned``: the first attempt's request already signed with ``spec`` by ``signer``
    (:func:`inbox_request` signed elsewhere, e.g. in a batch by :mod:`federation.signing_pool`);
    a double knock's second attempt is signed here as usual.

    With ``spec="rfc9421"`` and ``double_knock``, a refused RFC 9421 attempt is retried once at
    once with draft-cavage (Fedify's double-knocking); the outcome's ``spec`` tells the caller
    what worked, to remember per peer. ``first_knock`` says the peer's scheme is not known yet:
    then *any* error answer (a 500 from a verifier that chokes on RFC 9421, as bovine-herd
    with a newer ``http-sf`` does) is refusal enough, since waiting for the next attempt would
    count those answers against the whole host; otherwise only 400 and 401 are. An attempt
    that got no answer (timeout, connection refused) is not retried: it says nothing about the
    scheme. Redirects are not followed (an inbox POST is not redirectable safely, and a
    signature must never travel to another host: security case 26).
    """
    outcome = await _post(
        inbox, body, signer=signer, transport=transport, now=now, spec=spec, signed=presigned
    )
    if double_knock and spec == "rfc9421" and _refused(outcome, first_knock=first_knock):
        return await _post(inbox, body, signer=signer, transport=transport, now=now, spec="cavage")
    return outcome


def _refused(outcome: DeliveryOutcome, *, first_knock: bool) -> bool:
    """Whether the peer answered an RFC 9421 attempt with an error worth a draft-cavage retry."""
    if isinstance(outcome, Delivered) or outcome.status is None:
        return False
    return first_knock or outcome.status in (400, 401)


def inbox_request(inbox: Iri, body: bytes) -> OutgoingRequest:
    """The unsigned POST of ``body`` to ``inbox`` that :func:`deliver` signs and sends."""
    return OutgoingRequest("POST", inbox, _INBOX_HEADERS, body)


_INBOX_HEADERS = Headers({"Content-Type": AP_CONTENT_TYPE, "Accept": "application/activity+json"})
"""Shared by every delivery: :class:`Headers` is immutable."""


async def _post(
    inbox: Iri,
    body: bytes,
    *,
    signer: KeyPair,
    transport: Transport,
    now: datetime,
    spec: SignatureSpec,
    signed: OutgoingRequest | None = None,
) -> DeliveryOutcome:
    if signed is None:
        signed = sign_request(inbox_request(inbox, body), signer, now=now, spec=spec)
    try:
        response = await transport.send(signed, follow_redirects=False)
    except (UnsafeAddress, PeerNotAllowed) as exc:
        # Refused by us before any byte left (SSRF guard, blocked or unlisted host): final.
        return Rejected(None, exc.detail[:ERROR_EXCERPT_BYTES])
    except FetchError as exc:
        return RetryLater(reason=exc.code)
    status = response.status
    if 200 <= status < 300:
        return Delivered(status, spec)
    if status in PERMANENT_STATUSES:
        return Gone(status)
    if status in RETRYABLE_4XX or status >= 500:
        after = parse_retry_after(response.headers.get("Retry-After"), now=now)
        return RetryLater(reason=f"http_{status}", status=status, after=after)
    excerpt = response.body[:ERROR_EXCERPT_BYTES].decode("utf-8", "replace")
    return Rejected(status, excerpt)
