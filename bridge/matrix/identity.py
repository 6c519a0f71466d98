"""Pure cryptographic core of sealroom's Matrix identity.

This module owns the byte-level formats that cross-signing, secret storage and key backup are
built from, so that the bot and the browser onboarding page agree with the rest of the Matrix
ecosystem (matrix-js-sdk, matrix-sdk-crypto) byte for byte:

- recovery keys (the base58 text a person writes down),
- secret storage with ``m.secret_storage.v1.aes-hmac-sha2`` (key descriptions and secrets),
- canonical-JSON Ed25519 signatures and the cross-signing key objects,
- key backup with ``m.megolm_backup.v1.curve25519-aes-sha2``.

Everything here is a pure function: no network, no clock, no Matrix client. Randomness comes only
from :mod:`secrets`, and every random input can be supplied by the caller so known-answer vectors
can be reproduced. Exceptions never carry key material, so they are safe to log or show.

Encodings follow what the reference implementations emit: secret storage uses *padded* base64
(matrix-js-sdk's ``encodeBase64``), while signatures, public keys and key backup use *unpadded*
base64 as the Matrix spec prescribes. Decoding accepts either form.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from typing import Any

import base58
import canonicaljson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "BACKUP_ALGORITHM",
    "CROSS_SIGNING_USAGES",
    "SECRET_STORAGE_ALGORITHM",
    "BackupMacMismatch",
    "IdentityError",
    "RecoveryKeyInvalid",
    "SecretStorageMacMismatch",
    "SignatureInvalid",
    "backup_public_key",
    "canonical_json",
    "check_key",
    "cross_signing_key",
    "decode_recovery_key",
    "decrypt_backup_session",
    "decrypt_secret",
    "derive_keys",
    "ed25519_public_key",
    "encode_recovery_key",
    "encrypt_backup_session",
    "encrypt_secret",
    "generate_recovery_key",
    "key_description",
    "private_key_from_secret",
    "secret_from_private_key",
    "sign_json",
    "verify_signature",
]

SECRET_STORAGE_ALGORITHM = "m.secret_storage.v1.aes-hmac-sha2"  # noqa: S105 - a name, not a secret
BACKUP_ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
CROSS_SIGNING_USAGES = frozenset({"master", "self_signing", "user_signing"})

_RECOVERY_KEY_PREFIX = b"\x8b\x01"
_KEY_LENGTH = 32
_RECOVERY_KEY_BYTES = len(_RECOVERY_KEY_PREFIX) + _KEY_LENGTH + 1
_BASE58_ALPHABET = frozenset(base58.BITCOIN_ALPHABET.decode("ascii"))
_ZERO_SALT = bytes(32)
_IV_LENGTH = 16
_BACKUP_MAC_LENGTH = 8


class IdentityError(ValueError):
    """Base class for every failure in this module; the message is safe to show a person."""


class RecoveryKeyInvalid(IdentityError):
    """The text is not a well-formed Matrix recovery key.

    ``reason`` is one of ``"empty"``, ``"character"``, ``"parity"``, ``"prefix"``, ``"length"``
    so callers can react without parsing the message.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SecretStorageMacMismatch(IdentityError):
    """A secret (or a key check) did not authenticate: wrong key, wrong name or tampered data."""


class SignatureInvalid(IdentityError):
    """A JSON object is not signed by the expected key."""


class BackupMacMismatch(IdentityError):
    """A key-backup session was not encrypted to this backup key."""


# --- encoding helpers -------------------------------------------------------------------------


