"""`integrations.<name>.outbound`: posting the link and the milestones back into the ticket."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from bridge.config_fields import Section, check_http_url, read_secret

Milestone = Literal[
    "room_ready", "customer_joined", "link_used", "session_closed", "invite_failed"
]
MILESTONES: tuple[Milestone, ...] = get_args(Milestone)


class OutboundOptions(Section):
    # zendesk: Zendesk's Ticketing API (comments); zammad: Zammad's REST API (articles);
    # callback: a Standard-Webhooks-signed JSON POST to `url`.
    kind: Literal["zendesk", "zammad", "callback"]
    # zendesk/zammad: the helpdesk's base URL (https://example.zendesk.com); callback: the URL.
    url: str
    # zendesk: the API user's e-mail (requests authenticate as "<email>/token").
    email: str | None = Field(default=None, validate_default=True)
    # zendesk: an API token; zammad: an access token (ticket.agent permission).
    token: SecretStr | None = None
    token_file: Path | None = None
    # callback: the signing secret, whsec_ followed by base64.
    secret: SecretStr | None = None
    secret_file: Path | None = None
    # Hosts sealroom may call for this integration; empty: only url's host. Anything else,
    # and every redirect, is refused and logged.
    allowed_hosts: list[str] = Field(default_factory=list)
    # Loopback, private, link-local and other non-public addresses are refused unless true.
    allow_private_addresses: bool = False
    # Post the invite link as a public reply (zendesk/zammad), or send it (callback).
    public_reply: bool = True
    # Which milestones become internal notes (or callbacks).
    milestones: list[Milestone] = Field(default_factory=lambda: list(MILESTONES))
    timeout_seconds: float = Field(default=10, gt=0, le=120)

    _url = field_validator("url")(check_http_url)

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            if not host or "/" in host or ":" in host or host != host.strip():
                raise ValueError(f"{host!r}: a host name like example.zendesk.com (no port)")
        return [host.lower() for host in value]

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("kind") == "zendesk" and not value:
            raise ValueError("Zendesk's API needs the API user's e-mail")
        return value

    @property
    def hosts(self) -> frozenset[str]:
        host = (urlsplit(self.url).hostname or "").lower()
        return frozenset(self.allowed_hosts or [host])

    def token_value(self) -> str:
        """Raises ValueError ("outbound.token: ...") when missing or unreadable."""
        secret = read_secret(self.token, self.token_file, "outbound.token", required=True)
        assert secret is not None
        return secret.get_secret_value()

    def secret_value(self) -> str:
        secret = read_secret(self.secret, self.secret_file, "outbound.secret", required=True)
        assert secret is not None
        value = secret.get_secret_value()
        try:
            key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) < 16:
            raise ValueError(
                "outbound.secret: must be whsec_ followed by base64 of at least 16 random bytes"
            )
        return value

    def secret_values(self) -> list[str]:
        """Every credential (checks them all; raises ValueError naming the key)."""
        return [self.secret_value()] if self.kind == "callback" else [self.token_value()]
