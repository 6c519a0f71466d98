"""The wipe when a session closes: what "wiped when the ticket is done" means, step by step.

In order, inside the one `close_room` job of the session (deduplicated, so never two at once):
1. a closing notice (`room.wipe_started`);
2. every event of the room redacted by the bot, whoever sent it: the whole history, paged
   backwards from where it ended when the wipe began; state events the room needs are kept
   (`room.redacted`);
3. every member removed, invited ones too; then the closing notice (left readable until then)
   and messages sent meanwhile are redacted, and the bot leaves (`room.members_removed`);
4. the room purged from the homeserver's database when an admin token is configured
   (`room.purged`), else the audit trail says the redacted shells stay (`room.purge_skipped`);
5. the files uploaded to the room deleted (`media.deleted`; `media.delete_skipped` without
   an admin token).

When the bot is not in the room (zero-knowledge mode: it left on purpose, `rooms.bot_stays:
false`; or it was removed), it can neither redact nor remove anyone: the wipe is purge-only,
steps 1-3 are skipped and `room.wipe_started` says so (`purge_only`). It cannot know the files
uploaded after it left either (`media.delete_skipped`). Without an admin token such a room
cannot be wiped at all, and the trail says that instead of retrying for ever.

Progress is a checkpoint (`JobContext.save_checkpoint`) saved after every redaction, so a re-run
after a crash or an outage resumes where the last one stopped. The media of a page are saved
before its events are redacted (a redacted event no longer names its file). "Already done" is
success at every step. A rate-limited call waits what the homeserver asks (bounded), then the
job's own backoff takes over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import structlog

import store.audit
import store.sessions
from bridge import notices
from bridge.errors import MatrixRequestFailed
from bridge.ids import RoomID
from bridge.jobs import JobContext
from bridge.ports import MatrixRooms, RoomEvent, RoomPurger
from store import Database

log = structlog.stdlib.get_logger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

REMOVED = "The secure session is closed."
REDACTED = "Wiped: the secure session is closed."
# State events whose content the room does not need: they may name the ticket's subject.
REDACTABLE_STATE = frozenset({"m.room.name", "m.room.topic", "m.room.avatar"})
# A rate-limited call waits what the homeserver asks, this many times and this long at most;
# after that the job fails this attempt and the runner's backoff takes over (resuming here).
RATE_LIMIT_WAITS = 8
RATE_LIMIT_MAX_SECONDS = 60.0
RATE_LIMIT_DEFAULT_SECONDS = 1.0
# The audit trail names this many of the events the bot could not decrypt (and counts all).
UNKNOWN_LISTED = 50

PURGE_SKIPPED = (
    "homeserver.admin_token is not configured: the homeserver keeps the redacted events "
    "(without their content) and the uploaded files"
)
NOT_WIPED = (
    "homeserver.admin_token is not configured and the bot is not in the room: nothing could "
    "be wiped; the homeserver keeps the room, its encrypted events and its files"
)
FILES_UNKNOWN = (
    "the bot was not in the room, so it does not know which files were uploaded; the "
    "homeserver keeps them until its media retention removes them"
)
BOT_LEFT = "the bot left the room on purpose (rooms.bot_stays: false)"
BOT_NOT_IN_ROOM = "the bot is not in the room any more"


def wipeable(event: RoomEvent) -> bool:
    """Whether the wipe redacts this event: messages, files, reactions, stickers and any
    other non-state event, and the state events that carry words rather than room rules."""
    if event.redacted or event.type == "m.room.redaction":
        return False
    return event.state_key is None or event.type in REDACTABLE_STATE


def _unknown_files(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Which events the bot could not decrypt: any file they named is unknown, so not deleted."""
    events: list[str] = checkpoint["undecryptable"]
    return {"undecryptable": len(events), "undecryptable_events": events[:UNKNOWN_LISTED]}


