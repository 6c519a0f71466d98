"""Room events from the bot's sync, handed to the domain. Message bodies are never logged."""

from __future__ import annotations

import structlog

from bridge.matrix.client import BotClient
from bridge.sessions import SessionService

log = structlog.stdlib.get_logger(__name__)


class RoomEvents:
    def __init__(self, sessions: SessionService) -> None:
        self.sessions = sessions

    def attach(self, bot: BotClient) -> None:
        bot.on_member_joined = self.member_joined
        bot.on_message = self.message

    async def member_joined(self, room_id: str, user_id: str, event_id: str) -> None:
        try:
            await self.sessions.member_joined(room_id, user_id, event_id)
        except Exception:
            log.exception("event.member_failed", room_id=room_id, event_id=event_id)

    async def message(self, room_id: str, sender: str, body: str, event_id: str) -> None:
        if not body.startswith("!"):
            return
        try:
            await self.sessions.agent_command(room_id, sender, body, event_id)
        except Exception:
            log.exception("event.command_failed", room_id=room_id, event_id=event_id)
