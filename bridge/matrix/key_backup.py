"""Server-side key backup of the bot's own Megolm sessions (m.megolm_backup.v1 algorithm).

Only the backup's public key is needed to add sessions; the private key stays in secret storage,
behind the recovery key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.matrix import identity

MEGOLM = "m.megolm.v1.aes-sha2"


@dataclass(frozen=True)
class BackupTarget:
    version: str
    public_key: str


def backup_body(olm: Any, group_session: Any, public_key: str) -> dict[str, Any]:
    """The key-backup entry for one of the bot's own inbound Megolm sessions."""
    index = group_session.first_known_index
    session_data = {
        "algorithm": MEGOLM,
        "sender_key": olm.account.identity_keys["curve25519"],
        "session_key": group_session.export_session(index),
        "sender_claimed_keys": {"ed25519": olm.account.identity_keys["ed25519"]},
        "forwarding_curve25519_key_chain": [],
    }
    return {
        "first_message_index": index,
        "forwarded_count": 0,
        "is_verified": True,
        "session_data": identity.encrypt_backup_session(public_key, session_data),
    }
