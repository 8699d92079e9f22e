"""Turning stored local actors into the protocol library's values."""

from __future__ import annotations

import html

from sqlalchemy.ext.asyncio import AsyncSession

from federation.types import Iri
from federation.uris import UriScheme
from federation.vocab.actors import LocalActor
from server.db.models import Actor
from server.db.queries import actors as q
from server.services.actors.keys import public_key_of
from server.services.media.uploads import avatar_of, icon_document


def summary_html(text: str) -> str:
    """Plain-text summaries are escaped and split into paragraphs."""
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    return "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)


async def local_actor_value(session: AsyncSession, uris: UriScheme, actor: Actor) -> LocalActor:
    keys = await q.keys_of(session, actor.id)
    avatar = await avatar_of(session, actor.id)
    iri = Iri(actor.iri)
    return LocalActor(
        id=iri,
        type=actor.type,
        preferred_username=actor.handle,
        name=actor.name,
        summary_html=summary_html(actor.summary),
        inbox=Iri(actor.inbox_iri or uris.shared_inbox()),
        outbox=uris.outbox(iri),
        followers=uris.followers(iri),
        following=uris.following(iri),
        liked=uris.liked(iri),
        shared_inbox=uris.shared_inbox(),
        url=Iri(actor.url or actor.iri),
        published=actor.created_at,
        public_key=public_key_of(keys["rsa"], actor.iri),
        assertion_key=public_key_of(keys["ed25519"], actor.iri) if "ed25519" in keys else None,
        manually_approves_followers=actor.manually_approves_followers,
        discoverable=actor.discoverable,
        members=uris.members(iri) if actor.type == "Group" else None,
        featured=uris.featured(iri) if actor.type == "Group" else None,
        icon=icon_document(uris, avatar) if avatar is not None else None,
    )
