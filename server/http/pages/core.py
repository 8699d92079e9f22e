"""What every page shares: who is signed in, the language, CSRF, safe redirects, rendering.

Pages are server-rendered (Jinja2, autoescaped) and work without JavaScript. Every page is
sent with a strict CSP (no script at all, our one stylesheet, ``frame-ancestors 'none'`` against
clickjacking). A page that depends on who is signed in is ``private, no-store``.

CSRF: a signed-in form carries the session's own random ``csrf_token``; the sign-in form, which
has no session yet, carries a random value that must equal its ``entraide_csrf`` cookie (double
submit). A POST whose ``Origin`` is another site is refused as well.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web

from federation.types import utc_now
from server.appkeys import NODE
from server.http import cache
from server.http.auth import viewer_of
from server.http.pages import i18n
from server.services.accounts import sessions as web_sessions
from server.services.accounts.sessions import SignedIn
from server.services.reading import notifications
from server.services.reading.visibility import Viewer, ViewerKind

SESSION_COOKIE: Final = "entraide_session"
LANGUAGE_COOKIE: Final = cache.LANGUAGE_COOKIE
LOGIN_CSRF_COOKIE: Final = "entraide_csrf"
CSP: Final = (
    "default-src 'none'; style-src 'self'; img-src 'self' https:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_SIGNED_IN: Final = web.RequestKey("web_signed_in", object)
_MISSING: Final = object()
MAX_FIELD: Final = 4096


async def signed_in(request: web.Request) -> SignedIn | None:
    """The session behind the request's cookie (looked up once per request), or None."""
    cached = request.get(_SIGNED_IN, _MISSING)
    if cached is not _MISSING:
        return cached if isinstance(cached, SignedIn) else None
    token = request.cookies.get(SESSION_COOKIE, "")
    result: SignedIn | None = None
    if token:
        node = request.app[NODE]
        async with node.sessions.begin() as session:
            result = await web_sessions.lookup(session, token, now=node.clock())
            if result is not None:
                session.expunge_all()  # read after the transaction: plain values, no lazy loads
    request[_SIGNED_IN] = result
    return result


def forget_signed_in(request: web.Request) -> None:
    """This request's session ended while it ran (the account was deleted): render as a visitor."""
    request[_SIGNED_IN] = None


async def require_signed_in(request: web.Request) -> SignedIn:
    """The signed-in account, or a redirect to the sign-in page that comes back here."""
    user = await signed_in(request)
    if user is None:
        raise web.HTTPSeeOther(f"/login?next={request.path_qs if safe_next(request.path_qs) else '/'}")
    return user


async def viewer(request: web.Request) -> Viewer:
    """The reader for the read filter: the signed-in account (as a local viewer), else whoever the
    request's bearer token or HTTP signature names (as for the API), else anonymous."""
    user = await signed_in(request)
    if user is None:
        return await viewer_of(request, require_for_authorized_fetch=False)
    return Viewer(ViewerKind.LOCAL, actor_id=user.actor.id, actor_iri=user.actor.iri, scope="write")


def language(request: web.Request, user: SignedIn | None) -> str:
    """The account's setting, else the visitor's choice (the language cookie), else the browser's
    ``Accept-Language``."""
    if user is not None and user.account.language in i18n.LANGUAGES:
        return str(user.account.language)
    chosen = request.cookies.get(LANGUAGE_COOKIE, "")
    if chosen in i18n.LANGUAGES:
        return chosen
    return i18n.negotiate(request.headers.get("Accept-Language", ""))


def safe_next(value: str) -> bool:
    """Whether ``value`` is a path on this node (``?next=`` never leads to another site)."""
    if not value.startswith("/") or value.startswith(("//", "/\\")) or len(value) > 2048:
        return False
    if any(ord(c) < 0x20 or c in "\\\x7f" for c in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return not parts.scheme and not parts.netloc


def _same_origin(request: web.Request) -> bool:
    """No ``Origin`` (older browsers, scripts) passes: the CSRF token still has to match."""
    origin = request.headers.get("Origin")
    return origin is None or origin == request.app[NODE].uris.origin


async def form(request: web.Request, user: SignedIn | None) -> Mapping[str, Any]:
    """The posted form after the CSRF check; a forged post gets a 403 page.

    Raises:
        web.HTTPForbidden: another site's ``Origin``, a missing or wrong CSRF token.
    """
    check_origin(request)
    data = await request.post()
    check_csrf(request, user, data.get("csrf", ""))
    return data


def check_origin(request: web.Request) -> None:
    """Raises ``web.HTTPForbidden`` for a form posted from another site."""
    if not _same_origin(request):
        raise web.HTTPForbidden(text="this form was sent from another site")


def check_csrf(request: web.Request, user: SignedIn | None, sent: object) -> None:
    """Raises ``web.HTTPForbidden`` unless ``sent`` is the CSRF token of this session (or of the
    sign-in form). For forms read as a stream (uploads), before the file is read."""
    expected = user.session.csrf_token if user is not None else request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent, expected):
        raise web.HTTPForbidden(text="the form expired or was not sent from this site; please try again")


