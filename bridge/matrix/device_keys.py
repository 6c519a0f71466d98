"""Uploading the bot device's keys without nio's crash window, and with a fallback key.

nio generates one-time keys in memory, uploads them, and saves its account only after the answer.
A crash in between leaves the server holding keys the saved account never had; the next keys get
the same ids with other material, and Synapse refuses every later upload ("One time key ...
already exists"). Here the account is saved *before* the upload, so a retry after a crash sends
exactly the same keys, which the server accepts.

nio also never uploads a fallback key, so a bot whose one-time keys ran out while it was down could
not be reached by new devices. We upload one and rotate it weekly.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.stdlib.get_logger(__name__)

FALLBACK_ROTATION_SECONDS = 7 * 24 * 3600
KEY_ALGORITHM = "signed_curve25519"

Post = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _signed(olm: Any, key: str, *, fallback: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"key": key}
    if fallback:
        body["fallback"] = True
    signature = olm.sign_json(dict(body))
    body["signatures"] = {olm.user_id: {f"ed25519:{olm.device_id}": signature}}
    return body


def _device_keys(olm: Any) -> dict[str, Any]:
    identity = olm.account.identity_keys
    keys: dict[str, Any] = {
        "algorithms": olm._algorithms,
        "device_id": olm.device_id,
        "user_id": olm.user_id,
        "keys": {
            f"curve25519:{olm.device_id}": identity["curve25519"],
            f"ed25519:{olm.device_id}": identity["ed25519"],
        },
    }
    signature = olm.sign_json(dict(keys))
    keys["signatures"] = {olm.user_id: {f"ed25519:{olm.device_id}": signature}}
    return keys


def needs_upload(olm: Any, fallback_uploaded_at: float | None, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    vz = olm.account._account
    if not olm.account.shared or vz.one_time_keys or vz.fallback_key:
        return True  # first upload, or keys prepared by a run that did not finish
    if fallback_uploaded_at is None or now - fallback_uploaded_at > FALLBACK_ROTATION_SECONDS:
        return True
    if olm.uploaded_key_count is None:
        return False
    return bool(olm.uploaded_key_count < vz.max_number_of_one_time_keys // 2)


async def upload(olm: Any, post: Post, fallback_uploaded_at: float | None) -> float | None:
    """Prepare keys, save the account, upload; returns when the fallback key was uploaded.

    Keys prepared by an earlier run that crashed are sent again as they are (never regenerated).
    """
    vz = olm.account._account
    target = vz.max_number_of_one_time_keys // 2
    pending = dict(vz.one_time_keys)
    if not pending and olm.account.shared and olm.uploaded_key_count is not None:
        missing = target - olm.uploaded_key_count
        if missing > 0:
            vz.generate_one_time_keys(missing)
    elif not pending and not olm.account.shared:
        vz.generate_one_time_keys(target)
    now = time.time()
    rotate = fallback_uploaded_at is None or now - fallback_uploaded_at > FALLBACK_ROTATION_SECONDS
    if rotate and not vz.fallback_key:
        vz.generate_fallback_key()
    # The crash-window fix: the keys exist on disk before the server can have them.
    olm.save_account()

    content: dict[str, Any] = {}
    if not olm.account.shared:
        content["device_keys"] = _device_keys(olm)
    one_time = {
        f"{KEY_ALGORITHM}:{key_id}": _signed(olm, key.to_base64())
        for key_id, key in vz.one_time_keys.items()
    }
    if one_time:
        content["one_time_keys"] = one_time
    fallback = {
        f"{KEY_ALGORITHM}:{key_id}": _signed(olm, key.to_base64(), fallback=True)
        for key_id, key in vz.fallback_key.items()
    }
    if fallback:
        content["fallback_keys"] = fallback
    answer = await post(content)
    counts = answer.get("one_time_key_counts", {})
    olm.account.shared = True
    olm.uploaded_key_count = int(counts.get(KEY_ALGORITHM, 0))
    vz.mark_keys_as_published()
    olm.save_account()
    log.info(
        "bot.keys_uploaded",
        one_time_keys=len(one_time),
        fallback_key=bool(fallback),
        server_count=olm.uploaded_key_count,
    )
    return now if fallback else fallback_uploaded_at
