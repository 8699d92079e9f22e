"""The HTML sanitiser: attacks of security.md case 35 and 32, and property tests (it is total)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.services.content.sanitize import ALLOWED_ATTRIBUTES, ALLOWED_TAGS, plain_text, sanitize_html


@pytest.mark.parametrize(
    ("dirty", "forbidden"),
    [
        ("<img src=x onerror=alert(1)>", "onerror"),
        ('<a href="javascript:alert(1)">x</a>', "javascript:"),
        ('<a href="data:text/html;base64,PHNjcmlwdD4=">x</a>', "data:"),
        ("<svg><script>alert(1)</script></svg>", "<script"),
        ("<style>body{display:none}</style>", "<style"),
        ('<iframe src="https://evil.example"></iframe>', "<iframe"),
        ('<form action="https://evil.example"><input></form>', "<form"),
        ('<p class="status__content">x</p>', "status__content"),
        ('<p style="position:fixed">x</p>', "style="),
        ("<math><semantics><annotation>x</annotation></semantics></math>", "<math"),
    ],
)
def test_attacks_are_neutralised(dirty: str, forbidden: str) -> None:
    assert forbidden not in sanitize_html(dirty)


def test_mentions_and_links_survive_with_safe_rel() -> None:
    out = sanitize_html(
        '<p>Hi <span class="h-card"><a class="u-url mention evil" href="https://peer.example/@a">'
        "@a</a></span></p>"
    )
    assert 'class="u-url mention"' in out
    assert 'rel="nofollow noopener noreferrer"' in out


def test_deep_nesting_and_huge_input_do_not_crash() -> None:
    assert isinstance(sanitize_html("<span>" * 100_000 + "x"), str)
    assert len(sanitize_html("<b>" + "a" * 1_000_000 + "</b>")) <= 200_100


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, [name for name, _ in attrs]))


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("<>/=\"' abcdefghijklmnopqrstuvwxyz&;:")), max_size=300) | st.text()
)
def test_output_uses_only_allowlisted_tags_and_attributes(text: str) -> None:
    out = sanitize_html(text)
    parser = _Collector()
    parser.feed(out)
    for tag, attributes in parser.seen:
        assert tag in ALLOWED_TAGS
        for attribute in attributes:
            assert attribute in ALLOWED_ATTRIBUTES.get(tag, set()) or (tag == "a" and attribute == "rel")
    assert not re.search(r"(?i)javascript:", out)


@given(st.text())
def test_plain_text_never_raises(text: str) -> None:
    assert isinstance(plain_text(text), str)
