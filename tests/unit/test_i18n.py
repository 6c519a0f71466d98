"""The catalogues are complete: every string of the page, its scripts and the bot's notices is
extracted (Babel, as babel.cfg says) and translated in every language, with the same
placeholders and markup; no sentence is left outside the catalogues."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from jinja2 import Environment

from bridge import i18n, notices

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "bridge" / "web" / "templates"
SCRIPTS = ("landing.js", "register.js")
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
MARKUP = re.compile(r"</?\w+>")
MOMENT = datetime(2030, 5, 17, 14, 30, tzinfo=UTC)


def _extracted() -> set[str]:
    """What `pybabel extract -F babel.cfg` finds, done in-process with the same mapping."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as config:
        from babel.messages.frontend import parse_mapping_cfg

        method_map, options_map = parse_mapping_cfg(config)
    found: set[str] = set()
    for _path, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


EXTRACTED = _extracted()


def _catalogue(language: str) -> dict[str, tuple[str, bool]]:
    with i18n.catalogue_path(language).open("rb") as po:
        catalog = read_po(po, locale=language)
    return {
        str(message.id): (str(message.string), message.fuzzy) for message in catalog if message.id
    }


def test_extraction_finds_the_page_its_scripts_and_the_notices() -> None:
    assert "Create an account" in EXTRACTED  # template
    assert "%(address)s is available." in EXTRACTED  # register.js
    assert (
        "Something went wrong on our side. Your link is still valid: please try again in a minute."
        in EXTRACTED
    )  # noqa: E501 landing.js
    assert "%(user)s joined the secure room." in EXTRACTED  # notices.py
    assert len(EXTRACTED) > 100


@pytest.mark.parametrize("language", list(i18n.LANGUAGES))
def test_every_extracted_string_is_translated_in_every_language(language: str) -> None:
    catalogue = _catalogue(language)
    missing = sorted(EXTRACTED - set(catalogue))
    assert missing == [], (
        f"{language}: not in the catalogue (run the update in docs/translations.md)"
    )
    stale = sorted(set(catalogue) - EXTRACTED)
    assert stale == [], f"{language}: in the catalogue but no longer in the code"
    untranslated = sorted(m for m, (text, fuzzy) in catalogue.items() if not text.strip() or fuzzy)
    assert untranslated == [], f"{language}: empty or fuzzy translations"


@pytest.mark.parametrize("language", [lang for lang in i18n.LANGUAGES if lang != "en"])
def test_translations_keep_placeholders_and_markup(language: str) -> None:
    for message, (text, _) in _catalogue(language).items():
        assert sorted(PLACEHOLDER.findall(text)) == sorted(PLACEHOLDER.findall(message)), message
        assert MARKUP.findall(text) == MARKUP.findall(message), message
        # Commands the agent types are never translated.
        assert re.findall(r"!\w+", text) == re.findall(r"!\w+", message), message


def test_the_english_catalogue_is_the_source_text() -> None:
    assert all(text == message for message, (text, _) in _catalogue("en").items())


def _template_text_outside_trans(source: str) -> list[str]:
    """Words a reader would see in the template that are not inside {% trans %} blocks."""
    env = Environment(extensions=["jinja2.ext.i18n"])
    depth = 0
    after_block_begin = False
    outside: list[str] = []
    for _line, kind, value in env.lex(source):
        if kind == "whitespace":
            continue
        if after_block_begin and kind == "name":
            depth += {"trans": 1, "endtrans": -1}.get(value, 0)
        after_block_begin = kind == "block_begin"
        # Template code becomes a neutral mark, so a tag split by it is still one tag.
        outside.append(value if kind == "data" and depth == 0 else "\x00")
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", "".join(outside), flags=re.S)
    text = re.sub(r"<[^>]*>", " ", text)
    return re.findall(r"[A-Za-z]{2,}", text)


def test_no_visible_template_text_escapes_the_catalogue() -> None:
    source = (TEMPLATES / "landing.html").read_text(encoding="utf-8")
    assert _template_text_outside_trans(source) == []
    # Attributes a reader (or a screen reader) meets are translated too.
    for attribute in ("aria-label", "title", "alt"):
        for value in re.findall(rf'{attribute}="([^"]*)"', source):
            code = r"{% trans %}.*?{% endtrans %}|{%.*?%}|{{.*?}}"
            assert not re.search(r"[A-Za-z]", re.sub(code, "", value)), value


