"""Co-signing: an association endorses another association's proposal.

The endorsement is an ``Endorsement`` object signed with the endorsing association's Ed25519
key (FEP-8b32, ``eddsa-jcs-2022``), sent as ``Create{Endorsement}`` to the proposal's author and
the endorser's followers. The endorser also ``Announce``s the proposal, so that Mastodon users
following it see what it co-signed. The proposal's node verifies the proof against the key
the endorser's actor document lists, keeps the signed document verbatim, and lists it in the
proposal's public ``endorsements`` collection, where anyone can verify it again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from federation import integrity
from federation.audience import PUBLICLY_READABLE
from federation.errors import FederationError, KeyFetchTemporaryFailure
from federation.keys import KeyAlgorithm
from federation.types import AS_PUBLIC, Iri
from federation.vocab import entraide as wire
from federation.vocab.entraide import Kind
from server.db.models import Actor, Endorsement, RemoteObject
from server.services.actors.signing import actor_key_pair
from server.services.content.local import Published, audit, iri_value, text
from server.services.content.remote import sanitized_document
from server.services.content.sanitize import sanitize_html
from server.services.delivery.outbox import new_activity_iri, publish
from server.services.errors import Conflict, Forbidden, InvalidInput
from server.services.federation import Federation
from server.services.membership.standing import check_acting

log = logging.getLogger(__name__)

MAX_STATEMENT_CHARS = 5_000
MAX_DOCUMENT_BYTES = 32 * 1024
"""The largest remote endorsement kept (serialized): one of ours, with a 5,000-character
statement and its proof, is well under it. It is kept verbatim (its proof signs every byte), so a
larger one is dropped, not cut (case 52)."""
MAX_PAGE_BYTES = 256 * 1024
"""What one page of a proposal's ``endorsements`` holds at most, whatever the documents' sizes."""


async def endorse(fed: Federation, group: Actor, obj: Mapping[str, Any], *, by: Actor) -> Published:
    """``group`` co-signs the proposal ``obj["object"]`` (ours or a peer's we hold)."""
    if group.type != "Group":
        raise Forbidden("only an association endorses a proposal")
    proposal_iri = iri_value(obj.get("object"), "object")
    if proposal_iri is None:
        raise InvalidInput("object must be the proposal's IRI", field="object")
    statement = text(obj.get("content"), "content", MAX_STATEMENT_CHARS)
    async with fed.node.sessions() as session:
        await check_acting(session, group, [by], now=fed.node.clock())
        proposal = await session.scalar(select(RemoteObject).where(RemoteObject.iri == proposal_iri))
        author = await session.get(Actor, proposal.attributed_to_id) if proposal is not None else None
    if (
        proposal is None
        or author is None
        or proposal.kind != Kind.PROPOSAL.value
        or proposal.deleted_at is not None
        or proposal.visibility not in PUBLICLY_READABLE
    ):
        raise InvalidInput("object names no public proposal known here", field="object")
    if author.id == group.id:
        raise InvalidInput("an association does not endorse its own proposal", field="object")
    uris = fed.node.uris
    now = fed.node.clock()
    iri = uris.object(uuid.uuid4().hex)
    document = wire.render_endorsement(
        iri=iri,
        endorser=Iri(group.iri),
        proposal=Iri(proposal.iri),
        proposal_author=Iri(author.iri),
        published=now,
        statement_html=sanitize_html(statement) if statement else None,
        to=[AS_PUBLIC],
        cc=[group.followers_iri or ""],
    )
    pair = await actor_key_pair(fed.node, group, kind="ed25519")
    if not isinstance(pair.private_key, Ed25519PrivateKey):
        raise RuntimeError(f"{group.iri} has no Ed25519 key to sign with")
    signed = integrity.sign_object(
        document, key=pair.private_key, verification_method=pair.key_id, created=now
    )
    body = dict(signed)  # with its @context: the proof covers it (eddsa-jcs-2022)
    try:
        async with fed.node.sessions.begin() as session:
            object_row = RemoteObject(
                iri=iri,
                local=True,
                type="Endorsement",
                kind=Kind.ENDORSEMENT.value,
                attributed_to_id=group.id,
                in_reply_to_iri=proposal.iri,
                visibility="public",
                document=signed,
                published=now,
                received_at=now,
            )
            session.add(object_row)
            session.add(
                Endorsement(
                    iri=iri,
                    proposal_iri=proposal.iri,
                    proposal_id=proposal.id if proposal.local else None,
                    endorser_id=group.id,
                    document=signed,
                    created_at=now,
                )
            )
            activity = {
                "@context": wire.CONTENT_CONTEXT,
                "id": new_activity_iri(uris),
                "type": "Create",
                "object": body,
                "to": body["to"],
                "cc": body["cc"],
            }
            created = await publish(session, group, activity, visibility="public", now=now)
            announce = {
                "id": new_activity_iri(uris),
                "type": "Announce",
                "object": proposal.iri,
                "to": [AS_PUBLIC],
                "cc": [group.followers_iri or "", author.iri],
            }
            await publish(session, group, announce, visibility="public", now=now)
            audit(session, group, by, "endorsement.create", proposal.iri, now)
    except IntegrityError:
        raise Conflict("this association already endorsed this proposal") from None
    fed.notify_worker()
    log.info("proposal endorsed", extra={"proposal": proposal.iri, "endorser": group.iri})
    return Published(created.iri, iri)


async def verify(fed: Federation, document: Mapping[str, Any], endorser_iri: str) -> integrity.Proof:
    """Check an endorsement's proof with the Ed25519 key the endorser's actor lists.

    Raises:
        integrity.InvalidProof: no proof, a key of another actor, or a signature that fails.
        KeyFetchTemporaryFailure: the key could not be fetched now (the job is retried).
    """
    proof = integrity.proof_of(document)
    try:
        key = await fed.keys.resolve(Iri(proof.verification_method))
    except KeyFetchTemporaryFailure:
        raise
    except FederationError as exc:
        raise integrity.InvalidProof(f"the proof's key is unavailable: {exc.code}") from None
    if key.owner != endorser_iri or key.algorithm is not KeyAlgorithm.ED25519:
        raise integrity.InvalidProof("the proof's key is not the endorser's Ed25519 key")
    return integrity.verify_object(document, public_key=key.key)  # type: ignore[arg-type]


async def receive(fed: Federation, endorser: Actor, document: Mapping[str, Any]) -> bool:
    """A peer association's endorsement of one of our proposals: verified, then kept verbatim."""
    fields = wire.endorsement_fields(document)
    if fields is None or fields[0] != endorser.iri or endorser.type != "Group":
        log.info("endorsement dropped: not an association's own endorsement", extra={"actor": endorser.iri})
        return False
    iri = document.get("id")
    _, proposal_iri = fields
    if not isinstance(iri, str) or not fed.node.uris.is_local(proposal_iri):
        return False
    if sanitized_document(dict(document)) != document:
        # Kept verbatim (the proof covers every byte) and republished in the proposal's public
        # collection: only a document our sanitiser leaves unchanged (case 61). Ours always is.
        log.info("endorsement dropped: unsanitised statement", extra={"endorsement": iri})
        return False
    async with fed.node.sessions() as session:
        proposal = await session.scalar(
            select(RemoteObject).where(RemoteObject.iri == proposal_iri, RemoteObject.local.is_(True))
        )
    if (
        proposal is None
        or proposal.kind != Kind.PROPOSAL.value
        or proposal.deleted_at is not None
        or proposal.visibility not in PUBLICLY_READABLE
    ):
        log.info("endorsement dropped: no such public proposal", extra={"proposal": proposal_iri})
        return False
    if len(orjson.dumps(document)) > MAX_DOCUMENT_BYTES:
        log.info("endorsement dropped: larger than %d bytes", MAX_DOCUMENT_BYTES, extra={"endorsement": iri})
        return False
    try:
        await verify(fed, document, endorser.iri)
    except integrity.InvalidProof as exc:
        log.warning("endorsement dropped: invalid proof", extra={"endorsement": iri, "reason": str(exc)})
        return False
    try:
        async with fed.node.sessions.begin() as session:
            session.add(
                Endorsement(
                    iri=iri,
                    proposal_iri=proposal_iri,
                    proposal_id=proposal.id,
                    endorser_id=endorser.id,
                    document=dict(document),
                    created_at=fed.node.clock(),
                )
            )
    except IntegrityError:
        log.info("endorsement dropped: already endorsed", extra={"endorsement": iri})
        return False
    log.info("endorsement verified and stored", extra={"proposal": proposal_iri, "endorser": endorser.iri})
    return True


async def withdraw(fed: Federation, endorser: Actor, iri: str) -> bool:
    """The endorser deletes its endorsement: it leaves the collection (a tombstone stays here)."""
    async with fed.node.sessions.begin() as session:
        row = await session.scalar(select(Endorsement).where(Endorsement.iri == iri))
        if row is None or row.endorser_id != endorser.id or row.withdrawn_at is not None:
            return False
        row.withdrawn_at = fed.node.clock()
    return True


async def endorsements_page(
    session: Any, proposal_iri: str, *, after: int, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of a proposal's signed endorsement documents, oldest first (withdrawn ones
    excluded), after the cursor ``after``: at most ``limit`` of them and :data:`MAX_PAGE_BYTES`
    (at least one); and the cursor of the next page, if any (case 52)."""
    rows = (
        await session.scalars(
            select(Endorsement)
            .where(
                Endorsement.proposal_iri == proposal_iri,
                Endorsement.withdrawn_at.is_(None),
                Endorsement.id > after,
            )
            .order_by(Endorsement.id)
            .limit(limit)
        )
    ).all()
    documents: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        size += len(orjson.dumps(row.document))
        if documents and size > MAX_PAGE_BYTES:
            return documents, rows[len(documents) - 1].id
        documents.append(dict(row.document))
    return documents, rows[-1].id if len(rows) == limit else None
