"""Errors raised by services; ``server/http/problems.py`` maps them to HTTP statuses."""

from __future__ import annotations

from typing import ClassVar


class ServiceError(Exception):
    """Base class of every service error; ``code`` is stable and machine-readable."""

    code: ClassVar[str] = "service_error"

    def __init__(self, detail: str, **context: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.context = context


class NotFound(ServiceError):
    """The thing does not exist, or the viewer may not know that it exists."""

    code = "not_found"


class Conflict(ServiceError):
    """The thing already exists with different attributes."""

    code = "conflict"


class InvalidInput(ServiceError):
    """A value given by the caller is invalid; ``field`` names it."""

    code = "invalid_input"


class Unauthorized(ServiceError):
    """No valid credentials were presented."""

    code = "unauthorized"


class Forbidden(ServiceError):
    """The caller is known but not allowed to do this."""

    code = "forbidden"


class Gone(ServiceError):
    """The thing existed but cannot be used any more (an expired or revoked link)."""

    code = "gone"
