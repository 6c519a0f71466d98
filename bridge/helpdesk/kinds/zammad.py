"""Kind `zammad`: Zammad webhooks, as Zammad's admin documentation describes them.

From docs.zammad.org, "Webhook > Payload" (zammad-admin-documentation, manage/webhook/payload):
every POST carries `X-Zammad-Trigger` (the trigger's name), `X-Zammad-Delivery` ("a unique,
random ID string": the delivery id) and, when the webhook has an "HMAC SHA1 Signature Token",
`X-Hub-Signature: sha1=<hex HMAC-SHA1 of the body under that token>`.

No timestamp is signed, so there is no replay window: a captured request is refused only by its
delivery id (the same `X-Zammad-Delivery` twice acts once). Serve sealroom over TLS.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Literal

from bridge.helpdesk.verifier import (
    SignedOptions,
    Verifier,
    check_hex_hmac,
    delivery_id,
    require,
)

SIGNATURE = "X-Hub-Signature"
DELIVERY = "X-Zammad-Delivery"
MIN_TOKEN_CHARS = 16


def sign(token: str, body: bytes) -> str:
    """The X-Hub-Signature value Zammad sends (for the tests and the docs)."""
    return "sha1=" + hmac.new(token.encode(), body, hashlib.sha1).hexdigest()


class ZammadVerifier:
    def __init__(self, token: str) -> None:
        self._key = token.encode()

    def verify(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str:
        signature, delivery = require(headers, SIGNATURE, DELIVERY)
        delivery = delivery_id(delivery, DELIVERY)
        expected = hmac.new(self._key, body, hashlib.sha1).digest()
        check_hex_hmac(
            signature, "sha1", expected, SIGNATURE, "the webhook's HMAC SHA1 Signature Token"
        )
        return delivery


class Options(SignedOptions):
    kind: Literal["zammad"]

    def check_secret(self, value: str) -> str:
        """The webhook's "HMAC SHA1 Signature Token" (Settings > Webhook > the webhook)."""
        if len(value) < MIN_TOKEN_CHARS:
            raise ValueError(
                f"secret: use at least {MIN_TOKEN_CHARS} random characters (for example from "
                "`openssl rand -hex 32`), and the same in Zammad's HMAC SHA1 Signature Token"
            )
        return value

    def verifier(self) -> Verifier:
        return ZammadVerifier(self.secret_value())
