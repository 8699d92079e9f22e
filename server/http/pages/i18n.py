"""The pages' languages: Babel catalogues (``server/http/locale/<lang>/LC_MESSAGES/messages.po``)
compiled in memory when the app starts, so no compiled ``.mo`` file is kept in the repository.

The language is the account's setting, else the best of the browser's ``Accept-Language``,
else French (the product's first audience). Dates are formatted in the reader's locale.
"""

from __future__ import annotations

import gettext
import io
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Final

from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LANGUAGES: Final = ("fr", "en")
DEFAULT: Final = "fr"


@cache
def translations(lang: str) -> gettext.GNUTranslations:
    """The compiled catalogue of ``lang`` (one of :data:`LANGUAGES`)."""
    source = resources.files("server.http").joinpath("locale", lang, "LC_MESSAGES", "messages.po")
    with source.open("rb") as po:
        catalog = read_po(po, locale=lang)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def negotiate(accept_language: str) -> str:
    """The best of :data:`LANGUAGES` for an ``Accept-Language`` header (RFC 9110 §12.5.4)."""
    best, best_q = DEFAULT, 0.0
    for part in accept_language.split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and q > best_q:
            best, best_q = primary, q
    return best


def format_date(value: datetime, lang: str) -> str:
    return format_datetime(value, format="medium", locale=lang)
