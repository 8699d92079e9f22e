"""federation.http: content negotiation, the strict fetched-document check, and Headers.

The Accept headers below are the ones peers really send (docs/interop.md, "Content types and
fetching"), and the browser ones are copied from current Firefox and Chrome.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation.http import (
    AP_ACCEPT,
    AP_CONTENT_TYPE,
    LD_CONTENT_TYPE,
    Headers,
    is_activitypub_media_type,
    is_strict_activitypub_content_type,
    media_type,
    wants_activitypub,
)

FIREFOX_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
CHROME_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,"
    "*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)


# --- wants_activitypub -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "accept",
    [
        pytest.param("application/activity+json, application/ld+json", id="mastodon-fedify"),
        pytest.param("application/activity+json,application/ld+json", id="takahe"),
        pytest.param("application/activity+json", id="lemmy-mobilizon"),
        pytest.param(
            'application/ld+json; profile="https://www.w3.org/ns/activitystreams"', id="spec-ld-profile"
        ),
        pytest.param("application/ld+json", id="ld-without-profile"),
        pytest.param("APPLICATION/ACTIVITY+JSON", id="upper-case"),
        pytest.param(AP_ACCEPT, id="our-own-accept"),
    ],
)
def test_peers_accept_headers_get_activitypub(accept: str) -> None:
    """Every Accept header a known peer sends is answered with the AS2 document."""
    assert wants_activitypub(accept)


@pytest.mark.parametrize(
    "accept",
    [
        pytest.param(FIREFOX_ACCEPT, id="firefox"),
        pytest.param(CHROME_ACCEPT, id="chrome"),
        pytest.param("*/*", id="curl-wildcard"),
        pytest.param("image/png", id="image"),
        pytest.param("application/json", id="plain-json"),
        pytest.param("", id="empty"),
        pytest.param(None, id="absent"),
    ],
)
def test_browsers_and_wildcards_get_html(accept: str | None) -> None:
    """A browser (or a client that takes anything) gets the HTML page, never the JSON."""
    assert not wants_activitypub(accept)


def test_activitypub_refused_with_q_zero_gets_html() -> None:
    """``q=0`` means "not acceptable" (RFC 9110 §12.4.2)."""
    assert not wants_activitypub("application/activity+json;q=0")
    assert not wants_activitypub("text/html, application/activity+json; q=0")


def test_html_preferred_by_quality_gets_html() -> None:
    assert not wants_activitypub("application/activity+json;q=0.5, text/html")


def test_activitypub_preferred_by_quality_gets_activitypub() -> None:
    assert wants_activitypub("text/html;q=0.5, application/activity+json")


def test_equal_quality_tie_goes_to_activitypub() -> None:
    """A client listing both at the same quality is a federation client that also renders HTML."""
    assert wants_activitypub("text/html, application/activity+json")


@pytest.mark.parametrize(
    "accept",
    [
        "application/activity+json;q=abc",
        "application/activity+json;q=",
        "application/activity+json;q=nan",
        ";;;,,,",
        "=;=,=",
        "application/activity+json;=;q",
        '"unterminated',
        "\x00\x01\x02",
        "a" * 10_000,
    ],
)
def test_garbage_accept_values_never_raise(accept: str) -> None:
    """A malformed header must not become a 500; an unreadable quality counts as 0."""
    assert wants_activitypub(accept) in (True, False)


def test_unreadable_quality_counts_as_zero() -> None:
    assert not wants_activitypub("application/activity+json;q=abc")


# --- the strict check on fetched documents (security case 12) --------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/activity+json",
        "application/activity+json; charset=utf-8",
        'application/ld+json; profile="https://www.w3.org/ns/activitystreams"',
        "application/ld+json; profile=https://www.w3.org/ns/activitystreams",
        'application/ld+json;profile="https://www.w3.org/ns/activitystreams"; charset=utf-8',
        LD_CONTENT_TYPE,
        AP_CONTENT_TYPE,
    ],
)
def test_strict_check_accepts_what_lemmy_accepts(content_type: str) -> None:
    """The three shapes activitypub-federation-rust accepts (plus harmless spacing variants)."""
    assert is_strict_activitypub_content_type(content_type)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/ld+json",
        'application/ld+json; profile="https://example.com/not-activitystreams"',
        "text/html",
        "text/plain; charset=utf-8",
        "",
        None,
    ],
)
def test_strict_check_refuses_other_json(content_type: str | None) -> None:
    """``application/json`` and bare ld+json do not identify an AS2 document (GHSA-jhrq-qvrm-qr36)."""
    assert not is_strict_activitypub_content_type(content_type)


def test_lenient_inbox_check_accepts_ld_json_without_profile() -> None:
    """Inbound POSTs are accepted with either AP media type, with or without profile."""
    assert is_activitypub_media_type("application/ld+json")
    assert is_activitypub_media_type("application/activity+json; charset=utf-8")
    assert not is_activitypub_media_type("application/json")


def test_media_type_splits_type_and_parameters() -> None:
    assert media_type('Application/LD+JSON; Profile="x y"; charset=UTF-8') == (
        "application/ld+json",
        {"profile": "x y", "charset": "UTF-8"},
    )
    assert media_type(None) == ("", {})


# --- Headers ----------------------------------------------------------------------------------


def test_headers_are_case_insensitive() -> None:
    headers = Headers({"Content-Type": AP_CONTENT_TYPE})
    assert headers["content-type"] == AP_CONTENT_TYPE
    assert headers["CONTENT-TYPE"] == AP_CONTENT_TYPE
    assert "content-TYPE" in headers
    assert headers.get("Content-type") == AP_CONTENT_TYPE
    assert headers.get("Accept") is None


def test_headers_keep_the_first_spelling_of_a_name() -> None:
    headers = Headers([("X-Custom", "a"), ("x-custom", "b")])
    assert list(headers) == ["X-Custom"]
    assert len(headers) == 1


def test_repeated_headers_are_joined_in_order() -> None:
    """RFC 9110 §5.3: repeated list-valued fields are one field joined with commas."""
    headers = Headers([("Accept", "application/activity+json"), ("accept", "application/ld+json")])
    assert headers["Accept"] == "application/activity+json, application/ld+json"
    assert wants_activitypub(headers["Accept"])


def test_items_give_the_first_spelling_and_the_joined_value() -> None:
    headers = Headers([("X-Custom", "a"), ("Host", "h.example"), ("x-custom", "b")])
    assert list(headers.items()) == [("X-Custom", "a, b"), ("Host", "h.example")]
    assert ("host", "h.example") in headers.items()  # a view: membership is case-insensitive
    assert len(headers.items()) == 2


def test_extended_adds_like_the_constructor_and_leaves_the_original_alone() -> None:
    base = Headers([("Accept", "application/activity+json"), ("Host", "h.example")])
    more = base.extended([("accept", "application/ld+json"), ("Signature", "sig")])
    assert more == Headers([*base.items(), ("accept", "application/ld+json"), ("Signature", "sig")])
    assert list(more) == ["Accept", "Host", "Signature"]
    assert "signature" not in base and base["Accept"] == "application/activity+json"


def test_non_string_keys_are_not_contained() -> None:
    assert 42 not in Headers({"Host": "entraide.test"})


def test_headers_repr_never_shows_values() -> None:
    """Signature and Authorization values must never reach a log line through repr()."""
    # Given headers carrying secrets
    secret_signature = (
        'keyId="https://peer.example/users/alice#main-key",signature="c2VjcmV0LXNpZ25hdHVyZQ=="'
    )
    headers = Headers(
        {"Signature": secret_signature, "Authorization": "Bearer s3cr3t-t0k3n", "Host": "h.example"}
    )
    # When they are formatted the way a logger or a traceback would
    shown = [repr(headers), str(headers), f"{headers!r}", repr([headers])]
    # Then the names appear, the values do not
    for text in shown:
        assert "signature" in text.lower()
        assert "c2VjcmV0LXNpZ25hdHVyZQ" not in text
        assert "s3cr3t-t0k3n" not in text
        assert "h.example" not in text


# --- properties -------------------------------------------------------------------------------


@given(st.text())
def test_wants_activitypub_never_raises_on_arbitrary_text(accept: str) -> None:
    assert isinstance(wants_activitypub(accept), bool)


@given(st.text())
def test_media_type_never_raises_on_arbitrary_text(value: str) -> None:
    kind, params = media_type(value)
    assert kind == kind.lower()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())


@given(st.text())
def test_strict_check_never_raises_on_arbitrary_text(value: str) -> None:
    assert isinstance(is_strict_activitypub_content_type(value), bool)


@given(
    st.lists(st.sampled_from(["text/html", "application/xhtml+xml", "*/*", "image/png", "application/xml"]))
)
def test_accept_without_an_activitypub_type_never_gets_activitypub(types: list[str]) -> None:
    assert not wants_activitypub(", ".join(types))
