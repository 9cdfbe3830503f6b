"""Both languages, everywhere: every string of the site's templates and code is in the
bokmål catalogue with a translation that keeps its placeholders, and the language is
chosen as RFC 9110 §12.5.4 asks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from web.i18n import TRANSLATIONS, as_language, choose, negotiate, translations

WEB = Path(__file__).resolve().parents[2] / "web"
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def source_messages() -> set[str | tuple[str, ...]]:
    """What Babel extracts from web/ with the project's configuration."""
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    options = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "true"}}
    found: set[str | tuple[str, ...]] = set()
    for _, _, message, _, _ in extract_from_dir(
        str(WEB),
        method_map,
        options_map=options,
        keywords={"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)},
    ):
        found.add(message if isinstance(message, str) else tuple(message))
    return found


@pytest.fixture(scope="module")
def catalogue() -> dict[str | tuple[str, ...], object]:
    with (TRANSLATIONS / "nb" / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalog = read_po(po, locale="nb")
    return {(m.id if isinstance(m.id, str) else tuple(m.id)): m for m in catalog if m.id}


def test_every_string_has_a_bokmal_translation(catalogue: dict[object, object]) -> None:
    missing = sorted(str(m) for m in source_messages() if m not in catalogue)
    assert not missing, f"run scripts/translations and translate: {missing}"
    untranslated = [
        key
        for key, message in catalogue.items()
        if not message.string
        or "fuzzy" in message.flags  # type: ignore[attr-defined]
        or (isinstance(message.string, tuple) and not all(message.string))  # type: ignore[attr-defined]
    ]
    assert not untranslated, untranslated


def test_translations_keep_their_placeholders(catalogue: dict[object, object]) -> None:
    for key, message in catalogue.items():
        ids = [key] if isinstance(key, str) else list(key)
        strings = [message.string] if isinstance(message.string, str) else list(message.string)  # type: ignore[attr-defined]
        wanted = set(PLACEHOLDER.findall(" ".join(ids)))
        for text in strings:
            assert set(PLACEHOLDER.findall(text)) == wanted, (key, text)


def test_the_catalogues_compile_and_translate() -> None:
    assert translations("nb").gettext("Air now") == "Luft nå"
    assert translations("en").gettext("Air now") == "Air now"
    assert translations("nb").ngettext("%(num)d hour", "%(num)d hours", 2) == "%(num)d timer"


@pytest.mark.parametrize(
    ("header", "language"),
    [
        (None, "nb"),
        ("", "nb"),
        ("en", "en"),
        ("en-GB,en;q=0.9", "en"),
        ("nb-NO,nb;q=0.9,en;q=0.8", "nb"),
        ("no", "nb"),
        ("nn-NO", "nb"),
        ("sv-SE,sv;q=0.9,en;q=0.8,nb;q=0.7", "en"),
        ("de, nb;q=0.2", "nb"),
        ("en;q=0, nb", "nb"),
        ("fr", "nb"),
        ("en;q=bad", "nb"),
    ],
)
def test_accept_language(header: str | None, language: str) -> None:
    assert negotiate(header) == language


def test_the_switch_beats_the_cookie_which_beats_the_browser() -> None:
    assert choose("en", "nb", "nb") == "en"
    assert choose(None, "en", "nb") == "en"
    assert choose("klingon", None, "en") == "en"
    assert as_language("EN_us") == "en"