def _b64_unpadded(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _b64_padded(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64_decode(value: object, what: str) -> bytes:
    """Decode standard base64 with or without padding; Matrix uses both."""
    if not isinstance(value, str):
        raise IdentityError(f"{what} must be a base64 string")
    text = value.rstrip("=")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise IdentityError(f"{what} is not valid base64") from None


def _require_length(data: bytes, length: int, what: str) -> None:
    if len(data) != length:
        raise IdentityError(f"{what} must be {length} bytes, got {len(data)}")


# --- recovery keys ----------------------------------------------------------------------------


def generate_recovery_key() -> bytes:
    """Return a fresh 32-byte secret storage key (what a recovery key encodes)."""
    return secrets.token_bytes(_KEY_LENGTH)


def encode_recovery_key(key: bytes) -> str:
    """Encode a 32-byte key as a recovery key: base58 in space-separated groups of four."""
    _require_length(key, _KEY_LENGTH, "a recovery key's secret")
    data = _RECOVERY_KEY_PREFIX + key
    parity = 0
    for byte in data:
        parity ^= byte
    text: str = base58.b58encode(data + bytes([parity])).decode("ascii")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def decode_recovery_key(text: str) -> bytes:
    """Decode a recovery key typed or pasted by a person; all whitespace is ignored.

    Checks run in matrix-js-sdk's order (alphabet, parity, prefix, length) so a given bad key is
    rejected for the same reason in the browser and in the bot.
    """
    compact = "".join(text.split())
    if not compact:
        raise RecoveryKeyInvalid("empty", "No recovery key was entered.")
    if len(compact) > 2 * _RECOVERY_KEY_BYTES:  # bound the quadratic base58 decode
        raise RecoveryKeyInvalid(
            "length",
            "The recovery key has the wrong length: it is far too long. Paste only the "
            "recovery key itself.",
        )
    for position, char in enumerate(compact, start=1):
        if char not in _BASE58_ALPHABET:
            raise RecoveryKeyInvalid(
                "character",
                f"The recovery key contains a character that never appears in recovery keys "
                f"(at position {position}, not counting spaces; recovery keys have no 0, O, I, "
                f"l or punctuation). Check it against your saved copy.",
            )
    data: bytes = base58.b58decode(compact)
    parity = 0
    for byte in data:
        parity ^= byte
    if parity != 0:
        raise RecoveryKeyInvalid(
            "parity",
            "The recovery key's checksum does not match, so a character was probably mistyped. "
            "Check it against your saved copy.",
        )
    if data[: len(_RECOVERY_KEY_PREFIX)] != _RECOVERY_KEY_PREFIX:
        raise RecoveryKeyInvalid(
            "prefix",
            "This is not a Matrix recovery key (it does not start like one). Make sure you "
            "entered the recovery key, not a passphrase or another code.",
        )
    if len(data) != _RECOVERY_KEY_BYTES:
        raise RecoveryKeyInvalid(
            "length",
            "The recovery key has the wrong length: characters are missing or extra. "
            "Check it against your saved copy.",
        )
    return data[len(_RECOVERY_KEY_PREFIX) : -1]


# --- secret storage (m.secret_storage.v1.aes-hmac-sha2) ---------------------------------------


def derive_keys(key: bytes, name: str) -> tuple[bytes, bytes]:
    """Derive the (AES-256 key, HMAC-SHA256 key) pair that protects the secret called ``name``.

    Binding the name into HKDF's info means a secret cannot be replayed under another name.
    """
    derived = HKDF(
        algorithm=hashes.SHA256(), length=64, salt=_ZERO_SALT, info=name.encode("utf-8")
    ).derive(key)
    return derived[:32], derived[32:]


def _aes_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def _random_ctr_iv() -> bytes:
    """Random IV with bit 63 cleared so the 64-bit counter half can never wrap."""
    iv = bytearray(secrets.token_bytes(_IV_LENGTH))
    iv[8] &= 0x7F
    return bytes(iv)


def _encrypt_bytes(key: bytes, name: str, plaintext: bytes, iv: bytes | None) -> dict[str, str]:
    if iv is None:
        iv = _random_ctr_iv()
    _require_length(iv, _IV_LENGTH, "the IV")
    aes_key, mac_key = derive_keys(key, name)
    ciphertext = _aes_ctr(aes_key, iv, plaintext)
    mac = hmac.new(mac_key, ciphertext, hashlib.sha256).digest()
    return {
        "iv": _b64_padded(iv),
        "ciphertext": _b64_padded(ciphertext),
        "mac": _b64_padded(mac),
    }


def encrypt_secret(
    key: bytes, name: str, plaintext: str, iv: bytes | None = None
) -> dict[str, str]:
    """Encrypt a secret for account data ``name``: returns ``{"iv", "ciphertext", "mac"}``.

    Values are padded base64 like matrix-js-sdk writes them. Pass ``iv`` only to reproduce a
    known answer; otherwise a random one is used.
    """
    return _encrypt_bytes(key, name, plaintext.encode("utf-8"), iv)


def decrypt_secret(key: bytes, name: str, encrypted: Mapping[str, Any]) -> str:
    """Authenticate then decrypt a secret stored under ``name``.

    The MAC is checked (in constant time) before anything is decrypted; a mismatch means the
    wrong key, the wrong secret name, or tampered account data.
    """
    iv = _b64_decode(encrypted.get("iv"), "the secret's iv")
    ciphertext = _b64_decode(encrypted.get("ciphertext"), "the secret's ciphertext")
    mac = _b64_decode(encrypted.get("mac"), "the secret's mac")
    _require_length(iv, _IV_LENGTH, "the secret's iv")
    aes_key, mac_key = derive_keys(key, name)
    expected = hmac.new(mac_key, ciphertext, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise SecretStorageMacMismatch(
            f"Could not decrypt secret {name!r}: the key is wrong for it or the stored data was "
            f"altered. Check that the right recovery key was entered."
        )
    try:
        return _aes_ctr(aes_key, iv, ciphertext).decode("utf-8")
    except UnicodeDecodeError:
        raise IdentityError(f"Secret {name!r} decrypted to something that is not text") from None


def key_description(
    key: bytes, *, name: str | None = None, iv: bytes | None = None
) -> dict[str, str]:
    """Build the content of ``m.secret_storage.key.<key id>`` for ``key``.

    The ``iv``/``mac`` pair (32 zero bytes encrypted under the empty name) lets any client check
    a recovery key before trying to decrypt real secrets with it. The key id is not part of the
    content; it only appears in the account data type.
    """
    check = _encrypt_bytes(key, "", bytes(32), iv)
    content = {"algorithm": SECRET_STORAGE_ALGORITHM, "iv": check["iv"], "mac": check["mac"]}
    if name is not None:
        content["name"] = name
    return content


def check_key(key: bytes, description: Mapping[str, Any]) -> bool:
    """Tell whether ``key`` is the key a ``m.secret_storage.key.*`` description was made for.

    Returns False for a wrong key; raises :class:`IdentityError` when the description cannot be
    checked at all (other algorithm, or no ``iv``/``mac``), since that is not the person's fault.
    """
    if description.get("algorithm") != SECRET_STORAGE_ALGORITHM:
        raise IdentityError(
            f"The secret storage key uses an unsupported algorithm; only "
            f"{SECRET_STORAGE_ALGORITHM} is supported."
        )
    if "iv" not in description or "mac" not in description:
        raise IdentityError(
            "The secret storage key description has no iv/mac, so a key cannot be checked "
            "against it; set up secret storage again."
        )
    iv = _b64_decode(description["iv"], "the key description's iv")
    mac = _b64_decode(description["mac"], "the key description's mac")
    _require_length(iv, _IV_LENGTH, "the key description's iv")
    expected = _b64_decode(_encrypt_bytes(key, "", bytes(32), iv)["mac"], "mac")
    return hmac.compare_digest(expected, mac)


def secret_from_private_key(private: bytes) -> str:
    """Encode a private key as a secret-storage value (padded base64, as Element stores it)."""
    return _b64_padded(private)


def private_key_from_secret(secret: str) -> bytes:
    """Decode a 32-byte private key stored as a secret-storage value."""
    private = _b64_decode(secret, "the stored private key")
    _require_length(private, _KEY_LENGTH, "the stored private key")
    return private


# --- signing ----------------------------------------------------------------------------------


def canonical_json(obj: object) -> bytes:
    """Matrix canonical JSON (sorted keys, no spaces, UTF-8): the bytes that get signed."""
    data: bytes = canonicaljson.encode_canonical_json(obj)
    return data


def _signing_bytes(obj: Mapping[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in obj.items() if k not in ("signatures", "unsigned")})


def _ed25519_private(seed: bytes) -> Ed25519PrivateKey:
    _require_length(seed, _KEY_LENGTH, "an Ed25519 seed")
    return Ed25519PrivateKey.from_private_bytes(seed)


def ed25519_public_key(seed: bytes) -> str:
    """Return the unpadded-base64 Ed25519 public key for a 32-byte seed."""
    public = _ed25519_private(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return _b64_unpadded(public)


def sign_json(
    obj: Mapping[str, Any], user_id: str, key_id: str, private_seed: bytes
) -> dict[str, Any]:
    """Return a copy of ``obj`` signed as ``signatures[user_id]["ed25519:" + key_id]``.

    ``signatures`` and ``unsigned`` are excluded from what is signed (so existing signatures are
    kept and merged, and ``unsigned`` survives untouched). ``key_id`` is the device id for a
    device's own key and the unpadded-base64 public key for a cross-signing key.
    """
    signature = _ed25519_private(private_seed).sign(_signing_bytes(obj))
    signed = copy.deepcopy(dict(obj))
    signatures = signed.setdefault("signatures", {})
    signatures.setdefault(user_id, {})[f"ed25519:{key_id}"] = _b64_unpadded(signature)
    return signed


def verify_signature(
    obj: Mapping[str, Any], user_id: str, key_id: str, public_key_b64: str
) -> None:
    """Raise :class:`SignatureInvalid` unless ``obj`` carries a valid signature by that key."""
    key_name = f"ed25519:{key_id}"
    try:
        signature_b64 = obj["signatures"][user_id][key_name]
    except (KeyError, TypeError):
        raise SignatureInvalid(f"The object has no signature by {key_name} of {user_id}") from None
    try:
        signature = _b64_decode(signature_b64, "the signature")
        public = Ed25519PublicKey.from_public_bytes(_b64_decode(public_key_b64, "the public key"))
    except (IdentityError, ValueError):
        raise SignatureInvalid(
            f"The signature by {key_name} of {user_id} or its public key is malformed"
        ) from None
    try:
        public.verify(signature, _signing_bytes(obj))
    except InvalidSignature:
        raise SignatureInvalid(
            f"The signature by {key_name} of {user_id} does not match: the object was changed "
            f"after signing or it was signed by a different key"
        ) from None


def cross_signing_key(user_id: str, usage: str | list[str], public_key_b64: str) -> dict[str, Any]:
    """Build an unsigned cross-signing key object for ``/keys/device_signing/upload``."""
    usages = [usage] if isinstance(usage, str) else list(usage)
    unknown = sorted(set(usages) - CROSS_SIGNING_USAGES)
    if not usages or unknown:
        raise IdentityError(
            f"Cross-signing key usage must be among {sorted(CROSS_SIGNING_USAGES)}, got {usages!r}"
        )
    return {
        "user_id": user_id,
        "usage": usages,
        "keys": {f"ed25519:{public_key_b64}": public_key_b64},
    }


# --- key backup (m.megolm_backup.v1.curve25519-aes-sha2) --------------------------------------


def _x25519_private(private: bytes, what: str) -> X25519PrivateKey:
    _require_length(private, _KEY_LENGTH, what)
    return X25519PrivateKey.from_private_bytes(private)


def _x25519_public_b64(private: X25519PrivateKey) -> str:
    return _b64_unpadded(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def _backup_keys(shared_secret: bytes) -> tuple[bytes, bytes, bytes]:
    derived = HKDF(algorithm=hashes.SHA256(), length=80, salt=_ZERO_SALT, info=b"").derive(
        shared_secret
    )
    return derived[:32], derived[32:64], derived[64:]


def _backup_mac(mac_key: bytes) -> bytes:
    """libolm's PkEncryption MAC: HMAC over the *empty* string, truncated to 8 bytes.

    It authenticates nothing but the derived key; every implementation reproduces this quirk
    and the spec documents it, so we must too.
    """
    return hmac.new(mac_key, b"", hashlib.sha256).digest()[:_BACKUP_MAC_LENGTH]


def backup_public_key(private: bytes) -> str:
    """Return the backup's ``auth_data.public_key`` (unpadded base64 X25519) for a private key."""
    return _x25519_public_b64(_x25519_private(private, "the backup private key"))


def encrypt_backup_session(
    public_key_b64: str,
    session_data: Mapping[str, Any],
    ephemeral_private: bytes | None = None,
) -> dict[str, str]:
    """Encrypt one Megolm session for the backup: returns ``{"ephemeral", "ciphertext", "mac"}``.

    The plaintext is compact JSON in the mapping's own key order (as JSON.stringify and serde
    produce it), not canonical JSON. Pass ``ephemeral_private`` only to reproduce a known answer.
    """
    public = X25519PublicKey.from_public_bytes(
        _b64_decode(public_key_b64, "the backup public key")
    )
    if ephemeral_private is None:
        ephemeral = X25519PrivateKey.generate()
    else:
        ephemeral = _x25519_private(ephemeral_private, "the ephemeral private key")
    aes_key, mac_key, iv = _backup_keys(ephemeral.exchange(public))
    plaintext = json.dumps(session_data, separators=(",", ":"), ensure_ascii=False).encode()
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return {
        "ephemeral": _x25519_public_b64(ephemeral),
        "ciphertext": _b64_unpadded(ciphertext),
        "mac": _b64_unpadded(_backup_mac(mac_key)),
    }


def decrypt_backup_session(private: bytes, encrypted: Mapping[str, Any]) -> dict[str, Any]:
    """Decrypt one backed-up session's ``session_data`` with the backup private key."""
    backup_key = _x25519_private(private, "the backup private key")
    ephemeral_bytes = _b64_decode(encrypted.get("ephemeral"), "the session's ephemeral key")
    ciphertext = _b64_decode(encrypted.get("ciphertext"), "the session's ciphertext")
    mac = _b64_decode(encrypted.get("mac"), "the session's mac")
    try:
        ephemeral = X25519PublicKey.from_public_bytes(ephemeral_bytes)
        shared = backup_key.exchange(ephemeral)
    except ValueError:
        raise IdentityError("The backed-up session has a malformed ephemeral key") from None
    aes_key, mac_key, iv = _backup_keys(shared)
    if not hmac.compare_digest(_backup_mac(mac_key), mac):
        raise BackupMacMismatch(
            "This backed-up session was not encrypted to this backup key; check that the backup "
            "version and the recovery key belong together."
        )
    if not ciphertext or len(ciphertext) % 16:
        raise IdentityError("The backed-up session's ciphertext is truncated or corrupted")
    decryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        plaintext = unpadder.update(padded) + unpadder.finalize()
        result = json.loads(plaintext.decode("utf-8"))
    except ValueError:  # bad padding, bad UTF-8 and bad JSON are all ValueError
        raise IdentityError("The backed-up session's ciphertext is corrupted") from None
    if not isinstance(result, dict):
        raise IdentityError("The backed-up session did not decrypt to a JSON object")
    return result
