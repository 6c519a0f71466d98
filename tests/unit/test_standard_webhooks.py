"""Standard Webhooks verification against the specification's published test vector.

A bad signature of any shape must end as SignatureInvalid (401), never another exception (500).
"""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict

from bridge.errors import SignatureInvalid
from bridge.helpdesk.kinds.standard_webhooks import StandardWebhooksVerifier, sign
from tests.support import vectors

VECTOR: dict[str, Any] = vectors.load("webhooks.json")["standard_webhooks"]
SECRET: str = VECTOR["secret"]
WEBHOOK_ID: str = VECTOR["webhook_id"]
TIMESTAMP: int = VECTOR["webhook_timestamp"]
BODY: bytes = VECTOR["body"].encode()


def headers(**overrides: str) -> dict[str, str]:
    values = {
        "webhook-id": WEBHOOK_ID,
        "webhook-timestamp": str(TIMESTAMP),
        "webhook-signature": VECTOR["webhook_signature"],
    }
    values.update({k.replace("_", "-"): v for k, v in overrides.items()})
    return values


@pytest.fixture
def verifier() -> StandardWebhooksVerifier:
    return StandardWebhooksVerifier(SECRET, tolerance_seconds=300)


def test_accepts_the_vector_at_its_timestamp(verifier: StandardWebhooksVerifier) -> None:
    assert verifier.verify(headers(), BODY, now=TIMESTAMP) == WEBHOOK_ID


def test_accepts_the_header_with_several_signatures(verifier: StandardWebhooksVerifier) -> None:
    header = VECTOR["also_valid_header"]
    assert header.split()[-1] == VECTOR["webhook_signature"]  # the valid one is not first

    assert verifier.verify(headers(webhook_signature=header), BODY, now=TIMESTAMP) == WEBHOOK_ID


def test_headers_are_matched_case_insensitively_as_aiohttp_hands_them_over(
    verifier: StandardWebhooksVerifier,
) -> None:
    given = CIMultiDict({k.title(): v for k, v in headers().items()})

    assert verifier.verify(given, BODY, now=TIMESTAMP) == WEBHOOK_ID


@pytest.mark.parametrize("variant", VECTOR["must_reject"], ids=lambda v: v["why"])
def test_rejects_every_published_variant(
    verifier: StandardWebhooksVerifier, variant: dict[str, Any]
) -> None:
    body = BODY
    if "body" in variant:
        body = variant["body"].encode()
    if "body_hex" in variant:
        body = bytes.fromhex(variant["body_hex"])
    given = headers()
    if "webhook_signature" in variant:
        given["webhook-signature"] = variant["webhook_signature"]
    now = variant.get("now", TIMESTAMP)

    with pytest.raises(SignatureInvalid) as info:
        verifier.verify(given, body, now=now)

    assert info.value.message
    assert SECRET not in info.value.message


def test_the_vector_is_accepted_at_the_edges_of_the_tolerance(
    verifier: StandardWebhooksVerifier,
) -> None:
    assert verifier.verify(headers(), BODY, now=TIMESTAMP + 300) == WEBHOOK_ID
    assert verifier.verify(headers(), BODY, now=TIMESTAMP - 300) == WEBHOOK_ID


@pytest.mark.parametrize(
    ("now", "reason"),
    [(TIMESTAMP + 301, "too old"), (TIMESTAMP - 301, "in the future")],
    ids=["stale", "future"],
)
def test_rejects_timestamps_outside_the_tolerance_and_says_which(
    verifier: StandardWebhooksVerifier, now: int, reason: str
) -> None:
    with pytest.raises(SignatureInvalid, match=reason):
        verifier.verify(headers(), BODY, now=now)


def test_without_now_the_real_clock_is_used(verifier: StandardWebhooksVerifier) -> None:
    """The vector is from 2021: with today's clock it is stale."""
    with pytest.raises(SignatureInvalid, match="too old"):
        verifier.verify(headers(), BODY)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_rejects_a_missing_header(verifier: StandardWebhooksVerifier, missing: str) -> None:
    given = headers()
    del given[missing]

    with pytest.raises(SignatureInvalid, match="Missing"):
        verifier.verify(given, BODY, now=TIMESTAMP)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param({"webhook_timestamp": "soon"}, id="timestamp-not-a-number"),
        pytest.param({"webhook_timestamp": "1614265330.5"}, id="timestamp-fractional"),
        pytest.param({"webhook_timestamp": "1e9"}, id="timestamp-exponent"),
        pytest.param({"webhook_timestamp": "99999999999999999999999"}, id="timestamp-huge"),
        pytest.param({"webhook_id": "   "}, id="blank-id"),
        pytest.param({"webhook_id": "x" * 256}, id="id-too-long"),
        pytest.param({"webhook_id": "msg_other"}, id="other-id"),
        pytest.param({"webhook_signature": "v1,!!!not-base64!!!"}, id="signature-not-base64"),
        pytest.param({"webhook_signature": "v1,"}, id="signature-empty-value"),
        pytest.param({"webhook_signature": ",,, v1 v1,="}, id="signature-garbage"),
        pytest.param({"webhook_signature": "v1,dGVzdA=="}, id="signature-wrong-length"),
        pytest.param(
            {"webhook_signature": "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
            id="version-prefix-lookalike",
        ),
    ],
)
def test_rejects_malformed_headers_with_signature_invalid_only(
    verifier: StandardWebhooksVerifier, header: dict[str, str]
) -> None:
    with pytest.raises(SignatureInvalid):
        verifier.verify(headers(**header), BODY, now=TIMESTAMP)


def test_a_future_timestamp_is_rejected_even_when_correctly_signed(
    verifier: StandardWebhooksVerifier,
) -> None:
    future = TIMESTAMP + 3600
    signature = sign(SECRET, WEBHOOK_ID, future, BODY)

    with pytest.raises(SignatureInvalid, match="future"):
        verifier.verify(
            headers(webhook_timestamp=str(future), webhook_signature=signature),
            BODY,
            now=TIMESTAMP,
        )


def test_a_different_secret_does_not_verify() -> None:
    other = StandardWebhooksVerifier("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")

    with pytest.raises(SignatureInvalid, match="secret"):
        other.verify(headers(), BODY, now=TIMESTAMP)


def test_sign_reproduces_the_vectors_signature() -> None:
    assert sign(SECRET, WEBHOOK_ID, TIMESTAMP, BODY) == VECTOR["webhook_signature"]


def test_sign_and_verify_round_trip_for_a_fresh_delivery(
    verifier: StandardWebhooksVerifier,
) -> None:
    body = b'{"event": "open", "ticket": {"id": "T-\xc3\xa9"}}'
    now = 1_700_000_000
    signature = sign(SECRET, "msg_fresh", now, body)

    given = headers(
        webhook_id="msg_fresh", webhook_timestamp=str(now), webhook_signature=signature
    )
    assert verifier.verify(given, body, now=now) == "msg_fresh"
    with pytest.raises(SignatureInvalid):
        verifier.verify(given, body + b" ", now=now)
