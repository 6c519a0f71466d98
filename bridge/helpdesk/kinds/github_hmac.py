"""Kind `github-hmac`: the GitHub webhook signature many tools copy.

`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body under the secret>` (GitHub's
"Validating webhook deliveries"). The delivery id comes from the header named by
`delivery_header` (GitHub: `X-GitHub-Delivery`, Gitea: `X-Gitea-Delivery`); with none configured
it is a hash of the body, so the same body twice acts once.

No timestamp is signed, so there is no replay window: a captured request is refused only by its
delivery id. Serve sealroom over TLS.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Literal

from pydantic import field_validator

from bridge.helpdesk.verifier import (
    SignedOptions,
    Verifier,
    body_delivery_id,
    check_hex_hmac,
    delivery_id,
    require,
)

SIGNATURE = "X-Hub-Signature-256"
MIN_SECRET_CHARS = 16
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")


def sign(secret: str, body: bytes) -> str:
    """The X-Hub-Signature-256 value a sender computes (for the tests and the docs)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_header_name(value: str | None) -> str | None:
    if value is not None and not _HEADER_NAME.fullmatch(value):
        raise ValueError("must be an HTTP header name, for example X-GitHub-Delivery")
    return value


class GithubHmacVerifier:
    def __init__(self, secret: str, delivery_header: str | None = None) -> None:
        self._key = secret.encode()
        self.delivery_header = delivery_header

    def verify(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str:
        names = [SIGNATURE] + ([self.delivery_header] if self.delivery_header else [])
        signature, *rest = require(headers, *names)
        expected = hmac.new(self._key, body, hashlib.sha256).digest()
        check_hex_hmac(signature, "sha256", expected, SIGNATURE, "the integration's secret")
        if self.delivery_header:
            return delivery_id(rest[0], self.delivery_header)
        return body_delivery_id(body)


class Options(SignedOptions):
    kind: Literal["github-hmac"]
    # The header holding the sender's delivery id; null: a hash of the body.
    delivery_header: str | None = None

    _delivery_header = field_validator("delivery_header")(check_header_name)

    def check_secret(self, value: str) -> str:
        if len(value) < MIN_SECRET_CHARS:
            raise ValueError(
                f"secret: use at least {MIN_SECRET_CHARS} random characters (for example from "
                "`openssl rand -hex 32`)"
            )
        return value

    def verifier(self) -> Verifier:
        return GithubHmacVerifier(self.secret_value(), self.delivery_header)
