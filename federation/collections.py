"""Paged ``OrderedCollection`` documents (Mastodon/GoToSocial style: a collection with
``totalItems`` and ``first``, pages with ``orderedItems``, ``next``, ``prev`` and ``partOf``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .types import Iri, JsonObject
from .vocab.context import COLLECTION_CONTEXT


def render_collection(collection_id: Iri, *, total_items: int | None, first: Iri | None) -> JsonObject:
    """The collection's root document. ``total_items=None`` hides the count (privacy)."""
    doc: JsonObject = {"@context": COLLECTION_CONTEXT, "id": collection_id, "type": "OrderedCollection"}
    if total_items is not None:
        doc["totalItems"] = total_items
    if first is not None:
        doc["first"] = first
    return doc


def render_collection_page(
    page_id: Iri,
    *,
    part_of: Iri,
    items: Sequence[Any],
    next_page: Iri | None,
    prev_page: Iri | None = None,
    total_items: int | None = None,
) -> JsonObject:
    """One page; ``items`` are IRIs or embedded objects, newest first."""
    doc: JsonObject = {
        "@context": COLLECTION_CONTEXT,
        "id": page_id,
        "type": "OrderedCollectionPage",
        "partOf": part_of,
        "orderedItems": list(items),
    }
    if total_items is not None:
        doc["totalItems"] = total_items
    if next_page is not None:
        doc["next"] = next_page
    if prev_page is not None:
        doc["prev"] = prev_page
    return doc
