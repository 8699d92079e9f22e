"""Sign in and out, and the account's own pages: password, API tokens, sessions, language.

A failed sign-in says the same thing whether or not the account exists, and takes as long
(:func:`server.services.accounts.sessions.sign_in`). Attempts are rate-limited per client address and
per username, so guessing is slow from one place and against one account.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage

from server.appkeys import FEDERATION, NODE
from server.http.media import check_encoding, part_chunks
from server.http.pages import core as w
from server.http.ratelimit import HostRateLimiter, retry_after_header
from server.services.accounts import erasure as accounts
from server.services.accounts import export as export_service
from server.services.accounts import sessions as web_sessions
from server.services.accounts.sessions import SignedIn
from server.services.errors import InvalidInput, NotFound, Unauthorized
from server.services.media import uploads as media_service

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

LOGIN_LIMITER: Final = web.AppKey("login_limiter", HostRateLimiter)
LOGIN_RATE_PER_S: Final = 1 / 30  # one more attempt every 30 s once the burst is spent
LOGIN_BURST: Final = 10


def limiter() -> HostRateLimiter:
    return HostRateLimiter(rate_per_s=LOGIN_RATE_PER_S, burst=LOGIN_BURST)


async def _login_page(
    request: web.Request, *, username: str = "", error: str = "", status: int = 200
) -> web.Response:
    next_path = request.query.get("next", "")
    context = {"username": username, "error": error, "next": next_path if w.safe_next(next_path) else ""}
    return await w.render(request, "login.html", context, status=status, private=True, title="sign_in")


@routes.get("/login")
async def login_form(request: web.Request) -> web.Response:
    if await w.signed_in(request) is not None:
        raise web.HTTPSeeOther("/account")
    return await _login_page(request)


def _over_limit(request: web.Request, username: str) -> float | None:
    limits = request.app[LOGIN_LIMITER]
    by_address = limits.take(f"ip:{request.remote or '?'}")
    by_user = limits.take(f"user:{username.lower()[:64]}")
    waits = [wait for wait in (by_address, by_user) if wait is not None]
    return max(waits) if waits else None


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    previous = await w.signed_in(request)  # signing in again replaces that session
    data = await w.form(request, previous)
    username = w.field(data, "username").strip().removeprefix("@")[:255]
    password = w.field(data, "password")
    wait = _over_limit(request, username)
    if wait is not None:
        response = await _login_page(request, username=username, error="too_many_attempts", status=429)
        response.headers["Retry-After"] = retry_after_header(wait)
        return response
    node = request.app[NODE]
    try:
        async with node.sessions.begin() as session:
            token, _ = await web_sessions.sign_in(
                session,
                username=username,
                password=password,
                user_agent=request.headers.get("User-Agent", ""),
                now=node.clock(),
            )
            if previous is not None:
                await web_sessions.sign_out(session, previous.session.id, now=node.clock())
    except Unauthorized:
        return await _login_page(request, username=username, error="bad_credentials", status=401)
    next_path = request.query.get("next", "")
    response = web.HTTPSeeOther(next_path if w.safe_next(next_path) else "/")
    w.set_session_cookie(response, request, token)  # a new token: any cookie planted before is dropped
    raise response


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    user = await w.signed_in(request)
    if user is not None:
        await w.form(request, user)
        node = request.app[NODE]
        async with node.sessions.begin() as session:
            await web_sessions.sign_out(session, user.session.id, now=node.clock())
    response = web.HTTPSeeOther("/")
    response.del_cookie(w.SESSION_COOKIE, path="/")
    raise response


async def _account_page(
    request: web.Request,
    *,
    errors: dict[str, str] | None = None,
    notice: str = "",
    status: int = 200,
    profile: dict[str, str] | None = None,
) -> web.Response:
    user = await w.require_signed_in(request)
    node = request.app[NODE]
    async with node.sessions() as session:
        memberships = await web_sessions.memberships_of(session, user.actor.id)
    context: dict[str, Any] = {"errors": errors or {}, "notice": notice, "languages": web_sessions.LANGUAGES}
    context["memberships"] = memberships
    context["current_language"] = user.account.language or ""
    # What the member typed is shown again next to its error; else what is stored.
    context["profile"] = profile or {"name": user.actor.name, "summary": user.actor.summary}
    context["discoverable"] = user.actor.discoverable
    context["directory_opt_out"] = user.account.directory_opt_out
    async with node.sessions() as session:
        avatar = await media_service.avatar_of(session, user.actor.id)
    context["avatar_url"] = node.uris.media(avatar.key) if avatar is not None else ""
    context["avatar_max_mb"] = max(1, node.settings.media.max_bytes // (1024 * 1024))
    return await w.render(request, "account.html", context, status=status, title="my_account")


NOTICES: Final = ("password", "language", "profile", "discoverable", "avatar", "avatar_removed", "directory")


@routes.get("/account")
async def account(request: web.Request) -> web.Response:
    done = request.query.get("done", "")
    return await _account_page(request, notice=done if done in NOTICES else "")


@routes.post("/account/password")
async def change_password(request: web.Request) -> web.StreamResponse:
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    node = request.app[NODE]
    try:
        async with node.sessions.begin() as session:
            await web_sessions.change_password(
                session,
                user,
                current=w.field(data, "current_password"),
                new=w.field(data, "new_password"),
                confirm=w.field(data, "confirm"),
                now=node.clock(),
            )
    except InvalidInput as exc:
        errors = {str(exc.context["field"]): exc.detail}
        return await _account_page(request, errors=errors, status=400)
    raise web.HTTPSeeOther("/account?done=password")


@routes.post("/account/language")
async def set_language(request: web.Request) -> web.StreamResponse:
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    node = request.app[NODE]
    try:
        async with node.sessions.begin() as session:
            await web_sessions.set_language(session, user.account.actor_id, w.field(data, "language"))
    except InvalidInput as exc:
        return await _account_page(request, errors={"language": exc.detail}, status=400)
    raise web.HTTPSeeOther("/account?done=language")


async def _tokens_page(
    request: web.Request,
    *,
    label: str = "",
    errors: dict[str, str] | None = None,
    created: str = "",
    status: int = 200,
) -> web.Response:
    user = await w.require_signed_in(request)
    node = request.app[NODE]
    async with node.sessions() as session:
        tokens = await web_sessions.tokens_of(session, user.account.actor_id)
    context = {"tokens": tokens, "label": label, "errors": errors or {}, "created": created}
    return await w.render(request, "tokens.html", context, status=status, title="api_tokens")


@routes.get("/account/tokens")
async def tokens(request: web.Request) -> web.Response:
    return await _tokens_page(request)


@routes.post("/account/tokens")
async def create_token(request: web.Request) -> web.Response:
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    label, scope = w.field(data, "label"), w.field(data, "scope")
    node = request.app[NODE]
    try:
        async with node.sessions.begin() as session:
            token = await web_sessions.new_token(
                session, user.actor, label=label, scope=scope, now=node.clock()
            )
    except InvalidInput as exc:
        return await _tokens_page(
            request, label=label, errors={str(exc.context["field"]): exc.detail}, status=400
        )
    return await _tokens_page(request, created=token)  # shown once, on this page only


def _id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise NotFound("no such item")
    return int(raw)


@routes.post("/account/tokens/{id}/revoke")
async def revoke_token(request: web.Request) -> web.StreamResponse:
    user = await w.require_signed_in(request)
    await w.form(request, user)
    node = request.app[NODE]
    async with node.sessions.begin() as session:
        await web_sessions.revoke_token(session, user.account.actor_id, _id(request), now=node.clock())
    raise web.HTTPSeeOther("/account/tokens")


@routes.get("/account/sessions")
async def sessions(request: web.Request) -> web.Response:
    user = await w.require_signed_in(request)
    node = request.app[NODE]
    async with node.sessions() as session:
        rows = await web_sessions.sessions_of(session, user.account.actor_id, now=node.clock())
    context = {"sessions": rows, "current_id": user.session.id}
    return await w.render(request, "sessions.html", context, title="sessions")


@routes.post("/account/sessions/{id}/revoke")
async def revoke_session(request: web.Request) -> web.StreamResponse:
    user = await w.require_signed_in(request)
    await w.form(request, user)
    node = request.app[NODE]
    async with node.sessions.begin() as session:
        await web_sessions.revoke_session(session, user.account.actor_id, _id(request), now=node.clock())
    raise web.HTTPSeeOther("/" if _id(request) == user.session.id else "/account/sessions")


@routes.get("/account/export")
async def export(request: web.Request) -> web.Response:
    """The member's archive (GDPR art. 15 and 20), as a download; never cached."""
    user = await w.require_signed_in(request)
    node = request.app[NODE]
    async with node.sessions() as session:
        data = await export_service.archive(session, node.uris, user.actor, now=node.clock())
    filename = f"entraide-{user.actor.handle}.zip"
    return web.Response(
        body=data,
        content_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


# --- profile, discoverability and deletion (their data, their rights) -----------------------------


@routes.post("/account/profile")
async def edit_profile(request: web.Request) -> web.StreamResponse:
    """Name and summary (plain text); followers' nodes get an ``Update`` of the profile."""
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    typed = {"name": w.field(data, "name"), "summary": w.field(data, "summary")}
    try:
        await accounts.update_profile(
            request.app[FEDERATION], user.actor.id, name=typed["name"], summary=typed["summary"]
        )
    except InvalidInput as exc:
        errors = {str(exc.context["field"]): exc.detail}
        return await _account_page(request, errors=errors, status=400, profile=typed)
    raise web.HTTPSeeOther("/account?done=profile")


# Field errors of the avatar form, as catalogue keys (the services' details are English).
AVATAR_ERRORS: Final[dict[type[Exception], str]] = {
    media_service.MediaTooLarge: "avatar_too_large",
    media_service.UnsupportedMedia: "avatar_bad_type",
}
AVATAR_STATUS: Final = {"avatar_too_large": 413, "avatar_bad_type": 415}


async def _stage_avatar(request: web.Request, user: SignedIn) -> media_service.StagedUpload:
    """Read the avatar form as a stream: the CSRF token first (a file is never read for a forged
    post), then the image, checked by its bytes and bounded by ``media.max_bytes`` as it arrives.

    Raises:
        web.HTTPForbidden: another site, or no valid CSRF token before the file.
        InvalidInput, MediaTooLarge, UnsupportedMedia: a bad upload (field ``avatar``).
    """
    w.check_origin(request)
    node = request.app[NODE]
    if request.content_type != "multipart/form-data":
        w.check_csrf(request, user, None)  # a browser always sends this form as multipart
    try:
        reader = await request.multipart()
    except (KeyError, ValueError):
        raise web.HTTPBadRequest(text="malformed form") from None
    csrf_ok = False
    staged: media_service.StagedUpload | None = None
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise InvalidInput("avatar_missing", field="avatar")
            if part.name == "csrf" and not csrf_ok:
                w.check_csrf(request, user, (await part.read_chunk(w.MAX_FIELD)).decode("utf-8", "replace"))
                csrf_ok = True
            elif part.name == "avatar" and csrf_ok and staged is None:
                if not part.filename:  # no file chosen: browsers send an empty part
                    await part.release()
                    continue
                check_encoding(part)
                staged = await media_service.stage_upload(
                    node, part_chunks(part), filename=part.filename, allowed=media_service.AVATAR_TYPES
                )
            else:
                if not csrf_ok:
                    w.check_csrf(request, user, None)  # raises: the token comes before anything else
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
    if staged is None:
        raise InvalidInput("avatar_missing", field="avatar")
    return staged


@routes.post("/account/avatar")
async def upload_avatar(request: web.Request) -> web.StreamResponse:
    """A new avatar (PNG, JPEG, WebP or GIF, at most ``media.max_bytes``); the old one is left to
    the unused-uploads cleanup, and followers' nodes get an ``Update`` of the profile."""
    user = await w.require_signed_in(request)
    node = request.app[NODE]
    try:
        staged = await _stage_avatar(request, user)
        media = await media_service.commit_upload(
            node, staged, owner=user.actor, uploaded_by=user.actor, description=""
        )
        await accounts.update_profile(request.app[FEDERATION], user.actor.id, avatar=media.key)
    except (media_service.MediaTooLarge, media_service.UnsupportedMedia) as exc:
        key = AVATAR_ERRORS[type(exc)]
        log.info("avatar refused", extra={"actor": user.actor.iri, "reason": exc.code})
        return await _account_page(request, errors={"avatar": key}, status=AVATAR_STATUS[key])
    except InvalidInput as exc:
        detail = exc.detail if exc.detail == "avatar_missing" else "avatar_bad_type"
        return await _account_page(request, errors={"avatar": detail}, status=400)
    raise web.HTTPSeeOther("/account?done=avatar")


@routes.post("/account/avatar/remove")
async def remove_avatar(request: web.Request) -> web.StreamResponse:
    user = await w.require_signed_in(request)
    await w.form(request, user)
    await accounts.update_profile(request.app[FEDERATION], user.actor.id, avatar="")
    raise web.HTTPSeeOther("/account?done=avatar_removed")


@routes.post("/account/discoverable")
async def set_discoverable(request: web.Request) -> web.StreamResponse:
    """Listed in directories and indexed by search engines, or not (the default)."""
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    choice = w.field(data, "discoverable")
    if choice not in ("yes", "no"):
        return await _account_page(request, errors={"discoverable": "choose yes or no"}, status=400)
    await accounts.update_profile(request.app[FEDERATION], user.actor.id, discoverable=choice == "yes")
    raise web.HTTPSeeOther("/account?done=discoverable")


@routes.post("/account/delete")
async def delete_account(request: web.Request) -> web.Response:
    """Delete the account (GDPR art. 17) once the password is given and the box ticked."""
    user = await w.require_signed_in(request)
    data = await w.form(request, user)
    node = request.app[NODE]
    errors: dict[str, str] = {}
    try:
        async with node.sessions() as session:
            await accounts.check_password(session, user.actor.id, w.field(data, "delete_password"))
    except InvalidInput as exc:
        errors["delete_password"] = exc.detail
    if w.field(data, "delete_confirm") != "yes":
        errors["delete_confirm"] = "tick the box to confirm"
    if errors:
        return await _account_page(request, errors=errors, status=400)
    try:
        await accounts.delete_account(request.app[FEDERATION], user.actor.id, reason="web")
    except NotFound:
        pass  # deleted meanwhile (another tab): the result is the same
    # Its sessions are revoked: the page below is a visitor's, and the cookie goes.
    w.forget_signed_in(request)
    response = await w.render(request, "deleted.html", {}, private=True, title="account_deleted")
    response.del_cookie(w.SESSION_COOKIE, path="/")
    return response
