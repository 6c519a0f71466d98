"""Each inbound kind against a request built exactly as its vendor documents it.

Accepted: the vendor-exact request (signed by the vendor's published example or by an
implementation this project did not write: Node's crypto running Zendesk's example code,
OpenSSL as Zammad's Ruby uses it, GitHub's published vector). Refused with SignatureInvalid
(401): forged (another secret), tampered (one byte of the body), stale (where a timestamp is
signed), and every malformed header. Replays are the web tier's job (tests/web/test_kinds.py).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict

from bridge.errors import SignatureInvalid
from bridge.helpdesk import verifier as base
from bridge.helpdesk.kinds import (
    github_hmac,
    kind_names,
    option_models,
    shared_secret,
    zammad,
    zendesk,
)
from bridge.helpdesk.verifier import Verifier
from tests.support import vectors

REPO = Path(__file__).resolve().parents[2]
VECTORS: dict[str, Any] = vectors.load("webhooks.json")
BODY = b'{"event": "open", "ticket": {"id": "4711", "subject": "VPN"}, "agent": "a@example.com"}'


def refused(verifier: Verifier, headers: Mapping[str, str], body: bytes, **kw: Any) -> str:
    with pytest.raises(SignatureInvalid) as info:
        verifier.verify(CIMultiDict(headers), body, **kw)
    message = info.value.message
    assert message
    return message


# -- the registry -------------------------------------------------------------------------------


def test_every_kind_is_one_module_found_by_the_registry() -> None:
    assert kind_names() == [
        "github-hmac",
        "shared-secret",
        "standard-webhooks",
        "zammad",
        "zendesk",
    ]
    assert all(model.__module__.startswith("bridge.helpdesk.kinds.") for model in option_models())


# -- zendesk ------------------------------------------------------------------------------------

ZENDESK = VECTORS["zendesk_anatomy"]
ZD_SECRET = ZENDESK["signing_secret"]
ZD_TIME = ZENDESK["x_zendesk_webhook_signature_timestamp"]
ZD_NOW = datetime(2021, 3, 25, 5, 9, 27, tzinfo=UTC).timestamp()

# The signing function of developer.zendesk.com's "Verifying webhook authenticity" example,
# unchanged: createHmac(SIGNING_SECRET_ALGORITHM, SIGNING_SECRET).update(timestamp + body).
ZENDESK_NODE_EXAMPLE = """
const crypto = require("crypto");
const SIGNING_SECRET = process.env.SIGNING_SECRET;
const SIGNING_SECRET_ALGORITHM = "sha256";
let chunks = [];
process.stdin.on("data", (c) => chunks.push(c));
process.stdin.on("end", () => {
  const body = Buffer.concat(chunks).toString("utf8");
  const timestamp = process.env.TIMESTAMP;
  let hmac = crypto.createHmac(SIGNING_SECRET_ALGORITHM, SIGNING_SECRET);
  let sig = hmac.update(timestamp + body).digest("base64");
  process.stdout.write(sig);
});
"""


def zendesk_node_signature(secret: str, timestamp: str, body: bytes) -> str:
    result = subprocess.run(
        ["node", "-e", ZENDESK_NODE_EXAMPLE],
        input=body,
        capture_output=True,
        env={"SIGNING_SECRET": secret, "TIMESTAMP": timestamp, "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=True,
    )
    return result.stdout.decode()


def zendesk_headers(signature: str, **overrides: str) -> CIMultiDict[str]:
    values = {
        "x-zendesk-account-id": ZENDESK["x_zendesk_account_id"],
        "x-zendesk-webhook-id": ZENDESK["x_zendesk_webhook_id"],
        "x-zendesk-webhook-invocation-id": ZENDESK["x_zendesk_webhook_invocation_id"],
        "x-zendesk-webhook-signature": signature,
        "x-zendesk-webhook-signature-timestamp": ZD_TIME,
    }
    values.update({k.replace("_", "-"): v for k, v in overrides.items()})
    return CIMultiDict(values)


@pytest.fixture(scope="module")
def zd_signature() -> str:
    return zendesk_node_signature(ZD_SECRET, ZD_TIME, BODY)


def test_zendesk_accepts_a_request_signed_by_zendesks_own_example_code(zd_signature: str) -> None:
    verifier = zendesk.ZendeskVerifier(ZD_SECRET)

    # Header names as Zendesk sends them (lower case), looked up case-blind as aiohttp does.
    assert verifier.verify(zendesk_headers(zd_signature), BODY, now=ZD_NOW) == "8350205582"
    assert zendesk.sign(ZD_SECRET, ZD_TIME, BODY) == zd_signature


def test_zendesk_signs_timestamp_then_body_not_body_then_timestamp() -> None:
    """The order matters: a signature over BODY + TIMESTAMP (an old copy of the docs) fails."""
    swapped = zendesk_node_signature(ZD_SECRET, "", BODY + ZD_TIME.encode())
    verifier = zendesk.ZendeskVerifier(ZD_SECRET)

    assert "does not match" in refused(verifier, zendesk_headers(swapped), BODY, now=ZD_NOW)


def test_zendesk_refuses_forged_tampered_and_stale(zd_signature: str) -> None:
    verifier = zendesk.ZendeskVerifier(ZD_SECRET)
    forged = zendesk.sign("another-signing-secret-entirely", ZD_TIME, BODY)

    assert "secret" in refused(verifier, zendesk_headers(forged), BODY, now=ZD_NOW)
    tampered = BODY.replace(b"4711", b"4712")
    assert "does not match" in refused(
        verifier, zendesk_headers(zd_signature), tampered, now=ZD_NOW
    )
    assert "too old" in refused(verifier, zendesk_headers(zd_signature), BODY, now=ZD_NOW + 301)
    assert "future" in refused(verifier, zendesk_headers(zd_signature), BODY, now=ZD_NOW - 301)
    # A fresh timestamp with the old signature: the timestamp is signed.
    fresh = "2021-03-25T05:13:00Z"
    assert "does not match" in refused(
        verifier,
        zendesk_headers(zd_signature, x_zendesk_webhook_signature_timestamp=fresh),
        BODY,
        now=ZD_NOW,
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"x_zendesk_webhook_signature_timestamp": "1616648967"},
        {"x_zendesk_webhook_signature_timestamp": "2021-03-25 05:09:27"},
        {"x_zendesk_webhook_signature_timestamp": "2021-13-45T05:09:27Z"},
        {"x_zendesk_webhook_signature": "!!not base64!!"},
        {"x_zendesk_webhook_signature": ""},
        {"x_zendesk_webhook_invocation_id": ""},
        {"x_zendesk_webhook_invocation_id": "has space"},
        {"x_zendesk_webhook_invocation_id": "x" * 256},
        {"x_zendesk_webhook_signature": "A" * 600},
    ],
    ids=lambda o: f"{next(iter(o))}={next(iter(o.values()))[:24]}",
)
def test_zendesk_malformed_headers_are_signature_invalid_only(
    zd_signature: str, overrides: dict[str, str]
) -> None:
    verifier = zendesk.ZendeskVerifier(ZD_SECRET)

    refused(verifier, zendesk_headers(zd_signature, **overrides), BODY, now=ZD_NOW)


# -- zammad -------------------------------------------------------------------------------------

ZAMMAD_TOKEN = "zammad-hmac-signature-token"
ZAMMAD_DELIVERY = "0c0dc4a6-1c5b-4a1f-b8a1-4a6e2a8ad1c1"


def openssl_hmac_sha1_hex(key: str, body: bytes) -> str:
    """Zammad computes OpenSSL::HMAC.hexdigest('sha1', token, payload): ask OpenSSL itself."""
    result = subprocess.run(
        ["openssl", "dgst", "-sha1", "-hmac", key, "-r"],
        input=body,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return result.stdout.decode().split()[0]


def zammad_headers(signature: str, delivery: str = ZAMMAD_DELIVERY) -> dict[str, str]:
    return {
        "User-Agent": "Zammad User Agent",
        "X-Zammad-Trigger": "sealroom: open a secure room",
        "X-Zammad-Delivery": delivery,
        "X-Hub-Signature": signature,
    }


def test_zammad_accepts_an_openssl_signed_request() -> None:
    signature = "sha1=" + openssl_hmac_sha1_hex(ZAMMAD_TOKEN, BODY)
    verifier = zammad.ZammadVerifier(ZAMMAD_TOKEN)

    assert verifier.verify(zammad_headers(signature), BODY) == ZAMMAD_DELIVERY
    assert zammad.sign(ZAMMAD_TOKEN, BODY) == signature
    # Hex in capitals is the same digest.
    assert verifier.verify(zammad_headers(signature.upper().replace("SHA1=", "sha1=")), BODY)


def test_zammad_refuses_forged_and_tampered() -> None:
    verifier = zammad.ZammadVerifier(ZAMMAD_TOKEN)
    good = zammad.sign(ZAMMAD_TOKEN, BODY)

    assert "Token" in refused(verifier, zammad_headers(zammad.sign("x" * 20, BODY)), BODY)
    assert "does not match" in refused(verifier, zammad_headers(good), BODY + b" ")


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Zammad-Delivery": ZAMMAD_DELIVERY},
        {"X-Hub-Signature": "sha1=00"},
        {"X-Hub-Signature": "sha256=" + "0" * 64, "X-Zammad-Delivery": ZAMMAD_DELIVERY},
        {"X-Hub-Signature": "sha1=zz", "X-Zammad-Delivery": ZAMMAD_DELIVERY},
        {"X-Hub-Signature": "sha1", "X-Zammad-Delivery": ZAMMAD_DELIVERY},
        {"X-Hub-Signature": "sha1=é", "X-Zammad-Delivery": ZAMMAD_DELIVERY},
    ],
)
def test_zammad_malformed_headers_are_signature_invalid_only(headers: dict[str, str]) -> None:
    refused(zammad.ZammadVerifier(ZAMMAD_TOKEN), headers, BODY)


# -- github-hmac --------------------------------------------------------------------------------

GITHUB = VECTORS["github_hmac"]


def test_github_hmac_accepts_githubs_published_example() -> None:
    verifier = github_hmac.GithubHmacVerifier(GITHUB["secret"], "X-GitHub-Delivery")
    body = GITHUB["body"].encode()
    headers = {
        "X-Hub-Signature-256": GITHUB["x_hub_signature_256"],
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    }

    assert verifier.verify(headers, body) == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert github_hmac.sign(GITHUB["secret"], body) == GITHUB["x_hub_signature_256"]


def test_github_hmac_refuses_forged_tampered_and_a_missing_configured_delivery_id() -> None:
    verifier = github_hmac.GithubHmacVerifier(GITHUB["secret"], "X-GitHub-Delivery")
    body = GITHUB["body"].encode()
    good = {"X-Hub-Signature-256": GITHUB["x_hub_signature_256"], "X-GitHub-Delivery": "d-1"}

    forged = {**good, "X-Hub-Signature-256": github_hmac.sign("y" * 20, body)}
    assert "does not match" in refused(verifier, forged, body)
    assert "does not match" in refused(verifier, good, b"Hello, World?")
    assert "X-GitHub-Delivery" in refused(
        verifier, {"X-Hub-Signature-256": GITHUB["x_hub_signature_256"]}, body
    )
    refused(verifier, {**good, "X-Hub-Signature-256": "sha1=" + "0" * 40}, body)


def test_without_a_delivery_header_the_delivery_id_is_the_bodys_hash() -> None:
    verifier = github_hmac.GithubHmacVerifier(GITHUB["secret"])
    body = GITHUB["body"].encode()
    headers = {"X-Hub-Signature-256": GITHUB["x_hub_signature_256"]}

    first = verifier.verify(headers, body)
    assert first == verifier.verify(headers, body)
    assert first.startswith(base.BODY_HASH_PREFIX)
    assert len(first) <= 255


# -- shared-secret ------------------------------------------------------------------------------

TOKEN = "freshdesk-bearer-token-0123456789"


def test_shared_secret_bearer_accepts_the_token_and_nothing_else() -> None:
    verifier = shared_secret.SharedSecretVerifier(token=TOKEN)

    assert verifier.verify({"Authorization": f"Bearer {TOKEN}"}, BODY).startswith("body-")
    assert verifier.verify(CIMultiDict({"authorization": f"bearer  {TOKEN} "}), BODY)
    assert "Wrong" in refused(verifier, {"Authorization": f"Bearer {TOKEN}x"}, BODY)
    assert "Wrong" in refused(verifier, {"Authorization": f"Bearer {TOKEN[:-1]}"}, BODY)
    refused(verifier, {"Authorization": f"Basic {TOKEN}"}, BODY)
    refused(verifier, {"Authorization": "Bearer"}, BODY)
    refused(verifier, {"Authorization": "Bearer é€"}, BODY)
    refused(verifier, {}, BODY)


def test_shared_secret_basic_accepts_rfc7617_credentials() -> None:
    verifier = shared_secret.SharedSecretVerifier(username="jira", password="pässwörd-0123456789")

    assert verifier.verify(shared_secret.basic("jira", "pässwörd-0123456789"), BODY)
    # As curl --user and Jira's automation build it.
    header = "Basic " + base64.b64encode("jira:pässwörd-0123456789".encode()).decode()
    assert verifier.verify({"Authorization": header}, BODY)
    assert "Wrong" in refused(verifier, shared_secret.basic("jira", "pässwörd-012345678"), BODY)
    assert "Wrong" in refused(verifier, shared_secret.basic("jirb", "pässwörd-0123456789"), BODY)
    refused(verifier, {"Authorization": "Basic !!!"}, BODY)
    refused(verifier, {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe").decode()}, BODY)


def test_shared_secret_uses_a_configured_delivery_header() -> None:
    verifier = shared_secret.SharedSecretVerifier(token=TOKEN, delivery_header="X-Request-Id")

    headers = {"Authorization": f"Bearer {TOKEN}", "X-Request-Id": "req-1"}
    assert verifier.verify(headers, BODY) == "req-1"
    refused(verifier, {"Authorization": f"Bearer {TOKEN}"}, BODY)


# -- shared guarantees --------------------------------------------------------------------------


def test_string_comparison_is_on_digests_so_any_input_is_safe() -> None:
    assert base.same_text("a", "a")
    assert not base.same_text("a" * 1000, "a")
    assert not base.same_text("\udcff", "a")  # a surrogate from a latin-1 header decodes


SIXTH_KIND = """
from typing import Literal
from bridge.helpdesk.verifier import IntegrationOptions, body_delivery_id

