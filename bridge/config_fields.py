"""Building blocks of the YAML schema shared by `bridge.config` and the helpdesk kinds.

A helpdesk kind (`bridge.helpdesk.kinds.*`) declares its own options model on `Section` and reads
its secrets with `read_secret`, so that adding a kind never touches `bridge.config`.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr

# Values copied from config.example.yaml that must never run in production.
FORBIDDEN_SECRETS = {"change-me", "changeme", "secret", "password"}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            "must be an http:// or https:// URL, for example https://matrix.example.org"
        )
    return value.rstrip("/")


def read_secret(
    value: SecretStr | None, file: Path | None, key: str, *, required: bool
) -> SecretStr | None:
    """The secret from `key` or `key_file`.

    Raises:
        ValueError: "key: what is wrong" (both set, unreadable or empty file, an example value,
            or missing while required).
    """
    if value is not None and file is not None:
        raise ValueError(f"{key}: set either {key} or {key}_file, not both")
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ValueError(f"{key}_file: cannot read {file}: {err.strerror}") from None
        if not text:
            raise ValueError(f"{key}_file: {file} is empty")
        value = SecretStr(text)
    if value is not None and value.get_secret_value().strip().lower() in FORBIDDEN_SECRETS:
        raise ValueError(f"{key}: replace the example value with a real secret")
    if required and value is None:
        raise ValueError(f"{key}: set {key} (or {key}_file)")
    return value
