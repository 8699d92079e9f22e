"""Lemmy's wire quirks: ``Page`` posts, language objects, ``Link`` attachments, FEP-1b12 relays.

Pointers: docs/interop.md "Group Announce wrapping" and "Actors" (Lemmy Group extras);
docs/security.md cases 16, 29 and 42; Lemmy's own examples in
``crates/apub/assets/lemmy/activities/`` (recorded under ``tests/fixtures/payloads/lemmy/``).
"""

from __future__ import annotations

from typing import Any, Final

from ..types import Iri
from ..vocab.activities import Activity, Announce

__all__ = [
    "PAGE_TYPE",
    "language_code",
    "page_link",
    "relayed_activity",
]

PAGE_TYPE: Final = "Page"
"""Lemmy's post type. Parsed as :class:`~federation.vocab.objects.Page`, a subclass of
:class:`~federation.vocab.objects.Article`: Mastodon also "converts" both the same way (title in
``name``, body in ``content``, link in ``url``)."""

_MAX_LANGUAGE_CHARS: Final = 35  # BCP 47 tags are short; anything longer is not a tag


def language_code(value: object) -> str | None:
    """Read Lemmy's ``language``: ``{"identifier": "fr", "name": "Français"}`` (or a list of them).

    A Group lists several; the first is returned. A plain string is accepted as is. Anything
    else, or an identifier that is not a short tag, gives ``None``.
    """
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("identifier")
    if isinstance(value, str) and 0 < len(value) <= _MAX_LANGUAGE_CHARS and value.isprintable():
        return value
    return None


def page_link(doc: dict[str, Any]) -> object:
    """The link a Lemmy post points to, as found: ``url``, else the first ``Link`` attachment's ``href``.

    Lemmy ≥ 0.17 moved the link from ``url`` to ``attachment: [{"type": "Link", "href": ...}]``
    (``create_page.json``); older versions and other software use ``url``.
    """
    if doc.get("url") is not None:
        return doc["url"]
    attachments = doc.get("attachment")
    if isinstance(attachments, dict):
        attachments = [attachments]
    if isinstance(attachments, list):
        for item in attachments:
            if isinstance(item, dict) and item.get("type") == "Link" and isinstance(item.get("href"), str):
                return item["href"]
    return None


def relayed_activity(announce: Announce) -> Activity | None:
    """The activity a Group relays with ``Announce`` (FEP-1b12), when it may be used as delivered.

    Lemmy wraps what it receives *unchanged* in ``Announce`` (``Announce{Create{Page}}``) and
    also sends a compat ``Announce{Page}`` for Mastodon; both reach us, and handlers keyed on the
    Page's id make the second one a no-op. The inner activity is returned only when:

    - it is embedded and the inbox kept it (same host as the announcing Group, not one of our
      ids: security cases 16 and 17); otherwise the handler refetches ``announce.object.id``;
    - it is not itself an ``Announce`` (security case 29: no boost-of-boost chains);
    - the announcing Group is among the inner activity's (or its object's) ``audience``/``to``/
      ``cc``: a Group may only relay content addressed to it (security case 42, LemmyNet/lemmy#6473).

    Otherwise ``None``: the handler treats the Announce as an ordinary boost or drops it.
    """
    inner = announce.announced_activity
    if inner is None or isinstance(inner, Announce):
        return None
    group: Iri = announce.actor
    addressed = set(inner.addressing.recipients)
    inner_object = inner.object.value if inner.object is not None else None
    object_audience = getattr(inner_object, "audience", ())
    object_to = getattr(inner_object, "to", ())
    object_cc = getattr(inner_object, "cc", ())
    addressed.update(object_audience, object_to, object_cc)
    return inner if group in addressed else None
