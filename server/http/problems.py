"""The one table that maps errors to HTTP statuses, and problem+json (RFC 9457) rendering."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson
from aiohttp import web

from federation import errors as fe
from federation.http import PROBLEM_CONTENT_TYPE
from server.services import errors as se

STATUS: Final[Mapping[type[Exception], int]] = {
    fe.PayloadTooLarge: 413,
    fe.MalformedPayload: 400,
    fe.MalformedHeader: 400,
    fe.InvalidDocument: 400,
    fe.WebFingerError: 400,
    fe.KeyFetchTemporaryFailure: 503,
    fe.SignatureError: 401,
    fe.PeerNotAllowed: 403,
    fe.ContextNotAllowed: 400,
    fe.FetchError: 502,
    fe.UnsafeAddress: 400,
    se.NotFound: 404,
    se.Conflict: 409,
    se.InvalidInput: 400,
    se.Unauthorized: 401,
    se.Forbidden: 403,
    se.Gone: 410,
}

TITLES: Final[Mapping[int, str]] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    410: "Gone",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def status_for(error: Exception) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def problem(
    status: int, detail: str, *, code: str | None = None, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    """A problem+json response; ``code`` is our stable machine-readable error code."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if code:
        body["code"] = code
    body.update({k: v for k, v in extra.items() if v is not None})
    return web.Response(
        status=status, body=orjson.dumps(body), content_type=PROBLEM_CONTENT_TYPE, headers=headers
    )


def _timed_out(error: BaseException | None) -> bool:
    """A peer that did not answer in time, possibly wrapped (``fetch`` retries it as temporary)."""
    for _ in range(4):  # the chain is short: transport, fetch, the caller
        if error is None or isinstance(error, fe.FetchTimeout):
            return error is not None
        error = error.__cause__
    return False


def problem_for(error: fe.FederationError | se.ServiceError) -> web.Response:
    field = error.context.get("field") if isinstance(error.context, dict) else None
    if isinstance(error, fe.FetchError):
        # A peer we could not fetch from on the client's behalf: our own words, never the
        # details of the failure (the HTTP client's exception, addresses; security case 61).
        if _timed_out(error):
            return problem(504, "the remote server did not answer in time", code=error.code)
        detail = "the remote server could not be reached or gave no usable answer"
        return problem(502, detail, code=error.code)
    return problem(status_for(error), error.detail, code=error.code, field=field)
