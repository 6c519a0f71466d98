"""What the domain needs from the outside world, as Protocols (no nio, no HTTP here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bridge.ids import RoomID, UserID


@dataclass(frozen=True)
class RoomSpec:
    """Everything needed to create one secure room; `alias_localpart` makes creation idempotent."""

    alias_localpart: str
    name: str
    topic: str
    session_id: str
    invite: tuple[UserID, ...] = ()
    agent_user_id: UserID | None = None
    room_version: str | None = None


@dataclass(frozen=True)
class RoomEvent:
    """One event of a room's history, as much as the wipe needs (never its content)."""

    event_id: str
    type: str
    sender: str
    state_key: str | None = None  # None: not a state event
    redacted: bool = False
    media: tuple[str, ...] = ()  # mxc URIs it refers to (read from the decrypted content)
    undecryptable: bool = False  # encrypted, and the bot has no key: its media are unknown


@dataclass(frozen=True)
class HistoryPage:
    """One page of `/messages`; `next_token` is None when there is no more in that direction."""

    events: tuple[RoomEvent, ...]
    start: str  # where this page began (the live end, for a first backward page)
    next_token: str | None


class MatrixRooms(Protocol):
    """Room operations on the homeserver, done by the bot.

    Each method is safe to call again after a failure or a crash ("already done" is success).
    Raises HomeserverUnavailable when the homeserver cannot be reached (retry later) and
    MatrixRequestFailed when it refuses.
    """

    @property
    def bot_user_id(self) -> UserID: ...

    async def create_secure_room(self, spec: RoomSpec) -> RoomID: ...

    async def invite(self, room_id: RoomID, user_id: UserID) -> None: ...

    async def send_notice(self, room_id: RoomID, text: str) -> None: ...

    async def members(self, room_id: RoomID) -> list[UserID]: ...

    async def joined_members(self, room_id: RoomID) -> list[UserID]:
        """Only those who joined (not the invited): who would get the room keys now."""
        ...

    async def set_power_level(self, room_id: RoomID, user_id: UserID, level: int | None) -> None:
        """Give `user_id` this power level in the room (None: the room's default)."""
        ...

    async def kick(self, room_id: RoomID, user_id: UserID, reason: str) -> None: ...

    async def leave(self, room_id: RoomID) -> None: ...

    async def history(
        self, room_id: RoomID, from_token: str | None, *, forward: bool = False
    ) -> HistoryPage:
        """A page of the room's timeline from `from_token` (None: from the live end, backwards).

        Raises MatrixRequestFailed with `retry_after_ms` when rate-limited.
        """
        ...

    async def redact(self, room_id: RoomID, event_id: str, reason: str) -> None:
        """Redact one event of any sender; already redacted or gone is success.

        Raises MatrixRequestFailed with `retry_after_ms` when rate-limited.
        """
        ...


class RoomPurger(Protocol):
    """The homeserver's admin side of the wipe (Synapse's admin API; needs an admin token)."""

    async def purge(self, room_id: RoomID) -> None:
        """Delete the room and every event in it from the homeserver's database, waiting until
        done; a room already gone is success. Raises HomeserverUnavailable while unfinished."""
        ...

    async def delete_media(self, mxc: str) -> bool:
        """Delete an uploaded file; gone already is success. False: not this homeserver's."""
        ...


class RegistrationTokens(Protocol):
    """Single-use registration tokens on the homeserver (Synapse's admin API)."""

    async def mint(self, expires_at: datetime) -> str: ...

    async def completed(self, token: str) -> int | None:
        """How many registrations used the token; None if it does not exist (any more)."""
        ...

    async def revoke(self, token: str) -> None: ...

    async def list_valid(self) -> list[str]:
        """Every token the homeserver would still accept (to find one known only by hash)."""
        ...

    async def user_created_at(self, user_id: str) -> datetime | None: ...


class Accounts(Protocol):
    """Whether a Matrix account exists (the homeserver's profile lookup)."""

    async def exists(self, user_id: UserID) -> bool:
        """Raises HomeserverUnavailable when our homeserver cannot tell right now, and
        MatrixServerUnreachable when the user's (another) homeserver did not answer."""
        ...


class TicketSystem(Protocol):
    """A helpdesk's API, to post into a ticket (bridge.helpdesk.outbound)."""

    async def post(
        self, ticket_ref: str, text: str, *, public: bool, key: str, event: str
    ) -> None:
        """Post `text` into the ticket once: `key` is the same on every retry, and a post
        already made under it is not made again.

        Raises:
            TicketSystemUnavailable: try again later.
            TicketSystemRefused: retrying cannot help.
        """
        ...
