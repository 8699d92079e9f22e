"""Property tests: attacker-controlled text never breaks the parsers, the sanitiser or the limits.

security.md §2.7, item 9, and §0 ("anything caused by attacker input: never 5xx"):

* the draft-cavage ``Signature`` parser, the RFC 9421 ``Signature-Input``/``Signature`` parsers,
  the ``Digest``/``Content-Digest`` parsers and the whole key-independent verification raise
  nothing but :class:`~federation.errors.FederationError` subclasses, on any text;
* the HTML sanitiser never raises, keeps only allowlisted tags, attributes and classes, leaves no
  ``javascript:``/``data:`` URL and no event handler, and is idempotent;
* the JSON depth and size limits hold: deep input is refused with ``malformed_payload``, never a
  ``RecursionError``, and whatever is accepted really is within the limit.

Strategies mix unconstrained text with grammar-shaped near-misses, so the interesting branches
(quoted strings, structured-field parameters, dates at the edge of ``datetime``) are reached.
Each property runs at most 200 examples; the module takes a few seconds.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Coroutine
from datetime import UTC
from html.parser import HTMLParser
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from federation.errors import (
    FederationError,
    MalformedHeader,
    MalformedPayload,
    PayloadTooLarge,
    SignatureError,
    SignatureExpired,
)
from federation.http import Headers, IncomingRequest
from federation.inbox import Ignored, InboundActivity, InboxDeps, receive
from federation.memory import MemoryKeyResolver
from federation.policy import PeerPolicy
from federation.signatures import cavage, rfc9421, sign_request, verify_request
from federation.signatures.digest import (
    check_body_digest,
    compute_content_digest,
    compute_digest,
    parse_content_digest,
    parse_digest,
)
from federation.types import Iri
from federation.uris import UriScheme
from federation.vocab.parse import MAX_JSON_BYTES, MAX_JSON_DEPTH, decode_json_object
from server.services.content.sanitize import (
    ALLOWED_ATTRIBUTES,
    ALLOWED_CLASSES,
    ALLOWED_TAGS,
    MAX_OUTPUT_CHARS,
    URL_SCHEMES,
    plain_text,
    sanitize_html,
)
from tests.federation.signature_fixtures import ALICE, ALICE_ED, ALICE_IRI, INBOX_URL, NOW, post, received

T = TypeVar("T")

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW_TS = int(NOW.timestamp())
KEYS = MemoryKeyResolver([ALICE.public, ALICE_ED.public])


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


# =============================================================================================
# HTTP signature and digest headers
# =============================================================================================

# Timestamps at the edges of what datetime can hold, plus "now" so that window checks pass and
# later checks are reached.
_EDGE_TIMES = [0, 1, NOW_TS, NOW_TS - 30, NOW_TS + 30, 253402300799, 253402300800, 10**15 - 1]
_unix_text = st.one_of(
    st.sampled_from([str(t) for t in _EDGE_TIMES] + [f"{NOW_TS}.5", "253402300799.999999999", ""]),
    st.integers(0, 10**16).map(str),
    st.text("0123456789.-e", max_size=20),
)

# HTTP dates: IMF-fixdate and obsolete shapes with extreme years and time-zone offsets.
_MONTHS = ["Jan", "Feb", "Mar", "Dec", "Foo"]
_http_dates = st.one_of(
    st.builds(
        "{}, {:02d} {} {} {:02d}:{:02d}:{:02d} {}".format,
        st.sampled_from(["Sat", "Fri", "Xyz"]),
        st.integers(0, 40),
        st.sampled_from(_MONTHS),
        st.one_of(st.integers(0, 10000), st.sampled_from([1, 99, 100, 1969, 2025, 9999])),
        st.integers(0, 25),
        st.integers(0, 61),
        st.integers(0, 61),
        st.one_of(
            st.sampled_from(["GMT", "UT", "-0000", "+0000", "-2359", "+2359", "-9999", "EST", "Z", ""]),
            st.builds("{}{:04d}".format, st.sampled_from("+-"), st.integers(0, 9999)),
        ),
    ),
    st.text(max_size=40),
)

_COVERED = [
    "(request-target)",
    "host",
    "date",
    "digest",
    "(created)",
    "(expires)",
    "(unknown)",
    "content-type",
    "HOST",
    "x-missing",
]
_cavage_headers_param = st.lists(st.sampled_from(_COVERED), max_size=6).map(" ".join)
_b64 = st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode())
_cavage_values = {
    "keyId": st.sampled_from(
        [ALICE.key_id, ALICE_ED.key_id, "acct:alice@peer.example", "https://peer.example/k", "", 'k\\"x']
    ),
    "algorithm": st.sampled_from(["rsa-sha256", "hs2019", "HS2019", "hmac-sha256", "ed25519", ""]),
    "headers": _cavage_headers_param,
    "signature": st.one_of(_b64, st.sampled_from(["", "===", "AAAA", "not base64!"])),
    "created": _unix_text,
    "expires": _unix_text,
    "x": st.text(max_size=10),
}


@st.composite
def cavage_headers(draw: st.DrawFn) -> str:
    """A ``Signature`` header: well-formed parameters, quoted or bare, with odd separators."""
    names = draw(st.lists(st.sampled_from(list(_cavage_values)), max_size=7))
    parts: list[str] = []
    for name in names:
        value = draw(_cavage_values[name])
        spelled = draw(st.sampled_from([name, name.lower(), name.upper()]))
        if draw(st.booleans()):
            value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{spelled}{draw(st.sampled_from(['=', ' = ', '']))}{value}")
    separator = draw(st.sampled_from([",", ", ", ",,", " ,", ";"]))
    return separator.join(parts)


_any_header_text = st.one_of(st.text(max_size=200), st.text(st.characters(codec="ascii"), max_size=200))


@PROPERTY
@given(st.one_of(cavage_headers(), _any_header_text))
def test_cavage_signature_parser_raises_only_malformed_header(value: str) -> None:
    """parse_signature_header is total; what it returns satisfies its documented guarantees."""
    try:
        parsed = cavage.parse_signature_header(value)
    except MalformedHeader:
        return
    assert parsed.key_id and isinstance(parsed.signature, bytes)
    assert all(name == name.lower() for name in parsed.headers)
    assert len(set(parsed.headers)) == len(parsed.headers)
    for text in (parsed.created, parsed.expires):
        assert text is None or re.fullmatch(r"[0-9.]+", text)


@PROPERTY
@given(_http_dates)
@example("Fri, 31 Dec 9999 23:00:00 -0200")  # a year past 9999 once converted to UTC
def test_http_date_parser_is_total(value: str) -> None:
    """A Date header is a UTC datetime or SignatureExpired, never OverflowError or ValueError."""
    try:
        parsed = cavage.parse_http_date(value)
    except SignatureExpired:
        return
    assert parsed.tzinfo is not None and parsed.utcoffset() == UTC.utcoffset(None)


_methods = st.sampled_from(["POST", "GET", "get", "HEAD", "PUT"])
_targets = st.one_of(
    st.sampled_from(["/groups/collectif/inbox", "/inbox?x=1", "/inbox%0Adate:%20Mon", "/a b", "", "*"]),
    st.text(max_size=30),
)


@st.composite
def cavage_requests(draw: st.DrawFn) -> IncomingRequest:
    headers: list[tuple[str, str]] = [("Signature", draw(cavage_headers()))]
    if draw(st.booleans()):
        headers.append(("Date", draw(_http_dates)))
    if draw(st.booleans()):
        headers.append(("Host", draw(st.sampled_from(["entraide.test", "", "a\nb", "x" * 300]))))
    body = draw(st.sampled_from([b"", b"{}", b'{"type":"Follow"}']))
    if draw(st.booleans()):
        headers.append(("Digest", draw(st.sampled_from([compute_digest(body), "SHA-256=AAAA", "x"]))))
    target = draw(_targets)
    return IncomingRequest(draw(_methods), f"https://entraide.test{target}", target, Headers(headers), body)


def _hs2019_expires_request(expires: int) -> IncomingRequest:
    """A request whose signed (expires) is at the very end of datetime's range."""
    header = (
        f'keyId="{ALICE_ED.key_id}",algorithm="hs2019",headers="(request-target) host (created) (expires)",'
        f'created={NOW_TS},expires={expires},signature="AAAA"'
    )
    return IncomingRequest(
        "GET", INBOX_URL, "/groups/collectif/inbox", Headers({"Host": "entraide.test", "Signature": header})
    )


