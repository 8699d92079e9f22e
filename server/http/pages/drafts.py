"""Members' drafts in the browser: an active member of an association proposes an alert, a
resource or a proposal; its admins and moderators see the pending drafts and publish one as the
association, or refuse it with a reason. A member sees their own drafts and what became of them,
never another member's (:mod:`server.services.content.drafts` decides, decision 65).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

from aiohttp import web

from server.appkeys import FEDERATION, NODE
from server.http.pages import core as w
from server.http.pages.publish import (
    GROUP,
    KIND_PATH,
    form_page,
    object_path,
    read_form,
    refusals,
    request_of,
)
from server.services.accounts.sessions import SignedIn
from server.services.content import drafts, editors
from server.services.errors import Conflict, Forbidden, InvalidInput
from server.services.reading.visibility import ACTING_ROLES

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

DRAFT_ID: Final = "/drafts/{id:[0-9]{1,18}}"
DONE: Final = frozenset({"submitted", "refused"})


async def _member(request: web.Request) -> tuple[SignedIn, editors.Editor]:
    """The signed-in member and their role in the association (403 for anyone not a member)."""
    user = await w.require_signed_in(request)
    editor = await editors.role(request.app[NODE], request.match_info["handle"], user.actor)
    if editor.role is None:
        raise Forbidden("only the association's members propose drafts")
    return user, editor


async def _drafts_page(
    request: web.Request,
    user: SignedIn,
    editor: editors.Editor,
    *,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    fed = request.app[FEDERATION]
    lists = {
        state: await drafts.listing(fed, editor.group, user.actor, state=state)
        for state in ("pending", "published", "refused")
    }
    done = request.query.get("done", "")
    context = {
        "group": editor.group,
        "drafts": lists,
        "can_decide": editor.role in ACTING_ROLES,
        "notice": done if done in DONE else "",
        "errors": errors or {},
    }
    return await w.render(request, "drafts.html", context, status=status, title="drafts_title")


@routes.get(GROUP + "/drafts")
async def drafts_page(request: web.Request) -> web.Response:
    user, editor = await _member(request)
    return await _drafts_page(request, user, editor)


@routes.get(GROUP + "/drafts/new/" + KIND_PATH)
async def new_draft(request: web.Request) -> web.Response:
    _, editor = await _member(request)
    values = {"visibility": "public"}
    return await form_page(request, editor.group, request.match_info["kind"], mode="draft", values=values)


@routes.post(GROUP + "/drafts/new/" + KIND_PATH)
async def submit(request: web.Request) -> web.StreamResponse:
    user, editor = await _member(request)
    kind = request.match_info["kind"]
    data, staged = await read_form(request, user)
    if staged is not None:
        staged.discard()  # a draft carries no file: attachments are added when it is published
    try:
        await drafts.submit(request.app[FEDERATION], editor.group, user.actor, kind, request_of(kind, data))
    except (InvalidInput, Forbidden) as exc:
        errors = refusals(exc)
        status = 403 if isinstance(exc, Forbidden) else 400  # a suspended member, said on the form
        return await form_page(
            request, editor.group, kind, mode="draft", values=data, errors=errors, status=status
        )
    raise web.HTTPSeeOther(f"/groups/{editor.group.handle}/drafts?done=submitted")


@routes.post(GROUP + DRAFT_ID + "/publish")
async def publish(request: web.Request) -> web.StreamResponse:
    """Publish the draft as the association; a refusal of the content service is shown above the
    list, and the draft stays pending."""
    user, editor = await _member(request)
    await read_form(request, user)
    draft_id = int(request.match_info["id"])
    try:
        result = await drafts.publish(request.app[FEDERATION], editor.group, draft_id, by=user.actor)
    except (InvalidInput, Conflict) as exc:
        log.info("draft publication refused", extra={"draft": draft_id, "error": exc.code})
        return await _drafts_page(request, user, editor, errors={str(draft_id): exc.detail}, status=400)
    raise web.HTTPSeeOther(object_path(result.object_iri or ""))


@routes.post(GROUP + DRAFT_ID + "/refuse")
async def refuse(request: web.Request) -> web.StreamResponse:
    user, editor = await _member(request)
    data, _ = await read_form(request, user)
    draft_id = int(request.match_info["id"])
    try:
        await drafts.refuse(
            request.app[FEDERATION], editor.group, draft_id, by=user.actor, reason=data.get("reason", "")
        )
    except (InvalidInput, Conflict) as exc:
        return await _drafts_page(request, user, editor, errors={str(draft_id): exc.detail}, status=400)
    raise web.HTTPSeeOther(f"/groups/{editor.group.handle}/drafts?done=refused")
