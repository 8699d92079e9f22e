"""Framework-neutral HTTP messages and content negotiation.

The protocol library never sees an aiohttp request: the server adapts each request into an
:class:`IncomingRequest`, and the transport returns :class:`PeerResponse` values.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

AP_CONTENT_TYPE = "application/activity+json"
LD_CONTENT_TYPE = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
JRD_CONTENT_TYPE = "application/jrd+json"
PROBLEM_CONTENT_TYPE = "application/problem+json"
AP_ACCEPT = f"{AP_CONTENT_TYPE}, {LD_CONTENT_TYPE}"


class Headers(Mapping[str, str]):
    """An immutable, case-insensitive header mapping.

    Repeated headers are joined with ``", "`` as RFC 9110 allows for list-valued fields.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] | Mapping[str, str] = ()) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        self._merge(items.items() if isinstance(items, Mapping) else items)

    def _merge(self, pairs: Iterable[tuple[str, str]]) -> None:
        merged = self._items
        for name, value in pairs:
            key = name.lower()
            if key in merged:
                merged[key] = (merged[key][0], f"{merged[key][1]}, {value}")
            else:
                merged[key] = (name, value)

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._items.values())

    def items(self) -> _HeaderItems:
        """``(name, value)`` pairs as given (names in their original case), read without a lookup
        per name: a delivery copies its headers three times on the way out (signing, the
        transport, aiohttp)."""
        return _HeaderItems(self)

    def extended(self, items: Iterable[tuple[str, str]]) -> Headers:
        """A copy with ``items`` added as the constructor adds them (a repeated name is joined),
        without merging the existing headers again: how a signature is added to its request."""
        added = Headers.__new__(Headers)
        added._items = dict(self._items)
        added._merge(items)
        return added

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __repr__(self) -> str:
        # Never print header values: Signature and Authorization must not reach logs.
        return f"Headers({sorted(self._items)})"


class _HeaderItems(ItemsView[str, str]):
    """:meth:`Headers.items`: iterates the stored pairs instead of looking each name up again."""

    _mapping: Headers

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._mapping._items.values())


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    """A request as received, with the URL rebuilt from the configured public origin.

    ``target`` is the raw path plus query as sent (not percent-decoded), which is what
    ``(request-target)`` and ``@path``/``@query`` must be computed from (security case 10).
    """

    method: str
    url: str
    target: str
    headers: Headers
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    """A request we are about to send; signing adds headers and returns a new value."""

    method: str
    url: str
    headers: Headers = field(default_factory=Headers)
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class PeerResponse:
    """What the transport read back: status, headers, final URL after redirects, capped body."""

    status: int
    headers: Headers
    url: str
    body: bytes


def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """Split a Content-Type or Accept item into a lower-cased type and its parameters."""
    if not content_type:
        return "", {}
    parts = [p.strip() for p in content_type.split(";")]
    params: dict[str, str] = {}
    for part in parts[1:]:
        if "=" in part:
            k, _, v = part.partition("=")
            params[k.strip().lower()] = v.strip().strip('"')
    return parts[0].lower(), params


def is_activitypub_media_type(content_type: str | None) -> bool:
    """True for ``application/activity+json`` and ``application/ld+json`` (any profile).

    Inbound POSTs are accepted with either (Mastodon sends activity+json; the spec says
    ld+json with the AS2 profile). See docs/interop.md "Content types and fetching".
    """
    kind, _ = media_type(content_type)
    return kind in ("application/activity+json", "application/ld+json")


def is_strict_activitypub_content_type(content_type: str | None) -> bool:
    """The check applied to *fetched* documents (security case 12, Mastodon GHSA-jhrq-qvrm-qr36).

    Only ``application/activity+json`` or ``application/ld+json`` with the ActivityStreams
    profile identify an ActivityStreams document; ``application/json`` does not.
    """
    kind, params = media_type(content_type)
    if kind == "application/activity+json":
        return True
    if kind == "application/ld+json":
        return "https://www.w3.org/ns/activitystreams" in params.get("profile", "").split()
    return False


def wants_activitypub(accept: str | None) -> bool:
    """Decide content negotiation: does this ``Accept`` ask for an ActivityStreams document?

    Any AP media type with a non-zero quality wins over HTML unless text/html is listed with
    a strictly higher quality (browsers list html first and never list activity+json).
    """
    if not accept:
        return False
    best_ap = 0.0
    best_html = 0.0
    for item in accept.split(","):
        kind, params = media_type(item)
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 0.0
        if kind in ("application/activity+json", "application/ld+json"):
            best_ap = max(best_ap, q)
        elif kind in ("text/html", "application/xhtml+xml"):
            best_html = max(best_html, q)
    return best_ap > 0 and best_ap >= best_html
