"""Composition root: builds every part once, starts them in order, stops them in reverse.

Start: database -> migrations -> bot (logs in and syncs in the background) -> jobs -> web.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta

import structlog

import store.migrate
from bridge.config import Config
from bridge.deliveries import DeliveryService
from bridge.errors import SealroomError
from bridge.helpdesk import outbound
from bridge.helpdesk.integration import Integration
from bridge.invites import InviteService
from bridge.jobs import JobRunner
from bridge.matrix.admin import AdminRegistrationTokens, AdminRoomPurger, SynapseAdmin
from bridge.matrix.bot_identity import BotIdentity
from bridge.matrix.client import BotClient, BotSettings
from bridge.matrix.e2ee import EncryptionManager, TrustHooks
from bridge.matrix.events import RoomEvents
from bridge.matrix.rooms import MatrixRoomService
from bridge.registration import RegistrationService
from bridge.room_events import RoomEventService
from bridge.room_jobs import RoomJobs
from bridge.session_queries import SessionQueries
from bridge.sessions import SessionService, Settings, utcnow
from bridge.tasks import cancel_and_wait
from bridge.ticket_notes import LinkSealer, TicketNotes, TicketUpdates
from bridge.web.api import session_api
from bridge.web.app import make_app
from bridge.web.keys import Readiness, Services, WebSettings
from bridge.web.server import WebServer
from store import Database

log = structlog.stdlib.get_logger(__name__)


def show_recovery_key(recovery_key: str, user_id: str) -> None:
    """The one time the bot's recovery key exists outside memory: on the admin's terminal.

    Written to stdout, never to the logs (which go to stderr), the database or the data dir.
    """
    line = "=" * 72
    print(
        f"{line}\n"
        f"The bot {user_id} now has a cross-signed identity. Its RECOVERY KEY is:\n\n"
        f"    {recovery_key}\n\n"
        "Store it like a password (a password manager). It is shown only this once. You need it\n"
        "if the bot's data directory is lost: sealroom bot-identity --recovery-key\n"
        f"{line}",
        flush=True,
    )


def domain_settings(config: Config) -> Settings:
    """The parts of the configuration the domain needs (also for `sealroom sessions close`)."""
    return Settings(
        server_name=config.homeserver.server_name,
        invite_lifetime=timedelta(hours=config.invites.lifetime_hours),
        session_lifetime=timedelta(hours=config.rooms.lifetime_hours),
        expiry_warning=timedelta(minutes=config.rooms.expiry_warning_minutes),
        name_template=config.rooms.name_template,
        topic_template=config.rooms.topic_template,
        room_version=config.rooms.room_version,
        agents=dict(config.agents),
        integration_agents={
            name: dict(integration.agents)
            for name, integration in config.integrations.items()
            if integration.agents
        },
        registration_enabled=config.registration.enabled,
        registration_token_lifetime=timedelta(minutes=config.registration.token_lifetime_minutes),
        public_base_url=config.http.public_base_url,
        ticket_updates={
            name: TicketUpdates(
                frozenset(integration.outbound.milestones),
                integration.outbound.public_reply,
            )
            for name, integration in config.integrations.items()
            if integration.outbound is not None
        },
    )


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.database = Database(config.database_url)
        self.bot = BotClient(
            BotSettings(
                homeserver_url=config.homeserver.url,
                user_id=config.bot.user_id,
                password=config.bot.password_value(),
                access_token=config.bot.access_token_value(),
                device_name=config.bot.device_name,
                display_name=config.bot.display_name,
                data_dir=config.bot.data_dir,
                pickle_key=config.bot.pickle_key_value(),
                request_timeout=config.homeserver.request_timeout_seconds,
            )
        )
        self.e2ee = EncryptionManager(self.bot)
        self.rooms = MatrixRoomService(self.bot, self.e2ee, config.homeserver.server_name)
        self.identity = BotIdentity(self.bot, self.e2ee, config.bot.password_value())
        self.admin = SynapseAdmin(config.homeserver.url, config.homeserver.admin_token_value())
        self.identity_ready = asyncio.Event()
        self._identity_task: asyncio.Task[None] | None = None
        self.jobs = JobRunner(
            self.database,
            utcnow,
            concurrency=config.jobs.concurrency,
            retry_initial=config.jobs.retry_initial_seconds,
            retry_max=config.jobs.retry_max_seconds,
            max_attempts=config.jobs.max_attempts,
            poll_seconds=config.jobs.poll_seconds,
        )
        self.sessions = SessionService(
            self.database,
            domain_settings(config),
            wake_jobs=self.jobs.wake,
        )
        # Back into the tickets (#10): one adapter per integration with `outbound:`.
        self.ticket_systems = {
            name: outbound.build(name, integration.outbound)
            for name, integration in config.integrations.items()
            if integration.outbound is not None
        }
        self.link_sealer = LinkSealer(config.bot.data_dir / "link.key")
        TicketNotes(self.database, self.ticket_systems, self.link_sealer, utcnow).register(
            self.jobs
        )
        self.invites = InviteService(self.database, self.sessions, self.admin)
        registration = RegistrationService(
            self.database, self.sessions, self.invites, AdminRegistrationTokens(self.admin)
        )
        # Without an admin token closed rooms are redacted but not purged (check-config says so).
        purger = (
            AdminRoomPurger(self.admin, config.homeserver.server_name)
            if config.homeserver.admin_token_value()
            else None
        )
        RoomJobs(self.sessions, self.invites, self.rooms, purger).register(self.jobs)
        room_events = RoomEvents(RoomEventService(self.sessions, config.bot.user_id))
        room_events.attach(self.bot)
        self.e2ee.trust = TrustHooks(
            config.trust.mode, room_events.pinned_identities, room_events.trust_report
        )
        self.web_app = make_app(
            Services(
                DeliveryService(
                    self.database,
                    self.sessions,
                    self.invites,
                    sealer=self.link_sealer,
                    public_base_url=config.http.public_base_url,
                ),
                self.invites,
                registration,
            ),
            {
                name: Integration(integration.verifier(), integration.field_map())
                for name, integration in config.integrations.items()
            },
            WebSettings(
                public_base_url=config.http.public_base_url,
                homeserver_url=config.homeserver.url,
                server_name=config.homeserver.server_name,
                web_client_template=config.web_client.url_template,
                registration_enabled=config.registration.enabled,
                homeserver_browser_url=config.homeserver.browser_url,
                password_min_length=config.registration.password_min_length,
            ),
            Readiness(
                {
                    "database": self._check_database,
                    "homeserver": self.admin.check_homeserver,
                    "sync": self.bot.check_sync,
                    "identity": self._check_identity,
                },
                {"jobs": self._check_jobs},
            ),
            max_body_bytes=config.http.max_body_bytes,
            session_api=session_api(
                SessionQueries(self.database, self.sessions), config.api.token_value()
            ),
        )
        self.web = WebServer(
            self.web_app,
            config.http.bind,
            config.http.port,
            config.http.client_timeout_seconds,
        )
        self.port: int | None = None

    async def start(self) -> None:
        self.config.bot.data_dir.mkdir(parents=True, exist_ok=True)
        await store.migrate.upgrade_to_head(self.database)
        await self.bot.start()
        # Room work waits for the bot's sync (nio cannot send before it) and for its
        # cross-signed identity (strict clients ignore an uncross-signed device).
        self.jobs.pause_until(self.bot.synced, self.identity_ready)
        await self.jobs.start()
        self._identity_task = asyncio.create_task(self._ensure_identity(), name="bot-identity")
        await self.web.start()
        self.port = self.web.port
        log.info("sealroom.started", bind=self.config.http.bind, port=self.port)

    async def _ensure_identity(self) -> None:
        """Once the bot has synced: create or check its cross-signing identity, with retries."""
        delay = 1.0
        while True:
            await self.bot.synced.wait()
            try:
                recovery_key = await self.identity.ensure()
            except SealroomError as err:
                log.warning("bot.identity_retry", error=err.errcode, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
                continue
            if recovery_key is not None:
                show_recovery_key(recovery_key, self.config.bot.user_id)
            self.identity_ready.set()
            return

    async def stop(self) -> None:
        log.info("sealroom.stopping")
        if self._identity_task is not None:
            await cancel_and_wait(self._identity_task)
            self._identity_task = None
        await self.web.stop()
        await self.jobs.stop()
        await self.e2ee.finish_backups()
        for system in self.ticket_systems.values():
            await system.close()
        await self.bot.stop()
        await self.admin.close()
        await self.database.close()
        log.info("sealroom.stopped")

    async def run_until_signal(self) -> None:
        """Run until SIGTERM or SIGINT, then stop gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    # -- readiness -----------------------------------------------------------------------------

    async def _check_database(self) -> str | None:
        await self.database.ping()
        return None

    async def _check_identity(self) -> str | None:
        if self.identity_ready.is_set():
            return None
        return "the bot's cross-signing identity is not set up or checked yet"

    async def _check_jobs(self) -> str | None:
        failed = await self.jobs.failed_count()
        return None if failed == 0 else f"{failed} job(s) gave up; see the audit trail"
