"""The domain wired to a real store and the fakes of `tests.support.fakes`, for the unit tier.

`World` is every service of `bridge/` built the way `bridge.app` builds them, minus the Matrix
client and the HTTP server (tests/unit/conftest.py hands one out per test, on its own store).
Its helpers drive the durable jobs by hand (no runner loop, no timing): `take` claims a job as
the runner would and gives its context to the test, `run_due` runs whatever is due until
nothing is.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import select

import store.jobs
from bridge.deliveries import Delivery, DeliveryService
from bridge.invites import InviteService
from bridge.jobs import Action, JobContext, JobRunner
from bridge.registration import RegistrationService
from bridge.room_events import RoomEventService
from bridge.room_jobs import RoomJobs
from bridge.sessions import OpenRequest, SessionService, Settings
from store import AuditEvent, Database, Job, SecureSession
from tests.support.fakes import (
    Clock,
    FakeAccounts,
    FakePurger,
    FakeRegistrationTokens,
    RecordingRooms,
)

SERVER_NAME = "example.org"
AGENT = "alice@example.com"
AGENT_ID = "@alice:example.org"
OTHER_AGENT = "bob@example.com"
OTHER_AGENT_ID = "@bob:example.org"
CUSTOMER_ID = "@customer:example.net"
START = datetime(2030, 5, 17, 12, 0, tzinfo=UTC)
SESSION_LIFETIME = timedelta(hours=72)
INVITE_LIFETIME = timedelta(hours=24)

_webhook_ids = itertools.count(1)

Handler = Callable[[JobContext], Awaitable[None]]
GiveUp = Callable[[JobContext, str], Awaitable[None]]


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "server_name": SERVER_NAME,
        "invite_lifetime": INVITE_LIFETIME,
        "session_lifetime": SESSION_LIFETIME,
        "name_template": "Ticket {ticket_ref}: secure credentials",
        "topic_template": "Secure room for ticket {ticket_ref} ({subject}) via {integration}",
        "room_version": "11",
        "agents": {AGENT: AGENT_ID, OTHER_AGENT: OTHER_AGENT_ID},
        "registration_enabled": True,
        "registration_token_lifetime": timedelta(minutes=30),
    }
    values.update(overrides)
    return Settings(**values)


class Registry:
    """Stands in for the JobRunner when `RoomJobs.register` hands over its actions."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.on_give_up: dict[str, GiveUp] = {}

    def register(self, action: Action, handler: Handler, on_give_up: GiveUp | None = None) -> None:
        self.handlers[action.value] = handler
        if on_give_up is not None:
            self.on_give_up[action.value] = on_give_up


@dataclass
class Opened:
    session_id: str
    token: str


class OpenTicket(NamedTuple):
    """Ticket T-1 after the helpdesk's open webhook: what `World.open_ticket` gives."""

    world: World
    opened: Opened


class OpenRoom(NamedTuple):
    """Ticket T-1, opened by the helpdesk, its room created: what `World.open_room` gives."""

    world: World
    opened: Opened
    room_id: str


