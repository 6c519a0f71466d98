"""A room's timeline for the wipe: pages of `/messages`, the files each event names, redaction.

Encrypted events are decrypted with the bot's keys only to find the files they name (an
encrypted attachment carries its `file.url` inside the ciphertext); their content is never
kept, logged or returned. An event the bot has no key for is reported as undecryptable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import structlog
from nio import MegolmEvent

from bridge.errors import MatrixRequestFailed
from bridge.ids import RoomID
from bridge.matrix.client import BotClient
from bridge.matrix.failures import raise_for_status
from bridge.ports import HistoryPage, RoomEvent

log = structlog.stdlib.get_logger(__name__)

PAGE_SIZE = 100
ENCRYPTED = "m.room.encrypted"


def media_of(content: Mapping[str, Any]) -> tuple[str, ...]:
    """The mxc URIs a message names: the file itself and its thumbnail, plain or encrypted."""
    found: list[str] = []
    info = content.get("info")
    info = info if isinstance(info, Mapping) else {}
    candidates = [content.get("url"), info.get("thumbnail_url")]
    for encrypted in (content.get("file"), info.get("thumbnail_file")):
        if isinstance(encrypted, Mapping):
            candidates.append(encrypted.get("url"))
    for value in candidates:
        if isinstance(value, str) and value.startswith("mxc://") and value not in found:
            found.append(value)
    return tuple(found)


def redaction_txn_id(event_id: str) -> str:
    """The same for every attempt at one event: Synapse answers a repeated PUT with the first
    redaction instead of making another."""
    return "sealroom-wipe-" + hashlib.sha256(event_id.encode()).hexdigest()[:32]


class RoomHistory:
    def __init__(self, bot: BotClient, page_size: int = PAGE_SIZE) -> None:
        self.bot = bot
        self.page_size = page_size

    async def page(self, room_id: RoomID, from_token: str | None, forward: bool) -> HistoryPage:
        query = {"dir": "f" if forward else "b", "limit": str(self.page_size)}
        if from_token is not None:
            query["from"] = from_token
        what = "reading the room's history"
        status, data = await self.bot.request(
            what, "GET", ["rooms", room_id, "messages"], query=query
        )
        _raise(what, status, data)
        chunk = data.get("chunk")
        events = tuple(
            self._event(room_id, raw)
            for raw in (chunk if isinstance(chunk, list) else [])
            if isinstance(raw, dict) and isinstance(raw.get("event_id"), str)
        )
        end = data.get("end")
        # No `end`: the start (or the live end) of the timeline. An `end` that does not move
        # on would loop forever.
        next_token = end if isinstance(end, str) and end != from_token else None
        start = data.get("start")
        return HistoryPage(events, str(start) if start else from_token or "", next_token)

    def _event(self, room_id: RoomID, raw: dict[str, Any]) -> RoomEvent:
        unsigned = raw.get("unsigned")
        redacted = isinstance(unsigned, dict) and "redacted_because" in unsigned
        content = raw.get("content")
        content = content if isinstance(content, dict) else {}
        kind = str(raw.get("type", ""))
        state_key = raw.get("state_key")
        media: tuple[str, ...] = ()
        undecryptable = False
        if not redacted and kind == ENCRYPTED:
            decrypted = self._decrypted_content(room_id, raw)
            if decrypted is None:
                undecryptable = True
            else:
                media = media_of(decrypted)
        elif not redacted:
            media = media_of(content)
        return RoomEvent(
            event_id=str(raw["event_id"]),
            type=kind,
            sender=str(raw.get("sender", "")),
            state_key=state_key if isinstance(state_key, str) else None,
            redacted=redacted,
            media=media,
            undecryptable=undecryptable,
        )

    def _decrypted_content(self, room_id: RoomID, raw: dict[str, Any]) -> dict[str, Any] | None:
        client = self.bot.client
        if client is None:
            return None
        event = MegolmEvent.from_dict(raw)
        if not isinstance(event, MegolmEvent):
            return None
        event.room_id = room_id
        try:
            decrypted = client.decrypt_event(event)
        except Exception:  # no key (yet), no crypto store, a broken event: files unknown
            return None
        content = getattr(decrypted, "source", {}).get("content")
        return content if isinstance(content, dict) else None

    async def redact(self, room_id: RoomID, event_id: str, reason: str) -> None:
        what = "redacting an event"
        status, data = await self.bot.request(
            what,
            "PUT",
            ["rooms", room_id, "redact", event_id, redaction_txn_id(event_id)],
            {"reason": reason},
        )
        if status == 404 or data.get("errcode") == "M_NOT_FOUND":
            return  # gone (or never visible to the bot): nothing left to redact
        _raise(what, status, data)


def _raise(what: str, status: int, data: dict[str, Any]) -> None:
    """raise_for_status, keeping the wait a rate-limited caller is asked for."""
    if status == 429 or data.get("errcode") == "M_LIMIT_EXCEEDED":
        retry_after = data.get("retry_after_ms")
        raise MatrixRequestFailed(
            f"{what}: M_LIMIT_EXCEEDED",
            "M_LIMIT_EXCEEDED",
            retry_after if isinstance(retry_after, int) else None,
        )
    raise_for_status(what, status, data)