def field(data: Mapping[str, Any], name: str) -> str:
    """A text field of a form (files and absent fields read as ""), bounded in length."""
    value = data.get(name, "")
    return value[:MAX_FIELD] if isinstance(value, str) else ""


def secure_cookies(request: web.Request) -> bool:
    """Cookies get ``Secure`` when the node is served over https (its origin, or a TLS connection)."""
    return request.app[NODE].uris.origin.startswith("https://") or request.secure


def set_session_cookie(response: web.StreamResponse, request: web.Request, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(web_sessions.SESSION_LIFETIME.total_seconds()),
        path="/",
        httponly=True,
        samesite="Lax",
        secure=secure_cookies(request),
    )


def login_csrf(request: web.Request) -> str:
    """The sign-in form's CSRF value: the browser's existing cookie, or a new one set on render."""
    value = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return value if 20 <= len(value) <= 64 and value.isascii() else secrets.token_urlsafe(24)


def security_headers(response: web.StreamResponse, *, private: bool) -> None:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "private, no-store" if private else "public, max-age=60"
    response.headers["Vary"] = "Accept, Accept-Language, Cookie"


async def render(
    request: web.Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    private: bool = False,
    title: str = "",
    raw_title: str = "",
) -> web.Response:
    """Render a page in the reader's language with the layout's common values.

    ``title`` is a catalogue key, ``raw_title`` a text of the page's own (a name) shown as is.
    A page shown to a signed-in reader is always private (it names them and carries their CSRF
    token); ``private`` also makes an anonymous page private (forms, members-only content).
    """
    user = await signed_in(request)
    lang = language(request, user)
    catalogue = i18n.translations(lang)
    login_token = _LoginToken(request) if user is None else None
    csrf = user.session.csrf_token if user is not None else login_token
    unread = await _unread(request, user) if user is not None else 0
    values = {
        "_": catalogue.gettext,
        "unread": unread,
        "languages": i18n.LANGUAGES,
        "ngettext": catalogue.ngettext,
        "lang": lang,
        "user": user,
        "csrf": csrf,
        "host": request.app[NODE].uris.host,
        "path": request.path_qs,
        "title": title,
        "raw_title": raw_title,
        "date": lambda value: _date(value, lang),
        **context,
    }
    response = aiohttp_jinja2.render_template(template, request, values, status=status)
    response.headers["Content-Language"] = lang
    security_headers(response, private=private or user is not None)
    drawn = login_token.value if login_token is not None else None
    if drawn is not None and request.cookies.get(LOGIN_CSRF_COOKIE) != drawn:
        response.set_cookie(
            LOGIN_CSRF_COOKIE, drawn, path="/", httponly=True, samesite="Lax", secure=secure_cookies(request)
        )
    return response


class _LoginToken:
    """The sign-in CSRF value of a visitor, drawn only when a template writes it.

    A page without a form sets no cookie, so that a page answers the same bytes and headers
    to everyone it answers alike (a hidden object's 404 page is exactly a missing one's).
    """

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self.value: str | None = None

    def __str__(self) -> str:
        if self.value is None:
            self.value = login_csrf(self._request)
        return self.value

    def __html__(self) -> str:  # Jinja's autoescape: the value is URL-safe base64
        return str(self)


async def _unread(request: web.Request, user: SignedIn) -> int:
    """How many of the member's notifications are unread (shown in the navigation)."""
    node = request.app[NODE]
    reader = Viewer(ViewerKind.LOCAL, actor_id=user.actor.id, actor_iri=user.actor.iri, scope="write")
    async with node.sessions() as session:
        return await notifications.unread_count(
            session, reader, now=node.clock(), reminder_before=node.settings.events.reminder_before
        )


def _date(value: datetime | None, lang: str) -> str:
    return i18n.format_date(value, lang) if value is not None else ""


def now(request: web.Request) -> datetime:
    node = request.app.get(NODE)
    return node.clock() if node is not None else utc_now()
