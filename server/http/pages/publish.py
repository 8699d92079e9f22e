"""Publishing from the browser, for an association's admins and moderators: alerts (retract,
supersede, extend), resources (Markdown with a server-rendered preview, an attachment, a licence,
revisions with a change note), proposals (options, deadline, eligibility, close early), co-signing
another association's proposal; and members' drafts, which they publish or refuse.

Every form is plain HTML posted with the session's CSRF token and answered with a redirect
(POST-redirect-GET); nothing needs a script. The handlers translate the form into the request of
the same services as the JSON API and the command line (``content.create``, ``content.update``,
``content.retract_alert``, ``content.delete``, ``polls.close_early``, ``endorsements.endorse``,
``drafts``), which decide every rule: a refused field is shown next to it, the input kept, and
nothing is stored. Who may act is :mod:`server.services.content.editors` (decision 66).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage

from federation import uris as paths
from federation.vocab import events as event_wire
from federation.vocab.entraide import AlertCategory, Eligibility, Kind, Severity, option_names
from federation.vocab.events import EventStatus, JoinMode
from server.appkeys import FEDERATION, NODE
from server.http.media import check_encoding, part_chunks
from server.http.pages import core as w
from server.http.pages import i18n
from server.http.pages.objects import event_description, render_markdown
from server.services.accounts.sessions import SignedIn
from server.services.content import drafts, editors, endorsements, polls
from server.services.content import local as content
from server.services.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceError
from server.services.events import publishing as events
from server.services.media import uploads as media_service

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

GROUP: Final = "/groups/{handle:" + paths.HANDLE_PATTERN + "}"
KINDS: Final = (Kind.ALERT.value, Kind.RESOURCE.value, Kind.PROPOSAL.value)
KIND_PATH: Final = "{kind:(alert|resource|proposal)}"
"""The kinds a member drafts (:mod:`server.http.pages.drafts`); editors also publish events."""
PUBLISH_KIND_PATH: Final = "{kind:(alert|resource|proposal|event)}"
CREATE_TYPES: Final = {**drafts.KINDS, Kind.EVENT.value: {"type": "Event"}}
TIMEZONES: Final = (
    "Europe/Paris",
    "UTC",
    "Europe/Brussels",
    "Europe/Zurich",
    "America/Montreal",
    "Indian/Reunion",
)
"""Offered first in the time zone field's list; any known IANA name is accepted."""
PLACE_FORM: Final = {
    "placeName": "name",
    "streetAddress": "streetAddress",
    "postalCode": "postalCode",
    "addressLocality": "addressLocality",
    "addressCountry": "addressCountry",
}
"""Form field -> the event's ``location`` field (the JSON API's names)."""
EVENT_FIELD_OF: Final = {"location": "placeName", **{f"location.{v}": k for k, v in PLACE_FORM.items()}}
MAX_TEXT: Final = content.MAX_CONTENT_CHARS + 1  # one more: the service says "too long"
LICENSES: Final = (
    "https://creativecommons.org/licenses/by/4.0/",
    "https://creativecommons.org/licenses/by-sa/4.0/",
    "https://creativecommons.org/publicdomain/zero/1.0/",
)
FIELD_OF: Final = {
    "oneOf": "options", "anyOf": "options", "file": "attachment", "object": "form", **EVENT_FIELD_OF
}  # fmt: skip
FORM_FIELDS: Final = frozenset(
    {
        "name", "content", "summary", "license", "severity", "category", "area", "areaCode",
        "validUntil", "visibility", "supersedes", "options", "multiple", "endTime", "eligibility",
        "changeNote", "statement", "proposal", "description", "iri", "reason", "action", "kind",
        "startTime", "timezone", "onlineUrl", "joinMode", "maximumAttendeeCapacity", "status", "confirm",
        *PLACE_FORM,
    }
)  # fmt: skip
_LOCAL_INSTANT: Final = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$")


# --- reading a form ---------------------------------------------------------------------------------


