"""federation.collections: OrderedCollection roots and pages, Mastodon/GoToSocial style."""

from __future__ import annotations

from federation.collections import render_collection, render_collection_page
from federation.types import Iri

AS2 = "https://www.w3.org/ns/activitystreams"
OUTBOX = Iri("https://entraide.test/groups/collectif/outbox")
FIRST = Iri(f"{OUTBOX}?page=1")
SECOND = Iri(f"{OUTBOX}?page=2")
THIRD = Iri(f"{OUTBOX}?page=3")


def test_collection_with_a_count_and_a_first_page() -> None:
    """The root document: type, count and a link to the first page (docs/interop.md "Collections")."""
    doc = render_collection(OUTBOX, total_items=42, first=FIRST)
    assert doc == {
        "@context": [AS2],
        "id": OUTBOX,
        "type": "OrderedCollection",
        "totalItems": 42,
        "first": FIRST,
    }


def test_collection_with_its_count_hidden_has_no_total_items() -> None:
    """Privacy: a hidden count is absent, not null or zero."""
    doc = render_collection(OUTBOX, total_items=None, first=FIRST)
    assert "totalItems" not in doc
    assert doc["first"] == FIRST


def test_an_empty_collection_says_zero_and_has_no_first_page() -> None:
    doc = render_collection(OUTBOX, total_items=0, first=None)
    assert doc["totalItems"] == 0
    assert "first" not in doc


def test_a_middle_page_links_next_prev_and_its_collection() -> None:
    doc = render_collection_page(SECOND, part_of=OUTBOX, items=[], next_page=THIRD, prev_page=FIRST)
    assert doc["type"] == "OrderedCollectionPage"
    assert doc["id"] == SECOND
    assert doc["partOf"] == OUTBOX
    assert doc["next"] == THIRD
    assert doc["prev"] == FIRST
    assert doc["@context"] == [AS2]


def test_the_last_page_has_no_next_and_the_first_no_prev() -> None:
    last = render_collection_page(THIRD, part_of=OUTBOX, items=["x"], next_page=None, prev_page=SECOND)
    first = render_collection_page(FIRST, part_of=OUTBOX, items=["x"], next_page=SECOND)
    assert "next" not in last
    assert "prev" not in first


def test_page_items_keep_their_order_iris_and_embedded_objects_alike() -> None:
    """Pages list newest first; the renderer must not reorder, dedupe or drop anything."""
    # Given items as the query returned them, mixing IRIs and embedded objects
    items = [
        "https://entraide.test/activities/3",
        {"id": "https://entraide.test/activities/2", "type": "Create"},
        "https://entraide.test/activities/1",
        "https://entraide.test/activities/1",
    ]
    # When the page is rendered from a one-shot iterator's worth of values
    doc = render_collection_page(FIRST, part_of=OUTBOX, items=tuple(items), next_page=None)
    # Then orderedItems is a JSON list with the same values in the same order
    assert doc["orderedItems"] == items
    assert isinstance(doc["orderedItems"], list)


def test_a_page_may_carry_the_total_count() -> None:
    with_count = render_collection_page(FIRST, part_of=OUTBOX, items=[], next_page=None, total_items=7)
    without = render_collection_page(FIRST, part_of=OUTBOX, items=[], next_page=None)
    assert with_count["totalItems"] == 7
    assert "totalItems" not in without