def test_the_template_check_would_notice_a_bare_sentence() -> None:
    assert _template_text_outside_trans("<p>{% trans %}Fine{% endtrans %} Not fine</p>") == [
        "Not",
        "fine",
    ]


def _bare_sentences(tree: ast.AST) -> list[str]:
    """String constants with a space and a letter that are not gettext's argument."""
    translated: set[int] = set()
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_":
            translated.update(id(arg) for arg in node.args)
        if isinstance(node, ast.Module | ast.FunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.search(r"[A-Za-z]+ [A-Za-z]+", node.value)
        and id(node) not in translated | docstrings
    ]


def test_every_notice_sentence_goes_through_the_catalogue() -> None:
    source = Path(notices.__file__).read_text(encoding="utf-8")
    assert _bare_sentences(ast.parse(source)) == []
    assert _bare_sentences(ast.parse('def f():\n    return "a bare sentence"\n')) == [
        "a bare sentence"
    ]


def _js_bare_sentences(source: str) -> list[str]:
    """Double-quoted strings that read as a sentence and are not gettext("...")'s argument."""
    found = []
    for match in re.finditer(r'"((?:[^"\\\n]|\\.)*)"', source):
        text = match.group(1)
        before = source[max(0, match.start() - 9) : match.start()]
        if before.endswith("gettext(") or not re.search(r"[A-Z][a-z]+ [a-z]+ [a-z]+", text):
            continue
        line = source[source.rfind("\n", 0, match.start()) + 1 : match.start()]
        if line.lstrip().startswith("//"):
            continue
        found.append(text)
    return found


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_sentence_the_scripts_show_goes_through_the_catalogue(script: str) -> None:
    source = (ROOT / "bridge" / "web" / "static" / script).read_text(encoding="utf-8")
    assert _js_bare_sentences(source) == []


def test_the_script_check_would_notice_a_bare_sentence() -> None:
    assert _js_bare_sentences('show("Your link is gone now."); gettext("Fine as it is.")') == [
        "Your link is gone now."
    ]


@pytest.mark.parametrize(
    ("header", "query", "expected"),
    [
        ("de-DE,de;q=0.9,en;q=0.8", None, "de"),
        ("fr-CA", None, "fr"),
        ("es-419,es;q=0.9", None, "es"),
        ("nl-NL,nl;q=0.9,fr;q=0.5,de;q=0.7", None, "de"),  # best supported by quality
        ("ja", None, "en"),
        ("", None, "en"),
        ("de;q=0", None, "en"),
        ("de;q=abc, fr", None, "fr"),
        ("de", "es", "es"),  # the switcher's choice wins
        ("de", "xx", "de"),  # an unknown choice is ignored
    ],
)
def test_language_from_accept_language_and_the_switcher(
    header: str, query: str | None, expected: str
) -> None:
    assert i18n.negotiate(header, query) == expected


def test_dates_are_written_in_the_readers_locale_with_the_zone() -> None:
    assert i18n.format_moment(MOMENT, "en") == "May 17, 2030, 2:30:00\u202fPM UTC"
    assert i18n.format_moment(MOMENT, "de") == "17. Mai 2030, 14:30:00 UTC"
    assert "mai 2030" in i18n.format_moment(MOMENT, "fr")
    assert "16:30" in i18n.format_moment(MOMENT, "de", "Europe/Berlin")
    assert "MESZ" in i18n.format_moment(MOMENT, "de", "Europe/Berlin")


@pytest.mark.parametrize("language", list(i18n.LANGUAGES))
def test_the_browser_gets_exactly_the_scripts_strings(language: str) -> None:
    strings = i18n.browser_strings(language)
    assert "%(address)s is available." in strings
    assert "Create an account" not in strings  # a template string: rendered by the server
    assert all(strings.values())


def test_notices_in_each_language() -> None:
    english = notices.rules("T-7", MOMENT, "VPN", lang="en")
    german = notices.rules("T-7", MOMENT, "VPN", lang="de")
    assert english.startswith("Welcome.")
    assert "May 17, 2030" in english
    assert "UTC" in english
    assert german.startswith("Willkommen.")
    assert "17. Mai 2030, 14:30:00 UTC" in german
    assert "Ticket T-7 (VPN)" in german
    assert notices.closing("agent", lang="fr").startswith("Ce salon sécurisé est en cours")
    assert "l’agent l’a fermé" in notices.closing("agent", lang="fr")
    assert notices.agent_help(lang="es").startswith("Comandos: !close")
    assert notices.status("open", [], MOMENT, lang="de").startswith("Status: open. Im Raum: noch")
