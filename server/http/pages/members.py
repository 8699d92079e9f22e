"""An association's members in the browser (issue 17): the page of its admins and moderators
(requests to join, members and their roles, paged; removal and suspension, each confirmed on a
page of its own with a box to tick, no script needed), invitation links, the accept page of a
link, the member directory (paged both ways), and the directory setting of a member's account.

Every action calls the service the CLI and the JSON API call (``server.services.membership``),
with the same role checks: admins and moderators answer requests and remove members (only an
admin removes an admin), admins change roles and manage invitations. A refusal's reason goes with
the ``Reject`` as the CLI's ``--reason`` does. Forms carry the session's CSRF token
(:func:`server.http.pages.core.form`); a refused action (a member who left, a role that does not
allow it, a suspended manager) shows the page again with the reason, next to its field when it has
one, with the status of the refusal and nothing changed: never a bare error page.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlencode

from aiohttp import web

from federation import uris as paths
from server.appkeys import FEDERATION, NODE
from server.http.pages import core as w
from server.http.params import int_param
from server.services.accounts.sessions import SignedIn
from server.services.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound, ServiceError
from server.services.membership import directory, invitations, suspension
from server.services.membership import members as membership
from server.services.membership.standing import Suspended
from server.services.reading import visibility
from server.services.reading.visibility import Viewer, ViewerKind

routes = web.RouteTableDef()

GROUP: Final = "/groups/{handle:" + paths.HANDLE_PATTERN + "}"
MANAGE: Final = GROUP + "/admin/members"
INVITES: Final = GROUP + "/admin/invitations"
DIRECTORY_PATH: Final = GROUP + "/directory"
INVITE: Final = "/invite/{token}"
DIRECTORY_PAGE: Final = 50
MEMBERS_PAGE: Final = 50
MEMBER_NOTICES: Final = ("approved", "refused", "role", "removed", "suspended", "unsuspended")
INVITE_NOTICES: Final = ("revoked",)


def _reader(user: SignedIn) -> Viewer:
    return Viewer(ViewerKind.LOCAL, actor_id=user.actor.id, actor_iri=user.actor.iri, scope="write")


async def _association(request: web.Request) -> Any:
    async with request.app[NODE].sessions() as session:
        return await directory.local_association(session, request.match_info["handle"])


def _notice(request: web.Request, allowed: tuple[str, ...]) -> str:
    done = request.query.get("done", "")
    return done if done in allowed else ""


# --- the members page of admins and moderators ---------------------------------------------------

CURSORS: Final = ("before", "after", "requests_before", "requests_after")
"""The members page's query: where its list of members and its list of requests start."""


def _cursor(request: web.Request, name: str) -> int | None:
    """A cursor of the page's query (a form's answer, a POST, shows both lists from the top)."""
    return int_param(request, name, minimum=1) if request.method == "GET" else None


def _link(base: str, kept: dict[str, int | None], name: str, cursor: int | None) -> str | None:
    """The link to a page of one list (``name=cursor``) that keeps where the other list is."""
    if cursor is None:
        return None
    params = {key: value for key, value in kept.items() if value is not None}
    return f"{base}?{urlencode({**params, name: cursor})}"


