"""Kind `shared-secret`: a bearer token or basic-auth credentials, for senders that cannot sign.

Freshdesk automation webhooks and Jira Service Management automation's "Send web request" can
add an `Authorization` header but cannot sign the body. The header is compared in constant time.

What this does NOT protect against, plainly: nothing binds the credentials to the body or to a
time. Whoever sees one request (a proxy that logs headers, a TLS-terminating middlebox, the
helpdesk's own webhook log) can send any body, at any time, until the secret is changed. There
is no replay window. Serve sealroom only over TLS (https://), and prefer a signing kind when the
helpdesk offers one. Without `delivery_header` the delivery id is a hash of the body: the same
body twice acts once, so put something unique (a timestamp placeholder) in the body template.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import SecretStr, field_validator

from bridge.config_fields import read_secret
from bridge.errors import SignatureInvalid
from bridge.helpdesk.kinds.github_hmac import check_header_name
from bridge.helpdesk.verifier import (
    IntegrationOptions,
    Verifier,
    body_delivery_id,
    delivery_id,
    require,
    same_text,
)

AUTHORIZATION = "Authorization"
MIN_SECRET_CHARS = 16


def bearer(token: str) -> dict[str, str]:
    """The header a sender adds for bearer auth (for the tests and the docs)."""
    return {AUTHORIZATION: f"Bearer {token}"}


def basic(username: str, password: str) -> dict[str, str]:
    """The header a sender adds for basic auth (RFC 7617, UTF-8)."""
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {AUTHORIZATION: f"Basic {encoded}"}


class SharedSecretVerifier:
    def __init__(
        self,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        delivery_header: str | None = None,
    ) -> None:
        if (token is None) == (username is None or password is None):
            raise ValueError("give either a token or a username and password")
        self._scheme = "bearer" if token is not None else "basic"
        self._expected = token if token is not None else f"{username}:{password}"
        self.delivery_header = delivery_header

    def verify(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str:
        names = [AUTHORIZATION] + ([self.delivery_header] if self.delivery_header else [])
        authorization, *rest = require(headers, *names)
        scheme, _, credentials = authorization.partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != self._scheme or not credentials:
            raise SignatureInvalid(
                f"The {AUTHORIZATION} header must use {self._scheme.title()} authentication."
            )
        if self._scheme == "basic":
            try:
                credentials = base64.b64decode(credentials, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                raise SignatureInvalid(
                    "The Basic credentials are not base64 of UTF-8 text."
                ) from None
        if not same_text(credentials, self._expected):
            raise SignatureInvalid("Wrong credentials: check the integration's token or password.")
        if self.delivery_header:
            return delivery_id(rest[0], self.delivery_header)
        return body_delivery_id(body)


def _strong(secret: SecretStr | None, file: Path | None, key: str) -> str | None:
    value = read_secret(secret, file, key, required=False)
    if value is None:
        return None
    text = value.get_secret_value()
    if len(text) < MIN_SECRET_CHARS:
        raise ValueError(
            f"{key}: use at least {MIN_SECRET_CHARS} random characters (for example from "
            "`openssl rand -hex 32`)"
        )
    return text


class Options(IntegrationOptions):
    kind: Literal["shared-secret"]
    # Bearer: the sender adds "Authorization: Bearer <token>".
    token: SecretStr | None = None
    token_file: Path | None = None
    # Basic: the sender adds "Authorization: Basic base64(username:password)".
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    # The header holding the sender's delivery id; null: a hash of the body.
    delivery_header: str | None = None

    _delivery_header = field_validator("delivery_header")(check_header_name)

    @field_validator("username")
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        if value is not None and (not value or ":" in value or not value.isprintable()):
            raise ValueError("must be printable text without ':'")
        return value

    def _credentials(self) -> tuple[str | None, str | None]:
        token = _strong(self.token, self.token_file, "token")
        password = _strong(self.password, self.password_file, "password")
        basic_given = self.username is not None or password is not None
        if token is not None and basic_given:
            raise ValueError(
                "token: set either token (bearer) or username and password (basic), not both"
            )
        if token is None and not basic_given:
            raise ValueError(
                "token: set token (or token_file) for bearer authentication, or username and "
                "password (or password_file) for basic authentication"
            )
        if token is None and (self.username is None or password is None):
            missing = "username" if self.username is None else "password"
            raise ValueError(f"{missing}: basic authentication needs username and password")
        return token, password

    def verifier(self) -> Verifier:
        token, password = self._credentials()
        return SharedSecretVerifier(
            token=token,
            username=self.username if token is None else None,
            password=password,
            delivery_header=self.delivery_header,
        )

    def secret_values(self) -> list[str]:
        return [value for value in self._credentials() if value is not None]
