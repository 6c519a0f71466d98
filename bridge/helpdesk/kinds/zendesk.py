"""Kind `zendesk`: Zendesk webhooks (triggers and automations), as Zendesk documents them.

From developer.zendesk.com, "Verifying webhook authenticity" and "Anatomy of a webhook request":

- `X-Zendesk-Webhook-Signature` = base64(HMAC-SHA256(signing secret, TIMESTAMP + BODY)): the
  timestamp header's text immediately followed by the raw body, no separator. The key is the
  signing secret *as the admin screen shows it* (its UTF-8 bytes; it looks like base64 but is
  not decoded: Zendesk's Node example passes the string to `createHmac`).
- `X-Zendesk-Webhook-Signature-Timestamp`: ISO 8601 UTC, e.g. `2021-03-25T05:09:27Z`. Replay
  window: within `tolerance_seconds` of our clock.
- `X-Zendesk-Webhook-Invocation-Id`: the delivery id (idempotency).

(An older copy of that page, under event-connectors/, shows an example vector signed as BODY +
TIMESTAMP while its own formula says TIMESTAMP + BODY; the formula, the current page and every
receiver in the wild use TIMESTAMP + BODY, and so do we.)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import Field

from bridge.errors import SignatureInvalid
from bridge.helpdesk.verifier import (
    SignedOptions,
    Verifier,
    check_window,
    delivery_id,
    require,
)

SIGNATURE = "X-Zendesk-Webhook-Signature"
TIMESTAMP = "X-Zendesk-Webhook-Signature-Timestamp"
INVOCATION_ID = "X-Zendesk-Webhook-Invocation-Id"
# The secret in Zendesk's documentation example, which its "Test webhook" button signs with:
# base64 of "this_secret_is_for_testing_only". Anyone can sign with it.
DOCUMENTED_TEST_SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="  # noqa: S105
_ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value, as Zendesk computes it (for the tests and the docs)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class ZendeskVerifier:
    def __init__(self, secret: str, tolerance_seconds: int = 300) -> None:
        self._key = secret.encode()
        self.tolerance = tolerance_seconds

    def verify(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str:
        signature, timestamp_text, invocation = require(
            headers, SIGNATURE, TIMESTAMP, INVOCATION_ID
        )
        invocation = delivery_id(invocation, INVOCATION_ID)
        if not _ISO_UTC.fullmatch(timestamp_text):
            raise SignatureInvalid(
                f"The {TIMESTAMP} header is not an ISO 8601 time like 2021-03-25T05:09:27Z."
            )
        try:
            timestamp = datetime.fromisoformat(timestamp_text).timestamp()
        except ValueError:
            raise SignatureInvalid(f"The {TIMESTAMP} header is not a valid time.") from None
        check_window(timestamp, time.time() if now is None else now, self.tolerance, TIMESTAMP)
        try:
            given = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise SignatureInvalid(f"The {SIGNATURE} header is not base64.") from None
        expected = hmac.new(self._key, timestamp_text.encode() + body, hashlib.sha256).digest()
        if not hmac.compare_digest(given, expected):
            raise SignatureInvalid(
                "The Zendesk signature does not match: check the integration's secret (the "
                "webhook's signing secret in Zendesk's admin center)."
            )
        return invocation


class Options(SignedOptions):
    kind: Literal["zendesk"]
    tolerance_seconds: int = Field(default=300, ge=10, le=3600)

    def check_secret(self, value: str) -> str:
        """The webhook's signing secret (Admin Center > Apps and integrations > Webhooks > the
        webhook > Signing secret > Reveal secret)."""
        value = value.strip()
        if value == DOCUMENTED_TEST_SECRET:
            raise ValueError(
                "secret: this is the test secret from Zendesk's documentation, which anyone "
                "can sign with; copy the webhook's own signing secret"
            )
        if len(value) < 16:
            raise ValueError(
                "secret: too short for a Zendesk signing secret; copy it from the webhook's "
                "page in Zendesk's admin center"
            )
        return value

    def verifier(self) -> Verifier:
        return ZendeskVerifier(self.secret_value(), self.tolerance_seconds)
