"""The durable steps on the homeserver: create the room, invite, post a notice, close, expire.

Each step is a job (`bridge.jobs`) that is safe to run again after a crash: "already done" is
success. This module registers its steps with the runner itself.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import structlog

import store.audit
import store.sessions
from bridge import notices
from bridge.errors import MatrixRequestFailed, MatrixServerUnreachable
from bridge.ids import RoomID, UserID, parse_user_id
from bridge.invites import InviteService
from bridge.jobs import (
    Action,
    JobContext,
    JobRunner,
    PermanentJobError,
    RetryLater,
    handled,
    outstanding,
    run_now,
    running,
    schedule,
    welcomed_key,
)
from bridge.ports import MatrixRooms, RoomPurger, RoomSpec
from bridge.sessions import SessionService, SessionState, is_live, room_alias_localpart
from bridge.ticket_notes import Milestone, schedule_milestone
from bridge.wipe import PURGE_SKIPPED, RoomWipe, Sleep
from store import SecureSession, Transaction

log = structlog.stdlib.get_logger(__name__)

# The homeserver refuses these for now, not for good.
TRANSIENT_ERRCODES = frozenset({"M_LIMIT_EXCEEDED"})
# The session's agent: may moderate lightly, never change the room's rules (bridge.matrix.rooms).
AGENT_POWER_LEVEL = 50
BOT_GONE = "the bot has left the room (zero-knowledge mode, rooms.bot_stays: false)"


class RoomNotReady(RetryLater):
    """A step needs the room, which a job has not created yet: retry later."""


async def schedule_notice(
    db: Transaction, session_id: str, now: datetime, text: str, dedupe_key: str | None = None
) -> bool:
    """Have the bot post `text` in the session's room (encrypted); False if already scheduled."""
    return await schedule(
        db,
        Action.NOTICE,
        now,
        session_id=session_id,
        params={"kind": "text", "text": text},
        dedupe_key=dedupe_key,
    )


