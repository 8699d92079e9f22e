"""Moderation pages: the report form on every object and profile, the queue of reports with its
actions, and the audit log (issue 17).

The same service as ``/api/reports`` and ``entraide report …`` (``server/services/moderation``):
who sees which report is decided there, never here, and every action is audited with the channel
``web`` (set by ``audit_channel_middleware``). Every form carries the session's CSRF token.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import parse_qs, quote, urlsplit

from aiohttp import web

from server.appkeys import FEDERATION, NODE
from server.http.pages import core as w
from server.services.accounts.sessions import SignedIn
from server.services.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceError
from server.services.membership.standing import Suspended
from server.services.moderation import reports
from server.services.moderation.reports import ACTIONS, CONFIRMED, MAX_COMMENT_CHARS

routes = web.RouteTableDef()
PAGE_SIZE: Final = 50
STATE_TABS: Final = ("open", "resolved", "dismissed")


def _target(request: web.Request, data: Any = None) -> str:
    source = data if data is not None else request.query
    value = source.get("target", "")
    return value[:2048] if isinstance(value, str) else ""


async def _report_form(
    request: web.Request,
    target: str,
    *,
    comment: str = "",
    error: str = "",
    status: int = 200,
    done: bool = False,
) -> web.Response:
    context = {
        "target": target,
        "comment": comment,
        "error": error,
        "done": done,
        "max_chars": MAX_COMMENT_CHARS,
    }
    return await w.render(request, "report.html", context, status=status, private=True, title="report_title")


@routes.get("/report")
async def report_page(request: web.Request) -> web.Response:
    """The form to report an object or a profile (the "Report" link of their pages)."""
    await w.require_signed_in(request)
    target = _target(request)
    if not target.startswith(("https://", "http://")):
        raise InvalidInput("target must be the IRI of an object or an actor", field="target")
    return await _report_form(request, target, done=request.query.get("done") == "1")


@routes.post("/report")
async def file_report(request: web.Request) -> web.StreamResponse:
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    target, comment = _target(request, data), w.field(data, "comment")
    fed = request.app[FEDERATION]
    try:
        await reports.file(fed, user.actor, target, comment)
    except InvalidInput as exc:
        if exc.context.get("field") != "comment":
            raise
        return await _report_form(
            request, target, comment=comment, error="report_comment_invalid", status=400
        )
    except Conflict:
        return await _report_form(request, target, comment=comment, error="report_too_many", status=409)
    raise web.HTTPSeeOther(f"/report?target={quote(target, safe='')}&done=1")


async def _association(request: web.Request, session: Any) -> Any:
    slug = request.query.get("association")
    return await reports.association(session, slug) if slug else None


async def _queue(
    request: web.Request,
    user: SignedIn,
    *,
    state: str = "open",
    association: str | None = None,
    error: dict[str, Any] | None = None,
    status: int = 200,
) -> web.Response:
    node = request.app[NODE]
    async with node.sessions() as session:
        group = await reports.association(session, association) if association else None
        items = await reports.queue_of(session, user.actor, group=group, state=state, limit=PAGE_SIZE)
        me = await reports.moderator(session, user.actor)
        groups = await reports.moderated(session, user.actor)
    done = request.query.get("done", "") if request.method == "GET" else ""
    context = {
        "items": items,
        "state": state,
        "states": STATE_TABS,
        "group": group,
        "groups": groups,
        "is_node_admin": me.is_node_admin,
        "actions": ACTIONS,
        "notice": done if done in ACTIONS else "",
        "error": error or {},
        "base": "/moderation?" + (f"association={group.handle}&" if group is not None else ""),
    }
    return await w.render(
        request, "moderation.html", context, status=status, private=True, title="moderation_title"
    )


@routes.get("/moderation")
async def queue_page(request: web.Request) -> web.Response:
    """The reports the member moderates (``association``: one association's), by state."""
    user = await w.require_signed_in(request)
    state = request.query.get("state", "open")
    return await _queue(
        request,
        user,
        state=state if state in STATE_TABS else "open",
        association=request.query.get("association"),
    )


# A refused action, said on the queue next to its report (the services' details are English).
REFUSALS: Final[tuple[tuple[type[ServiceError], str, int], ...]] = (
    (Suspended, "moderation_failed_suspended", 403),
    (Conflict, "moderation_failed_closed", 409),
    (NotFound, "moderation_failed_gone", 404),
    (Forbidden, "moderation_failed_forbidden", 403),
    (InvalidInput, "moderation_failed_target", 400),
)


def _failure(exc: ServiceError) -> tuple[str, int]:
    """The catalogue key and status of a refused action (a malformed field: its own message)."""
    field = exc.context.get("field")
    if isinstance(exc, InvalidInput) and field in ("reason", "message", "until"):
        return f"moderation_failed_{field}", 400
    if isinstance(exc, Conflict) and field != "report":
        return "moderation_failed_conflict", 409
    return next((key, status) for kind, key, status in REFUSALS if isinstance(exc, kind))


def _back(data: Any) -> tuple[str, str | None]:
    """The queue the form came from: its tab and association (the page shown again on a refusal)."""
    back = w.field(data, "back")
    query = parse_qs(urlsplit(back).query) if w.safe_next(back) and back.startswith("/moderation") else {}
    state = query.get("state", ["open"])[0]
    return (state if state in STATE_TABS else "open"), query.get("association", [None])[0]


async def _confirm_page(
    request: web.Request, report: reports.ReportView, action: str, data: Any, *, errors: Any = None
) -> web.Response:
    """Ask before removing or suspending the reported member (a box to tick; no script)."""
    back = w.field(data, "back")
    kind = "suspend" if action == "suspend-member" else "remove"
    context = {
        "kind": kind,
        "text_key": f"confirm_report_{kind}_text",
        "heading": report.association_handle or "",
        "subject": ", ".join(report.targets),
        "form_action": f"/moderation/reports/{report.id}",
        "back": back if w.safe_next(back) and back.startswith("/moderation") else "/moderation",
        "hidden": {"action": action, "back": back, "confirming": "yes"},
        "typed": {"until": w.field(data, "until")[:40], "reason": w.field(data, "text")},
        "errors": errors or {},
        "reason_max": MAX_COMMENT_CHARS,
        "reason_name": "text",
    }
    status = 400 if errors else 200
    return await w.render(
        request, "members_confirm.html", context, status=status, private=True, title=f"confirm_{action}"
    )


@routes.post("/moderation/reports/{id}")
async def act_on_report(request: web.Request) -> web.StreamResponse:
    """One action on a report from the queue's form; back to the queue with a notice. Removing or
    suspending the member asks to confirm first. A refused action (a report already handled, a
    member who left, a target that is not one) shows the queue again with the reason next to the
    report and the refusal's status; nothing is changed."""
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
        raise NotFound("no such report")
    action = w.field(data, "action")
    if action not in ACTIONS:
        raise InvalidInput(f"action must be one of: {', '.join(ACTIONS)}", field="action")
    fed = request.app[FEDERATION]
    async with fed.node.sessions() as session:
        report = await reports.one(session, user.actor, int(raw))
    state, association = _back(data)
    if report.state != "open":  # handled meanwhile: said at once, before any confirmation
        error = {"report": report.id, "key": "moderation_failed_closed"}
        return await _queue(request, user, state=state, association=association, error=error, status=409)
    if action in CONFIRMED and w.field(data, "confirm") != "yes":
        confirming = w.field(data, "confirming") == "yes"
        errors = {"confirm": "members_confirm_required"} if confirming else None
        return await _confirm_page(request, report, action, data, errors=errors)
    try:
        await reports.act(
            fed, user.actor, int(raw), action, w.field(data, "text") or None, w.field(data, "until") or None
        )
    except ServiceError as exc:
        key, status = _failure(exc)
        error = {"report": report.id, "key": key}
        return await _queue(request, user, state=state, association=association, error=error, status=status)
    back = w.field(data, "back")
    where = back if w.safe_next(back) and back.startswith("/moderation") else "/moderation"
    joiner = "&" if "?" in where else "?"
    raise web.HTTPSeeOther(f"{where}{joiner}done={action}")


@routes.get("/moderation/audit")
async def audit_page(request: web.Request) -> web.Response:
    """Who did what, when, to what and through which channel: the node's log for node admins, an
    association's (``association``) for its admins and moderators."""
    user = await w.require_signed_in(request)
    node = request.app[NODE]
    async with node.sessions() as session:
        group = await _association(request, session)
        entries = await reports.audit_entries(session, user.actor, group=group, limit=PAGE_SIZE)
        groups = await reports.moderated(session, user.actor)
        me = await reports.moderator(session, user.actor)
    context = {"entries": entries, "group": group, "groups": groups, "is_node_admin": me.is_node_admin}
    return await w.render(request, "moderation_audit.html", context, private=True, title="audit_title")
