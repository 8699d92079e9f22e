"""WebFinger (RFC 7033) resources and JRD documents, as Mastodon and Lemmy expect them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from .errors import WebFingerError
from .http import AP_CONTENT_TYPE
from .types import Iri, JsonObject

MAX_RESOURCE_LENGTH = 512
AS_TYPE_PROPERTY = "https://www.w3.org/ns/activitystreams#type"
PROFILE_PAGE_REL = "http://webfinger.net/rel/profile-page"
SUBSCRIBE_REL = "http://ostatus.org/schema/1.0/subscribe"


@dataclass(frozen=True, slots=True)
class AcctResource:
    """A parsed ``acct:user@host[:port]`` resource (host lower-cased, kept with its port)."""

    user: str
    host: str

    def __str__(self) -> str:
        return f"acct:{self.user}@{self.host}"


def parse_acct(resource: str) -> AcctResource:
    """Parse ``acct:user@host[:port]``; a leading ``@`` and a missing ``acct:`` are tolerated.

    Raises:
        WebFingerError: the resource is empty, too long or not of that form.
    """
    if not resource or len(resource) > MAX_RESOURCE_LENGTH:
        raise WebFingerError("resource is empty or too long")
    text = unquote(resource.strip())
    if text.startswith("acct:"):
        text = text[5:]
    text = text.removeprefix("@")
    user, sep, host = text.rpartition("@")
    host = host.lower().rstrip(".")  # normalised before the checks: "acct:demo@." has no host
    if not sep or not user or not host or "@" in user:
        raise WebFingerError(f"resource must be acct:user@host, got {resource!r}")
    if any(c in host for c in "/\\ ?#") or any(c in user for c in "/\\ ?#:"):
        raise WebFingerError(f"resource must be acct:user@host, got {resource!r}")
    if any(c.isspace() or not c.isprintable() for c in user + host):
        raise WebFingerError(f"resource must be acct:user@host, got {resource!r}")
    return AcctResource(user=user.lower(), host=host)


def is_http_resource(resource: str) -> bool:
    """True for an ``http(s)://`` resource (Mastodon looks actors up by IRI too)."""
    try:
        parts = urlsplit(resource)
    except ValueError:  # e.g. "https://[x": not a URL at all
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


@dataclass(frozen=True, slots=True)
class WebFingerLink:
    """One actor that answers to the subject, with its AS2 type."""

    actor: Iri
    actor_type: str
    profile_page: Iri


def render_jrd(
    subject: str, links: Sequence[WebFingerLink], *, subscribe_template: str | None = None
) -> JsonObject:
    """Render a JRD answering for one name.

    When a name is both a Person and a Group, both ``self`` links are listed, each with the
    AS2 type property, and the Group last: Mastodon takes the last duplicate (Lemmy does the
    same, docs/interop.md "WebFinger and NodeInfo").
    """
    ordered = sorted(links, key=lambda link: link.actor_type == "Group")
    jrd_links: list[JsonObject] = []
    for link in ordered:
        jrd_links.append({"rel": PROFILE_PAGE_REL, "type": "text/html", "href": link.profile_page})
    for link in ordered:
        jrd_links.append(
            {
                "rel": "self",
                "type": AP_CONTENT_TYPE,
                "href": link.actor,
                "properties": {AS_TYPE_PROPERTY: link.actor_type},
            }
        )
    if subscribe_template:
        jrd_links.append({"rel": SUBSCRIBE_REL, "template": subscribe_template})
    return {"subject": subject, "aliases": [link.actor for link in ordered], "links": jrd_links}


def render_host_meta_xml(origin: str) -> str:
    """The XRD host-meta document pointing at our WebFinger endpoint (RFC 6415)."""
    template = f"{origin}/.well-known/webfinger?resource={{uri}}"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<XRD xmlns="http://docs.oasis-open.org/ns/xri/xrd-1.0">\n'
        f'  <Link rel="lrdd" type="application/jrd+json" template="{template}"/>\n'
        "</XRD>\n"
    )


def render_host_meta_json(origin: str) -> JsonObject:
    return {
        "links": [
            {
                "rel": "lrdd",
                "type": "application/jrd+json",
                "template": f"{origin}/.well-known/webfinger?resource={{uri}}",
            }
        ]
    }
