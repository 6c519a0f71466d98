"""What every inbound helpdesk kind provides: its YAML options and a `Verifier`.

A kind is one module in `bridge/helpdesk/kinds/` that defines `Options`, a subclass of
`IntegrationOptions` whose `kind` field is a one-value `Literal` (the name admins write in the
YAML). `Options.verifier()` builds the kind's `Verifier`. Nothing else needs to know the kind:
`bridge.config` discovers the modules, so adding a sixth kind is adding one file.

A verifier checks a delivery's authenticity in constant time and returns its *delivery id*,
the key under which `bridge.deliveries` recognises a replay: the vendor's own delivery id where
the vendor sends one, otherwise a hash of the body (so that the same body twice acts once; see
`body_delivery_id`). Every failure is `SignatureInvalid` (401) with a reason a person can act
on; nothing else escapes, so no header can turn into a 500.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, get_args

from pydantic import Field, SecretStr, field_validator, model_validator
from store.limits import WEBHOOK_ID_MAX

from bridge.config_fields import Section, read_secret
from bridge.errors import SignatureInvalid
from bridge.helpdesk.mapping import FieldMap, FieldsOptions
from bridge.helpdesk.outbound_options import OutboundOptions
from bridge.helpdesk.presets import PRESETS
from bridge.i18n import DEFAULT_LANGUAGE, LANGUAGES
from bridge.ids import agent_map

# Delivery ids are stored to recognise replays: they must fit their column and be plain text.
_DELIVERY_ID = re.compile(rf"[\x21-\x7e]{{1,{WEBHOOK_ID_MAX}}}")
BODY_HASH_PREFIX = "body-sha256:"
# Longer than any signature or timestamp a vendor sends; refused before any parsing.
HEADER_VALUE_MAX = 512


class Verifier(Protocol):
    def verify(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str:
        """The delivery's id, if it is authentic.

        Raises:
            SignatureInvalid: missing or malformed header, wrong signature or credentials, or a
                timestamp outside the replay window.
        """
        ...


class IntegrationOptions(Section):
    """The options every integration has; each kind adds its own."""

    kind: str
    # Where sealroom finds what it needs in this helpdesk's JSON (bridge.helpdesk.mapping):
    # a preset, and/or per-entry overrides. Neither: sealroom's own body.
    preset: str | None = None
    fields: FieldsOptions | None = None
    # This helpdesk's agent ids or e-mails -> Matrix IDs, looked up before the global agents:.
    agents: dict[str, str] = Field(default_factory=dict)
    # Posting the invite link and the milestones back into the ticket; null: nothing is posted.
    outbound: OutboundOptions | None = None
    # The language of the bot's notices in this helpdesk's rooms (bridge/locale).
    language: str = DEFAULT_LANGUAGE
    # How long this helpdesk's secure sessions stay open, in hours; None: rooms.lifetime_hours.
    lifetime_hours: float | None = Field(default=None, gt=0, le=24 * 90)

    @field_validator("preset")
    @classmethod
    def _preset(cls, value: str | None) -> str | None:
        if value is not None and value not in PRESETS:
            raise ValueError("must be one of " + ", ".join(PRESETS))
        return value

    @field_validator("agents")
    @classmethod
    def _agents(cls, value: dict[str, str]) -> dict[str, str]:
        return agent_map(value, "this helpdesk's")

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError("must be one of " + ", ".join(LANGUAGES))
        return value

    @model_validator(mode="after")
    def _complete_mapping(self) -> IntegrationOptions:
        field_map = self.field_map()
        if field_map is not None and (problems := field_map.problems()):
            raise ValueError("; ".join(problems))
        return self

    def field_map(self) -> FieldMap | None:
        """The mapping to read this helpdesk's body with; None for sealroom's own body."""
        if self.preset is None and self.fields is None:
            return None
        return PRESETS[self.preset or "sealroom"].overridden(self.fields)

    def verifier(self) -> Verifier:
        """Build the kind's verifier.

        Raises:
            ValueError: "key: what is wrong" for a missing, unreadable or weak secret.
        """
        raise NotImplementedError

    def secret_values(self) -> list[str]:
        """Every secret of this integration, for the log redaction."""
        raise NotImplementedError

    @classmethod
    def kind_name(cls) -> str:
        (name,) = get_args(cls.model_fields["kind"].annotation)
        return str(name)


class SignedOptions(IntegrationOptions):
    """An integration whose sender signs with one shared secret (`secret` or `secret_file`)."""

    secret: SecretStr | None = None
    secret_file: Path | None = None

    def secret_value(self) -> str:
        """The configured secret, checked as the kind requires (`check_secret`).

        Raises:
            ValueError: "secret: what is wrong" when it is missing, unreadable or weak.
        """
        secret = read_secret(self.secret, self.secret_file, "secret", required=True)
        assert secret is not None
        return self.check_secret(secret.get_secret_value())

    def check_secret(self, value: str) -> str:
        """The secret as the verifier uses it; raises ValueError("secret: ...") if unfit."""
        raise NotImplementedError

    def secret_values(self) -> list[str]:
        return [self.secret_value()]


def header(headers: Mapping[str, str], name: str) -> str:
    """A header's value, stripped ("" if absent). aiohttp's headers match names case-blind."""
    value = headers.get(name, "")
    if len(value) > HEADER_VALUE_MAX:
        raise SignatureInvalid(f"The {name} header is longer than {HEADER_VALUE_MAX} characters.")
    return value.strip()


def require(headers: Mapping[str, str], *names: str) -> list[str]:
    values = [header(headers, name) for name in names]
    missing = [name for name, value in zip(names, values, strict=True) if not value]
    if missing:
        raise SignatureInvalid(f"Missing header: {', '.join(missing)}.")
    return values


def delivery_id(value: str, name: str) -> str:
    """A vendor's delivery id from header `name`, checked to be storable plain text."""
    if not _DELIVERY_ID.fullmatch(value):
        raise SignatureInvalid(
            f"The {name} header must be 1 to {WEBHOOK_ID_MAX} printable ASCII characters "
            "without spaces."
        )
    return value


