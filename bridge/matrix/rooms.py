"""MatrixRooms on top of BotClient: secure room creation, invites, notices, removal, and the
history and redactions of the wipe (bridge.matrix.history).

Every operation treats "already done" as success, so a job can run it again after a crash.
No nio here: the client's typed calls and the encryption manager's send do the Matrix part.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from bridge.errors import MatrixRequestFailed
from bridge.ids import RoomID, UserID
from bridge.matrix.client import BotClient
from bridge.matrix.e2ee import EncryptionManager
from bridge.matrix.history import RoomHistory
from bridge.ports import HistoryPage, RoomSpec

log = structlog.stdlib.get_logger(__name__)

# The session a room belongs to: a key of its m.room.create content. Rooms made before this
# carry it as a state event of this type instead (content {"session_id": ...}).
SESSION_KEY = "org.sealroom.session_id"
MARKER_EVENT = "org.sealroom.session"
# Only a source of defaults, every one of which `create_room_body` replaces (the join rule,
# history visibility, power levels); it is the preset that writes no m.room.guest_access.
PRESET = "public_chat"
# Room versions whose creators hold power implicitly and must not be listed in `users`
# (MSC4289, room version 12): Synapse refuses the createRoom otherwise.
_CREATOR_POWER_VERSIONS = {"12", "org.matrix.hydra.11"}


def creator_listed_in_power_levels(room_version: str) -> bool:
    if room_version in _CREATOR_POWER_VERSIONS:
        return False
    return not (room_version.isdigit() and int(room_version) >= 12)


def power_levels(bot: UserID, agent: UserID | None, room_version: str) -> dict[str, Any]:
    """The bot is the only admin; the agent may moderate lightly (50); everyone else 0."""
    users: dict[str, int] = {}
    if creator_listed_in_power_levels(room_version):
        users[bot] = 100
    if agent is not None:
        users[agent] = 50
    return {
        "users": users,
        "users_default": 0,
        "events_default": 0,
        "state_default": 100,
        "invite": 100,
        "kick": 100,
        "ban": 100,
        "redact": 100,
        "events": {
            "m.room.name": 100,
            "m.room.topic": 100,
            "m.room.power_levels": 100,
            "m.room.encryption": 100,
            "m.room.history_visibility": 100,
            "m.room.join_rules": 100,
            "m.room.guest_access": 100,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
        },
    }


def initial_state() -> list[dict[str, Any]]:
    """Encrypted from the first event; invite-only; history only from joining.

    No `m.room.guest_access`: absent, it means "forbidden" (spec, m.room.guest_access), and
    the preset (`PRESET`) writes none. Each state event here costs the homeserver a full event.
    """
    return [
        {
            "type": "m.room.encryption",
            "state_key": "",
            "content": {"algorithm": "m.megolm.v1.aes-sha2"},
        },
        # The preset's join rule is "public": this one replaces it, it is not an extra event.
        {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "invite"}},
        {
            "type": "m.room.history_visibility",
            "state_key": "",
            "content": {"history_visibility": "joined"},
        },
    ]


def create_room_body(spec: RoomSpec, bot: UserID, room_version: str) -> dict[str, Any]:
    """The `POST /createRoom` body of a secure room: as few events as the rules allow.

    Synapse writes one event per state entry, and that is most of a room's cost on the
    homeserver (issue #11, row 5). So: the session id rides in the create event's content
    (`SESSION_KEY`), not in a state event of its own; the power levels are one event (the
    override replaces the preset's levels key by key); `PRESET` is chosen because it is the one
    preset that writes no guest access event, and its public join rule and shared history are
    replaced by `initial_state`. Rooms made before (`MARKER_EVENT` state event, `private_chat`,
    `guest_access: forbidden`) are the same room to every later step.

    The alias stays: a retry after a lost answer gets M_ROOM_IN_USE and adopts the room by it
    (exactly one room per session), and the landing page links to it.
    """
    return {
        "preset": PRESET,
        "visibility": "private",
        "room_alias_name": spec.alias_localpart,
        "name": spec.name,
        "topic": spec.topic,
        "room_version": room_version,
        "invite": list(spec.invite),
        "initial_state": initial_state(),
        "power_level_content_override": power_levels(bot, spec.agent_user_id, room_version),
        "creation_content": {"m.federate": True, SESSION_KEY: spec.session_id},
    }


class MatrixRoomService:
    """Implements bridge.ports.MatrixRooms."""

    def __init__(self, bot: BotClient, e2ee: EncryptionManager, server_name: str) -> None:
        self.bot = bot
        self.e2ee = e2ee
        self.server_name = server_name
        self._default_room_version: str | None = None
        self._history = RoomHistory(bot)
        # One per room whose power levels changed (a reassign): few, and small.
        self._power_locks: dict[RoomID, asyncio.Lock] = {}

    @property
    def bot_user_id(self) -> UserID:
        return UserID(self.bot.settings.user_id)

    async def _room_version(self, wanted: str | None) -> str:
        if wanted:
            return wanted
        if self._default_room_version is None:
            capabilities = await self.bot.request_json(
                "reading the homeserver's capabilities", "GET", ["capabilities"]
            )
            versions = capabilities.get("capabilities", {}).get("m.room_versions", {})
            self._default_room_version = str(versions.get("default", "10"))
        return self._default_room_version

    async def create_secure_room(self, spec: RoomSpec) -> RoomID:
        await self.bot.wait_until_synced(timeout=30)
        version = await self._room_version(spec.room_version)
        try:
            # Not nio's room_create: it cannot put the session id into the create event.
            created = await self.bot.request_json(
                "creating the secure room",
                "POST",
                ["createRoom"],
                create_room_body(spec, self.bot_user_id, version),
            )
        except MatrixRequestFailed as err:
            if err.matrix_errcode != "M_ROOM_IN_USE":
                raise
            # A previous attempt created the room but its answer was lost: adopt it.
            alias = f"#{spec.alias_localpart}:{self.server_name}"
            adopted = RoomID(await self.bot.resolve_alias(alias))
            log.info("room.adopted", room_id=adopted, session_id=spec.session_id)
            for user_id in spec.invite:
                await self.invite(adopted, user_id)
            return adopted
        return RoomID(str(created["room_id"]))

    async def invite(self, room_id: RoomID, user_id: UserID) -> None:
        try:
            await self.bot.invite(room_id, user_id)
        except MatrixRequestFailed as err:
            if _already(err, "already in the room", "is already joined", "already invited"):
                return
            raise

    async def send_notice(self, room_id: RoomID, text: str) -> None:
        await self.bot.wait_until_synced(timeout=30)
        await self.e2ee.send_encrypted(room_id, {"msgtype": "m.notice", "body": text})

    async def members(self, room_id: RoomID) -> list[UserID]:
        """Joined and invited members: an open invitation must be withdrawn too."""
        response = await self.bot.request_json(
            "listing room members", "GET", ["rooms", room_id, "members"]
        )
        users: list[UserID] = []
        for event in response.get("chunk", []):
            membership = event.get("content", {}).get("membership")
            if membership in ("join", "invite"):
                users.append(UserID(event["state_key"]))
        return users

    async def joined_members(self, room_id: RoomID) -> list[UserID]:
        response = await self.bot.request_json(
            "listing joined members", "GET", ["rooms", room_id, "joined_members"]
        )
        joined = response.get("joined")
        return [UserID(user) for user in joined] if isinstance(joined, dict) else []

    async def set_power_level(self, room_id: RoomID, user_id: UserID, level: int | None) -> None:
        """Read, change, write the room's power levels; one change at a time per room, or two
        jobs (the new agent's invite, the old one's removal) would undo each other."""
        lock = self._power_locks.setdefault(room_id, asyncio.Lock())
        async with lock:
            path = ["rooms", room_id, "state", "m.room.power_levels", ""]
            content = await self.bot.request_json("reading the power levels", "GET", path)
            users = content.get("users")
            users = dict(users) if isinstance(users, dict) else {}
            if users.get(user_id) == level or (level is None and user_id not in users):
                return  # already so
            if level is None:
                users.pop(user_id)
            else:
                users[user_id] = level
            await self.bot.request_json(
                "setting a power level", "PUT", path, {**content, "users": users}
            )

    async def kick(self, room_id: RoomID, user_id: UserID, reason: str) -> None:
        try:
            await self.bot.kick(room_id, user_id, reason)
        except MatrixRequestFailed as err:
            if err.matrix_errcode in ("M_NOT_FOUND",) or _already(
                err, "not in room", "not in the room", "not joined"
            ):
                return
            raise

    async def leave(self, room_id: RoomID) -> None:
        try:
            await self.bot.leave(room_id)
        except MatrixRequestFailed as err:
            if err.matrix_errcode in ("M_NOT_FOUND", "M_FORBIDDEN"):
                return
            raise

    async def history(
        self, room_id: RoomID, from_token: str | None, *, forward: bool = False
    ) -> HistoryPage:
        return await self._history.page(room_id, from_token, forward)

    async def redact(self, room_id: RoomID, event_id: str, reason: str) -> None:
        await self._history.redact(room_id, event_id, reason)


def _already(err: MatrixRequestFailed, *phrases: str) -> bool:
    text = err.message.lower()
    return any(phrase in text for phrase in phrases)