@PROPERTY
@given(cavage_requests())
@example(_hs2019_expires_request(253402300799))  # expires + clock-skew margin overflows datetime
@example(
    IncomingRequest(
        "GET",
        INBOX_URL,
        "/groups/collectif/inbox",
        Headers(
            {
                "Host": "entraide.test",
                "Date": "Fri, 31 Dec 9999 23:00:00 -0200",
                "Signature": f'keyId="{ALICE.key_id}",algorithm="rsa-sha256",'
                'headers="(request-target) host date",signature="AAAA"',
            }
        ),
    )
)
def test_cavage_checks_before_the_key_raise_only_federation_errors(request_: IncomingRequest) -> None:
    """Everything cavage.prepare_verification does with a request is refused cleanly or passes."""
    try:
        cavage.prepare_verification(request_, now=NOW)
    except FederationError:
        pass


# --- RFC 9421 ----------------------------------------------------------------------------------

_components = st.sampled_from(
    [
        '"@method"',
        '"@target-uri"',
        '"@authority"',
        '"@path"',
        '"@query"',
        '"@query-param";name="x"',
        '"@status"',
        '"@request-response"',
        '"@signature-params"',
        '"content-digest"',
        '"content-digest";sf',
        '"content-digest";bs',
        '"date"',
        '"host"',
        '"x-missing"',
        '"x-missing";key="a"',
        '"@unknown"',
        "@method",
        "?1",
        "1.5",
        ":AAAA:",
        '"MIXED-Case"',
    ]
)
_sf_param_values = st.one_of(
    st.sampled_from(
        [
            f'"{ALICE.key_id}"',
            f'"{ALICE_ED.key_id}"',
            '"acct:alice@peer.example"',
            '""',
            "token",
            "?1",
            "?0",
            "1.5",
            ":AAAA:",
            '"ed25519"',
            '"rsa-v1_5-sha256"',
            '"hmac-sha256"',
            '"rsa-pss-sha512"',
        ]
    ),
    st.sampled_from([*_EDGE_TIMES, -1, -62135596800, -62135596801, 999999999999999, -999999999999999]).map(
        str
    ),
    st.text('abc"\\:;=?*0123456789 ', max_size=12),
)


