"""Outputs for people in their language: English, Russian or Kyrgyz (`--lang`, NRM_LANG).

The catalogues are gettext `.po` files (`catalogues/<lang>/LC_MESSAGES/nrm.po`), read with Babel
when a language is first used: codes (`msgctxt "code"`: `bishkek_city` -> the city's name),
field names (`msgctxt "field"`: `region` -> its word) and text (an English msgid: a table's
title, a line of the report). A code or text without a translation shows as it is, never as
nothing. Only outputs for people are translated (the text tables, CSV headers, the report);
JSON keeps the codes, which do not change with the language.
"""

from __future__ import annotations

import functools
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

LANGUAGES = ("en", "ru", "ky")
DEFAULT_LANGUAGE = "en"
LOCALE_DIR = Path(__file__).parent / "catalogues"


class Language:
    """One language's catalogue, with lookups that fall back to the code or text given."""

    def __init__(self, code: str, catalog: Catalog) -> None:
        self.code = code
        self._catalog = catalog

    def _find(self, msgid: str, context: str | None) -> str | None:
        message = self._catalog.get(msgid, context=context)
        if message is None or not isinstance(message.string, str) or not message.string:
            return None
        return message.string

    def text(self, msgid: str, **values: object) -> str:
        """A line of text, with `{name}` placeholders filled after translation."""
        found = self._find(msgid, None) or msgid
        return found.format(**values) if values else found

    def word(self, code: str) -> str:
        """A code as a word (a region, a service, an outcome...)."""
        return self._find(code, "code") or code

    def field(self, name: str) -> str:
        """A field's name as a column header."""
        return self._find(name, "field") or name

    def has(self, msgid: str, context: str | None = None) -> bool:
        return self._find(msgid, context) is not None


@functools.cache
def language(code: str = DEFAULT_LANGUAGE) -> Language:
    """The catalogue of `code` (one of LANGUAGES); read once per process."""
    if code not in LANGUAGES:
        raise ValueError(f"--lang: {code!r} is not one of {', '.join(LANGUAGES)}")
    path = LOCALE_DIR / code / "LC_MESSAGES" / "nrm.po"
    with path.open("rb") as po:
        return Language(code, read_po(po, locale=code))
