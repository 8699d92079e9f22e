"""The French and English catalogues of the web pages: every label the templates and page modules
ask for is translated in both (a missing one would show its key), and both compile."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.pofile import read_po

from server.http.pages import i18n

HTTP = Path(__file__).resolve().parents[2] / "server" / "http"
LITERAL = re.compile(r"""_\(\s*["']([^"']+)["']\s*\)""")
PLURAL = re.compile(r"""ngettext\(\s*["']([^"']+)["']\s*,\s*["']([^"']+)["']""")
PREFIXED = re.compile(r"""_\(\s*["']([a-z_]+_)["']\s*\+""")  # _("severity_" + value): a family of keys


def _catalogue(lang: str) -> dict[str, str]:
    with (HTTP / "locale" / lang / "LC_MESSAGES" / "messages.po").open("rb") as po:
        return {str(m.id): str(m.string) for m in read_po(po) if m.id}


def _plurals(lang: str) -> dict[tuple[str, str], tuple[str, ...]]:
    with (HTTP / "locale" / lang / "LC_MESSAGES" / "messages.po").open("rb") as po:
        return {tuple(m.id): tuple(m.string) for m in read_po(po) if m.pluralizable}


def test_every_label_is_translated_in_both_languages() -> None:
    sources = [*HTTP.glob("templates/*.html"), *HTTP.glob("pages/*.py")]
    wanted = {key for path in sources for key in LITERAL.findall(path.read_text(encoding="utf-8"))}
    families = {key for path in sources for key in PREFIXED.findall(path.read_text(encoding="utf-8"))}
    assert len(wanted) > 40 and "sign_in" in wanted and "severity_" in families
    for lang in i18n.LANGUAGES:
        catalogue = _catalogue(lang)
        missing = sorted(key for key in wanted if not catalogue.get(key))
        assert missing == [], (lang, missing)
        assert all(any(k.startswith(f) for k in catalogue) for f in families), lang
        assert i18n.translations(lang).gettext("sign_in") == catalogue["sign_in"]
    assert _catalogue("fr").keys() == _catalogue("en").keys()


def test_every_plural_label_has_its_two_forms_in_both_languages() -> None:
    """``ngettext`` keys: both forms translated, and each catalogue's plural rule picks them
    (French says 0 and 1 in the singular, English only 1)."""
    sources = [*HTTP.glob("templates/*.html"), *HTTP.glob("pages/*.py")]
    wanted = {key for path in sources for key in PLURAL.findall(path.read_text(encoding="utf-8"))}
    assert ("event_places_left", "event_places_left_plural") in wanted
    for lang in i18n.LANGUAGES:
        plurals = _plurals(lang)
        for key in wanted:
            assert len(plurals.get(key, ())) == 2 and all(plurals[key]), (lang, key)
    key = ("event_places_left", "event_places_left_plural")
    for lang, forms in (("fr", (0, 0, 1)), ("en", (1, 0, 1))):  # the form said for 0, 1 and 2
        catalogue = i18n.translations(lang)
        assert [catalogue.ngettext(*key, n) for n in (0, 1, 2)] == [_plurals(lang)[key][i] for i in forms]


def test_the_language_follows_accept_language() -> None:
    assert i18n.negotiate("en-GB,en;q=0.9,fr;q=0.8") == "en"
    assert i18n.negotiate("de-DE,fr;q=0.5,en;q=0.4") == "fr"
    assert i18n.negotiate("de, *;q=0.1") == "fr"
    assert i18n.negotiate("en;q=bogus, fr") == "fr"
