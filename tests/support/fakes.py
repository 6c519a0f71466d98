"""In-memory fakes of the ports in `bridge.ports`, shared by the unit and web tiers.

Each fake records what the domain asked of it (`calls`) and keeps just enough state to answer
like the real thing, so a test can assert both what was asked and what the world now looks like.
A fake can be told to fail its next calls (`fail_next`), the way the homeserver refuses
(`MatrixRequestFailed`) or cannot be reached (`HomeserverUnavailable`).
"""

from __future__ import annotations

import secrets
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.errors import HomeserverUnavailable, MatrixRequestFailed
from bridge.ids import RoomID, UserID
from bridge.ports import RoomSpec

Call = tuple[str, tuple[Any, ...]]
Failure = MatrixRequestFailed | HomeserverUnavailable


@dataclass
class Clock:
    """A clock the test moves by hand: `clock.now += timedelta(...)` or `clock.advance(...)`."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class _Recorder:
    """Records every call; `fail_next` queues failures for a method (one per call)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._failures: dict[str, deque[Failure]] = defaultdict(deque)

    def fail_next(self, method: str, *errors: Failure) -> None:
        """The next calls of `method` raise these errors, in order (then it works again)."""
        if not hasattr(self, method):
            raise AttributeError(f"{type(self).__name__} has no method {method!r}")
        self._failures[method].extend(errors)

    def _record(self, method: str, *args: Any) -> None:
        """Record the call, then raise the failure queued for it, if any."""
        self.calls.append((method, args))
        if self._failures[method]:
            raise self._failures[method].popleft()

    def called(self, method: str) -> list[tuple[Any, ...]]:
        """The arguments of every call of `method`, in order."""
        return [args for name, args in self.calls if name == method]


def forbidden(message: str = "the homeserver refused") -> MatrixRequestFailed:
    """A refusal for good, as the homeserver gives it (`M_FORBIDDEN`)."""
    return MatrixRequestFailed(message, "M_FORBIDDEN")


def rate_limited(message: str = "too many requests") -> MatrixRequestFailed:
    """A refusal for now (`M_LIMIT_EXCEEDED`): the caller should retry."""
    return MatrixRequestFailed(message, "M_LIMIT_EXCEEDED")


class RecordingRooms(_Recorder):
    """A `bridge.ports.MatrixRooms` that records what the domain asked the homeserver to do.

    Keeps each room's members (joined or invited, as `members()` reports them on Synapse): the
    bot and the spec's invitees after creation, anyone invited since; kicks and the bot's leave
    remove them. A failed call is recorded and changes nothing.
    """

    BOT = UserID("@sealroom:example.org")

    def __init__(self) -> None:
        super().__init__()
        self.rooms: dict[RoomID, list[UserID]] = {}

    @property
    def bot_user_id(self) -> UserID:
        return self.BOT

    def room_id_for(self, spec: RoomSpec) -> RoomID:
        return self.room_id_for_session(spec.session_id)

    @staticmethod
    def room_id_for_session(session_id: str) -> RoomID:
        """The room the homeserver makes for a session (its alias is `sealroom-<session>`)."""
        return RoomID(f"!sealroom-{session_id}:example.org")

    async def create_secure_room(self, spec: RoomSpec) -> RoomID:
        self._record("create_secure_room", spec)
        room_id = self.room_id_for(spec)
        # Idempotent like the real one: a second creation finds the room by its alias.
        self.rooms.setdefault(room_id, [self.bot_user_id, *spec.invite])
        return room_id

    async def invite(self, room_id: RoomID, user_id: UserID) -> None:
        self._record("invite", room_id, user_id)
        members = self.rooms.setdefault(room_id, [self.bot_user_id])
        if user_id not in members:
            members.append(user_id)

    async def send_notice(self, room_id: RoomID, text: str) -> None:
        self._record("send_notice", room_id, text)

    async def members(self, room_id: RoomID) -> list[UserID]:
        self._record("members", room_id)
        return list(self.rooms.get(room_id, [self.bot_user_id]))

    async def kick(self, room_id: RoomID, user_id: UserID, reason: str) -> None:
        self._record("kick", room_id, user_id, reason)
        if user_id in self.rooms.get(room_id, []):
            self.rooms[room_id].remove(user_id)

    async def leave(self, room_id: RoomID) -> None:
        self._record("leave", room_id)
        if self.bot_user_id in self.rooms.get(room_id, []):
            self.rooms[room_id].remove(self.bot_user_id)

    def notices(self, room_id: RoomID | None = None) -> list[str]:
        """The texts of every notice sent (to `room_id`, if given), in order."""
        return [text for room, text in self.called("send_notice") if room_id in (None, room)]


@dataclass
class _Token:
    expires_at: datetime
    completed: int = 0
    revoked: bool = False


class FakeRegistrationTokens(_Recorder):
    """A `bridge.ports.RegistrationTokens` with Synapse's semantics and real state.

    Tokens are single-use (`uses_allowed: 1`); a revoked token is deleted (`completed` answers
    None, as Synapse's 404 does); `list_valid` lists the tokens that would still register an
    account. `register` plays the customer's browser making an account with a token.
    """

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.tokens: dict[str, _Token] = {}
        self.users: dict[str, datetime] = {}

    @property
    def minted(self) -> list[str]:
        return list(self.tokens)

    @property
    def revoked(self) -> list[str]:
        return [token for token, state in self.tokens.items() if state.revoked]

    def _valid(self, token: str) -> bool:
        state = self.tokens.get(token)
        return (
            state is not None
            and not state.revoked
            and state.completed < 1
            and state.expires_at > self.clock()
        )

    def register(self, token: str, user_id: str, at: datetime | None = None) -> None:
        """The browser registers `user_id` with `token` (Synapse refuses an invalid token)."""
        if not self._valid(token):
            raise MatrixRequestFailed("registration token not valid", "M_FORBIDDEN")
        if user_id in self.users:
            raise MatrixRequestFailed("user ID already taken", "M_USER_IN_USE")
        self.tokens[token].completed += 1
        self.users[user_id] = at or self.clock()

    def add_user(self, user_id: str, created_at: datetime) -> None:
        """An account made some other way (without any of our tokens)."""
        self.users[user_id] = created_at

    async def mint(self, expires_at: datetime) -> str:
        self._record("mint", expires_at)
        token = secrets.token_urlsafe(12)
        self.tokens[token] = _Token(expires_at)
        return token

    async def completed(self, token: str) -> int | None:
        self._record("completed", token)
        state = self.tokens.get(token)
        return None if state is None or state.revoked else state.completed

    async def revoke(self, token: str) -> None:
        self._record("revoke", token)
        if token in self.tokens:  # gone already is fine, as on Synapse
            self.tokens[token].revoked = True

    async def list_valid(self) -> list[str]:
        self._record("list_valid")
        return [token for token in self.tokens if self._valid(token)]

    async def user_created_at(self, user_id: str) -> datetime | None:
        self._record("user_created_at", user_id)
        return self.users.get(user_id)


class FakeAccounts(_Recorder):
    """A `bridge.ports.Accounts`: the accounts in `existing` exist, no other does."""

    def __init__(self, *existing: str) -> None:
        super().__init__()
        self.existing: set[str] = set(existing)

    async def exists(self, user_id: UserID) -> bool:
        self._record("exists", user_id)
        return user_id in self.existing
