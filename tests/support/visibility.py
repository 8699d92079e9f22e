"""Reading a node as one kind of reader, for the visibility tests (security.md §G).

:func:`read` GETs a path of the node anonymously, with a bearer token, or signed by a remote
actor (a real draft-cavage signature, verified by the node as any peer's), and keeps the whole
answer: status, headers and bytes, so that tests compare a hidden object's answer with a
missing one's byte for byte. :func:`inboxes_of` lists where the node delivered the activities
about an object (the ``deliveries`` rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select

from federation.http import Headers, OutgoingRequest
from federation.keys import KeyPair
from federation.signatures import sign_request
from federation.types import utc_now
from server.db.models import Activity, Delivery
from tests.support.nodes import Node
from tests.support.signed_inbox import RemoteAccount

AP = "application/activity+json"
HTML = "text/html"
UNSTABLE_HEADERS = frozenset({"date", "x-request-id", "server"})
"""Headers that differ between any two answers (never a function of what exists)."""


@dataclass(frozen=True, slots=True)
class Seen:
    """One answer, in full."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    def shape(self, read: str = "") -> tuple[int, dict[str, str], bytes]:
        """What a reader can compare: status, stable headers (lower-cased names) and bytes.

        ``read``: the IRI or path that was read; a page that names the path it answers (the
        sign-in link of an HTML page comes back to it) has it replaced by a placeholder.
        """
        kept = {k.lower(): v for k, v in self.headers.items() if k.lower() not in UNSTABLE_HEADERS}
        path = urlsplit(read).path.encode()
        return self.status, kept, self.body.replace(path, b"{path}") if path else self.body


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads: nobody (both None), a local account (``token``) or a remote actor (``remote``)."""

    name: str
    token: str | None = None
    remote: RemoteAccount | None = None
    signing_key: KeyPair | None = None  # sign as ``remote`` with another key (a forged fetch)
    signed_path: str | None = None  # sign for another path than the one read (a bad signature)


async def read(
    node: Node, reader: Reader, path_or_iri: str, *, accept: str = AP, headers: dict[str, str] | None = None
) -> Seen:
    """GET ``path_or_iri`` from ``node`` as ``reader`` with ``Accept: accept`` (and ``headers``)."""
    path = path_or_iri.removeprefix(node.uris.origin)
    sent: dict[str, str] = {"Accept": accept, **(headers or {})}
    if reader.token is not None:
        sent["Authorization"] = f"Bearer {reader.token}"
    if reader.remote is not None:
        target = node.uris.origin + (reader.signed_path or path)
        request = OutgoingRequest("GET", target, Headers(sent))
        key = reader.signing_key or reader.remote.key
        signed = sign_request(request, key, now=utc_now(), spec="cavage")
        sent = {name: signed.headers[name] for name in signed.headers}
    response = await node.client.get(path, headers=sent, allow_redirects=False)
    return Seen(response.status, dict(response.headers), await response.read())


async def inboxes_of(node: Node, object_iri: str) -> set[str]:
    """Every inbox a delivery was queued to for an activity about ``object_iri``."""
    async with node.sessions() as session:
        rows = await session.execute(
            select(Delivery.inbox_iri)
            .join(Activity, Activity.id == Delivery.activity_id)
            .where(Activity.object_iri == object_iri)
        )
        return {row[0] for row in rows}


def bodies(*answers: Seen) -> str:
    """All the answers' bytes as one text, to search for a marker."""
    return "\n".join(a.text for a in answers)