@st.composite
def signature_inputs(draw: st.DrawFn) -> tuple[str, str]:
    """A ``Signature-Input``/``Signature`` pair: structured-field shaped, sometimes broken."""
    labels = draw(st.lists(st.sampled_from(["sig1", "sig2", "Sig", "a*b", ""]), min_size=1, max_size=2))
    inputs, values = [], []
    for label in labels:
        members = " ".join(draw(st.lists(_components, max_size=5)))
        params = "".join(
            f";{name}={draw(_sf_param_values)}"
            for name in draw(
                st.lists(st.sampled_from(["created", "expires", "keyid", "alg", "nonce", "tag", "KEYID"]))
            )
        )
        inputs.append(f"{label}=({members}){params}")
        values.append(
            f"{draw(st.sampled_from([label, 'other']))}={draw(st.sampled_from([':', '']))}"
            f"{draw(_b64)}{draw(st.sampled_from([':', '']))}"
        )
    return ", ".join(inputs), ", ".join(values)


@PROPERTY
@given(st.one_of(signature_inputs(), st.tuples(_any_header_text, _any_header_text)))
def test_rfc9421_parser_raises_only_malformed_header_or_signature_error(pair: tuple[str, str]) -> None:
    """parse_signature_headers is total and its result has the documented shape."""
    try:
        parsed = rfc9421.parse_signature_headers(*pair)
    except (MalformedHeader, SignatureError):
        return
    assert parsed.key_id and parsed.signature
    assert parsed.created is None or type(parsed.created) is int
    assert parsed.expires is None or type(parsed.expires) is int


@st.composite
def rfc9421_requests(draw: st.DrawFn) -> IncomingRequest:
    signature_input, signature = draw(signature_inputs())
    body = draw(st.sampled_from([b"", b"{}"]))
    headers = [("Signature-Input", signature_input), ("Signature", signature)]
    if draw(st.booleans()):
        headers.append(
            ("Content-Digest", draw(st.sampled_from([compute_content_digest(body), "sha-256=:AAAA:", "x"])))
        )
    if draw(st.booleans()):
        headers.append(("Date", draw(_http_dates)))
    target = draw(_targets)
    url = draw(st.sampled_from([f"https://entraide.test{target}", "entraide.test", ""]))
    return IncomingRequest(draw(_methods), url, target, Headers(headers), body)


