"""A resource: an association's ``Article`` (a guide, a document) with a licence and a history."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from federation.vocab.entraide import Kind
from server.db.models import Actor
from server.services.content.fields import iri_value
from server.services.content.kinds.base import ContentKind, Draft, Edit


class Resource(ContentKind):
    kind: ClassVar[Kind] = Kind.RESOURCE
    types: ClassVar[tuple[str, ...]] = ("Article",)
    wire_term: ClassVar[str | None] = "Resource"
    association_only: ClassVar[bool] = True
    named: ClassVar[bool] = True
    own_fields: ClassVar[frozenset[str]] = frozenset({"license"})
    feed_path: ClassVar[str | None] = "resources"
    feed_label: ClassVar[str | None] = "ressources"
    api_path: ClassVar[str | None] = "resources"
    api_schema: ClassVar[str | None] = "ResourceCreate"

    def claims(self, obj: Mapping[str, Any], author: Actor) -> bool:
        """An association's ``Article`` is a resource."""
        return obj.get("type") == "Article" and author.type == "Group"

    async def build(self, draft: Draft) -> None:
        license_iri = iri_value(draft.obj.get("license"), "license")
        if license_iri:
            draft.document["license"] = license_iri
        draft.document["history"] = draft.fed.node.uris.history(draft.document["id"])
        draft.document["entraideKind"] = self.wire_term

    def edit(self, edit: Edit) -> None:
        super().edit(edit)
        if edit.obj.get("license") is not None:
            edit.document["license"] = iri_value(edit.obj.get("license"), "license")


KIND = Resource()