async def _multipart(
    request: web.Request, user: SignedIn
) -> tuple[dict[str, str], media_service.StagedUpload | None]:
    """A multipart form read as a stream: the CSRF token first (a file is never read for a
    forged post), text fields bounded, the ``attachment`` file staged (checked by its bytes)."""
    reader = await request.multipart()
    data: dict[str, str] = {}
    staged: media_service.StagedUpload | None = None
    csrf_ok = False
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise web.HTTPBadRequest(text="malformed form")
            if not csrf_ok:
                sent = (await part.read_chunk(w.MAX_FIELD)).decode("utf-8", "replace")
                w.check_csrf(request, user, sent if part.name == "csrf" else None)
                csrf_ok = True
            elif part.name == "attachment" and part.filename and staged is None:
                check_encoding(part)
                staged = await media_service.stage_upload(
                    request.app[NODE], part_chunks(part), filename=part.filename
                )
            elif part.name in FORM_FIELDS and part.name not in data:
                data[part.name] = await _text_part(part)
            else:
                await part.release()
    except (ValueError, AssertionError, BadHttpMessage):
        if staged is not None:
            staged.discard()
        raise web.HTTPBadRequest(text="malformed form") from None
    except BaseException:
        if staged is not None:
            staged.discard()
        raise
    if not csrf_ok:
        w.check_csrf(request, user, None)
    return data, staged


async def _text_part(part: BodyPartReader) -> str:
    """A text field, read chunk by chunk and cut at :data:`MAX_TEXT` characters (the service then
    refuses what is too long; a bigger field is never held whole)."""
    data = bytearray()
    while len(data) <= MAX_TEXT * 4 and (chunk := await part.read_chunk(64 * 1024)):
        data += chunk
    await part.release()
    return data.decode("utf-8", "replace")[:MAX_TEXT]


async def read_form(
    request: web.Request, user: SignedIn
) -> tuple[dict[str, str], media_service.StagedUpload | None]:
    """The posted form after the origin and CSRF checks (403 otherwise), as text fields."""
    w.check_origin(request)
    if request.content_type == "multipart/form-data":
        return await _multipart(request, user)
    posted = await request.post()
    w.check_csrf(request, user, posted.get("csrf", ""))
    return {k: v[:MAX_TEXT] for k, v in posted.items() if k in FORM_FIELDS and isinstance(v, str)}, None


def _instant(value: str) -> str:
    """A ``datetime-local`` value is read as UTC (the form says so); anything else is passed on
    for the service to accept (an ISO 8601 time with its zone) or refuse."""
    value = value.strip()
    return value + ("Z" if len(value) > 16 else ":00Z") if _LOCAL_INSTANT.match(value) else value


def _present(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v not in (None, "")}


def request_of(kind: str, data: Mapping[str, str], *, editing: bool = False) -> dict[str, Any]:
    """The services' request for a form of ``kind`` (the JSON API's field names)."""
    obj: dict[str, Any] = {"name": data.get("name", "").strip(), "content": data.get("content", "")}
    if not editing:
        obj["visibility"] = data.get("visibility", "public")
    if kind == Kind.ALERT.value:
        obj.update(
            severity=data.get("severity"),
            category=data.get("category"),
            area=data.get("area", "").strip(),
            areaCode=data.get("areaCode", "").strip(),
            validUntil=_instant(data.get("validUntil", "")),
        )
        if not editing:
            obj["supersedes"] = data.get("supersedes") or None
    elif kind == Kind.RESOURCE.value:
        obj.update(summary=data.get("summary", ""), license=data.get("license", "").strip())
    elif kind == Kind.EVENT.value:
        return _event_request(data, obj, editing=editing)
    elif not editing:
        options = [line.strip() for line in data.get("options", "").splitlines() if line.strip()]
        obj["anyOf" if data.get("multiple") else "oneOf"] = options
        obj.update(endTime=_instant(data.get("endTime", "")), eligibility=data.get("eligibility"))
    if editing:
        obj["changeNote"] = data.get("changeNote", "")
    return _present(obj)


def _zoned(value: str, zone: str) -> str:
    """A ``datetime-local`` value of an event is read in the event's time zone (UTC while the
    zone is unknown: the service then refuses the zone by name)."""
    value = value.strip()
    if not _LOCAL_INSTANT.match(value):
        return value
    if not event_wire.is_timezone(zone):
        return _instant(value)
    return datetime.fromisoformat(value).replace(tzinfo=ZoneInfo(zone)).isoformat()


def _capacity(value: str) -> Any:
    """A whole number for the service to check (a negative one too); other text is passed on and
    refused by the service with the field named."""
    value = value.strip()
    return int(value) if re.fullmatch(r"-?\d{1,9}", value) else value or None


