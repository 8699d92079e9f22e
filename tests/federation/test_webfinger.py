"""federation.webfinger: acct: parsing, JRD rendering as Mastodon and Lemmy read it, host-meta."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from federation.errors import WebFingerError
from federation.types import Iri
from federation.webfinger import (
    AS_TYPE_PROPERTY,
    MAX_RESOURCE_LENGTH,
    PROFILE_PAGE_REL,
    SUBSCRIBE_REL,
    AcctResource,
    WebFingerLink,
    is_http_resource,
    parse_acct,
    render_host_meta_json,
    render_host_meta_xml,
    render_jrd,
)

ORIGIN = "https://entraide.test"
GROUP = WebFingerLink(Iri(f"{ORIGIN}/groups/sante"), "Group", Iri(f"{ORIGIN}/@sante"))
PERSON = WebFingerLink(Iri(f"{ORIGIN}/users/sante"), "Person", Iri(f"{ORIGIN}/@sante.person"))


# --- parse_acct ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ("acct:demo@entraide.test", AcctResource("demo", "entraide.test")),
        ("acct:demo@localhost:8080", AcctResource("demo", "localhost:8080")),  # port kept
        ("@demo@entraide.test", AcctResource("demo", "entraide.test")),  # as typed in a client
        ("demo@entraide.test", AcctResource("demo", "entraide.test")),  # acct: missing
        ("acct%3Ademo%40entraide.test", AcctResource("demo", "entraide.test")),  # percent-encoded
        ("acct:demo%40entraide.test", AcctResource("demo", "entraide.test")),
        ("acct:demo@ENTRAIDE.Test", AcctResource("demo", "entraide.test")),  # host lower-cased
        ("acct:Demo@entraide.test", AcctResource("demo", "entraide.test")),  # user lower-cased
        ("acct:demo@entraide.test.", AcctResource("demo", "entraide.test")),  # FQDN trailing dot
        ("  acct:demo@entraide.test  ", AcctResource("demo", "entraide.test")),  # outer spaces
    ],
)
def test_parse_acct_accepts_the_shapes_peers_send(resource: str, expected: AcctResource) -> None:
    assert parse_acct(resource) == expected


def test_acct_resource_prints_back_as_acct_uri() -> None:
    assert str(parse_acct("@Demo@Localhost:8080")) == "acct:demo@localhost:8080"


@pytest.mark.parametrize(
    "resource",
    [
        "",
        "acct:",
        "acct:@",
        "demo",
        "acct:demo",
        "acct:demo@",
        "acct:@entraide.test",
        "acct:a@b@c",
        "@@entraide.test",
        "acct:demo@entraide.test/groups",
        "acct:demo@entraide.test%2Fgroups",  # the slash, percent-encoded
        "acct:demo@entraide.test?x=1",
        "acct:demo@entraide.test#frag",
        "acct:demo@entraide\\test",
        "acct:de mo@entraide.test",
        "acct:demo@entraide test",
        "acct:demo@entraide.test\tevil",  # a control character inside the host
        "acct:de\x00mo@entraide.test",
        "acct:demo@.",  # only a dot: no host once normalised
        "acct:demo:x@entraide.test",
        "acct:de/mo@entraide.test",
        "acct:demo@" + "a" * MAX_RESOURCE_LENGTH,
    ],
)
def test_parse_acct_refuses_what_is_not_acct_user_at_host(resource: str) -> None:
    """Malformed resources are a 400 problem (``webfinger_invalid``), never a 500."""
    with pytest.raises(WebFingerError) as refused:
        parse_acct(resource)
    assert refused.value.code == "webfinger_invalid"


def test_parse_acct_refuses_an_over_long_resource_before_decoding_it() -> None:
    """The length limit applies to what was sent, so %-encoding cannot smuggle a longer name."""
    resource = "acct:" + "%61" * 200 + "@entraide.test"  # decodes to 200 chars, is 619 sent
    assert len(resource) > MAX_RESOURCE_LENGTH
    with pytest.raises(WebFingerError):
        parse_acct(resource)


def test_http_resources_are_recognised() -> None:
    """Mastodon also looks actors up by their IRI."""
    assert is_http_resource("https://entraide.test/groups/demo")
    assert is_http_resource("http://localhost:8080/users/alice")
    assert not is_http_resource("acct:demo@entraide.test")
    assert not is_http_resource("https://")


# --- render_jrd ------------------------------------------------------------------------------


def self_links(jrd: dict[str, object]) -> list[dict[str, object]]:
    return [link for link in jrd["links"] if link["rel"] == "self"]  # type: ignore[attr-defined, index]


def test_jrd_for_a_group_has_subject_alias_and_a_typed_self_link() -> None:
    """Mastodon requires ``subject`` and a ``self`` link of type activity+json (webfinger.md)."""
    jrd = render_jrd("acct:sante@entraide.test", [GROUP])
    assert jrd["subject"] == "acct:sante@entraide.test"
    assert jrd["aliases"] == [GROUP.actor]
    assert self_links(jrd) == [
        {
            "rel": "self",
            "type": "application/activity+json",
            "href": GROUP.actor,
            "properties": {AS_TYPE_PROPERTY: "Group"},
        }
    ]
    assert AS_TYPE_PROPERTY == "https://www.w3.org/ns/activitystreams#type"


def test_jrd_links_the_profile_page_as_html() -> None:
    jrd = render_jrd("acct:sante@entraide.test", [GROUP])
    pages = [link for link in jrd["links"] if link["rel"] == PROFILE_PAGE_REL]
    assert pages == [{"rel": PROFILE_PAGE_REL, "type": "text/html", "href": GROUP.profile_page}]


@pytest.mark.parametrize(
    "given_order", [[PERSON, GROUP], [GROUP, PERSON]], ids=["person-first", "group-first"]
)
def test_when_a_person_and_a_group_share_a_name_the_group_self_link_comes_last(
    given_order: list[WebFingerLink],
) -> None:
    """Mastodon takes the last duplicate ``self`` link, so the Group must be last.

    Lemmy does the same: LemmyNet/lemmy crates/routes/src/webfinger.rs, "Mastodon seems to
    prioritize the last webfinger item in case of duplicates. Put community last so that it gets
    prioritized." It lists the Person link, then the Group link.
    """
    # Given a name answered by both a member and an association
    # When the JRD is rendered, whatever order storage returned them in
    jrd = render_jrd("acct:sante@entraide.test", given_order)
    # Then both self links are there, each typed, and the Group is last
    assert [(link["href"], link["properties"]) for link in self_links(jrd)] == [
        (PERSON.actor, {AS_TYPE_PROPERTY: "Person"}),
        (GROUP.actor, {AS_TYPE_PROPERTY: "Group"}),
    ]
    assert jrd["links"][-1]["href"] == GROUP.actor
    assert jrd["aliases"] == [PERSON.actor, GROUP.actor]


def test_subscribe_template_is_added_for_remote_follow() -> None:
    template = f"{ORIGIN}/authorize_interaction?uri={{uri}}"
    jrd = render_jrd("acct:sante@entraide.test", [GROUP], subscribe_template=template)
    assert {"rel": SUBSCRIBE_REL, "template": template} in jrd["links"]
    assert SUBSCRIBE_REL == "http://ostatus.org/schema/1.0/subscribe"


def test_no_subscribe_link_without_a_template() -> None:
    jrd = render_jrd("acct:sante@entraide.test", [GROUP])
    assert all(link["rel"] != SUBSCRIBE_REL for link in jrd["links"])


# --- host-meta -------------------------------------------------------------------------------


def test_host_meta_xml_is_well_formed_and_has_the_lrdd_template() -> None:
    """Some older clients discover WebFinger through host-meta (RFC 6415)."""
    # Given the XRD document for our origin
    text = render_host_meta_xml("https://localhost:8443")
    # When an XML parser reads it
    root = ET.fromstring(text.encode("utf-8"))
    # Then it is an XRD with one lrdd link templated on our WebFinger endpoint
    ns = "{http://docs.oasis-open.org/ns/xri/xrd-1.0}"
    assert root.tag == f"{ns}XRD"
    links = root.findall(f"{ns}Link")
    assert [link.attrib for link in links] == [
        {
            "rel": "lrdd",
            "type": "application/jrd+json",
            "template": "https://localhost:8443/.well-known/webfinger?resource={uri}",
        }
    ]


def test_host_meta_json_mirrors_the_xml() -> None:
    assert render_host_meta_json(ORIGIN) == {
        "links": [
            {
                "rel": "lrdd",
                "type": "application/jrd+json",
                "template": f"{ORIGIN}/.well-known/webfinger?resource={{uri}}",
            }
        ]
    }
