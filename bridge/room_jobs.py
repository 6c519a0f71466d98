"""The durable steps on the homeserver: create the room, invite, post a notice, close, expire.

Each step is a job (`bridge.jobs`) that is safe to run again after a crash: "already done" is
success. This module registers its steps with the runner itself.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import structlog

import store.audit
import store.sessions
from bridge import notices
from bridge.errors import MatrixRequestFailed
from bridge.ids import RoomID, UserID, parse_user_id
from bridge.invites import InviteService
from bridge.jobs import (
    Action,
    JobContext,
    JobRunner,
    RetryLater,
    run_now,
    running,
    schedule,
)
from bridge.ports import MatrixRooms, RoomPurger, RoomSpec
from bridge.sessions import SessionService, SessionState, is_live, room_alias_localpart
from bridge.ticket_notes import Milestone, schedule_milestone
from bridge.wipe import RoomWipe, Sleep
from store import SecureSession, Transaction

log = structlog.stdlib.get_logger(__name__)

# The homeserver refuses these for now, not for good.
TRANSIENT_ERRCODES = frozenset({"M_LIMIT_EXCEEDED"})


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
        self.sessions.wake_jobs()
        if agent is None:
            log.warning("session.no_agent_mapping", session_id=session.id, agent=session.agent_ref)

    async def invite(self, job: JobContext) -> None:
        session = await self.sessions.load(job.session_id)
        if not is_live(session):
            return
        if session.room_id is None:
            raise RoomNotReady("the room is not created yet")
        user_id = parse_user_id(str(job.params["user_id"]))
        try:
            await self.rooms.invite(RoomID(session.room_id), user_id)
        except MatrixRequestFailed as err:
            if err.matrix_errcode in TRANSIENT_ERRCODES:
                raise
            # Refused for good (no such user, a server that will not have it): retrying
            # cannot help, and the people waiting must know.
            await self.invite_gave_up(job, f"{err.matrix_errcode or err.errcode}: {err.message}")
            return
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

    async def invite_gave_up(self, job: JobContext, error: str) -> None:
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
                    notices.invite_failed(user_id, released),
                    dedupe_key=f"invite-failed:{job.job_id}",
                )
        log.warning("member.invite_failed", session_id=job.session_id, released=released)
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
        user_id = parse_user_id(str(job.params["user_id"]))
        await self.rooms.kick(RoomID(session.room_id), user_id, str(job.params.get("reason", "")))
        async with self.database.transaction() as db:
            store.audit.record(
                db, self.clock(), "member.removed", session_id=session.id, user_id=user_id
            )
        log.info("member.removed", session_id=session.id, room_id=session.room_id)

    async def notice(self, job: JobContext) -> None:
        session = await self.sessions.load(job.session_id)
        if session.state != SessionState.OPEN or session.room_id is None:
            return
        room_id = RoomID(session.room_id)
        kind = job.params.get("kind")
        if kind == "rules":
            text = notices.rules(session.ticket_ref, session.expires_at, session.subject)
        elif kind == "agent_welcome":
            text = notices.agent_welcome(session.ticket_ref, session.subject, session.expires_at)
        elif kind == "status":
            members = [m for m in await self.rooms.members(room_id) if m != self.rooms.bot_user_id]
            text = notices.status(session.state, members, session.expires_at)
        elif kind == "expiry_warning":
            if job.params.get("expires_at") != session.expires_at.isoformat():
                return  # extended since: a later warning is scheduled
            text = notices.expiry_warning(session.expires_at)
        elif kind == "link":
            text = notices.invite_link(await self._new_link(session))
        else:
            text = str(job.params.get("text", ""))
        await self.rooms.send_notice(room_id, text)
        log.info("notice.sent", session_id=session.id, room_id=session.room_id, kind=kind)

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
            await self.wipe.run(job, session.id, RoomID(session.room_id))
        now = self.clock()
        async with self.database.transaction() as db:
            await self.sessions.closed(db, session, now)
            store.audit.record(
                db, now, "session.closed", session_id=session.id, reason=session.close_reason
            )
        log.info("session.closed", session_id=session.id, room_id=session.room_id)

    async def expire(self, job: JobContext) -> None:
        await self.sessions.expire_if_due(job.session_id)
