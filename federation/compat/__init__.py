"""Peer quirks, normalised in one place per peer software.

Each module is a set of small pure functions that :mod:`federation.vocab.parse` applies while
reading a peer's JSON (raw dicts are allowed here, docs/architecture.md R2), or that handlers apply to parsed
values. Every rule names the interop fact it implements (``docs/interop.md``) so that it can be
re-checked against the peer's code when that peer changes:

- :mod:`.mastodon`: the three spellings of the public collection, ``Emoji`` tags, profile
  fields (``PropertyValue``), poll ``closed`` as a boolean.
- :mod:`.lemmy`: ``Page`` posts (Article-like), Lemmy's ``language`` objects and ``Link``
  attachments, and the FEP-1b12 rules for unwrapping ``Announce{Create{Page}}``.
- :mod:`.mobilizon`: ``Member`` roles and where a Mobilizon group publishes its members.

Outbound downgrades (Alert → Note, Proposal → Question) will live next to these, in the same
modules, when the renderers arrive.
"""

from __future__ import annotations

from . import lemmy, mastodon, mobilizon

__all__ = ["lemmy", "mastodon", "mobilizon"]
