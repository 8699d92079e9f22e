"""A post: a ``Note`` or ``Article`` with no kind of its own (the default kind)."""

from __future__ import annotations

from typing import ClassVar

from federation.vocab.entraide import Kind
from server.services.content.kinds.base import ContentKind


class Post(ContentKind):
    """What a client publishes when it asks for no other kind: only the shared fields."""

    kind: ClassVar[Kind] = Kind.POST
    types: ClassVar[tuple[str, ...]] = ("Note", "Article")
    api_path: ClassVar[str | None] = "posts"
    api_schema: ClassVar[str | None] = "PostCreate"


KIND = Post()