def _rfc9421_expires_request(expires: int) -> IncomingRequest:
    signature_input = (
        f'sig1=("@method" "@target-uri");created={NOW_TS};expires={expires};keyid="{ALICE.key_id}"'
    )
    return IncomingRequest(
        "GET",
        INBOX_URL,
        "/groups/collectif/inbox",
        Headers({"Signature-Input": signature_input, "Signature": "sig1=:AAAA:"}),
    )


@PROPERTY
@given(rfc9421_requests())
@example(_rfc9421_expires_request(253402300799))  # expires + clock-skew margin overflows datetime
def test_rfc9421_checks_before_the_key_raise_only_federation_errors(request_: IncomingRequest) -> None:
    """Everything rfc9421.prepare_verification does with a request is refused cleanly or passes."""
    try:
        rfc9421.prepare_verification(request_, now=NOW)
    except FederationError:
        pass


@PROPERTY
@given(st.one_of(cavage_requests(), rfc9421_requests()))
@example(_hs2019_expires_request(253402300799))
@example(_rfc9421_expires_request(253402300799))
def test_verify_request_raises_only_federation_errors(request_: IncomingRequest) -> None:
    """Through key lookup and the cryptography (alice's keys are known): only FederationError."""
    try:
        run(verify_request(request_, resolve_key=KEYS, now=NOW))
    except FederationError:
        pass


@PROPERTY
@given(st.sampled_from(["cavage", "rfc9421"]), st.binary(max_size=64), st.data())
def test_verify_request_on_tampered_genuine_requests(spec: str, body: bytes, data: st.DataObject) -> None:
    """A genuine signed POST with one header replaced by generated text: refused cleanly or valid."""
    signed = sign_request(post(INBOX_URL, body), ALICE, now=NOW, spec=spec)  # type: ignore[arg-type]
    name = data.draw(
        st.sampled_from(["Signature", "Signature-Input", "Digest", "Content-Digest", "Date", "Host"])
    )
    value = data.draw(
        st.one_of(cavage_headers(), signature_inputs().map(lambda p: p[0]), _http_dates, _any_header_text)
    )
    request_ = received(signed, set_headers={name: value})
    try:
        signer = run(verify_request(request_, resolve_key=KEYS, now=NOW))
    except FederationError:
        return
    assert signer.owner == ALICE_IRI


# --- Digest and Content-Digest -----------------------------------------------------------------

_digest_algorithms = st.sampled_from(["SHA-256", "sha-256", "Sha-256", "SHA-512", "md5", "", "sha-256 "])
_digest_like = st.builds(
    "{}{}{}".format,
    _digest_algorithms,
    st.sampled_from(["=", "=:", ":", "==", ""]),
    st.one_of(_b64, st.text(max_size=20)),
)
_content_digest_like = st.builds(
    "{}={}{}{}{}".format,
    _digest_algorithms,
    st.sampled_from([":", "", '"', "?"]),
    _b64,
    st.sampled_from([":", "", '"']),
    st.sampled_from(["", ";a=1", ", sha-256=:AAAA:", ", sha-512=:AAAA:", ",", " x", ";sf"]),
)


@PROPERTY
@given(st.one_of(_digest_like, st.lists(_digest_like, max_size=4).map(",".join), _any_header_text))
def test_digest_parser_returns_32_bytes_or_malformed_header(value: str) -> None:
    try:
        assert len(parse_digest(value)) == 32
    except MalformedHeader:
        pass


@PROPERTY
@given(st.one_of(_content_digest_like, _any_header_text))
def test_content_digest_parser_returns_32_bytes_or_malformed_header(value: str) -> None:
    try:
        assert len(parse_content_digest(value)) == 32
    except MalformedHeader:
        pass


@PROPERTY
@given(st.one_of(_digest_like, _any_header_text), st.one_of(_content_digest_like, _any_header_text))
def test_body_digest_check_raises_only_documented_errors(digest: str, content_digest: str) -> None:
    try:
        check_body_digest(Headers({"Digest": digest, "Content-Digest": content_digest}), b"{}")
    except (MalformedHeader, SignatureError):
        pass


