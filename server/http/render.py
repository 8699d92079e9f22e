"""Response helpers: ActivityPub JSON, JRD, and the minimal HTML pages for browsers."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web

from federation.http import AP_CONTENT_TYPE, wants_activitypub


def json_response(
    doc: Any,
    *,
    content_type: str = "application/json",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type=content_type, headers=headers)


def activity_response(doc: Any, *, private: bool = False) -> web.Response:
    """An AS2 document. ``Vary: Accept`` always (the same URL serves HTML); private ones are never cached."""
    headers = {"Vary": "Accept, Authorization, Signature"}
    headers["Cache-Control"] = "private, no-store" if private else "public, max-age=60"
    return json_response(doc, content_type=AP_CONTENT_TYPE, headers=headers)


def wants_ap(request: web.Request) -> bool:
    return wants_activitypub(request.headers.get("Accept"))


def html_page(
    *,
    title: str,
    body_html: str,
    alternate: str | None = None,
    feeds: Sequence[tuple[str, str, str]] = (),
    private: bool = False,
    meta: Sequence[tuple[str, str]] = (),
) -> web.Response:
    """A small, self-contained HTML page; every dynamic value is escaped by the caller or here.

    ``feeds`` are ``(media type, href, title)`` of the page's feeds, announced with
    ``<link rel="alternate">`` so that browsers and feed readers find them. ``meta`` are
    ``(property, content)`` pairs (Open Graph, ``description``) for link previews.
    """
    alt = (
        f'<link rel="alternate" type="{AP_CONTENT_TYPE}" href="{html.escape(alternate, quote=True)}">'
        if alternate
        else ""
    )
    alt += "".join(
        f'<link rel="alternate" type="{html.escape(media_type, quote=True)}" '
        f'href="{html.escape(href, quote=True)}" title="{html.escape(feed_title, quote=True)}">'
        for media_type, href, feed_title in feeds
    )
    alt += "".join(
        f'<meta {"name" if prop == "description" else "property"}="{html.escape(prop, quote=True)}" '
        f'content="{html.escape(content, quote=True)}">'
        for prop, content in meta
    )
    page = (
        '<!doctype html><html lang="fr"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>{alt}</head><body>{body_html}</body></html>"
    )
    headers = {
        "Vary": "Accept, Authorization",
        "Cache-Control": "private, no-store" if private else "public, max-age=60",
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https:; frame-ancestors 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }
    return web.Response(text=page, content_type="text/html", headers=headers)
