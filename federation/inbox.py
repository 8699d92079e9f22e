"""The inbox: what a signed POST must pass before anything is stored, and routing afterwards.

:func:`receive` runs the ordered checks listed in docs/architecture.md ("Receiving"), cheapest and
most fundamental first, and never does I/O except through :class:`InboxDeps` (the key resolver
and the replay guard).
Its answer is one of:

- :class:`InboundActivity`: authenticated, contained and new; the server stores it and answers
  202, and a worker later calls :func:`dispatch`;
- :class:`Ignored`: nothing to do, answered 202 (a duplicate, an unverifiable self-``Delete`` of
  a gone actor, an activity whose id is on another host, ...), so that honest peers do not retry
  for days and attackers learn nothing (security.md §0);
- a :class:`~federation.errors.FederationError` subclass for real failures, which
  ``server/http/problems.py`` maps to 400/401/403/413.

The checks, in order (each stops the request):

1. body size (:class:`~federation.errors.PayloadTooLarge`, case 27);
2. UTF-8 JSON object, nesting ≤ ``max_json_depth``, checked without recursion
   (:class:`~federation.errors.MalformedPayload`, case 28);
3. JSON-LD screening: ``@graph``/``@included``/``@reverse`` and context redefinitions of core
   terms (:class:`~federation.errors.InvalidDocument`, cases 20 and 21, model (a));
4. peer policy on the keyId's host and the actor's host, *before* any key lookup
   (:class:`~federation.errors.PeerNotAllowed`, case 47);
5. a self-``Delete`` whose key cannot be resolved is :class:`Ignored` (case 6);
6. :func:`~federation.signatures.verify_request`: signature, digest, time window (401s);
7. :func:`~federation.vocab.parse.parse_activity` (400);
8. the key's owner must be the activity's actor, exactly
   (:class:`~federation.errors.KeyOwnerMismatch`, case 1);
9. origin rules: the activity's id on the actor's host (else :class:`Ignored`, case 14);
   embedded objects from other hosts, or bearing our own ids, reduced to references
   (cases 16 and 17); an ``Announce`` of an embedded ``Announce`` is :class:`Ignored` (case 29);
10. peer policy on every other host involved, as sent (embedded values reduced at step 9
    included): object ids, ``attributedTo``, ``inReplyTo``, ``target``, nested activities' ids
    and actors (:class:`~federation.errors.PeerNotAllowed`, cases 44 and 47);
11. the replay guard: an activity id already seen is :class:`Ignored` (case 5).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from .errors import (
    InvalidDocument,
    KeyFetchTemporaryFailure,
    KeyOwnerMismatch,
    KeyUnavailable,
    PayloadTooLarge,
    SignatureMissing,
)
from .http import IncomingRequest
from .iri import host_of, is_http_iri
from .policy import HostPolicy
from .ports import KeyResolver, ReplayGuard
from .signatures import VerifiedSigner, cavage, rfc9421, verify_request
from .types import Clock, Iri, JsonObject, utc_now
from .uris import UriScheme
from .vocab.activities import Activity, Announce, Flag, ObjectRef
from .vocab.objects import Content, Member, RemoteActor
from .vocab.parse import (
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    check_json_ld,
    decode_json_object,
    parse_activity,
    peek_activity,
)

__all__ = [
    "Handler",
    "Ignored",
    "IgnoredReason",
    "InboundActivity",
    "InboxDeps",
    "InboxRouter",
    "claimed_key_id",
    "dispatch",
    "receive",
]

log = logging.getLogger(__name__)

IgnoredReason = Literal[
    "duplicate",
    "actor_delete_unverifiable",
    "foreign_activity_id",
    "foreign_embedded_object",
    "claims_local_actor",
    "announce_of_announce",
]
"""Why :func:`receive` answered :class:`Ignored` (a stable slug for logs and metrics)."""


@dataclass(frozen=True, slots=True)
class Ignored:
    """A request that is answered 202 and stores nothing; ``reason`` says why.

    ``activity_id`` is the activity's id when it could be read (for logs only: it was not
    necessarily authenticated).
    """

    reason: IgnoredReason
    activity_id: Iri | None = None


@dataclass(frozen=True, slots=True)
class InboundActivity:
    """An activity that passed every inbox check.

    Guarantees: ``signer.owner == activity.actor``; ``activity.id`` is on the actor's host;
    every embedded value left in ``activity`` comes from the actor's host and has no local id
    (other objects are bare references to resolve from the database or their origin); every
    host involved is allowed by the peer policy; the replay guard had not seen ``activity.id``.
    ``document`` is the decoded JSON exactly as received (keep it for audit and forwarding;
    read fields from ``activity`` only) and ``received_at`` the injected clock's time.
    """

    activity: Activity
    signer: VerifiedSigner
    document: JsonObject = field(hash=False, repr=False)
    received_at: datetime


@dataclass(frozen=True, slots=True)
class InboxDeps:
    """Everything :func:`receive` needs from the outside world.

    ``resolve_key`` finds signing keys (on the server, a DB cache in front of a signed fetch);
    ``policy`` is the federation policy; ``replay`` the read-only duplicate check; ``uris`` our
    own origin (to recognise local ids); ``clock`` the time used for the signature window.
    """

    resolve_key: KeyResolver
    policy: HostPolicy
    replay: ReplayGuard
    uris: UriScheme
    clock: Clock = utc_now
    max_body_bytes: int = MAX_JSON_BYTES
    max_json_depth: int = MAX_JSON_DEPTH


async def receive(request: IncomingRequest, deps: InboxDeps) -> InboundActivity | Ignored:
    """Check one inbox POST and return the authenticated, contained activity, or why it is ignored.

    Runs the ordered checks listed in this module's docstring; no key is looked up before the
    size, JSON, JSON-LD and peer-policy checks pass, and nothing but ``deps.resolve_key`` and
    ``deps.replay`` is called.

    Guarantees: see :class:`InboundActivity`. ``RecursionError`` and other exceptions caused by
    the payload never escape: everything attacker-controlled ends as :class:`Ignored` or one of
    the errors below.

    Raises:
        PayloadTooLarge: the body exceeds ``deps.max_body_bytes`` (413).
        MalformedPayload: not UTF-8 JSON, not an object, or nested too deeply (400).
        InvalidDocument: forbidden JSON-LD keywords or context redefinitions; a missing or
            unreadable actor; a document that does not parse as an activity (400).
        MalformedHeader: a signature or digest header cannot be parsed (400).
        PeerNotAllowed: the keyId's, the actor's or another involved host is not allowed (403).
        SignatureError: missing or invalid signature, digest mismatch, expired date, unusable
            key, or :class:`~federation.errors.KeyOwnerMismatch` (401).
        KeyFetchTemporaryFailure: the key could not be fetched for a transient reason (503).
    """
    received_at = deps.clock()
    body = request.body
    if len(body) > deps.max_body_bytes:
        raise PayloadTooLarge(f"the body has {len(body)} bytes; the limit is {deps.max_body_bytes}")
    document = decode_json_object(body, max_depth=deps.max_json_depth)
    check_json_ld(document)

    header = peek_activity(document)
    if header.actor is None:
        # Parsing would refuse it after the key fetch; refuse it before (case 7: no wasted fetch).
        raise InvalidDocument("actor: missing, not an http(s) IRI, or more than one actor", field="actor")
    if deps.uris.is_local(header.actor):
        # Our own actors never arrive through the inbox; no key is looked up for them (case 17).
        return _ignored("claims_local_actor", document)
    deps.policy.check_actor(header.actor)
    try:
        key_id = claimed_key_id(request)
        if deps.uris.is_local(key_id):
            return _ignored("claims_local_actor", document)
        deps.policy.check(host_of(key_id))
        signer = await verify_request(request, resolve_key=deps.resolve_key, now=received_at)
    except (KeyUnavailable, KeyFetchTemporaryFailure):
        if header.is_self_delete:
            # A deleted actor's key is gone (404/410): answer 2xx so the sender stops retrying
            # (case 6, Mastodon's skip_unknown_actor_activity, fedify-dev/fedify#472).
            return _ignored("actor_delete_unverifiable", document)
        raise

    activity = parse_activity(document)
    if signer.owner != activity.actor:
        raise KeyOwnerMismatch(
            "the signing key does not belong to the activity's actor",
            key_id=signer.key_id,
            owner=signer.owner,
            actor=activity.actor,
        )
    actor_host = host_of(activity.actor)
    if host_of(activity.id) != actor_host:
        return _ignored("foreign_activity_id", document)
    contained = _contain(activity, actor_host, deps.uris)
    if contained is None:
        return _ignored("foreign_embedded_object", document)
    if isinstance(contained, Announce) and isinstance(contained.announced_activity, Announce):
        return _ignored("announce_of_announce", document)
    # Checked on the activity as sent, embedded values about to be discarded included: a closed
    # network refuses anything naming an unlisted host in an id-like field (case 47).
    for iri in _involved_iris(activity):
        if not deps.uris.is_local(iri):
            deps.policy.check(host_of(iri))
    if await deps.replay.seen(contained.id):
        return _ignored("duplicate", document)
    return InboundActivity(
        activity=contained,
        signer=signer,
        document=document,
        received_at=received_at,
    )


def restore(
    document: JsonObject, *, signer: VerifiedSigner, received_at: datetime, uris: UriScheme
) -> InboundActivity | None:
    """Rebuild a stored activity for processing, with the same containment as :func:`receive`.

    The worker processes activities the inbox stored earlier; it parses the stored document
    again rather than trusting a serialised value, and applies the origin rules again (an
    embedded object from another host is reduced to a reference). ``None`` when the document
    no longer passes them (it always does when it was stored by :func:`receive`).

    Raises:
        InvalidDocument: the stored document does not parse as an activity.
    """
    activity = parse_activity(document)
    if signer.owner != activity.actor or host_of(activity.id) != host_of(activity.actor):
        return None
    contained = _contain(activity, host_of(activity.actor), uris)
    if contained is None:
        return None
    return InboundActivity(activity=contained, signer=signer, document=document, received_at=received_at)


def _ignored(reason: IgnoredReason, document: JsonObject) -> Ignored:
    raw_id = document.get("id")
    activity_id = Iri(raw_id) if is_http_iri(raw_id) else None
    log.debug("inbox ignored", extra={"reason": reason, "activity_id": activity_id})
    return Ignored(reason, activity_id)


def claimed_key_id(request: IncomingRequest) -> Iri:
    """The keyId the request claims, parsed exactly as verification will parse it (no lookup).

    Raises:
        SignatureMissing / MalformedHeader / SignatureError: no or unreadable signature headers.
        KeyUnavailable: the keyId is not a usable http(s) IRI (``acct:``..., case 9).
    """
    headers = request.headers
    if "signature-input" in headers:
        claimed = rfc9421.parse_signature_headers(
            headers["signature-input"], headers.get("signature", "")
        ).key_id
    elif "signature" in headers:
        claimed = cavage.parse_signature_header(headers["signature"]).key_id
    else:
        raise SignatureMissing("the request carries no Signature or Signature-Input header")
    if not is_http_iri(claimed):
        raise KeyUnavailable("the keyId is not a usable http(s) IRI", key_id=claimed[:200])
    return Iri(claimed)


# --------------------------------------------------------------------------------------------
# Origin rules (security cases 14, 16, 17)
# --------------------------------------------------------------------------------------------


def _contain(activity: Activity, actor_host: str, uris: UriScheme) -> Activity | None:
    """Reduce to bare references the embedded values the signer cannot vouch for.

    The signer speaks for its own host only: an embedded value is kept when its id (if any), its
    ``attributedTo`` and, for an activity, its actor are on ``actor_host``, and its id is not one
    of ours. Anything else becomes ``ObjectRef(id)``, to be resolved from the database (local
    ids) or refetched from its origin (foreign ids). Returns ``None`` when an *anonymous*
    embedded object (no id to refetch) claims another host's authorship.
    """
    changes: dict[str, Any] = {}
    for name in ("object", "target"):
        ref = getattr(activity, name)
        if ref is not None:
            contained = _contain_ref(ref, actor_host, uris)
            if contained is None:
                return None
            if contained is not ref:
                changes[name] = contained
    if isinstance(activity, Flag) and activity.objects:
        refs = [_contain_ref(ref, actor_host, uris) for ref in activity.objects]
        kept = tuple(ref for ref in refs if ref is not None)
        if len(kept) != len(refs):
            return None
        changes["objects"] = kept
        changes["object"] = kept[0]
    return replace(activity, **changes) if changes else activity


def _contain_ref(ref: ObjectRef, actor_host: str, uris: UriScheme) -> ObjectRef | None:
    value = ref.value
    if value is None:
        return ref
    if ref.id is not None and (uris.is_local(ref.id) or host_of(ref.id) != actor_host):
        return ref.as_reference()
    if not _vouched(value, actor_host):
        return ref.as_reference() if ref.id is not None else None
    if isinstance(value, Activity):
        inner = _contain(value, actor_host, uris)
        if inner is None:
            return ref.as_reference() if ref.id is not None else None
        return ref if inner is value else ObjectRef(ref.id, inner, ref.type_hint)
    return ref


def _vouched(value: object, actor_host: str) -> bool:
    """Whether the signer's host may speak for this embedded value's authorship."""
    if isinstance(value, Activity):
        return host_of(value.actor) == actor_host
    if isinstance(value, Content):
        # A fake alert must never appear under another host's author (case 16).
        return all(host_of(author) == actor_host for author in value.attributed_to)
    return True


def _involved_iris(activity: Activity) -> Iterator[Iri]:
    """Every id-like IRI an activity brings in, other than its own id and actor (case 47).

    Addressing is left out on purpose: a post mentioning someone on an unlisted host is still
    a post from an allowed peer; delivery never goes to hosts the policy refuses.
    """
    pending: list[Activity] = [activity]
    while pending:
        current = pending.pop()
        if current is not activity:
            yield current.id
            yield current.actor
        refs: list[ObjectRef | None] = (
            list(current.objects) if isinstance(current, Flag) else [current.object]
        )
        refs.append(current.target)
        for ref in refs:
            if ref is None:
                continue
            if ref.id is not None:
                yield ref.id
            value = ref.value
            if isinstance(value, Activity):
                pending.append(value)
            elif isinstance(value, Content):
                yield from value.attributed_to
                if value.in_reply_to is not None:
                    yield value.in_reply_to
            elif isinstance(value, Member):
                yield value.actor
                yield value.object
            elif isinstance(value, RemoteActor):
                yield value.inbox


# --------------------------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------------------------

C = TypeVar("C")
A = TypeVar("A", bound=Activity)

Handler = Callable[[C, A, InboundActivity], Awaitable[None]]
"""An inbox handler: ``async def on_follow(ctx, follow: Follow, inbound: InboundActivity) -> None``."""


class InboxRouter(Generic[C]):
    """Maps activity classes to handlers; the server registers its handlers at start-up.

    ``C`` is the type of the context object the server passes to every handler (sessions,
    queues, settings). Lookup follows the class hierarchy, so a handler registered for
    :class:`~federation.vocab.activities.Activity` catches every type without a handler of its
    own, including :class:`~federation.vocab.activities.UnknownActivity`.
    """

    def __init__(self) -> None:
        self._handlers: dict[type[Activity], Callable[[C, Any, InboundActivity], Awaitable[None]]] = {}

    def on(self, kind: type[A]) -> Callable[[Handler[C, A]], Handler[C, A]]:
        """Decorator registering a handler for one activity class::

            @router.on(Follow)
            async def on_follow(ctx: Ctx, follow: Follow, inbound: InboundActivity) -> None: ...

        Raises:
            ValueError: a handler is already registered for ``kind`` (no silent override).
        """

        def register(handler: Handler[C, A]) -> Handler[C, A]:
            if kind in self._handlers:
                raise ValueError(f"a handler is already registered for {kind.__name__}")
            self._handlers[kind] = handler
            return handler

        return register

    def handler_for(
        self, kind: type[Activity]
    ) -> Callable[[C, Any, InboundActivity], Awaitable[None]] | None:
        """The handler for ``kind`` or its nearest registered base class; ``None`` if there is none."""
        for cls in kind.__mro__:
            handler = self._handlers.get(cls)
            if handler is not None:
                return handler
        return None


async def dispatch(router: InboxRouter[C], inbound: InboundActivity, ctx: C) -> None:
    """Run the handler registered for ``inbound.activity``'s class, if any.

    An activity without a handler (an unknown type, or a type the server does not act on) is a
    no-op, logged at debug level: it was authenticated and stored, and there is nothing more to
    do. Exceptions raised by the handler propagate (the worker retries or fails the job,
    docs/architecture.md R5).
    """
    activity = inbound.activity
    handler = router.handler_for(type(activity))
    if handler is None:
        log.debug("inbox activity without handler", extra={"activity_id": activity.id, "type": activity.type})
        return
    await handler(ctx, activity, inbound)
