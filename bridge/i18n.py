"""Languages: the message catalogues (bridge/locale/<lang>/LC_MESSAGES/sealroom.po), choosing
a language from Accept-Language, and dates in the reader's locale with their time zone.

The .po files are the only source: they are compiled in memory on first use, so a fresh clone,
an editable install and the wheel all work without a build step, and no compiled file can be
stale. Pure functions over files shipped in the package: no I/O beyond reading them.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

DOMAIN = "sealroom"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DEFAULT_LANGUAGE = "en"
# Each language in its own words, for the switcher (a reader looks for their own language).
LANGUAGES: dict[str, str] = {"en": "English", "de": "Deutsch", "fr": "Français", "es": "Español"}

_RANGE = re.compile(r"^\s*([A-Za-z]{1,8})(?:-[A-Za-z0-9]{1,8})*\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*$")


def catalogue_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def translations(language: str) -> Translations:
    """The compiled catalogue of `language` (English: the msgids themselves)."""
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}")
    with catalogue_path(language).open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def gettext(language: str, message: str) -> str:
    return translations(language).gettext(message)


def negotiate(accept_language: str, requested: str | None = None) -> str:
    """The reader's language: an explicit choice (`?lang=`) first, then the best supported
    entry of Accept-Language (RFC 9110 quality values), then English."""
    if requested in LANGUAGES:
        return requested
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")[:32]):
        match = _RANGE.match(part)
        if not match:
            continue
        try:
            quality = float(match.group(2)) if match.group(2) else 1.0
        except ValueError:
            continue
        primary = match.group(1).lower()
        if quality > 0 and primary in LANGUAGES:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else DEFAULT_LANGUAGE


def format_moment(moment: datetime, language: str, time_zone: str = "UTC") -> str:
    """A date and time as a reader of `language` writes it, with the zone named."""
    return format_datetime(moment, "long", tzinfo=ZoneInfo(time_zone), locale=language)


def warm_up(languages: Iterable[str]) -> None:
    """Compile the catalogues and load Babel's locale data of `languages` now.

    Done lazily on first use, it held the event loop for ~100 ms as the first notice went out;
    the service calls this in a worker thread at start instead.
    """
    for language in {DEFAULT_LANGUAGE, *languages}:
        translations(language)
        format_moment(datetime(2000, 1, 1, tzinfo=UTC), language)


def browser_strings(language: str) -> dict[str, str]:
    """The messages the page's scripts show, in `language`: every catalogue entry extracted
    from bridge/web/static/*.js, keyed by its English msgid."""
    return dict(_browser_strings(language))


@functools.cache
def _browser_strings(language: str) -> tuple[tuple[str, str], ...]:
    with catalogue_path(language).open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    found: list[tuple[str, str]] = []
    for message in catalog:
        if not message.id or not isinstance(message.id, str):
            continue
        if any(path.endswith(".js") for path, _ in message.locations):
            found.append((message.id, translations(language).gettext(message.id)))
    return tuple(found)