def _event_request(data: Mapping[str, str], obj: dict[str, Any], *, editing: bool) -> dict[str, Any]:
    """An event's request: its Markdown description rendered to HTML (as its preview shows it),
    times read in its zone, the place's parts as ``location``. An emptied field is sent as
    ``null`` on an edit (removed, when the service allows it)."""
    zone = data.get("timezone", "").strip() or "UTC"
    place = {api: data.get(form, "").strip() for form, api in PLACE_FORM.items()}
    description = data.get("content", "")
    fields: dict[str, Any] = {
        "startTime": _zoned(data.get("startTime", ""), zone) or None,
        "endTime": _zoned(data.get("endTime", ""), zone) or None,
        "timezone": zone,
        "location": {k: v for k, v in place.items() if v} or None,
        "onlineUrl": data.get("onlineUrl", "").strip() or None,
        "joinMode": data.get("joinMode") or JoinMode.FREE.value,
        "maximumAttendeeCapacity": _capacity(data.get("maximumAttendeeCapacity", "")),
        "category": data.get("category", "").strip() or None,
        "status": data.get("status") or EventStatus.CONFIRMED.value,
    }
    obj = _present({**obj, "content": render_markdown(description) if description.strip() else ""})
    if editing:
        return {**obj, **fields, **_present({"changeNote": data.get("changeNote", "")})}
    return {**obj, **_present(fields)}


def refusals(exc: ServiceError, renamed: Mapping[str, str] = FIELD_OF) -> dict[str, str]:
    """The refusal next to its form field (``form``: above the form)."""
    field = exc.context.get("field")
    name = str(field) if isinstance(field, str) else "form"
    name = renamed.get(name, name)
    return {name if name in FORM_FIELDS or name == "attachment" else "form": exc.detail}


# --- pages ------------------------------------------------------------------------------------------


async def _editor(request: web.Request) -> tuple[SignedIn, editors.Editor]:
    user = await w.require_signed_in(request)
    editor = await editors.acting(request.app[NODE], request.match_info["handle"], user.actor)
    return user, editor


def _choices() -> dict[str, Any]:
    return {
        "severities": [s.value for s in Severity],
        "categories": [c.value for c in AlertCategory],
        "eligibilities": [e.value for e in Eligibility],
        "licenses": LICENSES,
        "join_modes": [m.value for m in JoinMode],
        "event_statuses": [EventStatus.CONFIRMED.value, EventStatus.TENTATIVE.value],
        "timezones": TIMEZONES,
    }


async def form_page(
    request: web.Request,
    group: Any,
    kind: str,
    *,
    mode: str,
    values: Mapping[str, Any],
    errors: Mapping[str, str] | None = None,
    status: int = 200,
    preview: str = "",
    target: Any = None,
) -> web.Response:
    context = {
        "group": group,
        "kind": kind,
        "mode": mode,
        "values": values,
        "errors": errors or {},
        "preview": preview,
        "target": target,
        "description": event_description(target.document)
        if target is not None and kind == Kind.EVENT.value
        else "",
        **_choices(),
    }
    title = {"new": "publish_new_", "edit": "publish_edit_", "draft": "draft_new_"}[mode] + kind
    return await w.render(request, "publish_form.html", context, status=status, title=title)