class RoomWipe:
    """Runs the wipe of one room from a job's checkpoint (`run`), step after step."""

    def __init__(
        self,
        rooms: MatrixRooms,
        purger: RoomPurger | None,
        database: Database,
        clock: Callable[[], datetime],
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.rooms = rooms
        self.purger = purger
        self.database = database
        self.clock = clock
        self.sleep = sleep

    async def run(
        self,
        job: JobContext,
        session_id: str,
        room_id: RoomID,
        lang: str = "en",
        *,
        bot_in_room: bool = True,
    ) -> None:
        """`lang`: the language of the closing notice (the integration's). `bot_in_room` False:
        the bot left on purpose (zero-knowledge mode): purge only."""
        checkpoint: dict[str, Any] = dict(job.checkpoint)
        if checkpoint.get("step") is None and not bot_in_room:
            await self._purge_only(job, checkpoint, session_id, room_id, BOT_LEFT)

        async def start(
            job: JobContext, checkpoint: dict[str, Any], session_id: str, room_id: RoomID
        ) -> None:
            await self._start(job, checkpoint, session_id, room_id, lang)

        steps = {
            None: start,
            "redact": self._redact_history,
            "remove": self._remove_members,
            "late": self._redact_late,
            "leave": self._leave,
            "purge": self._purge,
            "media": self._delete_media,
        }
        while checkpoint.get("step") != "done":
            step = steps[checkpoint.get("step")]
            await step(job, checkpoint, session_id, room_id)

    async def _step_done(
        self,
        job: JobContext,
        checkpoint: dict[str, Any],
        session_id: str,
        action: str,
        **detail: Any,
    ) -> None:
        """Save the checkpoint and audit the step in one transaction: both or neither."""
        now = self.clock()
        async with self.database.transaction() as db:
            store.audit.record(db, now, action, session_id=session_id, **detail)
            await job.save_checkpoint_in(db, checkpoint, now)
        log.info(action, session_id=session_id, **detail)

    async def _patiently(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, waiting out rate limits as the homeserver asks (bounded)."""
        for waits in range(RATE_LIMIT_WAITS + 1):
            try:
                return await call()
            except MatrixRequestFailed as err:
                if err.matrix_errcode != "M_LIMIT_EXCEEDED" or waits == RATE_LIMIT_WAITS:
                    raise
                asked = err.retry_after_ms
                delay = RATE_LIMIT_DEFAULT_SECONDS if asked is None else asked / 1000
                delay = min(max(delay, 0.0), RATE_LIMIT_MAX_SECONDS)
                log.info("room.rate_limited", what=what, delay=delay, waits=waits + 1)
                await self.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the steps ----------------------------------------------------------------------------

    async def _start(
        self,
        job: JobContext,
        checkpoint: dict[str, Any],
        session_id: str,
        room_id: RoomID,
        lang: str,
    ) -> None:
        if not await self._bot_is_member(room_id):
            # Nothing it asks of the room would be allowed, and retrying cannot change that.
            await self._purge_only(job, checkpoint, session_id, room_id, BOT_NOT_IN_ROOM)
            return
        # Where the timeline ends now: the history is redacted backwards from here, and what
        # comes after (the closing notice, anything sent meanwhile) once everyone is removed.
        head = (
            await self._patiently("reading the history", lambda: self.rooms.history(room_id, None))
        ).start
        try:
            await self.rooms.send_notice(
                room_id, notices.closing(str(job.params.get("reason")), lang=lang)
            )
        except MatrixRequestFailed as err:
            log.warning("notice.failed", session_id=session_id, errcode=err.matrix_errcode)
        checkpoint.update(
            step="redact",
            from_token=head,
            head=head,
            redacted=0,
            late=0,
            undecryptable=[],
            media=[],
        )
        await self._step_done(job, checkpoint, session_id, "room.wipe_started", room_id=room_id)

    async def _bot_is_member(self, room_id: RoomID) -> bool:
        """Synapse answers a former member's `/joined_members` with M_FORBIDDEN (and its
        `/messages` with the history up to its leave, so that is no test)."""
        try:
            joined = await self._patiently(
                "listing members", lambda: self.rooms.joined_members(room_id)
            )
        except MatrixRequestFailed as err:
            if err.matrix_errcode != "M_FORBIDDEN":
                raise
            return False
        return self.rooms.bot_user_id in joined

    async def _purge_only(
        self,
        job: JobContext,
        checkpoint: dict[str, Any],
        session_id: str,
        room_id: RoomID,
        why: str,
    ) -> None:
        """Skip what only a member can do (notice, redactions, removals, leaving)."""
        checkpoint.update(
            step="purge", purge_only=True, redacted=0, late=0, undecryptable=[], media=[]
        )
        await self._step_done(
            job,
            checkpoint,
            session_id,
            "room.wipe_started",
            room_id=room_id,
            purge_only=True,
            reason=f"{why}: nothing is redacted or removed by the bot; the room is purged "
            "through the homeserver's admin API",
        )

    async def _page(
        self,
        job: JobContext,
        checkpoint: dict[str, Any],
        room_id: RoomID,
        from_token: str | None,
        counter: str,
        *,
        forward: bool = False,
    ) -> str | None:
        """Redact one page; returns where the next page starts (None: no more)."""
        page = await self._patiently(
            "reading the history",
            lambda: self.rooms.history(room_id, from_token, forward=forward),
        )
        media: list[str] = checkpoint["media"]
        for event in page.events:
            media.extend(mxc for mxc in event.media if mxc not in media)
            undecryptable: list[str] = checkpoint["undecryptable"]
            if event.undecryptable and event.event_id not in undecryptable:
                undecryptable.append(event.event_id)
        # The files are known before the events naming them lose their content.
        await job.save_checkpoint(checkpoint)
        for event in page.events:
            if not wipeable(event):
                continue
            await self._patiently(
                "redacting", partial(self.rooms.redact, room_id, event.event_id, REDACTED)
            )
            checkpoint[counter] += 1
            await job.save_checkpoint(checkpoint)
        if forward and not page.events:
            return None
        return page.next_token

    async def _redact_history(
        self, job: JobContext, checkpoint: dict[str, Any], session_id: str, room_id: RoomID
    ) -> None:
        """One page, backwards from where the last one ended; re-reading a page is harmless
        (what was redacted shows as redacted)."""
        next_token = await self._page(
            job, checkpoint, room_id, checkpoint.get("from_token"), "redacted"
        )
        if next_token is not None:
            checkpoint["from_token"] = next_token
            await job.save_checkpoint(checkpoint)
            return
        checkpoint.update(step="remove", from_token=checkpoint["head"])
        await self._step_done(
            job,
            checkpoint,
            session_id,
            "room.redacted",
            count=checkpoint["redacted"],
            media=len(checkpoint["media"]),
            undecryptable=len(checkpoint["undecryptable"]),
        )

    async def _remove_members(
        self, job: JobContext, checkpoint: dict[str, Any], session_id: str, room_id: RoomID
    ) -> None:
        removed = 0
        members = await self._patiently("listing members", lambda: self.rooms.members(room_id))
        for member in members:
            if member != self.rooms.bot_user_id:
                await self._patiently(
                    "removing a member", partial(self.rooms.kick, room_id, member, REMOVED)
                )
                removed += 1
        checkpoint["step"] = "late"
        await self._step_done(job, checkpoint, session_id, "room.members_removed", count=removed)

    async def _redact_late(
        self, job: JobContext, checkpoint: dict[str, Any], session_id: str, room_id: RoomID
    ) -> None:
        """The closing notice, and what members sent while the history was being redacted."""
        next_token = await self._page(
            job, checkpoint, room_id, checkpoint.get("from_token"), "late", forward=True
        )
        if next_token is not None:
            checkpoint["from_token"] = next_token
            await job.save_checkpoint(checkpoint)
            return
        checkpoint["step"] = "leave"
        if checkpoint["late"]:
            await self._step_done(
                job, checkpoint, session_id, "room.redacted", count=checkpoint["late"], late=True
            )
        else:
            await job.save_checkpoint(checkpoint)

    async def _leave(
        self, job: JobContext, checkpoint: dict[str, Any], session_id: str, room_id: RoomID
    ) -> None:
        await self._patiently("leaving", lambda: self.rooms.leave(room_id))
        checkpoint["step"] = "purge"
        await job.save_checkpoint(checkpoint)

    async def _purge(
        self, job: JobContext, checkpoint: dict[str, Any], session_id: str, room_id: RoomID
    ) -> None:
        checkpoint.update(step="media", media_deleted=0, media_foreign=0)
        if self.purger is None:
            reason = NOT_WIPED if checkpoint.get("purge_only") else PURGE_SKIPPED
            await self._step_done(job, checkpoint, session_id, "room.purge_skipped", reason=reason)
        else:
            await self.purger.purge(room_id)
            now = self.clock()
            async with self.database.transaction() as db:
                await store.sessions.mark_purged(db, session_id, now)
            await self._step_done(job, checkpoint, session_id, "room.purged", room_id=room_id)

    async def _delete_media(
        self, job: JobContext, checkpoint: dict[str, Any], session_id: str, room_id: RoomID
    ) -> None:
        media: list[str] = checkpoint["media"]
        if checkpoint.get("purge_only"):
            checkpoint["step"] = "done"
            await self._step_done(
                job, checkpoint, session_id, "media.delete_skipped", reason=FILES_UNKNOWN
            )
            return
        if self.purger is None:
            checkpoint["step"] = "done"
            if not media:
                await job.save_checkpoint(checkpoint)
                return
            await self._step_done(
                job,
                checkpoint,
                session_id,
                "media.delete_skipped",
                count=len(media),
                reason=PURGE_SKIPPED,
                **_unknown_files(checkpoint),
            )
            return
        purger = self.purger
        while media:
            if await self._patiently("deleting a file", lambda: purger.delete_media(media[0])):
                checkpoint["media_deleted"] += 1
            else:
                checkpoint["media_foreign"] += 1
            media.pop(0)
            await job.save_checkpoint(checkpoint)
        checkpoint["step"] = "done"
        await self._step_done(
            job,
            checkpoint,
            session_id,
            "media.deleted",
            count=checkpoint["media_deleted"],
            other_servers=checkpoint["media_foreign"],
            **_unknown_files(checkpoint),
        )
