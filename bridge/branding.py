"""The `branding:` section: the organisation's name, logo, accent colour, support contact and
footer links on the customer's page, validated so the page stays readable and self-contained.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from bridge.config_fields import Section

LOGO_MAX_BYTES = 256 * 1024
# Served by sealroom itself at /branding/logo (the page's CSP allows images from 'self' only).
LOGO_TYPES = {
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
}
# Buttons carry white text on the accent colour: WCAG AA asks 4.5:1 for normal text.
MIN_CONTRAST = 4.5
DEFAULT_ACCENT = "#1f5f99"
_HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


def _luminance(colour: str) -> float:
    """WCAG 2.x relative luminance of a #rrggbb colour."""
    channels = []
    for i in (1, 3, 5):
        c = int(colour[i : i + 2], 16) / 255
        channels.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    red, green, blue = channels
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast_ratio(first: str, second: str) -> float:
    """WCAG contrast ratio of two #rrggbb colours (1 to 21)."""
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _link_url(value: str, *, phone: bool = False) -> str:
    schemes = ("http", "https", "mailto", "tel") if phone else ("http", "https", "mailto")
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        raise ValueError(
            "must be an " + ", ".join(f"{s}:" for s in schemes) + " link, for example "
            "https://example.org/privacy"
        )
    return value


class FooterLink(Section):
    text: str = Field(min_length=1, max_length=80)
    url: str

    _url = field_validator("url")(_link_url)


class BrandingConfig(Section):
    # Shown in the page's title and header; none: the page names no organisation.
    organisation: str | None = Field(default=None, min_length=1, max_length=100)
    logo_file: Path | None = None
    accent_colour: str = DEFAULT_ACCENT
    # Shown in the footer ("Questions? Contact your support team: ..."); support_url makes it a
    # link (https:, mailto: or tel:).
    support_contact: str | None = Field(default=None, min_length=1, max_length=200)
    support_url: str | None = None
    footer_links: list[FooterLink] = Field(default_factory=list, max_length=8)

    @field_validator("accent_colour")
    @classmethod
    def _accent(cls, value: str) -> str:
        if not _HEX_COLOUR.fullmatch(value):
            raise ValueError('must be a colour like "#1f5f99" (# and six hex digits)')
        ratio = contrast_ratio(value, "#ffffff")
        if ratio < MIN_CONTRAST:
            raise ValueError(
                f"{value} has a contrast of {ratio:.2f}:1 against the buttons' white text; "
                f"WCAG AA needs {MIN_CONTRAST}:1: choose a darker colour"
            )
        return value.lower()

    @field_validator("support_url")
    @classmethod
    def _support_url(cls, value: str | None) -> str | None:
        return None if value is None else _link_url(value, phone=True)

    @field_validator("logo_file")
    @classmethod
    def _logo(cls, value: Path | None) -> Path | None:
        if value is not None:
            read_logo(value)
        return value

    def logo(self) -> tuple[bytes, str] | None:
        """The logo's bytes and media type, read once at start."""
        return None if self.logo_file is None else read_logo(self.logo_file)


def read_logo(path: Path) -> tuple[bytes, str]:
    """Raises ValueError naming what is wrong with the file."""
    media_type = LOGO_TYPES.get(path.suffix.lower())
    if media_type is None:
        raise ValueError("must be a " + ", ".join(LOGO_TYPES) + " file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror}") from None
    if not data:
        raise ValueError(f"{path} is empty")
    if len(data) > LOGO_MAX_BYTES:
        raise ValueError(f"{path} is larger than {LOGO_MAX_BYTES // 1024} KiB")
    return data, media_type
