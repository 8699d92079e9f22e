"""The exception hierarchy of the protocol library.

Every error subclasses :class:`FederationError` (never ``BaseException``) and carries a stable,
machine-readable ``code``. ``server/http/problems.py`` is the only place that maps these classes
to HTTP statuses.
"""

from __future__ import annotations

from typing import ClassVar


class FederationError(Exception):
    """Base class of every error raised by the protocol library."""

    code: ClassVar[str] = "federation_error"

    def __init__(self, detail: str = "", **context: object) -> None:
        super().__init__(detail or self.__class__.__doc__ or self.code)
        self.detail = detail or (self.__class__.__doc__ or self.code).strip()
        self.context = context


class MalformedPayload(FederationError):
    """The body is not valid JSON, not a JSON object, or is nested too deeply."""

    code = "malformed_payload"


class PayloadTooLarge(FederationError):
    """The body exceeds the configured size limit."""

    code = "payload_too_large"


class InvalidDocument(FederationError):
    """The document is JSON but does not have the shape we require (schema or field rules)."""

    code = "invalid_document"


class MalformedHeader(FederationError):
    """A Signature, Signature-Input, Digest or Content-Digest header cannot be parsed."""

    code = "malformed_header"


class SignatureError(FederationError):
    """The request's signature is missing, malformed or does not verify."""

    code = "signature_invalid"


class SignatureMissing(SignatureError):
    """The request carries no HTTP signature."""

    code = "signature_missing"


class DigestMismatch(SignatureError):
    """The Digest or Content-Digest header does not match the body."""

    code = "digest_mismatch"


class SignatureExpired(SignatureError):
    """The signature's date is outside the accepted time window."""

    code = "signature_expired"


class InsufficientCoverage(SignatureError):
    """The signature does not cover the components we require."""

    code = "signature_coverage"


class KeyUnavailable(SignatureError):
    """The signing key could not be obtained or is unusable."""

    code = "key_unavailable"


class KeyFetchTemporaryFailure(FederationError):
    """The signing key could not be fetched because of a transient network error."""

    code = "key_fetch_temporary"


class KeyOwnerMismatch(SignatureError):
    """The signing key does not belong to the activity's actor."""

    code = "key_owner_mismatch"


class PeerNotAllowed(FederationError):
    """The peer's host is blocked, or not on the allowlist of a closed network."""

    code = "peer_not_allowed"


class UnsafeAddress(FederationError):
    """An outgoing request targets a private, loopback, link-local or otherwise special address."""

    code = "unsafe_address"


class FetchError(FederationError):
    """A remote document could not be fetched or is not acceptable."""

    code = "fetch_failed"


class ResponseTooLarge(FetchError):
    """A remote response exceeded the byte limit."""

    code = "response_too_large"


class WrongOrigin(FetchError):
    """A fetched document's ``id`` does not match the URL it was fetched from."""

    code = "wrong_origin"


# Transport errors: raised by federation.transport, named by fetch and lookup without aiohttp.


class FetchTimeout(FetchError):
    """The peer did not answer within the connect, read or total deadline."""

    code = "fetch_timeout"


class ConnectionFailed(FetchError):
    """The connection failed: DNS error, refused, reset, TLS failure or a malformed response."""

    code = "connection_failed"


class InvalidUrl(FetchError):
    """The URL (or a redirect's ``Location``) is malformed, has no host, or carries userinfo."""

    code = "invalid_url"


class TooManyRedirects(FetchError):
    """The redirect chain is longer than the configured limit."""

    code = "too_many_redirects"


class RedirectLoop(FetchError):
    """A redirect leads back to a URL already visited in the same chain."""

    code = "redirect_loop"


class InsecureRedirect(FetchError):
    """A redirect would downgrade from https to http."""

    code = "insecure_redirect"


class ContentDecodingFailed(FetchError):
    """The response uses an unsupported ``Content-Encoding`` or its compressed body is corrupt."""

    code = "content_decoding_failed"


class UnsupportedScheme(UnsafeAddress):
    """The URL's scheme is not http or https (``data:``, ``file:``, ``gopher:`` …)."""

    code = "unsupported_scheme"


class ContextNotAllowed(FederationError):
    """A JSON-LD context outside the preloaded set was requested; nothing is fetched."""

    code = "context_not_allowed"


class WebFingerError(FederationError):
    """A WebFinger resource is malformed or cannot be resolved."""

    code = "webfinger_invalid"