async def _manage(
    request: web.Request,
    user: SignedIn,
    editor: editors.Editor,
    *,
    errors: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    rows = await editors.managed_content(request.app[NODE], editor)
    now = w.now(request)
    items = [
        {"row": row, "status": content.status_of(row, now), "title": row.document.get("name") or ""}
        for row in rows
    ]
    pending = await drafts.listing(request.app[FEDERATION], editor.group, user.actor)
    done = request.query.get("done", "")
    context = {
        "group": editor.group,
        "items": items,
        "pending": len(pending),
        "notice": done if done in DONE else "",
        "errors": errors or {},
        "values": values or {},
    }
    return await w.render(request, "manage.html", context, status=status, title="manage_title")


@routes.get(GROUP + "/manage")
async def manage_page(request: web.Request) -> web.Response:
    """The association's content, with what its editors can do to each, and the pending drafts."""
    user, editor = await _editor(request)
    return await _manage(request, user, editor)


DONE: Final = frozenset(
    {
        "retracted", "deleted", "closed", "endorsed", "cancelled",
        "refused_retracted", "refused_deleted", "refused_closed", "refused_cancelled",
    }
)  # fmt: skip
NEW_EVENT: Final = {
    "timezone": TIMEZONES[0],
    "joinMode": JoinMode.FREE.value,
    "status": EventStatus.CONFIRMED.value,
}


@routes.get(GROUP + "/manage/new/" + PUBLISH_KIND_PATH)
async def new_form(request: web.Request) -> web.Response:
    _, editor = await _editor(request)
    kind = request.match_info["kind"]
    values = {"supersedes": w.field(request.query, "supersedes"), "visibility": "public"}
    if kind == Kind.EVENT.value:
        values.update(NEW_EVENT)
    return await form_page(request, editor.group, kind, mode="new", values=values)


async def _attach(
    request: web.Request, editor: editors.Editor, staged: Any, data: Mapping[str, str]
) -> list[str]:
    if staged is None:
        return []
    media = await media_service.commit_upload(
        request.app[NODE],
        staged,
        owner=editor.group,
        uploaded_by=editor.member,
        description=data.get("description", "")[: media_service.MAX_DESCRIPTION_CHARS],
    )
    return [media.key]


@routes.post(GROUP + "/manage/new/" + PUBLISH_KIND_PATH)
async def create(request: web.Request) -> web.StreamResponse:
    """Publish as the association, or (``action=preview``) show the resource's text rendered."""
    user, editor = await _editor(request)
    kind = request.match_info["kind"]
    data, staged = await read_form(request, user)
    if data.get("action") == "preview":
        if staged is not None:
            staged.discard()
        preview = render_markdown(data.get("content", ""))
        return await form_page(request, editor.group, kind, mode="new", values=data, preview=preview)
    obj = {**request_of(kind, data), **CREATE_TYPES[kind]}
    try:
        attachment = await _attach(request, editor, staged, data)
        if attachment:
            obj["attachment"] = attachment
        result = await content.create(request.app[FEDERATION], editor.group, obj, by=editor.member)
    except (InvalidInput, Forbidden, media_service.MediaTooLarge, media_service.UnsupportedMedia) as exc:
        log.info("web publish refused", extra={"kind": kind, "field": exc.context.get("field")})
        errors = refusals(exc)
        return await form_page(
            request, editor.group, kind, mode="new", values=data, errors=errors, status=400
        )
    raise web.HTTPSeeOther(object_path(result.object_iri or ""))


def object_path(iri: str) -> str:
    """Our object's page, as a path (the redirect stays on this node)."""
    rest = iri.split("://", 1)[-1]
    path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return path if w.safe_next(path) else "/"


def _values_of(row: Any) -> dict[str, Any]:
    """An object's editable fields as its form shows them (a resource's Markdown as written)."""
    doc = row.document
    source = doc.get("source")
    body = source.get("content") if isinstance(source, dict) else doc.get("content", "")
    if isinstance(body, str) and "<" not in body:
        body = body.replace("&gt;", ">").replace("&lt;", "<").replace("&amp;", "&")
    valid = doc.get("validUntil") if isinstance(doc.get("validUntil"), str) else ""
    return {
        "iri": row.iri,
        "name": doc.get("name", ""),
        "content": body or "",
        "summary": doc.get("summary", ""),
        "license": doc.get("license", ""),
        "severity": doc.get("severity", ""),
        "category": doc.get("category", ""),
        "area": doc.get("area", ""),
        "areaCode": doc.get("areaCode", ""),
        "validUntil": valid[:16],
        "alertStatus": doc.get("alertStatus", "active"),
        "options": "\n".join(option_names(doc)[0]) if row.kind == Kind.PROPOSAL.value else "",
        "endTime": str(doc.get("endTime", ""))[:16],
        **(_event_values(doc) if row.kind == Kind.EVENT.value else {}),
    }


def _event_values(doc: Mapping[str, Any]) -> dict[str, str]:
    """An event's fields as its form shows them: times in its own zone. The description field
    starts empty: left so, the description is kept (it is stored as HTML, shown above the form)."""
    info = event_wire.read_event(doc)
    if info is None:
        return {}
    place = info.place or event_wire.Place()

    def local(moment: datetime | None) -> str:
        return event_wire.local_time(moment, info.timezone).strftime("%Y-%m-%dT%H:%M") if moment else ""

    parts = (place.name, place.street, place.postal_code, place.locality, place.country)
    return {
        "content": "",
        "startTime": local(info.start),
        "endTime": local(info.end),
        "timezone": info.timezone,
        **{form: part or "" for form, part in zip(PLACE_FORM, parts, strict=True)},
        "onlineUrl": info.online_url or "",
        "joinMode": info.join_mode.value,
        "maximumAttendeeCapacity": str(info.capacity or ""),
        "category": info.category or "",
        "status": info.status.value,
    }


@routes.get(GROUP + "/manage/edit")
async def edit_form(request: web.Request) -> web.Response:
    _, editor = await _editor(request)
    row = await editors.managed_object(request.app[NODE], editor, w.field(request.query, "iri"))
    values = _values_of(row)
    return await form_page(request, editor.group, row.kind, mode="edit", values=values, target=row)


@routes.post(GROUP + "/manage/edit")
async def edit(request: web.Request) -> web.StreamResponse:
    """A new revision (an ``Update``), with its change note; an alert's validity extended here."""
    user, editor = await _editor(request)
    data, staged = await read_form(request, user)
    if staged is not None:
        staged.discard()
    row = await editors.managed_object(request.app[NODE], editor, data.get("iri", ""))
    if data.get("action") == "preview":
        values = {**_values_of(row), **data}
        preview = render_markdown(data.get("content", ""))
        return await form_page(
            request, editor.group, row.kind, mode="edit", values=values, preview=preview, target=row
        )
    try:
        obj = request_of(row.kind, data, editing=True)
        content.check_fields_apply(row.kind, obj)
        await content.update(request.app[FEDERATION], editor.group, {**obj, "id": row.iri}, by=editor.member)
    except (InvalidInput, Forbidden) as exc:
        values = {**_values_of(row), **data}
        errors = refusals(exc)
        return await form_page(
            request, editor.group, row.kind, mode="edit", values=values, errors=errors, status=400, target=row
        )
    raise web.HTTPSeeOther(object_path(row.iri))


async def _act(request: web.Request, action: str) -> web.StreamResponse:
    """Retract, delete or close one of the association's objects (one button each)."""
    user, editor = await _editor(request)
    data, _ = await read_form(request, user)
    row = await editors.managed_object(request.app[NODE], editor, data.get("iri", ""))
    fed = request.app[FEDERATION]
    calls = {"retracted": content.retract_alert, "deleted": content.delete, "closed": polls.close_early}
    try:
        await calls[action](fed, editor.group, row.iri, by=editor.member)
    except (InvalidInput, Conflict) as exc:
        log.info("web action refused", extra={"action": action, "object": row.iri, "error": exc.detail})
        raise web.HTTPSeeOther(f"/groups/{editor.group.handle}/manage?done=refused_{action}") from None
    raise web.HTTPSeeOther(f"/groups/{editor.group.handle}/manage?done={action}")


@routes.post(GROUP + "/manage/retract")
async def retract(request: web.Request) -> web.StreamResponse:
    return await _act(request, "retracted")


@routes.post(GROUP + "/manage/delete")
async def delete(request: web.Request) -> web.StreamResponse:
    return await _act(request, "deleted")


@routes.post(GROUP + "/manage/close")
async def close(request: web.Request) -> web.StreamResponse:
    return await _act(request, "closed")


@routes.post(GROUP + "/manage/endorse")
async def endorse(request: web.Request) -> web.StreamResponse:
    """Co-sign another association's public proposal (the endorsements service checks it)."""
    user, editor = await _editor(request)
    data, _ = await read_form(request, user)
    obj = {"object": data.get("proposal", "").strip(), "content": data.get("statement") or None}
    try:
        await endorsements.endorse(request.app[FEDERATION], editor.group, obj, by=editor.member)
    except (InvalidInput, Forbidden, Conflict) as exc:
        errors = refusals(exc, {"object": "proposal", "content": "statement", "form": "proposal"})
        return await _manage(request, user, editor, errors=errors, values=data, status=400)
    raise web.HTTPSeeOther(f"/groups/{editor.group.handle}/manage?done=endorsed")


@routes.post(GROUP + "/manage/cancel")
async def cancel(request: web.Request) -> web.StreamResponse:
    """Cancel an event (an ``Update`` to everyone concerned), once its box is ticked."""
    user, editor = await _editor(request)
    data, _ = await read_form(request, user)
    row = await editors.managed_object(request.app[NODE], editor, data.get("iri", ""))
    if data.get("confirm") != "1":
        catalogue = i18n.translations(w.language(request, user))
        errors = {"confirm": catalogue.gettext("event_cancel_unconfirmed")}
        return await form_page(
            request, editor.group, row.kind, mode="edit", values=_values_of(row), errors=errors, status=400,
            target=row,
        )  # fmt: skip
    try:
        await events.cancel(request.app[FEDERATION], editor.group, row.iri, by=editor.member)
    except (InvalidInput, NotFound) as exc:
        log.info("web cancel refused", extra={"object": row.iri, "error": exc.detail})
        raise web.HTTPSeeOther(f"/groups/{editor.group.handle}/manage?done=refused_cancelled") from None
    raise web.HTTPSeeOther(f"/groups/{editor.group.handle}/manage?done=cancelled")
