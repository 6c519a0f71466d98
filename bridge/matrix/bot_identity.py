"""The bot's own cross-signing identity, secret storage and key backup (MSC4153 readiness).

Element-class clients no longer share keys with, or decrypt from, devices their owner has not
cross-signed. matrix-nio has no cross-signing, so this module does it with the primitives in
`bridge.matrix.identity` and a few client-API calls:

- `setup()`: master, self-signing and user-signing keys (uploaded with user-interactive auth),
  the bot's device signed, secret storage with a fresh recovery key holding the three private
  keys and the key-backup key, and a key-backup version signed by the master key and the device.
  The recovery key is returned once for the admin and kept nowhere.
- `restore(recovery_key)`: after the bot's store was lost (a new device), read the self-signing
  key from secret storage and sign the new device.
- `ensure()`: at start-up, set up or check; hands the key backup to the encryption manager,
  which backs up each room key the bot sends (bridge.matrix.e2ee).
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from typing import Any

import structlog

from bridge.errors import SealroomError
from bridge.matrix import identity
from bridge.matrix.client import BotClient
from bridge.matrix.e2ee import BackupTarget, EncryptionManager
from bridge.matrix.failures import raise_for_status

log = structlog.stdlib.get_logger(__name__)

SECRET_NAMES = (
    "m.cross_signing.master",
    "m.cross_signing.self_signing",
    "m.cross_signing.user_signing",
)
BACKUP_SECRET = "m.megolm_backup.v1"  # noqa: S105 (the secret's name)


class IdentityProblem(SealroomError):
    errcode = "SEALROOM_IDENTITY"


@dataclass(frozen=True)
class IdentityStatus:
    master_key: str | None
    self_signing_key: str | None
    device_signed: bool
    default_secret_key: str | None
    backup_version: str | None
    backup_public_key: str | None

    @property
    def complete(self) -> bool:
        return bool(
            self.master_key
            and self.device_signed
            and self.default_secret_key
            and self.backup_version
        )


def _key_of(key_object: dict[str, Any] | None) -> str | None:
    if not key_object:
        return None
    keys = key_object.get("keys", {})
    return str(next(iter(keys.values()))) if keys else None


class BotIdentity:
    def __init__(self, bot: BotClient, e2ee: EncryptionManager, password: str | None) -> None:
        self.bot = bot
        self.e2ee = e2ee
        self.password = password

    @property
    def user_id(self) -> str:
        return self.bot.settings.user_id

    # -- reading the current state -------------------------------------------------------------

    async def _query_own_keys(self) -> dict[str, Any]:
        return await self.bot.request_json(
            "querying the bot's keys",
            "POST",
            ["keys", "query"],
            {"device_keys": {self.user_id: []}},
        )

    async def _account_data(self, kind: str) -> dict[str, Any] | None:
        status, data = await self.bot.request(
            "reading account data", "GET", ["user", self.user_id, "account_data", kind]
        )
        if status == 404:
            return None
        raise_for_status(f"reading account data {kind}", status, data)
        return data

    async def _put_account_data(self, kind: str, content: dict[str, Any]) -> None:
        await self.bot.request_json(
            "writing account data", "PUT", ["user", self.user_id, "account_data", kind], content
        )

    async def _backup_version(self) -> dict[str, Any] | None:
        status, data = await self.bot.request(
            "reading the key backup version", "GET", ["room_keys", "version"]
        )
        if status == 404:
            return None
        raise_for_status("reading the key backup", status, data)
        return data

    async def status(self) -> IdentityStatus:
        keys = await self._query_own_keys()
        master = _key_of(keys.get("master_keys", {}).get(self.user_id))
        ssk = _key_of(keys.get("self_signing_keys", {}).get(self.user_id))
        device = keys.get("device_keys", {}).get(self.user_id, {}).get(self.bot.device_id or "")
        signed = False
        if device and ssk:
            try:
                identity.verify_signature(device, self.user_id, ssk, ssk)
                signed = True
            except identity.IdentityError:
                signed = False
        default = await self._account_data("m.secret_storage.default_key")
        backup = await self._backup_version()
        return IdentityStatus(
            master_key=master,
            self_signing_key=ssk,
            device_signed=signed,
            default_secret_key=str(default["key"]) if default and "key" in default else None,
            backup_version=str(backup["version"]) if backup else None,
            backup_public_key=(
                str(backup.get("auth_data", {}).get("public_key")) if backup else None
            ),
        )

    # -- setting up ------------------------------------------------------------------------------

    async def _upload_cross_signing(self, body: dict[str, Any]) -> None:
        """POST /keys/device_signing/upload, answering user-interactive auth with the password."""
        path = ["keys", "device_signing", "upload"]
        status, data = await self.bot.request("uploading cross-signing keys", "POST", path, body)
        if status == 401 and "flows" in data:
            if not self.password:
                raise IdentityProblem(
                    "The homeserver wants the bot's password to upload cross-signing keys; "
                    "set bot.password (or bot.password_file)."
                )
            auth = {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": self.user_id},
                "password": self.password,
                "session": data.get("session"),
            }
            status, data = await self.bot.request(
                "uploading cross-signing keys", "POST", path, {**body, "auth": auth}
            )
        raise_for_status("uploading cross-signing keys", status, data)

    async def _sign_own_device(self, ssk_seed: bytes) -> None:
        keys = await self._query_own_keys()
        device_id = self.bot.device_id or ""
        device = keys.get("device_keys", {}).get(self.user_id, {}).get(device_id)
        if device is None:
            raise IdentityProblem("the bot's device keys are not on the homeserver yet")
        ssk_pub = identity.ed25519_public_key(ssk_seed)
        signed = identity.sign_json(device, self.user_id, ssk_pub, ssk_seed)
        new_signature = signed["signatures"][self.user_id][f"ed25519:{ssk_pub}"]
        upload = {key: value for key, value in device.items() if key not in ("unsigned",)}
        upload["signatures"] = {self.user_id: {f"ed25519:{ssk_pub}": new_signature}}
        answer = await self.bot.request_json(
            "uploading the device's signature",
            "POST",
            ["keys", "signatures", "upload"],
            {self.user_id: {device_id: upload}},
        )
        if answer.get("failures"):
            raise IdentityProblem(
                f"the homeserver refused the device signature: {answer['failures']}"
            )
        log.info("bot.device_cross_signed", device_id=device_id)

    async def _store_secret(self, key: bytes, key_id: str, name: str, private: bytes) -> None:
        encrypted = identity.encrypt_secret(key, name, identity.secret_from_private_key(private))
        await self._put_account_data(name, {"encrypted": {key_id: encrypted}})

    def _device_sign(self, obj: dict[str, Any]) -> str:
        signature = self.e2ee.device_signature(obj)
        if signature is None:
            raise IdentityProblem("the bot's encryption is not ready")
        return signature

    async def setup(self) -> str:
        """Create cross-signing, secret storage and key backup; return the recovery key once."""
        master_seed, ssk_seed, usk_seed = (secrets.token_bytes(32) for _ in range(3))
        master_pub = identity.ed25519_public_key(master_seed)
        master = identity.cross_signing_key(self.user_id, "master", master_pub)
        ssk = identity.sign_json(
            identity.cross_signing_key(
                self.user_id, "self_signing", identity.ed25519_public_key(ssk_seed)
            ),
            self.user_id,
            master_pub,
            master_seed,
        )
        usk = identity.sign_json(
            identity.cross_signing_key(
                self.user_id, "user_signing", identity.ed25519_public_key(usk_seed)
            ),
            self.user_id,
            master_pub,
            master_seed,
        )
        # The master key is also signed by the device, so other clients see the link both ways.
        device_id = self.bot.device_id or ""
        master = {
            **master,
            "signatures": {
                self.user_id: {f"ed25519:{device_id}": self._device_sign(dict(master))}
            },
        }
        await self._upload_cross_signing(
            {"master_key": master, "self_signing_key": ssk, "user_signing_key": usk}
        )
        await self._sign_own_device(ssk_seed)

        recovery = identity.generate_recovery_key()
        key_id = base64.b32encode(secrets.token_bytes(10)).decode().rstrip("=")
        description = identity.key_description(recovery, name="sealroom bot recovery key")
        await self._put_account_data(f"m.secret_storage.key.{key_id}", description)
        await self._put_account_data("m.secret_storage.default_key", {"key": key_id})
        for name, seed in zip(SECRET_NAMES, (master_seed, ssk_seed, usk_seed), strict=True):
            await self._store_secret(recovery, key_id, name, seed)

        backup_private = secrets.token_bytes(32)
        auth_data: dict[str, Any] = {"public_key": identity.backup_public_key(backup_private)}
        signed_auth = identity.sign_json(auth_data, self.user_id, master_pub, master_seed)
        signed_auth["signatures"][self.user_id][f"ed25519:{device_id}"] = self._device_sign(
            dict(auth_data)
        )
        version = await self.bot.request_json(
            "creating the key backup",
            "POST",
            ["room_keys", "version"],
            {"algorithm": identity.BACKUP_ALGORITHM, "auth_data": signed_auth},
        )
        await self._store_secret(recovery, key_id, BACKUP_SECRET, backup_private)
        log.info(
            "bot.identity_created",
            master_key=master_pub,
            storage_key_id=key_id,
            backup_version=version.get("version"),
        )
        return identity.encode_recovery_key(recovery)

    async def restore(self, recovery_key: str) -> None:
        """Sign this (new) device with the self-signing key kept in secret storage.

        Raises:
            IdentityProblem: wrong recovery key, or secret storage that does not match the keys
                published on the homeserver.
        """
        try:
            key = identity.decode_recovery_key(recovery_key)
        except identity.RecoveryKeyInvalid as err:
            raise IdentityProblem(f"That is not a valid recovery key: {err}") from None
        default = await self._account_data("m.secret_storage.default_key")
        if not default or "key" not in default:
            raise IdentityProblem("The bot has no secret storage; run `sealroom bot-identity`.")
        key_id = str(default["key"])
        description = await self._account_data(f"m.secret_storage.key.{key_id}")
        if not description or not identity.check_key(key, description):
            raise IdentityProblem("This recovery key does not open the bot's secret storage.")
        seeds: dict[str, bytes] = {}
        for name in SECRET_NAMES:
            content = await self._account_data(name)
            encrypted = (content or {}).get("encrypted", {}).get(key_id)
            if encrypted is None:
                raise IdentityProblem(f"Secret storage has no {name}.")
            seeds[name] = identity.private_key_from_secret(
                identity.decrypt_secret(key, name, encrypted)
            )
        status = await self.status()
        if identity.ed25519_public_key(seeds["m.cross_signing.master"]) != status.master_key:
            raise IdentityProblem(
                "The master key in secret storage is not the one published for the bot."
            )
        await self._sign_own_device(seeds["m.cross_signing.self_signing"])
        log.info("bot.identity_restored", device_id=self.bot.device_id)

    async def ensure(self) -> str | None:
        """At start-up: set everything up the first time (returns the recovery key), or check.

        A bot device that is not cross-signed while the account has cross-signing keys (the
        store was lost) cannot fix itself: it logs what the admin must run.
        """
        status = await self.status()
        recovery_key = None
        if status.master_key is None:
            recovery_key = await self.setup()
            status = await self.status()
        if not status.device_signed:
            log.error(
                "bot.device_not_cross_signed",
                device_id=self.bot.device_id,
                hint="run `sealroom bot-identity --recovery-key` with the bot's recovery key",
            )
        if status.backup_version and status.backup_public_key:
            self.e2ee.backup = BackupTarget(status.backup_version, status.backup_public_key)
        return recovery_key


def describe(status: IdentityStatus) -> str:
    return json.dumps(
        {
            "cross_signing": bool(status.master_key),
            "device_cross_signed": status.device_signed,
            "secret_storage": bool(status.default_secret_key),
            "key_backup_version": status.backup_version,
        }
    )
