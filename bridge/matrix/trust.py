"""Whose devices get the room key: the trust policy, as pure functions over /keys/query answers.

strict (default): only devices their owner has cross-signed (device <- self-signing key <- master
key), and only while the owner's master key is the one pinned when they were first seen. It
protects against a device quietly added to a member's account (by a homeserver admin or an
attacker with the password) and against a swapped identity: such devices get an
`m.room_key.withheld` instead of the key, and the room and the audit trail are told.

tofu: every device of every member, as long as the homeserver lists it. Only for homeservers whose
clients do not cross-sign; it protects against nothing the homeserver could do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bridge.matrix import identity

Mode = Literal["strict", "tofu"]

WITHHELD_UNVERIFIED = "m.unverified"


@dataclass(frozen=True)
class Exclusion:
    user_id: str
    device_id: str
    reason: Literal["device_not_cross_signed", "identity_changed", "no_cross_signing"]


@dataclass
class TrustDecision:
    """The outcome for one room: who is excluded, and what the domain should hear about."""

    excluded: list[Exclusion] = field(default_factory=list)
    # user -> master key seen for the first time (to pin now)
    new_pins: dict[str, str] = field(default_factory=dict)
    # user -> (pinned master key, master key the homeserver now shows)
    identity_changes: dict[str, tuple[str, str]] = field(default_factory=dict)

    def excluded_devices(self) -> set[tuple[str, str]]:
        return {(item.user_id, item.device_id) for item in self.excluded}


def _single_key(key_object: Mapping[str, Any] | None) -> str | None:
    keys = (key_object or {}).get("keys", {})
    if len(keys) != 1:
        return None
    return str(next(iter(keys.values())))


def _signed_by(obj: Mapping[str, Any], user_id: str, public_key: str) -> bool:
    try:
        identity.verify_signature(obj, user_id, public_key, public_key)
    except identity.IdentityError:
        return False
    return True


def cross_signed_devices(answer: Mapping[str, Any], user_id: str) -> tuple[str | None, set[str]]:
    """(master key, devices signed by a self-signing key that the master key signed)."""
    master_obj = answer.get("master_keys", {}).get(user_id)
    ssk_obj = answer.get("self_signing_keys", {}).get(user_id)
    master = _single_key(master_obj)
    ssk = _single_key(ssk_obj)
    if (
        master is None
        or ssk is None
        or ssk_obj is None
        or not _signed_by(ssk_obj, user_id, master)
    ):
        return master, set()
    devices = answer.get("device_keys", {}).get(user_id, {})
    signed = {
        device_id
        for device_id, device in devices.items()
        if device.get("user_id") == user_id
        and device.get("device_id") == device_id
        and _signed_by(device, user_id, ssk)
    }
    return master, signed


def decide(
    mode: Mode,
    answer: Mapping[str, Any],
    members: list[str],
    pins: Mapping[str, str],
    *,
    bot_user_id: str,
) -> TrustDecision:
    """Decide, for every device of every member, whether it may receive the room key."""
    decision = TrustDecision()
    if mode == "tofu":
        return decision
    for user_id in members:
        if user_id == bot_user_id:
            continue
        devices = set(answer.get("device_keys", {}).get(user_id, {}))
        master, signed = cross_signed_devices(answer, user_id)
        pinned = pins.get(user_id)
        if master is not None and pinned is None:
            decision.new_pins[user_id] = master
        elif master is not None and pinned is not None and master != pinned:
            decision.identity_changes[user_id] = (pinned, master)
            decision.excluded += [
                Exclusion(user_id, device_id, "identity_changed") for device_id in sorted(devices)
            ]
            continue
        reason: Literal["device_not_cross_signed", "no_cross_signing"] = (
            "device_not_cross_signed" if master is not None else "no_cross_signing"
        )
        decision.excluded += [
            Exclusion(user_id, device_id, reason) for device_id in sorted(devices - signed)
        ]
    return decision
