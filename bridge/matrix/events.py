"""Room events from the bot's sync, handed to the domain as plain data. Bodies are never logged."""

from __future__ import annotations

import structlog
from nio import SyncResponse

from bridge.matrix.client import BotClient, DeviceTrusted
from bridge.room_events import ExcludedDevice, IdentityChange, RoomEventService, TrustFindings

log = structlog.stdlib.get_logger(__name__)


class RoomEvents:
    def __init__(self, room_events: RoomEventService) -> None:
        self.room_events = room_events

    def attach(self, bot: BotClient) -> None:
        bot.on_member_joined = self.member_joined
        bot.on_member_left = self.member_left
        bot.on_message = self.message
        bot.on_sync(self.activity)

    async def activity(self, response: SyncResponse) -> None:
        """Every non-state event of a sync (decryptable or not) restarts its room's idle
        clock; the domain writes it at most once a minute per room."""
        for room_id, room in response.rooms.join.items():
            senders = {
                event.sender
                for event in room.timeline.events
                if "state_key" not in getattr(event, "source", {})
            }
            for sender in senders:
                try:
                    await self.room_events.message_seen(room_id, sender)
                except Exception:
                    log.exception("event.activity_failed", room_id=room_id)

    async def member_joined(self, room_id: str, user_id: str, event_id: str) -> None:
        try:
            await self.room_events.member_joined(room_id, user_id, event_id)
        except Exception:
            log.exception("event.member_failed", room_id=room_id, event_id=event_id)

    async def member_left(self, room_id: str, user_id: str, event_id: str) -> None:
        try:
            await self.room_events.member_left(room_id, user_id, event_id)
        except Exception:
            log.exception("event.member_failed", room_id=room_id, event_id=event_id)

    async def message(
        self,
        room_id: str,
        sender: str,
        body: str,
        event_id: str,
        device_trusted: DeviceTrusted,
    ) -> None:
        try:
            await self.room_events.member_spoke(room_id, sender)
        except Exception:
            log.exception("event.message_failed", room_id=room_id, event_id=event_id)
        if not body.startswith("!"):
            return
        try:
            await self.room_events.agent_command(
                room_id, sender, body, event_id, device_trusted=device_trusted
            )
        except Exception:
            log.exception("event.command_failed", room_id=room_id, event_id=event_id)

    async def pinned_identities(self, user_ids: list[str]) -> dict[str, str]:
        return await self.room_events.pinned_identities(user_ids)

    async def trust_report(
        self,
        room_id: str,
        new_pins: dict[str, str],
        excluded: list[tuple[str, str, str]],
        identity_changes: dict[str, tuple[str, str]],
    ) -> None:
        await self.room_events.trust_report(
            TrustFindings(
                room_id,
                dict(new_pins),
                [ExcludedDevice(*device) for device in excluded],
                [IdentityChange(user, *keys) for user, keys in identity_changes.items()],
            )
        )