class RoomJobs:
    def __init__(
        self,
        sessions: SessionService,
        invites: InviteService,
        rooms: MatrixRooms,
        purger: RoomPurger | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """`purger` is None without an admin token: closed rooms are redacted, not purged."""
        self.sessions = sessions
        self.invites = invites
        self.rooms = rooms
        self.database = sessions.database
        self.clock = sessions.clock
        self.wipe = RoomWipe(rooms, purger, self.database, self.clock, sleep)

    def register(self, runner: JobRunner) -> None:
        runner.register(Action.CREATE_ROOM, self.create_room)
        runner.register(Action.INVITE, self.invite, on_give_up=self.invite_gave_up)
        runner.register(Action.NOTICE, self.notice)
        runner.register(Action.CLOSE_ROOM, self.close_room)
        runner.register(Action.EXPIRE, self.expire)
        runner.register(Action.REMOVE_MEMBER, self.remove_member)
        runner.register(Action.IDLE_CHECK, self.idle_check)
        runner.register(Action.DEPART, self.depart)
        runner.register(Action.PURGE_ROOM, self.purge_room)

    async def create_room(self, job: JobContext) -> None:
        session = await self.sessions.load(job.session_id)
        if session.room_id is not None or session.state != SessionState.PENDING:
            return
        settings = self.sessions.settings
        fields = {
            "ticket_ref": session.ticket_ref,
            "subject": session.subject,
            "integration": session.integration,
        }
        agent = UserID(session.agent_user_id) if session.agent_user_id else None
        room_id = await self.rooms.create_secure_room(
            RoomSpec(
                alias_localpart=room_alias_localpart(session.id),
                name=settings.name_template.format(**fields),
                topic=settings.topic_template.format(**fields),
                session_id=session.id,
                invite=(agent,) if agent else (),
                agent_user_id=agent,
                room_version=settings.room_version,
            )
        )
        now = self.clock()
        async with self.database.transaction() as db:
            # Locked: an invitation added meanwhile either is made due below or sees the room.
            fresh = await store.sessions.get(db, session.id, for_update=True)
            assert fresh is not None
            fresh.room_id = room_id
            fresh.updated_at = now
            await self.sessions.opened(db, fresh, now)
            store.audit.record(db, now, "room.created", session_id=session.id, room_id=room_id)
            # The invitations that waited for the room (see InviteService.consume) go now.
            await run_now(db, session.id, Action.INVITE, now)
        log.info(
            "room.created", session_id=session.id, room_id=room_id, ticket_ref=session.ticket_ref
        )
        # No wake_jobs() here: the runner looks for due jobs (the invitations above) as soon as
        # this job is finished, and a second look per room is one more transaction in a burst.
        if agent is None:
            log.warning("session.no_agent_mapping", session_id=session.id, agent=session.agent_ref)

    async def invite(self, job: JobContext) -> None:
        session = await self.sessions.load(job.session_id)
        if not is_live(session):
            return
        if session.room_id is None:
            raise RoomNotReady("the room is not created yet")
        if session.bot_left_at is not None:
            # Nobody left in the room may invite (its power levels): nobody new gets its keys.
            await self.invite_gave_up(job, BOT_GONE)
            return
        user_id = parse_user_id(str(job.params["user_id"]))
        try:
            await self.rooms.invite(RoomID(session.room_id), user_id)
        except MatrixServerUnreachable as err:
            # (#13) Their homeserver down for a while gets the invite once it is back; one that
            # stays down must not keep the customer's link spent for hours.
            if await self._out_of_patience(job):
                await self.invite_gave_up(job, err.message, unreachable_server=err.server)
                return
            raise
        except MatrixRequestFailed as err:
            if err.matrix_errcode in TRANSIENT_ERRCODES:
                raise
            # Refused for good (no such user, a server that will not have it): retrying
            # cannot help, and the people waiting must know.
            await self.invite_gave_up(job, f"{err.matrix_errcode or err.errcode}: {err.message}")
            return
        if job.params.get("agent") is True:
            # A ticket handed to this agent: they get the agent's power level (#9).
            await self.rooms.set_power_level(RoomID(session.room_id), user_id, AGENT_POWER_LEVEL)
        async with self.database.transaction() as db:
            store.audit.record(
                db,
                self.clock(),
                "member.invited",
                session_id=session.id,
                actor=self.rooms.bot_user_id,
                user_id=user_id,
            )
        log.info("member.invited", session_id=session.id, room_id=session.room_id)

    async def _out_of_patience(self, job: JobContext) -> bool:
        """Whether another homeserver has not answered our invites for longer than
        `Settings.remote_invite_patience` (counted from this job's first such failure)."""
        now = self.clock()
        since = job.checkpoint.get("unreachable_since")
        if not isinstance(since, str):
            await job.save_checkpoint({**job.checkpoint, "unreachable_since": now.isoformat()})
            return self.sessions.settings.remote_invite_patience <= timedelta(0)
        return now - datetime.fromisoformat(since) >= self.sessions.settings.remote_invite_patience

    async def invite_gave_up(
        self, job: JobContext, error: str, unreachable_server: str | None = None
    ) -> None:
        """Tell the agent in the room, record it, and make the customer's link work again."""
        user_id = str(job.params.get("user_id", ""))
        invite_id = job.params.get("invite_id")
        now = self.clock()
        async with self.database.transaction() as db:
            session = await store.sessions.get(db, job.session_id or "")
            if session is None:
                return
            released = isinstance(invite_id, int) and await self.invites.release(
                db, session, invite_id, now
            )
            store.audit.record(
                db,
                now,
                "member.invite_failed",
                session_id=session.id,
                user_id=user_id,
                error=error,
                link_usable=released,
            )
            # (#10) The ticket is told too, if its integration wants milestones.
            await schedule_milestone(
                db,
                self.sessions.settings.ticket_updates,
                session,
                Milestone.INVITE_FAILED,
                now,
                once_per=str(job.job_id),
            )
            if session.room_id is not None and is_live(session):
                await schedule_notice(
                    db,
                    session.id,
                    now,
                    notices.invite_failed(
                        user_id, released, unreachable_server, lang=self._lang(session)
                    ),
                    dedupe_key=f"invite-failed:{job.job_id}",
                )
        log.warning(
            "member.invite_failed",
            session_id=job.session_id,
            released=released,
            unreachable_server=unreachable_server,
        )
        self.sessions.wake_jobs()

    async def remove_member(self, job: JobContext) -> None:
        """Remove someone who no longer belongs (an agent the ticket was taken from)."""
        session = await self.sessions.load(job.session_id)
        if not is_live(session):
            return  # the wipe removes everyone anyway
        if session.room_id is None:
            async with self.database.transaction() as db:
                creating = await running(db, session.id, Action.CREATE_ROOM)
            if creating:
                raise RoomNotReady("the room is still being created")
            return  # a room made later invites only the current agent
        if session.bot_left_at is not None:
            log.warning("member.remove_impossible", session_id=session.id, reason=BOT_GONE)
            return
        user_id = parse_user_id(str(job.params["user_id"]))
        room_id = RoomID(session.room_id)
        await self.rooms.kick(room_id, user_id, str(job.params.get("reason", "")))
        if job.params.get("demote") is True:
            # The agent the ticket was taken from loses the agent's power level too.
            await self.rooms.set_power_level(room_id, user_id, None)
        async with self.database.transaction() as db:
            store.audit.record(
                db, self.clock(), "member.removed", session_id=session.id, user_id=user_id
            )
        log.info("member.removed", session_id=session.id, room_id=session.room_id)

    async def notice(self, job: JobContext) -> None:
        session = await self.sessions.load(job.session_id)
        if session.state != SessionState.OPEN or session.room_id is None:
            return
        if session.bot_left_at is not None:
            return  # zero-knowledge mode: the bot is gone and can say nothing any more
        room_id = RoomID(session.room_id)
        kind = job.params.get("kind")
        lang = self._lang(session)
        leaving = ""
        if not self.sessions.settings.bot_stays:
            leaving = "\n\n" + notices.bot_leaving(lang=lang)
        if kind == "rules":
            text = notices.rules(
                session.ticket_ref, session.expires_at, session.subject, lang=lang
            )
            text += leaving
        elif kind == "agent_welcome":
            text = notices.agent_welcome(
                session.ticket_ref, session.subject, session.expires_at, lang=lang
            )
            text += leaving
        elif kind == "status":
            members = [m for m in await self.rooms.members(room_id) if m != self.rooms.bot_user_id]
            text = notices.status(session.state, members, session.expires_at, lang=lang)
        elif kind == "expiry_warning":
            if job.params.get("expires_at") != session.expires_at.isoformat():
                return  # extended since: a later warning is scheduled
            text = notices.expiry_warning(session.expires_at, lang=lang)
        elif kind == "idle_warning":
            deadline = self.sessions.idle_deadline(session)
            if deadline is None or job.params.get("idle_until") != deadline.isoformat():
                return  # someone spoke since: the room is not idle any more
            text = notices.idle_warning(deadline, lang=lang)
        elif kind == "link":
            text = notices.invite_link(await self._new_link(session), lang=lang)
        else:
            text = str(job.params.get("text", ""))
        await self.rooms.send_notice(room_id, text)
        log.info("notice.sent", session_id=session.id, room_id=session.room_id, kind=kind)

    def _lang(self, session: SecureSession) -> str:
        """The language of this session's notices: its integration's."""
        return self.sessions.settings.notice_language(session.integration)

    async def _new_link(self, session: SecureSession) -> str:
        """A fresh invite link (the old one is revoked), made only now: the token exists in
        this notice and nowhere else, never in a job's parameters or a row."""
        now = self.clock()
        async with self.database.transaction() as db:
            fresh = await store.sessions.get(db, session.id)
            assert fresh is not None
            _, token = await self.invites.issue(db, fresh, now)
            store.audit.record(db, now, "invite.issued_in_room", session_id=session.id)
        return f"{self.sessions.settings.public_base_url}/i#{token}"

    async def close_room(self, job: JobContext) -> None:
        """The wipe (`bridge.wipe`), resumed from the job's checkpoint, then the session closes."""
        session = await self.sessions.load(job.session_id)
        if session.state != SessionState.CLOSING:
            return
        if session.room_id is None:
            async with self.database.transaction() as db:
                creating = await running(db, session.id, Action.CREATE_ROOM)
            if creating:
                # A room being created now would outlive its session: close it once it exists.
                raise RoomNotReady("the room is still being created")
        else:
            await self.wipe.run(
                job,
                session.id,
                RoomID(session.room_id),
                self._lang(session),
                bot_in_room=session.bot_left_at is None,
            )
        now = self.clock()
        async with self.database.transaction() as db:
            await self.sessions.closed(db, session, now)
            store.audit.record(
                db, now, "session.closed", session_id=session.id, reason=session.close_reason
            )
        log.info("session.closed", session_id=session.id, room_id=session.room_id)

    async def expire(self, job: JobContext) -> None:
        await self.sessions.expire_if_due(job.session_id)

    async def idle_check(self, job: JobContext) -> None:
        await self.sessions.check_idle(job.session_id)

    async def depart(self, job: JobContext) -> None:
        """Zero-knowledge mode (`rooms.bot_stays: false`): leave the room once the agent and
        the customer have joined and the welcome notices are out, so that the bot never gets
        a key to what they share afterwards. Asked again at every join until it is done."""
        session = await self.sessions.load(job.session_id)
        if (
            self.sessions.settings.bot_stays
            or session.state != SessionState.OPEN
            or session.room_id is None
            or session.bot_left_at is not None
        ):
            return
        room_id = RoomID(session.room_id)
        bot = self.rooms.bot_user_id
        try:
            joined = await self.rooms.joined_members(room_id)
        except MatrixRequestFailed as err:
            if err.matrix_errcode != "M_FORBIDDEN":
                raise
            joined = []  # left already (a crash before it was recorded): record it now
        if bot in joined:
            customers = [user for user in joined if user not in (bot, session.agent_user_id)]
            if session.agent_user_id not in joined or not customers:
                return  # the next join asks again
            async with self.database.transaction() as db:
                # The homeserver may know of a join before the bot's sync does: each member's
                # welcome (the rules) must be scheduled, then sent, before the bot goes.
                for user in joined:
                    if user != bot and not await handled(db, welcomed_key(session.id, user)):
                        return  # the bot's sync has not seen this join: it asks again then
                notices_waiting = await outstanding(db, session.id, Action.NOTICE, self.clock())
            if notices_waiting:
                raise RetryLater("the welcome notices are not sent yet")
            await self.rooms.leave(room_id)
        now = self.clock()
        async with self.database.transaction() as db:
            fresh = await store.sessions.get(db, session.id)
            assert fresh is not None
            fresh.bot_left_at = now
            # The bot sees no message from now on: the idle timeout counts from here.
            fresh.last_activity_at = now
            fresh.updated_at = now
            store.audit.record(
                db,
                now,
                "room.bot_left",
                session_id=session.id,
                actor=bot,
                reason="rooms.bot_stays: false (zero-knowledge mode)",
                members=len(joined) - 1,
            )
        log.info("room.bot_left", session_id=session.id, room_id=room_id)

    async def purge_room(self, job: JobContext) -> None:
        """`sessions wipe` of a closed session whose room was not purged at its close (for
        example closed before the admin token was configured)."""
        session = await self.sessions.load(job.session_id)
        if session.state != SessionState.CLOSED or session.room_id is None:
            return
        if session.purged_at is not None:
            return
        purger = self.wipe.purger
        if purger is None:
            raise PermanentJobError(PURGE_SKIPPED)
        await purger.purge(RoomID(session.room_id))
        now = self.clock()
        async with self.database.transaction() as db:
            await store.sessions.mark_purged(db, session.id, now)
            store.audit.record(
                db,
                now,
                "room.purged",
                session_id=session.id,
                actor=str(job.params.get("actor", "sealroom")),
                room_id=session.room_id,
                after_close=True,
            )
        log.info("room.purged", session_id=session.id, room_id=session.room_id)