# =============================================================================================
# The HTML sanitiser
# =============================================================================================

_DANGEROUS_TAGS = [
    "script",
    "style",
    "img",
    "iframe",
    "svg",
    "math",
    "form",
    "input",
    "button",
    "template",
    "noscript",
    "textarea",
    "xmp",
    "plaintext",
    "title",
    "object",
    "embed",
    "base",
    "meta",
    "link",
    "table",
    "select",
    "video",
    "foreignObject",
    "annotation-xml",
    "mglyph",
    "image",
    "marquee",
    "applet",
]
# Elements that open a new scope for <a> (HTML's "has an element in scope"): once the sanitiser
# strips them, <a> can end up inside <a>, which the next parse splits into siblings.
_SCOPE_BOUNDARIES = frozenset({"table", "object", "select", "marquee", "applet"})
_attribute_names = st.sampled_from(
    [
        "href",
        "src",
        "class",
        "title",
        "start",
        "value",
        "reversed",
        "translate",
        "rel",
        "style",
        "onclick",
        "OnError",
        "onmouseover",
        "formaction",
        "xlink:href",
        "srcset",
        "action",
        "target",
        "id",
        "data-x",
    ]
)
_URL_PIECES = [
    "javascript:",
    "JaVaScRiPt:",
    "java\tscript:",
    "java&#x09;script:",
    "javascript&colon;",
    "&#106;avascript:",
    " javascript:",
    "\x01javascript:",
    "data:",
    "DATA:text/html;base64,PHNjcmlwdD4=",
    "vbscript:",
    "http://",
    "https://peer.example/@a",
    "mailto:a@b",
    "//evil.example",
    "alert(1)",
    "h-card",
    "mention evil",
    "u-url",
    "hashtag",
    "&quot;",
    '"',
    "'",
    ">",
    "1",
    "x",
]
_attribute_values = st.lists(st.sampled_from(_URL_PIECES), max_size=3).map("".join)


def _html_strategy(tags: list[str]) -> st.SearchStrategy[str]:
    tag = st.sampled_from(tags)

    @st.composite
    def start_tag(draw: st.DrawFn) -> str:
        attributes = []
        for _ in range(draw(st.integers(0, 3))):
            name, value = draw(_attribute_names), draw(_attribute_values)
            quote = draw(st.sampled_from(['"', "'", ""]))
            attributes.append(f" {name}={quote}{value}{quote}")
        return f"<{draw(tag)}{''.join(attributes)}{draw(st.sampled_from(['>', '/>', ' >']))}"

    pieces = st.one_of(start_tag(), tag.map(lambda t: f"</{t}>"), _other_pieces)
    return st.one_of(st.lists(pieces, max_size=25).map("".join), st.text(max_size=200))


_other_pieces = st.sampled_from(
    [
        "\n",
        "\r\n",
        "\t",
        " ",
        "text",
        "é",
        "&amp;",
        "&lt;script&gt;",
        "&",
        "<",
        ">",
        "<!-- c -->",
        "<!--",
        "-->",
        "<![CDATA[x]]>",
        "<!DOCTYPE html>",
        "<?xml x?>",
        "\x00",
        "\x0c",
    ]
)
_html = _html_strategy(sorted(ALLOWED_TAGS) + _DANGEROUS_TAGS)


