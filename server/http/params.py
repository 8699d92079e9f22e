"""The parsers of request input shared by every route: integer query parameters and JSON bodies.

``str.isdigit()`` is true for ``²`` and ``٣``, which ``int()`` then refuses: an integer parameter
is ASCII digits only, at most 18 of them (it fits a signed 64-bit column), inside the route's
range. A JSON body's nesting is bounded before it is decoded, so the code walking it afterwards
(the NUL check, the schema) never recurses past Python's limit. Either way a bad request is a 400
naming what is wrong, never a 500 (security case 58).
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from aiohttp import web

from federation import errors as fe
from federation.vocab.parse import check_json_depth
from server.services.errors import InvalidInput

MAX_DIGITS: Final = 18


def int_param(
    request: web.Request, name: str, *, minimum: int = 0, maximum: int = 10**MAX_DIGITS - 1
) -> int | None:
    """The query parameter ``name`` as an integer in ``[minimum, maximum]``, or ``None`` when absent."""
    raw = request.query.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_DIGITS) or not minimum <= int(raw) <= maximum:
        raise InvalidInput(f"{name} must be an integer from {minimum} to {maximum}", field=name)
    return int(raw)


def json_value(raw: bytes) -> Any:
    """The JSON value of a request body: UTF-8, nested at most 64 deep (400 otherwise)."""
    try:
        check_json_depth(raw.decode("utf-8"))
        return orjson.loads(raw)
    except UnicodeDecodeError:
        raise fe.MalformedPayload("the body is not UTF-8") from None
    except orjson.JSONDecodeError as exc:
        raise fe.MalformedPayload(f"the body is not valid JSON: {exc}") from None
