"""Kind `standard-webhooks` (https://www.standardwebhooks.com/): id, timestamp, v1 HMAC.

Signed content: `<webhook-id>.<webhook-timestamp>.<body>`, HMAC-SHA256 with the base64 key after
`whsec_`; `webhook-signature` holds space-separated `v1,<base64>` values. Replay window: the
timestamp within `tolerance_seconds`. Delivery id: `webhook-id`.

Every malformed input raises SignatureInvalid with a reason; nothing else escapes, so a bad
header can never turn into a 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from typing import Literal

from pydantic import Field
from store.limits import WEBHOOK_ID_MAX

from bridge.errors import SignatureInvalid
from bridge.helpdesk.verifier import SignedOptions, Verifier

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
# Kept to recognise replays, so it must fit its column and be plain text (msg_2KWPBgLlAf...).
_WEBHOOK_ID = re.compile(rf"[\x21-\x7e]{{1,{WEBHOOK_ID_MAX}}}")


def decode_secret(secret: str) -> bytes:
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError("a Standard Webhooks secret is whsec_ followed by base64") from err


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for a body (used by the demo and the tests)."""
    key = decode_secret(secret)
    content = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def signed_headers(
    secret: str, body: bytes, webhook_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    """The headers a Standard Webhooks sender adds (for the demo, the tests and the bench)."""
    webhook_id = webhook_id or f"msg_{secrets.token_hex(8)}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
    }


class StandardWebhooksVerifier:
    def __init__(self, secret: str, tolerance_seconds: int = 300) -> None:
        self._key = decode_secret(secret)
        self.tolerance = tolerance_seconds

    def verify(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str:
        """Return the delivery's webhook id.

        Raises:
            SignatureInvalid: missing header, stale or future timestamp, non-UTF-8 body, or no
                matching v1 signature.
        """
        webhook_id = headers.get("webhook-id", "").strip()
        timestamp_text = headers.get("webhook-timestamp", "").strip()
        signature_header = headers.get("webhook-signature", "").strip()
        if not webhook_id or not timestamp_text or not signature_header:
            raise SignatureInvalid(
                "Missing webhook-id, webhook-timestamp or webhook-signature header."
            )
        if not _WEBHOOK_ID.fullmatch(webhook_id):
            raise SignatureInvalid(
                "The webhook-id header must be 1 to "
                f"{WEBHOOK_ID_MAX} printable ASCII characters without spaces."
            )
        try:
            timestamp = int(timestamp_text)
        except ValueError:
            raise SignatureInvalid("The webhook-timestamp header is not a number.") from None
        current = time.time() if now is None else now
        if timestamp < current - self.tolerance:
            raise SignatureInvalid(
                "The webhook-timestamp is too old: check the sender's clock or resend."
            )
        if timestamp > current + self.tolerance:
            raise SignatureInvalid(
                "The webhook-timestamp is in the future: check the sender's clock."
            )
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise SignatureInvalid("The body is not UTF-8.") from None
        content = f"{webhook_id}.{timestamp_text}.".encode() + body
        expected = hmac.new(self._key, content, hashlib.sha256).digest()
        for candidate in signature_header.split():
            version, _, value = candidate.partition(",")
            if version != "v1" or not value:
                continue
            try:
                given = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                continue
            if hmac.compare_digest(given, expected):
                return webhook_id
        raise SignatureInvalid("No valid v1 signature: check the integration's secret.")


class Options(SignedOptions):
    kind: Literal["standard-webhooks"]
    tolerance_seconds: int = Field(default=300, ge=10, le=3600)

    def check_secret(self, value: str) -> str:
        try:
            key = base64.b64decode(value.removeprefix(SECRET_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) < 16:
            raise ValueError(
                "secret: must be whsec_ followed by base64 of at least 16 random bytes, "
                "as the helpdesk shows it"
            )
        return value

    def verifier(self) -> Verifier:
        return StandardWebhooksVerifier(self.secret_value(), self.tolerance_seconds)
