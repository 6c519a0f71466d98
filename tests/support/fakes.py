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

from bridge.errors import HomeserverUnavailable, MatrixRequestFailed, MatrixServerUnreachable
from bridge.ids import RoomID, UserID, server_of
from bridge.ports import HistoryPage, RoomEvent, RoomSpec

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


def rate_limited(
    message: str = "too many requests", retry_after_ms: int | None = None
) -> MatrixRequestFailed:
    """A refusal for now (`M_LIMIT_EXCEEDED`): the caller should retry (after the delay)."""
    return MatrixRequestFailed(message, "M_LIMIT_EXCEEDED", retry_after_ms)


@dataclass
class FakeEvent:
    """An event of a RecordingRooms timeline; redacting it drops what it named."""

    event_id: str
    type: str
    sender: str
    state_key: str | None = None
    media: tuple[str, ...] = ()
    undecryptable: bool = False
    redactions: int = 0

    def seen(self) -> RoomEvent:
        """As `history()` reports it: a redacted event no longer names its files."""
        redacted = self.redactions > 0
        return RoomEvent(
            self.event_id,
            self.type,
            self.sender,
            self.state_key,
            redacted,
            () if redacted else self.media,
            self.undecryptable and not redacted,
        )


class RecordingRooms(_Recorder):
    """A `bridge.ports.MatrixRooms` that records what the domain asked the homeserver to do.

    Keeps each room's members (joined or invited, as `members()` reports them on Synapse): the
    bot and the spec's invitees after creation, anyone invited since; kicks and the bot's leave
    remove them. Keeps each room's timeline too (`timelines`: notices, what a test `post`s,
    redactions and kicks), paged by `history()` like `/messages` (`page_size` events a page,
    tokens `t<position>`). A failed call is recorded and changes nothing.
    """

    BOT = UserID("@sealroom:example.org")

    def __init__(self, page_size: int = 10) -> None:
        super().__init__()
        self.rooms: dict[RoomID, list[UserID]] = {}
        self.timelines: dict[RoomID, list[FakeEvent]] = defaultdict(list)
        self.page_size = page_size
        self._event_ids = iter(range(1, 10**9))
        # Who joined each room (`join`), and the power levels set since its creation.
        self.joined: dict[RoomID, list[UserID]] = defaultdict(list)
        self.power_levels: dict[RoomID, dict[UserID, int]] = defaultdict(dict)

    def post(
        self,
        room_id: RoomID | str,
        sender: str,
        kind: str = "m.room.encrypted",
        *,
        media: tuple[str, ...] = (),
        undecryptable: bool = False,
        state_key: str | None = None,
    ) -> str:
        """Someone sends an event into the room; returns its event ID."""
        event = FakeEvent(
            f"$event-{next(self._event_ids)}",
            kind,
            sender,
            state_key,
            media,
            undecryptable,
        )
        self.timelines[RoomID(room_id)].append(event)
        return event.event_id

    def event(self, event_id: str) -> FakeEvent:
        for timeline in self.timelines.values():
            for event in timeline:
                if event.event_id == event_id:
                    return event
        raise KeyError(event_id)

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
        self.post(room_id, self.bot_user_id)

    async def members(self, room_id: RoomID) -> list[UserID]:
        self._record("members", room_id)
        return list(self.rooms.get(room_id, [self.bot_user_id]))

    async def joined_members(self, room_id: RoomID) -> list[UserID]:
        """The members who `join`ed (the bot from creation on), while still in the room."""
        self._record("joined_members", room_id)
        members = self.rooms.get(room_id, [])
        joined = [self.bot_user_id, *self.joined[room_id]]
        return [user for user in dict.fromkeys(joined) if user in members]

    def join(self, room_id: RoomID | str, user_id: str) -> None:
        """An invited member joins (a test's stand-in for their client)."""
        members = self.rooms.setdefault(RoomID(room_id), [self.bot_user_id])
        if UserID(user_id) not in members:
            members.append(UserID(user_id))
        self.joined[RoomID(room_id)].append(UserID(user_id))

    async def set_power_level(self, room_id: RoomID, user_id: UserID, level: int | None) -> None:
        self._record("set_power_level", room_id, user_id, level)
        levels = self.power_levels[room_id]
        if level is None:
            levels.pop(user_id, None)
        else:
            levels[user_id] = level

    async def kick(self, room_id: RoomID, user_id: UserID, reason: str) -> None:
        self._record("kick", room_id, user_id, reason)
        if user_id in self.rooms.get(room_id, []):
            self.rooms[room_id].remove(user_id)
            self.post(room_id, self.bot_user_id, "m.room.member", state_key=user_id)

    async def leave(self, room_id: RoomID) -> None:
        self._record("leave", room_id)
        if self.bot_user_id in self.rooms.get(room_id, []):
            self.rooms[room_id].remove(self.bot_user_id)

    async def history(
        self, room_id: RoomID, from_token: str | None, *, forward: bool = False
    ) -> HistoryPage:
        self._record("history", room_id, from_token, forward)
        timeline = self.timelines[room_id]
        at = len(timeline) if from_token is None else int(from_token.removeprefix("t"))
        if forward:
            chunk = timeline[at : at + self.page_size]
            end = at + len(chunk)
            return HistoryPage(
                tuple(e.seen() for e in chunk), f"t{at}", f"t{end}" if chunk else None
            )
        first = max(at - self.page_size, 0)
        chunk = list(reversed(timeline[first:at]))
        return HistoryPage(
            tuple(e.seen() for e in chunk), f"t{at}", f"t{first}" if first else None
        )

    async def redact(self, room_id: RoomID, event_id: str, reason: str) -> None:
        self._record("redact", room_id, event_id, reason)
        for event in self.timelines[room_id]:
            if event.event_id == event_id:  # not found: success, as M_NOT_FOUND is
                event.redactions += 1
                self.post(room_id, self.bot_user_id, "m.room.redaction")
                return

    def redacted(self) -> list[str]:
        """The event IDs redacted, in order (one per call that succeeded)."""
        return [event_id for _, event_id, _ in self.called("redact")]

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


class FakePurger(_Recorder):
    """A `bridge.ports.RoomPurger` (Synapse's admin API): purged rooms, deleted files.

    Files of `example.org` are ours to delete; any other server's are not (`False`).
    """

    SERVER = "example.org"

    def __init__(self) -> None:
        super().__init__()
        self.purged: list[RoomID] = []
        self.deleted: list[str] = []

    async def purge(self, room_id: RoomID) -> None:
        self._record("purge", room_id)
        if room_id not in self.purged:
            self.purged.append(room_id)

    async def delete_media(self, mxc: str) -> bool:
        self._record("delete_media", mxc)
        if not mxc.startswith(f"mxc://{self.SERVER}/"):
            return False
        if mxc not in self.deleted:
            self.deleted.append(mxc)
        return True


class FakeAccounts(_Recorder):
    """A `bridge.ports.Accounts` seen from `server_name`: there, the accounts in `existing`
    exist and no other does; on other servers every account exists but those in `missing`,
    and servers in `unreachable` do not answer (Synapse's 502 over federation)."""

    def __init__(self, *existing: str, server_name: str = "example.org") -> None:
        super().__init__()
        self.server_name = server_name
        self.existing: set[str] = set(existing)
        self.missing: set[str] = set()
        self.unreachable: set[str] = set()

    async def exists(self, user_id: UserID) -> bool:
        self._record("exists", user_id)
        server = server_of(user_id)
        if server == self.server_name:
            return user_id in self.existing
        if server in self.unreachable:
            raise MatrixServerUnreachable(server)
        return user_id not in self.missing
