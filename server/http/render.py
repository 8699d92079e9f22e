"""Response helpers: ActivityPub JSON and JRD (browsers' pages are in :mod:`server.http.pages`)."""

from __future__ import annotations

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