class SixthVerifier:
    def verify(self, headers, body, now=None):
        return body_delivery_id(body)

class Options(IntegrationOptions):
    kind: Literal["sixth"]
    colour: str = "blue"

    def verifier(self):
        return SixthVerifier()

    def secret_values(self):
        return []
"""

SIXTH_CHECK = """
import sys
import bridge.helpdesk.kinds as kinds
kinds.__path__.append(sys.argv[1])
from bridge.config_file import parse
from bridge.errors import ConfigError
base = {"homeserver": {"url": "https://m.example.org", "server_name": "example.org"},
        "bot": {"user_id": "@s:example.org", "password": "a-real-bot-password"}}
config = parse({**base, "integrations": {"six": {"kind": "sixth", "colour": "red"}}})
print(config.integrations["six"].verifier().verify({}, b"x")[:12])
try:
    parse({**base, "integrations": {"six": {"kind": "sixth", "color": "red"}}})
except ConfigError as err:
    print(err.problems)
"""


def test_a_sixth_kind_is_one_new_file(tmp_path: Path) -> None:
    """Drop a module into the kinds package: the YAML accepts its kind and its options, with
    key-path errors, and it verifies; nothing else was edited."""
    (tmp_path / "sixth.py").write_text(SIXTH_KIND, encoding="utf-8")

    result = subprocess.run(
        [sys.executable, "-c", SIXTH_CHECK, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "body-sha256:"
    assert "integrations.six.color: unknown option" in lines[1]
