"""The `branding:` section and `integrations.<name>.language`: what an admin writes, what
sealroom refuses, and the error naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.branding import LOGO_MAX_BYTES, contrast_ratio
from bridge.config_file import load
from tests.unit.test_config import minimal, problem_at, problems_of, write

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def test_without_a_branding_section_the_page_has_sealroom_defaults(tmp_path: Path) -> None:
    config = load(write(tmp_path, minimal()))

    assert config.branding.organisation is None
    assert config.branding.logo() is None
    assert config.branding.accent_colour == "#1f5f99"
    assert config.branding.footer_links == []
    assert config.integrations["helpdesk"].language == "en"


def test_a_full_branding_section_loads_with_the_logo_relative_to_the_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "logo.png").write_bytes(PNG)
    raw = minimal()
    raw["branding"] = {
        "organisation": "Example GmbH",
        "logo_file": "logo.png",
        "accent_colour": "#0B5D1E",
        "support_contact": "+49 30 1234567",
        "support_url": "tel:+49301234567",
        "footer_links": [
            {"text": "Datenschutz", "url": "https://example.org/datenschutz"},
            {"text": "Imprint", "url": "mailto:legal@example.org"},
        ],
    }
    raw["integrations"]["helpdesk"]["language"] = "de"

    config = load(write(tmp_path, raw))

    assert config.branding.organisation == "Example GmbH"
    assert config.branding.logo() == (PNG, "image/png")
    assert config.branding.accent_colour == "#0b5d1e"
    assert [link.text for link in config.branding.footer_links] == ["Datenschutz", "Imprint"]
    assert config.integrations["helpdesk"].language == "de"


@pytest.mark.parametrize(
    ("branding", "key", "words"),
    [
        ({"accent_colour": "green"}, "branding.accent_colour", "# and six hex digits"),
        ({"accent_colour": "#ffcc00"}, "branding.accent_colour", "1.51:1"),
        ({"accent_colour": "#ffcc00"}, "branding.accent_colour", "choose a darker colour"),
        ({"logo_file": "missing.png"}, "branding.logo_file", "cannot read"),
        ({"logo_file": "logo.gif"}, "branding.logo_file", ".png, .svg"),
        ({"support_url": "javascript:alert(1)"}, "branding.support_url", "tel:"),
        (
            {"footer_links": [{"text": "Privacy", "url": "ftp://example.org"}]},
            "branding.footer_links.0.url",
            "https:",
        ),
        ({"footer_links": [{"url": "https://example.org"}]}, "branding.footer_links.0.text", ""),
        ({"organisation": ""}, "branding.organisation", ""),
        ({"colour": "#000000"}, "branding.colour", "unknown option"),
    ],
)
def test_bad_branding_is_refused_naming_the_key(
    tmp_path: Path, branding: dict[str, object], key: str, words: str
) -> None:
    (tmp_path / "logo.gif").write_bytes(b"GIF89a")
    raw = minimal()
    raw["branding"] = branding

    assert words in problem_at(problems_of(tmp_path, raw), key)


def test_a_logo_too_large_for_the_page_is_refused(tmp_path: Path) -> None:
    (tmp_path / "logo.png").write_bytes(PNG + b"\x00" * LOGO_MAX_BYTES)
    raw = minimal()
    raw["branding"] = {"logo_file": "logo.png"}

    assert "larger than 256 KiB" in problem_at(problems_of(tmp_path, raw), "branding.logo_file")


def test_an_unknown_notice_language_is_refused_naming_the_integration(tmp_path: Path) -> None:
    raw = minimal()
    raw["integrations"]["helpdesk"]["language"] = "nl"

    problem = problem_at(problems_of(tmp_path, raw), "integrations.helpdesk.language")
    assert "en, de, fr, es" in problem


def test_contrast_ratio_follows_wcag() -> None:
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21)
    assert contrast_ratio("#ffffff", "#ffffff") == pytest.approx(1)
    # WebAIM's contrast checker: #767676 on white is 4.54:1, the lightest grey that passes AA.
    assert contrast_ratio("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)
