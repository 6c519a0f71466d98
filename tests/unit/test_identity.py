"""Known-answer and round-trip tests for bridge.matrix.identity.

The vectors in tests/vectors/matrix-identity.json were produced by matrix-js-sdk and
matrix-sdk-crypto, so matching them shows agreement with the rest of the Matrix ecosystem.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
from typing import Any

import pytest

from bridge.matrix import identity
from bridge.matrix.identity import (
    BackupMacMismatch,
    IdentityError,
    RecoveryKeyInvalid,
    SecretStorageMacMismatch,
    SignatureInvalid,
)
from tests.support import vectors

VECTORS: dict[str, Any] = vectors.load("matrix-identity.json")

RECOVERY = VECTORS["recovery_keys"]
SSSS = VECTORS["secret_storage"]
SIGS = VECTORS["signatures"]
BACKUP = VECTORS["key_backup"]

# matrix-js-sdk's error text -> our RecoveryKeyInvalid.reason
JS_SDK_REASONS = {
    "Incorrect parity": "parity",
    "Incorrect prefix": "prefix",
    "Incorrect length": "length",
    "Non-base58 character": "character",
}

# The device case tells us who signs and under which device id.
DEVICE_CASE = next(c for c in SIGS["cases"] if "device_id" in c["object"])
SIGNING_USER = DEVICE_CASE["object"]["user_id"]
DEVICE_ID = DEVICE_CASE["object"]["device_id"]


def _b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _signer(case: dict[str, Any]) -> tuple[str, bytes, str]:
    """(key id, seed, public key) of the key that signed a signature case."""
    name = case["signer"]
    seed = bytes.fromhex(SIGS["seeds_hex"][name])
    public = SIGS["public_keys_unpadded_base64"][name]
    key_id = DEVICE_ID if name == "device_ed25519" else public
    return key_id, seed, public


def _ids(prefix: str, items: list[Any]) -> list[str]:
    return [f"{prefix}{i}" for i in range(len(items))]


# --- recovery keys ----------------------------------------------------------------------------

VALID_INPUTS = [
    pytest.param(v["key_hex"], text, id=f"valid{i}-input{j}")
    for i, v in enumerate(RECOVERY["valid"])
    for j, text in enumerate([v["recovery_key"], *v["also_accepted"]])
]


@pytest.mark.parametrize("vector", RECOVERY["valid"], ids=_ids("valid", RECOVERY["valid"]))
def test_encode_recovery_key_matches_vector(vector: dict[str, Any]) -> None:
    assert identity.encode_recovery_key(bytes.fromhex(vector["key_hex"])) == vector["recovery_key"]


@pytest.mark.parametrize(("key_hex", "text"), VALID_INPUTS)
def test_decode_recovery_key_accepts_vector(key_hex: str, text: str) -> None:
    assert identity.decode_recovery_key(text) == bytes.fromhex(key_hex)


@pytest.mark.parametrize("vector", RECOVERY["valid"], ids=_ids("valid", RECOVERY["valid"]))
def test_decode_recovery_key_ignores_all_whitespace(vector: dict[str, Any]) -> None:
    text = vector["recovery_key"].replace(" ", "\t", 3).replace(" ", "\n", 2) + "\r\n"
    assert identity.decode_recovery_key(text) == bytes.fromhex(vector["key_hex"])


@pytest.mark.parametrize(
    "vector",
    RECOVERY["invalid"],
    ids=[v["why"].replace(" ", "-") for v in RECOVERY["invalid"]],
)
def test_decode_recovery_key_rejects_vector(vector: dict[str, Any]) -> None:
    with pytest.raises(RecoveryKeyInvalid) as excinfo:
        identity.decode_recovery_key(vector["recovery_key"])
    assert excinfo.value.reason == JS_SDK_REASONS[vector["js_sdk_error"]]
    message = str(excinfo.value)
    assert vector["recovery_key"].replace(" ", "")[:8] not in message
    assert vector["recovery_key"][:4] not in message


def test_decode_recovery_key_rejects_empty() -> None:
    with pytest.raises(RecoveryKeyInvalid) as excinfo:
        identity.decode_recovery_key(" \n ")
    assert excinfo.value.reason == "empty"


def test_recovery_key_errors_have_distinct_messages() -> None:
    messages = set()
    for vector in RECOVERY["invalid"]:
        with pytest.raises(RecoveryKeyInvalid) as excinfo:
            identity.decode_recovery_key(vector["recovery_key"])
        messages.add((excinfo.value.reason, str(excinfo.value)))
    assert len({m for _, m in messages}) == len({r for r, _ in messages}) == 4


def test_decode_recovery_key_rejects_huge_input_early() -> None:
    with pytest.raises(RecoveryKeyInvalid) as excinfo:
        identity.decode_recovery_key("Es" * 10_000)
    assert excinfo.value.reason == "length"


def test_encode_recovery_key_rejects_wrong_length() -> None:
    with pytest.raises(IdentityError):
        identity.encode_recovery_key(bytes(31))


@pytest.mark.parametrize("round_", range(20))
def test_recovery_key_round_trip(round_: int) -> None:
    key = identity.generate_recovery_key()
    assert len(key) == 32
    text = identity.encode_recovery_key(key)
    assert all(len(group) == 4 for group in text.split(" ")[:-1])
    assert identity.decode_recovery_key(text) == key


# --- secret storage ---------------------------------------------------------------------------


@pytest.mark.parametrize("vector", SSSS["key_check"], ids=_ids("keycheck", SSSS["key_check"]))
def test_key_description_matches_vector(vector: dict[str, Any]) -> None:
    key = bytes.fromhex(vector["key_hex"])
    description = identity.key_description(key, iv=base64.b64decode(vector["iv_base64"]))
    assert description == {
        "algorithm": "m.secret_storage.v1.aes-hmac-sha2",
        "iv": vector["iv_base64"],
        "mac": vector["mac_base64"],
    }


@pytest.mark.parametrize("vector", SSSS["key_check"], ids=_ids("keycheck", SSSS["key_check"]))
def test_check_key_vector(vector: dict[str, Any]) -> None:
    key = identity.decode_recovery_key(vector["recovery_key"])
    assert key == bytes.fromhex(vector["key_hex"])
    description = {
        "algorithm": "m.secret_storage.v1.aes-hmac-sha2",
        "iv": vector["iv_base64"],
        "mac": vector["mac_base64"],
    }
    assert identity.check_key(key, description)
    unpadded = {k: v.rstrip("=") for k, v in description.items()}
    assert identity.check_key(key, unpadded)
    wrong = bytes([key[0] ^ 1]) + key[1:]
    assert not identity.check_key(wrong, description)


def test_check_key_rejects_uncheckable_descriptions() -> None:
    key = bytes(32)
    with pytest.raises(IdentityError, match="unsupported algorithm"):
        identity.check_key(key, {"algorithm": "m.other", "iv": "", "mac": ""})
    with pytest.raises(IdentityError, match="no iv/mac"):
        identity.check_key(key, {"algorithm": "m.secret_storage.v1.aes-hmac-sha2"})


@pytest.mark.parametrize("vector", SSSS["secrets"], ids=[v["name"] for v in SSSS["secrets"]])
def test_decrypt_secret_vector(vector: dict[str, Any]) -> None:
    key = bytes.fromhex(vector["key_hex"])
    assert identity.decrypt_secret(key, vector["name"], vector["encrypted"]) == vector["plaintext"]


@pytest.mark.parametrize("vector", SSSS["secrets"], ids=[v["name"] for v in SSSS["secrets"]])
def test_encrypt_secret_reproduces_vector(vector: dict[str, Any]) -> None:
    key = bytes.fromhex(vector["key_hex"])
    iv = base64.b64decode(vector["encrypted"]["iv"])
    encrypted = identity.encrypt_secret(key, vector["name"], vector["plaintext"], iv=iv)
    assert encrypted == vector["encrypted"]


@pytest.mark.parametrize("vector", SSSS["secrets"], ids=[v["name"] for v in SSSS["secrets"]])
def test_secret_plaintext_is_the_stored_private_key(vector: dict[str, Any]) -> None:
    """The secrets are the signing seeds and the backup key, padded-base64 encoded."""
    if vector["name"] == "m.megolm_backup.v1":
        private = bytes.fromhex(BACKUP["private_key_hex"])
        assert vector["plaintext"] == BACKUP["private_key_base64"]
    else:
        private = bytes.fromhex(SIGS["seeds_hex"][vector["name"].rsplit(".", 1)[1]])
    assert identity.secret_from_private_key(private) == vector["plaintext"]
    assert identity.private_key_from_secret(vector["plaintext"]) == private


def test_decrypt_secret_rejects_tampered_vector() -> None:
    tampered = SSSS["tampered"]
    with pytest.raises(SecretStorageMacMismatch) as excinfo:
        identity.decrypt_secret(
            bytes.fromhex(tampered["key_hex"]), tampered["name"], tampered["encrypted"]
        )
    assert tampered["key_hex"] not in str(excinfo.value)


def test_decrypt_secret_rejects_wrong_name_vector() -> None:
    wrong = SSSS["wrong_name"]
    source = next(s for s in SSSS["secrets"] if s["name"] == wrong["encrypted_for"])
    with pytest.raises(SecretStorageMacMismatch, match=wrong["name_used"]):
        identity.decrypt_secret(
            bytes.fromhex(source["key_hex"]), wrong["name_used"], source["encrypted"]
        )


def test_decrypt_secret_rejects_wrong_key() -> None:
    source = SSSS["secrets"][0]
    with pytest.raises(SecretStorageMacMismatch):
        identity.decrypt_secret(bytes(32), source["name"], source["encrypted"])


def test_decrypt_secret_rejects_malformed_fields() -> None:
    source = SSSS["secrets"][0]
    key = bytes.fromhex(source["key_hex"])
    with pytest.raises(IdentityError, match="not valid base64"):
        identity.decrypt_secret(key, source["name"], {**source["encrypted"], "mac": "!!"})
    with pytest.raises(IdentityError, match="base64 string"):
        identity.decrypt_secret(key, source["name"], {"iv": source["encrypted"]["iv"]})


@pytest.mark.parametrize("round_", range(10))
def test_secret_round_trip_random(round_: int) -> None:
    key = identity.generate_recovery_key()
    name = f"org.example.secret.{round_}"
    plaintext = secrets.token_urlsafe(round_ * 7 + 1) + " ünïcode"
    encrypted = identity.encrypt_secret(key, name, plaintext)
    assert base64.b64decode(encrypted["iv"])[8] & 0x80 == 0
    assert identity.decrypt_secret(key, name, encrypted) == plaintext
    with pytest.raises(SecretStorageMacMismatch):
        identity.decrypt_secret(key, name + "x", encrypted)


def test_key_description_round_trip_random() -> None:
    key = identity.generate_recovery_key()
    description = identity.key_description(key, name="Recovery key")
    assert description["name"] == "Recovery key"
    assert base64.b64decode(description["iv"])[8] & 0x80 == 0
    assert identity.check_key(key, description)
    assert not identity.check_key(identity.generate_recovery_key(), description)


def test_derive_keys_splits_hkdf_output() -> None:
    aes_key, mac_key = identity.derive_keys(bytes(32), "m.cross_signing.master")
    assert len(aes_key) == len(mac_key) == 32
    assert aes_key != mac_key
    assert identity.derive_keys(bytes(32), "other") != (aes_key, mac_key)


# --- signatures -------------------------------------------------------------------------------

SIG_IDS = [c["what"].split(" (")[0].replace(" ", "-") for c in SIGS["cases"]]


@pytest.mark.parametrize("name", sorted(SIGS["seeds_hex"]))
def test_ed25519_public_key_vector(name: str) -> None:
    seed = bytes.fromhex(SIGS["seeds_hex"][name])
    assert identity.ed25519_public_key(seed) == SIGS["public_keys_unpadded_base64"][name]


@pytest.mark.parametrize("case", SIGS["cases"], ids=SIG_IDS)
def test_canonical_json_vector(case: dict[str, Any]) -> None:
    obj = {k: v for k, v in case["object"].items() if k not in ("signatures", "unsigned")}
    assert identity.canonical_json(obj) == case["canonical_json"].encode("utf-8")


@pytest.mark.parametrize("case", SIGS["cases"], ids=SIG_IDS)
def test_sign_json_reproduces_vector(case: dict[str, Any]) -> None:
    key_id, seed, _ = _signer(case)
    original = copy.deepcopy(case["object"])
    signed = identity.sign_json(case["object"], SIGNING_USER, key_id, seed)
    assert case["object"] == original, "sign_json must not mutate its input"
    assert signed["signatures"] == {
        SIGNING_USER: {f"ed25519:{key_id}": case["signature_unpadded_base64"]}
    }
    assert {k: v for k, v in signed.items() if k != "signatures"} == original


@pytest.mark.parametrize("case", SIGS["cases"], ids=SIG_IDS)
def test_verify_signature_vector(case: dict[str, Any]) -> None:
    key_id, _, public = _signer(case)
    obj = copy.deepcopy(case["object"])
    obj["signatures"] = {SIGNING_USER: {f"ed25519:{key_id}": case["signature_unpadded_base64"]}}
    identity.verify_signature(obj, SIGNING_USER, key_id, public)
    # unsigned is outside the signature: changing it keeps the signature valid
    obj["unsigned"] = {"anything": "else"}
    identity.verify_signature(obj, SIGNING_USER, key_id, public)


@pytest.mark.parametrize("case", SIGS["cases"], ids=SIG_IDS)
def test_verify_signature_rejects_tampered_vector(case: dict[str, Any]) -> None:
    key_id, _, public = _signer(case)
    obj = copy.deepcopy(case["object"])
    obj["signatures"] = {SIGNING_USER: {f"ed25519:{key_id}": case["signature_unpadded_base64"]}}
    obj["user_id"] = obj["user_id"].replace("example.org", "example.com")
    with pytest.raises(SignatureInvalid, match="does not match"):
        identity.verify_signature(obj, SIGNING_USER, key_id, public)


@pytest.mark.parametrize("case", SIGS["cases"], ids=SIG_IDS)
def test_verify_signature_rejects_wrong_key_vector(case: dict[str, Any]) -> None:
    key_id, _, public = _signer(case)
    other = next(p for p in SIGS["public_keys_unpadded_base64"].values() if p != public)
    obj = copy.deepcopy(case["object"])
    obj["signatures"] = {SIGNING_USER: {f"ed25519:{key_id}": case["signature_unpadded_base64"]}}
    with pytest.raises(SignatureInvalid):
        identity.verify_signature(obj, SIGNING_USER, key_id, other)


CROSS_SIGNING_CASES = [c for c in SIGS["cases"] if "usage" in c["object"]]


@pytest.mark.parametrize(
    "case",
    CROSS_SIGNING_CASES,
    ids=[SIG_IDS[SIGS["cases"].index(c)] for c in CROSS_SIGNING_CASES],
)
def test_cross_signing_key_builds_vector_object(case: dict[str, Any]) -> None:
    obj = case["object"]
    [public] = obj["keys"].values()
    assert identity.cross_signing_key(obj["user_id"], obj["usage"][0], public) == obj
    assert identity.cross_signing_key(obj["user_id"], obj["usage"], public) == obj


def test_cross_signing_key_rejects_unknown_usage() -> None:
    with pytest.raises(IdentityError, match="usage"):
        identity.cross_signing_key("@a:b", "self-signing", "AAAA")


def test_verify_signature_reports_missing_and_malformed() -> None:
    with pytest.raises(SignatureInvalid, match="no signature"):
        identity.verify_signature({"a": 1}, "@a:b", "KEY", "AAAA")
    obj = {"a": 1, "signatures": {"@a:b": {"ed25519:KEY": "not base64!"}}}
    with pytest.raises(SignatureInvalid, match="malformed"):
        identity.verify_signature(obj, "@a:b", "KEY", "AAAA")


@pytest.mark.parametrize("round_", range(5))
def test_sign_verify_round_trip_random(round_: int) -> None:
    seed = secrets.token_bytes(32)
    public = identity.ed25519_public_key(seed)
    obj = identity.cross_signing_key("@u:example.org", "master", public)
    obj["signatures"] = {"@other:example.org": {"ed25519:X": "kept"}}
    signed = identity.sign_json(obj, "@u:example.org", public, seed)
    assert signed["signatures"]["@other:example.org"] == {"ed25519:X": "kept"}
    identity.verify_signature(signed, "@u:example.org", public, public)
    other = identity.ed25519_public_key(secrets.token_bytes(32))
    with pytest.raises(SignatureInvalid):
        identity.verify_signature(signed, "@u:example.org", public, other)


# --- key backup -------------------------------------------------------------------------------


def test_backup_public_key_vector() -> None:
    private = bytes.fromhex(BACKUP["private_key_hex"])
    assert base64.b64decode(BACKUP["private_key_base64"]) == private
    assert identity.backup_public_key(private) == BACKUP["public_key_unpadded_base64"]


def test_decrypt_backup_session_vector() -> None:
    private = bytes.fromhex(BACKUP["private_key_hex"])
    session = identity.decrypt_backup_session(private, BACKUP["session_data"])
    assert session == json.loads(BACKUP["plaintext"])


def test_encrypt_backup_session_reproduces_vector() -> None:
    encrypted = identity.encrypt_backup_session(
        BACKUP["public_key_unpadded_base64"],
        json.loads(BACKUP["plaintext"]),
        ephemeral_private=bytes.fromhex(BACKUP["ephemeral_private_hex"]),
    )
    assert encrypted == BACKUP["session_data"]


def test_backup_mac_does_not_cover_ciphertext() -> None:
    """The vector's mac does not depend on the ciphertext: the spec's documented quirk."""
    session = dict(BACKUP["session_data"])
    ciphertext = bytearray(_b64(session["ciphertext"]))
    ciphertext[0] ^= 1  # first block only: CBC garbles it but the padding stays valid
    session["ciphertext"] = base64.b64encode(bytes(ciphertext)).decode().rstrip("=")
    private = bytes.fromhex(BACKUP["private_key_hex"])
    with pytest.raises(IdentityError, match="corrupted"):
        identity.decrypt_backup_session(private, session)


def test_decrypt_backup_session_rejects_wrong_key() -> None:
    with pytest.raises(BackupMacMismatch):
        identity.decrypt_backup_session(bytes(range(32)), BACKUP["session_data"])


@pytest.mark.parametrize("round_", range(5))
def test_backup_round_trip_random(round_: int) -> None:
    private = secrets.token_bytes(32)
    public = identity.backup_public_key(private)
    session = {"algorithm": "m.megolm.v1.aes-sha2", "session_key": "é" * round_, "n": round_}
    encrypted = identity.encrypt_backup_session(public, session)
    assert len(_b64(encrypted["mac"])) == 8
    assert identity.decrypt_backup_session(private, encrypted) == session
    with pytest.raises(BackupMacMismatch):
        identity.decrypt_backup_session(secrets.token_bytes(32), encrypted)