@dataclass
class World:
    database: Database
    clock: Clock
    rooms: RecordingRooms
    tokens: FakeRegistrationTokens
    accounts: FakeAccounts
    sessions: SessionService
    invites: InviteService
    deliveries: DeliveryService
    registration: RegistrationService
    room_jobs: RoomJobs
    room_events: RoomEventService
    registry: Registry
    purger: FakePurger | None = None  # None: no admin token configured
    wakes: list[None] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)  # the waits asked for (not slept)

    # -- driving the flow -----------------------------------------------------------------------

    async def open_ticket(
        self, ticket: str = "T-1", agent: str = AGENT, *, webhook_id: str | None = None
    ) -> Opened:
        """The helpdesk's open webhook, as `bridge.web.hooks` hands it to the domain."""
        outcome = await self.deliveries.open(
            Delivery("helpdesk", webhook_id or f"msg-{next(_webhook_ids)}"),
            OpenRequest(ticket, "VPN access", agent),
        )
        assert outcome.invite_token is not None
        return Opened(str(outcome.body["session_id"]), outcome.invite_token)

    async def open_room(self, ticket: str = "T-1") -> tuple[Opened, str]:
        """A ticket whose room exists: (the open webhook's answer, the room id)."""
        opened = await self.open_ticket(ticket)
        context = await self.run(Action.CREATE_ROOM)
        assert context.session_id == opened.session_id
        [(spec,)] = self.rooms.called("create_secure_room")[-1:]
        return opened, self.rooms.room_id_for(spec)

    async def take(self, action: Action) -> JobContext:
        """Claim the oldest pending job of `action` (due or not) as the runner would; its
        checkpoints are saved with the job, so taking it again (after `retry_now`) resumes."""
        async with self.database.transaction() as db:
            query = select(Job).where(Job.state == "pending", Job.action == action.value)
            job = (await db.execute(query.order_by(Job.run_after, Job.id).limit(1))).scalar()
            assert job is not None, f"no pending {action.value} job"
            assert await store.jobs.claim(db, job.id, self.clock())
        return JobContext(
            job.id,
            job.session_id,
            dict(job.params),
            dict(job.checkpoint or {}),
            self.save_checkpoint,
        )

    async def save_checkpoint(self, job_id: int, checkpoint: dict[str, Any]) -> None:
        """What the runner does with `JobContext.save_checkpoint`: store it with the job."""
        async with self.database.transaction() as db:
            await store.jobs.save_checkpoint(db, job_id, checkpoint, self.clock())

    async def finish(self, context: JobContext) -> None:
        async with self.database.transaction() as db:
            await store.jobs.finish(db, context.job_id, self.clock())

    async def retry_now(self, context: JobContext) -> None:
        """Put a job that raised back to pending, due now (the runner would, after a backoff)."""
        async with self.database.transaction() as db:
            await store.jobs.retry_later(
                db, context.job_id, self.clock(), self.clock(), "retried by the test"
            )

    async def run(self, action: Action) -> JobContext:
        """Take the oldest pending job of `action`, run it, mark it done (errors propagate)."""
        context = await self.take(action)
        await self.registry.handlers[action.value](context)
        await self.finish(context)
        return context

    async def run_due(self, limit: int = 50) -> list[str]:
        """Run every due job, oldest first, until none is due; the actions run, in order."""
        ran: list[str] = []
        for _ in range(limit):
            async with self.database.transaction() as db:
                due = await store.jobs.due(db, self.clock(), 1)
            if not due:
                return ran
            ran.append(due[0].action)
            await self.run(Action(due[0].action))
        raise AssertionError(f"jobs still due after {limit} runs: {ran}")

    # -- reading what the database holds --------------------------------------------------------

    async def session(self, session_id: str) -> SecureSession:
        async with self.database.transaction() as db:
            session = await db.get(SecureSession, session_id)
        assert session is not None, f"no session {session_id}"
        return session

    async def jobs(self, action: Action | None, state: str = "pending") -> list[Job]:
        query = select(Job).where(Job.state == state).order_by(Job.run_after, Job.id)
        if action is not None:
            query = query.where(Job.action == action.value)
        async with self.database.transaction() as db:
            return list((await db.execute(query)).scalars())

    async def notice_texts(self) -> list[str]:
        """The texts of the pending notice jobs (what the bot is about to post)."""
        return [
            str(job.params.get("text", job.params.get("kind")))
            for job in await self.jobs(Action.NOTICE)
        ]

    async def audit(self, *actions: str) -> list[AuditEvent]:
        """The audit trail in order, only the given actions if any are named."""
        query = select(AuditEvent).order_by(AuditEvent.id)
        if actions:
            query = query.where(AuditEvent.action.in_(actions))
        async with self.database.transaction() as db:
            return list((await db.execute(query)).scalars())


def build_world(database: Database, *, admin_token: bool = True, **settings: Any) -> World:
    """`admin_token=False`: no Synapse admin API, so closed rooms are not purged."""
    clock = Clock(START)
    wakes: list[None] = []
    sleeps: list[float] = []
    purger = FakePurger() if admin_token else None

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    rooms = RecordingRooms()
    tokens = FakeRegistrationTokens(clock)
    accounts = FakeAccounts()
    sessions = SessionService(
        database,
        make_settings(**settings),
        clock=clock,
        wake_jobs=lambda: wakes.append(None),
    )
    invites = InviteService(database, sessions, accounts)
    room_jobs = RoomJobs(sessions, invites, rooms, purger, sleep)
    registry = Registry()
    room_jobs.register(cast(JobRunner, registry))
    return World(
        database=database,
        clock=clock,
        rooms=rooms,
        tokens=tokens,
        accounts=accounts,
        sessions=sessions,
        invites=invites,
        deliveries=DeliveryService(database, sessions, invites),
        registration=RegistrationService(database, sessions, invites, tokens),
        room_jobs=room_jobs,
        room_events=RoomEventService(sessions, rooms.bot_user_id),
        registry=registry,
        purger=purger,
        wakes=wakes,
        sleeps=sleeps,
    )