async def _members_page(
    request: web.Request,
    user: SignedIn,
    group: Any,
    *,
    error: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    node = request.app[NODE]
    cursors = {name: _cursor(request, name) for name in CURSORS}
    async with node.sessions() as session:
        roster = await directory.roster(
            session,
            _reader(user),
            group,
            now=node.clock(),
            members=directory.Cursors(cursors["before"], cursors["after"]),
            requests=directory.Cursors(cursors["requests_before"], cursors["requests_after"]),
            limit=MEMBERS_PAGE,
        )
    base = f"/groups/{group.handle}/admin/members"
    members_at = {"requests_before": cursors["requests_before"], "requests_after": cursors["requests_after"]}
    requests_at = {"before": cursors["before"], "after": cursors["after"]}
    context = {
        "group": group,
        "roster": roster,
        "roles": directory.ROLES,
        "error": error or {},
        "notice": _notice(request, MEMBER_NOTICES),
        "reason_max": membership.MAX_REASON_CHARS,
        "older": _link(base, members_at, "before", roster.active.older),
        "newer": _link(base, members_at, "after", roster.active.newer),
        "requests_older": _link(base, requests_at, "requests_before", roster.pending.older),
        "requests_newer": _link(base, requests_at, "requests_after", roster.pending.newer),
    }
    return await w.render(request, "members_admin.html", context, status=status, title="members_title")


@routes.get(MANAGE)
async def members_page(request: web.Request) -> web.Response:
    user = await w.require_signed_in(request)
    return await _members_page(request, user, await _association(request))


# Refusals said next to the field, as catalogue keys (the services' details are English).
MEMBER_ERRORS: Final[dict[str, tuple[str, int]]] = {
    "reason": ("members_reason_invalid", 400),
    "role": ("members_role_invalid", 400),
    "until": ("members_until_invalid", 400),
}


def _refusal(exc: ServiceError, action: str = "") -> tuple[str, str, int]:
    """What the page says of a refused ``action``: (field, catalogue key, status)."""
    field = str(exc.context.get("field", ""))
    if isinstance(exc, Suspended):
        return "", "members_you_are_suspended", 403
    if isinstance(exc, Conflict):
        return field, "members_last_admin" if field == "role" else "members_not_suspended", 409
    if isinstance(exc, NotFound):
        return "", "members_no_request" if action in ("approve", "refuse") else "members_not_member", 404
    if isinstance(exc, Forbidden):
        return "", "members_forbidden", 403
    key, status = MEMBER_ERRORS.get(field, ("members_bad_input", 400))
    return field, key, status


async def _refused(
    request: web.Request, user: SignedIn, group: Any, member_iri: str, exc: ServiceError, action: str = ""
) -> web.Response:
    """The members page again, the refusal said (next to its field, or above the lists); nothing
    was changed."""
    field, key, status = _refusal(exc, action)
    error = {"member": member_iri, "field": field, "key": key}
    return await _members_page(request, user, group, error=error, status=status)


async def _act(request: web.Request, action: str) -> web.StreamResponse:
    """Check the form, call the membership service for ``action`` and come back to the page."""
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    group = await _association(request)
    member_iri = w.field(data, "member")
    fed = request.app[FEDERATION]
    try:
        if action in ("approve", "refuse"):
            reason = w.field(data, "reason") if action == "refuse" else None
            await membership.decide(
                fed, group, member_iri, by=user.actor, approve=action == "approve", reason=reason
            )
        elif action == "role":
            await membership.set_role(fed, group, member_iri, w.field(data, "role"), by=user.actor)
        else:
            await suspension.unsuspend(fed, group, member_iri, by=user.actor)
    except ServiceError as exc:
        return await _refused(request, user, group, member_iri, exc, action)
    done = {"approve": "approved", "refuse": "refused", "role": "role", "unsuspend": "unsuspended"}[action]
    raise web.HTTPSeeOther(f"/groups/{group.handle}/admin/members?done={done}")


@routes.post(MANAGE + "/approve")
async def approve(request: web.Request) -> web.StreamResponse:
    return await _act(request, "approve")


@routes.post(MANAGE + "/refuse")
async def refuse(request: web.Request) -> web.StreamResponse:
    return await _act(request, "refuse")


@routes.post(MANAGE + "/role")
async def change_role(request: web.Request) -> web.StreamResponse:
    return await _act(request, "role")


@routes.post(MANAGE + "/unsuspend")
async def unsuspend(request: web.Request) -> web.StreamResponse:
    return await _act(request, "unsuspend")


# --- removal and suspension: a confirmation first --------------------------------------------------


async def _confirm_page(
    request: web.Request,
    group: Any,
    member: directory.Entry,
    action: str,
    *,
    typed: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    context = {
        "kind": action,
        "text_key": f"confirm_{action}_text",
        "heading": group.name or group.handle,
        "subject": f"{member.name} (@{member.handle}@{member.host})",
        "form_action": f"/groups/{group.handle}/admin/members/{action}",
        "back": f"/groups/{group.handle}/admin/members",
        "hidden": {"member": member.iri},
        "typed": typed or {},
        "errors": errors or {},
        "reason_max": membership.MAX_REASON_CHARS,
        "reason_name": "reason",
    }
    return await w.render(request, "members_confirm.html", context, status=status, title=f"confirm_{action}")


async def _member(request: web.Request, user: SignedIn, group: Any, member_iri: str) -> directory.Entry:
    node = request.app[NODE]
    async with node.sessions() as session:
        return await directory.managed_member(session, _reader(user), group, member_iri, now=node.clock())


async def _confirm(request: web.Request, action: str) -> web.Response:
    """The page that asks to confirm a removal or a suspension (nothing is changed by a GET)."""
    user = await w.require_signed_in(request)
    group = await _association(request)
    member_iri = request.query.get("member", "")[:2048]
    try:
        member = await _member(request, user, group, member_iri)
    except (NotFound, Forbidden) as exc:
        return await _refused(request, user, group, member_iri, exc)
    return await _confirm_page(request, group, member, action)


@routes.get(MANAGE + "/remove")
async def confirm_removal(request: web.Request) -> web.Response:
    return await _confirm(request, "remove")


@routes.get(MANAGE + "/suspend")
async def confirm_suspension(request: web.Request) -> web.Response:
    return await _confirm(request, "suspend")


async def _confirmed(request: web.Request, action: str) -> web.StreamResponse:
    """A removal or suspension, done only when its box is ticked; a refusal said on the page that
    asked (its fields) or on the members page (the member, the roles), nothing changed."""
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    group = await _association(request)
    member_iri = w.field(data, "member")
    fed = request.app[FEDERATION]
    typed = {"until": w.field(data, "until")[:40], "reason": w.field(data, "reason")}
    try:
        member = await _member(request, user, group, member_iri)
    except (NotFound, Forbidden) as exc:
        return await _refused(request, user, group, member_iri, exc)
    if w.field(data, "confirm") != "yes":
        errors = {"confirm": "members_confirm_required"}
        return await _confirm_page(request, group, member, action, typed=typed, errors=errors, status=400)
    try:
        if action == "remove":
            await membership.remove(fed, group, member_iri, by=user.actor)
        else:
            until = suspension.parse_until(typed["until"], now=fed.node.clock())
            await suspension.suspend(
                fed, group, member_iri, by=user.actor, until=until, reason=typed["reason"]
            )
    except ServiceError as exc:
        field, key, status = _refusal(exc)
        if field not in ("until", "reason"):
            return await _refused(request, user, group, member_iri, exc)
        errors = {field: key}
        return await _confirm_page(request, group, member, action, typed=typed, errors=errors, status=status)
    done = "removed" if action == "remove" else "suspended"
    raise web.HTTPSeeOther(f"/groups/{group.handle}/admin/members?done={done}")


@routes.post(MANAGE + "/remove")
async def remove(request: web.Request) -> web.StreamResponse:
    return await _confirmed(request, "remove")


@routes.post(MANAGE + "/suspend")
async def suspend(request: web.Request) -> web.StreamResponse:
    return await _confirmed(request, "suspend")


# --- invitations (admins) -------------------------------------------------------------------------


async def _invitations_page(
    request: web.Request,
    user: SignedIn,
    group: Any,
    *,
    created: invitations.Created | None = None,
    typed: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    rows = await invitations.list_for(request.app[NODE], group, by=user.actor)
    context = {
        "group": group,
        "invitations": rows,
        "created": created,
        "typed": typed or {"days": str(invitations.DEFAULT_DAYS), "uses": str(invitations.DEFAULT_USES)},
        "errors": errors or {},
        "notice": _notice(request, INVITE_NOTICES),
        "max_days": invitations.MAX_DAYS,
        "max_uses": invitations.MAX_USES,
    }
    return await w.render(
        request, "members_invitations.html", context, status=status, title="invitations_title"
    )


@routes.get(INVITES)
async def invitations_page(request: web.Request) -> web.Response:
    user = await w.require_signed_in(request)
    return await _invitations_page(request, user, await _association(request))


def _whole(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 6 else None


@routes.post(INVITES)
async def create_invitation(request: web.Request) -> web.Response:
    """A new link, shown once on the page that answers (only its hash is kept)."""
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    group = await _association(request)
    typed = {"days": w.field(data, "days")[:10], "uses": w.field(data, "uses")[:10]}
    days, uses = _whole(typed["days"]), _whole(typed["uses"])
    errors = {}
    if days is None or not 1 <= days <= invitations.MAX_DAYS:
        errors["days"] = "invitation_days_invalid"
    if uses is None or not 1 <= uses <= invitations.MAX_USES:
        errors["uses"] = "invitation_uses_invalid"
    if errors:
        return await _invitations_page(request, user, group, typed=typed, errors=errors, status=400)
    created = await invitations.create(
        request.app[NODE], group, by=user.actor, expires_in_days=days, max_uses=uses
    )
    return await _invitations_page(request, user, group, created=created)


@routes.post(INVITES + "/{id}/revoke")
async def revoke_invitation(request: web.Request) -> web.StreamResponse:
    user = await w.require_signed_in(request)
    await w.form(request, user)
    group = await _association(request)
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 9:
        raise NotFound("no such invitation in this association")
    await invitations.revoke(request.app[NODE], group, int(raw), by=user.actor)
    raise web.HTTPSeeOther(f"/groups/{group.handle}/admin/invitations?done=revoked")


# --- using an invitation ---------------------------------------------------------------------------


async def _invite_page(
    request: web.Request, preview: invitations.Preview, *, refusal: str = "", status: int = 200
) -> web.Response:
    if refusal == "" and preview.membership == "active":
        refusal = "invite_already_member"  # said first: the link was theirs
    if refusal == "" and preview.state != "active":
        refusal, status = f"invite_{preview.state}", 410
    context = {"group": preview.group, "refusal": refusal, "token": request.match_info["token"]}
    return await w.render(request, "members_invite.html", context, status=status, title="invite_title")


@routes.get(INVITE)
async def invite_page(request: web.Request) -> web.Response:
    """What the link is for, and the button that uses it (a GET never spends a use)."""
    user = await w.require_signed_in(request)
    preview = await invitations.preview(request.app[NODE], request.match_info["token"], reader=user.actor)
    return await _invite_page(request, preview)


REFUSED: Final[dict[type[Exception], tuple[str, int]]] = {
    invitations.InvitationExpired: ("invite_expired", 410),
    invitations.InvitationExhausted: ("invite_exhausted", 410),
    invitations.InvitationRevoked: ("invite_revoked", 410),
    Conflict: ("invite_already_member", 409),
    Forbidden: ("invite_forbidden", 403),
}


@routes.post(INVITE)
async def accept_invite(request: web.Request) -> web.StreamResponse:
    user = await w.require_signed_in(request)
    await w.form(request, user)
    token = request.match_info["token"]
    node = request.app[NODE]
    try:
        group = await invitations.accept(node, token, member=user.actor)
    except (Gone, Conflict, Forbidden) as exc:
        key, status = next(v for k, v in REFUSED.items() if isinstance(exc, k))
        preview = await invitations.preview(node, token, reader=user.actor)
        return await _invite_page(request, preview, refusal=key, status=status)
    raise web.HTTPSeeOther(f"/groups/{group.handle}/directory?done=joined")


# --- the member directory -------------------------------------------------------------------------


@routes.get(DIRECTORY_PATH)
async def directory_page(request: web.Request) -> web.Response:
    """The association's members, for its members only (a stranger gets 403), a page at a time."""
    user = await w.require_signed_in(request)
    group = await _association(request)
    before = int_param(request, "before", minimum=1)
    after = int_param(request, "after", minimum=1)
    async with request.app[NODE].sessions() as session:
        found = await directory.directory(
            session, _reader(user), group, before=before, after=after, limit=DIRECTORY_PAGE
        )
        role = await visibility.role_in(session, _reader(user), group)
    base = f"/groups/{group.handle}/directory"
    context = {
        "group": group,
        "entries": found.entries,
        "next": f"{base}?before={found.older}" if found.older is not None else None,
        "previous": f"{base}?after={found.newer}" if found.newer is not None else None,
        "first": base if found.newer is not None else None,
        "role": role,
        "opted_out": user.account.directory_opt_out,
        "notice": _notice(request, ("joined",)),
    }
    return await w.render(request, "members_directory.html", context, title="directory_title")


@routes.post("/account/directory")
async def set_directory(request: web.Request) -> web.StreamResponse:
    """Listed in the directories of one's associations (the default), or not."""
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    choice = w.field(data, "directory")
    if choice not in ("listed", "hidden"):
        raise InvalidInput("directory must be listed or hidden", field="directory")
    async with request.app[NODE].sessions.begin() as session:
        await directory.set_opt_out(session, user.actor.id, choice == "hidden")
    raise web.HTTPSeeOther("/account?done=directory")
