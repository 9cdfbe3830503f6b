"""The site's two languages: Norwegian bokmål (the default) and English.

Every string of the pages is English in the source and goes through gettext; the
catalogues are ``translations/<lang>/LC_MESSAGES/messages.po``, kept with Babel
(``scripts/translations``).  They are compiled in memory when the site starts, so
there is no build step and no compiled file that could lag behind its source.

The language comes from, in order: ``?lang=`` (a visible switch on every page, which
also sets a cookie), the ``lang`` cookie, the browser's ``Accept-Language`` (RFC 9110
§12.5.4), and else bokmål.  Nynorsk and plain "no" readers get bokmål, the nearest
catalogue there is.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Literal

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

Language = Literal["nb", "en"]
LANGUAGES: tuple[Language, ...] = ("nb", "en")
DEFAULT: Language = "nb"
COOKIE = "lang"
TRANSLATIONS = Path(__file__).resolve().parent / "translations"

#: primary language subtags (RFC 5646 §2.2.1) we answer, and with which catalogue
_PRIMARY: dict[str, Language] = {"nb": "nb", "no": "nb", "nn": "nb", "en": "en"}
#: the Babel locale of numbers and dates: Norway's conventions; British English (24-hour
#: clock, day before month) for the English pages of a Norwegian city
LOCALES: dict[Language, str] = {"nb": "nb_NO", "en": "en_GB"}


def as_language(value: str | None) -> Language | None:
    """``value`` if it names one of our languages (``nb``, ``en``, ``no``...)."""
    if not value:
        return None
    return _PRIMARY.get(value.strip().lower().split("-")[0].split("_")[0])


def negotiate(accept_language: str | None) -> Language:
    """The language of our two that the Accept-Language header prefers most (by its
    quality values; the first listed wins a tie), else the default."""
    if not accept_language:
        return DEFAULT
    ranked: list[tuple[float, int, Language]] = []
    for position, item in enumerate(accept_language.split(",")):
        tag, _, parameters = item.strip().partition(";")
        quality = 1.0
        name, _, value = parameters.strip().partition("=")
        if name.strip() == "q":
            try:
                quality = float(value)
            except ValueError:
                continue
        language = as_language(tag)
        if language is not None and quality > 0:
            ranked.append((-quality, position, language))
    return min(ranked)[2] if ranked else DEFAULT


def choose(query: str | None, cookie: str | None, accept_language: str | None) -> Language:
    return as_language(query) or as_language(cookie) or negotiate(accept_language)


@functools.cache
def translations(language: Language) -> Translations:
    """The language's catalogue, compiled from its .po file."""
    po = TRANSLATIONS / language / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as source:
        catalog = read_po(source, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(fp=compiled, domain="messages")


@functools.cache
def locale(language: Language) -> Locale:
    return Locale.parse(LOCALES[language])


def N_(message: str) -> str:
    """Mark a string for the catalogues; it is translated where it is shown."""
    return message
