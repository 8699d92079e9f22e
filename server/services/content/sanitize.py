"""HTML sanitising of every piece of incoming or local rich text, with nh3 (Ammonia).

The allowlist follows Mastodon's ``MASTODON_STRICT`` (security.md case 35): text formatting,
lists, quotes, code and links; no images (they become links), no styles, no scripts, no
forms, no iframes. Links get ``rel="nofollow noopener noreferrer"`` and only http(s) and
mailto URLs survive. ``class`` is kept only for the microformats Mastodon uses for mentions and
hashtags. The sanitiser is total: any input gives a string, never an exception (case 32).
"""

from __future__ import annotations

import html
import logging

import nh3

log = logging.getLogger(__name__)

ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "p",
        "br",
        "span",
        "a",
        "abbr",
        "del",
        "s",
        "pre",
        "blockquote",
        "code",
        "b",
        "strong",
        "u",
        "sub",
        "sup",
        "i",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "ul",
        "ol",
        "li",
        "ruby",
        "rt",
        "rp",
    }
)
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "a": {"href", "title", "class", "translate"},
    "span": {"class", "translate"},
    "abbr": {"title"},
    "ol": {"start", "reversed"},
    "li": {"value"},
}
ALLOWED_CLASSES = frozenset({"h-card", "u-url", "mention", "hashtag", "ellipsis", "invisible", "p-name"})
URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto"})
# Only this much of an input is parsed at all: nh3's time grows faster than linearly with the
# number of characters it escapes (900,000 "&" take seconds), so the input is capped too.
MAX_INPUT_CHARS = 200_000
# The longest sanitised HTML we keep: the limit applies to the *output*, so that escaping
# ("<" becomes "&lt;") cannot push a stored value over it and make the next pass cut it again.
MAX_OUTPUT_CHARS = 200_000
# A clean pass can change the next pass's parse (attribute order after a filtered class, <a>
# left inside <a> once a <table> between them is stripped); two or three passes settle it.
_MAX_PASSES = 4
_ENTITY_CHARS = 32  # longer than any character reference the serialiser writes ("&nbsp;", "&amp;")


class _Unsettled(Exception):
    """Cleaning kept changing the markup (never seen; the caller falls back to escaped text)."""


def _filter_attribute(element: str, attribute: str, value: str) -> str | None:
    if attribute == "class":
        kept = [c for c in value.split() if c in ALLOWED_CLASSES]
        return " ".join(kept) or None
    return value


def _clean_once(text: str) -> str:
    clean = nh3.clean(
        text,
        tags=set(ALLOWED_TAGS),
        # "*": no attribute on every tag; Ammonia's default would add lang and title.
        attributes={"*": set(), **ALLOWED_ATTRIBUTES},
        attribute_filter=_filter_attribute,
        url_schemes=set(URL_SCHEMES),
        link_rel="nofollow noopener noreferrer",
        strip_comments=True,
    )
    # HTML parsing drops one newline right after <pre>, and the serialiser does not put it back;
    # doubling it keeps the text intact. (<pre> takes no attributes, and a literal "<pre>" in
    # text is always escaped, so this only ever matches the tag.)
    return clean.replace("<pre>\n", "<pre>\n\n")


def _settle(text: str) -> str:
    """Clean until a pass changes nothing, so the result is what sanitising it again gives.

    The first pass strips <table>, <object>, <select>... but keeps their content, which can leave
    an <a> inside an <a>; the second parse splits them into siblings, as a browser would, and
    the tree then has no element left that could nest links again.
    """
    current = _clean_once(text)
    for _ in range(_MAX_PASSES):
        again = _clean_once(current)
        if again == current:
            return current
        current = again
    raise _Unsettled


def _safe_cut(markup: str, limit: int) -> int:
    """A cut position at most ``limit`` that does not split a tag or a character reference."""
    cut = max(limit, 0)
    if markup.rfind("<", 0, cut) > markup.rfind(">", 0, cut):
        cut = markup.rfind("<", 0, cut)  # inside a tag: cut before it
    amp = markup.rfind("&", max(cut - _ENTITY_CHARS, 0), cut)
    if amp >= 0 and ";" not in markup[amp:cut]:
        cut = amp  # inside "&amp;": cut before it
    return cut


def _clean_within_limit(text: str) -> str:
    """``text`` cleaned and settled, cut to MAX_OUTPUT_CHARS on a safe boundary if longer.

    The limit applies to the output, so escaping cannot push a stored value over it. What is cut
    is cleaned again (that closes the elements left open, and adds a few characters): the cut
    moves back until the result fits. Only the first pass sees the whole input.
    """
    clean = _clean_once(text)
    limit = MAX_OUTPUT_CHARS
    while True:
        if len(clean) > limit:
            clean = clean[: _safe_cut(clean, limit)]
        settled = _settle(clean)
        if len(settled) <= MAX_OUTPUT_CHARS:
            return settled
        limit = min(limit - 64, limit * MAX_OUTPUT_CHARS // len(settled))


def _escaped_text(text: str) -> str:
    """Escaping as the HTML serialiser does it for text, so re-sanitising gives it back unchanged."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped.replace("\xa0", "&nbsp;")


def _valid_text(value: str, limit: int) -> str:
    # Lone surrogates cannot cross into Rust (nh3): they become "?" instead of failing the pass.
    return value[:limit].encode("utf-8", "replace").decode("utf-8")


def sanitize_html(value: str | None) -> str:
    """Return ``value`` reduced to the allowlist; ``None`` or empty gives ``""``. Never raises.

    Idempotent: ``sanitize_html(sanitize_html(x)) == sanitize_html(x)`` (content relayed between
    our nodes, or edited and saved again, is stored byte for byte the same), the output never has
    an <a> inside an <a>, and it is at most MAX_OUTPUT_CHARS long, cut between tags.
    """
    if not value:
        return ""
    text = _valid_text(value, MAX_INPUT_CHARS)
    try:
        return _clean_within_limit(text)
    except Exception:  # the sanitiser must be total: fall back to escaped text
        log.warning("sanitiser failed; content escaped as text")
        escaped = _escaped_text(plain_text(text))
        return escaped[: _safe_cut(escaped, MAX_OUTPUT_CHARS)]


def text_paragraph(text: str) -> str:
    """Plain text as one HTML paragraph: escaped, so it is never parsed as markup (security case 48).

    Names, titles and options are plain text everywhere; ``plain_text`` turns ``&lt;form&gt;``
    into the text ``<form>``, and only escaping keeps it text once it is put inside HTML. The
    escaping is the serialiser's, so ``sanitize_html`` gives the paragraph back unchanged.
    """
    return f"<p>{_escaped_text(text)}</p>"


def plain_text(value: str | None) -> str:
    """Text with every tag removed (for names, summaries in feeds, logs). Never raises."""
    if not value:
        return ""
    text = _valid_text(value, MAX_OUTPUT_CHARS)
    try:
        return html.unescape(nh3.clean(text, tags=set(), strip_comments=True))
    except Exception:  # total, as above
        return html.escape(text)