class _Collector(HTMLParser):
    """Everything an HTML reader would act on: elements, attributes with values, markup oddities."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.oddities: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, attrs))

    def handle_comment(self, data: str) -> None:
        self.oddities.append(f"comment {data!r}")

    def handle_decl(self, decl: str) -> None:
        self.oddities.append(f"declaration {decl!r}")

    def handle_pi(self, data: str) -> None:
        self.oddities.append(f"processing instruction {data!r}")


def _browser_scheme(url: str) -> str:
    """The scheme a browser would use: tabs/newlines removed, C0 controls and spaces stripped."""
    cleaned = re.sub(r"[\t\n\r]", "", url).lstrip("".join(map(chr, range(0x21)))).lower()
    return urlsplit(cleaned).scheme if re.match(r"^[a-z][a-z0-9+.-]*:", cleaned) else ""


@PROPERTY
@given(_html)
def test_sanitiser_output_is_inside_the_allowlist(dirty: str) -> None:
    """Only allowlisted tags, attributes, classes and URL schemes; no handlers, no comments."""
    clean = sanitize_html(dirty)
    reader = _Collector()
    reader.feed(clean)
    reader.close()
    assert reader.oddities == []
    for tag, attributes in reader.elements:
        assert tag in ALLOWED_TAGS, tag
        for name, value in attributes:
            assert not name.startswith("on"), name
            if tag == "a" and name == "rel":
                assert value == "nofollow noopener noreferrer"
                continue
            assert name in ALLOWED_ATTRIBUTES.get(tag, set()), (tag, name)
            if name == "class":
                assert set((value or "").split()) <= ALLOWED_CLASSES, value
            if name in ("href", "src"):
                scheme = _browser_scheme(value or "")
                assert scheme in URL_SCHEMES or scheme == "", value
                assert scheme not in ("javascript", "data", "vbscript")


class _Events(HTMLParser):
    """The document as a reader sees it: elements with attributes in a fixed order, and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.events: list[tuple[Any, ...]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.events.append(("start", tag, tuple(sorted(attrs, key=lambda a: (a[0], a[1] or "")))))

    def handle_endtag(self, tag: str) -> None:
        self.events.append(("end", tag))

    def handle_data(self, data: str) -> None:
        if self.events and self.events[-1][0] == "text":
            data = self.events.pop()[1] + data
        self.events.append(("text", data))


def _read(markup: str) -> list[tuple[Any, ...]]:
    reader = _Events()
    reader.feed(markup)
    reader.close()
    return reader.events


def _links_nest(events: list[tuple[Any, ...]]) -> bool:
    depth = 0
    for event in events:
        if event[:2] == ("start", "a"):
            depth += 1
            if depth > 1:
                return True
        elif event[:2] == ("end", "a"):
            depth = max(depth - 1, 0)
    return False


@PROPERTY
@given(_html)
@example("<pre>\n\nx</pre>")  # the parser drops one newline after <pre> on every pass
@example('<a class="evil" href="https://peer.example/">x</a>')
@example('<a href="https://a.example/">1<table><a href="https://b.example/">2</a>')
def test_sanitiser_is_idempotent(dirty: str) -> None:
    """Sanitising what was already sanitised (content relayed between our nodes) changes nothing.

    Byte for byte, and the output never has an <a> inside an <a> (stripped scope boundaries).
    """
    once = sanitize_html(dirty)
    assert sanitize_html(once) == once
    assert not _links_nest(_read(once))


def test_sanitiser_is_byte_idempotent_when_a_class_is_filtered_out() -> None:
    """nh3 puts rel= where a filtered-out class= was; the sanitiser cleans again until stable."""
    once = sanitize_html('<a class="evil" href="https://peer.example/">x</a>')
    assert sanitize_html(once) == once


@pytest.mark.parametrize("boundary", sorted(_SCOPE_BOUNDARIES))
def test_sanitiser_output_reparses_to_the_same_tree_around_stripped_scope_boundaries(boundary: str) -> None:
    """<a>1<table><a>2</a></table></a> comes out as two sibling links, as a browser reads it."""
    once = sanitize_html(f'<a href="https://a.example/">1<{boundary}><a href="https://b.example/">2</a>')
    assert _read(sanitize_html(once)) == _read(once)
    assert sanitize_html(once) == once
    assert [event[:2] for event in _read(once) if event[0] != "text"] == [
        ("start", "a"),
        ("end", "a"),
        ("start", "a"),
        ("end", "a"),
    ]


def test_sanitiser_is_idempotent_on_input_near_the_size_limit() -> None:
    """240,000 characters of "1 < 2 & " escape to 375,000: the *output* is cut, between entities."""
    once = sanitize_html("1 < 2 & " * 30_000)
    assert sanitize_html(once) == once
    assert len(once) <= MAX_OUTPUT_CHARS
    assert once.endswith(("&lt;", "&amp;", " ", "1", "2"))


@PROPERTY
@given(_html)
def test_plain_text_is_total(dirty: str) -> None:
    """plain_text (names, feed summaries, logs) never raises."""
    assert isinstance(plain_text(dirty), str)


# =============================================================================================
# JSON size and depth limits (security case 28)
# =============================================================================================


def _depth(value: Any) -> int:
    """Nesting depth of a decoded JSON value, measured without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children)
    return deepest


_openers = st.sampled_from(["[", '{"a":', '{"@context":[', '["\\"[", '])
_json_soup = st.lists(
    st.sampled_from(["[", "]", "{", "}", '"', '\\"', '"[{"', ",", ":", '"a"', "1", "null", "\\", " ", "\n"]),
    max_size=60,
).map("".join)


@PROPERTY
@given(st.one_of(_json_soup, st.text(max_size=100)), st.integers(1, 4))
def test_accepted_json_is_within_the_depth_limit(text: str, max_depth: int) -> None:
    """Whatever decode_json_object accepts is an object nested at most max_depth deep."""
    try:
        document = decode_json_object(text.encode("utf-8", "surrogatepass"), max_depth=max_depth)
    except MalformedPayload:
        return
    assert isinstance(document, dict)
    assert _depth(document) <= max_depth


@PROPERTY
@given(st.lists(_openers, min_size=MAX_JSON_DEPTH + 1, max_size=3 * MAX_JSON_DEPTH), st.integers(0, 20_000))
def test_deep_nesting_is_refused_as_malformed_payload(openers: list[str], extra: int) -> None:
    """Past the published limit (64) the body is refused with malformed_payload, never RecursionError."""
    body = ('{"x":' + "".join(openers) + "[" * extra + "1").encode()
    with pytest.raises(MalformedPayload, match="nested deeper than") as info:
        decode_json_object(body)
    assert info.value.code == "malformed_payload"


@PROPERTY
@given(st.integers(1, MAX_JSON_DEPTH))
def test_nesting_up_to_the_limit_is_accepted(levels: int) -> None:
    """The limit is exact: 64 levels (the top object included) decode."""
    body = ('{"a":' * levels + "1" + "}" * levels).encode()
    assert _depth(decode_json_object(body)) == levels


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)
_activity_fields = st.fixed_dictionaries(
    {
        "@context": st.sampled_from(
            [
                "https://www.w3.org/ns/activitystreams",
                ["https://www.w3.org/ns/activitystreams", {"x": "as:actor"}],
            ]
        ),
        "actor": st.sampled_from([ALICE_IRI, "https://evil.example/users/m", "acct:a@b", 1]),
        "type": st.sampled_from(["Create", "Follow", "Delete", "Announce", "Undo", "Flag", "Like", "X"]),
    },
    optional={
        "id": st.sampled_from(["https://peer.example/a/1", "https://entraide.test/x", "", None]),
        "object": _json_values | st.sampled_from(["https://peer.example/n/1"]),
        "to": _json_values,
        "target": _json_values,
        "@graph": _json_values,
    },
)


class _NeverSeen:
    async def seen(self, activity_id: Iri) -> bool:
        return False


DEPS = InboxDeps(
    resolve_key=KEYS,
    policy=PeerPolicy.open_network(blocked=["blocked.example"]),
    replay=_NeverSeen(),
    uris=UriScheme("https://entraide.test"),
    clock=lambda: NOW,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        _activity_fields.map(lambda d: json.dumps(d).encode()),
        _json_values.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=100),
        st.integers(MAX_JSON_DEPTH - 2, 5000).map(lambda n: b'{"a":' + b"[" * n + b"]" * n + b"}"),
    ),
    st.sampled_from(["cavage", "rfc9421"]),
)
def test_inbox_receive_answers_every_signed_body_with_a_verdict_or_a_federation_error(
    body: bytes, spec: str
) -> None:
    """A correctly signed POST of any body: a verdict, or an error the server maps to 4xx/503."""
    request_ = received(sign_request(post(INBOX_URL, body), ALICE, now=NOW, spec=spec))  # type: ignore[arg-type]
    try:
        verdict = run(receive(request_, DEPS))
    except FederationError:
        return
    assert isinstance(verdict, InboundActivity | Ignored)


def test_oversized_body_is_refused_before_parsing() -> None:
    """One byte over the limit is payload_too_large, whatever the bytes are."""
    body = b"[" * (MAX_JSON_BYTES + 1)
    with pytest.raises(PayloadTooLarge) as info:
        run(receive(IncomingRequest("POST", INBOX_URL, "/groups/collectif/inbox", Headers(), body), DEPS))
    assert info.value.code == "payload_too_large"
