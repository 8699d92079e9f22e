"""A reply: a ``Note`` or ``Article`` with ``inReplyTo``.

Joining the thread (the parent checked, its audience kept, its author addressed) applies to
anything that answers another object, so it is a step of the pipeline:
:mod:`server.services.content.replies`. What is a reply's own is only that it is one: it is not
listed with an association's content, in its feeds or among what it relays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from federation.vocab.entraide import Kind
from server.db.models import Actor
from server.services.content.kinds.base import ContentKind


class Reply(ContentKind):
    kind: ClassVar[Kind] = Kind.REPLY
    types: ClassVar[tuple[str, ...]] = ("Note", "Article")
    listed: ClassVar[bool] = False

    def claims(self, obj: Mapping[str, Any], author: Actor) -> bool:
        return obj.get("inReplyTo") is not None


KIND = Reply()