def body_delivery_id(body: bytes) -> str:
    """The delivery id of a sender that sends none: the body's hash.

    The same body twice is then one delivery (answered from the first answer), so a helpdesk
    that wants two identical requests to act twice must put something unique in the body.
    """
    return BODY_HASH_PREFIX + hashlib.sha256(body).hexdigest()


def check_window(timestamp: float, now: float, tolerance: int, name: str) -> None:
    """Refuse a signed timestamp outside [now - tolerance, now + tolerance]."""
    if timestamp < now - tolerance:
        raise SignatureInvalid(
            f"The {name} header is too old: check the sender's clock or resend."
        )
    if timestamp > now + tolerance:
        raise SignatureInvalid(f"The {name} header is in the future: check the sender's clock.")


def same_text(given: str, expected: str) -> bool:
    """Constant-time equality of two strings of any length or alphabet (hashed first, so neither
    the length nor a non-ASCII character of what was given changes the time taken)."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest(),
        hashlib.sha256(expected.encode("utf-8", "surrogateescape")).digest(),
    )


def check_hex_hmac(given: str, prefix: str, expected: bytes, name: str, what_secret: str) -> None:
    """`given` must be `<prefix>=<hex of expected>` (hex case-blind), compared in constant time."""
    algorithm, sep, value = given.partition("=")
    if not sep or algorithm.strip().lower() != prefix:
        raise SignatureInvalid(f"The {name} header must look like {prefix}=<hex digest>.")
    try:
        digest = bytes.fromhex(value.strip())
    except ValueError:
        raise SignatureInvalid(f"The {name} header's digest is not hexadecimal.") from None
    if not hmac.compare_digest(digest, expected):
        raise SignatureInvalid(f"The signature does not match: check {what_secret}.")
